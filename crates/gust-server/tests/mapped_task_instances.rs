//! The instances of a mapped task through the API, as Airflow 3.3.2 serves them: each read by
//! its index (`/{task_id}/{map_index}`), listed (`listMapped`, the run's listing), its tries
//! and log, marked alone or all together, cleared alone (`[task_id, map_index]` pairs), and
//! named by its rendered `map_index_template`.

mod common;

use axum::http::{Method, StatusCode};
use common::{Answer, TestServer, t0};
use gust_core::state::TaskState;
use gust_store::{InstanceTarget, Role, TaskMove, TryChange};
use serde_json::{Value, json};

/// `fan` mapped over three literal items, named by a template; `after` downstream of it.
const FAN: &str = r#"
fan_out:
  schedule: null
  start_date: 2025-12-30
  tasks:
    - task_id: fan
      operator: bash
      partial:
        bash_command: echo $LETTER
      expand:
        env: [{LETTER: a}, {LETTER: b}, {LETTER: c}]
      map_index_template: "{{ task.env.LETTER }}"
    - task_id: after
      operator: bash
      bash_command: echo done
      dependencies: [fan]
"#;

const RUN: &str = "/api/v2/dags/fan_out/dagRuns/r/taskInstances";

/// A server with run `r` of `fan_out` started and `fan` expanded into three instances, the
/// second and third named `b` and `c` (the first not yet, as before its try is handed over).
async fn expanded() -> TestServer {
    let server = TestServer::sqlite().await;
    server.load_dags(&[("fan.yaml", FAN)]).await;
    server.trigger("fan_out", "r", None).await;
    server.start_run("fan_out", "r", &["fan", "after"]).await;
    let store = &server.db.store;
    let fan = store
        .task_instances("fan_out", "r")
        .await
        .expect("the test setup works")
        .into_iter()
        .find(|ti| ti.task_id == "fan")
        .expect("the test setup works");
    assert!(
        store
            .expand_task_instance(&fan, 3)
            .await
            .expect("the test setup works")
    );
    for (index, name) in [(1, "b"), (2, "c")] {
        assert!(
            store
                .set_rendered_map_index("fan_out", "r", "fan", index, Some(name))
                .await
                .expect("the test setup works")
        );
    }
    server
}

/// Runs one try of instance `map_index` of `fan` to `end`, its log written at `log`.
async fn one_try(server: &TestServer, map_index: i32, end: TaskState, log: &std::path::Path) {
    std::fs::write(log, format!("instance {map_index} says hello\n")).expect("the log is written");
    let store = &server.db.store;
    let steps = [
        (
            TaskState::Queued,
            TryChange::Queued {
                try_number: 1,
                rendered_args: json!({"bash_command": "echo $LETTER"}),
                xcoms: Vec::new(),
                log_location: log.display().to_string(),
                at: t0(),
            },
        ),
        (
            TaskState::Running,
            TryChange::Started {
                try_number: 1,
                at: t0() + chrono::Duration::seconds(1),
            },
        ),
        (
            end,
            TryChange::Ended {
                try_number: 1,
                at: t0() + chrono::Duration::seconds(2),
                failure: None,
                xcoms: Vec::new(),
                outlets: Vec::new(),
            },
        ),
    ];
    for (to, change) in steps {
        let ti = store
            .task_instances("fan_out", "r")
            .await
            .expect("the test setup works")
            .into_iter()
            .find(|t| t.task_id == "fan" && t.map_index == map_index)
            .expect("the test setup works");
        let moved = store
            .apply_moves(&[TaskMove {
                dag_id: "fan_out".into(),
                run_id: "r".into(),
                task_id: "fan".into(),
                map_index,
                from: ti.state,
                version: ti.version,
                to,
                next_retry_at: None,
                try_change: Some(change),
            }])
            .await
            .expect("the test setup works");
        assert_eq!(moved, vec![true]);
    }
}

/// `(task_id, map_index)` of each listed instance.
fn keys(answer: &Answer) -> Vec<(String, i64)> {
    answer.json["task_instances"]
        .as_array()
        .unwrap_or_else(|| panic!("a list of instances: {}", answer.text))
        .iter()
        .map(|t| {
            (
                t["task_id"].as_str().unwrap_or_default().to_owned(),
                t["map_index"].as_i64().unwrap_or(i64::MIN),
            )
        })
        .collect()
}

fn fan(indexes: &[i64]) -> Vec<(String, i64)> {
    indexes.iter().map(|i| ("fan".to_owned(), *i)).collect()
}

async fn send(server: &TestServer, method: Method, uri: &str, body: Value) -> Answer {
    server.call(method, uri, Some(Role::Op), Some(body)).await
}

async fn states(server: &TestServer) -> Vec<(String, i32, TaskState)> {
    server
        .db
        .store
        .task_instances("fan_out", "r")
        .await
        .expect("the test setup works")
        .into_iter()
        .map(|t| (t.task_id, t.map_index, t.state))
        .collect()
}

#[tokio::test]
async fn a_mapped_instance_is_read_by_its_index_and_the_task_alone_is_refused() {
    let server = expanded().await;
    let whole = server.get(&format!("{RUN}/fan")).await;
    assert_eq!(whole.status, StatusCode::NOT_FOUND, "{}", whole.text);
    assert_eq!(
        whole.json["detail"],
        "Task instance is mapped, add the map_index value to the URL"
    );

    let second = server.get(&format!("{RUN}/fan/1")).await;
    assert_eq!(second.status, StatusCode::OK, "{}", second.text);
    assert_eq!(
        (
            &second.json["task_id"],
            &second.json["map_index"],
            &second.json["rendered_map_index"]
        ),
        (&json!("fan"), &json!(1), &json!("b"))
    );
    // Not named yet: shown by its index, as Airflow's rendered_map_index falls back to it.
    let first = server.get(&format!("{RUN}/fan/0")).await;
    assert_eq!(first.json["rendered_map_index"], "0");
    assert_ne!(
        first.json["id"], second.json["id"],
        "each instance has its own id"
    );
    let after = server.get(&format!("{RUN}/after")).await;
    assert_eq!(
        (&after.json["map_index"], &after.json["rendered_map_index"]),
        (&json!(-1), &Value::Null)
    );

    let missing = server.get(&format!("{RUN}/fan/7")).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(
        missing.json["detail"],
        "The Mapped Task Instance with dag_id: `fan_out`, run_id: `r`, task_id: `fan`, and map_index: `7` was not found"
    );
    let unmapped_by_index = server.get(&format!("{RUN}/after/-1")).await;
    assert_eq!(unmapped_by_index.status, StatusCode::OK);
    let not_a_number = server.get(&format!("{RUN}/fan/first")).await;
    assert_eq!(not_a_number.status, StatusCode::UNPROCESSABLE_ENTITY);

    // The task's definition says it is mapped.
    let task = server.get("/api/v2/dags/fan_out/tasks/fan").await;
    assert_eq!(task.json["is_mapped"], true, "{}", task.text);
    server.finish().await;
}

#[tokio::test]
async fn list_mapped_filters_orders_and_pages_a_tasks_instances() {
    let server = expanded().await;
    let listed = server.get(&format!("{RUN}/fan/listMapped")).await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.text);
    assert_eq!(keys(&listed), fan(&[0, 1, 2]));
    assert_eq!(listed.json["total_entries"], 3);

    let cases = [
        ("order_by=-map_index", vec![2, 1, 0]),
        ("map_index=2&map_index=0", vec![0, 2]),
        ("rendered_map_index_pattern=B", vec![1]),
        ("rendered_map_index_prefix_pattern=c", vec![2]),
        // Named first (by name), then those shown by their index.
        ("order_by=-rendered_map_index", vec![0, 2, 1]),
        ("order_by=rendered_map_index", vec![1, 2, 0]),
        ("limit=1&offset=1", vec![1]),
        ("state=running", vec![]),
    ];
    for (query, expected) in cases {
        let answer = server.get(&format!("{RUN}/fan/listMapped?{query}")).await;
        assert_eq!(answer.status, StatusCode::OK, "{query}: {}", answer.text);
        assert_eq!(keys(&answer), fan(&expected), "{query}");
    }
    let paged = server
        .get(&format!("{RUN}/fan/listMapped?limit=1&offset=1"))
        .await;
    assert_eq!(
        paged.json["total_entries"], 3,
        "the total counts every page"
    );

    let unmapped = server.get(&format!("{RUN}/after/listMapped")).await;
    assert_eq!(unmapped.status, StatusCode::NOT_FOUND);
    assert_eq!(unmapped.json["detail"], "Task id after is not mapped");
    let unknown = server.get(&format!("{RUN}/nope/listMapped")).await;
    assert_eq!(unknown.json["detail"], "Task id nope not found");
    let bad_order = server
        .get(&format!("{RUN}/fan/listMapped?order_by=task_display_name"))
        .await;
    assert_eq!(bad_order.status, StatusCode::BAD_REQUEST);

    // The run's listing holds every instance; across runs too, filtered by index.
    let run = server.get(RUN).await;
    assert_eq!(
        keys(&run),
        vec![
            ("after".to_owned(), -1),
            ("fan".to_owned(), 0),
            ("fan".to_owned(), 1),
            ("fan".to_owned(), 2)
        ]
    );
    let unmapped_only = server.get(&format!("{RUN}?map_index=-1")).await;
    assert_eq!(keys(&unmapped_only), vec![("after".to_owned(), -1)]);
    let by_index = server
        .get(&format!("{RUN}?order_by=-map_index&task_id=fan"))
        .await;
    assert_eq!(keys(&by_index), fan(&[2, 1, 0]));
    let across = server
        .get("/api/v2/dags/fan_out/dagRuns/~/taskInstances?map_index=1&map_index=2&order_by=-map_index")
        .await;
    assert_eq!(across.status, StatusCode::OK, "{}", across.text);
    assert_eq!(keys(&across), fan(&[2, 1]));
    let named = &across.json["task_instances"][0]["rendered_map_index"];
    assert_eq!(named, "c");
    let batch = send(
        &server,
        Method::POST,
        "/api/v2/dags/~/dagRuns/~/taskInstances/list",
        json!({"task_ids": ["fan"], "order_by": "-map_index"}),
    )
    .await;
    assert_eq!(keys(&batch), fan(&[2, 1, 0]), "{}", batch.text);
    server.finish().await;
}

#[tokio::test]
async fn a_mapped_instances_tries_and_log_are_its_own() {
    let server = expanded().await;
    let log = server.logs_dir.path().join("fan-1.log");
    one_try(&server, 1, TaskState::Failed, &log).await;

    let tries = server.get(&format!("{RUN}/fan/1/tries")).await;
    assert_eq!(tries.status, StatusCode::OK, "{}", tries.text);
    assert_eq!(tries.json["total_entries"], 1);
    assert_eq!(tries.json["task_instances"][0]["map_index"], 1);
    assert_eq!(tries.json["task_instances"][0]["state"], "failed");
    let same = server.get(&format!("{RUN}/fan/tries?map_index=1")).await;
    assert_eq!(same.json, tries.json);
    // Never tried: the instance itself, as Airflow lists it.
    let untried = server.get(&format!("{RUN}/fan/2/tries")).await;
    assert_eq!(untried.json["task_instances"][0]["try_number"], 0);
    assert_eq!(untried.json["task_instances"][0]["map_index"], 2);
    let no_instance = server.get(&format!("{RUN}/fan/tries")).await;
    assert_eq!(no_instance.status, StatusCode::NOT_FOUND);
    assert_eq!(
        no_instance.json["detail"],
        "The Task Instance with dag_id: `fan_out`, run_id: `r`, task_id: `fan` and map_index: `-1` was not found"
    );

    let one = server.get(&format!("{RUN}/fan/1/tries/1")).await;
    assert_eq!(one.status, StatusCode::OK, "{}", one.text);
    assert_eq!(
        (&one.json["map_index"], &one.json["try_number"]),
        (&json!(1), &json!(1))
    );
    let by_query = server.get(&format!("{RUN}/fan/tries/1?map_index=1")).await;
    assert_eq!(by_query.json, one.json);
    let other_instance = server.get(&format!("{RUN}/fan/0/tries/1")).await;
    assert_eq!(other_instance.status, StatusCode::NOT_FOUND);
    assert_eq!(
        other_instance.json["detail"],
        "The Task Instance with dag_id: `fan_out`, run_id: `r`, task_id: `fan`, try_number: `1` and map_index: `0` was not found"
    );

    let text = server.get(&format!("{RUN}/fan/logs/1?map_index=1")).await;
    assert_eq!(text.status, StatusCode::OK, "{}", text.text);
    assert!(text.text.contains("instance 1 says hello"), "{}", text.text);
    let untried_log = server.get(&format!("{RUN}/fan/logs/1?map_index=0")).await;
    assert_eq!(untried_log.status, StatusCode::NOT_FOUND);
    server.finish().await;
}

#[tokio::test]
async fn one_instance_is_marked_alone_and_the_task_marks_every_instance() {
    let server = expanded().await;
    let one = send(
        &server,
        Method::PATCH,
        &format!("{RUN}/fan/1"),
        json!({"new_state": "success", "note": "by hand"}),
    )
    .await;
    assert_eq!(one.status, StatusCode::OK, "{}", one.text);
    assert_eq!(keys(&one), fan(&[1]));
    assert_eq!(one.json["task_instances"][0]["state"], "success");
    assert_eq!(one.json["task_instances"][0]["note"], "by hand");
    assert_eq!(
        states(&server).await,
        vec![
            ("after".to_owned(), -1, TaskState::NoStatus),
            ("fan".to_owned(), 0, TaskState::NoStatus),
            ("fan".to_owned(), 1, TaskState::Success),
            ("fan".to_owned(), 2, TaskState::NoStatus),
        ]
    );

    // A dry run of one instance, and of the task: only those that would change.
    let dry_one = send(
        &server,
        Method::PATCH,
        &format!("{RUN}/fan/1/dry_run"),
        json!({"new_state": "success"}),
    )
    .await;
    assert_eq!(dry_one.status, StatusCode::OK, "{}", dry_one.text);
    assert!(
        keys(&dry_one).is_empty(),
        "already success: {}",
        dry_one.text
    );
    let dry_all = send(
        &server,
        Method::PATCH,
        &format!("{RUN}/fan/dry_run"),
        json!({"new_state": "failed", "include_downstream": true}),
    )
    .await;
    assert_eq!(
        keys(&dry_all),
        vec![
            ("after".to_owned(), -1),
            ("fan".to_owned(), 0),
            ("fan".to_owned(), 1),
            ("fan".to_owned(), 2)
        ]
    );
    let dry_by_query = send(
        &server,
        Method::PATCH,
        &format!("{RUN}/fan/dry_run?map_index=2"),
        json!({"new_state": "failed"}),
    )
    .await;
    assert_eq!(keys(&dry_by_query), fan(&[2]));

    // The task without an index: every instance, as Airflow's PATCH without map_index.
    let all = send(
        &server,
        Method::PATCH,
        &format!("{RUN}/fan"),
        json!({"new_state": "skipped"}),
    )
    .await;
    assert_eq!(all.status, StatusCode::OK, "{}", all.text);
    assert_eq!(keys(&all), fan(&[0, 1, 2]));
    let skipped: Vec<TaskState> = states(&server)
        .await
        .into_iter()
        .filter(|(task, _, _)| task == "fan")
        .map(|(_, _, state)| state)
        .collect();
    assert_eq!(skipped, vec![TaskState::Skipped; 3]);
    let note = send(
        &server,
        Method::PATCH,
        &format!("{RUN}/fan?update_mask=note"),
        json!({"note": "every one"}),
    )
    .await;
    assert!(
        note.json["task_instances"]
            .as_array()
            .is_some_and(|tis| tis.iter().all(|ti| ti["note"] == "every one")),
        "{}",
        note.text
    );

    let missing = send(
        &server,
        Method::PATCH,
        &format!("{RUN}/fan/9"),
        json!({"new_state": "success"}),
    )
    .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(
        missing.json["detail"],
        "The Task Instance with dag_id: `fan_out`, run_id: `r`, task_id: `fan` and map_index: `9` was not found"
    );
    server.finish().await;
}

#[tokio::test]
async fn clearing_a_task_id_and_map_index_pair_clears_that_instance_alone() {
    let server = expanded().await;
    let store = &server.db.store;
    store
        .mark_instances(
            "fan_out",
            "r",
            &[InstanceTarget::all("fan")],
            TaskState::Failed,
            &[],
            t0(),
        )
        .await
        .expect("the test setup works");
    store
        .mark_instances(
            "fan_out",
            "r",
            &[InstanceTarget::all("after")],
            TaskState::UpstreamFailed,
            &[],
            t0(),
        )
        .await
        .expect("the test setup works");
    let clear = "/api/v2/dags/fan_out/clearTaskInstances";

    let dry = send(
        &server,
        Method::POST,
        clear,
        json!({"dag_run_id": "r", "task_ids": [["fan", 1]]}),
    )
    .await;
    assert_eq!(dry.status, StatusCode::OK, "{}", dry.text);
    assert_eq!(keys(&dry), fan(&[1]));

    let done = send(
        &server,
        Method::POST,
        clear,
        json!({"dag_run_id": "r", "dry_run": false, "task_ids": [["fan", 1]], "note": "again"}),
    )
    .await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.text);
    assert_eq!(keys(&done), fan(&[1]));
    assert_eq!(done.json["task_instances"][0]["note"], "again");
    assert_eq!(
        states(&server).await,
        vec![
            ("after".to_owned(), -1, TaskState::UpstreamFailed),
            ("fan".to_owned(), 0, TaskState::Failed),
            ("fan".to_owned(), 1, TaskState::NoStatus),
            ("fan".to_owned(), 2, TaskState::Failed),
        ],
        "only instance 1 runs again"
    );

    // Downstream of one instance: the whole downstream task, as Airflow finds its relatives.
    let downstream = send(
        &server,
        Method::POST,
        clear,
        json!({"dag_run_id": "r", "dry_run": false, "task_ids": [["fan", 2]], "include_downstream": true}),
    )
    .await;
    assert_eq!(
        keys(&downstream),
        vec![("after".to_owned(), -1), ("fan".to_owned(), 2)]
    );
    assert_eq!(
        states(&server).await,
        vec![
            ("after".to_owned(), -1, TaskState::NoStatus),
            ("fan".to_owned(), 0, TaskState::Failed),
            ("fan".to_owned(), 1, TaskState::NoStatus),
            ("fan".to_owned(), 2, TaskState::NoStatus),
        ]
    );

    let bad = send(
        &server,
        Method::POST,
        clear,
        json!({"dag_run_id": "r", "task_ids": [["fan", "one"]]}),
    )
    .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", bad.text);
    server.finish().await;
}
