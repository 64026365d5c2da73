//! The Python triggerer: ONE long-lived `[python] interpreter` process per scheduler
//! (`triggerer.py`), started on first need, that runs every trigger Gust cannot run natively
//! concurrently on one asyncio loop, as Airflow's triggerer does. It is told which triggers to
//! run and cancel in JSON lines on its stdin and answers each one's end on its stdout; the ends
//! are reported as [`TriggerFired`] on the scheduler's channel.
//!
//! If the process dies, it is started again (after a short pause) and given every trigger it
//! was running: a trigger restarts from its kwargs, as on a new Airflow triggerer.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use gust_executor::TryKey;
use gust_executor::deferral::{EndState, TriggerFired, TriggerResult, TriggerRunner, TriggerSpec};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

/// The triggerer's script.
const SCRIPT: &str = include_str!("triggerer.py");

/// How long a triggerer that died waits before it is started again.
const RESTART_PAUSE: Duration = Duration::from_secs(1);

/// The longest line the triggerer may answer with (an event's payload): longer is refused.
const MAX_LINE_BYTES: usize = 16 * 1024 * 1024;

/// Runs triggers in one Python process (see the module's documentation).
pub struct PythonTriggerer {
    interpreter: PathBuf,
    work_dir: PathBuf,
    fired: mpsc::Sender<TriggerFired>,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
}

impl std::fmt::Debug for PythonTriggerer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PythonTriggerer")
            .field("interpreter", &self.interpreter)
            .finish_non_exhaustive()
    }
}

/// What the caller and the process's driver share.
#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    wake: Notify,
}

#[derive(Default)]
struct State {
    /// The driver task runs (the process was needed once).
    started: bool,
    next_id: u64,
    /// The triggers running, by their id in the process.
    running: HashMap<u64, TriggerSpec>,
    ids: HashMap<TryKey, u64>,
    /// Requests not yet written to the process.
    outbox: VecDeque<String>,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn run_line(id: u64, spec: &TriggerSpec) -> String {
    serde_json::json!({
        "op": "run",
        "id": id.to_string(),
        "classpath": spec.classpath,
        "kwargs": spec.kwargs,
        "path": spec.dag_folder,
    })
    .to_string()
}

impl PythonTriggerer {
    /// A triggerer running `interpreter`, with the Python runtime's `work_dir` (its
    /// `AIRFLOW_HOME`), reporting on `fired`; its process ends with `shutdown`.
    #[must_use]
    pub fn new(
        interpreter: PathBuf,
        work_dir: PathBuf,
        fired: mpsc::Sender<TriggerFired>,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            interpreter,
            work_dir,
            fired,
            shared: Arc::default(),
            shutdown,
        }
    }

    /// How many triggers run now.
    #[must_use]
    pub fn running(&self) -> usize {
        self.shared.state().running.len()
    }

    fn start_driver(&self) {
        let driver = Driver {
            interpreter: self.interpreter.clone(),
            work_dir: self.work_dir.clone(),
            fired: self.fired.clone(),
            shared: self.shared.clone(),
            shutdown: self.shutdown.clone(),
        };
        tokio::spawn(driver.run());
    }
}

impl TriggerRunner for PythonTriggerer {
    fn run(&self, spec: TriggerSpec) {
        let mut state = self.shared.state();
        if state.ids.contains_key(&spec.key) {
            return;
        }
        state.next_id += 1;
        let id = state.next_id;
        state.ids.insert(spec.key.clone(), id);
        state.outbox.push_back(run_line(id, &spec));
        state.running.insert(id, spec);
        if !std::mem::replace(&mut state.started, true) {
            drop(state);
            self.start_driver();
        }
        self.shared.wake.notify_one();
    }

    fn cancel(&self, key: &TryKey) {
        let mut state = self.shared.state();
        let Some(id) = state.ids.remove(key) else {
            return;
        };
        state.running.remove(&id);
        state
            .outbox
            .push_back(serde_json::json!({"op": "cancel", "id": id.to_string()}).to_string());
        drop(state);
        self.shared.wake.notify_one();
    }
}

/// Keeps the process running and talks to it.
struct Driver {
    interpreter: PathBuf,
    work_dir: PathBuf,
    fired: mpsc::Sender<TriggerFired>,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
}

impl Driver {
    async fn run(self) {
        loop {
            match self.spawn() {
                Ok(child) => {
                    self.talk(child).await;
                }
                Err(err) => {
                    tracing::error!(interpreter = %self.interpreter.display(), error = %err, "the Python triggerer could not start");
                }
            }
            if self.shutdown.is_cancelled() {
                return;
            }
            tokio::select! {
                () = tokio::time::sleep(RESTART_PAUSE) => {}
                () = self.shutdown.cancelled() => return,
            }
            // The new process runs every trigger the old one had.
            let mut state = self.shared.state();
            let lines: Vec<String> = state
                .running
                .iter()
                .map(|(id, spec)| run_line(*id, spec))
                .collect();
            state.outbox = lines.into();
        }
    }

    fn spawn(&self) -> std::io::Result<Child> {
        let airflow_home = self.work_dir.join("airflow-home");
        std::fs::create_dir_all(&airflow_home)?;
        Command::new(&self.interpreter)
            .arg("-c")
            .arg(SCRIPT)
            .env("AIRFLOW_HOME", &airflow_home)
            .env("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
    }

    /// Writes requests to `child` and reads its answers until it exits (or shutdown).
    async fn talk(&self, mut child: Child) {
        let (Some(mut stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return;
        };
        tracing::info!(pid = ?child.id(), "the Python triggerer started");
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                tracing::info!(target: "gust::triggerer", "{}", gust_secrets::mask(&line));
            }
        });
        let mut answers = BufReader::new(stdout);
        let mut line = Vec::new();
        loop {
            if let Err(err) = self.flush(&mut stdin).await {
                tracing::warn!(error = %err, "could not write to the Python triggerer");
                break;
            }
            // A read cut short by a wake-up keeps what it read in `line` and goes on next time.
            tokio::select! {
                read = read_line(&mut answers, &mut line) => match read {
                    Ok(0) | Err(_) => break,
                    Ok(_) if line.ends_with(b"\n") => {
                        self.answer(&line).await;
                        line.clear();
                    }
                    Ok(_) => {}
                },
                () = self.shared.wake.notified() => {}
                () = self.shutdown.cancelled() => {
                    let _ = child.start_kill();
                    return;
                }
            }
        }
        // Gone, or unusable (an answer over the limit, a broken pipe): it is ended either way.
        let _ = child.start_kill();
        let status = child.wait().await;
        tracing::warn!(status = ?status.ok(), "the Python triggerer exited; starting it again");
    }

    async fn flush(&self, stdin: &mut ChildStdin) -> std::io::Result<()> {
        let lines: Vec<String> = self.shared.state().outbox.drain(..).collect();
        for line in lines {
            stdin.write_all(line.as_bytes()).await?;
            stdin.write_all(b"\n").await?;
        }
        stdin.flush().await
    }

    /// One answer: the trigger's end, reported once (not if it was cancelled meanwhile).
    async fn answer(&self, line: &[u8]) {
        let Ok(answer) = serde_json::from_slice::<serde_json::Value>(line) else {
            tracing::warn!("the Python triggerer answered an unreadable line");
            return;
        };
        let Some(id) = answer
            .get("id")
            .and_then(serde_json::Value::as_str)
            .and_then(|id| id.parse::<u64>().ok())
        else {
            return;
        };
        let Some(result) = read_result(&answer) else {
            tracing::warn!(
                id,
                "the Python triggerer answered neither an event nor an error"
            );
            return;
        };
        let spec = {
            let mut state = self.shared.state();
            let spec = state.running.remove(&id);
            if let Some(spec) = &spec {
                state.ids.remove(&spec.key);
            }
            spec
        };
        if let Some(spec) = spec {
            let _ = self
                .fired
                .send(TriggerFired {
                    key: spec.key,
                    result,
                })
                .await;
        }
    }
}

/// A line of at most [`MAX_LINE_BYTES`] (a longer one is an error: the process restarts).
async fn read_line<R: tokio::io::AsyncBufRead + Unpin>(
    reader: &mut R,
    line: &mut Vec<u8>,
) -> std::io::Result<usize> {
    let read = reader.read_until(b'\n', line).await?;
    if line.len() > MAX_LINE_BYTES {
        return Err(std::io::Error::other("an answer over the line limit"));
    }
    Ok(read)
}

fn read_result(answer: &serde_json::Value) -> Option<TriggerResult> {
    if let Some(payload) = answer.get("event") {
        return Some(TriggerResult::Event(payload.clone()));
    }
    if let Some(end) = answer.get("end").and_then(serde_json::Value::as_str) {
        return Some(match end {
            "success" => TriggerResult::EndTask(EndState::Success),
            "skipped" => TriggerResult::EndTask(EndState::Skipped),
            "failed" => TriggerResult::EndTask(EndState::Failed),
            other => TriggerResult::Failed(vec![format!(
                "the trigger ended its task in state {other:?}, which Gust cannot set"
            )]),
        });
    }
    let lines = answer.get("error")?.as_array()?;
    Some(TriggerResult::Failed(
        lines
            .iter()
            .filter_map(serde_json::Value::as_str)
            .map(|l| gust_secrets::mask(l.trim_end_matches('\n')))
            .collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_become_results() {
        let event = serde_json::json!({"id": "1", "event": {"a": 1}});
        assert_eq!(
            read_result(&event),
            Some(TriggerResult::Event(serde_json::json!({"a": 1})))
        );
        let end = serde_json::json!({"id": "1", "end": "success"});
        assert_eq!(
            read_result(&end),
            Some(TriggerResult::EndTask(EndState::Success))
        );
        let error = serde_json::json!({"id": "1", "error": ["Traceback\n", "boom\n"]});
        assert_eq!(
            read_result(&error),
            Some(TriggerResult::Failed(vec![
                "Traceback".to_owned(),
                "boom".to_owned()
            ]))
        );
        assert_eq!(read_result(&serde_json::json!({"id": "1"})), None);
    }
}
