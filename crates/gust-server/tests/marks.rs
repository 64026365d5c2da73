//! Marks made through the API against a real scheduler running bash tries: the scheduler
//! notices, kills the tries no longer wanted, and carries on (or stops) downstream.

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::http::{Method, StatusCode};
use common::TestServer;
use gust_core::clock::{Clock, SystemClock};
use gust_core::state::{DagRunState, TaskState};
use gust_exec_local::{LocalConfig, LocalExecutor};
use gust_scheduler::dag_watch::{WatchConfig, watch_folder};
use gust_scheduler::scheduler::{Scheduler, SchedulerConfig};
use gust_store::Role;
use serde_json::json;
use tokio_util::sync::CancellationToken;

const SLOW: &str = r#"
slow:
  schedule: null
  tasks:
    - task_id: sleepy
      operator: bash
      bash_command: sleep 60
    - task_id: next
      operator: bash
      bash_command: echo next
      dependencies: [sleepy]
"#;

/// A scheduler over the server's store, DAG folder and log folder, until the token is cancelled.
async fn start_scheduler(
    server: &TestServer,
    state_dir: &std::path::Path,
) -> (CancellationToken, tokio::task::JoinHandle<()>) {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let stop = CancellationToken::new();
    let (bags, _watch) = watch_folder(
        server.dags_dir.path().to_path_buf(),
        WatchConfig::default(),
        clock.clone(),
        stop.clone(),
    )
    .await;
    let (tx, events) = gust_executor::event_channel();
    let local = LocalConfig {
        state_dir: Some(state_dir.join("tries")),
        ..LocalConfig::default()
    };
    let mut config = SchedulerConfig::new(server.logs_dir.path().to_path_buf());
    config.paused_by_default = false;
    config.poll_interval = Duration::from_millis(100);
    let executor = Arc::new(LocalExecutor::new(local, tx, clock.clone()));
    let scheduler = Scheduler::new(
        server.db.store.clone(),
        executor,
        events,
        bags,
        clock,
        config,
    );
    let token = stop.clone();
    let handle = tokio::spawn(async move {
        scheduler.run(token).await.expect("the scheduler runs");
    });
    (stop, handle)
}

async fn state_of(server: &TestServer, task: &str) -> TaskState {
    server
        .db
        .store
        .task_instances("slow", "r")
        .await
        .expect("the test setup works")
        .into_iter()
        .find(|t| t.task_id == task)
        .map_or(TaskState::NoStatus, |t| t.state)
}

/// Triggers run `r` and waits until `sleepy`'s try runs.
async fn trigger_and_wait_for_sleepy(server: &TestServer) {
    let trigger = server
        .call(
            Method::POST,
            "/api/v2/dags/slow/dagRuns",
            Some(Role::Op),
            Some(json!({"dag_run_id": "r", "logical_date": null})),
        )
        .await;
    assert_eq!(trigger.status, StatusCode::OK, "{}", trigger.text);
    for _ in 0..200 {
        if state_of(server, "sleepy").await == TaskState::Running {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("sleepy did not start in 10 s");
}

async fn wait_for_run(server: &TestServer) -> DagRunState {
    for _ in 0..300 {
        let run = server
            .db
            .store
            .run("slow", "r")
            .await
            .expect("the test setup works")
            .expect("the test setup works");
        if matches!(run.state, DagRunState::Success | DagRunState::Failed) {
            return run.state;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the run did not finish in 15 s");
}

/// Waits until the log of sleepy's try says it was killed, and returns the log.
async fn wait_for_kill(server: &TestServer) -> String {
    let log = server
        .logs_dir
        .path()
        .join("dag_id=slow/run_id=r/task_id=sleepy/attempt=1.log");
    for _ in 0..200 {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("killing the try") {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "sleepy's try was not killed: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn marking_a_running_instance_success_kills_its_try_and_runs_downstream() {
    let server = TestServer::sqlite().await;
    server.load_dags(&[("slow.yaml", SLOW)]).await;
    let state_dir = tempfile::tempdir().unwrap();
    let (stop, handle) = start_scheduler(&server, state_dir.path()).await;
    trigger_and_wait_for_sleepy(&server).await;

    let marked = server
        .call(
            Method::PATCH,
            "/api/v2/dags/slow/dagRuns/r/taskInstances/sleepy",
            Some(Role::Op),
            Some(json!({"new_state": "success"})),
        )
        .await;
    assert_eq!(marked.status, StatusCode::OK, "{}", marked.text);
    let log = wait_for_kill(&server).await;
    assert!(log.contains("cleared or marked by a user"), "{log}");
    assert_eq!(wait_for_run(&server).await, DagRunState::Success);
    assert_eq!(state_of(&server, "sleepy").await, TaskState::Success);
    assert_eq!(state_of(&server, "next").await, TaskState::Success);
    let tries = server
        .get("/api/v2/dags/slow/dagRuns/r/taskInstances/sleepy/tries")
        .await;
    assert_eq!(
        tries.json["total_entries"], 1,
        "the marked try never ran again"
    );
    assert_eq!(tries.json["task_instances"][0]["state"], "success");

    stop.cancel();
    handle.await.unwrap();
    server.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn marking_a_running_run_failed_kills_its_tries_and_skips_the_rest() {
    let server = TestServer::sqlite().await;
    server.load_dags(&[("slow.yaml", SLOW)]).await;
    let state_dir = tempfile::tempdir().unwrap();
    let (stop, handle) = start_scheduler(&server, state_dir.path()).await;
    trigger_and_wait_for_sleepy(&server).await;

    let marked = server
        .call(
            Method::PATCH,
            "/api/v2/dags/slow/dagRuns/r",
            Some(Role::Op),
            Some(json!({"state": "failed"})),
        )
        .await;
    assert_eq!(marked.status, StatusCode::OK, "{}", marked.text);
    assert_eq!(marked.json["state"], "failed");
    let log = wait_for_kill(&server).await;
    assert!(log.contains("marked finished by a user"), "{log}");
    assert_eq!(state_of(&server, "sleepy").await, TaskState::Failed);
    assert_eq!(state_of(&server, "next").await, TaskState::Skipped);
    // The killed try's end changes nothing.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(state_of(&server, "sleepy").await, TaskState::Failed);
    assert_eq!(
        server
            .db
            .store
            .run("slow", "r")
            .await
            .unwrap()
            .unwrap()
            .state,
        DagRunState::Failed
    );

    stop.cancel();
    handle.await.unwrap();
    server.finish().await;
}

const QUICK: &str = r#"
quick:
  schedule: null
  tasks:
    - task_id: first
      operator: bash
      bash_command: echo first
    - task_id: last
      operator: bash
      bash_command: echo last
      dependencies: [first]
"#;

async fn quick_run(server: &TestServer) -> gust_store::StoredRun {
    server
        .db
        .store
        .run("quick", "r")
        .await
        .expect("the test setup works")
        .expect("the run exists")
}

/// Waits until run `r` of `quick` is finished (again) after `after`, its version.
async fn wait_for_quick_run(server: &TestServer, after: i64) -> DagRunState {
    for _ in 0..300 {
        let run = quick_run(server).await;
        if run.version > after && matches!(run.state, DagRunState::Success | DagRunState::Failed) {
            return run.state;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the run did not finish in 15 s");
}

async fn mark(server: &TestServer, task: &str, state: &str) {
    let marked = server
        .call(
            Method::PATCH,
            &format!("/api/v2/dags/quick/dagRuns/r/taskInstances/{task}"),
            Some(Role::Op),
            Some(json!({"new_state": state})),
        )
        .await;
    assert_eq!(marked.status, StatusCode::OK, "{}", marked.text);
}

/// Issue 25: a task marked in a finished run re-derives the run's state (the scheduler decides
/// it again from the leaves), and nothing runs again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mark_in_a_finished_run_derives_the_runs_state_again() {
    let server = TestServer::sqlite().await;
    server.load_dags(&[("quick.yaml", QUICK)]).await;
    let state_dir = tempfile::tempdir().unwrap();
    let (stop, handle) = start_scheduler(&server, state_dir.path()).await;
    let trigger = server
        .call(
            Method::POST,
            "/api/v2/dags/quick/dagRuns",
            Some(Role::Op),
            Some(json!({"dag_run_id": "r", "logical_date": null})),
        )
        .await;
    assert_eq!(trigger.status, StatusCode::OK, "{}", trigger.text);
    assert_eq!(wait_for_quick_run(&server, 0).await, DagRunState::Success);

    // The leaf marked failed: the successful run fails.
    let before = quick_run(&server).await.version;
    mark(&server, "last", "failed").await;
    assert_eq!(
        wait_for_quick_run(&server, before).await,
        DagRunState::Failed
    );

    // Marked success again: the run succeeds again.
    let before = quick_run(&server).await.version;
    mark(&server, "last", "success").await;
    assert_eq!(
        wait_for_quick_run(&server, before).await,
        DagRunState::Success
    );

    // A task that is not a leaf does not decide the run's state (Airflow's rule).
    let before = quick_run(&server).await.version;
    mark(&server, "first", "failed").await;
    assert_eq!(
        wait_for_quick_run(&server, before).await,
        DagRunState::Success
    );

    for task in ["first", "last"] {
        let tries = server
            .get(&format!(
                "/api/v2/dags/quick/dagRuns/r/taskInstances/{task}/tries"
            ))
            .await;
        assert_eq!(tries.json["total_entries"], 1, "{task} never ran again");
    }
    stop.cancel();
    handle.await.unwrap();
    server.finish().await;
}
