//! Native sensors under the database-backed scheduler, on SQLite and on PostgreSQL: DAG files
//! in a folder, runs triggered through the store, and states read back as the API reads them.
//! Every sensor pokes, reschedules (holding no slot) and ends as success, failed (its timeout)
//! or skipped (`soft_fail`).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use gust_core::clock::{Clock, SystemClock};
use gust_core::state::{DagRunState, TaskState};
use gust_exec_local::{LocalConfig, LocalExecutor};
use gust_executor::{Executor, Routed};
use gust_scheduler::dag_watch::{WatchConfig, watch_folder};
use gust_scheduler::scheduler::{Scheduler, SchedulerConfig};
use gust_scheduler::template_values::TemplateValues;
use gust_sensors::SensorExecutor;
use gust_store::{SecretKey, Store, both_engines};
use tokio_util::sync::CancellationToken;

/// A scheduler over `dags`, its sensors poked natively, until the token is cancelled.
async fn start(
    store: &Store,
    dags: &Path,
    state: &Path,
) -> (CancellationToken, tokio::task::JoinHandle<()>) {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let stop = CancellationToken::new();
    let (bags, _watch) = watch_folder(
        dags.to_path_buf(),
        WatchConfig::default(),
        clock.clone(),
        stop.clone(),
    )
    .await;
    let (tx, events) = gust_executor::event_channel();
    let local = LocalExecutor::new(LocalConfig::default(), tx.clone(), clock.clone());
    let sensors = SensorExecutor::new(tx, clock.clone(), Some(store.clone()));
    let executor = sensors.route(Routed::new(Arc::new(local)));
    let mut config = SchedulerConfig::new(state.join("logs"));
    config.paused_by_default = false;
    config.poll_interval = Duration::from_millis(100);
    config.template_values = Some(Arc::new(TemplateValues::from_store(store.clone(), {
        let key = SecretKey::parse("cw_0x689RpI-jtRR7oE8h_eQsKImvJapLeSbXpwF4e4=").expect("a key");
        Arc::new(move || Some(key.clone()))
    })));
    config.worker_free_operators = gust_operators::OPERATORS
        .iter()
        .filter(|spec| !spec.holds_worker)
        .map(|spec| spec.name.to_owned())
        .collect();
    // One worker: sensors waiting their turn would starve the bash task if they held it.
    config.parallelism = 1;
    let executor: Arc<dyn Executor> = Arc::new(executor);
    let scheduler = Scheduler::new(store.clone(), executor, events, bags, clock, config);
    let token = stop.clone();
    let handle = tokio::spawn(async move {
        scheduler.run(token).await.expect("the scheduler runs");
    });
    (stop, handle)
}

async fn wait_for_run(store: &Store, dag: &str, run: &str) -> DagRunState {
    for _ in 0..600 {
        let state = store.run(dag, run).await.expect("read").map(|r| r.state);
        if let Some(state @ (DagRunState::Success | DagRunState::Failed)) = state {
            return state;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("run {dag}/{run} did not finish in 30 s");
}

async fn trigger(store: &Store, dags: &Path, dag_id: &str, logical_date: DateTime<Utc>) -> String {
    let load = gust_dagfile::load_folder(dags, SystemClock.now()).expect("load");
    let dag = load
        .dags
        .iter()
        .find(|d| d.id.as_str() == dag_id)
        .expect("the DAG")
        .clone();
    gust_scheduler::trigger::trigger(
        store,
        &dag,
        serde_json::Map::new(),
        None,
        logical_date,
        SystemClock.now(),
    )
    .await
    .expect("triggered")
}

async fn states(store: &Store, dag: &str, run: &str) -> Vec<(String, TaskState)> {
    let tis = store.task_instances(dag, run).await.expect("tis");
    tis.iter().map(|t| (t.task_id.clone(), t.state)).collect()
}

fn dag_file(soon: DateTime<Utc>, present: &Path, absent: &Path) -> String {
    format!(
        r#"
sensing:
  schedule: null
  tasks:
    soon:
      operator: airflow.providers.standard.sensors.date_time.DateTimeSensor
      target_time: "{soon}"
      poke_interval: 1
    delta:
      operator: TimeDeltaSensorAsync
      delta: {{__type__: datetime.timedelta, seconds: 2}}
      poke_interval: 1
    never:
      operator: DateTimeSensor
      target_time: "2999-01-01T00:00:00+00:00"
      poke_interval: 1
      timeout: 1
    never_soft:
      operator: DateTimeSensor
      target_time: "2999-01-01T00:00:00+00:00"
      poke_interval: 1
      timeout: 1
      soft_fail: true
    file_there:
      operator: airflow.sensors.filesystem.FileSensor
      filepath: "{present}"
      mode: poke
    file_missing:
      operator: FileSensor
      filepath: "{absent}"
      poke_interval: 1
      timeout: 1
      deferrable: true
    marker:
      operator: ExternalTaskMarker
      external_dag_id: upstream
      external_task_id: work
    after:
      operator: BashOperator
      bash_command: echo done
      dependencies: [soon, delta, file_there]
upstream:
  schedule: null
  tasks:
    work:
      operator: BashOperator
      bash_command: sleep 2
    broken:
      operator: BashOperator
      bash_command: exit 1
downstream:
  schedule: null
  tasks:
    wait_work:
      operator: ExternalTaskSensor
      external_dag_id: upstream
      external_task_id: work
      poke_interval: 1
    wait_broken:
      operator: ExternalTaskSensor
      external_dag_id: upstream
      external_task_ids: [broken]
      failed_states: [failed]
      poke_interval: 1
    wait_broken_soft:
      operator: ExternalTaskSensor
      external_dag_id: upstream
      external_task_id: broken
      failed_states: [failed]
      soft_fail: true
      poke_interval: 1
    wait_run_elsewhere:
      operator: ExternalTaskSensor
      external_dag_id: upstream
      execution_delta: 3600
      poke_interval: 1
      timeout: 2
"#,
        soon = soon.to_rfc3339(),
        present = present.display(),
        absent = absent.display(),
    )
}

both_engines!(native_sensors_reschedule_until_met_time_out_or_skip);

async fn native_sensors_reschedule_until_met_time_out_or_skip(store: Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let dags = dir.path().join("dags");
    std::fs::create_dir_all(&dags).expect("dags folder");
    let present = dir.path().join("in").join("data.csv");
    std::fs::create_dir_all(present.parent().expect("a folder")).expect("folder");
    std::fs::write(&present, "x").expect("a file");
    let soon = SystemClock.now() + chrono::Duration::seconds(2);
    let text = dag_file(
        soon,
        &dir.path().join("in").join("*.csv"),
        &dir.path().join("nothing*.csv"),
    );
    std::fs::write(dags.join("sensors.yaml"), text).expect("dag file");
    let (stop, handle) = start(&store, &dags, dir.path()).await;

    let now = SystemClock.now();
    let run = trigger(&store, &dags, "sensing", now).await;
    assert_eq!(
        wait_for_run(&store, "sensing", &run).await,
        DagRunState::Failed
    );
    let got = states(&store, "sensing", &run).await;
    let expected = [
        ("after", TaskState::Success),
        ("delta", TaskState::Success),
        ("file_missing", TaskState::Failed),
        ("file_there", TaskState::Success),
        ("marker", TaskState::Success),
        ("never", TaskState::Failed),
        ("never_soft", TaskState::Skipped),
        ("soon", TaskState::Success),
    ];
    let expected: Vec<(String, TaskState)> = expected
        .iter()
        .map(|(t, s)| ((*t).to_owned(), *s))
        .collect();
    assert_eq!(got, expected);
    // The waiting sensors rescheduled the same try; the one met at once never did.
    let reschedules = store
        .reschedules_of_run("sensing", &run)
        .await
        .expect("reschedules");
    let count = |task: &str| {
        reschedules
            .iter()
            .find(|((t, _), _)| t == task)
            .map_or(0, |(_, r)| r.count)
    };
    assert!(count("soon") >= 1, "{reschedules:?}");
    assert!(count("delta") >= 1, "{reschedules:?}");
    assert!(count("never") >= 1, "{reschedules:?}");
    assert_eq!(count("file_there"), 0);
    let tries = store.tries_of_run("sensing", &run).await.expect("tries");
    let failure = |task: &str| {
        tries
            .iter()
            .find(|t| t.task_id == task)
            .and_then(|t| t.failure.clone())
    };
    assert!(
        failure("never").is_some_and(|f| f.contains("Sensor has timed out")),
        "{:?}",
        failure("never")
    );
    assert_eq!(
        tries.iter().filter(|t| t.task_id == "soon").count(),
        1,
        "one try, rescheduled"
    );

    // ExternalTaskSensor: the same logical date in another DAG.
    let upstream = trigger(&store, &dags, "upstream", now).await;
    let downstream = trigger(&store, &dags, "downstream", now).await;
    assert_eq!(
        wait_for_run(&store, "upstream", &upstream).await,
        DagRunState::Failed
    );
    assert_eq!(
        wait_for_run(&store, "downstream", &downstream).await,
        DagRunState::Failed
    );
    let got = states(&store, "downstream", &downstream).await;
    let expected = [
        ("wait_broken", TaskState::Failed),
        ("wait_broken_soft", TaskState::Skipped),
        ("wait_run_elsewhere", TaskState::Failed),
        ("wait_work", TaskState::Success),
    ];
    let expected: Vec<(String, TaskState)> = expected
        .iter()
        .map(|(t, s)| ((*t).to_owned(), *s))
        .collect();
    assert_eq!(got, expected);
    let tries = store
        .tries_of_run("downstream", &downstream)
        .await
        .expect("tries");
    let failure = |task: &str| {
        tries
            .iter()
            .find(|t| t.task_id == task)
            .and_then(|t| t.failure.clone())
    };
    assert_eq!(
        failure("wait_broken").as_deref(),
        Some("Some of the external tasks [\"broken\"] in DAG upstream failed.")
    );
    stop.cancel();
    handle.await.expect("the scheduler stopped");
}
