//! `deadline` (Airflow 3.1's deadline alerts), in dag-factory's `__type__` form and Gust's
//! compact one, read into alerts whose callbacks are notifiers Gust sends; bad ones are refused
//! where written.

mod support;

use std::time::Duration;

use gust_core::deadline::DeadlineReference;
use gust_core::notify::NotifierKind;
use support::Folder;

const DAG: &str = r#"
late:
  schedule: "@daily"
  start_date: 2024-01-01
  deadline:
    - __type__: airflow.sdk.definitions.deadline.DeadlineAlert
      reference: {__type__: airflow.sdk.definitions.deadline.DagRunQueuedAtDeadline}
      interval: {__type__: datetime.timedelta, minutes: 15}
      callback:
        __type__: airflow.sdk.definitions.callback.AsyncCallback
        callback_callable: airflow.providers.slack.notifications.slack_webhook.SlackWebhookNotifier
        kwargs: {slack_webhook_conn_id: alerts, text: "{{ dag.dag_id }} is late"}
    - name: fixed
      reference:
        __type__: airflow.sdk.definitions.deadline.FixedDatetimeDeadline
        _datetime: 2025-06-01T06:00:00Z
      interval: 0
      callback: {callback: webhook, url: "https://example.com/hook"}
    - reference: DeadlineReference.DAGRUN_LOGICAL_DATE
      interval: 1h30m
      callback: [{callback: email, to: a@b.c}, {callback: webhook, http_conn_id: hooks}]
    - reference: {average_runtime: {max_runs: 5}}
      interval: 10m
      callback:
        __type__: airflow.sdk.definitions.callback.SyncCallback
        callback_callable: airflow.providers.http.notifications.HttpNotifier
        kwargs: {url: "https://example.com/slow"}
        executor: local
    # dag-factory's positional arguments.
    - __type__: airflow.sdk.definitions.deadline.DeadlineAlert
      reference: {__type__: airflow.sdk.definitions.deadline.AverageRuntimeDeadline, __args__: [4, 2]}
      interval: {__type__: datetime.timedelta, hours: 2}
      callback:
        __type__: airflow.sdk.definitions.callback.AsyncCallback
        __args__: [webhook, {url: "https://example.com/args"}]
  tasks:
    t:
      operator: bash
      bash_command: echo
"#;

#[test]
fn deadline_alerts_read_in_dag_factorys_form_and_gusts() {
    let folder = Folder::new(&[("late.yaml", DAG)]);
    let load = folder.load();
    assert!(load.problems.is_empty(), "{:#?}", load.problems);
    let alerts = &load.dags[0].settings.deadlines;
    assert_eq!(alerts.len(), 5);
    assert_eq!(alerts[0].reference, DeadlineReference::DagRunQueuedAt);
    assert_eq!(alerts[0].interval, Duration::from_secs(900));
    assert_eq!(alerts[0].notifiers[0].kind, NotifierKind::SlackWebhook);
    assert_eq!(
        alerts[0].notifiers[0].args["text"],
        "{{ dag.dag_id }} is late"
    );
    assert_eq!(alerts[1].name.as_deref(), Some("fixed"));
    assert_eq!(
        alerts[1].reference,
        DeadlineReference::FixedDatetime("2025-06-01T06:00:00Z".parse().expect("a time"))
    );
    assert_eq!(alerts[2].reference, DeadlineReference::DagRunLogicalDate);
    assert_eq!(alerts[2].interval, Duration::from_secs(5400));
    let kinds: Vec<NotifierKind> = alerts[2].notifiers.iter().map(|n| n.kind).collect();
    assert_eq!(kinds, [NotifierKind::Email, NotifierKind::Webhook]);
    assert_eq!(
        alerts[3].reference,
        DeadlineReference::AverageRuntime {
            max_runs: 5,
            min_runs: 5
        }
    );
    assert_eq!(alerts[3].notifiers[0].kind, NotifierKind::Webhook);
    assert_eq!(
        alerts[4].reference,
        DeadlineReference::AverageRuntime {
            max_runs: 4,
            min_runs: 2
        }
    );
    assert_eq!(
        alerts[4].notifiers[0].args["url"],
        "https://example.com/args"
    );
}

#[test]
fn bad_deadlines_are_refused_where_written() {
    let folder = Folder::new(&[(
        "bad.yaml",
        r#"
bad:
  deadline:
    - reference: DAGRUN_STARTED
      interval: 5m
      callback: webhook
    - reference: DAGRUN_QUEUED_AT
      callback: {callback: webhook, url: "https://x"}
    - reference: DAGRUN_QUEUED_AT
      interval: 5m
      callback:
        __type__: airflow.sdk.definitions.callback.AsyncCallback
        callback_callable: mypkg.alerts.page
  tasks:
    t:
      operator: bash
      bash_command: echo
"#,
    )]);
    let load = folder.load();
    let text: Vec<String> = load.problems.iter().map(ToString::to_string).collect();
    // One problem per setting: the first bad alert is reported.
    assert_eq!(text.len(), 1, "{text:#?}");
    assert!(
        text[0].contains("bad.yaml:4:")
            && text[0].contains("unknown deadline reference \"DAGRUN_STARTED\""),
        "{text:#?}"
    );
    for (yaml, wanted) in [
        (
            "    - reference: DAGRUN_QUEUED_AT\n      callback: {callback: webhook, url: \"https://x\"}\n",
            "needs \"interval\"",
        ),
        (
            "    - reference: DAGRUN_QUEUED_AT\n      interval: 5m\n      callback:\n        __type__: airflow.sdk.definitions.callback.AsyncCallback\n        callback_callable: mypkg.alerts.page\n",
            "names \"mypkg.alerts.page\", which Gust cannot run",
        ),
        (
            "    - reference: DAGRUN_QUEUED_AT\n      interval: 5m\n      callback: {callback: webhook}\n",
            "needs \"url\" or \"http_conn_id\"",
        ),
    ] {
        let file = format!(
            "one:\n  deadline:\n{yaml}  tasks:\n    t:\n      operator: bash\n      bash_command: echo\n"
        );
        let folder = Folder::new(&[("one.yaml", file.as_str())]);
        let load = folder.load();
        let text: Vec<String> = load.problems.iter().map(ToString::to_string).collect();
        assert!(
            text.len() == 1 && text[0].contains(wanted),
            "{wanted}: {text:#?}"
        );
    }
}
