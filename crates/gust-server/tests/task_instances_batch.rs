//! `POST /dags/~/dagRuns/~/taskInstances/list` with Airflow's body filters, and the listings
//! across runs sorted by the current try's start.

mod common;

use axum::http::{Method, StatusCode};
use chrono::Duration;
use common::{Answer, HELLO, TestServer, t0};
use gust_core::state::TaskState;
use gust_store::testing::TestDb;
use gust_store::{Role, TaskMove, TryChange};
use serde_json::{Value, json};

const LIST: &str = "/api/v2/dags/~/dagRuns/~/taskInstances/list";

/// Runs `r1` (logical 2026-01-02) and `r2` (2026-01-03) of `hello`, each with instances of
/// both tasks; `say` ran once in each, from `start` seconds after t0 for `seconds`.
async fn two_runs(server: &TestServer) {
    server.load_dags(&[("hello.yaml", HELLO)]).await;
    let store = &server.db.store;
    for (run_id, date, start, seconds) in [
        ("r1", "2026-01-02T00:00:00Z", 10, 2),
        ("r2", "2026-01-03T00:00:00Z", 5, 10),
    ] {
        server.trigger("hello", run_id, Some(date)).await;
        server.start_run("hello", run_id, &["say", "after"]).await;
        let started = t0() + Duration::seconds(start);
        let steps = [
            (
                TaskState::Queued,
                TryChange::Queued {
                    try_number: 1,
                    rendered_args: json!({"bash_command": "echo hello"}),
                    xcoms: Vec::new(),
                    log_location: format!("/logs/{run_id}.log"),
                    at: started,
                },
            ),
            (
                TaskState::Running,
                TryChange::Started {
                    try_number: 1,
                    at: started,
                },
            ),
            (
                TaskState::Success,
                TryChange::Ended {
                    try_number: 1,
                    at: started + Duration::seconds(seconds),
                    failure: None,
                    xcoms: Vec::new(),
                    outlets: Vec::new(),
                },
            ),
        ];
        for (to, change) in steps {
            let ti = store
                .task_instances("hello", run_id)
                .await
                .expect("the test setup works")
                .into_iter()
                .find(|t| t.task_id == "say")
                .expect("the test setup works");
            let step = TaskMove {
                dag_id: "hello".into(),
                run_id: run_id.into(),
                task_id: "say".into(),
                map_index: gust_store::UNMAPPED,
                from: ti.state,
                version: ti.version,
                to,
                next_retry_at: None,
                try_change: Some(change),
            };
            assert_eq!(
                store
                    .apply_moves(&[step])
                    .await
                    .expect("the test setup works"),
                vec![true]
            );
        }
    }
}

async fn list(server: &TestServer, body: Value) -> Answer {
    server
        .call(Method::POST, LIST, Some(Role::Viewer), Some(body))
        .await
}

/// `run_id/task_id` of each instance listed.
fn keys(answer: &Answer) -> Vec<String> {
    answer.json["task_instances"]
        .as_array()
        .unwrap_or_else(|| panic!("not a list of instances: {}", answer.text))
        .iter()
        .map(|ti| {
            format!(
                "{}/{}",
                ti["dag_run_id"].as_str().unwrap_or_default(),
                ti["task_id"].as_str().unwrap_or_default()
            )
        })
        .collect()
}

#[tokio::test]
async fn instances_are_listed_by_body_filters() {
    instances_are_listed_by_body_filters_on(TestServer::sqlite().await).await;
}

#[tokio::test]
async fn instances_are_listed_by_body_filters_on_postgres() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    instances_are_listed_by_body_filters_on(TestServer::on(db).await).await;
}

async fn instances_are_listed_by_body_filters_on(server: TestServer) {
    two_runs(&server).await;
    let all = list(&server, json!({})).await;
    assert_eq!(all.status, StatusCode::OK, "{}", all.text);
    assert_eq!(all.json["total_entries"], 4);
    assert_eq!(
        keys(&all),
        ["r1/after", "r1/say", "r2/after", "r2/say"],
        "by run, then task"
    );

    let cases: &[(Value, &[&str])] = &[
        (json!({"dag_run_ids": ["r2"]}), &["r2/after", "r2/say"]),
        (
            json!({"task_ids": ["say"], "dag_ids": ["hello"]}),
            &["r1/say", "r2/say"],
        ),
        (json!({"state": ["success"]}), &["r1/say", "r2/say"]),
        (json!({"state": [null]}), &["r1/after", "r2/after"]),
        (json!({"duration_gte": 5}), &["r2/say"]),
        (json!({"duration_lt": 5.0}), &["r1/say"]),
        (
            json!({"start_date_gte": "2026-01-01T00:00:08Z"}),
            &["r1/say"],
        ),
        (
            json!({"end_date_lte": "2026-01-01T00:00:12+00:00"}),
            &["r1/say"],
        ),
        (
            json!({"logical_date_lt": "2026-01-03T00:00:00Z"}),
            &["r1/after", "r1/say"],
        ),
        (
            json!({"run_after_gte": "2026-01-03T00:00:00Z"}),
            &["r2/after", "r2/say"],
        ),
        (json!({"dag_ids": ["other"]}), &[]),
        // Airflow's states Gust never has match nothing (rather than filtering nothing).
        (json!({"state": ["deferred"]}), &[]),
        (
            json!({"state": ["deferred", "success"]}),
            &["r1/say", "r2/say"],
        ),
        // The current try's start: instances not started come last, ascending.
        (
            json!({"order_by": "start_date"}),
            &["r2/say", "r1/say", "r1/after", "r2/after"],
        ),
        (
            json!({"order_by": "-start_date"}),
            &["r1/after", "r2/after", "r1/say", "r2/say"],
        ),
        (
            json!({"order_by": "-duration", "state": ["success"]}),
            &["r2/say", "r1/say"],
        ),
        (
            json!({"order_by": "start_date", "page_limit": 1, "page_offset": 1}),
            &["r1/say"],
        ),
    ];
    for (body, expected) in cases {
        let answer = list(&server, body.clone()).await;
        assert_eq!(answer.status, StatusCode::OK, "{body}: {}", answer.text);
        assert_eq!(keys(&answer), *expected, "{body}");
    }
    let paged = list(&server, json!({"page_limit": 1})).await;
    assert_eq!(paged.json["total_entries"], 4);

    let across = server
        .get("/api/v2/dags/hello/dagRuns/~/taskInstances?order_by=start_date&task_id=say")
        .await;
    assert_eq!(across.status, StatusCode::OK, "{}", across.text);
    assert_eq!(keys(&across), ["r2/say", "r1/say"]);
    server.finish().await;
}

#[tokio::test]
async fn bad_batch_requests_are_refused_as_airflow_refuses_them() {
    let server = TestServer::sqlite().await;
    two_runs(&server).await;
    for (body, status) in [
        (json!({"colour": "red"}), StatusCode::UNPROCESSABLE_ENTITY),
        (
            json!({"state": ["bogus"]}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"start_date_gte": "soon"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (json!({"page_limit": -1}), StatusCode::UNPROCESSABLE_ENTITY),
        (json!({"order_by": "task_id"}), StatusCode::BAD_REQUEST),
        (
            json!({"pool": ["default_pool"]}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    ] {
        let answer = list(&server, body.clone()).await;
        assert_eq!(answer.status, status, "{body}: {}", answer.text);
    }
    let named = server
        .call(
            Method::POST,
            "/api/v2/dags/hello/dagRuns/~/taskInstances/list",
            Some(Role::Viewer),
            Some(json!({})),
        )
        .await;
    assert_eq!(named.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(named.json["detail"][0]["loc"], json!(["path", "dag_id"]));
    let anonymous = server.call(Method::POST, LIST, None, Some(json!({}))).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    server.finish().await;
}
