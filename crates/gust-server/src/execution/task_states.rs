//! The Execution API's task-instance queries across DAGs and runs: what a task waiting on
//! another DAG asks (`ExternalTaskSensor`: `count`, `states`), the latest earlier instance of a
//! task (`previous`), and the finished tasks of a run (`breadcrumbs`, for Sentry). They read the
//! store, as Airflow's routes read its database: under `gust dags test`, which keeps no runs,
//! they are refused saying so, as the DAG-run routes are.
//!
//! A mapped task's instances are rows of their own, as in Airflow: counted one by one, named
//! `task_N` in `states`, and picked by `map_index` (-1: tasks that are not mapped). A task group
//! (`task_group_id`) is resolved through the DAG definition the scheduler stored: its tasks are
//! those of the group and of the groups nested in it.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::routing::get;
use axum::{Extension, Router};
use chrono::{DateTime, Utc};
use gust_core::dag::Dag;
use gust_core::state::TaskState;
use gust_executor::execution::LiveTry;
use gust_store::{InstanceQuery, Store};

use super::dag_runs::{store_failed, store_of};
use super::{ExecError, ExecutionState};

/// The most values one query parameter may repeat (`task_ids=a&task_ids=b...`).
const MAX_QUERY_VALUES: usize = 1_000;

/// The most task instances `states` answers with: the sensors that ask name a date or a run,
/// so a real question holds far fewer.
const MAX_STATES: i64 = 10_000;

/// The task-instance query routes (behind the task token, as the others).
pub(super) fn routes() -> Router<ExecutionState> {
    Router::new()
        .route("/task-instances/count", get(count))
        .route("/task-instances/states", get(states))
        .route("/task-instances/previous/{dag_id}/{task_id}", get(previous))
        .route("/task-instances/breadcrumbs", get(breadcrumbs))
}

/// A query string's `key=value` pairs, lists being repeated keys as the SDK's client (httpx)
/// sends them.
pub(super) struct QueryPairs(Vec<(String, String)>);

impl QueryPairs {
    pub(super) fn parse(query: Option<&str>) -> Result<Self, ExecError> {
        serde_urlencoded::from_str(query.unwrap_or_default())
            .map(Self)
            .map_err(|err| ExecError::unprocessable(err.to_string()))
    }

    /// Every value of `name`, at most [`MAX_QUERY_VALUES`].
    pub(super) fn all(&self, name: &str) -> Result<Vec<String>, ExecError> {
        let values: Vec<String> = self
            .0
            .iter()
            .filter(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
            .collect();
        if values.len() > MAX_QUERY_VALUES {
            return Err(ExecError::unprocessable(format!(
                "{name} may hold at most {MAX_QUERY_VALUES} values"
            )));
        }
        Ok(values)
    }

    /// The (last) value of `name`.
    pub(super) fn one(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// The value of `name`, which must be there.
    pub(super) fn required(&self, name: &str) -> Result<&str, ExecError> {
        self.one(name)
            .ok_or_else(|| ExecError::unprocessable(format!("{name} is required")))
    }

    /// The value of `name` as a date-time, if there.
    pub(super) fn date(&self, name: &str) -> Result<Option<DateTime<Utc>>, ExecError> {
        self.one(name)
            .map(|text| parse_date(name, text))
            .transpose()
    }

    /// Every value of `name` as a date-time.
    pub(super) fn dates(&self, name: &str) -> Result<Vec<DateTime<Utc>>, ExecError> {
        self.all(name)?
            .iter()
            .map(|text| parse_date(name, text))
            .collect()
    }

    /// The value of `name` as an integer, if there.
    fn int(&self, name: &str) -> Result<Option<i64>, ExecError> {
        self.one(name)
            .map(|text| {
                text.parse()
                    .map_err(|_| ExecError::unprocessable(format!("{name} must be an integer")))
            })
            .transpose()
    }
}

fn parse_date(name: &str, text: &str) -> Result<DateTime<Utc>, ExecError> {
    DateTime::parse_from_rfc3339(text)
        .map(|at| at.to_utc())
        .map_err(|err| ExecError::unprocessable(format!("{name} {text:?}: {err}")))
}

/// A state as a task asks about it: Airflow's names, `null` (or `none`) for no status. `None`
/// for a name no instance can be in.
fn task_state(name: &str) -> Option<TaskState> {
    if name == "null" {
        return Some(TaskState::NoStatus);
    }
    TaskState::ALL.into_iter().find(|s| s.as_str() == name)
}

/// A state as Airflow answers it: no status is `null`.
fn state_value(state: TaskState) -> serde_json::Value {
    if state == TaskState::NoStatus {
        serde_json::Value::Null
    } else {
        state.as_str().into()
    }
}

/// What `count` and `states` share: the DAG, tasks, runs, dates and map index asked about.
struct Asked {
    query: InstanceQuery,
    task_group_id: Option<String>,
}

impl Asked {
    fn of(pairs: &QueryPairs) -> Result<Self, ExecError> {
        let map_index = pairs
            .int("map_index")?
            .map(|i| {
                i32::try_from(i).map_err(|_| ExecError::unprocessable("map_index is out of range"))
            })
            .transpose()?;
        let query = InstanceQuery {
            dag_id: pairs.required("dag_id")?.to_owned(),
            task_ids: pairs.all("task_ids")?,
            run_ids: pairs.all("run_ids")?,
            logical_dates: pairs.dates("logical_dates")?,
            states: None,
            map_index,
        };
        Ok(Self {
            query,
            task_group_id: pairs.one("task_group_id").map(str::to_owned),
        })
    }

    /// The tasks of the group asked about (with those of its nested groups), read from the
    /// DAG's stored definition; a group with no task answers as its own id, as Airflow does.
    async fn group_tasks(&self, store: &Store) -> Result<Option<Vec<String>>, ExecError> {
        let Some(group) = &self.task_group_id else {
            return Ok(None);
        };
        let dag_id = &self.query.dag_id;
        let not_found =
            || ExecError::not_found(format!("The Dag with ID: `{dag_id}` was not found"));
        let (_, text) = store
            .dag_definition(dag_id)
            .await
            .map_err(store_failed)?
            .ok_or_else(not_found)?;
        let dag: Dag = serde_json::from_str(&text).map_err(|err| {
            store_failed(gust_store::StoreError::Corrupt {
                what: "DAG definition",
                detail: format!("{dag_id}: {err}"),
            })
        })?;
        if !dag.groups.keys().any(|id| id.as_str() == group) {
            return Err(ExecError::not_found(format!(
                "Task group {group} not found in DAG {dag_id}"
            )));
        }
        let mut tasks = dag.tasks_in_group(group);
        if tasks.is_empty() {
            tasks.push(group.clone());
        }
        Ok(Some(tasks))
    }
}

/// `GET /task-instances/count?dag_id=..&task_ids=..&task_group_id=..&logical_dates=..&run_ids=..&states=..&map_index=..`:
/// how many instances match; `states` may name `null` (no status).
async fn count(
    State(state): State<ExecutionState>,
    live: Option<Extension<Arc<LiveTry>>>,
    RawQuery(query): RawQuery,
) -> Result<axum::Json<i64>, ExecError> {
    let pairs = QueryPairs::parse(query.as_deref())?;
    let mut asked = Asked::of(&pairs)?;
    let states = pairs.all("states")?;
    if state.variables.is_none()
        && let Some(count) = live.and_then(|Extension(live)| own_run_count(&live, &asked, &states))
    {
        return Ok(axum::Json(count));
    }
    let store = store_of(&state)?;
    let group = asked.group_tasks(store).await?;
    if !states.is_empty() {
        // A state no instance can be in matches nothing, as in Airflow's `IN`.
        asked.query.states = Some(states.iter().filter_map(|s| task_state(s)).collect());
    }
    if let Some(group) = group {
        // Both filters hold: the tasks named that are in the group.
        let tasks = if asked.query.task_ids.is_empty() {
            group
        } else {
            group
                .into_iter()
                .filter(|t| asked.query.task_ids.contains(t))
                .collect()
        };
        if tasks.is_empty() {
            return Ok(axum::Json(0));
        }
        asked.query.task_ids = tasks;
    }
    let counted = store
        .count_instances(&asked.query)
        .await
        .map_err(store_failed)?;
    Ok(axum::Json(counted))
}

/// Where no store keeps the run (`gust dags test`): how many instances one task of the try's
/// own run has, as the Task SDK asks it of a task in a mapped task group (to pick its
/// upstreams' instance of its own index); `None` for any other question.
fn own_run_count(live: &LiveTry, asked: &Asked, states: &[String]) -> Option<i64> {
    let query = &asked.query;
    let own_run = query.dag_id == live.key.dag_id.as_str()
        && query.run_ids.iter().all(|r| r == live.key.run_id.as_str())
        && query.logical_dates.is_empty();
    let [task] = query.task_ids.as_slice() else {
        return None;
    };
    if !own_run || !states.is_empty() || query.map_index.is_some() || asked.task_group_id.is_some()
    {
        return None;
    }
    let count = live.lookup.instance_count(task)?;
    i64::try_from(count).ok()
}

/// `GET /task-instances/states?dag_id=..&task_ids=..&task_group_id=..&logical_dates=..&run_ids=..&map_index=..`:
/// `{"task_states": {run_id: {task_id: state}}}`, a mapped task's instances as
/// `{task_id}_{map_index}` (Airflow's names).
async fn states(
    State(state): State<ExecutionState>,
    RawQuery(query): RawQuery,
) -> Result<axum::Json<serde_json::Value>, ExecError> {
    let pairs = QueryPairs::parse(query.as_deref())?;
    let mut asked = Asked::of(&pairs)?;
    let store = store_of(&state)?;
    let group = asked.group_tasks(store).await?;
    let mut by_run: BTreeMap<String, serde_json::Map<String, serde_json::Value>> = BTreeMap::new();
    if let Some(group) = group {
        // The tasks named and those of the group, as Airflow adds the group's to them.
        for task in group {
            if !asked.query.task_ids.contains(&task) {
                asked.query.task_ids.push(task);
            }
        }
    }
    let found = store
        .instance_states(&asked.query, MAX_STATES)
        .await
        .map_err(store_failed)?;
    for instance in found {
        let name = if instance.map_index < 0 {
            instance.task_id
        } else {
            format!("{}_{}", instance.task_id, instance.map_index)
        };
        by_run
            .entry(instance.run_id)
            .or_default()
            .insert(name, state_value(instance.state));
    }
    Ok(axum::Json(serde_json::json!({ "task_states": by_run })))
}

/// `GET /task-instances/previous/{dag_id}/{task_id}?logical_date=..&map_index=..&state=..`:
/// the task's instance in the latest run before `logical_date` (in `state` when given), or
/// `null`.
async fn previous(
    State(state): State<ExecutionState>,
    Path((dag_id, task_id)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> Result<axum::Json<serde_json::Value>, ExecError> {
    let pairs = QueryPairs::parse(query.as_deref())?;
    let before = pairs.date("logical_date")?;
    let map_index = i32::try_from(pairs.int("map_index")?.unwrap_or(-1))
        .map_err(|_| ExecError::unprocessable("map_index is out of range"))?;
    let wanted = pairs
        .one("state")
        .map(|name| {
            task_state(name)
                .filter(|s| *s != TaskState::NoStatus)
                .ok_or_else(|| {
                    ExecError::unprocessable(format!("state {name:?} is not a task state"))
                })
        })
        .transpose()?;
    let store = store_of(&state)?;
    let Some(found) = store
        .previous_instance(&dag_id, (&task_id, map_index), before, wanted)
        .await
        .map_err(store_failed)?
    else {
        return Ok(axum::Json(serde_json::Value::Null));
    };
    let duration = duration_of(found.start_date, found.end_date);
    Ok(axum::Json(serde_json::json!({
        "task_id": task_id,
        "dag_id": dag_id,
        "run_id": found.run_id,
        "logical_date": found.logical_date,
        "start_date": found.start_date,
        "end_date": found.end_date,
        "state": state_value(found.state),
        "try_number": found.try_number,
        "map_index": map_index,
        "duration": duration,
    })))
}

/// A try's duration in seconds, once it has ended.
fn duration_of(start: Option<DateTime<Utc>>, end: Option<DateTime<Utc>>) -> Option<f64> {
    let (start, end) = (start?, end?);
    // Microseconds to seconds: exact for any duration a try can have.
    #[allow(
        clippy::cast_precision_loss,
        reason = "microseconds fit an f64 exactly"
    )]
    let seconds = (end - start).num_microseconds()? as f64 / 1e6;
    Some(seconds)
}

/// `GET /task-instances/breadcrumbs?dag_id=..&run_id=..`: the run's finished task instances
/// (what Airflow's Sentry integration adds as breadcrumbs), by task.
async fn breadcrumbs(
    State(state): State<ExecutionState>,
    RawQuery(query): RawQuery,
) -> Result<axum::Json<serde_json::Value>, ExecError> {
    let pairs = QueryPairs::parse(query.as_deref())?;
    let dag_id = pairs.required("dag_id")?;
    let run_id = pairs.required("run_id")?;
    let store = store_of(&state)?;
    let instances = store
        .task_instances(dag_id, run_id)
        .await
        .map_err(store_failed)?;
    let tries = store
        .tries_of_run(dag_id, run_id)
        .await
        .map_err(store_failed)?;
    let dag: Option<Dag> = store
        .dag_definition(dag_id)
        .await
        .map_err(store_failed)?
        .and_then(|(_, text)| serde_json::from_str(&text).ok());
    let operator = |task_id: &str| {
        dag.as_ref()
            .and_then(|dag| dag.tasks().find(|t| t.id.as_str() == task_id))
            .map(|task| crate::api::task_instances::operator_class(&task.operator))
    };
    let mut finished: Vec<_> = instances
        .iter()
        .filter(|ti| ti.state.is_finished())
        .collect();
    // Airflow's order: by task, then map index.
    finished.sort_by(|a, b| (&a.task_id, a.map_index).cmp(&(&b.task_id, b.map_index)));
    let crumbs: Vec<serde_json::Value> = finished
        .into_iter()
        .map(|ti| {
            let current = tries.iter().find(|t| {
                t.task_id == ti.task_id
                    && t.map_index == ti.map_index
                    && t.try_number == ti.try_number
            });
            serde_json::json!({
                "task_id": ti.task_id,
                "map_index": ti.map_index,
                "state": state_value(ti.state),
                "operator": operator(&ti.task_id),
                "duration": current.and_then(|t| duration_of(t.start_date, t.end_date)),
            })
        })
        .collect();
    Ok(axum::Json(serde_json::json!({ "breadcrumbs": crumbs })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_are_read_as_airflow_names_them() {
        assert_eq!(task_state("null"), Some(TaskState::NoStatus));
        assert_eq!(task_state("success"), Some(TaskState::Success));
        assert_eq!(
            task_state("upstream_failed"),
            Some(TaskState::UpstreamFailed)
        );
        assert_eq!(task_state("bogus"), None);
        assert_eq!(state_value(TaskState::NoStatus), serde_json::Value::Null);
        assert_eq!(state_value(TaskState::Skipped), "skipped");
    }

    #[test]
    fn lists_are_repeated_keys_and_bounded() {
        let pairs =
            QueryPairs::parse(Some("dag_id=d&task_ids=a&task_ids=b&map_index=-1")).expect("parsed");
        assert_eq!(pairs.all("task_ids").expect("bounded"), ["a", "b"]);
        assert_eq!(pairs.required("dag_id").expect("there"), "d");
        assert!(pairs.required("run_id").is_err());
        let many = vec!["task_ids=x"; MAX_QUERY_VALUES + 1].join("&");
        let pairs = QueryPairs::parse(Some(&many)).expect("parsed");
        assert!(pairs.all("task_ids").is_err());
        let dated = QueryPairs::parse(Some("logical_dates=2024-01-01T00%3A00%3A00%2B00%3A00"))
            .expect("parsed");
        assert_eq!(
            dated.dates("logical_dates").expect("a date"),
            [DateTime::parse_from_rfc3339("2024-01-01T00:00:00Z")
                .expect("a date")
                .to_utc()]
        );
    }
}
