//! Who may call what: tokens from `POST /auth/token`, 401 without credentials, 403 for viewers'
//! changes, and the public endpoints.

mod common;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use common::{HELLO, TestServer};
use gust_store::Role;
use serde_json::json;

#[tokio::test]
async fn a_password_buys_a_token_that_opens_the_api() {
    let server = TestServer::sqlite().await;
    server.load_dags(&[("hello.yaml", HELLO)]).await;
    let login = server
        .call(
            Method::POST,
            "/auth/token",
            None,
            Some(json!({"username": "viewer", "password": "password"})),
        )
        .await;
    assert_eq!(login.status, StatusCode::CREATED, "{}", login.text);
    let token = login.json["access_token"].as_str().unwrap().to_owned();
    let request = Request::get("/api/v2/dags")
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    let dags = server.send(request).await;
    assert_eq!(dags.status, StatusCode::OK, "{}", dags.text);
    assert_eq!(dags.json["total_entries"], 1);

    let form = Request::post("/auth/token")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from("username=op&password=password"))
        .unwrap();
    assert_eq!(server.send(form).await.status, StatusCode::CREATED);
    server.finish().await;
}

#[tokio::test]
async fn wrong_credentials_and_missing_tokens_are_401() {
    let server = TestServer::sqlite().await;
    for body in [
        json!({"username": "viewer", "password": "nope"}),
        json!({"username": "nobody", "password": "password"}),
    ] {
        let answer = server
            .call(Method::POST, "/auth/token", None, Some(body))
            .await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
        assert_eq!(answer.json["detail"], "Invalid credentials");
    }
    let answer = server.call(Method::GET, "/api/v2/dags", None, None).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(answer.json["detail"], "Not authenticated");
    let forged = Request::get("/api/v2/dags")
        .header("authorization", "Bearer not.a.token")
        .body(Body::empty())
        .unwrap();
    assert_eq!(server.send(forged).await.status, StatusCode::UNAUTHORIZED);
    server.finish().await;
}

#[tokio::test]
async fn viewers_read_but_cannot_change() {
    let server = TestServer::sqlite().await;
    server.load_dags(&[("hello.yaml", HELLO)]).await;
    let patch = json!({"is_paused": true});
    let denied = server
        .call(
            Method::PATCH,
            "/api/v2/dags/hello",
            Some(Role::Viewer),
            Some(patch.clone()),
        )
        .await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    assert_eq!(denied.json["detail"], "Forbidden");
    let allowed = server
        .call(
            Method::PATCH,
            "/api/v2/dags/hello",
            Some(Role::Op),
            Some(patch),
        )
        .await;
    assert_eq!(allowed.status, StatusCode::OK, "{}", allowed.text);
    assert_eq!(allowed.json["is_paused"], true);
    server.finish().await;
}

#[tokio::test]
async fn health_version_and_the_openapi_document_are_public() {
    let server = TestServer::sqlite().await;
    for path in [
        "/api/v2/monitor/health",
        "/api/v2/version",
        "/api/v2/openapi.json",
    ] {
        let answer = server.call(Method::GET, path, None, None).await;
        assert_eq!(answer.status, StatusCode::OK, "{path}: {}", answer.text);
    }
    let health = server
        .call(Method::GET, "/api/v2/monitor/health", None, None)
        .await;
    assert_eq!(health.json["metadatabase"]["status"], "healthy");
    assert_eq!(
        health.json["scheduler"]["status"], "unhealthy",
        "no scheduler has beaten yet"
    );
    let openapi = server
        .call(Method::GET, "/api/v2/openapi.json", None, None)
        .await;
    assert!(openapi.json["paths"]["/api/v2/dags"]["get"].is_object());
    server.finish().await;
}

/// Every operation the OpenAPI document lists, with its path parameters filled in.
fn operations(openapi: &serde_json::Value) -> Vec<(Method, String)> {
    let mut operations = Vec::new();
    for (path, item) in openapi["paths"].as_object().expect("paths") {
        let concrete: String = path
            .split('/')
            .map(|seg| if seg.starts_with('{') { "x" } else { seg })
            .collect::<Vec<_>>()
            .join("/");
        for method in item.as_object().expect("path item").keys() {
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
            operations.push((method, concrete.clone()));
        }
    }
    operations
}

#[tokio::test]
async fn every_endpoint_refuses_strangers_and_every_change_refuses_viewers() {
    let server = TestServer::sqlite().await;
    let openapi = server.get("/api/v2/openapi.json").await.json;
    let public = [
        "/api/v2/monitor/health",
        "/api/v2/version",
        "/auth/token",
        "/auth/token/cli",
    ];
    let operations = operations(&openapi);
    assert!(operations.len() > 10, "{operations:?}");
    for (method, path) in operations {
        if public.contains(&path.as_str()) {
            continue;
        }
        let body = (method != Method::GET).then(|| json!({}));
        let stranger = server.call(method.clone(), &path, None, body.clone()).await;
        assert_eq!(
            stranger.status,
            StatusCode::UNAUTHORIZED,
            "{method} {path} without a token"
        );
        if method != Method::GET {
            let viewer = server
                .call(method.clone(), &path, Some(Role::Viewer), body)
                .await;
            assert_eq!(
                viewer.status,
                StatusCode::FORBIDDEN,
                "{method} {path} as a viewer"
            );
        }
    }
    server.finish().await;
}

#[tokio::test]
async fn a_cookie_session_must_send_its_csrf_token_to_change_anything() {
    let server = TestServer::sqlite().await;
    server.load_dags(&[("hello.yaml", HELLO)]).await;
    let token = server.token(Role::Op);
    let patch = |csrf: Option<String>| {
        let mut request = Request::patch("/api/v2/dags/hello")
            .header(
                "cookie",
                format!("{}={token}", gust_server::auth::SESSION_COOKIE),
            )
            .header("content-type", "application/json");
        if let Some(csrf) = csrf {
            request = request.header(gust_server::auth::CSRF_HEADER, csrf);
        }
        request.body(Body::from(r#"{"is_paused": true}"#)).unwrap()
    };
    assert_eq!(server.send(patch(None)).await.status, StatusCode::FORBIDDEN);
    assert_eq!(
        server.send(patch(Some("guess".into()))).await.status,
        StatusCode::FORBIDDEN
    );
    let csrf = gust_server::auth::csrf_token(&token);
    let allowed = server.send(patch(Some(csrf))).await;
    assert_eq!(allowed.status, StatusCode::OK, "{}", allowed.text);
    server.finish().await;
}
