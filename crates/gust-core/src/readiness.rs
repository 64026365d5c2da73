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
}

impl UpstreamCounts {
    /// Counts the given upstream states.
    pub fn of(states: impl IntoIterator<Item = TaskState>) -> Self {
        let mut counts = Self::default();
        for state in states {
            match state {
                TaskState::Removed => continue,
                TaskState::Success => counts.success += 1,
                TaskState::Skipped => counts.skipped += 1,
                TaskState::Failed => counts.failed += 1,
                TaskState::UpstreamFailed => counts.upstream_failed += 1,
                TaskState::NoStatus
                | TaskState::Scheduled
                | TaskState::Queued
                | TaskState::Running
                | TaskState::UpForRetry => {}
            }
            counts.total += 1;
        }
        counts
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
        TriggerRule::AllSuccess => {
            if up.failures() > 0 {
                UpstreamFailed
            } else if up.skipped > 0 {
                Skip
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
pub fn settle(
    dag: &Dag,
    states: &HashMap<TaskId, TaskState>,
    past_ok: impl Fn(&TaskId) -> bool,
) -> Settled {
    settle_ranks(dag, states, (0..dag.tasks().len()).collect(), past_ok)
}

/// What [`settle`] would decide, knowing that only `changed` tasks moved since the last pass
/// over the run (or were told to be looked at again): only they and their downstream tasks are
/// decided, so a pass after an event costs what the event touches, not the size of the run.
pub fn settle_changed<'a>(
    dag: &Dag,
    states: &HashMap<TaskId, TaskState>,
    changed: impl IntoIterator<Item = &'a TaskId>,
    past_ok: impl Fn(&TaskId) -> bool,
) -> Settled {
    let mut candidates = BTreeSet::new();
    for rank in changed.into_iter().filter_map(|id| dag.rank(id)) {
        candidates.insert(rank);
        candidates.extend(dag.downstream_ranks(rank));
    }
    settle_ranks(dag, states, candidates, past_ok)
}

/// Decides the `none`-state tasks among `candidates` (ranks in the topological order), in that
/// order; a task skipped or failed adds its downstream tasks, whose decision it may change.
fn settle_ranks(
    dag: &Dag,
    states: &HashMap<TaskId, TaskState>,
    mut candidates: BTreeSet<usize>,
    past_ok: impl Fn(&TaskId) -> bool,
) -> Settled {
    // Decisions made in this pass, consulted before `states`: no copy of the run's states is made,
    // as this runs after every event of a run.
    let mut decided: HashMap<&TaskId, TaskState> = HashMap::new();
    let state_of = |decided: &HashMap<&TaskId, TaskState>, id: &TaskId| {
        decided
            .get(id)
            .or_else(|| states.get(id))
            .copied()
            .unwrap_or(TaskState::NoStatus)
    };
    let mut out = Settled::default();
    while let Some(rank) = candidates.pop_first() {
        let Some(task) = dag.task_at_rank(rank) else {
            continue;
        };
        if state_of(&decided, &task.id) != TaskState::NoStatus {
            continue;
        }
        let up = UpstreamCounts::of(task.upstream.iter().map(|u| state_of(&decided, u)));
        let finished = match decide(task.settings.trigger_rule, &up) {
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
    }
    out
}

/// The run's state from its tasks' states: running while any task is unfinished; then failed if
/// any leaf failed or was upstream_failed, success otherwise (Airflow's rule).
#[must_use]
pub fn run_state(dag: &Dag, states: &HashMap<TaskId, TaskState>) -> DagRunState {
    let state_of = |id: &TaskId| states.get(id).copied().unwrap_or(TaskState::NoStatus);
    if dag.tasks().any(|t| !state_of(&t.id).is_finished()) {
        return DagRunState::Running;
    }
    let leaf_failed = dag.leaves().iter().any(|t| {
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
        ];
        for (rule, states, expected) in cases {
            assert_eq!(d(*rule, states), *expected, "{rule} with {states:?}");
        }
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
