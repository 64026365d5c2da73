//! Container output: what each container printed, with the time it printed it.
//!
//! The kubelet appends lines as a container prints them and finishes the log when the container
//! ends; followers wait on a watch channel instead of polling. Formatting for the log endpoint
//! (timestamps, sinceTime, tailLines) lives in the server; this module only keeps the lines.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use k8s_openapi::jiff::Timestamp;
use tokio::sync::watch;

use crate::lock;
use crate::store::PodKey;

/// One printed line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct LogLine {
    /// When the container printed it.
    pub(crate) at: Timestamp,
    /// The text, without its newline.
    pub(crate) text: String,
}

/// How far a container's log has got.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Progress {
    /// Lines printed so far.
    pub(crate) lines: usize,
    /// Whether the container has ended, so no line will follow.
    pub(crate) finished: bool,
}

/// The output of one container.
#[derive(Debug)]
pub(crate) struct ContainerLog {
    lines: Mutex<Vec<LogLine>>,
    progress: watch::Sender<Progress>,
}

impl ContainerLog {
    fn new() -> Self {
        ContainerLog {
            lines: Mutex::new(Vec::new()),
            progress: watch::Sender::new(Progress::default()),
        }
    }

    /// Appends a printed line.
    pub(crate) fn append(&self, at: Timestamp, text: String) {
        let mut lines = lock(&self.lines);
        lines.push(LogLine { at, text });
        let count = lines.len();
        self.progress.send_modify(|progress| progress.lines = count);
    }

    /// Marks the log complete: followers end once they have read every line.
    pub(crate) fn finish(&self) {
        self.progress
            .send_modify(|progress| progress.finished = true);
    }

    /// The lines from index `from` on, and whether the log is complete.
    pub(crate) fn read_from(&self, from: usize) -> (Vec<LogLine>, bool) {
        let finished = self.progress.borrow().finished;
        let lines = lock(&self.lines);
        (lines.get(from..).unwrap_or_default().to_vec(), finished)
    }

    /// A receiver woken whenever a line is appended or the log finishes.
    pub(crate) fn subscribe(&self) -> watch::Receiver<Progress> {
        self.progress.subscribe()
    }
}

/// The logs of every container of every pod.
#[derive(Debug, Default)]
pub(crate) struct Logs {
    containers: Mutex<HashMap<PodKey, HashMap<String, Arc<ContainerLog>>>>,
}

impl Logs {
    /// The log of `container` in the pod, created empty on first use.
    pub(crate) fn container(&self, pod: &PodKey, container: &str) -> Arc<ContainerLog> {
        let mut containers = lock(&self.containers);
        let logs = containers.entry(pod.clone()).or_default();
        Arc::clone(
            logs.entry(container.to_owned())
                .or_insert_with(|| Arc::new(ContainerLog::new())),
        )
    }

    /// Finishes every log of the pod, when its containers are stopped all at once.
    pub(crate) fn finish_pod(&self, pod: &PodKey) {
        if let Some(logs) = lock(&self.containers).get(pod) {
            logs.values().for_each(|log| log.finish());
        }
    }

    /// Finishes and forgets the pod's logs, when the pod is removed.
    pub(crate) fn remove_pod(&self, pod: &PodKey) {
        if let Some(logs) = lock(&self.containers).remove(pod) {
            logs.values().for_each(|log| log.finish());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn followers_are_woken_by_new_lines_and_by_the_end() {
        let logs = Logs::default();
        let key = PodKey::new("ns", "p");
        let log = logs.container(&key, "base");
        let mut progress = log.subscribe();
        log.append(Timestamp::UNIX_EPOCH, "hello".to_owned());
        progress.changed().await.unwrap();
        assert_eq!(progress.borrow_and_update().lines, 1);
        logs.finish_pod(&key);
        progress.changed().await.unwrap();
        assert!(progress.borrow().finished);
        let (lines, finished) = log.read_from(0);
        assert_eq!(lines.len(), 1);
        assert!(finished);
    }
}
