//! `HttpSensor` and `HttpOperator` against a local HTTP server, under `gust dags test`'s driver,
//! with a failing task's Slack notifier sent by gust-notify: the sensor waits through a 404 and
//! a not-yet body until its JSONPath check passes, the operator's response is its XCom (read by
//! the next task's template), and a task whose endpoint answers 404 fails and notifies.

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::http::{StatusCode, Uri};
use gust_core::clock::{Clock, SystemClock};
use gust_core::state::{DagRunState, TaskState};
use gust_executor::event_channel;
use gust_sensors::SensorExecutor;
use gust_template::TemplateConnection;
use support::{load_dag, run_spec, run_within, states};

const DAG: &str = r#"
calling:
  schedule: null
  tasks:
    wait:
      operator: airflow.providers.http.sensors.http.HttpSensor
      http_conn_id: api
      endpoint: /status
      request_params: {job: "{{ params.job }}"}
      response_check: {status_codes: [200], jsonpath: "$.state", value: done}
      poke_interval: 0.2
    call:
      operator: airflow.providers.http.operators.http.HttpOperator
      http_conn_id: api
      endpoint: /run
      method: POST
      data: {job: "{{ params.job }}", format: json}
      headers: {Content-Type: application/json}
      log_response: true
      dependencies: [wait]
    echo:
      operator: SimpleHttpOperator
      http_conn_id: api
      endpoint: /echo
      data: "got {{ ti.xcom_pull(task_ids='call') }}"
      headers: {Content-Type: text/plain}
      dependencies: [call]
    broken:
      operator: HttpOperator
      http_conn_id: api
      endpoint: /missing
      on_failure_callback:
        callback: airflow.providers.slack.notifications.slack_webhook.SlackWebhookNotifier
        text: "{{ ti.task_id }} failed: {{ exception }}"
  params:
    job: "42"
"#;

/// What the server was sent, by path.
type Seen = Arc<Mutex<Vec<(String, String, String)>>>;

async fn server() -> (String, Seen) {
    let seen: Seen = Arc::new(Mutex::new(Vec::new()));
    let polls = Arc::new(Mutex::new(0u32));
    let kept = seen.clone();
    let app = Router::new().fallback(move |uri: Uri, body: Bytes| {
        let (kept, polls) = (kept.clone(), polls.clone());
        async move {
            let body = String::from_utf8_lossy(&body).into_owned();
            kept.lock().expect("a lock").push((
                uri.path().to_owned(),
                uri.query().unwrap_or("").to_owned(),
                body,
            ));
            match uri.path() {
                "/status" => {
                    let mut n = polls.lock().expect("a lock");
                    *n += 1;
                    match *n {
                        1 => (StatusCode::NOT_FOUND, "no such job yet".to_owned()),
                        2 => (StatusCode::OK, r#"{"state": "running"}"#.to_owned()),
                        _ => (StatusCode::OK, r#"{"state": "done"}"#.to_owned()),
                    }
                }
                "/run" => (StatusCode::OK, "accepted-42".to_owned()),
                "/echo" | "/slack" => (StatusCode::OK, "ok".to_owned()),
                _ => (StatusCode::NOT_FOUND, "nothing here".to_owned()),
            }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let base = format!("http://{}", listener.local_addr().expect("an address"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_sensor_and_operator_run_natively_and_a_failure_notifies() {
    let (base, seen) = server().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let now = SystemClock.now();
    let dag = load_dag(dir.path(), DAG, now);
    let (tx, mut events) = event_channel();
    let executor = SensorExecutor::new(tx, Arc::new(SystemClock), None);
    let connections = HashMap::from([
        (
            "api".to_owned(),
            TemplateConnection {
                conn_id: "api".to_owned(),
                conn_type: "http".to_owned(),
                host: Some(base.clone()),
                ..TemplateConnection::default()
            },
        ),
        (
            "slack_default".to_owned(),
            TemplateConnection {
                conn_id: "slack_default".to_owned(),
                conn_type: "slackwebhook".to_owned(),
                password: Some(format!("{base}/slack")),
                ..TemplateConnection::default()
            },
        ),
    ]);
    let notifications = Arc::new(
        gust_notify::Notifications::new(
            gust_notify::NotifyConfig::default(),
            Arc::new(SystemClock),
            None,
            None,
        )
        .expect("a client"),
    );
    let mut spec = run_spec(dir.path(), "manual__http", now);
    spec.connections = connections;
    spec.callbacks = Some(notifications.clone());
    let report = run_within(Duration::from_secs(60), &dag, &spec, &executor, &mut events).await;
    tokio::time::timeout(Duration::from_secs(30), notifications.wait())
        .await
        .expect("the notifications end");
    assert_eq!(
        states(&report),
        [
            ("broken", TaskState::Failed),
            ("call", TaskState::Success),
            ("echo", TaskState::Success),
            ("wait", TaskState::Success),
        ],
        "{report:?}"
    );
    assert_eq!(report.state, DagRunState::Failed);
    let seen = seen.lock().expect("a lock").clone();
    let of = |path: &str| -> Vec<(String, String)> {
        seen.iter()
            .filter(|(p, _, _)| p == path)
            .map(|(_, q, b)| (q.clone(), b.clone()))
            .collect()
    };
    let polls = of("/status");
    assert_eq!(polls.len(), 3, "a 404, a running job, then done: {polls:?}");
    assert!(
        polls.iter().all(|(query, _)| query == "job=42"),
        "{polls:?}"
    );
    let run_body: serde_json::Value = serde_json::from_str(&of("/run")[0].1).expect("JSON");
    assert_eq!(run_body, serde_json::json!({"job": "42", "format": "json"}));
    assert_eq!(of("/echo")[0].1, "got accepted-42");
    let slack = of("/slack");
    assert_eq!(slack.len(), 1, "{seen:?}");
    let message: serde_json::Value = serde_json::from_str(&slack[0].1).expect("JSON");
    let text = message["text"].as_str().unwrap_or_default();
    assert!(text.starts_with("broken failed: "), "{text}");
    assert!(text.contains("404"), "{text}");
}
