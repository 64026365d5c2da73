//! The warm worker: one long-lived `[python] interpreter` process per runtime
//! (`warm_worker.py`) that has imported Airflow's task runner and dag-factory once, and forks a
//! child per Python try, as Airflow's LocalExecutor runs tasks from a process that has already
//! imported Airflow. A try then pays a fork instead of an interpreter's start-up and imports
//! (about two seconds).
//!
//! The try's plan is unchanged but for its command: its bash runs a small client
//! (`warm_client.py`, Python without `site`, a few milliseconds) that hands the worker its
//! stdin, stdout and stderr and waits for its child. The child joins the try's process group
//! and holds its descriptors, so the try's output, kill, timeout and crash record (its lock is
//! the process's stdin) work exactly as for a freshly started interpreter. A client whose worker
//! is still starting waits for it (rather than importing Airflow beside it); when no worker
//! answers (none starting, or it died), the client starts the task runner in a fresh
//! interpreter itself: a try never fails for want of the worker.
//!
//! The worker is started on the first Python try, is started again when it ends (at most once a
//! minute if it keeps ending), and ends with the runtime (it reads its stdin, which Gust holds,
//! to its end). `[core] execute_tasks_new_python_interpreter = true` turns it off, as it turns off
//! forking in Airflow.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tokio_util::sync::CancellationToken;

/// The worker's script.
const SERVER: &str = include_str!("warm_worker.py");
/// The client's script, written beside the socket.
const CLIENT: &str = include_str!("warm_client.py");

/// How long a worker that ended waits before it is started again, doubling while it keeps
/// ending soon after starting (a venv without Airflow), up to [`LONGEST_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_secs(1);
const LONGEST_PAUSE: Duration = Duration::from_secs(60);
/// A worker that ran this long was fine: the pause starts over.
const HEALTHY_RUN: Duration = Duration::from_secs(60);

/// Forks Python tries from one warm process (see the module's documentation).
pub struct WarmWorker {
    /// Holds the socket and the client (removed with the worker): a short path of its own,
    /// since a Unix socket's path may not be longer than 107 bytes.
    folder: tempfile::TempDir,
    started: Mutex<bool>,
    stop: CancellationToken,
}

impl std::fmt::Debug for WarmWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WarmWorker")
            .field("folder", &self.folder.path())
            .finish_non_exhaustive()
    }
}

/// What the worker is started with: the same interpreter and constant environment as every
/// try, since Airflow reads some settings once, when its modules are imported (the heartbeat
/// timeout among them).
#[derive(Debug, Clone)]
pub(crate) struct Launch {
    pub interpreter: PathBuf,
    pub env: Vec<(String, String)>,
    pub cwd: PathBuf,
}

impl WarmWorker {
    /// A worker, not started until a try asks for it.
    ///
    /// # Errors
    /// When its folder (in the system's temporary folder) cannot be made.
    pub fn new() -> std::io::Result<Arc<Self>> {
        let folder = tempfile::Builder::new().prefix("gust-warm-").tempdir()?;
        std::fs::write(folder.path().join("client.py"), CLIENT)?;
        Ok(Arc::new(Self {
            folder,
            started: Mutex::new(false),
            stop: CancellationToken::new(),
        }))
    }

    /// The socket tries' clients connect to.
    pub(crate) fn socket(&self) -> PathBuf {
        self.folder.path().join("worker.sock")
    }

    /// The client's script.
    pub(crate) fn client(&self) -> PathBuf {
        self.folder.path().join("client.py")
    }

    /// Names the process a starting worker's clients wait for while it lives: this process
    /// until the worker runs, then the worker, until it ends.
    fn starting(&self) -> PathBuf {
        self.folder.path().join("worker.pid")
    }

    /// Starts the worker's driver unless it runs: called as a try is planned (its client waits
    /// for a starting worker). Needs a Tokio runtime.
    pub(crate) fn ensure_started(&self, launch: &Launch) {
        let mut started = self.started.lock().unwrap_or_else(PoisonError::into_inner);
        if *started {
            return;
        }
        *started = true;
        // Written before the driver runs, so that the first try's client, which may start
        // before the worker does, waits for it rather than importing Airflow beside it.
        let _ = std::fs::write(self.starting(), std::process::id().to_string());
        let driver = Driver {
            launch: launch.clone(),
            socket: self.socket(),
            starting: self.starting(),
            stop: self.stop.clone(),
        };
        tokio::spawn(driver.run());
    }
}

impl Drop for WarmWorker {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Runs the worker process, again whenever it ends, until stopped.
struct Driver {
    launch: Launch,
    socket: PathBuf,
    starting: PathBuf,
    stop: CancellationToken,
}

impl Driver {
    async fn run(self) {
        let mut pause = FIRST_PAUSE;
        loop {
            let began = tokio::time::Instant::now();
            let served = self.serve().await;
            // Clients start their own interpreter until a worker starts again.
            let _ = std::fs::remove_file(&self.starting);
            match served {
                Ok(true) => return,
                Ok(false) => {}
                Err(err) => tracing::warn!(
                    interpreter = %self.launch.interpreter.display(),
                    error = %err,
                    "the warm Python worker could not start; Python tries start their own interpreter"
                ),
            }
            pause = if began.elapsed() >= HEALTHY_RUN {
                FIRST_PAUSE
            } else {
                (pause * 2).min(LONGEST_PAUSE)
            };
            tokio::select! {
                () = self.stop.cancelled() => return,
                () = tokio::time::sleep(pause) => {}
            }
            let _ = std::fs::write(&self.starting, std::process::id().to_string());
        }
    }

    /// Runs the worker once: `Ok(true)` when it was stopped, `Ok(false)` when it ended.
    async fn serve(&self) -> std::io::Result<bool> {
        // A socket left by a worker that ended would refuse clients; the new one binds anew.
        remove_stale(&self.socket);
        let mut child = Command::new(&self.launch.interpreter)
            .arg("-c")
            .arg(SERVER)
            .arg(&self.socket)
            .envs(self.launch.env.iter().map(|(k, v)| (k, v)))
            .current_dir(&self.launch.cwd)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        if let Some(pid) = child.id() {
            std::fs::write(&self.starting, pid.to_string())?;
        }
        tracing::info!(pid = ?child.id(), "the warm Python worker started");
        // Its own output is what importing Airflow prints (deprecation warnings): the
        // scheduler's log, masked, rather than every try's.
        for output in [
            child
                .stdout
                .take()
                .map(|o| Box::new(o) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
            child
                .stderr
                .take()
                .map(|o| Box::new(o) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
        ]
        .into_iter()
        .flatten()
        {
            tokio::spawn(async move {
                let mut lines = BufReader::new(output).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    tracing::info!(target: "gust::warm_worker", "{}", gust_secrets::mask(&line));
                }
            });
        }
        // Held until the end: the worker ends when it closes.
        let stdin = child.stdin.take();
        let stopped = tokio::select! {
            () = self.stop.cancelled() => true,
            status = child.wait() => {
                tracing::warn!(status = ?status.ok(), "the warm Python worker ended");
                false
            }
        };
        drop(stdin);
        if stopped {
            // Its children (running tries) are in their tries' process groups: they go on.
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
        remove_stale(&self.socket);
        Ok(stopped)
    }
}

fn remove_stale(socket: &Path) {
    let _ = std::fs::remove_file(socket);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_socket_path_fits_a_unix_socket() {
        let worker = WarmWorker::new().expect("a folder");
        assert!(
            worker.socket().as_os_str().len() < 100,
            "{:?}",
            worker.socket()
        );
        assert!(worker.client().is_file());
    }
}
