//! Crash safety: the scheduler is killed with SIGKILL at arbitrary moments of a run, many times,
//! and restarted. The run must always complete with every task's side effect happening exactly
//! once: no try is lost, none runs twice, none that finished runs again. On SQLite and on
//! PostgreSQL.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gust_core::state::{DagRunState, TaskState};
use gust_store::testing::TestDb;

mod common;
use common::{gust_process, kill9};

const TASKS: [&str; 8] = ["a", "b", "c", "d", "e", "f", "g", "h"];

/// A diamond-and-chain DAG whose tasks append their name to a file, taking a little time so
/// that kills land before, during and after tries.
fn dag_file(side_effects: &Path) -> String {
    let mut text = "crashy:\n  schedule: null\n  is_paused_upon_creation: false\n  default_args: {retries: 2, retry_delay: 0, do_xcom_push: false}\n  tasks:\n".to_owned();
    for (i, task) in TASKS.iter().enumerate() {
        text.push_str(&format!(
            "    {task}:\n      operator: BashOperator\n      bash_command: 'sleep 0.{i}; echo {task} >> {}; sleep 0.{}'\n      dependencies: [{}]\n",
            side_effects.display(),
            7 - i,
            upstream(task).join(", ")
        ));
    }
    text
}

/// The same DAG with pod tasks, whose pods take a little time and push an XCom.
fn pod_dag_file() -> String {
    let mut text = "crashy:\n  schedule: null\n  is_paused_upon_creation: false\n  default_args: {retries: 2, retry_delay: 0, do_xcom_push: true}\n  tasks:\n".to_owned();
    for task in TASKS {
        text.push_str(&format!(
            "    {task}:\n      operator: KubernetesPodOperator\n      image: work\n      dependencies: [{}]\n",
            upstream(task).join(", ")
        ));
    }
    text
}

fn upstream(task: &str) -> Vec<&'static str> {
    match task {
        "a" => vec![],
        "b" | "c" | "d" => vec!["a"],
        "e" => vec!["b", "c", "d"],
        "f" | "g" => vec!["e"],
        _ => vec!["f", "g"],
    }
}

/// The test run's final state, once the restarted scheduler has finished it (at most 60 s).
async fn run_end(db: &TestDb) -> DagRunState {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let run = db.store.run("crashy", "crash-test").await.expect("read");
        match run.map(|r| r.state) {
            Some(s @ (DagRunState::Success | DagRunState::Failed)) => return s,
            _ if Instant::now() > deadline => panic!("the run did not finish after the crashes"),
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Where the crash tests' tasks append their side effects, in `home`.
fn side_effects_in(home: &Path) -> std::path::PathBuf {
    home.join("side-effects.txt")
}

/// A GUST_HOME whose DAGs folder holds one DAG, `crashy`, with a fake cluster's kubeconfig
/// when its tasks run pods.
struct CrashHome {
    home: tempfile::TempDir,
    kubeconfig: Option<std::path::PathBuf>,
}

impl CrashHome {
    /// The DAG file is `dag(home)`, given the home (where side effects go).
    fn new(dag: impl FnOnce(&Path) -> String) -> Self {
        let home = tempfile::tempdir().expect("home");
        std::fs::create_dir_all(home.path().join("dags")).expect("dags");
        std::fs::write(home.path().join("dags/crashy.yaml"), dag(home.path())).expect("dag");
        Self {
            home,
            kubeconfig: None,
        }
    }

    /// The same, its pods run by `fake`.
    fn on_cluster(fake: &gust_kube_fake::FakeCluster, dag: &str) -> Self {
        let mut crash = Self::new(|_| dag.to_owned());
        let kubeconfig = crash.home.path().join("kubeconfig");
        std::fs::write(&kubeconfig, fake.kubeconfig_yaml()).expect("kubeconfig");
        crash.kubeconfig = Some(kubeconfig);
        crash
    }

    /// The file the DAG's tasks append their side effects to.
    fn side_effects(&self) -> std::path::PathBuf {
        side_effects_in(self.home.path())
    }

    /// `gust` on `db` (and the fake cluster).
    fn gust(&self, db: &TestDb) -> Command {
        let mut command = gust_process(self.home.path(), &db.url);
        if let Some(kubeconfig) = &self.kubeconfig {
            command.env("GUST__KUBERNETES__CONFIG_FILE", kubeconfig);
        }
        command
    }

    /// Triggers the run the crash tests follow, `crash-test`.
    fn trigger(&self, db: &TestDb) {
        let trigger = self
            .gust(db)
            .args(["dags", "trigger", "crashy", "--run-id", "crash-test"])
            .output()
            .expect("trigger");
        assert!(trigger.status.success(), "{trigger:?}");
    }

    /// Starts a scheduler.
    fn scheduler(&self, db: &TestDb) -> Child {
        self.gust(db)
            .arg("scheduler")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the scheduler starts")
    }
}

/// Kills the scheduler `rounds` times at spread-out moments, then lets a last one finish the
/// run; returns the run's end. `start` starts a scheduler.
async fn kill_and_finish(db: &TestDb, rounds: u64, start: impl Fn() -> Child) -> DagRunState {
    for round in 0..rounds {
        let child = start();
        tokio::time::sleep(Duration::from_millis(150 + (round * 137) % 700)).await;
        kill9(child);
    }
    let child = start();
    let state = run_end(db).await;
    kill9(child);
    state
}

async fn crash_many_times(db: TestDb) {
    let crash = CrashHome::new(|home| dag_file(&side_effects_in(home)));
    let side = crash.side_effects();
    crash.trigger(&db);
    // Kill it at spread-out moments: during start-up, while tries are handed over, mid-try.
    let state = kill_and_finish(&db, 16, || crash.scheduler(&db)).await;
    let tis = db
        .store
        .task_instances("crashy", "crash-test")
        .await
        .expect("tis");
    let tries = db
        .store
        .tries_of_run("crashy", "crash-test")
        .await
        .expect("tries");
    assert_eq!(state, DagRunState::Success, "{tis:#?}\n{tries:#?}");
    assert!(
        tis.iter().all(|t| t.state == TaskState::Success),
        "{tis:#?}"
    );
    let effects = std::fs::read_to_string(&side).expect("side effects");
    let mut lines: Vec<&str> = effects.lines().collect();
    lines.sort_unstable();
    assert_eq!(
        lines, TASKS,
        "each task's side effect exactly once\n{tries:#?}"
    );
    // The kills must have landed mid-try, or this test proves nothing.
    let adopted = tries
        .iter()
        .filter(|t| {
            let log = crash.home.path().join(format!(
                "logs/dag_id=crashy/run_id=crash-test/task_id={}/attempt={}.log",
                t.task_id, t.try_number
            ));
            std::fs::read_to_string(log).is_ok_and(|text| text.contains("adopted the try"))
        })
        .count();
    assert!(adopted > 0, "no kill landed while a try ran");
    db.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_scheduler_survives_sigkill_at_any_moment() {
    crash_many_times(TestDb::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_scheduler_survives_sigkill_at_any_moment() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    crash_many_times(db).await;
}

/// The pod runtime under the same kills: each task's pod is created exactly once, and every
/// task ends with its pod's XCom.
async fn crash_many_times_with_pods(db: TestDb) {
    let fake = gust_kube_fake::FakeCluster::start().await;
    fake.script(
        "work",
        gust_kube_fake::PodScript {
            runs_for: Duration::from_millis(500),
            xcom: Some(r#"{"done": true}"#.into()),
            ..gust_kube_fake::PodScript::default()
        },
    );
    let crash = CrashHome::on_cluster(&fake, &pod_dag_file());
    crash.trigger(&db);
    let state = kill_and_finish(&db, 12, || crash.scheduler(&db)).await;
    let tries = db
        .store
        .tries_of_run("crashy", "crash-test")
        .await
        .expect("tries");
    assert_eq!(state, DagRunState::Success, "{tries:#?}");
    let xcoms = db
        .store
        .xcoms_of_run("crashy", "crash-test")
        .await
        .expect("xcoms");
    assert_eq!(
        xcoms.len(),
        TASKS.len(),
        "every task kept its pod's XCom: {xcoms:#?}"
    );
    assert_eq!(
        fake.created_count(),
        TASKS.len() as u64,
        "each task's pod created exactly once\n{tries:#?}"
    );
    let reattached = TASKS
        .iter()
        .filter(|task| {
            let log = crash.home.path().join(format!(
                "logs/dag_id=crashy/run_id=crash-test/task_id={task}/attempt=1.log"
            ));
            std::fs::read_to_string(log).is_ok_and(|text| text.contains("re-attached to pod"))
        })
        .count();
    assert!(reattached > 0, "no kill landed while a pod ran");
    db.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_scheduler_with_pods_survives_sigkill_at_any_moment() {
    crash_many_times_with_pods(TestDb::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_scheduler_with_pods_survives_sigkill_at_any_moment() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    crash_many_times_with_pods(db).await;
}

/// How many instances the mapped task of the mapped crash tests gets.
const ITEMS: usize = 16;

/// A task mapped over a list written in the file (its instances append their item to a file,
/// four at a time), between an unmapped first and last task.
fn mapped_dag_file(side_effects: &Path) -> String {
    let side = side_effects.display();
    let commands: Vec<String> = (0..ITEMS)
        .map(|i| format!("'sleep 0.{}; echo m{i} >> {side}; sleep 0.2'", i % 3))
        .collect();
    format!(
        "crashy:\n  schedule: null\n  is_paused_upon_creation: false\n  default_args: {{retries: 2, retry_delay: 0, do_xcom_push: false}}\n  tasks:\n    a:\n      operator: BashOperator\n      bash_command: 'sleep 0.3; echo a >> {side}'\n    m:\n      operator: BashOperator\n      max_active_tis_per_dagrun: 4\n      expand:\n        bash_command: [{}]\n      dependencies: [a]\n    z:\n      operator: BashOperator\n      bash_command: 'echo z >> {side}'\n      dependencies: [m]\n",
        commands.join(", ")
    )
}

/// Expansion and the instances under the same kills: every instance runs exactly once, the
/// mapped task keeps its instances, and no more than four ran at once.
async fn crash_mapped_many_times(db: TestDb) {
    let crash = CrashHome::new(|home| mapped_dag_file(&side_effects_in(home)));
    let side = crash.side_effects();
    crash.trigger(&db);
    let state = kill_and_finish(&db, 14, || crash.scheduler(&db)).await;
    let tis = db
        .store
        .task_instances("crashy", "crash-test")
        .await
        .expect("tis");
    let tries = db
        .store
        .tries_of_run("crashy", "crash-test")
        .await
        .expect("tries");
    assert_eq!(state, DagRunState::Success, "{tis:#?}\n{tries:#?}");
    let mut mapped: Vec<i32> = tis
        .iter()
        .filter(|t| t.task_id == "m")
        .map(|t| t.map_index)
        .collect();
    mapped.sort_unstable();
    let every: Vec<i32> = (0..ITEMS as i32).collect();
    assert_eq!(mapped, every, "one instance per item, expanded once");
    assert!(
        tis.iter().all(|t| t.state == TaskState::Success),
        "{tis:#?}"
    );
    let effects = std::fs::read_to_string(&side).expect("side effects");
    let mut lines: Vec<String> = effects.lines().map(str::to_owned).collect();
    lines.sort_unstable();
    let mut expected: Vec<String> = (0..ITEMS).map(|i| format!("m{i}")).collect();
    expected.extend(["a".to_owned(), "z".to_owned()]);
    expected.sort_unstable();
    assert_eq!(
        lines, expected,
        "each instance's side effect exactly once\n{tries:#?}"
    );
    // max_active_tis_per_dagrun: no more than four instances' tries overlapped, even across
    // restarts (a restarted scheduler counts the tries it adopts).
    let spans: Vec<_> = tries
        .iter()
        .filter(|t| t.task_id == "m")
        .filter_map(|t| Some((t.start_date?, t.end_date?)))
        .collect();
    for (start, _) in &spans {
        let overlapping = spans
            .iter()
            .filter(|(s, e)| s <= start && start < e)
            .count();
        assert!(
            overlapping <= 4,
            "{overlapping} instances ran at once: {spans:#?}"
        );
    }
    db.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_scheduler_expanding_a_mapped_task_survives_sigkill() {
    crash_mapped_many_times(TestDb::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_scheduler_expanding_a_mapped_task_survives_sigkill() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    crash_mapped_many_times(db).await;
}

/// A pod task mapped over another pod's XCom, under the same kills: the list's pod and each
/// instance's pod are created exactly once, and the last task pulls every instance's XCom.
async fn crash_mapped_pods_many_times(db: TestDb) {
    let fake = gust_kube_fake::FakeCluster::start().await;
    // Each item is one instance's `arguments`, a list of words.
    let items: Vec<Vec<String>> = (0..ITEMS).map(|i| vec![format!("item-{i}")]).collect();
    fake.script(
        "lister",
        gust_kube_fake::PodScript {
            runs_for: Duration::from_millis(300),
            xcom: Some(serde_json::to_string(&items).expect("json")),
            ..gust_kube_fake::PodScript::default()
        },
    );
    fake.script(
        "work",
        gust_kube_fake::PodScript {
            runs_for: Duration::from_millis(400),
            xcom: Some(r#"{"done": true}"#.into()),
            ..gust_kube_fake::PodScript::default()
        },
    );
    let dag = "crashy:\n  schedule: null\n  is_paused_upon_creation: false\n  default_args: {retries: 2, retry_delay: 0}\n  tasks:\n    list:\n      operator: KubernetesPodOperator\n      image: lister\n      do_xcom_push: true\n    each:\n      operator: KubernetesPodOperator\n      do_xcom_push: true\n      max_active_tis_per_dagrun: 6\n      partial: {image: work}\n      expand:\n        arguments: list.output\n";
    let crash = CrashHome::on_cluster(&fake, dag);
    crash.trigger(&db);
    let state = kill_and_finish(&db, 12, || crash.scheduler(&db)).await;
    let tries = db
        .store
        .tries_of_run("crashy", "crash-test")
        .await
        .expect("tries");
    assert_eq!(state, DagRunState::Success, "{tries:#?}");
    assert_eq!(
        fake.created_count(),
        1 + ITEMS as u64,
        "each pod created exactly once\n{tries:#?}"
    );
    let xcoms = db
        .store
        .xcoms_of_run("crashy", "crash-test")
        .await
        .expect("xcoms");
    assert_eq!(
        xcoms.iter().filter(|x| x.task_id == "each").count(),
        ITEMS,
        "every instance kept its pod's XCom: {xcoms:#?}"
    );
    db.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_scheduler_with_mapped_pods_survives_sigkill() {
    crash_mapped_pods_many_times(TestDb::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_scheduler_with_mapped_pods_survives_sigkill() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    crash_mapped_pods_many_times(db).await;
}
