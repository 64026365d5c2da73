//! Watches: newline-delimited `{"type":...,"object":...}` events over a chunked response.
//!
//! A watch replays the history after its resourceVersion, then follows the store's broadcast
//! channel; no polling. Without a resourceVersion (or with `0`, or `sendInitialEvents=true`) it
//! first sends the current pods as `ADDED`. A resourceVersion older than the history answers one
//! `ERROR` event carrying a 410 `Expired` status, as the real API server does, so kube-runtime's
//! watcher re-lists. Bookmarks carry the last resourceVersion the watch has passed.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use k8s_openapi::api::core::v1::Pod;
use serde_json::json;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::time::{Interval, Sleep};
use tokio_util::sync::CancellationToken;

use super::pods::PodFilter;
use super::query::Query;
use crate::cluster::ClusterState;
use crate::status::{ApiError, expired};
use crate::store::{Change, Expired, WatchRecord};

/// How often a watch that allows bookmarks gets one (the real API server: about a minute).
const BOOKMARK_INTERVAL: Duration = Duration::from_secs(1);

/// Answers a watch request.
pub(crate) fn serve(
    state: &Arc<ClusterState>,
    filter: PodFilter,
    query: &Query,
) -> Result<Response, ApiError> {
    let requested = match query.get("resourceVersion") {
        None | Some("" | "0") => None,
        Some(text) => Some(text.parse::<u64>().map_err(|_| {
            ApiError::bad_request(format!("resourceVersion: Invalid value: {text:?}"))
        })?),
    };
    let send_initial = query.flag("sendInitialEvents")?;
    let bookmarks = query.flag("allowWatchBookmarks")?;
    let timeout = query.number::<u64>("timeoutSeconds")?;
    let mut pending = VecDeque::new();
    let subscription = {
        let store = state.store();
        let start = match requested {
            Some(requested) if !send_initial => requested,
            _ => store.resource_version(),
        };
        let subscription = store.subscribe(start);
        if subscription.is_ok() && (requested.is_none() || send_initial) {
            for (_, pod) in store.pods().filter(|(_, pod)| filter.matches(pod)) {
                pending.push_back(line(
                    "ADDED",
                    &serde_json::to_vec(&**pod).unwrap_or_default(),
                ));
            }
        }
        subscription
    };
    let session = match subscription {
        Err(Expired { requested, oldest }) => {
            pending.push_back(error_line(requested, oldest));
            WatchSession::finished(state, pending)
        }
        Ok(subscription) => {
            if send_initial && bookmarks {
                pending.push_back(bookmark(subscription.resource_version, true));
            }
            WatchSession {
                state: Arc::clone(state),
                filter,
                pending,
                replay: subscription.replay.into(),
                live: Some(subscription.live),
                progress: subscription
                    .resource_version
                    .min(requested.unwrap_or(u64::MAX)),
                bookmarks: bookmarks.then(|| {
                    let start = tokio::time::Instant::now() + BOOKMARK_INTERVAL;
                    tokio::time::interval_at(start, BOOKMARK_INTERVAL)
                }),
                deadline: timeout
                    .map(|seconds| Box::pin(tokio::time::sleep(Duration::from_secs(seconds)))),
                breaker: state.breaker(),
                shutdown: state.shutdown.clone(),
            }
        }
    };
    let stream = futures::stream::unfold(session, |mut session| async move {
        session.next().await.map(|chunk| (chunk, session))
    });
    let mut response = Body::from_stream(stream).into_response();
    *response.status_mut() = StatusCode::OK;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

/// One open watch.
struct WatchSession {
    state: Arc<ClusterState>,
    filter: PodFilter,
    /// Lines ready to send.
    pending: VecDeque<Bytes>,
    /// History still to go through before live changes.
    replay: VecDeque<Arc<WatchRecord>>,
    /// Live changes; `None` once the watch has nothing more to follow.
    live: Option<broadcast::Receiver<Arc<WatchRecord>>>,
    /// The resourceVersion of the last change this watch has passed.
    progress: u64,
    bookmarks: Option<Interval>,
    deadline: Option<Pin<Box<Sleep>>>,
    breaker: CancellationToken,
    shutdown: CancellationToken,
}

impl WatchSession {
    /// A session that sends `pending` and ends.
    fn finished(state: &Arc<ClusterState>, pending: VecDeque<Bytes>) -> Self {
        WatchSession {
            state: Arc::clone(state),
            filter: PodFilter::default(),
            pending,
            replay: VecDeque::new(),
            live: None,
            progress: 0,
            bookmarks: None,
            deadline: None,
            breaker: CancellationToken::new(),
            shutdown: state.shutdown.clone(),
        }
    }

    /// The next chunk: a line, an abort (the connection is broken) or the end.
    async fn next(&mut self) -> Option<Result<Bytes, io::Error>> {
        loop {
            if let Some(line) = self.pending.pop_front() {
                return Some(Ok(line));
            }
            if let Some(record) = self.replay.pop_front() {
                self.pass(&record);
                continue;
            }
            let live = self.live.as_mut()?;
            let bookmarks = self.bookmarks.as_mut();
            let deadline = self.deadline.as_mut();
            tokio::select! {
                biased;
                () = self.breaker.cancelled() => {
                    self.live = None;
                    return Some(Err(io::Error::new(
                        io::ErrorKind::ConnectionAborted,
                        "the fake cluster broke the connection",
                    )));
                }
                () = self.shutdown.cancelled() => return None,
                () = async { match deadline { Some(deadline) => deadline.await, None => std::future::pending().await } } => return None,
                received = live.recv() => match received {
                    Ok(record) => self.pass(&record),
                    Err(RecvError::Lagged(_)) => self.catch_up(),
                    Err(RecvError::Closed) => return None,
                },
                _ = async { match bookmarks { Some(interval) => interval.tick().await, None => std::future::pending().await } } => {
                    self.pending.push_back(bookmark(self.progress, false));
                }
            }
        }
    }

    /// Sends the record if the filter selects it, as the event type the watcher must see.
    fn pass(&mut self, record: &WatchRecord) {
        if record.resource_version <= self.progress {
            return;
        }
        self.progress = record.resource_version;
        let now = self.filter.matches(&record.pod);
        let before = record
            .previous
            .as_deref()
            .is_some_and(|pod: &Pod| self.filter.matches(pod));
        let kind = match (record.change, before, now) {
            (Change::Added, _, true) => "ADDED",
            (Change::Deleted, _, true) => "DELETED",
            (Change::Modified, true, true) => "MODIFIED",
            // The object entered or left the selection: the watcher must learn it as such.
            (Change::Modified, false, true) => "ADDED",
            (Change::Modified, true, false) => "DELETED",
            (Change::Added | Change::Deleted | Change::Modified, _, false) => return,
        };
        self.pending.push_back(line(kind, &record.json));
    }

    /// After falling behind the live channel, replays from history or ends with 410 Gone.
    fn catch_up(&mut self) {
        match self.state.store().subscribe(self.progress) {
            Ok(subscription) => {
                self.replay = subscription.replay.into();
                self.live = Some(subscription.live);
            }
            Err(Expired { requested, oldest }) => {
                self.pending.push_back(error_line(requested, oldest));
                self.live = None;
            }
        }
    }
}

fn line(kind: &str, object: &[u8]) -> Bytes {
    let mut line = Vec::with_capacity(object.len() + 32);
    line.extend_from_slice(b"{\"type\":\"");
    line.extend_from_slice(kind.as_bytes());
    line.extend_from_slice(b"\",\"object\":");
    line.extend_from_slice(object);
    line.extend_from_slice(b"}\n");
    Bytes::from(line)
}

fn bookmark(resource_version: u64, initial_events_end: bool) -> Bytes {
    let mut metadata = json!({ "resourceVersion": resource_version.to_string() });
    if initial_events_end {
        metadata["annotations"] = json!({ "k8s.io/initial-events-end": "true" });
    }
    let object = json!({ "kind": "Pod", "apiVersion": "v1", "metadata": metadata });
    line("BOOKMARK", &serde_json::to_vec(&object).unwrap_or_default())
}

fn error_line(requested: u64, oldest: u64) -> Bytes {
    line(
        "ERROR",
        &serde_json::to_vec(&expired(requested, oldest)).unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_newline_delimited_watch_events() {
        let text = String::from_utf8(line("ADDED", b"{}").to_vec()).unwrap();
        assert_eq!(text, "{\"type\":\"ADDED\",\"object\":{}}\n");
        let value: serde_json::Value = serde_json::from_slice(&bookmark(7, true)).unwrap();
        assert_eq!(value["type"], "BOOKMARK");
        assert_eq!(value["object"]["metadata"]["resourceVersion"], "7");
        assert_eq!(
            value["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"],
            "true"
        );
    }
}
