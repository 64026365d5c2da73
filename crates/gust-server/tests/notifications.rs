//! `/api/v2/dags/{dag_id}/notifications` (Gust's own): the deliveries recorded for a DAG's
//! runs, newest first, filtered by run, paged, masked, for any signed-in user; Airflow's
//! `/ui/dags/{dag_id}/dagRuns/{dag_run_id}/deadlines`; and the DAG page's Notifications tab
//! showing both.

mod common;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use common::{HELLO, TestServer, t0};
use gust_core::notify::{Notifier, NotifierKind};
use gust_store::{DeliveryStatus, NewDeadline, NewDelivery, NewRun, Role, RunType};
use http_body_util::BodyExt;
use tower::ServiceExt;

#[tokio::test]
async fn deliveries_are_listed_by_dag_and_run_newest_first() {
    let server = TestServer::sqlite().await;
    server.load_dags(&[("hello.yaml", HELLO)]).await;
    let store = &server.db.store;
    for (run, notifier) in [("r1", "email"), ("r1", "slack_webhook"), ("r2", "webhook")] {
        let id = store
            .record_delivery(&NewDelivery {
                dag_id: "hello".to_owned(),
                run_id: run.to_owned(),
                task_id: Some("say".to_owned()),
                map_index: -1,
                try_number: Some(1),
                event: "failure".to_owned(),
                notifier: notifier.to_owned(),
                target: "connection alerts".to_owned(),
                at: t0(),
            })
            .await
            .expect("recorded");
        let failed = notifier == "webhook";
        store
            .update_delivery(
                id,
                if failed {
                    DeliveryStatus::Failed
                } else {
                    DeliveryStatus::Sent
                },
                if failed { 4 } else { 1 },
                failed.then_some("the service answered 503: down"),
                t0(),
            )
            .await
            .expect("updated");
    }

    let all = server.get("/api/v2/dags/hello/notifications").await;
    assert_eq!(all.status, StatusCode::OK, "{}", all.text);
    assert_eq!(all.json["total_entries"], 3);
    let first = &all.json["notifications"][0];
    assert_eq!(first["notifier"], "webhook", "newest first");
    assert_eq!(first["status"], "failed");
    assert_eq!(first["attempts"], 4);
    assert_eq!(first["error"], "the service answered 503: down");
    assert_eq!(first["dag_run_id"], "r2");
    assert_eq!(first["event"], "failure");
    assert_eq!(first["task_id"], "say");

    let r1 = server
        .get("/api/v2/dags/hello/notifications?dag_run_id=r1&limit=1")
        .await;
    assert_eq!(r1.json["total_entries"], 2);
    assert_eq!(r1.json["notifications"].as_array().map(Vec::len), Some(1));
    assert_eq!(r1.json["notifications"][0]["notifier"], "slack_webhook");
    assert_eq!(r1.json["notifications"][0]["status"], "sent");

    let missing = server.get("/api/v2/dags/nope/notifications").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    let anonymous = server
        .call(Method::GET, "/api/v2/dags/hello/notifications", None, None)
        .await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    server.finish().await;
}

/// Records a failed `deadline` delivery and two deadlines of run `r1` (one missed), and one
/// pending deadline of `r2`.
async fn deadlines_and_a_delivery(server: &TestServer) {
    let store = &server.db.store;
    for run in ["r1", "r2"] {
        store
            .create_run(&NewRun {
                dag_id: "hello".to_owned(),
                run_id: run.to_owned(),
                run_type: RunType::Manual,
                logical_date: t0(),
                data_interval: (t0(), t0()),
                conf: serde_json::Map::new(),
                queued_at: t0(),
            })
            .await
            .expect("a run");
    }
    let webhook = Notifier {
        kind: NotifierKind::Webhook,
        args: serde_json::Map::from_iter([("url".to_owned(), "http://x/hook".into())]),
    };
    let deadline = |run: &str, index: i32, minutes: i64| NewDeadline {
        dag_id: "hello".to_owned(),
        run_id: run.to_owned(),
        alert_index: index,
        alert_name: (index == 0).then(|| "fast".to_owned()),
        reference_type: "DagRunQueuedAtDeadline".to_owned(),
        deadline_time: t0() + chrono::Duration::minutes(minutes),
        notifiers: vec![webhook.clone()],
        created_at: t0(),
    };
    store
        .create_deadlines(&[
            deadline("r1", 0, 5),
            deadline("r1", 1, 60),
            deadline("r2", 0, 5),
        ])
        .await
        .expect("deadlines");
    let missed = store.pending_deadlines("hello", "r1").await.expect("read")[0].id;
    assert!(store.claim_deadline(missed, t0()).await.expect("claimed"));
    let id = store
        .record_delivery(&NewDelivery {
            dag_id: "hello".to_owned(),
            run_id: "r1".to_owned(),
            task_id: None,
            map_index: -1,
            try_number: None,
            event: "deadline".to_owned(),
            notifier: "webhook".to_owned(),
            target: "http://x".to_owned(),
            at: t0() + chrono::Duration::seconds(1),
        })
        .await
        .expect("recorded");
    store
        .update_delivery(
            id,
            DeliveryStatus::Failed,
            4,
            Some("the service answered 503: down"),
            t0(),
        )
        .await
        .expect("updated");
}

#[tokio::test]
async fn a_runs_deadlines_are_listed_as_airflow_lists_them() {
    let server = TestServer::sqlite().await;
    server.load_dags(&[("hello.yaml", HELLO)]).await;
    deadlines_and_a_delivery(&server).await;

    let r1 = server.get("/ui/dags/hello/dagRuns/r1/deadlines").await;
    assert_eq!(r1.status, StatusCode::OK, "{}", r1.text);
    assert_eq!(r1.json["total_entries"], 2);
    let first = &r1.json["deadlines"][0];
    assert_eq!(first["missed"], true, "soonest first: {}", r1.text);
    assert_eq!(first["dag_id"], "hello");
    assert_eq!(first["dag_run_id"], "r1");
    assert_eq!(first["alert_name"], "fast");
    assert!(
        first["id"].as_str().is_some_and(|id| id.len() == 36),
        "a UUID: {}",
        first["id"]
    );
    assert!(first["alert_id"].is_string(), "{}", r1.text);
    assert_eq!(r1.json["deadlines"][1]["missed"], false);
    assert_eq!(
        r1.json["deadlines"][1]["alert_name"],
        serde_json::Value::Null
    );

    let missed = server
        .get("/ui/dags/~/dagRuns/~/deadlines?missed=true")
        .await;
    assert_eq!(missed.json["total_entries"], 1, "{}", missed.text);
    let of_dag = server
        .get("/ui/dags/hello/dagRuns/~/deadlines?limit=1")
        .await;
    assert_eq!(of_dag.json["total_entries"], 3);
    assert_eq!(of_dag.json["deadlines"].as_array().map(Vec::len), Some(1));
    let none = server.get("/ui/dags/hello/dagRuns/nope/deadlines").await;
    assert_eq!(none.status, StatusCode::NOT_FOUND, "{}", none.text);
    let no_dag = server.get("/ui/dags/~/dagRuns/r1/deadlines").await;
    assert_eq!(no_dag.status, StatusCode::BAD_REQUEST, "{}", no_dag.text);
    let anonymous = server
        .call(
            Method::GET,
            "/ui/dags/hello/dagRuns/r1/deadlines",
            None,
            None,
        )
        .await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    server.finish().await;
}

#[tokio::test]
async fn the_notifications_tab_shows_deliveries_and_deadlines() {
    let server = TestServer::sqlite().await;
    server.load_dags(&[("hello.yaml", HELLO)]).await;
    deadlines_and_a_delivery(&server).await;
    let token = server.token(Role::Viewer);
    let request = Request::get("/dags/hello?tab=notifications")
        .header(
            header::COOKIE,
            format!("{}={token}", gust_server::auth::SESSION_COOKIE),
        )
        .body(Body::empty())
        .expect("a request");
    let response = server
        .app
        .clone()
        .oneshot(request)
        .await
        .expect("an answer");
    assert_eq!(response.status(), StatusCode::OK);
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("a body")
        .to_bytes();
    let page = String::from_utf8_lossy(&bytes);
    assert!(page.contains(r#"id="tab-notifications""#), "{page}");
    assert!(page.contains(r#"id="deliveries""#), "{page}");
    assert!(page.contains("the service answered 503: down"), "{page}");
    assert!(
        page.contains(r#"<span class="pill failed">failed</span>"#),
        "{page}"
    );
    assert!(page.contains("Deadlines: 3"), "{page}");
    assert_eq!(
        page.matches(r#"<span class="pill missed">missed</span>"#)
            .count(),
        1,
        "{page}"
    );
    assert_eq!(
        page.matches(r#"<span class="pill pending">pending</span>"#)
            .count(),
        2,
        "{page}"
    );
    server.finish().await;
}
