//! Spark applications and manifests from the command line: `gust dags test` running the example
//! DAG that applies ConfigMaps, runs a Spark application and deletes the ConfigMaps against the
//! fake cluster, what `gust tasks dry-run` prints for each operator, and the RBAC they need.

mod common;

use std::time::Duration;

use common::{examples, gust, test_run_id};
use gust_kube_fake::{FakeCluster, PodScript, spark_application_crd};
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};

async fn install_spark_operator(fake: &FakeCluster) {
    let client = kube::Client::try_from(kube::Config::new(fake.url().parse().expect("a URL")))
        .expect("a client");
    let crds: kube::Api<DynamicObject> = kube::Api::all_with(
        client,
        &ApiResource::from_gvk(&GroupVersionKind::gvk(
            "apiextensions.k8s.io",
            "v1",
            "CustomResourceDefinition",
        )),
    );
    let crd: DynamicObject = serde_json::from_value(spark_application_crd()).expect("a CRD");
    crds.patch(
        "sparkapplications.sparkoperator.k8s.io",
        &PatchParams::apply("test"),
        &Patch::Apply(&crd),
    )
    .await
    .expect("the CRD is applied");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_example_applies_configmaps_runs_spark_and_deletes_them_on_a_cluster() {
    let fake = FakeCluster::start().await;
    install_spark_operator(&fake).await;
    fake.script(
        "apache/spark-py:v3.4.0",
        PodScript {
            lines: vec!["Pi is roughly 3.141".into()],
            runs_for: Duration::from_millis(200),
            ..PodScript::default()
        },
    );
    let home = tempfile::tempdir().expect("tempdir");
    let kubeconfig = home.path().join("kubeconfig");
    std::fs::write(&kubeconfig, fake.kubeconfig_yaml()).expect("write");
    let home_path = home.path().to_owned();
    let output = tokio::task::spawn_blocking(move || {
        gust(&home_path)
            .env("GUST__KUBERNETES__CONFIG_FILE", &kubeconfig)
            .args([
                "dags",
                "test",
                "spark_with_resources",
                "--logical-date",
                "2024-01-01",
                "--dags-folder",
            ])
            .arg(examples())
            .output()
            .expect("gust ran")
    })
    .await
    .expect("joined");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let logs = home.path().join(format!(
        "logs/dag_id=spark_with_resources/run_id={}",
        test_run_id(&stdout)
    ));
    let read = |task: &str| {
        std::fs::read_to_string(logs.join(format!("task_id={task}/attempt=1.log")))
            .unwrap_or_else(|err| panic!("{task}'s log: {err}"))
    };
    let applied = read("apply_settings");
    assert!(
        applied.contains("applied ConfigMap spark/spark-settings")
            && applied.contains("applied ConfigMap spark/spark-defaults"),
        "{applied}"
    );
    let spark = read("spark_pi");
    assert!(spark.contains("stdout: Pi is roughly 3.141"), "{spark}");
    assert!(spark.contains("is COMPLETED"), "{spark}");
    // What the application was created with: the task's image, the ConfigMaps as variables.
    let created = fake.requests().into_iter().any(|(method, path)| {
        method == gust_kube_fake::Method::POST
            && path.starts_with(
                "/apis/sparkoperator.k8s.io/v1beta2/namespaces/spark/sparkapplications",
            )
    });
    assert!(created, "{:?}", fake.requests());
    let deleted = read("delete_run_config");
    assert!(deleted.contains("deleted ConfigMap spark-run"), "{deleted}");
    assert!(
        fake.objects("", "configmaps").is_empty(),
        "every ConfigMap is deleted again: {:?}",
        fake.objects("", "configmaps")
    );
    tokio::time::timeout(Duration::from_secs(5), async {
        while !fake
            .objects("sparkoperator.k8s.io", "sparkapplications")
            .is_empty()
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the application is deleted once its outcome is recorded");
}

#[test]
fn dry_run_prints_the_spark_application_from_the_seed_template() {
    let home = tempfile::tempdir().expect("tempdir");
    let out = gust(home.path())
        .args([
            "tasks",
            "dry-run",
            "spark_pi",
            "spark_task",
            "--dags-folder",
        ])
        .arg(examples())
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let app: serde_json::Value = serde_yaml_ng::from_slice(&out).expect("the output is YAML");
    assert_eq!(app["kind"], "SparkApplication");
    assert_eq!(app["apiVersion"], "sparkoperator.k8s.io/v1beta2");
    assert_eq!(app["metadata"]["namespace"], "spark");
    assert_eq!(app["metadata"]["labels"]["dag_id"], "spark_pi");
    assert_eq!(
        app["spec"]["image"],
        "gcr.io/spark-operator/spark-py:v3.1.1"
    );
    assert_eq!(app["spec"]["driver"]["serviceAccount"], "default");
    assert!(app["spec"]["driver"].get("container_resources").is_none());
}

#[test]
fn dry_run_prints_manifests_rendered_with_secrets_masked() {
    let home = tempfile::tempdir().expect("tempdir");
    let dags = home.path().join("dags");
    std::fs::create_dir_all(&dags).expect("mkdir");
    std::fs::write(
        dags.join("r.yaml"),
        r#"
r:
  start_date: 2024-01-01
  tasks:
    apply:
      operator: kubernetes_apply
      namespace: ml
      yaml_conf: |
        apiVersion: v1
        kind: ConfigMap
        metadata: {name: "run-{{ ds_nodash }}"}
        data: {DAY: "{{ ds }}"}
        ---
        apiVersion: v1
        kind: Secret
        metadata: {name: db}
        stringData: {password: hunter2}
"#,
    )
    .expect("write");
    let out = gust(home.path())
        .args([
            "tasks",
            "dry-run",
            "r",
            "apply",
            "--logical-date",
            "2024-03-01",
            "--dags-folder",
        ])
        .arg(&dags)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let text = String::from_utf8(out).expect("utf-8");
    assert!(!text.contains("hunter2"), "{text}");
    assert!(
        text.starts_with("# apply server-side (field manager gust); namespaced objects naming no namespace go to ml\n"),
        "{text}"
    );
    let docs: Vec<serde_json::Value> = text
        .split("---\n")
        .map(|doc| serde_yaml_ng::from_str(doc).expect("YAML"))
        .collect();
    assert_eq!(docs[0]["metadata"]["name"], "run-20240301");
    assert_eq!(docs[0]["data"]["DAY"], "2024-03-01");
    assert_eq!(docs[1]["stringData"]["password"], "***");
}

#[test]
fn the_examples_validate_and_rbac_grants_spark_applications_only_when_used() {
    let home = tempfile::tempdir().expect("tempdir");
    let with_spark = gust(home.path())
        .args([
            "kubernetes",
            "rbac",
            "--namespace",
            "spark",
            "--dags-folder",
        ])
        .arg(examples().join("kubernetes"))
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let text = String::from_utf8(with_spark).expect("utf-8");
    assert!(text.contains("sparkapplications"), "{text}");
    assert!(text.contains("sparkoperator.k8s.io"), "{text}");
    let empty = home.path().join("empty");
    std::fs::create_dir_all(&empty).expect("mkdir");
    let without = gust(home.path())
        .args(["kubernetes", "rbac", "--dags-folder"])
        .arg(&empty)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    assert!(
        !String::from_utf8(without)
            .expect("utf-8")
            .contains("sparkapplications")
    );
}
