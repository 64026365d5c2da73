//! `/api/v2/jobs`: each scheduler as a `SchedulerJob` row with its heartbeat; alive while the
//! heartbeat is recent, `failed` once it stopped without a clean stop, `success` after one.

mod common;

use axum::http::{Method, StatusCode};
use chrono::Duration;
use common::TestServer;
use serde_json::json;

#[tokio::test]
async fn schedulers_are_listed_as_jobs_with_their_heartbeats() {
    let server = TestServer::sqlite().await;
    let store = &server.db.store;
    let now = server.state.now();
    store
        .scheduler_heartbeat("node-a:10", now - Duration::minutes(10))
        .await
        .unwrap();
    store.scheduler_heartbeat("node-a:10", now).await.unwrap();
    store
        .scheduler_heartbeat("node-b:20", now - Duration::minutes(5))
        .await
        .unwrap();
    store
        .scheduler_heartbeat("node-c:30", now - Duration::minutes(4))
        .await
        .unwrap();
    store
        .scheduler_stopped("node-c:30", now - Duration::minutes(3))
        .await
        .unwrap();

    let all = server.get("/api/v2/jobs").await;
    assert_eq!(all.status, StatusCode::OK, "{}", all.text);
    assert_eq!(all.json["total_entries"], 3);
    let first = &all.json["jobs"][0];
    assert_eq!(first["job_type"], "SchedulerJob");
    assert_eq!(first["state"], "running");
    assert_eq!(first["hostname"], "node-a");
    assert_eq!(first["dag_id"], serde_json::Value::Null);
    assert_eq!(first["end_date"], serde_json::Value::Null);
    assert!(first["start_date"].as_str().unwrap() < first["latest_heartbeat"].as_str().unwrap());
    let states: Vec<&str> = all.json["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["running", "failed", "success"]);

    let alive = server.get("/api/v2/jobs?is_alive=true").await;
    assert_eq!(alive.json["total_entries"], 1);
    assert_eq!(alive.json["jobs"][0]["hostname"], "node-a");
    let dead = server.get("/api/v2/jobs?is_alive=false").await;
    assert_eq!(dead.json["total_entries"], 2);
    let failed = server.get("/api/v2/jobs?job_state=failed").await;
    assert_eq!(failed.json["jobs"][0]["hostname"], "node-b");
    let on_b = server.get("/api/v2/jobs?hostname=node-b").await;
    assert_eq!(on_b.json["total_entries"], 1);
    let other_type = server.get("/api/v2/jobs?job_type=TriggererJob").await;
    assert_eq!(other_type.json, json!({"jobs": [], "total_entries": 0}));
    let newest = server
        .get("/api/v2/jobs?order_by=-latest_heartbeat&limit=1")
        .await;
    assert_eq!(newest.json["jobs"][0]["hostname"], "node-a");
    assert_eq!(newest.json["total_entries"], 3);
    let ended = server
        .get("/api/v2/jobs?end_date_gte=2000-01-01T00:00:00Z")
        .await;
    assert_eq!(ended.json["total_entries"], 1);

    let bad_order = server.get("/api/v2/jobs?order_by=colour").await;
    assert_eq!(bad_order.status, StatusCode::BAD_REQUEST);
    let bad_time = server.get("/api/v2/jobs?start_date_gte=soon").await;
    assert_eq!(bad_time.status, StatusCode::UNPROCESSABLE_ENTITY);
    let anonymous = server.call(Method::GET, "/api/v2/jobs", None, None).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    server.finish().await;
}
