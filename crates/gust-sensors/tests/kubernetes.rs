//! The Kubernetes sensors against the fake API server, over real HTTP with the real kube client
//! and the cluster runtime's clients: a Job's `Complete` and `Failed` conditions, a field of
//! another kind compared with a value, SparkApplications' states (the fake's scripted Spark
//! operator), an object that does not exist, a 403 from the API server, and a DAG whose sensor
//! task waits for a Job under `gust dags test`'s driver.

mod support;

use std::sync::Arc;
use std::time::Duration;

use gust_core::clock::{Clock, SystemClock};
use gust_core::state::TaskState;
use gust_executor::event_channel;
use gust_kube::runtime::{Cluster, ClusterChoice, KubeConfig, KubeExecutor, ObjectReader};
use gust_kube_fake::{FakeCluster, PodScript, StatusCode, spark_application_crd};
use gust_operators::read_args;
use gust_operators::sensors::kubernetes::{ResourceSensorArgs, SparkSensorArgs};
use gust_sensors::SensorExecutor;
use gust_sensors::decide::Poke;
use gust_sensors::kubernetes::poke;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use support::{load_dag, run_spec, run_within, states};

struct Harness {
    fake: FakeCluster,
    kube: KubeExecutor,
    client: kube::Client,
}

async fn harness() -> Harness {
    let fake = FakeCluster::start().await;
    let client = kube::Client::try_from(kube::Config::new(fake.url().parse().expect("a URL")))
        .expect("a client");
    let (tx, _events) = event_channel();
    let kube = KubeExecutor::new(KubeConfig::default(), tx, Arc::new(SystemClock));
    kube.use_cluster(
        ClusterChoice::default(),
        Cluster {
            client: client.clone(),
            namespace: "default".into(),
        },
    )
    .await;
    Harness { fake, kube, client }
}

impl Harness {
    async fn job(&self, name: &str, image: &str) {
        let job: Job = serde_json::from_value(json!({
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": name},
            "spec": {
                "backoffLimit": 0,
                "template": {"spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "main", "image": image}]
                }}
            }
        }))
        .expect("a Job");
        Api::<Job>::namespaced(self.client.clone(), "default")
            .create(&PostParams::default(), &job)
            .await
            .expect("created");
    }

    fn objects(&self) -> ObjectReader {
        self.kube.objects()
    }
}

async fn poke_with(objects: &ObjectReader, args: Value) -> (Poke, String) {
    let args: ResourceSensorArgs =
        read_args(args.as_object().expect("a map")).expect("the arguments read");
    poke(&args.wait(), Some(objects)).await
}

fn job_sensor(name: &str) -> Value {
    json!({"api_version": "batch/v1", "kind": "Job", "name": name})
}

/// Pokes until the answer is no longer "not yet".
async fn until_decided(objects: &ObjectReader, args: Value) -> (Poke, String) {
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let (answer, said) = poke_with(objects, args.clone()).await;
            if answer != Poke::NotYet {
                return (answer, said);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the Job ends")
}

#[tokio::test]
async fn a_job_sensor_waits_for_complete_and_fails_on_failed() {
    let h = harness().await;
    h.fake.script(
        "etl-ok",
        PodScript {
            runs_for: Duration::from_millis(700),
            ..PodScript::default()
        },
    );
    h.fake.script(
        "etl-bad",
        PodScript {
            exit_code: 2,
            ..PodScript::default()
        },
    );
    h.job("etl-ok", "etl-ok").await;
    h.job("etl-bad", "etl-bad").await;
    let objects = h.objects();

    let (first, said) = poke_with(&objects, job_sensor("etl-ok")).await;
    assert_eq!(first, Poke::NotYet, "{said}");
    assert!(said.contains("Job default/etl-ok"), "{said}");
    let (met, said) = until_decided(&objects, job_sensor("etl-ok")).await;
    assert_eq!(met, Poke::Met, "{said}");
    assert!(
        said.ends_with("condition Complete is True (CompletionsReached: Reached expected number of succeeded pods)"),
        "{said}"
    );

    let (failed, _) = until_decided(&objects, job_sensor("etl-bad")).await;
    let Poke::Error(why) = failed else {
        panic!("a failed Job fails the poke: {failed:?}");
    };
    assert!(
        why.starts_with(
            "Job default/etl-bad failed: condition Failed is True (BackoffLimitExceeded"
        ),
        "{why}"
    );
    assert!(!why.contains('\n'), "{why}");
}

#[tokio::test]
async fn a_missing_object_and_a_forbidden_read_fail_in_one_line() {
    let h = harness().await;
    let objects = h.objects();
    let (missing, _) = poke_with(&objects, job_sensor("never-created")).await;
    assert_eq!(
        missing,
        Poke::Error(
            "Job default/never-created does not exist on cluster (the kubeconfig's current context) (check its name and namespace; with silent_fail: true the sensor waits for it)".into()
        )
    );
    // Discovery is remembered: the next poke is one GET, which the API server forbids.
    h.fake.set_fail_next(1, StatusCode::FORBIDDEN);
    let (forbidden, _) = poke_with(&objects, job_sensor("never-created")).await;
    let Poke::Error(why) = forbidden else {
        panic!("a 403 fails the poke: {forbidden:?}");
    };
    assert!(
        why.starts_with("cannot get Job default/never-created on cluster (the kubeconfig's current context): forbidden"),
        "{why}"
    );
    // The fake's 403 is not RBAC's (`User "..." cannot get resource ...`), so it names no
    // fix: gust-kube's api_error tests the RBAC hint.
    assert!(why.ends_with("injected fault (403 Forbidden)"), "{why}");
    assert!(!why.contains('\n'), "{why}");

    let (unserved, _) = poke_with(
        &objects,
        json!({"api_version": "example.com/v1", "kind": "Widget", "name": "w",
               "success": {"condition": "Ready"}}),
    )
    .await;
    let Poke::Error(why) = unserved else {
        panic!("an unserved kind fails the poke: {unserved:?}");
    };
    assert!(why.contains("does not serve example.com/v1"), "{why}");
}

#[tokio::test]
async fn a_field_of_any_kind_is_compared_with_a_value() {
    let h = harness().await;
    let configs = Api::<ConfigMap>::namespaced(h.client.clone(), "default");
    let config: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "export"},
        "data": {"state": "running"}
    }))
    .expect("a ConfigMap");
    configs
        .create(&PostParams::default(), &config)
        .await
        .expect("created");
    let sensor = json!({
        "api_version": "v1", "kind": "ConfigMap", "name": "export", "namespace": "default",
        "success": {"jsonpath": "$.data.state", "value": "done"},
        "failure": [{"jsonpath": "$.data.state", "one_of": ["lost", "broken"]}],
    });
    let objects = h.objects();
    assert_eq!(poke_with(&objects, sensor.clone()).await.0, Poke::NotYet);
    configs
        .patch(
            "export",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"state": "done"}})),
        )
        .await
        .expect("patched");
    let (met, said) = poke_with(&objects, sensor.clone()).await;
    assert_eq!(met, Poke::Met, "{said}");
    assert!(said.ends_with("$.data.state is \"done\""), "{said}");
    configs
        .patch(
            "export",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"state": "broken"}})),
        )
        .await
        .expect("patched");
    assert!(matches!(
        poke_with(&objects, sensor).await.0,
        Poke::Error(_)
    ));
}

/// Pokes a `SparkKubernetesSensor` until the answer is no longer "not yet".
async fn until_spark_ends(objects: &ObjectReader, name: &str) -> (Poke, String) {
    let args: SparkSensorArgs = read_args(
        json!({"application_name": name, "namespace": "default"})
            .as_object()
            .expect("a map"),
    )
    .expect("the arguments read");
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let (answer, said) = poke(&args.wait(), Some(objects)).await;
            if answer != Poke::NotYet {
                return (answer, said);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the application ends")
}

fn dynamic(group: &str, version: &str, kind: &str) -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind))
}

#[tokio::test]
async fn the_spark_sensor_reads_the_application_state_as_airflow() {
    let h = harness().await;
    let crds: Api<DynamicObject> = Api::all_with(
        h.client.clone(),
        &dynamic("apiextensions.k8s.io", "v1", "CustomResourceDefinition"),
    );
    let crd: DynamicObject = serde_json::from_value(spark_application_crd()).expect("a CRD");
    crds.patch(
        "sparkapplications.sparkoperator.k8s.io",
        &PatchParams::apply("gust").force(),
        &Patch::Apply(&crd),
    )
    .await
    .expect("the CRD is applied");
    h.fake.script(
        "spark-bad",
        PodScript {
            exit_code: 1,
            ..PodScript::default()
        },
    );
    let apps: Api<DynamicObject> = Api::namespaced_with(
        h.client.clone(),
        "default",
        &dynamic("sparkoperator.k8s.io", "v1beta2", "SparkApplication"),
    );
    for (name, image) in [("pi", "spark-ok"), ("broken", "spark-bad")] {
        let app: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "sparkoperator.k8s.io/v1beta2",
            "kind": "SparkApplication",
            "metadata": {"name": name},
            "spec": {"type": "Python", "mode": "cluster", "image": image,
                     "mainApplicationFile": "local:///opt/pi.py", "sparkVersion": "3.5.0",
                     "driver": {"cores": 1}, "executor": {"cores": 1, "instances": 1}}
        }))
        .expect("an application");
        apps.create(&PostParams::default(), &app)
            .await
            .expect("created");
    }
    let objects = h.objects();
    let (met, said) = until_spark_ends(&objects, "pi").await;
    assert_eq!(met, Poke::Met, "{said}");
    assert!(
        said.ends_with("$.status.applicationState.state is \"COMPLETED\""),
        "{said}"
    );
    let (failed, _) = until_spark_ends(&objects, "broken").await;
    assert_eq!(
        failed,
        Poke::Error(
            "SparkApplication default/broken failed: $.status.applicationState.state is \"FAILED\""
                .into()
        )
    );
}

const DAG: &str = r#"
jobs_done:
  schedule: null
  tasks:
    wait:
      operator: KubernetesResourceSensor
      api_version: batch/v1
      kind: Job
      name: "{{ params.job }}"
      poke_interval: 0.2
    missing:
      operator: kubernetes_resource_sensor
      api_version: batch/v1
      kind: Job
      name: nobody
  params:
    job: nightly
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resource_sensor_task_waits_for_its_job_in_a_dag() {
    let h = harness().await;
    h.fake.script(
        "nightly",
        PodScript {
            runs_for: Duration::from_millis(500),
            ..PodScript::default()
        },
    );
    h.job("nightly", "nightly").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let dag = load_dag(dir.path(), DAG, SystemClock.now());
    let (tx, mut events) = event_channel();
    let executor = SensorExecutor::new(tx, Arc::new(SystemClock), None);
    executor.use_kubernetes(h.objects());
    let spec = run_spec(dir.path(), "manual__jobs", SystemClock.now());
    let report = run_within(Duration::from_secs(60), &dag, &spec, &executor, &mut events).await;
    assert_eq!(
        states(&report),
        [("missing", TaskState::Failed), ("wait", TaskState::Success)],
        "{report:?}"
    );
}
