//! `/api/v2/dags/{dag_id}/dagVersions` and `/api/v2/dagSources/{dag_id}`: a DAG gets a new
//! version when its definition changes (not when its file is merely re-read), and each
//! version keeps the text its file had.

mod common;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use common::{HELLO, TestServer};
use gust_store::Role;
use serde_json::json;

#[tokio::test]
async fn each_change_of_definition_is_a_version_with_its_source() {
    let server = TestServer::sqlite().await;
    server.load_dags(&[("hello.yaml", HELLO)]).await;
    server.load_dags(&[("hello.yaml", HELLO)]).await;
    let changed = HELLO.replace("echo done", "echo finished");
    server.load_dags(&[("hello.yaml", &changed)]).await;

    let versions = server.get("/api/v2/dags/hello/dagVersions").await;
    assert_eq!(versions.status, StatusCode::OK, "{}", versions.text);
    assert_eq!(versions.json["total_entries"], 2, "{}", versions.text);
    let first = &versions.json["dag_versions"][0];
    assert_eq!(first["version_number"], 1);
    assert_eq!(first["dag_id"], "hello");
    assert_eq!(first["dag_display_name"], "hello");
    assert_eq!(first["bundle_name"], "dags-folder");
    assert_eq!(first["bundle_version"], serde_json::Value::Null);
    assert_eq!(first["created_at"], "2026-01-01T00:00:00Z");
    assert!(
        uuid::Uuid::parse_str(first["id"].as_str().unwrap()).is_ok(),
        "{first}"
    );

    let newest_first = server
        .get("/api/v2/dags/hello/dagVersions?order_by=-version_number&limit=1")
        .await;
    assert_eq!(newest_first.json["dag_versions"][0]["version_number"], 2);
    let only = server
        .get("/api/v2/dags/hello/dagVersions?version_number=1")
        .await;
    assert_eq!(only.json["total_entries"], 1);
    let every_dag = server.get("/api/v2/dags/~/dagVersions").await;
    assert_eq!(every_dag.json["total_entries"], 2);
    let one = server.get("/api/v2/dags/hello/dagVersions/2").await;
    assert_eq!(one.status, StatusCode::OK);
    assert_eq!(one.json, newest_first.json["dag_versions"][0]);

    let latest = server.get("/api/v2/dagSources/hello").await;
    assert_eq!(latest.status, StatusCode::OK, "{}", latest.text);
    assert_eq!(
        latest.json,
        json!({"content": changed, "dag_id": "hello", "version_number": 2, "dag_display_name": "hello"})
    );
    let old = server
        .get("/api/v2/dagSources/hello?version_number=1")
        .await;
    assert_eq!(old.json["content"], HELLO);
    let text = Request::get("/api/v2/dagSources/hello")
        .header("accept", "text/plain")
        .header(
            "authorization",
            format!("Bearer {}", server.token(Role::Viewer)),
        )
        .body(Body::empty())
        .unwrap();
    let text = server.send(text).await;
    assert_eq!(text.status, StatusCode::OK);
    assert!(text.content_type.starts_with("text/plain"));
    assert_eq!(text.text, changed);
    server.finish().await;
}

#[tokio::test]
async fn missing_dags_versions_and_formats_answer_as_airflow() {
    let server = TestServer::sqlite().await;
    server.load_dags(&[("hello.yaml", HELLO)]).await;
    let no_dag = server.get("/api/v2/dags/nope/dagVersions").await;
    assert_eq!(no_dag.status, StatusCode::NOT_FOUND);
    assert_eq!(
        no_dag.json["detail"],
        "The Dag with ID: `nope` was not found"
    );
    let no_version = server.get("/api/v2/dags/hello/dagVersions/7").await;
    assert_eq!(no_version.status, StatusCode::NOT_FOUND);
    assert_eq!(
        no_version.json["detail"],
        "The DagVersion with dag_id: `hello` and version_number: `7` was not found"
    );
    let bad_number = server.get("/api/v2/dags/hello/dagVersions/seven").await;
    assert_eq!(bad_number.status, StatusCode::UNPROCESSABLE_ENTITY);
    let no_source = server.get("/api/v2/dagSources/nope").await;
    assert_eq!(no_source.status, StatusCode::NOT_FOUND);
    assert_eq!(
        no_source.json["detail"],
        "The source code of the Dag nope, version_number None was not found"
    );
    let bad_order = server
        .get("/api/v2/dags/hello/dagVersions?order_by=x")
        .await;
    assert_eq!(bad_order.status, StatusCode::BAD_REQUEST);
    let xml = Request::get("/api/v2/dagSources/hello")
        .header("accept", "application/xml")
        .header(
            "authorization",
            format!("Bearer {}", server.token(Role::Viewer)),
        )
        .body(Body::empty())
        .unwrap();
    assert_eq!(server.send(xml).await.status, StatusCode::NOT_ACCEPTABLE);
    let anonymous = server
        .call(Method::GET, "/api/v2/dagSources/hello", None, None)
        .await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    server.finish().await;
}
