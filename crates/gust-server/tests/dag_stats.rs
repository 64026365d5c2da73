//! `/api/v2/dagStats`: each DAG with runs, every run state listed with its count, as Airflow's.

mod common;

use axum::http::{Method, StatusCode};
use common::{HELLO, TestServer};
use gust_store::Role;
use gust_store::testing::TestDb;
use serde_json::json;

fn stats(queued: i64, running: i64, success: i64, failed: i64) -> serde_json::Value {
    json!([
        {"state": "queued", "count": queued},
        {"state": "running", "count": running},
        {"state": "success", "count": success},
        {"state": "failed", "count": failed},
    ])
}

#[tokio::test]
async fn runs_are_counted_per_dag_and_state() {
    runs_are_counted_per_dag_and_state_on(TestServer::sqlite().await).await;
}

#[tokio::test]
async fn runs_are_counted_per_dag_and_state_on_postgres() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    runs_are_counted_per_dag_and_state_on(TestServer::on(db).await).await;
}

async fn runs_are_counted_per_dag_and_state_on(server: TestServer) {
    server
        .load_dags(&[
            ("hello.yaml", HELLO),
            ("other.yaml", &HELLO.replace("hello:", "other:")),
            ("idle.yaml", &HELLO.replace("hello:", "idle:")),
        ])
        .await;
    let empty = server.get("/api/v2/dagStats").await;
    assert_eq!(empty.status, StatusCode::OK, "{}", empty.text);
    assert_eq!(empty.json, json!({"dags": [], "total_entries": 0}));

    for run_id in ["a", "b", "c"] {
        server.trigger("hello", run_id, None).await;
    }
    server.trigger("other", "o", None).await;
    let failed = server
        .call(
            Method::PATCH,
            "/api/v2/dags/hello/dagRuns/b",
            Some(Role::User),
            Some(json!({"state": "failed"})),
        )
        .await;
    assert_eq!(failed.status, StatusCode::OK, "{}", failed.text);

    let all = server.get("/api/v2/dagStats").await;
    assert_eq!(all.status, StatusCode::OK, "{}", all.text);
    // DAGs without runs ("idle") are not listed, as in Airflow.
    assert_eq!(
        all.json,
        json!({
            "dags": [
                {"dag_id": "hello", "dag_display_name": "hello", "stats": stats(2, 0, 0, 1)},
                {"dag_id": "other", "dag_display_name": "other", "stats": stats(1, 0, 0, 0)},
            ],
            "total_entries": 2
        })
    );
    let one = server
        .get("/api/v2/dagStats?dag_ids=other&dag_ids=idle")
        .await;
    assert_eq!(one.json["total_entries"], 1, "{}", one.text);
    assert_eq!(one.json["dags"][0]["dag_id"], "other");
    let anonymous = server
        .call(Method::GET, "/api/v2/dagStats", None, None)
        .await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    server.finish().await;
}
