//! Python DAG files end to end: `.py` files are parsed by Airflow itself (the venv's), scheduled
//! by Gust. Airflow's own example DAGs end as `airflow dags test` ends them; the seed documents'
//! Python DAGs run on the local pod runtime with the pods their YAML twins get; import errors
//! carry Airflow's traceback; `gust dags export-yaml` writes YAML Gust loads again.
//!
//! The venv's Python is `GUST_TEST_AIRFLOW_PYTHON`, else `target/airflow-venv/bin/python`; when
//! neither exists the tests say so and do nothing (and fail with GUST_REQUIRE_AIRFLOW=1).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

mod common;

use assert_cmd::Command;
use common::python_scheduler::PythonScheduler;
use common::{airflow_python, examples, final_states, gust, instances, xcoms};

/// Airflow's example DAGs (in apache-airflow 3.3.2) whose operators are installed and which need
/// no network, no other DAG and no plugin: their file (under the `airflow` package) and DAG id,
/// in groups small enough for one test each.
const BASH: &[(&str, &str)] = &[(
    "providers/standard/example_dags/example_bash_operator.py",
    "example_bash_operator",
)];
const SHORT_CIRCUITS: &[(&str, &str)] = &[
    (
        "providers/standard/example_dags/example_short_circuit_operator.py",
        "example_short_circuit_operator",
    ),
    (
        "providers/standard/example_dags/example_short_circuit_decorator.py",
        "example_short_circuit_decorator",
    ),
];
const GROUPS_AND_SKIPS: &[(&str, &str)] = &[
    ("example_dags/example_task_group.py", "example_task_group"),
    ("example_dags/example_skip_dag.py", "example_skip_dag"),
    ("example_dags/example_complex.py", "example_complex"),
];
const BRANCHES: &[(&str, &str)] = &[
    (
        "example_dags/example_nested_branch_dag.py",
        "example_nested_branch_dag",
    ),
    (
        "example_dags/example_branch_labels.py",
        "example_branch_labels",
    ),
];
/// PythonOperator's sisters, which run their callable in another interpreter: a virtualenv
/// Airflow makes (`python -m venv`, then pip from PyPI) and an existing Python. The file's SQL
/// template is in its `sql` folder, copied beside it.
const PYTHON_OPERATORS: &[(&str, &str)] = &[(
    "providers/standard/example_dags/example_python_operator.py",
    "example_python_operator",
)];
/// Branches of each kind (in this Python, in another, in a virtualenv): each picks one of four
/// branches at random, so the states are compared branch family by branch family.
const BRANCH_OPERATORS: &[(&str, &str)] = &[(
    "providers/standard/example_dags/example_branch_operator.py",
    "example_branch_operator",
)];
/// Asset aliases: a task attaching an asset to its outlet alias at run time, and a DAG scheduled
/// on the alias (whose task reads the alias's events), TaskFlow and classic.
const ASSET_ALIASES: &[(&str, &str)] = &[
    (
        "example_dags/example_asset_alias.py",
        "asset_alias_example_alias_producer",
    ),
    (
        "example_dags/example_asset_alias.py",
        "asset_alias_example_alias_consumer",
    ),
    (
        "example_dags/example_asset_alias_with_no_taskflow.py",
        "asset_alias_example_alias_producer_with_no_taskflow",
    ),
    (
        "example_dags/example_asset_alias_with_no_taskflow.py",
        "asset_alias_example_alias_consumer_with_no_taskflow",
    ),
];
const SETUPS_AND_XCOM_ARGS: &[(&str, &str)] = &[
    (
        "example_dags/example_setup_teardown.py",
        "example_setup_teardown",
    ),
    ("example_dags/example_xcomargs.py", "example_xcom_args"),
];

/// Airflow's example DAGs whose tasks pass XComs under keys of their own: pushed by a Python
/// callable (`ti.xcom_push(key=...)`) or by a bash template Gust renders, pulled by Python tasks
/// and by templates.
const KEYED_XCOMS: &[(&str, &str)] = &[
    ("example_dags/tutorial_dag.py", "tutorial_dag"),
    ("example_dags/example_xcom.py", "example_xcom"),
];

/// Airflow's example DAG reading an asset event's extra in a bash template Gust renders
/// (`inlet_events`), after [`INLET_EVENT_PRODUCER`] emitted one.
const INLET_EVENTS: &[(&str, &str)] = &[
    ("inlet_event_producer.py", "inlet_event_producer"),
    (
        "example_dags/example_inlet_event_extra.py",
        "read_asset_event_from_classic",
    ),
    (
        "example_dags/example_inlet_event_extra.py",
        "read_asset_event",
    ),
];

/// A DAG emitting an event of the asset `example_inlet_event_extra.py` reads, with an extra.
/// Not `example_outlet_event_extra.py`'s: its asset has the same URI and another name, so
/// Airflow deactivates the reader's and fails it (Gust does not; see docs/python-dags.md).
const INLET_EVENT_PRODUCER: &str = r#"
import datetime

from airflow.sdk import DAG, Asset, task

asset = Asset("s3://output/1.txt")

with DAG(
    dag_id="inlet_event_producer",
    schedule=None,
    start_date=datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc),
    catchup=False,
):

    @task(outlets=[asset])
    def produce(*, outlet_events=None):
        outlet_events[asset].extra = {"hi": "bye", "<&'>": ["\u00e9", 1]}

    produce()
"#;

/// The `airflow` package of the venv `python` belongs to.
fn airflow_package(python: &Path) -> PathBuf {
    let lib = python
        .parent()
        .and_then(Path::parent)
        .expect("a venv's bin/python")
        .join("lib");
    std::fs::read_dir(&lib)
        .expect("the venv's lib")
        .flatten()
        .map(|entry| entry.path().join("site-packages/airflow"))
        .find(|path| path.is_dir())
        .expect("airflow in the venv")
}

/// A DAGs folder holding copies of `files` (relative to the `airflow` package), and of the
/// folders of template files beside them (`sql/`), as the examples are shipped.
fn copied_examples(python: &Path, into: &Path, files: &[&str]) -> PathBuf {
    let dags = into.join("dags");
    std::fs::create_dir_all(&dags).expect("mkdir");
    let package = airflow_package(python);
    for file in files {
        let from = package.join(file);
        let name = from.file_name().expect("a file name");
        std::fs::copy(&from, dags.join(name)).expect("copy an example");
        let templates = from.with_file_name("sql");
        if templates.is_dir() {
            std::fs::create_dir_all(dags.join("sql")).expect("mkdir sql");
            for entry in std::fs::read_dir(&templates)
                .expect("the sql folder")
                .flatten()
            {
                let path = entry.path();
                if path.extension().is_some_and(|e| e == "sql") {
                    std::fs::copy(&path, dags.join("sql").join(entry.file_name()))
                        .expect("copy a template");
                }
            }
        }
    }
    dags
}

/// `gust` with the venv as its Python environment.
fn gust_py(home: &Path, python: &Path) -> Command {
    let mut command = gust(home);
    command.env("GUST__PYTHON__INTERPRETER", python);
    command
}

/// `gust ARGS DAGS` with the venv as its Python environment, run to its end.
fn gust_with(home: &Path, python: &Path, args: &[&str], dags: &Path) -> std::process::Output {
    gust_py(home, python)
        .args(args)
        .arg(dags)
        .output()
        .expect("gust runs")
}

/// `gust dags test DAG` of `dags`: each task's final state.
fn gust_states(home: &Path, python: &Path, dags: &Path, dag_id: &str) -> BTreeMap<String, String> {
    let output = gust_py(home, python)
        .args(["dags", "test", dag_id, "--local-pods", "--dags-folder"])
        .arg(dags)
        .output()
        .expect("gust runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let states = final_states(&stdout);
    assert!(
        !states.is_empty(),
        "gust dags test {dag_id} ran nothing: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    states
}

/// `airflow dags test DAG` of `dags` for each of `dag_ids`, in one fresh AIRFLOW_HOME: each DAG's
/// task states, read from Airflow's database (its CLI mixes log lines into what it prints).
fn airflow_states(
    python: &Path,
    root: &Path,
    dags: &Path,
    dag_ids: &[&str],
) -> BTreeMap<String, BTreeMap<String, String>> {
    let home = root.join("airflow-home");
    let airflow = |args: &[&str]| {
        #[allow(clippy::disallowed_methods, reason = "the test runs Airflow")]
        let output = std::process::Command::new(python)
            .args(args)
            .env("AIRFLOW_HOME", &home)
            .env("AIRFLOW__CORE__DAGS_FOLDER", dags)
            .env("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
            .output()
            .expect("airflow runs");
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    airflow(&["-m", "airflow", "db", "migrate"]);
    for dag_id in dag_ids {
        // A run whose tasks fail on purpose exits 1: the states are what is compared.
        airflow(&["-m", "airflow", "dags", "test", dag_id]);
    }
    let printed = airflow(&["-c", STATES_OF_THE_RUNS]);
    let json = printed
        .lines()
        .find_map(|line| line.strip_prefix("STATES "))
        .unwrap_or_else(|| panic!("no states in: {printed}"));
    serde_json::from_str(json).expect("JSON states")
}

/// Prints `STATES {dag_id: {task_id: state}}` from Airflow's database.
const STATES_OF_THE_RUNS: &str = r#"
import json
from airflow.models.taskinstance import TaskInstance
from airflow.utils.session import create_session
with create_session() as session:
    states = {}
    for dag, task, state in session.query(TaskInstance.dag_id, TaskInstance.task_id, TaskInstance.state):
        states.setdefault(dag, {})[task] = getattr(state, "value", state)
    print("STATES " + json.dumps(states))
"#;

/// Runs `examples` with `gust dags test` and `airflow dags test`, and asserts each DAG's tasks
/// end in the same states.
fn assert_ends_as_in_airflow(examples: &[(&str, &str)]) {
    assert_ends_alike(examples, |states| states);
}

/// The states of a run of `example_branch_operator` whatever branches its random choices took:
/// each family of branches (`branch_a`..`branch_d`, `follow_*`, `ext_py_*`, `venv_*`) as the
/// sorted list of its tasks' states, once every option's branch is checked to end as the task
/// after it.
fn branch_families(states: BTreeMap<String, String>) -> BTreeMap<String, String> {
    for option in ["a", "b", "c", "d"] {
        assert_eq!(
            states.get(&format!("branch_{option}")),
            states.get(&format!("follow_{option}")),
            "branch_{option} and follow_{option} end alike: {states:?}"
        );
    }
    let mut families: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (task, state) in states {
        let family = match task.rsplit_once('_') {
            Some((prefix, option))
                if ["a", "b", "c", "d"].contains(&option)
                    && ["branch", "follow", "ext_py", "venv"].contains(&prefix) =>
            {
                format!("{prefix}_*")
            }
            _ => task,
        };
        families.entry(family).or_default().push(state);
    }
    families
        .into_iter()
        .map(|(family, mut states)| {
            states.sort();
            (family, states.join(","))
        })
        .collect()
}

/// As [`assert_ends_as_in_airflow`], comparing the states as `view` sees them.
fn assert_ends_alike(
    examples: &[(&str, &str)],
    view: fn(BTreeMap<String, String>) -> BTreeMap<String, String>,
) {
    let Some(python) = airflow_python() else {
        return;
    };
    let root = tempfile::tempdir().expect("tempdir");
    let mut files: Vec<&str> = examples.iter().map(|(file, _)| *file).collect();
    files.dedup();
    let dags = copied_examples(&python, root.path(), &files);
    let dag_ids: Vec<&str> = examples.iter().map(|(_, id)| *id).collect();

    gust_py(root.path(), &python)
        .args(["dags", "validate"])
        .arg(&dags)
        .assert()
        .success();
    let airflow = airflow_states(&python, root.path(), &dags, &dag_ids);
    for dag_id in &dag_ids {
        let gust = view(gust_states(root.path(), &python, &dags, dag_id));
        let airflow = airflow.get(*dag_id).cloned().map(view);
        assert_eq!(
            Some(gust),
            airflow,
            "{dag_id}: Gust's states (left) differ from Airflow's (right)"
        );
    }
}

/// Runs `examples` in their order with `airflow dags test` and under `gust scheduler` (one
/// triggered run each, once the one before it ended), and asserts that each run's tasks end in
/// Airflow's states with Airflow's XComs, every key (Gust's as its store keeps them). With
/// `dags_test`, `gust dags test`'s states are compared too.
/// `written` are more files of the DAGs folder (name, text), which `examples` may name.
fn assert_scheduled_runs_as_in_airflow(
    examples: &[(&str, &str)],
    written: &[(&str, &str)],
    dags_test: bool,
) {
    let Some(python) = airflow_python() else {
        return;
    };
    let root = tempfile::tempdir().expect("tempdir");
    let mut files: Vec<&str> = examples
        .iter()
        .map(|(file, _)| *file)
        .filter(|file| written.iter().all(|(name, _)| name != file))
        .collect();
    files.dedup();
    let dags = copied_examples(&python, root.path(), &files);
    for (name, text) in written {
        std::fs::write(dags.join(name), text).expect("write a DAG file");
    }
    let dag_ids: Vec<&str> = examples.iter().map(|(_, id)| *id).collect();
    let airflow = airflow_states(&python, root.path(), &dags, &dag_ids);
    let airflow_xcoms = xcoms::airflow_xcoms(&python, root.path(), &dags);
    if dags_test {
        for dag_id in &dag_ids {
            assert_eq!(
                Some(gust_states(root.path(), &python, &dags, dag_id)),
                airflow.get(*dag_id).cloned(),
                "{dag_id}: `gust dags test`'s states (left) differ from Airflow's (right)"
            );
        }
    }
    let out = root.path().join("out");
    std::fs::create_dir_all(&out).expect("mkdir");
    let scheduler = PythonScheduler::start(root.path(), &python, &out);
    for dag_id in &dag_ids {
        scheduler.trigger(dag_id, "compared");
        scheduler.wait_for_run(dag_id, "compared");
        let states: BTreeMap<String, String> = scheduler
            .task_states(dag_id, "compared")
            .as_array()
            .expect("a list")
            .iter()
            .map(|ti| {
                let field = |name: &str| ti[name].as_str().unwrap_or_default().to_owned();
                (field("task_id"), field("state"))
            })
            .collect();
        assert_eq!(
            Some(states),
            airflow.get(*dag_id).cloned(),
            "{dag_id}: the scheduled run's states (left) differ from Airflow's (right)"
        );
        let gust_xcoms =
            xcoms::gust_xcoms(&python, &root.path().join("gust.db"), dag_id, "compared");
        assert_eq!(
            gust_xcoms,
            airflow_xcoms.get(*dag_id).cloned().unwrap_or_default(),
            "{dag_id}: Gust's XComs (left) differ from Airflow's (right)"
        );
    }
}

#[test]
fn airflow_s_xcom_examples_push_and_pull_keyed_xcoms_in_gust_as_in_airflow() {
    assert_scheduled_runs_as_in_airflow(KEYED_XCOMS, &[], true);
}

#[test]
fn airflow_s_inlet_event_example_reads_an_extra_in_a_bash_template_as_in_airflow() {
    // `gust dags test` keeps no asset events: the runs are compared under the scheduler only.
    assert_scheduled_runs_as_in_airflow(
        INLET_EVENTS,
        &[("inlet_event_producer.py", INLET_EVENT_PRODUCER)],
        false,
    );
}

#[test]
fn airflow_s_bash_example_ends_in_gust_as_in_airflow() {
    assert_ends_as_in_airflow(BASH);
}

#[test]
fn airflow_s_short_circuit_examples_end_in_gust_as_in_airflow() {
    assert_ends_as_in_airflow(SHORT_CIRCUITS);
}

#[test]
fn airflow_s_task_group_skip_and_complex_examples_end_in_gust_as_in_airflow() {
    assert_ends_as_in_airflow(GROUPS_AND_SKIPS);
}

#[test]
fn airflow_s_branch_examples_end_in_gust_as_in_airflow() {
    assert_ends_as_in_airflow(BRANCHES);
}

#[test]
fn airflow_s_python_virtualenv_and_external_python_example_ends_in_gust_as_in_airflow() {
    assert_ends_as_in_airflow(PYTHON_OPERATORS);
}

#[test]
fn airflow_s_branch_operators_example_ends_in_gust_as_in_airflow() {
    assert_ends_alike(BRANCH_OPERATORS, branch_families);
}

#[test]
fn airflow_s_asset_alias_examples_end_in_gust_as_in_airflow() {
    assert_ends_as_in_airflow(ASSET_ALIASES);
}

#[test]
fn an_asset_attached_to_an_alias_at_run_time_triggers_the_dags_scheduled_on_it() {
    let Some(python) = airflow_python() else {
        return;
    };
    let home = tempfile::tempdir().expect("tempdir");
    copied_examples(
        &python,
        home.path(),
        &["example_dags/example_asset_alias.py"],
    );
    let out = home.path().join("out");
    std::fs::create_dir_all(&out).expect("mkdir");
    let scheduler = PythonScheduler::start(home.path(), &python, &out);
    scheduler.trigger("asset_alias_example_alias_producer", "through_the_alias");
    // The event of s3://bucket/my-task, emitted through the alias, triggers the DAG scheduled
    // on the alias and the one scheduled on the asset itself, as in Airflow.
    let on_alias = scheduler.wait_for_a_run("asset_alias_example_alias_consumer");
    let on_asset = scheduler.wait_for_a_run("asset_s3_bucket_consumer");
    drop(scheduler);
    for runs in [&on_alias, &on_asset] {
        assert!(
            runs.contains("\"asset_triggered\"") && runs.contains("\"success\""),
            "{runs}"
        );
    }
    // The consumer's task read the alias's event (`inlet_events[AssetAlias(...)]`).
    let log = read_logs(
        &home.path().join("logs"),
        "task_id=consume_asset_event_from_asset_alias",
    );
    assert!(log.contains("s3://bucket/my-task"), "{log}");
}

#[test]
fn airflow_s_setup_teardown_and_xcom_args_examples_end_in_gust_as_in_airflow() {
    assert_ends_as_in_airflow(SETUPS_AND_XCOM_ARGS);
}

#[test]
fn gust_dags_list_shows_python_and_yaml_dags_side_by_side() {
    let Some(python) = airflow_python() else {
        return;
    };
    let root = tempfile::tempdir().expect("tempdir");
    let dags = copied_examples(
        &python,
        root.path(),
        &["example_dags/example_task_group.py"],
    );
    std::fs::copy(examples().join("diamond.yaml"), dags.join("diamond.yaml")).expect("copy");
    // Airflow's safe mode: a helper without "airflow" and "dag" in it is not parsed.
    std::fs::write(dags.join("helper.py"), "def greet():\n    return 'hi'\n").expect("write");
    let output = gust_with(
        root.path(),
        &python,
        &["dags", "list", "--output", "json", "--dags-folder"],
        &dags,
    );
    let listed: serde_json::Value = serde_json::from_slice(&output.stdout).expect("a JSON list");
    let files: BTreeMap<String, String> = listed
        .as_array()
        .expect("a list")
        .iter()
        .map(|row| {
            (
                row["dag_id"].as_str().unwrap_or_default().to_owned(),
                row["fileloc"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert!(
        files
            .get("example_task_group")
            .is_some_and(|f| f.ends_with("example_task_group.py")),
        "{files:?}"
    );
    assert!(files.contains_key("kube_operator_diamond"), "{files:?}");
    assert_eq!(files.len(), 2, "{files:?}");

    // Without a Python environment, .py files are not DAG files.
    let yaml_only = gust(root.path())
        .args(["dags", "list", "--output", "json", "--dags-folder"])
        .arg(&dags)
        .output()
        .expect("gust runs");
    let listed: serde_json::Value = serde_json::from_slice(&yaml_only.stdout).expect("a JSON list");
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
}

#[test]
fn the_seed_s_pod_dag_runs_the_pods_its_yaml_twin_runs() {
    let Some(python) = airflow_python() else {
        return;
    };
    let home = tempfile::tempdir().expect("tempdir");
    let python_dags = examples().join("../python_dags");
    let states = gust_states(home.path(), &python, &python_dags, "kubernetes_sample_py");
    let want: BTreeMap<String, String> = [
        ("run_this_first", "success"),
        ("passing-task", "success"),
        ("failing-task", "failed"),
    ]
    .into_iter()
    .map(|(task, state)| (task.to_owned(), state.to_owned()))
    .collect();
    assert_eq!(states, want);

    // The pods equal those of the YAML file, which the KPO parity test compares with Airflow's.
    let dry_run = |folder: &Path, dag: &str, task: &str| {
        let output = gust_py(home.path(), &python)
            .args([
                "tasks",
                "dry-run",
                dag,
                task,
                "--logical-date",
                "2024-01-01",
            ])
            .arg("--dags-folder")
            .arg(folder)
            .output()
            .expect("gust runs");
        assert!(output.status.success(), "{output:?}");
        // The pod's name ends in a random suffix (`random_name_suffix`), different each time.
        String::from_utf8_lossy(&output.stdout)
            .replace("kubernetes_sample_py", "kubernetes_sample")
            .lines()
            .filter(|line| !line.starts_with("  name: "))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let yaml_folder = examples().join("kubernetes");
    for task in ["passing-task", "failing-task"] {
        assert_eq!(
            dry_run(&python_dags, "kubernetes_sample_py", task),
            dry_run(&yaml_folder, "kubernetes_sample", task),
            "{task}'s pod"
        );
    }
}

#[test]
fn the_seed_s_ml_pipeline_passes_its_pod_s_xcom_to_the_next_task() {
    let Some(python) = airflow_python() else {
        return;
    };
    let home = tempfile::tempdir().expect("tempdir");
    let python_dags = examples().join("../python_dags");
    let output = gust_py(home.path(), &python)
        .args([
            "dags",
            "test",
            "ml_pipeline",
            "--local-pods",
            "--logical-date",
            "2024-03-01",
        ])
        .arg("--dags-folder")
        .arg(&python_dags)
        .env("GUST__LOGGING__BASE_LOG_FOLDER", home.path().join("logs"))
        .output()
        .expect("gust runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let states = final_states(&stdout);
    for task in ["plan", "process", "report"] {
        assert_eq!(
            states.get(task).map(String::as_str),
            Some("success"),
            "{task}: {stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let logs = read_logs(&home.path().join("logs"), "task_id=report");
    assert!(
        logs.contains("model at oss://ml-bucket/jobs/20240301/process/model"),
        "{logs}"
    );
}

/// Every log file's text under `root` whose path contains `part`.
fn read_logs(root: &Path, part: &str) -> String {
    let mut text = String::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.display().to_string().contains(part) {
                text.push_str(&std::fs::read_to_string(&path).unwrap_or_default());
            }
        }
    }
    text
}

#[test]
fn an_import_error_shows_airflow_s_traceback_at_the_line_that_failed() {
    let Some(python) = airflow_python() else {
        return;
    };
    let root = tempfile::tempdir().expect("tempdir");
    let dags = root.path().join("dags");
    std::fs::create_dir_all(&dags).expect("mkdir");
    std::fs::write(
        dags.join("broken.py"),
        "from airflow.sdk import DAG\n\nimport no_such_module_here\n",
    )
    .expect("write");
    let output = gust_with(root.path(), &python, &["dags", "validate"], &dags);
    assert!(!output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout
            .contains("broken.py:3:1: ModuleNotFoundError: No module named 'no_such_module_here'"),
        "{stdout}"
    );
    let listed = gust_with(
        root.path(),
        &python,
        &["dags", "list-import-errors", "--dags-folder"],
        &dags,
    );
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listed.contains("Traceback (most recent call last)"),
        "{listed}"
    );
}

/// A DAG file whose DAG is `id`, after `before` runs at import.
fn dag_file_running(id: &str, before: &str) -> String {
    format!(
        "import os, time\nfrom airflow.sdk import DAG\nfrom airflow.providers.standard.operators.empty import EmptyOperator\n{before}\nwith DAG({id:?}, schedule=None):\n    EmptyOperator(task_id='t')\n"
    )
}

#[test]
fn a_file_that_kills_or_outlasts_its_parser_fails_alone_and_the_files_parsed_with_it_still_load() {
    let Some(python) = airflow_python() else {
        return;
    };
    let root = tempfile::tempdir().expect("tempdir");
    let dags = root.path().join("dags");
    std::fs::create_dir_all(&dags).expect("mkdir");
    // One parser at a time: the four files are one child's batch, in this order.
    for (file, id, before) in [
        ("a.py", "dag_a", ""),
        ("b.py", "dag_b", "os._exit(3)"),
        ("c.py", "dag_c", "time.sleep(60)"),
        ("d.py", "dag_d", ""),
    ] {
        std::fs::write(dags.join(file), dag_file_running(id, before)).expect("write");
    }
    let listed = gust_py(root.path(), &python)
        .env("GUST__DAG_PROCESSOR__PARSING_PROCESSES", "1")
        .env("GUST__DAG_PROCESSOR__DAG_FILE_PROCESSOR_TIMEOUT", "5s")
        .args(["dags", "validate"])
        .arg(&dags)
        .output()
        .expect("gust runs");
    let stdout = String::from_utf8_lossy(&listed.stdout);
    let line = |file: &str| {
        stdout
            .lines()
            .find(|l| l.contains(file))
            .unwrap_or_default()
            .to_owned()
    };
    assert!(
        line("b.py").contains("parsing the file ended its process (exit code 3)"),
        "{stdout}"
    );
    assert!(
        line("c.py").contains("dag_file_processor_timeout (5s) and was killed"),
        "{stdout}"
    );
    assert!(
        line("a.py").is_empty() && line("d.py").is_empty(),
        "the batch's other files load: {stdout}"
    );
    let stderr = String::from_utf8_lossy(&listed.stderr);
    for file in ["a.py", "d.py"] {
        assert!(
            stderr.contains(&format!("{file}: parsed by Airflow in")),
            "{file} was parsed: {stderr}"
        );
    }
}

#[test]
fn airflow_s_dynamic_task_mapping_example_runs_instance_by_instance_as_in_airflow() {
    let Some(python) = airflow_python() else {
        return;
    };
    let root = tempfile::tempdir().expect("tempdir");
    let dags = copied_examples(
        &python,
        root.path(),
        &["example_dags/example_dynamic_task_mapping.py"],
    );
    gust_py(root.path(), &python)
        .args(["dags", "validate"])
        .arg(&dags)
        .assert()
        .success();
    let dag_ids = [
        "example_dynamic_task_mapping",
        "example_task_mapping_second_order",
        "example_task_group_mapping",
    ];
    let logs = assert_runs_alike(root.path(), &python, &dags, &dag_ids);
    // The reduce task pulled the mapped task's three values: 2 + 3 + 4.
    let sum_log = logs["example_dynamic_task_mapping"]
        .get("sum_it")
        .cloned()
        .unwrap_or_default();
    assert!(sum_log.contains("Total was 9"), "{sum_log}");
    // Each instance of the group's second task took its own instance of the first's value.
    let group = &logs["example_task_group_mapping"];
    for (index, value) in [(0, 4), (1, 6), (2, 8)] {
        let log = group
            .get(&format!("op.mul_2[{index}]"))
            .cloned()
            .unwrap_or_default();
        assert!(
            log.contains(&format!("Returned value was: {value}")),
            "op.mul_2[{index}]: {log}"
        );
    }
}

/// Runs `dag_ids` of `dags` with `gust dags test` and `airflow dags test`, asserts each instance
/// ended and returned as in Airflow, and answers Gust's tries' logs by DAG and instance.
fn assert_runs_alike(
    root: &Path,
    python: &Path,
    dags: &Path,
    dag_ids: &[&str],
) -> BTreeMap<String, BTreeMap<String, String>> {
    let airflow = instances::airflow_runs(python, root, dags, dag_ids, &[]);
    let mut logs = BTreeMap::new();
    for dag_id in dag_ids {
        let output = gust_py(root, python)
            .args(["dags", "test", dag_id, "--dags-folder"])
            .arg(dags)
            .output()
            .expect("gust runs");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let gust = instances::gust_run(&stdout, &root.join("logs"), dag_id);
        let expected = airflow.get(*dag_id).expect("Airflow ran it");
        instances::assert_alike(dag_id, &gust, expected);
        logs.insert((*dag_id).to_owned(), gust.logs);
    }
    logs
}

/// Mapped task groups beyond Airflow's example: over an upstream's output with a `partial`
/// argument, an instance failing (its own next task upstream_failed, the others' running), a
/// task after the group pulling the list of the instances' values (the failed one's missing),
/// and a group over an empty list (its tasks skipped).
const MAPPED_GROUPS: &str = r#"
from datetime import datetime

from airflow.sdk import DAG, task, task_group

with DAG(dag_id="gust_mapped_groups", schedule=None, start_date=datetime(2024, 1, 1), catchup=False):

    @task
    def numbers():
        return [1, 2, 3]

    @task
    def nothing():
        return []

    @task_group
    def shard(n, label):
        @task
        def double(n):
            if n == 2:
                raise ValueError("two is refused")
            return n * 2

        @task
        def show(x, label):
            return "%s:%d" % (label, x)

        @task(trigger_rule="all_done")
        def tidy(n):
            return "tidied %d" % n

        doubled = double(n)
        shown = show(doubled, label)
        doubled >> tidy(n)
        return shown

    @task(trigger_rule="all_done")
    def total(values):
        return ",".join(values)

    total(shard.partial(label="v").expand(n=numbers()))

    @task_group
    def never(n):
        @task
        def one(n):
            return n

        one(n)

    never.expand(n=nothing())
"#;

#[test]
fn mapped_task_groups_run_instance_by_instance_as_in_airflow() {
    let Some(python) = airflow_python() else {
        return;
    };
    let root = tempfile::tempdir().expect("tempdir");
    let dags = root.path().join("dags");
    std::fs::create_dir_all(&dags).expect("mkdir");
    std::fs::write(dags.join("gust_mapped_groups.py"), MAPPED_GROUPS).expect("write the DAG");
    let logs = assert_runs_alike(root.path(), &python, &dags, &["gust_mapped_groups"]);
    let total = logs["gust_mapped_groups"]
        .get("total")
        .cloned()
        .unwrap_or_default();
    assert!(
        total.contains("Returned value was: v:2,v:6"),
        "the task after the group pulled its instances' values in map-index order: {total}"
    );
}

#[test]
fn export_yaml_writes_a_file_gust_loads_to_the_same_dag() {
    let Some(python) = airflow_python() else {
        return;
    };
    let root = tempfile::tempdir().expect("tempdir");
    let dags = copied_examples(
        &python,
        root.path(),
        &[
            "example_dags/example_task_group.py",
            "providers/standard/example_dags/example_short_circuit_operator.py",
        ],
    );
    let exported = gust_with(
        root.path(),
        &python,
        &["dags", "export-yaml", "example_task_group", "--dags-folder"],
        &dags,
    );
    assert!(exported.status.success(), "{exported:?}");
    let yaml_dags = root.path().join("yaml");
    std::fs::create_dir_all(&yaml_dags).expect("mkdir");
    std::fs::write(yaml_dags.join("example_task_group.yaml"), &exported.stdout).expect("write");
    // Loaded without Python at all: the YAML stands on its own.
    let shown = |folder: &Path, command: &mut Command| {
        let output = command
            .args(["dags", "show", "example_task_group", "--dags-folder"])
            .arg(folder)
            .output()
            .expect("gust runs");
        assert!(output.status.success(), "{output:?}");
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    assert_eq!(
        shown(&yaml_dags, &mut gust(root.path())),
        shown(&dags, &mut gust_py(root.path(), &python))
    );

    let refused = gust_with(
        root.path(),
        &python,
        &[
            "dags",
            "export-yaml",
            "example_short_circuit_operator",
            "--dags-folder",
        ],
        &dags,
    );
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("of DAG example_short_circuit_operator cannot be written in YAML"),
        "{stderr}"
    );
}
