//! What the sensor tests that run a whole DAG share: its file loaded from text, and one run of
//! it under `gust dags test`'s driver with the sensor runtime, bounded in time.

#![allow(dead_code, reason = "each test file uses part of it")]

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use gust_core::dag::Dag;
use gust_core::ids::RunId;
use gust_core::schedule::DataInterval;
use gust_core::state::TaskState;
use gust_executor::TryEvent;
use gust_scheduler::test_run::{RunReport, TestRunSpec, run};
use gust_sensors::SensorExecutor;
use tokio::sync::mpsc::Receiver;

/// The one DAG of `text`, written as `dir/dags/d.yaml` and loaded as at `now`.
pub fn load_dag(dir: &Path, text: &str, now: DateTime<Utc>) -> Dag {
    let dags = dir.join("dags");
    std::fs::create_dir_all(&dags).expect("mkdir");
    std::fs::write(dags.join("d.yaml"), text).expect("write");
    let load = gust_dagfile::load_folder(&dags, now).expect("folder");
    assert!(load.problems.is_empty(), "{:?}", load.problems);
    load.dags.into_iter().next().expect("one DAG")
}

/// A manual run `run_id` at `now` (its data interval that moment alone), its logs under
/// `dir/logs`, with no conf, variables, connections, callbacks or triggerer: set the fields a
/// test needs on what this returns.
pub fn run_spec(dir: &Path, run_id: &str, now: DateTime<Utc>) -> TestRunSpec {
    TestRunSpec {
        run_id: RunId::new(run_id).expect("a run id"),
        interval: DataInterval {
            start: now,
            end: now,
        },
        conf: serde_json::Map::new(),
        logs_root: dir.join("logs"),
        variables: Default::default(),
        connections: Default::default(),
        callbacks: None,
        max_map_length: gust_core::mapping::DEFAULT_MAX_MAP_LENGTH,
        triggerer: None,
    }
}

/// Runs `dag` as `spec` says with `executor` (reporting on `events`), failing the test when
/// the run has not ended within `limit`.
pub async fn run_within(
    limit: Duration,
    dag: &Dag,
    spec: &TestRunSpec,
    executor: &SensorExecutor,
    events: &mut Receiver<TryEvent>,
) -> RunReport {
    tokio::time::timeout(limit, run(dag, spec, executor, events))
        .await
        .expect("the run ends")
}

/// Each task's final state, sorted by task.
pub fn states(report: &RunReport) -> Vec<(&str, TaskState)> {
    let mut states: Vec<(&str, TaskState)> = report
        .tasks
        .iter()
        .map(|t| (t.task_id.as_str(), t.state))
        .collect();
    states.sort_unstable();
    states
}
