//! The Job runtime against the fake API server, over real HTTP with the real kube client:
//! `kubernetes_job` (waiting or not), `kueue_job`, `kubernetes_patch_job` and
//! `kubernetes_delete_job`, their failures, kills, re-attachment and the sweep.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use gust_core::clock::SystemClock;
use gust_core::ids::{DagId, RunId, TaskId, TryNumber};
use gust_executor::testing::finished;
use gust_executor::{
    Executor, LaunchSpec, Routed, SweepScope, TryEvent, TryKey, TryOutcome, event_channel,
};
use gust_kube::runtime::{Cluster, ClusterChoice, JobExecutor, KubeConfig, KubeExecutor};
use gust_kube_fake::{FakeCluster, PodScript};
use k8s_openapi::api::batch::v1::Job;
use kube::Api;
use serde_json::{Value, json};
use tokio::sync::mpsc::Receiver;

struct Harness {
    fake: FakeCluster,
    kube: KubeExecutor,
    executor: Routed,
    events: Receiver<TryEvent>,
    dir: tempfile::TempDir,
}

fn client(fake: &FakeCluster) -> kube::Client {
    let config = kube::Config::new(fake.url().parse().expect("a URL"));
    kube::Client::try_from(config).expect("a client")
}

async fn runtime(fake: &FakeCluster) -> (KubeExecutor, Routed, Receiver<TryEvent>) {
    let (tx, events) = event_channel();
    let kube = KubeExecutor::new(KubeConfig::default(), tx.clone(), Arc::new(SystemClock));
    kube.use_cluster(
        ClusterChoice::default(),
        Cluster {
            client: client(fake),
            namespace: "default".into(),
        },
    )
    .await;
    let mut executor = Routed::new(Arc::new(kube.clone()));
    for (operator, runtime) in JobExecutor::routes(&kube, &tx) {
        executor = executor.route(operator, runtime);
    }
    (kube, executor, events)
}

async fn harness() -> Harness {
    let fake = FakeCluster::start().await;
    let (kube, executor, events) = runtime(&fake).await;
    Harness {
        fake,
        kube,
        executor,
        events,
        dir: tempfile::tempdir().expect("tempdir"),
    }
}

fn key(task: &str) -> TryKey {
    TryKey {
        dag_id: DagId::new("jobs").expect("id"),
        run_id: RunId::new("manual__2024-01-01T00:00:00+00:00").expect("id"),
        task_id: TaskId::new(task).expect("id"),
        map_index: gust_core::mapping::UNMAPPED,
        try_number: TryNumber(1),
    }
}

impl Harness {
    fn spec(&self, task: &str, operator: &str, args: Value, do_xcom_push: bool) -> LaunchSpec {
        LaunchSpec {
            key: key(task),
            operator: operator.into(),
            args: args.as_object().cloned().expect("a map"),
            do_xcom_push,
            execution_timeout: None,
            log_path: self.log(task),
            dag_file: self.dir.path().join("dag.yaml"),
            context: Default::default(),
        }
    }

    fn log(&self, task: &str) -> PathBuf {
        self.dir.path().join(format!("logs/{task}.log"))
    }

    fn log_text(&self, task: &str) -> String {
        std::fs::read_to_string(self.log(task)).unwrap_or_default()
    }

    async fn finished(&mut self, task: &str) -> TryOutcome {
        finished(&mut self.events, &key(task), Duration::from_secs(30)).await
    }

    /// Runs a try to its end and releases it, as the scheduler does once it recorded it.
    async fn run(&mut self, spec: LaunchSpec) -> TryOutcome {
        let task = spec.key.task_id.to_string();
        self.executor.start(spec).expect("started");
        let outcome = self.finished(&task).await;
        self.executor.release(&key(&task));
        outcome
    }

    fn jobs(&self) -> Api<Job> {
        Api::namespaced(client(&self.fake), "default")
    }

    /// Waits until `done` holds for the jobs in the fake.
    async fn until_jobs(&self, what: &str, done: impl Fn(&[Job]) -> bool) {
        let api = self.jobs();
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let jobs = api.list(&Default::default()).await.expect("listed").items;
                if done(&jobs) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"));
    }

    async fn until_log(&self, task: &str, text: &str) {
        tokio::time::timeout(Duration::from_secs(10), async {
            while !self.log_text(task).contains(text) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{text:?} not in the log: {}", self.log_text(task)));
    }
}

fn xcom(outcome: &TryOutcome) -> Value {
    match outcome {
        TryOutcome::Succeeded { xcom: Some(value) } => value.clone(),
        other => panic!("expected a success with an XCom, got {other:?}"),
    }
}

fn failure(outcome: &TryOutcome) -> String {
    match outcome {
        TryOutcome::Failed(reason) => reason.to_string(),
        other => panic!("expected a failure, got {other:?}"),
    }
}

fn pi_args() -> Value {
    json!({
        "namespace": "default",
        "image": "perl:5.34.0",
        "cmds": ["perl", "-Mbignum=bpi", "-wle", "print bpi(2000)"],
        "name": "pi",
    })
}

#[tokio::test]
async fn a_job_try_ends_once_the_job_is_created_and_returns_its_name() {
    let mut h = harness().await;
    let outcome = h
        .run(h.spec("pi", "kubernetes_job", pi_args(), false))
        .await;
    let names = xcom(&outcome);
    let name = names["job_name"].as_str().expect("a name").to_owned();
    assert!(name.starts_with("job-pi-"), "{name}");
    assert_eq!(names["job_namespace"], "default");
    let job = h.jobs().get(&name).await.expect("the job is left running");
    let labels = job.metadata.labels.expect("labels");
    assert_eq!(labels["already_checked"], "True", "never swept");
    assert_eq!(labels["task_id"], "pi");
    assert!(h.log_text("pi").contains(&format!("created job {name}")));
}

#[tokio::test]
async fn a_waited_job_streams_its_pods_logs_and_is_deleted_once_recorded() {
    let mut h = harness().await;
    h.fake.script(
        "perl:5.34.0",
        PodScript {
            lines: vec!["3.14159265358979323846".into()],
            ..PodScript::default()
        },
    );
    let mut args = pi_args();
    args["wait_until_job_complete"] = json!(true);
    args["completions"] = json!(2);
    args["parallelism"] = json!(2);
    let outcome = h.run(h.spec("pi", "kubernetes_job", args, false)).await;
    let name = xcom(&outcome)["job_name"]
        .as_str()
        .expect("a name")
        .to_owned();
    let log = h.log_text("pi");
    assert_eq!(
        log.matches(": 3.14159265358979323846\n").count(),
        2,
        "each pod's line once: {log}"
    );
    assert!(
        log.contains(&format!("{name}-")),
        "lines name their pod: {log}"
    );
    assert!(log.contains("2 pod(s) succeeded"), "{log}");
    h.until_log("pi", &format!("deleted job {name}")).await;
    h.until_jobs("the job is deleted", <[Job]>::is_empty).await;
}

#[tokio::test]
async fn a_failed_job_fails_the_try_with_its_reason_and_the_pods_messages() {
    let mut h = harness().await;
    h.fake.script(
        "etl",
        PodScript {
            exit_code: 3,
            termination_message: Some("relation \"orders\" does not exist".into()),
            ..PodScript::default()
        },
    );
    let args = json!({"image": "etl", "backoff_limit": 1, "wait_until_job_complete": true,
                      "on_finish_action": "keep_pod"});
    let outcome = h.run(h.spec("etl", "kubernetes_job", args, false)).await;
    let message = failure(&outcome);
    assert!(message.contains("BackoffLimitExceeded"), "{message}");
    assert!(
        message.contains("exit code 3") || message.contains("code 3"),
        "{message}"
    );
    assert!(
        message.contains("relation \"orders\" does not exist"),
        "{message}"
    );
    h.until_jobs("the failed job is kept and marked", |jobs| {
        jobs.len() == 1
            && jobs[0]
                .metadata
                .labels
                .as_ref()
                .is_some_and(|l| l.get("already_checked").map(String::as_str) == Some("True"))
    })
    .await;
}

#[tokio::test]
async fn a_job_past_its_deadline_fails_the_try_with_deadline_exceeded() {
    let mut h = harness().await;
    h.fake.script(
        "slow",
        PodScript {
            runs_forever: true,
            ..PodScript::default()
        },
    );
    let args = json!({"image": "slow", "active_deadline_seconds": 1,
                      "wait_until_job_complete": true});
    let message = failure(&h.run(h.spec("slow", "kubernetes_job", args, false)).await);
    assert!(message.contains("DeadlineExceeded"), "{message}");
}

#[tokio::test]
async fn the_pods_xcoms_come_back_with_the_jobs_name() {
    let mut h = harness().await;
    h.fake.script(
        "writer",
        PodScript {
            xcom: Some(r#"{"rows": 42}"#.into()),
            ..PodScript::default()
        },
    );
    let args = json!({"image": "writer", "wait_until_job_complete": true});
    let outcome = h.run(h.spec("w", "kubernetes_job", args, true)).await;
    let value = xcom(&outcome);
    assert_eq!(value["result"], json!({"rows": 42}));
    assert!(value["job_name"].as_str().is_some());
}

#[tokio::test]
async fn a_kueue_job_waits_suspended_until_a_patch_admits_it_then_is_deleted() {
    let mut h = harness().await;
    let args = json!({"queue_name": "user-queue", "image": "perl", "name": "test-pi",
                      "wait_until_job_complete": true, "on_finish_action": "keep_pod"});
    h.executor
        .start(h.spec("kueue", "kueue_job", args, false))
        .expect("started");
    h.until_log("kueue", "waiting for Kueue to admit it").await;
    let jobs = h
        .jobs()
        .list(&Default::default())
        .await
        .expect("listed")
        .items;
    let job = &jobs[0];
    let name = job.metadata.name.clone().expect("a name");
    assert_eq!(
        job.metadata.labels.as_ref().expect("labels")["kueue.x-k8s.io/queue-name"],
        "user-queue"
    );
    let patch = h.spec(
        "admit",
        "kubernetes_patch_job",
        json!({"name": name, "namespace": "default", "body": {"spec": {"suspend": false}}}),
        true,
    );
    let patched = xcom(&h.run(patch).await);
    assert_eq!(patched["spec"]["suspend"], false);
    let outcome = h.finished("kueue").await;
    h.executor.release(&key("kueue"));
    assert_eq!(xcom(&outcome)["job_name"], json!(name));
    assert!(h.log_text("kueue").contains("resumed"));
    let delete = h.spec(
        "delete",
        "kubernetes_delete_job",
        json!({"name": name, "namespace": "default", "wait_for_completion": true,
               "delete_on_status": "Complete", "poll_interval": 1.0}),
        false,
    );
    assert_eq!(h.run(delete).await, TryOutcome::Succeeded { xcom: None });
    assert!(
        h.log_text("delete")
            .contains(&format!("deleted job {name}"))
    );
    h.until_jobs("the job is deleted", <[Job]>::is_empty).await;
}

#[tokio::test]
async fn delete_on_status_keeps_a_job_in_another_state_and_a_missing_job_is_fine() {
    let mut h = harness().await;
    let args = json!({"image": "x", "name": "k", "random_name_suffix": false,
                      "suspend": true});
    h.run(h.spec("create", "kubernetes_job", args, false)).await;
    let delete = h.spec(
        "only-failed",
        "kubernetes_delete_job",
        json!({"name": "job-k", "delete_on_status": "Failed"}),
        false,
    );
    assert_eq!(h.run(delete).await, TryOutcome::Succeeded { xcom: None });
    assert!(h.log_text("only-failed").contains("not deleted"));
    assert!(h.jobs().get_opt("job-k").await.expect("read").is_some());
    let missing = h.spec(
        "missing",
        "kubernetes_delete_job",
        json!({"name": "job-nope"}),
        false,
    );
    assert_eq!(h.run(missing).await, TryOutcome::Succeeded { xcom: None });
    let patch_missing = h.spec(
        "patch-missing",
        "kubernetes_patch_job",
        json!({"name": "job-nope", "body": {"spec": {"suspend": false}}}),
        false,
    );
    let message = failure(&h.run(patch_missing).await);
    assert!(message.contains("job-nope does not exist"), "{message}");
}

#[tokio::test]
async fn killing_a_waiting_try_deletes_its_job() {
    let mut h = harness().await;
    h.fake.script(
        "forever",
        PodScript {
            runs_forever: true,
            ..PodScript::default()
        },
    );
    let args = json!({"image": "forever", "wait_until_job_complete": true});
    h.executor
        .start(h.spec("long", "kubernetes_job", args, false))
        .expect("started");
    h.until_jobs("the job exists", |jobs| jobs.len() == 1).await;
    h.executor.kill(&key("long"), "marked failed");
    let message = failure(&h.finished("long").await);
    assert!(message.contains("marked failed"), "{message}");
    h.until_jobs("the job is deleted", <[Job]>::is_empty).await;
}

#[tokio::test]
async fn a_restarted_runtime_re_attaches_to_the_job_and_sweeps_what_is_over() {
    let mut h = harness().await;
    h.fake.script(
        "slowish",
        PodScript {
            lines: vec!["working".into()],
            runs_for: Duration::from_millis(800),
            ..PodScript::default()
        },
    );
    let args = json!({"image": "slowish", "wait_until_job_complete": true});
    let spec = h.spec("adopted", "kubernetes_job", args.clone(), false);
    h.executor.start(spec.clone()).expect("started");
    h.until_jobs("the job exists", |jobs| jobs.len() == 1).await;
    // A try whose outcome was recorded, but whose Job was left by a crash.
    let mut over = h.spec("over", "kubernetes_job", args, false);
    over.key.try_number = TryNumber(1);
    h.executor.start(over).expect("started");
    h.until_jobs("both jobs exist", |jobs| jobs.len() == 2)
        .await;
    h.kube.shutdown().await;
    let _ = h.finished("adopted").await;

    let (kube, executor, events) = runtime(&h.fake).await;
    h.kube = kube;
    h.executor = executor;
    h.events = events;
    h.executor.adopt(spec);
    h.executor.sweep(SweepScope {
        dags: HashSet::from([DagId::new("jobs").expect("id")]),
        live: vec![key("adopted")],
    });
    let outcome = h.finished("adopted").await;
    assert!(xcom(&outcome)["job_name"].is_string());
    assert!(h.log_text("adopted").contains("re-attached to job"));
    h.executor.release(&key("adopted"));
    h.until_jobs(
        "the swept and the finished jobs are gone",
        <[Job]>::is_empty,
    )
    .await;
}
