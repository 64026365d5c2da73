//! Callbacks, read with Python tasks on (as `[python] interpreter` turns them on): in every
//! form dag-factory reads, on tasks, in `default_args` and on the DAG. Gust keeps which Python
//! callbacks exist (the callables are Python's) and the notifiers it sends itself.

mod support;

use gust_core::ids::TaskId;
use support::Folder;

const ALERTS: &str = "\
alerts:
  on_failure_callback: alerts.page
  on_success_callback_name: celebrate
  on_success_callback_file: /opt/alerts.py
  default_args:
    on_retry_callback:
      callback: airflow.providers.slack.notifications.slack.send_slack_notification
      text: retrying
  tasks:
    load:
      operator: bash
      bash_command: echo load
      on_failure_callback: [alerts.page, alerts.log]
    report:
      operator: bash
      bash_command: echo report
      dependencies: [load]
";

#[test]
fn callbacks_are_read_in_every_form_on_tasks_defaults_and_the_dag() {
    gust_operators::python::enable();
    let folder = Folder::new(&[("alerts.yaml", ALERTS)]);
    let load = folder.load();
    assert!(load.problems.is_empty(), "{:#?}", load.problems);
    let dag = &load.dags[0];
    assert!(dag.settings.callbacks.on_failure);
    assert!(dag.settings.callbacks.on_success);
    let task = |id: &str| {
        dag.task(&TaskId::new(id).expect("an id"))
            .expect("the task")
            .settings
            .callbacks
    };
    let load_callbacks = task("load");
    assert!(load_callbacks.on_failure && !load_callbacks.on_success);
    // The Slack notifier in default_args is Gust's to send, not Python's.
    assert!(!load_callbacks.on_retry);
    let report = dag
        .task(&TaskId::new("report").expect("an id"))
        .expect("the task");
    assert!(!report.settings.callbacks.on_retry && !report.settings.callbacks.on_failure);
    let retry = &report.settings.notifiers.on_retry;
    assert_eq!(retry.len(), 1);
    assert_eq!(retry[0].kind, gust_core::notify::NotifierKind::Slack);
    assert_eq!(retry[0].args["text"], "retrying");
}

#[test]
fn a_callback_of_the_wrong_kind_is_refused_where_written() {
    gust_operators::python::enable();
    let folder = Folder::new(&[(
        "bad.yaml",
        "\
bad:
  on_failure_callback: 3
  tasks:
    t:
      operator: bash
      bash_command: echo
      on_retry_callback_name: [a]
      sla_miss_callback: alerts.late
",
    )]);
    let load = folder.load();
    let text: Vec<String> = load.problems.iter().map(ToString::to_string).collect();
    assert_eq!(text.len(), 3, "{text:#?}");
    assert!(
        text[0].contains("bad.yaml:2:") && text[0].contains("dotted path"),
        "{text:#?}"
    );
    assert!(
        text.iter()
            .any(|p| p.contains("must be a non-empty string")),
        "{text:#?}"
    );
    assert!(
        text.iter().any(|p| p.contains("sla_miss_callback")),
        "{text:#?}"
    );
}
