//! Container logs: `GET .../pods/{name}/log`, plain text, optionally followed.
//!
//! Options as the kubelet reads them: `container`, `follow`, `timestamps` (an RFC 3339
//! nanosecond prefix and a space, trailing zeros trimmed as Go's RFC3339Nano does),
//! `sinceTime`/`sinceSeconds` (lines at or after), `tailLines`, `limitBytes`, `previous`.

use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::query::Query;
use super::{Shared, existing_pod, target_container};
use crate::clock;
use crate::kubelet::pod_status;
use crate::logs::{ContainerLog, LogLine, Progress};
use crate::status::ApiError;
use crate::store::PodKey;

/// What to send of a container's log.
#[derive(Clone, Debug, Default)]
struct LogOptions {
    timestamps: bool,
    since: Option<Timestamp>,
    tail: Option<usize>,
    limit_bytes: Option<usize>,
}

impl LogOptions {
    fn from_query(query: &Query) -> Result<Self, ApiError> {
        let since = match query.number::<i64>("sinceSeconds")? {
            Some(seconds) => Some(
                clock::now()
                    .checked_sub(SignedDuration::from_secs(seconds))
                    .map_err(|_| ApiError::bad_request("sinceSeconds: out of range"))?,
            ),
            None => query.time("sinceTime")?,
        };
        Ok(LogOptions {
            timestamps: query.flag("timestamps")?,
            since,
            tail: query.number("tailLines")?,
            limit_bytes: query.number("limitBytes")?,
        })
    }

    fn format(&self, line: &LogLine) -> String {
        if self.timestamps {
            format!("{} {}\n", line.at, line.text)
        } else {
            format!("{}\n", line.text)
        }
    }

    fn selected(&self, lines: Vec<LogLine>) -> VecDeque<LogLine> {
        let mut lines: VecDeque<LogLine> = lines
            .into_iter()
            .filter(|line| self.since.is_none_or(|since| line.at >= since))
            .collect();
        if let Some(tail) = self.tail {
            while lines.len() > tail {
                lines.pop_front();
            }
        }
        lines
    }
}

/// `GET /api/v1/namespaces/{ns}/pods/{name}/log`.
pub(crate) async fn get(
    State(state): Shared,
    key: PodKey,
    query: Query,
) -> Result<Response, ApiError> {
    let options = LogOptions::from_query(&query)?;
    let follow = query.flag("follow")?;
    let pod = existing_pod(&state, &key)?;
    let container = target_container(&pod, query.get("container"))?;
    if query.flag("previous")? {
        return Err(ApiError::bad_request(format!(
            "previous terminated container \"{container}\" in pod \"{}\" not found",
            key.name
        )));
    }
    ensure_started(&pod, &container)?;
    let log = state.logs.container(&key, &container);
    let (lines, finished) = log.read_from(0);
    let read = lines.len();
    let mut session = LogSession {
        pending: options.selected(lines),
        options,
        log,
        read,
        progress: None,
        breaker: state.breaker(),
        shutdown: state.shutdown.clone(),
        hold_open: follow && state.hold_log_streams.load(Ordering::Relaxed),
        sent_bytes: 0,
    };
    if follow && !finished {
        session.progress = Some(session.log.subscribe());
    }
    let stream = futures::stream::unfold(session, |mut session| async move {
        session.next().await.map(|chunk| (chunk, session))
    });
    let mut response = Body::from_stream(stream).into_response();
    *response.status_mut() = StatusCode::OK;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    Ok(response)
}

/// 400 unless the container has started, worded as the API server words it.
fn ensure_started(pod: &Pod, container: &str) -> Result<(), ApiError> {
    let pod_name = pod.metadata.name.as_deref().unwrap_or_default();
    let status = pod
        .status
        .as_ref()
        .and_then(|status| pod_status::container(status, container));
    let waiting = match status.and_then(|s| s.state.as_ref()) {
        Some(state) if state.waiting.is_none() => return Ok(()),
        Some(state) => state.waiting.as_ref().and_then(|w| w.reason.clone()),
        None => None,
    };
    let why = match waiting.as_deref() {
        Some("ErrImagePull" | "ImagePullBackOff") => "trying and failing to pull image".to_owned(),
        Some("InvalidImageName") => "image can't be pulled".to_owned(),
        Some(reason) => reason.to_owned(),
        None => "ContainerCreating".to_owned(),
    };
    Err(ApiError::bad_request(format!(
        "container \"{container}\" in pod \"{pod_name}\" is waiting to start: {why}"
    )))
}

/// One log response being sent.
struct LogSession {
    options: LogOptions,
    log: Arc<ContainerLog>,
    /// Lines selected and not yet sent.
    pending: VecDeque<LogLine>,
    /// How many of the log's lines have been read.
    read: usize,
    /// Set while following: woken by new lines and by the container's end.
    progress: Option<watch::Receiver<Progress>>,
    breaker: CancellationToken,
    shutdown: CancellationToken,
    /// Whether a followed stream stays open after the container ended (as kwok's do).
    hold_open: bool,
    sent_bytes: usize,
}

impl LogSession {
    async fn next(&mut self) -> Option<Result<Bytes, io::Error>> {
        loop {
            if self
                .options
                .limit_bytes
                .is_some_and(|limit| self.sent_bytes >= limit)
            {
                return None;
            }
            if let Some(line) = self.pending.pop_front() {
                let mut text = self.options.format(&line).into_bytes();
                if let Some(limit) = self.options.limit_bytes {
                    text.truncate(limit - self.sent_bytes);
                }
                self.sent_bytes += text.len();
                return Some(Ok(Bytes::from(text)));
            }
            let Some(progress) = self.progress.as_mut() else {
                if self.hold_open {
                    // Silent until the client hangs up or the cluster stops.
                    self.shutdown.cancelled().await;
                }
                return None;
            };
            tokio::select! {
                biased;
                () = self.breaker.cancelled() => {
                    self.progress = None;
                    return Some(Err(io::Error::new(
                        io::ErrorKind::ConnectionAborted,
                        "the fake cluster broke the connection",
                    )));
                }
                () = self.shutdown.cancelled() => return None,
                changed = progress.changed() => {
                    if changed.is_err() {
                        self.progress = None;
                    }
                    let (lines, finished) = self.log.read_from(self.read);
                    self.read += lines.len();
                    let since = self.options.since;
                    self.pending.extend(lines.into_iter().filter(|line| since.is_none_or(|since| line.at >= since)));
                    if finished {
                        self.progress = None;
                    }
                }
            }
        }
    }
}
