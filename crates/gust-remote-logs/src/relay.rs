//! The event relay between the runtimes and the scheduler, and the executor decorator that
//! tells it where each try's log is.
//!
//! Ordering is the point: a try's `Finished` event is forwarded only after its log's upload
//! ended (stored, or given up on and noted in the log), so once the scheduler records a try's
//! end its log is in the store. Other events are not held up: `Started` passes at once and each
//! upload runs on its own task, [`RemoteLogOptions::concurrency`] at a time. A crash before the
//! forward loses nothing: the scheduler never recorded the end, adopts the try on restart, the
//! runtime reports its end again, and the log is uploaded then.

use std::path::Path;
use std::sync::Arc;

use gust_executor::try_log::LogWriter;
use gust_executor::{
    Executor, LaunchError, LaunchSpec, TryEvent, TryEventKind, TryKey, TryOutcome,
};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use crate::{RemoteLogOptions, RemoteLogs};

/// The running relay: runtimes report to [`Relay::sender`]; [`Relay::stop`] ends it.
pub struct Relay {
    sender: mpsc::Sender<TryEvent>,
    stop: CancellationToken,
    task: JoinHandle<()>,
    logs: RemoteLogs,
}

impl Relay {
    pub(crate) fn start(logs: RemoteLogs, to_scheduler: mpsc::Sender<TryEvent>) -> Self {
        let (sender, from_runtimes) = gust_executor::event_channel();
        let stop = CancellationToken::new();
        let task = tokio::spawn(run(logs.clone(), from_runtimes, to_scheduler, stop.clone()));
        Self {
            sender,
            stop,
            task,
            logs,
        }
    }

    /// The channel runtimes report their events on (instead of the scheduler's).
    #[must_use]
    pub fn sender(&self) -> mpsc::Sender<TryEvent> {
        self.sender.clone()
    }

    /// Stops relaying: uploads still running are dropped and their events not forwarded (the
    /// scheduler has stopped; its successor adopts those tries and their logs are uploaded at
    /// their end then). Waits for deletions of local logs in progress.
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
        self.logs.cleaned_up().await;
    }
}

/// Relays until stopped, or until every runtime is gone and the last upload forwarded.
async fn run(
    logs: RemoteLogs,
    mut from_runtimes: mpsc::Receiver<TryEvent>,
    to_scheduler: mpsc::Sender<TryEvent>,
    stop: CancellationToken,
) {
    let permits = Arc::new(Semaphore::new(logs.0.options.concurrency.max(1)));
    let mut uploads = JoinSet::new();
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            Some(_) = uploads.join_next(), if !uploads.is_empty() => {}
            event = from_runtimes.recv() => {
                let Some(event) = event else { break };
                match &event.kind {
                    TryEventKind::Finished(outcome) if *outcome != TryOutcome::NeverStarted => {
                        let (logs, to, permits) = (logs.clone(), to_scheduler.clone(), permits.clone());
                        uploads.spawn(async move {
                            if let Ok(permit) = permits.acquire_owned().await {
                                logs.upload(&event.key).await;
                                drop(permit);
                            }
                            // Gone only when the scheduler is stopping: it adopts the try again.
                            let _ = to.send(event).await;
                        });
                    }
                    _ => {
                        let _ = to_scheduler.send(event).await;
                    }
                }
            }
        }
    }
    // Every runtime is gone: finish the uploads under way.
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            next = uploads.join_next() => if next.is_none() { return },
        }
    }
}

impl RemoteLogs {
    /// Uploads `key`'s log, trying again on transient failures; on final failure, says so at
    /// the end of the local log. A try that wrote no log has nothing to upload.
    async fn upload(&self, key: &TryKey) {
        let path = self.local_path(key);
        if !tokio::fs::try_exists(&path).await.unwrap_or(false) {
            tracing::debug!(%key, path = %path.display(), "no log to upload");
            return;
        }
        let uri = self.uri_for(key, &path);
        let RemoteLogOptions {
            attempts,
            initial_backoff,
            ..
        } = self.0.options;
        let attempts = attempts.max(1);
        let mut attempt = 1;
        loop {
            match self.0.store.put(&path, &uri).await {
                Ok(()) => {
                    self.mark_uploaded(key, &path);
                    tracing::debug!(%key, %uri, "log uploaded");
                    return;
                }
                Err(failure) if failure.transient && attempt < attempts => {
                    tracing::warn!(%key, %uri, attempt, "uploading the log failed, trying again: {}", failure.message);
                    let factor = 2u32.saturating_pow(attempt - 1);
                    tokio::time::sleep(initial_backoff.saturating_mul(factor)).await;
                    attempt += 1;
                }
                Err(failure) => {
                    tracing::warn!(%key, %uri, attempt, "uploading the log failed: {}", failure.message);
                    self.note_failure(&path, &uri, &failure.message, attempt)
                        .await;
                    return;
                }
            }
        }
    }

    /// Appends the reason the upload failed to the local log, which is then the only copy.
    async fn note_failure(&self, path: &Path, uri: &str, message: &str, attempts: u32) {
        let tries = if attempts == 1 {
            "1 try".to_owned()
        } else {
            format!("{attempts} tries")
        };
        // One line: a store's answer (an XML error body) can span several.
        let message = message.split_whitespace().collect::<Vec<_>>().join(" ");
        let line = format!(
            "could not upload this log to {uri} after {tries}: {message}; it is kept only in \
             this host's log folder"
        );
        let written = async {
            let mut log = LogWriter::open(path, self.0.clock.as_ref()).await?;
            log.line("gust", &line).await?;
            log.flush().await
        };
        if let Err(err) = written.await {
            tracing::warn!(path = %path.display(), %err, "could not note the failed upload in the log");
        }
    }
}

/// The runtimes' executor, telling the relay where each try's log is.
pub(crate) struct Uploading {
    runtimes: Arc<dyn Executor>,
    logs: RemoteLogs,
}

impl Uploading {
    pub(crate) fn new(runtimes: Arc<dyn Executor>, logs: RemoteLogs) -> Self {
        Self { runtimes, logs }
    }
}

impl Executor for Uploading {
    fn start(&self, spec: LaunchSpec) -> Result<(), LaunchError> {
        let key = spec.key.clone();
        self.logs.track(&spec);
        let started = self.runtimes.start(spec);
        if started.is_err() {
            self.logs.tries().remove(&key);
        }
        started
    }

    fn prepare(&self, spec: &LaunchSpec) {
        self.runtimes.prepare(spec);
    }

    fn discard(&self, key: &TryKey) {
        self.runtimes.discard(key);
    }

    fn kill(&self, key: &TryKey, reason: &str) {
        self.runtimes.kill(key, reason);
    }

    fn running(&self) -> usize {
        self.runtimes.running()
    }

    fn adopt(&self, spec: LaunchSpec) {
        self.logs.track(&spec);
        self.runtimes.adopt(spec);
    }

    fn release(&self, key: &TryKey) {
        self.runtimes.release(key);
        self.logs.release(key);
    }

    fn sweep(&self, scope: gust_executor::SweepScope) {
        self.runtimes.sweep(scope);
    }
}

#[cfg(test)]
mod tests;
