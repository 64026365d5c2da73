//! `/api/v2/dags`: list, get, details, pause and unpause, delete.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use gust_core::dag::Dag;
use gust_core::schedule::{DataInterval, Schedule};
use gust_store::{DagSummary, StoredRun};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::extract::{Body, Params};
use crate::api::page::{OrderBy, Page, sort_by};
use crate::api::time::Timestamp;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// The DAG endpoints.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_dags, patch_dags))
        .routes(routes!(get_dag, patch_dag, delete_dag))
        .routes(routes!(get_dag_details))
}

/// A tag of a DAG.
#[derive(Debug, Serialize, ToSchema)]
pub struct DagTagResponse {
    /// The tag.
    pub name: String,
    /// The DAG.
    pub dag_id: String,
    /// The DAG's display name.
    pub dag_display_name: String,
}

/// A DAG, as lists show it (Airflow's `DAGResponse`).
#[derive(Debug, Serialize, ToSchema)]
pub struct DagResponse {
    pub dag_id: String,
    pub dag_display_name: String,
    pub is_paused: bool,
    pub is_stale: bool,
    pub last_parsed_time: Option<Timestamp>,
    pub last_parse_duration: Option<f64>,
    pub last_expired: Option<Timestamp>,
    pub bundle_name: Option<String>,
    pub bundle_version: Option<String>,
    pub relative_fileloc: Option<String>,
    pub fileloc: String,
    pub description: Option<String>,
    pub timetable_summary: Option<String>,
    pub timetable_description: Option<String>,
    pub timetable_partitioned: bool,
    pub timetable_periodic: bool,
    pub tags: Vec<DagTagResponse>,
    pub max_active_tasks: u32,
    pub max_active_runs: Option<u32>,
    pub max_consecutive_failed_dag_runs: u32,
    pub has_task_concurrency_limits: bool,
    pub has_import_errors: bool,
    pub next_dagrun_logical_date: Option<Timestamp>,
    pub next_dagrun_data_interval_start: Option<Timestamp>,
    pub next_dagrun_data_interval_end: Option<Timestamp>,
    pub next_dagrun_run_after: Option<Timestamp>,
    pub allowed_run_types: Option<Vec<String>>,
    pub owners: Vec<String>,
    pub is_backfillable: bool,
    pub file_token: String,
}

/// A DAG with its settings (Airflow's `DAGDetailsResponse`).
#[derive(Debug, Serialize, ToSchema)]
pub struct DagDetailsResponse {
    #[serde(flatten)]
    pub dag: DagResponse,
    pub catchup: bool,
    /// The run timeout as an ISO 8601 duration (`PT1H`).
    pub dag_run_timeout: Option<String>,
    pub asset_expression: Option<serde_json::Value>,
    pub doc_md: Option<String>,
    pub start_date: Option<Timestamp>,
    pub end_date: Option<Timestamp>,
    pub is_paused_upon_creation: Option<bool>,
    pub params: Option<serde_json::Value>,
    pub render_template_as_native_obj: bool,
    pub template_search_path: Option<Vec<String>>,
    pub timezone: Option<String>,
    pub last_parsed: Option<Timestamp>,
    pub default_args: Option<serde_json::Value>,
    pub is_favorite: bool,
    pub active_runs_count: u32,
    /// `max_active_tasks` under its deprecated name, which Airflow still answers.
    pub concurrency: u32,
    /// Gust keeps no DAG versions: always null.
    pub latest_dag_version: Option<serde_json::Value>,
}

/// A page of DAGs.
#[derive(Debug, Serialize, ToSchema)]
pub struct DagCollectionResponse {
    pub dags: Vec<DagResponse>,
    pub total_entries: usize,
}

/// What `PATCH /dags/{dag_id}` changes.
#[derive(Debug, Deserialize, ToSchema)]
pub struct DagPatchBody {
    pub is_paused: bool,
}

/// `GET /dags` filters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DagsQuery {
    /// At most this many (default 50, at most 100).
    #[serde(default = "crate::api::page::default_limit")]
    pub limit: usize,
    /// Skip this many.
    #[serde(default)]
    pub offset: usize,
    /// Only DAGs with these tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// `any` (default) or `all` of `tags`.
    pub tags_match_mode: Option<String>,
    /// Only DAGs with tasks of these owners.
    #[serde(default)]
    pub owners: Vec<String>,
    /// Case-insensitive substring of the DAG id.
    pub dag_id_pattern: Option<String>,
    /// Prefix of the DAG id.
    pub dag_id_prefix_pattern: Option<String>,
    /// Case-insensitive substring of the display name.
    pub dag_display_name_pattern: Option<String>,
    /// Leave out DAGs whose file no longer defines them (default true).
    #[serde(default = "yes")]
    pub exclude_stale: bool,
    /// Only paused (true) or unpaused (false) DAGs.
    pub paused: Option<bool>,
    /// Only DAGs whose file has (true) or has no (false) import errors.
    pub has_import_errors: Option<bool>,
    /// Sort keys: `dag_id`, `dag_display_name`, `next_dagrun`, `last_run_state`,
    /// `last_run_start_date` (of each DAG's latest run); `-` first for descending.
    #[serde(default)]
    pub order_by: Vec<String>,
}

fn yes() -> bool {
    true
}

/// The update mask of a PATCH.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UpdateMask {
    /// Which fields of the body to apply (default: all).
    pub update_mask: Option<Vec<String>>,
}

/// Files with import errors, to flag their DAGs.
async fn files_with_errors(state: &AppState) -> ApiResult<BTreeSet<String>> {
    Ok(state
        .store()
        .import_errors()
        .await?
        .into_iter()
        .map(|e| e.file)
        .collect())
}

/// A DAG's list entry.
pub async fn dag_response(
    state: &AppState,
    summary: &DagSummary,
    dag: &Dag,
    import_errors: &BTreeSet<String>,
) -> ApiResult<DagResponse> {
    let settings = &dag.settings;
    let next = next_run(state, summary, dag).await?;
    let owners: BTreeSet<String> = dag.tasks().map(|t| t.settings.owner.clone()).collect();
    Ok(DagResponse {
        dag_id: summary.dag_id.clone(),
        dag_display_name: summary.dag_id.clone(),
        is_paused: summary.is_paused,
        is_stale: !summary.is_active,
        last_parsed_time: Some(summary.last_parsed.into()),
        last_parse_duration: summary.last_parse_duration.map(|d| d.as_secs_f64()),
        last_expired: None,
        bundle_name: Some("dags-folder".to_owned()),
        bundle_version: None,
        relative_fileloc: dag
            .fileloc
            .file_name()
            .map(|n| n.to_string_lossy().into_owned()),
        fileloc: summary.fileloc.clone(),
        description: settings.description.clone(),
        timetable_summary: Some(summarize_schedule(settings)),
        timetable_description: Some(describe_assets_and_time(settings)),
        timetable_partitioned: false,
        timetable_periodic: settings.schedule.is_periodic(),
        tags: settings
            .tags
            .iter()
            .map(|name| DagTagResponse {
                name: name.clone(),
                dag_id: summary.dag_id.clone(),
                dag_display_name: summary.dag_id.clone(),
            })
            .collect(),
        max_active_tasks: settings.max_active_tasks,
        max_active_runs: Some(settings.max_active_runs),
        max_consecutive_failed_dag_runs: 0,
        has_task_concurrency_limits: false,
        has_import_errors: import_errors.contains(&summary.fileloc),
        next_dagrun_logical_date: next.map(|i| i.start.into()),
        next_dagrun_data_interval_start: next.map(|i| i.start.into()),
        next_dagrun_data_interval_end: next.map(|i| i.end.into()),
        next_dagrun_run_after: next.map(|i| i.end.into()),
        allowed_run_types: None,
        owners: owners.into_iter().collect(),
        is_backfillable: !matches!(settings.schedule, Schedule::Manual | Schedule::Once),
        file_token: summary.fingerprint.clone(),
    })
}

/// The interval of the DAG's next scheduled run, as the scheduler will create it.
async fn next_run(
    state: &AppState,
    summary: &DagSummary,
    dag: &Dag,
) -> ApiResult<Option<DataInterval>> {
    let settings = &dag.settings;
    if matches!(settings.schedule, Schedule::Manual) {
        return Ok(None);
    }
    let last = state
        .store()
        .latest_scheduled_interval(&summary.dag_id)
        .await?
        .map(|(start, end)| DataInterval { start, end });
    Ok(gust_core::timetable::next_run(
        settings,
        last.as_ref(),
        state.now(),
    ))
}

/// Airflow's timetable summary: `Asset` for an asset schedule, `Asset or <time>` for assets or
/// time (`AssetOrTimeSchedule`), the time schedule's otherwise.
fn summarize_schedule(settings: &gust_core::dag::DagSettings) -> String {
    match (&settings.assets, &settings.schedule) {
        (Some(_), Schedule::Manual) => "Asset".to_owned(),
        (Some(_), time) => format!("Asset or {}", time.as_text()),
        (None, time) => time.as_text(),
    }
}

/// Airflow's timetable description, with assets as [`summarize_schedule`].
fn describe_assets_and_time(settings: &gust_core::dag::DagSettings) -> String {
    match (&settings.assets, &settings.schedule) {
        (Some(_), Schedule::Manual) => "Triggered by assets".to_owned(),
        (Some(_), time) => format!("Triggered by assets or {}", describe_schedule(time)),
        (None, time) => describe_schedule(time),
    }
}

/// Airflow's `description` of each timetable. Cron timetables are described by Airflow with
/// the `cron_descriptor` library ("At 01:00"), which Gust does not have: they read "Cron: "
/// and the expression, joined by ", " for several crons as Airflow joins its descriptions.
fn describe_schedule(schedule: &Schedule) -> String {
    match schedule {
        Schedule::Manual => "Never, external triggers only".to_owned(),
        Schedule::Once => "Once, as soon as possible".to_owned(),
        Schedule::Cron(_) => format!("Cron: {}", schedule.as_text()),
        Schedule::Interval(_) => format!("Every {}", schedule.as_text()),
        Schedule::CronTrigger(t) => t
            .crons
            .iter()
            .map(|c| format!("Cron: {}", c.expression()))
            .collect::<Vec<_>>()
            .join(", "),
        // Airflow's delta timetables have no description.
        Schedule::DeltaTrigger(_) => String::new(),
        Schedule::Events(e) => e.describe(),
        Schedule::Continuous => "As frequently as possible, but only one run at a time.".to_owned(),
    }
}

fn matches_filters(query: &DagsQuery, summary: &DagSummary, dag: &Dag, has_errors: bool) -> bool {
    let id = summary.dag_id.as_str();
    let tags = &dag.settings.tags;
    let tag_ok = query.tags.is_empty()
        || if query.tags_match_mode.as_deref() == Some("all") {
            query.tags.iter().all(|t| tags.contains(t))
        } else {
            query.tags.iter().any(|t| tags.contains(t))
        };
    let owner_ok = query.owners.is_empty()
        || dag
            .tasks()
            .any(|t| query.owners.contains(&t.settings.owner));
    let contains = |pattern: &Option<String>| {
        pattern.as_ref().is_none_or(|p| {
            id.to_lowercase()
                .contains(&p.replace('%', "").to_lowercase())
        })
    };
    tag_ok
        && owner_ok
        && contains(&query.dag_id_pattern)
        && contains(&query.dag_display_name_pattern)
        && query
            .dag_id_prefix_pattern
            .as_ref()
            .is_none_or(|p| id.starts_with(p.as_str()))
        && (summary.is_active || !query.exclude_stale)
        && query.paused.is_none_or(|p| p == summary.is_paused)
        && query.has_import_errors.is_none_or(|e| e == has_errors)
}

/// Get all DAGs.
#[utoipa::path(get, path = "/api/v2/dags", tag = "DAG", params(DagsQuery),
    responses((status = 200, body = DagCollectionResponse), (status = 401), (status = 403), (status = 422)))]
async fn get_dags(
    State(state): State<AppState>,
    Params(query): Params<DagsQuery>,
) -> ApiResult<Json<DagCollectionResponse>> {
    let order = OrderBy::parse(
        &query.order_by,
        &[
            "dag_id",
            "dag_display_name",
            "next_dagrun",
            "last_run_state",
            "last_run_start_date",
        ],
    )?;
    let errors = files_with_errors(&state).await?;
    let mut matching: Vec<(DagSummary, Arc<Dag>)> = Vec::new();
    for summary in state.store().dag_summaries().await? {
        let dag = state.definition(&summary).await?;
        if matches_filters(&query, &summary, &dag, errors.contains(&summary.fileloc)) {
            matching.push((summary, dag));
        }
    }
    let total_entries = matching.len();
    let mut dags = Vec::with_capacity(matching.len());
    for (summary, dag) in &matching {
        dags.push(dag_response(&state, summary, dag, &errors).await?);
    }
    if !order.is_empty() {
        let by_last_run = order.iter().any(|o| o.field.starts_with("last_run_"));
        let last_runs: HashMap<String, StoredRun> = if by_last_run {
            state
                .store()
                .latest_runs()
                .await?
                .into_iter()
                .map(|run| (run.dag_id.clone(), run))
                .collect()
        } else {
            HashMap::new()
        };
        // A DAG without a last run sorts after the others, ascending (PostgreSQL's place for
        // nulls, where Airflow's list is ordered).
        sort_by(&mut dags, &order, |d, field| {
            let last = last_runs.get(&d.dag_id);
            match field {
                "next_dagrun" => (
                    false,
                    d.next_dagrun_logical_date
                        .map(|t| t.0.to_rfc3339())
                        .unwrap_or_default(),
                ),
                "last_run_state" => (
                    last.is_none(),
                    last.map(|r| r.state.as_str().to_owned())
                        .unwrap_or_default(),
                ),
                "last_run_start_date" => {
                    let start = last.and_then(|r| r.start_date);
                    (
                        start.is_none(),
                        start
                            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
                            .unwrap_or_default(),
                    )
                }
                _ => (false, d.dag_id.clone()),
            }
        });
    }
    let page = Page {
        limit: query.limit,
        offset: query.offset,
    };
    Ok(Json(DagCollectionResponse {
        dags: page.slice(dags),
        total_entries,
    }))
}

/// Get a DAG.
#[utoipa::path(get, path = "/api/v2/dags/{dag_id}", tag = "DAG",
    params(("dag_id" = String, Path)),
    responses((status = 200, body = DagResponse), (status = 401), (status = 403), (status = 404)))]
async fn get_dag(
    State(state): State<AppState>,
    Path(dag_id): Path<String>,
) -> ApiResult<Json<DagResponse>> {
    let (summary, dag) = state.dag(&dag_id).await?;
    let errors = files_with_errors(&state).await?;
    Ok(Json(dag_response(&state, &summary, &dag, &errors).await?))
}

/// Get a DAG's details.
#[utoipa::path(get, path = "/api/v2/dags/{dag_id}/details", tag = "DAG",
    params(("dag_id" = String, Path)),
    responses((status = 200, body = DagDetailsResponse), (status = 401), (status = 403), (status = 404)))]
async fn get_dag_details(
    State(state): State<AppState>,
    Path(dag_id): Path<String>,
) -> ApiResult<Json<DagDetailsResponse>> {
    let (summary, dag) = state.dag(&dag_id).await?;
    let errors = files_with_errors(&state).await?;
    let settings = &dag.settings;
    let active_runs_count = state
        .store()
        .active_runs()
        .await?
        .iter()
        .filter(|r| r.dag_id == dag_id)
        .count();
    let asset_expression = match &settings.assets {
        Some(condition) => {
            let ids: std::collections::HashMap<(String, String), i64> = state
                .store()
                .assets()
                .await?
                .into_iter()
                .map(|a| ((a.name, a.uri), a.id))
                .collect();
            let id_of =
                |a: &gust_core::asset::Asset| ids.get(&(a.name.clone(), a.uri.clone())).copied();
            Some(condition.expression(&id_of))
        }
        None => None,
    };
    Ok(Json(DagDetailsResponse {
        dag: dag_response(&state, &summary, &dag, &errors).await?,
        catchup: settings.catchup,
        dag_run_timeout: settings.dagrun_timeout.map(iso_duration),
        asset_expression,
        doc_md: settings.doc_md.clone(),
        start_date: settings.start_date.map(Into::into),
        end_date: settings.end_date.map(Into::into),
        is_paused_upon_creation: settings.is_paused_upon_creation,
        params: Some(serde_json::Value::Object(settings.params.clone())),
        render_template_as_native_obj: false,
        template_search_path: None,
        timezone: Some(settings.timezone.name().to_owned()),
        last_parsed: Some(summary.last_parsed.into()),
        default_args: None,
        is_favorite: false,
        active_runs_count: u32::try_from(active_runs_count).unwrap_or(u32::MAX),
        concurrency: settings.max_active_tasks,
        latest_dag_version: None,
    }))
}

/// A duration in ISO 8601 (`P1DT2H3M4S`), as pydantic writes timedeltas.
fn iso_duration(d: std::time::Duration) -> String {
    let secs = d.as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (h, m, s) = (rest / 3600, rest % 3600 / 60, rest % 60);
    let mut text = format!(
        "P{}",
        if days > 0 {
            format!("{days}D")
        } else {
            String::new()
        }
    );
    text.push('T');
    if h > 0 {
        text.push_str(&format!("{h}H"));
    }
    if m > 0 {
        text.push_str(&format!("{m}M"));
    }
    text.push_str(&format!("{s}S"));
    text
}

/// Pause or unpause a DAG.
#[utoipa::path(patch, path = "/api/v2/dags/{dag_id}", tag = "DAG",
    params(("dag_id" = String, Path), UpdateMask), request_body = DagPatchBody,
    responses((status = 200, body = DagResponse), (status = 400), (status = 401), (status = 403), (status = 404), (status = 422)))]
async fn patch_dag(
    State(state): State<AppState>,
    Path(dag_id): Path<String>,
    Params(mask): Params<UpdateMask>,
    Body(body): Body<DagPatchBody>,
) -> ApiResult<Json<DagResponse>> {
    if let Some(fields) = &mask.update_mask
        && let Some(bad) = fields.iter().find(|f| f.as_str() != "is_paused")
    {
        return Err(ApiError::BadRequest(format!(
            "Only `is_paused` field can be updated through the REST API, not `{bad}`"
        )));
    }
    if !state.store().set_paused(&dag_id, body.is_paused).await? {
        return Err(ApiError::not_found("Dag", &dag_id));
    }
    tracing::info!(%dag_id, paused = body.is_paused, "DAG paused flag set through the API");
    state.wake_scheduler();
    get_dag(State(state), Path(dag_id)).await
}

/// `PATCH /dags` filters: which DAGs a bulk pause changes (Airflow's `patch_dags`).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PatchDagsQuery {
    /// At most this many in the answer (default 50, at most 100); every matching DAG changes.
    #[serde(default = "crate::api::page::default_limit")]
    pub limit: usize,
    /// Skip this many in the answer.
    #[serde(default)]
    pub offset: usize,
    /// Only DAGs with these tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// `any` (default) or `all` of `tags`.
    pub tags_match_mode: Option<String>,
    /// Only DAGs with tasks of these owners.
    #[serde(default)]
    pub owners: Vec<String>,
    /// Case-insensitive substring of the DAG id (`~` or `%`: every DAG). Without it or a
    /// prefix, no DAG matches.
    pub dag_id_pattern: Option<String>,
    /// Prefix of the DAG id.
    pub dag_id_prefix_pattern: Option<String>,
    /// Leave out DAGs whose file no longer defines them (default true).
    #[serde(default = "yes")]
    pub exclude_stale: bool,
    /// Only paused (true) or unpaused (false) DAGs.
    pub paused: Option<bool>,
    /// Which fields of the body to apply: only `is_paused`.
    pub update_mask: Option<Vec<String>>,
}

/// Pause or unpause every DAG the filters match; answers them as they are now.
#[utoipa::path(patch, path = "/api/v2/dags", tag = "DAG", params(PatchDagsQuery), request_body = DagPatchBody,
    responses((status = 200, body = DagCollectionResponse), (status = 400), (status = 401), (status = 403), (status = 404), (status = 422)))]
async fn patch_dags(
    State(state): State<AppState>,
    Params(query): Params<PatchDagsQuery>,
    Body(body): Body<DagPatchBody>,
) -> ApiResult<Json<DagCollectionResponse>> {
    if query
        .update_mask
        .as_ref()
        .is_some_and(|m| !m.is_empty() && m.iter().any(|f| f != "is_paused"))
    {
        return Err(ApiError::BadRequest(
            "Only `is_paused` field can be updated through the REST API".into(),
        ));
    }
    if query.dag_id_pattern.is_none() && query.dag_id_prefix_pattern.is_none() {
        return Ok(Json(DagCollectionResponse {
            dags: Vec::new(),
            total_entries: 0,
        }));
    }
    let filters = DagsQuery {
        limit: query.limit,
        offset: query.offset,
        tags: query.tags,
        tags_match_mode: query.tags_match_mode,
        owners: query.owners,
        dag_id_pattern: query.dag_id_pattern.filter(|p| p != "~"),
        dag_id_prefix_pattern: query.dag_id_prefix_pattern,
        dag_display_name_pattern: None,
        exclude_stale: query.exclude_stale,
        paused: query.paused,
        has_import_errors: None,
        order_by: Vec::new(),
    };
    let errors = files_with_errors(&state).await?;
    let mut matching: Vec<String> = Vec::new();
    for summary in state.store().dag_summaries().await? {
        let dag = state.definition(&summary).await?;
        if matches_filters(&filters, &summary, &dag, errors.contains(&summary.fileloc)) {
            matching.push(summary.dag_id);
        }
    }
    for dag_id in &matching {
        state.store().set_paused(dag_id, body.is_paused).await?;
    }
    tracing::info!(
        dags = matching.len(),
        paused = body.is_paused,
        "DAGs' paused flags set through the API"
    );
    state.wake_scheduler();
    let total_entries = matching.len();
    let page = Page {
        limit: filters.limit,
        offset: filters.offset,
    };
    let mut dags = Vec::new();
    for dag_id in page.slice(matching) {
        if let Some(summary) = state.store().dag_summary(&dag_id).await? {
            let dag = state.definition(&summary).await?;
            dags.push(dag_response(&state, &summary, &dag, &errors).await?);
        }
    }
    Ok(Json(DagCollectionResponse {
        dags,
        total_entries,
    }))
}

/// Delete a DAG's record and history (its file, if still there, brings it back).
#[utoipa::path(delete, path = "/api/v2/dags/{dag_id}", tag = "DAG",
    params(("dag_id" = String, Path)),
    responses((status = 200, body = Object), (status = 401), (status = 403), (status = 404), (status = 409)))]
async fn delete_dag(
    State(state): State<AppState>,
    Path(dag_id): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    let running = state
        .store()
        .active_runs()
        .await?
        .iter()
        .any(|r| r.dag_id == dag_id && r.state == gust_core::state::DagRunState::Running);
    if running {
        return Err(ApiError::Conflict(format!(
            "Task instances of dag with id: '{dag_id}' are still running"
        )));
    }
    if !state.store().delete_dag(&dag_id).await? {
        return Err(ApiError::not_found("Dag", &dag_id));
    }
    tracing::info!(%dag_id, "DAG deleted through the API");
    Ok(Json(serde_json::json!({})))
}

#[cfg(test)]
mod tests {
    use super::iso_duration;
    use std::time::Duration;

    #[test]
    fn durations_are_iso_8601() {
        assert_eq!(iso_duration(Duration::from_secs(3600)), "PT1H0S");
        assert_eq!(iso_duration(Duration::from_secs(90_061)), "P1DT1H1M1S");
    }
}
