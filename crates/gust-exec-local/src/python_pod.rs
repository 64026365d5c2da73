//! Python tries as pods (`[kubernetes] worker_image`): each try becomes the `kubernetes_pod` try
//! of a pod from the worker image whose command is Airflow's task runner, run and followed by
//! the pod runtime in force (a cluster, or the local pod runtime) like any pod try: watched,
//! logs followed live, re-attached after a restart, cleaned up.
//!
//! What the worker needs reaches it in one Secret per try, mounted as its DAG bundle folder:
//! the ExecuteTask workload (which holds the try's token, so it is never in the pod's spec),
//! the DAG file's loader and the DAG file's folder. The pod runtime creates the Secret with the
//! pod and deletes it with it (`gust_executor::task_sdk::WorkerPod`).
//!
//! [`PythonPods`] wraps a pod runtime of its own, whose events it reads: once a pod ends, the
//! state its worker reported through the Execution API becomes the try's outcome, as for the
//! local Python runtime. It also applies Airflow's zombie rule to each pod, as the local Python
//! runtime does to its processes: a worker not heard of for longer than the heartbeat timeout
//! once its pod runs is killed through the pod runtime (the pod is deleted) and its try fails.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use gust_core::clock::Clock;
use gust_executor::execution::ExecutionBroker;
use gust_executor::task_sdk::{RunningSince, WorkerPod};
use gust_executor::{
    Executor, FailureReason, LaunchError, LaunchSpec, SweepScope, TryEvent, TryEventKind, TryKey,
    TryOutcome,
};
use tokio::sync::mpsc;
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::python::{Moved, PythonRuntime, loader_name, loader_text, outcome};

/// Where the worker pod has its Secret: the DAG bundle folder, holding the loader, the DAG
/// file's folder and the workload.
pub const BUNDLE_MOUNT: &str = "/opt/gust/bundle";
/// The workload's key in the Secret.
const WORKLOAD_KEY: &str = "workload.json";
/// The most the DAG file's folder may add to the Secret (Kubernetes caps a Secret at 1 MiB).
pub const BUNDLE_LIMIT: usize = 512 * 1024;
/// The worker's command, as Airflow's KubernetesExecutor runs it (`--json-path`: the workload
/// holds the try's token, which a `--json-string` argument would show in the pod's spec).
pub const WORKER_COMMAND: [&str; 3] = [
    "python",
    "-m",
    "airflow.sdk.execution_time.execute_workload",
];

/// How Python tries run as pods.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// The image (`[kubernetes] worker_image`): Airflow 3.3 and dag-factory.
    pub image: String,
    /// The Execution API's address as pods reach it, ending in `/execution/`.
    pub api_url: String,
    /// How long a worker may go unheard; the worker is told, and heartbeats well within it.
    pub heartbeat_timeout: Duration,
    /// `[kubernetes] worker_pod_template_file`'s pod ([`read_pod_template`]), which every
    /// worker pod is laid over.
    pub pod_template: Option<Arc<serde_json::Value>>,
}

/// The name of the worker's container, in the template and in a `pod_override` (Airflow's).
pub const BASE_CONTAINER: &str = "base";
/// The name of the volume of the try's Secret.
const BUNDLE_VOLUME: &str = "gust-bundle";

/// Why a worker pod cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum WorkerPodError {
    /// `[kubernetes] worker_pod_template_file` cannot be read.
    #[error("[kubernetes] worker_pod_template_file: {0}")]
    TemplateFile(#[from] gust_kube::template::TemplateError),
    /// It is not a pod.
    #[error("[kubernetes] worker_pod_template_file {path}: {path_in_pod}: {message}")]
    Template {
        /// The file.
        path: String,
        /// Where in the pod.
        path_in_pod: String,
        /// What is wrong.
        message: String,
    },
    /// The task's `executor_config` is not what a worker pod can take.
    #[error("argument \"{path}\": {message}")]
    Override {
        /// Where in the argument.
        path: String,
        /// What is wrong.
        message: String,
    },
}

/// Reads `[kubernetes] worker_pod_template_file`: a Pod manifest (YAML or JSON, read as
/// Airflow reads its `pod_template_file`), whose container `base` is the worker's. Checked as
/// a pod, so a mistake is reported once, at start-up, naming the field.
pub fn read_pod_template(path: &Path) -> Result<serde_json::Value, WorkerPodError> {
    let value = gust_kube::template::load_file(path)?;
    let bad = |err: gust_operators::ArgumentError| WorkerPodError::Template {
        path: path.display().to_string(),
        path_in_pod: if err.path.is_empty() {
            "the pod".to_owned()
        } else {
            err.path
        },
        message: err.message,
    };
    let _: k8s_openapi::api::core::v1::Pod =
        gust_operators::kubernetes_pod::read_object("", &value, "V1Pod").map_err(bad)?;
    gust_operators::kubernetes_pod::to_manifest_form(&value, "", Some("V1Pod")).map_err(bad)
}

/// The pod Gust's own worker pod is laid over: the template with the task's `pod_override`
/// laid over it, containers paired by name (`gust_kube::build::reconcile_pods_by_name`, the
/// KubernetesExecutor's `reconcile_pods` otherwise). What Gust decides is taken out, so that
/// it wins: the template's name and namespace and the override's name (as the
/// KubernetesExecutor ignores the template's), variables named as Gust's (`gust_env`), and
/// the bundle's volume and mount. The container `base` comes first, so the pod builder lays
/// Gust's container over it. `None` when there is neither.
#[must_use]
pub fn worker_base_pod(
    template: Option<&serde_json::Value>,
    pod_override: Option<&serde_json::Value>,
    gust_env: &[&str],
) -> Option<serde_json::Value> {
    use serde_json::Value;
    let without = |pod: &Value, keys: &[&str]| {
        let mut pod = pod.clone();
        if let Some(Value::Object(meta)) = pod.pointer_mut("/metadata") {
            for key in keys {
                meta.remove(*key);
            }
        }
        pod
    };
    let template = template.map(|t| without(t, &["name", "namespace"]));
    let pod_override = pod_override.map(|o| without(o, &["name"]));
    let mut pod = match (template, pod_override) {
        (None, None) => return None,
        (Some(only), None) | (None, Some(only)) => only,
        (Some(t), Some(o)) => gust_kube::build::reconcile_pods_by_name(&t, &o),
    };
    let Some(Value::Object(spec)) = pod.pointer_mut("/spec") else {
        return Some(pod);
    };
    if let Some(Value::Array(volumes)) = spec.get_mut("volumes") {
        volumes.retain(|v| v.get("name").and_then(Value::as_str) != Some(BUNDLE_VOLUME));
    }
    let containers = spec
        .entry("containers")
        .or_insert_with(|| Value::Array(Vec::new()));
    if let Value::Array(containers) = containers {
        let named = |c: &Value| c.get("name").and_then(Value::as_str) == Some(BASE_CONTAINER);
        let base = match containers.iter().position(named) {
            Some(at) => containers.remove(at),
            None => serde_json::json!({"name": BASE_CONTAINER}),
        };
        containers.insert(0, base);
        if let Some(Value::Object(base)) = containers.first_mut() {
            if let Some(Value::Array(env)) = base.get_mut("env") {
                env.retain(|v| {
                    v.get("name")
                        .and_then(Value::as_str)
                        .is_none_or(|n| !gust_env.contains(&n))
                });
            }
            if let Some(Value::Array(mounts)) = base.get_mut("volumeMounts") {
                mounts.retain(|m| {
                    m.get("name").and_then(Value::as_str) != Some(BUNDLE_VOLUME)
                        && m.get("mountPath").and_then(Value::as_str) != Some(BUNDLE_MOUNT)
                });
            }
        }
    }
    Some(pod)
}

/// The name of try `key`'s Secret: found again from the key when the try is adopted.
#[must_use]
pub fn secret_name(key: &TryKey) -> String {
    use sha2::Digest;
    let mut text = format!(
        "{}\n{}\n{}\n{}",
        key.dag_id.as_str(),
        key.task_id.as_str(),
        key.run_id.as_str(),
        key.try_number.0
    );
    // A mapped instance's Secret is its own; an unmapped task's keeps its name.
    if key.map_index >= 0 {
        text.push_str(&format!("\n{}", key.map_index));
    }
    let digest = sha2::Sha256::digest(text.as_bytes());
    let hex: String = digest.iter().take(10).map(|b| format!("{b:02x}")).collect();
    format!("gust-worker-{hex}")
}

/// Why a Python try cannot become a pod.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// The DAG file (or its folder) cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// What.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The DAG file alone is past the bound.
    #[error("DAG file {path} is {size} bytes, past the {limit} bytes a worker pod's Secret holds")]
    TooLarge {
        /// The file.
        path: String,
        /// Its size.
        size: usize,
        /// [`BUNDLE_LIMIT`].
        limit: usize,
    },
}

/// The DAG bundle as the Secret's keys: the loader (under the name the workload gives) and the
/// DAG file's folder, the DAG file first and then its other files by name while they fit in
/// [`BUNDLE_LIMIT`] (subfolders and files whose names cannot be Secret keys are left out).
/// Returns the keys and the loader's name.
pub fn bundle(dag_file: &Path) -> Result<(BTreeMap<String, String>, String), BundleError> {
    let read_err = |path: &Path, source| BundleError::Read {
        path: path.display().to_string(),
        source,
    };
    let dag_file = std::path::absolute(dag_file).map_err(|err| read_err(dag_file, err))?;
    let folder = dag_file.parent().unwrap_or(Path::new("/"));
    let file_name = dag_file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let text = std::fs::read_to_string(&dag_file).map_err(|err| read_err(&dag_file, err))?;
    if text.len() > BUNDLE_LIMIT {
        return Err(BundleError::TooLarge {
            path: dag_file.display().to_string(),
            size: text.len(),
            limit: BUNDLE_LIMIT,
        });
    }
    let mut used = text.len();
    let mut keys = BTreeMap::from([(file_name.clone(), text)]);
    let mut others: Vec<_> = std::fs::read_dir(folder)
        .map_err(|err| read_err(folder, err))?
        .filter_map(Result::ok)
        .filter(|entry| entry.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|entry| entry.file_name().to_str().map(str::to_owned))
        .filter(|name| *name != file_name && is_secret_key(name))
        .collect();
    others.sort();
    for name in others {
        let Ok(text) = std::fs::read_to_string(folder.join(&name)) else {
            continue; // Not text: no DAG needs it through the bundle.
        };
        if used + text.len() > BUNDLE_LIMIT {
            continue;
        }
        used += text.len();
        keys.insert(name, text);
    }
    // A Python DAG file is loaded by the worker itself, from the bundle's copy of its folder.
    if crate::python::is_python_dag_file(&dag_file) {
        return Ok((keys, file_name));
    }
    let loader = loader_name(&dag_file);
    let host = folder.display().to_string();
    keys.insert(
        loader.clone(),
        loader_text(&file_name, Some(Moved { host: &host })),
    );
    Ok((keys, loader))
}

/// Whether `name` can be a Secret's key (and is not the workload's).
fn is_secret_key(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name != WORKLOAD_KEY
        && !name.starts_with("..")
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// The `kubernetes_pod` arguments of a Python try's pod: the worker image running the task
/// runner on the workload in its Secret, told where the Execution API and the bundle are, laid
/// over the worker pod template and the task's `pod_override` (`args`' `executor_config`) as
/// `full_pod_spec` (see [`worker_base_pod`]). The override's image, when it gives one, is the
/// worker's (as under Airflow's KubernetesExecutor).
pub fn pod_args(
    settings: &WorkerSettings,
    secret: &str,
    args: &serde_json::Map<String, serde_json::Value>,
) -> Result<serde_json::Map<String, serde_json::Value>, WorkerPodError> {
    let pod_override =
        gust_operators::python::pod_override(args).map_err(|err| WorkerPodError::Override {
            path: err.path,
            message: err.message,
        })?;
    let bundles = serde_json::json!([{
        "name": crate::python::BUNDLE,
        "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
        "kwargs": {"path": BUNDLE_MOUNT},
    }]);
    let env = vec![
        (
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL".to_owned(),
            settings.api_url.clone(),
        ),
        (
            "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST".to_owned(),
            bundles.to_string(),
        ),
        (
            "AIRFLOW__CORE__LOAD_EXAMPLES".to_owned(),
            "False".to_owned(),
        ),
        // The worker heartbeats well within the timeout it is told (Airflow's own setting).
        (
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT".to_owned(),
            settings.heartbeat_timeout.as_secs().max(1).to_string(),
        ),
        // The supervisor writes the task's lines to a file there too; Gust reads its stdout.
        // One folder per try: local pods' containers share this host's /tmp.
        (
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER".to_owned(),
            format!("/tmp/{secret}"),
        ),
    ];
    // No AIRFLOW_CTX_* variables: the Task SDK sets them for the task from its context.
    let env: Vec<serde_json::Value> = env
        .into_iter()
        .map(|(name, value)| serde_json::json!({"name": name, "value": value}))
        .collect();
    let volume = serde_json::json!({"name": BUNDLE_VOLUME, "secret": {"secretName": secret}});
    let mount =
        serde_json::json!({"name": BUNDLE_VOLUME, "mountPath": BUNDLE_MOUNT, "readOnly": true});
    let image = pod_override
        .as_ref()
        .and_then(|pod| pod.pointer("/spec/containers")?.as_array().cloned())
        .into_iter()
        .flatten()
        .find(|c| c.get("name").and_then(serde_json::Value::as_str) == Some(BASE_CONTAINER))
        .and_then(|c| c.get("image")?.as_str().map(str::to_owned))
        .filter(|image| !image.is_empty())
        .unwrap_or_else(|| settings.image.clone());
    let names: Vec<&str> = env
        .iter()
        .filter_map(|v| v.get("name").and_then(serde_json::Value::as_str))
        .collect();
    let base = worker_base_pod(
        settings.pod_template.as_deref(),
        pod_override.as_ref(),
        &names,
    );
    let mut pod_args = serde_json::Map::from_iter([
        ("image".to_owned(), serde_json::json!(image)),
        ("cmds".to_owned(), serde_json::json!(WORKER_COMMAND)),
        (
            "arguments".to_owned(),
            serde_json::json!(["--json-path", format!("{BUNDLE_MOUNT}/{WORKLOAD_KEY}")]),
        ),
        ("env_vars".to_owned(), serde_json::Value::Array(env)),
        ("volumes".to_owned(), serde_json::json!([volume])),
        ("volume_mounts".to_owned(), serde_json::json!([mount])),
        (
            "labels".to_owned(),
            serde_json::json!({"gust.io/python-worker": "true"}),
        ),
    ]);
    if let Some(base) = base {
        pod_args.insert("full_pod_spec".to_owned(), base);
    }
    Ok(pod_args)
}

/// The ExecuteTask workload of try `ti_id` with its `token`.
fn workload(spec: &LaunchSpec, ti_id: uuid::Uuid, token: &str, loader: &str) -> String {
    crate::python::workload_json(spec, ti_id, token, loader, "task.log").to_string()
}

/// The pod try of a Python try: operator `kubernetes_pod`, the worker pod's arguments, no
/// XCom sidecar (the return value goes through the Execution API).
fn pod_spec(
    spec: &LaunchSpec,
    args: serde_json::Map<String, serde_json::Value>,
    worker: WorkerPod,
) -> LaunchSpec {
    let mut pod = spec.clone();
    pod.operator = "kubernetes_pod".to_owned();
    pod.args = args;
    pod.do_xcom_push = false;
    pod.context.worker_pod = Some(Arc::new(worker));
    pod
}

/// Runs Python tries as pods on a pod runtime of its own.
#[derive(Clone)]
pub struct PythonPods {
    inner: Arc<Inner>,
}

struct Inner {
    pods: Arc<dyn Executor>,
    broker: Arc<ExecutionBroker>,
    clock: Arc<dyn Clock>,
    settings: WorkerSettings,
    /// The tries admitted to the Execution API.
    admitted: Mutex<HashMap<TryKey, Admitted>>,
}

/// A try admitted to the Execution API, whose pod is running (or starting).
struct Admitted {
    ti_id: uuid::Uuid,
    /// Whether the try pushes its return value.
    do_xcom_push: bool,
    /// Why its zombie watch killed its pod, once it did.
    zombie: Arc<OnceLock<String>>,
    /// Stops the zombie watch when the try ends (the entry is removed) or the runtime goes.
    _watch: DropGuard,
}

impl Inner {
    fn admitted(&self) -> MutexGuard<'_, HashMap<TryKey, Admitted>> {
        // Single inserts and removes only: a poisoned map is still whole.
        self.admitted.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The try's outcome from its pod's: the state its worker reported, when it did.
    fn outcome(&self, key: &TryKey, pod: TryOutcome) -> TryOutcome {
        let Some(admitted) = self.admitted().remove(key) else {
            // Adopted after a restart: the process that admitted the try (and signed its
            // token) is gone, so the worker could not report.
            return match pod {
                TryOutcome::Failed(_) | TryOutcome::NeverStarted => pod,
                _ => TryOutcome::Failed(FailureReason::Lost(
                    "the scheduler restarted while the worker pod ran; what it reported to the \
                     earlier process is lost"
                        .to_owned(),
                )),
            };
        };
        let progress = self.broker.finish(admitted.ti_id);
        let do_xcom_push = admitted.do_xcom_push;
        match pod {
            // The pod ran to its end: the worker's report decides, else its exit.
            TryOutcome::Succeeded { .. }
            | TryOutcome::Skipped { .. }
            | TryOutcome::Failed(FailureReason::Pod(_)) => {
                if progress.as_ref().is_some_and(|p| p.reported.is_some()) {
                    outcome(0, progress, do_xcom_push)
                } else if matches!(pod, TryOutcome::Failed(_)) {
                    pod
                } else {
                    outcome(0, progress, do_xcom_push)
                }
            }
            // Killed by its zombie watch: a failure of the task, as for a local worker.
            TryOutcome::Failed(FailureReason::Killed(why))
                if admitted.zombie.get() == Some(&why) =>
            {
                TryOutcome::Failed(FailureReason::Task(why))
            }
            // Killed, timed out, never started...: as the pod runtime says.
            other => other,
        }
    }
}

/// Why a worker was killed as a zombie (the local Python runtime says the same).
#[must_use]
pub fn zombie_reason(silent: Duration, timeout: Duration) -> String {
    format!(
        "its worker was not heard of for {}s, past [scheduler] task_instance_heartbeat_timeout \
         ({}s): a zombie",
        silent.as_secs(),
        timeout.as_secs()
    )
}

/// How long a worker pod's worker has been silent: since the later of its pod starting to run
/// (`running_for` ago) and its last heartbeat (`since_heartbeat` ago; its `run` call counts).
/// `None` while neither has happened: a pod still pending (scheduled, pulling its image) is
/// not silent, since no worker exists yet to be heard of.
#[must_use]
fn silence(running_for: Option<Duration>, since_heartbeat: Option<Duration>) -> Option<Duration> {
    match (running_for, since_heartbeat) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (one, None) | (None, one) => one,
    }
}

/// Airflow's zombie rule for one worker pod (see [`silence`] for what counts).
struct ZombieWatch {
    key: TryKey,
    ti_id: uuid::Uuid,
    running: RunningSince,
    zombie: Arc<OnceLock<String>>,
    stop: CancellationToken,
    pods: Arc<dyn Executor>,
    broker: Arc<ExecutionBroker>,
    clock: Arc<dyn Clock>,
    timeout: Duration,
}

impl ZombieWatch {
    /// Waits until the worker is past the timeout (then kills the pod), its try ends, or it
    /// reports its end (it is only finishing up then, no longer a running task to watch, as
    /// Airflow looks for zombies among running tries only).
    async fn run(self) {
        // How often a pod not yet running is looked at again.
        let poll = (self.timeout / 4).clamp(Duration::from_millis(100), Duration::from_secs(30));
        loop {
            let Some(heard) = self.broker.worker_heard(self.ti_id) else {
                return;
            };
            if heard.reported {
                return;
            }
            let since_heartbeat = heard
                .last_heartbeat
                .map(|at| (self.clock.now() - at).to_std().unwrap_or_default());
            let running_for = self.running.get().map(|at| at.elapsed());
            let wait = match silence(running_for, since_heartbeat) {
                Some(silent) if silent > self.timeout => {
                    let why = zombie_reason(silent, self.timeout);
                    let _ = self.zombie.set(why.clone());
                    self.pods.kill(&self.key, &why);
                    return;
                }
                // Just past the moment it would become a zombie if nothing is heard meanwhile.
                Some(silent) => self.timeout - silent + Duration::from_millis(50),
                None => poll,
            };
            tokio::select! {
                () = self.stop.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
        }
    }
}

impl PythonPods {
    /// Python tries as pods on `pods`, a pod runtime of their own that reports on the channel
    /// `from_pods` receives; reports on `events`.
    pub fn new(
        python: &PythonRuntime,
        settings: WorkerSettings,
        pods: Arc<dyn Executor>,
        mut from_pods: mpsc::Receiver<TryEvent>,
        events: mpsc::Sender<TryEvent>,
    ) -> Self {
        let inner = Arc::new(Inner {
            pods,
            broker: python.broker.clone(),
            clock: python.clock.clone(),
            settings,
            admitted: Mutex::default(),
        });
        let relay = Arc::downgrade(&inner);
        tokio::spawn(async move {
            while let Some(mut event) = from_pods.recv().await {
                if let TryEventKind::Finished(pod) = event.kind {
                    let Some(inner) = relay.upgrade() else {
                        return;
                    };
                    event.kind = TryEventKind::Finished(inner.outcome(&event.key, pod));
                }
                if events.send(event).await.is_err() {
                    return;
                }
            }
        });
        Self { inner }
    }

    /// The pod try of `spec`, admitted to the Execution API, with its zombie watch (started
    /// once the pod try is handed over).
    fn start_pod(&self, spec: &LaunchSpec) -> Result<(LaunchSpec, ZombieWatch), LaunchError> {
        let args =
            pod_args(&self.inner.settings, &secret_name(&spec.key), &spec.args).map_err(|err| {
                LaunchError::Unconfigured(format!("a worker pod cannot be built: {err}"))
            })?;
        let (mut keys, loader) = bundle(&spec.dag_file).map_err(|err| {
            LaunchError::Unconfigured(format!("a worker pod needs its DAG bundle: {err}"))
        })?;
        let admitted = self.inner.broker.admit(spec, self.inner.clock.now());
        let name = secret_name(&spec.key);
        keys.insert(
            WORKLOAD_KEY.to_owned(),
            workload(spec, admitted.ti_id, &admitted.token, &loader),
        );
        let running = RunningSince::default();
        let stop = CancellationToken::new();
        let zombie = Arc::new(OnceLock::new());
        self.inner.admitted().insert(
            spec.key.clone(),
            Admitted {
                ti_id: admitted.ti_id,
                do_xcom_push: spec.do_xcom_push,
                zombie: zombie.clone(),
                _watch: stop.clone().drop_guard(),
            },
        );
        let watch = ZombieWatch {
            key: spec.key.clone(),
            ti_id: admitted.ti_id,
            running: running.clone(),
            zombie,
            stop,
            pods: self.inner.pods.clone(),
            broker: self.inner.broker.clone(),
            clock: self.inner.clock.clone(),
            timeout: self.inner.settings.heartbeat_timeout,
        };
        let pod = pod_spec(
            spec,
            args,
            WorkerPod {
                secret_name: name,
                secret_data: Some(keys),
                running,
            },
        );
        Ok((pod, watch))
    }
}

impl Executor for PythonPods {
    fn start(&self, spec: LaunchSpec) -> Result<(), LaunchError> {
        let key = spec.key.clone();
        let (pod, watch) = self.start_pod(&spec)?;
        self.inner.pods.start(pod).inspect_err(|_| {
            if let Some(admitted) = self.inner.admitted().remove(&key) {
                self.inner.broker.finish(admitted.ti_id);
            }
        })?;
        // Owned by the try's entry: it stops when the try's outcome comes.
        tokio::spawn(watch.run());
        Ok(())
    }

    fn kill(&self, key: &TryKey, reason: &str) {
        self.inner.pods.kill(key, reason);
    }

    fn running(&self) -> usize {
        self.inner.pods.running()
    }

    fn adopt(&self, spec: LaunchSpec) {
        // The Secret exists (or went with its pod); the pod's arguments are only read for how
        // to find and follow it.
        let name = secret_name(&spec.key);
        // A task whose override no longer reads is followed by the pod's labels all the same.
        let args = pod_args(&self.inner.settings, &name, &spec.args)
            .or_else(|_| pod_args(&self.inner.settings, &name, &serde_json::Map::new()))
            .unwrap_or_default();
        let pod = pod_spec(
            &spec,
            args,
            WorkerPod {
                secret_name: name,
                secret_data: None,
                running: RunningSince::default(),
            },
        );
        self.inner.pods.adopt(pod);
    }

    fn release(&self, key: &TryKey) {
        self.inner.pods.release(key);
    }

    fn sweep(&self, scope: SweepScope) {
        self.inner.pods.sweep(scope);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gust_core::ids::{DagId, RunId, TaskId, TryNumber};

    fn key(try_number: u32) -> TryKey {
        TryKey {
            dag_id: DagId::new("etl").expect("id"),
            run_id: RunId::new("manual__1").expect("id"),
            task_id: TaskId::new("extract").expect("id"),
            map_index: gust_core::mapping::UNMAPPED,
            try_number: TryNumber(try_number),
        }
    }

    #[test]
    fn a_worker_is_silent_since_its_pod_ran_or_its_last_heartbeat_whichever_is_later() {
        let s = Duration::from_secs;
        assert_eq!(silence(None, None), None, "a pending pod is not silent");
        assert_eq!(silence(Some(s(5)), None), Some(s(5)));
        assert_eq!(
            silence(None, Some(s(7))),
            Some(s(7)),
            "heard before seen running"
        );
        assert_eq!(silence(Some(s(5)), Some(s(2))), Some(s(2)));
        assert_eq!(silence(Some(s(1)), Some(s(9))), Some(s(1)));
        assert_eq!(
            zombie_reason(s(301), s(300)),
            "its worker was not heard of for 301s, past [scheduler] \
             task_instance_heartbeat_timeout (300s): a zombie"
        );
    }

    /// The pod the pod runtime builds from a worker pod's arguments.
    fn built(args: &serde_json::Map<String, serde_json::Value>) -> serde_json::Value {
        let pod_args = gust_operators::kubernetes_pod::PodArgs::read(args).expect("pod arguments");
        let pod = gust_kube::build::build_pod(&gust_kube::build::PodRequest {
            args: &pod_args,
            labels: gust_kube::build::TryLabels {
                dag_id: "etl",
                task_id: "extract",
                run_id: "manual__1",
                try_number: 1,
                map_index: -1,
            },
            template_file: None,
            do_xcom_push: false,
            unique: "abc123",
            defaults: &gust_kube::build::PodDefaults::default(),
        })
        .expect("a pod");
        serde_json::to_value(pod).expect("JSON")
    }

    #[test]
    fn template_then_override_then_gusts_own_fields_make_the_worker_pod() {
        let template = serde_json::json!({
            "metadata": {"name": "placeholder", "namespace": "elsewhere",
                         "labels": {"team": "data", "gust.io/python-worker": "no"}},
            "spec": {
                "serviceAccountName": "airflow-worker",
                "nodeSelector": {"pool": "workers"},
                "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "airflow",
                                 "effect": "NoSchedule"}],
                "volumes": [{"name": "cache", "emptyDir": {}}],
                "containers": [
                    {"name": "proxy", "image": "envoy"},
                    {"name": "base", "image": "ignored", "command": ["bash"],
                     "resources": {"requests": {"cpu": "500m"}},
                     "env": [{"name": "TEAM", "value": "data"},
                             {"name": "AIRFLOW__CORE__EXECUTION_API_SERVER_URL", "value": "http://evil/"}],
                     "volumeMounts": [{"name": "cache", "mountPath": "/cache"}]},
                ],
            },
        });
        let settings = WorkerSettings {
            image: "airflow:test".into(),
            api_url: "http://api/execution/".into(),
            heartbeat_timeout: Duration::from_secs(60),
            pod_template: Some(Arc::new(template)),
        };
        let args = serde_json::Map::from_iter([(
            "executor_config".to_owned(),
            serde_json::json!({"pod_override": {
                "__type__": "kubernetes.client.models.V1Pod",
                "metadata": {"name": "mine", "labels": {"cost": "etl"}},
                "spec": {
                    "node_selector": {"pool": "big"},
                    "volumes": [{"name": "gust-bundle", "emptyDir": {}}],
                    "containers": [{
                        "name": "base", "image": "custom:1",
                        "resources": {"limits": {"memory": "2Gi"}},
                        "env": [{"name": "EXTRA", "value": "1"}],
                    }],
                },
            }}),
        )]);
        let pod = built(&pod_args(&settings, "gust-worker-x", &args).expect("arguments"));
        let spec = &pod["spec"];
        let base = &spec["containers"][0];
        assert_eq!(base["name"], "base");
        assert_eq!(base["image"], "custom:1", "the override's image wins");
        assert_eq!(
            base["command"],
            serde_json::json!(WORKER_COMMAND),
            "Gust's command wins"
        );
        assert_eq!(
            base["resources"],
            serde_json::json!({"limits": {"memory": "2Gi"}}),
            "the override's resources replace the template's whole, as in Airflow"
        );
        let env: Vec<(&str, &str)> = base["env"]
            .as_array()
            .expect("env")
            .iter()
            .map(|v| {
                (
                    v["name"].as_str().unwrap_or(""),
                    v["value"].as_str().unwrap_or(""),
                )
            })
            .collect();
        assert!(
            env.contains(&("TEAM", "data")) && env.contains(&("EXTRA", "1")),
            "{env:?}"
        );
        let urls: Vec<_> = env
            .iter()
            .filter(|(n, _)| *n == "AIRFLOW__CORE__EXECUTION_API_SERVER_URL")
            .collect();
        assert_eq!(
            urls,
            [&(
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL",
                "http://api/execution/"
            )]
        );
        assert_eq!(spec["nodeSelector"], serde_json::json!({"pool": "big"}));
        assert_eq!(spec["tolerations"][0]["key"], "dedicated");
        assert_eq!(spec["serviceAccountName"], "airflow-worker");
        assert_eq!(spec["restartPolicy"], "Never");
        assert_eq!(
            spec["containers"][1]["name"], "proxy",
            "the template's sidecar is kept"
        );
        let volumes: Vec<&str> = spec["volumes"]
            .as_array()
            .expect("volumes")
            .iter()
            .filter_map(|v| v["name"].as_str())
            .collect();
        assert_eq!(volumes, ["cache", "gust-bundle"]);
        assert_eq!(spec["volumes"][1]["secret"]["secretName"], "gust-worker-x");
        let labels = &pod["metadata"]["labels"];
        assert_eq!(labels["team"], "data");
        assert_eq!(labels["cost"], "etl");
        assert_eq!(labels["gust.io/python-worker"], "true", "Gust's labels win");
        assert_eq!(labels["dag_id"], "etl");
        let name = pod["metadata"]["name"].as_str().expect("a name");
        assert!(name.starts_with("extract-"), "named after the task: {name}");
        assert_eq!(
            pod["metadata"]["namespace"], "default",
            "not the template's"
        );
    }

    /// Worker settings without a pod template.
    fn plain_settings() -> WorkerSettings {
        WorkerSettings {
            image: "airflow:test".into(),
            api_url: "http://api/execution/".into(),
            heartbeat_timeout: Duration::from_secs(60),
            pod_template: None,
        }
    }

    #[test]
    fn without_template_or_override_the_worker_pod_is_gusts_alone() {
        let settings = plain_settings();
        let args = pod_args(&settings, "gust-worker-x", &serde_json::Map::new()).expect("args");
        assert!(!args.contains_key("full_pod_spec"));
        let bad = serde_json::Map::from_iter([(
            "executor_config".to_owned(),
            serde_json::json!({"pod_override": {"spec": {"containerz": [{"name": "x"}]}}}),
        )]);
        let err = pod_args(&settings, "gust-worker-x", &bad).expect_err("refused");
        assert!(
            err.to_string()
                .contains("executor_config.pod_override.spec.containerz"),
            "{err}"
        );
    }

    #[test]
    fn a_template_file_is_read_as_a_pod_and_a_wrong_field_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let good = dir.path().join("worker.yaml");
        std::fs::write(
            &good,
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: dummy\nspec:\n  containers:\n    - name: base\n      resources:\n        requests:\n          cpu: 1\n",
        )
        .expect("write");
        let pod = read_pod_template(&good).expect("a pod");
        assert_eq!(
            pod.pointer("/spec/containers/0/resources/requests/cpu"),
            Some(&serde_json::json!("1"))
        );
        let bad = dir.path().join("bad.yaml");
        std::fs::write(
            &bad,
            "spec:\n  containers:\n    - name: base\n      resourcez: {limits: {cpu: 1}}\n",
        )
        .expect("write");
        let err = read_pod_template(&bad).expect_err("refused").to_string();
        assert!(
            err.starts_with("[kubernetes] worker_pod_template_file ")
                && err.contains("bad.yaml")
                && err.contains("spec.containers[0].resourcez"),
            "{err}"
        );
        let missing = read_pod_template(&dir.path().join("none.yaml")).expect_err("missing");
        assert!(missing.to_string().contains("none.yaml"), "{missing}");
    }

    #[test]
    fn a_secret_name_is_the_same_for_a_try_and_differs_between_tries() {
        assert_eq!(secret_name(&key(1)), secret_name(&key(1)));
        assert_ne!(secret_name(&key(1)), secret_name(&key(2)));
        let name = secret_name(&key(1));
        assert!(
            name.len() <= 63 && name.starts_with("gust-worker-"),
            "{name}"
        );
    }

    #[test]
    fn the_bundle_holds_the_dag_file_its_folder_within_the_bound_and_the_loader() {
        let dir = tempfile::tempdir().expect("tempdir");
        let dags = dir.path();
        std::fs::write(dags.join("etl.yaml"), "etl: {}\n").expect("write");
        std::fs::write(dags.join("callables.py"), "def f(): pass\n").expect("write");
        std::fs::write(dags.join("big.csv"), "x".repeat(BUNDLE_LIMIT)).expect("write");
        std::fs::write(dags.join("bad name.py"), "").expect("write");
        std::fs::create_dir(dags.join("sub")).expect("mkdir");
        std::fs::write(dags.join("sub/inner.py"), "").expect("write");
        let (keys, loader) = bundle(&dags.join("etl.yaml")).expect("a bundle");
        let names: Vec<&str> = keys.keys().map(String::as_str).collect();
        assert!(
            names.contains(&"etl.yaml") && names.contains(&"callables.py"),
            "{names:?}"
        );
        assert!(!names.contains(&"big.csv"), "past the bound: {names:?}");
        assert!(!names.contains(&"bad name.py") && !names.contains(&"inner.py"));
        let text = &keys[&loader];
        assert!(
            text.contains(r#"DAG_FILE = os.path.join(WORKER_FOLDER, "etl.yaml")"#),
            "{text}"
        );
        assert!(
            text.contains(&format!("HOST_FOLDER = \"{}\"", dags.display())),
            "{text}"
        );

        std::fs::write(dags.join("huge.yaml"), "x".repeat(BUNDLE_LIMIT + 1)).expect("write");
        let err = bundle(&dags.join("huge.yaml")).expect_err("too large");
        assert!(err.to_string().contains("huge.yaml"), "{err}");
    }

    #[test]
    fn the_pod_names_its_secret_and_reads_the_workload_from_it() {
        let settings = plain_settings();
        let args = pod_args(&settings, "gust-worker-x", &serde_json::Map::new()).expect("args");
        let pod = gust_operators::kubernetes_pod::PodArgs::read(&args).expect("pod arguments");
        assert_eq!(pod.image.as_deref(), Some("airflow:test"));
        assert_eq!(pod.cmds, WORKER_COMMAND);
        assert_eq!(
            pod.arguments,
            ["--json-path", "/opt/gust/bundle/workload.json"]
        );
        assert_eq!(
            pod.volumes[0]
                .secret
                .as_ref()
                .and_then(|s| s.secret_name.as_deref()),
            Some("gust-worker-x")
        );
    }
}
