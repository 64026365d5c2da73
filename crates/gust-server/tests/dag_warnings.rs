//! `/api/v2/dagWarnings`: DAGs whose tasks name pools that do not exist, in Airflow's words.

mod common;

use axum::http::{Method, StatusCode};
use common::{HELLO, TestServer};
use gust_store::Role;
use serde_json::json;

const POOLED: &str = r#"
pooled:
  schedule: "@daily"
  tasks:
    - task_id: a
      operator: bash
      bash_command: "true"
      pool: gpu
    - task_id: b
      operator: bash
      bash_command: "true"
      pool: big_memory
    - task_id: c
      operator: bash
      bash_command: "true"
"#;

#[tokio::test]
async fn missing_pools_are_warned_about_until_they_exist() {
    let server = TestServer::sqlite().await;
    server
        .load_dags(&[("hello.yaml", HELLO), ("pooled.yaml", POOLED)])
        .await;

    let warnings = server.get("/api/v2/dagWarnings").await;
    assert_eq!(warnings.status, StatusCode::OK, "{}", warnings.text);
    assert_eq!(warnings.json["total_entries"], 1, "{}", warnings.text);
    let warning = &warnings.json["dag_warnings"][0];
    assert_eq!(warning["dag_id"], "pooled");
    assert_eq!(warning["dag_display_name"], "pooled");
    assert_eq!(warning["warning_type"], "non-existent pool");
    assert_eq!(
        warning["message"],
        "Dag 'pooled' references non-existent pools: ['big_memory', 'gpu']"
    );
    assert_eq!(warning["timestamp"], "2026-01-01T00:00:00Z");

    for (query, total) in [
        ("dag_id=hello", 0),
        ("dag_id=pooled", 1),
        ("warning_type=asset%20conflict", 0),
        ("warning_type=non-existent%20pool", 1),
        ("offset=1", 1),
    ] {
        let answer = server.get(&format!("/api/v2/dagWarnings?{query}")).await;
        assert_eq!(answer.status, StatusCode::OK, "{query}: {}", answer.text);
        assert_eq!(answer.json["total_entries"], total, "{query}");
    }
    let paged = server.get("/api/v2/dagWarnings?offset=1").await;
    assert_eq!(paged.json["dag_warnings"], json!([]));
    let bad_type = server.get("/api/v2/dagWarnings?warning_type=colour").await;
    assert_eq!(bad_type.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        bad_type.json["detail"][0]["loc"],
        json!(["query", "warning_type"])
    );
    let bad_order = server.get("/api/v2/dagWarnings?order_by=colour").await;
    assert_eq!(bad_order.status, StatusCode::BAD_REQUEST);

    for pool in ["gpu", "big_memory"] {
        let created = server
            .call(
                Method::POST,
                "/api/v2/pools",
                Some(Role::Op),
                Some(json!({"name": pool, "slots": 2})),
            )
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    }
    let cleared = server.get("/api/v2/dagWarnings").await;
    assert_eq!(
        cleared.json,
        json!({"dag_warnings": [], "total_entries": 0})
    );
    server.finish().await;
}
