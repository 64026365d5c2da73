//! `GET .../taskInstances/{task_id}/dependencies` (and `/{map_index}/dependencies`): why a task
//! instance that has not started is not running, in the names and words of Airflow's
//! scheduling dependencies (`get_task_instance_dependencies`).
//!
//! As in Airflow, only an instance with no state or `scheduled` has blockers; any other state
//! answers an empty list. The checks are the ones Gust's scheduler applies, read from the
//! store and decided by [`blockers`], a pure function: the run is running, the DAG is not
//! paused, the trigger rule is met (decided by `gust_core::readiness::decide`, the scheduler's
//! own rule), the previous run's instance succeeded when `depends_on_past`, the DAG's
//! `max_active_tasks` is not reached and the pool exists with enough open slots.

use std::collections::{BTreeSet, HashMap};

use axum::Json;
use axum::extract::State;
use gust_core::dag::Dag;
use gust_core::ids::{InstanceId, TaskId};
use gust_core::mapping::UNMAPPED;
use gust_core::readiness::{Decision, UpstreamCounts, decide};
use gust_core::state::{DagRunState, TaskState};
use gust_core::task::Task;
use gust_core::trigger_rule::TriggerRule;
use gust_scheduler::mapped::InstanceStates;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::extract::PathParams;
use crate::api::python_repr::python_str;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// The dependency endpoints.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_task_instance_dependencies))
        .routes(routes!(get_task_instance_dependencies_by_map_index))
}

/// One unmet dependency (Airflow's `TaskDependencyResponse`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct TaskDependencyResponse {
    pub name: String,
    pub reason: String,
}

/// The unmet dependencies (Airflow's `TaskDependencyCollectionResponse`).
#[derive(Debug, Serialize, ToSchema)]
pub struct TaskDependencyCollectionResponse {
    pub dependencies: Vec<TaskDependencyResponse>,
}

/// The pool a task takes slots from, as it is now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolNow {
    /// No pool of that name exists.
    Missing,
    /// It has this many open slots.
    Open(i64),
}

/// Everything [`blockers`] decides from, read from the store.
#[derive(Debug)]
pub struct Situation<'a> {
    pub dag: &'a Dag,
    pub task: &'a Task,
    /// The instance's state.
    pub state: TaskState,
    /// The run's state.
    pub run_state: DagRunState,
    /// Whether the DAG is paused.
    pub paused: bool,
    /// The run's task states (a task missing has no state).
    pub states: &'a HashMap<TaskId, TaskState>,
    /// For `depends_on_past`: the state of the previous run's instance of the task; `None`
    /// when there is no previous run or it has no such instance, which the scheduler lets go.
    pub previous: Option<TaskState>,
    /// The task's pool.
    pub pool: PoolNow,
    /// How many of the DAG's instances hold a slot (queued or running) in unfinished runs.
    pub dag_active_tasks: u64,
}

/// The dependencies a task instance does not meet, sorted by name (as Airflow sorts them).
#[must_use]
pub fn blockers(s: &Situation<'_>) -> Vec<TaskDependencyResponse> {
    if !matches!(s.state, TaskState::NoStatus | TaskState::Scheduled) {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut fail = |name: &str, reason: String| {
        out.push(TaskDependencyResponse {
            name: name.to_owned(),
            reason,
        });
    };
    if s.run_state != DagRunState::Running {
        fail(
            "Dagrun Running",
            format!(
                "Task instance's dagrun was not in the 'running' state but in the state '{}'.",
                s.run_state.as_str()
            ),
        );
    }
    if s.paused {
        fail(
            "Dag Not Paused",
            format!("Task's DAG '{}' is paused.", s.dag.id.as_str()),
        );
    }
    if let Some(reason) = trigger_rule_reason(s) {
        fail("Trigger Rule", reason);
    }
    let past_unsuccessful = s
        .previous
        .is_some_and(|past| !matches!(past, TaskState::Success | TaskState::Skipped));
    if s.task.settings.depends_on_past && past_unsuccessful {
        fail(
            "Previous Dagrun State",
            "depends_on_past is true for this task, but 1 previous task instance(s) are not in a successful state."
                .into(),
        );
    }
    if s.dag_active_tasks >= u64::from(s.dag.settings.max_active_tasks) {
        fail(
            "Task Instance Slots Available",
            format!(
                "The maximum number of running tasks ({}) for this task's DAG '{}' has been reached.",
                s.dag.settings.max_active_tasks,
                s.dag.id.as_str()
            ),
        );
    }
    let pool = &s.task.settings.pool;
    match s.pool {
        PoolNow::Missing => fail(
            "Pool Slots Available",
            format!("Tasks using non-existent pool '{pool}' will not be scheduled"),
        ),
        PoolNow::Open(open) if open < i64::from(s.task.settings.pool_slots) => fail(
            "Pool Slots Available",
            format!(
                "Not scheduling since there are {open} open slots in pool {pool} and require {} pool slots",
                s.task.settings.pool_slots
            ),
        ),
        PoolNow::Open(_) => {}
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// Why the task's trigger rule holds it back, in Airflow's words, or `None` when the rule
/// (as Gust's scheduler decides it) lets it run.
fn trigger_rule_reason(s: &Situation<'_>) -> Option<String> {
    let rule = s.task.settings.trigger_rule;
    let state_of = |id: &TaskId| s.states.get(id).copied().unwrap_or(TaskState::NoStatus);
    let is_setup = |id: &TaskId| s.dag.task(id).is_some_and(|t| t.settings.is_setup);
    let up = UpstreamCounts::of_upstreams(
        s.task
            .upstream
            .iter()
            .map(|id| (state_of(id), is_setup(id))),
    );
    if decide(rule, &up) == Decision::Ready {
        return None;
    }
    let removed = s
        .task
        .upstream
        .iter()
        .filter(|id| state_of(id) == TaskState::Removed)
        .count();
    let done = up.success + up.skipped + up.failed + up.upstream_failed;
    let not_done = up.total - done;
    let failures = up.failed + up.upstream_failed;
    let ids: BTreeSet<String> = s
        .task
        .upstream
        .iter()
        .map(|id| python_str(id.as_str()))
        .collect();
    let context = format!(
        "upstream_states=_UpstreamTIStates(success={}, skipped={}, failed={}, upstream_failed={}, removed={removed}, done={done}, success_setup={}, skipped_setup={}), upstream_task_ids={{{}}}",
        up.success,
        up.skipped,
        up.failed,
        up.upstream_failed,
        up.setup_success,
        up.setup_skipped,
        ids.into_iter().collect::<Vec<_>>().join(", ")
    );
    let name = rule.as_str();
    let requirement = match rule {
        TriggerRule::AllSuccess => format!(
            "requires all upstream tasks to have succeeded, but found {} non-success(es).",
            up.total - up.success
        ),
        TriggerRule::AllFailed => format!(
            "requires all upstream tasks to have failed, but found {} non-failure(s).",
            up.total - failures
        ),
        TriggerRule::AllDone | TriggerRule::AllDoneSetupSuccess if not_done > 0 => format!(
            "requires all upstream tasks to have completed, but found {not_done} task(s) that were not done."
        ),
        TriggerRule::AllDoneSetupSuccess => format!(
            "requires at least one upstream setup task be successful, but found {} task(s) that were not.",
            up.setups - up.setup_success
        ),
        // `always` is always met; it shares the words of `all_done` only to be complete.
        TriggerRule::AllDone | TriggerRule::Always => format!(
            "requires all upstream tasks to have completed, but found {not_done} task(s) that were not done."
        ),
        TriggerRule::AllSkipped => format!(
            "requires all upstream tasks to have been skipped, but found {} task(s) in non skipped state.",
            up.total - up.skipped
        ),
        TriggerRule::OneSuccess => {
            "requires one upstream task success, but none were found.".to_owned()
        }
        TriggerRule::OneFailed => {
            "requires one upstream task failure, but none were found.".to_owned()
        }
        TriggerRule::OneDone => {
            "requires at least one upstream task failure or success but none were failed or success."
                .to_owned()
        }
        TriggerRule::NoneFailed => format!(
            "requires all upstream tasks to have succeeded or been skipped, but found {} non-success(es).",
            up.total - up.success - up.skipped
        ),
        TriggerRule::NoneFailedMinOneSuccess if up.total > up.success + up.skipped => format!(
            "requires all upstream tasks to have succeeded or been skipped, but found {} non-success(es).",
            up.total - up.success - up.skipped
        ),
        TriggerRule::NoneFailedMinOneSuccess => {
            "requires at least one upstream task success, but none were found.".to_owned()
        }
        TriggerRule::NoneSkipped => format!(
            "requires all upstream tasks to not have been skipped, but found {} task(s) skipped.",
            up.skipped
        ),
        TriggerRule::AllDoneMinOneSuccess => format!(
            "requires all non-skipped upstream tasks to have completed and at least one to have succeeded, but found {not_done} task(s) not done and {} success(es).",
            up.success
        ),
    };
    Some(format!(
        "Task's trigger rule '{name}' {requirement} {context}"
    ))
}

/// The 404 of an instance, in Airflow's words for this endpoint.
fn not_found(dag_id: &str, run_id: &str, task_id: &str, map_index: i64) -> ApiError {
    // Airflow 3.3.2 answers this message inside a one-element list (a stray comma in its
    // source); its OpenAPI document says a string, which is what is answered here.
    ApiError::NotFound(format!(
        "The Task Instance with dag_id: `{dag_id}`, run_id: `{run_id}`, task_id: `{task_id}` and map_index: `{map_index}` was not found"
    ))
}

/// Get the dependencies blocking a task instance from being scheduled.
#[utoipa::path(get, path = "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/dependencies", tag = "Task Instance",
    params(("dag_id" = String, Path), ("dag_run_id" = String, Path), ("task_id" = String, Path)),
    responses((status = 200, body = TaskDependencyCollectionResponse), (status = 401), (status = 403), (status = 404), (status = 422)))]
async fn get_task_instance_dependencies(
    State(state): State<AppState>,
    PathParams((dag_id, run_id, task_id)): PathParams<(String, String, String)>,
) -> ApiResult<Json<TaskDependencyCollectionResponse>> {
    dependencies(&state, &dag_id, &run_id, &task_id, -1).await
}

/// Get the dependencies blocking a task instance (by map index) from being scheduled.
#[utoipa::path(get, path = "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/{map_index}/dependencies", tag = "Task Instance",
    params(("dag_id" = String, Path), ("dag_run_id" = String, Path), ("task_id" = String, Path), ("map_index" = i64, Path)),
    responses((status = 200, body = TaskDependencyCollectionResponse), (status = 401), (status = 403), (status = 404), (status = 422)))]
async fn get_task_instance_dependencies_by_map_index(
    State(state): State<AppState>,
    PathParams((dag_id, run_id, task_id, map_index)): PathParams<(String, String, String, i64)>,
) -> ApiResult<Json<TaskDependencyCollectionResponse>> {
    dependencies(&state, &dag_id, &run_id, &task_id, map_index).await
}

async fn dependencies(
    state: &AppState,
    dag_id: &str,
    run_id: &str,
    task_id: &str,
    map_index: i64,
) -> ApiResult<Json<TaskDependencyCollectionResponse>> {
    let missing = || not_found(dag_id, run_id, task_id, map_index);
    let index = i32::try_from(map_index).map_err(|_| missing())?;
    let Some(run) = state.store().run(dag_id, run_id).await? else {
        return Err(missing());
    };
    let (summary, dag) = match state.dag(dag_id).await {
        Ok(found) => found,
        // A deleted DAG's run: its instances have no definition left to be blocked by.
        Err(ApiError::NotFound(_)) => {
            return Ok(Json(TaskDependencyCollectionResponse {
                dependencies: Vec::new(),
            }));
        }
        Err(err) => return Err(err),
    };
    let task = TaskId::new(task_id.to_owned())
        .ok()
        .and_then(|id| dag.task(&id))
        .ok_or_else(missing)?;
    let stored = state.store().task_instances(dag_id, run_id).await?;
    // A task with no row yet (a run not started) has its one unmapped instance to come.
    let found = stored
        .iter()
        .any(|ti| ti.task_id == task_id && ti.map_index == index)
        || (index == UNMAPPED && !stored.iter().any(|ti| ti.task_id == task_id));
    if !found {
        return Err(missing());
    }
    // A mapped upstream counts as its instances together, as the scheduler counts it.
    let instances = InstanceStates::of(stored.into_iter().filter_map(|ti| {
        Some((
            InstanceId::mapped(TaskId::new(ti.task_id).ok()?, ti.map_index),
            ti.state,
        ))
    }));
    let instance = InstanceId::mapped(task.id.clone(), index);
    let ti_state = match instances.get(&instance) {
        TaskState::Removed if index == UNMAPPED => TaskState::NoStatus,
        other => other,
    };
    let states: HashMap<TaskId, TaskState> = instances.tasks().clone();
    if !matches!(ti_state, TaskState::NoStatus | TaskState::Scheduled) {
        return Ok(Json(TaskDependencyCollectionResponse {
            dependencies: Vec::new(),
        }));
    }
    let previous = if task.settings.depends_on_past {
        previous_instance(state, &run, &task.id).await?
    } else {
        None
    };
    let pool = match state.store().pool(&task.settings.pool).await? {
        None => PoolNow::Missing,
        Some(pool) => {
            let usage = crate::api::pools::usage(state).await?;
            let occupied = usage
                .get(&pool.name)
                .map_or(0, |u| crate::api::pools::Usage::occupied(*u));
            PoolNow::Open(i64::from(pool.slots) - occupied)
        }
    };
    let dag_active_tasks = state
        .store()
        .slot_holders()
        .await?
        .iter()
        .filter(|(holder_dag, _, s)| holder_dag == dag_id && s.holds_slot())
        .count();
    let situation = Situation {
        dag: &dag,
        task,
        state: ti_state,
        run_state: run.state,
        paused: summary.is_paused,
        states: &states,
        previous,
        pool,
        dag_active_tasks: u64::try_from(dag_active_tasks).unwrap_or(u64::MAX),
    };
    Ok(Json(TaskDependencyCollectionResponse {
        dependencies: blockers(&situation),
    }))
}

/// The state of the previous run's instance of `task`, as `depends_on_past` reads it.
async fn previous_instance(
    state: &AppState,
    run: &gust_store::StoredRun,
    task: &TaskId,
) -> ApiResult<Option<TaskState>> {
    let Some(previous) = state
        .store()
        .previous_run(&run.dag_id, run.logical_date)
        .await?
    else {
        return Ok(None);
    };
    Ok(state
        .store()
        .task_instances(&previous.dag_id, &previous.run_id)
        .await?
        .into_iter()
        .find(|ti| ti.task_id == task.as_str())
        .map(|ti| ti.state))
}
