//! `ExternalTaskSensor`'s poke: counts, in the store, the instances (or runs) of another DAG at
//! the logical dates waited for that are in the allowed, skipped and failed states, as Airflow
//! 3's `_poke_af3` does through the Execution API.

use chrono::{DateTime, Utc};
use gust_core::dag::Dag;
use gust_core::state::{DagRunState, TaskState};
use gust_operators::sensors::external::{ExternalTaskArgs, Target};
use gust_store::{InstanceQuery, RunFilter, Store};

use crate::decide::Poke;

/// How many task instances one poke reads at most, for a task group.
const GROUP_INSTANCES: i64 = 100_000;

/// Pokes for `args`' target at `logical_date` (less `execution_delta`).
pub async fn poke(
    args: &ExternalTaskArgs,
    store: Option<&Store>,
    logical_date: Option<DateTime<Utc>>,
    soft_fail: bool,
) -> (Poke, String) {
    let (target, states) = match args.target().and_then(|t| Ok((t, args.states()?))) {
        Ok(found) => found,
        Err(err) => return (Poke::Error(err.to_string()), String::new()),
    };
    let Some(logical_date) = logical_date else {
        return (
            Poke::Error("the run has no logical date to wait for".to_owned()),
            String::new(),
        );
    };
    let date = match args.execution_delta {
        Some(delta) => {
            logical_date - chrono::Duration::from_std(delta).unwrap_or(chrono::Duration::MAX)
        }
        None => logical_date,
    };
    let dag = &args.external_dag_id;
    let said = match &target {
        Target::Tasks(ids) => format!(
            "Poking for tasks {ids:?} in dag {dag} on {} ... ",
            date.to_rfc3339()
        ),
        Target::Group(group) => format!(
            "Poking for task_group '{group}' in dag '{dag}' on {} ... ",
            date.to_rfc3339()
        ),
        Target::Run => format!("Poking for DAG '{dag}' on {} ... ", date.to_rfc3339()),
    };
    let Some(store) = store else {
        return (
            Poke::Error(
                "ExternalTaskSensor needs the metadata database, which this process does not have"
                    .to_owned(),
            ),
            said,
        );
    };
    let counter = Counter {
        store,
        dag,
        target: &target,
        date,
    };
    let poke = async {
        if !states.failed.is_empty() && counter.count(&states.failed).await? > 0.0 {
            let what = match &target {
                Target::Tasks(ids) => {
                    format!("Some of the external tasks {ids:?} in DAG {dag} failed.")
                }
                Target::Group(group) => {
                    format!("The external task_group '{group}' in DAG '{dag}' failed.")
                }
                Target::Run => format!("The external DAG {dag} failed."),
            };
            return Ok(if soft_fail {
                Poke::Skip(format!(
                    "{} Skipping due to soft_fail.",
                    what.trim_end_matches('.')
                ))
            } else {
                Poke::Error(what)
            });
        }
        if !states.skipped.is_empty() && counter.count(&states.skipped).await? > 0.0 {
            return Ok(Poke::Skip(match &target {
                Target::Tasks(ids) => format!(
                    "Some of the external tasks {ids:?} in DAG {dag} reached a state in our states-to-skip-on list. Skipping."
                ),
                Target::Group(group) => format!(
                    "The external task_group '{group}' in DAG {dag} reached a state in our states-to-skip-on list. Skipping."
                ),
                Target::Run => format!(
                    "The external DAG {dag} reached a state in our states-to-skip-on list. Skipping."
                ),
            }));
        }
        // One logical date is waited for: met when all of it is in an allowed state.
        Ok::<_, String>(if counter.count(&states.allowed).await? >= 1.0 {
            Poke::Met
        } else {
            Poke::NotYet
        })
    };
    (poke.await.unwrap_or_else(Poke::Error), said)
}

/// Counts what a sensor waits for, in given states, at one logical date.
struct Counter<'a> {
    store: &'a Store,
    dag: &'a str,
    target: &'a Target,
    date: DateTime<Utc>,
}

impl Counter<'_> {
    /// How many of the target's dates are in `states`: tasks' instances divided by the tasks
    /// (Airflow's `_calculate_count`), runs whose group's tasks all are, or runs.
    async fn count(&self, states: &[String]) -> Result<f64, String> {
        let failed =
            |err: gust_store::StoreError| format!("reading DAG {}'s states: {err}", self.dag);
        match self.target {
            Target::Tasks(ids) => {
                let query = InstanceQuery {
                    dag_id: self.dag.to_owned(),
                    task_ids: ids.clone(),
                    logical_dates: vec![self.date],
                    states: Some(states.iter().filter_map(|s| task_state(s)).collect()),
                    ..InstanceQuery::default()
                };
                let count = self.store.count_instances(&query).await.map_err(failed)?;
                #[allow(clippy::cast_precision_loss)]
                Ok(count as f64 / ids.len() as f64)
            }
            Target::Group(group) => {
                let tasks = self.group_tasks(group).await?;
                let query = InstanceQuery {
                    dag_id: self.dag.to_owned(),
                    task_ids: tasks,
                    logical_dates: vec![self.date],
                    ..InstanceQuery::default()
                };
                let found = self
                    .store
                    .instance_states(&query, GROUP_INSTANCES)
                    .await
                    .map_err(failed)?;
                let mut runs: std::collections::BTreeMap<&str, bool> =
                    std::collections::BTreeMap::new();
                for instance in &found {
                    let matched = states.iter().any(|s| task_state(s) == Some(instance.state));
                    *runs.entry(instance.run_id.as_str()).or_insert(true) &= matched;
                }
                #[allow(clippy::cast_precision_loss)]
                Ok(runs.values().filter(|all| **all).count() as f64)
            }
            Target::Run => {
                let known: Vec<DagRunState> = states
                    .iter()
                    .filter_map(|name| serde_json::from_value(name.as_str().into()).ok())
                    .collect();
                if known.is_empty() {
                    return Ok(0.0);
                }
                let filter = RunFilter {
                    dag_ids: Some(vec![self.dag.to_owned()]),
                    states: known,
                    logical_dates: vec![self.date],
                    ..RunFilter::default()
                };
                let count = self.store.count_runs(&filter).await.map_err(failed)?;
                #[allow(clippy::cast_precision_loss)]
                Ok(count as f64)
            }
        }
    }

    /// The tasks of `group` in the DAG's stored definition (its own id when it holds none, as
    /// Airflow answers).
    async fn group_tasks(&self, group: &str) -> Result<Vec<String>, String> {
        let dag_id = self.dag;
        let (_, text) = self
            .store
            .dag_definition(dag_id)
            .await
            .map_err(|err| format!("reading DAG {dag_id}: {err}"))?
            .ok_or_else(|| format!("The Dag with ID: `{dag_id}` was not found"))?;
        let dag: Dag = serde_json::from_str(&text)
            .map_err(|err| format!("DAG {dag_id}'s stored definition does not read: {err}"))?;
        if !dag.groups.keys().any(|id| id.as_str() == group) {
            return Err(format!("Task group {group} not found in DAG {dag_id}"));
        }
        let mut tasks = dag.tasks_in_group(group);
        if tasks.is_empty() {
            tasks.push(group.to_owned());
        }
        Ok(tasks)
    }
}

/// A task state by Airflow's name; `none` and `null` are no status.
fn task_state(name: &str) -> Option<TaskState> {
    if matches!(name, "none" | "null") {
        return Some(TaskState::NoStatus);
    }
    TaskState::ALL.into_iter().find(|s| s.as_str() == name)
}
