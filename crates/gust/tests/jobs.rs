//! Job tasks from the command line: the Job `gust tasks dry-run` prints, the permissions
//! `gust kubernetes rbac` grants for them, and the example DAG that creates a suspended Job,
//! resumes it and deletes it (through the first task's XCom) run against the fake cluster.

mod common;

use common::{examples, gust, test_run_id};
use k8s_openapi::api::batch::v1::Job;
use predicates::prelude::*;

const JOB_DAG: &str = r#"
etl:
  start_date: 2024-01-01
  params: {table: orders}
  tasks:
    load:
      operator: KubernetesJobOperator
      image: "registry.example/etl:{{ params.table }}"
      cmds: ["python3", "load.py"]
      env_vars: {DB_PASSWORD: hunter2, MODE: full}
      backoff_limit: 1
      parallelism: 2
      completions: 4
      job_template_file: job.yaml
      wait_until_job_complete: true
"#;

const JOB_TEMPLATE: &str = r#"
apiVersion: batch/v1
kind: Job
metadata:
  namespace: data
  labels: {team: data}
spec:
  ttlSecondsAfterFinished: 300
  template:
    spec:
      serviceAccountName: etl
      containers:
        - name: base
          resources: {limits: {memory: 1Gi}}
"#;

#[test]
fn dry_run_prints_the_job_with_templates_rendered_and_secrets_masked() {
    let home = tempfile::tempdir().expect("tempdir");
    let dags = home.path().join("dags");
    std::fs::create_dir_all(&dags).expect("mkdir");
    std::fs::write(dags.join("etl.yaml"), JOB_DAG).expect("write");
    std::fs::write(dags.join("job.yaml"), JOB_TEMPLATE).expect("write");
    let out = gust(home.path())
        .args(["tasks", "dry-run", "etl", "load", "--dags-folder"])
        .arg(&dags)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let text = String::from_utf8(out).expect("utf-8");
    assert!(!text.contains("hunter2"), "a secret was printed: {text}");
    let job: Job = serde_yaml_ng::from_str(&text).expect("the output is a Kubernetes Job");
    assert!(job.metadata.name.expect("a name").starts_with("job-load-"));
    assert_eq!(
        job.metadata.namespace.as_deref(),
        Some("data"),
        "from the template"
    );
    assert_eq!(job.metadata.labels.expect("labels")["team"], "data");
    let spec = job.spec.expect("a spec");
    assert_eq!(
        (spec.backoff_limit, spec.parallelism, spec.completions),
        (Some(1), Some(2), Some(4))
    );
    assert_eq!(spec.ttl_seconds_after_finished, Some(300));
    let pod = spec.template.spec.expect("a pod spec");
    assert_eq!(pod.service_account_name.as_deref(), Some("etl"));
    let base = &pod.containers[0];
    assert_eq!(base.image.as_deref(), Some("registry.example/etl:orders"));
    let env = base.env.as_ref().expect("env");
    assert_eq!(env[0].value.as_deref(), Some("***"));
    assert_eq!(env[1].value.as_deref(), Some("full"));
}

#[test]
fn dry_run_names_a_missing_job_template() {
    let home = tempfile::tempdir().expect("tempdir");
    let dags = home.path().join("dags");
    std::fs::create_dir_all(&dags).expect("mkdir");
    std::fs::write(dags.join("etl.yaml"), JOB_DAG).expect("write");
    gust(home.path())
        .args(["tasks", "dry-run", "etl", "load", "--dags-folder"])
        .arg(&dags)
        .assert()
        .code(1)
        .stderr(
            predicate::str::contains("etl.load: job_template_file")
                .and(predicate::str::contains("job.yaml")),
        );
}

#[test]
fn a_kueue_job_without_a_queue_is_refused_when_the_dag_loads() {
    let home = tempfile::tempdir().expect("tempdir");
    let dags = home.path().join("dags");
    std::fs::create_dir_all(&dags).expect("mkdir");
    std::fs::write(
        dags.join("k.yaml"),
        "k:\n  tasks:\n    q: {operator: KubernetesStartKueueJobOperator, image: perl}\n",
    )
    .expect("write");
    gust(home.path())
        .args(["dags", "validate"])
        .arg(&dags)
        .assert()
        .code(1)
        .stdout(
            predicate::str::contains("missing argument \"queue_name\" for operator kueue_job")
                .and(predicate::str::contains("k.q")),
        );
}

#[test]
fn rbac_grants_jobs_only_when_the_dags_use_them() {
    let home = tempfile::tempdir().expect("tempdir");
    let with_jobs = gust(home.path())
        .args(["kubernetes", "rbac", "--dags-folder"])
        .arg(examples())
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let text = String::from_utf8(with_jobs).expect("utf-8");
    assert!(
        text.contains("- batch\n") && text.contains("- jobs\n"),
        "{text}"
    );
    let dags = home.path().join("dags");
    std::fs::create_dir_all(&dags).expect("mkdir");
    std::fs::write(
        dags.join("p.yaml"),
        "p:\n  tasks:\n    t: {operator: KubernetesPodOperator, image: x}\n",
    )
    .expect("write");
    let pods_only = gust(home.path())
        .args(["kubernetes", "rbac", "--dags-folder"])
        .arg(&dags)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let text = String::from_utf8(pods_only).expect("utf-8");
    assert!(!text.contains("jobs"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_job_lifecycle_example_creates_resumes_and_deletes_its_job_through_xcom() {
    let fake = gust_kube_fake::FakeCluster::start().await;
    fake.script(
        "perl:5.34.0",
        gust_kube_fake::PodScript {
            lines: vec!["3.14159".into()],
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
                "kubernetes_job_lifecycle",
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
        "logs/dag_id=kubernetes_job_lifecycle/run_id={}",
        test_run_id(&stdout)
    ));
    let read = |task: &str| {
        std::fs::read_to_string(logs.join(format!("task_id={task}/attempt=1.log")))
            .unwrap_or_else(|err| panic!("the log of {task}: {err}"))
    };
    let created = read("create-job");
    let name = created
        .split("created job ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the job's name in the log")
        .to_owned();
    assert!(name.starts_with("job-pi-later-"), "{created}");
    assert!(read("resume-job").contains(&format!("patched job {name}")));
    assert!(read("delete-job").contains(&format!("deleted job {name}")));
    let patched = fake.requests().into_iter().any(|(method, path)| {
        method == gust_kube_fake::Method::PATCH
            && path.starts_with(&format!("/apis/batch/v1/namespaces/default/jobs/{name}"))
    });
    assert!(patched, "{:?}", fake.requests());
    assert!(
        fake.objects("batch", "jobs").is_empty(),
        "the job was deleted"
    );
    assert_eq!(fake.created_count(), 1, "the resumed job ran its one pod");
}
