//! Which tasks of a run may start, which are skipped or upstream_failed, and whether the run is
//! done: pure functions of the DAG and its task states.
//!
//! Trigger rules follow Airflow's `TriggerRuleDep`: each rule is decided from counts of the direct
//! upstreams' states. Upstreams that were removed from the DAG do not count. A decision that
//! skips or fails a task can decide its downstream tasks in turn, so [`settle`] walks the DAG in
//! topological order once and applies those decisions as it goes: one pass settles the whole run.

use std::collections::{BTreeSet, HashMap};

use crate::dag::Dag;
use crate::ids::TaskId;
use crate::state::{DagRunState, TaskState};
use crate::task::Task;
use crate::trigger_rule::TriggerRule;

/// What a task's trigger rule says, given its upstreams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Decision {
    /// It may run now.
    Ready,
    /// Not yet: upstreams are still running or waiting.
    Wait,
    /// It will not run; it is skipped.
    Skip,
    /// It will not run because an upstream failed.
    UpstreamFailed,
}

/// A run's task states as the readiness pass reads them: each task's as a whole, and each of its
/// instances' (a mapped task has several; trigger rules count instances, as Airflow's do).
pub trait RunStates {
    /// A task's state as a whole (see [`crate::mapping::task_state`] for a mapped one); a task
    /// the run does not hold yet is `none`.
    fn task_state(&self, task: &TaskId) -> TaskState;

    /// Calls `each` with every state instances of `task` are in and how many are (its own
    /// state, once, when it is not mapped): counts rather than instances, so that a task mapped
    /// over thousands of items costs its downstream's readiness a few calls, not thousands.
    fn instance_counts(&self, task: &TaskId, each: &mut dyn FnMut(TaskState, usize));

    /// The state of instance `map_index` of `task` (its state as a whole by default, for
    /// states that hold no instances).
    fn instance_state(&self, task: &TaskId, map_index: i32) -> TaskState {
        let _ = map_index;
        self.task_state(task)
    }
}

/// The states of a run none of whose tasks is expanded: one instance per task.
impl RunStates for HashMap<TaskId, TaskState> {
    fn task_state(&self, task: &TaskId) -> TaskState {
        self.get(task).copied().unwrap_or(TaskState::NoStatus)
    }

    fn instance_counts(&self, task: &TaskId, each: &mut dyn FnMut(TaskState, usize)) {
        each(self.task_state(task), 1);
    }
}

/// How many direct upstreams are in each state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UpstreamCounts {
    /// Upstreams that count (removed ones do not).
    pub total: usize,
    /// In `success`.
    pub success: usize,
    /// In `skipped`.
    pub skipped: usize,
    /// In `failed`.
    pub failed: usize,
    /// In `upstream_failed`.
    pub upstream_failed: usize,
    /// Upstreams that are setup tasks.
    pub setups: usize,
    /// Setup upstreams in `success`.
    pub setup_success: usize,
    /// Setup upstreams in `skipped`.
    pub setup_skipped: usize,
}

impl UpstreamCounts {
    /// Counts the given upstream states.
    pub fn of(states: impl IntoIterator<Item = TaskState>) -> Self {
        Self::of_upstreams(states.into_iter().map(|state| (state, false)))
    }

    /// Counts the given upstream states, each with whether that upstream is a setup task.
    pub fn of_upstreams(upstreams: impl IntoIterator<Item = (TaskState, bool)>) -> Self {
        let mut counts = Self::default();
        for (state, is_setup) in upstreams {
            counts.add(state, 1, is_setup);
        }
        counts
    }

    /// Counts `n` more upstreams (instances) in `state`.
    pub fn add(&mut self, state: TaskState, n: usize, is_setup: bool) {
        if is_setup && state != TaskState::Removed {
            self.setups += n;
            self.setup_success += if state == TaskState::Success { n } else { 0 };
            self.setup_skipped += if state == TaskState::Skipped { n } else { 0 };
        }
        match state {
            TaskState::Removed => return,
            TaskState::Success => self.success += n,
            TaskState::Skipped => self.skipped += n,
            TaskState::Failed => self.failed += n,
            TaskState::UpstreamFailed => self.upstream_failed += n,
            TaskState::NoStatus
            | TaskState::Scheduled
            | TaskState::Queued
            | TaskState::Running
            | TaskState::UpForRetry
            | TaskState::UpForReschedule
            | TaskState::Deferred => {}
        }
        self.total += n;
    }

    fn done(&self) -> usize {
        self.success + self.skipped + self.failed + self.upstream_failed
    }

    fn all_done(&self) -> bool {
        self.done() == self.total
    }

    fn failures(&self) -> usize {
        self.failed + self.upstream_failed
    }
}

/// What `rule` decides for a task whose upstreams are `up`.
#[must_use]
pub fn decide(rule: TriggerRule, up: &UpstreamCounts) -> Decision {
    use Decision::{Ready, Skip, UpstreamFailed, Wait};
    if up.total == 0 {
        return Ready;
    }
    let when_done = |decision: Decision| if up.all_done() { decision } else { Wait };
    match rule {
        // A failure decides at once; a skip only once every upstream is done, so that a
        // failure finishing after a skip still wins and a run's outcome never depends on which
        // upstream finished first (Airflow decides on a skip at once, so there it can).
        TriggerRule::AllSuccess => {
            if up.failures() > 0 {
                UpstreamFailed
            } else if up.skipped > 0 {
                when_done(Skip)
            } else {
                when_done(Ready)
            }
        }
        TriggerRule::AllFailed => {
            if up.success + up.skipped > 0 {
                Skip
            } else {
                when_done(Ready)
            }
        }
        TriggerRule::AllDone => when_done(Ready),
        TriggerRule::AllSkipped => {
            if up.success + up.failures() > 0 {
                Skip
            } else {
                when_done(Ready)
            }
        }
        TriggerRule::OneSuccess => {
            if up.success > 0 {
                Ready
            } else if up.skipped == up.total {
                Skip
            } else {
                when_done(UpstreamFailed)
            }
        }
        TriggerRule::OneFailed => {
            if up.failures() > 0 {
                Ready
            } else {
                when_done(Skip)
            }
        }
        TriggerRule::OneDone => {
            if up.success + up.failed > 0 {
                Ready
            } else {
                when_done(Skip)
            }
        }
        TriggerRule::NoneFailed => {
            if up.failures() > 0 {
                UpstreamFailed
            } else {
                when_done(Ready)
            }
        }
        TriggerRule::NoneFailedMinOneSuccess => {
            if up.failures() > 0 {
                UpstreamFailed
            } else if up.skipped == up.total {
                Skip
            } else {
                when_done(Ready)
            }
        }
        TriggerRule::NoneSkipped => {
            if up.skipped > 0 {
                Skip
            } else {
                when_done(Ready)
            }
        }
        TriggerRule::Always => Ready,
        // Skipped upstreams do not count as done for this rule: any skip skips the task.
        TriggerRule::AllDoneMinOneSuccess => {
            if up.skipped > 0 {
                Skip
            } else if up.success == 0 {
                when_done(UpstreamFailed)
            } else {
                when_done(Ready)
            }
        }
        // A teardown's rule: it runs once everything upstream is done, unless it has setups
        // upstream and none of them succeeded (all skipped: skipped; else upstream_failed).
        TriggerRule::AllDoneSetupSuccess => {
            if up.setups > 0 && up.setup_skipped >= up.setups {
                when_done(Skip)
            } else if up.setups > 0 && up.setup_success == 0 {
                when_done(UpstreamFailed)
            } else {
                when_done(Ready)
            }
        }
    }
}

/// What a task's indirect setups say, before its own trigger rule is looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SetupGate {
    /// Every one succeeded (or there are none): the trigger rule decides.
    Open,
    /// One failed: the task is upstream_failed.
    Failed,
    /// One was skipped: the task is skipped.
    Skipped,
    /// Some have not finished: the task may not run yet (its rule may still skip or fail it).
    Closed,
}

fn setup_gate(setups: impl IntoIterator<Item = TaskState>) -> SetupGate {
    let counts = UpstreamCounts::of(setups);
    if counts.failures() > 0 {
        SetupGate::Failed
    } else if counts.skipped > 0 {
        SetupGate::Skipped
    } else if counts.success < counts.total {
        SetupGate::Closed
    } else {
        SetupGate::Open
    }
}

/// What one pass over a run decided.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settled {
    /// Tasks to move to `skipped` or `upstream_failed`, in topological order.
    pub finished: Vec<(TaskId, TaskState)>,
    /// Tasks whose trigger rule is met, in topological order: the scheduler schedules them.
    pub ready: Vec<TaskId>,
}

/// Decides every `none`-state task of a run in one topological pass. `states` holds the run's
/// task states (a task missing from it counts as `none`); `past_ok` says, for tasks with
/// `depends_on_past`, whether the same task in the previous run succeeded or was skipped.
pub fn settle(dag: &Dag, states: &impl RunStates, past_ok: impl Fn(&TaskId) -> bool) -> Settled {
    settle_ranks(dag, states, (0..dag.tasks().len()).collect(), past_ok)
}

/// What [`settle`] would decide, knowing that only `changed` tasks moved since the last pass
/// over the run (or were told to be looked at again): only they and their downstream tasks are
/// decided, so a pass after an event costs what the event touches, not the size of the run.
pub fn settle_changed<'a>(
    dag: &Dag,
    states: &impl RunStates,
    changed: impl IntoIterator<Item = &'a TaskId>,
    past_ok: impl Fn(&TaskId) -> bool,
) -> Settled {
    let mut candidates = BTreeSet::new();
    for rank in changed.into_iter().filter_map(|id| dag.rank(id)) {
        candidates.insert(rank);
        candidates.extend(dag.downstream_ranks(rank));
        candidates.extend(dag.watcher_ranks(rank));
    }
    settle_ranks(dag, states, candidates, past_ok)
}

/// Decides the `none`-state tasks among `candidates` (ranks in the topological order), in that
/// order; a task skipped or failed adds its downstream tasks, whose decision it may change.
fn settle_ranks(
    dag: &Dag,
    states: &impl RunStates,
    mut candidates: BTreeSet<usize>,
    past_ok: impl Fn(&TaskId) -> bool,
) -> Settled {
    // Decisions made in this pass, consulted before `states`: no copy of the run's states is made,
    // as this runs after every event of a run.
    let mut decided: HashMap<&TaskId, TaskState> = HashMap::new();
    let state_of = |decided: &HashMap<&TaskId, TaskState>, id: &TaskId| {
        decided
            .get(id)
            .copied()
            .unwrap_or_else(|| states.task_state(id))
    };
    let mut out = Settled::default();
    while let Some(rank) = candidates.pop_first() {
        let Some(task) = dag.task_at_rank(rank) else {
            continue;
        };
        if state_of(&decided, &task.id) != TaskState::NoStatus {
            continue;
        }
        // Only `all_done_setup_success` reads the setup counts: spare every other task the
        // lookup of its upstreams, as this pass runs after every event of a run.
        let counts_setups = task.settings.trigger_rule == TriggerRule::AllDoneSetupSuccess;
        let is_setup =
            |id: &TaskId| counts_setups && dag.task(id).is_some_and(|t| t.settings.is_setup);
        // Every instance of a mapped upstream counts, as in Airflow.
        let mut up = UpstreamCounts::default();
        for upstream in &task.upstream {
            let setup = is_setup(upstream);
            match decided.get(upstream) {
                Some(state) => up.add(*state, 1, setup),
                None => states.instance_counts(upstream, &mut |state, n| up.add(state, n, setup)),
            }
        }
        let at_rank = |r: &usize| {
            dag.task_at_rank(*r)
                .map_or(TaskState::NoStatus, |t| state_of(&decided, &t.id))
        };
        let gate = setup_gate(dag.indirect_setup_ranks(rank).iter().map(at_rank));
        let mut decision = match gate {
            SetupGate::Failed => Decision::UpstreamFailed,
            SetupGate::Skipped => Decision::Skip,
            // Each instance decides by its own upstream instances ([`decide_instance`]) once
            // they have all ended: the task as a whole only waits for them.
            SetupGate::Open | SetupGate::Closed if follows_in_group(dag, task) => {
                if up.all_done() {
                    Decision::Ready
                } else {
                    Decision::Wait
                }
            }
            SetupGate::Open | SetupGate::Closed => decide(task.settings.trigger_rule, &up),
        };
        let scope_unfinished = || {
            dag.teardown_scope_ranks(rank)
                .iter()
                .any(|r| !at_rank(r).is_finished())
        };
        if decision == Decision::Ready && (gate == SetupGate::Closed || scope_unfinished()) {
            decision = Decision::Wait;
        }
        let finished = match decision {
            Decision::Wait => continue,
            Decision::Ready => {
                if !task.settings.depends_on_past || past_ok(&task.id) {
                    out.ready.push(task.id.clone());
                }
                continue;
            }
            Decision::Skip => TaskState::Skipped,
            Decision::UpstreamFailed => TaskState::UpstreamFailed,
        };
        decided.insert(&task.id, finished);
        out.finished.push((task.id.clone(), finished));
        candidates.extend(dag.downstream_ranks(rank));
        candidates.extend(dag.watcher_ranks(rank));
    }
    out
}

/// Whether `task` is expanded with a mapped task group, as one of its upstreams is expanded with
/// the same group: then its instance `i` follows their instances `i` alone.
fn follows_in_group<'a>(dag: &'a Dag, task: &'a Task) -> bool {
    in_group_upstreams(dag, task).next().is_some()
}

/// The upstreams of `task` mapped by the same mapped task group as `task`.
fn in_group_upstreams<'a>(dag: &'a Dag, task: &'a Task) -> impl Iterator<Item = &'a TaskId> {
    let group = task.mapping.as_ref().and_then(|m| m.group.as_ref());
    task.upstream.iter().filter(move |upstream| {
        group.is_some()
            && dag
                .task(upstream)
                .and_then(|t| t.mapping.as_ref())
                .and_then(|m| m.group.as_ref())
                == group
    })
}

/// What `task`'s trigger rule says for its instance `map_index`, as Airflow decides an instance
/// in a mapped task group: an upstream in the same mapped group counts by its instance of the
/// same index, any other upstream by all of its instances. For a task outside mapped groups,
/// what it says for the task as a whole.
#[must_use]
pub fn decide_instance(
    dag: &Dag,
    task: &Task,
    states: &impl RunStates,
    map_index: i32,
) -> Decision {
    let same_group: Vec<&TaskId> = in_group_upstreams(dag, task).collect();
    let mut up = UpstreamCounts::default();
    for upstream in &task.upstream {
        if same_group.contains(&upstream) {
            up.add(states.instance_state(upstream, map_index), 1, false);
        } else {
            states.instance_counts(upstream, &mut |state, n| up.add(state, n, false));
        }
    }
    decide(task.settings.trigger_rule, &up)
}

/// The run's state from its tasks' states: running while any task is unfinished; then failed if
/// any leaf failed or was upstream_failed, success otherwise (Airflow's rule). As in Airflow, a
/// teardown does not count (unless `on_failure_fail_dagrun`), and the tasks before it count as
/// leaves in its place.
#[must_use]
pub fn run_state(dag: &Dag, states: &impl RunStates) -> DagRunState {
    let state_of = |id: &TaskId| states.task_state(id);
    if dag.tasks().any(|t| !state_of(&t.id).is_finished()) {
        return DagRunState::Running;
    }
    let leaf_failed = deciding_leaves(dag).iter().any(|t| {
        matches!(
            state_of(&t.id),
            TaskState::Failed | TaskState::UpstreamFailed
        )
    });
    if leaf_failed {
        DagRunState::Failed
    } else {
        DagRunState::Success
    }
}

/// The tasks whose states decide the run's: Airflow's effective leaves, which look through
/// teardowns that may not fail the run.
fn deciding_leaves(dag: &Dag) -> Vec<&Task> {
    let ignorable = |t: &Task| t.settings.is_teardown && !t.settings.on_failure_fail_dagrun;
    if !dag.tasks().any(|t| t.settings.is_teardown) {
        return dag.leaves();
    }
    let downstream = dag.downstream_map();
    let effective: Vec<&Task> = dag
        .tasks()
        .filter(|t| {
            !ignorable(t)
                && downstream
                    .get(&t.id)
                    .is_none_or(|down| down.iter().all(|d| dag.task(d).is_some_and(&ignorable)))
        })
        .collect();
    if effective.is_empty() {
        // Only teardowns: the plain leaves decide.
        dag.leaves()
    } else {
        effective
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use TaskState as S;
    use TriggerRule as R;

    fn counts(states: &[TaskState]) -> UpstreamCounts {
        UpstreamCounts::of(states.iter().copied())
    }

    fn d(rule: TriggerRule, states: &[TaskState]) -> Decision {
        decide(rule, &counts(states))
    }

    #[test]
    fn all_success_waits_skips_and_fails_as_airflow() {
        assert_eq!(d(R::AllSuccess, &[S::Success, S::Success]), Decision::Ready);
        assert_eq!(d(R::AllSuccess, &[S::Success, S::Running]), Decision::Wait);
        assert_eq!(
            d(R::AllSuccess, &[S::Failed, S::Running]),
            Decision::UpstreamFailed
        );
        assert_eq!(
            d(R::AllSuccess, &[S::UpstreamFailed, S::Success]),
            Decision::UpstreamFailed
        );
        assert_eq!(d(R::AllSuccess, &[S::Skipped, S::Success]), Decision::Skip);
        assert_eq!(
            d(R::AllSuccess, &[S::UpForRetry, S::Success]),
            Decision::Wait
        );
    }

    #[test]
    fn every_rule_decides_as_airflow_does() {
        use Decision::{Ready, Skip, UpstreamFailed as Uf, Wait};
        let cases: &[(TriggerRule, &[TaskState], Decision)] = &[
            (R::AllFailed, &[S::Failed, S::UpstreamFailed], Ready),
            (R::AllFailed, &[S::Failed, S::Success], Skip),
            (R::AllFailed, &[S::Failed, S::Running], Wait),
            (R::AllDone, &[S::Failed, S::Skipped, S::Success], Ready),
            (R::AllDone, &[S::Failed, S::Queued], Wait),
            (R::AllSkipped, &[S::Skipped, S::Skipped], Ready),
            (R::AllSkipped, &[S::Skipped, S::Success], Skip),
            (R::AllSkipped, &[S::Skipped, S::Running], Wait),
            (R::OneSuccess, &[S::Success, S::Running], Ready),
            (R::OneSuccess, &[S::Failed, S::Skipped], Uf),
            (R::OneSuccess, &[S::Skipped, S::Skipped], Skip),
            (R::OneSuccess, &[S::Failed, S::Running], Wait),
            (R::OneFailed, &[S::Failed, S::Running], Ready),
            (R::OneFailed, &[S::UpstreamFailed], Ready),
            (R::OneFailed, &[S::Success, S::Skipped], Skip),
            (R::OneFailed, &[S::Success, S::Running], Wait),
            (R::OneDone, &[S::Failed, S::Running], Ready),
            (R::OneDone, &[S::Success, S::Running], Ready),
            (R::OneDone, &[S::Skipped, S::UpstreamFailed], Skip),
            (R::OneDone, &[S::Skipped, S::Running], Wait),
            (R::NoneFailed, &[S::Success, S::Skipped], Ready),
            (R::NoneFailed, &[S::Success, S::Failed], Uf),
            (R::NoneFailed, &[S::Success, S::Running], Wait),
            (R::NoneFailedMinOneSuccess, &[S::Success, S::Skipped], Ready),
            (R::NoneFailedMinOneSuccess, &[S::Skipped, S::Skipped], Skip),
            (
                R::NoneFailedMinOneSuccess,
                &[S::Skipped, S::UpstreamFailed],
                Uf,
            ),
            (R::NoneFailedMinOneSuccess, &[S::Skipped, S::Running], Wait),
            (R::NoneSkipped, &[S::Success, S::Failed], Ready),
            (R::NoneSkipped, &[S::Success, S::Skipped], Skip),
            (R::NoneSkipped, &[S::Success, S::Running], Wait),
            (R::Always, &[S::Running, S::NoStatus], Ready),
            (R::AllSuccess, &[S::Skipped, S::Running], Wait),
            (R::AllDoneMinOneSuccess, &[S::Success, S::Failed], Ready),
            (R::AllDoneMinOneSuccess, &[S::Success, S::Running], Wait),
            (R::AllDoneMinOneSuccess, &[S::Skipped, S::Running], Skip),
            (R::AllDoneMinOneSuccess, &[S::Failed, S::UpstreamFailed], Uf),
            (R::AllDoneSetupSuccess, &[S::Failed, S::Success], Ready),
            (R::AllDoneSetupSuccess, &[S::Failed, S::Running], Wait),
        ];
        for (rule, states, expected) in cases {
            assert_eq!(d(*rule, states), *expected, "{rule} with {states:?}");
        }
    }

    #[test]
    fn all_done_setup_success_needs_one_of_its_setups_to_have_succeeded() {
        let setups = |states: &[(TaskState, bool)]| {
            decide(
                R::AllDoneSetupSuccess,
                &UpstreamCounts::of_upstreams(states.iter().copied()),
            )
        };
        // (state, is a setup)
        let ran = setups(&[(S::Success, true), (S::Failed, true), (S::Failed, false)]);
        assert_eq!(ran, Decision::Ready);
        let none_ran = setups(&[(S::Failed, true), (S::Success, false)]);
        assert_eq!(none_ran, Decision::UpstreamFailed);
        let all_skipped = setups(&[(S::Skipped, true), (S::Success, false)]);
        assert_eq!(all_skipped, Decision::Skip);
        let waiting = setups(&[(S::Failed, true), (S::Running, false)]);
        assert_eq!(waiting, Decision::Wait);
    }

    #[test]
    fn a_task_without_upstreams_is_ready_whatever_its_rule() {
        for rule in TriggerRule::ALL {
            assert_eq!(d(rule, &[]), Decision::Ready, "{rule}");
        }
    }

    #[test]
    fn removed_upstreams_do_not_count() {
        assert_eq!(d(R::AllSuccess, &[S::Removed, S::Success]), Decision::Ready);
        assert_eq!(d(R::AllSuccess, &[S::Removed]), Decision::Ready);
    }

    #[test]
    fn only_always_fires_while_every_upstream_is_still_running() {
        for rule in TriggerRule::ALL {
            let expected = if rule == R::Always {
                Decision::Ready
            } else {
                Decision::Wait
            };
            assert_eq!(d(rule, &[S::Running, S::Running]), expected, "{rule}");
        }
    }
}

#[cfg(test)]
mod mapped_group_tests {
    use std::collections::HashMap;
    use std::path::PathBuf;

    use indexmap::IndexMap;
    use serde_json::json;

    use super::*;
    use crate::dag::{Dag, DagSettings};
    use crate::ids::{DagId, GroupId};
    use crate::mapping::{Expand, Mapping, Source};
    use crate::task::TaskSettings;

    /// Instance states by (task, map index); a task without instances is `none`.
    struct Instances(HashMap<(String, i32), TaskState>);

    impl RunStates for Instances {
        fn task_state(&self, task: &TaskId) -> TaskState {
            let mut of_task = self
                .0
                .iter()
                .filter(|((t, _), _)| t == task.as_str())
                .map(|(_, s)| *s)
                .peekable();
            if of_task.peek().is_none() {
                return TaskState::NoStatus;
            }
            crate::mapping::task_state(of_task)
        }

        fn instance_counts(&self, task: &TaskId, each: &mut dyn FnMut(TaskState, usize)) {
            let mut any = false;
            for ((t, _), state) in &self.0 {
                if t == task.as_str() {
                    any = true;
                    each(*state, 1);
                }
            }
            // A task not expanded yet is its one instance, waiting.
            if !any {
                each(TaskState::NoStatus, 1);
            }
        }

        fn instance_state(&self, task: &TaskId, map_index: i32) -> TaskState {
            self.0
                .get(&(task.to_string(), map_index))
                .copied()
                .unwrap_or(TaskState::Removed)
        }
    }

    fn task(id: &str, upstream: &[&str], group: Option<&str>) -> Task {
        Task {
            id: TaskId::new(id).unwrap(),
            operator: "empty".into(),
            args: serde_json::Map::new(),
            upstream: upstream.iter().map(|u| TaskId::new(*u).unwrap()).collect(),
            group: group.map(|g| GroupId::new(g).unwrap()),
            settings: TaskSettings::default(),
            doc_md: None,
            mapping: group.map(|g| Mapping {
                expand: Expand::Args(vec![(
                    "env".into(),
                    Source::Literal(vec![json!({}), json!({})]),
                )]),
                map_index_template: None,
                group: Some(GroupId::new(g).unwrap()),
            }),
        }
    }

    #[test]
    fn an_instance_in_a_mapped_group_follows_its_own_upstream_instance() {
        let tasks = vec![
            task("before", &[], None),
            task("g.first", &["before"], Some("g")),
            task("g.second", &["g.first"], Some("g")),
            task("after", &["g.second"], None),
        ];
        let dag = Dag::new(
            DagId::new("d").unwrap(),
            DagSettings::default(),
            tasks.into_iter().map(|t| (t.id.clone(), t)).collect(),
            IndexMap::new(),
            PathBuf::from("d.yaml"),
        )
        .unwrap();
        let states = |list: &[(&str, i32, TaskState)]| {
            Instances(
                list.iter()
                    .map(|(t, i, s)| (((*t).to_owned(), *i), *s))
                    .collect(),
            )
        };
        let id = |t: &str| TaskId::new(t).unwrap();
        let second = dag.task(&id("g.second")).unwrap();
        // The second task waits while any instance of the first runs...
        let running = states(&[
            ("before", -1, TaskState::Success),
            ("g.first", 0, TaskState::Failed),
            ("g.first", 1, TaskState::Running),
        ]);
        assert_eq!(settle(&dag, &running, |_| true).ready, Vec::<TaskId>::new());
        // ...then each of its instances is decided by its own upstream instance.
        let ended = states(&[
            ("before", -1, TaskState::Success),
            ("g.first", 0, TaskState::Failed),
            ("g.first", 1, TaskState::Success),
        ]);
        assert_eq!(settle(&dag, &ended, |_| true).ready, [id("g.second")]);
        assert_eq!(
            decide_instance(&dag, second, &ended, 0),
            Decision::UpstreamFailed
        );
        assert_eq!(decide_instance(&dag, second, &ended, 1), Decision::Ready);
        // Outside the group, every instance counts.
        let after = dag.task(&id("after")).unwrap();
        let done = states(&[
            ("g.second", 0, TaskState::UpstreamFailed),
            ("g.second", 1, TaskState::Success),
        ]);
        assert_eq!(
            decide_instance(&dag, after, &done, -1),
            Decision::UpstreamFailed
        );
    }
}
