//! `/api/v2/variables`: create, read, list with filters and pages, update with a mask,
//! delete, and Airflow's answers for missing, duplicate and sensitive variables.

mod common;

use axum::http::{Method, StatusCode};
use common::TestServer;
use gust_store::Role;
use serde_json::json;

#[tokio::test]
async fn a_variable_is_created_read_updated_and_deleted() {
    let server = TestServer::sqlite().await;
    let created = server
        .call(
            Method::POST,
            "/api/v2/variables",
            Some(Role::Op),
            Some(json!({"key": "region", "value": "eu", "description": "where"})),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    assert_eq!(
        created.json,
        json!({"key": "region", "value": "eu", "description": "where", "is_encrypted": true, "team_name": null})
    );
    assert_eq!(
        server
            .db
            .store
            .variable("region", server.fernet())
            .await
            .unwrap()
            .as_deref(),
        Some("eu"),
        "templates read what the API wrote"
    );
    let stored = server.db.store.raw_variable_value("region").await.unwrap();
    assert_ne!(stored.as_deref(), Some("eu"), "encrypted at rest");

    let again = server
        .call(
            Method::POST,
            "/api/v2/variables",
            Some(Role::Op),
            Some(json!({"key": "region", "value": "us"})),
        )
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert_eq!(
        again.json["detail"],
        "The Variable with key: `region` already exists"
    );

    let patched = server
        .call(
            Method::PATCH,
            "/api/v2/variables/region?update_mask=value",
            Some(Role::Op),
            Some(json!({"key": "region", "value": "us", "description": "ignored"})),
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.text);
    assert_eq!(patched.json["value"], "us");
    assert_eq!(
        patched.json["description"], "where",
        "the mask leaves the description"
    );
    let cleared = server
        .call(
            Method::PATCH,
            "/api/v2/variables/region",
            Some(Role::Op),
            Some(json!({"key": "region", "value": "us", "description": null})),
        )
        .await;
    assert_eq!(cleared.json["description"], json!(null));

    let got = server.get("/api/v2/variables/region").await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.json["value"], "us");

    let deleted = server
        .call(
            Method::DELETE,
            "/api/v2/variables/region",
            Some(Role::Op),
            None,
        )
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    let missing = server.get("/api/v2/variables/region").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(
        missing.json["detail"],
        "The Variable with key: `region` was not found"
    );
    let gone = server
        .call(
            Method::DELETE,
            "/api/v2/variables/region",
            Some(Role::Op),
            None,
        )
        .await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    server.finish().await;
}

#[tokio::test]
async fn json_values_are_stored_as_json_and_secrets_are_masked() {
    let server = TestServer::sqlite().await;
    for body in [
        json!({"key": "cfg", "value": {"api_key": "abc", "n": [1, 2]}}),
        json!({"key": "db_password", "value": "hunter2"}),
    ] {
        let answer = server
            .call(
                Method::POST,
                "/api/v2/variables",
                Some(Role::Op),
                Some(body),
            )
            .await;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text);
    }
    let stored = server
        .db
        .store
        .variable("cfg", server.fernet())
        .await
        .unwrap()
        .unwrap();
    let parsed: serde_json::Value = serde_json::from_str(&stored).unwrap();
    assert_eq!(parsed, json!({"api_key": "abc", "n": [1, 2]}));
    let cfg = server.get("/api/v2/variables/cfg").await;
    assert_eq!(cfg.json["value"], r#"{"api_key": "***", "n": [1, 2]}"#);
    let secret = server.get("/api/v2/variables/db_password").await;
    assert_eq!(secret.json["value"], "***");
    assert!(!secret.text.contains("hunter2"));
    server.finish().await;
}

#[tokio::test]
async fn lists_filter_sort_and_page() {
    let server = TestServer::sqlite().await;
    for key in ["alpha", "beta", "gamma_1", "gamma_2"] {
        server
            .db
            .store
            .set_variable(key, "v", Some(key), server.fernet())
            .await
            .unwrap();
    }
    let all = server.get("/api/v2/variables").await;
    assert_eq!(all.json["total_entries"], 4);
    let page = server
        .get("/api/v2/variables?limit=2&offset=1&order_by=-key")
        .await;
    let keys: Vec<&str> = page.json["variables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["gamma_1", "beta"]);
    assert_eq!(page.json["total_entries"], 4);
    let matching = server
        .get("/api/v2/variables?variable_key_pattern=GAMMA")
        .await;
    assert_eq!(matching.json["total_entries"], 2);
    let prefixed = server
        .get("/api/v2/variables?variable_key_prefix_pattern=al")
        .await;
    assert_eq!(prefixed.json["variables"][0]["key"], "alpha");
    assert_eq!(prefixed.json["total_entries"], 1);
    let bad = server.get("/api/v2/variables?order_by=nope").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let negative = server.get("/api/v2/variables?limit=-1").await;
    assert_eq!(negative.status, StatusCode::UNPROCESSABLE_ENTITY);
    server.finish().await;
}

#[tokio::test]
async fn bad_bodies_are_refused_in_airflows_words() {
    let server = TestServer::sqlite().await;
    server
        .db
        .store
        .set_variable("k", "v", None, server.fernet())
        .await
        .unwrap();
    let cases = [
        (
            Method::PATCH,
            "/api/v2/variables/k",
            json!({"key": "other", "value": "x"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::PATCH,
            "/api/v2/variables/k?update_mask=key",
            json!({"key": "k", "value": "x"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::PATCH,
            "/api/v2/variables/nope",
            json!({"key": "nope", "value": "x"}),
            StatusCode::NOT_FOUND,
        ),
        (
            Method::POST,
            "/api/v2/variables",
            json!({"key": "x"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Method::POST,
            "/api/v2/variables",
            json!({"key": "x", "value": "v", "surprise": 1}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Method::POST,
            "/api/v2/variables",
            json!({"key": "x", "value": "v", "team_name": "t"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Method::POST,
            "/api/v2/variables",
            json!({"key": "x".repeat(251), "value": "v"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    ];
    for (method, uri, body, status) in cases {
        let answer = server
            .call(method.clone(), uri, Some(Role::Op), Some(body.clone()))
            .await;
        assert_eq!(
            answer.status, status,
            "{method} {uri} {body}: {}",
            answer.text
        );
    }
    let denied = server
        .call(
            Method::POST,
            "/api/v2/variables",
            Some(Role::Viewer),
            Some(json!({"key": "x", "value": "v"})),
        )
        .await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    assert_eq!(
        server
            .db
            .store
            .variable("k", server.fernet())
            .await
            .unwrap()
            .as_deref(),
        Some("v")
    );
    server.finish().await;
}

#[tokio::test]
async fn variables_work_on_postgres() {
    let Some(db) = gust_store::testing::TestDb::postgres().await else {
        return;
    };
    let server = TestServer::on(db).await;
    let created = server
        .call(
            Method::POST,
            "/api/v2/variables",
            Some(Role::Op),
            Some(json!({"key": "k", "value": 1})),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    assert_eq!(
        server.get("/api/v2/variables").await.json["total_entries"],
        1
    );
    server.finish().await;
}
