//! `/api/v2/pools`: create, read, list, update and delete, `default_pool`'s special rules, and
//! slot counts from the task instances of unfinished runs.

mod common;

use axum::http::{Method, StatusCode};
use common::{TestServer, t0};
use gust_core::state::TaskState;
use gust_store::{NewRun, Role, RunType};
use serde_json::json;

const ETL: &str = r#"
etl:
  schedule: null
  start_date: 2025-12-30
  tasks:
    - task_id: extract
      operator: bash
      bash_command: echo 1
      pool: etl
      pool_slots: 2
    - task_id: load
      operator: bash
      bash_command: echo 2
      pool: etl
    - task_id: report
      operator: bash
      bash_command: echo 3
"#;

#[tokio::test]
async fn slots_in_use_are_counted_from_running_and_waiting_tasks() {
    let server = TestServer::sqlite().await;
    server.load_dags(&[("etl.yaml", ETL)]).await;
    let created = server
        .call(
            Method::POST,
            "/api/v2/pools",
            Some(Role::Op),
            Some(json!({"name": "etl", "slots": 5, "description": "loads"})),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    assert_eq!(created.json["open_slots"], 5);

    let store = &server.db.store;
    let run = NewRun {
        dag_id: "etl".into(),
        run_id: "manual__1".into(),
        run_type: RunType::Manual,
        logical_date: t0(),
        data_interval: (t0(), t0()),
        conf: serde_json::Map::new(),
        queued_at: t0(),
    };
    assert!(store.create_run(&run).await.unwrap());
    store
        .create_task_instances("etl", "manual__1", &["extract", "load", "report"])
        .await
        .unwrap();
    let tis = store.task_instances("etl", "manual__1").await.unwrap();
    let ti = |id: &str| tis.iter().find(|t| t.task_id == id).unwrap().clone();
    for (task, to) in [
        ("extract", TaskState::Queued),
        ("load", TaskState::Scheduled),
        ("report", TaskState::Queued),
    ] {
        assert!(store.transition_task_instance(&ti(task), to).await.unwrap());
    }
    let extract = store
        .task_instances("etl", "manual__1")
        .await
        .unwrap()
        .into_iter()
        .find(|t| t.task_id == "extract")
        .unwrap();
    assert!(
        store
            .transition_task_instance(&extract, TaskState::Running)
            .await
            .unwrap()
    );

    let etl = server.get("/api/v2/pools/etl").await;
    assert_eq!(etl.status, StatusCode::OK, "{}", etl.text);
    assert_eq!(
        etl.json,
        json!({
            "name": "etl",
            "slots": 5,
            "description": "loads",
            "include_deferred": false,
            "occupied_slots": 2,
            "running_slots": 2,
            "queued_slots": 0,
            "scheduled_slots": 1,
            "open_slots": 3,
            "deferred_slots": 0,
            "team_name": null
        })
    );
    let default = server.get("/api/v2/pools/default_pool").await;
    assert_eq!(default.json["queued_slots"], 1, "report uses default_pool");
    assert_eq!(default.json["open_slots"], 127);
    let all = server.get("/api/v2/pools").await;
    assert_eq!(all.json["total_entries"], 2);
    server.finish().await;
}

#[tokio::test]
async fn a_pool_is_resized_and_deleted_but_default_pool_stays() {
    let server = TestServer::sqlite().await;
    let post = |body| server.call(Method::POST, "/api/v2/pools", Some(Role::Op), Some(body));
    assert_eq!(
        post(json!({"name": "p", "slots": 1})).await.status,
        StatusCode::CREATED
    );
    let again = post(json!({"name": "p", "slots": 2})).await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    for bad in [
        json!({"name": "q", "slots": -1}),
        json!({"name": "q"}),
        json!({"name": "q", "slots": 1, "team_name": "t"}),
    ] {
        assert_eq!(
            post(bad.clone()).await.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{bad}"
        );
    }
    let patch =
        |uri: &'static str, body| server.call(Method::PATCH, uri, Some(Role::Op), Some(body));
    let resized = patch("/api/v2/pools/p", json!({"slots": 7, "description": "d"})).await;
    assert_eq!(resized.status, StatusCode::OK, "{}", resized.text);
    assert_eq!(resized.json["slots"], 7);
    assert_eq!(resized.json["description"], "d");
    let masked = patch(
        "/api/v2/pools/p?update_mask=description",
        json!({"slots": 9, "description": "e"}),
    )
    .await;
    assert_eq!(masked.json["slots"], 7);
    assert_eq!(masked.json["description"], "e");
    assert_eq!(
        patch("/api/v2/pools/p", json!({"pool": "other"}))
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        patch("/api/v2/pools/nope", json!({"slots": 1}))
            .await
            .status,
        StatusCode::NOT_FOUND
    );

    let default_any = patch("/api/v2/pools/default_pool", json!({"slots": 3})).await;
    assert_eq!(default_any.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        default_any.json["detail"],
        "Only slots and included_deferred can be modified on Default Pool"
    );
    let default_slots = patch(
        "/api/v2/pools/default_pool?update_mask=slots",
        json!({"slots": 3}),
    )
    .await;
    assert_eq!(
        default_slots.status,
        StatusCode::OK,
        "{}",
        default_slots.text
    );
    assert_eq!(default_slots.json["slots"], 3);
    assert_eq!(
        server
            .db
            .store
            .pool("default_pool")
            .await
            .unwrap()
            .unwrap()
            .slots,
        3,
        "the scheduler reads the new size"
    );

    let delete = |uri: &'static str| server.call(Method::DELETE, uri, Some(Role::Op), None);
    let default = delete("/api/v2/pools/default_pool").await;
    assert_eq!(default.status, StatusCode::BAD_REQUEST);
    assert_eq!(default.json["detail"], "Default Pool can't be deleted");
    assert_eq!(
        delete("/api/v2/pools/p").await.status,
        StatusCode::NO_CONTENT
    );
    let gone = delete("/api/v2/pools/p").await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    assert_eq!(gone.json["detail"], "The Pool with name: `p` was not found");
    server.finish().await;
}

#[tokio::test]
async fn lists_filter_and_page() {
    let server = TestServer::sqlite().await;
    for name in ["etl_a", "etl_b"] {
        let answer = server
            .call(
                Method::POST,
                "/api/v2/pools",
                Some(Role::Op),
                Some(json!({"name": name, "slots": 1})),
            )
            .await;
        assert_eq!(answer.status, StatusCode::CREATED);
    }
    let etl = server.get("/api/v2/pools?pool_name_pattern=ETL").await;
    assert_eq!(etl.json["total_entries"], 2);
    let page = server.get("/api/v2/pools?order_by=-name&limit=1").await;
    assert_eq!(page.json["total_entries"], 3);
    assert_eq!(page.json["pools"][0]["name"], "etl_b");
    let prefixed = server
        .get("/api/v2/pools?pool_name_prefix_pattern=default")
        .await;
    assert_eq!(prefixed.json["pools"][0]["name"], "default_pool");
    server.finish().await;
}

#[tokio::test]
async fn pools_work_on_postgres() {
    let Some(db) = gust_store::testing::TestDb::postgres().await else {
        return;
    };
    let server = TestServer::on(db).await;
    server.load_dags(&[("etl.yaml", ETL)]).await;
    let created = server
        .call(
            Method::POST,
            "/api/v2/pools",
            Some(Role::Op),
            Some(json!({"name": "etl", "slots": 2})),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    assert_eq!(server.get("/api/v2/pools").await.json["total_entries"], 2);
    server.finish().await;
}
