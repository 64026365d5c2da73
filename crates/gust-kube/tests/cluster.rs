//! The cluster pod runtime against the fake API server, over real HTTP with the real kube
//! client: every outcome and failure mode a pod try can have.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use gust_core::clock::SystemClock;
use gust_core::ids::{DagId, RunId, TaskId, TryNumber};
use gust_executor::testing::finished;
use gust_executor::{
    Executor, FailureReason, LaunchSpec, TryEvent, TryEventKind, TryKey, TryOutcome, event_channel,
};
use gust_kube::runtime::{Cluster, ClusterChoice, KubeConfig, KubeExecutor};
use gust_kube_fake::{FakeCluster, ImagePull, PodScript, Scheduling};
use serde_json::json;
use tokio::sync::mpsc::Receiver;

struct Harness {
    fake: FakeCluster,
    executor: KubeExecutor,
    events: Receiver<TryEvent>,
    dir: tempfile::TempDir,
}

async fn runtime(fake: &FakeCluster) -> (KubeExecutor, Receiver<TryEvent>) {
    let (tx, events) = event_channel();
    let executor = KubeExecutor::new(KubeConfig::default(), tx, Arc::new(SystemClock));
    let config = kube::Config::new(fake.url().parse().expect("a URL"));
    let client = kube::Client::try_from(config).expect("a client");
    executor
        .use_cluster(
            ClusterChoice::default(),
            Cluster {
                client,
                namespace: "default".into(),
            },
        )
        .await;
    (executor, events)
}

async fn harness() -> Harness {
    let fake = FakeCluster::start().await;
    let (executor, events) = runtime(&fake).await;
    Harness {
        fake,
        executor,
        events,
        dir: tempfile::tempdir().expect("tempdir"),
    }
}

fn key(task: &str) -> TryKey {
    TryKey {
        dag_id: DagId::new("pods").expect("id"),
        run_id: RunId::new("manual__2024-01-01T00:00:00+00:00").expect("id"),
        task_id: TaskId::new(task).expect("id"),
        map_index: gust_core::mapping::UNMAPPED,
        try_number: TryNumber(1),
    }
}

impl Harness {
    fn spec(&self, task: &str, args: serde_json::Value, do_xcom_push: bool) -> LaunchSpec {
        LaunchSpec {
            key: key(task),
            operator: "kubernetes_pod".into(),
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

    /// Waits until the fake holds `count` pods.
    async fn pods_left(&self, count: usize) {
        tokio::time::timeout(Duration::from_secs(5), async {
            while self.fake.pods().len() != count {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{count} pods left, not {}", self.fake.pods().len()));
    }
}

fn failure(outcome: &TryOutcome) -> String {
    match outcome {
        TryOutcome::Failed(reason) => reason.to_string(),
        other => panic!("expected a failure, got {other:?}"),
    }
}

#[tokio::test]
async fn a_pod_runs_its_output_reaches_the_log_and_the_pod_is_deleted() {
    let mut h = harness().await;
    h.fake.script(
        "app:1",
        PodScript {
            lines: vec!["hello".into(), "world".into()],
            ..PodScript::default()
        },
    );
    let spec = h.spec("hello", json!({"image": "app:1", "name": "hello"}), false);
    assert_eq!(h.run(spec).await, TryOutcome::Succeeded { xcom: None });
    let log = h.log_text("hello");
    assert!(
        log.contains("stdout: hello\n") && log.contains("stdout: world\n"),
        "{log}"
    );
    assert!(log.contains("created pod hello-"), "{log}");
    assert_eq!(h.fake.created_count(), 1);
    h.pods_left(0).await;
    tokio::time::timeout(Duration::from_secs(5), async {
        while !h.log_text("hello").contains("deleted pod hello-") {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the deletion is in the try's log");
}

#[tokio::test]
async fn a_pods_streamed_log_never_shows_a_secret() {
    let mut h = harness().await;
    h.fake.script(
        "app:secret",
        PodScript {
            lines: vec![
                "stored=stored-secret-value".into(),
                "env=pod-env-secret".into(),
            ],
            ..PodScript::default()
        },
    );
    // What the binary feeds from the store, and what launching the try adds from its arguments.
    gust_secrets::set_stored(vec!["stored-secret-value".to_owned()]);
    let args = json!({
        "image": "app:secret",
        "name": "secret",
        "env_vars": {"MYSECRET": "pod-env-secret"},
    });
    gust_secrets::add_from(args.as_object().expect("an object"));
    let spec = h.spec("secret", args, false);
    assert_eq!(h.run(spec).await, TryOutcome::Succeeded { xcom: None });
    let log = h.log_text("secret");
    assert!(log.contains("stdout: stored=***\n"), "{log}");
    assert!(log.contains("stdout: env=***\n"), "{log}");
    assert!(
        !log.contains("secret-value") && !log.contains("pod-env-secret"),
        "{log}"
    );
}

#[tokio::test]
async fn a_failing_pod_fails_with_its_exit_code_termination_message_and_events() {
    let mut h = harness().await;
    h.fake.script(
        "app:bad",
        PodScript {
            exit_code: 3,
            termination_message: Some("input table is empty".into()),
            ..PodScript::default()
        },
    );
    let spec = h.spec(
        "bad",
        json!({"image": "app:bad", "log_events_on_failure": true, "on_finish_action": "delete_succeeded_pod"}),
        false,
    );
    let message = failure(&h.run(spec).await);
    assert!(
        message.starts_with("container \"base\" exited with code 3: input table is empty"),
        "{message}"
    );
    assert!(message.contains("pod events: "), "{message}");
    let log = h.log_text("bad");
    assert!(
        log.contains("as it failed:") && log.contains("  status:"),
        "{log}"
    );
    assert_eq!(
        h.fake.pods().len(),
        1,
        "a failed pod is kept with delete_succeeded_pod"
    );
}

#[tokio::test]
async fn the_xcom_sidecar_hands_back_the_return_value() {
    let mut h = harness().await;
    h.fake.script(
        "writer",
        PodScript {
            xcom: Some(r#"{"train": "s3://bucket/train", "rows": 3}"#.into()),
            ..PodScript::default()
        },
    );
    let spec = h.spec("write", json!({"image": "writer"}), true);
    assert_eq!(
        h.run(spec).await,
        TryOutcome::Succeeded {
            xcom: Some(json!({"train": "s3://bucket/train", "rows": 3}))
        }
    );
    h.fake.script(
        "garbage",
        PodScript {
            xcom: Some("hello".into()),
            ..PodScript::default()
        },
    );
    let spec = h.spec("garbage", json!({"image": "garbage"}), true);
    let message = failure(&h.run(spec).await);
    assert!(message.contains("not valid JSON"), "{message}");
}

#[tokio::test]
async fn skip_codes_skip_the_task() {
    let mut h = harness().await;
    h.fake.script(
        "skipper",
        PodScript {
            exit_code: 100,
            ..PodScript::default()
        },
    );
    let spec = h.spec(
        "skip",
        json!({"image": "skipper", "skip_on_exit_code": [100]}),
        false,
    );
    assert_eq!(h.run(spec).await, TryOutcome::Skipped { exit_code: 100 });
}

#[tokio::test]
async fn permanent_start_failures_fail_fast_and_transient_ones_are_waited_out() {
    let mut h = harness().await;
    h.fake.script(
        "nope:1",
        PodScript {
            image_pull: ImagePull::NotFound,
            ..PodScript::default()
        },
    );
    h.fake.script(
        "needs-secret",
        PodScript {
            config_error: Some("secret \"db\" not found".into()),
            ..PodScript::default()
        },
    );
    h.fake.script(
        "busy-registry",
        PodScript {
            image_pull: ImagePull::RateLimited {
                lasting: Duration::from_millis(700),
            },
            ..PodScript::default()
        },
    );
    let started = std::time::Instant::now();
    let message = failure(
        &h.run(h.spec("missing", json!({"image": "nope:1"}), false))
            .await,
    );
    assert!(
        message.contains("ErrImagePull") || message.contains("ImagePullBackOff"),
        "{message}"
    );
    assert!(message.contains("check the image name"), "{message}");
    let message = failure(
        &h.run(h.spec("config", json!({"image": "needs-secret"}), false))
            .await,
    );
    assert!(
        message.contains("CreateContainerConfigError")
            && message.contains("secret \"db\" not found"),
        "{message}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "failed fast, not after the startup timeout"
    );
    assert_eq!(
        h.run(h.spec("limited", json!({"image": "busy-registry"}), false))
            .await,
        TryOutcome::Succeeded { xcom: None }
    );
}

#[tokio::test]
async fn a_pod_that_cannot_be_scheduled_fails_after_schedule_timeout_seconds() {
    let mut h = harness().await;
    h.fake.script(
        "huge",
        PodScript {
            scheduling: Scheduling::Unschedulable,
            ..PodScript::default()
        },
    );
    let spec = h.spec(
        "huge",
        json!({"image": "huge", "schedule_timeout_seconds": 1}),
        false,
    );
    let message = failure(&h.run(spec).await);
    assert!(
        message.contains("not scheduled within schedule_timeout_seconds (1s)"),
        "{message}"
    );
    assert!(message.contains("Unschedulable"), "{message}");
}

#[tokio::test]
async fn out_of_memory_is_named_with_the_limit() {
    let mut h = harness().await;
    h.fake.script(
        "hungry",
        PodScript {
            oom_killed: true,
            ..PodScript::default()
        },
    );
    let spec = h.spec(
        "oom",
        json!({"image": "hungry", "container_resources": {"limits": {"memory": "256Mi"}}}),
        false,
    );
    let message = failure(&h.run(spec).await);
    assert!(
        message.contains("OOMKilled") && message.contains("256Mi"),
        "{message}"
    );
}

#[tokio::test]
async fn a_pod_evicted_before_it_starts_is_created_again_without_spending_the_try() {
    let mut h = harness().await;
    h.fake.script(
        "slow-start",
        PodScript {
            scheduling: Scheduling::After(Duration::from_millis(800)),
            ..PodScript::default()
        },
    );
    h.executor
        .start(h.spec("evicted", json!({"image": "slow-start"}), false))
        .expect("started");
    let first = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Some(pod) = h.fake.pods().into_iter().next() {
                return pod.metadata.name.expect("a name");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the pod was created");
    assert!(h.fake.evict("default", &first));
    assert_eq!(
        h.finished("evicted").await,
        TryOutcome::Succeeded { xcom: None }
    );
    assert_eq!(h.fake.created_count(), 2);
    assert!(h.log_text("evicted").contains("creating it again"));
}

#[tokio::test]
async fn killing_a_try_deletes_its_pod() {
    let mut h = harness().await;
    h.fake.script(
        "forever",
        PodScript {
            runs_forever: true,
            ..PodScript::default()
        },
    );
    h.executor
        .start(h.spec("long", json!({"image": "forever"}), false))
        .expect("started");
    tokio::time::timeout(Duration::from_secs(5), async {
        while !h.log_text("long").contains("started on node") {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the pod started");
    h.executor.kill(&key("long"), "marked failed");
    assert_eq!(
        h.finished("long").await,
        TryOutcome::Failed(FailureReason::Killed("marked failed".into()))
    );
    assert_eq!(h.fake.deleted_count(), 1);
}

#[tokio::test]
async fn a_restarted_runtime_re_attaches_to_the_running_pod() {
    let h = harness().await;
    h.fake.script(
        "batch",
        PodScript {
            lines: vec!["one".into(), "two".into(), "three".into()],
            line_interval: Duration::from_millis(300),
            ..PodScript::default()
        },
    );
    let spec = h.spec("batch", json!({"image": "batch"}), false);
    h.executor.start(spec.clone()).expect("started");
    tokio::time::timeout(Duration::from_secs(5), async {
        while !h.log_text("batch").contains("started on node") {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the pod started");
    // The scheduler dies: its runtime stops following without touching the pod.
    h.executor.shutdown().await;
    let (adopter, mut events) = runtime(&h.fake).await;
    adopter.adopt(spec);
    let outcome = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let event = events.recv().await.expect("alive");
            if let TryEventKind::Finished(outcome) = event.kind {
                return outcome;
            }
        }
    })
    .await
    .expect("finished");
    assert_eq!(outcome, TryOutcome::Succeeded { xcom: None });
    assert_eq!(h.fake.created_count(), 1, "no second pod");
    assert!(h.log_text("batch").contains("re-attached to pod"));
}

#[tokio::test]
async fn adopting_a_try_whose_pod_never_existed_queues_it_again() {
    let h = harness().await;
    let (adopter, mut events) = runtime(&h.fake).await;
    adopter.adopt(h.spec("ghost", json!({"image": "x"}), false));
    let event = tokio::time::timeout(Duration::from_secs(10), events.recv())
        .await
        .expect("in time")
        .expect("an event");
    assert_eq!(event.kind, TryEventKind::Finished(TryOutcome::NeverStarted));
}

#[tokio::test]
async fn log_lines_survive_broken_connections_exactly_once() {
    let mut h = harness().await;
    let lines: Vec<String> = (1..=12).map(|i| format!("line {i}")).collect();
    h.fake.script(
        "chatty",
        PodScript {
            lines: lines.clone(),
            line_interval: Duration::from_millis(100),
            ..PodScript::default()
        },
    );
    h.executor
        .start(h.spec("chatty", json!({"image": "chatty"}), false))
        .expect("started");
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(350)).await;
        h.fake.break_connections();
    }
    assert_eq!(
        h.finished("chatty").await,
        TryOutcome::Succeeded { xcom: None }
    );
    let log = h.log_text("chatty");
    for line in &lines {
        let count = log.matches(&format!("stdout: {line}\n")).count();
        assert_eq!(count, 1, "{line} appears {count} times in:\n{log}");
    }
}

#[tokio::test]
async fn a_pod_deleted_while_it_runs_fails_the_try() {
    let mut h = harness().await;
    h.fake.script(
        "victim",
        PodScript {
            runs_forever: true,
            ..PodScript::default()
        },
    );
    h.executor
        .start(h.spec("victim", json!({"image": "victim"}), false))
        .expect("started");
    let name = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if h.log_text("victim").contains("started on node")
                && let Some(pod) = h.fake.pods().into_iter().next()
            {
                return pod.metadata.name.expect("named");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("started");
    assert!(h.fake.delete_externally("default", &name));
    let message = failure(&h.finished("victim").await);
    assert!(message.contains("deleted while it ran"), "{message}");
}

#[tokio::test]
async fn keep_pod_leaves_the_pod_marked_as_checked() {
    let mut h = harness().await;
    let spec = h.spec(
        "kept",
        json!({"image": "anything", "on_finish_action": "keep_pod"}),
        false,
    );
    assert_eq!(h.run(spec).await, TryOutcome::Succeeded { xcom: None });
    tokio::time::timeout(Duration::from_secs(5), async {
        while !h.log_text("kept").contains("kept pod") {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the pod is marked");
    let pods = h.fake.pods();
    assert_eq!(pods.len(), 1);
    let labels = pods[0].metadata.labels.clone().expect("labels");
    assert_eq!(labels["already_checked"], "True");
    assert_eq!(labels["task_id"], "kept");
}

#[tokio::test]
async fn a_pod_that_ended_before_its_outcome_was_recorded_still_gives_it_after_a_restart() {
    let mut h = harness().await;
    h.fake.script(
        "answer",
        PodScript {
            xcom: Some("42".into()),
            ..PodScript::default()
        },
    );
    let spec = h.spec("answer", json!({"image": "answer"}), true);
    h.executor.start(spec.clone()).expect("started");
    assert_eq!(
        h.finished("answer").await,
        TryOutcome::Succeeded {
            xcom: Some(json!(42))
        }
    );
    // The scheduler dies before recording the outcome: no release, the pod stays.
    h.executor.shutdown().await;
    assert_eq!(h.fake.pods().len(), 1);
    let (adopter, mut events) = runtime(&h.fake).await;
    adopter.adopt(spec);
    assert_eq!(
        finished(&mut events, &key("answer"), Duration::from_secs(20)).await,
        TryOutcome::Succeeded {
            xcom: Some(json!(42))
        },
        "the XCom is read again from the sidecar"
    );
    assert_eq!(h.fake.created_count(), 1, "the try did not run twice");
    adopter.release(&key("answer"));
    h.pods_left(0).await;
}

/// Another scheduler's pod, whose base container ended while nobody followed it: a runtime
/// whose watch already runs (it took the DAG over from a scheduler that died) re-attaches and
/// finishes the try from the state its watch kept, without waiting for a change.
#[tokio::test]
async fn re_attaching_to_a_pod_the_watch_already_saw_end_finishes_at_once() {
    let h = harness().await;
    h.fake.script(
        "answer",
        PodScript {
            runs_for: Duration::from_millis(300),
            xcom: Some("42".into()),
            ..PodScript::default()
        },
    );
    let (adopter, mut events) = runtime(&h.fake).await;
    let warm = h.spec("warm", json!({"image": "warm"}), false);
    adopter.start(warm).expect("started");
    assert_eq!(
        finished(&mut events, &key("warm"), Duration::from_secs(20)).await,
        TryOutcome::Succeeded { xcom: None }
    );
    let spec = h.spec("answer", json!({"image": "answer"}), true);
    h.executor.start(spec.clone()).expect("started");
    tokio::time::timeout(Duration::from_secs(10), async {
        while !h.log_text("answer").contains("started on node") {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the pod starts");
    // Its scheduler dies; the base container ends while nobody follows the pod.
    h.executor.shutdown().await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    adopter.adopt(spec);
    assert_eq!(
        finished(&mut events, &key("answer"), Duration::from_secs(10)).await,
        TryOutcome::Succeeded {
            xcom: Some(json!(42))
        }
    );
}

#[tokio::test]
async fn the_start_up_sweep_deletes_pods_of_tries_that_are_over() {
    let h = harness().await;
    h.fake.script(
        "idle",
        PodScript {
            runs_forever: true,
            ..PodScript::default()
        },
    );
    let client = kube::Client::try_from(kube::Config::new(h.fake.url().parse().expect("URL")))
        .expect("client");
    let api: kube::Api<k8s_openapi::api::core::v1::Pod> = kube::Api::namespaced(client, "default");
    let pod = |name: &str, dag: &str, task: &str, extra: Option<(&str, &str)>| {
        let mut labels: std::collections::BTreeMap<String, String> =
            gust_kube::build::try_labels(gust_kube::build::TryLabels {
                dag_id: dag,
                task_id: task,
                run_id: "manual__2024-01-01T00:00:00+00:00",
                try_number: 1,
                map_index: gust_core::mapping::UNMAPPED,
            })
            .into_iter()
            .collect();
        if let Some((k, v)) = extra {
            labels.insert(k.into(), v.into());
        }
        serde_json::from_value::<k8s_openapi::api::core::v1::Pod>(json!({
            "metadata": {"name": name, "labels": labels},
            "spec": {"containers": [{"name": "base", "image": "idle"}]},
        }))
        .expect("a pod")
    };
    for (name, dag, task, extra) in [
        ("live", "pods", "live", None),
        ("orphan", "pods", "orphan", None),
        ("kept", "pods", "kept", Some(("already_checked", "True"))),
        // Another scheduler's DAG: its pods are that scheduler's to sweep.
        ("theirs", "other", "orphan", None),
    ] {
        api.create(&Default::default(), &pod(name, dag, task, extra))
            .await
            .expect("created");
    }
    h.executor.sweep(gust_executor::SweepScope {
        dags: [gust_core::ids::DagId::new("pods").expect("id")].into(),
        live: vec![key("live")],
    });
    h.pods_left(3).await;
    let mut left: Vec<String> = h
        .fake
        .pods()
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .collect();
    left.sort();
    assert_eq!(left, ["kept", "live", "theirs"]);
}

#[tokio::test]
async fn denied_and_invalid_images_fail_fast_with_their_reason() {
    let mut h = harness().await;
    h.fake.script(
        "private/app",
        PodScript {
            image_pull: ImagePull::Denied,
            ..PodScript::default()
        },
    );
    h.fake.script(
        "Bad Image",
        PodScript {
            image_pull: ImagePull::InvalidName,
            ..PodScript::default()
        },
    );
    let denied = failure(
        &h.run(h.spec("denied", json!({"image": "private/app"}), false))
            .await,
    );
    assert!(denied.contains("cannot start"), "{denied}");
    let invalid = failure(
        &h.run(h.spec("invalid", json!({"image": "Bad Image"}), false))
            .await,
    );
    assert!(
        invalid.contains("InvalidImageName") && invalid.contains("fix the task's `image`"),
        "{invalid}"
    );
}

#[tokio::test]
async fn a_failing_init_container_fails_the_try_by_name() {
    let mut h = harness().await;
    h.fake.script(
        "fetcher",
        PodScript {
            exit_code: 2,
            termination_message: Some("no such bucket".into()),
            ..PodScript::default()
        },
    );
    let spec = h.spec(
        "init",
        json!({"image": "app", "init_containers": [{"name": "fetch", "image": "fetcher"}]}),
        false,
    );
    let message = failure(&h.run(spec).await);
    assert!(
        message.contains("init container \"fetch\" exited with code 2: no such bucket"),
        "{message}"
    );
}

#[tokio::test]
async fn a_pod_evicted_while_it_runs_fails_the_try() {
    let mut h = harness().await;
    h.fake.script(
        "pressure",
        PodScript {
            runs_for: Duration::from_secs(5),
            evict_after: Some(Duration::from_millis(300)),
            ..PodScript::default()
        },
    );
    let message = failure(
        &h.run(h.spec("evicted", json!({"image": "pressure"}), false))
            .await,
    );
    assert!(message.contains("Evicted"), "{message}");
}

#[tokio::test]
async fn execution_timeout_deletes_the_pod() {
    let mut h = harness().await;
    h.fake.script(
        "endless",
        PodScript {
            runs_forever: true,
            ..PodScript::default()
        },
    );
    let mut spec = h.spec("slow", json!({"image": "endless"}), false);
    spec.execution_timeout = Some(Duration::from_millis(500));
    assert_eq!(
        h.run(spec).await,
        TryOutcome::Failed(FailureReason::TimedOut(Duration::from_millis(500)))
    );
    h.pods_left(0).await;
}

#[tokio::test]
async fn a_connection_changed_while_the_runtime_runs_reaches_the_next_try_and_not_the_running_one()
{
    use gust_kube::runtime::ConnectionSettings;
    let (first, second) = (FakeCluster::start().await, FakeCluster::start().await);
    for fake in [&first, &second] {
        fake.script(
            "app:1",
            PodScript {
                runs_for: Duration::from_millis(800),
                ..PodScript::default()
            },
        );
    }
    let choice = |context: &str| ClusterChoice {
        context: Some(context.to_owned()),
        ..ClusterChoice::default()
    };
    let connection = |context: &str, namespace: &str| {
        std::collections::HashMap::from([(
            "k8s".to_owned(),
            ConnectionSettings {
                cluster: choice(context),
                namespace: Some(namespace.to_owned()),
                xcom_sidecar_image: None,
            },
        )])
    };
    let connections = gust_executor::Current::new(connection("first", "team-a"));
    let (tx, events) = event_channel();
    let executor = KubeExecutor::new(
        KubeConfig {
            connections: connections.clone(),
            ..KubeConfig::default()
        },
        tx,
        Arc::new(SystemClock),
    );
    for (context, fake) in [("first", &first), ("second", &second)] {
        let client = kube::Client::try_from(kube::Config::new(fake.url().parse().expect("a URL")))
            .expect("a client");
        executor
            .use_cluster(
                choice(context),
                Cluster {
                    client,
                    namespace: "default".into(),
                },
            )
            .await;
    }
    let mut h = Harness {
        fake: first,
        executor,
        events,
        dir: tempfile::tempdir().expect("tempdir"),
    };
    let args = json!({"image": "app:1", "name": "train", "kubernetes_conn_id": "k8s"});
    h.executor
        .start(h.spec("before", args.clone(), false))
        .expect("started");
    tokio::time::timeout(Duration::from_secs(5), async {
        while h.fake.created_count() == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the first try's pod is created");

    // Changed while the first try runs: the next try goes to the new cluster and namespace,
    // the running one stays where it started and ends there.
    connections.set(connection("second", "team-b"));
    h.executor
        .start(h.spec("after", args, false))
        .expect("started");
    let mut outcomes = std::collections::HashMap::new();
    tokio::time::timeout(Duration::from_secs(30), async {
        while outcomes.len() < 2 {
            let event = h.events.recv().await.expect("the runtime is alive");
            if let TryEventKind::Finished(outcome) = event.kind {
                outcomes.insert(event.key.task_id.to_string(), outcome);
            }
        }
    })
    .await
    .expect("both tries end");
    for task in ["before", "after"] {
        assert_eq!(
            outcomes[task],
            TryOutcome::Succeeded { xcom: None },
            "{}",
            h.log_text(task)
        );
    }
    let created_in = |fake: &FakeCluster, namespace: &str| {
        let prefix = format!("/api/v1/namespaces/{namespace}/pods");
        fake.requests()
            .into_iter()
            .filter(|(method, path)| {
                *method == gust_kube_fake::Method::POST && path.starts_with(&prefix)
            })
            .count()
    };
    assert_eq!(created_in(&h.fake, "team-a"), 1, "{:?}", h.fake.requests());
    assert_eq!(created_in(&second, "team-b"), 1, "{:?}", second.requests());
    assert_eq!(h.fake.created_count() + second.created_count(), 2);
}

#[tokio::test]
async fn log_streams_a_cluster_never_closes_do_not_hold_up_the_try_or_the_runtime() {
    let mut h = harness().await;
    // As kwok's simulated kubelet: a followed log stays open after the container ended.
    h.fake.hold_log_streams_open();
    h.fake.script(
        "app:1",
        PodScript {
            lines: vec!["placeholder".into()],
            ..PodScript::default()
        },
    );
    let spec = h.spec("held", json!({"image": "app:1", "name": "held"}), false);
    let ran = tokio::time::timeout(Duration::from_secs(20), h.run(spec)).await;
    assert_eq!(
        ran.expect("the try ends"),
        TryOutcome::Succeeded { xcom: None }
    );
    assert!(h.log_text("held").contains("stdout: placeholder\n"));
    tokio::time::timeout(Duration::from_secs(10), h.executor.shutdown())
        .await
        .expect("the runtime stops with the log stream still open");
}
