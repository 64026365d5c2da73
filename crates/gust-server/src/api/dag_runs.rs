//! `/api/v2/dags/{dag_id}/dagRuns`: list (`~` for every DAG), get, trigger, mark (PATCH),
//! delete, clear, and the batch listing `POST /dags/~/dagRuns/list`.
//!
//! Marking and clearing go through store transactions that bump the run's version, which is
//! what tells a scheduler holding the run to re-read it (and kill tries no longer wanted).

use std::collections::HashSet;

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use gust_core::state::DagRunState;
use gust_scheduler::trigger::{TriggerError, trigger};
use gust_store::{RunFilter, RunOrder, RunType, StoredRun, TimeRange};
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::extract::{Body, Params};
use crate::api::page::{MAX_PAGE, OrderBy};
use crate::api::task_instances::{TaskInstanceResponse, instance_responses};
use crate::api::time::{Timestamp, parse_time};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// The DAG run endpoints.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_dag_runs, trigger_dag_run))
        .routes(routes!(get_dag_run, patch_dag_run, delete_dag_run))
        .routes(routes!(clear_dag_run))
        .routes(routes!(get_list_dag_runs_batch))
}

/// The most DAG ids one batch listing names.
pub const MAX_LISTED_DAGS: usize = 1000;

/// The longest note a run or task instance may carry (Airflow's limit).
pub const MAX_NOTE_CHARS: usize = 1000;

/// A DAG run (Airflow's `DAGRunResponse`).
#[derive(Debug, Serialize, ToSchema)]
pub struct DagRunResponse {
    pub dag_run_id: String,
    pub dag_id: String,
    pub logical_date: Option<Timestamp>,
    pub queued_at: Option<Timestamp>,
    pub start_date: Option<Timestamp>,
    pub end_date: Option<Timestamp>,
    /// Seconds from start to end.
    pub duration: Option<f64>,
    pub data_interval_start: Option<Timestamp>,
    pub data_interval_end: Option<Timestamp>,
    pub run_after: Timestamp,
    pub last_scheduling_decision: Option<Timestamp>,
    pub run_type: String,
    pub state: String,
    pub triggered_by: Option<String>,
    pub triggering_user_name: Option<String>,
    pub conf: Option<serde_json::Map<String, serde_json::Value>>,
    pub note: Option<String>,
    pub dag_versions: Vec<serde_json::Value>,
    pub bundle_version: Option<String>,
    pub dag_display_name: String,
    pub partition_key: Option<String>,
    pub partition_date: Option<Timestamp>,
}

impl From<StoredRun> for DagRunResponse {
    fn from(run: StoredRun) -> Self {
        let duration = run
            .start_date
            .zip(run.end_date)
            .map(|(start, end)| seconds_between(start, end));
        let triggered_by = match run.run_type {
            RunType::Scheduled => Some("timetable".to_owned()),
            RunType::Backfill => Some("backfill".to_owned()),
            RunType::OperatorTriggered => Some("operator".to_owned()),
            RunType::AssetTriggered => Some("asset".to_owned()),
            // Gust does not record whether the CLI or the API triggered a manual run.
            RunType::Manual => None,
        };
        // Airflow's asset-triggered runs have neither a logical date nor a data interval.
        let dated = run.run_type != RunType::AssetTriggered;
        DagRunResponse {
            dag_display_name: run.dag_id.clone(),
            dag_run_id: run.run_id,
            dag_id: run.dag_id,
            logical_date: dated.then(|| run.logical_date.into()),
            queued_at: Some(run.queued_at.into()),
            start_date: run.start_date.map(Into::into),
            end_date: run.end_date.map(Into::into),
            duration,
            data_interval_start: dated.then(|| run.data_interval.0.into()),
            data_interval_end: dated.then(|| run.data_interval.1.into()),
            run_after: run.data_interval.1.into(),
            last_scheduling_decision: None,
            run_type: run.run_type.as_str().to_owned(),
            state: run.state.as_str().to_owned(),
            triggered_by,
            triggering_user_name: None,
            conf: Some(crate::api::redact::redact_conf(&run.conf)),
            note: run.note,
            dag_versions: Vec::new(),
            bundle_version: None,
            partition_key: None,
            partition_date: None,
        }
    }
}

/// Seconds from `start` to `end`, as Airflow's `duration`.
pub fn seconds_between(start: DateTime<Utc>, end: DateTime<Utc>) -> f64 {
    let micros = (end - start).num_microseconds().unwrap_or(i64::MAX);
    #[allow(
        clippy::cast_precision_loss,
        reason = "a duration in seconds, shown to people"
    )]
    let seconds = micros as f64 / 1e6;
    seconds
}

/// A page of runs.
#[derive(Debug, Serialize, ToSchema)]
pub struct DagRunCollectionResponse {
    pub dag_runs: Vec<DagRunResponse>,
    pub total_entries: Option<i64>,
    pub total_entries_limit: Option<i64>,
    pub next_cursor: Option<String>,
    pub previous_cursor: Option<String>,
}

/// The 404 of a run, in Airflow's words.
pub fn run_not_found(dag_id: &str, run_id: &str) -> ApiError {
    ApiError::NotFound(format!(
        "The DagRun with dag_id: `{dag_id}` and run_id: `{run_id}` was not found"
    ))
}

/// A run, or its 404.
pub async fn find_run(state: &AppState, dag_id: &str, run_id: &str) -> ApiResult<StoredRun> {
    state
        .store()
        .run(dag_id, run_id)
        .await?
        .ok_or_else(|| run_not_found(dag_id, run_id))
}

/// Reads a JSON field that must be present but may be `null` (FastAPI's required nullable).
fn required_nullable<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer)
}

/// Reads a field whose absence differs from `null`: absent is `None`, `null` is `Some(None)`.
pub fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// A time from a request, or its 422.
fn time_param(
    place: &str,
    field: &str,
    value: Option<&String>,
) -> ApiResult<Option<DateTime<Utc>>> {
    value
        .map(|text| {
            parse_time(text).ok_or_else(|| {
                ApiError::invalid(
                    place,
                    field,
                    format!(
                        "Input should be a valid datetime (RFC 3339, or a date), not \"{text}\""
                    ),
                )
            })
        })
        .transpose()
}

/// `GET /dags/{dag_id}/dagRuns` filters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DagRunsQuery {
    /// At most this many (default 50, at most 100).
    #[serde(default = "crate::api::page::default_limit")]
    pub limit: usize,
    /// Skip this many.
    #[serde(default)]
    pub offset: usize,
    /// Only runs in these states.
    #[serde(default)]
    pub state: Vec<String>,
    /// Only runs of these types (`scheduled`, `manual`, `backfill`).
    #[serde(default)]
    pub run_type: Vec<String>,
    /// Sort keys: `id`, `state`, `dag_id`, `run_id`, `logical_date`, `run_after`, `start_date`,
    /// `end_date`; `-` first for descending.
    #[serde(default)]
    pub order_by: Vec<String>,
    pub logical_date_gte: Option<String>,
    pub logical_date_gt: Option<String>,
    pub logical_date_lte: Option<String>,
    pub logical_date_lt: Option<String>,
    pub run_after_gte: Option<String>,
    pub run_after_gt: Option<String>,
    pub run_after_lte: Option<String>,
    pub run_after_lt: Option<String>,
    pub start_date_gte: Option<String>,
    pub start_date_gt: Option<String>,
    pub start_date_lte: Option<String>,
    pub start_date_lt: Option<String>,
    pub end_date_gte: Option<String>,
    pub end_date_gt: Option<String>,
    pub end_date_lte: Option<String>,
    pub end_date_lt: Option<String>,
}

/// Filters of Airflow's run listing that Gust does not apply: refused rather than ignored, so a
/// filtered listing is never silently unfiltered.
const UNSUPPORTED_RUN_FILTERS: &[&str] = &[
    "cursor",
    "conf_contains",
    "duration_gte",
    "duration_gt",
    "duration_lte",
    "duration_lt",
    "updated_at_gte",
    "updated_at_gt",
    "updated_at_lte",
    "updated_at_lt",
    "dag_version",
    "bundle_version",
    "run_id_pattern",
    "run_id_prefix_pattern",
    "triggering_user_name_pattern",
    "triggering_user_name_prefix_pattern",
    "dag_id_pattern",
    "dag_id_prefix_pattern",
    "partition_key_pattern",
    "partition_key_prefix_pattern",
    "consuming_asset_pattern",
    "partition_date_gte",
    "partition_date_lte",
];

/// 400 when the query string uses one of `unsupported`.
pub fn refuse_unsupported(raw: Option<&str>, unsupported: &[&str]) -> ApiResult<()> {
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(raw.unwrap_or_default()).unwrap_or_default();
    match pairs
        .iter()
        .find(|(k, _)| unsupported.contains(&k.as_str()))
    {
        Some((key, _)) => Err(ApiError::BadRequest(format!(
            "the `{key}` parameter is not supported by Gust"
        ))),
        None => Ok(()),
    }
}

fn parse_run_state(place: &str, field: &str, text: &str) -> ApiResult<DagRunState> {
    match text {
        "queued" => Ok(DagRunState::Queued),
        "running" => Ok(DagRunState::Running),
        "success" => Ok(DagRunState::Success),
        "failed" => Ok(DagRunState::Failed),
        other => Err(ApiError::invalid(
            place,
            field,
            format!("Input should be 'queued', 'running', 'success' or 'failed', not '{other}'"),
        )),
    }
}

fn parse_run_type(text: &str) -> ApiResult<Option<RunType>> {
    match text {
        "scheduled" => Ok(Some(RunType::Scheduled)),
        "manual" => Ok(Some(RunType::Manual)),
        "backfill" => Ok(Some(RunType::Backfill)),
        "operator_triggered" => Ok(Some(RunType::OperatorTriggered)),
        "asset_triggered" => Ok(Some(RunType::AssetTriggered)),
        // Valid in Airflow, never created by Gust: it matches nothing.
        "asset_materialization" => Ok(None),
        other => Err(ApiError::invalid(
            "query",
            "run_type",
            format!(
                "'{other}' is not a run type; use scheduled, manual, backfill, \
                 operator_triggered or asset_triggered"
            ),
        )),
    }
}

/// The sort fields of run listings, with the store column each names.
const RUN_ORDER_FIELDS: &[(&str, RunOrder)] = &[
    ("id", RunOrder::Id),
    ("state", RunOrder::State),
    ("dag_id", RunOrder::DagId),
    ("run_id", RunOrder::RunId),
    ("dag_run_id", RunOrder::RunId),
    ("logical_date", RunOrder::LogicalDate),
    ("run_after", RunOrder::RunAfter),
    ("start_date", RunOrder::StartDate),
    ("end_date", RunOrder::EndDate),
];

fn run_order(values: &[String]) -> ApiResult<Vec<(RunOrder, bool)>> {
    let names: Vec<&str> = RUN_ORDER_FIELDS.iter().map(|(name, _)| *name).collect();
    Ok(OrderBy::parse(values, &names)?
        .into_iter()
        .filter_map(|o| {
            RUN_ORDER_FIELDS
                .iter()
                .find(|(name, _)| *name == o.field)
                .map(|(_, column)| (*column, o.descending))
        })
        .collect())
}

/// The four bounds `<name>_gte`, `_gt`, `_lte`, `_lt` of a time filter, each read as Airflow
/// reads times (a 422 naming the one that is not a time).
pub(crate) fn range(
    place: &str,
    name: &str,
    [gte, gt, lte, lt]: [Option<&String>; 4],
) -> ApiResult<TimeRange> {
    Ok(TimeRange {
        gte: time_param(place, &format!("{name}_gte"), gte)?,
        gt: time_param(place, &format!("{name}_gt"), gt)?,
        lte: time_param(place, &format!("{name}_lte"), lte)?,
        lt: time_param(place, &format!("{name}_lt"), lt)?,
    })
}

async fn list_page(
    state: &AppState,
    filter: &RunFilter,
    order: &[(RunOrder, bool)],
    limit: usize,
    offset: usize,
) -> ApiResult<DagRunCollectionResponse> {
    let limit = i64::try_from(limit.min(MAX_PAGE)).unwrap_or(0);
    let offset = i64::try_from(offset).unwrap_or(i64::MAX);
    let (runs, total) = state
        .store()
        .list_runs(filter, order, limit, offset)
        .await?;
    Ok(DagRunCollectionResponse {
        dag_runs: runs.into_iter().map(DagRunResponse::from).collect(),
        total_entries: Some(total),
        total_entries_limit: None,
        next_cursor: None,
        previous_cursor: None,
    })
}

/// Get a DAG's runs (`~` as the DAG id: every DAG's).
#[utoipa::path(get, path = "/api/v2/dags/{dag_id}/dagRuns", tag = "DagRun",
    params(("dag_id" = String, Path), DagRunsQuery),
    responses((status = 200, body = DagRunCollectionResponse), (status = 400), (status = 401), (status = 403), (status = 404), (status = 422)))]
async fn get_dag_runs(
    State(state): State<AppState>,
    Path(dag_id): Path<String>,
    RawQuery(raw): RawQuery,
    Params(query): Params<DagRunsQuery>,
) -> ApiResult<Json<DagRunCollectionResponse>> {
    refuse_unsupported(raw.as_deref(), UNSUPPORTED_RUN_FILTERS)?;
    let dag_ids = if dag_id == "~" {
        None
    } else {
        state.dag(&dag_id).await?;
        Some(vec![dag_id])
    };
    let mut run_types = Vec::new();
    let mut impossible = false;
    for text in &query.run_type {
        match parse_run_type(text)? {
            Some(t) if !run_types.contains(&t) => run_types.push(t),
            Some(_) => {}
            None => impossible = true,
        }
    }
    if impossible && run_types.is_empty() {
        // Only types Gust never creates were asked for.
        return Ok(Json(DagRunCollectionResponse {
            dag_runs: Vec::new(),
            total_entries: Some(0),
            total_entries_limit: None,
            next_cursor: None,
            previous_cursor: None,
        }));
    }
    let q = &query;
    let filter = RunFilter {
        dag_ids,
        states: q
            .state
            .iter()
            .map(|s| parse_run_state("query", "state", s))
            .collect::<ApiResult<HashSet<_>>>()?
            .into_iter()
            .collect(),
        run_types,
        logical_date: range(
            "query",
            "logical_date",
            [
                q.logical_date_gte.as_ref(),
                q.logical_date_gt.as_ref(),
                q.logical_date_lte.as_ref(),
                q.logical_date_lt.as_ref(),
            ],
        )?,
        run_after: range(
            "query",
            "run_after",
            [
                q.run_after_gte.as_ref(),
                q.run_after_gt.as_ref(),
                q.run_after_lte.as_ref(),
                q.run_after_lt.as_ref(),
            ],
        )?,
        start_date: range(
            "query",
            "start_date",
            [
                q.start_date_gte.as_ref(),
                q.start_date_gt.as_ref(),
                q.start_date_lte.as_ref(),
                q.start_date_lt.as_ref(),
            ],
        )?,
        end_date: range(
            "query",
            "end_date",
            [
                q.end_date_gte.as_ref(),
                q.end_date_gt.as_ref(),
                q.end_date_lte.as_ref(),
                q.end_date_lt.as_ref(),
            ],
        )?,
        ..RunFilter::default()
    };
    let order = run_order(&query.order_by)?;
    Ok(Json(
        list_page(&state, &filter, &order, query.limit, query.offset).await?,
    ))
}

/// What `POST /dags/~/dagRuns/list` filters by (Airflow's `DAGRunsBatchBody`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DagRunsBatchBody {
    pub order_by: Option<String>,
    #[serde(default)]
    pub page_offset: usize,
    #[serde(default = "batch_limit")]
    pub page_limit: usize,
    pub dag_ids: Option<Vec<String>>,
    pub states: Option<Vec<Option<String>>>,
    pub run_after_gte: Option<String>,
    pub run_after_gt: Option<String>,
    pub run_after_lte: Option<String>,
    pub run_after_lt: Option<String>,
    pub logical_date_gte: Option<String>,
    pub logical_date_gt: Option<String>,
    pub logical_date_lte: Option<String>,
    pub logical_date_lt: Option<String>,
    pub start_date_gte: Option<String>,
    pub start_date_gt: Option<String>,
    pub start_date_lte: Option<String>,
    pub start_date_lt: Option<String>,
    pub end_date_gte: Option<String>,
    pub end_date_gt: Option<String>,
    pub end_date_lte: Option<String>,
    pub end_date_lt: Option<String>,
    pub duration_gte: Option<f64>,
    pub duration_gt: Option<f64>,
    pub duration_lte: Option<f64>,
    pub duration_lt: Option<f64>,
    pub conf_contains: Option<String>,
}

fn batch_limit() -> usize {
    MAX_PAGE
}

/// List runs across DAGs (the path's DAG id must be `~`).
#[utoipa::path(post, path = "/api/v2/dags/{dag_id}/dagRuns/list", tag = "DagRun",
    params(("dag_id" = String, Path)), request_body = DagRunsBatchBody,
    responses((status = 200, body = DagRunCollectionResponse), (status = 400), (status = 401), (status = 403), (status = 404), (status = 422)))]
async fn get_list_dag_runs_batch(
    State(state): State<AppState>,
    Path(dag_id): Path<String>,
    Body(body): Body<DagRunsBatchBody>,
) -> ApiResult<Json<DagRunCollectionResponse>> {
    if dag_id != "~" {
        return Err(ApiError::invalid(
            "path",
            "dag_id",
            "Input should be '~': this endpoint lists runs across DAGs; filter with `dag_ids`",
        ));
    }
    let unsupported = [
        ("duration_gte", body.duration_gte.is_some()),
        ("duration_gt", body.duration_gt.is_some()),
        ("duration_lte", body.duration_lte.is_some()),
        ("duration_lt", body.duration_lt.is_some()),
        ("conf_contains", body.conf_contains.is_some()),
    ];
    if let Some((field, _)) = unsupported.iter().find(|(_, set)| *set) {
        return Err(ApiError::BadRequest(format!(
            "the `{field}` filter is not supported by Gust"
        )));
    }
    if body
        .dag_ids
        .as_ref()
        .is_some_and(|ids| ids.len() > MAX_LISTED_DAGS)
    {
        return Err(ApiError::invalid(
            "body",
            "dag_ids",
            format!("at most {MAX_LISTED_DAGS} DAG ids"),
        ));
    }
    let b = &body;
    let filter = RunFilter {
        dag_ids: b.dag_ids.clone(),
        states: b
            .states
            .iter()
            .flatten()
            .flatten()
            .map(|s| parse_run_state("body", "states", s))
            .collect::<ApiResult<HashSet<_>>>()?
            .into_iter()
            .collect(),
        run_types: Vec::new(),
        logical_date: range(
            "body",
            "logical_date",
            [
                b.logical_date_gte.as_ref(),
                b.logical_date_gt.as_ref(),
                b.logical_date_lte.as_ref(),
                b.logical_date_lt.as_ref(),
            ],
        )?,
        run_after: range(
            "body",
            "run_after",
            [
                b.run_after_gte.as_ref(),
                b.run_after_gt.as_ref(),
                b.run_after_lte.as_ref(),
                b.run_after_lt.as_ref(),
            ],
        )?,
        start_date: range(
            "body",
            "start_date",
            [
                b.start_date_gte.as_ref(),
                b.start_date_gt.as_ref(),
                b.start_date_lte.as_ref(),
                b.start_date_lt.as_ref(),
            ],
        )?,
        end_date: range(
            "body",
            "end_date",
            [
                b.end_date_gte.as_ref(),
                b.end_date_gt.as_ref(),
                b.end_date_lte.as_ref(),
                b.end_date_lt.as_ref(),
            ],
        )?,
        ..RunFilter::default()
    };
    let order = run_order(&body.order_by.iter().cloned().collect::<Vec<_>>())?;
    Ok(Json(
        list_page(&state, &filter, &order, body.page_limit, body.page_offset).await?,
    ))
}

/// Get a DAG run.
#[utoipa::path(get, path = "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}", tag = "DagRun",
    params(("dag_id" = String, Path), ("dag_run_id" = String, Path)),
    responses((status = 200, body = DagRunResponse), (status = 401), (status = 403), (status = 404)))]
async fn get_dag_run(
    State(state): State<AppState>,
    Path((dag_id, run_id)): Path<(String, String)>,
) -> ApiResult<Json<DagRunResponse>> {
    Ok(Json(find_run(&state, &dag_id, &run_id).await?.into()))
}

/// What triggering a run takes (Airflow's `TriggerDAGRunPostBody`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TriggerDagRunPostBody {
    pub dag_run_id: Option<String>,
    pub data_interval_start: Option<String>,
    pub data_interval_end: Option<String>,
    /// Required, but may be `null`: the run's logical date is then now.
    #[serde(deserialize_with = "required_nullable")]
    pub logical_date: Option<String>,
    pub run_after: Option<String>,
    pub conf: Option<serde_json::Map<String, serde_json::Value>>,
    pub note: Option<String>,
    pub partition_key: Option<String>,
}

/// Trigger a run of a DAG.
#[utoipa::path(post, path = "/api/v2/dags/{dag_id}/dagRuns", tag = "DagRun",
    params(("dag_id" = String, Path)), request_body = TriggerDagRunPostBody,
    responses((status = 200, body = DagRunResponse), (status = 400), (status = 401), (status = 403), (status = 404), (status = 409), (status = 422)))]
async fn trigger_dag_run(
    State(state): State<AppState>,
    Path(dag_id): Path<String>,
    Body(body): Body<TriggerDagRunPostBody>,
) -> ApiResult<Json<DagRunResponse>> {
    let not_found = || ApiError::NotFound(format!("Dag with dag_id: '{dag_id}' not found"));
    let summary = state
        .store()
        .dag_summary(&dag_id)
        .await?
        .filter(|s| s.is_active)
        .ok_or_else(not_found)?;
    let dag = state.definition(&summary).await?;
    let broken = state.store().import_errors().await?;
    if broken.iter().any(|e| e.file == summary.fileloc) {
        return Err(ApiError::BadRequest(format!(
            "Dag with dag_id: '{dag_id}' has import errors and cannot be triggered"
        )));
    }
    if body.data_interval_start.is_some() != body.data_interval_end.is_some() {
        return Err(ApiError::invalid(
            "body",
            "",
            "Either both data_interval_start and data_interval_end must be provided or both must be None",
        ));
    }
    if body.data_interval_start.is_some() {
        return Err(ApiError::BadRequest(
            "Gust's manual runs cover their logical date alone; leave data_interval_start and data_interval_end out".into(),
        ));
    }
    if body.partition_key.is_some() {
        return Err(ApiError::BadRequest(format!(
            "Dag with dag_id: '{dag_id}' is not partitioned; leave partition_key out"
        )));
    }
    check_note(body.note.as_deref())?;
    if body.run_after.is_some() {
        return Err(ApiError::BadRequest(
            "Gust starts a manual run as soon as it is triggered; leave run_after out".into(),
        ));
    }
    let now = state.now();
    let logical_date =
        time_param("body", "logical_date", body.logical_date.as_ref())?.unwrap_or(now);
    let conf = body.conf.unwrap_or_default();
    let given = body
        .dag_run_id
        .as_deref()
        .map(|id| state.run_id_pattern().check(id))
        .transpose()
        .map_err(|err| ApiError::BadRequest(err.to_string()))?;
    let run_id = match trigger(state.store(), &dag, conf, given, logical_date, now).await {
        Ok(run_id) => run_id,
        Err(TriggerError::Exists { dag_id, run_id }) => {
            return Err(ApiError::Conflict(format!(
                "The DagRun with dag_id: `{dag_id}` and run_id: `{run_id}` already exists"
            )));
        }
        Err(
            err @ (TriggerError::ConfType { .. }
            | TriggerError::RunId(_)
            | TriggerError::RunIdNotAllowed { .. }),
        ) => {
            return Err(ApiError::BadRequest(err.to_string()));
        }
        Err(TriggerError::Store(err)) => return Err(err.into()),
    };
    if let Some(note) = body.note.as_deref() {
        state
            .store()
            .set_run_note(&dag_id, &run_id, Some(note))
            .await?;
    }
    tracing::info!(%dag_id, %run_id, "run triggered through the API");
    state.wake_scheduler();
    Ok(Json(find_run(&state, &dag_id, &run_id).await?.into()))
}

/// What `PATCH .../dagRuns/{dag_run_id}` changes (Airflow's `DAGRunPatchBody`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DagRunPatchBody {
    /// `queued`, `success` or `failed`.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub state: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub note: Option<Option<String>>,
}

/// The update mask of a PATCH.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UpdateMask {
    /// Which fields of the body to apply (default: every field sent).
    pub update_mask: Option<Vec<String>>,
}

impl UpdateMask {
    /// Whether `field`, sent in the body, is to be applied.
    pub fn applies(&self, field: &str) -> bool {
        self.update_mask
            .as_ref()
            .is_none_or(|fields| fields.iter().any(|f| f == field))
    }
}

/// Check a note's length.
pub fn check_note(note: Option<&str>) -> ApiResult<()> {
    if note.is_some_and(|n| n.chars().count() > MAX_NOTE_CHARS) {
        return Err(ApiError::invalid(
            "body",
            "note",
            format!("String should have at most {MAX_NOTE_CHARS} characters"),
        ));
    }
    Ok(())
}

/// Mark a run (its task instances follow, as in Airflow) or change its note.
#[utoipa::path(patch, path = "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}", tag = "DagRun",
    params(("dag_id" = String, Path), ("dag_run_id" = String, Path), UpdateMask), request_body = DagRunPatchBody,
    responses((status = 200, body = DagRunResponse), (status = 400), (status = 401), (status = 403), (status = 404), (status = 422)))]
async fn patch_dag_run(
    State(state): State<AppState>,
    Path((dag_id, run_id)): Path<(String, String)>,
    Params(mask): Params<UpdateMask>,
    Body(body): Body<DagRunPatchBody>,
) -> ApiResult<Json<DagRunResponse>> {
    let run = find_run(&state, &dag_id, &run_id).await?;
    let target = match &body.state {
        Some(Some(text)) if mask.applies("state") => match text.as_str() {
            "queued" => Some(DagRunState::Queued),
            "success" => Some(DagRunState::Success),
            "failed" => Some(DagRunState::Failed),
            other => {
                return Err(ApiError::invalid(
                    "body",
                    "state",
                    format!("Input should be 'queued', 'success' or 'failed', not '{other}'"),
                ));
            }
        },
        _ => None,
    };
    if let Some(note) = body.note.as_ref().filter(|_| mask.applies("note")) {
        check_note(note.as_deref())?;
        state
            .store()
            .set_run_note(&dag_id, &run_id, note.as_deref())
            .await?;
    }
    if let Some(to) = target {
        if run.state == DagRunState::Queued && to != DagRunState::Queued {
            // A run not started yet has no task instances; they are created to be marked.
            let (_, dag) = state.dag(&dag_id).await?;
            let task_ids: Vec<&str> = dag.tasks().map(|t| t.id.as_str()).collect();
            state
                .store()
                .create_task_instances(&dag_id, &run_id, &task_ids)
                .await?;
        }
        if !state
            .store()
            .mark_run(&dag_id, &run_id, to, state.now())
            .await?
        {
            return Err(run_not_found(&dag_id, &run_id));
        }
        tracing::info!(%dag_id, %run_id, from = %run.state, %to, "run marked through the API");
        state.wake_scheduler();
    }
    Ok(Json(find_run(&state, &dag_id, &run_id).await?.into()))
}

/// Delete a run that is not running, with its task instances and XComs.
#[utoipa::path(delete, path = "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}", tag = "DagRun",
    params(("dag_id" = String, Path), ("dag_run_id" = String, Path)),
    responses((status = 204), (status = 400), (status = 401), (status = 403), (status = 404), (status = 409)))]
async fn delete_dag_run(
    State(state): State<AppState>,
    Path((dag_id, run_id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    match state.store().delete_run(&dag_id, &run_id).await? {
        None => Err(run_not_found(&dag_id, &run_id)),
        Some(false) => Err(ApiError::Conflict(format!(
            "The DagRun with dag_id: `{dag_id}` and run_id: `{run_id}` cannot be deleted in running state"
        ))),
        Some(true) => {
            tracing::info!(%dag_id, %run_id, "run deleted through the API");
            Ok(StatusCode::NO_CONTENT)
        }
    }
}

/// What clearing a run takes (Airflow's `DAGRunClearBody`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DagRunClearBody {
    /// Only say what would be cleared (the default, as in Airflow).
    #[serde(default = "yes")]
    pub dry_run: bool,
    #[serde(default)]
    pub only_failed: bool,
    #[serde(default)]
    pub only_new: bool,
    pub run_on_latest_version: Option<bool>,
    pub note: Option<String>,
}

fn yes() -> bool {
    true
}

/// A task new to the DAG, which clearing with `only_new` would add (Airflow's `NewTaskResponse`).
#[derive(Debug, Serialize, ToSchema)]
pub struct NewTaskResponse {
    pub task_id: String,
    pub task_display_name: String,
}

/// One entry of a clear's dry run.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum ClearedEntry {
    Instance(Box<TaskInstanceResponse>),
    New(NewTaskResponse),
}

/// What a dry run would clear.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClearTaskInstanceCollectionResponse {
    pub task_instances: Vec<ClearedEntry>,
    pub total_entries: usize,
}

/// Clear a run's task instances so they run again (`dry_run`, the default, only lists them).
#[utoipa::path(post, path = "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/clear", tag = "DagRun",
    params(("dag_id" = String, Path), ("dag_run_id" = String, Path)), request_body = DagRunClearBody,
    responses((status = 200, description = "A ClearTaskInstanceCollectionResponse for a dry run, else the DAGRunResponse"), (status = 401), (status = 403), (status = 404), (status = 422)))]
async fn clear_dag_run(
    State(state): State<AppState>,
    Path((dag_id, run_id)): Path<(String, String)>,
    Body(body): Body<DagRunClearBody>,
) -> ApiResult<Response> {
    if body.only_new && body.only_failed {
        return Err(ApiError::invalid(
            "body",
            "",
            "only_new and only_failed are mutually exclusive",
        ));
    }
    check_note(body.note.as_deref())?;
    let run = find_run(&state, &dag_id, &run_id).await?;
    let (_, dag) = state.dag(&dag_id).await?;
    let stored = state.store().task_instances(&dag_id, &run_id).await?;
    let chosen: Vec<String> = if body.only_new {
        let existing: HashSet<&str> = stored.iter().map(|ti| ti.task_id.as_str()).collect();
        dag.tasks()
            .map(|t| t.id.as_str())
            .filter(|id| !existing.contains(id))
            .map(str::to_owned)
            .collect()
    } else {
        stored
            .iter()
            .filter(|ti| {
                !body.only_failed
                    || matches!(
                        ti.state,
                        gust_core::state::TaskState::Failed
                            | gust_core::state::TaskState::UpstreamFailed
                    )
            })
            .map(|ti| ti.task_id.clone())
            .collect()
    };
    if body.dry_run {
        let entries: Vec<ClearedEntry> = if body.only_new {
            chosen
                .into_iter()
                .map(|task_id| {
                    ClearedEntry::New(NewTaskResponse {
                        task_display_name: task_id.clone(),
                        task_id,
                    })
                })
                .collect()
        } else {
            instance_responses(&state, &run, Some(&dag), Some(&chosen))
                .await?
                .into_iter()
                .map(|ti| ClearedEntry::Instance(Box::new(ti)))
                .collect()
        };
        let total_entries = entries.len();
        return Ok(Json(ClearTaskInstanceCollectionResponse {
            task_instances: entries,
            total_entries,
        })
        .into_response());
    }
    if body.only_new {
        let new: Vec<&str> = chosen.iter().map(String::as_str).collect();
        state
            .store()
            .create_task_instances(&dag_id, &run_id, &new)
            .await?;
    }
    let cleared = state
        .store()
        .clear_task_instances(&dag_id, &run_id, &chosen, state.now())
        .await?;
    if let Some(note) = body.note.as_deref() {
        state
            .store()
            .set_run_note(&dag_id, &run_id, Some(note))
            .await?;
    }
    tracing::info!(%dag_id, %run_id, cleared, "run cleared through the API");
    state.wake_scheduler();
    Ok(Json(DagRunResponse::from(
        find_run(&state, &dag_id, &run_id).await?,
    ))
    .into_response())
}
