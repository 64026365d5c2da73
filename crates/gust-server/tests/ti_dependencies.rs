//! `.../taskInstances/{task_id}/dependencies`: why an instance is not running, with Airflow's
//! dependency names and reasons, from Gust's own scheduling rules.

mod common;

use axum::http::{Method, StatusCode};
use common::{TestServer, t0};
use gust_core::state::TaskState;
use gust_store::Role;
use serde_json::{Value, json};

const DEPS: &str = r#"
deps:
  schedule: "@daily"
  start_date: 2025-12-30
  tasks:
    - task_id: first
      operator: bash
      bash_command: "true"
    - task_id: second
      operator: bash
      bash_command: "true"
      dependencies: [first]
      pool: gpu
      depends_on_past: true
"#;

const BASE: &str = "/api/v2/dags/deps/dagRuns";

async fn deps_of(server: &TestServer, run_id: &str, task_id: &str) -> Value {
    let answer = server
        .get(&format!(
            "{BASE}/{run_id}/taskInstances/{task_id}/dependencies"
        ))
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    answer.json
}

fn names(deps: &Value) -> Vec<&str> {
    deps["dependencies"]
        .as_array()
        .expect("a list of dependencies")
        .iter()
        .filter_map(|d| d["name"].as_str())
        .collect()
}

#[tokio::test]
async fn an_instance_that_waits_says_what_it_waits_for() {
    let server = TestServer::sqlite().await;
    server.load_dags(&[("deps.yaml", DEPS)]).await;
    server
        .trigger("deps", "r", Some("2026-01-02T00:00:00Z"))
        .await;
    let paused = server
        .call(
            Method::PATCH,
            "/api/v2/dags/deps",
            Some(Role::User),
            Some(json!({"is_paused": true})),
        )
        .await;
    assert_eq!(paused.status, StatusCode::OK, "{}", paused.text);

    let second = deps_of(&server, "r", "second").await;
    assert_eq!(
        second,
        json!({"dependencies": [
            {"name": "Dag Not Paused", "reason": "Task's DAG 'deps' is paused."},
            {"name": "Dagrun Running", "reason": "Task instance's dagrun was not in the 'running' state but in the state 'queued'."},
            {"name": "Pool Slots Available", "reason": "Tasks using non-existent pool 'gpu' will not be scheduled"},
            {"name": "Trigger Rule", "reason": "Task's trigger rule 'all_success' requires all upstream tasks to have succeeded, but found 1 non-success(es). upstream_states=_UpstreamTIStates(success=0, skipped=0, failed=0, upstream_failed=0, removed=0, done=0, success_setup=0, skipped_setup=0), upstream_task_ids={'first'}"},
        ]})
    );
    assert_eq!(
        names(&deps_of(&server, "r", "first").await),
        ["Dag Not Paused", "Dagrun Running"]
    );
    // The map-index form answers the same for -1, the only index Gust has.
    let mapped = server
        .get(&format!("{BASE}/r/taskInstances/first/-1/dependencies"))
        .await;
    assert_eq!(mapped.status, StatusCode::OK, "{}", mapped.text);
    assert_eq!(names(&mapped.json), ["Dag Not Paused", "Dagrun Running"]);

    // Running, unpaused, its upstream done and its pool full: only the pool holds it back.
    let store = &server.db.store;
    let unpaused = server
        .call(
            Method::PATCH,
            "/api/v2/dags/deps",
            Some(Role::User),
            Some(json!({"is_paused": false})),
        )
        .await;
    assert_eq!(unpaused.status, StatusCode::OK);
    server.start_run("deps", "r", &["first", "second"]).await;
    let marked = store
        .mark_task_instances(
            "deps",
            "r",
            &["first".to_owned()],
            TaskState::Success,
            &[],
            t0(),
        )
        .await
        .expect("the test setup works");
    assert_eq!(marked, ["first"]);
    let pool = server
        .call(
            Method::POST,
            "/api/v2/pools",
            Some(Role::Op),
            Some(json!({"name": "gpu", "slots": 0})),
        )
        .await;
    assert_eq!(pool.status, StatusCode::CREATED, "{}", pool.text);
    assert_eq!(
        deps_of(&server, "r", "second").await,
        json!({"dependencies": [
            {"name": "Pool Slots Available", "reason": "Not scheduling since there are 0 open slots in pool gpu and require 1 pool slots"},
        ]})
    );
    // An instance that finished is not waiting for anything.
    assert_eq!(
        deps_of(&server, "r", "first").await,
        json!({"dependencies": []})
    );

    // The next run's `second` waits for this run's, which has not succeeded.
    server
        .trigger("deps", "next", Some("2026-01-03T00:00:00Z"))
        .await;
    let next = deps_of(&server, "next", "second").await;
    assert!(names(&next).contains(&"Previous Dagrun State"), "{next}");
    server.finish().await;
}

#[tokio::test]
async fn an_unknown_instance_is_a_404_and_a_bad_index_a_422() {
    let server = TestServer::sqlite().await;
    server.load_dags(&[("deps.yaml", DEPS)]).await;
    server
        .trigger("deps", "r", Some("2026-01-02T00:00:00Z"))
        .await;
    for (uri, detail) in [
        (
            format!("{BASE}/r/taskInstances/nope/dependencies"),
            "The Task Instance with dag_id: `deps`, run_id: `r`, task_id: `nope` and map_index: `-1` was not found",
        ),
        (
            format!("{BASE}/gone/taskInstances/first/dependencies"),
            "The Task Instance with dag_id: `deps`, run_id: `gone`, task_id: `first` and map_index: `-1` was not found",
        ),
        (
            format!("{BASE}/r/taskInstances/first/2/dependencies"),
            "The Task Instance with dag_id: `deps`, run_id: `r`, task_id: `first` and map_index: `2` was not found",
        ),
    ] {
        let answer = server.get(&uri).await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{uri}");
        assert_eq!(answer.json, json!({ "detail": detail }), "{uri}");
    }
    let bad = server
        .get(&format!("{BASE}/r/taskInstances/first/abc/dependencies"))
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", bad.text);
    assert_eq!(bad.json["detail"][0]["loc"], json!(["path", "map_index"]));
    server.finish().await;
}
