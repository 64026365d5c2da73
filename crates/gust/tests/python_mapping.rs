//! Mapped Python tasks end to end: dag-factory's own dynamic task mapping example (a
//! PythonOperator with `partial:` and `expand:` over an upstream's output) and TaskFlow tasks
//! mapped over a literal list, over an upstream and over a mapped upstream, with a reduce task
//! pulling the list, run by `gust dags test` and by the scheduler through Airflow's own Task
//! SDK; each instance ends, and returns, as in `airflow dags test` of the same files.
//!
//! The venv's Python is `GUST_TEST_AIRFLOW_PYTHON`, else `target/airflow-venv/bin/python`; when
//! neither exists the tests say so and do nothing (and fail with GUST_REQUIRE_AIRFLOW=1).

use std::path::{Path, PathBuf};

mod common;

use common::python_scheduler::{PythonScheduler, read_json};
use common::{airflow_python, gust, instances};

/// dag-factory's example callables (its `dev/dags/expand_tasks.py`).
const EXPAND_TASKS: &str = r#"def make_list():
    return [[1], [2], [3], [4]]


def consume_value(expanded_param, fixed_param):
    print(fixed_param)
    print(expanded_param)
    return [expanded_param]
"#;

/// The TaskFlow tasks' callables and the reduce tasks, which record what they pulled.
const CALLABLES: &str = r#"
import json
import os


def _record(name, value):
    out = os.environ["OUT_DIR"]
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, name + ".json"), "w") as f:
        json.dump(value, f, sort_keys=True)


def numbers():
    return [1, 2, 3]


def add_one(x):
    return x + 1


def double(x):
    return x * 2


def plus_ten(x):
    # A name only the task knows while it runs: its map_index_template reads it (Airflow
    # renders the template after execute).
    from airflow.sdk import get_current_context

    get_current_context()["label"] = "plus ten of %d" % x
    return x + 10


def total(values, label):
    values = list(values)
    _record(label, values)
    return sum(values)


def collect(ti=None):
    pulled = ti.xcom_pull(task_ids="process")
    _record("collect", pulled)
    return len(pulled)
"#;

/// dag-factory's example DAG (its `dev/dags/airflow3/example_dynamic_task_mapping.yml`, with a
/// reduce task added and a schedule a test runs), and the TaskFlow DAG.
fn dag_file(expand_tasks: &Path, callables: &Path) -> String {
    let expand = expand_tasks.display();
    let callables = callables.display();
    format!(
        r#"
test_expand:
  default_args:
    owner: "custom_owner"
    start_date: 2024-01-01
  description: "test expand"
  schedule: null
  catchup: false
  tasks:
    process:
      operator: airflow.providers.standard.operators.python.PythonOperator
      python_callable_name: consume_value
      python_callable_file: {expand}
      partial:
        op_kwargs:
          fixed_param: "test"
      expand:
        op_args:
            request.output
      dependencies: [request]
    # After "process", as in dag-factory's example: tasks need not be in order.
    request:
      operator: airflow.providers.standard.operators.python.PythonOperator
      python_callable_name: make_list
      python_callable_file: {expand}
    collect:
      operator: airflow.providers.standard.operators.python.PythonOperator
      python_callable_name: collect
      python_callable_file: {callables}
      dependencies: [process]
mapped_taskflow:
  default_args:
    start_date: 2024-01-01
  schedule: null
  catchup: false
  tasks:
    numbers:
      decorator: airflow.sdk.task
      python_callable_name: numbers
      python_callable_file: {callables}
    add_one:
      decorator: airflow.sdk.task
      python_callable_name: add_one
      python_callable_file: {callables}
      expand:
        x: [1, 2, 3]
    double:
      decorator: airflow.sdk.task
      python_callable_name: double
      python_callable_file: {callables}
      expand:
        x: +numbers
    plus_ten:
      decorator: airflow.sdk.task
      python_callable_name: plus_ten
      python_callable_file: {callables}
      map_index_template: "{{{{ label }}}}"
      expand:
        x: +double
    total:
      decorator: airflow.sdk.task
      python_callable_name: total
      python_callable_file: {callables}
      values: +plus_ten
      label: total
    total_added:
      decorator: airflow.sdk.task
      python_callable_name: total
      python_callable_file: {callables}
      values: +add_one
      label: total_added
"#
    )
}

/// A DAGs folder under `root` holding the DAG file, its callables beside it.
fn dags_folder(root: &Path) -> PathBuf {
    let dags = root.join("dags");
    std::fs::create_dir_all(&dags).expect("mkdir");
    let expand_tasks = dags.join("expand_tasks.py");
    let callables = dags.join("mapping_callables.py");
    std::fs::write(&expand_tasks, EXPAND_TASKS).expect("write");
    std::fs::write(&callables, CALLABLES).expect("write");
    std::fs::write(
        dags.join("mapping.yaml"),
        dag_file(&expand_tasks, &callables),
    )
    .expect("write");
    dags
}

/// A folder Airflow reads the same YAML file from, through dag-factory.
fn airflow_folder(root: &Path, dags: &Path) -> PathBuf {
    let folder = root.join("airflow-dags");
    std::fs::create_dir_all(&folder).expect("mkdir");
    std::fs::write(
        folder.join("load.py"),
        format!(
            // The words "airflow" and "dag" make Airflow's safe mode parse the file.
            "# An Airflow DAG file: dag-factory builds the YAML file's DAGs.\n\
             from dagfactory import load_yaml_dags\n\
             load_yaml_dags(globals_dict=globals(), config_filepath={:?})\n",
            dags.join("mapping.yaml").display().to_string()
        ),
    )
    .expect("write");
    folder
}

#[test]
fn mapped_python_tasks_run_instance_by_instance_as_in_airflow() {
    let Some(python) = airflow_python() else {
        return;
    };
    let root = tempfile::tempdir().expect("tempdir");
    let dags = dags_folder(root.path());
    let gust_out = root.path().join("out-gust");
    let airflow_out = root.path().join("out-airflow");
    let dag_ids = ["test_expand", "mapped_taskflow"];
    let airflow = instances::airflow_runs(
        &python,
        root.path(),
        &airflow_folder(root.path(), &dags),
        &dag_ids,
        &[("OUT_DIR", airflow_out.as_path())],
    );
    for dag_id in dag_ids {
        let output = gust(root.path())
            .env("GUST__PYTHON__INTERPRETER", &python)
            .env("AIRFLOW__DAG_FACTORY__ENABLE_TELEMETRY", "False")
            .env("OUT_DIR", &gust_out)
            .args(["dags", "test", dag_id, "--dags-folder"])
            .arg(&dags)
            .output()
            .expect("gust runs");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{dag_id}: {stdout}");
        let run = instances::gust_run(&stdout, &root.path().join("logs"), dag_id);
        instances::assert_alike(dag_id, &run, &airflow[dag_id]);
    }
    // The reduce tasks pulled the mapped tasks' values in map-index order.
    let pulled = read_json(&gust_out.join("collect.json"));
    assert_eq!(pulled, serde_json::json!([[1], [2], [3], [4]]));
    assert_eq!(read_json(&airflow_out.join("collect.json")), pulled);
    for name in ["total", "total_added"] {
        let file = format!("{name}.json");
        assert_eq!(
            read_json(&gust_out.join(&file)),
            read_json(&airflow_out.join(&file)),
            "{name}"
        );
    }
    assert_eq!(
        read_json(&gust_out.join("total.json")),
        serde_json::json!([12, 14, 16]),
        "map over map: (n * 2) + 10"
    );
}

#[test]
fn the_scheduler_runs_mapped_python_tasks_and_keeps_their_values_by_map_index() {
    let Some(python) = airflow_python() else {
        return;
    };
    let home = tempfile::tempdir().expect("tempdir");
    dags_folder(home.path());
    let out = home.path().join("out");
    let scheduler = PythonScheduler::start(home.path(), &python, &out);
    let run_id = "mapped-1";
    scheduler.trigger("mapped_taskflow", run_id);
    assert_eq!(scheduler.wait_for_run("mapped_taskflow", run_id), "success");
    assert_eq!(
        read_json(&out.join("total.json")),
        serde_json::json!([12, 14, 16])
    );
    assert_eq!(
        read_json(&out.join("total_added.json")),
        serde_json::json!([2, 3, 4])
    );
    let states = scheduler.task_states("mapped_taskflow", run_id);
    let mut names: Vec<&str> = states
        .as_array()
        .expect("a list")
        .iter()
        .filter(|ti| ti["task_id"] == "plus_ten")
        .map(|ti| ti["rendered_map_index"].as_str().unwrap_or("(none)"))
        .collect();
    names.sort_unstable();
    assert_eq!(
        names,
        ["plus ten of 2", "plus ten of 4", "plus ten of 6"],
        "each instance is named as the Task SDK rendered its map_index_template: {states}"
    );
}
