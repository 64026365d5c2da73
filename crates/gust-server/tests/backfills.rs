//! `/api/v2/backfills`: a backfill creates a `backfill` run per ended interval in its dates,
//! leaves existing runs alone unless told to run them again, is paused, unpaused and cancelled
//! as Airflow's, and its checks answer Airflow's errors.

mod common;

use axum::http::{Method, StatusCode};
use common::{HELLO, TestServer};
use gust_store::Role;
use serde_json::{Value, json};

const MANUAL: &str = r#"
manual:
  schedule: null
  tasks:
    - task_id: a
      operator: bash
      bash_command: "true"
"#;

async fn post(server: &TestServer, path: &str, body: Value) -> common::Answer {
    server
        .call(Method::POST, path, Some(Role::User), Some(body))
        .await
}

async fn put(server: &TestServer, path: &str) -> common::Answer {
    server.call(Method::PUT, path, Some(Role::User), None).await
}

fn december(from: u32, to: u32) -> Value {
    json!({"dag_id": "hello", "from_date": format!("2025-12-{from:02}T00:00:00Z"),
           "to_date": format!("2025-12-{to:02}T00:00:00Z")})
}

async fn backfill_runs(server: &TestServer) -> Vec<(String, String)> {
    let runs = server
        .get("/api/v2/dags/hello/dagRuns?run_type=backfill&order_by=logical_date")
        .await;
    runs.json["dag_runs"]
        .as_array()
        .expect("a list of runs")
        .iter()
        .map(|r| {
            (
                r["logical_date"].as_str().expect("a date").to_owned(),
                r["state"].as_str().expect("a state").to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_backfill_runs_each_interval_and_is_paused_cancelled_and_rerun() {
    let server = TestServer::sqlite().await;
    server.load_dags(&[("hello.yaml", HELLO)]).await;

    let dry = post(&server, "/api/v2/backfills/dry_run", december(1, 3)).await;
    assert_eq!(dry.status, StatusCode::OK, "{}", dry.text);
    assert_eq!(dry.json["total_entries"], 3);
    assert_eq!(
        dry.json["backfills"][0],
        json!({"logical_date": "2025-12-01T00:00:00Z", "partition_key": null, "partition_date": null})
    );

    let mut body = december(1, 3);
    body["dag_run_conf"] = json!({"name": "past"});
    body["max_active_runs"] = json!(2);
    let created = post(&server, "/api/v2/backfills", body).await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.text);
    let id = created.json["id"].as_i64().unwrap();
    assert_eq!(created.json["dag_id"], "hello");
    assert_eq!(created.json["from_date"], "2025-12-01T00:00:00Z");
    assert_eq!(created.json["dag_run_conf"], json!({"name": "past"}));
    assert_eq!(created.json["reprocess_behavior"], "none");
    assert_eq!(created.json["max_active_runs"], 2);
    assert_eq!(created.json["is_paused"], false);
    assert_eq!(created.json["completed_at"], Value::Null);
    assert_eq!(created.json["dag_display_name"], "hello");
    assert_eq!(
        backfill_runs(&server).await,
        vec![
            ("2025-12-01T00:00:00Z".to_owned(), "queued".to_owned()),
            ("2025-12-02T00:00:00Z".to_owned(), "queued".to_owned()),
            ("2025-12-03T00:00:00Z".to_owned(), "queued".to_owned()),
        ]
    );
    let run = server
        .get("/api/v2/dags/hello/dagRuns/backfill__2025-12-02T00:00:00+00:00")
        .await;
    assert_eq!(run.json["conf"], json!({"name": "past"}), "{}", run.text);

    let again = post(&server, "/api/v2/backfills", december(1, 2)).await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert_eq!(
        again.json["detail"],
        "There is already a running backfill for dag hello"
    );
    let none_left = post(&server, "/api/v2/backfills/dry_run", december(1, 3)).await;
    assert_eq!(none_left.json["total_entries"], 0);

    let paused = put(&server, &format!("/api/v2/backfills/{id}/pause")).await;
    assert_eq!(paused.status, StatusCode::OK, "{}", paused.text);
    assert_eq!(paused.json["is_paused"], true);
    let unpaused = put(&server, &format!("/api/v2/backfills/{id}/unpause")).await;
    assert_eq!(unpaused.json["is_paused"], false);

    let cancelled = put(&server, &format!("/api/v2/backfills/{id}/cancel")).await;
    assert_eq!(cancelled.status, StatusCode::OK, "{}", cancelled.text);
    assert_eq!(cancelled.json["is_paused"], true);
    assert!(cancelled.json["completed_at"].is_string());
    assert!(
        backfill_runs(&server)
            .await
            .iter()
            .all(|(_, s)| s == "failed"),
        "the runs not started are failed"
    );
    for action in ["cancel", "pause", "unpause"] {
        let done = put(&server, &format!("/api/v2/backfills/{id}/{action}")).await;
        assert_eq!(done.status, StatusCode::CONFLICT, "{action}");
        assert_eq!(done.json["detail"], "Backfill is already completed.");
    }

    // The failed runs are run again when asked, in the same runs.
    let mut rerun = december(1, 2);
    rerun["reprocess_behavior"] = json!("failed");
    rerun["run_backwards"] = json!(true);
    let dry = post(&server, "/api/v2/backfills/dry_run", rerun.clone()).await;
    assert_eq!(dry.json["total_entries"], 2);
    assert_eq!(
        dry.json["backfills"][0]["logical_date"],
        "2025-12-02T00:00:00Z"
    );
    let second = post(&server, "/api/v2/backfills", rerun).await;
    assert_eq!(second.status, StatusCode::OK, "{}", second.text);
    assert_eq!(second.json["reprocess_behavior"], "failed");
    let states: Vec<String> = backfill_runs(&server)
        .await
        .into_iter()
        .map(|(_, s)| s)
        .collect();
    assert_eq!(states, ["queued", "queued", "failed"]);

    let listed = server
        .get("/api/v2/backfills?dag_id=hello&order_by=-id")
        .await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.text);
    assert_eq!(listed.json["total_entries"], 2);
    assert_eq!(listed.json["backfills"][0]["id"], second.json["id"]);
    let one = server.get(&format!("/api/v2/backfills/{id}")).await;
    assert_eq!(one.json, cancelled.json);
    server.finish().await;
}

#[tokio::test]
async fn backfill_requests_are_checked_as_airflow_checks_them() {
    let server = TestServer::sqlite().await;
    server
        .load_dags(&[("hello.yaml", HELLO), ("manual.yaml", MANUAL)])
        .await;
    let refused = |body: Value| {
        let server = &server;
        async move {
            let answer = post(server, "/api/v2/backfills", body.clone()).await;
            let dry = post(server, "/api/v2/backfills/dry_run", body).await;
            assert_eq!(answer.status, dry.status);
            assert_eq!(answer.json, dry.json);
            (answer.status, answer.json["detail"].clone())
        }
    };
    assert_eq!(
        refused(json!({"dag_id": "nope", "from_date": "2025-12-01", "to_date": "2025-12-02"}))
            .await,
        (StatusCode::NOT_FOUND, json!("Could not find dag nope"))
    );
    assert_eq!(
        refused(json!({"dag_id": "manual", "from_date": "2025-12-01", "to_date": "2025-12-02"}))
            .await,
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            json!("manual has a non-periodic schedule that does not support backfills")
        )
    );
    assert_eq!(
        refused(december(3, 1)).await,
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            json!(
                "from_date (2025-12-03T00:00:00+00:00) must not be after to_date (2025-12-01T00:00:00+00:00)."
            )
        )
    );
    assert_eq!(
        refused(json!({"dag_id": "hello", "from_date": "2999-01-01", "to_date": "2999-01-02"}))
            .await,
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            json!("Backfill cannot be executed for future dates.")
        )
    );
    let mut bad_conf = december(1, 2);
    bad_conf["dag_run_conf"] = json!({"name": 3});
    let (status, _) = refused(bad_conf).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = refused(json!({"dag_id": "hello", "from_date": "2025-12-01"})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    let missing = server.get("/api/v2/backfills/999").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.json["detail"], "Backfill not found");
    let cancel_missing = put(&server, "/api/v2/backfills/999/cancel").await;
    assert_eq!(cancel_missing.status, StatusCode::NOT_FOUND);
    let no_dag = server.get("/api/v2/backfills").await;
    assert_eq!(no_dag.status, StatusCode::UNPROCESSABLE_ENTITY);
    let viewer = server
        .call(
            Method::POST,
            "/api/v2/backfills",
            Some(Role::Viewer),
            Some(december(1, 2)),
        )
        .await;
    assert_eq!(viewer.status, StatusCode::FORBIDDEN);
    server.finish().await;
}
