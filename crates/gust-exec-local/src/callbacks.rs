//! The callbacks of natively run tasks and of DAGs, run in the `[python] interpreter`
//! environment as Airflow's DAG processor runs them (`callbacks.py`): one short Python process
//! per callback, its output appended to the try's log (a DAG's callbacks to the run's
//! `dag_callbacks.log`), masked as every log line is. A callback that fails or runs past
//! [`CALLBACK_TIMEOUT`] is logged; it never changes a task's or a run's state, as in Airflow.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use gust_core::clock::Clock;
use gust_executor::callbacks::{CallbackKind, CallbackRequest, CallbackRunner};
use gust_executor::try_log::LogWriter;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::python::{write_loader, write_private};

/// The script that runs one callback.
const RUNNER: &str = include_str!("callbacks.py");

/// How long one callback may run (Airflow's DAG processor gives a file's callbacks its
/// `dag_file_processor_timeout`, 50 s by default; a notifier calling a slow service needs more).
pub const CALLBACK_TIMEOUT: Duration = Duration::from_secs(300);

/// Runs callbacks with Python, each in its own process, without waiting for them.
#[derive(Clone)]
pub struct PythonCallbacks {
    /// The Python environment (`[python] interpreter`).
    interpreter: PathBuf,
    /// Where the loaders are (the Python runtime's bundle) and the callbacks' `AIRFLOW_HOME`.
    work_dir: PathBuf,
    /// The clock log lines are stamped with.
    clock: Arc<dyn Clock>,
    /// The callbacks still running, for [`PythonCallbacks::wait`].
    running: tokio_util::task::TaskTracker,
}

impl std::fmt::Debug for PythonCallbacks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PythonCallbacks")
            .field("interpreter", &self.interpreter)
            .field("work_dir", &self.work_dir)
            .finish_non_exhaustive()
    }
}

impl CallbackRunner for PythonCallbacks {
    fn run(&self, request: CallbackRequest) {
        // The notifiers and emails are gust-notify's: only a Python callback is run here.
        if !request.calls.python {
            return;
        }
        let this = self.clone();
        self.running.spawn(async move {
            let what = describe(&request);
            if let Err(err) = this.run_one(&request, &what).await {
                tracing::warn!(dag_id = %request.dag_id, run_id = %request.run_id, "{what} could not run: {err}");
            }
        });
    }
}

/// `task T's on_failure_callback` or `DAG D's on_success_callback`.
fn describe(request: &CallbackRequest) -> String {
    let event = request.kind.event();
    match (&request.task, request.kind) {
        (_, CallbackKind::DagSuccess | CallbackKind::DagFailure) | (None, _) => {
            format!("DAG {}'s on_{event}_callback", request.dag_id)
        }
        (Some(task), _) => format!("task {}'s on_{event}_callback", task.task_id),
    }
}

impl PythonCallbacks {
    /// Callbacks run with `interpreter`, the loaders kept under `work_dir` (the Python
    /// runtime's).
    #[must_use]
    pub fn new(interpreter: PathBuf, work_dir: PathBuf, clock: Arc<dyn Clock>) -> Self {
        Self {
            interpreter,
            work_dir,
            clock,
            running: tokio_util::task::TaskTracker::new(),
        }
    }

    /// Waits for the callbacks started so far to end (a one-off run exits only then).
    pub async fn wait(&self) {
        self.running.close();
        self.running.wait().await;
    }

    async fn run_one(&self, request: &CallbackRequest, what: &str) -> std::io::Result<()> {
        let mut log = LogWriter::open(&request.log_path, &*self.clock).await?;
        let bundle = self.work_dir.join("bundle");
        let dag_file = request.dag_file.clone();
        let loader = tokio::task::spawn_blocking(move || write_loader(&bundle, &dag_file))
            .await
            .map_err(std::io::Error::other)??;
        let scratch = tempfile::Builder::new()
            .prefix("gust-callback-")
            .tempdir()?;
        // The request holds the run's conf, which may hold a secret: a file only its owner
        // reads, never an argument.
        let request_path = scratch.path().join("request.json");
        write_private(
            &request_path,
            request_json(request, &self.work_dir.join("bundle").join(loader))
                .to_string()
                .as_bytes(),
        )?;
        let airflow_home = self.work_dir.join("airflow-home");
        std::fs::create_dir_all(&airflow_home)?;
        log.line("gust", &format!("running {what}")).await?;
        let mut child = Command::new(&self.interpreter)
            .arg("-c")
            .arg(RUNNER)
            .arg(&request_path)
            .env("AIRFLOW_HOME", &airflow_home)
            .env("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
            .env("AIRFLOW__DAG_FACTORY__ENABLE_TELEMETRY", "False")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
            return Err(std::io::Error::other("the callback's output is not piped"));
        };
        let mut out = BufReader::new(stdout).lines();
        let mut err = BufReader::new(stderr).lines();
        let (mut out_open, mut err_open) = (true, true);
        let deadline = tokio::time::sleep(CALLBACK_TIMEOUT);
        tokio::pin!(deadline);
        while out_open || err_open {
            tokio::select! {
                line = out.next_line(), if out_open => match line? {
                    Some(line) => log.line("callback", &gust_executor::task_sdk::log_line(line)).await?,
                    None => out_open = false,
                },
                line = err.next_line(), if err_open => match line? {
                    Some(line) => log.line("callback", &gust_executor::task_sdk::log_line(line)).await?,
                    None => err_open = false,
                },
                () = &mut deadline => {
                    child.kill().await?;
                    log.line("gust", &format!("{what} ran past {}s and was killed", CALLBACK_TIMEOUT.as_secs())).await?;
                    log.flush().await?;
                    return Ok(());
                }
            }
        }
        let status = child.wait().await?;
        let end = if status.success() {
            format!("{what} ran")
        } else {
            format!("{what} failed ({status})")
        };
        log.line("gust", &end).await?;
        log.flush().await
    }
}

/// What `callbacks.py` reads: the loader, the DAG, the run and the task instance.
fn request_json(request: &CallbackRequest, loader: &std::path::Path) -> serde_json::Value {
    let run = &request.run;
    let (interval_start, interval_end) = run.data_interval.unzip();
    serde_json::json!({
        "loader": loader,
        "dag_id": request.dag_id.as_str(),
        "dag_file": request.dag_file,
        "event": request.kind.event(),
        "of_dag": matches!(request.kind, CallbackKind::DagSuccess | CallbackKind::DagFailure),
        "reason": request.reason,
        "task": request.task.as_ref().map(|task| serde_json::json!({
            "task_id": task.task_id.as_str(),
            "try_number": task.try_number,
            "state": task.state,
        })),
        "dag_run": {
            "dag_id": request.dag_id.as_str(),
            "run_id": request.run_id.as_str(),
            "logical_date": request.logical_date,
            "data_interval_start": interval_start,
            "data_interval_end": interval_end,
            "run_after": run.run_after.or(interval_end).or(run.start_date).or(request.logical_date),
            "start_date": run.start_date,
            "end_date": null,
            "clear_number": 0,
            "run_type": if run.run_type.is_empty() { "manual" } else { run.run_type.as_str() },
            "state": request.run_state,
            "conf": run.conf,
            "triggering_user_name": null,
            "consumed_asset_events": [],
            "partition_key": null,
            "partition_date": null,
            "note": null,
            "team_name": null,
        },
    })
}
