//! The bulk endpoints (`PATCH /variables`, `/connections`, `/pools`, `/dags`): actions in
//! order, Airflow's `action_on_existence` / `action_on_non_existence`, its messages for a
//! failed existence check, 422 for an entity that does not validate, and who may call them.

mod common;

use axum::http::{Method, StatusCode};
use common::{HELLO, TestServer};
use gust_store::Role;
use serde_json::{Value, json};

async fn bulk(server: &TestServer, resource: &str, role: Role, body: Value) -> Value {
    let answer = server
        .call(
            Method::PATCH,
            &format!("/api/v2/{resource}"),
            Some(role),
            Some(body),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    answer.json
}

#[tokio::test]
async fn variables_are_created_updated_and_deleted_in_bulk() {
    let server = TestServer::sqlite().await;
    let created = bulk(
        &server,
        "variables",
        Role::Op,
        json!({"actions": [
            {"action": "create", "entities": [
                {"key": "a", "value": "1"},
                {"key": "b", "value": {"x": 1}, "description": "json"}
            ]}
        ]}),
    )
    .await;
    assert_eq!(
        created,
        json!({"create": {"success": ["a", "b"], "errors": []}, "update": null, "delete": null})
    );
    let fernet = server.fernet();
    assert_eq!(
        server
            .db
            .store
            .variable("b", fernet)
            .await
            .unwrap()
            .as_deref(),
        Some("{\n  \"x\": 1\n}")
    );

    // Failing on existence changes nothing; skipping leaves the existing ones alone;
    // overwriting changes them.
    let mixed = bulk(
        &server,
        "variables",
        Role::Op,
        json!({"actions": [
            {"action": "create", "entities": [{"key": "a", "value": "2"}, {"key": "c", "value": "3"}]},
            {"action": "create", "action_on_existence": "skip",
             "entities": [{"key": "a", "value": "2"}, {"key": "d", "value": "4"}]},
            {"action": "create", "action_on_existence": "overwrite",
             "entities": [{"key": "b", "value": "5"}]},
            {"action": "update", "entities": [{"key": "a", "value": "6"}, {"key": "zz", "value": "0"}]},
            {"action": "update", "action_on_non_existence": "skip", "update_mask": ["value"],
             "entities": [{"key": "a", "value": "7", "description": "ignored"}, {"key": "zz", "value": "0"}]},
            {"action": "delete", "entities": ["d", "nope"]},
            {"action": "delete", "action_on_non_existence": "skip", "entities": ["d", {"key": "nope"}]}
        ]}),
    )
    .await;
    assert_eq!(
        mixed,
        json!({
            "create": {"success": ["d", "b"], "errors": [
                {"error": "The variables with these keys: {'a'} already exist.", "status_code": 409}
            ]},
            "update": {"success": ["a"], "errors": [
                {"error": "The variables with these keys: {'zz'} were not found.", "status_code": 404}
            ]},
            "delete": {"success": ["d"], "errors": [
                {"error": "The variables with these keys: {'nope'} were not found.", "status_code": 404}
            ]}
        })
    );
    let read = |key: &'static str| {
        let server = &server;
        async move { server.db.store.variable(key, fernet).await.unwrap() }
    };
    assert_eq!(read("a").await.as_deref(), Some("7"));
    assert_eq!(read("b").await.as_deref(), Some("5"));
    assert_eq!(read("c").await, None);
    assert_eq!(read("d").await, None);
    let description = server.get("/api/v2/variables/a").await;
    assert_eq!(description.json["description"], Value::Null);

    let invalid = server
        .call(
            Method::PATCH,
            "/api/v2/variables",
            Some(Role::Op),
            Some(json!({"actions": [{"action": "create", "entities": [{"value": "no key"}]}]})),
        )
        .await;
    assert_eq!(
        invalid.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        invalid.text
    );
    let refused = server
        .call(
            Method::PATCH,
            "/api/v2/variables",
            Some(Role::User),
            Some(json!({"actions": []})),
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    server.finish().await;
}

#[tokio::test]
async fn connections_are_changed_in_bulk_with_their_secrets_kept() {
    let server = TestServer::sqlite().await;
    let created = bulk(
        &server,
        "connections",
        Role::Op,
        json!({"actions": [{"action": "create", "entities": [
            {"connection_id": "db", "conn_type": "postgres", "host": "h", "password": "hunter2"},
            {"connection_id": "api", "conn_type": "http"}
        ]}]}),
    )
    .await;
    assert_eq!(created["create"]["success"], json!(["db", "api"]));
    let updated = bulk(
        &server,
        "connections",
        Role::Op,
        json!({"actions": [
            {"action": "update", "entities": [
                {"connection_id": "db", "conn_type": "postgres", "host": "h2", "password": "***"}
            ]},
            {"action": "create", "entities": [{"connection_id": "api", "conn_type": "http"}]},
            {"action": "delete", "entities": ["api"]}
        ]}),
    )
    .await;
    assert_eq!(
        updated,
        json!({
            "create": {"success": [], "errors": [{
                "error": "The connections with these connection_ids: {'api'} already exist.",
                "status_code": 409
            }]},
            "update": {"success": ["db"], "errors": []},
            "delete": {"success": ["api"], "errors": []}
        })
    );
    let db = server
        .db
        .store
        .connection("db", server.fernet())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(db.host.as_deref(), Some("h2"));
    assert_eq!(
        db.password
            .as_ref()
            .map(|p| p.expose().to_owned())
            .as_deref(),
        Some("hunter2"),
        "*** keeps the stored password"
    );
    let bad_id = server
        .call(
            Method::PATCH,
            "/api/v2/connections",
            Some(Role::Op),
            Some(json!({"actions": [{"action": "create", "entities": [
                {"connection_id": "no spaces", "conn_type": "http"}]}]})),
        )
        .await;
    assert_eq!(bad_id.status, StatusCode::UNPROCESSABLE_ENTITY);
    server.finish().await;
}

#[tokio::test]
async fn pools_are_changed_in_bulk_and_the_default_pool_is_guarded() {
    let server = TestServer::sqlite().await;
    let answer = bulk(
        &server,
        "pools",
        Role::Op,
        json!({"actions": [
            {"action": "create", "entities": [{"name": "gpu", "slots": 2}, {"name": "cpu", "slots": 8}]},
            {"action": "update", "update_mask": ["slots"], "entities": [
                {"name": "gpu", "slots": 4, "description": "ignored"},
                {"name": "default_pool", "slots": 64}
            ]},
            {"action": "delete", "entities": ["cpu"]}
        ]}),
    )
    .await;
    assert_eq!(
        answer,
        json!({
            "create": {"success": ["gpu", "cpu"], "errors": []},
            "update": {"success": ["gpu", "default_pool"], "errors": []},
            "delete": {"success": ["cpu"], "errors": []}
        })
    );
    let gpu = server.get("/api/v2/pools/gpu").await;
    assert_eq!(gpu.json["slots"], 4);
    assert_eq!(gpu.json["description"], Value::Null);
    assert_eq!(
        server.get("/api/v2/pools/default_pool").await.json["slots"],
        64
    );

    let guarded = bulk(
        &server,
        "pools",
        Role::Op,
        json!({"actions": [
            {"action": "update", "entities": [{"name": "default_pool", "slots": 1, "description": "x"}]},
            {"action": "delete", "entities": ["default_pool"]}
        ]}),
    )
    .await;
    assert_eq!(
        guarded,
        json!({
            "create": null,
            "update": {"success": [], "errors": [{
                "error": "Only slots and included_deferred can be modified on Default Pool",
                "status_code": 400
            }]},
            "delete": {"success": [], "errors": [{
                "error": "Default Pool can't be deleted", "status_code": 400
            }]}
        })
    );
    let refused = server
        .call(
            Method::PATCH,
            "/api/v2/pools",
            Some(Role::User),
            Some(json!({"actions": []})),
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    server.finish().await;
}

const OTHER: &str = r#"
other:
  schedule: "@daily"
  start_date: 2025-12-30
  tasks:
    - task_id: a
      operator: bash
      bash_command: "true"
"#;

#[tokio::test]
async fn dags_matching_the_filters_are_paused_together() {
    let server = TestServer::sqlite().await;
    server
        .load_dags(&[("hello.yaml", HELLO), ("other.yaml", OTHER)])
        .await;
    let paused = |dag_id: &'static str| {
        let server = &server;
        async move {
            server
                .db
                .store
                .dag_summary(dag_id)
                .await
                .unwrap()
                .unwrap()
                .is_paused
        }
    };

    // No pattern, no DAG (as Airflow: pass `~` for all).
    let none = server
        .call(
            Method::PATCH,
            "/api/v2/dags",
            Some(Role::User),
            Some(json!({"is_paused": true})),
        )
        .await;
    assert_eq!(none.status, StatusCode::OK, "{}", none.text);
    assert_eq!(none.json["total_entries"], 0);
    assert!(!paused("hello").await);

    let tagged = server
        .call(
            Method::PATCH,
            "/api/v2/dags?dag_id_pattern=~&tags=example",
            Some(Role::User),
            Some(json!({"is_paused": true})),
        )
        .await;
    assert_eq!(tagged.json["total_entries"], 1, "{}", tagged.text);
    assert_eq!(tagged.json["dags"][0]["dag_id"], "hello");
    assert_eq!(tagged.json["dags"][0]["is_paused"], true);
    assert!(paused("hello").await);
    assert!(!paused("other").await);

    let all = server
        .call(
            Method::PATCH,
            "/api/v2/dags?dag_id_pattern=%25&limit=1&update_mask=is_paused",
            Some(Role::User),
            Some(json!({"is_paused": false})),
        )
        .await;
    assert_eq!(all.json["total_entries"], 2);
    assert_eq!(all.json["dags"].as_array().unwrap().len(), 1);
    assert!(!paused("hello").await && !paused("other").await);

    let bad_mask = server
        .call(
            Method::PATCH,
            "/api/v2/dags?dag_id_pattern=~&update_mask=description",
            Some(Role::User),
            Some(json!({"is_paused": true})),
        )
        .await;
    assert_eq!(bad_mask.status, StatusCode::BAD_REQUEST);
    let viewer = server
        .call(
            Method::PATCH,
            "/api/v2/dags?dag_id_pattern=~",
            Some(Role::Viewer),
            Some(json!({"is_paused": true})),
        )
        .await;
    assert_eq!(viewer.status, StatusCode::FORBIDDEN);
    server.finish().await;
}
