//! The scheduling core over whole DAGs: settling runs, skip propagation, run states, and a
//! property test that simulated runs always finish with every task decided exactly once.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use gust_core::dag::{Dag, DagSettings};
use gust_core::ids::{DagId, TaskId};
use gust_core::readiness::{run_state, settle, settle_changed};
use gust_core::state::{DagRunState, TaskEvent, TaskState};
use gust_core::task::{Task, TaskSettings};
use gust_core::trigger_rule::TriggerRule;
use indexmap::IndexMap;
use proptest::prelude::*;

fn id(name: &str) -> TaskId {
    TaskId::new(name).expect("a valid id")
}

fn dag(tasks: &[(&str, &[&str], TriggerRule)]) -> Dag {
    let tasks: IndexMap<TaskId, Task> = tasks
        .iter()
        .map(|(name, upstream, rule)| {
            let task = Task {
                id: id(name),
                operator: "empty".into(),
                args: serde_json::Map::new(),
                upstream: upstream.iter().map(|u| id(u)).collect(),
                group: None,
                settings: TaskSettings {
                    trigger_rule: *rule,
                    ..TaskSettings::default()
                },
                doc_md: None,
            };
            (task.id.clone(), task)
        })
        .collect();
    Dag::new(
        DagId::new("d").expect("id"),
        DagSettings::default(),
        tasks,
        IndexMap::new(),
        PathBuf::from("d.yaml"),
    )
    .expect("a DAG")
}

fn states(pairs: &[(&str, TaskState)]) -> HashMap<TaskId, TaskState> {
    pairs.iter().map(|(n, s)| (id(n), *s)).collect()
}

const ALL_SUCCESS: TriggerRule = TriggerRule::AllSuccess;

#[test]
fn the_seed_diamond_fans_out_then_joins() {
    let d = dag(&[
        ("t1", &[], ALL_SUCCESS),
        ("t2", &["t1"], ALL_SUCCESS),
        ("t3", &["t1"], ALL_SUCCESS),
        ("t4", &["t2", "t3"], ALL_SUCCESS),
    ]);
    assert_eq!(settle(&d, &HashMap::new(), |_| true).ready, [id("t1")]);
    let after_t1 = states(&[("t1", TaskState::Success)]);
    assert_eq!(settle(&d, &after_t1, |_| true).ready, [id("t2"), id("t3")]);
    let t2_done = states(&[
        ("t1", TaskState::Success),
        ("t2", TaskState::Success),
        ("t3", TaskState::Running),
    ]);
    assert!(settle(&d, &t2_done, |_| true).ready.is_empty());
}

#[test]
fn a_failure_marks_everything_downstream_upstream_failed_in_one_pass() {
    let d = dag(&[
        ("a", &[], ALL_SUCCESS),
        ("b", &["a"], ALL_SUCCESS),
        ("c", &["b"], ALL_SUCCESS),
        ("cleanup", &["c"], TriggerRule::AllDone),
    ]);
    let settled = settle(&d, &states(&[("a", TaskState::Failed)]), |_| true);
    assert_eq!(
        settled.finished,
        [
            (id("b"), TaskState::UpstreamFailed),
            (id("c"), TaskState::UpstreamFailed)
        ]
    );
    assert_eq!(settled.ready, [id("cleanup")]);
}

#[test]
fn a_skipped_upstream_skips_all_success_downstream() {
    let d = dag(&[
        ("branch", &[], ALL_SUCCESS),
        ("x", &["branch"], ALL_SUCCESS),
        ("y", &["x"], ALL_SUCCESS),
        ("join", &["y"], TriggerRule::NoneFailed),
    ]);
    let settled = settle(&d, &states(&[("branch", TaskState::Skipped)]), |_| true);
    assert_eq!(
        settled.finished,
        [(id("x"), TaskState::Skipped), (id("y"), TaskState::Skipped)]
    );
    assert_eq!(settled.ready, [id("join")]);
}

#[test]
fn depends_on_past_holds_a_ready_task_back() {
    let mut d = dag(&[("a", &[], ALL_SUCCESS)]);
    let settled = settle(&d, &HashMap::new(), |_| false);
    assert_eq!(settled.ready, [id("a")], "depends_on_past is off");
    d = {
        let t = d.tasks().next().expect("a").clone();
        let task = Task {
            settings: TaskSettings {
                depends_on_past: true,
                ..t.settings
            },
            ..t
        };
        Dag::new(
            d.id.clone(),
            d.settings.clone(),
            [(task.id.clone(), task)].into_iter().collect(),
            IndexMap::new(),
            d.fileloc.clone(),
        )
        .expect("dag")
    };
    assert!(settle(&d, &HashMap::new(), |_| false).ready.is_empty());
    assert_eq!(settle(&d, &HashMap::new(), |_| true).ready, [id("a")]);
}

#[test]
fn a_run_succeeds_when_its_leaves_succeed_or_skip_and_fails_when_one_fails() {
    let d = dag(&[
        ("a", &[], ALL_SUCCESS),
        ("b", &["a"], ALL_SUCCESS),
        ("c", &["a"], TriggerRule::OneFailed),
    ]);
    assert_eq!(
        run_state(&d, &states(&[("a", TaskState::Success)])),
        DagRunState::Running
    );
    assert_eq!(
        run_state(
            &d,
            &states(&[
                ("a", TaskState::Success),
                ("b", TaskState::Success),
                ("c", TaskState::Skipped)
            ])
        ),
        DagRunState::Success
    );
    assert_eq!(
        run_state(
            &d,
            &states(&[
                ("a", TaskState::Failed),
                ("b", TaskState::UpstreamFailed),
                ("c", TaskState::Success)
            ])
        ),
        DagRunState::Failed
    );
}

/// A random DAG: task i may depend on any task before it, with any trigger rule.
fn arbitrary_dag() -> impl Strategy<Value = Dag> {
    (1usize..24).prop_flat_map(|n| {
        let edges = proptest::collection::vec(proptest::collection::vec(any::<bool>(), n), n);
        let rules = proptest::collection::vec(0usize..TriggerRule::ALL.len(), n);
        (edges, rules).prop_map(move |(edges, rules)| {
            let names: Vec<String> = (0..n).map(|i| format!("t{i}")).collect();
            let specs: Vec<(String, Vec<String>, TriggerRule)> = (0..n)
                .map(|i| {
                    let ups = (0..i)
                        .filter(|j| edges[i][*j])
                        .map(|j| names[j].clone())
                        .collect();
                    (names[i].clone(), ups, TriggerRule::ALL[rules[i]])
                })
                .collect();
            let borrowed: Vec<(&str, Vec<&str>, TriggerRule)> = specs
                .iter()
                .map(|(n, u, r)| (n.as_str(), u.iter().map(String::as_str).collect(), *r))
                .collect();
            let refs: Vec<(&str, &[&str], TriggerRule)> = borrowed
                .iter()
                .map(|(n, u, r)| (*n, u.as_slice(), *r))
                .collect();
            dag(&refs)
        })
    })
}

proptest! {
    /// Drives a run to its end: every ready task is started once and ends in success or failure
    /// (chosen by `outcomes`). The run must always finish, no task may start twice, and every
    /// state change must be a legal transition.
    #[test]
    fn simulated_runs_always_finish_and_start_each_task_at_most_once(d in arbitrary_dag(), outcomes in proptest::collection::vec(any::<bool>(), 24)) {
        let mut states: HashMap<TaskId, TaskState> = HashMap::new();
        let mut started: HashSet<TaskId> = HashSet::new();
        for _round in 0..=d.tasks().len() {
            let settled = settle(&d, &states, |_| true);
            if settled.ready.is_empty() && settled.finished.is_empty() {
                break;
            }
            for (task, state) in settled.finished {
                let event = if state == TaskState::Skipped { TaskEvent::Skip } else { TaskEvent::UpstreamFail };
                let from = states.get(&task).copied().unwrap_or(TaskState::NoStatus);
                prop_assert_eq!(from.apply(event), Ok(state));
                states.insert(task, state);
            }
            for task in settled.ready {
                prop_assert!(started.insert(task.clone()), "{} started twice", task);
                let index: usize = task.as_str()[1..].parse().expect("t<i>");
                let mut state = TaskState::NoStatus;
                let end = if outcomes[index] { TaskEvent::Succeed } else { TaskEvent::Fail { can_retry: false } };
                for event in [TaskEvent::Schedule, TaskEvent::Queue, TaskEvent::Start, end] {
                    state = state.apply(event).expect("a legal move");
                }
                states.insert(task, state);
            }
        }
        prop_assert!(d.tasks().all(|t| states.get(&t.id).is_some_and(|s| s.is_finished())), "unfinished tasks: {:?}", states);
        prop_assert_ne!(run_state(&d, &states), DagRunState::Running);
    }

    /// From a settled run (its decisions applied, its ready tasks scheduled), moving any tasks
    /// and settling only what moved decides exactly what a whole pass decides.
    #[test]
    fn settling_what_changed_decides_as_a_whole_pass(
        d in arbitrary_dag(),
        before in proptest::collection::vec(0usize..6, 24),
        moved in proptest::collection::vec(proptest::option::of(0usize..6), 24),
    ) {
        let palette = [TaskState::NoStatus, TaskState::Success, TaskState::Failed, TaskState::Skipped, TaskState::Running, TaskState::UpstreamFailed];
        let mut states: HashMap<TaskId, TaskState> = d.tasks().enumerate().map(|(i, t)| (t.id.clone(), palette[before[i]])).collect();
        let first = settle(&d, &states, |_| true);
        states.extend(first.finished.iter().cloned());
        states.extend(first.ready.iter().map(|t| (t.clone(), TaskState::Scheduled)));
        let mut changed = Vec::new();
        for (i, task) in d.tasks().enumerate() {
            if let Some(state) = moved[i] {
                states.insert(task.id.clone(), palette[state]);
                changed.push(task.id.clone());
            }
        }
        let whole = settle(&d, &states, |_| true);
        let incremental = settle_changed(&d, &states, &changed, |_| true);
        prop_assert_eq!(incremental, whole);
    }

    /// Settling twice changes nothing the second time.
    #[test]
    fn settling_is_idempotent(d in arbitrary_dag(), seed in proptest::collection::vec(0usize..4, 24)) {
        let palette = [TaskState::Success, TaskState::Failed, TaskState::Skipped, TaskState::Running];
        let states: HashMap<TaskId, TaskState> = d.tasks().enumerate().filter(|(i, _)| i % 2 == 0).map(|(i, t)| (t.id.clone(), palette[seed[i]])).collect();
        let first = settle(&d, &states, |_| true);
        let mut after = states.clone();
        after.extend(first.finished.iter().cloned());
        let second = settle(&d, &after, |_| true);
        prop_assert!(second.finished.is_empty());
        prop_assert_eq!(second.ready, first.ready);
    }
}
