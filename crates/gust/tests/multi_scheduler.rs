//! Several schedulers on one PostgreSQL database, one of them killed with SIGKILL over and over
//! and restarted while a busy set of DAGs runs: the others take over its DAGs and adopt its
//! tries, and every task's side effect still happens exactly once, with no run created or task
//! queued twice. And a missed deadline's webhook is sent exactly once by two schedulers, even
//! when the one holding the DAG is killed before the deadline passes.

use std::collections::HashSet;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gust_core::state::{DagRunState, TaskState};
use gust_store::DeliveryStatus;
use gust_store::testing::TestDb;

mod common;
use common::{gust_process, kill9};

const DAGS: usize = 6;
const RUNS_PER_DAG: usize = 2;
const TASKS: [&str; 8] = ["a", "b", "c", "d", "e", "f", "g", "h"];

fn upstream(task: &str) -> &'static str {
    match task {
        "a" => "",
        "b" | "c" | "d" => "a",
        "e" => "b, c, d",
        "f" | "g" => "e",
        _ => "f, g",
    }
}

/// A DAG of pod tasks, whose pods take a little time and push an XCom.
fn pod_dag_file(dag: &str) -> String {
    let mut text = format!(
        "{dag}:\n  schedule: null\n  is_paused_upon_creation: false\n  default_args: {{retries: 2, retry_delay: 0, do_xcom_push: true}}\n  tasks:\n"
    );
    for task in TASKS {
        text.push_str(&format!(
            "    {task}:\n      operator: KubernetesPodOperator\n      image: work\n      dependencies: [{}]\n",
            upstream(task)
        ));
    }
    text
}

/// A DAG whose tasks append `DAG RUN TASK` to `side_effects`, taking a little time so that
/// kills land before, during and after tries.
fn dag_file(dag: &str, side_effects: &Path) -> String {
    let mut text = format!(
        "{dag}:\n  schedule: null\n  is_paused_upon_creation: false\n  default_args: {{retries: 2, retry_delay: 0, do_xcom_push: false}}\n  tasks:\n"
    );
    for (i, task) in TASKS.iter().enumerate() {
        text.push_str(&format!(
            "    {task}:\n      operator: BashOperator\n      bash_command: 'sleep 0.{i}; echo \"{{{{ dag.dag_id }}}} {{{{ run_id }}}} {task}\" >> {}; sleep 0.{}'\n      dependencies: [{}]\n",
            side_effects.display(),
            7 - i,
            upstream(task)
        ));
    }
    text
}

fn gust(home: &Path, url: &str) -> Command {
    let mut command = gust_process(home, url);
    command.env("GUST__SCHEDULER__SCHEDULER_HEALTH_CHECK_THRESHOLD", "5s");
    command
}

/// A scheduler process, its warnings and errors kept in `home/schedulers/N.log`.
fn scheduler(home: &Path, url: &str) -> Child {
    static STARTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    std::fs::create_dir_all(home.join("schedulers")).expect("folder");
    let log = std::fs::File::create(home.join(format!("schedulers/{n}.log"))).expect("log");
    gust(home, url)
        .arg("scheduler")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("a scheduler starts")
}

/// What the schedulers logged, for a failure's message.
fn scheduler_logs(home: &Path) -> String {
    let mut logs = String::new();
    for entry in std::fs::read_dir(home.join("schedulers"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        if !text.is_empty() {
            logs.push_str(&format!("== {}\n{text}", entry.path().display()));
        }
    }
    logs
}

fn run_id(run: usize) -> String {
    format!("busy-{run}")
}

/// Whether every run has finished, waiting at most until `deadline`.
async fn all_finished(db: &TestDb, deadline: Instant) -> bool {
    loop {
        let mut done = 0;
        for dag in 0..DAGS {
            for run in 0..RUNS_PER_DAG {
                let stored = db
                    .store
                    .run(&format!("busy_{dag}"), &run_id(run))
                    .await
                    .expect("read");
                if stored
                    .is_some_and(|r| matches!(r.state, DagRunState::Success | DagRunState::Failed))
                {
                    done += 1;
                }
            }
        }
        if done == DAGS * RUNS_PER_DAG {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_schedulers_one_killed_repeatedly_run_every_task_exactly_once() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let home = tempfile::tempdir().expect("home");
    let side = home.path().join("side-effects.txt");
    std::fs::create_dir_all(home.path().join("dags")).expect("dags");
    for dag in 0..DAGS {
        let id = format!("busy_{dag}");
        std::fs::write(
            home.path().join(format!("dags/{id}.yaml")),
            dag_file(&id, &side),
        )
        .expect("dag");
    }
    for dag in 0..DAGS {
        for run in 0..RUNS_PER_DAG {
            let trigger = gust(home.path(), &db.url)
                .args(["dags", "trigger", &format!("busy_{dag}"), "--run-id"])
                .arg(run_id(run))
                .output()
                .expect("trigger");
            assert!(trigger.status.success(), "{trigger:?}");
        }
    }

    let mut schedulers: Vec<Child> = (0..3).map(|_| scheduler(home.path(), &db.url)).collect();
    // Kill one of them at spread-out moments, a different one each time, and start it again.
    for round in 0..14u64 {
        tokio::time::sleep(Duration::from_millis(300 + (round * 211) % 600)).await;
        let victim = usize::try_from(round).expect("small") % schedulers.len();
        let killed = std::mem::replace(&mut schedulers[victim], scheduler(home.path(), &db.url));
        kill9(killed);
    }
    let finished = all_finished(&db, Instant::now() + Duration::from_secs(120)).await;
    let holders: HashSet<Option<String>> = db
        .store
        .dag_claims()
        .await
        .expect("claims")
        .into_iter()
        .map(|claim| claim.scheduler_id)
        .collect();
    for child in schedulers {
        kill9(child);
    }

    let mut tries = Vec::new();
    for dag in 0..DAGS {
        for run in 0..RUNS_PER_DAG {
            let (dag, run) = (format!("busy_{dag}"), run_id(run));
            let stored = db.store.run(&dag, &run).await.expect("run");
            let tis = db.store.task_instances(&dag, &run).await.expect("tis");
            let run_tries = db.store.tries_of_run(&dag, &run).await.expect("tries");
            assert!(
                finished,
                "the runs did not all finish: {dag} {run} {stored:?}"
            );
            assert_eq!(
                stored.map(|r| r.state),
                Some(DagRunState::Success),
                "{dag} {run}: {tis:#?}\n{run_tries:#?}"
            );
            assert!(
                tis.iter().all(|t| t.state == TaskState::Success),
                "{tis:#?}"
            );
            tries.extend(run_tries.into_iter().map(|t| (dag.clone(), run.clone(), t)));
        }
    }
    let effects = std::fs::read_to_string(&side).expect("side effects");
    let mut lines: Vec<&str> = effects.lines().collect();
    lines.sort_unstable();
    let mut expected: Vec<String> = (0..DAGS)
        .flat_map(|dag| {
            (0..RUNS_PER_DAG).flat_map(move |run| {
                TASKS
                    .iter()
                    .map(move |task| format!("busy_{dag} {} {task}", run_id(run)))
            })
        })
        .collect();
    expected.sort_unstable();
    assert_eq!(
        lines,
        expected,
        "each task's side effect exactly once\n{tries:#?}\n{}",
        scheduler_logs(home.path())
    );
    for dag in 0..DAGS {
        let runs = db
            .store
            .runs_of_dag(&format!("busy_{dag}"), 100)
            .await
            .expect("runs");
        assert_eq!(runs.len(), RUNS_PER_DAG, "no run was created twice");
    }
    // The kills must have landed while tries ran, and the work must have been shared.
    let adopted = tries
        .iter()
        .filter(|(dag, run, t)| {
            let log = home.path().join(format!(
                "logs/dag_id={dag}/run_id={run}/task_id={}/attempt={}.log",
                t.task_id, t.try_number
            ));
            std::fs::read_to_string(log).is_ok_and(|text| text.contains("adopted the try"))
        })
        .count();
    assert!(adopted > 0, "no kill landed while a try ran");
    assert!(
        holders.len() >= 2,
        "the DAGs were not shared among the schedulers: {holders:?}\n{}",
        scheduler_logs(home.path())
    );
    db.finish().await;
}

/// The same with pod tasks on a (fake) cluster: a scheduler taking over a dead one's DAGs
/// re-attaches to its pods rather than creating them again, and none sweeps away the pods of
/// the DAGs another scheduler drives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_schedulers_one_killed_repeatedly_create_each_pod_exactly_once() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let fake = gust_kube_fake::FakeCluster::start().await;
    fake.script(
        "work",
        gust_kube_fake::PodScript {
            runs_for: Duration::from_millis(500),
            xcom: Some(r#"{"done": true}"#.into()),
            ..gust_kube_fake::PodScript::default()
        },
    );
    let home = tempfile::tempdir().expect("home");
    std::fs::write(home.path().join("kubeconfig"), fake.kubeconfig_yaml()).expect("kubeconfig");
    // Every process of this test finds the cluster through gust.toml.
    std::fs::write(
        home.path().join("gust.toml"),
        format!(
            "[kubernetes]\nconfig_file = \"{}\"\n",
            home.path().join("kubeconfig").display()
        ),
    )
    .expect("config");
    std::fs::create_dir_all(home.path().join("dags")).expect("dags");
    for dag in 0..DAGS {
        let id = format!("busy_{dag}");
        std::fs::write(
            home.path().join(format!("dags/{id}.yaml")),
            pod_dag_file(&id),
        )
        .expect("dag");
    }
    for dag in 0..DAGS {
        for run in 0..RUNS_PER_DAG {
            let trigger = gust(home.path(), &db.url)
                .args(["dags", "trigger", &format!("busy_{dag}"), "--run-id"])
                .arg(run_id(run))
                .output()
                .expect("trigger");
            assert!(trigger.status.success(), "{trigger:?}");
        }
    }
    let mut schedulers: Vec<Child> = (0..3).map(|_| scheduler(home.path(), &db.url)).collect();
    for round in 0..10u64 {
        tokio::time::sleep(Duration::from_millis(400 + (round * 211) % 600)).await;
        let victim = usize::try_from(round).expect("small") % schedulers.len();
        let killed = std::mem::replace(&mut schedulers[victim], scheduler(home.path(), &db.url));
        kill9(killed);
    }
    let finished = all_finished(&db, Instant::now() + Duration::from_secs(120)).await;
    for child in schedulers {
        kill9(child);
    }
    let logs = scheduler_logs(home.path());
    assert!(finished, "the runs did not all finish\n{logs}");
    let mut xcoms = 0;
    for dag in 0..DAGS {
        for run in 0..RUNS_PER_DAG {
            let (dag, run) = (format!("busy_{dag}"), run_id(run));
            let stored = db.store.run(&dag, &run).await.expect("run");
            let tries = db.store.tries_of_run(&dag, &run).await.expect("tries");
            assert_eq!(
                stored.map(|r| r.state),
                Some(DagRunState::Success),
                "{dag} {run}: {tries:#?}\n{logs}"
            );
            xcoms += db
                .store
                .xcoms_of_run(&dag, &run)
                .await
                .expect("xcoms")
                .len();
        }
    }
    let pods = DAGS * RUNS_PER_DAG * TASKS.len();
    assert_eq!(xcoms, pods, "every task kept its pod's XCom");
    assert_eq!(
        fake.created_count(),
        pods as u64,
        "each task's pod created exactly once\n{logs}"
    );
    db.finish().await;
}

/// A local webhook receiver on a loopback port: its base URL and every request's path and body.
async fn webhook_catcher() -> (String, Arc<Mutex<Vec<(String, String)>>>) {
    let caught: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let kept = caught.clone();
    let app = axum::Router::new().fallback(move |uri: axum::http::Uri, body: String| {
        let kept = kept.clone();
        async move {
            kept.lock()
                .expect("a lock")
                .push((uri.path().to_owned(), body));
            "ok"
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let base = format!("http://{}", listener.local_addr().expect("an address"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, caught)
}

/// A DAG whose runs outlast their deadline (6 s after they are queued), which a webhook to
/// `base` reports.
fn deadline_dag_file(base: &str) -> String {
    format!(
        r#"late:
  schedule: null
  is_paused_upon_creation: false
  deadline:
    name: six seconds
    reference: DAGRUN_QUEUED_AT
    interval: 6s
    callback: {{callback: webhook, url: "{base}/late", json: {{run: "{{{{ run_id }}}}"}}}}
  tasks:
    slow:
      operator: BashOperator
      bash_command: sleep 10
"#
    )
}

/// Waits until `run` of DAG `late` has ended, for at most a minute.
async fn wait_for_late(db: &TestDb, run: &str, home: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let stored = db.store.run("late", run).await.expect("read");
        if stored.is_some_and(|r| matches!(r.state, DagRunState::Success | DagRunState::Failed)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "run {run} did not end in a minute\n{}",
            scheduler_logs(home)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Two schedulers on one database: a run that misses its deadline gets exactly one webhook,
/// recorded once, both while both schedulers live and when the one holding the DAG is killed
/// with SIGKILL after storing the deadline and before it passes (the other takes the DAG over
/// and sends it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_schedulers_send_a_missed_deadline_once_even_when_its_holder_is_killed() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let (base, caught) = webhook_catcher().await;
    let home = tempfile::tempdir().expect("home");
    std::fs::create_dir_all(home.path().join("dags")).expect("dags");
    std::fs::write(home.path().join("dags/late.yaml"), deadline_dag_file(&base)).expect("dag");
    let mut schedulers: Vec<Option<Child>> = (0..2)
        .map(|_| Some(scheduler(home.path(), &db.url)))
        .collect();
    let trigger = |run: &str| {
        let output = gust(home.path(), &db.url)
            .args(["dags", "trigger", "late", "--run-id", run])
            .output()
            .expect("trigger");
        assert!(output.status.success(), "{output:?}");
    };

    trigger("both-alive");
    wait_for_late(&db, "both-alive", home.path()).await;

    trigger("holder-killed");
    // The holder stores the run's deadline once it drives the run; kill it then.
    let started = Instant::now();
    let due = loop {
        let (pending, _) = db
            .store
            .deadlines(Some("late"), Some("holder-killed"), Some(false), 10, 0)
            .await
            .expect("deadlines");
        if let Some(stored) = pending.first() {
            break stored.deadline.deadline_time;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the deadline was never stored\n{}",
            scheduler_logs(home.path())
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let holder = db
        .store
        .dag_claims()
        .await
        .expect("claims")
        .into_iter()
        .find(|claim| claim.dag_id == "late")
        .and_then(|claim| claim.scheduler_id)
        .expect("a scheduler holds the DAG");
    let pid: u32 = holder
        .rsplit_once(':')
        .and_then(|(_, pid)| pid.parse().ok())
        .expect("HOST:PID");
    let victim = schedulers
        .iter_mut()
        .find(|child| child.as_ref().is_some_and(|c| c.id() == pid))
        .and_then(Option::take)
        .expect("the holder is one of the test's schedulers");
    kill9(victim);
    assert!(
        gust_core::clock::Clock::now(&gust_core::clock::SystemClock) < due,
        "the holder was killed after the deadline passed: the test proved nothing"
    );
    wait_for_late(&db, "holder-killed", home.path()).await;
    // Long enough for a second sending to show.
    tokio::time::sleep(Duration::from_secs(1)).await;
    for child in schedulers.into_iter().flatten() {
        kill9(child);
    }

    let logs = scheduler_logs(home.path());
    let mut sent: Vec<String> = caught
        .lock()
        .expect("a lock")
        .iter()
        .map(|(path, body)| {
            assert_eq!(path, "/late");
            let body: serde_json::Value = serde_json::from_str(body).expect("JSON");
            body["run"].as_str().expect("the run").to_owned()
        })
        .collect();
    sent.sort_unstable();
    assert_eq!(
        sent,
        ["both-alive", "holder-killed"],
        "one webhook per run\n{logs}"
    );
    for run in ["both-alive", "holder-killed"] {
        let (deliveries, _) = db
            .store
            .deliveries("late", Some(run), 10, 0)
            .await
            .expect("deliveries");
        assert_eq!(deliveries.len(), 1, "{run}: {deliveries:#?}\n{logs}");
        assert_eq!(deliveries[0].delivery.event, "deadline");
        assert_eq!(deliveries[0].status, DeliveryStatus::Sent, "{run}");
        let (missed, _) = db
            .store
            .deadlines(Some("late"), Some(run), Some(true), 10, 0)
            .await
            .expect("deadlines");
        assert_eq!(missed.len(), 1, "{run}: the deadline is recorded as missed");
    }
    db.finish().await;
}
