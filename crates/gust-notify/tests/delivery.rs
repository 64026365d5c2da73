//! Notifications sent to local servers (an SMTP sink and an HTTP catcher started by each test),
//! recorded in the store on both engines: alert emails, SmtpNotifier, Slack's webhook and API,
//! and the generic webhook, with their templates rendered, retried when the server fails, and
//! no secret in what is recorded or logged.

mod support;

use std::sync::Arc;

use gust_core::clock::SystemClock;
use gust_core::notify::{Notifier, NotifierKind};
use gust_executor::callbacks::{CallbackRunner, Calls};
use gust_notify::Notifications;
use gust_store::{DeliveryStatus, Store, StoredDelivery};
use gust_template::MapLookup;
use support::http::Catcher;
use support::smtp::Sink;

gust_store::both_engines!(
    the_alert_email_reaches_the_smtp_server_after_a_refusal,
    an_smtp_notifier_renders_its_templates,
    a_slack_webhook_posts_to_the_connections_url_and_is_retried,
    a_webhook_sends_a_templated_json_body,
    slack_api_errors_fail_without_retrying,
    a_missing_connection_fails_at_once,
    a_webhook_url_from_a_connection_never_shows,
);

fn notifier(kind: NotifierKind, args: serde_json::Value) -> Notifier {
    Notifier {
        kind,
        args: args.as_object().cloned().expect("a map"),
    }
}

/// Sends `calls` for a task's failure and waits for every delivery; the deliveries recorded
/// and the try's log.
async fn send(
    store: &Store,
    config: gust_notify::NotifyConfig,
    calls: Calls,
    lookup: MapLookup,
) -> (Vec<StoredDelivery>, String) {
    let dir = tempfile::tempdir().expect("a folder");
    let log = dir.path().join("attempt=2.log");
    let notifications =
        Notifications::new(config, Arc::new(SystemClock), Some(store.clone()), None)
            .expect("a client");
    notifications.run(support::failure(calls, lookup, &log));
    tokio::time::timeout(std::time::Duration::from_secs(30), notifications.wait())
        .await
        .expect("the deliveries end");
    let (deliveries, total) = store
        .deliveries("etl", Some("manual__1"), 10, 0)
        .await
        .expect("the deliveries");
    assert_eq!(usize::try_from(total).expect("a count"), deliveries.len());
    (
        deliveries,
        std::fs::read_to_string(&log).unwrap_or_default(),
    )
}

async fn the_alert_email_reaches_the_smtp_server_after_a_refusal(store: Store) {
    let sink = Sink::start(1).await;
    let calls = Calls {
        email: vec!["ops@example.com".to_owned()],
        ..Calls::default()
    };
    let (deliveries, log) = send(
        &store,
        support::quick(sink.port),
        calls,
        MapLookup::default(),
    )
    .await;
    let messages = sink.messages();
    assert_eq!(messages.len(), 1, "{messages:#?}");
    assert_eq!(messages[0].to, ["<ops@example.com>"]);
    assert_eq!(messages[0].from, "<gust@example.com>");
    assert!(
        messages[0]
            .data
            .contains("Subject: Airflow alert: <TaskInstance: etl.load manual__1 [failed]>"),
        "{}",
        messages[0].data
    );
    assert!(
        messages[0].data.contains("Try 2 out of 2"),
        "{}",
        messages[0].data
    );
    assert!(
        messages[0].data.contains("exit code 3"),
        "{}",
        messages[0].data
    );
    assert_eq!(deliveries.len(), 1);
    let delivery = &deliveries[0];
    assert_eq!(delivery.status, DeliveryStatus::Sent);
    assert_eq!(delivery.attempts, 2, "one refusal, then sent");
    assert_eq!(delivery.delivery.notifier, "email");
    assert_eq!(delivery.delivery.event, "failure");
    assert_eq!(delivery.delivery.task_id.as_deref(), Some("load"));
    assert_eq!(delivery.delivery.target, "to ops@example.com");
    assert!(
        log.contains("email notification to to ops@example.com sent"),
        "{log}"
    );
}

async fn an_smtp_notifier_renders_its_templates(store: Store) {
    let sink = Sink::start(0).await;
    let calls = Calls {
        notifiers: vec![notifier(
            NotifierKind::Email,
            serde_json::json!({
                "to": ["{{ params.team }}@example.com", "b@example.com"],
                "from_email": "alerts@example.com",
                "subject": "{{ dag.dag_id }}.{{ ti.task_id }} {{ state }}: {{ exception }}",
                "html_content": "<p>try {{ try_number }} of {{ ds }}</p>",
            }),
        )],
        ..Calls::default()
    };
    let (deliveries, _) = send(
        &store,
        support::quick(sink.port),
        calls,
        MapLookup::default(),
    )
    .await;
    let messages = sink.messages();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].to, ["<data@example.com>", "<b@example.com>"]);
    assert_eq!(messages[0].from, "<alerts@example.com>");
    assert!(
        messages[0]
            .data
            .contains("Subject: etl.load failed: exit code 3"),
        "{}",
        messages[0].data
    );
    assert!(
        messages[0].data.contains("try 2 of 2024-03-05"),
        "{}",
        messages[0].data
    );
    assert_eq!(deliveries[0].status, DeliveryStatus::Sent);
    assert_eq!(deliveries[0].attempts, 1);
}

async fn a_slack_webhook_posts_to_the_connections_url_and_is_retried(store: Store) {
    let catcher = Catcher::start(1, "ok").await;
    let mut lookup = MapLookup::default();
    lookup.connections.insert(
        "slack_default".to_owned(),
        support::connection(
            "slack_default",
            "slackwebhook",
            "",
            &format!("{}/services/T000/B000/hooktoken", catcher.base),
        ),
    );
    let calls = Calls {
        notifiers: vec![notifier(
            NotifierKind::SlackWebhook,
            serde_json::json!({"text": ":red_circle: {{ ti.task_id }} failed in {{ run_id }}"}),
        )],
        ..Calls::default()
    };
    let (deliveries, log) = send(&store, support::quick(0), calls, lookup).await;
    let requests = catcher.requests();
    assert_eq!(requests.len(), 2, "one failure, then sent");
    assert_eq!(requests[1].path, "/services/T000/B000/hooktoken");
    let body: serde_json::Value = serde_json::from_str(&requests[1].body).expect("JSON");
    assert_eq!(
        body,
        serde_json::json!({"text": ":red_circle: load failed in manual__1"})
    );
    assert_eq!(deliveries[0].status, DeliveryStatus::Sent);
    assert_eq!(deliveries[0].attempts, 2);
    assert_eq!(deliveries[0].delivery.target, "connection slack_default");
    assert!(!log.contains("hooktoken"), "{log}");
}

async fn a_webhook_sends_a_templated_json_body(store: Store) {
    let catcher = Catcher::start(0, "{}").await;
    let calls = Calls {
        notifiers: vec![notifier(
            NotifierKind::Webhook,
            serde_json::json!({
                "url": format!("{}/hooks", catcher.base),
                "endpoint": "gust",
                "json": {"dag": "{{ dag.dag_id }}", "run": "{{ run_id }}", "tries": 3, "tags": ["{{ params.team }}"]},
                "headers": {"X-Team": "{{ params.team }}"},
            }),
        )],
        ..Calls::default()
    };
    let (deliveries, _) = send(&store, support::quick(0), calls, MapLookup::default()).await;
    let requests = catcher.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].path, "/hooks/gust");
    assert_eq!(
        requests[0]
            .headers
            .get("x-team")
            .and_then(|v| v.to_str().ok()),
        Some("data")
    );
    let body: serde_json::Value = serde_json::from_str(&requests[0].body).expect("JSON");
    assert_eq!(
        body,
        serde_json::json!({"dag": "etl", "run": "manual__1", "tries": 3, "tags": ["data"]})
    );
    assert_eq!(deliveries[0].status, DeliveryStatus::Sent);
    assert_eq!(deliveries[0].delivery.target, catcher.base);
}

async fn slack_api_errors_fail_without_retrying(store: Store) {
    let catcher = Catcher::start(0, r#"{"ok": false, "error": "channel_not_found"}"#).await;
    let mut lookup = MapLookup::default();
    let mut conn = support::connection("slack_api_default", "slack", "", "xoxb-bot-token");
    conn.extra =
        Some(serde_json::json!({"base_url": format!("{}/api/", catcher.base)}).to_string());
    lookup
        .connections
        .insert("slack_api_default".to_owned(), conn);
    let calls = Calls {
        notifiers: vec![notifier(
            NotifierKind::Slack,
            serde_json::json!({"channel": "#alerts", "text": "{{ dag.dag_id }} failed"}),
        )],
        ..Calls::default()
    };
    let (deliveries, log) = send(&store, support::quick(0), calls, lookup).await;
    let requests = catcher.requests();
    assert_eq!(requests.len(), 1, "a refusal by the API is not retried");
    assert_eq!(requests[0].path, "/api/chat.postMessage");
    assert_eq!(
        requests[0]
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok()),
        Some("Bearer xoxb-bot-token")
    );
    let body: serde_json::Value = serde_json::from_str(&requests[0].body).expect("JSON");
    assert_eq!(body["channel"], "#alerts");
    assert_eq!(body["text"], "etl failed");
    assert_eq!(deliveries[0].status, DeliveryStatus::Failed);
    assert_eq!(deliveries[0].attempts, 1);
    let error = deliveries[0].error.clone().unwrap_or_default();
    assert!(error.contains("channel_not_found"), "{error}");
    assert!(!log.contains("xoxb-bot-token"), "{log}");
}

async fn a_missing_connection_fails_at_once(store: Store) {
    let calls = Calls {
        notifiers: vec![notifier(
            NotifierKind::SlackWebhook,
            serde_json::json!({"slack_webhook_conn_id": "nope", "text": "x"}),
        )],
        ..Calls::default()
    };
    let (deliveries, log) = send(&store, support::quick(0), calls, MapLookup::default()).await;
    assert_eq!(deliveries.len(), 1);
    assert_eq!(deliveries[0].status, DeliveryStatus::Failed);
    assert_eq!(deliveries[0].attempts, 0);
    assert_eq!(deliveries[0].delivery.target, "connection nope");
    let error = deliveries[0].error.clone().unwrap_or_default();
    assert!(
        error.contains("connection \"nope\" does not exist"),
        "{error}"
    );
    assert!(log.contains("failed after 0 attempt(s)"), "{log}");
}

async fn a_webhook_url_from_a_connection_never_shows(store: Store) {
    // Nothing listens on port 9 of loopback (discard, never served here): every attempt fails.
    let mut lookup = MapLookup::default();
    lookup.connections.insert(
        "slack_default".to_owned(),
        support::connection(
            "slack_default",
            "slackwebhook",
            "",
            "http://127.0.0.1:9/services/T1/B1/verysecrettoken",
        ),
    );
    let calls = Calls {
        notifiers: vec![notifier(
            NotifierKind::SlackWebhook,
            serde_json::json!({"text": "x", "retries": 1}),
        )],
        ..Calls::default()
    };
    let (deliveries, log) = send(&store, support::quick(0), calls, lookup).await;
    assert_eq!(deliveries[0].status, DeliveryStatus::Failed);
    assert_eq!(deliveries[0].attempts, 2, "retries: 1");
    let error = deliveries[0].error.clone().unwrap_or_default();
    assert!(error.starts_with("HTTP:"), "{error}");
    for text in [&error, &log, &deliveries[0].delivery.target] {
        assert!(!text.contains("verysecrettoken"), "{text}");
    }
}
