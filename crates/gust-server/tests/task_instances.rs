//! Task instances, their tries, XComs and tasks through the API: listing a run's instances
//! (before and after the scheduler created them), marking them, clearing them.

mod common;

use axum::http::{Method, StatusCode};
use common::{Answer, HELLO, TestServer, t0};
use gust_core::state::{DagRunState, TaskState};
use gust_store::{Role, TaskMove, TryChange};
use serde_json::{Value, json};

/// Every field Airflow's `TaskInstanceResponse` requires.
const INSTANCE_FIELDS: &[&str] = &[
    "id",
    "task_id",
    "dag_id",
    "dag_run_id",
    "map_index",
    "logical_date",
    "run_after",
    "start_date",
    "end_date",
    "duration",
    "state",
    "try_number",
    "max_tries",
    "task_display_name",
    "dag_display_name",
    "hostname",
    "unixname",
    "pool",
    "pool_slots",
    "queue",
    "priority_weight",
    "operator",
    "operator_name",
    "queued_when",
    "scheduled_when",
    "pid",
    "executor",
    "executor_config",
    "note",
    "rendered_map_index",
    "trigger",
    "triggerer_job",
    "dag_version",
];

fn assert_instance_shape(ti: &Value) {
    for field in INSTANCE_FIELDS {
        assert!(ti.get(field).is_some(), "{field} missing from {ti}");
    }
    let id = ti["id"].as_str().expect("the test setup works");
    let groups: Vec<usize> = id.split('-').map(str::len).collect();
    assert_eq!(groups, vec![8, 4, 4, 4, 12], "{id} is a UUID");
}

async fn post(server: &TestServer, uri: &str, body: Value) -> Answer {
    server
        .call(Method::POST, uri, Some(Role::Op), Some(body))
        .await
}

async fn patch(server: &TestServer, uri: &str, body: Value) -> Answer {
    server
        .call(Method::PATCH, uri, Some(Role::Op), Some(body))
        .await
}

/// A triggered run `r` of `hello` whose task `say` ran `tries` tries: each failed but the last,
/// which ended in `last` (with an XCom when it succeeded).
async fn run_with_tries(server: &TestServer, tries: i32, last: TaskState) {
    let trigger = post(
        server,
        "/api/v2/dags/hello/dagRuns",
        json!({"dag_run_id": "r", "logical_date": "2026-01-02T00:00:00Z"}),
    )
    .await;
    assert_eq!(trigger.status, StatusCode::OK, "{}", trigger.text);
    let store = &server.db.store;
    let run = store
        .run("hello", "r")
        .await
        .expect("the test setup works")
        .expect("the test setup works");
    assert!(
        store
            .transition_run(&run, DagRunState::Running, t0())
            .await
            .expect("the test setup works")
    );
    store
        .create_task_instances("hello", "r", &["say", "after"])
        .await
        .expect("the test setup works");
    for n in 1..=tries {
        let end = if n == tries {
            last
        } else {
            TaskState::UpForRetry
        };
        let steps = [
            (
                TaskState::Queued,
                TryChange::Queued {
                    try_number: n,
                    rendered_args: json!({"bash_command": "echo hello world"}),
                    xcoms: Vec::new(),
                    log_location: format!("/elsewhere/attempt={n}.log"),
                    at: t0(),
                },
            ),
            (
                TaskState::Running,
                TryChange::Started {
                    try_number: n,
                    at: t0() + chrono::Duration::seconds(1),
                },
            ),
            (
                end,
                TryChange::Ended {
                    try_number: n,
                    at: t0() + chrono::Duration::seconds(3),
                    failure: None,
                    xcoms: (end == TaskState::Success)
                        .then(|| ("return_value".to_owned(), json!({"greeting": "hello"})))
                        .into_iter()
                        .collect(),
                    outlets: Vec::new(),
                },
            ),
        ];
        for (to, change) in steps {
            let ti = store
                .task_instances("hello", "r")
                .await
                .expect("the test setup works")
                .into_iter()
                .find(|t| t.task_id == "say")
                .expect("the test setup works");
            let mv = TaskMove {
                dag_id: "hello".into(),
                run_id: "r".into(),
                task_id: "say".into(),
                map_index: gust_store::UNMAPPED,
                from: ti.state,
                version: ti.version,
                to,
                next_retry_at: None,
                try_change: Some(change),
            };
            let mv = if ti.state == TaskState::UpForRetry {
                // A retry is scheduled again before it is queued.
                let schedule = TaskMove {
                    to: TaskState::Scheduled,
                    try_change: None,
                    ..mv.clone()
                };
                assert_eq!(
                    store
                        .apply_moves(&[schedule])
                        .await
                        .expect("the test setup works"),
                    vec![true]
                );
                TaskMove {
                    from: TaskState::Scheduled,
                    version: ti.version + 1,
                    ..mv
                }
            } else {
                mv
            };
            assert_eq!(
                store
                    .apply_moves(&[mv])
                    .await
                    .expect("the test setup works"),
                vec![true]
            );
        }
    }
}

fn task_ids(answer: &Answer) -> Vec<String> {
    answer.json["task_instances"]
        .as_array()
        .expect("the test setup works")
        .iter()
        .map(|t| {
            t["task_id"]
                .as_str()
                .expect("the test setup works")
                .to_owned()
        })
        .collect()
}

#[tokio::test]
async fn a_runs_instances_are_listed_before_and_after_they_run() {
    let server = TestServer::sqlite().await;
    server.load_dags(&[("hello.yaml", HELLO)]).await;
    let trigger = post(
        &server,
        "/api/v2/dags/hello/dagRuns",
        json!({"dag_run_id": "q", "logical_date": null}),
    )
    .await;
    assert_eq!(trigger.status, StatusCode::OK);
    let queued = server
        .get("/api/v2/dags/hello/dagRuns/q/taskInstances")
        .await;
    assert_eq!(queued.status, StatusCode::OK, "{}", queued.text);
    assert_eq!(task_ids(&queued), vec!["after", "say"]);
    assert_eq!(queued.json["total_entries"], 2);
    let first = &queued.json["task_instances"][0];
    assert_instance_shape(first);
    assert_eq!(first["state"], Value::Null, "not scheduled yet");
    assert_eq!(first["operator"], "BashOperator");

    run_with_tries(&server, 2, TaskState::Success).await;
    let listed = server
        .get("/api/v2/dags/hello/dagRuns/r/taskInstances?state=success")
        .await;
    assert_eq!(task_ids(&listed), vec!["say"]);
    let say = &listed.json["task_instances"][0];
    assert_instance_shape(say);
    assert_eq!(say["try_number"], 2);
    assert_eq!(say["duration"], 2.0);
    assert_eq!(say["rendered_fields"]["bash_command"], "echo hello world");
    let by_task = server
        .get("/api/v2/dags/hello/dagRuns/r/taskInstances?task_id=after&order_by=-task_id")
        .await;
    assert_eq!(task_ids(&by_task), vec!["after"]);

    let one = server
        .get("/api/v2/dags/hello/dagRuns/r/taskInstances/say")
        .await;
    assert_eq!(one.status, StatusCode::OK);
    assert_eq!(one.json["id"], say["id"], "ids are stable");
    let missing = server
        .get("/api/v2/dags/hello/dagRuns/r/taskInstances/nope")
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(
        missing.json["detail"],
        "The Task Instance with dag_id: `hello`, run_id: `r` and task_id: `nope` was not found"
    );
    let no_run = server
        .get("/api/v2/dags/hello/dagRuns/zzz/taskInstances")
        .await;
    assert_eq!(no_run.status, StatusCode::NOT_FOUND);

    let tries = server
        .get("/api/v2/dags/hello/dagRuns/r/taskInstances/say/tries")
        .await;
    assert_eq!(tries.status, StatusCode::OK, "{}", tries.text);
    assert_eq!(tries.json["total_entries"], 2);
    assert_eq!(tries.json["task_instances"][0]["state"], "up_for_retry");
    assert_eq!(tries.json["task_instances"][1]["state"], "success");
    let second = server
        .get("/api/v2/dags/hello/dagRuns/r/taskInstances/say/tries/2")
        .await;
    assert_eq!(second.json["try_number"], 2);
    assert_eq!(second.json["operator_name"], "BashOperator");
    let third = server
        .get("/api/v2/dags/hello/dagRuns/r/taskInstances/say/tries/3")
        .await;
    assert_eq!(third.status, StatusCode::NOT_FOUND);
    let never = server
        .get("/api/v2/dags/hello/dagRuns/r/taskInstances/after/tries")
        .await;
    assert_eq!(never.json["total_entries"], 1);
    assert_eq!(never.json["task_instances"][0]["try_number"], 0);
    server.finish().await;
}

#[tokio::test]
async fn marking_an_instance_moves_it_and_reruns_what_failed_downstream() {
    let server = TestServer::sqlite().await;
    server.load_dags(&[("hello.yaml", HELLO)]).await;
    run_with_tries(&server, 1, TaskState::Failed).await;
    let store = &server.db.store;
    // The scheduler would now fail `after` upstream and end the run.
    let after = store
        .task_instances("hello", "r")
        .await
        .unwrap()
        .into_iter()
        .find(|t| t.task_id == "after")
        .unwrap();
    assert!(
        store
            .transition_task_instance(&after, TaskState::UpstreamFailed)
            .await
            .unwrap()
    );
    let run = store.run("hello", "r").await.unwrap().unwrap();
    assert!(
        store
            .transition_run(&run, DagRunState::Failed, t0())
            .await
            .unwrap()
    );

    let uri = "/api/v2/dags/hello/dagRuns/r/taskInstances/say";
    let dry = patch(
        &server,
        &format!("{uri}/dry_run"),
        json!({"new_state": "success"}),
    )
    .await;
    assert_eq!(dry.status, StatusCode::OK, "{}", dry.text);
    assert_eq!(task_ids(&dry), vec!["say"]);
    assert_eq!(
        dry.json["task_instances"][0]["state"], "failed",
        "unchanged"
    );

    let marked = patch(
        &server,
        uri,
        json!({"new_state": "success", "note": "fixed"}),
    )
    .await;
    assert_eq!(marked.status, StatusCode::OK, "{}", marked.text);
    assert_eq!(marked.json["total_entries"], 1);
    let say = &marked.json["task_instances"][0];
    assert_instance_shape(say);
    assert_eq!(say["state"], "success");
    assert_eq!(say["note"], "fixed");
    let after = server
        .get("/api/v2/dags/hello/dagRuns/r/taskInstances/after")
        .await;
    assert_eq!(after.json["state"], Value::Null, "cleared to run again");
    assert_eq!(
        store.run("hello", "r").await.unwrap().unwrap().state,
        DagRunState::Queued,
        "the failed run goes back to the queue"
    );

    let with_downstream = patch(
        &server,
        uri,
        json!({"new_state": "skipped", "include_downstream": true}),
    )
    .await;
    assert_eq!(with_downstream.status, StatusCode::OK);
    assert!(
        store
            .task_instances("hello", "r")
            .await
            .unwrap()
            .iter()
            .all(|t| t.state == TaskState::Skipped)
    );
    let note_only = patch(
        &server,
        &format!("{uri}?update_mask=note"),
        json!({"new_state": "failed", "note": "n"}),
    )
    .await;
    assert_eq!(note_only.json["task_instances"][0]["state"], "skipped");
    assert_eq!(note_only.json["task_instances"][0]["note"], "n");

    for (body, status) in [
        (
            json!({"new_state": "running"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (json!({"new_state": null}), StatusCode::UNPROCESSABLE_ENTITY),
        (
            json!({"state": "success"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    ] {
        let answer = patch(&server, uri, body).await;
        assert_eq!(answer.status, status, "{}", answer.text);
    }
    let unknown = patch(
        &server,
        "/api/v2/dags/hello/dagRuns/r/taskInstances/nope",
        json!({"new_state": "success"}),
    )
    .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    server.finish().await;
}

#[tokio::test]
async fn a_mark_with_past_or_future_reaches_the_runs_on_the_schedule() {
    let server = TestServer::sqlite().await;
    server.load_dags(&[("hello.yaml", HELLO)]).await;
    run_with_tries(&server, 1, TaskState::Failed).await;
    // `hello` is @daily: the runs of 01-01 and 01-03 are on its schedule, 01-01 noon is not.
    for (run_id, date) in [
        ("before", "2026-01-01T00:00:00Z"),
        ("noon", "2026-01-01T12:00:00Z"),
        ("after", "2026-01-03T00:00:00Z"),
    ] {
        let trigger = post(
            &server,
            "/api/v2/dags/hello/dagRuns",
            json!({"dag_run_id": run_id, "logical_date": date}),
        )
        .await;
        assert_eq!(trigger.status, StatusCode::OK, "{}", trigger.text);
    }
    let uri = "/api/v2/dags/hello/dagRuns/r/taskInstances/say";
    let body = json!({"new_state": "success", "include_past": true});
    let dry = patch(&server, &format!("{uri}/dry_run"), body.clone()).await;
    assert_eq!(dry.status, StatusCode::OK, "{}", dry.text);
    let mut runs: Vec<&str> = dry.json["task_instances"]
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|ti| ti["dag_run_id"].as_str())
        .collect();
    runs.sort_unstable();
    assert_eq!(runs, vec!["before", "r"]);

    let marked = patch(&server, uri, body).await;
    assert_eq!(marked.status, StatusCode::OK, "{}", marked.text);
    assert_eq!(marked.json["total_entries"], 1, "the named run's instance");
    let store = &server.db.store;
    let say = |run: &'static str| async move {
        store
            .task_instances("hello", run)
            .await
            .expect("the store answers")
            .into_iter()
            .find(|t| t.task_id == "say")
            .map(|t| t.state)
    };
    assert_eq!(say("r").await, Some(TaskState::Success));
    assert_eq!(say("before").await, Some(TaskState::Success));
    assert_ne!(
        say("noon").await,
        Some(TaskState::Success),
        "off the schedule"
    );
    assert_ne!(
        say("after").await,
        Some(TaskState::Success),
        "in the future"
    );

    let future = patch(
        &server,
        uri,
        json!({"new_state": "failed", "include_future": true}),
    )
    .await;
    assert_eq!(future.status, StatusCode::OK, "{}", future.text);
    assert_eq!(say("after").await, Some(TaskState::Failed));
    assert_eq!(say("before").await, Some(TaskState::Success), "in the past");
    server.finish().await;
}

#[tokio::test]
async fn clearing_task_instances_defaults_to_a_dry_run_of_failed_ones() {
    let server = TestServer::sqlite().await;
    server.load_dags(&[("hello.yaml", HELLO)]).await;
    run_with_tries(&server, 1, TaskState::Failed).await;
    let store = &server.db.store;
    let uri = "/api/v2/dags/hello/clearTaskInstances";
    let dry = post(&server, uri, json!({"dag_run_id": "r"})).await;
    assert_eq!(dry.status, StatusCode::OK, "{}", dry.text);
    assert_eq!(task_ids(&dry), vec!["say"]);
    assert_eq!(dry.json["task_instances"][0]["state"], "failed");

    let all = post(
        &server,
        uri,
        json!({"dag_run_id": "r", "only_failed": false, "task_ids": ["say"], "include_downstream": true}),
    )
    .await;
    assert_eq!(task_ids(&all), vec!["after", "say"]);

    let by_date = post(
        &server,
        uri,
        json!({"start_date": "2026-01-01T00:00:00Z", "end_date": "2026-01-03T00:00:00Z"}),
    )
    .await;
    assert_eq!(task_ids(&by_date), vec!["say"]);
    let none = post(&server, uri, json!({"start_date": "2026-02-01T00:00:00Z"})).await;
    assert_eq!(none.json["total_entries"], 0);

    let cleared = post(
        &server,
        uri,
        json!({"dag_run_id": "r", "dry_run": false, "note": "retry"}),
    )
    .await;
    assert_eq!(cleared.status, StatusCode::OK, "{}", cleared.text);
    assert_eq!(cleared.json["task_instances"][0]["state"], Value::Null);
    assert_eq!(cleared.json["task_instances"][0]["note"], "retry");
    let say = store
        .task_instances("hello", "r")
        .await
        .unwrap()
        .into_iter()
        .find(|t| t.task_id == "say")
        .unwrap();
    assert_eq!(say.state, TaskState::NoStatus);

    for body in [
        json!({"only_failed": true, "only_running": true}),
        json!({"dag_run_id": "r", "start_date": "2026-01-01T00:00:00Z"}),
        json!({"task_ids": []}),
        json!({"frobnicate": true}),
    ] {
        let answer = post(&server, uri, body).await;
        assert_eq!(
            answer.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{}",
            answer.text
        );
    }
    // A pair naming an instance the task does not have matches nothing, as in Airflow.
    let mapped = post(&server, uri, json!({"task_ids": [["say", 3]]})).await;
    assert_eq!(mapped.status, StatusCode::OK, "{}", mapped.text);
    assert_eq!(mapped.json["total_entries"], 0);
    let no_run = post(&server, uri, json!({"dag_run_id": "zzz"})).await;
    assert_eq!(no_run.status, StatusCode::NOT_FOUND);
    assert_eq!(
        no_run.json["detail"],
        "Dag Run id zzz not found in dag hello"
    );
    server.finish().await;
}

#[tokio::test]
async fn xcoms_are_listed_and_read_natively_or_as_text() {
    let server = TestServer::sqlite().await;
    server.load_dags(&[("hello.yaml", HELLO)]).await;
    run_with_tries(&server, 1, TaskState::Success).await;
    let base = "/api/v2/dags/hello/dagRuns/r/taskInstances/say/xcomEntries";
    let list = server.get(base).await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.text);
    assert_eq!(list.json["total_entries"], 1);
    let entry = &list.json["xcom_entries"][0];
    for field in [
        "key",
        "timestamp",
        "logical_date",
        "map_index",
        "task_id",
        "dag_id",
        "run_id",
        "dag_display_name",
        "task_display_name",
        "run_after",
    ] {
        assert!(entry.get(field).is_some(), "{field} missing from {entry}");
    }
    assert_eq!(entry["key"], "return_value");
    assert_eq!(
        entry["timestamp"], "2026-01-01T00:00:03Z",
        "when the try ended"
    );
    let native = server.get(&format!("{base}/return_value")).await;
    assert_eq!(native.json["value"], json!({"greeting": "hello"}));
    let text = server
        .get(&format!("{base}/return_value?stringify=true"))
        .await;
    assert_eq!(text.json["value"], r#"{"greeting":"hello"}"#);
    let missing = server.get(&format!("{base}/nope")).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(
        missing.json["detail"],
        "XCom entry with key: `nope` not found"
    );
    let every_task = server
        .get("/api/v2/dags/hello/dagRuns/r/taskInstances/~/xcomEntries?xcom_key=return_value")
        .await;
    assert_eq!(every_task.json["total_entries"], 1);
    server.finish().await;
}

#[tokio::test]
async fn tasks_are_described_from_the_dag_definition() {
    let server = TestServer::sqlite().await;
    server.load_dags(&[("hello.yaml", HELLO)]).await;
    let tasks = server
        .get("/api/v2/dags/hello/tasks?order_by=-task_id")
        .await;
    assert_eq!(tasks.status, StatusCode::OK, "{}", tasks.text);
    assert_eq!(tasks.json["total_entries"], 2);
    let say = &tasks.json["tasks"][0];
    assert_eq!(say["task_id"], "say");
    assert_eq!(say["operator_name"], "BashOperator");
    assert_eq!(say["downstream_task_ids"], json!(["after"]));
    assert_eq!(say["trigger_rule"], "all_success");
    assert_eq!(
        say["retry_delay"],
        json!({"__type": "TimeDelta", "days": 0, "seconds": 300, "microseconds": 0})
    );
    assert_eq!(say["class_ref"]["class_name"], "BashOperator");
    let one = server.get("/api/v2/dags/hello/tasks/after").await;
    assert_eq!(one.json["downstream_task_ids"], json!([]));
    let missing = server.get("/api/v2/dags/hello/tasks/nope").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.json["detail"], "Task with id nope was not found");
    let bad = server.get("/api/v2/dags/hello/tasks?order_by=colour").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    server.finish().await;
}

#[tokio::test]
async fn instances_are_listed_across_runs_and_dags() {
    let server = TestServer::sqlite().await;
    server.load_dags(&[("hello.yaml", HELLO)]).await;
    run_with_tries(&server, 1, TaskState::Success).await;
    let queued = post(
        &server,
        "/api/v2/dags/hello/dagRuns",
        json!({"dag_run_id": "later", "logical_date": null}),
    )
    .await;
    assert_eq!(queued.status, StatusCode::OK);

    let succeeded = server
        .get("/api/v2/dags/hello/dagRuns/~/taskInstances?state=success")
        .await;
    assert_eq!(succeeded.status, StatusCode::OK, "{}", succeeded.text);
    assert_eq!(task_ids(&succeeded), vec!["say"]);
    assert_instance_shape(&succeeded.json["task_instances"][0]);
    assert_eq!(succeeded.json["task_instances"][0]["try_number"], 1);
    assert_eq!(
        succeeded.json["task_instances"][0]["operator"],
        "BashOperator"
    );
    let everything = server
        .get("/api/v2/dags/~/dagRuns/~/taskInstances?order_by=-task_id&limit=1")
        .await;
    assert_eq!(task_ids(&everything), vec!["say"]);
    assert_eq!(
        everything.json["total_entries"], 2,
        "the queued run has no instances yet"
    );
    let no_dag = server.get("/api/v2/dags/~/dagRuns/r/taskInstances").await;
    assert_eq!(no_dag.status, StatusCode::BAD_REQUEST);
    let by_pool = server
        .get("/api/v2/dags/hello/dagRuns/~/taskInstances?pool=default_pool")
        .await;
    assert_eq!(by_pool.status, StatusCode::BAD_REQUEST);
    let unknown = server
        .get("/api/v2/dags/nope/dagRuns/~/taskInstances")
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    server.finish().await;
}

#[tokio::test]
async fn each_instance_of_a_mapped_task_is_listed_with_its_map_index() {
    let server = TestServer::sqlite().await;
    server.load_dags(&[("hello.yaml", HELLO)]).await;
    run_with_tries(&server, 1, TaskState::Success).await;
    let store = &server.db.store;
    let after = store
        .task_instances("hello", "r")
        .await
        .expect("read")
        .into_iter()
        .find(|t| t.task_id == "after")
        .expect("after");
    assert!(store.expand_task_instance(&after, 2).await.expect("expand"));
    let listed = server
        .get("/api/v2/dags/hello/dagRuns/r/taskInstances")
        .await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.text);
    let instances = listed.json["task_instances"].as_array().expect("a list");
    let keys: Vec<(&str, i64)> = instances
        .iter()
        .map(|t| {
            (
                t["task_id"].as_str().unwrap_or_default(),
                t["map_index"].as_i64().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(keys, [("after", 0), ("after", 1), ("say", -1)]);
    assert_ne!(
        instances[0]["id"], instances[1]["id"],
        "each instance has its own id"
    );
    server.finish().await;
}
