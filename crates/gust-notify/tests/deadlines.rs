//! Deadline alerts end to end, on both engines: a scheduler over a DAG folder stores each run's
//! deadlines, and a run still going when its deadline passes gets its webhook sent to a local
//! server exactly once (recorded as a `deadline` delivery), while a run that finishes in time
//! sends nothing and leaves no deadline behind. A deadline that passes while no scheduler runs
//! is sent by the next one, once, however many restart after it.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use gust_core::clock::{Clock, SystemClock};
use gust_core::state::DagRunState;
use gust_exec_local::{LocalConfig, LocalExecutor};
use gust_notify::Notifications;
use gust_scheduler::dag_watch::{WatchConfig, watch_folder};
use gust_scheduler::scheduler::{Scheduler, SchedulerConfig};
use gust_store::{DeliveryStatus, Store};
use support::http::Catcher;
use tokio_util::sync::CancellationToken;

gust_store::both_engines!(
    a_run_past_its_deadline_notifies_once_and_one_in_time_never,
    a_deadline_passed_while_no_scheduler_ran_is_sent_once_by_the_next,
);

/// A scheduler over `dags` sending notifications (recorded in `store`), until the returned
/// token is cancelled; the handle ends once it stopped and its deliveries ended.
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
    let local = LocalConfig {
        state_dir: Some(state.join("tries")),
        ..LocalConfig::default()
    };
    let notifications = Arc::new(
        Notifications::new(support::quick(1), clock.clone(), Some(store.clone()), None)
            .expect("a client"),
    );
    let mut config = SchedulerConfig::new(state.join("logs"));
    config.paused_by_default = false;
    config.poll_interval = Duration::from_millis(100);
    config.callbacks = Some(notifications.clone());
    let executor = Arc::new(LocalExecutor::new(local, tx, clock.clone()));
    let scheduler = Scheduler::new(store.clone(), executor, events, bags, clock, config);
    let token = stop.clone();
    let handle = tokio::spawn(async move {
        scheduler.run(token).await.expect("the scheduler runs");
        notifications.wait().await;
    });
    (stop, handle)
}

async fn trigger(store: &Store, dags: &Path, dag_id: &str) -> String {
    let load = gust_dagfile::load_folder(dags, SystemClock.now()).expect("load");
    assert!(load.problems.is_empty(), "{:?}", load.problems);
    let dag = load
        .dags
        .iter()
        .find(|d| d.id.as_str() == dag_id)
        .expect("the DAG")
        .clone();
    let now = SystemClock.now();
    gust_scheduler::trigger::trigger(store, &dag, serde_json::Map::new(), None, now, now)
        .await
        .expect("triggered")
}

async fn wait_for_run(store: &Store, dag: &str, run: &str) -> DagRunState {
    for _ in 0..400 {
        let state = store.run(dag, run).await.expect("read").map(|r| r.state);
        if let Some(state @ (DagRunState::Success | DagRunState::Failed)) = state {
            return state;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("run {dag}/{run} did not finish in 20 s");
}

/// Waits until `check` holds, for at most 15 s.
async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    for _ in 0..300 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what} did not happen in 15 s");
}

fn dags(catcher: &Catcher) -> String {
    format!(
        r#"
late:
  schedule: null
  # Gust's compact form.
  deadline:
    name: quick enough
    reference: DAGRUN_QUEUED_AT
    interval: 1s
    callback:
      callback: webhook
      url: {base}/late
      json: {{run: "{{{{ run_id }}}}", dag: "{{{{ dag.dag_id }}}}", deadline: "{{{{ deadline.deadline_time }}}}", event: "{{{{ event }}}}"}}
  tasks:
    slow:
      operator: BashOperator
      bash_command: sleep 3
in_time:
  schedule: null
  # dag-factory's form: Airflow's classes built with their keyword arguments.
  deadline:
    - __type__: airflow.sdk.definitions.deadline.DeadlineAlert
      reference: {{__type__: airflow.sdk.definitions.deadline.DagRunQueuedAtDeadline}}
      interval: {{__type__: datetime.timedelta, seconds: 30}}
      callback:
        __type__: airflow.sdk.definitions.callback.AsyncCallback
        callback_callable: airflow.providers.http.notifications.HttpNotifier
        kwargs: {{url: "{base}/in_time", json: {{run: "{{{{ run_id }}}}"}}}}
  tasks:
    quick:
      operator: BashOperator
      bash_command: "true"
"#,
        base = catcher.base
    )
}

async fn a_run_past_its_deadline_notifies_once_and_one_in_time_never(store: Store) {
    let catcher = Catcher::start(0, "ok").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let dags_dir = dir.path().join("dags");
    std::fs::create_dir_all(&dags_dir).expect("mkdir");
    std::fs::write(dags_dir.join("d.yaml"), dags(&catcher)).expect("write");
    let (stop, handle) = start(&store, &dags_dir, dir.path()).await;
    let late = trigger(&store, &dags_dir, "late").await;
    let in_time = trigger(&store, &dags_dir, "in_time").await;
    assert_eq!(
        wait_for_run(&store, "late", &late).await,
        DagRunState::Success
    );
    assert_eq!(
        wait_for_run(&store, "in_time", &in_time).await,
        DagRunState::Success
    );
    stop.cancel();
    handle.await.expect("the scheduler stops");

    let requests = catcher.requests();
    assert_eq!(requests.len(), 1, "{requests:#?}");
    assert_eq!(requests[0].path, "/late");
    let body: serde_json::Value = serde_json::from_str(&requests[0].body).expect("JSON");
    assert_eq!(body["run"], late.as_str());
    assert_eq!(body["dag"], "late");
    assert_eq!(body["event"], "deadline");
    let (late_deadlines, _) = store
        .deadlines(Some("late"), Some(&late), None, 10, 0)
        .await
        .expect("deadlines");
    assert_eq!(late_deadlines.len(), 1);
    assert!(late_deadlines[0].missed);
    assert_eq!(
        late_deadlines[0].deadline.alert_name.as_deref(),
        Some("quick enough")
    );
    assert_eq!(
        body["deadline"],
        late_deadlines[0]
            .deadline
            .deadline_time
            .to_rfc3339()
            .as_str()
    );
    let (deliveries, _) = store
        .deliveries("late", None, 10, 0)
        .await
        .expect("deliveries");
    assert_eq!(deliveries.len(), 1, "{deliveries:#?}");
    assert_eq!(deliveries[0].delivery.event, "deadline");
    assert_eq!(deliveries[0].delivery.task_id, None);
    assert_eq!(deliveries[0].status, DeliveryStatus::Sent);
    // Finished in time: nothing sent, its deadline gone (as Airflow prunes met deadlines).
    let (met, total) = store
        .deadlines(Some("in_time"), None, None, 10, 0)
        .await
        .expect("deadlines");
    assert_eq!(total, 0, "{met:#?}");
    let (none, _) = store
        .deliveries("in_time", None, 10, 0)
        .await
        .expect("deliveries");
    assert!(none.is_empty(), "{none:#?}");
}

async fn a_deadline_passed_while_no_scheduler_ran_is_sent_once_by_the_next(store: Store) {
    let catcher = Catcher::start(0, "ok").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let dags_dir = dir.path().join("dags");
    std::fs::create_dir_all(&dags_dir).expect("mkdir");
    // Paused, so its run waits queued (holding no process) across the restarts.
    let dag = format!(
        r#"
waiting:
  schedule: null
  is_paused_upon_creation: true
  deadline:
    reference: DeadlineReference.DAGRUN_QUEUED_AT
    interval: 4s
    callback: {{callback: webhook, url: "{}/waiting", json: {{run: "{{{{ run_id }}}}", state: "{{{{ state }}}}"}}}}
  tasks:
    t:
      operator: BashOperator
      bash_command: "true"
"#,
        catcher.base
    );
    std::fs::write(dags_dir.join("w.yaml"), dag).expect("write");
    let (stop, handle) = start(&store, &dags_dir, dir.path()).await;
    let run = trigger(&store, &dags_dir, "waiting").await;
    eventually("the run's deadline is stored", async || {
        store
            .deadlines(Some("waiting"), Some(&run), Some(false), 10, 0)
            .await
            .expect("deadlines")
            .1
            == 1
    })
    .await;
    stop.cancel();
    handle.await.expect("the first scheduler stops");
    assert!(catcher.requests().is_empty(), "not due yet");

    // The deadline passes with no scheduler running.
    let (pending, _) = store
        .deadlines(Some("waiting"), Some(&run), None, 10, 0)
        .await
        .expect("deadlines");
    let due = pending[0].deadline.deadline_time;
    let wait = (due - SystemClock.now()).to_std().unwrap_or_default();
    tokio::time::sleep(wait + Duration::from_millis(200)).await;

    for restart in 0..2 {
        let (stop, handle) = start(&store, &dags_dir, dir.path()).await;
        eventually("the missed deadline is sent", async || {
            !catcher.requests().is_empty()
        })
        .await;
        // Long enough for a second sending to show.
        tokio::time::sleep(Duration::from_millis(500)).await;
        stop.cancel();
        handle.await.expect("the scheduler stops");
        let requests = catcher.requests();
        assert_eq!(requests.len(), 1, "after restart {restart}: {requests:#?}");
    }
    let body: serde_json::Value = serde_json::from_str(&catcher.requests()[0].body).expect("JSON");
    assert_eq!(body["run"], run.as_str());
    assert_eq!(body["state"], "queued");
    let (missed, _) = store
        .deadlines(Some("waiting"), Some(&run), Some(true), 10, 0)
        .await
        .expect("deadlines");
    assert_eq!(missed.len(), 1);
    assert_eq!(
        store
            .run("waiting", &run)
            .await
            .expect("read")
            .map(|r| r.state),
        Some(DagRunState::Queued)
    );
}
