//! A two-step SageMaker-style pipeline on the local pod runtime, as a user runs it: scripts
//! that open `/opt/ml/processing/input/...` and write `/opt/ml/processing/output/...` at those
//! fixed paths, a `file://` store root under the temporary folder, and raw data in another
//! temporary folder named by a variable. With bubblewrap the fixed paths exist and the store
//! and the data folder are bound into the sandbox; without it the step is refused with a
//! one-line message saying to install bubblewrap, and `gust dags test` ends.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::gust;
use predicates::prelude::*;

/// Long enough for two Python steps; a hang fails instead of blocking the suite.
const WITHIN: Duration = Duration::from_secs(180);

const DAG: &str = r#"sm_pipeline:
  start_date: 2024-01-01
  schedule: null
  default_args:
    operator: processing
    image: python:3.11-slim
    code: steps
    retries: 0
  tasks:
    prepare:
      command: [python3, /opt/ml/processing/input/code/prepare.py]
      inputs:
        - name: raw
          source: "{{ var.value.raw_data }}"
          destination: /opt/ml/processing/input/raw/
      outputs:
        - {name: train}
    train:
      command: [python3, /opt/ml/processing/input/code/train.py]
      inputs:
        - name: train
          source: "{{ ti.xcom_pull(task_ids='prepare')['train'] }}"
          destination: /opt/ml/processing/input/train/
      outputs:
        - {name: model}
      dependencies: [prepare]
"#;

/// Reads every CSV under the fixed input path; writes the rows at the fixed output path.
const PREPARE: &str = r#"import glob, os
rows = []
for name in sorted(glob.glob("/opt/ml/processing/input/raw/*.csv")):
    with open(name) as f:
        rows += [line for line in f.read().splitlines()[1:] if line]
print(f"prepared {len(rows)} rows")
os.makedirs("/opt/ml/processing/output/train", exist_ok=True)
with open("/opt/ml/processing/output/train/train.csv", "w") as f:
    f.write("x\n" + "\n".join(rows) + "\n")
"#;

const TRAIN: &str = r#"import os
with open("/opt/ml/processing/input/train/train.csv") as f:
    rows = [line for line in f.read().splitlines()[1:] if line]
if not rows:
    raise SystemExit("no training rows")
os.makedirs("/opt/ml/processing/output/model", exist_ok=True)
with open("/opt/ml/processing/output/model/model.txt", "w") as f:
    f.write(f"rows={len(rows)} sum={sum(int(r) for r in rows)}\n")
print("trained")
"#;

/// GUST_HOME with the DAG and its steps, and the raw data in a folder of its own.
struct Pipeline {
    home: tempfile::TempDir,
    data: tempfile::TempDir,
}

impl Pipeline {
    fn new() -> Self {
        let home = tempfile::tempdir().expect("tempdir");
        let dags = home.path().join("dags");
        std::fs::create_dir_all(dags.join("steps")).expect("mkdir");
        std::fs::write(dags.join("sm.yaml"), DAG).expect("write");
        std::fs::write(dags.join("steps/prepare.py"), PREPARE).expect("write");
        std::fs::write(dags.join("steps/train.py"), TRAIN).expect("write");
        let data = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(data.path().join("raw")).expect("mkdir");
        std::fs::write(data.path().join("raw/a.csv"), "x\n1\n2\n").expect("write");
        std::fs::write(data.path().join("raw/b.csv"), "x\n3\n").expect("write");
        let pipeline = Self { home, data };
        let raw = format!("file://{}/raw/", pipeline.data.path().display());
        gust(pipeline.home.path())
            .args(["db", "migrate"])
            .assert()
            .success();
        gust(pipeline.home.path())
            .args(["variables", "set", "raw_data", &raw])
            .assert()
            .success();
        pipeline
    }

    fn store(&self) -> PathBuf {
        self.home.path().join("store")
    }

    /// `gust dags test` of the pipeline with `path` as PATH.
    fn test(&self, path: &str) -> assert_cmd::assert::Assert {
        gust(self.home.path())
            .env("PATH", path)
            .env(
                "GUST__ARTIFACTS__ROOT",
                format!("file://{}", self.store().display()),
            )
            .args([
                "dags",
                "test",
                "sm_pipeline",
                "--local-pods",
                "--dags-folder",
            ])
            .arg(self.home.path().join("dags"))
            .timeout(WITHIN)
            .assert()
    }

    /// Every try log's text.
    fn logs(&self) -> String {
        let mut text = String::new();
        let mut stack = vec![self.home.path().join("logs")];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    stack.push(path);
                } else {
                    text.push_str(&std::fs::read_to_string(&path).unwrap_or_default());
                }
            }
        }
        text
    }
}

/// Whether bwrap runs here (as the runtime probes it).
#[allow(
    clippy::disallowed_methods,
    reason = "a test probing for bwrap, as the runtime does"
)]
fn bwrap_works() -> bool {
    std::process::Command::new("bwrap")
        .args(["--ro-bind", "/", "/", "--", "true"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// A PATH with the programs the pipeline needs but not bwrap.
fn path_without_bwrap(dir: &Path) -> String {
    for program in ["bash", "sh", "python3", "env"] {
        let Some(found) = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
            .map(|d| d.join(program))
            .find(|p| p.is_file())
        else {
            continue;
        };
        std::os::unix::fs::symlink(found, dir.join(program)).expect("symlink");
    }
    dir.display().to_string()
}

#[test]
fn with_bubblewrap_fixed_paths_work_and_file_stores_under_tmp_are_bound() {
    if !bwrap_works() {
        eprintln!(
            "bwrap does not run here: the sandboxed pipeline is not tested (install bubblewrap)"
        );
        return;
    }
    let pipeline = Pipeline::new();
    let path = std::env::var("PATH").unwrap_or_default();
    pipeline
        .test(&path)
        .success()
        .stdout(predicate::str::contains("of sm_pipeline: success"));
    let logs = pipeline.logs();
    assert!(logs.contains("prepared 3 rows"), "{logs}");
    let model = pipeline
        .store()
        .join("sm_pipeline")
        .read_dir()
        .expect("the run's folder")
        .flatten()
        .map(|run| run.path().join("train/model/model.txt"))
        .find(|p| p.is_file())
        .expect("the model in the store");
    assert_eq!(
        std::fs::read_to_string(model).expect("read"),
        "rows=3 sum=6\n"
    );
}

#[test]
fn without_bubblewrap_the_step_is_refused_saying_to_install_it_and_the_test_ends() {
    let pipeline = Pipeline::new();
    let bin = tempfile::tempdir().expect("tempdir");
    pipeline
        .test(&path_without_bwrap(bin.path()))
        .failure()
        .stdout(predicate::str::contains(
            "install it (apt-get install bubblewrap",
        ));
    let logs = pipeline.logs();
    assert!(
        logs.contains("processing steps on the local pod runtime need bubblewrap"),
        "{logs}"
    );
    assert!(!logs.contains("prepared"), "the step never ran: {logs}");
}

#[test]
fn a_step_whose_inputs_fail_to_render_fails_once_and_dags_test_ends() {
    // Issue 18: an undefined name in a processing step's `inputs` hung `gust dags test`. The
    // step fails on its one try (never staged, so bubblewrap does not matter), its try log
    // says why, the `all_done` cleanup runs and the command ends.
    let home = tempfile::tempdir().expect("tempdir");
    let dags = home.path().join("dags");
    std::fs::create_dir_all(&dags).expect("mkdir");
    std::fs::write(
        dags.join("bad.yaml"),
        r#"bad_inputs:
  start_date: 2024-01-01
  schedule: null
  tasks:
    step:
      operator: processing
      image: python:3.11-slim
      command: [python3, -c, "print(1)"]
      inputs:
        - name: raw
          source: "{{ params.nope }}"
          destination: /opt/ml/processing/input/raw/
    cleanup:
      operator: bash
      bash_command: echo cleaned
      dependencies: [step]
      trigger_rule: all_done
"#,
    )
    .expect("write");
    gust(home.path()).args(["db", "migrate"]).assert().success();
    let store = home.path().join("store");
    gust(home.path())
        .env(
            "GUST__ARTIFACTS__ROOT",
            format!("file://{}", store.display()),
        )
        .args([
            "dags",
            "test",
            "bad_inputs",
            "--local-pods",
            "--dags-folder",
        ])
        .arg(&dags)
        .timeout(Duration::from_secs(60))
        .assert()
        // The run's state is its leaf's, as in Airflow: the all_done cleanup succeeds.
        .success()
        .stdout(predicate::str::contains("of bad_inputs: success"))
        .stdout(predicate::str::is_match(r"step\s+failed\s+1\s").expect("pattern"));
    let mut log = String::new();
    let mut folders = vec![home.path().join("logs")];
    while let Some(dir) = folders.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                folders.push(path);
            } else if path.to_string_lossy().contains("task_id=step") {
                log.push_str(&std::fs::read_to_string(&path).unwrap_or_default());
            }
        }
    }
    assert!(
        log.contains("argument \"inputs[0].source\"") && log.contains("params.nope"),
        "the step's try log says why: {log}"
    );
}
