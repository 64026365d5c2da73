//! Differential test of dynamic task mapping: tests/airflow/mapping/mapping_parity.yaml run by
//! `gust dags test` and by `airflow dags test` (Airflow 3.3.2, the file loaded by dag-factory
//! 1.1.0). Every instance must end in the same state, and the reduce task must pull the same
//! values in the same order. Skipped loudly without the Airflow venv (GUST_TEST_AIRFLOW_PYTHON)
//! unless GUST_REQUIRE_AIRFLOW=1.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::{airflow_command, airflow_python, final_states, gust};

const DAG_ID: &str = "mapping_parity";

fn dag_folder() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/airflow/mapping")
}

/// Prints `STATES {"task" or "task[i]": state}` of the DAG's run, from Airflow's database, named
/// as Gust's progress lines name instances.
const STATES_OF_THE_RUN: &str = r#"
import json, sys
from airflow.models.taskinstance import TaskInstance
from airflow.utils.session import create_session
with create_session() as session:
    rows = session.query(TaskInstance.task_id, TaskInstance.map_index, TaskInstance.state).filter(
        TaskInstance.dag_id == sys.argv[1]).all()
    named = {(t if i < 0 else "%s[%d]" % (t, i)): getattr(s, "value", s) for t, i, s in rows}
    print("STATES " + json.dumps(named))
"#;

/// `airflow dags test` of the file, loaded by dag-factory: each instance's state.
fn airflow_run(python: &Path, root: &Path, out: &Path) -> BTreeMap<String, String> {
    let home = root.join("airflow-home");
    let dags = root.join("airflow-dags");
    std::fs::create_dir_all(&dags).expect("mkdir");
    std::fs::write(
        dags.join("load.py"),
        format!(
            "# An Airflow DAG file: dag-factory builds the YAML file's DAG.\nfrom dagfactory import load_yaml_dags\nload_yaml_dags(globals_dict=globals(), config_filepath={:?})\n",
            dag_folder().join("mapping_parity.yaml").display().to_string()
        ),
    )
    .expect("write");
    let airflow = |args: &[&str]| {
        let output = airflow_command(python, &home, &dags)
            .args(args)
            .env("OUT_DIR", out)
            .output()
            .expect("airflow runs");
        (
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    airflow(&["-m", "airflow", "db", "migrate"]);
    // The run fails on purpose (a failed instance): the states are what is compared.
    let (test_out, test_err) = airflow(&["-m", "airflow", "dags", "test", DAG_ID]);
    let (printed, err) = airflow(&["-c", STATES_OF_THE_RUN, DAG_ID]);
    let json = printed
        .lines()
        .find_map(|line| line.strip_prefix("STATES "))
        .unwrap_or_else(|| panic!("no states in: {printed}{err}\n{test_out}{test_err}"));
    serde_json::from_str(json).expect("JSON states")
}

/// `gust dags test` of the file: each instance's state.
fn gust_run(home: &Path, out: &Path) -> BTreeMap<String, String> {
    let output = gust(home)
        .env("OUT_DIR", out)
        .args(["dags", "test", DAG_ID, "--dags-folder"])
        .arg(dag_folder())
        .output()
        .expect("gust runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let states = final_states(&stdout);
    assert!(
        states.contains_key("reduce"),
        "the run did not get to its end: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // A mapped task's own line (`literal: ...`) is its expansion; Airflow has no row for it.
    states
        .into_iter()
        .filter(|(task, _)| {
            task.contains('[') || !stdout.lines().any(|l| l.contains(&format!(" {task}[")))
        })
        .collect()
}

#[test]
fn mapped_tasks_end_as_in_airflow_with_the_same_values_pulled() {
    let Some(python) = airflow_python() else {
        return;
    };
    let root = tempfile::tempdir().expect("tempdir");
    let (gust_out, airflow_out) = (
        root.path().join("gust-out"),
        root.path().join("airflow-out"),
    );
    for dir in [&gust_out, &airflow_out] {
        std::fs::create_dir_all(dir).expect("mkdir");
    }
    let airflow = airflow_run(&python, root.path(), &airflow_out);
    let gust = gust_run(root.path(), &gust_out);
    assert_eq!(
        gust, airflow,
        "Gust's instance states (left) differ from Airflow's (right)"
    );
    let pulled = |dir: &Path| std::fs::read_to_string(dir.join("reduce")).unwrap_or_default();
    assert_eq!(
        pulled(&gust_out),
        pulled(&airflow_out),
        "the reduce task pulled other values"
    );
    assert!(
        pulled(&gust_out).contains("cross=a1,b1,c1,a2,b2,c2"),
        "{}",
        pulled(&gust_out)
    );
}
