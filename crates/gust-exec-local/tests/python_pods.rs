//! Python tries as pods on the fake API server (over real HTTP, with the real kube client and
//! the cluster pod runtime): the pod and its Secret, what the worker reports becoming the
//! outcome, its structured log lines, the Secret's cleanup, and a re-attach after a restart.
//! The fake scripts containers by image and does not run them: the test plays the worker by
//! reporting through the broker with the token it reads from the try's Secret.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use gust_core::clock::{Clock, SystemClock};
use gust_core::ids::{DagId, RunId, TaskId, TryNumber};
use gust_exec_local::PythonRuntime;
use gust_exec_local::python_pod::{PythonPods, WorkerSettings, secret_name};
use gust_executor::execution::{ExecutionBroker, Reported, TokenGrant, TryTokens};
use gust_executor::testing::finished;
use gust_executor::{
    Executor, FailureReason, LaunchSpec, TryEvent, TryKey, TryOutcome, event_channel,
};
use gust_kube::runtime::{Cluster, ClusterChoice, KubeConfig, KubeExecutor};
use gust_kube_fake::{FakeCluster, PodScript};
use k8s_openapi::api::core::v1::Secret;
use tokio::sync::mpsc::Receiver;

const IMAGE: &str = "apache/airflow:3.3.2-test";

/// Tokens that name their try in the clear: enough to play the worker.
struct Tokens;

impl TryTokens for Tokens {
    fn issue(&self, ti_id: uuid::Uuid, _now: DateTime<Utc>) -> String {
        format!("tok-{ti_id}")
    }

    fn verify(&self, token: &str, now: DateTime<Utc>) -> Option<TokenGrant> {
        let ti_id = token.strip_prefix("tok-")?.parse().ok()?;
        Some(TokenGrant {
            ti_id,
            expires_at: now + chrono::Duration::hours(1),
        })
    }
}

struct Harness {
    fake: FakeCluster,
    client: kube::Client,
    pods: KubeExecutor,
    python: PythonPods,
    broker: Arc<ExecutionBroker>,
    events: Receiver<TryEvent>,
    dir: tempfile::TempDir,
}

async fn runtime(
    fake: &FakeCluster,
    client: &kube::Client,
    heartbeat_timeout: Duration,
    pod_template: Option<Arc<serde_json::Value>>,
) -> (
    KubeExecutor,
    PythonPods,
    Arc<ExecutionBroker>,
    Receiver<TryEvent>,
) {
    let (pod_events, from_pods) = event_channel();
    let pods = KubeExecutor::new(KubeConfig::default(), pod_events, Arc::new(SystemClock));
    let _ = fake;
    pods.use_cluster(
        ClusterChoice::default(),
        Cluster {
            client: client.clone(),
            namespace: "default".into(),
        },
    )
    .await;
    let broker = Arc::new(ExecutionBroker::new(Arc::new(Tokens)));
    let python = PythonRuntime {
        interpreter: PathBuf::from("python3"),
        broker: broker.clone(),
        api_url: "http://127.0.0.1:9/execution/".into(),
        work_dir: PathBuf::from("/nonexistent"),
        clock: Arc::new(SystemClock),
        heartbeat_timeout,
        dags_folder: None,
        warm_worker: None,
    };
    let settings = WorkerSettings {
        image: IMAGE.into(),
        api_url: "http://gust-scheduler.gust.svc:8794/execution/".into(),
        heartbeat_timeout,
        pod_template,
    };
    let (tx, events) = event_channel();
    let runtime = PythonPods::new(&python, settings, Arc::new(pods.clone()), from_pods, tx);
    (pods, runtime, broker, events)
}

async fn harness() -> Harness {
    harness_with(Duration::from_secs(300)).await
}

/// A harness whose workers may go unheard for `heartbeat_timeout`.
async fn harness_with(heartbeat_timeout: Duration) -> Harness {
    harness_full(heartbeat_timeout, None).await
}

/// A harness whose worker pods are laid over `pod_template`.
async fn harness_full(
    heartbeat_timeout: Duration,
    pod_template: Option<Arc<serde_json::Value>>,
) -> Harness {
    let fake = FakeCluster::start().await;
    let config = kube::Config::new(fake.url().parse().expect("a URL"));
    let client = kube::Client::try_from(config).expect("a client");
    let (pods, python, broker, events) =
        runtime(&fake, &client, heartbeat_timeout, pod_template).await;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("etl.yaml"),
        "etl:\n  tasks:\n    extract:\n      operator: airflow.providers.standard.operators.python.PythonOperator\n      python_callable_name: extract\n      python_callable_file: callables.py\n",
    )
    .expect("a DAG file");
    std::fs::write(
        dir.path().join("callables.py"),
        "def extract():\n    return 3\n",
    )
    .expect("callables");
    Harness {
        fake,
        client,
        pods,
        python,
        broker,
        events,
        dir,
    }
}

fn key(task: &str) -> TryKey {
    TryKey {
        dag_id: DagId::new("etl").expect("id"),
        run_id: RunId::new("manual__2024-01-01T00:00:00+00:00").expect("id"),
        task_id: TaskId::new(task).expect("id"),
        map_index: gust_core::mapping::UNMAPPED,
        try_number: TryNumber(1),
    }
}

impl Harness {
    fn spec(&self, task: &str) -> LaunchSpec {
        LaunchSpec {
            key: key(task),
            operator: "python".into(),
            args: serde_json::Map::from_iter([(
                "python_callable_name".to_owned(),
                serde_json::json!("extract"),
            )]),
            do_xcom_push: true,
            execution_timeout: None,
            log_path: self.dir.path().join(format!("logs/{task}.log")),
            dag_file: self.dir.path().join("etl.yaml"),
            context: Default::default(),
        }
    }

    fn log_text(&self, task: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("logs/{task}.log")))
            .unwrap_or_default()
    }

    fn secrets(&self) -> kube::Api<Secret> {
        kube::Api::namespaced(self.client.clone(), "default")
    }

    /// The try's Secret, once the runtime created it.
    async fn secret(&self, task: &str) -> Secret {
        let name = secret_name(&key(task));
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                if let Ok(secret) = self.secrets().get(&name).await {
                    return secret;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("the try's Secret is created")
    }

    async fn secret_gone(&self, task: &str) {
        let name = secret_name(&key(task));
        tokio::time::timeout(Duration::from_secs(10), async {
            while self.secrets().get_opt(&name).await.ok().flatten().is_some() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("the try's Secret is deleted");
    }

    /// Plays the worker: reads the token from the Secret's workload and reports `state` with
    /// `xcom` as its return value.
    async fn report(&self, task: &str, state: Reported, xcom: Option<serde_json::Value>) {
        let secret = self.secret(task).await;
        let data = secret.data.expect("data");
        let workload: serde_json::Value =
            serde_json::from_slice(&data["workload.json"].0).expect("the workload is JSON");
        let token = workload["token"].as_str().expect("a token");
        let (live, _) = self
            .broker
            .authorize(token, SystemClock.now())
            .expect("the Secret's token acts for the try");
        let mut progress = live.progress();
        if let Some(xcom) = xcom {
            progress.xcoms.insert("return_value".into(), xcom);
        }
        progress.reported = Some(state);
    }

    /// Plays the worker's heartbeat: what the Execution API records for `PUT .../heartbeat`.
    async fn heartbeat(&self, task: &str) {
        let secret = self.secret(task).await;
        let data = secret.data.expect("data");
        let workload: serde_json::Value =
            serde_json::from_slice(&data["workload.json"].0).expect("the workload is JSON");
        let token = workload["token"].as_str().expect("a token");
        if let Ok((live, _)) = self.broker.authorize(token, SystemClock.now()) {
            live.progress().last_heartbeat = Some(SystemClock.now());
        }
    }

    async fn pods_gone(&self) {
        tokio::time::timeout(Duration::from_secs(10), async {
            while !self.fake.pods().is_empty() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("the pod is deleted");
    }

    async fn finished(&mut self, task: &str) -> TryOutcome {
        finished(&mut self.events, &key(task), Duration::from_secs(30)).await
    }
}

fn worker_script(runs_for: Duration) -> PodScript {
    PodScript {
        lines: vec![
            r#"{"timestamp":"2024-01-01T00:00:01Z","level":"info","event":"Done. Returned value was: 3","logger":"airflow.task.operators.PythonOperator","dag_id":"etl"}"#.into(),
            "a plain line".into(),
        ],
        runs_for,
        ..PodScript::default()
    }
}

#[tokio::test]
async fn a_python_try_runs_as_a_pod_with_its_secret_and_reports_through_the_api() {
    let mut h = harness().await;
    h.fake
        .script(IMAGE, worker_script(Duration::from_millis(800)));
    let spec = h.spec("extract");
    h.python.start(spec).expect("started");
    h.report("extract", Reported::Success, Some(serde_json::json!(3)))
        .await;

    // The pod: the worker image running the task runner on the workload in its Secret.
    let pods = h.fake.pods();
    let pod = pods.first().expect("a pod");
    let spec = pod.spec.as_ref().expect("a spec");
    let base = &spec.containers[0];
    assert_eq!(base.image.as_deref(), Some(IMAGE));
    assert_eq!(
        base.command.as_deref(),
        Some(
            &[
                "python".to_owned(),
                "-m".to_owned(),
                "airflow.sdk.execution_time.execute_workload".to_owned()
            ][..]
        )
    );
    assert_eq!(
        base.args.as_deref(),
        Some(
            &[
                "--json-path".to_owned(),
                "/opt/gust/bundle/workload.json".to_owned()
            ][..]
        )
    );
    assert_eq!(spec.containers.len(), 1, "no XCom sidecar");
    let env = base.env.as_ref().expect("env");
    let value = |name: &str| {
        env.iter()
            .find(|v| v.name == name)
            .and_then(|v| v.value.clone())
            .unwrap_or_default()
    };
    assert_eq!(
        value("AIRFLOW__CORE__EXECUTION_API_SERVER_URL"),
        "http://gust-scheduler.gust.svc:8794/execution/"
    );
    assert!(value("AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST").contains("/opt/gust/bundle"));
    let volume = spec
        .volumes
        .iter()
        .flatten()
        .find_map(|v| v.secret.as_ref())
        .expect("a Secret volume");
    assert_eq!(
        volume.secret_name.as_deref(),
        Some(secret_name(&key("extract")).as_str())
    );
    let pod_text = serde_json::to_string(pod).expect("JSON");
    assert!(
        !pod_text.contains("tok-"),
        "the token shows in the pod: {pod_text}"
    );

    // The Secret: owned by the pod, holding the workload and the DAG bundle.
    let secret = h.secret("extract").await;
    let owner = &secret.metadata.owner_references.as_ref().expect("an owner")[0];
    assert_eq!(owner.kind, "Pod");
    assert_eq!(Some(&owner.name), pod.metadata.name.as_ref());
    assert_eq!(Some(&owner.uid), pod.metadata.uid.as_ref());
    let data = secret.data.expect("data");
    let keys: Vec<&str> = data.keys().map(String::as_str).collect();
    assert!(
        keys.contains(&"workload.json") && keys.contains(&"etl.yaml"),
        "{keys:?}"
    );
    assert!(keys.contains(&"callables.py"), "the DAG's folder: {keys:?}");
    let loader = keys
        .iter()
        .find(|k| k.starts_with("gust_etl_"))
        .expect("the loader");
    let workload: serde_json::Value =
        serde_json::from_slice(&data["workload.json"].0).expect("JSON");
    assert_eq!(workload["dag_rel_path"], *loader);

    assert_eq!(
        h.finished("extract").await,
        TryOutcome::Succeeded {
            xcom: Some(serde_json::json!(3))
        },
        "what the worker reported is the outcome"
    );
    let log = h.log_text("extract");
    assert!(
        log.contains(
            "stdout: INFO airflow.task.operators.PythonOperator: Done. Returned value was: 3"
        ),
        "structured lines read as text: {log}"
    );
    assert!(log.contains("stdout: a plain line"), "{log}");
    // Cleaned up once the scheduler recorded the outcome: the pod and its Secret.
    h.python.release(&key("extract"));
    h.secret_gone("extract").await;
    tokio::time::timeout(Duration::from_secs(10), async {
        while !h.fake.pods().is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the pod is deleted");
    h.pods.shutdown().await;
}

#[tokio::test]
async fn a_worker_that_reports_nothing_fails_the_try_and_a_failure_report_wins() {
    let mut h = harness().await;
    h.fake
        .script(IMAGE, worker_script(Duration::from_millis(10)));
    h.python.start(h.spec("silent")).expect("started");
    match h.finished("silent").await {
        TryOutcome::Failed(FailureReason::Task(why)) => {
            assert!(why.contains("without reporting"), "{why}");
        }
        other => panic!("expected a failure, got {other:?}"),
    }
    h.python.release(&key("silent"));
    h.secret_gone("silent").await;

    h.fake
        .script(IMAGE, worker_script(Duration::from_millis(800)));
    h.python.start(h.spec("broken")).expect("started");
    h.report(
        "broken",
        Reported::UpForRetry {
            reason: Some("ValueError: no rows".into()),
        },
        None,
    )
    .await;
    assert_eq!(
        h.finished("broken").await,
        TryOutcome::Failed(FailureReason::Task("ValueError: no rows".into()))
    );
    h.python.release(&key("broken"));
    h.secret_gone("broken").await;
    h.pods.shutdown().await;
}

#[tokio::test]
async fn after_a_restart_the_pod_is_followed_to_its_end_then_retried_and_cleaned_up() {
    let mut h = harness().await;
    h.fake.script(IMAGE, worker_script(Duration::from_secs(2)));
    let spec = h.spec("long");
    h.python.start(spec.clone()).expect("started");
    h.secret("long").await;
    // The scheduler stops: the pod is left running, to be re-attached.
    h.pods.shutdown().await;

    let (pods, python, _broker, events) =
        runtime(&h.fake, &h.client, Duration::from_secs(300), None).await;
    h.events = events;
    python.adopt(spec);
    match h.finished("long").await {
        TryOutcome::Failed(FailureReason::Lost(why)) => {
            assert!(why.contains("restarted"), "{why}");
        }
        other => panic!("expected a lost try, got {other:?}"),
    }
    assert_eq!(h.fake.created_count(), 1, "never run twice");
    assert!(h.log_text("long").contains("re-attached to pod"));
    python.release(&key("long"));
    h.secret_gone("long").await;
    pods.shutdown().await;
}

#[tokio::test]
async fn a_running_worker_pod_never_heard_of_is_killed_as_a_zombie_and_its_pod_deleted() {
    let timeout = Duration::from_millis(1500);
    let mut h = harness_with(timeout).await;
    h.fake.script(
        IMAGE,
        PodScript {
            runs_forever: true,
            ..PodScript::default()
        },
    );
    let began = std::time::Instant::now();
    h.python.start(h.spec("zombie")).expect("started");
    match h.finished("zombie").await {
        TryOutcome::Failed(FailureReason::Task(why)) => {
            assert!(
                why.contains("its worker was not heard of for 1s")
                    && why.contains("task_instance_heartbeat_timeout (1s): a zombie"),
                "the local runtime's zombie reason: {why}"
            );
        }
        other => panic!("expected the try to fail as a zombie, got {other:?}"),
    }
    let took = began.elapsed();
    assert!(
        took >= timeout && took < timeout + Duration::from_secs(5),
        "killed once past the timeout: {took:?}"
    );
    let log = h.log_text("zombie");
    assert!(
        log.contains("killing the try: its worker was not heard of")
            && log.contains("deleting pod"),
        "{log}"
    );
    h.pods_gone().await;
    h.python.release(&key("zombie"));
    h.secret_gone("zombie").await;
    h.pods.shutdown().await;
}

#[tokio::test]
async fn a_pending_worker_pod_is_not_silent_and_heartbeats_keep_a_running_one_alive() {
    let timeout = Duration::from_millis(1000);
    let mut h = harness_with(timeout).await;
    // Pending twice the timeout (not yet scheduled), then a short run that reports nothing:
    // the try fails for exiting without reporting, not as a zombie.
    h.fake.script(
        IMAGE,
        PodScript {
            scheduling: gust_kube_fake::Scheduling::After(Duration::from_millis(2000)),
            runs_for: Duration::from_millis(300),
            ..PodScript::default()
        },
    );
    h.python.start(h.spec("pending")).expect("started");
    match h.finished("pending").await {
        TryOutcome::Failed(FailureReason::Task(why)) => {
            assert!(why.contains("without reporting"), "not a zombie: {why}");
        }
        other => panic!("expected a failure without a report, got {other:?}"),
    }
    h.python.release(&key("pending"));
    h.secret_gone("pending").await;
    h.pods_gone().await;

    // Running three times the timeout, heartbeating well within it, then reporting success.
    h.fake
        .script(IMAGE, worker_script(Duration::from_millis(3000)));
    h.python.start(h.spec("beating")).expect("started");
    let beats = async {
        for _ in 0..12 {
            h.heartbeat("beating").await;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        h.report("beating", Reported::Success, Some(serde_json::json!(3)))
            .await;
    };
    beats.await;
    assert_eq!(
        h.finished("beating").await,
        TryOutcome::Succeeded {
            xcom: Some(serde_json::json!(3))
        },
        "a worker that heartbeats is not a zombie"
    );
    h.python.release(&key("beating"));
    h.secret_gone("beating").await;
    h.pods.shutdown().await;
}

#[tokio::test]
async fn the_worker_pod_carries_the_templates_and_the_overrides_settings() {
    let dir = tempfile::tempdir().expect("tempdir");
    let template_file = dir.path().join("worker-pod.yaml");
    std::fs::write(
        &template_file,
        r#"apiVersion: v1
kind: Pod
metadata:
  name: placeholder
  labels: {team: data}
spec:
  serviceAccountName: airflow-worker
  nodeSelector: {pool: workers}
  tolerations:
    - {key: dedicated, operator: Equal, value: airflow, effect: NoSchedule}
  containers:
    - name: base
      image: ignored
      env:
        - {name: TEAM, value: data}
      resources:
        requests: {cpu: 500m, memory: 512Mi}
"#,
    )
    .expect("a template");
    let template = gust_exec_local::python_pod::read_pod_template(&template_file).expect("a pod");
    let mut h = harness_full(Duration::from_secs(300), Some(Arc::new(template))).await;
    h.fake
        .script(IMAGE, worker_script(Duration::from_millis(300)));
    let mut spec = h.spec("sized");
    spec.args.insert(
        "executor_config".into(),
        serde_json::json!({"pod_override": {"spec": {
            "nodeSelector": {"pool": "highmem"},
            "containers": [{"name": "base", "env": [{"name": "EXTRA", "value": "1"}],
                            "resources": {"limits": {"memory": "4Gi"}}}],
        }}}),
    );
    h.python.start(spec).expect("started");
    h.report("sized", Reported::Success, None).await;
    let pods = h.fake.pods();
    let pod = pods.first().expect("a pod");
    let pod_spec = pod.spec.as_ref().expect("a spec");
    let base = &pod_spec.containers[0];
    assert_eq!(base.name, "base");
    assert_eq!(
        base.image.as_deref(),
        Some(IMAGE),
        "worker_image over the template's"
    );
    let env: Vec<(String, Option<String>)> = base
        .env
        .iter()
        .flatten()
        .map(|v| (v.name.clone(), v.value.clone()))
        .collect();
    assert!(
        env.contains(&("TEAM".into(), Some("data".into())))
            && env.contains(&("EXTRA".into(), Some("1".into()))),
        "the template's and the override's variables: {env:?}"
    );
    let limits = base
        .resources
        .as_ref()
        .and_then(|r| r.limits.as_ref())
        .expect("the override's limits");
    assert_eq!(limits["memory"].0, "4Gi");
    assert_eq!(
        pod_spec.node_selector.as_ref().map(|n| n["pool"].as_str()),
        Some("highmem"),
        "the override's node selector"
    );
    assert_eq!(
        pod_spec.service_account_name.as_deref(),
        Some("airflow-worker")
    );
    assert_eq!(
        pod_spec.tolerations.as_ref().map(|t| t[0].key.as_deref()),
        Some(Some("dedicated"))
    );
    let labels = pod.metadata.labels.as_ref().expect("labels");
    assert_eq!(labels["team"], "data");
    assert_eq!(labels["gust.io/python-worker"], "true");
    assert_eq!(
        base.args.as_deref(),
        Some(
            &[
                "--json-path".to_owned(),
                "/opt/gust/bundle/workload.json".to_owned()
            ][..]
        )
    );
    assert_eq!(
        h.finished("sized").await,
        TryOutcome::Succeeded { xcom: None }
    );
    h.python.release(&key("sized"));
    h.secret_gone("sized").await;
    h.pods.shutdown().await;
}
