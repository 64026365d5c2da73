//! `GET .../taskInstances/{task_id}/logs/{try_number}`: a try's log, read from the log folder in
//! Airflow's layout, at most [`MAX_LOG_CHUNK`] bytes per answer. A log not read to its end, or
//! of a try still running, comes with a continuation token: the byte offset reached, which the
//! next call continues from. JSON by default (each line split into its time, its source and its
//! text), NDJSON or plain text when the `Accept` header asks for it.

use std::io::SeekFrom;
use std::path::PathBuf;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, NaiveDateTime, Utc};
use gust_core::ids::{DagId, RunId, TaskId, TryNumber};
use gust_core::state::TaskState;
use gust_executor::TryKey;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::extract::{Params, PathParams};
use crate::api::time::Timestamp;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// The log endpoint.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_log))
}

/// The most bytes of log one answer carries; the rest follows through the continuation token.
pub const MAX_LOG_CHUNK: u64 = 1024 * 1024;

/// The header carrying the continuation token of NDJSON and plain-text answers (Airflow's).
pub const CONTINUATION_HEADER: &str = "airflow-continuation-token";

/// One log line (Airflow's `StructuredLogMessage`; `logger` is where the line came from:
/// `stdout`, `stderr`, a container, `gust`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct StructuredLogMessage {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<Timestamp>,
    pub event: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logger: Option<String>,
}

/// A piece of a try's log (Airflow's `TaskInstancesLogResponse`).
#[derive(Debug, Serialize, ToSchema)]
pub struct TaskInstancesLogResponse {
    pub content: Vec<StructuredLogMessage>,
    pub continuation_token: Option<String>,
}

/// `GET .../logs/{try_number}` options.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LogQuery {
    /// Read from the start, ignoring `token`.
    #[serde(default)]
    pub full_content: bool,
    /// Which instance of a mapped task (-1, the default, for a task that is not mapped).
    #[serde(default = "unmapped")]
    pub map_index: i64,
    /// Where the previous answer stopped.
    pub token: Option<String>,
}

fn unmapped() -> i64 {
    -1
}

/// Splits a line as Gust writes it (`[2026-01-01T00:00:00.000Z] stdout: text`) into its time,
/// its source and its text; any other line is all text.
#[must_use]
pub fn parse_line(line: &str) -> StructuredLogMessage {
    let parsed = line.strip_prefix('[').and_then(|rest| {
        let (stamp, rest) = rest.split_once("] ")?;
        let at = NaiveDateTime::parse_from_str(stamp, "%Y-%m-%dT%H:%M:%S%.fZ").ok()?;
        let (source, text) = rest.split_once(": ").unwrap_or((rest, ""));
        if source.is_empty() || source.contains(' ') {
            return None;
        }
        Some(StructuredLogMessage {
            timestamp: Some(Timestamp(DateTime::<Utc>::from_naive_utc_and_offset(
                at, Utc,
            ))),
            event: text.to_owned(),
            logger: Some(source.to_owned()),
        })
    });
    parsed.unwrap_or_else(|| StructuredLogMessage {
        timestamp: None,
        event: line.to_owned(),
        logger: None,
    })
}

/// The check that ties a token to its log, so one log's token is refused by another.
fn token_check(key: &TryKey, offset: u64) -> String {
    let digest = Sha256::digest(format!("gust-log:{key}:{offset}").as_bytes());
    digest.iter().take(6).map(|b| format!("{b:02x}")).collect()
}

/// The token for continuing `key`'s log at `offset`.
#[must_use]
pub fn encode_token(key: &TryKey, offset: u64) -> String {
    format!("{offset:x}.{}", token_check(key, offset))
}

fn decode_token(key: &TryKey, token: &str) -> ApiResult<u64> {
    let bad = || {
        ApiError::BadRequest(
            "Bad Signature. Please use only the tokens provided by the API.".into(),
        )
    };
    let (offset, check) = token.split_once('.').ok_or_else(bad)?;
    let offset = u64::from_str_radix(offset, 16).map_err(|_| bad())?;
    if token_check(key, offset) != check {
        return Err(bad());
    }
    Ok(offset)
}

/// A piece of a log file: its text (whole lines unless the file ends there) and where the next
/// piece starts.
struct Chunk {
    text: String,
    next: u64,
    at_end: bool,
}

/// Reads at most [`MAX_LOG_CHUNK`] bytes of `path` from `offset`, cut after the last whole line
/// (unless one line is longer than a chunk, or `finished` and the file ends mid-line).
async fn read_chunk(path: &std::path::Path, offset: u64, finished: bool) -> std::io::Result<Chunk> {
    let mut file = match tokio::fs::File::open(path).await {
        Ok(file) => file,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Chunk {
                text: String::new(),
                next: offset,
                at_end: true,
            });
        }
        Err(err) => return Err(err),
    };
    let size = file.metadata().await?.len();
    let start = offset.min(size);
    file.seek(SeekFrom::Start(start)).await?;
    let mut bytes = Vec::new();
    file.take(MAX_LOG_CHUNK).read_to_end(&mut bytes).await?;
    Ok(cut(bytes, start, size, finished))
}

/// `bytes`, read from `start` of a log of `size` bytes, as a chunk: cut after the last whole
/// line (unless one line is longer than a chunk, or `finished` and the log ends mid-line).
fn cut(mut bytes: Vec<u8>, start: u64, size: u64, finished: bool) -> Chunk {
    let reached = start + bytes.len() as u64;
    let mut at_end = reached >= size;
    if !(at_end && finished)
        && let Some(last) = bytes.iter().rposition(|b| *b == b'\n')
        && last + 1 < bytes.len()
    {
        bytes.truncate(last + 1);
        at_end = false;
    }
    Chunk {
        next: start + bytes.len() as u64,
        text: String::from_utf8_lossy(&bytes).into_owned(),
        at_end,
    }
}

/// Reads a chunk of `key`'s log from the remote log store (a ranged read, as from the local
/// file); a log not there (yet) reads as an empty one.
async fn read_remote_chunk(
    logs: &gust_remote_logs::RemoteLogs,
    key: &TryKey,
    offset: u64,
    finished: bool,
) -> Result<Chunk, gust_remote_logs::StoreFailure> {
    Ok(
        match logs
            .read(key, SeekFrom::Start(offset), MAX_LOG_CHUNK)
            .await?
        {
            Some(slice) => cut(slice.bytes.to_vec(), slice.start, slice.size, finished),
            None => Chunk {
                text: String::new(),
                next: offset,
                at_end: true,
            },
        },
    )
}

/// What the caller accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Ndjson,
    Text,
}

fn format_of(headers: &HeaderMap) -> Format {
    // The Python client may send its own `Accept` beside the caller's: every value counts.
    let values: Vec<&str> = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    if values.iter().any(|v| v.contains("application/x-ndjson")) {
        Format::Ndjson
    } else if values
        .first()
        .is_some_and(|v| v.trim_start().starts_with("text/plain"))
    {
        Format::Text
    } else {
        Format::Json
    }
}

/// Where a try's log is: in the server's log folder (Airflow's layout), else where the
/// scheduler indexed it.
async fn log_file(state: &AppState, key: &TryKey) -> ApiResult<PathBuf> {
    let here = gust_scheduler::log_path::log_path(state.logs_root(), key);
    if tokio::fs::try_exists(&here).await.unwrap_or(false) {
        return Ok(here);
    }
    let n = i32::try_from(key.try_number.0).unwrap_or(i32::MAX);
    let indexed = state
        .store()
        .log_location(
            key.dag_id.as_str(),
            key.run_id.as_str(),
            key.task_id.as_str(),
            key.map_index,
            n,
        )
        .await?;
    Ok(indexed.map_or(here, PathBuf::from))
}

/// Get a try's log.
#[utoipa::path(get, path = "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/logs/{try_number}", tag = "Task Instance",
    params(("dag_id" = String, Path), ("dag_run_id" = String, Path), ("task_id" = String, Path), ("try_number" = u32, Path), LogQuery),
    responses((status = 200, body = TaskInstancesLogResponse), (status = 400), (status = 401), (status = 403), (status = 404), (status = 422)))]
async fn get_log(
    State(state): State<AppState>,
    PathParams((dag_id, run_id, task_id, try_number)): PathParams<(String, String, String, u32)>,
    Params(query): Params<LogQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let not_found = || ApiError::NotFound("TaskInstance not found".into());
    // Past any index an instance can have: no such instance.
    let map_index = i32::try_from(query.map_index).map_err(|_| not_found())?;
    let key = TryKey {
        dag_id: DagId::new(dag_id.clone()).map_err(|_| not_found())?,
        run_id: RunId::new(run_id.clone()).map_err(|_| not_found())?,
        task_id: TaskId::new(task_id.clone()).map_err(|_| not_found())?,
        map_index,
        try_number: TryNumber(try_number),
    };
    let n = i32::try_from(try_number).map_err(|_| not_found())?;
    let instance = state
        .store()
        .task_instances(&dag_id, &run_id)
        .await?
        .into_iter()
        .find(|ti| ti.task_id == task_id && ti.map_index == map_index)
        .ok_or_else(not_found)?;
    let attempt = state
        .store()
        .tries_of_run(&dag_id, &run_id)
        .await?
        .into_iter()
        .find(|t| t.task_id == task_id && t.map_index == map_index && t.try_number == n);
    // A try still queued or running may write more: its log is never at its end yet.
    let live = match &attempt {
        Some(t) => matches!(t.state, TaskState::Queued | TaskState::Running),
        None if instance.try_number == n => instance.state.holds_slot(),
        None => return Err(not_found()),
    };
    let offset = match (&query.token, query.full_content) {
        (Some(token), false) if !token.is_empty() => decode_token(&key, token)?,
        _ => 0,
    };
    let path = log_file(&state, &key).await?;
    let unreadable = || {
        ApiError::NotFound(format!(
            "The log of try {try_number} of task {task_id} cannot be read"
        ))
    };
    // The local file while there is one (a running try's log grows there), else the store.
    let remote = match state.remote_logs() {
        Some(logs) if !tokio::fs::try_exists(&path).await.unwrap_or(false) => Some(logs),
        _ => None,
    };
    let chunk = match remote {
        Some(logs) => read_remote_chunk(logs, &key, offset, !live)
            .await
            .map_err(|failure| {
                tracing::warn!(uri = %logs.uri_of(&key), "reading a try's remote log failed: {}", failure.message);
                unreadable()
            })?,
        None => read_chunk(&path, offset, !live).await.map_err(|err| {
            tracing::warn!(path = %path.display(), %err, "reading a try's log failed");
            unreadable()
        })?,
    };
    // Lines are masked when written; a secret added since (a new variable) is masked here too.
    let chunk = Chunk {
        text: gust_secrets::mask(&chunk.text),
        ..chunk
    };
    let token = (!chunk.at_end || live).then(|| encode_token(&key, chunk.next));
    let with_token = |mut response: Response| {
        if let Some(value) = token.as_deref().and_then(|t| HeaderValue::from_str(t).ok()) {
            response.headers_mut().insert(CONTINUATION_HEADER, value);
        }
        response
    };
    Ok(match format_of(&headers) {
        Format::Text => with_token(
            (
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                chunk.text,
            )
                .into_response(),
        ),
        Format::Ndjson => {
            let mut body = String::with_capacity(chunk.text.len() + chunk.text.len() / 2);
            for line in chunk.text.lines() {
                if let Ok(json) = serde_json::to_string(&parse_line(line)) {
                    body.push_str(&json);
                    body.push('\n');
                }
            }
            with_token(([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response())
        }
        Format::Json => Json(TaskInstancesLogResponse {
            content: chunk.text.lines().map(parse_line).collect(),
            continuation_token: token,
        })
        .into_response(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gust_log_lines_split_into_time_source_and_text() {
        let line = parse_line("[2026-01-01T00:00:01.250Z] stdout: hello: world");
        assert_eq!(line.event, "hello: world");
        assert_eq!(line.logger.as_deref(), Some("stdout"));
        assert_eq!(
            line.timestamp.map(|t| t.0.timestamp_millis()),
            Some(1_767_225_601_250)
        );
        let other = parse_line("no stamp here");
        assert_eq!(other.event, "no stamp here");
        assert_eq!(other.timestamp, None);
        assert_eq!(parse_line("[not a time] x: y").event, "[not a time] x: y");
    }

    #[test]
    fn chunks_end_after_a_whole_line_unless_the_finished_log_ends_there() {
        // The same cut for a local file and a remote object's range.
        let chunk = cut(b"one\ntwo\nthr".to_vec(), 0, 11, false);
        assert_eq!(
            (chunk.text.as_str(), chunk.next, chunk.at_end),
            ("one\ntwo\n", 8, false)
        );
        let chunk = cut(b"one\ntwo\nthr".to_vec(), 0, 11, true);
        assert_eq!(
            (chunk.text.as_str(), chunk.next, chunk.at_end),
            ("one\ntwo\nthr", 11, true)
        );
        let chunk = cut(b"two\n".to_vec(), 4, 20, true);
        assert_eq!((chunk.next, chunk.at_end), (8, false));
    }

    #[test]
    fn tokens_belong_to_their_log() {
        let key = |task: &str| TryKey {
            dag_id: DagId::new("d".to_owned()).unwrap(),
            run_id: RunId::new("r".to_owned()).unwrap(),
            task_id: TaskId::new(task.to_owned()).unwrap(),
            map_index: gust_core::mapping::UNMAPPED,
            try_number: TryNumber(1),
        };
        let token = encode_token(&key("a"), 4096);
        assert_eq!(decode_token(&key("a"), &token).unwrap(), 4096);
        assert!(decode_token(&key("b"), &token).is_err());
        assert!(decode_token(&key("a"), "garbage").is_err());
    }
}
