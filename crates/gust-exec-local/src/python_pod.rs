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
//! local Python runtime.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use gust_executor::execution::ExecutionBroker;
use gust_executor::task_sdk::WorkerPod;
use gust_executor::{
    Executor, FailureReason, LaunchError, LaunchSpec, SweepScope, TryEvent, TryEventKind, TryKey,
    TryOutcome,
};
use tokio::sync::mpsc;

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
/// runner on the workload in its Secret, told where the Execution API and the bundle are.
#[must_use]
pub fn pod_args(
    settings: &WorkerSettings,
    secret: &str,
) -> serde_json::Map<String, serde_json::Value> {
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
    let volume = serde_json::json!({"name": "gust-bundle", "secret": {"secretName": secret}});
    let mount =
        serde_json::json!({"name": "gust-bundle", "mountPath": BUNDLE_MOUNT, "readOnly": true});
    serde_json::Map::from_iter([
        ("image".to_owned(), serde_json::json!(settings.image)),
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
    ])
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
    clock: Arc<dyn gust_core::clock::Clock>,
    settings: WorkerSettings,
    /// The tries admitted to the Execution API, with whether they push their return value.
    admitted: Mutex<HashMap<TryKey, (uuid::Uuid, bool)>>,
}

impl Inner {
    fn admitted(&self) -> MutexGuard<'_, HashMap<TryKey, (uuid::Uuid, bool)>> {
        // Single inserts and removes only: a poisoned map is still whole.
        self.admitted.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The try's outcome from its pod's: the state its worker reported, when it did.
    fn outcome(&self, key: &TryKey, pod: TryOutcome) -> TryOutcome {
        let Some((ti_id, do_xcom_push)) = self.admitted().remove(key) else {
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
        let progress = self.broker.finish(ti_id);
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
            // Killed, timed out, never started...: as the pod runtime says.
            other => other,
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

    fn start_pod(&self, spec: &LaunchSpec) -> Result<LaunchSpec, BundleError> {
        let (mut keys, loader) = bundle(&spec.dag_file)?;
        let admitted = self.inner.broker.admit(spec, self.inner.clock.now());
        let name = secret_name(&spec.key);
        keys.insert(
            WORKLOAD_KEY.to_owned(),
            workload(spec, admitted.ti_id, &admitted.token, &loader),
        );
        self.inner
            .admitted()
            .insert(spec.key.clone(), (admitted.ti_id, spec.do_xcom_push));
        let args = pod_args(&self.inner.settings, &name);
        Ok(pod_spec(
            spec,
            args,
            WorkerPod {
                secret_name: name,
                secret_data: Some(keys),
            },
        ))
    }
}

impl Executor for PythonPods {
    fn start(&self, spec: LaunchSpec) -> Result<(), LaunchError> {
        let key = spec.key.clone();
        let pod = self.start_pod(&spec).map_err(|err| {
            LaunchError::Unconfigured(format!("a worker pod needs its DAG bundle: {err}"))
        })?;
        self.inner.pods.start(pod).inspect_err(|_| {
            if let Some((ti_id, _)) = self.inner.admitted().remove(&key) {
                self.inner.broker.finish(ti_id);
            }
        })
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
        let args = pod_args(&self.inner.settings, &name);
        let pod = pod_spec(
            &spec,
            args,
            WorkerPod {
                secret_name: name,
                secret_data: None,
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
        let settings = WorkerSettings {
            image: "airflow:test".into(),
            api_url: "http://api/execution/".into(),
            heartbeat_timeout: Duration::from_secs(60),
        };
        let args = pod_args(&settings, "gust-worker-x");
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
