//! `/api/v2/dags/{dag_id}/tasks`: a DAG's tasks as its definition declares them.

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use gust_core::dag::Dag;
use gust_core::task::Task;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::extract::Params;
use crate::api::task_instances::operator_class;
use crate::api::time::Timestamp;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// The task endpoints.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_tasks))
        .routes(routes!(get_task))
}

/// A duration as Airflow's API writes one (`TimeDelta`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub struct TimeDelta {
    #[serde(rename = "__type")]
    pub kind: &'static str,
    pub days: u64,
    pub seconds: u64,
    pub microseconds: u32,
}

impl From<Duration> for TimeDelta {
    fn from(d: Duration) -> Self {
        let secs = d.as_secs();
        TimeDelta {
            kind: "TimeDelta",
            days: secs / 86_400,
            seconds: secs % 86_400,
            microseconds: d.subsec_micros(),
        }
    }
}

/// A task (Airflow's `TaskResponse`).
#[derive(Debug, Serialize, ToSchema)]
pub struct TaskResponse {
    pub task_id: Option<String>,
    pub task_display_name: Option<String>,
    pub owner: Option<String>,
    pub start_date: Option<Timestamp>,
    pub end_date: Option<Timestamp>,
    pub trigger_rule: Option<String>,
    pub depends_on_past: bool,
    pub wait_for_downstream: bool,
    pub retries: Option<f64>,
    pub queue: Option<String>,
    pub pool: Option<String>,
    pub pool_slots: Option<f64>,
    pub execution_timeout: Option<TimeDelta>,
    pub retry_delay: Option<TimeDelta>,
    /// The backoff multiplier (0: no exponential backoff; Gust doubles, as Airflow's default).
    pub retry_exponential_backoff: f64,
    pub priority_weight: Option<f64>,
    pub weight_rule: Option<String>,
    pub ui_color: Option<String>,
    pub ui_fgcolor: Option<String>,
    pub template_fields: Option<Vec<String>>,
    pub downstream_task_ids: Option<Vec<String>>,
    pub doc_md: Option<String>,
    pub operator_name: Option<String>,
    pub params: Option<serde_json::Map<String, serde_json::Value>>,
    pub class_ref: Option<serde_json::Value>,
    pub is_mapped: Option<bool>,
    pub extra_links: Vec<String>,
}

/// A DAG's tasks.
#[derive(Debug, Serialize, ToSchema)]
pub struct TaskCollectionResponse {
    pub tasks: Vec<TaskResponse>,
    pub total_entries: usize,
}

/// Where Airflow's class of an operator lives, when Gust knows its Airflow path.
fn class_ref(operator: &str) -> Option<serde_json::Value> {
    let spec = gust_operators::registry::resolve(operator)?;
    let path = spec
        .aliases
        .iter()
        .filter(|a| a.contains('.'))
        .max_by_key(|a| a.starts_with("airflow.providers."))?;
    let (module, class) = path.rsplit_once('.')?;
    Some(serde_json::json!({"module_path": module, "class_name": class}))
}

fn task_response(dag: &Dag, task: &Task) -> TaskResponse {
    let settings = &task.settings;
    let downstream: Vec<String> = dag
        .downstream_map()
        .get(&task.id)
        .map(|d| d.iter().map(ToString::to_string).collect())
        .unwrap_or_default();
    TaskResponse {
        task_id: Some(task.id.to_string()),
        task_display_name: Some(task.id.to_string()),
        owner: Some(settings.owner.clone()),
        start_date: dag.settings.start_date.map(Into::into),
        end_date: dag.settings.end_date.map(Into::into),
        trigger_rule: Some(settings.trigger_rule.as_str().to_owned()),
        depends_on_past: settings.depends_on_past,
        wait_for_downstream: false,
        retries: Some(f64::from(settings.retries)),
        queue: None,
        pool: Some(settings.pool.clone()),
        pool_slots: Some(f64::from(settings.pool_slots)),
        execution_timeout: settings.execution_timeout.map(Into::into),
        retry_delay: Some(settings.retry_delay.into()),
        retry_exponential_backoff: if settings.retry_exponential_backoff {
            2.0
        } else {
            0.0
        },
        priority_weight: Some(f64::from(settings.priority_weight)),
        // Gust ranks tries by each task's own weight.
        weight_rule: Some("absolute".to_owned()),
        ui_color: None,
        ui_fgcolor: None,
        template_fields: None,
        downstream_task_ids: Some(downstream),
        doc_md: task.doc_md.clone(),
        operator_name: Some(operator_class(&task.operator)),
        params: Some(dag.settings.params.clone()),
        class_ref: class_ref(&task.operator),
        is_mapped: Some(task.mapping.is_some()),
        extra_links: Vec::new(),
    }
}

/// `GET /dags/{dag_id}/tasks` options.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TasksQuery {
    /// One sort key (default `task_id`), `-` first for descending.
    pub order_by: Option<String>,
}

/// Sort keys of `GET /dags/{dag_id}/tasks` (Airflow's).
const SORTABLE: &[&str] = &[
    "task_id",
    "task_display_name",
    "owner",
    "start_date",
    "end_date",
    "trigger_rule",
    "depends_on_past",
    "wait_for_downstream",
    "retries",
    "queue",
    "pool",
    "pool_slots",
    "execution_timeout",
    "retry_delay",
    "retry_exponential_backoff",
    "priority_weight",
    "weight_rule",
    "ui_color",
    "ui_fgcolor",
    "operator_name",
];

/// A sortable rendering of a task's field (numbers padded so text order is numeric order).
fn sort_key(task: &TaskResponse, field: &str) -> String {
    let number = |n: Option<f64>| format!("{:020.6}", n.unwrap_or(f64::MIN));
    let delta = |d: Option<TimeDelta>| {
        d.map(|d| format!("{:020}{:06}", d.days * 86_400 + d.seconds, d.microseconds))
            .unwrap_or_default()
    };
    let text = |s: &Option<String>| s.clone().unwrap_or_default();
    match field {
        "owner" => text(&task.owner),
        "start_date" => task
            .start_date
            .map(|t| t.0.to_rfc3339())
            .unwrap_or_default(),
        "end_date" => task.end_date.map(|t| t.0.to_rfc3339()).unwrap_or_default(),
        "trigger_rule" => text(&task.trigger_rule),
        "depends_on_past" => task.depends_on_past.to_string(),
        "wait_for_downstream" => task.wait_for_downstream.to_string(),
        "retries" => number(task.retries),
        "queue" => text(&task.queue),
        "pool" => text(&task.pool),
        "pool_slots" => number(task.pool_slots),
        "execution_timeout" => delta(task.execution_timeout),
        "retry_delay" => delta(task.retry_delay),
        "retry_exponential_backoff" => number(Some(task.retry_exponential_backoff)),
        "priority_weight" => number(task.priority_weight),
        "weight_rule" => text(&task.weight_rule),
        "ui_color" => text(&task.ui_color),
        "ui_fgcolor" => text(&task.ui_fgcolor),
        "operator_name" => text(&task.operator_name),
        _ => text(&task.task_id),
    }
}

/// Get a DAG's tasks.
#[utoipa::path(get, path = "/api/v2/dags/{dag_id}/tasks", tag = "Task",
    params(("dag_id" = String, Path), TasksQuery),
    responses((status = 200, body = TaskCollectionResponse), (status = 400), (status = 401), (status = 403), (status = 404), (status = 422)))]
async fn get_tasks(
    State(state): State<AppState>,
    Path(dag_id): Path<String>,
    Params(query): Params<TasksQuery>,
) -> ApiResult<Json<TaskCollectionResponse>> {
    let order = query.order_by.unwrap_or_else(|| "task_id".to_owned());
    let (descending, field) = match order.strip_prefix('-') {
        Some(field) => (true, field),
        None => (false, order.as_str()),
    };
    if !SORTABLE.contains(&field) {
        return Err(ApiError::BadRequest(format!(
            "Ordering with '{field}' is disallowed or the attribute does not exist on the model"
        )));
    }
    let (_, dag) = state.dag(&dag_id).await?;
    let mut tasks: Vec<TaskResponse> = dag.tasks().map(|t| task_response(&dag, t)).collect();
    tasks.sort_by_cached_key(|t| sort_key(t, field));
    if descending {
        tasks.reverse();
    }
    let total_entries = tasks.len();
    Ok(Json(TaskCollectionResponse {
        tasks,
        total_entries,
    }))
}

/// Get one task of a DAG.
#[utoipa::path(get, path = "/api/v2/dags/{dag_id}/tasks/{task_id}", tag = "Task",
    params(("dag_id" = String, Path), ("task_id" = String, Path)),
    responses((status = 200, body = TaskResponse), (status = 400), (status = 401), (status = 403), (status = 404)))]
async fn get_task(
    State(state): State<AppState>,
    Path((dag_id, task_id)): Path<(String, String)>,
) -> ApiResult<Json<TaskResponse>> {
    let (_, dag) = state.dag(&dag_id).await?;
    let task = dag
        .tasks()
        .find(|t| t.id.as_str() == task_id)
        .ok_or_else(|| ApiError::NotFound(format!("Task with id {task_id} was not found")))?;
    Ok(Json(task_response(&dag, task)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_airflow_timedeltas() {
        let d = TimeDelta::from(Duration::from_micros(90_061_000_250));
        assert_eq!((d.days, d.seconds, d.microseconds), (1, 3661, 250));
        assert_eq!(
            serde_json::to_value(d).unwrap()["__type"],
            serde_json::json!("TimeDelta")
        );
    }
}
