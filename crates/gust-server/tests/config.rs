//! `/api/v2/config` and `/api/v2/providers`: the configuration as the binary handed it over,
//! in Airflow's JSON and text forms, refused unless exposed; and the (empty) provider list.

mod common;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use common::{Answer, TestServer};
use gust_server::ExposedConfig;
use gust_store::Role;
use serde_json::json;

fn exposed() -> ExposedConfig {
    let options = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    };
    ExposedConfig {
        sections: vec![
            (
                "core".into(),
                options(&[("dags_folder", "/gust/dags"), ("parallelism", "32")]),
            ),
            (
                "database".into(),
                options(&[("url", gust_server::api::config::HIDDEN)]),
            ),
        ],
    }
}

async fn get_as(server: &TestServer, uri: &str, accept: Option<&str>) -> Answer {
    let mut request = Request::builder().method(Method::GET).uri(uri).header(
        "authorization",
        format!("Bearer {}", server.token(Role::Op)),
    );
    if let Some(accept) = accept {
        request = request.header("accept", accept);
    }
    server
        .send(request.body(Body::empty()).expect("request"))
        .await
}

#[tokio::test]
async fn the_configuration_is_refused_unless_exposed() {
    let server = TestServer::sqlite().await;
    for uri in [
        "/api/v2/config",
        "/api/v2/config/section/core/option/parallelism",
    ] {
        let answer = server.get(uri).await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN, "{uri}");
        assert_eq!(
            answer.json,
            json!({"detail": "Your Airflow administrator chose not to expose the configuration, most likely for security reasons."})
        );
    }
    server.finish().await;
}

#[tokio::test]
async fn the_exposed_configuration_is_answered_as_json_or_text() {
    let server = TestServer::sqlite().await;
    let _ = server.state.clone().with_exposed_config(exposed());

    let all = server.get("/api/v2/config").await;
    assert_eq!(all.status, StatusCode::OK, "{}", all.text);
    assert_eq!(
        all.json,
        json!({"sections": [
            {"name": "core", "options": [
                {"key": "dags_folder", "value": "/gust/dags"},
                {"key": "parallelism", "value": "32"},
            ]},
            {"name": "database", "options": [{"key": "url", "value": "< hidden >"}]},
        ]})
    );
    let text = get_as(&server, "/api/v2/config", Some("text/plain")).await;
    assert_eq!(text.status, StatusCode::OK);
    assert!(text.content_type.starts_with("text/plain"), "{text:?}");
    assert_eq!(
        text.text,
        "[core]\ndags_folder = /gust/dags\nparallelism = 32\n\n[database]\nurl = < hidden >\n"
    );
    let section = server.get("/api/v2/config?section=database").await;
    assert_eq!(section.json["sections"].as_array().map(Vec::len), Some(1));
    let missing = server.get("/api/v2/config?section=smtp").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.json, json!({"detail": "Section smtp not found."}));

    let value = get_as(
        &server,
        "/api/v2/config/section/CORE/option/Parallelism",
        Some("application/json"),
    )
    .await;
    assert_eq!(
        value.json,
        json!({"sections": [{"name": "CORE", "options": [{"key": "Parallelism", "value": "32"}]}]})
    );
    let secret = get_as(
        &server,
        "/api/v2/config/section/database/option/url",
        Some("text/plain"),
    )
    .await;
    assert_eq!(secret.text, "[database]\nurl = < hidden >\n");
    let no_option = server
        .get("/api/v2/config/section/core/option/colour")
        .await;
    assert_eq!(no_option.status, StatusCode::NOT_FOUND);
    assert_eq!(
        no_option.json,
        json!({"detail": "Option [core/colour] not found."})
    );
    let xml = get_as(&server, "/api/v2/config", Some("application/xml")).await;
    assert_eq!(xml.status, StatusCode::NOT_ACCEPTABLE);
    assert_eq!(
        xml.json,
        json!({"detail": "Only application/json or text/plain is supported"})
    );
    // Airflow's Op role is the first that reads the configuration.
    let viewer = server
        .call(Method::GET, "/api/v2/config", Some(Role::User), None)
        .await;
    assert_eq!(viewer.status, StatusCode::FORBIDDEN);
    server.finish().await;
}

#[tokio::test]
async fn there_are_no_providers() {
    let server = TestServer::sqlite().await;
    let providers = server.get("/api/v2/providers?limit=10").await;
    assert_eq!(providers.status, StatusCode::OK, "{}", providers.text);
    assert_eq!(providers.json, json!({"providers": [], "total_entries": 0}));
    let bad = server.get("/api/v2/providers?limit=many").await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    let viewer = server
        .call(Method::GET, "/api/v2/providers", Some(Role::Viewer), None)
        .await;
    assert_eq!(viewer.status, StatusCode::FORBIDDEN);
    server.finish().await;
}
