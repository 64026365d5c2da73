//! A DAG: its schedule and run settings, its tasks and the edges between them.
//!
//! A [`Dag`] is only built from validated parts; [`Dag::new`] checks the graph (every upstream
//! exists, no cycle) so that code holding a `Dag` never has to.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use crate::ids::{DagId, GroupId, TaskId};
use crate::schedule::Schedule;
use crate::setup_teardown::Scopes;
use crate::task::Task;

/// Airflow's default for `max_active_runs`.
pub const DEFAULT_MAX_ACTIVE_RUNS: u32 = 16;
/// Airflow's default for `max_active_tasks`.
pub const DEFAULT_MAX_ACTIVE_TASKS: u32 = 16;

/// A validated DAG.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(try_from = "DagRecord")]
pub struct Dag {
    /// The DAG's id.
    pub id: DagId,
    /// Run and display settings.
    pub settings: DagSettings,
    /// Tasks in the order the file declares them.
    tasks: IndexMap<TaskId, Task>,
    /// Task groups, outermost first.
    pub groups: IndexMap<GroupId, TaskGroup>,
    /// The file the DAG was read from.
    pub fileloc: PathBuf,
    /// The edges in topological order, computed once: the scheduler walks them after every
    /// event.
    #[serde(skip)]
    order: TopologicalOrder,
}

/// The tasks in topological order, by rank (a task's position in that order), with each
/// rank's direct downstream ranks: what an incremental readiness pass walks.
#[derive(Debug, Clone, Default)]
struct TopologicalOrder {
    /// Rank -> task index.
    tasks: Vec<usize>,
    /// Task index -> rank.
    ranks: Vec<usize>,
    /// Rank -> the ranks of the tasks directly downstream.
    downstream: Vec<Vec<usize>>,
    /// How setup and teardown tasks relate to the others.
    scopes: Scopes,
}

/// A DAG's settings: when and how it runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DagSettings {
    /// One line shown in lists.
    pub description: Option<String>,
    /// When runs are created by time (`Manual` when only assets schedule the DAG).
    pub schedule: Schedule,
    /// The asset updates that create runs (a `schedule` of assets, or Airflow's
    /// `AssetOrTimeSchedule` beside a time schedule).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assets: Option<crate::asset::AssetCondition>,
    /// The timezone cron schedules are evaluated in.
    pub timezone: chrono_tz::Tz,
    /// No run's data interval starts before this.
    pub start_date: Option<DateTime<Utc>>,
    /// No run's data interval starts after this.
    pub end_date: Option<DateTime<Utc>>,
    /// Create the runs missed while the DAG was paused or absent (default false).
    pub catchup: bool,
    /// How many runs may be active at once (default 16).
    pub max_active_runs: u32,
    /// How many task instances of this DAG may run at once, across runs (default 16).
    pub max_active_tasks: u32,
    /// A run still going after this long fails.
    pub dagrun_timeout: Option<Duration>,
    /// Parameters and their defaults, available to templates as `params`.
    pub params: serde_json::Map<String, serde_json::Value>,
    /// Labels for filtering.
    pub tags: Vec<String>,
    /// Whether a newly seen DAG starts paused (None: the configuration decides).
    pub is_paused_upon_creation: Option<bool>,
    /// Markdown documentation shown in the UI.
    pub doc_md: Option<String>,
    /// Which callbacks the DAG names (`on_success_callback`, `on_failure_callback`).
    #[serde(default)]
    pub callbacks: DagCallbacks,
    /// The notifiers Gust sends when a run succeeds or fails (`on_success`, `on_failure`).
    #[serde(default, skip_serializing_if = "crate::notify::Notifiers::is_empty")]
    pub notifiers: crate::notify::Notifiers,
    /// Deadline alerts (`deadline`): notifiers sent when a run has not finished in time.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deadlines: Vec<crate::deadline::DeadlineAlert>,
}

/// The Python callbacks a DAG names, in any form dag-factory reads; the callables are Python's
/// (the notifiers Gust sends are in [`DagSettings::notifiers`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DagCallbacks {
    /// `on_success_callback`: after a run succeeds.
    pub on_success: bool,
    /// `on_failure_callback`: after a run fails.
    pub on_failure: bool,
}

impl DagCallbacks {
    /// Notes the callback a DAG setting names (`on_failure_callback`, or its `_name` or
    /// `_file` part); `false` when the name is not a DAG callback's.
    pub fn note(&mut self, setting: &str) -> bool {
        let flag = match crate::task::callback_of(setting) {
            "on_success_callback" => &mut self.on_success,
            "on_failure_callback" => &mut self.on_failure,
            _ => return false,
        };
        *flag = true;
        true
    }
}

impl Default for DagSettings {
    fn default() -> Self {
        Self {
            description: None,
            schedule: Schedule::Manual,
            assets: None,
            timezone: chrono_tz::UTC,
            start_date: None,
            end_date: None,
            catchup: false,
            max_active_runs: DEFAULT_MAX_ACTIVE_RUNS,
            max_active_tasks: DEFAULT_MAX_ACTIVE_TASKS,
            dagrun_timeout: None,
            params: serde_json::Map::new(),
            tags: Vec::new(),
            is_paused_upon_creation: None,
            doc_md: None,
            callbacks: DagCallbacks::default(),
            notifiers: crate::notify::Notifiers::default(),
            deadlines: Vec::new(),
        }
    }
}

/// A task group: a named, possibly nested, set of tasks shown collapsed in the UI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskGroup {
    /// The group's id (`outer.inner` when nested).
    pub id: GroupId,
    /// Hover text in the UI.
    pub tooltip: Option<String>,
    /// The group it is nested in.
    pub parent: Option<GroupId>,
}

/// Why tasks and edges do not form a DAG.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GraphError {
    /// A task names an upstream that is not in the DAG.
    #[error("task \"{task}\" depends on \"{upstream}\", which is not a task of the DAG")]
    UnknownUpstream {
        /// The task holding the dependency.
        task: TaskId,
        /// The missing upstream.
        upstream: TaskId,
    },
    /// The edges form a cycle.
    #[error("the tasks form a cycle: {}", cycle_text(.0))]
    Cycle(Vec<TaskId>),
}

fn cycle_text(cycle: &[TaskId]) -> String {
    let mut text: Vec<&str> = cycle.iter().map(TaskId::as_str).collect();
    if let Some(first) = cycle.first() {
        text.push(first.as_str());
    }
    text.join(" >> ")
}

/// A DAG as stored (its serialized form), checked again by [`Dag::new`] when read back, so a
/// definition read from the metadata database is as valid as one read from a file.
#[derive(Deserialize)]
struct DagRecord {
    id: DagId,
    settings: DagSettings,
    tasks: IndexMap<TaskId, Task>,
    groups: IndexMap<GroupId, TaskGroup>,
    fileloc: PathBuf,
}

impl TryFrom<DagRecord> for Dag {
    type Error = GraphError;
    fn try_from(record: DagRecord) -> Result<Self, GraphError> {
        Dag::new(
            record.id,
            record.settings,
            record.tasks,
            record.groups,
            record.fileloc,
        )
    }
}

impl Dag {
    /// Builds a DAG, checking that every upstream exists and that there is no cycle.
    pub fn new(
        id: DagId,
        settings: DagSettings,
        tasks: IndexMap<TaskId, Task>,
        groups: IndexMap<GroupId, TaskGroup>,
        fileloc: PathBuf,
    ) -> Result<Self, GraphError> {
        for task in tasks.values() {
            if let Some(missing) = task.upstream.iter().find(|up| !tasks.contains_key(*up)) {
                return Err(GraphError::UnknownUpstream {
                    task: task.id.clone(),
                    upstream: missing.clone(),
                });
            }
        }
        if let Some(cycle) = find_cycle(&tasks) {
            return Err(GraphError::Cycle(cycle));
        }
        let order = TopologicalOrder::of(&tasks);
        Ok(Self {
            id,
            settings,
            tasks,
            groups,
            fileloc,
            order,
        })
    }

    /// A digest of the DAG's whole definition (hex SHA-256 of its JSON form): equal digests mean
    /// the same DAG, so a re-parsed file that changed nothing changes nothing downstream.
    #[must_use]
    pub fn fingerprint(&self) -> String {
        use sha2::{Digest, Sha256};
        // Serializing plain data to a String cannot fail; an empty digest input would only make
        // every DAG look changed, never unchanged.
        let json = serde_json::to_string(self).unwrap_or_default();
        Sha256::digest(json.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// The tasks in declaration order.
    pub fn tasks(&self) -> impl ExactSizeIterator<Item = &Task> {
        self.tasks.values()
    }

    /// One task by id.
    #[must_use]
    pub fn task(&self, id: &TaskId) -> Option<&Task> {
        self.tasks.get(id)
    }

    /// The ids of the tasks in task group `group` or in a group nested in it.
    #[must_use]
    pub fn tasks_in_group(&self, group: &str) -> Vec<String> {
        // At most one step per group: a definition whose parents loop ends the walk all the same.
        let within = |start: Option<&GroupId>| {
            let mut current = start.cloned();
            for _ in 0..=self.groups.len() {
                let Some(id) = current else {
                    return false;
                };
                if id.as_str() == group {
                    return true;
                }
                current = self.groups.get(&id).and_then(|g| g.parent.clone());
            }
            false
        };
        self.tasks()
            .filter(|task| within(task.group.as_ref()))
            .map(|task| task.id.to_string())
            .collect()
    }

    /// For every task, the tasks directly downstream of it, sorted.
    #[must_use]
    pub fn downstream_map(&self) -> BTreeMap<&TaskId, BTreeSet<&TaskId>> {
        let mut map: BTreeMap<&TaskId, BTreeSet<&TaskId>> =
            self.tasks.keys().map(|id| (id, BTreeSet::new())).collect();
        for task in self.tasks.values() {
            for up in &task.upstream {
                map.entry(up).or_default().insert(&task.id);
            }
        }
        map
    }

    /// The tasks with no upstream, in declaration order.
    pub fn roots(&self) -> impl Iterator<Item = &Task> {
        self.tasks.values().filter(|t| t.upstream.is_empty())
    }

    /// The tasks with no downstream, in declaration order: their states decide the run's.
    #[must_use]
    pub fn leaves(&self) -> Vec<&Task> {
        let has_downstream: BTreeSet<&TaskId> = self
            .tasks
            .values()
            .flat_map(|t| t.upstream.iter())
            .collect();
        self.tasks
            .values()
            .filter(|t| !has_downstream.contains(&t.id))
            .collect()
    }

    /// Every task after all of its upstreams; ties keep declaration order.
    pub fn topological_order(&self) -> impl ExactSizeIterator<Item = &Task> {
        self.order.tasks.iter().map(|i| &self.tasks[*i])
    }

    /// A task's position in [`Dag::topological_order`].
    #[must_use]
    pub fn rank(&self, id: &TaskId) -> Option<usize> {
        let index = self.tasks.get_index_of(id)?;
        self.order.ranks.get(index).copied()
    }

    /// The task at position `rank` of [`Dag::topological_order`].
    #[must_use]
    pub fn task_at_rank(&self, rank: usize) -> Option<&Task> {
        let index = *self.order.tasks.get(rank)?;
        self.tasks.get_index(index).map(|(_, task)| task)
    }

    /// The ranks of the tasks directly downstream of the task at `rank`.
    #[must_use]
    pub fn downstream_ranks(&self, rank: usize) -> &[usize] {
        self.order.downstream.get(rank).map_or(&[], Vec::as_slice)
    }

    /// The ranks of the setup tasks the task at `rank` needs to have succeeded beyond its direct
    /// upstreams (Airflow's relevant setups); none for a teardown.
    #[must_use]
    pub fn indirect_setup_ranks(&self, rank: usize) -> &[usize] {
        self.order.scopes.indirect_setups(rank)
    }

    /// For a teardown at `rank`, the ranks of the tasks in its scope (after one of its setups)
    /// beyond its direct upstreams: it waits for them to finish.
    #[must_use]
    pub fn teardown_scope_ranks(&self, rank: usize) -> &[usize] {
        self.order.scopes.teardown_scope(rank)
    }

    /// The ranks of the tasks whose readiness also depends on the task at `rank` as an indirect
    /// setup or an in-scope task: to decide again when it moves.
    #[must_use]
    pub fn watcher_ranks(&self, rank: usize) -> &[usize] {
        self.order.scopes.watchers(rank)
    }
}

impl TopologicalOrder {
    fn of(tasks: &IndexMap<TaskId, Task>) -> Self {
        let order = topological_indices(tasks);
        let mut ranks = vec![0; tasks.len()];
        for (rank, &index) in order.iter().enumerate() {
            ranks[index] = rank;
        }
        let mut downstream = vec![Vec::new(); tasks.len()];
        for (index, task) in tasks.values().enumerate() {
            for up in &task.upstream {
                if let Some(u) = tasks.get_index_of(up) {
                    downstream[ranks[u]].push(ranks[index]);
                }
            }
        }
        let mut upstream = vec![Vec::new(); tasks.len()];
        for (rank, down) in downstream.iter().enumerate() {
            for &d in down {
                upstream[d].push(rank);
            }
        }
        let by_rank: Vec<&Task> = order.iter().map(|&i| &tasks[i]).collect();
        let scopes = Scopes::of(&by_rank, &upstream, &downstream);
        Self {
            tasks: order,
            ranks,
            downstream,
            scopes,
        }
    }
}

/// Task indices in topological order (Kahn's algorithm); ties keep declaration order. The graph
/// must be acyclic.
fn topological_indices(tasks: &IndexMap<TaskId, Task>) -> Vec<usize> {
    let mut downstream: Vec<Vec<usize>> = vec![Vec::new(); tasks.len()];
    let mut remaining: Vec<usize> = vec![0; tasks.len()];
    for (i, task) in tasks.values().enumerate() {
        for up in &task.upstream {
            if let Some(u) = tasks.get_index_of(up) {
                downstream[u].push(i);
                remaining[i] += 1;
            }
        }
    }
    let mut ready: BTreeSet<usize> = (0..tasks.len()).filter(|i| remaining[*i] == 0).collect();
    let mut order = Vec::with_capacity(tasks.len());
    while let Some(i) = ready.pop_first() {
        order.push(i);
        for &d in &downstream[i] {
            remaining[d] -= 1;
            if remaining[d] == 0 {
                ready.insert(d);
            }
        }
    }
    order
}

/// Finds one cycle, if any, as the list of tasks on it in edge order.
fn find_cycle(tasks: &IndexMap<TaskId, Task>) -> Option<Vec<TaskId>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnPath,
        Done,
    }
    let mut marks = vec![Mark::New; tasks.len()];
    // Iterative depth-first search over upstream edges, so deep chains cannot overflow the stack.
    for start in 0..tasks.len() {
        if marks[start] != Mark::New {
            continue;
        }
        let mut path: Vec<(usize, usize)> = vec![(start, 0)];
        marks[start] = Mark::OnPath;
        while let Some(&mut (node, ref mut next)) = path.last_mut() {
            let upstream = &tasks[node].upstream;
            if *next == upstream.len() {
                marks[node] = Mark::Done;
                path.pop();
                continue;
            }
            let up = tasks.get_index_of(&upstream[*next]);
            *next += 1;
            let Some(up) = up else { continue };
            match marks[up] {
                Mark::Done => {}
                Mark::New => {
                    marks[up] = Mark::OnPath;
                    path.push((up, 0));
                }
                Mark::OnPath => {
                    let from = path.iter().position(|(n, _)| *n == up).unwrap_or(0);
                    // The path follows upstream edges; reverse it to read in run order.
                    let mut cycle: Vec<TaskId> = path[from..]
                        .iter()
                        .map(|(n, _)| tasks[*n].id.clone())
                        .collect();
                    cycle.reverse();
                    // Start at the smallest id, so the same cycle always reads the same.
                    let first = cycle
                        .iter()
                        .enumerate()
                        .min_by(|a, b| a.1.cmp(b.1))
                        .map_or(0, |(i, _)| i);
                    cycle.rotate_left(first);
                    return Some(cycle);
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::TaskSettings;

    fn task(id: &str, upstream: &[&str]) -> Task {
        Task {
            id: TaskId::new(id).unwrap(),
            operator: "empty".into(),
            args: serde_json::Map::new(),
            upstream: upstream.iter().map(|u| TaskId::new(*u).unwrap()).collect(),
            group: None,
            settings: TaskSettings::default(),
            doc_md: None,
            mapping: None,
        }
    }

    fn dag(tasks: Vec<Task>) -> Result<Dag, GraphError> {
        Dag::new(
            DagId::new("d").unwrap(),
            DagSettings::default(),
            tasks.into_iter().map(|t| (t.id.clone(), t)).collect(),
            IndexMap::new(),
            PathBuf::from("d.yaml"),
        )
    }

    fn ids<'a>(tasks: impl IntoIterator<Item = &'a Task>) -> Vec<&'a str> {
        tasks.into_iter().map(|t| t.id.as_str()).collect()
    }

    #[test]
    fn diamond_orders_roots_first_and_finds_leaves() {
        let d = dag(vec![
            task("t4", &["t2", "t3"]),
            task("t1", &[]),
            task("t2", &["t1"]),
            task("t3", &["t1"]),
        ])
        .unwrap();
        assert_eq!(ids(d.topological_order()), ["t1", "t2", "t3", "t4"]);
        assert_eq!(ids(d.leaves()), ["t4"]);
        assert_eq!(ids(d.roots()), ["t1"]);
    }

    #[test]
    fn a_stored_definition_reads_back_as_the_same_dag_and_is_checked_again() {
        let d = dag(vec![task("b", &["a"]), task("a", &[])]).unwrap();
        let json = serde_json::to_string(&d).unwrap();
        let back: Dag = serde_json::from_str(&json).unwrap();
        assert_eq!(back.fingerprint(), d.fingerprint());
        assert_eq!(ids(back.topological_order()), ["a", "b"]);
        let cyclic = json.replace(r#""upstream":[]"#, r#""upstream":["b"]"#);
        let err = serde_json::from_str::<Dag>(&cyclic).unwrap_err();
        assert!(err.to_string().contains("cycle"), "{err}");
    }

    #[test]
    fn a_cycle_is_named_task_by_task() {
        let err = dag(vec![
            task("a", &["c"]),
            task("b", &["a"]),
            task("c", &["b"]),
        ])
        .unwrap_err();
        assert_eq!(err.to_string(), "the tasks form a cycle: a >> b >> c >> a");
    }

    #[test]
    fn a_self_dependency_is_a_cycle() {
        let err = dag(vec![task("a", &["a"])]).unwrap_err();
        assert_eq!(err.to_string(), "the tasks form a cycle: a >> a");
    }

    #[test]
    fn a_missing_upstream_is_named() {
        let err = dag(vec![task("a", &["ghost"])]).unwrap_err();
        assert!(matches!(err, GraphError::UnknownUpstream { .. }));
    }

    #[test]
    fn a_long_chain_does_not_overflow_the_stack() {
        let names: Vec<String> = (0..100_000).map(|i| format!("t{i}")).collect();
        let tasks = (0..names.len())
            .map(|i| {
                let up: Vec<&str> = if i == 0 {
                    vec![]
                } else {
                    vec![names[i - 1].as_str()]
                };
                task(&names[i], &up)
            })
            .collect();
        let d = dag(tasks).unwrap();
        assert_eq!(d.topological_order().len(), 100_000);
    }
}
