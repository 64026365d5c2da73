//! `/api/v2/jobs`: Gust's schedulers (and `gust standalone`) as Airflow's `SchedulerJob` rows,
//! one per scheduler id, started at its first heartbeat. A scheduler is alive while its latest
//! heartbeat is younger than the health threshold (Airflow's
//! `scheduler_health_check_threshold`, 30 s); one whose heartbeat stopped without a clean stop
//! is answered `failed`, as Airflow's schedulers mark a dead scheduler's job.

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use gust_store::Job;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::extract::Params;
use crate::api::monitor::HEARTBEAT_THRESHOLD;
use crate::api::page::{OrderBy, Page, sort_by};
use crate::api::time::{Timestamp, parse_time};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// The job endpoints.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_jobs))
}

/// A job (Airflow's `JobResponse`).
#[derive(Debug, Serialize, ToSchema)]
pub struct JobResponse {
    pub id: i64,
    pub dag_id: Option<String>,
    pub state: Option<String>,
    pub job_type: Option<String>,
    pub start_date: Option<Timestamp>,
    pub end_date: Option<Timestamp>,
    pub latest_heartbeat: Option<Timestamp>,
    pub executor_class: Option<String>,
    pub hostname: Option<String>,
    pub unixname: Option<String>,
    pub dag_display_name: Option<String>,
}

/// A page of jobs.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobCollectionResponse {
    pub jobs: Vec<JobResponse>,
    pub total_entries: usize,
}

/// `GET /jobs` filters (Airflow's).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct JobsQuery {
    /// At most this many (default 50, at most 100).
    #[serde(default = "crate::api::page::default_limit")]
    pub limit: usize,
    /// Skip this many.
    #[serde(default)]
    pub offset: usize,
    /// Sort keys: `id` (default), `dag_id`, `state`, `job_type`, `start_date`, `end_date`,
    /// `latest_heartbeat`, `executor_class`, `hostname`, `unixname`; `-` first for descending.
    #[serde(default)]
    pub order_by: Vec<String>,
    pub start_date_gte: Option<String>,
    pub start_date_gt: Option<String>,
    pub start_date_lte: Option<String>,
    pub start_date_lt: Option<String>,
    pub end_date_gte: Option<String>,
    pub end_date_gt: Option<String>,
    pub end_date_lte: Option<String>,
    pub end_date_lt: Option<String>,
    /// Only jobs in this state (`running`, `success`, `failed`).
    pub job_state: Option<String>,
    /// Only jobs of this type (`SchedulerJob`).
    pub job_type: Option<String>,
    /// Only jobs on this host.
    pub hostname: Option<String>,
    /// Only jobs with this executor (Gust's record none).
    pub executor_class: Option<String>,
    /// Only live (true) or only dead (false) jobs.
    pub is_alive: Option<bool>,
}

/// A time bound, or its 422.
fn bound(field: &str, value: Option<&String>) -> ApiResult<Option<DateTime<Utc>>> {
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

/// Whether `time` is within the four bounds (a missing time is within none).
fn within(time: Option<DateTime<Utc>>, [gte, gt, lte, lt]: [Option<DateTime<Utc>>; 4]) -> bool {
    if gte.is_none() && gt.is_none() && lte.is_none() && lt.is_none() {
        return true;
    }
    time.is_some_and(|t| {
        gte.is_none_or(|b| t >= b)
            && gt.is_none_or(|b| t > b)
            && lte.is_none_or(|b| t <= b)
            && lt.is_none_or(|b| t < b)
    })
}

/// A job as answered at `now`: a running job whose heartbeat stopped is `failed`.
fn job_response(job: Job, now: DateTime<Utc>) -> JobResponse {
    let state = if job.state == "running" && !alive(&job, now) {
        "failed".to_owned()
    } else {
        job.state
    };
    JobResponse {
        id: job.id,
        dag_id: None,
        state: Some(state),
        job_type: Some(job.job_type),
        start_date: Some(job.start_date.into()),
        end_date: job.end_date.map(Timestamp),
        latest_heartbeat: Some(job.latest_heartbeat.into()),
        executor_class: None,
        hostname: job.hostname,
        unixname: None,
        dag_display_name: None,
    }
}

/// Airflow's `Job.is_alive`: running, with a heartbeat younger than the threshold.
fn alive(job: &Job, now: DateTime<Utc>) -> bool {
    job.state == "running" && now - job.latest_heartbeat < HEARTBEAT_THRESHOLD
}

/// Get all jobs.
#[utoipa::path(get, path = "/api/v2/jobs", tag = "Job", params(JobsQuery),
    responses((status = 200, body = JobCollectionResponse), (status = 400), (status = 401), (status = 403), (status = 422)))]
async fn get_jobs(
    State(state): State<AppState>,
    Params(query): Params<JobsQuery>,
) -> ApiResult<Json<JobCollectionResponse>> {
    let order = OrderBy::parse(
        &query.order_by,
        &[
            "id",
            "dag_id",
            "state",
            "job_type",
            "start_date",
            "end_date",
            "latest_heartbeat",
            "executor_class",
            "hostname",
            "unixname",
        ],
    )?;
    let starts = [
        bound("start_date_gte", query.start_date_gte.as_ref())?,
        bound("start_date_gt", query.start_date_gt.as_ref())?,
        bound("start_date_lte", query.start_date_lte.as_ref())?,
        bound("start_date_lt", query.start_date_lt.as_ref())?,
    ];
    let ends = [
        bound("end_date_gte", query.end_date_gte.as_ref())?,
        bound("end_date_gt", query.end_date_gt.as_ref())?,
        bound("end_date_lte", query.end_date_lte.as_ref())?,
        bound("end_date_lt", query.end_date_lt.as_ref())?,
    ];
    let now = state.now();
    let mut jobs: Vec<JobResponse> = state
        .store()
        .jobs()
        .await?
        .into_iter()
        .filter(|job| {
            within(Some(job.start_date), starts)
                && within(job.end_date, ends)
                && query.is_alive.is_none_or(|a| a == alive(job, now))
                && query.job_type.as_ref().is_none_or(|t| *t == job.job_type)
                && query
                    .hostname
                    .as_ref()
                    .is_none_or(|h| Some(h) == job.hostname.as_ref())
                && query.executor_class.is_none()
        })
        .map(|job| job_response(job, now))
        .filter(|job| {
            query
                .job_state
                .as_ref()
                .is_none_or(|s| Some(s) == job.state.as_ref())
        })
        .collect();
    sort_by(&mut jobs, &order, |job, field| match field {
        "id" => (Some(job.id), None, None),
        "state" => (None, job.state.clone(), None),
        "job_type" => (None, job.job_type.clone(), None),
        "hostname" => (None, job.hostname.clone(), None),
        "start_date" => (None, None, job.start_date),
        "end_date" => (None, None, job.end_date),
        "latest_heartbeat" => (None, None, job.latest_heartbeat),
        _ => (None, None, None),
    });
    let total_entries = jobs.len();
    let page = Page {
        limit: query.limit,
        offset: query.offset,
    };
    Ok(Json(JobCollectionResponse {
        jobs: page.slice(jobs),
        total_entries,
    }))
}
