//! The scheduler: the database-backed loop that creates runs from schedules, decides which task
//! instances may run, hands tries to a runtime and records what happens to them.
//!
//! It is event-driven. One loop waits on whatever comes first: a runtime event (a try started or
//! ended), the next timer (a retry delay, a run timeout, a schedule's next interval), a new
//! version of the DAG folder, or a short poll for what other processes wrote (runs triggered from
//! the CLI or the API, cleared tasks, paused DAGs). Whatever arrives is turned into task moves,
//! the downstream tasks it unblocks are decided in the same step, and every move is committed
//! (compare-and-set, one transaction per batch) before anything is acted on: a try is handed to
//! the runtime only once its `queued` state is stored. After a crash the next scheduler re-reads
//! the runs and adopts the tries that were handed over (`Executor::adopt`), so nothing is lost
//! and nothing runs twice.
//!
//! Several schedulers share one PostgreSQL database by DAG: each drives the DAGs it holds a
//! claim on (`claims.rs`).
//!
//! `active.rs` holds one run in memory, `slots.rs` decides who may start, `runs.rs` creates,
//! loads and ends runs, `assets.rs` creates the runs asset events trigger, `tasks.rs` moves task instances, `claims.rs` shares DAGs out.

mod active;
mod assets;
pub(crate) mod callbacks;
mod claims;
mod deadlines;
mod deferrals;
mod expand;
mod runs;
mod slots;
mod tasks;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use gust_core::clock::Clock;
use gust_core::ids::InstanceId;
use gust_dagfile::DagBag;
use gust_executor::{Executor, LaunchSpec, TryEvent, TryKey, try_log};
use gust_store::{Store, StoreError, TaskMove};
use gust_template::Renderer;

use crate::template_values::TemplateValues;
use tokio::sync::{Notify, mpsc, watch};
use tokio_util::sync::CancellationToken;

use active::{ActiveRun, RunKey};
use slots::{Slots, WaitingLine};

/// How the scheduler behaves.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// At most this many tries at once (`[core] parallelism`).
    pub parallelism: usize,
    /// Where try logs go.
    pub logs_root: PathBuf,
    /// How often the database is read for what other processes changed (default 1 s). Nothing
    /// of the scheduler's own work waits for it.
    pub poll_interval: Duration,
    /// Whether DAGs seen for the first time start paused.
    pub paused_by_default: bool,
    /// The most instances one mapped task may have (`[core] max_map_length`).
    pub max_map_length: usize,
    /// Operators whose tries hold no worker while they run (a pod is followed by a watch), so
    /// they do not count against `parallelism`; pools and `max_active_tasks` still apply.
    pub worker_free_operators: std::collections::HashSet<String>,
    /// This scheduler's name in the heartbeat and claims tables (default `HOST:PID`; a
    /// scheduler of this host whose process is gone is known dead at once).
    pub id: String,
    /// How long the DAGs of a scheduler that stopped renewing its claims wait before another
    /// scheduler takes them over (`[scheduler] scheduler_health_check_threshold`, 30 s).
    pub claim_ttl: Duration,
    /// This is the database's only possible scheduler (SQLite, whose file lock refuses a
    /// second one): it takes every DAG at once, whoever held it before.
    pub exclusive: bool,
    /// Where the scheduler records its metrics and heartbeat (default: a fresh set; pass a
    /// clone of the handle a server renders).
    pub metrics: crate::metrics::SchedulerMetrics,
    /// The variables and connections templates read, re-read before tries render (default:
    /// the scheduler's store without a key, so neither; pass one with the Fernet key).
    pub template_values: Option<Arc<TemplateValues>>,
    /// Runs the callbacks of natively run tasks and of DAGs (Python's; none without a
    /// `[python] interpreter`, where DAG files naming callbacks are refused).
    pub callbacks: Option<Arc<dyn gust_executor::callbacks::CallbackRunner>>,
}

impl SchedulerConfig {
    /// The defaults, logging under `logs_root`.
    #[must_use]
    pub fn new(logs_root: PathBuf) -> Self {
        Self {
            parallelism: 32,
            logs_root,
            poll_interval: Duration::from_secs(1),
            paused_by_default: true,
            max_map_length: gust_core::mapping::DEFAULT_MAX_MAP_LENGTH,
            worker_free_operators: std::collections::HashSet::new(),
            id: format!("{}:{}", claims::host_name(), std::process::id()),
            claim_ttl: Duration::from_secs(30),
            exclusive: false,
            metrics: crate::metrics::SchedulerMetrics::new(),
            template_values: None,
            callbacks: None,
        }
    }
}

/// Why the scheduler stopped.
#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    /// The metadata database failed; a restarted scheduler picks up where this one stopped.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The runtime's event channel closed.
    #[error("the runtime stopped reporting events")]
    RuntimeGone,
    /// Another scheduler took over a DAG this one held: this one could not renew its claim for
    /// longer than the threshold. Stopping hands its tries to the new holder.
    #[error(
        "another scheduler took over DAG \"{dag_id}\" after this one could not renew its claim for {}s (scheduler_health_check_threshold); stopping so that its tries are adopted there",
        .threshold.as_secs()
    )]
    ClaimLost {
        /// The DAG.
        dag_id: String,
        /// The threshold in force.
        threshold: Duration,
    },
}

/// Wakes a running scheduler to look at the database now (a run was triggered in-process).
#[derive(Debug, Clone, Default)]
pub struct Waker(Arc<Notify>);

impl Waker {
    /// Asks the scheduler to look for new runs now.
    pub fn wake(&self) {
        self.0.notify_one();
    }
}

/// Something due at a time.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Timer {
    /// A task's retry delay ends.
    Retry(RunKey, InstanceId),
    /// A rescheduled try's reschedule date comes.
    Reschedule(RunKey, InstanceId),
    /// A run reaches its `dagrun_timeout`.
    RunTimeout(RunKey),
    /// A native (temporal) trigger of a deferred try fires.
    TriggerFires(TryKey, gust_executor::deferral::TriggerResult),
    /// A deferred try's `trigger_timeout` passes.
    TriggerTimeout(TryKey),
    /// A schedule may have a new interval due.
    Schedules,
    /// A run's deadline (stored with this id) passes.
    Deadline(RunKey, i64),
}

/// What to do once a batch of moves is committed, if the move it follows was.
#[derive(Debug)]
enum After {
    Launch(Box<LaunchSpec>),
    Release(TryKey),
    Kill(TryKey, String),
    /// A try that failed before a runtime had it gets a log saying why.
    FailureLog(PathBuf, String),
    /// A task's callback runs (in Python).
    Callback(Box<gust_executor::callbacks::CallbackRequest>),
    /// A deferred task's trigger starts (its deferral is committed).
    Trigger(RunKey, InstanceId),
    /// A mapped instance handed to a runtime gets its name (its `map_index_template`
    /// rendered), shown by the API and UI as `rendered_map_index`.
    Name(TryKey, String),
}

/// Moves to commit together, and what follows each.
#[derive(Debug, Default)]
struct Batch {
    /// Mapped tasks expanded, committed before the moves (which move their instances).
    expansions: Vec<Expansion>,
    moves: Vec<TaskMove>,
    runs: Vec<RunKey>,
    /// Actions, each after the move at its index (or unconditional with `None`).
    after: Vec<(Option<usize>, After)>,
}

impl Batch {
    fn push(&mut self, run: &RunKey, planned: TaskMove) {
        self.moves.push(planned);
        self.runs.push(run.clone());
    }

    /// `action`, once the last pushed move is committed.
    fn then(&mut self, action: After) {
        let index = self.moves.len().checked_sub(1);
        self.after.push((index, action));
    }

    fn is_empty(&self) -> bool {
        self.moves.is_empty() && self.after.is_empty() && self.expansions.is_empty()
    }

    /// Puts `earlier`'s moves and actions before this batch's, as if made first.
    fn prepend(&mut self, mut earlier: Batch) {
        let shift = earlier.moves.len();
        earlier.expansions.append(&mut self.expansions);
        earlier.moves.append(&mut self.moves);
        earlier.runs.append(&mut self.runs);
        earlier.after.extend(
            self.after
                .drain(..)
                .map(|(index, action)| (index.map(|i| i + shift), action)),
        );
        *self = earlier;
    }

    /// Drops the moves of `run` (it is being re-read) and what would follow them.
    fn forget_run(&mut self, run: &RunKey) {
        self.expansions.retain(|e| &e.run != run);
        let kept: Vec<bool> = self.runs.iter().map(|r| r != run).collect();
        let mut new_index = Vec::with_capacity(kept.len());
        let mut next = 0;
        for keep in &kept {
            new_index.push(keep.then_some(next));
            next += usize::from(*keep);
        }
        let mut keep = kept.iter();
        self.moves.retain(|_| keep.next().copied().unwrap_or(true));
        self.runs.retain(|r| r != run);
        self.after = std::mem::take(&mut self.after)
            .into_iter()
            .filter_map(|(index, action)| match index {
                None => Some((None, action)),
                Some(i) => new_index
                    .get(i)
                    .copied()
                    .flatten()
                    .map(|i| (Some(i), action)),
            })
            .collect();
    }
}

/// A mapped task's unmapped instance to turn into `count` instances (see
/// `Store::expand_task_instance`), or, with `revise`, an expanded task (named by one of its
/// instances) to give `count` instances again (see `Store::revise_expansion`).
#[derive(Debug)]
struct Expansion {
    run: RunKey,
    instance: gust_store::StoredTaskInstance,
    count: u32,
    revise: bool,
}

/// How long a try's start may wait to be committed with the next batch. A short try's start
/// and end then share one transaction (one commit less per task on a chain of quick tasks);
/// a long try shows `running` this late at most. Nothing acts on `running`, and a try started
/// but recorded `queued` when the scheduler dies is adopted like a running one.
const START_COMMIT_DELAY: Duration = Duration::from_millis(50);

/// The scheduler loop and everything it holds.
pub struct Scheduler {
    store: Store,
    executor: Arc<dyn Executor>,
    events: mpsc::Receiver<TryEvent>,
    bags: watch::Receiver<Arc<DagBag>>,
    clock: Arc<dyn Clock>,
    config: SchedulerConfig,
    waker: Waker,
    renderer: Renderer,

    bag: Arc<DagBag>,
    paused: HashMap<String, bool>,
    template_values: Arc<TemplateValues>,
    runs: HashMap<RunKey, ActiveRun>,
    /// Tries this process started or adopted whose end it has not recorded.
    live: HashSet<TryKey>,
    slots: Slots,
    line: WaitingLine,
    /// Tasks waiting whose tries hold no worker (see `SchedulerConfig::worker_free_operators`).
    worker_free_line: WaitingLine,
    timers: BTreeMap<DateTime<Utc>, Vec<Timer>>,
    /// Runs to re-read from the database (someone else moved them).
    stale: HashSet<RunKey>,
    /// Look at schedules for new runs.
    schedules_due: bool,
    /// Look at the queued asset events for asset-triggered runs.
    assets_due: bool,
    /// Look for queued runs to start.
    runs_due: bool,
    /// Stopping: start nothing new, wait for what runs.
    draining: bool,
    /// Moves decided between steps (runtime events, timers), committed by the next step.
    pending: Batch,
    /// Tries' starts not committed yet: they go with the next commit, or after
    /// `START_COMMIT_DELAY` (see there).
    started: Batch,
    /// When `started` is committed at the latest.
    started_due: Option<tokio::time::Instant>,
    /// The DAGs this scheduler holds a claim on: it drives their runs, and only theirs.
    owned: HashSet<String>,
    /// DAGs claimed whose leftovers (pods of tries already over) have not been swept yet.
    unswept: HashSet<String>,
    /// This host's name, to tell dead schedulers of this host from live ones.
    host: String,
    /// Whether other schedulers heart-beat at the last claim round.
    others_live: bool,
    /// Runs the triggers of deferred tasks that are not run natively (Python's).
    triggerer: Option<Arc<dyn gust_executor::deferral::TriggerRunner>>,
    /// Where `triggerer` reports its triggers' ends.
    fired: Option<mpsc::Receiver<gust_executor::deferral::TriggerFired>>,
    /// The deferred tries whose trigger `triggerer` runs for this scheduler.
    python_triggers: HashSet<TryKey>,
    /// The DAGs in force with deadline alerts.
    deadline_dags: HashSet<String>,
    /// The runs whose deadlines this process stored and timed.
    deadline_runs: HashSet<RunKey>,
    /// Their deadlines still pending, by id.
    deadline_alerts: HashMap<i64, gust_store::StoredDeadline>,
    /// Deadlines whose timers came, to fire in the next step.
    deadlines_due: Vec<(RunKey, i64)>,
}

impl Scheduler {
    /// A scheduler over `store`, handing tries to `executor` (whose events arrive on `events`),
    /// running the DAGs published on `bags`.
    pub fn new(
        store: Store,
        executor: Arc<dyn Executor>,
        events: mpsc::Receiver<TryEvent>,
        bags: watch::Receiver<Arc<DagBag>>,
        clock: Arc<dyn Clock>,
        config: SchedulerConfig,
    ) -> Self {
        let bag = bags.borrow().clone();
        let template_values = config.template_values.clone().unwrap_or_else(|| {
            Arc::new(TemplateValues::from_store(store.clone(), Arc::new(|| None)))
        });
        let mut slots = Slots::default();
        slots.parallelism = config.parallelism;
        slots.worker_free.clone_from(&config.worker_free_operators);
        Self {
            store,
            executor,
            events,
            bags,
            clock,
            config,
            waker: Waker::default(),
            renderer: Renderer::new(),
            bag,
            paused: HashMap::new(),
            template_values,
            runs: HashMap::new(),
            live: HashSet::new(),
            slots,
            line: WaitingLine::default(),
            worker_free_line: WaitingLine::default(),
            timers: BTreeMap::new(),
            stale: HashSet::new(),
            schedules_due: true,
            assets_due: true,
            runs_due: true,
            draining: false,
            pending: Batch::default(),
            started: Batch::default(),
            started_due: None,
            owned: HashSet::new(),
            unswept: HashSet::new(),
            host: claims::host_name(),
            others_live: false,
            triggerer: None,
            fired: None,
            python_triggers: HashSet::new(),
            deadline_dags: HashSet::new(),
            deadline_runs: HashSet::new(),
            deadline_alerts: HashMap::new(),
            deadlines_due: Vec::new(),
        }
    }

    /// Runs the triggers it cannot run natively with `runner`, which reports on `fired`.
    #[must_use]
    pub fn with_triggerer(
        mut self,
        runner: Arc<dyn gust_executor::deferral::TriggerRunner>,
        fired: mpsc::Receiver<gust_executor::deferral::TriggerFired>,
    ) -> Self {
        self.triggerer = Some(runner);
        self.fired = Some(fired);
        self
    }

    /// A handle that wakes this scheduler.
    #[must_use]
    pub fn waker(&self) -> Waker {
        self.waker.clone()
    }

    /// Runs until `shutdown`, then stops starting tries and returns once the tries holding a
    /// worker (local processes) have ended, giving its DAGs back: pods are left running for the
    /// next holder to re-attach to (a second stop is the caller's: dropping the scheduler leaves
    /// tries to be adopted).
    pub async fn run(mut self, shutdown: CancellationToken) -> Result<(), SchedulerError> {
        self.sync_bag().await?;
        self.poll().await?;
        let mut poll = tokio::time::interval(self.config.poll_interval);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let waker = self.waker.0.clone();
        loop {
            self.step().await?;
            self.cancel_unwanted_triggers();
            self.record_gauges();
            // The step loaded the newly claimed DAGs' runs and adopted their live tries: what
            // the runtimes hold for any other try of theirs is left over from before a crash.
            self.sweep_new_claims();
            if self.draining && !self.holds_workers() {
                // Pods keep running; whoever claims their DAGs next re-attaches to them.
                self.release_claims().await?;
                return Ok(());
            }
            let next_timer = self.timers.keys().next().copied();
            let sleep =
                next_timer.map(|at| (at - self.clock.now()).to_std().unwrap_or(Duration::ZERO));
            let started_due = self.started_due;
            tokio::select! {
                biased;
                event = self.events.recv() => {
                    let Some(event) = event else { return Err(SchedulerError::RuntimeGone) };
                    // Everything already reported is handled in one batch: one commit for a
                    // thousand tries ending together.
                    let mut events = vec![event];
                    while events.len() < 4096 {
                        match self.events.try_recv() {
                            Ok(event) => events.push(event),
                            Err(_) => break,
                        }
                    }
                    for event in events {
                        self.on_event(event);
                    }
                }
                fired = next_fired(self.fired.as_mut()) => match fired {
                    Some(fired) => self.trigger_fired(fired),
                    // The triggerer is gone (shutting down): nothing more will come from it.
                    None => self.fired = None,
                },
                () = sleep_for(sleep), if sleep.is_some() => self.fire_timers(),
                () = sleep_until(started_due), if started_due.is_some() => {}
                () = shutdown.cancelled(), if !self.draining => {
                    self.draining = true;
                }
                changed = self.bags.changed() => {
                    if changed.is_ok() {
                        self.bag = self.bags.borrow_and_update().clone();
                        self.sync_bag().await?;
                    }
                }
                () = waker.notified() => {
                    self.runs_due = true;
                    // An asset event posted in-process (the API) may trigger a DAG.
                    self.assets_due = true;
                }
                _ = poll.tick() => self.poll().await?,
            }
        }
    }

    /// Records the DAGs in force and re-reads the runs of changed DAGs.
    async fn sync_bag(&mut self) -> Result<(), SchedulerError> {
        crate::sync::sync_bag(
            &self.store,
            &self.bag,
            self.clock.now(),
            self.config.paused_by_default,
        )
        .await?;
        self.deadline_dags = self
            .bag
            .dags()
            .filter(|e| !e.dag.settings.deadlines.is_empty())
            .map(|e| e.dag.id.to_string())
            .collect();
        for (key, run) in &self.runs {
            let current = self
                .bag
                .dags()
                .find(|e| e.dag.id.as_str() == key.0)
                .map(|e| e.dag.clone());
            if current.is_some_and(|dag| !Arc::ptr_eq(&dag, &run.dag)) {
                tracing::debug!(dag_id = %key.0, run_id = %key.1, "its DAG changed: the run is re-read");
                self.stale.insert(key.clone());
            }
        }
        self.schedules_due = true;
        self.assets_due = true;
        self.runs_due = true;
        // New DAGs are claimed at once rather than at the next poll.
        self.claim_round().await
    }

    /// Whether a try holding a worker (not a followed pod) still runs in this process. A try of
    /// a run no longer held is counted: its end is awaited.
    fn holds_workers(&self) -> bool {
        self.live.iter().any(|key| {
            self.runs
                .get(&(key.dag_id.to_string(), key.run_id.to_string()))
                .and_then(|run| run.dag.task(&key.task_id))
                .is_none_or(|task| !self.slots.worker_free.contains(&task.operator))
        })
    }

    /// Reads what other processes may have changed: runs, pause flags, pools.
    async fn poll(&mut self) -> Result<(), SchedulerError> {
        let started = tokio::time::Instant::now();
        let now = self.clock.now();
        self.store.scheduler_heartbeat(&self.config.id, now).await?;
        self.config.metrics.heartbeat(now);
        self.claim_round().await?;
        self.paused = self.store.dag_pause_flags().await?.into_iter().collect();
        self.slots.pool_sizes = self
            .store
            .pools()
            .await?
            .into_iter()
            .map(|p| (p.name, i64::from(p.slots)))
            .collect();
        // A pool resized (or its use by other schedulers, read below) lets what it held start.
        let pools = |l: &slots::Limit| matches!(l, slots::Limit::Pool(_));
        self.line.unpark_all(pools);
        self.worker_free_line.unpark_all(pools);
        self.count_pool_slots_elsewhere().await?;
        let metrics = &self.config.metrics;
        metrics.db_call(crate::metrics::DbCall::Poll, started.elapsed());
        self.runs_due = true;
        self.schedules_due = true;
        self.assets_due = true;
        Ok(())
    }

    /// Does everything that can be done now, until nothing changes.
    async fn step(&mut self) -> Result<(), SchedulerError> {
        loop {
            if self.schedules_due {
                self.schedules_due = false;
                self.create_scheduled_runs().await?;
            }
            if self.assets_due {
                self.assets_due = false;
                self.create_asset_triggered_runs().await?;
            }
            if self.runs_due {
                self.runs_due = false;
                self.refresh_runs().await?;
            }
            if !self.stale.is_empty() {
                self.reload_stale().await?;
            }
            if !self.deadlines_due.is_empty() {
                self.fire_deadlines().await?;
            }
            let mut batch = std::mem::take(&mut self.pending);
            self.settle_dirty(&mut batch);
            if self.line.count() + self.worker_free_line.count() > 0 && !self.draining {
                // Templates render as tries are admitted: read what they may use now, so a
                // variable set right before a trigger is seen (not only after the next poll).
                self.template_values.refresh().await?;
            }
            self.admit(&mut batch);
            let starts_due = !self.started.is_empty()
                && (self.draining
                    || self
                        .started_due
                        .is_some_and(|at| at <= tokio::time::Instant::now()));
            if batch.is_empty() && !starts_due {
                if self.finish_runs().await? {
                    continue;
                }
                return Ok(());
            }
            // Starts go first: a try's end in this batch follows its start.
            batch.prepend(std::mem::take(&mut self.started));
            self.started_due = None;
            self.commit(batch).await?;
            self.finish_runs().await?;
        }
    }

    /// Commits `batch`, then acts on what was committed. A move someone else beat us to marks
    /// its run for re-reading, and what would have followed it is not done.
    async fn commit(&mut self, batch: Batch) -> Result<(), SchedulerError> {
        // The runtimes ready the tries this batch starts (their files) while it commits: once
        // it is committed, only their processes are left to spawn.
        let launches = || {
            batch.after.iter().filter_map(|(_, action)| match action {
                After::Launch(spec) => Some(spec),
                _ => None,
            })
        };
        for spec in launches() {
            self.executor.prepare(spec);
        }
        for expansion in &batch.expansions {
            let Expansion {
                run,
                instance,
                count,
                revise,
            } = expansion;
            if *revise {
                let ti = instance;
                self.store
                    .revise_expansion(&ti.dag_id, &ti.run_id, &ti.task_id, *count)
                    .await?;
                // Its instances are re-read with the run, removed ones and new ones alike.
                self.stale.insert(run.clone());
            } else if !self.store.expand_task_instance(instance, *count).await? {
                // Moved by someone else: the moves of its instances will not commit either.
                self.stale.insert(run.clone());
            }
        }
        let done = if batch.moves.is_empty() {
            Vec::new()
        } else {
            let started = tokio::time::Instant::now();
            let done = match self.store.apply_moves(&batch.moves).await {
                Ok(done) => done,
                Err(err) => {
                    for spec in launches() {
                        self.executor.discard(&spec.key);
                    }
                    return Err(err.into());
                }
            };
            let metrics = &self.config.metrics;
            metrics.db_call(crate::metrics::DbCall::CommitMoves, started.elapsed());
            done
        };
        for ((committed, run), planned) in done.iter().zip(&batch.runs).zip(&batch.moves) {
            if !committed {
                self.stale.insert(run.clone());
            } else if let Some(gust_store::TryChange::Ended { outlets, .. }) = &planned.try_change
                && !outlets.is_empty()
            {
                // Asset events were recorded: the DAGs scheduled on them may have a run due.
                self.assets_due = true;
            }
        }
        for (index, action) in batch.after {
            if index.is_some_and(|i| !done.get(i).copied().unwrap_or(false)) {
                if let After::Launch(spec) = action {
                    self.executor.discard(&spec.key);
                }
                continue;
            }
            match action {
                After::Launch(spec) => {
                    let key = spec.key.clone();
                    self.live.insert(key.clone());
                    if let Err(err) = self.executor.start(*spec) {
                        // Handled like a try that failed to start: its own event.
                        self.on_launch_error(key, err.to_string());
                    }
                }
                After::Release(key) => {
                    self.live.remove(&key);
                    self.executor.release(&key);
                }
                After::Kill(key, reason) => self.executor.kill(&key, &reason),
                After::Trigger(run, task) => self.start_trigger(&run, &task),
                After::Callback(request) => {
                    if let Some(runner) = &self.config.callbacks {
                        runner.run(*request);
                    }
                }
                After::Name(key, name) => {
                    // Only a label: a failed write leaves the instance shown by its index.
                    let named = self
                        .store
                        .set_rendered_map_index(
                            key.dag_id.as_str(),
                            key.run_id.as_str(),
                            key.task_id.as_str(),
                            key.map_index,
                            Some(&name),
                        )
                        .await;
                    if let Err(err) = named {
                        tracing::warn!(try_key = %key, error = %err, "could not record a mapped instance's name");
                    }
                }
                After::FailureLog(path, why) => {
                    // A rare path (a broken template, a missing pool) and one short line.
                    let written = try_log::write_failure(&path, &*self.clock, &why).await;
                    if let Err(err) = written {
                        tracing::warn!(log = %path.display(), error = %err, "could not write a try's log");
                    }
                }
            }
        }
        Ok(())
    }

    fn add_timer(&mut self, at: DateTime<Utc>, timer: Timer) {
        self.timers.entry(at).or_default().push(timer);
    }

    fn fire_timers(&mut self) {
        let now = self.clock.now();
        let due: Vec<DateTime<Utc>> = self.timers.range(..=now).map(|(at, _)| *at).collect();
        for at in due {
            for timer in self.timers.remove(&at).unwrap_or_default() {
                match timer {
                    Timer::Retry(run, task) => self.retry_due(&run, &task),
                    Timer::Reschedule(run, task) => self.reschedule_due(&run, &task),
                    Timer::RunTimeout(run) => self.run_timed_out(&run),
                    Timer::TriggerFires(key, result) => {
                        self.trigger_fired(gust_executor::deferral::TriggerFired { key, result });
                    }
                    Timer::TriggerTimeout(key) => self.trigger_timed_out(&key),
                    Timer::Schedules => self.schedules_due = true,
                    Timer::Deadline(run, id) => self.deadlines_due.push((run, id)),
                }
            }
        }
    }
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn next_fired(
    fired: Option<&mut mpsc::Receiver<gust_executor::deferral::TriggerFired>>,
) -> Option<gust_executor::deferral::TriggerFired> {
    match fired {
        Some(fired) => fired.recv().await,
        None => std::future::pending().await,
    }
}

async fn sleep_for(duration: Option<Duration>) {
    match duration {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}
