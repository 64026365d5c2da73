//! `/api/v2/dags/{dag_id}/dagRuns`: triggering, listing with filters, marking, deleting and
//! clearing runs, in the shapes the Airflow client reads.

mod common;

use axum::http::{Method, StatusCode};
use common::{Answer, HELLO, TestServer};
use gust_core::state::{DagRunState, TaskState};
use gust_store::Role;
use gust_store::testing::TestDb;
use serde_json::{Value, json};

/// Every field Airflow's `DAGRunResponse` requires.
const RUN_FIELDS: &[&str] = &[
    "dag_run_id",
    "dag_id",
    "logical_date",
    "queued_at",
    "start_date",
    "end_date",
    "duration",
    "data_interval_start",
    "data_interval_end",
    "run_after",
    "last_scheduling_decision",
    "run_type",
    "state",
    "triggered_by",
    "triggering_user_name",
    "conf",
    "note",
    "dag_versions",
    "bundle_version",
    "dag_display_name",
    "partition_key",
    "partition_date",
];

fn assert_run_shape(run: &Value) {
    for field in RUN_FIELDS {
        assert!(run.get(field).is_some(), "{field} missing from {run}");
    }
}

async fn post(server: &TestServer, uri: &str, body: Value) -> Answer {
    server
        .call(Method::POST, uri, Some(Role::Op), Some(body))
        .await
}

async fn trigger(server: &TestServer, run_id: &str, logical_date: &str) -> Answer {
    post(
        server,
        "/api/v2/dags/hello/dagRuns",
        json!({"dag_run_id": run_id, "logical_date": logical_date}),
    )
    .await
}

#[tokio::test]
async fn a_trigger_creates_a_queued_run_once() {
    let server = TestServer::sqlite().await;
    server.load_dags(&[("hello.yaml", HELLO)]).await;
    let answer = post(
        &server,
        "/api/v2/dags/hello/dagRuns",
        json!({"logical_date": null, "conf": {"name": "you"}, "note": "by hand"}),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    let run = &answer.json;
    assert_run_shape(run);
    assert!(run["dag_run_id"].as_str().unwrap().starts_with("manual__"));
    assert_eq!(run["state"], "queued");
    assert_eq!(run["run_type"], "manual");
    assert_eq!(run["conf"], json!({"name": "you"}));
    assert_eq!(run["note"], "by hand");
    assert_eq!(run["dag_versions"], json!([]));

    let first = trigger(&server, "mine", "2026-01-02T00:00:00Z").await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text);
    assert_eq!(first.json["logical_date"], "2026-01-02T00:00:00Z");
    let again = trigger(&server, "mine", "2026-01-03T00:00:00Z").await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert_eq!(
        again.json["detail"],
        "The DagRun with dag_id: `hello` and run_id: `mine` already exists"
    );

    // Airflow 3.3 names a manual run after the trigger time, not its logical date: two triggers
    // for the same date are two runs.
    let same_date = || {
        post(
            &server,
            "/api/v2/dags/hello/dagRuns",
            json!({"logical_date": "2026-01-05T00:00:00Z"}),
        )
    };
    let (one, two) = (same_date().await, same_date().await);
    assert_eq!(two.status, StatusCode::OK, "{}", two.text);
    let ids = [&one.json["dag_run_id"], &two.json["dag_run_id"]].map(|id| id.as_str().unwrap());
    assert_ne!(ids[0], ids[1]);
    assert!(
        ids.iter()
            .all(|id| id.starts_with("manual__") && !id.contains("2026-01-05")),
        "{ids:?}"
    );

    let wrong_conf = post(
        &server,
        "/api/v2/dags/hello/dagRuns",
        json!({"logical_date": null, "conf": {"name": 3}}),
    )
    .await;
    assert_eq!(wrong_conf.status, StatusCode::BAD_REQUEST);
    assert!(
        wrong_conf.json["detail"]
            .as_str()
            .unwrap()
            .contains("conf key \"name\""),
        "{}",
        wrong_conf.text
    );
    let missing = post(
        &server,
        "/api/v2/dags/nope/dagRuns",
        json!({"logical_date": null}),
    )
    .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.json["detail"], "Dag with dag_id: 'nope' not found");
    let no_date = post(&server, "/api/v2/dags/hello/dagRuns", json!({"conf": {}})).await;
    assert_eq!(
        no_date.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "logical_date is required"
    );
    let unknown = post(
        &server,
        "/api/v2/dags/hello/dagRuns",
        json!({"logical_date": null, "colour": "red"}),
    )
    .await;
    assert_eq!(unknown.status, StatusCode::UNPROCESSABLE_ENTITY);
    let viewer = server
        .call(
            Method::POST,
            "/api/v2/dags/hello/dagRuns",
            Some(Role::Viewer),
            Some(json!({"logical_date": null})),
        )
        .await;
    assert_eq!(viewer.status, StatusCode::FORBIDDEN);
    server.finish().await;
}

#[tokio::test]
async fn run_ids_outside_the_allowed_pattern_are_refused_with_a_400() {
    let server = TestServer::sqlite().await;
    server.load_dags(&[("hello.yaml", HELLO)]).await;
    for bad in [
        "x/y",
        "a\r\nSet-Cookie: x=1",
        "<img src=x onerror=alert(1)>",
        "a b",
    ] {
        let answer = trigger(&server, bad, "2026-01-02T00:00:00Z").await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "{bad:?}: {}",
            answer.text
        );
        assert!(
            answer.text.contains("allowed_run_id_pattern"),
            "{}",
            answer.text
        );
    }
    let runs = server.get("/api/v2/dags/hello/dagRuns").await;
    assert_eq!(runs.json["total_entries"], 0, "nothing was stored");
    for good in ["x_y", "release-1.2~rc:3+build"] {
        let answer = trigger(&server, good, "2026-01-02T00:00:00Z").await;
        assert_eq!(answer.status, StatusCode::OK, "{good}: {}", answer.text);
    }
}

#[tokio::test]
async fn thousands_of_repeated_query_parameters_are_refused_with_a_400() {
    let server = TestServer::sqlite().await;
    server.load_dags(&[("hello.yaml", HELLO)]).await;
    assert_eq!(
        trigger(&server, "a", "2026-01-02T00:00:00Z").await.status,
        StatusCode::OK
    );
    // SQLite refuses an ORDER BY of 2,000 terms: before the bound, this was a 500.
    let many = vec!["order_by=-logical_date"; 2_000].join("&");
    for uri in [
        format!("/api/v2/dags/hello/dagRuns?{many}"),
        format!("/api/v2/dags/hello/dagRuns/a/taskInstances?{many}"),
        format!("/api/v2/dags?{}", vec!["tags=x"; 101].join("&")),
    ] {
        let answer = server.get(&uri).await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "{uri}: {}",
            answer.text
        );
        assert!(
            answer.text.contains("more than 100 times"),
            "{}",
            answer.text
        );
    }
    let hundred = vec!["order_by=-logical_date"; 100].join("&");
    let answer = server
        .get(&format!("/api/v2/dags/hello/dagRuns?{hundred}"))
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
}

#[tokio::test]
async fn runs_are_listed_filtered_sorted_and_paged() {
    runs_are_listed_filtered_sorted_and_paged_on(TestServer::sqlite().await).await;
}

#[tokio::test]
async fn runs_are_listed_filtered_sorted_and_paged_on_postgres() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    runs_are_listed_filtered_sorted_and_paged_on(TestServer::on(db).await).await;
}

async fn runs_are_listed_filtered_sorted_and_paged_on(server: TestServer) {
    server
        .load_dags(&[
            ("hello.yaml", HELLO),
            ("other.yaml", &HELLO.replace("hello:", "other:")),
        ])
        .await;
    for (run, date) in [
        ("a", "2026-01-01T00:00:00Z"),
        ("b", "2026-01-03T00:00:00Z"),
        ("c", "2026-01-02T00:00:00Z"),
    ] {
        assert_eq!(trigger(&server, run, date).await.status, StatusCode::OK);
    }
    let other = post(
        &server,
        "/api/v2/dags/other/dagRuns",
        json!({"dag_run_id": "o", "logical_date": null}),
    )
    .await;
    assert_eq!(other.status, StatusCode::OK);
    let run_ids = |answer: &Answer| -> Vec<String> {
        answer.json["dag_runs"]
            .as_array()
            .expect("the API answers as Airflow does")
            .iter()
            .map(|r| {
                r["dag_run_id"]
                    .as_str()
                    .expect("the API answers as Airflow does")
                    .to_owned()
            })
            .collect()
    };

    let all = server.get("/api/v2/dags/hello/dagRuns").await;
    assert_eq!(all.status, StatusCode::OK, "{}", all.text);
    assert_eq!(run_ids(&all), vec!["a", "b", "c"]);
    assert_eq!(all.json["total_entries"], 3);
    assert_run_shape(&all.json["dag_runs"][0]);

    let newest = server
        .get("/api/v2/dags/hello/dagRuns?order_by=-logical_date&limit=2&offset=1")
        .await;
    assert_eq!(run_ids(&newest), vec!["c", "a"]);
    assert_eq!(newest.json["total_entries"], 3);

    let since = server
        .get("/api/v2/dags/hello/dagRuns?logical_date_gte=2026-01-02T00:00:00%2B00:00&state=queued")
        .await;
    assert_eq!(run_ids(&since), vec!["b", "c"]);
    // apache-airflow-client writes `+0000`; Airflow also reads naive times and dates as UTC.
    for since in [
        "2026-01-02T00:00:00.000000%2B0000",
        "2026-01-02T00:00:00",
        "2026-01-02",
    ] {
        let answer = server
            .get(&format!(
                "/api/v2/dags/hello/dagRuns?logical_date_gte={since}&state=queued"
            ))
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{since}: {}", answer.text);
        assert_eq!(run_ids(&answer), vec!["b", "c"], "{since}");
    }
    let every_dag = server.get("/api/v2/dags/~/dagRuns?order_by=dag_id").await;
    assert_eq!(every_dag.json["total_entries"], 4);
    assert_eq!(
        run_ids(&every_dag)
            .last()
            .expect("the API answers as Airflow does"),
        "o"
    );

    let batch = post(
        &server,
        "/api/v2/dags/~/dagRuns/list",
        json!({"dag_ids": ["other"], "states": ["queued"]}),
    )
    .await;
    assert_eq!(batch.status, StatusCode::OK, "{}", batch.text);
    assert_eq!(run_ids(&batch), vec!["o"]);

    let unsupported = server
        .get("/api/v2/dags/hello/dagRuns?conf_contains=x")
        .await;
    assert_eq!(unsupported.status, StatusCode::BAD_REQUEST);
    let bad_order = server
        .get("/api/v2/dags/hello/dagRuns?order_by=colour")
        .await;
    assert_eq!(bad_order.status, StatusCode::BAD_REQUEST);
    let bad_state = server.get("/api/v2/dags/hello/dagRuns?state=sleepy").await;
    assert_eq!(bad_state.status, StatusCode::UNPROCESSABLE_ENTITY);
    let bad_date = server
        .get("/api/v2/dags/hello/dagRuns?logical_date_gte=yesterday")
        .await;
    assert_eq!(bad_date.status, StatusCode::UNPROCESSABLE_ENTITY);
    let no_dag = server.get("/api/v2/dags/nope/dagRuns").await;
    assert_eq!(no_dag.status, StatusCode::NOT_FOUND);

    let one = server.get("/api/v2/dags/hello/dagRuns/b").await;
    assert_eq!(one.json["logical_date"], "2026-01-03T00:00:00Z");
    let missing = server.get("/api/v2/dags/hello/dagRuns/zzz").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(
        missing.json["detail"],
        "The DagRun with dag_id: `hello` and run_id: `zzz` was not found"
    );
    server.finish().await;
}

#[tokio::test]
async fn marking_a_run_moves_its_task_instances() {
    marking_a_run_moves_its_task_instances_on(TestServer::sqlite().await).await;
}

#[tokio::test]
async fn marking_a_run_moves_its_task_instances_on_postgres() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    marking_a_run_moves_its_task_instances_on(TestServer::on(db).await).await;
}

async fn marking_a_run_moves_its_task_instances_on(server: TestServer) {
    server.load_dags(&[("hello.yaml", HELLO)]).await;
    trigger(&server, "r", "2026-01-02T00:00:00Z").await;
    let store = &server.db.store;

    let failed = server
        .call(
            Method::PATCH,
            "/api/v2/dags/hello/dagRuns/r",
            Some(Role::Op),
            Some(json!({"state": "failed", "note": "stop"})),
        )
        .await;
    assert_eq!(failed.status, StatusCode::OK, "{}", failed.text);
    assert_run_shape(&failed.json);
    assert_eq!(failed.json["state"], "failed");
    assert_eq!(failed.json["note"], "stop");
    assert!(failed.json["end_date"].is_string());
    let states: Vec<TaskState> = store
        .task_instances("hello", "r")
        .await
        .expect("the API answers as Airflow does")
        .iter()
        .map(|t| t.state)
        .collect();
    assert_eq!(
        states,
        vec![TaskState::Skipped, TaskState::Skipped],
        "nothing ran: every instance is skipped, as Airflow does"
    );

    let success = server
        .call(
            Method::PATCH,
            "/api/v2/dags/hello/dagRuns/r?update_mask=state",
            Some(Role::Op),
            Some(json!({"state": "success", "note": "ignored by the mask"})),
        )
        .await;
    assert_eq!(success.json["state"], "success");
    assert_eq!(success.json["note"], "stop");
    assert!(
        store
            .task_instances("hello", "r")
            .await
            .expect("the API answers as Airflow does")
            .iter()
            .all(|t| t.state == TaskState::Skipped),
        "finished instances keep their states, as Airflow 3 marks a run"
    );
    let queued = server
        .call(
            Method::PATCH,
            "/api/v2/dags/hello/dagRuns/r",
            Some(Role::Op),
            Some(json!({"state": "queued"})),
        )
        .await;
    assert_eq!(queued.json["state"], "queued");
    assert_eq!(queued.json["end_date"], Value::Null);

    for (body, status) in [
        (
            json!({"state": "running"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (json!({"mood": "happy"}), StatusCode::UNPROCESSABLE_ENTITY),
        (
            json!({"note": "x".repeat(1001)}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    ] {
        let answer = server
            .call(
                Method::PATCH,
                "/api/v2/dags/hello/dagRuns/r",
                Some(Role::Op),
                Some(body),
            )
            .await;
        assert_eq!(answer.status, status, "{}", answer.text);
    }
    let missing = server
        .call(
            Method::PATCH,
            "/api/v2/dags/hello/dagRuns/zzz",
            Some(Role::Op),
            Some(json!({"state": "failed"})),
        )
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    server.finish().await;
}

#[tokio::test]
async fn only_runs_not_running_are_deleted() {
    let server = TestServer::sqlite().await;
    server.load_dags(&[("hello.yaml", HELLO)]).await;
    trigger(&server, "r", "2026-01-02T00:00:00Z").await;
    trigger(&server, "live", "2026-01-03T00:00:00Z").await;
    let store = &server.db.store;
    let live = store.run("hello", "live").await.unwrap().unwrap();
    assert!(
        store
            .transition_run(&live, DagRunState::Running, common::t0())
            .await
            .unwrap()
    );
    let delete = |uri: &'static str| server.call(Method::DELETE, uri, Some(Role::Op), None);
    let refused = delete("/api/v2/dags/hello/dagRuns/live").await;
    assert_eq!(refused.status, StatusCode::CONFLICT);
    let deleted = delete("/api/v2/dags/hello/dagRuns/r").await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert_eq!(store.run("hello", "r").await.unwrap(), None);
    assert_eq!(
        delete("/api/v2/dags/hello/dagRuns/r").await.status,
        StatusCode::NOT_FOUND
    );
    server.finish().await;
}

#[tokio::test]
async fn clearing_a_run_is_a_dry_run_unless_asked() {
    let server = TestServer::sqlite().await;
    server.load_dags(&[("hello.yaml", HELLO)]).await;
    trigger(&server, "r", "2026-01-02T00:00:00Z").await;
    let patch = server
        .call(
            Method::PATCH,
            "/api/v2/dags/hello/dagRuns/r",
            Some(Role::Op),
            Some(json!({"state": "failed"})),
        )
        .await;
    assert_eq!(patch.status, StatusCode::OK);

    let dry = post(&server, "/api/v2/dags/hello/dagRuns/r/clear", json!({})).await;
    assert_eq!(dry.status, StatusCode::OK, "{}", dry.text);
    assert_eq!(dry.json["total_entries"], 2);
    assert_eq!(dry.json["task_instances"][0]["task_id"], "after");
    assert_eq!(dry.json["task_instances"][0]["state"], "skipped");
    let store = &server.db.store;
    assert_eq!(
        store.run("hello", "r").await.unwrap().unwrap().state,
        DagRunState::Failed,
        "a dry run changes nothing"
    );
    let only_failed = post(
        &server,
        "/api/v2/dags/hello/dagRuns/r/clear",
        json!({"only_failed": true}),
    )
    .await;
    assert_eq!(only_failed.json["total_entries"], 0);

    let cleared = post(
        &server,
        "/api/v2/dags/hello/dagRuns/r/clear",
        json!({"dry_run": false, "note": "again"}),
    )
    .await;
    assert_eq!(cleared.status, StatusCode::OK, "{}", cleared.text);
    assert_run_shape(&cleared.json);
    assert_eq!(cleared.json["state"], "queued");
    assert_eq!(cleared.json["note"], "again");
    assert!(
        store
            .task_instances("hello", "r")
            .await
            .unwrap()
            .iter()
            .all(|t| t.state == TaskState::NoStatus)
    );
    let both = post(
        &server,
        "/api/v2/dags/hello/dagRuns/r/clear",
        json!({"only_failed": true, "only_new": true}),
    )
    .await;
    assert_eq!(both.status, StatusCode::UNPROCESSABLE_ENTITY);
    server.finish().await;
}

#[tokio::test]
async fn dags_sort_by_their_last_run() {
    dags_sort_by_their_last_run_on(TestServer::sqlite().await).await;
}

#[tokio::test]
async fn dags_sort_by_their_last_run_on_postgres() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    dags_sort_by_their_last_run_on(TestServer::on(db).await).await;
}

async fn dags_sort_by_their_last_run_on(server: TestServer) {
    server
        .load_dags(&[
            ("hello.yaml", HELLO),
            ("other.yaml", &HELLO.replace("hello:", "other:")),
            ("idle.yaml", &HELLO.replace("hello:", "idle:")),
        ])
        .await;
    // hello's last run (the one created last) started first; other's has not started.
    server.trigger("hello", "h1", None).await;
    server.start_run("hello", "h1", &[]).await;
    server.trigger("other", "o1", None).await;
    server.start_run("other", "o1", &[]).await;
    server.trigger("hello", "h2", None).await;
    server.start_run("hello", "h2", &[]).await;
    server.trigger("other", "o2", None).await;
    let dag_ids = |answer: &Answer| -> Vec<String> {
        answer.json["dags"]
            .as_array()
            .expect("the API answers as Airflow does")
            .iter()
            .filter_map(|d| d["dag_id"].as_str().map(str::to_owned))
            .collect()
    };
    for (order, expected) in [
        // Without a last run, or a start, a DAG sorts last ascending and first descending.
        ("last_run_start_date", ["hello", "idle", "other"]),
        ("-last_run_start_date", ["idle", "other", "hello"]),
        ("last_run_state", ["other", "hello", "idle"]),
    ] {
        let answer = server.get(&format!("/api/v2/dags?order_by={order}")).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
        assert_eq!(dag_ids(&answer), expected, "{order}");
    }
    server.finish().await;
}
