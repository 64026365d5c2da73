//! A Python try's plan: Airflow's own task runner (`python -m
//! airflow.sdk.execution_time.execute_workload`) in the interpreter `[python] interpreter`
//! names, given an ExecuteTask workload for the try, a DAG bundle holding a generated loader
//! that builds the try's DAG file with dag-factory, and the address of Gust's Execution API.
//!
//! The worker reports through the Execution API; once its process exits, the state it reported
//! (kept by the [`ExecutionBroker`]) becomes the try's outcome, and its return value the try's
//! XCom. Its structured (JSON) log lines become the try's log lines.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use gust_core::clock::Clock;
use gust_executor::execution::{ExecutionBroker, Progress, Reported};
use gust_executor::{FailureReason, LaunchSpec, TryOutcome};
use sha2::{Digest, Sha256};

use crate::output::Decoder;
use crate::process::{Plan, Watchdog};
use crate::warm_worker::{Launch, WarmWorker};

/// Why a Python try is refused when no Python environment is configured.
pub const NO_PYTHON_RUNTIME: &str = gust_operators::python::NOT_CONFIGURED;

/// The longest a worker may take to build its DAG after starting, Airflow's default
/// `[core] dagbag_import_timeout`: a try's `execution_timeout` counts from then at the latest.
const DAG_BUILD_ALLOWANCE: Duration = Duration::from_secs(30);

/// The longest a worker may take from its start to its first Execution API call, Airflow's
/// default `[scheduler] task_queued_timeout` (a task not yet running is not a zombie).
const QUEUED_ALLOWANCE: Duration = Duration::from_secs(600);

/// The name of the DAG bundle that holds the loaders.
pub(crate) const BUNDLE: &str = "gust";

/// How Python tasks run.
#[derive(Clone)]
pub struct PythonRuntime {
    /// The Python to run the Task SDK with (a virtualenv's `bin/python`).
    pub interpreter: PathBuf,
    /// The live tries the Execution API serves.
    pub broker: Arc<ExecutionBroker>,
    /// The Execution API's address as workers reach it, ending in `/execution/`.
    pub api_url: String,
    /// Where the loaders (the bundle) and the workers' `AIRFLOW_HOME` are kept.
    pub work_dir: PathBuf,
    /// The clock tokens are issued by.
    pub clock: Arc<dyn Clock>,
    /// How long a worker may go unheard (no heartbeat) before its try is killed as a zombie.
    pub heartbeat_timeout: Duration,
    /// The DAGs folder: a Python DAG file's tries load it from there, the folder being their DAG
    /// bundle (on `sys.path`), as on Airflow. A file elsewhere is its own folder's.
    pub dags_folder: Option<PathBuf>,
    /// The process tries are forked from (`warm_worker.rs`); `None` starts a fresh interpreter
    /// per try (`[core] execute_tasks_new_python_interpreter`).
    pub warm_worker: Option<Arc<WarmWorker>>,
}

impl fmt::Debug for PythonRuntime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PythonRuntime")
            .field("interpreter", &self.interpreter)
            .field("api_url", &self.api_url)
            .field("work_dir", &self.work_dir)
            .field("heartbeat_timeout", &self.heartbeat_timeout)
            .finish_non_exhaustive()
    }
}

impl PythonRuntime {
    pub(crate) fn bundle_dir(&self) -> PathBuf {
        self.work_dir.join("bundle")
    }
}

fn spawn_failure(what: impl fmt::Display) -> TryOutcome {
    TryOutcome::Failed(FailureReason::Spawn(what.to_string()))
}

/// The plan of a Python try.
pub fn plan(spec: &LaunchSpec, python: &PythonRuntime) -> Result<Plan, TryOutcome> {
    // Checked at load too; a stored definition of an earlier version is checked again.
    if let Some(operator) = gust_operators::resolve(&spec.operator) {
        (operator.check)(&spec.args)
            .map_err(|err| TryOutcome::Failed(FailureReason::InvalidArguments(err.to_string())))?;
    }
    let (bundle_path, loader) = if is_python_dag_file(&spec.dag_file) {
        python_bundle(python.dags_folder.as_deref(), &spec.dag_file)
            .map_err(|err| spawn_failure(format!("cannot find the DAG file: {err}")))?
    } else {
        let loader = write_loader(&python.bundle_dir(), &spec.dag_file)
            .map_err(|err| spawn_failure(format!("cannot write the DAG file's loader: {err}")))?;
        (python.bundle_dir(), loader)
    };
    let airflow_home = python.work_dir.join("airflow-home");
    std::fs::create_dir_all(&airflow_home)
        .map_err(|err| spawn_failure(format!("cannot make {}: {err}", airflow_home.display())))?;
    let scratch = tempfile::Builder::new()
        .prefix("gust-try-")
        .tempdir()
        .map_err(|err| spawn_failure(format!("no temporary folder: {err}")))?;
    let admission = Admission::new(python.broker.clone(), spec, python.clock.now());
    let workload = workload(spec, &admission, &loader);
    // The workload holds the try's token: a file only its owner reads, never an argument
    // (which `ps` shows) nor a log line.
    let workload_path = scratch.path().join("workload.json");
    write_private(&workload_path, workload.to_string().as_bytes())
        .map_err(|err| spawn_failure(format!("cannot write the workload: {err}")))?;
    let bundles = serde_json::json!([{
        "name": BUNDLE,
        "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
        "kwargs": {"path": bundle_path},
    }]);
    let mut env = constant_env(python, &airflow_home);
    env.extend([
        (
            "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST".to_owned(),
            bundles.to_string(),
        ),
        (
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER".to_owned(),
            scratch.path().join("logs").display().to_string(),
        ),
        (
            "GUST_WORKLOAD".to_owned(),
            workload_path.display().to_string(),
        ),
    ]);
    env.extend(crate::context_env::airflow_context_vars(spec));
    let do_xcom_push = spec.do_xcom_push;
    let watchdog = heartbeat_watchdog(python, admission.ti_id);
    let script = match &python.warm_worker {
        Some(worker) => {
            worker.ensure_started(&Launch {
                interpreter: python.interpreter.clone(),
                env: constant_env(python, &airflow_home),
                cwd: python.work_dir.clone(),
            });
            env.push((
                "GUST_WARM_CLIENT".to_owned(),
                worker.client().display().to_string(),
            ));
            env.push((
                "GUST_WARM_SOCKET".to_owned(),
                worker.socket().display().to_string(),
            ));
            // Python without `site` starts in milliseconds; the client needs only the
            // standard library.
            "\"$GUST_PYTHON\" -I -S \"$GUST_WARM_CLIENT\" \"$GUST_WARM_SOCKET\" --json-path \
             \"$GUST_WORKLOAD\""
        }
        None => {
            "\"$GUST_PYTHON\" -m airflow.sdk.execution_time.execute_workload --json-path \
             \"$GUST_WORKLOAD\""
        }
    };
    Ok(Plan {
        script: script.to_owned(),
        env: Some(env),
        clear_env: false,
        cwd: scratch.path().to_owned(),
        decoder: Decoder::utf8(),
        render: gust_executor::task_sdk::log_line,
        what: format!("python {}", python.interpreter.display()),
        folders: vec![scratch],
        scratch: None,
        finish: Box::new(move |code, _last_line| {
            let progress = admission.finish();
            outcome(code, progress, do_xcom_push)
        }),
        watchdog: Some(watchdog),
    })
}

/// The environment every try of `python` shares, which its warm worker starts with too (Airflow
/// reads some settings when its modules are imported).
fn constant_env(python: &PythonRuntime, airflow_home: &Path) -> Vec<(String, String)> {
    vec![
        (
            "AIRFLOW_HOME".to_owned(),
            airflow_home.display().to_string(),
        ),
        (
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL".to_owned(),
            python.api_url.clone(),
        ),
        (
            "AIRFLOW__CORE__LOAD_EXAMPLES".to_owned(),
            "False".to_owned(),
        ),
        (
            "GUST_PYTHON".to_owned(),
            python.interpreter.display().to_string(),
        ),
        // The worker heartbeats well within the timeout it is told (Airflow's own setting).
        (
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT".to_owned(),
            python.heartbeat_timeout.as_secs().max(1).to_string(),
        ),
    ]
}

/// Kills a try whose worker has not been heard of (no heartbeat since it started, or since its
/// last one) for longer than the heartbeat timeout: Airflow's zombie rule. The try fails, and is
/// retried if retries remain, as in Airflow.
fn heartbeat_watchdog(python: &PythonRuntime, ti_id: uuid::Uuid) -> Watchdog {
    let (broker, clock, timeout) = (
        python.broker.clone(),
        python.clock.clone(),
        python.heartbeat_timeout,
    );
    let (started, now) = (python.broker.clone(), python.clock.clone());
    Watchdog {
        running_for: Some(Box::new(move || {
            let since =
                |at: chrono::DateTime<chrono::Utc>| (now.now() - at).to_std().unwrap_or_default();
            let times = started.start_times(ti_id)?;
            match (times.started_at, times.executing_since) {
                (_, Some(executing)) => Some(since(executing)),
                // A task without template fields sends none: it is executing at the latest once
                // building the DAG, bounded as Airflow bounds it, is over.
                (Some(started), None) => since(started).checked_sub(DAG_BUILD_ALLOWANCE),
                (None, None) => None,
            }
        })),
        every: (timeout / 4).clamp(Duration::from_secs(1), Duration::from_secs(30)),
        check: Box::new(move || {
            let heard = broker.last_heard(ti_id)?;
            let silent = (clock.now() - heard).to_std().unwrap_or_default();
            // Until its first call, the worker is starting (waiting for the warm worker, or
            // importing Airflow on a loaded host), as a queued task in Airflow, which is not
            // yet watched for heartbeats.
            let starting = broker
                .start_times(ti_id)
                .is_some_and(|times| times.started_at.is_none());
            if starting {
                let limit = timeout.max(QUEUED_ALLOWANCE);
                return (silent > limit).then(|| {
                    format!(
                        "its worker did not call the Execution API within {}s of starting",
                        limit.as_secs()
                    )
                });
            }
            (silent > timeout).then(|| crate::python_pod::zombie_reason(silent, timeout))
        }),
    }
}

/// A try admitted to the Execution API; its token stops working when this is finished or
/// dropped (the try was killed, or never started).
struct Admission {
    broker: Arc<ExecutionBroker>,
    ti_id: uuid::Uuid,
    token: String,
}

impl Admission {
    fn new(
        broker: Arc<ExecutionBroker>,
        spec: &LaunchSpec,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Self {
        let admitted = broker.admit(spec, now);
        Self {
            broker,
            ti_id: admitted.ti_id,
            token: admitted.token,
        }
    }

    fn finish(&self) -> Option<Progress> {
        self.broker.finish(self.ti_id)
    }
}

impl Drop for Admission {
    /// A try that ends here without [`Admission::finish`] was killed (or timed out, or never
    /// started). Killing the worker's process group does not reach the task itself: Airflow's
    /// supervisor runs it in a process group of its own, whose id is the pid it reported when it
    /// started, so that group is killed too.
    fn drop(&mut self) {
        let Some(progress) = self.broker.finish(self.ti_id) else {
            return;
        };
        let Some(pgid) = progress
            .runner
            .and_then(|runner| u32::try_from(runner.pid).ok())
        else {
            return;
        };
        // The pid comes from the worker: never this process's own group, nor init's.
        let own_group = nix::unistd::getpgrp().as_raw().unsigned_abs();
        if pgid > 1 && pgid != std::process::id() && pgid != own_group {
            crate::group::signal(pgid, nix::sys::signal::Signal::SIGKILL);
        }
    }
}

/// The ExecuteTask workload (`airflow.executors.workloads.ExecuteTask`) for the try.
fn workload(spec: &LaunchSpec, admission: &Admission, loader: &str) -> serde_json::Value {
    // Relative to the scratch folder's `logs` (AIRFLOW__LOGGING__BASE_LOG_FOLDER): the
    // supervisor writes the task's lines there and, once, to its stdout, which Gust reads.
    workload_json(spec, admission.ti_id, &admission.token, loader, "task.log")
}

/// The ExecuteTask workload of try `ti_id`, whose worker presents `token`, loads the bundle's
/// `loader` and writes the task's lines to `log_path` too.
pub(crate) fn workload_json(
    spec: &LaunchSpec,
    ti_id: uuid::Uuid,
    token: &str,
    loader: &str,
    log_path: &str,
) -> serde_json::Value {
    serde_json::json!({
        "type": "ExecuteTask",
        "token": token,
        "ti": {
            "id": ti_id.to_string(),
            "task_id": spec.key.task_id.as_str(),
            "dag_id": spec.key.dag_id.as_str(),
            "run_id": spec.key.run_id.as_str(),
            "try_number": spec.key.try_number.0,
            // Gust keeps no DAG versions by id: the try's id stands in for it.
            "dag_version_id": ti_id.to_string(),
            "map_index": spec.key.map_index,
            "pool_slots": 1,
            "priority_weight": 1,
            "queue": "default",
        },
        "dag_rel_path": loader,
        "bundle_info": {"name": BUNDLE, "version": null},
        "log_path": log_path,
        "sentry_integration": "",
    })
}

pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)
}

/// Whether `dag_file` is a Python DAG file, which the worker loads itself (no loader).
pub(crate) fn is_python_dag_file(dag_file: &Path) -> bool {
    dag_file.extension().and_then(|e| e.to_str()) == Some("py")
}

/// The DAG bundle a Python DAG file's tries load it from, and the file's path in it: the DAGs
/// folder when the file is in it (Airflow's bundle, on `sys.path`), else the file's own folder.
pub(crate) fn python_bundle(
    dags_folder: Option<&Path>,
    dag_file: &Path,
) -> std::io::Result<(PathBuf, String)> {
    let dag_file = std::path::absolute(dag_file)?;
    let root = dags_folder
        .and_then(|dir| std::path::absolute(dir).ok())
        .filter(|dir| dag_file.starts_with(dir))
        .or_else(|| dag_file.parent().map(Path::to_path_buf))
        .ok_or_else(|| std::io::Error::other("the DAG file has no folder"))?;
    let relative = dag_file
        .strip_prefix(&root)
        .map_err(std::io::Error::other)?
        .display()
        .to_string();
    Ok((root, relative))
}

/// Gust's operator names that dag-factory cannot import, as Airflow's classes: the worker
/// builds the DAG file with dag-factory, which needs class paths.
const AIRFLOW_CLASSES: &[(&str, &str)] = &[
    (
        "bash",
        "airflow.providers.standard.operators.bash.BashOperator",
    ),
    (
        "empty",
        "airflow.providers.standard.operators.empty.EmptyOperator",
    ),
    (
        "python",
        "airflow.providers.standard.operators.python.PythonOperator",
    ),
    (
        "python_branch",
        "airflow.providers.standard.operators.python.BranchPythonOperator",
    ),
    (
        "short_circuit",
        "airflow.providers.standard.operators.python.ShortCircuitOperator",
    ),
    (
        "kubernetes_pod",
        "airflow.providers.cncf.kubernetes.operators.pod.KubernetesPodOperator",
    ),
];

/// The loader of `dag_file` in the bundle: a Python file that builds the DAG file's DAGs with
/// dag-factory. Written when missing or different (by a rename, so a worker reading it never
/// sees half of it); its name, relative to the bundle, is returned.
pub(crate) fn write_loader(bundle: &Path, dag_file: &Path) -> std::io::Result<String> {
    let dag_file = std::path::absolute(dag_file)?;
    let name = loader_name(&dag_file);
    let text = if is_python_dag_file(&dag_file) {
        python_loader_text(&dag_file.display().to_string())
    } else {
        loader_text(&dag_file.display().to_string(), None)
    };
    let path = bundle.join(&name);
    if std::fs::read_to_string(&path).is_ok_and(|old| old == text) {
        return Ok(name);
    }
    std::fs::create_dir_all(bundle)?;
    let mut staged = tempfile::NamedTempFile::new_in(bundle)?;
    staged.write_all(text.as_bytes())?;
    staged.persist(&path).map_err(|err| err.error)?;
    Ok(name)
}

/// The loader's file name for the DAG file at `dag_file` (an absolute path): one per file,
/// even of the same name in another folder.
pub(crate) fn loader_name(dag_file: &Path) -> String {
    let digest = Sha256::digest(dag_file.display().to_string().as_bytes());
    let stem: String = dag_file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .take(40)
        .collect();
    let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("gust_{stem}_{hex}.py")
}

/// The loader of a Python DAG file (for its callbacks): the file's DAGs as Airflow's DagBag
/// builds them, each a global of the loader.
fn python_loader_text(dag_file: &str) -> String {
    let literal = serde_json::Value::String(dag_file.to_owned()).to_string();
    format!(
        r#"# Written by Gust: the DAGs of {file}, as Airflow's DagBag builds them. Gust rewrites
# it when needed; edits are lost.
import os

from airflow.dag_processing.dagbag import BundleDagBag

DAG_FILE = {literal}
_bag = BundleDagBag(
    dag_folder=DAG_FILE,
    bundle_path=os.path.dirname(DAG_FILE),
    safe_mode=False,
    load_op_links=False,
)
for _dag_id, _dag in _bag.dags.items():
    globals()["dag " + _dag_id] = _dag
"#,
        file = dag_file.replace('\n', " "),
    )
}

/// A worker pod's loader: the DAG file's folder is the loader's own (the pod's bundle), and
/// `host` is where that folder is on Gust's host.
pub(crate) struct Moved<'a> {
    pub host: &'a str,
}

/// The loader's text for the DAG file at `dag_file` as the worker sees it. With `moved` (a
/// worker pod, whose bundle holds the DAG file's folder beside the loader), `dag_file` is a
/// name in the loader's own folder, that folder is put on `sys.path`, and `*_file` paths that
/// pointed into the folder on Gust's host point into it in the pod.
pub(crate) fn loader_text(dag_file: &str, moved: Option<Moved<'_>>) -> String {
    let classes: serde_json::Map<String, serde_json::Value> = AIRFLOW_CLASSES
        .iter()
        .map(|(gust, airflow)| ((*gust).to_owned(), serde_json::json!(airflow)))
        .collect();
    let literal = |text: &str| serde_json::Value::String(text.to_owned()).to_string();
    let (host, worker, file_literal) = match moved {
        None => ("None".to_owned(), "None".to_owned(), literal(dag_file)),
        // The pod's bundle is wherever the pod runtime mounts it: found from the loader.
        Some(m) => {
            let here = "os.path.dirname(os.path.abspath(__file__))";
            (
                literal(m.host),
                here.to_owned(),
                format!("os.path.join(WORKER_FOLDER, {})", literal(dag_file)),
            )
        }
    };
    // JSON string literals are Python string literals.
    format!(
        r#"# Written by Gust: builds the DAGs of {file} with dag-factory, as Gust read them, for
# Airflow's task runner. Gust rewrites it when needed; edits are lost.
import os
import sys

from dagfactory import load_yaml_dags
from dagfactory._yaml import load_yaml_file

# In a worker pod: the DAG file's folder on Gust's host, and where the pod has it.
HOST_FOLDER = {host}
WORKER_FOLDER = {worker}
DAG_FILE = {file_literal}
# Gust's short operator names, as the Airflow classes they stand for.
OPERATORS = {classes}
# The notifiers Gust sends itself (callback paths).
NOTIFIERS = {notifiers}


def _moved(value):
    if HOST_FOLDER and isinstance(value, str) and value.startswith(HOST_FOLDER + "/"):
        return WORKER_FOLDER + value[len(HOST_FOLDER):]
    return value


def _native(entry):
    # Gust sends these notifiers and emails itself: dag-factory must not build them (their
    # providers need not be installed) nor Airflow send them a second time.
    for key in [k for k in entry if k.startswith("on_") and k.endswith("_callback")]:
        value = entry[key]
        items = value if isinstance(value, list) else [value]
        kept = [
            item
            for item in items
            if not (
                (isinstance(item, str) and item.strip() in NOTIFIERS)
                or (isinstance(item, dict) and str(item.get("callback", "")).strip() in NOTIFIERS)
            )
        ]
        if not kept:
            del entry[key]
        elif isinstance(value, list):
            entry[key] = kept if len(kept) > 1 else kept[0]
    entry.pop("email", None)


def _task(task):
    _native(task)
    if task.get("operator") in OPERATORS:
        task["operator"] = OPERATORS[task["operator"]]
    for key in list(task):
        if key.endswith("_file"):
            task[key] = _moved(task[key])


def _mapped_groups(dag):
    # Gust's mapped task groups (a group's `expand:`, `expand_kwargs:` and `partial:`, which
    # dag-factory has not): each task of one takes them as its own, as Gust reads them.
    groups = dag.get("task_groups")
    if isinstance(groups, list):
        groups = {{g.get("group_name"): g for g in groups if isinstance(g, dict)}}
    if not isinstance(groups, dict):
        return
    keys = {{}}
    for name, group in groups.items():
        if isinstance(group, dict):
            keys[name] = {{k: group.pop(k) for k in ("expand", "expand_kwargs", "partial") if k in group}}

    def mapped(name):
        seen = set()
        while name in groups and name not in seen:
            seen.add(name)
            if "expand" in keys.get(name, {{}}) or "expand_kwargs" in keys.get(name, {{}}):
                return keys[name]
            name = (groups[name] or {{}}).get("parent_group_name")
        return None

    tasks = dag.get("tasks")
    for task in tasks.values() if isinstance(tasks, dict) else (tasks or []):
        group = mapped(task.get("task_group_name")) if isinstance(task, dict) else None
        if not group:
            continue
        for key in ("expand", "expand_kwargs"):
            if key in group:
                task[key] = group[key]
        if "partial" in group:
            task["partial"] = {{**(task.get("partial") or {{}}), **group["partial"]}}


def _airflow_names(config):
    for dag_id, dag in config.items():
        if not isinstance(dag, dict):
            continue
        _native(dag)
        _mapped_groups(dag)
        groups = dag.get("task_groups")
        for group in groups.values() if isinstance(groups, dict) else (groups or []):
            if isinstance(group, dict) and isinstance(group.get("default_args"), dict):
                _native(group["default_args"])
        if dag_id == "default":
            if isinstance(dag.get("default_args"), dict):
                _native(dag["default_args"])
            continue
        if isinstance(dag.get("default_args"), dict):
            _task(dag["default_args"])
        tasks = dag.get("tasks")
        entries = tasks.values() if isinstance(tasks, dict) else (tasks or [])
        for task in entries:
            if isinstance(task, dict):
                _task(task)
    return config


if WORKER_FOLDER and WORKER_FOLDER not in sys.path:
    sys.path.insert(0, WORKER_FOLDER)

load_yaml_dags(
    globals_dict=globals(),
    config_dict=_airflow_names(load_yaml_file(DAG_FILE)),
    defaults_config_path=os.path.dirname(DAG_FILE),
)
"#,
        file = dag_file.replace('\n', " "),
        classes = serde_json::Value::Object(classes),
        notifiers = serde_json::json!(
            gust_core::notify::CALLBACK_PATHS
                .iter()
                .map(|(path, _)| *path)
                .collect::<Vec<_>>()
        ),
    )
}

/// The key of a task's return value among its XComs.
const RETURN_VALUE: &str = "return_value";

/// The try's outcome from what its worker reported (`progress`) and its exit code.
pub(crate) fn outcome(code: i32, progress: Option<Progress>, do_xcom_push: bool) -> TryOutcome {
    let Some(progress) = progress.filter(|p| p.reported.is_some()) else {
        return TryOutcome::Failed(match code {
            0 => FailureReason::Task(
                "the Task SDK exited without reporting the task's state".to_owned(),
            ),
            code => FailureReason::ExitCode(code),
        });
    };
    // The return value is kept as `do_xcom_push` says; other keys always, as in Airflow.
    let xcoms: std::collections::BTreeMap<String, serde_json::Value> = progress
        .xcoms
        .iter()
        .filter(|(key, _)| do_xcom_push || *key != RETURN_VALUE)
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    let keyed = xcoms.keys().any(|key| key != RETURN_VALUE);
    match progress.reported {
        Some(Reported::Success)
            if !progress.skip_downstream.is_empty()
                || !progress.outlet_events.is_empty()
                || keyed =>
        {
            TryOutcome::SucceededReporting {
                xcoms,
                skip: progress.skip_downstream,
                outlet_events: progress.outlet_events,
            }
        }
        Some(Reported::Success) => TryOutcome::Succeeded {
            xcom: xcoms.get(RETURN_VALUE).cloned(),
        },
        Some(Reported::Skipped) => TryOutcome::SkippedItself {
            reason: "the task raised AirflowSkipException".to_owned(),
        },
        Some(Reported::Failed | Reported::Removed) | None => TryOutcome::Failed(
            FailureReason::Task("the task failed (see its log)".to_owned()),
        ),
        Some(Reported::UpForRetry { reason }) => TryOutcome::Failed(FailureReason::Task(
            reason.unwrap_or_else(|| "the task failed (see its log)".to_owned()),
        )),
        Some(Reported::Reschedule { at }) => TryOutcome::Rescheduled { at },
        // The scheduler records the deferral and runs its trigger; the worker is free now.
        Some(Reported::Deferred(deferral)) => TryOutcome::Deferred(deferral),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reported_state_is_the_outcome() {
        let reported = |state, xcom: Option<serde_json::Value>| Progress {
            reported: Some(state),
            xcoms: xcom
                .into_iter()
                .map(|v| ("return_value".to_owned(), v))
                .collect(),
            ..Progress::default()
        };
        let value = serde_json::json!({"n": 1});
        assert_eq!(
            outcome(
                0,
                Some(reported(Reported::Success, Some(value.clone()))),
                true
            ),
            TryOutcome::Succeeded {
                xcom: Some(value.clone())
            }
        );
        assert_eq!(
            outcome(0, Some(reported(Reported::Success, Some(value))), false),
            TryOutcome::Succeeded { xcom: None }
        );
        assert!(matches!(
            outcome(0, Some(reported(Reported::Skipped, None)), true),
            TryOutcome::SkippedItself { .. }
        ));
        assert!(matches!(
            outcome(1, Some(reported(Reported::Failed, None)), true),
            TryOutcome::Failed(FailureReason::Task(_))
        ));
        assert_eq!(
            outcome(3, None, true),
            TryOutcome::Failed(FailureReason::ExitCode(3))
        );
        let at = chrono::DateTime::UNIX_EPOCH;
        assert_eq!(
            outcome(0, Some(reported(Reported::Reschedule { at }, None)), true),
            TryOutcome::Rescheduled { at }
        );
        let deferral = gust_executor::deferral::Deferral {
            classpath: "airflow.providers.standard.triggers.temporal.DateTimeTrigger".to_owned(),
            trigger_kwargs: serde_json::json!({"moment": "2030-01-01T00:00:00+00:00"}),
            trigger_timeout: None,
            next_method: "execute_complete".to_owned(),
            next_kwargs: serde_json::json!({}),
        };
        assert_eq!(
            outcome(
                0,
                Some(reported(
                    Reported::Deferred(Box::new(deferral.clone())),
                    None
                )),
                true
            ),
            TryOutcome::Deferred(Box::new(deferral))
        );
        assert!(matches!(
            outcome(0, Some(Progress::default()), true),
            TryOutcome::Failed(FailureReason::Task(_))
        ));
    }

    #[test]
    fn a_loader_is_written_once_per_file_and_names_it() {
        let bundle = tempfile::tempdir().expect("a folder");
        let first = write_loader(bundle.path(), Path::new("/dags/etl.yaml")).expect("written");
        let again = write_loader(bundle.path(), Path::new("/dags/etl.yaml")).expect("written");
        let other = write_loader(bundle.path(), Path::new("/other/etl.yaml")).expect("written");
        assert_eq!(first, again);
        assert_ne!(first, other, "one loader per file, even of the same name");
        assert!(first.starts_with("gust_etl_") && first.ends_with(".py"));
        let text = std::fs::read_to_string(bundle.path().join(&first)).expect("a loader");
        assert!(text.contains(r#"DAG_FILE = "/dags/etl.yaml""#), "{text}");
    }
}
