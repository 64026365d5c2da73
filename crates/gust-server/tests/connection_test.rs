//! `POST /api/v2/connections/test`: Airflow's 403 while `[core] test_connection` is off; on,
//! a postgres connection is tested by signing in, others by reaching their host, and a stored
//! connection's secrets are only used against its own host.

mod common;

use axum::http::{Method, StatusCode};
use common::TestServer;
use gust_store::Role;
use serde_json::{Value, json};

async fn test(server: &TestServer, body: Value) -> common::Answer {
    server
        .call(
            Method::POST,
            "/api/v2/connections/test",
            Some(Role::Op),
            Some(body),
        )
        .await
}

#[tokio::test]
async fn testing_is_refused_as_airflow_refuses_it_until_enabled() {
    let server = TestServer::sqlite().await;
    let refused = test(
        &server,
        json!({"connection_id": "x", "conn_type": "http", "host": "localhost"}),
    )
    .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(
        refused.json["detail"],
        "Testing connections is disabled in Airflow configuration. Contact your deployment admin to enable it."
    );
    server.finish().await;
}

#[tokio::test]
async fn hosts_are_reached_and_stored_secrets_stay_with_their_host() {
    let server = TestServer::sqlite().await;
    let _ = server.state.clone().with_connection_test();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let open = listener.local_addr().unwrap().port();
    let closed = {
        let spare = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        spare.local_addr().unwrap().port()
    };

    let reached = test(
        &server,
        json!({"connection_id": "api", "conn_type": "http", "host": format!("http://127.0.0.1:{open}/v1")}),
    )
    .await;
    assert_eq!(reached.status, StatusCode::OK, "{}", reached.text);
    assert_eq!(reached.json["status"], true, "{}", reached.text);
    let unreachable = test(
        &server,
        json!({"connection_id": "api", "conn_type": "http", "host": "127.0.0.1", "port": closed}),
    )
    .await;
    assert_eq!(unreachable.json["status"], false, "{}", unreachable.text);
    let no_host = test(
        &server,
        json!({"connection_id": "cloud", "conn_type": "aws"}),
    )
    .await;
    assert_eq!(no_host.json["status"], false);
    assert!(
        no_host.json["message"]
            .as_str()
            .unwrap()
            .contains("no host")
    );

    let created = server
        .call(
            Method::POST,
            "/api/v2/connections",
            Some(Role::Op),
            Some(
                json!({"connection_id": "db", "conn_type": "http", "host": "127.0.0.1",
                        "port": open, "password": "hunter2"}),
            ),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let same_host = test(
        &server,
        json!({"connection_id": "db", "conn_type": "http", "password": "***"}),
    )
    .await;
    assert_eq!(same_host.json["status"], true, "{}", same_host.text);
    let elsewhere = test(
        &server,
        json!({"connection_id": "db", "conn_type": "http", "host": "example.invalid", "password": "***"}),
    )
    .await;
    assert_eq!(elsewhere.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        elsewhere.json["detail"],
        "The host or port to test differs from the stored connection. Include the credentials to test in the request body."
    );
    let viewer = server
        .call(
            Method::POST,
            "/api/v2/connections/test",
            Some(Role::User),
            Some(json!({"connection_id": "db", "conn_type": "http"})),
        )
        .await;
    assert_eq!(viewer.status, StatusCode::FORBIDDEN);
    server.finish().await;
}

#[tokio::test]
async fn a_postgres_connection_is_tested_by_signing_in() {
    let Ok(url) = std::env::var("GUST_TEST_POSTGRES_URL") else {
        return;
    };
    let server = TestServer::sqlite().await;
    let _ = server.state.clone().with_connection_test();
    // postgres://USER[:PASSWORD]@HOST:PORT/DB
    let rest = url.split_once("://").unwrap().1;
    let (credentials, place) = rest.rsplit_once('@').unwrap();
    let (login, password) = credentials
        .split_once(':')
        .map_or((credentials, None), |(l, p)| (l, Some(p)));
    let (address, database) = place.split_once('/').unwrap();
    let (host, port) = address.split_once(':').unwrap_or((address, "5432"));
    let port: i64 = port.parse().unwrap();
    let good = json!({"connection_id": "pg", "conn_type": "postgres", "host": host, "port": port,
                      "login": login, "password": password, "schema": database});
    let signed_in = test(&server, good.clone()).await;
    assert_eq!(signed_in.status, StatusCode::OK, "{}", signed_in.text);
    assert_eq!(
        signed_in.json,
        json!({"status": true, "message": "Connection successfully tested"})
    );
    let mut wrong = good;
    wrong["schema"] = json!("no_such_database_here");
    let refused = test(&server, wrong).await;
    assert_eq!(refused.json["status"], false, "{}", refused.text);
    server.finish().await;
}
