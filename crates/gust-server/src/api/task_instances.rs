//! `/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances`: list (`~` as the run, and then
//! as the DAG, lists across runs), get, mark (PATCH, and its dry run), tries; and
//! `POST /dags/{dag_id}/clearTaskInstances`.
//!
//! A run whose scheduler has not loaded it yet has no task instance rows: its tasks are shown
//! with no state, as Airflow shows a run's instances before they are scheduled. Marking and
//! clearing are store transactions that bump versions, so a scheduler holding the run re-reads
//! it, kills the tries no longer wanted and carries on downstream.

use std::collections::{BTreeSet, HashMap};

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use gust_core::dag::Dag;
use gust_core::ids::TaskId;
use gust_core::state::{DagRunState, TaskState};
use gust_core::task::Task;
use gust_store::{
    InstanceFilter, InstanceOrder, RunFilter, StoredRun, StoredTaskInstance, StoredTry, TimeRange,
    UNMAPPED,
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
        .routes(routes!(patch_task_instance_dry_run))
        .routes(routes!(get_task_instance_tries))
        .routes(routes!(get_task_instance_try_details))
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
        rendered_map_index: None,
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

/// One task instance, or its 404.
async fn one_instance(
    state: &AppState,
    dag_id: &str,
    run_id: &str,
    task_id: &str,
) -> ApiResult<TaskInstanceResponse> {
    let run = find_run(state, dag_id, run_id).await?;
    let dag = definition(state, dag_id).await?;
    instance_responses(state, &run, dag.as_deref(), Some(&[task_id.to_owned()]))
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| instance_not_found(dag_id, run_id, task_id))
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
    /// Sort keys: `id`, `task_id`, `state`, `duration`, `start_date`, `end_date`, `map_index`,
    /// `try_number`, `operator`; `-` first for descending.
    #[serde(default)]
    pub order_by: Vec<String>,
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
    "rendered_map_index_pattern",
    "rendered_map_index_prefix_pattern",
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
    let order = OrderBy::parse(
        &query.order_by,
        &[
            "id",
            "task_id",
            "state",
            "duration",
            "start_date",
            "end_date",
            "map_index",
            "try_number",
            "operator",
        ],
    )?;
    let run = state.store().run(&dag_id, &run_id).await?.ok_or_else(|| {
        ApiError::NotFound(format!(
            "DagRun with dag_id: `{dag_id}` and run_id: `{run_id}` was not found"
        ))
    })?;
    let dag = definition(&state, &dag_id).await?;
    let states: Vec<Option<String>> = query
        .state
        .iter()
        .map(|s| match s.as_str() {
            "none" | "no_status" | "null" => None,
            other => Some(other.to_owned()),
        })
        .collect();
    let mut instances: Vec<TaskInstanceResponse> =
        instance_responses(&state, &run, dag.as_deref(), None)
            .await?
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
            .collect();
    sort_by(&mut instances, &order, |ti, field| match field {
        "state" => ti.state.clone().unwrap_or_default(),
        "duration" => format!("{:020.6}", ti.duration.unwrap_or(0.0)),
        "start_date" => ti.start_date.map(|t| t.0.to_rfc3339()).unwrap_or_default(),
        "end_date" => ti.end_date.map(|t| t.0.to_rfc3339()).unwrap_or_default(),
        "try_number" => format!("{:010}", ti.try_number),
        "operator" => ti.operator.clone().unwrap_or_default(),
        _ => ti.task_id.clone(),
    });
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
    if !query.pool.is_empty() || !query.operator.is_empty() {
        return Err(ApiError::BadRequest(
            "the `pool` and `operator` filters need one run: name the run".into(),
        ));
    }
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
        ..InstanceFilter::default()
    };
    list_page(state, &filter, &order, query.limit, query.offset).await
}

/// The keys instances across runs sort by, as the API names them (Airflow's `map_index` and
/// `id` are the run's order here: Gust's instances are never mapped).
const INSTANCE_ORDERS: &[(&str, InstanceOrder)] = &[
    ("id", InstanceOrder::Run),
    ("task_id", InstanceOrder::TaskId),
    ("state", InstanceOrder::State),
    ("try_number", InstanceOrder::TryNumber),
    ("map_index", InstanceOrder::Run),
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
        let current = tries
            .iter()
            .find(|t| t.task_id == ti.task_id && t.try_number == ti.try_number);
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

/// `map_index` on the task instance endpoints: Gust has no mapped tasks, so only -1 exists.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MapIndexQuery {
    /// Which mapped instance (Gust has no mapped tasks: -1).
    pub map_index: Option<i64>,
    /// Which fields of the body to apply (default: every field sent).
    pub update_mask: Option<Vec<String>>,
}

/// A validated mark: the state and the tasks it applies to.
struct Mark {
    to: Option<TaskState>,
    note: Option<Option<String>>,
    /// The task and, as asked, its upstream or downstream relatives.
    tasks: Vec<String>,
    /// Everything downstream of the task (Airflow clears what failed there after a mark).
    downstream: Vec<String>,
    /// The other runs whose instances of `tasks` the state also goes to (`include_past`,
    /// `include_future`); the note stays on the named run's instance.
    other_runs: Vec<StoredRun>,
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
    dag_id: &str,
    run_id: &str,
    task_id: &str,
    query: &MapIndexQuery,
    body: PatchTaskInstanceBody,
) -> ApiResult<(StoredRun, std::sync::Arc<Dag>, Mark)> {
    if query.map_index.is_some_and(|m| m != -1) {
        return Err(ApiError::NotFound(format!(
            "Task instance not found for task `{task_id}` on DAG `{dag_id}` with map_index {}: Gust has no mapped tasks",
            query.map_index.unwrap_or(-1)
        )));
    }
    let mask = UpdateMask {
        update_mask: query.update_mask.clone(),
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

/// Mark a task instance (and, as asked, its upstream or downstream) `success`, `failed` or
/// `skipped`, or change its note.
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
    let (run, dag, mark) = validate_mark(&state, &dag_id, &run_id, &task_id, &query, body).await?;
    let store = state.store();
    if let Some(note) = &mark.note {
        ensure_instances(&state, &dag, &run).await?;
        store
            .set_task_instance_note(&dag_id, &run_id, &task_id, UNMAPPED, note.as_deref())
            .await?;
    }
    if let Some(to) = mark.to {
        // After a mark, Airflow clears what failed downstream so it runs again; after marking
        // `failed` that would only fail again, so Gust leaves it.
        let reset: &[String] = if to == TaskState::Failed {
            &[]
        } else {
            &mark.downstream
        };
        for marked in std::iter::once(&run).chain(&mark.other_runs) {
            ensure_instances(&state, &dag, marked).await?;
            let changed = store
                .mark_task_instances(&dag_id, &marked.run_id, &mark.tasks, to, reset, state.now())
                .await?;
            tracing::info!(%dag_id, run_id = %marked.run_id, %task_id, %to, ?changed, "task instances marked through the API");
        }
        state.wake_scheduler();
    }
    let run = find_run(&state, &dag_id, &run.run_id).await?;
    let instances = instance_responses(
        &state,
        &run,
        Some(&dag),
        Some(std::slice::from_ref(&task_id)),
    )
    .await?;
    let total = instances.len();
    Ok(Json(TaskInstanceCollectionResponse::of(instances, total)))
}

/// What marking a task instance would change, without changing it.
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
    let (run, dag, mark) = validate_mark(&state, &dag_id, &run_id, &task_id, &query, body).await?;
    let mut instances = Vec::new();
    for marked in std::iter::once(&run).chain(&mark.other_runs) {
        instances.extend(instance_responses(&state, marked, Some(&dag), Some(&mark.tasks)).await?);
    }
    if let Some(to) = mark.to {
        // Those already in the state would not change.
        instances.retain(|ti| ti.state.as_deref() != Some(to.as_str()));
    }
    let total = instances.len();
    Ok(Json(TaskInstanceCollectionResponse::of(instances, total)))
}

/// The tries of a task instance, oldest first.
#[utoipa::path(get, path = "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/tries", tag = "Task Instance",
    params(("dag_id" = String, Path), ("dag_run_id" = String, Path), ("task_id" = String, Path)),
    responses((status = 200, body = TaskInstanceHistoryCollectionResponse), (status = 401), (status = 403), (status = 404)))]
async fn get_task_instance_tries(
    State(state): State<AppState>,
    Path((dag_id, run_id, task_id)): Path<(String, String, String)>,
) -> ApiResult<Json<TaskInstanceHistoryCollectionResponse>> {
    let (run, dag, mut tries) = tries_of(&state, &dag_id, &run_id, &task_id).await?;
    let task = task_of(dag.as_deref(), &task_id);
    if tries.is_empty() {
        // Never tried: the instance itself, as Airflow lists it.
        let ti = one_instance(&state, &dag_id, &run_id, &task_id).await?;
        tries.push(StoredTry {
            task_id: ti.task_id,
            map_index: UNMAPPED,
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
) -> ApiResult<(StoredRun, Option<std::sync::Arc<Dag>>, Vec<StoredTry>)> {
    let run = find_run(state, dag_id, run_id).await?;
    let dag = definition(state, dag_id).await?;
    let tries = state
        .store()
        .tries_of_run(dag_id, run_id)
        .await?
        .into_iter()
        .filter(|t| t.task_id == task_id)
        .collect();
    Ok((run, dag, tries))
}

/// One try of a task instance.
#[utoipa::path(get, path = "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/tries/{task_try_number}", tag = "Task Instance",
    params(("dag_id" = String, Path), ("dag_run_id" = String, Path), ("task_id" = String, Path), ("task_try_number" = i32, Path)),
    responses((status = 200, body = TaskInstanceHistoryResponse), (status = 401), (status = 403), (status = 404)))]
async fn get_task_instance_try_details(
    State(state): State<AppState>,
    PathParams((dag_id, run_id, task_id, try_number)): PathParams<(String, String, String, i32)>,
) -> ApiResult<Json<TaskInstanceHistoryResponse>> {
    let (run, dag, tries) = tries_of(&state, &dag_id, &run_id, &task_id).await?;
    let attempt = tries
        .iter()
        .find(|t| t.try_number == try_number)
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "The Task Instance with dag_id: `{dag_id}`, run_id: `{run_id}`, task_id: `{task_id}`, try_number: `{try_number}` and map_index: `-1` was not found"
            ))
        })?;
    Ok(Json(history_response(
        &run,
        attempt,
        task_of(dag.as_deref(), &task_id),
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

/// The task ids of `task_ids` (Gust has no mapped tasks, so a pair must name map index -1).
fn plain_task_ids(values: &[serde_json::Value]) -> ApiResult<Vec<String>> {
    values
        .iter()
        .map(|v| match v {
            serde_json::Value::String(id) => Ok(id.clone()),
            serde_json::Value::Array(pair)
                if pair.len() == 2 && pair[1].as_i64() == Some(-1) && pair[0].is_string() =>
            {
                Ok(pair[0].as_str().unwrap_or_default().to_owned())
            }
            serde_json::Value::Array(_) => Err(ApiError::BadRequest(
                "Gust has no mapped tasks: a [task_id, map_index] pair must have map_index -1"
                    .into(),
            )),
            _ => Err(ApiError::invalid(
                "body",
                "task_ids",
                "each entry must be a task id or a [task_id, map_index] pair",
            )),
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
    let mut tasks: BTreeSet<String> = match &body.task_ids {
        Some(values) => plain_task_ids(values)?.into_iter().collect(),
        None => dag.tasks().map(|t| t.id.to_string()).collect(),
    };
    for task_id in tasks.clone() {
        if body.include_upstream {
            tasks.extend(reachable(&dag, &task_id, true));
        }
        if body.include_downstream {
            tasks.extend(reachable(&dag, &task_id, false));
        }
    }
    let mut chosen: Vec<(StoredRun, Vec<String>)> = Vec::new();
    for run in runs {
        let ids: Vec<String> = state
            .store()
            .task_instances(&run.dag_id, &run.run_id)
            .await?
            .into_iter()
            .filter(|ti| tasks.contains(&ti.task_id))
            .filter(|ti| {
                if body.only_failed {
                    matches!(ti.state, TaskState::Failed | TaskState::UpstreamFailed)
                } else if body.only_running {
                    ti.state == TaskState::Running
                } else {
                    true
                }
            })
            .map(|ti| ti.task_id)
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
                    .filter(|ti| ids.contains(&ti.task_id) && ti.state == TaskState::Running)
                    .map(|ti| ti.task_id)
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
                .clear_task_instances(&run.dag_id, &run.run_id, ids, state.now())
                .await?;
            if let Some(note) = body.note.as_deref() {
                for task_id in ids {
                    state
                        .store()
                        .set_task_instance_note(
                            &run.dag_id,
                            &run.run_id,
                            task_id,
                            UNMAPPED,
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
        instances.extend(instance_responses(&state, &run, Some(&dag), Some(ids)).await?);
    }
    let total = instances.len();
    Ok(Json(TaskInstanceCollectionResponse::of(instances, total)))
}
