//! The example ML pipeline (examples/ml-pipeline) end to end, as a user runs it: three
//! processing steps passing artifacts by XCom, with the local pod runtime, against the local
//! folder store and against a real S3 server (moto, started by tests/s3/start-moto.sh; the
//! S3 case is skipped loudly without GUST_TEST_S3_ENDPOINT unless GUST_REQUIRE_S3=1).

mod common;

use std::path::{Path, PathBuf};

use common::{gust, test_run_id};
use gust_artifacts::testing;
use predicates::prelude::*;

/// A secret key no log, XCom or message may ever show.
const SECRET_KEY: &str = "pipeline-secret-key-7f3a9c";

fn pipeline_folder() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/ml-pipeline")
}

/// Every file under `root`, recursively.
fn files(root: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                found.push(path);
            }
        }
    }
    found
}

fn run_pipeline(home: &Path, envs: &[(&str, &str)]) {
    let mut cmd = gust(home);
    for (name, value) in envs {
        cmd.env(name, value);
    }
    cmd.args([
        "dags",
        "test",
        "ml_pipeline",
        "--local-pods",
        "--logical-date",
        "2026-01-01",
        "--dags-folder",
    ])
    .arg(pipeline_folder())
    .assert()
    .success()
    .stdout(predicate::str::contains("of ml_pipeline: success"));
}

/// The metrics the evaluate step reported, from its log.
fn reported_metrics(home: &Path) -> serde_json::Value {
    let log = files(&home.join("logs"))
        .into_iter()
        .find(|p| p.to_string_lossy().contains("task_id=evaluate"))
        .expect("the evaluate step's log");
    let text = std::fs::read_to_string(log).expect("read log");
    let line = text
        .lines()
        .find_map(|l| l.split_once("metrics: ").map(|(_, json)| json.to_owned()))
        .unwrap_or_else(|| panic!("no metrics line in the evaluate log:\n{text}"));
    serde_json::from_str(&line).expect("metrics JSON")
}

#[test]
fn the_example_pipeline_trains_and_evaluates_against_the_local_store() {
    let home = tempfile::tempdir().expect("tempdir");
    run_pipeline(home.path(), &[]);

    let store = home.path().join("artifacts/ml_pipeline");
    let produced = files(&store);
    let metrics_file = produced
        .iter()
        .find(|p| p.ends_with("evaluate/metrics/metrics.json"))
        .unwrap_or_else(|| panic!("no metrics.json in the store: {produced:?}"));
    let metrics: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(metrics_file).expect("read")).expect("json");
    assert!(metrics["accuracy"].as_f64().expect("accuracy") >= 0.65);
    assert_eq!(
        metrics["candidates"], 4,
        "one model per parameter set: {metrics}"
    );
    assert_eq!(metrics, reported_metrics(home.path()));
    for staged in [
        "prepare/code/prepare.py",
        "evaluate/config/config.json",
        "prepare/train/train.csv",
        // One model per parameter set: `train` is mapped over the list prepare made.
        "train/map_index=0/model/model.json",
        "train/map_index=3/model/model.json",
    ] {
        assert!(
            produced.iter().any(|p| p.ends_with(staged)),
            "{staged} is in the store: {produced:?}"
        );
    }
}

#[tokio::test]
async fn the_example_pipeline_runs_against_an_s3_server_with_credentials_from_a_connection() {
    let Some((endpoint, bucket)) = testing::bucket_for("ml_pipeline").await else {
        return;
    };
    let home = tempfile::tempdir().expect("tempdir");
    common::add_artifacts_connection(home.path(), &endpoint, "pipeline-access-key", SECRET_KEY);
    let root = format!("s3://{bucket}/runs");
    let home_path = home.path().to_owned();
    tokio::task::spawn_blocking(move || {
        run_pipeline(&home_path, &[("GUST__ARTIFACTS__ROOT", &root)]);
    })
    .await
    .expect("the pipeline ran");
    let metrics = reported_metrics(home.path());
    assert!(metrics["accuracy"].as_f64().expect("accuracy") >= 0.65);

    let listing = gust(home.path())
        .args([
            "artifacts",
            "ls",
            &format!("s3://{bucket}/runs/ml_pipeline/"),
        ])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let listing = String::from_utf8(listing).expect("utf-8");
    assert!(
        listing.contains("evaluate/metrics/metrics.json"),
        "{listing}"
    );
    assert!(
        listing.contains("train/map_index=3/model/model.json"),
        "{listing}"
    );
    assert!(
        !home.path().join("artifacts").exists(),
        "nothing went to the local store"
    );

    for file in files(home.path()) {
        if file.to_string_lossy().contains("gust.db") {
            continue; // the connection itself, encrypted
        }
        let bytes = std::fs::read(&file).expect("read");
        assert!(
            !String::from_utf8_lossy(&bytes).contains(SECRET_KEY),
            "the secret key is in {}",
            file.display()
        );
    }
}

/// A one-step DAG for the cluster test; the pod is kept so its manifest can be read.
const CLUSTER_DAG: &str = "\
ml:
  start_date: 2024-01-01
  tasks:
    train:
      operator: ProcessingStep
      image: python:3.11-slim
      code: train.py
      on_finish_action: keep_pod
      outputs:
        - {name: model}
";

#[tokio::test(flavor = "multi_thread")]
async fn on_a_cluster_a_step_is_a_pod_with_the_fetch_init_container_and_its_code_in_s3() {
    let Some((endpoint, bucket)) = testing::bucket_for("ml_cluster").await else {
        return;
    };
    let fake = gust_kube_fake::FakeCluster::start().await;
    let model_uri = format!("s3://{bucket}/runs/ml/model");
    fake.script(
        "python:3.11-slim",
        gust_kube_fake::PodScript {
            lines: vec!["training".into()],
            // What `gust artifacts run` writes in a real pod: the outputs' URIs.
            xcom: Some(serde_json::json!({"model": model_uri}).to_string()),
            ..gust_kube_fake::PodScript::default()
        },
    );
    let home = tempfile::tempdir().expect("tempdir");
    let kubeconfig = home.path().join("kubeconfig");
    std::fs::write(&kubeconfig, fake.kubeconfig_yaml()).expect("write");
    let dags = home.path().join("dags");
    std::fs::create_dir_all(&dags).expect("mkdir");
    std::fs::write(dags.join("ml.yaml"), CLUSTER_DAG).expect("write");
    std::fs::write(dags.join("train.py"), "print('training')\n").expect("write");
    common::add_artifacts_connection(home.path(), &endpoint, "cluster-access-key", SECRET_KEY);

    let home_path = home.path().to_owned();
    let root = format!("s3://{bucket}/runs");
    let output = tokio::task::spawn_blocking(move || {
        gust(&home_path)
            .env("GUST__KUBERNETES__CONFIG_FILE", &kubeconfig)
            .env("GUST__ARTIFACTS__ROOT", &root)
            .env("GUST__ARTIFACTS__POD_SECRET", "gust-artifacts")
            .args([
                "dags",
                "test",
                "ml",
                "--logical-date",
                "2024-01-01",
                "--dags-folder",
            ])
            .arg(&dags)
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

    let pods = fake.pods();
    assert_eq!(pods.len(), 1);
    let pod = serde_json::to_value(&pods[0]).expect("pod as JSON");
    assert!(
        !pod.to_string().contains(SECRET_KEY),
        "no credential in the pod"
    );
    let init = &pod["spec"]["initContainers"][0];
    assert_eq!(init["name"], "gust-fetch");
    assert_eq!(init["command"][0], "gust");
    assert_eq!(init["envFrom"][0]["secretRef"]["name"], "gust-artifacts");
    assert_eq!(init["envFrom"][0]["prefix"], "GUST_ARTIFACTS_");
    let base = &pod["spec"]["containers"][0];
    let command: Vec<&str> = base["command"]
        .as_array()
        .expect("a command")
        .iter()
        .filter_map(serde_json::Value::as_str)
        .collect();
    assert_eq!(command[..3], ["/opt/gust/bin/gust", "artifacts", "run"]);
    assert!(
        command.ends_with(&["--", "python3", "/opt/ml/processing/input/code/train.py"]),
        "{command:?}"
    );

    let run_prefix = format!("s3://{bucket}/runs/ml/{}/train/code/", test_run_id(&stdout));
    let staged = gust_artifacts::Artifacts::new(testing::credentials(&endpoint))
        .list(&run_prefix)
        .await
        .expect("list the staged code");
    assert_eq!(staged.len(), 1, "{staged:?}");
    assert!(staged[0].uri.ends_with("/train/code/train.py"));
    fake.shutdown().await;
}

#[test]
fn a_missing_input_fails_the_step_with_its_uri_in_the_failure() {
    let home = tempfile::tempdir().expect("tempdir");
    let dags = home.path().join("dags");
    std::fs::create_dir_all(&dags).expect("mkdir");
    let missing = home.path().join("store/nothing-here");
    std::fs::write(
        dags.join("miss.yaml"),
        format!(
            "miss:\n  start_date: 2024-01-01\n  tasks:\n    step:\n      operator: processing\n      \
             image: python:3.11-slim\n      command: [\"true\"]\n      inputs:\n        - {{name: data, \
             source: {}}}\n",
            missing.display()
        ),
    )
    .expect("write");
    gust(home.path())
        .args(["dags", "test", "miss", "--local-pods", "--dags-folder"])
        .arg(&dags)
        .assert()
        .failure()
        .stdout(
            predicate::str::contains("init container \"gust-fetch\" exited with code 1").and(
                predicate::str::contains(format!("nothing at {}", missing.display())),
            ),
        );
}
