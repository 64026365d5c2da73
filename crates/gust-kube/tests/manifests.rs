//! `kubernetes_apply`, `kubernetes_delete_resource`, `kueue_install` and `spark_kubernetes`
//! tries against the fake API server, over real HTTP with the real kube client: what they do
//! to the cluster, what reaches the try's log, and every failure's message.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use gust_core::clock::SystemClock;
use gust_core::ids::{DagId, RunId, TaskId, TryNumber};
use gust_executor::testing::finished;
use gust_executor::{Executor, LaunchSpec, Routed, TryEvent, TryKey, TryOutcome, event_channel};
use gust_kube::runtime::{
    Cluster, ClusterChoice, KubeConfig, KubeExecutor, ResourceExecutor, SparkExecutor,
};
use gust_kube_fake::{FakeCluster, PodScript, SparkScript, spark_application_crd};
use serde_json::{Value, json};
use tokio::sync::mpsc::Receiver;

struct Harness {
    fake: FakeCluster,
    kube: KubeExecutor,
    runtime: Routed,
    events: Receiver<TryEvent>,
    dir: tempfile::TempDir,
}

async fn runtime(
    fake: &FakeCluster,
    kueue: Option<PathBuf>,
) -> (KubeExecutor, Routed, Receiver<TryEvent>) {
    let (tx, events) = event_channel();
    let config = KubeConfig {
        kueue_manifests_folder: kueue,
        ..KubeConfig::default()
    };
    let kube = KubeExecutor::new(config, tx.clone(), Arc::new(SystemClock));
    let client = kube::Client::try_from(kube::Config::new(fake.url().parse().expect("a URL")))
        .expect("a client");
    kube.use_cluster(
        ClusterChoice::default(),
        Cluster {
            client,
            namespace: "default".into(),
        },
    )
    .await;
    let mut routed = Routed::new(Arc::new(kube.clone()));
    for (operator, runtime) in ResourceExecutor::routes(&kube, &tx) {
        routed = routed.route(operator, runtime);
    }
    routed = routed.route("spark_kubernetes", Arc::new(SparkExecutor::new(&kube, &tx)));
    (kube, routed, events)
}

async fn harness() -> Harness {
    let fake = FakeCluster::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (kube, runtime, events) = runtime(&fake, Some(dir.path().join("kueue"))).await;
    Harness {
        fake,
        kube,
        runtime,
        events,
        dir,
    }
}

fn key(task: &str) -> TryKey {
    TryKey {
        dag_id: DagId::new("manifests").expect("id"),
        run_id: RunId::new("manual__2024-01-01T00:00:00+00:00").expect("id"),
        task_id: TaskId::new(task).expect("id"),
        map_index: gust_core::mapping::UNMAPPED,
        try_number: TryNumber(1),
    }
}

impl Harness {
    fn spec(&self, task: &str, operator: &str, args: Value) -> LaunchSpec {
        LaunchSpec {
            key: key(task),
            operator: operator.into(),
            args: args.as_object().cloned().expect("a map"),
            do_xcom_push: false,
            execution_timeout: None,
            log_path: self.dir.path().join(format!("logs/{task}.log")),
            dag_file: self.dir.path().join("dag.yaml"),
            context: Default::default(),
        }
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::create_dir_all(path.parent().expect("a folder")).expect("mkdir");
        std::fs::write(&path, text).expect("write");
        path
    }

    fn log_text(&self, task: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("logs/{task}.log")))
            .unwrap_or_default()
    }

    async fn run(&mut self, spec: LaunchSpec) -> TryOutcome {
        let task = spec.key.task_id.to_string();
        self.runtime.start(spec).expect("started");
        let outcome = finished(&mut self.events, &key(&task), Duration::from_secs(30)).await;
        self.runtime.release(&key(&task));
        outcome
    }

    async fn install_spark_crd(&mut self) {
        let crd = serde_json::to_string(&spark_application_crd()).expect("JSON");
        let spec = self.spec("crd", "kubernetes_apply", json!({"yaml_conf": crd}));
        assert_eq!(self.run(spec).await, TryOutcome::Succeeded { xcom: None });
    }
}

fn failure(outcome: &TryOutcome) -> String {
    match outcome {
        TryOutcome::Failed(reason) => reason.to_string(),
        other => panic!("expected a failure, got {other:?}"),
    }
}

const TWO_CONFIG_MAPS: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  a: \"1\"\n  b: \"2\"\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: other\n  namespace: team\ndata: {x: y}\n";

#[tokio::test]
async fn a_manifest_file_is_applied_server_side_and_applying_again_converges() {
    let mut h = harness().await;
    h.write("cm.yaml", TWO_CONFIG_MAPS);
    let spec = h.spec(
        "apply",
        "kubernetes_apply",
        json!({"yaml_conf_file": "cm.yaml", "namespace": "ml"}),
    );
    assert_eq!(h.run(spec).await, TryOutcome::Succeeded { xcom: None });
    let settings = h
        .fake
        .object("", "configmaps", "ml", "settings")
        .expect("applied in the task's namespace");
    assert_eq!(settings["data"], json!({"a": "1", "b": "2"}));
    assert_eq!(settings["metadata"]["managedFields"][0]["manager"], "gust");
    assert!(
        h.fake.object("", "configmaps", "team", "other").is_some(),
        "a document's own namespace wins"
    );
    let log = h.log_text("apply");
    assert!(
        log.contains("applied ConfigMap ml/settings (server-side"),
        "{log}"
    );

    // The same task with one key fewer: server-side apply removes what gust no longer applies.
    let spec = h.spec(
        "again",
        "kubernetes_apply",
        json!({"yaml_conf": {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}, "data": {"a": "3"}}, "namespace": "ml"}),
    );
    assert_eq!(h.run(spec).await, TryOutcome::Succeeded { xcom: None });
    let settings = h
        .fake
        .object("", "configmaps", "ml", "settings")
        .expect("still there");
    assert_eq!(settings["data"], json!({"a": "3"}));
}

#[tokio::test]
async fn deleting_removes_the_objects_and_what_is_already_gone_is_not_an_error() {
    let mut h = harness().await;
    h.write("cm.yaml", TWO_CONFIG_MAPS);
    let apply = h.spec(
        "apply",
        "kubernetes_apply",
        json!({"yaml_conf_file": "cm.yaml"}),
    );
    assert_eq!(h.run(apply).await, TryOutcome::Succeeded { xcom: None });
    for task in ["delete", "delete-again"] {
        let spec = h.spec(
            task,
            "kubernetes_delete_resource",
            json!({"yaml_conf_file": "cm.yaml"}),
        );
        assert_eq!(h.run(spec).await, TryOutcome::Succeeded { xcom: None });
    }
    assert!(h.fake.objects("", "configmaps").is_empty());
    assert!(h.log_text("delete").contains("deleted ConfigMap settings"));
    assert!(
        h.log_text("delete-again")
            .contains("ConfigMap settings is already gone")
    );
}

#[tokio::test]
async fn an_uninstalled_crd_an_unknown_kind_and_invalid_yaml_fail_with_one_clear_line() {
    let mut h = harness().await;
    let widget = "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\n";
    let spec = h.spec("crd", "kubernetes_apply", json!({"yaml_conf": widget}));
    let message = failure(&h.run(spec).await);
    assert_eq!(
        message,
        "yaml_conf: document 1 (line 1) Widget w: cluster (the kubeconfig's current context) does not serve example.com/v1: the CRD defining Widget is not installed (apply it first, in an earlier document or task)"
    );
    let spec = h.spec(
        "kind",
        "kubernetes_apply",
        json!({"yaml_conf": "apiVersion: v1\nkind: ConfigMapp\nmetadata: {name: c}\n"}),
    );
    let message = failure(&h.run(spec).await);
    assert!(
        message.contains("has no kind ConfigMapp in v1; check `kind` and `apiVersion`"),
        "{message}"
    );
    h.write(
        "bad.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n   x: y\n",
    );
    let spec = h.spec(
        "yaml",
        "kubernetes_apply",
        json!({"yaml_conf_file": "bad.yaml"}),
    );
    let message = failure(&h.run(spec).await);
    assert!(message.starts_with("invalid arguments: "), "{message}");
    assert!(message.contains("bad.yaml:5:"), "{message}");
    assert!(h.fake.objects("", "configmaps").is_empty());
}

#[tokio::test]
async fn a_crd_and_its_objects_apply_in_one_task() {
    let mut h = harness().await;
    let crd = serde_json::to_string(&spark_application_crd()).expect("JSON");
    let app = "---\napiVersion: sparkoperator.k8s.io/v1beta2\nkind: SparkApplication\nmetadata: {name: kept}\nspec: {image: spark:ok}\n";
    let text = format!("{crd}\n{app}");
    let spec = h.spec("both", "kubernetes_apply", json!({"yaml_conf": text}));
    assert_eq!(h.run(spec).await, TryOutcome::Succeeded { xcom: None });
    assert!(
        h.fake
            .object(
                "sparkoperator.k8s.io",
                "sparkapplications",
                "default",
                "kept"
            )
            .is_some()
    );
}

#[tokio::test]
async fn a_forbidden_cluster_says_which_right_is_missing() {
    let mut h = harness().await;
    h.fake
        .set_fail_next(1, gust_kube_fake::StatusCode::FORBIDDEN);
    let spec = h.spec(
        "forbidden",
        "kubernetes_apply",
        json!({"yaml_conf": TWO_CONFIG_MAPS}),
    );
    let message = failure(&h.run(spec).await);
    assert!(message.contains("forbidden"), "{message}");
}

fn kueue_release() -> String {
    let crd = json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "clusterqueues.kueue.x-k8s.io"},
        "spec": {"group": "kueue.x-k8s.io", "scope": "Cluster",
                 "names": {"plural": "clusterqueues", "kind": "ClusterQueue"},
                 "versions": [{"name": "v1beta1", "served": true, "storage": true}]},
    });
    format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: kueue-system}}\n---\n{}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: kueue-controller-manager, namespace: kueue-system}}\nspec: {{replicas: 1}}\n",
        serde_json::to_string(&crd).expect("JSON")
    )
}

#[tokio::test]
async fn kueue_install_applies_the_named_release_from_the_configured_folder() {
    let mut h = harness().await;
    h.write("kueue/kueue-v0.9.1.yaml", &kueue_release());
    let spec = h.spec(
        "install",
        "kueue_install",
        json!({"kueue_version": "v0.9.1"}),
    );
    assert_eq!(h.run(spec).await, TryOutcome::Succeeded { xcom: None });
    assert!(
        h.fake
            .object("", "namespaces", "", "kueue-system")
            .is_some()
    );
    assert!(
        h.fake
            .object(
                "apps",
                "deployments",
                "kueue-system",
                "kueue-controller-manager"
            )
            .is_some()
    );
    assert!(
        h.fake
            .object(
                "apiextensions.k8s.io",
                "customresourcedefinitions",
                "",
                "clusterqueues.kueue.x-k8s.io"
            )
            .is_some()
    );

    let spec = h.spec(
        "missing",
        "kueue_install",
        json!({"kueue_version": "v0.10.0"}),
    );
    let message = failure(&h.run(spec).await);
    assert!(
        message.contains("kueue-v0.10.0.yaml does not exist (versions in"),
        "{message}"
    );
    assert!(message.contains(": v0.9.1)"), "{message}");
}

#[tokio::test]
async fn kueue_install_without_a_folder_says_how_to_configure_one() {
    let fake = FakeCluster::start().await;
    let (_kube, runtime, mut events) = runtime(&fake, None).await;
    let dir = tempfile::tempdir().expect("tempdir");
    runtime
        .start(LaunchSpec {
            key: key("install"),
            operator: "kueue_install".into(),
            args: json!({"kueue_version": "v0.9.1"})
                .as_object()
                .cloned()
                .expect("map"),
            do_xcom_push: false,
            execution_timeout: None,
            log_path: dir.path().join("install.log"),
            dag_file: dir.path().join("dag.yaml"),
            context: Default::default(),
        })
        .expect("started");
    let outcome = finished(&mut events, &key("install"), Duration::from_secs(10)).await;
    assert!(failure(&outcome).contains("set [kubernetes] kueue_manifests_folder"));
}

fn spark_template(dir: &Path) {
    std::fs::write(
        dir.join("spark.yaml"),
        "spark:\n  apiVersion: sparkoperator.k8s.io/v1beta2\n  kind: SparkApplication\n  metadata: {namespace: spark}\n  spec:\n    type: Python\n    mode: cluster\n    driver: {serviceAccount: spark}\n    executor: {instances: 1}\nkubernetes:\n  env_vars: [{name: MODE, value: full}]\n  in_cluster: true\n",
    )
    .expect("write");
}

#[tokio::test]
async fn a_spark_application_runs_with_its_driver_log_and_is_deleted_once_recorded() {
    let mut h = harness().await;
    h.install_spark_crd().await;
    h.fake.script(
        "spark:3.5",
        PodScript {
            lines: vec!["Pi is roughly 3.14".into()],
            runs_for: Duration::from_millis(200),
            ..PodScript::default()
        },
    );
    spark_template(h.dir.path());
    let spec = h.spec(
        "pi",
        "spark_kubernetes",
        json!({"application_file": "spark.yaml", "image": "spark:3.5", "code_path": "local:///opt/pi.py"}),
    );
    assert_eq!(h.run(spec).await, TryOutcome::Succeeded { xcom: None });
    let log = h.log_text("pi");
    assert!(log.contains("created SparkApplication pi-"), "{log}");
    assert!(
        log.contains("is RUNNING") && log.contains("is COMPLETED"),
        "{log}"
    );
    assert!(log.contains("stdout: Pi is roughly 3.14"), "{log}");
    tokio::time::timeout(Duration::from_secs(5), async {
        while !h
            .fake
            .objects("sparkoperator.k8s.io", "sparkapplications")
            .is_empty()
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the application is deleted once the outcome is recorded");
}

#[tokio::test]
async fn a_failed_spark_application_fails_the_try_with_its_error_message_and_can_be_kept() {
    let mut h = harness().await;
    h.install_spark_crd().await;
    h.fake.script(
        "spark:broken",
        PodScript {
            exit_code: 1,
            ..PodScript::default()
        },
    );
    h.fake.script_spark(
        "rejected",
        SparkScript {
            submission_failure: Some("spark-submit: main class not found".into()),
            ..SparkScript::default()
        },
    );
    spark_template(h.dir.path());
    let spec = h.spec(
        "broken",
        "spark_kubernetes",
        json!({"application_file": "spark.yaml", "image": "spark:broken", "delete_on_termination": false}),
    );
    let message = failure(&h.run(spec).await);
    assert!(message.starts_with("SparkApplication broken-"), "{message}");
    assert!(
        message
            .contains("in namespace spark ended FAILED: driver container failed with ExitCode: 1"),
        "{message}"
    );
    assert_eq!(
        h.fake
            .objects("sparkoperator.k8s.io", "sparkapplications")
            .len(),
        1,
        "kept"
    );
    let spec = h.spec(
        "rejected",
        "spark_kubernetes",
        json!({"application_file": "spark.yaml", "image": "spark:ok", "name": "rejected", "random_name_suffix": false}),
    );
    let message = failure(&h.run(spec).await);
    assert!(
        message.contains("ended SUBMISSION_FAILED: spark-submit: main class not found"),
        "{message}"
    );
}

#[tokio::test]
async fn without_the_spark_operator_the_try_says_to_install_it() {
    let mut h = harness().await;
    spark_template(h.dir.path());
    let spec = h.spec(
        "pi",
        "spark_kubernetes",
        json!({"application_file": "spark.yaml", "image": "x"}),
    );
    let message = failure(&h.run(spec).await);
    assert!(
        message.contains("the SparkApplication CRD (sparkoperator.k8s.io/v1beta2) is not installed in cluster (the kubeconfig's current context); install the Spark operator"),
        "{message}"
    );
}

#[tokio::test]
async fn after_a_restart_the_spark_try_reattaches_to_its_application() {
    let mut h = harness().await;
    h.install_spark_crd().await;
    h.fake.script(
        "spark:slow",
        PodScript {
            lines: vec!["working".into()],
            runs_for: Duration::from_millis(600),
            ..PodScript::default()
        },
    );
    spark_template(h.dir.path());
    let spec = h.spec(
        "slow",
        "spark_kubernetes",
        json!({"application_file": "spark.yaml", "image": "spark:slow"}),
    );
    h.runtime.start(spec.clone()).expect("started");
    tokio::time::timeout(Duration::from_secs(5), async {
        while !h.log_text("slow").contains("is RUNNING") {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("running");
    h.kube.shutdown().await;
    assert_eq!(
        h.fake
            .objects("sparkoperator.k8s.io", "sparkapplications")
            .len(),
        1,
        "left running"
    );

    let (_kube, adopter, mut events) = runtime(&h.fake, None).await;
    adopter.adopt(spec);
    let outcome = finished(&mut events, &key("slow"), Duration::from_secs(30)).await;
    assert_eq!(outcome, TryOutcome::Succeeded { xcom: None });
    assert!(
        h.log_text("slow")
            .contains("re-attached to SparkApplication slow-")
    );

    let ghost = h.spec(
        "ghost",
        "spark_kubernetes",
        json!({"application_file": "spark.yaml", "image": "x"}),
    );
    adopter.adopt(ghost);
    let outcome = finished(&mut events, &key("ghost"), Duration::from_secs(30)).await;
    assert_eq!(outcome, TryOutcome::NeverStarted);
}

#[tokio::test]
async fn the_sweep_deletes_applications_of_tries_that_are_over_but_not_kept_ones() {
    let mut h = harness().await;
    h.install_spark_crd().await;
    spark_template(h.dir.path());
    // Finished, but its outcome never recorded (a crash before release): left behind.
    let spec = h.spec(
        "left",
        "spark_kubernetes",
        json!({"application_file": "spark.yaml", "image": "x"}),
    );
    h.runtime.start(spec).expect("started");
    let outcome = finished(&mut h.events, &key("left"), Duration::from_secs(30)).await;
    assert_eq!(outcome, TryOutcome::Succeeded { xcom: None });
    let spec = h.spec(
        "kept",
        "spark_kubernetes",
        json!({"application_file": "spark.yaml", "image": "x", "delete_on_termination": false}),
    );
    assert_eq!(h.run(spec).await, TryOutcome::Succeeded { xcom: None });
    let apps = || h.fake.objects("sparkoperator.k8s.io", "sparkapplications");
    assert_eq!(apps().len(), 2);
    let kept = apps()
        .into_iter()
        .find(|a| a["metadata"]["labels"]["task_id"] == "kept")
        .expect("the kept application");
    assert_eq!(kept["metadata"]["labels"]["already_checked"], "True");

    // The spark template puts applications in namespace "spark"; sweep looks where tries go.
    let (tx, _events) = event_channel();
    let config = KubeConfig {
        pod_defaults: gust_kube::build::PodDefaults {
            namespace: Some("spark".into()),
            ..gust_kube::build::PodDefaults::default()
        },
        ..KubeConfig::default()
    };
    let kube = KubeExecutor::new(config, tx.clone(), Arc::new(SystemClock));
    let client = kube::Client::try_from(kube::Config::new(h.fake.url().parse().expect("a URL")))
        .expect("a client");
    kube.use_cluster(
        ClusterChoice::default(),
        Cluster {
            client,
            namespace: "default".into(),
        },
    )
    .await;
    let spark = SparkExecutor::new(&kube, &tx);
    spark.sweep(gust_executor::SweepScope {
        dags: [DagId::new("manifests").expect("id")].into(),
        live: Vec::new(),
    });
    tokio::time::timeout(Duration::from_secs(5), async {
        while apps().len() != 1 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the left-behind application is swept");
    assert_eq!(apps()[0]["metadata"]["labels"]["task_id"], "kept");
}
