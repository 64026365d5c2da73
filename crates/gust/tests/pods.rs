//! Pod tasks from the command line: the manifest `gust tasks dry-run` prints, and pod DAGs run
//! with the local pod runtime.

mod common;

use common::{examples, gust, test_run_id};
use k8s_openapi::api::core::v1::Pod;
use predicates::prelude::*;

const POD_DAG: &str = r#"
etl:
  start_date: 2024-01-01
  params: {table: orders}
  tasks:
    extract:
      operator: KubernetesPodOperator
      image: "registry.example/etl:{{ params.table }}"
      cmds: ["python3", "extract.py"]
      arguments: ["--date", "{{ ds }}"]
      env_vars: {DB_PASSWORD: hunter2, MODE: full}
      secrets:
        - {deploy_type: env, deploy_target: token, secret: api, key: token}
      pod_template_file: template.yaml
      do_xcom_push: true
"#;

const TEMPLATE: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  namespace: data
  labels: {team: data}
spec:
  serviceAccountName: etl
  containers:
    - name: base
      resources: {limits: {memory: 1Gi}}
"#;

#[test]
fn dry_run_prints_the_pod_with_templates_rendered_and_secrets_masked() {
    let home = tempfile::tempdir().expect("tempdir");
    let dags = home.path().join("dags");
    std::fs::create_dir_all(&dags).expect("mkdir");
    std::fs::write(dags.join("etl.yaml"), POD_DAG).expect("write");
    std::fs::write(dags.join("template.yaml"), TEMPLATE).expect("write");
    let out = gust(home.path())
        .args([
            "tasks",
            "dry-run",
            "etl",
            "extract",
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
    assert!(!text.contains("hunter2"), "a secret was printed: {text}");
    let pod: Pod = serde_yaml_ng::from_str(&text).expect("the output is a Kubernetes Pod");
    let meta = &pod.metadata;
    assert_eq!(meta.namespace.as_deref(), Some("data"), "from the template");
    let labels = meta.labels.as_ref().expect("labels");
    assert_eq!(labels["team"], "data");
    assert_eq!(labels["dag_id"], "etl");
    assert!(
        meta.name
            .as_deref()
            .expect("a name")
            .starts_with("extract-")
    );
    let spec = pod.spec.expect("a spec");
    assert_eq!(spec.service_account_name.as_deref(), Some("etl"));
    let base = &spec.containers[0];
    assert_eq!(base.image.as_deref(), Some("registry.example/etl:orders"));
    assert_eq!(
        base.args.as_deref(),
        Some(&["--date".to_owned(), "2024-03-01".to_owned()][..])
    );
    let env = base.env.as_ref().expect("env");
    assert_eq!(env[0].value.as_deref(), Some("***"));
    assert_eq!(env[1].value.as_deref(), Some("full"));
    assert_eq!(env[2].name, "TOKEN");
    assert_eq!(spec.containers[1].name, "airflow-xcom-sidecar");
    let limits = base
        .resources
        .as_ref()
        .and_then(|r| r.limits.as_ref())
        .expect("limits");
    assert_eq!(limits["memory"].0, "1Gi");
}

#[test]
fn dry_run_names_a_missing_template() {
    let home = tempfile::tempdir().expect("tempdir");
    let dags = home.path().join("dags");
    std::fs::create_dir_all(&dags).expect("mkdir");
    std::fs::write(dags.join("etl.yaml"), POD_DAG).expect("write");
    gust(home.path())
        .args(["tasks", "dry-run", "etl", "extract", "--dags-folder"])
        .arg(&dags)
        .assert()
        .code(1)
        .stderr(
            predicate::str::contains("etl.extract: pod_template_file")
                .and(predicate::str::contains("template.yaml")),
        );
}

#[test]
fn the_example_pod_dags_run_with_the_local_pod_runtime() {
    let home = tempfile::tempdir().expect("tempdir");
    let mut run_id = String::new();
    for dag in ["kube-operator", "pod_xcom"] {
        let out = gust(home.path())
            .args([
                "dags",
                "test",
                dag,
                "--local-pods",
                "--logical-date",
                "2024-01-01",
                "--dags-folder",
            ])
            .arg(examples())
            .assert()
            .success()
            .stdout(predicate::str::contains(format!("of {dag}: success")));
        run_id = test_run_id(&String::from_utf8_lossy(&out.get_output().stdout));
    }
    let log = home.path().join(format!(
        "logs/dag_id=pod_xcom/run_id={run_id}/task_id=pod_task_xcom_result/attempt=1.log"
    ));
    let text = std::fs::read_to_string(log).expect("the bash task's log");
    assert!(
        text.contains("stdout: 1"),
        "the pod's XCom reached the bash task: {text}"
    );
}

#[test]
fn without_a_pod_runtime_pod_tasks_fail_saying_how_to_get_one() {
    let home = tempfile::tempdir().expect("tempdir");
    gust(home.path())
        .args(["tasks", "test", "pod_xcom", "write-xcom", "--dags-folder"])
        .arg(examples())
        .assert()
        .code(1)
        .stdout(predicate::str::contains("runtime = \"local\""));
}

#[tokio::test(flavor = "multi_thread")]
async fn dags_test_runs_pod_tasks_on_a_cluster_named_by_a_kubeconfig() {
    let fake = gust_kube_fake::FakeCluster::start().await;
    fake.script(
        "alpine",
        gust_kube_fake::PodScript {
            lines: vec!["writing the xcom".into()],
            xcom: Some("[1, 2, 3, 4]".into()),
            ..gust_kube_fake::PodScript::default()
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
                "pod_xcom",
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
    assert_eq!(fake.created_count(), 1);
    let logs = home.path().join(format!(
        "logs/dag_id=pod_xcom/run_id={}",
        test_run_id(&stdout)
    ));
    let pod_log = std::fs::read_to_string(logs.join("task_id=write-xcom/attempt=1.log"))
        .expect("the pod's log");
    assert!(pod_log.contains("stdout: writing the xcom"), "{pod_log}");
    let bash_log = std::fs::read_to_string(logs.join("task_id=pod_task_xcom_result/attempt=1.log"))
        .expect("the bash log");
    assert!(bash_log.contains("stdout: 1"), "{bash_log}");
}

#[test]
fn kubernetes_rbac_prints_the_objects_a_cluster_needs() {
    let home = tempfile::tempdir().expect("tempdir");
    let out = gust(home.path())
        .args(["kubernetes", "rbac", "--namespace", "pipelines"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let text = String::from_utf8(out).expect("utf-8");
    let kinds: Vec<String> = text
        .split("---\n")
        .map(|doc| {
            let value: serde_yaml_ng::Value = serde_yaml_ng::from_str(doc).expect("YAML");
            value["kind"].as_str().expect("a kind").to_owned()
        })
        .collect();
    assert_eq!(kinds, ["ServiceAccount", "Role", "RoleBinding"]);
    assert!(text.contains("namespace: pipelines"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kubernetes_connection_names_the_cluster_and_namespace() {
    let fake = gust_kube_fake::FakeCluster::start().await;
    let home = tempfile::tempdir().expect("tempdir");
    let kubeconfig = home.path().join("kubeconfig");
    std::fs::write(&kubeconfig, fake.kubeconfig_yaml()).expect("write");
    let dags = home.path().join("dags");
    std::fs::create_dir_all(&dags).expect("mkdir");
    std::fs::write(
        dags.join("ml.yaml"),
        "ml:\n  start_date: 2024-01-01\n  tasks:\n    train:\n      operator: KubernetesPodOperator\n      image: trainer\n      kubernetes_conn_id: k8s_ml\n",
    )
    .expect("write");
    let extra = format!(
        r#"{{"kube_config_path": "{}", "namespace": "ml-team"}}"#,
        kubeconfig.display()
    );
    let home_path = home.path().to_owned();
    let output = tokio::task::spawn_blocking(move || {
        gust(&home_path).args(["db", "migrate"]).assert().success();
        gust(&home_path)
            .args([
                "connections",
                "add",
                "k8s_ml",
                "--conn-type",
                "kubernetes",
                "--conn-extra",
            ])
            .arg(&extra)
            .assert()
            .success();
        gust(&home_path)
            .args(["dags", "test", "ml", "--dags-folder"])
            .arg(&dags)
            .output()
            .expect("gust ran")
    })
    .await
    .expect("joined");
    assert!(
        output.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let created = fake.requests().into_iter().any(|(method, path)| {
        method == gust_kube_fake::Method::POST
            && path.starts_with("/api/v1/namespaces/ml-team/pods")
    });
    assert!(
        created,
        "the pod went to the connection's namespace: {:?}",
        fake.requests()
    );
}

#[test]
fn the_local_pod_runtime_reads_secrets_from_connections() {
    let home = tempfile::tempdir().expect("tempdir");
    let dags = home.path().join("dags");
    std::fs::create_dir_all(&dags).expect("mkdir");
    std::fs::write(
        dags.join("s.yaml"),
        r#"
s:
  start_date: 2024-01-01
  tasks:
    use-secret:
      operator: KubernetesPodOperator
      image: x
      cmds: ["sh", "-c", "test \"$SQL_CONN\" = \"$(cat /etc/db/conn)\" && echo length=$(printf %s \"$SQL_CONN\" | wc -c)"]
      secrets:
        - {deploy_type: env, deploy_target: sql_conn, secret: airflow-secrets, key: sql_alchemy_conn}
        - {deploy_type: volume, deploy_target: /etc/db, secret: airflow-secrets, items: [{key: sql_alchemy_conn, path: conn}]}
"#,
    )
    .expect("write");
    gust(home.path()).args(["db", "migrate"]).assert().success();
    gust(home.path())
        .args([
            "connections",
            "add",
            "airflow-secrets",
            "--conn-type",
            "generic",
            "--conn-extra",
            r#"{"sql_alchemy_conn": "postgres://u:hunter2@db/x"}"#,
        ])
        .assert()
        .success();
    let out = gust(home.path())
        .args([
            "dags",
            "test",
            "s",
            "--local-pods",
            "--logical-date",
            "2024-01-01",
            "--dags-folder",
        ])
        .arg(&dags)
        .assert()
        .success();
    let run_id = test_run_id(&String::from_utf8_lossy(&out.get_output().stdout));
    let log = std::fs::read_to_string(home.path().join(format!(
        "logs/dag_id=s/run_id={run_id}/task_id=use-secret/attempt=1.log"
    )))
    .expect("the log");
    assert!(log.contains("stdout: length=25"), "{log}");
    assert!(!log.contains("hunter2"), "{log}");
}

#[test]
fn cluster_operators_under_the_local_pod_runtime_fail_saying_what_to_configure() {
    let home = tempfile::tempdir().expect("home");
    let dags = home.path().join("dags");
    std::fs::create_dir_all(&dags).expect("dags");
    std::fs::write(
        dags.join("j.yaml"),
        "j:\n  schedule: null\n  tasks:\n    job:\n      operator: KubernetesJobOperator\n      image: perl\n      cmds: [perl, -e, 'print 1']\n",
    )
    .expect("write");
    let assert = gust(home.path())
        .args(["dags", "test", "j", "--local-pods", "--dags-folder"])
        .arg(&dags)
        .assert()
        .failure();
    let output = assert.get_output();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        text.contains("kubernetes_job tasks act on a Kubernetes cluster's API")
            && text.contains("[kubernetes] runtime = \"cluster\""),
        "{text}"
    );
}
