//! `/api/v2/dags/{dag_id}/notifications` (Gust's own): the deliveries recorded for a DAG's
//! runs, newest first, filtered by run, paged, masked, for any signed-in user.

mod common;

use axum::http::{Method, StatusCode};
use common::{HELLO, TestServer, t0};
use gust_store::{DeliveryStatus, NewDelivery};

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
