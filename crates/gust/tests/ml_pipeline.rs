//! The example ML pipeline (examples/ml-pipeline) end to end, as a user runs it: three
//! processing steps passing artifacts by XCom, with the local pod runtime, against the local
//! folder store and against a real S3 server (moto, started by tests/s3/start-moto.sh; the
//! S3 case is skipped loudly without GUST_TEST_S3_ENDPOINT unless GUST_REQUIRE_S3=1).

mod common;

use std::path::{Path, PathBuf};

use common::gust;
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
    assert_eq!(metrics, reported_metrics(home.path()));
    for staged in [
        "prepare/code/prepare.py",
        "train/config/config.json",
        "prepare/train/train.csv",
        "train/model/model.json",
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
    assert!(listing.contains("train/model/model.json"), "{listing}");
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
