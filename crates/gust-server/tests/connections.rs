//! `/api/v2/connections`: create, read, list, update and delete, with secrets write-only
//! (answered as `***`, kept when `***` is sent back) and encrypted at rest.

mod common;

use axum::http::{Method, StatusCode};
use common::TestServer;
use gust_store::{Connection, Role};
use serde_json::{Value, json};

/// The connection as stored, secrets decrypted.
async fn stored_connection(server: &TestServer, id: &str) -> Connection {
    let key = server
        .state
        .fernet_key()
        .expect("the test server has a key");
    server
        .db
        .store
        .connection(id, key)
        .await
        .expect("reading a connection")
        .expect("the connection exists")
}

fn warehouse() -> Value {
    json!({
        "connection_id": "warehouse",
        "conn_type": "postgres",
        "host": "db.internal",
        "login": "etl",
        "schema": "analytics",
        "port": 5432,
        "password": "hunter2",
        "extra": r#"{"sslmode": "require", "api_key": "k-123"}"#,
        "description": "the warehouse"
    })
}

#[tokio::test]
async fn secrets_are_written_but_never_read_back() {
    let server = TestServer::sqlite().await;
    let created = server
        .call(
            Method::POST,
            "/api/v2/connections",
            Some(Role::Op),
            Some(warehouse()),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    assert_eq!(
        created.json,
        json!({
            "connection_id": "warehouse",
            "conn_type": "postgres",
            "description": "the warehouse",
            "host": "db.internal",
            "login": "etl",
            "schema": "analytics",
            "port": 5432,
            "password": "***",
            "extra": r#"{"sslmode": "require", "api_key": "***"}"#,
            "team_name": null
        })
    );
    for answer in [
        server.get("/api/v2/connections/warehouse").await,
        server.get("/api/v2/connections").await,
    ] {
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
        assert!(!answer.text.contains("hunter2") && !answer.text.contains("k-123"));
    }
    let raw = server
        .db
        .store
        .raw_connection_password("warehouse")
        .await
        .unwrap()
        .unwrap();
    assert!(!raw.contains("hunter2"), "encrypted at rest");
    let stored = stored_connection(&server, "warehouse").await;
    assert_eq!(stored.password.unwrap().expose(), "hunter2");
    assert_eq!(stored.schema.as_deref(), Some("analytics"));
    server.finish().await;
}

#[tokio::test]
async fn a_mask_sent_back_keeps_the_secret_and_a_new_value_replaces_it() {
    let server = TestServer::sqlite().await;
    server
        .call(
            Method::POST,
            "/api/v2/connections",
            Some(Role::Op),
            Some(warehouse()),
        )
        .await;
    let read_back = server.get("/api/v2/connections/warehouse").await.json;
    let mut body = read_back.clone();
    body["host"] = json!("db2.internal");
    body["extra"] = json!(r#"{"sslmode": "disable", "api_key": "***"}"#);
    let patched = server
        .call(
            Method::PATCH,
            "/api/v2/connections/warehouse",
            Some(Role::Op),
            Some(body),
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.text);
    assert_eq!(patched.json["host"], "db2.internal");
    let stored = stored_connection(&server, "warehouse").await;
    assert_eq!(stored.password.unwrap().expose(), "hunter2");
    let extra: Value = serde_json::from_str(stored.extra.unwrap().expose()).unwrap();
    assert_eq!(extra, json!({"sslmode": "disable", "api_key": "k-123"}));

    let new_password = server
        .call(
            Method::PATCH,
            "/api/v2/connections/warehouse?update_mask=password",
            Some(Role::Op),
            Some(
                json!({"connection_id": "warehouse", "conn_type": "ignored", "password": "s3cret"}),
            ),
        )
        .await;
    assert_eq!(new_password.status, StatusCode::OK, "{}", new_password.text);
    assert_eq!(
        new_password.json["conn_type"], "postgres",
        "not in the mask"
    );
    let stored = stored_connection(&server, "warehouse").await;
    assert_eq!(stored.password.unwrap().expose(), "s3cret");
    assert_eq!(stored.host.as_deref(), Some("db2.internal"));
    server.finish().await;
}

#[tokio::test]
async fn missing_duplicate_and_malformed_connections_are_refused() {
    let server = TestServer::sqlite().await;
    let created = server
        .call(
            Method::POST,
            "/api/v2/connections",
            Some(Role::Op),
            Some(json!({"connection_id": "bare", "conn_type": "http"})),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    assert_eq!(created.json["password"], json!(null));
    assert_eq!(created.json["extra"], json!(null));
    let again = server
        .call(
            Method::POST,
            "/api/v2/connections",
            Some(Role::Op),
            Some(json!({"connection_id": "bare", "conn_type": "http"})),
        )
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    let missing = server.get("/api/v2/connections/nope").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(
        missing.json["detail"],
        "The Connection with connection_id: `nope` was not found"
    );
    for body in [
        json!({"connection_id": "has space", "conn_type": "http"}),
        json!({"connection_id": "x", "conn_type": "http", "extra": "[1]"}),
        json!({"connection_id": "x", "conn_type": "http", "extra": "not json"}),
        json!({"connection_id": "x", "conn_type": "http", "port": 1_u64 << 40}),
        json!({"connection_id": "x"}),
    ] {
        let answer = server
            .call(
                Method::POST,
                "/api/v2/connections",
                Some(Role::Op),
                Some(body.clone()),
            )
            .await;
        assert_eq!(
            answer.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {}",
            answer.text
        );
    }
    let mismatch = server
        .call(
            Method::PATCH,
            "/api/v2/connections/bare",
            Some(Role::Op),
            Some(json!({"connection_id": "other", "conn_type": "http"})),
        )
        .await;
    assert_eq!(mismatch.status, StatusCode::BAD_REQUEST);
    let deleted = server
        .call(
            Method::DELETE,
            "/api/v2/connections/bare",
            Some(Role::Op),
            None,
        )
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    let gone = server
        .call(
            Method::DELETE,
            "/api/v2/connections/bare",
            Some(Role::Op),
            None,
        )
        .await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    server.finish().await;
}

#[tokio::test]
async fn lists_filter_and_page() {
    let server = TestServer::sqlite().await;
    for id in ["a_http", "b_pg", "c_pg"] {
        let answer = server
            .call(
                Method::POST,
                "/api/v2/connections",
                Some(Role::Op),
                Some(json!({"connection_id": id, "conn_type": "t"})),
            )
            .await;
        assert_eq!(answer.status, StatusCode::CREATED);
    }
    let page = server
        .get("/api/v2/connections?order_by=-connection_id&limit=1")
        .await;
    assert_eq!(page.json["total_entries"], 3);
    assert_eq!(page.json["connections"][0]["connection_id"], "c_pg");
    let pg = server
        .get("/api/v2/connections?connection_id_pattern=PG")
        .await;
    assert_eq!(pg.json["total_entries"], 2);
    server.finish().await;
}

#[tokio::test]
async fn connections_work_on_postgres() {
    let Some(db) = gust_store::testing::TestDb::postgres().await else {
        return;
    };
    let server = TestServer::on(db).await;
    let created = server
        .call(
            Method::POST,
            "/api/v2/connections",
            Some(Role::Op),
            Some(warehouse()),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    assert_eq!(
        server.get("/api/v2/connections").await.json["total_entries"],
        1
    );
    server.finish().await;
}
