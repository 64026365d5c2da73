//! The local runtime: runs tries as child processes of the scheduler's host.
//!
//! Each try runs in its own process group, so a timeout or a kill ends everything it started
//! (SIGTERM to the group, then SIGKILL after a grace period). Output is streamed line by line,
//! time-stamped, into the try's log file as it is produced. At most `parallelism` tries run at
//! once. The runtime reports events on a channel and never touches task-instance state.
//! With a state folder, every try leaves a record that outlives the scheduler (`record.rs`), so a
//! restarted scheduler can adopt tries still running, learn how finished ones ended, and be sure
//! that nothing of a lost try is left running before it is retried.
//! Start at [`LocalExecutor`]; `bash.rs` runs one bash try, `output.rs` reads and logs output.

mod adopt;
mod bash;
mod callbacks;
mod context_env;
mod dag_parse;
mod group;
mod output;
mod pod;
mod process;
mod python;
pub mod python_pod;
mod ready;
mod triggerer;
mod warm_worker;

pub use callbacks::{CALLBACK_TIMEOUT, PythonCallbacks};
pub use dag_parse::{DagParseError, DagParser, MAX_RESULT_BYTES};
pub use pod::Secrets;
pub use python::{NO_PYTHON_RUNTIME, PythonRuntime};
pub use triggerer::PythonTriggerer;
pub use warm_worker::WarmWorker;
mod record;
mod reuse;
mod sandbox;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use gust_core::clock::Clock;
use gust_executor::running::{RunningTries, TryHandle};
use gust_executor::{
    Executor, FailureReason, LaunchError, LaunchSpec, TryEvent, TryKey, TryOutcome,
};
use gust_operators::python::runs_in_task_sdk;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Why a pod try is refused when the local pod runtime is off and no cluster runtime took it.
pub const NO_POD_RUNTIME: &str = "kubernetes_pod tasks need a pod runtime: connect a cluster \
    ([kubernetes] config_file, cluster_context or in_cluster) or run pods' commands on this host \
    with the local pod runtime ([kubernetes] runtime = \"local\", GUST__KUBERNETES__RUNTIME=local, \
    or --local-pods)";

/// How the local runtime behaves.
#[derive(Debug, Clone)]
pub struct LocalConfig {
    /// How many tries may run at once (default: 32, Airflow's `parallelism`).
    pub parallelism: usize,
    /// How long a killed try gets between SIGTERM and SIGKILL (default 5 s).
    pub kill_grace: Duration,
    /// The interpreter bash commands run with (default `bash`).
    pub bash: String,
    /// Where tries leave the records a restarted scheduler adopts them by (`None`: no records,
    /// for one-off runs such as `gust dags test`).
    pub state_dir: Option<std::path::PathBuf>,
    /// Run `kubernetes_pod` tries as host processes (the local pod runtime, `pod.rs`) instead
    /// of leaving them to a cluster runtime (default: off).
    pub run_pods: bool,
    /// The Kubernetes Secrets the local pod runtime provides, by name (default: none): the
    /// binary fills it from Gust's connections, each a Secret named by its id whose keys are
    /// the connection's fields and its extra's keys, and replaces it as they change. A try
    /// reads the Secrets in force when it starts.
    pub secrets: gust_executor::Current<pod::Secrets>,
    /// Run local pods' containers in a bwrap sandbox where bwrap works (default: on): volumes
    /// at their mount paths, the host's files read-only. Without it, or where bwrap cannot run,
    /// mount paths in commands are rewritten instead.
    pub sandbox: bool,
    /// How Python tasks run (`[python] interpreter`; default: not at all, and they are refused
    /// naming that setting).
    pub python: Option<PythonRuntime>,
}

impl Default for LocalConfig {
    fn default() -> Self {
        Self {
            parallelism: 32,
            kill_grace: Duration::from_secs(5),
            bash: "bash".to_owned(),
            state_dir: None,
            run_pods: false,
            secrets: gust_executor::Current::default(),
            sandbox: true,
            python: None,
        }
    }
}

/// Runs tries as local processes.
#[derive(Clone)]
pub struct LocalExecutor {
    inner: Arc<Inner>,
}

struct Inner {
    config: LocalConfig,
    clock: Arc<dyn Clock>,
    slots: Arc<Semaphore>,
    running: Arc<RunningTries>,
    tasks: TaskTracker,
    shutdown: CancellationToken,
    /// Tries being readied while their commit is under way (`Executor::prepare`).
    readying: Mutex<HashMap<TryKey, Readying>>,
    /// Readied tries being taken back. The same try readied again (its move lost, then was
    /// made again) uses the same paths, so it waits for this to end first.
    undoing: Mutex<HashMap<TryKey, JoinHandle<()>>>,
    /// Record files and scratch folders of ended tries, for the next ones.
    reuse: reuse::Reuse,
}

/// A try being readied on the blocking pool.
type Readying = JoinHandle<Result<ready::Ready, TryOutcome>>;

/// The outcome of a try whose readying panicked or was cancelled.
fn readying_failed(err: &tokio::task::JoinError) -> TryOutcome {
    TryOutcome::Failed(FailureReason::Spawn(format!(
        "readying the try failed: {err}"
    )))
}

impl LocalExecutor {
    /// A runtime reporting on `events`.
    #[must_use]
    pub fn new(config: LocalConfig, events: mpsc::Sender<TryEvent>, clock: Arc<dyn Clock>) -> Self {
        let slots = Arc::new(Semaphore::new(config.parallelism.max(1)));
        let tasks = TaskTracker::new();
        let shutdown = CancellationToken::new();
        let reuse = reuse::Reuse::new(config.state_dir.as_deref(), config.parallelism);
        Self {
            inner: Arc::new(Inner {
                config,
                clock,
                slots,
                running: Arc::new(RunningTries::new(shutdown.clone(), tasks.clone(), events)),
                tasks,
                shutdown,
                readying: Mutex::default(),
                undoing: Mutex::default(),
                reuse,
            }),
        }
    }

    /// Whether local pods' containers run in the bwrap sandbox (configured, and bwrap runs
    /// here), where the pod's volumes are at their mount paths.
    #[must_use]
    pub fn sandboxed(&self) -> bool {
        self.inner.config.sandbox && sandbox::available()
    }

    /// Kills every running try and waits for their processes to end.
    pub async fn shutdown(&self) {
        self.inner.shutdown.cancel();
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
        let scratch = Arc::clone(&self.inner.reuse.scratch);
        let _ = tokio::task::spawn_blocking(move || scratch.clear()).await;
    }

    /// Whether this runtime runs tries of `operator`.
    #[must_use]
    pub fn runs(&self, operator: &str) -> bool {
        match operator {
            "bash" | "empty" => true,
            "kubernetes_pod" => self.inner.config.run_pods,
            operator if runs_in_task_sdk(operator) => self.inner.config.python.is_some(),
            _ => false,
        }
    }

    /// Readies `spec`'s try on the blocking pool, once what an earlier readying of the same
    /// try left is taken back.
    fn ready(&self, spec: &LaunchSpec) -> Readying {
        let inner = Arc::clone(&self.inner);
        let spec = spec.clone();
        let undoing = self
            .inner
            .undoing
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&spec.key);
        let make = move || ready::Ready::make(&spec, &inner.config, &inner.reuse);
        match undoing {
            None => tokio::task::spawn_blocking(make),
            Some(undoing) => tokio::spawn(async move {
                let _ = undoing.await;
                tokio::task::spawn_blocking(make)
                    .await
                    .unwrap_or_else(|err| Err(readying_failed(&err)))
            }),
        }
    }

    fn take_readying(&self, key: &TryKey) -> Option<Readying> {
        self.inner
            .readying
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key)
    }

    /// Takes back what was readied for `key`'s try, which will not run.
    fn undo(&self, key: &TryKey, readying: Readying) {
        let inner = Arc::clone(&self.inner);
        let undoing = self.inner.tasks.spawn(async move {
            if let Ok(Ok(ready)) = readying.await {
                let _ = tokio::task::spawn_blocking(move || ready.undo(&inner.reuse)).await;
            }
        });
        let mut all = self
            .inner
            .undoing
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        all.retain(|_, undoing| !undoing.is_finished());
        all.insert(key.clone(), undoing);
    }
}

impl Executor for LocalExecutor {
    fn start(&self, spec: LaunchSpec) -> Result<(), LaunchError> {
        let readying = self.take_readying(&spec.key);
        let refused = if spec.operator == "kubernetes_pod" && !self.inner.config.run_pods {
            Err(LaunchError::Unconfigured(NO_POD_RUNTIME.to_owned()))
        } else if runs_in_task_sdk(&spec.operator) && self.inner.config.python.is_none() {
            Err(LaunchError::Unconfigured(NO_PYTHON_RUNTIME.to_owned()))
        } else if !self.runs(&spec.operator) {
            Err(LaunchError::UnknownOperator(spec.operator.clone()))
        } else {
            self.inner.running.register(&spec.key)
        };
        let handle = match refused {
            Ok(handle) => handle,
            Err(err) => {
                if let Some(readying) = readying {
                    self.undo(&spec.key, readying);
                }
                return Err(err);
            }
        };
        let this = self.clone();
        let key = spec.key.clone();
        self.inner
            .running
            .spawn(key, async move { this.run(spec, handle, readying).await });
        Ok(())
    }

    fn prepare(&self, spec: &LaunchSpec) {
        // `empty` tries have nothing to ready; operators this runtime does not run are refused
        // by `start`.
        if spec.operator == "empty" || !self.runs(&spec.operator) {
            return;
        }
        if let Some(earlier) = self.take_readying(&spec.key) {
            self.undo(&spec.key, earlier);
        }
        let readying = self.ready(spec);
        self.inner
            .readying
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(spec.key.clone(), readying);
    }

    fn discard(&self, key: &TryKey) {
        if let Some(readying) = self.take_readying(key) {
            self.undo(key, readying);
        }
    }

    fn kill(&self, key: &TryKey, reason: &str) {
        self.inner.running.kill(key, reason);
    }

    fn running(&self) -> usize {
        self.inner.running.len()
    }

    fn adopt(&self, spec: LaunchSpec) {
        let key = spec.key.clone();
        let this = self.clone();
        match self.inner.running.register(&key) {
            Ok(handle) => self.inner.running.spawn(key, async move {
                adopt::wait(
                    &spec,
                    &this.inner.config,
                    this.inner.clock.as_ref(),
                    &handle,
                )
                .await
            }),
            Err(err) => self.inner.running.spawn(key, async move {
                TryOutcome::Failed(FailureReason::Lost(err.to_string()))
            }),
        }
    }

    fn release(&self, key: &TryKey) {
        if let Some(dir) = &self.inner.config.state_dir {
            // The older layout is looked for only when this version's record is not there: no
            // extra look-up per try.
            let spares = self.inner.reuse.spares.as_ref();
            if !record::TryRecord::of(dir, key).remove(spares) {
                record::TryRecord::find(dir, key).remove(None);
            }
        }
    }
}

impl LocalExecutor {
    async fn run(
        &self,
        spec: LaunchSpec,
        handle: TryHandle,
        readying: Option<Readying>,
    ) -> TryOutcome {
        let permit = tokio::select! {
            permit = Arc::clone(&self.inner.slots).acquire_owned() => permit.ok(),
            () = handle.cancel.cancelled() => None,
        };
        let Some(_permit) = permit else {
            if let Some(readying) = readying {
                self.undo(&spec.key, readying);
            }
            let reason = if handle.cancel.is_cancelled() {
                handle.reason()
            } else {
                "the runtime is shutting down".into()
            };
            return TryOutcome::Failed(FailureReason::Killed(reason));
        };
        let started = || self.inner.running.started(&spec.key);
        if spec.operator == "empty" {
            started().await;
            return TryOutcome::Succeeded { xcom: None };
        }
        let readying = readying.unwrap_or_else(|| self.ready(&spec));
        let ready = match readying.await {
            Ok(Ok(ready)) => ready,
            Ok(Err(outcome)) => return outcome,
            Err(err) => return readying_failed(&err),
        };
        process::run(
            &spec,
            &self.inner.config,
            self.inner.clock.as_ref(),
            ready,
            &self.inner.tasks,
            &handle,
            started,
        )
        .await
    }
}
