//! Native sensors under `gust dags test`'s driver: a sensor not yet met reschedules the same try
//! and pokes again until it is met, times out (failed) or, with `soft_fail`, skips.

mod support;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use gust_core::clock::{Clock, SystemClock};
use gust_core::state::{DagRunState, TaskState};
use gust_executor::event_channel;
use gust_sensors::SensorExecutor;
use support::{load_dag, run_spec, run_within};

const DAG: &str = r#"
sensing:
  schedule: null
  tasks:
    soon:
      operator: DateTimeSensorAsync
      target_time: "{{ params.at }}"
      poke_interval: 1
      exponential_backoff: true
      max_wait: 1
    never:
      operator: DateTimeSensor
      target_time: "2999-01-01"
      poke_interval: 1
      timeout: 1
    never_soft:
      operator: TimeSensor
      target_time: "23:59:59.999999"
      poke_interval: 1
      timeout: 1
      soft_fail: true
    delta:
      operator: airflow.sensors.time_delta.TimeDeltaSensor
      delta: 0
  params:
    at: "2000-01-01"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sensors_poke_again_until_met_timed_out_or_skipped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let now: DateTime<Utc> = SystemClock.now();
    let dag = load_dag(dir.path(), DAG, now);
    let soon = now + chrono::Duration::seconds(2);
    let (tx, mut events) = event_channel();
    let executor = SensorExecutor::new(tx, Arc::new(SystemClock), None);
    let mut spec = run_spec(dir.path(), "manual__test", now);
    spec.conf = serde_json::json!({"at": soon.to_rfc3339()})
        .as_object()
        .cloned()
        .unwrap_or_default();
    let report = run_within(Duration::from_secs(30), &dag, &spec, &executor, &mut events).await;
    let states: Vec<(&str, TaskState, u32)> = report
        .tasks
        .iter()
        .map(|t| (t.task_id.as_str(), t.state, t.tries))
        .collect();
    let mut sorted = states.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        [
            ("delta", TaskState::Success, 1),
            ("never", TaskState::Failed, 1),
            ("never_soft", TaskState::Skipped, 1),
            ("soon", TaskState::Success, 1),
        ],
        "{report:?}"
    );
    assert_eq!(report.state, DagRunState::Failed);
    let never = report
        .tasks
        .iter()
        .find(|t| t.task_id.as_str() == "never")
        .expect("never");
    assert!(
        never
            .failure
            .as_deref()
            .is_some_and(|f| f.contains("Sensor has timed out")),
        "{never:?}"
    );
    // Not met at first, it rescheduled: its one try lasted past the target time.
    assert!(SystemClock.now() > soon);
}
