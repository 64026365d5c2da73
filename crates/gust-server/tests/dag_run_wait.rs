//! `GET .../dagRuns/{dag_run_id}/wait`: the run's state as NDJSON until it finishes, with the
//! named tasks' results on the last line.

mod common;

use std::time::Duration;

use axum::http::StatusCode;
use common::{HELLO, TestServer, t0};
use gust_core::state::DagRunState;
use gust_store::{Store, UNMAPPED};
use serde_json::{Value, json};

const WAIT: &str = "/api/v2/dags/hello/dagRuns/r/wait";

async fn trigger(server: &TestServer) {
    server.load_dags(&[("hello.yaml", HELLO)]).await;
    server.trigger("hello", "r", None).await;
}

/// Moves run `r` of `hello` to `to`.
async fn move_run(store: &Store, to: DagRunState) {
    let run = store
        .run("hello", "r")
        .await
        .expect("the test setup works")
        .expect("the test setup works");
    let moved = store
        .transition_run(&run, to, t0())
        .await
        .expect("the test setup works");
    assert!(moved, "run r moves to {to:?}");
}

fn lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|line| serde_json::from_str(line).unwrap_or(Value::Null))
        .collect()
}

#[tokio::test]
async fn a_finished_run_answers_one_line_with_its_results() {
    let server = TestServer::sqlite().await;
    trigger(&server).await;
    move_run(&server.db.store, DagRunState::Running).await;
    server
        .db
        .store
        .put_xcom(
            "hello",
            "r",
            "say",
            UNMAPPED,
            "return_value",
            &json!({"n": 42}),
        )
        .await
        .expect("the test setup works");
    move_run(&server.db.store, DagRunState::Success).await;

    let answer = server
        .get(&format!("{WAIT}?interval=0.05&result=say&result=after"))
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    assert_eq!(answer.content_type, "application/x-ndjson");
    assert_eq!(
        lines(&answer.text),
        [json!({"state": "success", "results": {"say": {"n": 42}}})]
    );
    // Without `result`, no results: Gust's DAGs declare none.
    let plain = server.get(&format!("{WAIT}?interval=1")).await;
    assert_eq!(lines(&plain.text), [json!({"state": "success"})]);
    server.finish().await;
}

#[tokio::test]
async fn a_run_is_followed_until_it_finishes() {
    let server = TestServer::sqlite().await;
    trigger(&server).await;
    let store = server.db.store.clone();
    let finisher = tokio::spawn(async move {
        for to in [DagRunState::Running, DagRunState::Failed] {
            tokio::time::sleep(Duration::from_millis(300)).await;
            move_run(&store, to).await;
        }
    });
    let answer = tokio::time::timeout(
        Duration::from_secs(30),
        server.get(&format!("{WAIT}?interval=0.05")),
    )
    .await
    .expect("the stream ends once the run has finished");
    finisher.await.expect("the test setup works");
    let states: Vec<String> = lines(&answer.text)
        .iter()
        .map(|l| l["state"].as_str().unwrap_or("?").to_owned())
        .collect();
    assert_eq!(states.first().map(String::as_str), Some("queued"));
    assert!(states.contains(&"running".to_owned()), "{states:?}");
    assert_eq!(states.last().map(String::as_str), Some("failed"));
    assert_eq!(
        states.iter().filter(|s| *s == "failed").count(),
        1,
        "nothing follows the last line"
    );
    server.finish().await;
}

#[tokio::test]
async fn a_missing_run_or_interval_is_refused() {
    let server = TestServer::sqlite().await;
    trigger(&server).await;
    let missing = server
        .get("/api/v2/dags/hello/dagRuns/nope/wait?interval=1")
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(
        missing.json,
        json!({"detail": "The DagRun with dag_id: `hello` and run_id: `nope` was not found"})
    );
    for query in ["", "?interval=0", "?interval=-1", "?interval=soon"] {
        let answer = server.get(&format!("{WAIT}{query}")).await;
        assert_eq!(
            answer.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{query}: {}",
            answer.text
        );
    }
    server.finish().await;
}
