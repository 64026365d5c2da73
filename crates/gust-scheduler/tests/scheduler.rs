//! The database-backed scheduler end to end, on SQLite and on PostgreSQL: DAG files in a folder,
//! runs triggered through the store, real bash processes, and the outcome read back from the
//! store as the API would.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use gust_core::clock::{Clock, SystemClock};
use gust_core::state::{DagRunState, TaskState};
use gust_exec_local::{LocalConfig, LocalExecutor};
use gust_executor::{
    Executor, LaunchError, LaunchSpec, TryEvent, TryEventKind, TryKey, TryOutcome,
};
use gust_scheduler::dag_watch::{WatchConfig, watch_folder};
use gust_scheduler::scheduler::{Scheduler, SchedulerConfig};
use gust_scheduler::template_values::TemplateValues;
use gust_store::{SecretKey, Store, both_engines};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// The key the tests' variables are encrypted with.
fn fernet() -> SecretKey {
    SecretKey::parse("cw_0x689RpI-jtRR7oE8h_eQsKImvJapLeSbXpwF4e4=").expect("a Fernet key")
}

/// Template values read from `store` with [`fernet`], as the binary sets them up.
fn template_values(store: &Store) -> Arc<TemplateValues> {
    Arc::new(TemplateValues::from_store(
        store.clone(),
        Arc::new(|| Some(fernet())),
    ))
}

/// A scheduler running in the background over `dags` until the returned token is cancelled.
async fn start(
    store: &Store,
    dags: &Path,
    state: &Path,
) -> (CancellationToken, tokio::task::JoinHandle<()>) {
    start_with(store, dags, state, |_, _| {}).await
}

/// [`start`], with the scheduler's and the runtime's configuration adjusted by `configure`.
async fn start_with(
    store: &Store,
    dags: &Path,
    state: &Path,
    configure: impl FnOnce(&mut SchedulerConfig, &mut LocalConfig),
) -> (CancellationToken, tokio::task::JoinHandle<()>) {
    start_through(store, dags, state, configure, |local, _| local).await
}

/// [`start_with`], the scheduler handing tries to `wrap`'s executor around the local runtime
/// (given the runtime and the channel runtimes report on).
async fn start_through(
    store: &Store,
    dags: &Path,
    state: &Path,
    configure: impl FnOnce(&mut SchedulerConfig, &mut LocalConfig),
    wrap: impl FnOnce(Arc<dyn Executor>, mpsc::Sender<TryEvent>) -> Arc<dyn Executor>,
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
    let mut local = LocalConfig {
        state_dir: Some(state.join("tries")),
        ..LocalConfig::default()
    };
    let mut config = SchedulerConfig::new(state.join("logs"));
    config.paused_by_default = false;
    config.poll_interval = Duration::from_millis(100);
    config.template_values = Some(template_values(store));
    configure(&mut config, &mut local);
    let executor = wrap(
        Arc::new(LocalExecutor::new(local, tx.clone(), clock.clone())),
        tx,
    );
    let scheduler = Scheduler::new(store.clone(), executor, events, bags, clock, config);
    let token = stop.clone();
    let handle = tokio::spawn(async move {
        scheduler.run(token).await.expect("the scheduler runs");
    });
    (stop, handle)
}

async fn wait_for_run(store: &Store, dag: &str, run: &str) -> DagRunState {
    for _ in 0..300 {
        let state = store.run(dag, run).await.expect("read").map(|r| r.state);
        if let Some(state @ (DagRunState::Success | DagRunState::Failed)) = state {
            return state;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("run {dag}/{run} did not finish in 15 s");
}

async fn trigger(store: &Store, dags: &Path, dag_id: &str, conf: serde_json::Value) -> String {
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
        conf.as_object().cloned().unwrap_or_default(),
        None,
        SystemClock.now(),
        SystemClock.now(),
    )
    .await
    .expect("triggered")
}

const DAGS: &str = r#"
flow:
  schedule: null
  params: {greeting: hello}
  default_args: {retries: 1, retry_delay: 0}
  tasks:
    start:
      operator: BashOperator
      bash_command: 'echo "{{ params.greeting }}"'
    flaky:
      operator: BashOperator
      bash_command: 'if [ -e "$MARK" ]; then echo ok; else touch "$MARK"; exit 1; fi'
      env: {MARK: "{{ var.value.get('mark', '/nonexistent/x') }}"}
      append_env: true
      dependencies: [start]
    doomed:
      operator: BashOperator
      bash_command: exit 3
      retries: 0
      dependencies: [start]
    after_doomed:
      operator: BashOperator
      bash_command: 'true'
      dependencies: [doomed]
    cleanup:
      operator: BashOperator
      bash_command: 'echo "{{ ti.xcom_pull(task_ids="start") }} done"'
      trigger_rule: all_done
      dependencies: [flaky, after_doomed]
"#;

both_engines!(a_triggered_run_follows_trigger_rules_retries_and_xcoms);

async fn a_triggered_run_follows_trigger_rules_retries_and_xcoms(store: Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let dags = dir.path().join("dags");
    std::fs::create_dir_all(&dags).expect("dags folder");
    std::fs::write(dags.join("flow.yaml"), DAGS).expect("dag file");
    store
        .set_variable(
            "mark",
            &dir.path().join("mark").display().to_string(),
            None,
            &fernet(),
        )
        .await
        .expect("variable");
    let (stop, handle) = start(&store, &dags, dir.path()).await;
    let run_id = trigger(&store, &dags, "flow", serde_json::json!({"greeting": "hi"})).await;
    assert_eq!(
        wait_for_run(&store, "flow", &run_id).await,
        DagRunState::Success
    );

    let tis = store.task_instances("flow", &run_id).await.expect("tis");
    let states: Vec<(&str, TaskState, i32)> = tis
        .iter()
        .map(|t| (t.task_id.as_str(), t.state, t.try_number))
        .collect();
    assert_eq!(
        states,
        [
            ("after_doomed", TaskState::UpstreamFailed, 0),
            ("cleanup", TaskState::Success, 1),
            ("doomed", TaskState::Failed, 1),
            ("flaky", TaskState::Success, 2),
            ("start", TaskState::Success, 1),
        ]
    );
    let xcoms = store.xcoms_of_run("flow", &run_id).await.expect("xcoms");
    let value = |task: &str| {
        xcoms
            .iter()
            .find(|x| x.task_id == task)
            .map(|x| x.value.clone())
    };
    assert_eq!(value("start"), Some(serde_json::json!("hi")));
    assert_eq!(value("cleanup"), Some(serde_json::json!("hi done")));
    let tries = store.tries_of_run("flow", &run_id).await.expect("tries");
    let flaky: Vec<_> = tries.iter().filter(|t| t.task_id == "flaky").collect();
    assert_eq!(flaky.len(), 2);
    assert_eq!(flaky[0].failure.as_deref(), Some("exited with code 1"));
    assert_eq!(
        tries
            .iter()
            .find(|t| t.task_id == "start")
            .and_then(|t| t.rendered_args.clone())
            .and_then(|a| a.get("bash_command").cloned()),
        Some(serde_json::json!("echo \"hi\""))
    );
    stop.cancel();
    handle.await.expect("the scheduler stopped");
}

const MIXED: &str = r#"
mixed:
  schedule: null
  tasks:
    slow:
      operator: BashOperator
      bash_command: sleep 1.5
    p1: {operator: KubernetesPodOperator, image: x, cmds: ["sleep", "0.2"]}
    p2: {operator: KubernetesPodOperator, image: x, cmds: ["sleep", "0.2"]}
"#;

both_engines!(pod_tries_hold_no_worker_and_do_not_wait_for_parallelism);

async fn pod_tries_hold_no_worker_and_do_not_wait_for_parallelism(store: Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let dags = dir.path().join("dags");
    std::fs::create_dir_all(&dags).expect("mkdir");
    std::fs::write(dags.join("mixed.yaml"), MIXED).expect("write");
    let (stop, handle) = start_with(&store, &dags, dir.path(), |config, local| {
        config.parallelism = 1;
        config.worker_free_operators = ["kubernetes_pod".to_owned()].into();
        local.run_pods = true;
    })
    .await;
    let run = trigger(&store, &dags, "mixed", serde_json::json!({})).await;
    assert_eq!(
        wait_for_run(&store, "mixed", &run).await,
        DagRunState::Success
    );
    stop.cancel();
    handle.await.expect("joined");
    // A scheduler that stops cleanly ends its job in success.
    let jobs = store.jobs().await.expect("jobs");
    assert!(
        !jobs.is_empty()
            && jobs
                .iter()
                .all(|j| j.state == "success" && j.end_date.is_some()),
        "{jobs:?}"
    );
    let tries = store.tries_of_run("mixed", &run).await.expect("tries");
    let span = |task: &str| {
        let t = tries.iter().find(|t| t.task_id == task).expect("a try");
        (t.start_date.expect("started"), t.end_date.expect("ended"))
    };
    let (slow_start, slow_end) = span("slow");
    let overlaps = ["p1", "p2"].iter().any(|p| {
        let (start, end) = span(p);
        start < slow_end && slow_start < end
    });
    assert!(
        overlaps,
        "pods ran beside the bash task despite parallelism 1: {tries:#?}"
    );
}

both_engines!(a_dag_another_scheduler_holds_waits_until_its_claim_runs_out);

/// Another (live, elsewhere) scheduler holds the DAG: this one leaves its run alone until that
/// claim runs out, then takes the DAG over and runs it; stopping cleanly gives it back.
async fn a_dag_another_scheduler_holds_waits_until_its_claim_runs_out(store: Store) {
    let dir = tempfile::tempdir().expect("dir");
    let dags = dir.path().join("dags");
    std::fs::create_dir_all(&dags).expect("mkdir");
    std::fs::write(
        dags.join("held.yaml"),
        "held:\n  schedule: null\n  tasks:\n    only:\n      operator: BashOperator\n      bash_command: 'true'\n",
    )
    .expect("write");
    let now = SystemClock.now();
    let mut bag = gust_dagfile::DagBag::default();
    bag.update(gust_dagfile::load_folder(&dags, now).expect("load"));
    gust_scheduler::sync::sync_bag(&store, &bag, now, false)
        .await
        .expect("synced");
    store
        .scheduler_heartbeat("elsewhere:1", now)
        .await
        .expect("heartbeat");
    let held_until = now + chrono::Duration::seconds(2);
    let claimed = store
        .claim_dags("elsewhere:1", held_until, 10, |_| true)
        .await
        .expect("claimed");
    assert_eq!(claimed, ["held"]);
    let run = trigger(&store, &dags, "held", serde_json::json!({})).await;

    let (stop, handle) = start(&store, &dags, dir.path()).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let waiting = store.run("held", &run).await.expect("read").expect("run");
    assert_eq!(
        waiting.state,
        DagRunState::Queued,
        "a DAG held by another scheduler was driven"
    );
    assert_eq!(
        wait_for_run(&store, "held", &run).await,
        DagRunState::Success
    );
    let ended = store.run("held", &run).await.expect("read").expect("run");
    assert!(ended.start_date.expect("started") >= held_until);
    let claims = store.dag_claims().await.expect("claims");
    assert!(
        claims[0]
            .scheduler_id
            .as_deref()
            .is_some_and(|holder| holder != "elsewhere:1"),
        "{claims:?}"
    );
    stop.cancel();
    handle.await.expect("joined");
    assert_eq!(
        store.dag_claims().await.expect("claims")[0].scheduler_id,
        None,
        "a scheduler stopping cleanly gives its DAGs back"
    );
}

const PAST: &str = r#"
past:
  schedule: null
  default_args: {depends_on_past: true}
  tasks:
    first:
      operator: BashOperator
      bash_command: 'true'
    slow:
      operator: BashOperator
      bash_command: sleep 2
      dependencies: [first]
"#;

both_engines!(depends_on_past_waits_for_the_previous_runs_instance_not_the_whole_run);

/// With `depends_on_past`, the second run's `first` starts as soon as the first run's `first`
/// has succeeded, while the first run is still busy with `slow` (Airflow's rule is about the
/// previous task instance, not the previous run).
async fn depends_on_past_waits_for_the_previous_runs_instance_not_the_whole_run(store: Store) {
    let dir = tempfile::tempdir().expect("dir");
    let dags = dir.path().join("dags");
    std::fs::create_dir_all(&dags).expect("mkdir");
    std::fs::write(dags.join("past.yaml"), PAST).expect("write");
    let (stop, handle) = start(&store, &dags, dir.path()).await;
    let earlier = trigger(&store, &dags, "past", serde_json::json!({})).await;
    let later = trigger(&store, &dags, "past", serde_json::json!({})).await;
    for run in [&earlier, &later] {
        assert_eq!(
            wait_for_run(&store, "past", run).await,
            DagRunState::Success
        );
    }
    stop.cancel();
    handle.await.expect("joined");
    let span = |tries: &[gust_store::StoredTry], task: &str| {
        let t = tries.iter().find(|t| t.task_id == task).expect("a try");
        (t.start_date.expect("started"), t.end_date.expect("ended"))
    };
    let earlier_tries = store.tries_of_run("past", &earlier).await.expect("tries");
    let later_tries = store.tries_of_run("past", &later).await.expect("tries");
    let (_, earlier_first_end) = span(&earlier_tries, "first");
    let (_, earlier_slow_end) = span(&earlier_tries, "slow");
    let (later_first_start, _) = span(&later_tries, "first");
    let (later_slow_start, _) = span(&later_tries, "slow");
    assert!(
        earlier_first_end <= later_first_start && later_first_start < earlier_slow_end,
        "the later run's first task waited for the earlier run to end: {earlier_tries:#?} {later_tries:#?}"
    );
    assert!(
        earlier_slow_end <= later_slow_start,
        "the later run's slow task ran before the earlier one ended"
    );
}

const MARKED_WHILE_QUEUED: &str = r#"
marked:
  schedule: null
  tasks:
    first: {operator: BashOperator, bash_command: 'echo first >> "$OUT"', env: {OUT: "{{ params.out }}"}, append_env: true}
    second: {operator: BashOperator, bash_command: 'echo second >> "$OUT"', env: {OUT: "{{ params.out }}"}, append_env: true, dependencies: [first]}
    third: {operator: BashOperator, bash_command: 'echo third >> "$OUT"', env: {OUT: "{{ params.out }}"}, append_env: true, dependencies: [second]}
"#;

/// The local runtime, with a user marking `second` succeeded (through the store, as the API
/// does) just as the scheduler is about to commit queueing it; and a record of the calls.
struct MarksSecond {
    local: Arc<dyn Executor>,
    store: Store,
    calls: Arc<std::sync::Mutex<Vec<String>>>,
}

impl MarksSecond {
    fn note(&self, call: &str, key: &TryKey) {
        self.calls
            .lock()
            .expect("calls")
            .push(format!("{call} {}", key.task_id));
    }
}

impl Executor for MarksSecond {
    fn prepare(&self, spec: &LaunchSpec) {
        self.note("prepare", &spec.key);
        if spec.key.task_id.as_str() == "second" {
            let marked = ["second".to_owned()];
            let mark = self.store.mark_task_instances(
                spec.key.dag_id.as_str(),
                spec.key.run_id.as_str(),
                &marked,
                TaskState::Success,
                &[],
                SystemClock.now(),
            );
            tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(mark))
                .expect("marked");
        }
        self.local.prepare(spec);
    }
    fn discard(&self, key: &TryKey) {
        self.note("discard", key);
        self.local.discard(key);
    }
    fn start(&self, spec: LaunchSpec) -> Result<(), LaunchError> {
        self.note("start", &spec.key);
        self.local.start(spec)
    }
    fn kill(&self, key: &TryKey, reason: &str) {
        self.local.kill(key, reason);
    }
    fn running(&self) -> usize {
        self.local.running()
    }
    fn adopt(&self, spec: LaunchSpec) {
        self.local.adopt(spec);
    }
    fn release(&self, key: &TryKey) {
        self.local.release(key);
    }
}

both_engines!(a_try_whose_queueing_loses_to_a_user_is_readied_then_discarded_never_started);

async fn a_try_whose_queueing_loses_to_a_user_is_readied_then_discarded_never_started(
    store: Store,
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let dags = dir.path().join("dags");
    std::fs::create_dir_all(&dags).expect("dags folder");
    let out = dir.path().join("out");
    let text = MARKED_WHILE_QUEUED.replace(
        "schedule: null",
        &format!("schedule: null\n  params: {{out: '{}'}}", out.display()),
    );
    std::fs::write(dags.join("marked.yaml"), text).expect("dag file");
    let calls = Arc::new(std::sync::Mutex::new(Vec::new()));
    let recorded = Arc::clone(&calls);
    let marking = store.clone();
    let (stop, handle) = start_through(
        &store,
        &dags,
        dir.path(),
        |_, _| {},
        move |local, _| {
            Arc::new(MarksSecond {
                local,
                store: marking,
                calls: recorded,
            })
        },
    )
    .await;
    let run_id = trigger(&store, &dags, "marked", serde_json::json!({})).await;
    assert_eq!(
        wait_for_run(&store, "marked", &run_id).await,
        DagRunState::Success
    );
    stop.cancel();
    handle.await.expect("the scheduler stopped");

    assert_eq!(
        std::fs::read_to_string(&out).expect("output"),
        "first\nthird\n",
        "the marked task never ran"
    );
    assert_eq!(
        *calls.lock().expect("calls"),
        [
            "prepare first",
            "start first",
            "prepare second",
            "discard second",
            "prepare third",
            "start third",
        ]
    );
    let tis = store.task_instances("marked", &run_id).await.expect("tis");
    let second = tis.iter().find(|t| t.task_id == "second").expect("second");
    assert_eq!((second.state, second.try_number), (TaskState::Success, 0));
    let log = dir
        .path()
        .join("logs/dag_id=marked")
        .join(format!("run_id={run_id}"))
        .join("task_id=second/attempt=1.log");
    assert!(!log.exists(), "the discarded try's empty log is removed");
}

const BRANCHED: &str = r#"
branched:
  schedule: null
  tasks:
    pick: {operator: BashOperator, bash_command: 'true'}
    left: {operator: BashOperator, bash_command: 'true', dependencies: [pick]}
    right: {operator: BashOperator, bash_command: 'true', dependencies: [pick]}
    after_right: {operator: BashOperator, bash_command: 'true', dependencies: [right]}
    join: {operator: EmptyOperator, trigger_rule: none_failed_min_one_success, dependencies: [left, after_right]}
"#;

/// The local runtime, except that `task`'s try ends with `outcome`, as a Python task reports it
/// through the Execution API (a `BranchPythonOperator`'s branch, a task's `outlet_events`).
struct Scripted {
    local: Arc<dyn Executor>,
    events: mpsc::Sender<TryEvent>,
    task: &'static str,
    outcome: TryOutcome,
}

impl Executor for Scripted {
    fn start(&self, spec: LaunchSpec) -> Result<(), LaunchError> {
        if spec.key.task_id.as_str() != self.task {
            return self.local.start(spec);
        }
        let (events, finished) = (self.events.clone(), self.outcome.clone());
        tokio::spawn(async move {
            for kind in [TryEventKind::Started, TryEventKind::Finished(finished)] {
                let key = spec.key.clone();
                let _ = events.send(TryEvent { key, kind }).await;
            }
        });
        Ok(())
    }
    fn kill(&self, key: &TryKey, reason: &str) {
        self.local.kill(key, reason);
    }
    fn running(&self) -> usize {
        self.local.running()
    }
    fn adopt(&self, spec: LaunchSpec) {
        self.local.adopt(spec);
    }
    fn release(&self, key: &TryKey) {
        self.local.release(key);
    }
}

both_engines!(a_branch_skips_the_tasks_it_does_not_follow_and_trigger_rules_do_the_rest);

async fn a_branch_skips_the_tasks_it_does_not_follow_and_trigger_rules_do_the_rest(store: Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let dags = dir.path().join("dags");
    std::fs::create_dir_all(&dags).expect("dags folder");
    std::fs::write(dags.join("branched.yaml"), BRANCHED).expect("dag file");
    let (stop, handle) = start_through(
        &store,
        &dags,
        dir.path(),
        |_, _| {},
        |local, events| {
            // `pick` ends as a branch following `left` does.
            Arc::new(Scripted {
                local,
                events,
                task: "pick",
                outcome: TryOutcome::SucceededReporting {
                    xcoms: [("return_value".to_owned(), serde_json::json!("left"))].into(),
                    skip: vec!["right".to_owned(), "not_a_task".to_owned()],
                    outlet_events: Vec::new(),
                },
            })
        },
    )
    .await;
    let run_id = trigger(&store, &dags, "branched", serde_json::json!({})).await;
    assert_eq!(
        wait_for_run(&store, "branched", &run_id).await,
        DagRunState::Success
    );
    stop.cancel();
    handle.await.expect("the scheduler stopped");
    let tis = store
        .task_instances("branched", &run_id)
        .await
        .expect("tis");
    let state = |task: &str| {
        tis.iter()
            .find(|t| t.task_id == task)
            .map(|t| (t.state, t.try_number))
            .expect("the task")
    };
    assert_eq!(state("pick"), (TaskState::Success, 1));
    assert_eq!(state("left"), (TaskState::Success, 1));
    assert_eq!(state("right"), (TaskState::Skipped, 0), "never ran");
    assert_eq!(state("after_right"), (TaskState::Skipped, 0));
    assert_eq!(state("join").0, TaskState::Success);
}

/// Starts a scheduler on the DAG file `text`, whose task `emit` succeeds reporting
/// `outlet_events` (as a Python task's Execution API calls do).
async fn start_emitting(
    store: &Store,
    text: &str,
    outlet_events: Vec<gust_executor::OutletEvent>,
) -> (
    tempfile::TempDir,
    std::path::PathBuf,
    CancellationToken,
    tokio::task::JoinHandle<()>,
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let dags = dir.path().join("dags");
    std::fs::create_dir_all(&dags).expect("dags folder");
    std::fs::write(dags.join("emitting.yaml"), text).expect("dag file");
    let (stop, handle) = start_through(
        store,
        &dags,
        dir.path(),
        |_, _| {},
        |local, events| {
            Arc::new(Scripted {
                local,
                events,
                task: "emit",
                outcome: TryOutcome::SucceededReporting {
                    xcoms: std::collections::BTreeMap::new(),
                    skip: Vec::new(),
                    outlet_events,
                },
            })
        },
    )
    .await;
    (dir, dags, stop, handle)
}

const EMITTING: &str = r#"
emitting:
  schedule: null
  tasks:
    emit:
      operator: BashOperator
      bash_command: 'true'
      outlets: ['s3://bucket/orders', 's3://bucket/other']
"#;

both_engines!(reported_outlet_events_carry_their_extras_one_event_each);

/// As Airflow's `register_asset_changes`: one event per reported event of an outlet, with its
/// extra; an outlet without any gets one with an empty extra; other assets get none.
async fn reported_outlet_events_carry_their_extras_one_event_each(store: Store) {
    // `emit` reports two events of its first outlet with extras, and one of an asset it does
    // not update.
    let event = |uri: &str, rows: i64| gust_executor::OutletEvent {
        name: uri.to_owned(),
        uri: uri.to_owned(),
        extra: serde_json::json!({"rows": rows})
            .as_object()
            .cloned()
            .unwrap_or_default(),
        through_alias: None,
    };
    let outlet_events = vec![
        event("s3://bucket/orders", 1),
        event("s3://bucket/orders", 2),
        event("s3://bucket/elsewhere", 3),
    ];
    let (_dir, dags, stop, handle) = start_emitting(&store, EMITTING, outlet_events).await;
    let run_id = trigger(&store, &dags, "emitting", serde_json::json!({})).await;
    assert_eq!(
        wait_for_run(&store, "emitting", &run_id).await,
        DagRunState::Success
    );
    stop.cancel();
    handle.await.expect("the scheduler stopped");
    let filter = gust_store::AssetEventFilter {
        source_dag_id: Some("emitting".to_owned()),
        ..Default::default()
    };
    let (events, _) = store
        .asset_events(&filter, "id", 10, 0)
        .await
        .expect("events");
    let mut seen: Vec<(String, serde_json::Value)> = events
        .into_iter()
        .map(|e| (e.uri, serde_json::Value::Object(e.extra)))
        .collect();
    seen.sort_by_key(|(uri, extra)| (uri.clone(), extra.to_string()));
    assert_eq!(
        seen,
        [
            (
                "s3://bucket/orders".to_owned(),
                serde_json::json!({"rows": 1})
            ),
            (
                "s3://bucket/orders".to_owned(),
                serde_json::json!({"rows": 2})
            ),
            ("s3://bucket/other".to_owned(), serde_json::json!({})),
        ]
    );
}

const THROUGH_ALIAS: &str = r#"
alias_producer:
  schedule: null
  tasks:
    emit:
      operator: BashOperator
      bash_command: 'true'
      outlets: [{__type__: airflow.sdk.AssetAlias, name: example-alias}]
alias_consumer:
  schedule: [{__type__: airflow.sdk.AssetAlias, name: example-alias}]
  tasks:
    use: {operator: BashOperator, bash_command: 'true'}
"#;

both_engines!(a_dag_scheduled_on_an_alias_runs_once_an_asset_is_attached_to_it_and_updated);

/// As Airflow's `AssetAlias`: an event a try emits through its outlet alias records the asset
/// (created, attached to the alias), and queues the DAGs scheduled on the alias, which run.
/// Events emitted through an alias the task does not name are left out.
async fn a_dag_scheduled_on_an_alias_runs_once_an_asset_is_attached_to_it_and_updated(
    store: Store,
) {
    let through = |alias: &str| gust_executor::OutletEvent {
        name: "s3://bucket/my-task".to_owned(),
        uri: "s3://bucket/my-task".to_owned(),
        extra: serde_json::Map::new(),
        through_alias: Some((alias.to_owned(), serde_json::Map::new())),
    };
    let outlet_events = vec![through("example-alias"), through("not-its-alias")];
    let (_dir, dags, stop, handle) = start_emitting(&store, THROUGH_ALIAS, outlet_events).await;
    let run_id = trigger(&store, &dags, "alias_producer", serde_json::json!({})).await;
    assert_eq!(
        wait_for_run(&store, "alias_producer", &run_id).await,
        DagRunState::Success
    );
    let runs = wait_for_asset_runs(&store, "alias_consumer", 1).await;
    assert_eq!(
        wait_for_run(&store, "alias_consumer", &runs[0]).await,
        DagRunState::Success
    );
    stop.cancel();
    handle.await.expect("the scheduler stopped");
    let attached = store.aliased_assets().await.expect("aliased assets");
    assert_eq!(
        attached
            .iter()
            .map(|a| (a.alias.as_str(), a.uri.as_str()))
            .collect::<Vec<_>>(),
        [("example-alias", "s3://bucket/my-task")]
    );
    let filter = gust_store::AssetEventFilter {
        alias: Some("example-alias".to_owned()),
        ..Default::default()
    };
    let (events, total) = store
        .asset_events(&filter, "id", 10, 0)
        .await
        .expect("events");
    assert_eq!(
        total, 1,
        "one event, through the task's own alias: {events:?}"
    );
    assert_eq!(events[0].source_task_id.as_deref(), Some("emit"));
    let consumed = store
        .run_asset_events("alias_consumer", &runs[0])
        .await
        .expect("consumed events");
    assert_eq!(
        consumed.iter().map(|e| e.id).collect::<Vec<_>>(),
        [events[0].id]
    );
}

both_engines!(scheduled_runs_are_named_after_their_interval_end_as_airflow_3_names_them);

/// Airflow 3.3 names a scheduled run after `run_after`, when it may start: the end of its data
/// interval; its logical date stays the interval's start.
async fn scheduled_runs_are_named_after_their_interval_end_as_airflow_3_names_them(store: Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let dags = dir.path().join("dags");
    std::fs::create_dir_all(&dags).expect("dags folder");
    std::fs::write(
        dags.join("daily.yaml"),
        "daily:\n  schedule: 1d\n  start_date: 2024-01-01\n  catchup: false\n  tasks: {t: {operator: empty}}\n",
    )
    .expect("dag file");
    let (stop, handle) = start(&store, &dags, dir.path()).await;
    let mut runs = Vec::new();
    for _ in 0..300 {
        runs = store.runs_of_dag("daily", 10).await.expect("read");
        if !runs.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.cancel();
    handle.await.expect("the scheduler stops");
    let run = runs.first().expect("a scheduled run within 15 s");
    let (start, end) = run.data_interval;
    assert_eq!(run.logical_date, start);
    assert_eq!(
        run.run_id,
        format!("scheduled__{}", end.format("%Y-%m-%dT%H:%M:%S+00:00"))
    );
}

const READS_A_VARIABLE: &str = r#"
reads:
  schedule: null
  tasks:
    show:
      operator: BashOperator
      bash_command: "echo {{ var.value.get('fresh', 'missing') }}"
"#;

both_engines!(a_variable_set_right_before_a_trigger_is_seen_by_that_runs_templates);

/// The scheduler's poll is an hour here: only reading variables as tries render can see one
/// set after the scheduler started.
async fn a_variable_set_right_before_a_trigger_is_seen_by_that_runs_templates(store: Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let dags = dir.path().join("dags");
    std::fs::create_dir_all(&dags).expect("dags folder");
    std::fs::write(dags.join("reads.yaml"), READS_A_VARIABLE).expect("dag file");
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let stop = CancellationToken::new();
    let (bags, _watch) = watch_folder(
        dags.clone(),
        WatchConfig::default(),
        clock.clone(),
        stop.clone(),
    )
    .await;
    let (tx, events) = gust_executor::event_channel();
    let local = LocalConfig {
        state_dir: Some(dir.path().join("tries")),
        ..LocalConfig::default()
    };
    let mut config = SchedulerConfig::new(dir.path().join("logs"));
    config.paused_by_default = false;
    config.poll_interval = Duration::from_secs(3600);
    config.template_values = Some(template_values(&store));
    let executor = Arc::new(LocalExecutor::new(local, tx, clock.clone()));
    let scheduler = Scheduler::new(store.clone(), executor, events, bags, clock, config);
    let waker = scheduler.waker();
    let token = stop.clone();
    let handle = tokio::spawn(async move {
        scheduler.run(token).await.expect("the scheduler runs");
    });
    // Past the scheduler's first poll.
    tokio::time::sleep(Duration::from_millis(300)).await;

    store
        .set_variable("fresh", "just-set", None, &fernet())
        .await
        .expect("variable");
    let run_id = trigger(&store, &dags, "reads", serde_json::json!({})).await;
    waker.wake();
    assert_eq!(
        wait_for_run(&store, "reads", &run_id).await,
        DagRunState::Success
    );
    let tries = store.tries_of_run("reads", &run_id).await.expect("tries");
    assert_eq!(
        tries[0]
            .rendered_args
            .as_ref()
            .and_then(|a| a.get("bash_command").cloned()),
        Some(serde_json::json!("echo just-set"))
    );
    stop.cancel();
    handle.await.expect("the scheduler stopped");
}

const SECRETS: &str = r#"
secrets:
  schedule: null
  tasks:
    shout:
      operator: BashOperator
      bash_command: 'echo "var={{ var.value.api_key }} env=$MYSECRET"; echo "{\"k\": \"$MYSECRET\"}"'
      env: {MYSECRET: "env-secret-value"}
"#;

both_engines!(secrets_never_reach_logs_or_xcoms);

async fn secrets_never_reach_logs_or_xcoms(store: Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let dags = dir.path().join("dags");
    std::fs::create_dir_all(&dags).expect("dags folder");
    std::fs::write(dags.join("secrets.yaml"), SECRETS).expect("dag file");
    store
        .set_variable("api_key", "var-secret-value", None, &fernet())
        .await
        .expect("variable");
    // What the binary's secrets watch feeds from the stored variables.
    gust_secrets::set_stored(vec!["var-secret-value".to_owned()]);
    let (stop, handle) = start(&store, &dags, dir.path()).await;
    let run_id = trigger(&store, &dags, "secrets", serde_json::json!({})).await;
    assert_eq!(
        wait_for_run(&store, "secrets", &run_id).await,
        DagRunState::Success
    );
    stop.cancel();
    handle.await.expect("the scheduler stopped");

    let xcoms = store.xcoms_of_run("secrets", &run_id).await.expect("xcoms");
    assert_eq!(xcoms[0].value, serde_json::json!(r#"{"k": "***"}"#));
    let mut logs = 0;
    for entry in walkdir::WalkDir::new(dir.path().join("logs")) {
        let entry = entry.expect("walk");
        if !entry.file_type().is_file() {
            continue;
        }
        let text = std::fs::read_to_string(entry.path()).expect("log");
        assert!(text.contains("var=*** env=***"), "{text}");
        for secret in ["var-secret-value", "env-secret-value"] {
            assert!(
                !text.contains(secret),
                "{secret} in {}",
                entry.path().display()
            );
        }
        logs += 1;
    }
    assert_eq!(logs, 1);
}

const SLOW: &str = r#"
slow:
  schedule: null
  tasks:
    nap:
      operator: bash
      bash_command: sleep 0.4
"#;

both_engines!(a_backfills_runs_wait_while_it_is_paused_and_run_within_its_max_active_runs);

/// A backfill's queued runs wait while it is paused, and then run one at a time when its
/// `max_active_runs` is 1, though the DAG's allows 16.
async fn a_backfills_runs_wait_while_it_is_paused_and_run_within_its_max_active_runs(store: Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let dags = dir.path().join("dags");
    std::fs::create_dir_all(&dags).expect("mkdir");
    std::fs::write(dags.join("slow.yaml"), SLOW).expect("write");
    let now = SystemClock.now();
    let day =
        |d: i64| chrono::DateTime::from_timestamp(1_700_000_000 + d * 86_400, 0).expect("a date");
    let backfill = store
        .create_backfill(&gust_store::NewBackfill {
            dag_id: "slow".into(),
            from_date: day(0),
            to_date: day(2),
            run_backwards: false,
            dag_run_conf: None,
            reprocess_behavior: "none".into(),
            max_active_runs: 1,
            triggering_user_name: None,
            created_at: now,
        })
        .await
        .expect("a backfill");
    store
        .set_backfill_paused(backfill, true, now)
        .await
        .expect("paused");
    let mut runs = Vec::new();
    for d in 0..3 {
        let run_id = format!("backfill__{}", day(d).to_rfc3339());
        store
            .create_run(&gust_store::NewRun {
                dag_id: "slow".into(),
                run_id: run_id.clone(),
                run_type: gust_store::RunType::Backfill,
                logical_date: day(d),
                data_interval: (day(d), day(d)),
                conf: serde_json::Map::new(),
                queued_at: now,
            })
            .await
            .expect("a run");
        store
            .set_run_backfill("slow", &run_id, backfill)
            .await
            .expect("tagged");
        runs.push(run_id);
    }
    let (stop, handle) = start(&store, &dags, dir.path()).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for run in &runs {
        let state = store.run("slow", run).await.expect("read").map(|r| r.state);
        assert_eq!(state, Some(DagRunState::Queued), "{run} waits while paused");
    }
    store
        .set_backfill_paused(backfill, false, SystemClock.now())
        .await
        .expect("unpaused");
    for run in &runs {
        assert_eq!(
            wait_for_run(&store, "slow", run).await,
            DagRunState::Success
        );
    }
    stop.cancel();
    handle.await.expect("joined");
    let mut spans = Vec::new();
    for run in &runs {
        let stored = store
            .run("slow", run)
            .await
            .expect("read")
            .expect("the run");
        spans.push((
            stored.start_date.expect("started"),
            stored.end_date.expect("ended"),
        ));
    }
    spans.sort();
    for pair in spans.windows(2) {
        assert!(pair[0].1 <= pair[1].0, "runs overlapped: {spans:?}");
    }
}

const ASSETS: &str = r#"
producer:
  schedule: null
  tasks:
    make:
      operator: BashOperator
      bash_command: echo made
      outlets: ['s3://bucket/data']
    also:
      operator: BashOperator
      bash_command: echo also
      outlets: [{__type__: airflow.sdk.Asset, name: other}]
consumer:
  schedule: ['s3://bucket/data', {__type__: airflow.sdk.Asset, name: other}]
  tasks:
    use:
      operator: BashOperator
      bash_command: 'echo "{{ triggering_asset_events["s3://bucket/data"] | length }} {{ triggering_asset_events["other"][0].source_task_id }}"'
waits_for_more:
  schedule: {datasets: "s3://bucket/data & s3://bucket/never"}
  tasks:
    idle: {operator: BashOperator, bash_command: 'true'}
"#;

/// The asset-triggered runs of `dag`, oldest first, once there are `count`.
async fn wait_for_asset_runs(store: &Store, dag: &str, count: usize) -> Vec<String> {
    for _ in 0..300 {
        let mut runs: Vec<_> = store
            .runs_of_dag(dag, 100)
            .await
            .expect("runs")
            .into_iter()
            .filter(|r| r.run_type == gust_store::RunType::AssetTriggered)
            .collect();
        if runs.len() >= count {
            runs.reverse();
            return runs.into_iter().map(|r| r.run_id).collect();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{dag} did not get {count} asset-triggered runs in 15 s");
}

both_engines!(a_dag_scheduled_on_assets_runs_once_its_producers_updated_them);

async fn a_dag_scheduled_on_assets_runs_once_its_producers_updated_them(store: Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let dags = dir.path().join("dags");
    std::fs::create_dir_all(&dags).expect("dags folder");
    std::fs::write(dags.join("assets.yaml"), ASSETS).expect("dag file");
    let (stop, handle) = start(&store, &dags, dir.path()).await;
    let first = trigger(&store, &dags, "producer", serde_json::json!({})).await;
    assert_eq!(
        wait_for_run(&store, "producer", &first).await,
        DagRunState::Success
    );
    let runs = wait_for_asset_runs(&store, "consumer", 1).await;
    assert!(runs[0].starts_with("asset_triggered__"), "{runs:?}");
    assert_eq!(
        wait_for_run(&store, "consumer", &runs[0]).await,
        DagRunState::Success
    );
    let consumed = store
        .run_asset_events("consumer", &runs[0])
        .await
        .expect("events");
    let mut sources: Vec<_> = consumed
        .iter()
        .map(|e| {
            (
                e.uri.as_str(),
                e.source_dag_id.as_deref(),
                e.source_task_id.as_deref(),
            )
        })
        .collect();
    sources.sort_unstable();
    assert_eq!(
        sources,
        [
            ("other", Some("producer"), Some("also")),
            ("s3://bucket/data", Some("producer"), Some("make"))
        ]
    );
    let rendered = store
        .tries_of_run("consumer", &runs[0])
        .await
        .expect("tries")[0]
        .rendered_args
        .clone()
        .and_then(|a| a.get("bash_command").cloned());
    assert_eq!(rendered, Some(serde_json::json!("echo \"1 also\"")));

    // A second update makes a second run, consuming only the new events; the DAG whose
    // condition is not met gets none.
    let second = trigger(&store, &dags, "producer", serde_json::json!({})).await;
    assert_eq!(
        wait_for_run(&store, "producer", &second).await,
        DagRunState::Success
    );
    let runs = wait_for_asset_runs(&store, "consumer", 2).await;
    let consumed = store
        .run_asset_events("consumer", &runs[1])
        .await
        .expect("events");
    assert_eq!(consumed.len(), 2, "{consumed:?}");
    assert!(
        store
            .runs_of_dag("waits_for_more", 10)
            .await
            .expect("runs")
            .is_empty(),
        "its condition needs an asset nothing updated"
    );
    let queued = store
        .queued_asset_events(Some("waits_for_more"), None)
        .await
        .expect("queued");
    assert_eq!(queued.len(), 1, "the update waits in its queue");
    stop.cancel();
    handle.await.expect("the scheduler stopped");
}

const MAPPED: &str = r#"
mapped:
  schedule: null
  tasks:
    each:
      operator: BashOperator
      retry_delay: 0
      partial:
        env: {MARKS: "{{ var.value.marks }}"}
        append_env: true
        retries: 1
      expand:
        bash_command:
          - 'echo echo x'
          - 'if [ -e "$MARKS/once" ]; then echo echo y; else touch "$MARKS/once"; exit 1; fi'
          - 'echo echo z'
    again:
      operator: BashOperator
      expand: {bash_command: each.output}
    pulled:
      operator: BashOperator
      bash_command: "echo '{{ ti.xcom_pull(task_ids=\"again\") | list | join(\",\") }}'"
      dependencies: [again]
    nothing:
      operator: BashOperator
      expand: {bash_command: []}
"#;

both_engines!(a_mapped_task_is_expanded_when_its_upstream_ends_and_each_instance_retries_alone);

async fn a_mapped_task_is_expanded_when_its_upstream_ends_and_each_instance_retries_alone(
    store: Store,
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let dags = dir.path().join("dags");
    std::fs::create_dir_all(&dags).expect("dags folder");
    std::fs::write(dags.join("mapped.yaml"), MAPPED).expect("dag file");
    let marks = dir.path().join("marks");
    std::fs::create_dir_all(&marks).expect("marks folder");
    let marks = marks.display().to_string();
    store
        .set_variable("marks", &marks, None, &fernet())
        .await
        .expect("variable");
    let (stop, handle) = start(&store, &dags, dir.path()).await;
    let run_id = trigger(&store, &dags, "mapped", serde_json::json!({})).await;
    assert_eq!(
        wait_for_run(&store, "mapped", &run_id).await,
        DagRunState::Success
    );

    let tis = store.task_instances("mapped", &run_id).await.expect("tis");
    let states: Vec<(&str, i32, TaskState, i32)> = tis
        .iter()
        .map(|t| (t.task_id.as_str(), t.map_index, t.state, t.try_number))
        .collect();
    assert_eq!(
        states,
        [
            ("again", 0, TaskState::Success, 1),
            ("again", 1, TaskState::Success, 1),
            ("again", 2, TaskState::Success, 1),
            ("each", 0, TaskState::Success, 1),
            ("each", 1, TaskState::Success, 2),
            ("each", 2, TaskState::Success, 1),
            ("nothing", -1, TaskState::Skipped, 0),
            ("pulled", -1, TaskState::Success, 1),
        ],
        "one instance per item, the second retried alone; an empty list skips"
    );
    let xcoms = store.xcoms_of_run("mapped", &run_id).await.expect("xcoms");
    let values: Vec<(&str, i32, serde_json::Value)> = xcoms
        .iter()
        .map(|x| (x.task_id.as_str(), x.map_index, x.value.clone()))
        .collect();
    assert!(
        values.contains(&("again", 2, serde_json::json!("z"))),
        "{values:?}"
    );
    assert!(
        values.contains(&("pulled", -1, serde_json::json!("x,y,z"))),
        "a mapped task's XCom is its instances' values in map-index order: {values:?}"
    );
    let log = dir
        .path()
        .join("logs/dag_id=mapped")
        .join(format!("run_id={run_id}"))
        .join("task_id=each/map_index=1/attempt=2.log");
    assert!(log.exists(), "each instance's tries have their own logs");
    stop.cancel();
    handle.await.expect("the scheduler stopped");
}

const REVISED: &str = r#"
revised:
  schedule: null
  tasks:
    each:
      operator: BashOperator
      partial:
        env: {MARKS: "{{ var.value.marks }}"}
        append_env: true
      expand:
        bash_command:
          - 'echo echo x'
          - 'if [ -e "$MARKS/skip" ]; then exit 99; fi; echo echo y'
          - 'echo echo z'
    again:
      operator: BashOperator
      trigger_rule: none_failed
      max_active_tis_per_dagrun: 1
      expand: {bash_command: each.output}
"#;

both_engines!(a_cleared_mapped_task_is_expanded_again_when_its_list_changes);

/// As Airflow revises a cleared mapped task's map indexes: `again` is mapped over `each`'s
/// values; once one instance of `each` is skipped on the second go, `again` has one instance
/// fewer, the last removed.
async fn a_cleared_mapped_task_is_expanded_again_when_its_list_changes(store: Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let dags = dir.path().join("dags");
    std::fs::create_dir_all(&dags).expect("dags folder");
    std::fs::write(dags.join("revised.yaml"), REVISED).expect("dag file");
    let marks = dir.path().join("marks");
    std::fs::create_dir_all(&marks).expect("marks folder");
    store
        .set_variable("marks", &marks.display().to_string(), None, &fernet())
        .await
        .expect("variable");
    let (stop, handle) = start(&store, &dags, dir.path()).await;
    let run_id = trigger(&store, &dags, "revised", serde_json::json!({})).await;
    assert_eq!(
        wait_for_run(&store, "revised", &run_id).await,
        DagRunState::Success
    );
    let again = |tis: &[gust_store::StoredTaskInstance]| -> Vec<(i32, TaskState)> {
        tis.iter()
            .filter(|t| t.task_id == "again")
            .map(|t| (t.map_index, t.state))
            .collect()
    };
    let tis = store.task_instances("revised", &run_id).await.expect("tis");
    assert_eq!(again(&tis).len(), 3, "{tis:?}");

    std::fs::write(marks.join("skip"), "").expect("mark");
    let cleared = store
        .clear_task_instances(
            "revised",
            &run_id,
            &["each".to_owned(), "again".to_owned()],
            SystemClock.now(),
        )
        .await
        .expect("clear");
    assert_eq!(cleared, 6);
    assert_eq!(
        wait_for_run(&store, "revised", &run_id).await,
        DagRunState::Success
    );
    let tis = store.task_instances("revised", &run_id).await.expect("tis");
    assert_eq!(
        again(&tis),
        [
            (0, TaskState::Success),
            (1, TaskState::Success),
            (2, TaskState::Removed)
        ],
        "{tis:?}"
    );
    let xcoms = store.xcoms_of_run("revised", &run_id).await.expect("xcoms");
    let pulled: Vec<(i32, serde_json::Value)> = xcoms
        .iter()
        .filter(|x| x.task_id == "again")
        .map(|x| (x.map_index, x.value.clone()))
        .collect();
    assert_eq!(
        pulled,
        [(0, serde_json::json!("x")), (1, serde_json::json!("z"))],
        "the instances ran over the new list"
    );
    stop.cancel();
    handle.await.expect("the scheduler stopped");
}

const NAMED: &str = r#"
named:
  schedule: null
  tasks:
    shard:
      operator: BashOperator
      partial:
        bash_command: echo $REGION
      expand:
        env: [{REGION: eu}, {REGION: us}]
      map_index_template: "{{ task.env.REGION }}-{{ ti.map_index }}"
    broken:
      operator: BashOperator
      bash_command: "true"
      expand:
        env: [{A: "1"}]
      map_index_template: "{{ task.nope.deeper }}"
"#;

both_engines!(a_mapped_instance_is_named_by_its_map_index_template_when_handed_over);

async fn a_mapped_instance_is_named_by_its_map_index_template_when_handed_over(store: Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let dags = dir.path().join("dags");
    std::fs::create_dir_all(&dags).expect("dags folder");
    std::fs::write(dags.join("named.yaml"), NAMED).expect("dag file");
    let (stop, handle) = start(&store, &dags, dir.path()).await;
    let run_id = trigger(&store, &dags, "named", serde_json::json!({})).await;
    assert_eq!(
        wait_for_run(&store, "named", &run_id).await,
        DagRunState::Success,
        "a template that does not render leaves the instance unnamed; it runs all the same"
    );
    let names: Vec<(String, i32, Option<String>)> = store
        .task_instances("named", &run_id)
        .await
        .expect("tis")
        .into_iter()
        .map(|t| (t.task_id, t.map_index, t.rendered_map_index))
        .collect();
    assert_eq!(
        names,
        [
            ("broken".to_owned(), 0, None),
            ("shard".to_owned(), 0, Some("eu-0".to_owned())),
            ("shard".to_owned(), 1, Some("us-1".to_owned())),
        ]
    );
    stop.cancel();
    handle.await.expect("the scheduler stopped");
}

const GROUPED: &str = r#"
grouped:
  schedule: null
  task_groups:
    shard:
      expand:
        env: [{N: "0"}, {N: "1"}, {N: "2"}]
      partial:
        append_env: true
    by_xcom:
      expand:
        bash_command: names.output
    empty:
      expand:
        env: []
  tasks:
    first:
      operator: BashOperator
      task_group_name: shard
      retries: 1
      retry_delay: 0
      bash_command: 'if [ "$N" = 1 ] && [ ! -e "{{ var.value.marks }}/fixed" ]; then exit 1; fi; echo first-$N'
    second:
      operator: BashOperator
      task_group_name: shard
      bash_command: 'echo second-$N'
      dependencies: [first]
    after:
      operator: BashOperator
      trigger_rule: all_done
      bash_command: "echo '{{ ti.xcom_pull(task_ids=\"shard.second\") | list | join(\",\") }}'"
      dependencies: [shard]
    names:
      operator: BashOperator
      expand: {bash_command: ['echo echo a', 'echo echo b']}
    run:
      operator: BashOperator
      task_group_name: by_xcom
    lonely:
      operator: BashOperator
      task_group_name: empty
      bash_command: echo never
"#;

both_engines!(a_mapped_task_group_runs_each_instance_after_its_own_upstream_instance);

/// A mapped task group: every task of `shard` has one instance per item of the group's list
/// (with the group's `partial:` too), instance 1 of `first` fails after its retry and only
/// instance 1 of `second` is upstream_failed; the task after the group pulls the instances'
/// values in map-index order; `by_xcom` has as many instances as its upstream's value has
/// items, known when it ends; a group over nothing has its tasks skipped. Clearing the failed
/// instances runs them again, alone.
async fn a_mapped_task_group_runs_each_instance_after_its_own_upstream_instance(store: Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let dags = dir.path().join("dags");
    std::fs::create_dir_all(&dags).expect("dags folder");
    std::fs::write(dags.join("grouped.yaml"), GROUPED).expect("dag file");
    let marks = dir.path().join("marks");
    std::fs::create_dir_all(&marks).expect("marks folder");
    store
        .set_variable("marks", &marks.display().to_string(), None, &fernet())
        .await
        .expect("variable");
    let (stop, handle) = start(&store, &dags, dir.path()).await;
    let run_id = trigger(&store, &dags, "grouped", serde_json::json!({})).await;
    assert_eq!(
        wait_for_run(&store, "grouped", &run_id).await,
        DagRunState::Success
    );
    let instances = |tis: &[gust_store::StoredTaskInstance]| -> Vec<(String, i32, TaskState, i32)> {
        tis.iter()
            .map(|t| (t.task_id.clone(), t.map_index, t.state, t.try_number))
            .collect()
    };
    let tis = store.task_instances("grouped", &run_id).await.expect("tis");
    let expected = |fixed: bool| {
        let (first, second) = if fixed {
            ((TaskState::Success, 3), (TaskState::Success, 1))
        } else {
            ((TaskState::Failed, 2), (TaskState::UpstreamFailed, 0))
        };
        vec![
            ("after".to_owned(), -1, TaskState::Success, 1),
            ("by_xcom.run".to_owned(), 0, TaskState::Success, 1),
            ("by_xcom.run".to_owned(), 1, TaskState::Success, 1),
            ("empty.lonely".to_owned(), -1, TaskState::Skipped, 0),
            ("names".to_owned(), 0, TaskState::Success, 1),
            ("names".to_owned(), 1, TaskState::Success, 1),
            ("shard.first".to_owned(), 0, TaskState::Success, 1),
            ("shard.first".to_owned(), 1, first.0, first.1),
            ("shard.first".to_owned(), 2, TaskState::Success, 1),
            ("shard.second".to_owned(), 0, TaskState::Success, 1),
            ("shard.second".to_owned(), 1, second.0, second.1),
            ("shard.second".to_owned(), 2, TaskState::Success, 1),
        ]
    };
    assert_eq!(instances(&tis), expected(false));
    let xcoms = store.xcoms_of_run("grouped", &run_id).await.expect("xcoms");
    let values: Vec<(&str, i32, serde_json::Value)> = xcoms
        .iter()
        .map(|x| (x.task_id.as_str(), x.map_index, x.value.clone()))
        .collect();
    for value in [
        ("shard.second", 2, serde_json::json!("second-2")),
        ("by_xcom.run", 1, serde_json::json!("b")),
        ("after", -1, serde_json::json!("second-0,second-2")),
    ] {
        assert!(values.contains(&value), "{value:?} in {values:?}");
    }
    let log = dir
        .path()
        .join("logs/dag_id=grouped")
        .join(format!("run_id={run_id}"))
        .join("task_id=shard.first/map_index=1/attempt=2.log");
    assert!(log.exists(), "each instance's tries have their own logs");

    std::fs::write(marks.join("fixed"), "").expect("mark");
    let targets =
        [("shard.first", 1), ("shard.second", 1)].map(|(task, index)| gust_store::InstanceTarget {
            task_id: task.to_owned(),
            map_index: Some(index),
        });
    let cleared = store
        .clear_instances("grouped", &run_id, &targets, SystemClock.now())
        .await
        .expect("clear");
    assert_eq!(cleared, 2);
    assert_eq!(
        wait_for_run(&store, "grouped", &run_id).await,
        DagRunState::Success
    );
    let tis = store.task_instances("grouped", &run_id).await.expect("tis");
    assert_eq!(
        instances(&tis),
        expected(true),
        "only the cleared instances ran again"
    );
    stop.cancel();
    handle.await.expect("the scheduler stopped");
}
