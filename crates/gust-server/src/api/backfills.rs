//! `/api/v2/backfills`: the API form of `gust dags backfill`, with Airflow 3's backfill objects.
//! Creating one makes a `backfill` run for each schedule interval whose logical date is within
//! the dates and which has ended (newest first with `run_backwards`), as Airflow's
//! `_create_backfill` does: an interval that already has a run gets none unless
//! `reprocess_behavior` says to run it again (`failed`: a failed run; `completed`: a failed or
//! successful one), in which case that run is cleared and joins the backfill; a run still
//! going is never touched. A dry run answers the logical dates that would run.
//!
//! A backfill is complete when every one of its runs has finished (or when it is cancelled);
//! one DAG has at most one backfill not complete. Cancelling fails its runs not started yet.

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use gust_core::dag::Dag;
use gust_core::date::python_isoformat;
use gust_core::schedule::{DataInterval, Schedule};
use gust_core::state::DagRunState;
use gust_store::{NewBackfill, NewRun, RunFilter, RunType, StoredBackfill, StoredRun, TimeRange};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::extract::{Body, Params, PathParams};
use crate::api::page::{OrderBy, Page, sort_by};
use crate::api::time::{Timestamp, parse_time};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// The most runs one backfill may create (as `gust dags backfill`).
pub const MAX_BACKFILL_RUNS: usize = 10_000;

/// Airflow's answer for a backfill id that does not exist.
const NOT_FOUND: &str = "Backfill not found";

/// The backfill endpoints.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_backfills, create_backfill))
        .routes(routes!(get_backfill))
        .routes(routes!(pause_backfill))
        .routes(routes!(unpause_backfill))
        .routes(routes!(cancel_backfill))
        .routes(routes!(create_backfill_dry_run))
}

/// Which existing runs a backfill runs again (Airflow's `ReprocessBehavior`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ReprocessBehavior {
    /// Failed runs.
    Failed,
    /// Failed and successful runs.
    Completed,
    /// None.
    #[default]
    None,
}

impl ReprocessBehavior {
    fn as_str(self) -> &'static str {
        match self {
            Self::Failed => "failed",
            Self::Completed => "completed",
            Self::None => "none",
        }
    }

    fn parse(text: &str) -> Self {
        match text {
            "failed" => Self::Failed,
            "completed" => Self::Completed,
            _ => Self::None,
        }
    }

    /// Whether an existing run in `state` is run again (Airflow's
    /// `_get_dag_run_no_create_reason` is none).
    fn reprocesses(self, state: DagRunState) -> bool {
        match state {
            DagRunState::Queued | DagRunState::Running => false,
            DagRunState::Failed => self != Self::None,
            DagRunState::Success => self == Self::Completed,
        }
    }
}

/// A backfill to create (Airflow's `BackfillPostBody`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BackfillPostBody {
    pub dag_id: String,
    #[schema(value_type = String, format = DateTime)]
    pub from_date: String,
    #[schema(value_type = String, format = DateTime)]
    pub to_date: String,
    #[serde(default)]
    pub run_backwards: bool,
    #[serde(default)]
    pub dag_run_conf: Option<Map<String, Value>>,
    #[serde(default)]
    pub reprocess_behavior: ReprocessBehavior,
    #[serde(default = "default_max_active_runs")]
    pub max_active_runs: i64,
    /// Accepted for Airflow's clients: Gust runs every run on the DAG's latest definition.
    #[serde(default)]
    pub run_on_latest_version: Option<bool>,
}

fn default_max_active_runs() -> i64 {
    10
}

/// A backfill (Airflow's `BackfillResponse`).
#[derive(Debug, Serialize, ToSchema)]
pub struct BackfillResponse {
    pub id: i64,
    pub dag_id: String,
    pub from_date: Timestamp,
    pub to_date: Timestamp,
    pub dag_run_conf: Option<Map<String, Value>>,
    pub is_paused: bool,
    pub reprocess_behavior: ReprocessBehavior,
    pub max_active_runs: i64,
    pub created_at: Timestamp,
    pub completed_at: Option<Timestamp>,
    pub updated_at: Timestamp,
    pub dag_display_name: String,
}

/// A page of backfills.
#[derive(Debug, Serialize, ToSchema)]
pub struct BackfillCollectionResponse {
    pub backfills: Vec<BackfillResponse>,
    pub total_entries: usize,
}

/// A run a backfill would create or run again (Airflow's `DryRunBackfillResponse`).
#[derive(Debug, Serialize, ToSchema)]
pub struct DryRunBackfillResponse {
    pub logical_date: Option<Timestamp>,
    pub partition_key: Option<String>,
    pub partition_date: Option<Timestamp>,
}

/// What a backfill would do.
#[derive(Debug, Serialize, ToSchema)]
pub struct DryRunBackfillCollectionResponse {
    pub backfills: Vec<DryRunBackfillResponse>,
    pub total_entries: usize,
}

/// `GET /backfills` parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BackfillsQuery {
    /// The DAG whose backfills to list.
    pub dag_id: String,
    /// At most this many (default 50, at most 100).
    #[serde(default = "crate::api::page::default_limit")]
    pub limit: usize,
    /// Skip this many.
    #[serde(default)]
    pub offset: usize,
    /// Sort key: `id`; `-id` for descending.
    #[serde(default)]
    pub order_by: Vec<String>,
}

/// A backfill as answered: complete once cancelled or once all its runs have finished.
async fn response(state: &AppState, backfill: StoredBackfill) -> ApiResult<BackfillResponse> {
    let completed_at = match backfill.completed_at {
        Some(at) => Some(at),
        None => completion(state, &backfill).await?,
    };
    let new = backfill.backfill;
    Ok(BackfillResponse {
        id: backfill.id,
        dag_display_name: new.dag_id.clone(),
        dag_id: new.dag_id,
        from_date: new.from_date.into(),
        to_date: new.to_date.into(),
        dag_run_conf: new.dag_run_conf,
        is_paused: backfill.is_paused,
        reprocess_behavior: ReprocessBehavior::parse(&new.reprocess_behavior),
        max_active_runs: new.max_active_runs,
        created_at: new.created_at.into(),
        completed_at: completed_at.map(Timestamp),
        updated_at: backfill.updated_at.into(),
    })
}

/// When a backfill not cancelled completed: when its last run ended, once all have (when it
/// was created, if it has no runs); `None` while one is still to finish.
async fn completion(
    state: &AppState,
    backfill: &StoredBackfill,
) -> ApiResult<Option<DateTime<Utc>>> {
    let runs = state.store().backfill_runs(backfill.id).await?;
    if runs
        .iter()
        .any(|(_, run_state, _)| run_state == "queued" || run_state == "running")
    {
        return Ok(None);
    }
    Ok(Some(
        runs.iter()
            .filter_map(|(_, _, end)| *end)
            .max()
            .unwrap_or(backfill.backfill.created_at),
    ))
}

async fn find(state: &AppState, id: i64) -> ApiResult<StoredBackfill> {
    state
        .store()
        .backfill(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(NOT_FOUND.into()))
}

/// A checked request: the DAG, the dates, the intervals to run and the conf.
struct Plan {
    dag: std::sync::Arc<Dag>,
    from_date: DateTime<Utc>,
    to_date: DateTime<Utc>,
    conf: Option<Map<String, Value>>,
    /// The intervals to run, in the order they are created, each with its latest run if any.
    intervals: Vec<(DataInterval, Option<StoredRun>)>,
}

fn unprocessable(message: impl Into<String>) -> ApiError {
    ApiError::Unprocessable(message.into())
}

fn date(field: &str, text: &str) -> ApiResult<DateTime<Utc>> {
    parse_time(text).ok_or_else(|| {
        ApiError::invalid(
            "body",
            field,
            format!("Input should be a valid datetime, not \"{text}\""),
        )
    })
}

/// Python's `str(datetime)`: `2026-01-01 00:00:00+00:00`.
fn python_str(at: DateTime<Utc>) -> String {
    python_isoformat(at).replacen('T', " ", 1)
}

/// Checks `body` as Airflow's `_create_backfill` / `_do_dry_run` do, and finds the intervals.
async fn plan(state: &AppState, body: &BackfillPostBody) -> ApiResult<Plan> {
    let from_date = date("from_date", &body.from_date)?;
    let to_date = date("to_date", &body.to_date)?;
    let dag_id = &body.dag_id;
    let Some(summary) = state.store().dag_summary(dag_id).await? else {
        return Err(ApiError::NotFound(format!("Could not find dag {dag_id}")));
    };
    let dag = state.definition(&summary).await?;
    if !matches!(
        dag.settings.schedule,
        Schedule::Cron(_) | Schedule::Interval(_)
    ) {
        return Err(unprocessable(format!(
            "{dag_id} has a non-periodic schedule that does not support backfills"
        )));
    }
    if from_date > to_date {
        return Err(unprocessable(format!(
            "from_date ({}) must not be after to_date ({}).",
            python_isoformat(from_date),
            python_isoformat(to_date)
        )));
    }
    let now = state.now();
    if from_date >= now && to_date >= now {
        return Err(unprocessable(
            "Backfill cannot be executed for future dates.",
        ));
    }
    if dag.tasks().any(|t| t.settings.depends_on_past) {
        if body.run_backwards {
            return Err(unprocessable(
                "Backfill cannot be run in reverse when the Dag has tasks where depends_on_past=True.",
            ));
        }
        if body.reprocess_behavior == ReprocessBehavior::None {
            return Err(unprocessable(
                "Dag has tasks for which depends_on_past=True. You must set reprocess behavior to reprocess completed or reprocess failed.",
            ));
        }
    }
    if let Some(conf) = &body.dag_run_conf {
        gust_scheduler::trigger::check_conf(&dag, conf)
            .map_err(|e| unprocessable(e.to_string()))?;
    }
    let schedule = &dag.settings.schedule;
    let tz = dag.settings.timezone;
    let mut found = Vec::new();
    let mut next = schedule.next_data_interval(None, from_date, tz);
    while let Some(interval) = next.filter(|i| i.start <= to_date) {
        if interval.end < now {
            if found.len() >= MAX_BACKFILL_RUNS {
                return Err(ApiError::BadRequest(format!(
                    "more than {MAX_BACKFILL_RUNS} intervals between the dates; backfill a shorter range"
                )));
            }
            found.push(interval);
        }
        // A run of one instant (a trigger timetable's) is followed too; a next run that does
        // not move on (`@once`'s none) ends the walk.
        next = schedule
            .next_data_interval(Some(&interval), from_date, tz)
            .filter(|n| n.end > interval.end);
    }
    if found.is_empty() {
        return Err(unprocessable(format!(
            "No runs to create for Dag {dag_id} in the range [{}, {}]",
            python_str(from_date),
            python_str(to_date)
        )));
    }
    if body.run_backwards {
        found.reverse();
    }
    let mut intervals = Vec::with_capacity(found.len());
    for interval in found {
        let filter = RunFilter {
            dag_ids: Some(vec![dag_id.clone()]),
            logical_date: TimeRange {
                gte: Some(interval.start),
                lte: Some(interval.start),
                ..TimeRange::default()
            },
            ..RunFilter::default()
        };
        let (runs, _) = state.store().list_runs(&filter, &[], 100, 0).await?;
        // Airflow reads the run that started last (one not started counts first).
        let latest = runs
            .into_iter()
            .max_by_key(|r| (r.start_date.is_none(), r.start_date));
        intervals.push((interval, latest));
    }
    Ok(Plan {
        dag,
        from_date,
        to_date,
        conf: body.dag_run_conf.clone(),
        intervals,
    })
}

/// List a DAG's backfills.
#[utoipa::path(get, path = "/api/v2/backfills", tag = "Backfill", params(BackfillsQuery),
    responses((status = 200, body = BackfillCollectionResponse), (status = 400), (status = 401), (status = 403), (status = 422)))]
async fn list_backfills(
    State(state): State<AppState>,
    Params(query): Params<BackfillsQuery>,
) -> ApiResult<Json<BackfillCollectionResponse>> {
    let order = OrderBy::parse(&query.order_by, &["id"])?;
    let mut backfills = state.store().backfills_of_dag(&query.dag_id).await?;
    sort_by(&mut backfills, &order, |b, _| b.id);
    let total_entries = backfills.len();
    let page = Page {
        limit: query.limit,
        offset: query.offset,
    };
    let mut answered = Vec::new();
    for backfill in page.slice(backfills) {
        answered.push(response(&state, backfill).await?);
    }
    Ok(Json(BackfillCollectionResponse {
        backfills: answered,
        total_entries,
    }))
}

/// Get a backfill.
#[utoipa::path(get, path = "/api/v2/backfills/{backfill_id}", tag = "Backfill",
    params(("backfill_id" = i64, Path)),
    responses((status = 200, body = BackfillResponse), (status = 401), (status = 403), (status = 404), (status = 422)))]
async fn get_backfill(
    State(state): State<AppState>,
    PathParams(id): PathParams<u32>,
) -> ApiResult<Json<BackfillResponse>> {
    let backfill = find(&state, i64::from(id)).await?;
    Ok(Json(response(&state, backfill).await?))
}

/// Pauses or unpauses a backfill not complete.
async fn set_paused(state: &AppState, id: i64, paused: bool) -> ApiResult<Json<BackfillResponse>> {
    let backfill = find(state, id).await?;
    let answered = response(state, backfill).await?;
    if answered.completed_at.is_some()
        || !state
            .store()
            .set_backfill_paused(id, paused, state.now())
            .await?
    {
        return Err(ApiError::Conflict("Backfill is already completed.".into()));
    }
    tracing::info!(
        backfill = id,
        paused,
        "backfill paused flag set through the API"
    );
    state.wake_scheduler();
    Ok(Json(response(state, find(state, id).await?).await?))
}

/// Pause a backfill.
#[utoipa::path(put, path = "/api/v2/backfills/{backfill_id}/pause", tag = "Backfill",
    params(("backfill_id" = i64, Path)),
    responses((status = 200, body = BackfillResponse), (status = 401), (status = 403), (status = 404), (status = 409), (status = 422)))]
async fn pause_backfill(
    State(state): State<AppState>,
    PathParams(id): PathParams<u32>,
) -> ApiResult<Json<BackfillResponse>> {
    set_paused(&state, i64::from(id), true).await
}

/// Unpause a backfill.
#[utoipa::path(put, path = "/api/v2/backfills/{backfill_id}/unpause", tag = "Backfill",
    params(("backfill_id" = i64, Path)),
    responses((status = 200, body = BackfillResponse), (status = 401), (status = 403), (status = 404), (status = 409), (status = 422)))]
async fn unpause_backfill(
    State(state): State<AppState>,
    PathParams(id): PathParams<u32>,
) -> ApiResult<Json<BackfillResponse>> {
    set_paused(&state, i64::from(id), false).await
}

/// Cancel a backfill: its runs not started yet fail, and it is complete.
#[utoipa::path(put, path = "/api/v2/backfills/{backfill_id}/cancel", tag = "Backfill",
    params(("backfill_id" = i64, Path)),
    responses((status = 200, body = BackfillResponse), (status = 401), (status = 403), (status = 404), (status = 409), (status = 422)))]
async fn cancel_backfill(
    State(state): State<AppState>,
    PathParams(id): PathParams<u32>,
) -> ApiResult<Json<BackfillResponse>> {
    let id = i64::from(id);
    let backfill = find(&state, id).await?;
    if backfill.completed_at.is_some() {
        return Err(ApiError::Conflict("Backfill is already completed.".into()));
    }
    // Paused first, so that nothing starts while the queued runs are failed.
    state
        .store()
        .set_backfill_paused(id, true, state.now())
        .await?;
    let dag_id = &backfill.backfill.dag_id;
    for (run_id, run_state, _) in state.store().backfill_runs(id).await? {
        if run_state == "queued" {
            state
                .store()
                .mark_run(dag_id, &run_id, DagRunState::Failed, state.now())
                .await?;
        }
    }
    state.store().complete_backfill(id, state.now()).await?;
    tracing::info!(backfill = id, %dag_id, "backfill cancelled through the API");
    state.wake_scheduler();
    Ok(Json(response(&state, find(&state, id).await?).await?))
}

/// Create a backfill.
#[utoipa::path(post, path = "/api/v2/backfills", tag = "Backfill", request_body = BackfillPostBody,
    responses((status = 200, body = BackfillResponse), (status = 400), (status = 401), (status = 403), (status = 404), (status = 409), (status = 422)))]
async fn create_backfill(
    State(state): State<AppState>,
    caller: Option<axum::Extension<Caller>>,
    Body(body): Body<BackfillPostBody>,
) -> ApiResult<Json<BackfillResponse>> {
    let plan = plan(&state, &body).await?;
    let dag_id = plan.dag.id.to_string();
    for existing in state.store().backfills_of_dag(&dag_id).await? {
        if existing.completed_at.is_none() && completion(&state, &existing).await?.is_none() {
            return Err(ApiError::Conflict(format!(
                "There is already a running backfill for dag {dag_id}"
            )));
        }
    }
    let now = state.now();
    let id = state
        .store()
        .create_backfill(&NewBackfill {
            dag_id: dag_id.clone(),
            from_date: plan.from_date,
            to_date: plan.to_date,
            run_backwards: body.run_backwards,
            dag_run_conf: plan.conf.clone(),
            reprocess_behavior: body.reprocess_behavior.as_str().to_owned(),
            max_active_runs: body.max_active_runs,
            triggering_user_name: caller.map(|c| c.0.username.clone()),
            created_at: now,
        })
        .await?;
    let (mut created, mut rerun) = (0, 0);
    for (interval, existing) in &plan.intervals {
        match existing {
            Some(run) if body.reprocess_behavior.reprocesses(run.state) => {
                let instances = state.store().task_instances(&dag_id, &run.run_id).await?;
                let task_ids: Vec<String> = instances.into_iter().map(|ti| ti.task_id).collect();
                let cleared = state
                    .store()
                    .clear_task_instances(&dag_id, &run.run_id, &task_ids, now)
                    .await?;
                if cleared == 0 {
                    // A run that never started has no instances to clear: it is queued again.
                    state
                        .store()
                        .mark_run(&dag_id, &run.run_id, DagRunState::Queued, now)
                        .await?;
                }
                state
                    .store()
                    .set_run_backfill(&dag_id, &run.run_id, id)
                    .await?;
                rerun += 1;
            }
            Some(_) => {}
            None => {
                let run = NewRun {
                    dag_id: dag_id.clone(),
                    run_id: gust_scheduler::trigger::run_id_for(RunType::Backfill, interval.end),
                    run_type: RunType::Backfill,
                    logical_date: interval.start,
                    data_interval: (interval.start, interval.end),
                    conf: plan.conf.clone().unwrap_or_default(),
                    queued_at: now,
                };
                if state.store().create_run(&run).await? {
                    state
                        .store()
                        .set_run_backfill(&dag_id, &run.run_id, id)
                        .await?;
                    created += 1;
                }
            }
        }
    }
    tracing::info!(backfill = id, %dag_id, created, rerun, "backfill created through the API");
    state.wake_scheduler();
    Ok(Json(response(&state, find(&state, id).await?).await?))
}

/// Which logical dates a backfill would run.
#[utoipa::path(post, path = "/api/v2/backfills/dry_run", tag = "Backfill", request_body = BackfillPostBody,
    responses((status = 200, body = DryRunBackfillCollectionResponse), (status = 400), (status = 401), (status = 403), (status = 404), (status = 409), (status = 422)))]
async fn create_backfill_dry_run(
    State(state): State<AppState>,
    Body(body): Body<BackfillPostBody>,
) -> ApiResult<Json<DryRunBackfillCollectionResponse>> {
    let plan = plan(&state, &body).await?;
    let backfills: Vec<DryRunBackfillResponse> = plan
        .intervals
        .iter()
        .filter(|(_, existing)| {
            existing
                .as_ref()
                .is_none_or(|run| body.reprocess_behavior.reprocesses(run.state))
        })
        .map(|(interval, _)| DryRunBackfillResponse {
            logical_date: Some(interval.start.into()),
            partition_key: None,
            partition_date: None,
        })
        .collect();
    Ok(Json(DryRunBackfillCollectionResponse {
        total_entries: backfills.len(),
        backfills,
    }))
}

#[cfg(test)]
mod tests {
    use super::ReprocessBehavior;
    use gust_core::state::DagRunState;

    #[test]
    fn existing_runs_are_run_again_as_airflow_decides() {
        use DagRunState::{Failed, Queued, Running, Success};
        let table = [
            (ReprocessBehavior::None, [false, false, false, false]),
            (ReprocessBehavior::Failed, [false, false, true, false]),
            (ReprocessBehavior::Completed, [false, false, true, true]),
        ];
        for (behavior, expected) in table {
            let got = [Queued, Running, Failed, Success].map(|s| behavior.reprocesses(s));
            assert_eq!(got, expected, "{behavior:?}");
        }
    }
}
