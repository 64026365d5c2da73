//! `POST /api/v2/dags/~/dagRuns/~/taskInstances/list`: task instances across DAGs and runs,
//! with filters in the body (Airflow's `get_task_instances_batch`), for lists of ids too long
//! for a query string. Paged in the database, as the `~` listings are.

use axum::Json;
use axum::extract::State;
use gust_core::state::TaskState;
use gust_store::{DurationRange, InstanceFilter, InstanceOrder};
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::dag_runs::{MAX_LISTED_DAGS, range};
use crate::api::extract::{Body, PathParams};
use crate::api::page::MAX_PAGE;
use crate::api::task_instances::{TaskInstanceCollectionResponse, instance_order, list_page};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// The batch listing endpoint.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_task_instances_batch))
}

/// The filters of a batch listing (Airflow's `TaskInstancesBatchBody`); unknown fields are a
/// 422, as Airflow's strict model has them.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskInstancesBatchBody {
    pub dag_ids: Option<Vec<String>>,
    pub dag_run_ids: Option<Vec<String>>,
    pub task_ids: Option<Vec<String>>,
    /// States; `null` for instances with no state.
    pub state: Option<Vec<Option<String>>>,
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
    /// Not applied by Gust (refused with a 422 when not empty): a task's pool is in its DAG's
    /// definition, not in the instance's row.
    pub pool: Option<Vec<String>>,
    /// Gust has no queues (refused when not empty).
    pub queue: Option<Vec<String>>,
    /// Gust has no executors by name (refused when not empty).
    pub executor: Option<Vec<String>>,
    #[serde(default)]
    pub page_offset: usize,
    #[serde(default = "default_page_limit")]
    pub page_limit: usize,
    /// One key: `id`, `state`, `duration`, `start_date`, `end_date`, `map_index`; `-` first
    /// for descending.
    pub order_by: Option<String>,
}

/// Airflow's default `page_limit` (also Gust's largest page).
fn default_page_limit() -> usize {
    MAX_PAGE
}

/// The keys a batch listing sorts by (Airflow's list; `id` is the run's order).
const BATCH_ORDERS: &[(&str, InstanceOrder)] = &[
    ("id", InstanceOrder::Run),
    ("state", InstanceOrder::State),
    ("duration", InstanceOrder::Duration),
    ("start_date", InstanceOrder::StartDate),
    ("end_date", InstanceOrder::EndDate),
    ("map_index", InstanceOrder::MapIndex),
];

/// Airflow's task instance states that Gust's instances never take (no restarts, no
/// human-in-the-loop): asked for, they match nothing, as they would in an Airflow without such
/// tasks.
const AIRFLOW_ONLY_STATES: [&str; 2] = ["restarting", "awaiting_input"];

/// The body's states, each checked (a 422 names one that is not Airflow's), with whether any
/// state was asked for: asked only for states Gust never has, the list is empty yet filters.
fn states(values: Option<&Vec<Option<String>>>) -> ApiResult<(Vec<TaskState>, bool)> {
    let mut out = Vec::new();
    let mut asked = false;
    for value in values.into_iter().flatten() {
        asked = true;
        let parsed = match value.as_deref() {
            None => Some(TaskState::NoStatus),
            Some(name) if AIRFLOW_ONLY_STATES.contains(&name) => continue,
            Some(name) => TaskState::ALL
                .into_iter()
                .find(|s| *s != TaskState::NoStatus && s.as_str() == name),
        };
        match parsed {
            Some(s) if !out.contains(&s) => out.push(s),
            Some(_) => {}
            None => {
                return Err(ApiError::invalid(
                    "body",
                    "state",
                    format!("{value:?} is not a task instance state"),
                ));
            }
        }
    }
    Ok((out, asked))
}

impl TaskInstancesBatchBody {
    /// The store's filter for this body; `None` when it can match nothing (only states Gust
    /// never has were asked for).
    fn filter(&self) -> ApiResult<Option<InstanceFilter>> {
        for (field, values) in [
            ("pool", &self.pool),
            ("queue", &self.queue),
            ("executor", &self.executor),
        ] {
            // A 422 (Airflow documents no 400 here): the body asks for what Gust cannot do.
            if values.as_ref().is_some_and(|v| !v.is_empty()) {
                return Err(ApiError::invalid(
                    "body",
                    field,
                    format!(
                        "Gust does not filter task instances across runs by `{field}`: list one run's instances with `GET .../dagRuns/{{dag_run_id}}/taskInstances?{field}=...`"
                    ),
                ));
            }
        }
        // Every id is a bound parameter of the query: a body may not name more than a
        // listing of runs may.
        for (field, ids) in [
            ("dag_ids", &self.dag_ids),
            ("dag_run_ids", &self.dag_run_ids),
            ("task_ids", &self.task_ids),
        ] {
            if ids.as_ref().is_some_and(|ids| ids.len() > MAX_LISTED_DAGS) {
                return Err(ApiError::invalid(
                    "body",
                    field,
                    format!("at most {MAX_LISTED_DAGS} ids"),
                ));
            }
        }
        let (states, asked_for_states) = states(self.state.as_ref())?;
        if asked_for_states && states.is_empty() {
            return Ok(None);
        }
        Ok(Some(InstanceFilter {
            dag_ids: self.dag_ids.clone().unwrap_or_default(),
            run_ids: self.dag_run_ids.clone().unwrap_or_default(),
            task_ids: self.task_ids.clone().unwrap_or_default(),
            states,
            try_numbers: Vec::new(),
            map_indexes: Vec::new(),
            logical_date: range(
                "body",
                "logical_date",
                [
                    self.logical_date_gte.as_ref(),
                    self.logical_date_gt.as_ref(),
                    self.logical_date_lte.as_ref(),
                    self.logical_date_lt.as_ref(),
                ],
            )?,
            run_after: range(
                "body",
                "run_after",
                [
                    self.run_after_gte.as_ref(),
                    self.run_after_gt.as_ref(),
                    self.run_after_lte.as_ref(),
                    self.run_after_lt.as_ref(),
                ],
            )?,
            start_date: range(
                "body",
                "start_date",
                [
                    self.start_date_gte.as_ref(),
                    self.start_date_gt.as_ref(),
                    self.start_date_lte.as_ref(),
                    self.start_date_lt.as_ref(),
                ],
            )?,
            end_date: range(
                "body",
                "end_date",
                [
                    self.end_date_gte.as_ref(),
                    self.end_date_gt.as_ref(),
                    self.end_date_lte.as_ref(),
                    self.end_date_lt.as_ref(),
                ],
            )?,
            duration: DurationRange {
                gte: self.duration_gte,
                gt: self.duration_gt,
                lte: self.duration_lte,
                lt: self.duration_lt,
            },
        }))
    }
}

/// Get task instances across DAGs and runs, filtered by the body.
#[utoipa::path(post, path = "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/list", tag = "Task Instance",
    params(("dag_id" = String, Path, description = "`~`"), ("dag_run_id" = String, Path, description = "`~`")),
    request_body = TaskInstancesBatchBody,
    responses((status = 200, body = TaskInstanceCollectionResponse), (status = 400), (status = 401), (status = 403), (status = 404), (status = 422)))]
async fn get_task_instances_batch(
    State(state): State<AppState>,
    PathParams((dag_id, run_id)): PathParams<(String, String)>,
    Body(body): Body<TaskInstancesBatchBody>,
) -> ApiResult<Json<TaskInstanceCollectionResponse>> {
    // Airflow's path parameters here are the literal `~` (every DAG, every run).
    for (field, value) in [("dag_id", &dag_id), ("dag_run_id", &run_id)] {
        if value != "~" {
            return Err(ApiError::invalid("path", field, "Input should be '~'"));
        }
    }
    let order = instance_order(
        &body.order_by.iter().cloned().collect::<Vec<_>>(),
        BATCH_ORDERS,
    )?;
    let Some(filter) = body.filter()? else {
        return Ok(Json(TaskInstanceCollectionResponse::of(Vec::new(), 0)));
    };
    Ok(Json(
        list_page(&state, &filter, &order, body.page_limit, body.page_offset).await?,
    ))
}
