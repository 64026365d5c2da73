//! Live updates as server-sent events: each open page has one stream that looks at the database
//! every [`TICK`] and sends only what changed since its last look. The stream belongs to the
//! page's connection: when the page goes away, axum drops it and the looking stops.
//!
//! The grid's stream re-reads only the runs that can change (queued or running ones, and any
//! whose row moved: a new run, a finished one, a cleared one), plus every run once every
//! [`FULL_RESYNC_TICKS`] for changes that do not touch the run's row.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use gust_core::state::DagRunState;
use gust_store::RunHeader;
use serde_json::{Value, json};

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::ui::data::{self, GridQuery, RunJson};
use crate::ui::session::DataUser;

/// How often a stream looks at the database.
pub const TICK: Duration = Duration::from_millis(500);
/// Every this many ticks, the grid re-reads every run it shows (30 s).
const FULL_RESYNC_TICKS: u64 = 60;
/// The most streams open at once in this process; beyond it a page is told to try later (each
/// stream reads the database twice a second).
pub const MAX_STREAMS: usize = 512;

static OPEN_STREAMS: AtomicUsize = AtomicUsize::new(0);

/// One of the [`MAX_STREAMS`] places, given back when the stream ends.
struct Slot;

impl Slot {
    fn take() -> Option<Slot> {
        if OPEN_STREAMS.fetch_add(1, Ordering::SeqCst) >= MAX_STREAMS {
            OPEN_STREAMS.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        Some(Slot)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        OPEN_STREAMS.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A source of updates: `step` looks once and says what to send, if anything; `Err` ends the
/// stream (after telling the page to reload).
trait Watch: Send + 'static {
    fn step(&mut self) -> impl std::future::Future<Output = ApiResult<Option<Event>>> + Send;
}

/// Turns a watch into an event stream ticking every [`TICK`], or a 503 when [`MAX_STREAMS`]
/// are open.
fn stream<W: Watch>(watch: W) -> Response {
    let Some(slot) = Slot::take() else {
        tracing::warn!(
            limit = MAX_STREAMS,
            "a UI event stream was refused: too many open"
        );
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "too many live pages are open; try again later",
        )
            .into_response();
    };
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let events = futures::stream::unfold(
        (watch, ticker, false, slot),
        |(mut watch, mut ticker, ended, slot)| async move {
            if ended {
                return None;
            }
            loop {
                ticker.tick().await;
                match watch.step().await {
                    Ok(Some(event)) => {
                        return Some((
                            Ok::<Event, Infallible>(event),
                            (watch, ticker, false, slot),
                        ));
                    }
                    Ok(None) => {}
                    Err(err) => {
                        tracing::debug!(error = %err, "a UI event stream ends");
                        let reload = Event::default().event("reload").data(err.to_string());
                        return Some((
                            Ok::<Event, Infallible>(reload),
                            (watch, ticker, true, slot),
                        ));
                    }
                }
            }
        },
    );
    Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

fn json_event(name: &str, value: &Value) -> Event {
    Event::default().event(name).data(value.to_string())
}

// ---------------------------------------------------------------------------------------------

/// The DAG list: each DAG's row, sent again when it changes.
struct DagsWatch {
    state: AppState,
    rows: HashMap<String, Value>,
    errors: Value,
}

impl DagsWatch {
    async fn look(&mut self) -> ApiResult<(Vec<Value>, Vec<String>, Option<Value>)> {
        let mut snapshot = data::dags_snapshot(&self.state).await?;
        let errors = snapshot["import_errors"].take();
        let rows: HashMap<String, Value> = match snapshot["dags"].take() {
            Value::Array(rows) => rows
                .into_iter()
                .map(|row| (row["dag_id"].as_str().unwrap_or_default().to_owned(), row))
                .collect(),
            _ => HashMap::new(),
        };
        let changed: Vec<Value> = rows
            .iter()
            .filter(|(id, row)| self.rows.get(*id) != Some(row))
            .map(|(_, row)| row.clone())
            .collect();
        let removed: Vec<String> = self
            .rows
            .keys()
            .filter(|id| !rows.contains_key(*id))
            .cloned()
            .collect();
        let errors_changed = (errors != self.errors).then(|| errors.clone());
        self.rows = rows;
        self.errors = errors;
        Ok((changed, removed, errors_changed))
    }
}

impl Watch for DagsWatch {
    async fn step(&mut self) -> ApiResult<Option<Event>> {
        let (changed, removed, errors) = self.look().await?;
        if changed.is_empty() && removed.is_empty() && errors.is_none() {
            return Ok(None);
        }
        Ok(Some(json_event(
            "dags",
            &json!({"changed": changed, "removed": removed, "import_errors": errors}),
        )))
    }
}

/// `GET /ui/events/dags`: the DAG list's changes. What the page has already read is what the
/// stream starts from (it looks once before answering), so open it first, then read the list.
pub async fn dags(_: DataUser, State(state): State<AppState>) -> ApiResult<Response> {
    let mut watch = DagsWatch {
        state,
        rows: HashMap::new(),
        errors: Value::Null,
    };
    watch.look().await?;
    Ok(stream(watch))
}

// ---------------------------------------------------------------------------------------------

/// A DAG's grid (or one run's column of it).
struct GridWatch {
    state: AppState,
    dag_id: String,
    query: GridQuery,
    fingerprint: String,
    is_paused: bool,
    runs: Vec<RunHeader>,
    cells: HashMap<String, data::Column>,
    ticks: u64,
}

impl GridWatch {
    /// Looks once: the runs if their list changed (oldest first), the columns that changed,
    /// the paused flag if it changed.
    async fn look(&mut self) -> ApiResult<Option<Value>> {
        self.ticks += 1;
        let (summary, dag) = self.state.dag(&self.dag_id).await?;
        if summary.fingerprint != self.fingerprint {
            return Err(ApiError::Conflict("the DAG changed".into()));
        }
        let runs = data::grid_runs(&self.state, &self.dag_id, &self.query).await?;
        // The first look only notes where things stand (the page reads the grid itself right
        // after): finished runs' columns are not read until one of them moves.
        let priming = self.ticks == 1;
        let full = self.ticks.is_multiple_of(FULL_RESYNC_TICKS);
        let previous: HashMap<&str, &RunHeader> =
            self.runs.iter().map(|r| (r.run_id.as_str(), r)).collect();
        let to_read: Vec<String> = runs
            .iter()
            .filter(|run| {
                full || matches!(run.state, DagRunState::Queued | DagRunState::Running)
                    || (!priming
                        && previous.get(run.run_id.as_str()).is_none_or(|before| {
                            before.version != run.version || before.state != run.state
                        }))
            })
            .map(|run| run.run_id.clone())
            .collect();
        let fresh = data::grid_cells(&self.state, &dag, &to_read).await?;
        let mut changed = serde_json::Map::new();
        let mut mapped = serde_json::Map::new();
        for (run_id, column) in fresh {
            if self.cells.get(&run_id) != Some(&column) {
                changed.insert(run_id.clone(), Value::String(column.codes.clone()));
                mapped.insert(run_id.clone(), json!(column.mapped));
                self.cells.insert(run_id, column);
            }
        }
        let runs_changed = runs != self.runs;
        let paused_changed = summary.is_paused != self.is_paused;
        self.is_paused = summary.is_paused;
        self.runs = runs;
        if runs_changed {
            let shown: std::collections::HashSet<&str> =
                self.runs.iter().map(|r| r.run_id.as_str()).collect();
            self.cells.retain(|id, _| shown.contains(id.as_str()));
        }
        if !runs_changed && changed.is_empty() && !paused_changed {
            return Ok(None);
        }
        let runs_json = runs_changed.then(|| {
            self.runs
                .iter()
                .rev()
                .map(RunJson::from)
                .collect::<Vec<_>>()
        });
        Ok(Some(json!({
            "runs": runs_json,
            "cells": changed,
            "mapped": mapped,
            "is_paused": self.is_paused,
        })))
    }
}

impl Watch for GridWatch {
    async fn step(&mut self) -> ApiResult<Option<Event>> {
        Ok(self.look().await?.map(|update| json_event("grid", &update)))
    }
}

/// `GET /ui/events/dags/{dag_id}/grid?runs=N` (or `?run_id=R`): the grid's changes, from the
/// state the stream saw when it opened (so open it, then read the grid). A `reload` event says
/// the DAG itself changed.
pub async fn grid(
    _: DataUser,
    State(state): State<AppState>,
    Path(dag_id): Path<String>,
    Query(query): Query<GridQuery>,
) -> ApiResult<Response> {
    let (summary, _) = state.dag(&dag_id).await?;
    let mut watch = GridWatch {
        state,
        dag_id,
        query,
        fingerprint: summary.fingerprint,
        is_paused: summary.is_paused,
        runs: Vec::new(),
        cells: HashMap::new(),
        ticks: 0,
    };
    watch.look().await?;
    Ok(stream(watch))
}

// ---------------------------------------------------------------------------------------------

/// One task instance: its whole JSON again whenever any of it changes.
struct TaskWatch {
    state: AppState,
    ids: (String, String, String),
    map_index: i32,
    last: Value,
}

impl Watch for TaskWatch {
    async fn step(&mut self) -> ApiResult<Option<Event>> {
        let (dag, run, task) = &self.ids;
        let now = data::task_instance_json(&self.state, dag, run, task, self.map_index).await?;
        if now == self.last {
            return Ok(None);
        }
        self.last = now;
        Ok(Some(json_event("ti", &self.last)))
    }
}

/// `GET /ui/events/dags/{dag_id}/runs/{run_id}/tasks/{task_id}?map_index=N`: the task
/// instance, first as it is, then each time it changes.
pub async fn task_instance(
    _: DataUser,
    State(state): State<AppState>,
    Path(ids): Path<(String, String, String)>,
    Query(instance): Query<data::InstanceQuery>,
) -> ApiResult<Response> {
    let map_index = instance.map_index();
    data::task_instance_json(&state, &ids.0, &ids.1, &ids.2, map_index).await?;
    Ok(stream(TaskWatch {
        state,
        ids,
        map_index,
        last: Value::Null,
    }))
}
