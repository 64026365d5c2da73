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
    dag_with_roles(tasks, &[])
}

/// Whether a task is an ordinary one, a setup or a teardown.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Role {
    Work,
    Setup,
    Teardown,
}

/// A DAG whose task `i` plays `roles[i]` (work when missing).
fn dag_with_roles(tasks: &[(&str, &[&str], TriggerRule)], roles: &[Role]) -> Dag {
    let tasks: IndexMap<TaskId, Task> = tasks
        .iter()
        .enumerate()
        .map(|(i, (name, upstream, rule))| {
            let role = roles.get(i).copied().unwrap_or(Role::Work);
            let task = Task {
                id: id(name),
                operator: "empty".into(),
                args: serde_json::Map::new(),
                upstream: upstream.iter().map(|u| id(u)).collect(),
                group: None,
                settings: TaskSettings {
                    trigger_rule: *rule,
                    is_setup: role == Role::Setup,
                    is_teardown: role == Role::Teardown,
                    ..TaskSettings::default()
                },
                doc_md: None,
                mapping: None,
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

/// A random DAG: task i may depend on any task before it, with any trigger rule; about one
/// task in six is a setup and one in six a teardown.
fn arbitrary_dag() -> impl Strategy<Value = Dag> {
    (1usize..24).prop_flat_map(|n| {
        let edges = proptest::collection::vec(proptest::collection::vec(any::<bool>(), n), n);
        let rules = proptest::collection::vec(0usize..TriggerRule::ALL.len(), n);
        let roles = proptest::collection::vec(0usize..6, n);
        (edges, rules, roles).prop_map(move |(edges, rules, roles)| {
            let roles: Vec<Role> = roles
                .iter()
                .map(|r| match r {
                    0 => Role::Setup,
                    1 => Role::Teardown,
                    _ => Role::Work,
                })
                .collect();
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
            dag_with_roles(&refs, &roles)
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

#[test]
fn a_teardown_runs_after_its_scope_whatever_the_work_did_and_does_not_fail_the_run() {
    use TaskState as S;
    const SETUP_SUCCESS: TriggerRule = TriggerRule::AllDoneSetupSuccess;
    // create >> work1 >> work2 >> delete, create >> delete; report after work2.
    let d = dag_with_roles(
        &[
            ("create", &[], ALL_SUCCESS),
            ("work1", &["create"], ALL_SUCCESS),
            ("work2", &["work1"], TriggerRule::AllDone),
            ("delete", &["create", "work2"], SETUP_SUCCESS),
        ],
        &[Role::Setup, Role::Work, Role::Work, Role::Teardown],
    );
    // The work failed: the teardown still runs once the scope is done.
    let run = states(&[
        ("create", S::Success),
        ("work1", S::Failed),
        ("work2", S::Success),
    ]);
    assert_eq!(settle(&d, &run, |_| true).ready, [id("delete")]);
    // The teardown failing does not fail the run; the work's leaf decides.
    let mut done = run.clone();
    done.insert(id("delete"), S::Failed);
    assert_eq!(run_state(&d, &done), DagRunState::Success);
    done.insert(id("work2"), S::Failed);
    assert_eq!(run_state(&d, &done), DagRunState::Failed);
    // The setup failed: the work is upstream_failed, and so is the teardown.
    let settled = settle(&d, &states(&[("create", S::Failed)]), |_| true);
    assert!(settled.finished.contains(&(id("work1"), S::UpstreamFailed)));
    assert!(
        settled
            .finished
            .contains(&(id("delete"), S::UpstreamFailed))
    );
    // The setup was skipped: the teardown is skipped too.
    let settled = settle(&d, &states(&[("create", S::Skipped)]), |_| true);
    assert!(settled.finished.contains(&(id("delete"), S::Skipped)));
}

#[test]
fn work_after_a_setup_waits_for_it_even_when_its_own_rule_would_not() {
    use TaskState as S;
    // setup >> a >> b, where b's rule (always) would run it at once; b is in setup's scope
    // (setup has no teardown), so it waits for setup, and fails with it.
    let d = dag_with_roles(
        &[
            ("setup", &[], ALL_SUCCESS),
            ("a", &["setup"], ALL_SUCCESS),
            ("b", &["a"], TriggerRule::Always),
        ],
        &[Role::Setup],
    );
    let running = settle(&d, &states(&[("setup", S::Running)]), |_| true);
    assert!(running.ready.is_empty(), "{running:?}");
    let failed = settle(&d, &states(&[("setup", S::Failed)]), |_| true);
    assert!(failed.finished.contains(&(id("b"), S::UpstreamFailed)));
}

#[test]
fn with_all_success_a_failure_beats_a_skip_whichever_finished_first() {
    use TaskState as S;
    let d = dag(&[
        ("a", &[], ALL_SUCCESS),
        ("b", &[], ALL_SUCCESS),
        ("c", &["a", "b"], ALL_SUCCESS),
    ]);
    // The skip is known first: nothing is decided until the other upstream ends.
    let early = settle(&d, &states(&[("a", S::Skipped), ("b", S::Running)]), |_| {
        true
    });
    assert!(early.finished.is_empty(), "{early:?}");
    let late = settle(&d, &states(&[("a", S::Skipped), ("b", S::Failed)]), |_| {
        true
    });
    assert_eq!(late.finished, [(id("c"), S::UpstreamFailed)]);
    let reverse = settle(&d, &states(&[("a", S::Failed), ("b", S::Running)]), |_| {
        true
    });
    assert_eq!(reverse.finished, [(id("c"), S::UpstreamFailed)]);
}
