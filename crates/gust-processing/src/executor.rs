//! [`ProcessingExecutor`]: runs `processing` tries on a pod runtime.
//!
//! A try is first staged, on a task of its own: planned ([`crate::plan`]), its local `code` and
//! `config` uploaded to the run's artifact folder (each upload written to the try's log), then
//! handed to the pod runtime as the `kubernetes_pod` try of its planned pod. From then on the
//! pod runtime runs, kills and reports it as any pod try. A try that cannot be planned or staged
//! fails with the reason; a try killed while staging is reported killed.
//!
//! The pod runtime it wraps is also routed on its own (for `kubernetes_pod` tries), so this
//! executor counts only the tries it is staging; kill, release and sweep are passed on (the
//! runtimes ignore repeats and keys they do not hold).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use gust_artifacts::{Artifacts, uri};
use gust_core::clock::Clock;
use gust_executor::try_log::LogWriter;
use gust_executor::{
    Current, Executor, FailureReason, LaunchError, LaunchSpec, TryEvent, TryEventKind, TryKey,
    TryOutcome,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::plan::{Step, StepPlan, StepSettings, plan};

/// The operator this executor runs.
pub const OPERATOR: &str = "processing";

/// Why a processing try cannot run on a cluster with a local artifact root.
pub const LOCAL_ROOT_ON_CLUSTER: &str = "processing steps on a cluster need an object store its \
    pods can reach, but the artifact root is a folder of this host; set `[artifacts] root` \
    (GUST__ARTIFACTS__ROOT) to an object store URI such as s3://bucket/prefix, or run pods \
    locally ([kubernetes] runtime = \"local\", or --local-pods)";

/// Why a processing try cannot run on the local pod runtime without its sandbox.
pub const NEEDS_SANDBOX: &str = "processing steps on the local pod runtime need bubblewrap \
    (bwrap), which is not installed or cannot run here: a step's scripts read and write the \
    fixed paths /opt/ml/processing/..., which only its sandbox provides on this host; install \
    it (apt-get install bubblewrap, or dnf install bubblewrap) and run again, or run the step \
    on a cluster";

/// Which kind of pod runtime a [`ProcessingExecutor`] wraps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodRuntimeKind {
    /// Pods on a Kubernetes cluster: they cannot see this host's folders.
    Cluster,
    /// The local pod runtime: pods' containers are processes of this host, each in a bwrap
    /// sandbox where the pod's volumes are at their mount paths.
    Local,
    /// The local pod runtime without its sandbox (bwrap missing or unable to run): mount
    /// paths are only rewritten in commands, arguments and variables, so a script that opens
    /// `/opt/ml/processing/...` itself would find nothing. Processing tries are refused
    /// ([`NEEDS_SANDBOX`]) rather than fail later for a reason the user cannot see.
    LocalUnsandboxed,
}

/// Runs `processing` tries: stages them, then hands their pods to a pod runtime.
#[derive(Clone)]
pub struct ProcessingExecutor {
    inner: Arc<Inner>,
}

struct Inner {
    pods: Arc<dyn Executor>,
    kind: PodRuntimeKind,
    /// Replaced when the `[artifacts]` connection changes; a try reads it when staging starts.
    setup: Current<Setup>,
    events: mpsc::Sender<TryEvent>,
    clock: Arc<dyn Clock>,
    staging: Mutex<HashMap<TryKey, Staging>>,
    tasks: TaskTracker,
    shutdown: CancellationToken,
}

/// What tries are staged with: the store's credentials and the steps' settings.
struct Setup {
    artifacts: Artifacts,
    settings: StepSettings,
}

/// A try being staged: how to stop it, and why it was.
#[derive(Clone)]
struct Staging {
    cancel: CancellationToken,
    reason: Arc<OnceLock<String>>,
}

impl Staging {
    fn reason(&self) -> String {
        self.reason
            .get()
            .cloned()
            .unwrap_or_else(|| "the runtime is shutting down".to_owned())
    }
}

impl ProcessingExecutor {
    /// Runs processing tries' pods on `pods` (of kind `kind`), staging with `artifacts`,
    /// reporting failures to stage on `events` (the channel `pods` reports on).
    #[must_use]
    pub fn new(
        pods: Arc<dyn Executor>,
        kind: PodRuntimeKind,
        artifacts: Artifacts,
        settings: StepSettings,
        events: mpsc::Sender<TryEvent>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                pods,
                kind,
                setup: Current::new(Setup {
                    artifacts,
                    settings,
                }),
                events,
                clock,
                staging: Mutex::new(HashMap::new()),
                tasks: TaskTracker::new(),
                shutdown: CancellationToken::new(),
            }),
        }
    }

    /// Stages the tries that start from now on with `artifacts` and `settings` (the binary's
    /// answer to a changed `[artifacts]` connection); tries being staged keep what they had.
    pub fn set_store(&self, artifacts: Artifacts, settings: StepSettings) {
        self.inner.setup.set(Setup {
            artifacts,
            settings,
        });
    }

    /// Stops staging (tries being staged are reported killed) and waits for it to end. The pod
    /// runtime is shut down by its owner.
    pub async fn shutdown(&self) {
        self.inner.shutdown.cancel();
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
    }
}

impl Inner {
    fn staging(&self) -> MutexGuard<'_, HashMap<TryKey, Staging>> {
        // Single inserts and removes only: a poisoned map is still whole.
        self.staging.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The plan of `spec`'s try.
    fn plan(spec: &LaunchSpec, settings: &StepSettings) -> Result<StepPlan, FailureReason> {
        let step = Step {
            dag_id: spec.key.dag_id.as_str(),
            run_id: spec.key.run_id.as_str(),
            task_id: spec.key.task_id.as_str(),
            map_index: spec.key.map_index,
            dag_file: &spec.dag_file,
            do_xcom_push: spec.do_xcom_push,
        };
        plan(&spec.args, &step, settings)
            .map_err(|err| FailureReason::InvalidArguments(err.one_line()))
    }

    /// Plans the try and uploads its code and config; the pod try to start.
    async fn prepare(&self, spec: &LaunchSpec) -> Result<LaunchSpec, FailureReason> {
        let setup = self.setup.get();
        let mut log = LogWriter::open(&spec.log_path, self.clock.as_ref())
            .await
            .map_err(|err| FailureReason::Log(err.to_string()))?;
        let mut note = async |text: String| {
            let _ = log.line("gust", &text).await;
            let _ = log.flush().await;
        };
        if self.kind == PodRuntimeKind::LocalUnsandboxed {
            note(format!("processing step: {NEEDS_SANDBOX}")).await;
            return Err(FailureReason::Spawn(NEEDS_SANDBOX.to_owned()));
        }
        let plan = Self::plan(spec, &setup.settings)?;
        for upload in &plan.uploads {
            let local = upload.local.display();
            note(format!(
                "processing step: uploading {local} to {}",
                upload.uri
            ))
            .await;
            match setup.artifacts.upload(&upload.local, &upload.uri).await {
                Ok(moved) => {
                    note(format!(
                        "processing step: uploaded {} file(s), {} bytes, to {}",
                        moved.objects, moved.bytes, upload.uri
                    ))
                    .await;
                }
                Err(err) => {
                    let why = format!("could not upload {local} to {}: {err}", upload.uri);
                    note(format!("processing step: {why}")).await;
                    return Err(FailureReason::Spawn(why));
                }
            }
        }
        for (name, uri) in &plan.outputs {
            note(format!("processing step: output {name} goes to {uri}")).await;
        }
        Ok(pod_spec(spec, plan))
    }

    /// Stages the try, then hands it to the pod runtime, or reports why it ended.
    async fn stage(self: Arc<Self>, spec: LaunchSpec, staging: Staging) {
        let key = spec.key.clone();
        let prepared = tokio::select! {
            prepared = self.prepare(&spec) => prepared,
            () = staging.cancel.cancelled() => Err(FailureReason::Killed(staging.reason())),
        };
        let failure = {
            // Under the lock, so that a kill finds the try here or in the pod runtime.
            let mut tries = self.staging();
            tries.remove(&key);
            match prepared {
                Ok(_) if staging.cancel.is_cancelled() => {
                    Some(FailureReason::Killed(staging.reason()))
                }
                Ok(pod) => self
                    .pods
                    .start(pod)
                    .err()
                    .map(|err| FailureReason::Spawn(err.to_string())),
                Err(failure) => Some(failure),
            }
        };
        if let Some(failure) = failure {
            self.report(key, TryOutcome::Failed(failure)).await;
        }
    }

    async fn report(&self, key: TryKey, outcome: TryOutcome) {
        // The receiver is gone only when the scheduler is shutting down: nothing to tell.
        let _ = self
            .events
            .send(TryEvent {
                key,
                kind: TryEventKind::Finished(outcome),
            })
            .await;
    }
}

/// The `kubernetes_pod` try a processing try runs as.
fn pod_spec(spec: &LaunchSpec, plan: StepPlan) -> LaunchSpec {
    LaunchSpec {
        operator: "kubernetes_pod".to_owned(),
        args: plan.pod_args,
        ..spec.clone()
    }
}

impl Executor for ProcessingExecutor {
    fn start(&self, spec: LaunchSpec) -> Result<(), LaunchError> {
        if spec.operator != OPERATOR {
            return Err(LaunchError::UnknownOperator(spec.operator));
        }
        let inner = &self.inner;
        if inner.kind == PodRuntimeKind::Cluster
            && uri::local_path(&inner.setup.get().settings.root).is_some()
        {
            return Err(LaunchError::Unconfigured(LOCAL_ROOT_ON_CLUSTER.to_owned()));
        }
        let staging = {
            if inner.shutdown.is_cancelled() {
                return Err(LaunchError::ShuttingDown);
            }
            let mut tries = inner.staging();
            if tries.contains_key(&spec.key) {
                return Err(LaunchError::AlreadyRunning(spec.key));
            }
            let staging = Staging {
                cancel: inner.shutdown.child_token(),
                reason: Arc::default(),
            };
            tries.insert(spec.key.clone(), staging.clone());
            staging
        };
        inner.tasks.spawn(Arc::clone(inner).stage(spec, staging));
        Ok(())
    }

    fn kill(&self, key: &TryKey, reason: &str) {
        if let Some(staging) = self.inner.staging().get(key) {
            let _ = staging.reason.set(reason.to_owned());
            staging.cancel.cancel();
            return;
        }
        self.inner.pods.kill(key, reason);
    }

    fn running(&self) -> usize {
        self.inner.staging().len()
    }

    fn adopt(&self, spec: LaunchSpec) {
        // Its code was uploaded when it started; only the pod's arguments are needed again.
        match Inner::plan(&spec, &self.inner.setup.get().settings) {
            Ok(plan) => self.inner.pods.adopt(pod_spec(&spec, plan)),
            Err(why) => {
                let inner = Arc::clone(&self.inner);
                let outcome = TryOutcome::Failed(FailureReason::Lost(format!(
                    "its pod's arguments cannot be planned again: {why}"
                )));
                self.inner
                    .tasks
                    .spawn(async move { inner.report(spec.key, outcome).await });
            }
        }
    }

    fn release(&self, key: &TryKey) {
        self.inner.pods.release(key);
    }

    fn sweep(&self, scope: gust_executor::SweepScope) {
        self.inner.pods.sweep(scope);
    }
}

#[cfg(test)]
mod tests;
