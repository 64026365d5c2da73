//! The tries a runtime is running: a handle per try to stop it (and say why), and the task that
//! reports each try's end. Shared by every runtime so that kill, shutdown and reporting behave
//! the same whatever runs the try.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::{LaunchError, TryEvent, TryEventKind, TryKey, TryOutcome};

/// How a running try is stopped, and why it was.
#[derive(Clone, Default)]
pub struct TryHandle {
    /// Cancelled by a kill request or by the runtime's shutdown.
    pub cancel: CancellationToken,
    /// Set once, by the first kill request; unset when the runtime shuts down.
    reason: Arc<OnceLock<String>>,
}

impl TryHandle {
    /// Why the try was killed; `None` when the runtime is shutting down instead.
    #[must_use]
    pub fn kill_reason(&self) -> Option<String> {
        self.reason.get().cloned()
    }

    /// Why the try was stopped, for its failure.
    #[must_use]
    pub fn reason(&self) -> String {
        self.kill_reason()
            .unwrap_or_else(|| "the runtime is shutting down".to_owned())
    }
}

/// A runtime's running tries, by key.
pub struct RunningTries {
    tries: Mutex<HashMap<TryKey, TryHandle>>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    events: mpsc::Sender<TryEvent>,
}

impl RunningTries {
    /// Tries stopped by `shutdown`, their tasks owned by `tasks`, their ends reported on
    /// `events`.
    #[must_use]
    pub fn new(
        shutdown: CancellationToken,
        tasks: TaskTracker,
        events: mpsc::Sender<TryEvent>,
    ) -> Self {
        Self {
            tries: Mutex::new(HashMap::new()),
            shutdown,
            tasks,
            events,
        }
    }

    fn tries(&self) -> MutexGuard<'_, HashMap<TryKey, TryHandle>> {
        // Single inserts and removes only: a poisoned map is still whole.
        self.tries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a new try; refused when one with the key runs or the runtime is stopping.
    pub fn register(&self, key: &TryKey) -> Result<TryHandle, LaunchError> {
        if self.shutdown.is_cancelled() {
            return Err(LaunchError::ShuttingDown);
        }
        let mut tries = self.tries();
        if tries.contains_key(key) {
            return Err(LaunchError::AlreadyRunning(key.clone()));
        }
        let handle = TryHandle {
            cancel: self.shutdown.child_token(),
            reason: Arc::default(),
        };
        tries.insert(key.clone(), handle.clone());
        Ok(handle)
    }

    /// Runs `try_run` on the runtime's tasks, then forgets the try and reports how it ended.
    pub fn spawn<F>(self: &Arc<Self>, key: TryKey, try_run: F)
    where
        F: Future<Output = TryOutcome> + Send + 'static,
    {
        let this = Arc::clone(self);
        self.tasks.spawn(async move {
            let outcome = try_run.await;
            this.tries().remove(&key);
            // The receiver is gone only when the scheduler is shutting down: nothing to tell.
            let _ = this
                .events
                .send(TryEvent {
                    key,
                    kind: TryEventKind::Finished(outcome),
                })
                .await;
        });
    }

    /// Asks the try to stop, for `reason`; a try that is not running is left alone.
    pub fn kill(&self, key: &TryKey, reason: &str) {
        if let Some(handle) = self.tries().get(key) {
            let _ = handle.reason.set(reason.to_owned());
            handle.cancel.cancel();
        }
    }

    /// How many tries run.
    #[must_use]
    pub fn len(&self) -> usize {
        self.tries().len()
    }

    /// Whether none runs.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Reports that `key` started.
    pub async fn started(&self, key: &TryKey) {
        let _ = self
            .events
            .send(TryEvent {
                key: key.clone(),
                kind: TryEventKind::Started,
            })
            .await;
    }
}

impl TryOutcome {
    /// The closing line of a try's log.
    #[must_use]
    pub fn summary(&self) -> String {
        match self {
            Self::Succeeded { .. } => "try succeeded".to_owned(),
            Self::SucceededReporting { skip, .. } if skip.is_empty() => "try succeeded".to_owned(),
            Self::SucceededReporting { skip, .. } => {
                format!("try succeeded; skipping downstream: {}", skip.join(", "))
            }
            Self::Skipped { exit_code } => {
                format!("exit code {exit_code} is a skip code: task skipped")
            }
            Self::SkippedItself { reason } => format!("task skipped: {reason}"),
            Self::Rescheduled { at } => format!(
                "rescheduled: the same try runs again at {}",
                at.format("%Y-%m-%dT%H:%M:%SZ")
            ),
            Self::Deferred(deferral) => format!(
                "deferred to trigger {}: the same try resumes in {} once it fires",
                deferral.classpath, deferral.next_method
            ),
            Self::Failed(reason) => format!("try failed: {reason}"),
            Self::NeverStarted => "the try never started; it will be queued again".to_owned(),
        }
    }
}
