//! Who may call what: tokens from `POST /auth/token`, 401 without credentials, Airflow's role
//! table (403 for what a role may not do), the public endpoints, and the login's defences:
//! throttling, equal timing for unknown users, tokens bound to one account.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode, header};
use common::{HELLO, TestServer, t0};
use gust_server::auth::password::hash_password;
use gust_store::{Role, User};
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
        // A list too long for a query string is a read sent by POST.
        let read = method == Method::GET
            || path.ends_with("/dagRuns/list")
            || path.ends_with("/taskInstances/list");
        if !read {
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

/// `POST /auth/token` with `username` and `password`, from `peer` when given.
async fn sign_in(
    server: &TestServer,
    username: &str,
    password: &str,
    peer: Option<&str>,
) -> common::Answer {
    let mut request = Request::post("/auth/token")
        .header("content-type", "application/json")
        .body(Body::from(
            json!({"username": username, "password": password}).to_string(),
        ))
        .expect("the harness works");
    if let Some(peer) = peer {
        request.extensions_mut().insert(ConnectInfo(
            peer.parse::<SocketAddr>().expect("the harness works"),
        ));
    }
    server.send(request).await
}

#[tokio::test]
async fn the_roles_are_airflows_viewer_user_op_and_admin() {
    let server = TestServer::sqlite().await;
    server.load_dags(&[("hello.yaml", HELLO)]).await;
    let created = server
        .call(
            Method::POST,
            "/api/v2/variables",
            Some(Role::Op),
            Some(json!({"key": "db_url", "value": "postgres://etl:hunter2@db/x"})),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    // Viewers and users read neither variables nor connections (Airflow's Viewer and User).
    for role in [Role::Viewer, Role::User] {
        for path in [
            "/api/v2/variables",
            "/api/v2/variables/db_url",
            "/api/v2/connections",
        ] {
            let answer = server.call(Method::GET, path, Some(role), None).await;
            assert_eq!(answer.status, StatusCode::FORBIDDEN, "{role:?} {path}");
            assert!(!answer.text.contains("hunter2"));
        }
        let pools = server
            .call(Method::GET, "/api/v2/pools", Some(role), None)
            .await;
        assert_eq!(pools.status, StatusCode::OK, "{role:?} reads pools");
    }
    for role in [Role::Op, Role::Admin] {
        let answer = server
            .call(Method::GET, "/api/v2/variables/db_url", Some(role), None)
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{role:?}");
    }
    // A user acts on DAGs and runs, but edits no pool or variable.
    let pause = server
        .call(
            Method::PATCH,
            "/api/v2/dags/hello",
            Some(Role::User),
            Some(json!({"is_paused": true})),
        )
        .await;
    assert_eq!(pause.status, StatusCode::OK, "{}", pause.text);
    let trigger = server
        .call(
            Method::POST,
            "/api/v2/dags/hello/dagRuns",
            Some(Role::User),
            Some(json!({"logical_date": "2026-01-02T00:00:00Z"})),
        )
        .await;
    assert_eq!(trigger.status, StatusCode::OK, "{}", trigger.text);
    for (method, path, body) in [
        (
            Method::POST,
            "/api/v2/pools",
            json!({"name": "p", "slots": 1}),
        ),
        (
            Method::PATCH,
            "/api/v2/variables/db_url",
            json!({"key": "db_url", "value": "x"}),
        ),
        (Method::DELETE, "/api/v2/variables/db_url", json!({})),
    ] {
        let answer = server
            .call(method.clone(), path, Some(Role::User), Some(body))
            .await;
        assert_eq!(
            answer.status,
            StatusCode::FORBIDDEN,
            "user: {method} {path}"
        );
    }
    // A viewer lists runs with the POST form of the list.
    let listed = server
        .call(
            Method::POST,
            "/api/v2/dags/~/dagRuns/list",
            Some(Role::Viewer),
            Some(json!({})),
        )
        .await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.text);
    server.finish().await;
}

#[tokio::test]
async fn a_deleted_users_token_does_not_open_a_new_account_of_the_same_name() {
    let server = TestServer::sqlite().await;
    let login = sign_in(&server, "viewer", "password", None).await;
    assert_eq!(login.status, StatusCode::CREATED);
    let token = login.json["access_token"].as_str().unwrap().to_owned();
    let call = |token: String| {
        Request::get("/api/v2/dags")
            .header("authorization", format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap()
    };
    assert_eq!(
        server.send(call(token.clone())).await.status,
        StatusCode::OK
    );
    assert!(server.db.store.delete_user("viewer").await.unwrap());
    let again = User::new(
        "viewer".into(),
        hash_password("another password").unwrap(),
        Role::Admin,
        t0(),
    );
    assert!(server.db.store.create_user(&again).await.unwrap());
    let refused = server.send(call(token)).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{}", refused.text);
    server.finish().await;
}

#[tokio::test]
async fn fifty_wrong_passwords_and_then_the_right_one_are_throttled() {
    let server = TestServer::sqlite().await;
    let mut statuses = Vec::new();
    for _ in 0..50 {
        statuses.push(sign_in(&server, "op", "guess", None).await.status);
    }
    assert!(statuses.contains(&StatusCode::UNAUTHORIZED));
    assert!(statuses.contains(&StatusCode::TOO_MANY_REQUESTS));
    let request = Request::post("/auth/token")
        .header("content-type", "application/json")
        .body(Body::from(r#"{"username": "op", "password": "password"}"#))
        .unwrap();
    let response = tower::ServiceExt::oneshot(server.app.clone(), request)
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = response.headers()[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait), "Retry-After: {wait}");
    // Another user is not held up by op's attempts.
    assert_eq!(
        sign_in(&server, "viewer", "password", None).await.status,
        StatusCode::CREATED
    );
    server.finish().await;
}

#[tokio::test]
async fn one_address_trying_many_names_is_throttled() {
    let server = TestServer::sqlite().await;
    let mut refused = 0;
    for i in 0..40 {
        let answer = sign_in(
            &server,
            &format!("name-{i}"),
            "guess",
            Some("192.0.2.7:5000"),
        )
        .await;
        if answer.status == StatusCode::TOO_MANY_REQUESTS {
            refused += 1;
        }
    }
    assert!(refused >= 15, "{refused} of 40 refused");
    // Another address still signs in.
    let answer = sign_in(&server, "viewer", "password", Some("192.0.2.8:5000")).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text);
    server.finish().await;
}

#[tokio::test]
async fn an_unknown_user_takes_as_long_as_a_wrong_password() {
    let server = TestServer::sqlite().await;
    // The median of a few attempts each, so one slow scheduling does not decide.
    async fn median(server: &TestServer, username: &str) -> Duration {
        let mut times = Vec::new();
        for _ in 0..3 {
            let started = Instant::now();
            let answer = sign_in(server, username, "wrong password", None).await;
            times.push(started.elapsed());
            assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
        }
        times.sort();
        times[1]
    }
    let known = median(&server, "viewer").await;
    let unknown = median(&server, "nobody").await;
    // Without the dummy check an unknown name answered some 30 times faster.
    assert!(
        unknown * 3 >= known,
        "unknown user {unknown:?}, wrong password {known:?}"
    );
    server.finish().await;
}
