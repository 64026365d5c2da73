//! Airflow 3.3's deadline endpoints (its UI API, `/ui`): a run's deadlines,
//! `GET /ui/dags/{dag_id}/dagRuns/{dag_run_id}/deadlines` (`~` for every run, or every DAG),
//! and a DAG's deadline alerts, `GET /ui/dags/{dag_id}/deadlineAlerts`, answering Airflow's
//! `DeadlineCollectionResponse` and `DeadlineAlertCollectionResponse`. Gust's deadline ids
//! are integers and its alerts are numbered by their place in `deadline`: both are shown as
//! UUIDs (Airflow's type) whose last group is the number.

use axum::Json;
use axum::extract::State;
use gust_store::StoredDeadline;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::dag_runs::find_run;
use crate::api::extract::{Params, PathParams};
use crate::api::page::MAX_PAGE;
use crate::api::time::Timestamp;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// The deadline endpoints.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_deadlines))
        .routes(routes!(list_deadline_alerts))
}

/// One deadline of a run (Airflow's `DeadlineResponse`).
#[derive(Debug, Serialize, ToSchema)]
pub struct DeadlineResponse {
    pub id: String,
    pub deadline_time: Timestamp,
    pub missed: bool,
    pub created_at: Timestamp,
    pub dag_id: String,
    pub dag_run_id: String,
    pub alert_id: Option<String>,
    pub alert_name: Option<String>,
}

/// A page of deadlines, soonest first (Airflow's `DeadlineCollectionResponse`).
#[derive(Debug, Serialize, ToSchema)]
pub struct DeadlineCollectionResponse {
    pub deadlines: Vec<DeadlineResponse>,
    pub total_entries: i64,
}

/// One deadline alert of a DAG (Airflow's `DeadlineAlertResponse`).
#[derive(Debug, Serialize, ToSchema)]
pub struct DeadlineAlertResponse {
    pub id: String,
    pub name: Option<String>,
    /// `DagRunQueuedAtDeadline`, `DagRunLogicalDateDeadline`, `FixedDatetimeDeadline` or
    /// `AverageRuntimeDeadline`.
    pub reference_type: String,
    /// Seconds between the reference and the deadline.
    pub interval: Option<f64>,
    pub created_at: Timestamp,
}

/// A DAG's deadline alerts (Airflow's `DeadlineAlertCollectionResponse`).
#[derive(Debug, Serialize, ToSchema)]
pub struct DeadlineAlertCollectionResponse {
    pub deadline_alerts: Vec<DeadlineAlertResponse>,
    pub total_entries: i64,
}

/// Filters of a run's deadlines.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeadlinesQuery {
    /// Only missed ones (`true`) or only pending ones (`false`).
    pub missed: Option<bool>,
    /// At most this many (default 50, at most 100).
    #[serde(default = "crate::api::page::default_limit")]
    pub limit: usize,
    /// Skip this many.
    #[serde(default)]
    pub offset: usize,
}

/// Paging of a DAG's deadline alerts.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AlertsQuery {
    /// At most this many (default 50, at most 100).
    #[serde(default = "crate::api::page::default_limit")]
    pub limit: usize,
    /// Skip this many.
    #[serde(default)]
    pub offset: usize,
}

/// A number as a UUID (Airflow's type for these ids); `kind` tells numbers of different
/// things apart.
fn uuid(kind: u16, id: i64) -> String {
    format!("00000000-0000-4000-{:04x}-{:012x}", 0x8000 | kind, id)
}

const DEADLINE: u16 = 1;
const ALERT: u16 = 2;

/// Get deadlines for a Dag run (`~` as the run, or the DAG and the run, for all).
#[utoipa::path(get, path = "/ui/dags/{dag_id}/dagRuns/{dag_run_id}/deadlines", tag = "Deadlines",
    params(("dag_id" = String, Path), ("dag_run_id" = String, Path), DeadlinesQuery),
    responses((status = 200, body = DeadlineCollectionResponse), (status = 400), (status = 401), (status = 403), (status = 404), (status = 422)))]
async fn list_deadlines(
    State(state): State<AppState>,
    PathParams((dag_id, dag_run_id)): PathParams<(String, String)>,
    Params(query): Params<DeadlinesQuery>,
) -> ApiResult<Json<DeadlineCollectionResponse>> {
    let named = |id: &str| (id != "~").then(|| id.to_owned());
    let (dag, run) = (named(&dag_id), named(&dag_run_id));
    if dag.is_none() && run.is_some() {
        return Err(ApiError::BadRequest(
            "dag_id is required when dag_run_id is specified".to_owned(),
        ));
    }
    let limit = i64::try_from(query.limit.min(MAX_PAGE)).unwrap_or(50);
    let offset = i64::try_from(query.offset).unwrap_or(i64::MAX);
    let (deadlines, total_entries) = state
        .store()
        .deadlines(dag.as_deref(), run.as_deref(), query.missed, limit, offset)
        .await?;
    if let (Some(dag), Some(run)) = (&dag, &run)
        && total_entries == 0
    {
        find_run(&state, dag, run).await?;
    }
    Ok(Json(DeadlineCollectionResponse {
        deadlines: deadlines.into_iter().map(response).collect(),
        total_entries,
    }))
}

/// Get all deadline alerts defined on a Dag (as its current version defines them).
#[utoipa::path(get, path = "/ui/dags/{dag_id}/deadlineAlerts", tag = "Deadlines",
    params(("dag_id" = String, Path), AlertsQuery),
    responses((status = 200, body = DeadlineAlertCollectionResponse), (status = 401), (status = 403), (status = 404), (status = 422)))]
async fn list_deadline_alerts(
    State(state): State<AppState>,
    PathParams(dag_id): PathParams<String>,
    Params(query): Params<AlertsQuery>,
) -> ApiResult<Json<DeadlineAlertCollectionResponse>> {
    let (summary, dag) = state.dag(&dag_id).await?;
    let alerts = &dag.settings.deadlines;
    let deadline_alerts = alerts
        .iter()
        .enumerate()
        .skip(query.offset)
        .take(query.limit.min(MAX_PAGE))
        .map(|(index, alert)| DeadlineAlertResponse {
            id: uuid(ALERT, i64::try_from(index).unwrap_or(i64::MAX)),
            name: alert.name.clone(),
            reference_type: alert.reference.reference_type().to_owned(),
            interval: Some(alert.interval.as_secs_f64()),
            created_at: summary.last_parsed.into(),
        })
        .collect();
    Ok(Json(DeadlineAlertCollectionResponse {
        deadline_alerts,
        total_entries: i64::try_from(alerts.len()).unwrap_or(i64::MAX),
    }))
}

fn response(stored: StoredDeadline) -> DeadlineResponse {
    let d = stored.deadline;
    DeadlineResponse {
        id: uuid(DEADLINE, stored.id),
        deadline_time: d.deadline_time.into(),
        missed: stored.missed,
        created_at: d.created_at.into(),
        alert_id: Some(uuid(ALERT, i64::from(d.alert_index))),
        alert_name: d.alert_name,
        dag_id: d.dag_id,
        dag_run_id: d.run_id,
    }
}
