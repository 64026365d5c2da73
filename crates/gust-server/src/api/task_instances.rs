//! `/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances`: list (`~` as the run, and then
//! as the DAG, lists across runs), get, mark (PATCH, and its dry run), tries, each also for one
//! instance of a mapped task (`/{task_id}/{map_index}...`, and `/{task_id}/listMapped`); and
//! `POST /dags/{dag_id}/clearTaskInstances`.
//!
//! A mapped task's instances are rows of their own, told apart by `map_index` (-1 for a task
//! that is not mapped, or not expanded yet), as in Airflow: the routes without an index name the
//! unmapped instance, and PATCH without one changes every instance of the task.
//!
//! A run whose scheduler has not loaded it yet has no task instance rows: its tasks are shown
//! with no state, as Airflow shows a run's instances before they are scheduled. Marking and
//! clearing are store transactions that bump versions, so a scheduler holding the run re-reads
//! it, kills the tries no longer wanted and carries on downstream.

use std::collections::{BTreeSet, HashMap};

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use gust_core::dag::Dag;
use gust_core::ids::{InstanceId, TaskId};
use gust_core::state::{DagRunState, TaskState};
use gust_core::task::Task;
use gust_store::{
    InstanceFilter, InstanceOrder, InstanceTarget, RunFilter, StoredRun, StoredTaskInstance,
    StoredTry, TimeRange, UNMAPPED,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::dag_runs::{
    UpdateMask, check_note, find_run, present, refuse_unsupported, run_not_found, seconds_between,
};
use crate::api::extract::{Body, Params, PathParams};
use crate::api::mark_scope;
use crate::api::page::{MAX_PAGE, OrderBy, Page, sort_by};
use crate::api::time::{Timestamp, parse_time};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// The task instance endpoints.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_task_instances))
        .routes(routes!(get_task_instance, patch_task_instance))
        .routes(routes!(
            get_mapped_task_instance,
            patch_task_instance_by_map_index
        ))
        .routes(routes!(get_mapped_task_instances))
        .routes(routes!(patch_task_instance_dry_run))
        .routes(routes!(patch_task_instance_dry_run_by_map_index))
        .routes(routes!(get_task_instance_tries))
        .routes(routes!(get_mapped_task_instance_tries))
        .routes(routes!(get_task_instance_try_details))
        .routes(routes!(get_mapped_task_instance_try_details))
        .routes(routes!(post_clear_task_instances))
}

/// The most runs one `clearTaskInstances` by dates touches.
pub const MAX_CLEARED_RUNS: i64 = 1000;

/// A task instance (Airflow's `TaskInstanceResponse`).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TaskInstanceResponse {
    /// A stable UUID derived from the DAG, run and task ids.
    pub id: String,
    pub task_id: String,
    pub dag_id: String,
    pub dag_run_id: String,
    pub map_index: i64,
    pub logical_date: Option<Timestamp>,
    pub run_after: Timestamp,
    pub start_date: Option<Timestamp>,
    pub end_date: Option<Timestamp>,
    pub duration: Option<f64>,
    pub state: Option<String>,
    pub try_number: i32,
    pub max_tries: i64,
    pub task_display_name: String,
    pub dag_display_name: String,
    pub hostname: Option<String>,
    pub unixname: Option<String>,
    pub pool: String,
    pub pool_slots: i64,
    pub queue: Option<String>,
    pub priority_weight: Option<i64>,
    pub operator: Option<String>,
    pub operator_name: Option<String>,
    pub queued_when: Option<Timestamp>,
    pub scheduled_when: Option<Timestamp>,
    pub pid: Option<i64>,
    pub executor: Option<String>,
    pub executor_config: String,
    pub note: Option<String>,
    pub rendered_map_index: Option<String>,
    pub rendered_fields: serde_json::Map<String, serde_json::Value>,
    pub trigger: Option<serde_json::Value>,
    pub triggerer_job: Option<serde_json::Value>,
    pub dag_version: Option<serde_json::Value>,
}

/// One try of a task instance (Airflow's `TaskInstanceHistoryResponse`).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TaskInstanceHistoryResponse {
    pub task_id: String,
    pub dag_id: String,
    pub dag_run_id: String,
    pub map_index: i64,
    pub start_date: Option<Timestamp>,
    pub end_date: Option<Timestamp>,
    pub duration: Option<f64>,
    pub state: Option<String>,
    pub try_number: i32,
    pub max_tries: i64,
    pub task_display_name: String,
    pub dag_display_name: String,
    pub hostname: Option<String>,
    pub unixname: Option<String>,
    pub pool: String,
    pub pool_slots: i64,
    pub queue: Option<String>,
    pub priority_weight: Option<i64>,
    pub operator: Option<String>,
    pub operator_name: Option<String>,
    pub queued_when: Option<Timestamp>,
    pub scheduled_when: Option<Timestamp>,
    pub pid: Option<i64>,
    pub executor: Option<String>,
    pub executor_config: String,
    pub dag_version: Option<serde_json::Value>,
}

/// A page of task instances.
#[derive(Debug, Serialize, ToSchema)]
pub struct TaskInstanceCollectionResponse {
    pub task_instances: Vec<TaskInstanceResponse>,
    pub total_entries: Option<usize>,
    pub total_entries_limit: Option<usize>,
    pub next_cursor: Option<String>,
    pub previous_cursor: Option<String>,
}

impl TaskInstanceCollectionResponse {
    /// A page of `task_instances` out of `total`.
    pub(crate) fn of(task_instances: Vec<TaskInstanceResponse>, total: usize) -> Self {
        Self {
            task_instances,
            total_entries: Some(total),
            total_entries_limit: None,
            next_cursor: None,
            previous_cursor: None,
        }
    }
}

/// A task instance's tries.
#[derive(Debug, Serialize, ToSchema)]
pub struct TaskInstanceHistoryCollectionResponse {
    pub task_instances: Vec<TaskInstanceHistoryResponse>,
    pub total_entries: usize,
}

/// A UUID (version 5 layout) derived from `parts`, stable across calls.
#[must_use]
pub fn stable_uuid(parts: &[&str]) -> String {
    let mut digest = Sha256::new();
    for part in parts {
        digest.update(part.as_bytes());
        digest.update([0]);
    }
    let mut b: [u8; 16] = [0; 16];
    b.copy_from_slice(&digest.finalize()[..16]);
    b[6] = (b[6] & 0x0f) | 0x50;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// The class name Airflow users know an operator by (`BashOperator`), else its Gust name.
#[must_use]
pub fn operator_class(operator: &str) -> String {
    gust_operators::registry::resolve(operator)
        .and_then(|spec| {
            spec.aliases
                .iter()
                .find(|a| !a.contains('.') && a.ends_with("Operator"))
        })
        .map_or_else(|| operator.to_owned(), |name| (*name).to_owned())
}

/// A state as the API names it: Gust's `none` is Airflow's `null`.
fn state_name(state: TaskState) -> Option<String> {
    (state != TaskState::NoStatus).then(|| state.as_str().to_owned())
}

/// The task's settings the responses show, with Airflow's defaults for a task that left the DAG.
struct TaskFacts {
    pool: String,
    pool_slots: i64,
    priority_weight: Option<i64>,
    max_tries: i64,
    operator: Option<String>,
}

impl TaskFacts {
    fn of(task: Option<&Task>) -> Self {
        match task {
            Some(t) => TaskFacts {
                pool: t.settings.pool.clone(),
                pool_slots: i64::from(t.settings.pool_slots),
                priority_weight: Some(i64::from(t.settings.priority_weight)),
                max_tries: i64::from(t.settings.retries),
                operator: Some(operator_class(&t.operator)),
            },
            None => TaskFacts {
                pool: gust_core::task::DEFAULT_POOL.to_owned(),
                pool_slots: 1,
                priority_weight: None,
                max_tries: 0,
                operator: None,
            },
        }
    }
}

fn task_of<'d>(dag: Option<&'d Dag>, task_id: &str) -> Option<&'d Task> {
    let id = TaskId::new(task_id.to_owned()).ok()?;
    dag?.task(&id)
}

fn instance_response(
    run: &StoredRun,
    ti: &StoredTaskInstance,
    current: Option<&StoredTry>,
    task: Option<&Task>,
) -> TaskInstanceResponse {
    let facts = TaskFacts::of(task);
    let start = current.and_then(|t| t.start_date);
    let end = current.and_then(|t| t.end_date);
    // A mapped instance's id names its index too; an unmapped one's stays as it always was.
    let index = ti.map_index.to_string();
    let mut key = vec![
        run.dag_id.as_str(),
        run.run_id.as_str(),
        ti.task_id.as_str(),
    ];
    if ti.map_index != UNMAPPED {
        key.push(&index);
    }
    TaskInstanceResponse {
        id: stable_uuid(&key),
        task_id: ti.task_id.clone(),
        dag_id: run.dag_id.clone(),
        dag_run_id: run.run_id.clone(),
        map_index: i64::from(ti.map_index),
        logical_date: Some(run.logical_date.into()),
        run_after: run.data_interval.1.into(),
        start_date: start.map(Into::into),
        end_date: end.map(Into::into),
        duration: start.zip(end).map(|(s, e)| seconds_between(s, e)),
        state: state_name(ti.state),
        try_number: ti.try_number,
        max_tries: facts.max_tries,
        task_display_name: ti.task_id.clone(),
        dag_display_name: run.dag_id.clone(),
        hostname: None,
        unixname: None,
        pool: facts.pool,
        pool_slots: facts.pool_slots,
        queue: None,
        priority_weight: facts.priority_weight,
        operator_name: facts.operator.clone(),
        operator: facts.operator,
        queued_when: current.and_then(|t| t.queued_at).map(Into::into),
        scheduled_when: None,
        pid: None,
        executor: None,
        executor_config: "{}".to_owned(),
        note: ti.note.clone(),
        rendered_map_index: rendered_map_index(ti),
        rendered_fields: current
            .and_then(|t| t.rendered_args.as_ref())
            .and_then(|a| a.as_object())
            .map(|args| crate::api::redact::redact_args(args, &run.conf))
            .unwrap_or_default(),
        trigger: None,
        triggerer_job: None,
        dag_version: None,
    }
}

/// The name the API shows for an instance, as Airflow's `rendered_map_index`: its rendered
/// `map_index_template`, else a mapped instance's index, else none.
fn rendered_map_index(ti: &StoredTaskInstance) -> Option<String> {
    ti.rendered_map_index
        .clone()
        .or_else(|| (ti.map_index >= 0).then(|| ti.map_index.to_string()))
}

fn history_response(
    run: &StoredRun,
    attempt: &StoredTry,
    task: Option<&Task>,
) -> TaskInstanceHistoryResponse {
    let facts = TaskFacts::of(task);
    TaskInstanceHistoryResponse {
        task_id: attempt.task_id.clone(),
        dag_id: run.dag_id.clone(),
        dag_run_id: run.run_id.clone(),
        map_index: i64::from(attempt.map_index),
        start_date: attempt.start_date.map(Into::into),
        end_date: attempt.end_date.map(Into::into),
        duration: attempt
            .start_date
            .zip(attempt.end_date)
            .map(|(s, e)| seconds_between(s, e)),
        state: state_name(attempt.state),
        try_number: attempt.try_number,
        max_tries: facts.max_tries,
        task_display_name: attempt.task_id.clone(),
        dag_display_name: run.dag_id.clone(),
        hostname: None,
        unixname: None,
        pool: facts.pool,
        pool_slots: facts.pool_slots,
        queue: None,
        priority_weight: facts.priority_weight,
        operator_name: facts.operator.clone(),
        operator: facts.operator,
        queued_when: attempt.queued_at.map(Into::into),
        scheduled_when: None,
        pid: None,
        executor: None,
        executor_config: "{}".to_owned(),
        dag_version: None,
    }
}

/// The run's task instances as the API shows them (those of `only` when given), by task id;
/// tasks of `dag` with no instance row yet are shown with no state.
pub async fn instance_responses(
    state: &AppState,
    run: &StoredRun,
    dag: Option<&Dag>,
    only: Option<&[String]>,
) -> ApiResult<Vec<TaskInstanceResponse>> {
    let store = state.store();
    let mut stored = store.task_instances(&run.dag_id, &run.run_id).await?;
    if let Some(dag) = dag {
        let known: BTreeSet<String> = stored.iter().map(|t| t.task_id.clone()).collect();
        for task in dag.tasks().filter(|t| !known.contains(t.id.as_str())) {
            stored.push(StoredTaskInstance {
                dag_id: run.dag_id.clone(),
                run_id: run.run_id.clone(),
                task_id: task.id.to_string(),
                map_index: gust_store::UNMAPPED,
                state: TaskState::NoStatus,
                try_number: 0,
                next_retry_at: None,
                version: 0,
                note: None,
                rendered_map_index: None,
            });
        }
    }
    if let Some(only) = only {
        stored.retain(|ti| only.contains(&ti.task_id));
    }
    stored.sort_by(|a, b| (&a.task_id, a.map_index).cmp(&(&b.task_id, b.map_index)));
    let tries = if stored.iter().any(|ti| ti.try_number > 0) {
        store.tries_of_run(&run.dag_id, &run.run_id).await?
    } else {
        Vec::new()
    };
    let by_key: HashMap<(&str, i32, i32), &StoredTry> = tries
        .iter()
        .map(|t| ((t.task_id.as_str(), t.map_index, t.try_number), t))
        .collect();
    Ok(stored
        .iter()
        .map(|ti| {
            let key = (ti.task_id.as_str(), ti.map_index, ti.try_number);
            let current = by_key.get(&key).copied();
            instance_response(run, ti, current, task_of(dag, &ti.task_id))
        })
        .collect())
}

/// The 404 of a task instance, in Airflow's words.
fn instance_not_found(dag_id: &str, run_id: &str, task_id: &str) -> ApiError {
    ApiError::NotFound(format!(
        "The Task Instance with dag_id: `{dag_id}`, run_id: `{run_id}` and task_id: `{task_id}` was not found"
    ))
}

/// The DAG's definition when it is still known (a deleted DAG's runs are shown without it).
async fn definition(state: &AppState, dag_id: &str) -> ApiResult<Option<std::sync::Arc<Dag>>> {
    match state.dag(dag_id).await {
        Ok((_, dag)) => Ok(Some(dag)),
        Err(ApiError::NotFound(_)) => Ok(None),
        Err(err) => Err(err),
    }
}

/// The task's instances in the run (a mapped task's by index), none when there is no such task.
async fn task_instances_of(
    state: &AppState,
    dag_id: &str,
    run_id: &str,
    task_id: &str,
) -> ApiResult<Vec<TaskInstanceResponse>> {
    let run = find_run(state, dag_id, run_id).await?;
    let dag = definition(state, dag_id).await?;
    instance_responses(state, &run, dag.as_deref(), Some(&[task_id.to_owned()])).await
}

/// The unmapped instance of a task, or its 404 (Airflow's own when the task is mapped: its
/// instances are named by index).
async fn one_instance(
    state: &AppState,
    dag_id: &str,
    run_id: &str,
    task_id: &str,
) -> ApiResult<TaskInstanceResponse> {
    let ti = task_instances_of(state, dag_id, run_id, task_id)
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| instance_not_found(dag_id, run_id, task_id))?;
    if ti.map_index != i64::from(UNMAPPED) {
        return Err(ApiError::NotFound(
            "Task instance is mapped, add the map_index value to the URL".into(),
        ));
    }
    Ok(ti)
}

/// Instance `map_index` of a task, or its 404.
async fn mapped_instance(
    state: &AppState,
    dag_id: &str,
    run_id: &str,
    task_id: &str,
    map_index: i64,
) -> ApiResult<TaskInstanceResponse> {
    task_instances_of(state, dag_id, run_id, task_id)
        .await?
        .into_iter()
        .find(|ti| ti.map_index == map_index)
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "The Mapped Task Instance with dag_id: `{dag_id}`, run_id: `{run_id}`, task_id: `{task_id}`, and map_index: `{map_index}` was not found"
            ))
        })
}

/// `GET .../taskInstances` filters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TaskInstancesQuery {
    /// At most this many (default 50, at most 100).
    #[serde(default = "crate::api::page::default_limit")]
    pub limit: usize,
    /// Skip this many.
    #[serde(default)]
    pub offset: usize,
    /// Only this task.
    pub task_id: Option<String>,
    /// Only instances in these states (`no_status` or `none` for no state).
    #[serde(default)]
    pub state: Vec<String>,
    /// Only instances in these pools.
    #[serde(default)]
    pub pool: Vec<String>,
    /// Only instances of these operators (class names).
    #[serde(default)]
    pub operator: Vec<String>,
    /// Only instances at these try numbers.
    #[serde(default)]
    pub try_number: Vec<i32>,
    /// Only these instances of mapped tasks (-1: instances of tasks that are not mapped).
    #[serde(default)]
    pub map_index: Vec<i64>,
    /// Only instances whose `rendered_map_index` contains this (SQL `ILIKE` wildcards, `a|b`
    /// for either); instances with none never match.
    pub rendered_map_index_pattern: Option<String>,
    /// Only instances whose `rendered_map_index` starts with this (case-sensitive).
    pub rendered_map_index_prefix_pattern: Option<String>,
    /// Sort keys: `id`, `task_id`, `state`, `duration`, `start_date`, `end_date`, `map_index`,
    /// `try_number`, `logical_date`, `run_after`, `data_interval_start`, `data_interval_end`,
    /// `rendered_map_index`, `operator`; `-` first for descending.
    #[serde(default)]
    pub order_by: Vec<String>,
}

/// `GET .../taskInstances/{task_id}/listMapped` filters (the run's listing's, less the task).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MappedInstancesQuery {
    /// At most this many (default 50, at most 100).
    #[serde(default = "crate::api::page::default_limit")]
    pub limit: usize,
    /// Skip this many.
    #[serde(default)]
    pub offset: usize,
    /// Only instances in these states (`no_status` or `none` for no state).
    #[serde(default)]
    pub state: Vec<String>,
    /// Only instances in these pools.
    #[serde(default)]
    pub pool: Vec<String>,
    /// Only instances of these operators (class names).
    #[serde(default)]
    pub operator: Vec<String>,
    /// Only instances at these try numbers.
    #[serde(default)]
    pub try_number: Vec<i32>,
    /// Only these instances.
    #[serde(default)]
    pub map_index: Vec<i64>,
    /// Only instances whose `rendered_map_index` contains this (SQL `ILIKE` wildcards).
    pub rendered_map_index_pattern: Option<String>,
    /// Only instances whose `rendered_map_index` starts with this (case-sensitive).
    pub rendered_map_index_prefix_pattern: Option<String>,
    /// Sort keys, as the run's listing's less `task_id` (default `map_index`); `-` first for
    /// descending.
    #[serde(default)]
    pub order_by: Vec<String>,
}

impl From<MappedInstancesQuery> for TaskInstancesQuery {
    fn from(q: MappedInstancesQuery) -> Self {
        Self {
            limit: q.limit,
            offset: q.offset,
            task_id: None,
            state: q.state,
            pool: q.pool,
            operator: q.operator,
            try_number: q.try_number,
            map_index: q.map_index,
            rendered_map_index_pattern: q.rendered_map_index_pattern,
            rendered_map_index_prefix_pattern: q.rendered_map_index_prefix_pattern,
            order_by: q.order_by,
        }
    }
}

/// The keys one run's instances sort by (Airflow's, and `task_id`); the run's own dates are
/// the same for all of them, so ordering by them keeps the default order.
const RUN_INSTANCE_ORDERS: &[&str] = &[
    "id",
    "task_id",
    "state",
    "duration",
    "start_date",
    "end_date",
    "map_index",
    "try_number",
    "logical_date",
    "run_after",
    "data_interval_start",
    "data_interval_end",
    "rendered_map_index",
    "operator",
];

/// A run's instances that `query` selects (all but its paging), in its order.
fn select_in_run(
    instances: Vec<TaskInstanceResponse>,
    query: &TaskInstancesQuery,
    order: &[OrderBy],
) -> Vec<TaskInstanceResponse> {
    let states: Vec<Option<String>> = query
        .state
        .iter()
        .map(|s| match s.as_str() {
            "none" | "no_status" | "null" => None,
            other => Some(other.to_owned()),
        })
        .collect();
    let named = |ti: &TaskInstanceResponse, check: &dyn Fn(&str) -> bool| {
        ti.rendered_map_index.as_deref().is_some_and(check)
    };
    let mut selected: Vec<TaskInstanceResponse> = instances
        .into_iter()
        .filter(|ti| query.task_id.as_ref().is_none_or(|t| *t == ti.task_id))
        .filter(|ti| states.is_empty() || states.contains(&ti.state))
        .filter(|ti| query.pool.is_empty() || query.pool.contains(&ti.pool))
        .filter(|ti| {
            query.operator.is_empty()
                || ti
                    .operator
                    .as_ref()
                    .is_some_and(|o| query.operator.contains(o))
        })
        .filter(|ti| query.try_number.is_empty() || query.try_number.contains(&ti.try_number))
        .filter(|ti| query.map_index.is_empty() || query.map_index.contains(&ti.map_index))
        .filter(|ti| {
            query.rendered_map_index_pattern.as_deref().is_none_or(|p| {
                named(ti, &|name| {
                    crate::api::search::matches_pattern(Some(p), name)
                })
            })
        })
        .filter(|ti| {
            query
                .rendered_map_index_prefix_pattern
                .as_deref()
                .is_none_or(|p| {
                    named(ti, &|name| {
                        crate::api::search::matches_prefix(Some(p), name)
                    })
                })
        })
        .collect();
    sort_by(&mut selected, order, instance_sort_key);
    selected
}

/// An instance's sort value for `field`, as text that sorts as the field does.
fn instance_sort_key(ti: &TaskInstanceResponse, field: &str) -> String {
    // Map indexes start at -1: shifted, zero-padded, they sort as numbers.
    let index = format!("{:011}", ti.map_index + 1);
    match field {
        "state" => ti.state.clone().unwrap_or_default(),
        "duration" => format!("{:020.6}", ti.duration.unwrap_or(0.0)),
        "start_date" => ti.start_date.map(|t| t.0.to_rfc3339()).unwrap_or_default(),
        "end_date" => ti.end_date.map(|t| t.0.to_rfc3339()).unwrap_or_default(),
        "try_number" => format!("{:010}", ti.try_number),
        "operator" => ti.operator.clone().unwrap_or_default(),
        "map_index" => index,
        // Airflow's compound order: the rendered name (none after any), then the index; a
        // mapped instance without a template shows its index, which is no name of its own.
        "rendered_map_index" => match ti
            .rendered_map_index
            .as_deref()
            .filter(|name| *name != ti.map_index.to_string())
        {
            Some(name) => format!("0{name}\u{0}{index}"),
            None => format!("1\u{0}{index}"),
        },
        "logical_date" | "run_after" | "data_interval_start" | "data_interval_end" => String::new(),
        _ => format!("{}\u{0}{index}", ti.task_id),
    }
}

/// Filters of Airflow's instance listing that Gust does not apply (refused, not ignored).
const UNSUPPORTED_INSTANCE_FILTERS: &[&str] = &[
    "cursor",
    "run_after_gte",
    "run_after_gt",
    "run_after_lte",
    "run_after_lt",
    "logical_date_gte",
    "logical_date_gt",
    "logical_date_lte",
    "logical_date_lt",
    "start_date_gte",
    "start_date_gt",
    "start_date_lte",
    "start_date_lt",
    "end_date_gte",
    "end_date_gt",
    "end_date_lte",
    "end_date_lt",
    "updated_at_gte",
    "updated_at_gt",
    "updated_at_lte",
    "updated_at_lt",
    "duration_gte",
    "duration_gt",
    "duration_lte",
    "duration_lt",
    "task_display_name_pattern",
    "task_display_name_prefix_pattern",
    "task_group_id",
    "dag_id_pattern",
    "dag_id_prefix_pattern",
    "run_id_pattern",
    "run_id_prefix_pattern",
    "pool_name_pattern",
    "pool_name_prefix_pattern",
    "queue",
    "queue_name_pattern",
    "queue_name_prefix_pattern",
    "executor",
    "version_number",
    "operator_name_pattern",
    "operator_name_prefix_pattern",
];

/// Get the task instances of a run (`~` as the run: of every run; `~` as the DAG too: of every
/// DAG).
#[utoipa::path(get, path = "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances", tag = "Task Instance",
    params(("dag_id" = String, Path), ("dag_run_id" = String, Path), TaskInstancesQuery),
    responses((status = 200, body = TaskInstanceCollectionResponse), (status = 400), (status = 401), (status = 403), (status = 404), (status = 422)))]
async fn get_task_instances(
    State(state): State<AppState>,
    Path((dag_id, run_id)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
    Params(query): Params<TaskInstancesQuery>,
) -> ApiResult<Json<TaskInstanceCollectionResponse>> {
    refuse_unsupported(raw.as_deref(), UNSUPPORTED_INSTANCE_FILTERS)?;
    if run_id == "~" {
        return Ok(Json(across_runs(&state, &dag_id, &query).await?));
    }
    if dag_id == "~" {
        return Err(ApiError::BadRequest(
            "dag_id is required when dag_run_id is specified".into(),
        ));
    }
    let order = OrderBy::parse(&query.order_by, RUN_INSTANCE_ORDERS)?;
    let run = state.store().run(&dag_id, &run_id).await?.ok_or_else(|| {
        ApiError::NotFound(format!(
            "DagRun with dag_id: `{dag_id}` and run_id: `{run_id}` was not found"
        ))
    })?;
    let dag = definition(&state, &dag_id).await?;
    let all = instance_responses(&state, &run, dag.as_deref(), None).await?;
    let instances = select_in_run(all, &query, &order);
    let total = instances.len();
    let page = Page {
        limit: query.limit,
        offset: query.offset,
    };
    Ok(Json(TaskInstanceCollectionResponse::of(
        page.slice(instances),
        total,
    )))
}

/// `GET /dags/{dag_id}/dagRuns/~/taskInstances` (`~` as the DAG too: every DAG's), paged in
/// the database.
async fn across_runs(
    state: &AppState,
    dag_id: &str,
    query: &TaskInstancesQuery,
) -> ApiResult<TaskInstanceCollectionResponse> {
    if !query.pool.is_empty()
        || !query.operator.is_empty()
        || query.rendered_map_index_pattern.is_some()
        || query.rendered_map_index_prefix_pattern.is_some()
    {
        return Err(ApiError::BadRequest(
            "the `pool`, `operator` and `rendered_map_index_*pattern` filters need one run: name the run".into(),
        ));
    }
    // Past any index an instance can have: matches nothing.
    let map_indexes: Vec<i32> = query
        .map_index
        .iter()
        .map(|m| i32::try_from(*m).unwrap_or(i32::MIN))
        .collect();
    let order = instance_order(&query.order_by, INSTANCE_ORDERS)?;
    let mut states = Vec::new();
    for text in &query.state {
        let parsed = match text.as_str() {
            "none" | "no_status" | "null" => Some(TaskState::NoStatus),
            other => TaskState::ALL.into_iter().find(|s| s.as_str() == other),
        };
        match parsed {
            Some(s) if !states.contains(&s) => states.push(s),
            Some(_) => {}
            None => {
                return Err(ApiError::invalid(
                    "query",
                    "state",
                    format!("'{text}' is not a task instance state"),
                ));
            }
        }
    }
    if dag_id != "~" {
        state.dag(dag_id).await?;
    }
    let filter = InstanceFilter {
        dag_ids: (dag_id != "~")
            .then(|| dag_id.to_owned())
            .into_iter()
            .collect(),
        task_ids: query.task_id.clone().into_iter().collect(),
        states,
        try_numbers: query.try_number.clone(),
        map_indexes,
        ..InstanceFilter::default()
    };
    list_page(state, &filter, &order, query.limit, query.offset).await
}

/// The keys instances across runs sort by, as the API names them (Airflow's `id` is the run's
/// order here).
const INSTANCE_ORDERS: &[(&str, InstanceOrder)] = &[
    ("id", InstanceOrder::Run),
    ("task_id", InstanceOrder::TaskId),
    ("state", InstanceOrder::State),
    ("try_number", InstanceOrder::TryNumber),
    ("map_index", InstanceOrder::MapIndex),
    ("rendered_map_index", InstanceOrder::RenderedMapIndex),
    ("start_date", InstanceOrder::StartDate),
    ("end_date", InstanceOrder::EndDate),
    ("duration", InstanceOrder::Duration),
];

/// `order_by` values read against `orders` (a 400 naming the allowed keys otherwise).
pub(crate) fn instance_order(
    values: &[String],
    orders: &[(&str, InstanceOrder)],
) -> ApiResult<Vec<(InstanceOrder, bool)>> {
    let names: Vec<&str> = orders.iter().map(|(name, _)| *name).collect();
    Ok(OrderBy::parse(values, &names)?
        .into_iter()
        .filter_map(|o| {
            orders
                .iter()
                .find(|(name, _)| *name == o.field)
                .map(|(_, column)| (*column, o.descending))
        })
        .collect())
}

/// One page of the instances `filter` selects across runs, paged in the database, with how
/// many match in all. Instances of runs not started yet have no rows, so they are not listed.
pub(crate) async fn list_page(
    state: &AppState,
    filter: &InstanceFilter,
    order: &[(InstanceOrder, bool)],
    limit: usize,
    offset: usize,
) -> ApiResult<TaskInstanceCollectionResponse> {
    let limit = i64::try_from(limit.min(MAX_PAGE)).unwrap_or(0);
    let offset = i64::try_from(offset).unwrap_or(i64::MAX);
    let (stored, total) = state
        .store()
        .list_task_instances(filter, order, limit, offset)
        .await?;
    // Each run on the page (at most a page of them) is read once, with its tries.
    let mut runs: HashMap<(String, String), (StoredRun, Vec<StoredTry>)> = HashMap::new();
    let mut dags: HashMap<String, Option<std::sync::Arc<Dag>>> = HashMap::new();
    let mut instances = Vec::with_capacity(stored.len());
    for ti in &stored {
        let key = (ti.dag_id.clone(), ti.run_id.clone());
        if !runs.contains_key(&key) {
            let Some(run) = state.store().run(&ti.dag_id, &ti.run_id).await? else {
                continue; // Deleted since the page was read.
            };
            let tries = state.store().tries_of_run(&ti.dag_id, &ti.run_id).await?;
            runs.insert(key.clone(), (run, tries));
        }
        if !dags.contains_key(&ti.dag_id) {
            dags.insert(ti.dag_id.clone(), definition(state, &ti.dag_id).await?);
        }
        let Some((run, tries)) = runs.get(&key) else {
            continue;
        };
        let current = tries.iter().find(|t| {
            t.task_id == ti.task_id && t.map_index == ti.map_index && t.try_number == ti.try_number
        });
        let dag = dags.get(&ti.dag_id).and_then(Option::as_deref);
        instances.push(instance_response(
            run,
            ti,
            current,
            task_of(dag, &ti.task_id),
        ));
    }
    let total = usize::try_from(total).unwrap_or(usize::MAX);
    Ok(TaskInstanceCollectionResponse::of(instances, total))
}

/// Get a task instance.
#[utoipa::path(get, path = "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}", tag = "Task Instance",
    params(("dag_id" = String, Path), ("dag_run_id" = String, Path), ("task_id" = String, Path)),
    responses((status = 200, body = TaskInstanceResponse), (status = 401), (status = 403), (status = 404)))]
async fn get_task_instance(
    State(state): State<AppState>,
    Path((dag_id, run_id, task_id)): Path<(String, String, String)>,
) -> ApiResult<Json<TaskInstanceResponse>> {
    Ok(Json(
        one_instance(&state, &dag_id, &run_id, &task_id).await?,
    ))
}

/// Get one instance of a mapped task.
#[utoipa::path(get, path = "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/{map_index}", tag = "Task Instance",
    params(("dag_id" = String, Path), ("dag_run_id" = String, Path), ("task_id" = String, Path), ("map_index" = i64, Path)),
    responses((status = 200, body = TaskInstanceResponse), (status = 401), (status = 403), (status = 404), (status = 422)))]
async fn get_mapped_task_instance(
    State(state): State<AppState>,
    PathParams((dag_id, run_id, task_id, map_index)): PathParams<(String, String, String, i64)>,
) -> ApiResult<Json<TaskInstanceResponse>> {
    Ok(Json(
        mapped_instance(&state, &dag_id, &run_id, &task_id, map_index).await?,
    ))
}

/// List the instances of a mapped task in a run (none before it is expanded, or when it was
/// expanded over an empty list).
#[utoipa::path(get, path = "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/listMapped", tag = "Task Instance",
    params(("dag_id" = String, Path), ("dag_run_id" = String, Path), ("task_id" = String, Path), MappedInstancesQuery),
    responses((status = 200, body = TaskInstanceCollectionResponse), (status = 400), (status = 401), (status = 403), (status = 404), (status = 422)))]
async fn get_mapped_task_instances(
    State(state): State<AppState>,
    Path((dag_id, run_id, task_id)): Path<(String, String, String)>,
    RawQuery(raw): RawQuery,
    Params(query): Params<MappedInstancesQuery>,
) -> ApiResult<Json<TaskInstanceCollectionResponse>> {
    refuse_unsupported(raw.as_deref(), UNSUPPORTED_INSTANCE_FILTERS)?;
    let mut query = TaskInstancesQuery::from(query);
    if query.order_by.is_empty() {
        query.order_by = vec!["map_index".to_owned()];
    }
    let order = OrderBy::parse(&query.order_by, RUN_INSTANCE_ORDERS)?;
    let run = find_run(&state, &dag_id, &run_id).await?;
    let dag = definition(&state, &dag_id).await?;
    let mapped: Vec<TaskInstanceResponse> = instance_responses(
        &state,
        &run,
        dag.as_deref(),
        Some(std::slice::from_ref(&task_id)),
    )
    .await?
    .into_iter()
    .filter(|ti| ti.map_index >= 0)
    .collect();
    if mapped.is_empty() {
        // None yet, or expanded over an empty list: a 404 only when the task is not mapped.
        match task_of(dag.as_deref(), &task_id) {
            None => {
                return Err(ApiError::NotFound(format!("Task id {task_id} not found")));
            }
            Some(task) if task.mapping.is_none() => {
                return Err(ApiError::NotFound(format!(
                    "Task id {task_id} is not mapped"
                )));
            }
            Some(_) => {}
        }
    }
    let selected = select_in_run(mapped, &query, &order);
    let total = selected.len();
    let page = Page {
        limit: query.limit,
        offset: query.offset,
    };
    Ok(Json(TaskInstanceCollectionResponse::of(
        page.slice(selected),
        total,
    )))
}

/// What `PATCH .../taskInstances/{task_id}` changes (Airflow's `PatchTaskInstanceBody`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchTaskInstanceBody {
    /// `success`, `failed` or `skipped`.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub new_state: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub note: Option<Option<String>>,
    #[serde(default)]
    pub include_upstream: bool,
    #[serde(default)]
    pub include_downstream: bool,
    #[serde(default)]
    pub include_future: bool,
    #[serde(default)]
    pub include_past: bool,
}

/// The query of `PATCH .../taskInstances/{task_id}` (and its dry run): which instance
/// (every instance of the task when absent, as in Airflow) and which fields to apply.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MapIndexQuery {
    /// Only this instance of a mapped task (-1: the instance of a task that is not mapped).
    pub map_index: Option<i64>,
    /// Which fields of the body to apply (default: every field sent).
    pub update_mask: Option<Vec<String>>,
}

/// The query of `PATCH .../taskInstances/{task_id}/{map_index}` (and its dry run).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UpdateMaskQuery {
    /// Which fields of the body to apply (default: every field sent).
    pub update_mask: Option<Vec<String>>,
}

/// A validated mark: the state and the instances it applies to.
struct Mark {
    to: Option<TaskState>,
    note: Option<Option<String>>,
    /// The task named in the path.
    task_id: String,
    /// Only this instance of it (every instance when `None`).
    map_index: Option<i32>,
    /// The task and, as asked, its upstream or downstream relatives (every instance of a
    /// relative, as Airflow has no narrower relatives outside mapped task groups).
    tasks: Vec<String>,
    /// Everything downstream of the task (Airflow clears what failed there after a mark).
    downstream: Vec<String>,
    /// The other runs whose instances of `tasks` the state also goes to (`include_past`,
    /// `include_future`); the note stays on the named run's instances.
    other_runs: Vec<StoredRun>,
}

impl Mark {
    /// The instances the new state goes to, as the store names them.
    fn targets(&self) -> Vec<InstanceTarget> {
        self.tasks
            .iter()
            .map(|task| InstanceTarget {
                task_id: task.clone(),
                map_index: self.map_index.filter(|_| *task == self.task_id),
            })
            .collect()
    }

    /// Whether the mark names this instance of the path's task (relatives aside).
    fn names(&self, ti: &TaskInstanceResponse) -> bool {
        ti.task_id == self.task_id && self.map_index.is_none_or(|m| i64::from(m) == ti.map_index)
    }

    /// Whether the mark's state goes to this instance (the task's or a relative's).
    fn covers(&self, ti: &TaskInstanceResponse) -> bool {
        self.tasks.contains(&ti.task_id) && (ti.task_id != self.task_id || self.names(ti))
    }
}

/// Every task reachable from `start` through `next` (`start` excluded).
fn reachable(dag: &Dag, start: &str, upstream: bool) -> BTreeSet<String> {
    let downstream_map = dag.downstream_map();
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut stack: Vec<String> = vec![start.to_owned()];
    while let Some(id) = stack.pop() {
        let Ok(task_id) = TaskId::new(id) else {
            continue;
        };
        let next: Vec<String> = if upstream {
            dag.task(&task_id)
                .map(|t| t.upstream.iter().map(ToString::to_string).collect())
                .unwrap_or_default()
        } else {
            downstream_map
                .get(&task_id)
                .map(|d| d.iter().map(ToString::to_string).collect())
                .unwrap_or_default()
        };
        for n in next {
            if seen.insert(n.clone()) {
                stack.push(n);
            }
        }
    }
    seen
}

async fn validate_mark(
    state: &AppState,
    names: (&str, &str, &str),
    map_index: Option<i64>,
    update_mask: Option<&[String]>,
    body: PatchTaskInstanceBody,
) -> ApiResult<(StoredRun, std::sync::Arc<Dag>, Mark)> {
    let (dag_id, run_id, task_id) = names;
    let mask = UpdateMask {
        update_mask: update_mask.map(<[String]>::to_vec),
    };
    let to = match body
        .new_state
        .as_ref()
        .filter(|_| mask.applies("new_state"))
    {
        None => None,
        Some(None) => {
            return Err(ApiError::invalid(
                "body",
                "new_state",
                "'new_state' should not be empty",
            ));
        }
        Some(Some(text)) => Some(match text.to_lowercase().as_str() {
            "success" => TaskState::Success,
            "failed" => TaskState::Failed,
            "skipped" => TaskState::Skipped,
            other => {
                return Err(ApiError::invalid(
                    "body",
                    "new_state",
                    format!("'{other}' is not one of ['success', 'failed', 'skipped']"),
                ));
            }
        }),
    };
    let note = body.note.filter(|_| mask.applies("note"));
    if let Some(note) = &note {
        check_note(note.as_deref())?;
    }
    let run = find_run(state, dag_id, run_id).await?;
    let (_, dag) = state.dag(dag_id).await?;
    let Some(task) = task_of(Some(&dag), task_id) else {
        return Err(ApiError::NotFound(format!(
            "Task '{task_id}' not found in DAG '{dag_id}'"
        )));
    };
    let missing = || {
        let index = map_index.map_or_else(|| "None".to_owned(), |m| m.to_string());
        ApiError::NotFound(format!(
            "The Task Instance with dag_id: `{dag_id}`, run_id: `{run_id}`, task_id: `{task_id}` and map_index: `{index}` was not found"
        ))
    };
    let index = map_index
        .map(|m| i32::try_from(m).map_err(|_| missing()))
        .transpose()?;
    let exists = instance_responses(state, &run, Some(&dag), Some(&[task_id.to_owned()]))
        .await?
        .iter()
        .any(|ti| index.is_none_or(|m| i64::from(m) == ti.map_index));
    if !exists {
        return Err(missing());
    }
    let mut tasks: BTreeSet<String> = BTreeSet::from([task.id.to_string()]);
    if body.include_upstream {
        tasks.extend(reachable(&dag, task_id, true));
    }
    if body.include_downstream {
        tasks.extend(reachable(&dag, task_id, false));
    }
    let downstream = reachable(&dag, task_id, false)
        .into_iter()
        .filter(|t| !tasks.contains(t))
        .collect();
    let other_runs = if to.is_some() {
        mark_scope::other_runs(state, &dag, &run, body.include_past, body.include_future).await?
    } else {
        Vec::new()
    };
    Ok((
        run,
        dag,
        Mark {
            to,
            note,
            task_id: task_id.to_owned(),
            map_index: index,
            tasks: tasks.into_iter().collect(),
            downstream,
            other_runs,
        },
    ))
}

/// Creates the instance rows of a run not started yet, so they can be marked.
async fn ensure_instances(state: &AppState, dag: &Dag, run: &StoredRun) -> ApiResult<()> {
    if run.state == DagRunState::Queued {
        let task_ids: Vec<&str> = dag.tasks().map(|t| t.id.as_str()).collect();
        state
            .store()
            .create_task_instances(&run.dag_id, &run.run_id, &task_ids)
            .await?;
    }
    Ok(())
}

/// Mark a task instance (every instance of a mapped task, or the one `map_index` names; and,
/// as asked, its upstream or downstream) `success`, `failed` or `skipped`, or change its note.
#[utoipa::path(patch, path = "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}", tag = "Task Instance",
    params(("dag_id" = String, Path), ("dag_run_id" = String, Path), ("task_id" = String, Path), MapIndexQuery),
    request_body = PatchTaskInstanceBody,
    responses((status = 200, body = TaskInstanceCollectionResponse), (status = 400), (status = 401), (status = 403), (status = 404), (status = 409), (status = 422)))]
async fn patch_task_instance(
    State(state): State<AppState>,
    Path((dag_id, run_id, task_id)): Path<(String, String, String)>,
    Params(query): Params<MapIndexQuery>,
    Body(body): Body<PatchTaskInstanceBody>,
) -> ApiResult<Json<TaskInstanceCollectionResponse>> {
    let names = (dag_id.as_str(), run_id.as_str(), task_id.as_str());
    let (run, dag, mark) = validate_mark(
        &state,
        names,
        query.map_index,
        query.update_mask.as_deref(),
        body,
    )
    .await?;
    apply_mark(&state, run, &dag, &mark).await
}

/// Mark one instance of a mapped task (and, as asked, its upstream or downstream) `success`,
/// `failed` or `skipped`, or change its note.
#[utoipa::path(patch, path = "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/{map_index}", tag = "Task Instance",
    params(("dag_id" = String, Path), ("dag_run_id" = String, Path), ("task_id" = String, Path), ("map_index" = i64, Path), UpdateMaskQuery),
    request_body = PatchTaskInstanceBody,
    responses((status = 200, body = TaskInstanceCollectionResponse), (status = 400), (status = 401), (status = 403), (status = 404), (status = 409), (status = 422)))]
async fn patch_task_instance_by_map_index(
    State(state): State<AppState>,
    PathParams((dag_id, run_id, task_id, map_index)): PathParams<(String, String, String, i64)>,
    Params(query): Params<UpdateMaskQuery>,
    Body(body): Body<PatchTaskInstanceBody>,
) -> ApiResult<Json<TaskInstanceCollectionResponse>> {
    let names = (dag_id.as_str(), run_id.as_str(), task_id.as_str());
    let (run, dag, mark) = validate_mark(
        &state,
        names,
        Some(map_index),
        query.update_mask.as_deref(),
        body,
    )
    .await?;
    apply_mark(&state, run, &dag, &mark).await
}

/// Applies a validated mark; answers with the named instances as they are after it.
async fn apply_mark(
    state: &AppState,
    run: StoredRun,
    dag: &Dag,
    mark: &Mark,
) -> ApiResult<Json<TaskInstanceCollectionResponse>> {
    let store = state.store();
    let (dag_id, task_id) = (run.dag_id.as_str(), mark.task_id.as_str());
    if let Some(note) = &mark.note {
        ensure_instances(state, dag, &run).await?;
        let named: Vec<i64> = instance_responses(
            state,
            &run,
            Some(dag),
            Some(std::slice::from_ref(&mark.task_id)),
        )
        .await?
        .iter()
        .filter(|ti| mark.names(ti))
        .map(|ti| ti.map_index)
        .collect();
        for index in named {
            let index = i32::try_from(index).unwrap_or(UNMAPPED);
            store
                .set_task_instance_note(dag_id, &run.run_id, task_id, index, note.as_deref())
                .await?;
        }
    }
    if let Some(to) = mark.to {
        // After a mark, Airflow clears what failed downstream so it runs again; after marking
        // `failed` that would only fail again, so Gust leaves it.
        let reset: &[String] = if to == TaskState::Failed {
            &[]
        } else {
            &mark.downstream
        };
        let targets = mark.targets();
        for marked in std::iter::once(&run).chain(&mark.other_runs) {
            ensure_instances(state, dag, marked).await?;
            let changed = store
                .mark_instances(dag_id, &marked.run_id, &targets, to, reset, state.now())
                .await?;
            tracing::info!(%dag_id, run_id = %marked.run_id, %task_id, map_index = ?mark.map_index, %to, ?changed, "task instances marked through the API");
        }
        state.wake_scheduler();
    }
    let run = find_run(state, dag_id, &run.run_id).await?;
    let instances: Vec<TaskInstanceResponse> = instance_responses(
        state,
        &run,
        Some(dag),
        Some(std::slice::from_ref(&mark.task_id)),
    )
    .await?
    .into_iter()
    .filter(|ti| mark.names(ti))
    .collect();
    let total = instances.len();
    Ok(Json(TaskInstanceCollectionResponse::of(instances, total)))
}

/// What marking a task instance (every instance of a mapped task, or the one `map_index`
/// names) would change, without changing it.
#[utoipa::path(patch, path = "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/dry_run", tag = "Task Instance",
    params(("dag_id" = String, Path), ("dag_run_id" = String, Path), ("task_id" = String, Path), MapIndexQuery),
    request_body = PatchTaskInstanceBody,
    responses((status = 200, body = TaskInstanceCollectionResponse), (status = 400), (status = 401), (status = 403), (status = 404), (status = 422)))]
async fn patch_task_instance_dry_run(
    State(state): State<AppState>,
    Path((dag_id, run_id, task_id)): Path<(String, String, String)>,
    Params(query): Params<MapIndexQuery>,
    Body(body): Body<PatchTaskInstanceBody>,
) -> ApiResult<Json<TaskInstanceCollectionResponse>> {
    let names = (dag_id.as_str(), run_id.as_str(), task_id.as_str());
    let (run, dag, mark) = validate_mark(
        &state,
        names,
        query.map_index,
        query.update_mask.as_deref(),
        body,
    )
    .await?;
    dry_run_mark(&state, &run, &dag, &mark).await
}

/// What marking one instance of a mapped task would change, without changing it.
#[utoipa::path(patch, path = "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/{map_index}/dry_run", tag = "Task Instance",
    params(("dag_id" = String, Path), ("dag_run_id" = String, Path), ("task_id" = String, Path), ("map_index" = i64, Path), UpdateMaskQuery),
    request_body = PatchTaskInstanceBody,
    responses((status = 200, body = TaskInstanceCollectionResponse), (status = 400), (status = 401), (status = 403), (status = 404), (status = 422)))]
async fn patch_task_instance_dry_run_by_map_index(
    State(state): State<AppState>,
    PathParams((dag_id, run_id, task_id, map_index)): PathParams<(String, String, String, i64)>,
    Params(query): Params<UpdateMaskQuery>,
    Body(body): Body<PatchTaskInstanceBody>,
) -> ApiResult<Json<TaskInstanceCollectionResponse>> {
    let names = (dag_id.as_str(), run_id.as_str(), task_id.as_str());
    let (run, dag, mark) = validate_mark(
        &state,
        names,
        Some(map_index),
        query.update_mask.as_deref(),
        body,
    )
    .await?;
    dry_run_mark(&state, &run, &dag, &mark).await
}

/// The instances a mark would change: those it covers, in the named run and the other runs it
/// reaches, less those already in its state.
async fn dry_run_mark(
    state: &AppState,
    run: &StoredRun,
    dag: &Dag,
    mark: &Mark,
) -> ApiResult<Json<TaskInstanceCollectionResponse>> {
    let mut instances = Vec::new();
    for marked in std::iter::once(run).chain(&mark.other_runs) {
        instances.extend(
            instance_responses(state, marked, Some(dag), Some(&mark.tasks))
                .await?
                .into_iter()
                .filter(|ti| mark.covers(ti)),
        );
    }
    if let Some(to) = mark.to {
        // Those already in the state would not change.
        instances.retain(|ti| ti.state.as_deref() != Some(to.as_str()));
    }
    let total = instances.len();
    Ok(Json(TaskInstanceCollectionResponse::of(instances, total)))
}

/// `map_index` on the routes that name an instance without an index in their path.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct InstanceQuery {
    /// Which instance (-1, the default, for a task that is not mapped).
    #[serde(default = "unmapped")]
    pub map_index: i64,
}

fn unmapped() -> i64 {
    i64::from(UNMAPPED)
}

/// The tries of a task instance, oldest first.
#[utoipa::path(get, path = "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/tries", tag = "Task Instance",
    params(("dag_id" = String, Path), ("dag_run_id" = String, Path), ("task_id" = String, Path), InstanceQuery),
    responses((status = 200, body = TaskInstanceHistoryCollectionResponse), (status = 401), (status = 403), (status = 404), (status = 422)))]
async fn get_task_instance_tries(
    State(state): State<AppState>,
    Path((dag_id, run_id, task_id)): Path<(String, String, String)>,
    Params(query): Params<InstanceQuery>,
) -> ApiResult<Json<TaskInstanceHistoryCollectionResponse>> {
    instance_tries(&state, (&dag_id, &run_id, &task_id), query.map_index).await
}

/// The tries of one instance of a mapped task, oldest first.
#[utoipa::path(get, path = "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/{map_index}/tries", tag = "Task Instance",
    params(("dag_id" = String, Path), ("dag_run_id" = String, Path), ("task_id" = String, Path), ("map_index" = i64, Path)),
    responses((status = 200, body = TaskInstanceHistoryCollectionResponse), (status = 401), (status = 403), (status = 404), (status = 422)))]
async fn get_mapped_task_instance_tries(
    State(state): State<AppState>,
    PathParams((dag_id, run_id, task_id, map_index)): PathParams<(String, String, String, i64)>,
) -> ApiResult<Json<TaskInstanceHistoryCollectionResponse>> {
    instance_tries(&state, (&dag_id, &run_id, &task_id), map_index).await
}

/// The tries of instance `map_index` of a task; one never tried is listed as itself, as
/// Airflow lists it.
async fn instance_tries(
    state: &AppState,
    (dag_id, run_id, task_id): (&str, &str, &str),
    map_index: i64,
) -> ApiResult<Json<TaskInstanceHistoryCollectionResponse>> {
    let missing = || {
        ApiError::NotFound(format!(
            "The Task Instance with dag_id: `{dag_id}`, run_id: `{run_id}`, task_id: `{task_id}` and map_index: `{map_index}` was not found"
        ))
    };
    let index = i32::try_from(map_index).map_err(|_| missing())?;
    let (run, dag, mut tries) = tries_of(state, dag_id, run_id, task_id, index).await?;
    let task = task_of(dag.as_deref(), task_id);
    if tries.is_empty() {
        let ti = task_instances_of(state, dag_id, run_id, task_id)
            .await?
            .into_iter()
            .find(|ti| ti.map_index == map_index)
            .ok_or_else(missing)?;
        tries.push(StoredTry {
            task_id: ti.task_id,
            map_index: index,
            try_number: ti.try_number,
            state: TaskState::NoStatus,
            queued_at: None,
            start_date: None,
            end_date: None,
            failure: None,
            rendered_args: None,
        });
    }
    let task_instances: Vec<TaskInstanceHistoryResponse> = tries
        .iter()
        .map(|t| history_response(&run, t, task))
        .collect();
    let total_entries = task_instances.len();
    Ok(Json(TaskInstanceHistoryCollectionResponse {
        task_instances,
        total_entries,
    }))
}

async fn tries_of(
    state: &AppState,
    dag_id: &str,
    run_id: &str,
    task_id: &str,
    map_index: i32,
) -> ApiResult<(StoredRun, Option<std::sync::Arc<Dag>>, Vec<StoredTry>)> {
    let run = find_run(state, dag_id, run_id).await?;
    let dag = definition(state, dag_id).await?;
    let tries = state
        .store()
        .tries_of_run(dag_id, run_id)
        .await?
        .into_iter()
        .filter(|t| t.task_id == task_id && t.map_index == map_index)
        .collect();
    Ok((run, dag, tries))
}

/// One try of a task instance.
#[utoipa::path(get, path = "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/tries/{task_try_number}", tag = "Task Instance",
    params(("dag_id" = String, Path), ("dag_run_id" = String, Path), ("task_id" = String, Path), ("task_try_number" = i32, Path), InstanceQuery),
    responses((status = 200, body = TaskInstanceHistoryResponse), (status = 401), (status = 403), (status = 404), (status = 422)))]
async fn get_task_instance_try_details(
    State(state): State<AppState>,
    PathParams((dag_id, run_id, task_id, try_number)): PathParams<(String, String, String, i32)>,
    Params(query): Params<InstanceQuery>,
) -> ApiResult<Json<TaskInstanceHistoryResponse>> {
    try_details(
        &state,
        (&dag_id, &run_id, &task_id),
        query.map_index,
        try_number,
    )
    .await
}

/// One try of one instance of a mapped task.
#[utoipa::path(get, path = "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/{map_index}/tries/{task_try_number}", tag = "Task Instance",
    params(("dag_id" = String, Path), ("dag_run_id" = String, Path), ("task_id" = String, Path), ("map_index" = i64, Path), ("task_try_number" = i32, Path)),
    responses((status = 200, body = TaskInstanceHistoryResponse), (status = 401), (status = 403), (status = 404), (status = 422)))]
async fn get_mapped_task_instance_try_details(
    State(state): State<AppState>,
    PathParams((dag_id, run_id, task_id, map_index, try_number)): PathParams<(
        String,
        String,
        String,
        i64,
        i32,
    )>,
) -> ApiResult<Json<TaskInstanceHistoryResponse>> {
    try_details(&state, (&dag_id, &run_id, &task_id), map_index, try_number).await
}

async fn try_details(
    state: &AppState,
    (dag_id, run_id, task_id): (&str, &str, &str),
    map_index: i64,
    try_number: i32,
) -> ApiResult<Json<TaskInstanceHistoryResponse>> {
    let missing = || {
        ApiError::NotFound(format!(
            "The Task Instance with dag_id: `{dag_id}`, run_id: `{run_id}`, task_id: `{task_id}`, try_number: `{try_number}` and map_index: `{map_index}` was not found"
        ))
    };
    let index = i32::try_from(map_index).map_err(|_| missing())?;
    let (run, dag, tries) = tries_of(state, dag_id, run_id, task_id, index).await?;
    let attempt = tries
        .iter()
        .find(|t| t.try_number == try_number)
        .ok_or_else(missing)?;
    Ok(Json(history_response(
        &run,
        attempt,
        task_of(dag.as_deref(), task_id),
    )))
}

/// What clearing task instances takes (Airflow's `ClearTaskInstancesBody`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClearTaskInstancesBody {
    /// Only say what would be cleared (the default, as in Airflow).
    #[serde(default = "yes")]
    pub dry_run: bool,
    pub start_date: Option<String>,
    pub end_date: Option<String>,
    /// Only failed and upstream_failed instances (the default, as in Airflow).
    #[serde(default = "yes")]
    pub only_failed: bool,
    #[serde(default)]
    pub only_running: bool,
    #[serde(default = "yes")]
    pub reset_dag_runs: bool,
    /// Task ids, or `[task_id, map_index]` pairs.
    #[schema(value_type = Option<Vec<Object>>)]
    pub task_ids: Option<Vec<serde_json::Value>>,
    pub dag_run_id: Option<String>,
    #[serde(default)]
    pub include_upstream: bool,
    #[serde(default)]
    pub include_downstream: bool,
    #[serde(default)]
    pub include_future: bool,
    #[serde(default)]
    pub include_past: bool,
    pub run_on_latest_version: Option<bool>,
    #[serde(default)]
    pub prevent_running_task: bool,
    pub note: Option<String>,
}

fn yes() -> bool {
    true
}

/// The entries of `task_ids`: a task id names every instance of the task, a
/// `[task_id, map_index]` pair one instance.
fn task_targets(values: &[serde_json::Value]) -> ApiResult<Vec<InstanceTarget>> {
    let bad = || {
        ApiError::invalid(
            "body",
            "task_ids",
            "each entry must be a task id or a [task_id, map_index] pair",
        )
    };
    values
        .iter()
        .map(|v| match v {
            serde_json::Value::String(id) => Ok(InstanceTarget::all(id.clone())),
            serde_json::Value::Array(pair) => match pair.as_slice() {
                [serde_json::Value::String(id), index] => {
                    let index = index
                        .as_i64()
                        .and_then(|i| i32::try_from(i).ok())
                        .ok_or_else(bad)?;
                    Ok(InstanceTarget::one(id.clone(), index))
                }
                _ => Err(bad()),
            },
            _ => Err(bad()),
        })
        .collect()
}

/// Clear task instances so they run again, in one run (`dag_run_id`) or in the runs whose
/// logical date is between `start_date` and `end_date` (`dry_run`, the default, only lists
/// them).
#[utoipa::path(post, path = "/api/v2/dags/{dag_id}/clearTaskInstances", tag = "Task Instance",
    params(("dag_id" = String, Path)), request_body = ClearTaskInstancesBody,
    responses((status = 200, body = TaskInstanceCollectionResponse), (status = 400), (status = 401), (status = 403), (status = 404), (status = 409), (status = 422)))]
async fn post_clear_task_instances(
    State(state): State<AppState>,
    Path(dag_id): Path<String>,
    Body(body): Body<ClearTaskInstancesBody>,
) -> ApiResult<Json<TaskInstanceCollectionResponse>> {
    if body.only_failed && body.only_running {
        return Err(ApiError::invalid(
            "body",
            "",
            "only_failed and only_running both are set to True",
        ));
    }
    if body.task_ids.as_ref().is_some_and(Vec::is_empty) {
        return Err(ApiError::invalid(
            "body",
            "task_ids",
            "task_ids must not be an empty list",
        ));
    }
    check_note(body.note.as_deref())?;
    let time = |field: &str, value: &Option<String>| {
        value
            .as_ref()
            .map(|text| {
                parse_time(text).ok_or_else(|| {
                    ApiError::invalid(
                        "body",
                        field,
                        "Input should be a valid datetime (RFC 3339, or a date)",
                    )
                })
            })
            .transpose()
    };
    let (start, end) = (
        time("start_date", &body.start_date)?,
        time("end_date", &body.end_date)?,
    );
    if body.dag_run_id.is_some() && (start.is_some() || end.is_some()) {
        return Err(ApiError::invalid(
            "body",
            "",
            "Exactly one of dag_run_id or (start_date and end_date) must be provided",
        ));
    }
    if let (Some(s), Some(e)) = (start, end)
        && s > e
    {
        return Err(ApiError::invalid(
            "body",
            "",
            "end_date is sooner than start_date",
        ));
    }
    let (_, dag) = state.dag(&dag_id).await?;
    let runs: Vec<StoredRun> = match &body.dag_run_id {
        Some(run_id) => {
            let run = state.store().run(&dag_id, run_id).await?.ok_or_else(|| {
                ApiError::NotFound(format!("Dag Run id {run_id} not found in dag {dag_id}"))
            })?;
            if body.include_past || body.include_future {
                // Relative to the run's logical date, as Airflow does.
                let filter = RunFilter {
                    dag_ids: Some(vec![dag_id.clone()]),
                    logical_date: TimeRange {
                        gte: (!body.include_past).then_some(run.logical_date),
                        lte: (!body.include_future).then_some(run.logical_date),
                        ..TimeRange::default()
                    },
                    ..RunFilter::default()
                };
                state
                    .store()
                    .list_runs(&filter, &[], MAX_CLEARED_RUNS, 0)
                    .await?
                    .0
            } else {
                vec![run]
            }
        }
        None => {
            let filter = RunFilter {
                dag_ids: Some(vec![dag_id.clone()]),
                logical_date: TimeRange {
                    gte: start.filter(|_| !body.include_past),
                    lte: end.filter(|_| !body.include_future),
                    ..TimeRange::default()
                },
                ..RunFilter::default()
            };
            state
                .store()
                .list_runs(&filter, &[], MAX_CLEARED_RUNS, 0)
                .await?
                .0
        }
    };
    let named: Vec<InstanceTarget> = match &body.task_ids {
        Some(values) => task_targets(values)?,
        None => dag
            .tasks()
            .map(|t| InstanceTarget::all(t.id.as_str()))
            .collect(),
    };
    // Every instance of these; of the rest, only the instances a pair names. Relatives are
    // whole tasks: outside mapped task groups (which Gust has not), Airflow finds no narrower
    // relatives of a mapped instance.
    let mut tasks: BTreeSet<String> = named
        .iter()
        .filter(|t| t.map_index.is_none())
        .map(|t| t.task_id.clone())
        .collect();
    for target in &named {
        if body.include_upstream {
            tasks.extend(reachable(&dag, &target.task_id, true));
        }
        if body.include_downstream {
            tasks.extend(reachable(&dag, &target.task_id, false));
        }
    }
    let pairs: BTreeSet<(String, i32)> = named
        .iter()
        .filter_map(|t| Some((t.task_id.clone(), t.map_index?)))
        .collect();
    let wanted = |task_id: &str, map_index: i32| {
        tasks.contains(task_id) || pairs.contains(&(task_id.to_owned(), map_index))
    };
    let mut chosen: Vec<(StoredRun, Vec<InstanceTarget>)> = Vec::new();
    for run in runs {
        let ids: Vec<InstanceTarget> = state
            .store()
            .task_instances(&run.dag_id, &run.run_id)
            .await?
            .into_iter()
            .filter(|ti| wanted(&ti.task_id, ti.map_index))
            .filter(|ti| {
                if body.only_failed {
                    matches!(ti.state, TaskState::Failed | TaskState::UpstreamFailed)
                } else if body.only_running {
                    ti.state == TaskState::Running
                } else {
                    true
                }
            })
            .map(|ti| InstanceTarget::one(ti.task_id, ti.map_index))
            .collect();
        if !ids.is_empty() {
            chosen.push((run, ids));
        }
    }
    if !body.dry_run {
        if body.prevent_running_task {
            for (run, ids) in &chosen {
                let running: Vec<String> = state
                    .store()
                    .task_instances(&run.dag_id, &run.run_id)
                    .await?
                    .into_iter()
                    .filter(|ti| {
                        ti.state == TaskState::Running
                            && ids.contains(&InstanceTarget::one(ti.task_id.clone(), ti.map_index))
                    })
                    // `task`, or `task[3]` for an instance of a mapped one.
                    .map(|ti| match TaskId::new(ti.task_id.clone()) {
                        Ok(id) => InstanceId::mapped(id, ti.map_index).to_string(),
                        Err(_) => ti.task_id,
                    })
                    .collect();
                if !running.is_empty() {
                    return Err(ApiError::Conflict(format!(
                        "Cannot clear task instances of run {} that are running: {}",
                        run.run_id,
                        running.join(", ")
                    )));
                }
            }
        }
        for (run, ids) in &chosen {
            state
                .store()
                .clear_instances(&run.dag_id, &run.run_id, ids, state.now())
                .await?;
            if let Some(note) = body.note.as_deref() {
                for target in ids {
                    state
                        .store()
                        .set_task_instance_note(
                            &run.dag_id,
                            &run.run_id,
                            &target.task_id,
                            target.map_index.unwrap_or(UNMAPPED),
                            Some(note),
                        )
                        .await?;
                }
            }
            tracing::info!(dag_id = %run.dag_id, run_id = %run.run_id, tasks = ?ids, "task instances cleared through the API");
        }
        if !chosen.is_empty() {
            state.wake_scheduler();
        }
    }
    let mut instances = Vec::new();
    for (run, ids) in &chosen {
        let run = find_run(&state, &run.dag_id, &run.run_id)
            .await
            .map_err(|_| run_not_found(&run.dag_id, &run.run_id))?;
        let task_ids: Vec<String> = ids.iter().map(|t| t.task_id.clone()).collect();
        instances.extend(
            instance_responses(&state, &run, Some(&dag), Some(&task_ids))
                .await?
                .into_iter()
                .filter(|ti| {
                    ids.iter().any(|t| {
                        t.task_id == ti.task_id
                            && t.map_index.is_none_or(|m| i64::from(m) == ti.map_index)
                    })
                }),
        );
    }
    let total = instances.len();
    Ok(Json(TaskInstanceCollectionResponse::of(instances, total)))
}
