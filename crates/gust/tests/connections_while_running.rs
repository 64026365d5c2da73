//! Connections take effect while the scheduler runs: one added, changed or deleted with
//! `gust connections add`/`delete` reaches the next try that starts, as an Airflow task fetches
//! its connection when it runs. The `gust scheduler` binary runs as a user runs it, on a real
//! SQLite database, with the local pod runtime and with fake Kubernetes clusters.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use gust_core::state::DagRunState;
use gust_store::testing::TestDb;

mod common;
use common::gust_process;

/// `gust` on `db` with `home` as GUST_HOME and `home/dags` as its DAGs folder.
fn gust(home: &Path, url: &str) -> Command {
    let mut command = gust_process(home, url);
    command
        .env_remove("GUST__KUBERNETES__RUNTIME")
        // No cluster unless a connection names one (not even the pod's, when tests run in one).
        .env("KUBECONFIG", home.join("no-kubeconfig"))
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("KUBERNETES_SERVICE_PORT")
        .env("RUST_LOG", "info");
    command
}

/// A scheduler whose output goes to `home/scheduler.log`; killed when dropped.
struct Scheduler {
    child: Child,
    log: PathBuf,
}

impl Scheduler {
    /// Starts it and waits until it has read the connections and runs (its banner's last line).
    async fn start(mut command: Command, home: &Path) -> Self {
        let log = home.join("scheduler.log");
        let file = std::fs::File::create(&log).expect("the scheduler's log");
        let child = command
            .arg("scheduler")
            .stdout(file.try_clone().expect("the log again"))
            .stderr(file)
            .spawn()
            .expect("the scheduler starts");
        let scheduler = Self { child, log };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !scheduler.log().contains("Ctrl-C stops.") {
            assert!(Instant::now() < deadline, "no banner: {}", scheduler.log());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        scheduler
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits (at most 30 s) until the scheduler has logged `count` connection changes that
    /// mention `what`.
    async fn wait_for_change(&self, what: &str, count: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let log = self.log();
            let seen = log
                .lines()
                .filter(|line| line.contains("connections changed") && line.contains(what))
                .count();
            if seen >= count {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the scheduler did not take up the change \"{what}\":\n{log}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `command` to success.
fn run(mut command: Command) {
    let output = command.output().expect("gust ran");
    assert!(
        output.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Triggers run `run_id` of `dag` and waits (at most 60 s) for its end.
async fn trigger_and_wait(home: &Path, db: &TestDb, dag: &str, run_id: &str) -> DagRunState {
    let mut trigger = gust(home, &db.url);
    trigger.args(["dags", "trigger", dag, "--run-id", run_id]);
    run(trigger);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let state = db
            .store
            .run(dag, run_id)
            .await
            .expect("read")
            .map(|r| r.state);
        match state {
            Some(s @ (DagRunState::Success | DagRunState::Failed)) => return s,
            _ if Instant::now() > deadline => panic!("run {run_id} did not end"),
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

fn try_log(home: &Path, dag: &str, run_id: &str, task: &str) -> String {
    std::fs::read_to_string(home.join(format!(
        "logs/dag_id={dag}/run_id={run_id}/task_id={task}/attempt=1.log"
    )))
    .unwrap_or_default()
}

const SECRET: &str = "s3cr3t-added-late";

/// Each case on SQLite and on PostgreSQL (skipped, saying so, without a server).
macro_rules! on_both_engines {
    ($($case:ident),* $(,)?) => {$(
        mod $case {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$case(super::TestDb::sqlite().await).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some(db) = super::TestDb::postgres().await {
                    super::$case(db).await;
                }
            }
        }
    )*};
}

on_both_engines!(
    a_connection_added_while_the_scheduler_runs_reaches_the_next_local_pod_try,
    a_kubernetes_connection_added_changed_and_deleted_while_the_scheduler_runs_is_followed,
);

async fn a_connection_added_while_the_scheduler_runs_reaches_the_next_local_pod_try(db: TestDb) {
    let home = tempfile::tempdir().expect("home");
    let home = home.path();
    std::fs::create_dir_all(home.join("dags")).expect("dags");
    std::fs::write(
        home.join("dags/late.yaml"),
        r#"
late:
  schedule: null
  is_paused_upon_creation: false
  tasks:
    use-secret:
      operator: KubernetesPodOperator
      image: x
      cmds: ["sh", "-c", "echo length=$(printf %s \"$TOKEN\" | wc -c)"]
      secrets:
        - {deploy_type: env, deploy_target: token, secret: late-conn, key: token}
"#,
    )
    .expect("dag");
    let mut command = gust(home, &db.url);
    command.env("GUST__KUBERNETES__RUNTIME", "local");
    let scheduler = Scheduler::start(command, home).await;

    // Before the connection exists, its Secret is missing.
    let before = trigger_and_wait(home, &db, "late", "before").await;
    assert_eq!(before, DagRunState::Failed, "{}", scheduler.log());
    let log = try_log(home, "late", "before", "use-secret");
    assert!(
        log.contains("late-conn"),
        "the failure names the Secret: {log}"
    );

    let mut add = gust(home, &db.url);
    add.args(["connections", "add", "late-conn", "--conn-type", "generic"])
        .arg("--conn-extra")
        .arg(format!(r#"{{"token": "{SECRET}"}}"#));
    run(add);
    scheduler.wait_for_change("added late-conn", 1).await;

    let after = trigger_and_wait(home, &db, "late", "after").await;
    let log = try_log(home, "late", "after", "use-secret");
    assert_eq!(after, DagRunState::Success, "{log}\n{}", scheduler.log());
    assert!(
        log.contains(&format!("stdout: length={}", SECRET.len())),
        "{log}"
    );
    assert!(!log.contains(SECRET), "the secret reached the log: {log}");
    let scheduler_log = scheduler.log();
    assert!(
        !scheduler_log.contains(SECRET),
        "the scheduler printed the secret: {scheduler_log}"
    );
    drop(scheduler);
    db.finish().await;
}

/// The pods POSTed to `fake` in `namespace`.
fn pods_created_in(fake: &gust_kube_fake::FakeCluster, namespace: &str) -> usize {
    let prefix = format!("/api/v1/namespaces/{namespace}/pods");
    fake.requests()
        .into_iter()
        .filter(|(method, path)| {
            *method == gust_kube_fake::Method::POST && path.starts_with(&prefix)
        })
        .count()
}

async fn a_kubernetes_connection_added_changed_and_deleted_while_the_scheduler_runs_is_followed(
    db: TestDb,
) {
    let first = gust_kube_fake::FakeCluster::start().await;
    let second = gust_kube_fake::FakeCluster::start().await;
    let home = tempfile::tempdir().expect("home");
    let home = home.path();
    let kubeconfig = |name: &str, fake: &gust_kube_fake::FakeCluster| {
        let path = home.join(name);
        std::fs::write(&path, fake.kubeconfig_yaml()).expect("kubeconfig");
        path
    };
    let (first_config, second_config) = (
        kubeconfig("first.kubeconfig", &first),
        kubeconfig("second.kubeconfig", &second),
    );
    std::fs::create_dir_all(home.join("dags")).expect("dags");
    std::fs::write(
        home.join("dags/ml.yaml"),
        "ml:\n  schedule: null\n  is_paused_upon_creation: false\n  tasks:\n    train:\n      operator: KubernetesPodOperator\n      image: trainer\n      kubernetes_conn_id: k8s_ml\n",
    )
    .expect("dag");
    let scheduler = Scheduler::start(gust(home, &db.url), home).await;
    let set_connection = |config: &Path, namespace: &str| {
        let mut add = gust(home, &db.url);
        add.args(["connections", "add", "k8s_ml", "--conn-type", "kubernetes"])
            .arg("--conn-extra")
            .arg(format!(
                r#"{{"kube_config_path": "{}", "namespace": "{namespace}"}}"#,
                config.display()
            ));
        run(add);
    };

    // A run that must succeed with its one pod in `namespace` of `fake`.
    let succeeds_in = async |run_id: &str, fake: &gust_kube_fake::FakeCluster, namespace: &str| {
        let state = trigger_and_wait(home, &db, "ml", run_id).await;
        let log = try_log(home, "ml", run_id, "train");
        assert_eq!(state, DagRunState::Success, "{log}\n{}", scheduler.log());
        let created = pods_created_in(fake, namespace);
        assert_eq!(created, 1, "{:?}", fake.requests());
    };

    // Added after the scheduler started: the next try goes to the cluster it names.
    set_connection(&first_config, "team-a");
    scheduler.wait_for_change("added k8s_ml", 1).await;
    succeeds_in("first", &first, "team-a").await;

    // Changed to another cluster and namespace: a new client, the next try goes there.
    set_connection(&second_config, "team-b");
    scheduler.wait_for_change("changed k8s_ml", 1).await;
    succeeds_in("second", &second, "team-b").await;
    assert_eq!(
        first.created_count(),
        1,
        "nothing more went to the first cluster"
    );

    // Deleted: the next try naming it has no cluster ([kubernetes] names none) and says so.
    let mut delete = gust(home, &db.url);
    delete.args(["connections", "delete", "k8s_ml"]);
    run(delete);
    scheduler.wait_for_change("deleted k8s_ml", 1).await;
    let state = trigger_and_wait(home, &db, "ml", "third").await;
    let log = try_log(home, "ml", "third", "train");
    assert_eq!(state, DagRunState::Failed, "{log}");
    assert!(
        log.contains("no Kubernetes cluster to run pods on"),
        "{log}"
    );
    assert_eq!(first.created_count() + second.created_count(), 2);
    drop(scheduler);
    db.finish().await;
}
