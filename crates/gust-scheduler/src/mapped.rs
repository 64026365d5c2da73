//! Dynamic task mapping as the scheduler and `gust dags test` apply it: how many instances a
//! mapped task gets, what each instance is given, and the check Airflow's task runner makes on a
//! value a downstream task is mapped over.

use std::collections::HashMap;

use gust_core::dag::Dag;
use gust_core::ids::{InstanceId, TaskId};
use gust_core::mapping::{ExpandError, StateCounts};
use gust_core::readiness::{Decision, RunStates, decide_instance};
use gust_core::state::{TaskEvent, TaskState};
use gust_core::task::Task;
use serde_json::{Map, Value};

use crate::xcom::RunXComs;

/// How many instances `task` gets now that its upstreams' values are known (0: it is skipped).
pub fn length(task: &Task, xcoms: &RunXComs, max_map_length: usize) -> Result<usize, ExpandError> {
    let Some(mapping) = &task.mapping else {
        return Ok(1);
    };
    xcoms
        .mapped_lists(&task.id, mapping)?
        .checked_len(max_map_length)
}

/// The arguments `instance` is given on top of its task's own (`partial`) ones; `None` for a
/// task that is not mapped. The error names the instance.
pub fn instance_args(
    task: &Task,
    instance: &InstanceId,
    xcoms: &RunXComs,
) -> Result<Option<Map<String, Value>>, String> {
    let (Some(mapping), Ok(index)) = (&task.mapping, usize::try_from(instance.map_index)) else {
        return Ok(None);
    };
    match xcoms
        .mapped_lists(&task.id, mapping)
        .map(|lists| lists.args(index))
    {
        Ok(Some(args)) => Ok(Some(args)),
        Ok(None) => Err(format!(
            "{instance}: the list {} was expanded over no longer has item {index}; clear the task to expand it again",
            instance.task_id
        )),
        Err(err) => Err(format!("{instance}: {err}")),
    }
}

/// How a waiting instance of an expanded task moves now: scheduled, or, for a task in a mapped
/// task group, whatever its trigger rule says from its own upstream instances (instance `i`
/// of the group's next task waits on instance `i` of the one before, as in Airflow). `None`:
/// it waits.
#[must_use]
pub fn waiting_instance_event(
    dag: &Dag,
    task: &Task,
    states: &InstanceStates,
    instance: &InstanceId,
) -> Option<TaskEvent> {
    if task
        .mapping
        .as_ref()
        .and_then(|m| m.group.as_ref())
        .is_none()
    {
        return Some(TaskEvent::Schedule);
    }
    match decide_instance(dag, task, states, instance.map_index) {
        Decision::Ready => Some(TaskEvent::Schedule),
        Decision::Wait => None,
        Decision::Skip => Some(TaskEvent::Skip),
        Decision::UpstreamFailed => Some(TaskEvent::UpstreamFail),
    }
}

/// What Airflow's task runner checks before pushing the return value of a task that a
/// downstream task is mapped over: that there is one, that it is a list or a map, and that it
/// is no longer than `[core] max_map_length`. The error is the try's failure, in Airflow's
/// words.
pub fn check_mappable(
    dag: &Dag,
    task: &Task,
    value: Option<&Value>,
    max_map_length: usize,
) -> Result<(), String> {
    let Some(rank) = dag.rank(&task.id) else {
        return Ok(());
    };
    let mapped_over = dag.downstream_ranks(rank).iter().any(|r| {
        dag.task_at_rank(*r)
            .and_then(|t| t.mapping.as_ref())
            .is_some_and(|m| m.xcom_tasks().any(|t| *t == task.id))
    });
    if !mapped_over {
        return Ok(());
    }
    let length = match value {
        None | Some(Value::Null) => return Err("did not push XCom for task mapping".to_owned()),
        Some(Value::Array(items)) => items.len(),
        Some(Value::Object(map)) => map.len(),
        Some(other) => {
            return Err(format!(
                "unmappable return type '{}'",
                python_type_name(other)
            ));
        }
    };
    if length > max_map_length {
        return Err(format!(
            "pushed value is too large to map as a downstream's dependency ({length} items; [core] max_map_length is {max_map_length})"
        ));
    }
    Ok(())
}

/// The Python type a JSON value arrives as, as Airflow's messages name it.
fn python_type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "NoneType",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "int",
        Value::String(_) => "str",
        Value::Array(_) => "list",
        Value::Object(_) => "dict",
    }
}

/// The states of a run's task instances, each mapped task's by map index, kept with each task's
/// state as a whole (see [`gust_core::mapping::task_state`]) for the readiness pass.
#[derive(Debug, Default)]
pub struct InstanceStates {
    tasks: HashMap<TaskId, TaskState>,
    mapped: HashMap<TaskId, MappedStates>,
}

/// A mapped task's instances' states by map index, and how many are in each state.
#[derive(Debug, Default)]
struct MappedStates {
    states: Vec<TaskState>,
    counts: StateCounts,
}

impl MappedStates {
    /// `count` instances, all `none`.
    fn new(count: usize) -> Self {
        let mut counts = StateCounts::default();
        (0..count).for_each(|_| counts.add(TaskState::NoStatus));
        Self {
            states: vec![TaskState::NoStatus; count],
            counts,
        }
    }

    /// Sets instance `index`'s state, growing the list with `removed` instances if needed.
    fn set(&mut self, index: usize, to: TaskState) {
        if self.states.len() <= index {
            // A gap (none is ever made) is an instance that is not there.
            let gap = index + 1 - self.states.len();
            (0..gap).for_each(|_| self.counts.add(TaskState::Removed));
            self.states.resize(index + 1, TaskState::Removed);
        }
        self.counts.remove(self.states[index]);
        self.counts.add(to);
        self.states[index] = to;
    }
}

impl InstanceStates {
    /// The states of these instances.
    pub fn of(instances: impl IntoIterator<Item = (InstanceId, TaskState)>) -> Self {
        let mut states = Self::default();
        for (id, state) in instances {
            match usize::try_from(id.map_index) {
                Ok(index) => states
                    .mapped
                    .entry(id.task_id)
                    .or_default()
                    .set(index, state),
                Err(_) => {
                    states.tasks.insert(id.task_id, state);
                }
            }
        }
        for (task, mapped) in &states.mapped {
            states
                .tasks
                .insert(task.clone(), mapped.counts.task_state());
        }
        states
    }

    /// An instance's state (`none` when the run has not decided it).
    #[must_use]
    pub fn get(&self, instance: &InstanceId) -> TaskState {
        match (
            self.mapped.get(&instance.task_id),
            usize::try_from(instance.map_index),
        ) {
            (Some(mapped), Ok(index)) => mapped
                .states
                .get(index)
                .copied()
                .unwrap_or(TaskState::Removed),
            (None, Err(_)) => self.tasks.task_state(&instance.task_id),
            // An unmapped instance of an expanded task, or the reverse, is not there.
            _ => TaskState::Removed,
        }
    }

    /// Sets an instance's state; returns its task's state as a whole before and after.
    pub fn set(&mut self, instance: &InstanceId, to: TaskState) -> (TaskState, TaskState) {
        let task = &instance.task_id;
        let before = self.tasks.task_state(task);
        let after = match (
            self.mapped.get_mut(task),
            usize::try_from(instance.map_index),
        ) {
            (Some(mapped), Ok(index)) if index < mapped.states.len() => {
                mapped.set(index, to);
                mapped.counts.task_state()
            }
            _ => to,
        };
        self.tasks.insert(task.clone(), after);
        (before, after)
    }

    /// Gives `task` `count` instances, all `none` (its unmapped instance is no longer there).
    pub fn expand(&mut self, task: &TaskId, count: usize) {
        self.mapped.insert(task.clone(), MappedStates::new(count));
        self.tasks.insert(task.clone(), TaskState::NoStatus);
    }

    /// Whether `task` has been expanded.
    #[must_use]
    pub fn is_expanded(&self, task: &TaskId) -> bool {
        self.mapped.contains_key(task)
    }

    /// A task's instances: each of its items once it is expanded, else its one instance.
    #[must_use]
    pub fn instances(&self, task: &TaskId) -> Vec<InstanceId> {
        match self.mapped.get(task) {
            Some(mapped) => (0..mapped.states.len())
                .filter_map(|i| i32::try_from(i).ok())
                .map(|i| InstanceId::mapped(task.clone(), i))
                .collect(),
            None => vec![InstanceId::unmapped(task.clone())],
        }
    }

    /// Each task's state as a whole.
    #[must_use]
    pub fn tasks(&self) -> &HashMap<TaskId, TaskState> {
        &self.tasks
    }
}

/// Trigger rules count every instance of a mapped upstream.
impl RunStates for InstanceStates {
    fn task_state(&self, task: &TaskId) -> TaskState {
        self.tasks.task_state(task)
    }

    fn instance_counts(&self, task: &TaskId, each: &mut dyn FnMut(TaskState, usize)) {
        match self.mapped.get(task) {
            Some(mapped) => mapped.counts.for_each(each),
            None => each(self.tasks.task_state(task), 1),
        }
    }

    fn instance_state(&self, task: &TaskId, map_index: i32) -> TaskState {
        match (self.mapped.get(task), usize::try_from(map_index)) {
            (Some(mapped), Ok(index)) => mapped
                .states
                .get(index)
                .copied()
                .unwrap_or(TaskState::Removed),
            _ => self.tasks.task_state(task),
        }
    }
}
