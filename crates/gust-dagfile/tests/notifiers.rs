//! Notifiers in callbacks, read without a Python environment: Airflow's notifier classes named
//! in dag-factory's `callback:` form (and Gust's short names) become notifiers Gust sends, on
//! tasks, in `default_args` and on the DAG; a Python callable is refused naming the setting.

mod support;

use gust_core::ids::TaskId;
use gust_core::notify::NotifierKind;
use support::Folder;

const ALERTS: &str = "\
alerts:
  on_failure_callback:
    callback: airflow.providers.slack.notifications.slack_webhook.SlackWebhookNotifier
    slack_webhook_conn_id: slack_alerts
    text: \"{{ dag.dag_id }} failed\"
  default_args:
    email: [ops@example.com]
    email_on_retry: false
    on_failure_callback:
      - callback: airflow.providers.smtp.notifications.smtp.SmtpNotifier
        to: ops@example.com
        subject: \"{{ ti.task_id }} failed\"
      - callback: webhook
        url: https://hooks.example.com/gust
        json: {task: \"{{ ti.task_id }}\"}
  tasks:
    load:
      operator: bash
      bash_command: echo load
    report:
      operator: bash
      bash_command: echo report
      dependencies: [load]
      on_failure_callback: {callback: email, to: oncall@example.com}
      on_success_callback:
        callback: airflow.providers.http.notifications.HttpNotifier
        http_conn_id: reports
        endpoint: /done
";

#[test]
fn notifier_classes_become_notifiers_without_python() {
    let folder = Folder::new(&[("alerts.yaml", ALERTS)]);
    let load = folder.load();
    assert!(load.problems.is_empty(), "{:#?}", load.problems);
    let dag = &load.dags[0];
    let on_failure = &dag.settings.notifiers.on_failure;
    assert_eq!(on_failure.len(), 1);
    assert_eq!(on_failure[0].kind, NotifierKind::SlackWebhook);
    assert_eq!(on_failure[0].args["slack_webhook_conn_id"], "slack_alerts");
    assert!(!dag.settings.callbacks.on_failure, "no Python callback");
    let task = |id: &str| {
        dag.task(&TaskId::new(id).expect("an id"))
            .expect("the task")
            .settings
            .clone()
    };
    let load = task("load");
    let kinds: Vec<NotifierKind> = load.notifiers.on_failure.iter().map(|n| n.kind).collect();
    assert_eq!(kinds, [NotifierKind::Email, NotifierKind::Webhook]);
    assert_eq!(load.email, ["ops@example.com"]);
    assert!(load.email_on_failure && !load.email_on_retry);
    let report = task("report");
    // A task's own setting replaces its default_args'.
    assert_eq!(report.notifiers.on_failure.len(), 1);
    assert_eq!(report.notifiers.on_failure[0].kind, NotifierKind::Email);
    assert_eq!(report.notifiers.on_success[0].kind, NotifierKind::Webhook);
    assert_eq!(report.notifiers.on_success[0].args["endpoint"], "/done");
}

#[test]
fn bad_notifiers_and_python_callables_are_refused_where_written() {
    let folder = Folder::new(&[(
        "bad.yaml",
        "\
bad:
  on_success_callback: alerts.page
  tasks:
    t:
      operator: bash
      bash_command: echo
      on_failure_callback:
        callback: airflow.providers.slack.notifications.slack_webhook.SlackWebhookNotifier
        txt: typo
      on_retry_callback:
        callback: webhook
        json: {}
      on_execute_callback:
        callback: airflow.providers.smtp.notifications.smtp.SmtpNotifier
        subject: no one to send to
",
    )]);
    let load = folder.load();
    let text: Vec<String> = load.problems.iter().map(ToString::to_string).collect();
    assert_eq!(text.len(), 4, "{text:#?}");
    assert!(
        text.iter().any(|p| p.contains("bad.yaml:2:")
            && p.contains("names a Python callable")
            && p.contains("[python] interpreter")),
        "{text:#?}"
    );
    assert!(
        text.iter()
            .any(|p| p.contains("takes no argument \"txt\"") && p.contains("text")),
        "{text:#?}"
    );
    assert!(
        text.iter()
            .any(|p| p.contains("needs \"url\" or \"http_conn_id\"")),
        "{text:#?}"
    );
    assert!(
        text.iter()
            .any(|p| p.contains("the email notifier needs to")),
        "{text:#?}"
    );
}
