//! `/api/v2/eventLogs`: the changes made through the API and the sign-ins are recorded as
//! Airflow's `action_logging` records them (who, what, on which DAG and run, secrets masked,
//! dry runs left out), and listed with Airflow's filters or read one by one.

mod common;

use axum::http::{Method, StatusCode};
use common::{HELLO, TestServer};
use gust_store::Role;
use serde_json::{Value, json};

/// The events of a listing, as `(event, owner, dag_id, run_id)`.
fn summary(listing: &Value) -> Vec<(String, String, Value, Value)> {
    listing["event_logs"]
        .as_array()
        .expect("a list of events")
        .iter()
        .map(|e| {
            (
                e["event"].as_str().expect("an event").to_owned(),
                e["owner"].as_str().expect("an owner").to_owned(),
                e["dag_id"].clone(),
                e["run_id"].clone(),
            )
        })
        .collect()
}

#[tokio::test]
async fn changes_and_sign_ins_are_recorded_with_their_secrets_masked() {
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
    assert_eq!(login.status, StatusCode::CREATED);
    server.trigger("hello", "r1", None).await;
    let paused = server
        .call(
            Method::PATCH,
            "/api/v2/dags/hello",
            Some(Role::User),
            Some(json!({"is_paused": true})),
        )
        .await;
    assert_eq!(paused.status, StatusCode::OK, "{}", paused.text);
    let dry_run = server
        .call(
            Method::POST,
            "/api/v2/dags/hello/clearTaskInstances",
            Some(Role::User),
            Some(json!({"dag_run_id": "r1"})),
        )
        .await;
    assert_eq!(dry_run.status, StatusCode::OK, "{}", dry_run.text);
    let variable = server
        .call(
            Method::POST,
            "/api/v2/variables",
            Some(Role::Op),
            Some(json!({"key": "region", "value": "very-secret-value"})),
        )
        .await;
    assert_eq!(variable.status, StatusCode::CREATED);
    // A refused call is not recorded: the caller may not make it.
    let refused = server
        .call(
            Method::DELETE,
            "/api/v2/dags/hello",
            Some(Role::Viewer),
            None,
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    // Reads are not recorded.
    assert_eq!(server.get("/api/v2/dags").await.status, StatusCode::OK);

    let all = server.get("/api/v2/eventLogs").await;
    assert_eq!(all.status, StatusCode::OK, "{}", all.text);
    assert_eq!(all.json["total_entries"], 4, "{}", all.text);
    assert_eq!(
        summary(&all.json),
        vec![
            ("login".into(), "viewer".into(), Value::Null, Value::Null),
            (
                "trigger_dag_run".into(),
                "user".into(),
                json!("hello"),
                json!("r1")
            ),
            (
                "patch_dag".into(),
                "user".into(),
                json!("hello"),
                Value::Null
            ),
            (
                "post_variable".into(),
                "op".into(),
                Value::Null,
                Value::Null
            ),
        ]
    );
    let events = all.json["event_logs"].as_array().unwrap();
    assert_eq!(
        events[2]["extra"],
        r#"{"is_paused": true, "method": "PATCH"}"#
    );
    assert_eq!(events[2]["dag_display_name"], "hello");
    let variable_extra = events[3]["extra"].as_str().unwrap();
    assert!(!variable_extra.contains("very-secret"), "{variable_extra}");
    assert!(
        variable_extra.contains(r#""value": "***""#),
        "{variable_extra}"
    );
    let trigger_extra = events[1]["extra"].as_str().unwrap();
    assert!(
        trigger_extra.contains(r#""dag_run_id": "r1""#),
        "{trigger_extra}"
    );

    let one = server
        .get(&format!("/api/v2/eventLogs/{}", events[2]["event_log_id"]))
        .await;
    assert_eq!(one.status, StatusCode::OK);
    assert_eq!(one.json, events[2]);
    server.finish().await;
}

#[tokio::test]
async fn event_logs_are_filtered_sorted_and_paged_as_airflow_does() {
    let server = TestServer::sqlite().await;
    server.load_dags(&[("hello.yaml", HELLO)]).await;
    server.trigger("hello", "r1", None).await;
    server.trigger("hello", "r2", None).await;
    let paused = server
        .call(
            Method::PATCH,
            "/api/v2/dags/hello",
            Some(Role::Op),
            Some(json!({"is_paused": false})),
        )
        .await;
    assert_eq!(paused.status, StatusCode::OK);

    let count = |uri: String| {
        let server = &server;
        async move {
            let answer = server.get(&uri).await;
            assert_eq!(answer.status, StatusCode::OK, "{uri}: {}", answer.text);
            answer.json["total_entries"].as_i64().unwrap()
        }
    };
    assert_eq!(
        count("/api/v2/eventLogs?event=trigger_dag_run".into()).await,
        2
    );
    assert_eq!(count("/api/v2/eventLogs?owner=op".into()).await, 1);
    assert_eq!(count("/api/v2/eventLogs?dag_id=hello".into()).await, 3);
    assert_eq!(count("/api/v2/eventLogs?dag_id=other".into()).await, 0);
    assert_eq!(
        count("/api/v2/eventLogs?excluded_events=patch_dag".into()).await,
        2
    );
    assert_eq!(
        count("/api/v2/eventLogs?included_events=patch_dag&included_events=x".into()).await,
        1
    );
    assert_eq!(
        count("/api/v2/eventLogs?event_pattern=TRIGGER".into()).await,
        2
    );
    assert_eq!(
        count("/api/v2/eventLogs?event_prefix_pattern=patch".into()).await,
        1
    );
    assert_eq!(
        count("/api/v2/eventLogs?event_prefix_pattern=PATCH".into()).await,
        0
    );
    assert_eq!(
        count("/api/v2/eventLogs?owner_pattern=x|us".into()).await,
        2
    );
    assert_eq!(
        count("/api/v2/eventLogs?after=2000-01-01T00:00:00.000000%2B0000".into()).await,
        3
    );
    assert_eq!(count("/api/v2/eventLogs?before=2000-01-01".into()).await, 0);

    let sorted = server
        .get("/api/v2/eventLogs?order_by=-event_log_id&limit=1")
        .await;
    assert_eq!(sorted.json["total_entries"], 3);
    assert_eq!(sorted.json["event_logs"][0]["event"], "patch_dag");
    let by_owner = server.get("/api/v2/eventLogs?order_by=owner").await;
    assert_eq!(by_owner.json["event_logs"][0]["owner"], "op");

    let bad_order = server.get("/api/v2/eventLogs?order_by=colour").await;
    assert_eq!(bad_order.status, StatusCode::BAD_REQUEST);
    let bad_time = server.get("/api/v2/eventLogs?after=yesterday").await;
    assert_eq!(bad_time.status, StatusCode::UNPROCESSABLE_ENTITY);
    let missing = server.get("/api/v2/eventLogs/999").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(
        missing.json["detail"],
        "The Event Log with id: `999` not found"
    );
    let not_a_number = server.get("/api/v2/eventLogs/abc").await;
    assert_eq!(not_a_number.status, StatusCode::UNPROCESSABLE_ENTITY);
    let anonymous = server
        .call(Method::GET, "/api/v2/eventLogs", None, None)
        .await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    server.finish().await;
}

#[tokio::test]
async fn a_body_over_the_limit_is_refused_before_it_is_recorded() {
    let server = TestServer::sqlite().await;
    let big = "x".repeat(gust_server::MAX_BODY_BYTES + 1);
    let answer = server
        .call(
            Method::POST,
            "/api/v2/variables",
            Some(Role::Op),
            Some(json!({"key": "big", "value": big})),
        )
        .await;
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE);
    let events = server.get("/api/v2/eventLogs").await;
    assert_eq!(events.json["total_entries"], 0);
    server.finish().await;
}
