//! Python tasks (`[python] interpreter`): the Execution API that Airflow's Task SDK talks to,
//! served on a loopback port by the process that runs the tasks (`gust dags test`, `gust
//! scheduler`, `gust standalone`), and the Python runtime's settings for the local runtime.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use gust_core::clock::Clock;
use gust_exec_local::{PythonRuntime, WarmWorker};
use gust_executor::execution::ExecutionBroker;
use gust_server::execution::{ExecutionState, TASK_TOKEN_TTL, TaskTokens};
use gust_store::{SecretKey, Store};
use tokio_util::sync::CancellationToken;

use crate::config::Config;

/// The Execution API of this process and the runtime settings that point workers at it.
pub struct PythonTasks {
    /// What the local runtime runs Python tries with.
    pub runtime: PythonRuntime,
    /// The Execution API's handlers, to serve on another router too (`gust standalone`'s).
    pub execution: ExecutionState,
    stop: CancellationToken,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    /// The work folder of a one-off run, removed with it.
    _scratch: Option<tempfile::TempDir>,
}

impl PythonTasks {
    /// Stops serving (once no try runs any more).
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.server.await;
    }
}

/// Starts the Execution API when `[python] interpreter` is set. `work_dir` keeps the DAG files'
/// loaders (none: a temporary folder, for one-off runs); `variables` is where variables tasks set
/// are kept, with their key (none: in this process only).
pub async fn start(
    config: &Config,
    work_dir: Option<PathBuf>,
    variables: Option<(Store, SecretKey)>,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<Option<PythonTasks>> {
    let Some(interpreter) = config.python.interpreter.clone() else {
        return Ok(None);
    };
    if interpreter.components().count() > 1 && !interpreter.exists() {
        anyhow::bail!(
            "[python] interpreter {} does not exist: point it at a virtualenv's bin/python with \
             `pip install apache-airflow==3.3.2 dag-factory==1.1.0` (see docs/python.md)",
            interpreter.display()
        );
    }
    // A worker pod template that cannot be read stops the start, naming the field, rather
    // than failing every Python try.
    worker_pod_template(config)?;
    let (work_dir, scratch) = match work_dir {
        Some(dir) => (dir, None),
        None => {
            let dir = tempfile::Builder::new()
                .prefix("gust-python-")
                .tempdir()
                .context("cannot make a work folder for Python tasks")?;
            (dir.path().to_owned(), Some(dir))
        }
    };
    std::fs::create_dir_all(&work_dir)
        .with_context(|| format!("cannot create {}", work_dir.display()))?;
    // Task tokens are checked only by this process: a secret of its own, never written down.
    let secret = gust_server::auth::password::random_password()
        + &gust_server::auth::password::random_password();
    let tokens = Arc::new(TaskTokens::new(secret.as_bytes(), TASK_TOKEN_TTL));
    let broker = Arc::new(ExecutionBroker::new(tokens));
    let mut execution = ExecutionState::new(broker.clone(), clock.clone());
    if let Some((store, key)) = variables {
        execution = execution.with_variable_store(store, key);
    }
    let listener = match worker_pods_port(config)? {
        // Worker pods on a cluster reach it at [kubernetes] execution_api_url.
        Some(port) => tokio::net::TcpListener::bind(("0.0.0.0", port))
            .await
            .with_context(|| {
                format!(
                    "cannot listen on port {port} ([kubernetes] execution_api_url) for the \
                     Execution API"
                )
            })?,
        None => tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .context("cannot listen on a loopback port for the Execution API")?,
    };
    let address = listener
        .local_addr()
        .context("the Execution API's socket has no address")?;
    let app = gust_server::execution::nested(execution.clone());
    let stop = CancellationToken::new();
    let server = tokio::spawn(gust_server::serve(listener, app, stop.clone()));
    Ok(Some(PythonTasks {
        runtime: PythonRuntime {
            interpreter,
            broker,
            api_url: format!("http://{address}/execution/"),
            work_dir,
            clock,
            heartbeat_timeout: config.scheduler.task_instance_heartbeat_timeout,
            dags_folder: Some(config.core.dags_folder.clone()),
            warm_worker: if config.core.execute_tasks_new_python_interpreter {
                None
            } else {
                Some(WarmWorker::new().context("cannot make a folder for the warm Python worker")?)
            },
        },
        execution,
        stop,
        server,
        _scratch: scratch,
    }))
}

/// The port worker pods on a cluster reach the Execution API at: that of `[kubernetes]
/// execution_api_url`, when Python tasks run as pods (`[kubernetes] worker_image`) on a
/// cluster. The local pod runtime's workers are processes of this host: loopback serves them.
fn worker_pods_port(config: &Config) -> anyhow::Result<Option<u16>> {
    let k = &config.kubernetes;
    if k.worker_image.is_none() || k.runtime == crate::config::PodRuntime::Local {
        return Ok(None);
    }
    let Some(text) = &k.execution_api_url else {
        return Ok(None);
    };
    let url = url::Url::parse(text)
        .with_context(|| format!("[kubernetes] execution_api_url {text:?} is not a URL"))?;
    if !url.path().ends_with("/execution/") {
        anyhow::bail!(
            "[kubernetes] execution_api_url {text:?} must end in /execution/ (the Execution \
             API's prefix)"
        );
    }
    url.port_or_known_default()
        .map(Some)
        .with_context(|| format!("[kubernetes] execution_api_url {text:?} has no port"))
}

/// `[kubernetes] worker_pod_template_file`'s pod, read and checked, when Python tasks run as
/// pods (`[kubernetes] worker_image`) and it is set.
pub fn worker_pod_template(config: &Config) -> anyhow::Result<Option<Arc<serde_json::Value>>> {
    let k = &config.kubernetes;
    let Some(path) = k
        .worker_pod_template_file
        .as_ref()
        .filter(|_| k.worker_image.is_some())
    else {
        return Ok(None);
    };
    let pod = gust_exec_local::python_pod::read_pod_template(path)?;
    Ok(Some(Arc::new(pod)))
}
