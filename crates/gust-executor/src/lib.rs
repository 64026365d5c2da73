//! The runtime interface: what the scheduler asks a runtime to run ([`LaunchSpec`]) and what the
//! runtime reports back ([`TryEvent`], [`TryOutcome`]).
//!
//! Runtimes never write task-instance state: they report outcomes on a channel, as Airflow's
//! executors report through their event buffer, and the scheduler alone decides what each
//! outcome means (success, retry, failure). This crate holds no implementation; the local process
//! runtime and the Kubernetes pod runtime implement [`Executor`].

pub mod callbacks;
mod current;
pub mod deferral;
pub mod execution;
pub mod log_layout;
pub mod running;
pub mod task_sdk;
#[cfg(feature = "testing")]
pub mod testing;
pub mod try_log;

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use gust_core::ids::{DagId, RunId, TaskId, TryNumber};
use serde::{Deserialize, Serialize};

pub use current::Current;

/// Which try of which task instance.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TryKey {
    /// The DAG.
    pub dag_id: DagId,
    /// The run.
    pub run_id: RunId,
    /// The task.
    pub task_id: TaskId,
    /// Which instance of it, when it is mapped ([`gust_core::mapping::UNMAPPED`] when not).
    /// Records written before tasks could be mapped have none: they were unmapped.
    #[serde(default = "unmapped")]
    pub map_index: i32,
    /// The try.
    pub try_number: TryNumber,
}

fn unmapped() -> i32 {
    gust_core::mapping::UNMAPPED
}

impl TryKey {
    /// The instance the try is of.
    #[must_use]
    pub fn instance(&self) -> gust_core::ids::InstanceId {
        gust_core::ids::InstanceId::mapped(self.task_id.clone(), self.map_index)
    }
}

impl fmt::Display for TryKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{} {} try {}",
            self.dag_id,
            self.instance(),
            self.run_id,
            self.try_number
        )
    }
}

/// Everything a runtime needs to run one try.
#[derive(Debug, Clone, PartialEq)]
pub struct LaunchSpec {
    /// The try.
    pub key: TryKey,
    /// The operator's canonical name.
    pub operator: String,
    /// The operator's arguments, templates already rendered.
    pub args: serde_json::Map<String, serde_json::Value>,
    /// Keep the try's return value.
    pub do_xcom_push: bool,
    /// Kill the try after this long.
    pub execution_timeout: Option<Duration>,
    /// Where the try's log goes.
    pub log_path: PathBuf,
    /// The DAG's file; relative paths in arguments (`pod_template_file`) resolve against its
    /// folder.
    pub dag_file: PathBuf,
    /// What else the try knows about its run and task, for the runtimes that export it.
    pub context: TryContext,
}

/// What Airflow tells a task's process about its try beyond the try's key (the
/// `AIRFLOW_CTX_*` environment variables of `context_to_airflow_vars`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TryContext {
    /// The run's logical date, when it has one.
    pub logical_date: Option<chrono::DateTime<chrono::Utc>>,
    /// The task's `owner`.
    pub owner: String,
    /// The task's `email` addresses.
    pub email: Vec<String>,
    /// Its run, as Airflow's Task SDK is told it.
    pub run: RunFacts,
    /// The task's `retries` (Airflow's `max_tries`).
    pub retries: u32,
    /// What the try may read while it runs (its run's XComs, variables, connections), for the
    /// runtimes whose tasks read them themselves (Python tasks through the Execution API).
    pub lookup: SharedLookup,
    /// How often this try has rescheduled itself so far (a sensor in `reschedule` mode).
    pub reschedules: Reschedules,
    /// Set on the pod try of a Python task run as a pod ([`task_sdk::WorkerPod`]): the pod
    /// runtime creates its Secret with the pod, deletes it with the pod, and reads the pod's
    /// output as the Task SDK's structured log.
    pub worker_pod: Option<std::sync::Arc<task_sdk::WorkerPod>>,
    /// Set when the try resumes after a deferral: the method it runs instead of `execute`.
    pub resume: Option<deferral::Resume>,
    /// The DAG's timezone (`None`: UTC), for what the try reads in local time (`TimeSensor`).
    pub timezone: Option<chrono_tz::Tz>,
}

/// A try's reschedules so far: a sensor in `reschedule` mode measures its `timeout` from the
/// first one's start (Airflow's `task_reschedule_count` and first reschedule date).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reschedules {
    /// How many times the try has run and asked to run again.
    pub count: u32,
    /// When the first of those runs started.
    pub first_start: Option<chrono::DateTime<chrono::Utc>>,
}

/// A try's run as Airflow's Task SDK is told it (the Execution API's `dag_run`), beyond its id
/// and logical date.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunFacts {
    /// Its data interval, when it has one.
    pub data_interval: Option<(chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>)>,
    /// When it could start (`run_after`).
    pub run_after: Option<chrono::DateTime<chrono::Utc>>,
    /// When it started.
    pub start_date: Option<chrono::DateTime<chrono::Utc>>,
    /// Airflow's run type: `scheduled`, `manual`, `backfill`...
    pub run_type: String,
    /// Its conf.
    pub conf: serde_json::Map<String, serde_json::Value>,
}

/// A shared [`gust_template::RuntimeLookup`]; equal only to itself.
#[derive(Clone, Default)]
pub struct SharedLookup(pub Option<std::sync::Arc<dyn gust_template::RuntimeLookup>>);

impl fmt::Debug for SharedLookup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "SharedLookup(..)"
        } else {
            "SharedLookup(None)"
        })
    }
}

impl PartialEq for SharedLookup {
    fn eq(&self, other: &Self) -> bool {
        match (&self.0, &other.0) {
            (Some(a), Some(b)) => std::sync::Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        }
    }
}

impl Eq for SharedLookup {}

/// What a runtime reports about a try.
#[derive(Debug, Clone, PartialEq)]
pub struct TryEvent {
    /// The try.
    pub key: TryKey,
    /// What happened.
    pub kind: TryEventKind,
}

/// The kinds of [`TryEvent`].
#[derive(Debug, Clone, PartialEq)]
pub enum TryEventKind {
    /// The try's process (or pod) started.
    Started,
    /// The try ended.
    Finished(TryOutcome),
}

/// How a try ended.
#[derive(Debug, Clone, PartialEq)]
pub enum TryOutcome {
    /// It succeeded; `xcom` is its return value when it pushed one.
    Succeeded {
        /// The return value.
        xcom: Option<serde_json::Value>,
    },
    /// It succeeded and reported more than its return value (a Python task): XComs under
    /// other keys, downstream tasks of its run to skip (a branch that follows other tasks, or a
    /// short circuit: Airflow's `skip-downstream`; only tasks that have not started are
    /// skipped, trigger rules decide the rest), and the extras of the asset events of its
    /// outlets.
    SucceededReporting {
        /// The XComs it pushed, by key: its return value as `return_value` (when
        /// `do_xcom_push` keeps it), and the keys it pushed otherwise (`ti.xcom_push(key=...)`),
        /// which are kept whatever `do_xcom_push` says, as in Airflow.
        xcoms: std::collections::BTreeMap<String, serde_json::Value>,
        /// The ids of the tasks to skip.
        skip: Vec<String>,
        /// The asset events it reported (`outlet_events`), with their extras.
        outlet_events: Vec<OutletEvent>,
    },
    /// It asked to be skipped (an exit code in `skip_on_exit_code`).
    Skipped {
        /// The exit code.
        exit_code: i32,
    },
    /// It skipped itself: a Python task raised `AirflowSkipException`; `reason` says so.
    SkippedItself {
        /// Why, for the try's record.
        reason: String,
    },
    /// It asked to run again at `at`, as the same try: a sensor in `reschedule` mode whose
    /// condition is not met yet (Airflow's `up_for_reschedule`). It holds no slot meanwhile.
    Rescheduled {
        /// When it may run again.
        at: chrono::DateTime<chrono::Utc>,
    },
    /// It deferred itself to a trigger (a deferrable operator): it holds no worker while the
    /// trigger waits, and runs again as the same try once the trigger fires.
    Deferred(Box<deferral::Deferral>),
    /// It failed.
    Failed(FailureReason),
    /// It never started: a try the scheduler committed but did not hand over before it stopped.
    /// It is not a failed try; the scheduler queues the task again.
    NeverStarted,
}

/// An asset event a try reported for one of its outlets (Airflow's `outlet_events`), by the
/// asset's name and URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutletEvent {
    /// The asset's name.
    pub name: String,
    /// The asset's URI.
    pub uri: String,
    /// The event's extra.
    pub extra: serde_json::Map<String, serde_json::Value>,
    /// The alias it was emitted through (`outlet_events[AssetAlias(name)].add(asset)`), with
    /// the extra the asset was given there; `None` for an event of an outlet asset itself.
    pub through_alias: Option<(String, serde_json::Map<String, serde_json::Value>)>,
}

/// Why a try failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FailureReason {
    /// The process exited with a non-zero code.
    #[error("exited with code {0}")]
    ExitCode(i32),
    /// The process was ended by a signal it did not expect.
    #[error("killed by signal {0}")]
    Signal(i32),
    /// It ran past its execution_timeout and was killed.
    #[error("timed out after {}s (execution_timeout) and was killed", .0.as_secs_f64())]
    TimedOut(Duration),
    /// It was killed on request (marked failed, run cancelled, scheduler shutting down).
    #[error("killed: {0}")]
    Killed(String),
    /// Its pod (or the containers of a local pod) failed; the message says how, with the
    /// container's exit code and termination message.
    #[error("{0}")]
    Pod(String),
    /// It could not be started.
    #[error("could not start: {0}")]
    Spawn(String),
    /// The task failed as its own code reported it (a Python task's exception; its log has the
    /// traceback).
    #[error("{0}")]
    Task(String),
    /// Its rendered arguments do not fit the operator.
    #[error("invalid arguments: {0}")]
    InvalidArguments(String),
    /// Its log could not be written.
    #[error("could not write its log: {0}")]
    Log(String),
    /// It ran while the scheduler was down and ended leaving no record of how (or its result,
    /// such as its XCom, could not be recovered).
    #[error("lost while the scheduler was down: {0}")]
    Lost(String),
}

/// Why a runtime refused to start a try.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LaunchError {
    /// The runtime does not run this operator.
    #[error("this runtime does not run operator \"{0}\"")]
    UnknownOperator(String),
    /// The runtime that would run this operator is not configured; the message says how to
    /// configure it.
    #[error("{0}")]
    Unconfigured(String),
    /// A try with this key is already running.
    #[error("{0} is already running")]
    AlreadyRunning(TryKey),
    /// The runtime is shutting down.
    #[error("the runtime is shutting down")]
    ShuttingDown,
}

/// A runtime: starts tries and reports their events on the channel it was built with.
pub trait Executor: Send + Sync {
    /// Starts a try. Its events (started, finished) arrive on the runtime's event channel; an
    /// `Err` means it was never started and no event will come.
    fn start(&self, spec: LaunchSpec) -> Result<(), LaunchError>;

    /// Readies `spec`'s try while the commit that queues it is still under way, so that
    /// [`Executor::start`] has less left to do once it is committed: only work that can be
    /// undone and that no one else sees as the try having started (files and folders, never a
    /// process or a pod). [`Executor::start`] with the same key, or [`Executor::discard`] when
    /// the commit did not go through, follows. Runtimes with nothing to ready do nothing.
    fn prepare(&self, spec: &LaunchSpec) {
        let _ = spec;
    }

    /// Undoes what [`Executor::prepare`] readied for `key`, whose try will not be started.
    fn discard(&self, key: &TryKey) {
        let _ = key;
    }

    /// Kills a running try; its `Finished` event reports [`FailureReason::Killed`]. Killing a try
    /// that is not running does nothing.
    fn kill(&self, key: &TryKey, reason: &str);

    /// How many tries are running now.
    fn running(&self) -> usize;

    /// Takes back a try that an earlier process of this scheduler handed over and did not see
    /// end (it was killed). `spec` is the try as it was started. Its `Finished` event arrives on
    /// the channel like any try's: at once when its outcome is already known, when it ends if
    /// it is still running, as [`TryOutcome::NeverStarted`] when it never started, and as
    /// [`FailureReason::Lost`] when it ended without a trace of how.
    fn adopt(&self, spec: LaunchSpec);

    /// Forgets what the runtime kept to recover `key` after a crash; the scheduler calls it once
    /// the try's outcome is committed.
    fn release(&self, key: &TryKey);

    /// Cleans up what earlier processes left behind for tries of `scope.dags` that are no
    /// longer live, such as the pods of tries whose outcome was recorded just before a crash cut
    /// their clean-up short. The scheduler calls it for the DAGs it has just taken charge of
    /// (at start-up, or taken over from a scheduler that died), once their live tries are
    /// adopted; what belongs to other DAGs is other schedulers' and is left alone. Runtimes
    /// that leave nothing behind do nothing.
    fn sweep(&self, scope: SweepScope) {
        let _ = scope;
    }
}

/// What [`Executor::sweep`] may clean up: leftovers of `dags`' tries, except the `live` ones.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepScope {
    /// The DAGs whose leftovers are swept.
    pub dags: std::collections::HashSet<DagId>,
    /// Every try of those DAGs the database holds as queued or running (all already adopted).
    pub live: Vec<TryKey>,
}

/// The capacity of a runtime's event channel: large enough that a burst of tries finishing at
/// once never blocks a runtime for long, small enough to bound memory.
pub const EVENT_CHANNEL_CAPACITY: usize = 4096;

/// A bounded channel for runtime events.
#[must_use]
pub fn event_channel() -> (
    tokio::sync::mpsc::Sender<TryEvent>,
    tokio::sync::mpsc::Receiver<TryEvent>,
) {
    tokio::sync::mpsc::channel(EVENT_CHANNEL_CAPACITY)
}

/// Several runtimes behind one [`Executor`]: each try goes to the runtime registered for its
/// operator, or to the fallback (e.g. pods to a cluster, everything else to local processes).
pub struct Routed {
    routes: Vec<(&'static str, std::sync::Arc<dyn Executor>)>,
    fallback: std::sync::Arc<dyn Executor>,
}

impl Routed {
    /// Every operator goes to `fallback` until routed elsewhere.
    #[must_use]
    pub fn new(fallback: std::sync::Arc<dyn Executor>) -> Self {
        Self {
            routes: Vec::new(),
            fallback,
        }
    }

    /// Sends tries of `operator` to `runtime`.
    #[must_use]
    pub fn route(mut self, operator: &'static str, runtime: std::sync::Arc<dyn Executor>) -> Self {
        self.routes.push((operator, runtime));
        self
    }

    fn runtime_for(&self, operator: &str) -> &dyn Executor {
        self.routes
            .iter()
            .find(|(name, _)| *name == operator)
            .map_or(self.fallback.as_ref(), |(_, runtime)| runtime.as_ref())
    }

    fn all(&self) -> impl Iterator<Item = &dyn Executor> {
        std::iter::once(self.fallback.as_ref()).chain(self.routes.iter().map(|(_, r)| r.as_ref()))
    }
}

impl Executor for Routed {
    fn start(&self, spec: LaunchSpec) -> Result<(), LaunchError> {
        self.runtime_for(&spec.operator).start(spec)
    }

    fn prepare(&self, spec: &LaunchSpec) {
        self.runtime_for(&spec.operator).prepare(spec);
    }

    fn discard(&self, key: &TryKey) {
        // Only the runtime that readied it knows the key; the others ignore it.
        for runtime in self.all() {
            runtime.discard(key);
        }
    }

    fn kill(&self, key: &TryKey, reason: &str) {
        // Only the runtime running it knows the key; the others ignore it.
        for runtime in self.all() {
            runtime.kill(key, reason);
        }
    }

    fn running(&self) -> usize {
        self.all().map(Executor::running).sum()
    }

    fn adopt(&self, spec: LaunchSpec) {
        self.runtime_for(&spec.operator).adopt(spec);
    }

    fn release(&self, key: &TryKey) {
        for runtime in self.all() {
            runtime.release(key);
        }
    }

    fn sweep(&self, scope: SweepScope) {
        for runtime in self.all() {
            runtime.sweep(scope.clone());
        }
    }
}
