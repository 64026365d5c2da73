//! `POST .../xcomEntries`: an XCom added by hand, never replacing one, masked when answered,
//! with Airflow's 404, 409 and 422 bodies.

mod common;

use axum::http::{Method, StatusCode};
use common::{Answer, HELLO, TestServer};
use gust_store::Role;
use serde_json::{Value, json};

const ENTRIES: &str = "/api/v2/dags/hello/dagRuns/r/taskInstances/say/xcomEntries";

async fn create(server: &TestServer, uri: &str, role: Role, body: Value) -> Answer {
    server.call(Method::POST, uri, Some(role), Some(body)).await
}

#[tokio::test]
async fn an_xcom_is_created_once_and_read_back() {
    let server = TestServer::sqlite().await;
    server.load_dags(&[("hello.yaml", HELLO)]).await;
    server.trigger("hello", "r", None).await;

    let created = create(
        &server,
        ENTRIES,
        Role::Op,
        json!({"key": "counts", "value": {"rows": 3}}),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    assert_eq!(created.json["key"], "counts");
    assert_eq!(created.json["task_id"], "say");
    assert_eq!(created.json["run_id"], "r");
    assert_eq!(created.json["map_index"], -1);
    assert_eq!(created.json["value"], json!({"rows": 3}));
    let read = server.get(&format!("{ENTRIES}/counts")).await;
    assert_eq!(read.json["value"], json!({"rows": 3}));

    // A value under a sensitive name is stored, but never answered.
    let secret = create(
        &server,
        ENTRIES,
        Role::Op,
        json!({"key": "creds", "value": {"password": "hunter2-secret"}}),
    )
    .await;
    assert_eq!(secret.status, StatusCode::CREATED, "{}", secret.text);
    assert!(!secret.text.contains("hunter2"), "{}", secret.text);

    let again = create(
        &server,
        ENTRIES,
        Role::Op,
        json!({"key": "counts", "value": 0}),
    )
    .await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert_eq!(
        again.json,
        json!({"detail": "The XCom with key: `counts` with mentioned task instance already exists."})
    );
    let by_user = create(
        &server,
        ENTRIES,
        Role::User,
        json!({"key": "k", "value": 1}),
    )
    .await;
    assert_eq!(by_user.status, StatusCode::FORBIDDEN);

    for (uri, detail) in [
        (
            "/api/v2/dags/nope/dagRuns/r/taskInstances/say/xcomEntries",
            "The Dag with ID: `nope` was not found",
        ),
        (
            "/api/v2/dags/hello/dagRuns/r/taskInstances/nope/xcomEntries",
            "Task with ID: `nope` not found in dag: `hello`",
        ),
        (
            "/api/v2/dags/hello/dagRuns/gone/taskInstances/say/xcomEntries",
            "Dag Run with ID: `gone` not found for dag: `hello`",
        ),
    ] {
        let answer = create(&server, uri, Role::Op, json!({"key": "k", "value": 1})).await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{uri}");
        assert_eq!(answer.json, json!({ "detail": detail }), "{uri}");
    }
    let reserved = create(
        &server,
        ENTRIES,
        Role::Op,
        json!({"key": "k", "value": {"a": {"__classname__": "os.system"}}}),
    )
    .await;
    assert_eq!(reserved.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(reserved.json["detail"][0]["loc"], json!(["body", "value"]));
    let unknown_field = create(
        &server,
        ENTRIES,
        Role::Op,
        json!({"key": "k", "value": 1, "colour": "red"}),
    )
    .await;
    assert_eq!(unknown_field.status, StatusCode::UNPROCESSABLE_ENTITY);
    let mapped = create(
        &server,
        ENTRIES,
        Role::Op,
        json!({"key": "k", "value": 1, "map_index": 2}),
    )
    .await;
    assert_eq!(
        mapped.status,
        StatusCode::CREATED,
        "one instance's own XCom"
    );
    assert_eq!(mapped.json["map_index"], 2);
    let below = create(
        &server,
        ENTRIES,
        Role::Op,
        json!({"key": "k", "value": 1, "map_index": -2}),
    )
    .await;
    assert_eq!(below.status, StatusCode::BAD_REQUEST);
    server.finish().await;
}
