//! `/api/v2/eventLogs`: the event log (Airflow's audit log), listed with Airflow's filters and
//! read one by one. What is recorded, and when, is `crate::audit`'s.

use std::collections::HashSet;

use axum::Json;
use axum::extract::State;
use gust_store::{EventColumn, EventFilter, StoredEvent, TimeRange};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::extract::{Params, PathParams};
use crate::api::page::{MAX_PAGE, OrderBy};
use crate::api::search::MAX_PATTERN_LEN;
use crate::api::time::{Timestamp, parse_time};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// The event log endpoints.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_event_logs))
        .routes(routes!(get_event_log))
}

/// One event (Airflow's `EventLogResponse`).
#[derive(Debug, Serialize, ToSchema)]
pub struct EventLogResponse {
    pub event_log_id: i64,
    pub when: Timestamp,
    pub dag_id: Option<String>,
    pub task_id: Option<String>,
    pub run_id: Option<String>,
    pub map_index: Option<i32>,
    pub try_number: Option<i32>,
    pub event: String,
    pub logical_date: Option<Timestamp>,
    pub owner: Option<String>,
    pub extra: Option<String>,
    /// The DAG's display name, when the DAG is known.
    pub dag_display_name: Option<String>,
    /// The task's display name, when the event names a task.
    pub task_display_name: Option<String>,
}

/// A page of events.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventLogCollectionResponse {
    pub event_logs: Vec<EventLogResponse>,
    pub total_entries: i64,
}

/// `GET /eventLogs` filters (Airflow's).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventLogsQuery {
    /// At most this many (default 50, at most 100).
    #[serde(default = "crate::api::page::default_limit")]
    pub limit: usize,
    /// Skip this many.
    #[serde(default)]
    pub offset: usize,
    /// Sort keys: `id` (`event_log_id`), `dttm` (`when`), `dag_id`, `task_id`, `run_id`,
    /// `event`, `logical_date`, `owner`, `extra`; `-` first for descending (default `id`).
    #[serde(default)]
    pub order_by: Vec<String>,
    pub dag_id: Option<String>,
    pub task_id: Option<String>,
    pub run_id: Option<String>,
    pub map_index: Option<i32>,
    pub try_number: Option<i32>,
    pub owner: Option<String>,
    pub event: Option<String>,
    /// Leave out these events.
    #[serde(default)]
    pub excluded_events: Vec<String>,
    /// Only these events.
    #[serde(default)]
    pub included_events: Vec<String>,
    /// Only events before this time.
    pub before: Option<String>,
    /// Only events after this time.
    pub after: Option<String>,
    pub dag_id_pattern: Option<String>,
    pub task_id_pattern: Option<String>,
    pub run_id_pattern: Option<String>,
    pub owner_pattern: Option<String>,
    pub event_pattern: Option<String>,
    pub dag_id_prefix_pattern: Option<String>,
    pub task_id_prefix_pattern: Option<String>,
    pub run_id_prefix_pattern: Option<String>,
    pub owner_prefix_pattern: Option<String>,
    pub event_prefix_pattern: Option<String>,
}

/// The `|`-separated terms of a search pattern; `None` when it filters nothing (`~`, or
/// absent). A pattern too long to be meant matches nothing.
fn terms(pattern: Option<&String>) -> Option<Vec<String>> {
    let pattern = pattern?;
    if pattern == "~" {
        return None;
    }
    if pattern.len() > MAX_PATTERN_LEN {
        return Some(vec!["\u{0}no match\u{0}".to_owned()]);
    }
    let split: Vec<String> = pattern
        .split('|')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect();
    if split.is_empty() || !pattern.contains('|') {
        Some(vec![pattern.clone()])
    } else {
        Some(split)
    }
}

/// A time parameter, or its 422.
fn time(field: &str, value: Option<&String>) -> ApiResult<Option<chrono::DateTime<chrono::Utc>>> {
    value
        .map(|text| {
            parse_time(text).ok_or_else(|| {
                ApiError::invalid(
                    "query",
                    field,
                    format!(
                        "Input should be a valid datetime (RFC 3339, or a date), not \"{text}\""
                    ),
                )
            })
        })
        .transpose()
}

impl EventLogsQuery {
    fn filter(&self) -> ApiResult<EventFilter> {
        let columns = [
            (
                EventColumn::DagId,
                &self.dag_id_pattern,
                &self.dag_id_prefix_pattern,
            ),
            (
                EventColumn::TaskId,
                &self.task_id_pattern,
                &self.task_id_prefix_pattern,
            ),
            (
                EventColumn::RunId,
                &self.run_id_pattern,
                &self.run_id_prefix_pattern,
            ),
            (
                EventColumn::Owner,
                &self.owner_pattern,
                &self.owner_prefix_pattern,
            ),
            (
                EventColumn::Event,
                &self.event_pattern,
                &self.event_prefix_pattern,
            ),
        ];
        Ok(EventFilter {
            dag_id: self.dag_id.clone(),
            task_id: self.task_id.clone(),
            run_id: self.run_id.clone(),
            map_index: self.map_index,
            try_number: self.try_number,
            owner: self.owner.clone(),
            event: self.event.clone(),
            included_events: self.included_events.clone(),
            excluded_events: self.excluded_events.clone(),
            when: TimeRange {
                gt: time("after", self.after.as_ref())?,
                lt: time("before", self.before.as_ref())?,
                ..TimeRange::default()
            },
            patterns: columns
                .iter()
                .filter_map(|(column, pattern, _)| terms(pattern.as_ref()).map(|t| (*column, t)))
                .collect(),
            prefixes: columns
                .iter()
                .filter_map(|(column, _, prefix)| terms(prefix.as_ref()).map(|t| (*column, t)))
                .collect(),
        })
    }

    fn order(&self) -> ApiResult<Vec<(EventColumn, bool)>> {
        let order = OrderBy::parse(
            &self.order_by,
            &[
                "id",
                "event_log_id",
                "dttm",
                "when",
                "dag_id",
                "task_id",
                "run_id",
                "event",
                "logical_date",
                "owner",
                "extra",
            ],
        )?;
        Ok(order
            .iter()
            .map(|o| {
                let column = match o.field.as_str() {
                    "dttm" | "when" => EventColumn::When,
                    "dag_id" => EventColumn::DagId,
                    "task_id" => EventColumn::TaskId,
                    "run_id" => EventColumn::RunId,
                    "event" => EventColumn::Event,
                    "logical_date" => EventColumn::LogicalDate,
                    "owner" => EventColumn::Owner,
                    "extra" => EventColumn::Extra,
                    _ => EventColumn::Id,
                };
                (column, o.descending)
            })
            .collect())
    }
}

/// An event as answered; `dags` are the DAGs the store knows (for the display name).
fn event_response(stored: StoredEvent, dags: &HashSet<String>) -> EventLogResponse {
    let event = stored.event;
    EventLogResponse {
        event_log_id: stored.id,
        when: event.when.into(),
        dag_display_name: event.dag_id.clone().filter(|id| dags.contains(id)),
        task_display_name: event.task_id.clone(),
        dag_id: event.dag_id,
        task_id: event.task_id,
        run_id: event.run_id,
        map_index: event.map_index,
        try_number: event.try_number,
        event: event.event,
        logical_date: event.logical_date.map(Timestamp),
        owner: event.owner,
        extra: event.extra,
    }
}

async fn known_dags(state: &AppState) -> ApiResult<HashSet<String>> {
    Ok(state
        .store()
        .dag_summaries()
        .await?
        .into_iter()
        .map(|d| d.dag_id)
        .collect())
}

/// Get all event logs.
#[utoipa::path(get, path = "/api/v2/eventLogs", tag = "Event Log", params(EventLogsQuery),
    responses((status = 200, body = EventLogCollectionResponse), (status = 400), (status = 401), (status = 403), (status = 422)))]
async fn get_event_logs(
    State(state): State<AppState>,
    Params(query): Params<EventLogsQuery>,
) -> ApiResult<Json<EventLogCollectionResponse>> {
    let filter = query.filter()?;
    let order = query.order()?;
    let limit = i64::try_from(query.limit.min(MAX_PAGE)).unwrap_or(50);
    let offset = i64::try_from(query.offset).unwrap_or(i64::MAX);
    let (events, total_entries) = state
        .store()
        .events_page(&filter, &order, limit, offset)
        .await?;
    let dags = known_dags(&state).await?;
    Ok(Json(EventLogCollectionResponse {
        event_logs: events
            .into_iter()
            .map(|e| event_response(e, &dags))
            .collect(),
        total_entries,
    }))
}

/// Get an event log.
#[utoipa::path(get, path = "/api/v2/eventLogs/{event_log_id}", tag = "Event Log",
    params(("event_log_id" = i64, Path)),
    responses((status = 200, body = EventLogResponse), (status = 401), (status = 403), (status = 404), (status = 422)))]
async fn get_event_log(
    State(state): State<AppState>,
    PathParams(id): PathParams<i64>,
) -> ApiResult<Json<EventLogResponse>> {
    let event =
        state.store().event(id).await?.ok_or_else(|| {
            ApiError::NotFound(format!("The Event Log with id: `{id}` not found"))
        })?;
    let dags = known_dags(&state).await?;
    Ok(Json(event_response(event, &dags)))
}
