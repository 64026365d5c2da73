//! Python tasks end to end: `gust dags test` runs PythonOperator tasks through Airflow's own
//! Task SDK (the venv `.ci/run` makes), passing XComs between Python and bash tasks both ways,
//! and the results equal Airflow's own `airflow dags test` of the same file.
//!
//! The venv's Python is `GUST_TEST_AIRFLOW_PYTHON`, else `target/airflow-venv/bin/python`; when
//! neither exists the tests say so and do nothing (and fail with GUST_REQUIRE_AIRFLOW=1, as in CI).

use std::path::{Path, PathBuf};

use predicates::prelude::*;

mod common;

use assert_cmd::Command;
use common::gust;

use common::python_scheduler::{PythonScheduler, read_json, succeeded};
use common::{airflow_python, final_states};

const CALLABLES: &str = r#"
import json
import os

from airflow.exceptions import AirflowSkipException


def _record(name, value):
    out = os.environ["OUT_DIR"]
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, name + ".json"), "w") as f:
        json.dump(value, f, sort_keys=True)


def produce(n, ti=None):
    value = {"doubled": n * 2, "try": ti.try_number}
    _record("produce", value)
    return value


def consume(ti=None, dag_run=None):
    value = {
        "shout": ti.xcom_pull(task_ids="shout"),
        "py": ti.xcom_pull(task_ids="py"),
        "run_type": getattr(dag_run.run_type, "value", dag_run.run_type),
    }
    _record("consume", value)
    return value["shout"]


def nap():
    _record("nap", os.getpid())
    import time
    time.sleep(60)
    _record("woke", True)


def freeze_supervisor():
    import signal
    import time
    _record("froze", os.getpid())
    # The Task SDK's supervisor, which heartbeats for the task, stops: the task goes unheard.
    os.kill(os.getppid(), signal.SIGSTOP)
    time.sleep(120)
    _record("thawed", True)


def skip():
    raise AirflowSkipException("nothing to do today")


def lineage(ti=None):
    # Who started this task's supervisor: Gust's warm worker (its command names its socket),
    # or the try's own bash, which started a fresh interpreter.
    def parent(pid):
        with open("/proc/%d/stat" % pid) as f:
            return int(f.read().rsplit(") ", 1)[1].split()[1])

    def command(pid):
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")

    supervisor = os.getppid()
    spawner = parent(supervisor)
    value = {
        "forked": "worker.sock" in command(spawner),
        "spawner": spawner,
        # The leader of the supervisor's process group, the group Gust kills on a timeout: the
        # try's bash, or what it became (the client, or a fresh interpreter).
        "leader": command(os.getpgid(supervisor)),
    }
    _record(ti.task_id, value)
    return value["forked"]


def fail():
    raise ValueError("this task always fails")


def note_success(context):
    _record("success_callback", context["ti"].task_id)


def note_skip(context):
    _record("skipped_callback", context["ti"].task_id)


def pick():
    return "left"


def record_greeting(ti=None):
    _record("greeting", ti.xcom_pull(task_ids="greet"))


def numbers(n):
    value = list(range(n))
    _record("numbers", value)
    return value


def total(values, label="total"):
    value = {label: sum(values)}
    _record("total", value)
    return value


def falsy():
    return 0

def poke_thrice(ti=None, task_reschedule_count=None):
    # Each poke runs in a new process: what the earlier ones saw is kept in a file.
    path = os.path.join(os.environ["OUT_DIR"], "pokes.json")
    pokes = []
    if os.path.exists(path):
        with open(path) as f:
            pokes = json.load(f)
    pokes.append([ti.try_number, task_reschedule_count])
    _record("pokes", pokes)
    return len(pokes) >= 3


def never():
    return False


def _note_callback(kind, context):
    ti = context.get("ti")
    name = getattr(ti, "task_id", None) or "dag"
    _record("callback_%s_%s" % (kind, name), {
        "run_id": context["run_id"],
        "try": getattr(ti, "try_number", None),
        "reason": context.get("reason"),
        "has_exception": context.get("exception") is not None,
    })


def on_success(context):
    _note_callback("success", context)


def on_failure(context):
    _note_callback("failure", context)


def on_retry(context):
    _note_callback("retry", context)


def on_dag_failure(context):
    _note_callback("dag_failure", context)
"#;

/// The DAG file: `py` returns a value, `shout` (bash) pulls it, `consume` (Python) pulls
/// `shout`'s; in a second DAG a task skips itself and one fails after its retry.
fn dag_file(callables: &Path, schedule: &str) -> String {
    let file = callables.display();
    format!(
        r#"
py_xcom:
  schedule: {schedule}
  start_date: 2024-01-01
  catchup: false
  tasks:
    py:
      operator: airflow.providers.standard.operators.python.PythonOperator
      python_callable_name: produce
      python_callable_file: {file}
      op_kwargs: {{n: 21}}
    shout:
      operator: airflow.providers.standard.operators.bash.BashOperator
      bash_command: "echo pulled-{{{{ ti.xcom_pull(task_ids='py')['doubled'] }}}}"
      dependencies: [py]
    consume:
      operator: airflow.providers.standard.operators.python.PythonOperator
      python_callable_name: consume
      python_callable_file: {file}
      dependencies: [shout]
py_edges:
  schedule: null
  start_date: 2024-01-01
  catchup: false
  tasks:
    skipper:
      operator: airflow.providers.standard.operators.python.PythonOperator
      python_callable_name: skip
      python_callable_file: {file}
    failer:
      operator: airflow.providers.standard.operators.python.PythonOperator
      python_callable_name: fail
      python_callable_file: {file}
      retries: 1
      retry_delay: 1
py_branch:
  schedule: null
  start_date: 2024-01-01
  catchup: false
  tasks:
    pick:
      operator: airflow.providers.standard.operators.python.BranchPythonOperator
      python_callable_name: pick
      python_callable_file: {file}
    left:
      operator: airflow.providers.standard.operators.bash.BashOperator
      bash_command: echo left
      dependencies: [pick]
    right:
      operator: airflow.providers.standard.operators.bash.BashOperator
      bash_command: echo right
      dependencies: [pick]
    after_right:
      operator: airflow.providers.standard.operators.bash.BashOperator
      bash_command: echo after right
      dependencies: [right]
    join:
      operator: airflow.providers.standard.operators.empty.EmptyOperator
      trigger_rule: none_failed_min_one_success
      dependencies: [left, after_right]
    gate:
      operator: airflow.providers.standard.operators.python.ShortCircuitOperator
      python_callable_name: falsy
      python_callable_file: {file}
      dependencies: [join]
    gated:
      operator: airflow.providers.standard.operators.bash.BashOperator
      bash_command: echo gated
      dependencies: [gate]
    gated_anyway:
      operator: airflow.providers.standard.operators.bash.BashOperator
      bash_command: echo all done
      trigger_rule: all_done
      dependencies: [gated]
    soft_gate:
      operator: airflow.providers.standard.operators.python.ShortCircuitOperator
      python_callable_name: falsy
      python_callable_file: {file}
      ignore_downstream_trigger_rules: false
      dependencies: [join]
    soft_gated:
      operator: airflow.providers.standard.operators.bash.BashOperator
      bash_command: echo soft gated
      dependencies: [soft_gate]
    soft_gated_anyway:
      operator: airflow.providers.standard.operators.bash.BashOperator
      bash_command: echo all done
      trigger_rule: all_done
      dependencies: [soft_gated]
py_taskflow:
  schedule: null
  start_date: 2024-01-01
  catchup: false
  tasks:
    numbers:
      decorator: airflow.sdk.task
      python_callable_name: numbers
      python_callable_file: {file}
      n: 4
    total:
      decorator: airflow.decorators.task
      python_callable_name: total
      python_callable_file: {file}
      values: +numbers
      label: sum
    report:
      operator: airflow.providers.standard.operators.bash.BashOperator
      bash_command: "echo total={{{{ ti.xcom_pull(task_ids='total')['sum'] }}}}"
      dependencies: [total]
py_lineage:
  schedule: null
  start_date: 2024-01-01
  tasks:
    first:
      operator: airflow.providers.standard.operators.python.PythonOperator
      python_callable_name: lineage
      python_callable_file: {file}
    second:
      operator: airflow.providers.standard.operators.python.PythonOperator
      python_callable_name: lineage
      python_callable_file: {file}
      dependencies: [first]
    third:
      operator: airflow.providers.standard.operators.python.PythonOperator
      python_callable_name: lineage
      python_callable_file: {file}
      dependencies: [second]
py_once:
  schedule: null
  start_date: 2024-01-01
  tasks:
    only:
      operator: airflow.providers.standard.operators.python.PythonOperator
      python_callable_name: lineage
      python_callable_file: {file}
py_zombie:
  schedule: null
  start_date: 2024-01-01
  tasks:
    frozen:
      operator: airflow.providers.standard.operators.python.PythonOperator
      python_callable_name: freeze_supervisor
      python_callable_file: {file}
py_custom:
  schedule: null
  start_date: 2024-01-01
  catchup: false
  tasks:
    greet:
      operator: customized.operators.Greet
      name: "{{{{ dag.dag_id }}}}"
    record:
      operator: airflow.providers.standard.operators.python.PythonOperator
      python_callable_name: record_greeting
      python_callable_file: {file}
      dependencies: [greet]
py_callbacks:
  schedule: null
  start_date: 2024-01-01
  catchup: false
  tasks:
    fine:
      operator: airflow.providers.standard.operators.python.PythonOperator
      python_callable_name: produce
      python_callable_file: {file}
      op_kwargs: {{n: 1}}
      on_success_callback_name: note_success
      on_success_callback_file: {file}
    skipper:
      operator: airflow.providers.standard.operators.python.PythonOperator
      python_callable_name: skip
      python_callable_file: {file}
      on_skipped_callback: callables.note_skip
py_parent:
  schedule: null
  start_date: 2024-01-01
  catchup: false
  tasks:
    kick:
      operator: airflow.providers.standard.operators.trigger_dagrun.TriggerDagRunOperator
      trigger_dag_id: py_child
      conf: {{greeting: hello from the parent}}
      wait_for_completion: true
      poke_interval: 1
py_child:
  schedule: null
  start_date: 2024-01-01
  catchup: false
  params: {{greeting: nobody}}
  tasks:
    greet:
      operator: airflow.providers.standard.operators.bash.BashOperator
      bash_command: "echo '{{{{ dag_run.conf[\"greeting\"] }}}}' > \"$OUT_DIR/child.txt\""
py_reschedule:
  schedule: null
  start_date: 2024-01-01
  catchup: false
  tasks:
    wait:
      operator: airflow.providers.standard.sensors.python.PythonSensor
      python_callable_name: poke_thrice
      python_callable_file: {file}
      mode: reschedule
      poke_interval: 1
      timeout: 120
    after:
      operator: airflow.providers.standard.operators.bash.BashOperator
      bash_command: echo waited
      dependencies: [wait]
    give_up:
      operator: airflow.providers.standard.sensors.python.PythonSensor
      python_callable_name: never
      python_callable_file: {file}
      mode: reschedule
      poke_interval: 1
      timeout: 3
      soft_fail: true
py_reschedule_slowly:
  schedule: null
  start_date: 2024-01-01
  catchup: false
  tasks:
    wait:
      operator: airflow.providers.standard.sensors.python.PythonSensor
      python_callable_name: poke_thrice
      python_callable_file: {file}
      mode: reschedule
      poke_interval: 15
      timeout: 120
py_native_callbacks:
  schedule: null
  start_date: 2024-01-01
  catchup: false
  on_failure_callback: callables.on_dag_failure
  default_args:
    on_failure_callback_name: on_failure
    on_failure_callback_file: {file}
  tasks:
    fine:
      operator: airflow.providers.standard.operators.bash.BashOperator
      bash_command: echo fine
      on_success_callback: callables.on_success
    boom:
      operator: airflow.providers.standard.operators.bash.BashOperator
      bash_command: exit 3
      retries: 1
      retry_delay: 1
      on_retry_callback: callables.on_retry
py_timeout:
  schedule: null
  start_date: 2024-01-01
  tasks:
    nap:
      operator: airflow.providers.standard.operators.python.PythonOperator
      python_callable_name: nap
      python_callable_file: {file}
      execution_timeout: {{__type__: datetime.timedelta, seconds: 10}}
"#
    )
}

/// A custom operator, imported by its class path from a package on PYTHONPATH (the test's
/// root), as dag-factory's `customized` examples do.
const CUSTOM_OPERATOR: &str = r#"
from airflow.sdk import BaseOperator


class Greet(BaseOperator):
    template_fields = ("name",)

    def __init__(self, name, **kwargs):
        super().__init__(**kwargs)
        self.name = name

    def execute(self, context):
        return f"hello {self.name} from {context['ti'].task_id}"
"#;

/// DAGs that wait on, or reset runs of, other DAGs (a file of their own, so the workers of the
/// other tests do not build them).
const CROSS_DAGS: &str = r#"
py_upstream:
  schedule: null
  start_date: 2024-01-01
  catchup: false
  task_groups:
    load:
      tooltip: what the sensors wait for
  tasks:
    extract:
      operator: airflow.providers.standard.operators.bash.BashOperator
      bash_command: sleep 8
    store:
      operator: airflow.providers.standard.operators.bash.BashOperator
      bash_command: echo stored
      task_group_name: load
      dependencies: [extract]
    broken:
      operator: airflow.providers.standard.operators.bash.BashOperator
      bash_command: exit 1
py_waiter:
  schedule: null
  start_date: 2024-01-01
  catchup: false
  tasks:
    wait_extract:
      operator: airflow.providers.standard.sensors.external_task.ExternalTaskSensor
      external_dag_id: py_upstream
      external_task_id: extract
      mode: poke
      poke_interval: 1
      timeout: 150
    wait_load:
      operator: airflow.providers.standard.sensors.external_task.ExternalTaskSensor
      external_dag_id: py_upstream
      external_task_group_id: load
      mode: poke
      poke_interval: 1
      timeout: 150
    wait_broken:
      operator: airflow.providers.standard.sensors.external_task.ExternalTaskSensor
      external_dag_id: py_upstream
      external_task_id: broken
      failed_states: [failed]
      mode: poke
      poke_interval: 1
      timeout: 150
    wait_run:
      operator: airflow.providers.standard.sensors.external_task.ExternalTaskSensor
      external_dag_id: py_upstream
      allowed_states: [success, failed]
      mode: poke
      poke_interval: 1
      timeout: 150
py_resetter:
  schedule: null
  start_date: 2024-01-01
  catchup: false
  tasks:
    kick:
      operator: airflow.providers.standard.operators.trigger_dagrun.TriggerDagRunOperator
      trigger_dag_id: py_counted
      trigger_run_id: the_one_run
      reset_dag_run: true
      wait_for_completion: true
      poke_interval: 1
py_counted:
  schedule: null
  start_date: 2024-01-01
  catchup: false
  tasks:
    count:
      operator: airflow.providers.standard.operators.bash.BashOperator
      bash_command: "echo ran >> \"$OUT_DIR/counted.txt\""
"#;

/// A folder with the DAG file and its callables.
fn dags_folder(root: &Path) -> PathBuf {
    dags_folder_scheduled(root, "null")
}

/// The same, `py_xcom` running on `schedule`.
fn dags_folder_scheduled(root: &Path, schedule: &str) -> PathBuf {
    let dags = root.join("dags");
    std::fs::create_dir_all(&dags).expect("mkdir");
    let callables = root.join("callables.py");
    std::fs::write(&callables, CALLABLES).expect("write");
    let package = root.join("customized");
    std::fs::create_dir_all(&package).expect("mkdir");
    std::fs::write(package.join("__init__.py"), "").expect("write");
    std::fs::write(package.join("operators.py"), CUSTOM_OPERATOR).expect("write");
    std::fs::write(dags.join("py_xcom.yaml"), dag_file(&callables, schedule)).expect("write");
    std::fs::write(dags.join("py_cross.yaml"), CROSS_DAGS).expect("write");
    dags
}

#[test]
fn python_tasks_are_refused_naming_the_setting_without_an_interpreter() {
    let home = tempfile::tempdir().expect("tempdir");
    let dags = dags_folder(home.path());
    gust(home.path())
        .env_remove("GUST__PYTHON__INTERPRETER")
        .args(["dags", "validate"])
        .arg(&dags)
        .assert()
        .code(1)
        .stdout(predicate::str::contains("[python] interpreter"));
}

#[test]
fn python_check_says_whether_an_environment_runs_python_tasks_and_what_to_install() {
    let home = tempfile::tempdir().expect("tempdir");
    gust(home.path())
        .env_remove("GUST__PYTHON__INTERPRETER")
        .args(["python", "check"])
        .assert()
        .code(1)
        .stdout(predicate::str::contains(
            "no Python environment is configured",
        ));
    // The system's Python, without Airflow.
    gust(home.path())
        .args(["python", "check", "--interpreter", "python3"])
        .assert()
        .code(1)
        .stdout(predicate::str::contains(
            "problem: apache-airflow is not installed: pip install",
        ));
    let Some(python) = airflow_python() else {
        return;
    };
    gust(home.path())
        .env("GUST__PYTHON__INTERPRETER", &python)
        .args(["python", "check"])
        .assert()
        .success()
        .stdout(
            predicate::str::contains("ok: this environment runs Python tasks")
                .and(predicate::str::contains("apache-airflow: 3.3.2")),
        );
}

#[test]
fn python_and_bash_tasks_pass_xcoms_both_ways_as_in_airflow() {
    let Some(python) = airflow_python() else {
        return;
    };
    let home = tempfile::tempdir().expect("tempdir");
    let dags = dags_folder(home.path());
    let gust_out = home.path().join("out-gust");
    let stdout = succeeded(&mut dags_test(
        home.path(),
        &python,
        &gust_out,
        &dags,
        "py_xcom",
    ));
    assert_succeeded(&stdout, &["py", "shout", "consume"]);
    let produced = read_json(&gust_out.join("produce.json"));
    assert_eq!(produced, serde_json::json!({"doubled": 42, "try": 1}));
    let consumed = read_json(&gust_out.join("consume.json"));
    assert_eq!(
        consumed,
        serde_json::json!({
            "shout": "pulled-42",
            "py": {"doubled": 42, "try": 1},
            "run_type": "manual",
        })
    );
    // The worker's structured log lines are the try's log lines.
    let logs = home.path().join("logs");
    let py_log = find_log(&logs, "task_id=py").expect("the py task's log");
    let text = std::fs::read_to_string(&py_log).expect("log");
    assert!(text.contains("Done. Returned value was"), "{text}");
    assert!(
        !text.contains("\"event\""),
        "structured lines are read: {text}"
    );

    // Airflow's own run of the same file, through the same dag-factory.
    let airflow_out = home.path().join("out-airflow");
    let _ = airflow_dags_test(&python, home.path(), &dags, "py_xcom", &airflow_out);
    assert_eq!(read_json(&airflow_out.join("produce.json")), produced);
    assert_eq!(read_json(&airflow_out.join("consume.json")), consumed);
}

#[test]
fn a_python_task_skips_itself_and_a_failing_one_is_retried_then_fails() {
    let Some(python) = airflow_python() else {
        return;
    };
    let home = tempfile::tempdir().expect("tempdir");
    let dags = dags_folder(home.path());
    let run = dags_test(
        home.path(),
        &python,
        home.path().join("out"),
        &dags,
        "py_edges",
    )
    .assert()
    .code(1)
    .get_output()
    .stdout
    .clone();
    let stdout = String::from_utf8_lossy(&run);
    assert!(stdout.contains("skipper: skipped"), "{stdout}");
    assert!(stdout.contains("failer: up_for_retry (try 1)"), "{stdout}");
    assert!(stdout.contains("failer: failed (try 2)"), "{stdout}");
    let log = find_log(&home.path().join("logs"), "task_id=failer").expect("a log");
    let text = std::fs::read_to_string(log).expect("log");
    assert!(text.contains("this task always fails"), "{text}");
}

#[test]
fn a_branch_and_a_short_circuit_skip_what_airflow_skips() {
    let Some(python) = airflow_python() else {
        return;
    };
    let home = tempfile::tempdir().expect("tempdir");
    let dags = dags_folder(home.path());
    let stdout = succeeded(&mut dags_test(
        home.path(),
        &python,
        home.path().join("out"),
        &dags,
        "py_branch",
    ));
    let gust_states = final_states(&stdout);
    let expected: std::collections::BTreeMap<String, String> = [
        ("pick", "success"),
        ("left", "success"),
        ("right", "skipped"),
        ("after_right", "skipped"),
        ("join", "success"),
        ("gate", "success"),
        ("gated", "skipped"),
        ("gated_anyway", "skipped"),
        ("soft_gate", "success"),
        ("soft_gated", "skipped"),
        ("soft_gated_anyway", "success"),
    ]
    .into_iter()
    .map(|(task, state)| (task.to_owned(), state.to_owned()))
    .collect();
    assert_eq!(gust_states, expected, "{stdout}");

    let airflow_states = airflow_dags_test(
        &python,
        home.path(),
        &dags,
        "py_branch",
        &home.path().join("out-airflow"),
    );
    assert_eq!(gust_states, airflow_states);
}

#[test]
fn taskflow_tasks_take_upstream_xcoms_as_arguments_as_in_airflow() {
    let Some(python) = airflow_python() else {
        return;
    };
    let home = tempfile::tempdir().expect("tempdir");
    let dags = dags_folder(home.path());
    let gust_out = home.path().join("out-gust");
    let stdout = succeeded(&mut dags_test(
        home.path(),
        &python,
        &gust_out,
        &dags,
        "py_taskflow",
    ));
    assert_succeeded(&stdout, &["numbers", "total", "report"]);
    // `total` waited for `numbers`, its upstream by `values: +numbers` alone.
    assert_eq!(
        read_json(&gust_out.join("numbers.json")),
        serde_json::json!([0, 1, 2, 3])
    );
    let total = read_json(&gust_out.join("total.json"));
    assert_eq!(total, serde_json::json!({"sum": 6}));
    let log = find_log(&home.path().join("logs"), "task_id=report").expect("report's log");
    let text = std::fs::read_to_string(log).expect("log");
    assert!(text.contains("total=6"), "{text}");

    let airflow_out = home.path().join("out-airflow");
    let states = airflow_dags_test(&python, home.path(), &dags, "py_taskflow", &airflow_out);
    assert_eq!(read_json(&airflow_out.join("total.json")), total);
    assert!(states.values().all(|s| s == "success"), "{states:?}");
}

#[test]
fn a_custom_operator_named_by_its_class_path_runs_as_in_airflow() {
    let Some(python) = airflow_python() else {
        return;
    };
    let home = tempfile::tempdir().expect("tempdir");
    let dags = dags_folder(home.path());
    let gust_out = home.path().join("out-gust");
    dags_test(home.path(), &python, &gust_out, &dags, "py_custom")
        .assert()
        .success()
        .stdout(predicate::str::contains("record: success"));
    let greeting = read_json(&gust_out.join("greeting.json"));
    assert_eq!(greeting, serde_json::json!("hello py_custom from greet"));
    let airflow_out = home.path().join("out-airflow");
    let states = airflow_dags_test(&python, home.path(), &dags, "py_custom", &airflow_out);
    assert_eq!(read_json(&airflow_out.join("greeting.json")), greeting);
    assert!(states.values().all(|s| s == "success"), "{states:?}");
}

#[test]
fn a_python_tasks_callbacks_run_in_its_worker_as_in_airflow() {
    let Some(python) = airflow_python() else {
        return;
    };
    let home = tempfile::tempdir().expect("tempdir");
    let dags = dags_folder(home.path());
    let gust_out = home.path().join("out-gust");
    let stdout = succeeded(&mut dags_test(
        home.path(),
        &python,
        &gust_out,
        &dags,
        "py_callbacks",
    ));
    assert_succeeded(&stdout, &["fine"]);
    assert_eq!(final_states(&stdout)["skipper"], "skipped", "{stdout}");
    // A callback named by `_name` and `_file`, and one by dotted path (callables.py is on
    // PYTHONPATH).
    assert_eq!(read_json(&gust_out.join("success_callback.json")), "fine");
    assert_eq!(
        read_json(&gust_out.join("skipped_callback.json")),
        "skipper"
    );
    let airflow_out = home.path().join("out-airflow");
    let states = airflow_dags_test(&python, home.path(), &dags, "py_callbacks", &airflow_out);
    assert_eq!(
        read_json(&airflow_out.join("success_callback.json")),
        "fine"
    );
    assert_eq!(
        read_json(&airflow_out.join("skipped_callback.json")),
        "skipper"
    );
    assert_eq!(states, final_states(&stdout));
}

#[test]
fn a_taskflow_task_without_python_names_the_setting() {
    let home = tempfile::tempdir().expect("tempdir");
    let dags = dags_folder(home.path());
    gust(home.path())
        .env_remove("GUST__PYTHON__INTERPRETER")
        .args(["dags", "validate"])
        .arg(&dags)
        .assert()
        .code(1)
        .stdout(predicate::str::contains(
            "TaskFlow task \"numbers\" needs Python",
        ));
}

#[test]
fn the_scheduler_serves_the_execution_api_to_its_python_tasks() {
    let Some(python) = airflow_python() else {
        return;
    };
    let home = tempfile::tempdir().expect("tempdir");
    dags_folder_scheduled(home.path(), "\"@daily\"");
    let out = home.path().join("out");
    let scheduler = PythonScheduler::start(home.path(), &python, &out);
    let runs = scheduler.wait_for_a_run("py_xcom");
    drop(scheduler);
    assert!(runs.contains("\"success\""), "{runs}");
    let consumed = read_json(&out.join("consume.json"));
    assert_eq!(consumed["shout"], "pulled-42", "{consumed}");
    assert_eq!(consumed["py"]["doubled"], 42, "{consumed}");
    assert_eq!(consumed["run_type"], "scheduled", "{consumed}");
}

#[test]
fn a_task_triggers_another_dags_run_with_its_conf_and_waits_for_it() {
    let Some(python) = airflow_python() else {
        return;
    };
    let home = tempfile::tempdir().expect("tempdir");
    dags_folder(home.path());
    let out = home.path().join("out");
    std::fs::create_dir_all(&out).expect("mkdir");
    let scheduler = PythonScheduler::start(home.path(), &python, &out);
    scheduler
        .gust()
        .args(["dags", "trigger", "py_parent"])
        .assert()
        .success();
    let parent = scheduler.wait_for_a_run("py_parent");
    let child = scheduler.wait_for_a_run("py_child");
    drop(scheduler);
    let log_of = |task: &str| {
        find_log(&home.path().join("logs"), &format!("task_id={task}"))
            .and_then(|log| std::fs::read_to_string(log).ok())
            .unwrap_or_default()
    };
    let kick_log = log_of("kick") + &log_of("greet");
    assert!(parent.contains("\"success\""), "{parent}\n{kick_log}");
    assert!(
        child.contains("\"success\"") && child.contains("\"operator_triggered\""),
        "{child}"
    );
    let greeting = std::fs::read_to_string(out.join("child.txt")).expect("the child ran");
    assert_eq!(greeting.trim(), "hello from the parent");
}

#[test]
fn an_external_task_sensor_waits_for_another_dags_tasks_group_and_run() {
    let Some(python) = airflow_python() else {
        return;
    };
    let home = tempfile::tempdir().expect("tempdir");
    dags_folder(home.path());
    let out = home.path().join("out");
    std::fs::create_dir_all(&out).expect("mkdir");
    let scheduler = PythonScheduler::start(home.path(), &python, &out);
    // The same logical date for both runs: what the sensors match on. The waiter starts first.
    let date = "2024-01-01T00:00:00+00:00";
    for (dag_id, run_id) in [("py_waiter", "waiting"), ("py_upstream", "upstream")] {
        scheduler
            .gust()
            .args(["dags", "trigger", dag_id, "-r", run_id, "-l", date])
            .assert()
            .success();
    }
    let waiter = scheduler.wait_for_run("py_waiter", "waiting");
    let upstream = scheduler.task_states("py_upstream", "upstream");
    let states = scheduler.task_states("py_waiter", "waiting");
    drop(scheduler);
    let state = |tasks: &serde_json::Value, task: &str| {
        tasks
            .as_array()
            .and_then(|all| all.iter().find(|t| t["task_id"] == task))
            .cloned()
            .unwrap_or_else(|| panic!("no {task} in {tasks}"))
    };
    let sensor_log = find_log(&home.path().join("logs"), "task_id=wait_broken")
        .and_then(|log| std::fs::read_to_string(log).ok())
        .unwrap_or_default();
    assert_eq!(waiter, "failed", "{states}\n{sensor_log}");
    for (task, expected) in [
        ("wait_extract", "success"),
        ("wait_load", "success"),
        ("wait_run", "success"),
        // Its target failed, one of its failed_states.
        ("wait_broken", "failed"),
    ] {
        assert_eq!(
            state(&states, task)["state"],
            expected,
            "{task}: {states}\n{sensor_log}"
        );
    }
    assert!(
        sensor_log.contains("failed"),
        "the sensor says why: {sensor_log}"
    );
    // Each waited for what it watches to end.
    let ended = |tasks: &serde_json::Value, task: &str| {
        state(tasks, task)["end_date"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(
        state(&upstream, "load.store")["state"],
        "success",
        "{upstream}"
    );
    assert!(
        ended(&states, "wait_extract") >= ended(&upstream, "extract"),
        "{states}\n{upstream}"
    );
    assert!(
        ended(&states, "wait_load") >= ended(&upstream, "load.store"),
        "{states}\n{upstream}"
    );

    // Airflow's own: the upstream run first (it fails, as `broken` does), then the waiter's,
    // at the same logical date, its sensors answered by Airflow's Execution API.
    let airflow_out = home.path().join("airflow-out");
    let airflow_states = airflow_dags_tests(
        &python,
        home.path(),
        &home.path().join("dags"),
        &[("py_upstream", Some(date)), ("py_waiter", Some(date))],
        &airflow_out,
        true,
    );
    let gust_states: std::collections::BTreeMap<String, String> = states
        .as_array()
        .expect("a list")
        .iter()
        .map(|t| {
            let field = |name: &str| t[name].as_str().unwrap_or_default().to_owned();
            (field("task_id"), field("state"))
        })
        .collect();
    assert_eq!(gust_states, airflow_states);
}

#[test]
fn a_task_resets_an_existing_run_of_another_dag_and_waits_for_it_again() {
    let Some(python) = airflow_python() else {
        return;
    };
    let home = tempfile::tempdir().expect("tempdir");
    dags_folder(home.path());
    let out = home.path().join("out");
    std::fs::create_dir_all(&out).expect("mkdir");
    let scheduler = PythonScheduler::start(home.path(), &python, &out);
    // The second run finds the child's run (same id) there: it clears it and waits again.
    for run_id in ["first", "second"] {
        scheduler
            .gust()
            .args(["dags", "trigger", "py_resetter", "-r", run_id])
            .assert()
            .success();
        let ended = scheduler.wait_for_run("py_resetter", run_id);
        assert_eq!(
            ended,
            "success",
            "{run_id}: {}",
            std::fs::read_to_string(home.path().join("scheduler.log")).unwrap_or_default()
        );
    }
    let child = scheduler.wait_for_run("py_counted", "the_one_run");
    let runs = succeeded(
        scheduler
            .gust()
            .args(["dags", "list-runs", "py_counted", "-o", "json"]),
    );
    drop(scheduler);
    assert_eq!(child, "success");
    let runs: serde_json::Value = serde_json::from_str(&runs).expect("JSON");
    assert_eq!(
        runs.as_array().map(Vec::len),
        Some(1),
        "one run, reset: {runs}"
    );
    let counted = std::fs::read_to_string(out.join("counted.txt")).expect("the child ran");
    assert_eq!(counted.lines().count(), 2, "the child ran twice: {counted}");
}

#[test]
fn a_sensor_in_reschedule_mode_pokes_again_as_the_same_try_as_in_airflow() {
    let Some(python) = airflow_python() else {
        return;
    };
    let home = tempfile::tempdir().expect("tempdir");
    let dags = dags_folder(home.path());
    let gust_out = home.path().join("out-gust");
    let stdout = succeeded(&mut dags_test(
        home.path(),
        &python,
        &gust_out,
        &dags,
        "py_reschedule",
    ));
    // Three pokes of try 1, each told how often the try has rescheduled so far.
    let pokes = read_json(&gust_out.join("pokes.json"));
    assert_eq!(
        pokes,
        serde_json::json!([[1, 0], [1, 1], [1, 2]]),
        "{stdout}"
    );
    assert!(
        stdout.contains("wait: up_for_reschedule (try 1)"),
        "{stdout}"
    );
    assert!(!stdout.contains("(try 2)"), "{stdout}");
    // The sensor that never succeeds times out (measured from its first reschedule) and,
    // with soft_fail, skips itself.
    let states = final_states(&stdout);
    assert_eq!(states["give_up"], "skipped", "{stdout}");
    // One log for the try, holding every poke.
    let log = find_log(&home.path().join("logs"), "task_id=wait").expect("a log");
    let text = std::fs::read_to_string(log).expect("log");
    assert_eq!(text.matches("Rescheduling task").count(), 2, "{text}");

    let airflow_out = home.path().join("out-airflow");
    let airflow_states =
        airflow_dags_test(&python, home.path(), &dags, "py_reschedule", &airflow_out);
    assert_eq!(read_json(&airflow_out.join("pokes.json")), pokes);
    assert_eq!(states, airflow_states);
}

/// Triggers `dag_id` on a scheduler killed once a task of the run is in `state`, then runs a
/// new scheduler until the run ends: its runs (`list-runs`) and the run's task states.
fn killed_while(
    home: &Path,
    python: &Path,
    out: &Path,
    dag_id: &str,
    state: &str,
) -> (String, String) {
    let scheduler = PythonScheduler::start(home, python, out);
    scheduler
        .gust()
        .args(["dags", "trigger", dag_id])
        .assert()
        .success();
    let run_id = scheduler.first_run_id(dag_id);
    scheduler.wait_for_state(dag_id, &run_id, state);
    drop(scheduler);
    let scheduler = PythonScheduler::start(home, python, out);
    let runs = scheduler.wait_for_a_run(dag_id);
    let states = scheduler.states_of_run(dag_id, &run_id);
    (runs, states)
}

#[test]
fn a_rescheduled_sensor_survives_a_killed_scheduler_and_keeps_its_try_number() {
    let Some(python) = airflow_python() else {
        return;
    };
    let home = tempfile::tempdir().expect("tempdir");
    dags_folder(home.path());
    let out = home.path().join("out");
    std::fs::create_dir_all(&out).expect("mkdir");
    // Killed once the sensor has poked and rescheduled itself (it waits 15 s between pokes, so
    // that the wait outlasts its worker's exit even on a loaded machine):
    // the next scheduler takes the waiting try up at its date, under the same number.
    let (runs, states) = killed_while(
        home.path(),
        &python,
        &out,
        "py_reschedule_slowly",
        "up_for_reschedule",
    );
    assert!(runs.contains("\"success\""), "{runs}\n{states}");
    assert_eq!(
        read_json(&out.join("pokes.json")),
        serde_json::json!([[1, 0], [1, 1], [1, 2]]),
        "{states}"
    );
    let wait = serde_json::from_str::<serde_json::Value>(&states).expect("JSON")[0].clone();
    assert_eq!(wait["task_id"], "wait", "{states}");
    assert_eq!(wait["state"], "success", "{states}");
    assert_eq!(wait["try_number"], 1, "{states}");
}

#[test]
fn callbacks_of_bash_tasks_and_of_the_dag_run_in_python_as_in_airflow() {
    let Some(python) = airflow_python() else {
        return;
    };
    let home = tempfile::tempdir().expect("tempdir");
    let dags = dags_folder(home.path());
    let out = home.path().join("out");
    std::fs::create_dir_all(&out).expect("mkdir");
    let scheduler = PythonScheduler::start(home.path(), &python, &out);
    scheduler
        .gust()
        .args(["dags", "trigger", "py_native_callbacks"])
        .assert()
        .success();
    let runs = scheduler.wait_for_a_run("py_native_callbacks");
    assert!(runs.contains("\"failed\""), "{runs}");
    // Callbacks run after the moves that call for them are committed, on their own.
    let names = [
        "callback_success_fine",
        "callback_retry_boom",
        "callback_failure_boom",
        // A DAG callback's context is that of the task instance that decided the run.
        "callback_dag_failure_boom",
    ];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !names.iter().all(|n| out.join(format!("{n}.json")).exists()) {
        assert!(
            std::time::Instant::now() < deadline,
            "callbacks missing in {:?}: {}",
            std::fs::read_dir(&out).map(|d| d.flatten().map(|e| e.file_name()).collect::<Vec<_>>()),
            std::fs::read_to_string(home.path().join("scheduler.log")).unwrap_or_default()
        );
        #[allow(
            clippy::disallowed_methods,
            reason = "waits for the callbacks' processes"
        )]
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    drop(scheduler);
    let gust: std::collections::BTreeMap<&str, serde_json::Value> = names
        .iter()
        .map(|n| (*n, read_json(&out.join(format!("{n}.json")))))
        .collect();
    assert_eq!(gust["callback_retry_boom"]["try"], 1, "{gust:?}");
    assert_eq!(gust["callback_failure_boom"]["try"], 2, "{gust:?}");
    assert_eq!(
        gust["callback_failure_boom"]["has_exception"], true,
        "{gust:?}"
    );
    assert_eq!(gust["callback_success_fine"]["try"], 1, "{gust:?}");
    assert_eq!(
        gust["callback_dag_failure_boom"]["reason"], "task_failure",
        "{gust:?}"
    );
    assert_eq!(gust["callback_dag_failure_boom"]["try"], 2, "{gust:?}");
    // The task callback's output is in the try's log.
    let log = find_log(&home.path().join("logs"), "task_id=boom/attempt=2").expect("a log");
    let text = std::fs::read_to_string(log).expect("log");
    assert!(text.contains("on_failure_callback"), "{text}");

    // `gust dags test` runs them too, before it exits.
    let test_out = home.path().join("out-dags-test");
    std::fs::create_dir_all(&test_out).expect("mkdir");
    dags_test(
        home.path(),
        &python,
        &test_out,
        &dags,
        "py_native_callbacks",
    )
    .assert()
    .code(1);
    for name in names {
        let tested = read_json(&test_out.join(format!("{name}.json")));
        for field in ["try", "reason", "has_exception"] {
            assert_eq!(
                tested[field], gust[name][field],
                "{name}: {tested} against {gust:?}"
            );
        }
    }

    // Airflow runs the same file's callbacks alike.
    let airflow_out = home.path().join("out-airflow");
    std::fs::create_dir_all(&airflow_out).expect("mkdir");
    let run = [("py_native_callbacks", None)];
    airflow_dags_tests(&python, home.path(), &dags, &run, &airflow_out, true);
    for name in names {
        let theirs = read_json(&airflow_out.join(format!("{name}.json")));
        for field in ["try", "reason", "has_exception"] {
            assert_eq!(
                theirs[field], gust[name][field],
                "{name}: {theirs} against {gust:?}"
            );
        }
    }
}

#[test]
fn a_python_task_past_its_execution_timeout_is_killed_with_its_task_process() {
    let Some(python) = airflow_python() else {
        return;
    };
    let home = tempfile::tempdir().expect("tempdir");
    let dags = dags_folder(home.path());
    let out = home.path().join("out");
    let run = dags_test(home.path(), &python, &out, &dags, "py_timeout")
        .assert()
        .code(1)
        .get_output()
        .stdout
        .clone();
    let stdout = String::from_utf8_lossy(&run);
    assert!(
        stdout.contains("nap: failed (try 1): timed out after 10s"),
        "{stdout}"
    );
    // The process that ran the callable (the Task SDK's task runner, in a process group of its
    // own) is gone too.
    assert_gone(&read_json(&out.join("nap.json")));
    assert!(!out.join("woke.json").exists());
}

#[test]
fn a_python_tasks_execution_timeout_counts_from_its_start_not_its_workers() {
    let Some(python) = airflow_python() else {
        return;
    };
    // Building the DAG takes the worker 4 s (its callable's module sleeps as it is imported);
    // the task itself takes none. Airflow's task runner starts the 3 s timeout when the task
    // starts, so the try succeeds; so must Gust's.
    let home = tempfile::tempdir().expect("tempdir");
    let dags = home.path().join("dags");
    std::fs::create_dir_all(&dags).expect("mkdir");
    let module = home.path().join("slow_import.py");
    std::fs::write(
        &module,
        "import time\ntime.sleep(4)\n\ndef quick():\n    return 1\n",
    )
    .expect("write");
    std::fs::write(
        dags.join("slow.yaml"),
        format!(
            r#"
py_slow_start:
  schedule: null
  start_date: 2024-01-01
  tasks:
    quick:
      operator: airflow.providers.standard.operators.python.PythonOperator
      python_callable_name: quick
      python_callable_file: {}
      execution_timeout: {{__type__: datetime.timedelta, seconds: 3}}
"#,
            module.display()
        ),
    )
    .expect("write");
    let run = dags_test(home.path(), &python, home.path(), &dags, "py_slow_start")
        .assert()
        .get_output()
        .stdout
        .clone();
    let stdout = String::from_utf8_lossy(&run);
    assert!(stdout.contains("quick: success"), "{stdout}");
}

#[test]
fn a_python_worker_that_stops_heartbeating_is_killed_as_a_zombie() {
    let Some(python) = airflow_python() else {
        return;
    };
    let home = tempfile::tempdir().expect("tempdir");
    let dags = dags_folder(home.path());
    let out = home.path().join("out");
    let run = dags_test(home.path(), &python, &out, &dags, "py_zombie")
        .env("GUST__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT", "12s")
        .timeout(std::time::Duration::from_secs(120))
        .assert()
        .code(1)
        .get_output()
        .stdout
        .clone();
    let stdout = String::from_utf8_lossy(&run);
    assert!(
        stdout.contains("frozen: failed (try 1): its worker was not heard of for"),
        "{stdout}"
    );
    // The task's process (the stopped supervisor's child) is gone, and never woke.
    assert_gone(&read_json(&out.join("froze.json")));
    assert!(!out.join("thawed.json").exists());
}

#[test]
fn python_tries_are_forked_from_one_warm_worker_unless_told_otherwise() {
    let Some(python) = airflow_python() else {
        return;
    };
    let home = tempfile::tempdir().expect("tempdir");
    let dags = dags_folder(home.path());
    let out = home.path().join("out");
    let run = dags_test(home.path(), &python, &out, &dags, "py_lineage")
        .timeout(std::time::Duration::from_secs(300))
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    assert_succeeded(
        &String::from_utf8_lossy(&run),
        &["first", "second", "third"],
    );
    // The first try starts the worker and waits for it: every try is forked.
    for task in ["first", "second"] {
        let value = read_json(&out.join(format!("{task}.json")));
        assert_eq!(value["forked"], true, "{task}: {value}");
    }
    let third = read_json(&out.join("third.json"));
    assert_eq!(third["forked"], true, "{third}");
    let leader = third["leader"].as_str().unwrap_or_default();
    assert!(
        leader.contains("client.py") || leader.starts_with("bash"),
        "the forked supervisor is in its try's process group, not the worker's: {third}"
    );
    // The worker ends with the command.
    assert_gone(&third["spawner"]);

    // Airflow's setting: a fresh interpreter per try.
    let out = home.path().join("out-cold");
    let run = dags_test(home.path(), &python, &out, &dags, "py_lineage")
        .env("GUST__CORE__EXECUTE_TASKS_NEW_PYTHON_INTERPRETER", "true")
        .timeout(std::time::Duration::from_secs(300))
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    assert_succeeded(
        &String::from_utf8_lossy(&run),
        &["first", "second", "third"],
    );
    for task in ["first", "second", "third"] {
        let value = read_json(&out.join(format!("{task}.json")));
        assert_eq!(value["forked"], false, "{task}: {value}");
        let leader = value["leader"].as_str().unwrap_or_default();
        assert!(
            // The supervisor leads its own try's group when bash started it in its place (it
            // names itself `airflow supervisor: ...`).
            leader.contains("airflow supervisor")
                || leader.contains("execute_workload")
                || leader.starts_with("bash"),
            "{task}: {value}"
        );
    }
}

#[test]
fn a_worker_slower_to_start_than_the_heartbeat_timeout_is_not_a_zombie() {
    let Some(python) = airflow_python() else {
        return;
    };
    let home = tempfile::tempdir().expect("tempdir");
    let dags = dags_folder(home.path());
    let out = home.path().join("out");
    // Every fresh interpreter (not the client, which skips `site`) sleeps before it runs:
    // the worker's first call comes after the heartbeat timeout has passed.
    let slow = home.path().join("slow-start");
    std::fs::create_dir_all(&slow).expect("mkdir");
    std::fs::write(
        slow.join("sitecustomize.py"),
        "import time\ntime.sleep(15)\n",
    )
    .expect("write");
    let path = std::env::join_paths([slow.as_path(), home.path()]).expect("a path");
    let run = dags_test(home.path(), &python, &out, &dags, "py_once")
        .env("PYTHONPATH", path)
        .env("GUST__CORE__EXECUTE_TASKS_NEW_PYTHON_INTERPRETER", "true")
        .env("GUST__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT", "12s")
        .timeout(std::time::Duration::from_secs(180))
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    assert_succeeded(&String::from_utf8_lossy(&run), &["only"]);
}

/// Asserts that each of `tasks` ended in success in `gust dags test`'s `stdout`.
fn assert_succeeded(stdout: &str, tasks: &[&str]) {
    let states = final_states(stdout);
    for task in tasks {
        assert_eq!(
            states.get(*task).map(String::as_str),
            Some("success"),
            "{task} did not succeed: {stdout}"
        );
    }
}

/// Asserts that the process `pid` (a JSON number) is gone, or a zombie: dead, waiting for a
/// parent that reaps it (no init reaps in a container whose first process is not one). SIGKILL
/// is delivered asynchronously, so a process on the other core may show `R` for a moment.
fn assert_gone(pid: &serde_json::Value) {
    let stat = || std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let dead = |stat: &str| {
        let state = stat.rsplit_once(") ").map(|(_, rest)| &rest[..1]);
        matches!(state, None | Some("Z" | "X"))
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !dead(&stat()) && std::time::Instant::now() < deadline {
        #[allow(
            clippy::disallowed_methods,
            reason = "waits for another process to die"
        )]
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let stat = stat();
    assert!(
        dead(&stat),
        "the task's process {pid} outlived the try: {stat}"
    );
}

/// `gust dags test DAG_ID` of `dags` with Python tasks run by `python`, the callables writing
/// what they saw under `out`.
fn dags_test(
    home: &Path,
    python: &Path,
    out: impl AsRef<Path>,
    dags: &Path,
    dag_id: &str,
) -> Command {
    let mut command = gust(home);
    command
        .env("GUST__PYTHON__INTERPRETER", python)
        .env("AIRFLOW__DAG_FACTORY__ENABLE_TELEMETRY", "False")
        .env("OUT_DIR", out.as_ref())
        .env("PYTHONPATH", home)
        .args(["dags", "test", dag_id, "--dags-folder"])
        .arg(dags);
    command
}

/// The first log file under `root` whose path contains `part`.
fn find_log(root: &Path, part: &str) -> Option<PathBuf> {
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).ok()?.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.display().to_string().contains(part) {
                return Some(path);
            }
        }
    }
    None
}

/// `airflow dags test DAG` of the same YAML file, loaded by dag-factory from a DAG file in a
/// folder of its own, in a fresh AIRFLOW_HOME; answers the final state of each task.
fn airflow_dags_test(
    python: &Path,
    root: &Path,
    dags: &Path,
    dag_id: &str,
    out: &Path,
) -> std::collections::BTreeMap<String, String> {
    airflow_dags_tests(python, root, dags, &[(dag_id, None)], out, false)
}

/// `airflow dags test DAG [DATE]` of each of `runs` in turn, in one AIRFLOW_HOME (so a run sees
/// the runs before it); answers the final state of each task of the last DAG. A run that fails
/// is an error unless `may_fail`.
fn airflow_dags_tests(
    python: &Path,
    root: &Path,
    dags: &Path,
    runs: &[(&str, Option<&str>)],
    out: &Path,
    may_fail: bool,
) -> std::collections::BTreeMap<String, String> {
    let airflow_home = root.join("airflow-home");
    let airflow_dags = root.join("airflow-dags");
    std::fs::create_dir_all(&airflow_dags).expect("mkdir");
    let mut loader = String::from(
        // The words "airflow" and "dag" make Airflow's safe mode parse the file.
        "# An Airflow DAG file: dag-factory builds the YAML files' DAGs.\n\
         from dagfactory import load_yaml_dags\n",
    );
    for file in ["py_xcom.yaml", "py_cross.yaml", "py_deferred.yaml"] {
        if !dags.join(file).exists() {
            continue;
        }
        loader.push_str(&format!(
            "load_yaml_dags(globals_dict=globals(), config_filepath={:?})\n",
            dags.join(file).display().to_string()
        ));
    }
    std::fs::write(airflow_dags.join("load.py"), loader).expect("write");
    let airflow = |args: &[&str], must_succeed: bool| {
        // `-c SCRIPT` runs a script in the same environment; anything else is an airflow command.
        let module: &[&str] = if args.first() == Some(&"-c") {
            &[]
        } else {
            &["-m", "airflow"]
        };
        #[allow(clippy::disallowed_methods, reason = "the test runs Airflow")]
        let output = std::process::Command::new(python)
            .args(module)
            .args(args)
            .env("AIRFLOW_HOME", &airflow_home)
            .env("AIRFLOW__CORE__DAGS_FOLDER", &airflow_dags)
            .env("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
            .env("AIRFLOW__DAG_FACTORY__ENABLE_TELEMETRY", "False")
            .env("OUT_DIR", out)
            .env("PYTHONPATH", root)
            .output()
            .expect("airflow runs");
        assert!(
            output.status.success() || !must_succeed,
            "airflow {args:?} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    airflow(&["db", "migrate"], true);
    for (dag_id, date) in runs {
        let mut args = vec!["dags", "test", dag_id];
        args.extend(date);
        airflow(&args, !may_fail);
    }
    let last = runs.last().map_or("", |(dag_id, _)| dag_id);
    // Read from Airflow's database: its CLI mixes log lines into what it prints.
    let states = airflow(&["-c", STATES_OF_THE_RUN, last], true);
    let json = states
        .lines()
        .find_map(|line| line.strip_prefix("STATES "))
        .unwrap_or_else(|| panic!("no states in: {states}"));
    serde_json::from_str(json).expect("JSON states")
}

/// Prints `STATES {task_id: state}` of the DAG `sys.argv[1]`'s one run, from Airflow's database.
const STATES_OF_THE_RUN: &str = r#"
import json, sys
from airflow.models.taskinstance import TaskInstance
from airflow.utils.session import create_session
with create_session() as session:
    rows = session.query(TaskInstance.task_id, TaskInstance.state).filter(
        TaskInstance.dag_id == sys.argv[1]).all()
    print("STATES " + json.dumps({task: getattr(state, "value", state) for task, state in rows}))
"#;

/// A Python task run as a worker pod (`[kubernetes] worker_image`) on the local pod runtime:
/// its callable lives beside the DAG file, which reaches the pod in the try's Secret.
const WORKER_POD_DAG: &str = r#"
py_pod:
  schedule: null
  start_date: 2024-01-01
  catchup: false
  tasks:
    py:
      operator: airflow.providers.standard.operators.python.PythonOperator
      python_callable_name: produce
      python_callable_file: CALLABLES
      op_kwargs: {n: 21}
    shout:
      operator: bash
      bash_command: "echo pulled-{{ ti.xcom_pull(task_ids='py')['doubled'] }}"
      dependencies: [py]
    consume:
      operator: airflow.providers.standard.operators.python.PythonOperator
      python_callable: pod_callables.consume
      dependencies: [shout]
"#;

const WORKER_POD_CALLABLES: &str = r#"
def produce(n, ti=None):
    return {"doubled": n * 2, "try": ti.try_number}


def consume(ti=None):
    return {"shout": ti.xcom_pull(task_ids="shout"), "py": ti.xcom_pull(task_ids="py")}
"#;

/// A DAGs folder under `root` with [`WORKER_POD_DAG`] and its callables beside it.
fn worker_pod_dags(root: &Path) -> PathBuf {
    let dags = root.join("dags");
    std::fs::create_dir_all(&dags).expect("mkdir");
    let callables = dags.join("pod_callables.py");
    std::fs::write(&callables, WORKER_POD_CALLABLES).expect("write");
    let dag = WORKER_POD_DAG.replace("CALLABLES", &callables.display().to_string());
    std::fs::write(dags.join("py_pod.yaml"), dag).expect("write");
    dags
}

#[test]
fn a_python_task_runs_as_a_worker_pod_on_the_local_pod_runtime_passing_xcoms() {
    let Some(python) = airflow_python() else {
        return;
    };
    let home = tempfile::tempdir().expect("tempdir");
    let dags = worker_pod_dags(home.path());
    // The local pod runtime runs the image's `python` from this host's PATH: the venv's.
    let venv_bin = python.parent().expect("the venv's bin");
    let path = format!(
        "{}:{}",
        venv_bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let stdout = succeeded(
        gust(home.path())
            .env("GUST__PYTHON__INTERPRETER", &python)
            .env("GUST__KUBERNETES__RUNTIME", "local")
            .env("GUST__KUBERNETES__WORKER_IMAGE", "apache/airflow:3.3.2")
            .env("PATH", path)
            .args(["dags", "test", "py_pod", "--dags-folder"])
            .arg(&dags),
    );
    assert_succeeded(&stdout, &["py", "shout", "consume"]);
    let logs = home.path().join("logs");
    let log = |task: &str| {
        let path = find_log(&logs, &format!("task_id={task}/")).expect("a log");
        std::fs::read_to_string(path).expect("log")
    };
    let py = log("py");
    assert!(py.contains("local pod runtime: running pod"), "{py}");
    assert!(
        py.contains("Done. Returned value was: {'doubled': 42, 'try': 1}"),
        "{py}"
    );
    assert!(!py.contains("\"event\""), "structured lines are read: {py}");
    assert!(log("shout").contains("pulled-42"));
    let consume = log("consume");
    assert!(
        consume.contains(
            "Returned value was: {'shout': 'pulled-42', 'py': {'doubled': 42, 'try': 1}}"
        ),
        "XComs both ways: {consume}"
    );
    // The token (a JWT: base64 of `{"`, "eyJ") is in no log.
    for task in ["py", "shout", "consume"] {
        assert!(!log(task).contains("eyJ"), "{task}'s log shows the token");
    }
}

#[test]
fn dry_run_prints_the_worker_pod_of_a_python_task_without_its_token() {
    let home = tempfile::tempdir().expect("tempdir");
    let dags = worker_pod_dags(home.path());
    let output = gust(home.path())
        .env("GUST__PYTHON__INTERPRETER", "python3")
        .env("GUST__KUBERNETES__WORKER_IMAGE", "apache/airflow:3.3.2")
        .env(
            "GUST__KUBERNETES__EXECUTION_API_URL",
            "http://gust-scheduler.gust.svc:8794/execution/",
        )
        .args(["tasks", "dry-run", "py_pod", "py", "--dags-folder"])
        .arg(&dags)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let text = String::from_utf8(output).expect("utf-8");
    assert!(text.contains("# Secret gust-worker-"), "{text}");
    assert!(
        text.contains("pod_callables.py"),
        "the bundle's files: {text}"
    );
    let pod: k8s_openapi::api::core::v1::Pod =
        serde_yaml_ng::from_str(&text).expect("the output is a Kubernetes Pod");
    let spec = pod.spec.expect("a spec");
    assert_eq!(spec.containers.len(), 1, "no XCom sidecar: {text}");
    let base = &spec.containers[0];
    assert_eq!(base.image.as_deref(), Some("apache/airflow:3.3.2"));
    assert_eq!(
        base.command.clone().unwrap_or_default(),
        [
            "python",
            "-m",
            "airflow.sdk.execution_time.execute_workload"
        ]
    );
    // The workload (and its token) is read from the Secret, never given in the spec.
    assert_eq!(
        base.args.clone().unwrap_or_default(),
        ["--json-path", "/opt/gust/bundle/workload.json"]
    );
    assert!(text.contains("http://gust-scheduler.gust.svc:8794/execution/"));
}

#[test]
fn dry_run_prints_the_worker_pod_laid_over_the_template_and_the_override_secrets_masked() {
    let home = tempfile::tempdir().expect("tempdir");
    let dags = worker_pod_dags(home.path());
    let dag = std::fs::read_to_string(dags.join("py_pod.yaml")).expect("read");
    let dag = dag.replacen(
        "      op_kwargs: {n: 21}\n",
        "      op_kwargs: {n: 21}\n      executor_config:\n        pod_override:\n          spec:\n            nodeSelector: {pool: highmem}\n            containers:\n              - name: base\n                resources: {limits: {memory: 8Gi}}\n                env: [{name: EXTRA, value: \"1\"}]\n",
        1,
    );
    std::fs::write(dags.join("py_pod.yaml"), dag).expect("write");
    let template = home.path().join("worker-pod.yaml");
    std::fs::write(
        &template,
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: placeholder\nspec:\n  serviceAccountName: airflow-worker\n  containers:\n    - name: base\n      env:\n        - {name: DB_PASSWORD, value: hunter2}\n      resources:\n        requests: {cpu: 500m}\n",
    )
    .expect("a template");
    let dry_run = |template: &Path| {
        gust(home.path())
            .env("GUST__PYTHON__INTERPRETER", "python3")
            .env("GUST__KUBERNETES__WORKER_IMAGE", "apache/airflow:3.3.2")
            .env("GUST__KUBERNETES__WORKER_POD_TEMPLATE_FILE", template)
            .env(
                "GUST__KUBERNETES__EXECUTION_API_URL",
                "http://gust-scheduler.gust.svc:8794/execution/",
            )
            .args(["tasks", "dry-run", "py_pod", "py", "--dags-folder"])
            .arg(&dags)
            .output()
            .expect("gust ran")
    };
    let output = dry_run(&template);
    let text = String::from_utf8(output.stdout).expect("utf-8");
    assert!(
        output.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!text.contains("hunter2"), "a secret shows: {text}");
    let pod: k8s_openapi::api::core::v1::Pod =
        serde_yaml_ng::from_str(&text).expect("the output is a Kubernetes Pod");
    let spec = pod.spec.expect("a spec");
    assert_eq!(spec.service_account_name.as_deref(), Some("airflow-worker"));
    assert_eq!(
        spec.node_selector
            .unwrap_or_default()
            .get("pool")
            .map(String::as_str),
        Some("highmem")
    );
    let base = &spec.containers[0];
    let resources = base.resources.clone().expect("resources");
    assert_eq!(
        resources.limits.unwrap_or_default()["memory"].0,
        "8Gi",
        "the override's resources replace the template's: {text}"
    );
    let env: Vec<String> = base.env.iter().flatten().map(|v| v.name.clone()).collect();
    assert!(
        env.contains(&"DB_PASSWORD".to_owned()) && env.contains(&"EXTRA".to_owned()),
        "{env:?}"
    );
    assert_eq!(
        base.args.clone().unwrap_or_default(),
        ["--json-path", "/opt/gust/bundle/workload.json"]
    );
    assert!(!text.contains("eyJ"), "no token: {text}");

    // A template that is not a pod: one line naming the file and the field.
    std::fs::write(
        &template,
        "spec:\n  containers:\n    - name: base\n      resourcez: {limits: {cpu: 1}}\n",
    )
    .expect("write");
    let output = dry_run(&template);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("[kubernetes] worker_pod_template_file")
            && stderr.contains("worker-pod.yaml")
            && stderr.contains("spec.containers[0].resourcez"),
        "{stderr}"
    );
}

#[test]
fn a_worker_pod_on_a_cluster_without_the_execution_api_url_fails_naming_it() {
    let home = tempfile::tempdir().expect("tempdir");
    let dags = worker_pod_dags(home.path());
    gust(home.path())
        .env("GUST__PYTHON__INTERPRETER", "python3")
        .env("GUST__KUBERNETES__WORKER_IMAGE", "apache/airflow:3.3.2")
        .args(["dags", "test", "py_pod", "--dags-folder"])
        .arg(&dags)
        .assert()
        .code(1)
        .stdout(predicate::str::contains(
            "py: failed (try 1): Python tasks run as pods ([kubernetes] worker_image) on a \
             cluster need [kubernetes] execution_api_url",
        ));
}

#[test]
fn rbac_grants_the_worker_pods_secrets_only_when_python_tasks_run_as_pods() {
    let home = tempfile::tempdir().expect("tempdir");
    let dags = worker_pod_dags(home.path());
    let rbac = |worker_image: Option<&str>| {
        let mut command = gust(home.path());
        command.env("GUST__PYTHON__INTERPRETER", "python3");
        if let Some(image) = worker_image {
            command.env("GUST__KUBERNETES__WORKER_IMAGE", image);
        }
        let output = command
            .args(["kubernetes", "rbac", "--dags-folder"])
            .arg(&dags)
            .assert()
            .success()
            .get_output()
            .stdout
            .clone();
        String::from_utf8(output).expect("utf-8")
    };
    assert!(rbac(Some("apache/airflow:3.3.2")).contains("- secrets"));
    assert!(!rbac(None).contains("secrets"));
}

/// Deferrable tasks: Airflow's async sensors (their temporal triggers run in the scheduler) and
/// a custom operator whose trigger lives in a module beside the DAG file (run by the one Python
/// triggerer process), one whose trigger never fires before its `trigger_timeout`, and one
/// slow enough to outlive a killed scheduler.
const DEFERRED_DAGS: &str = r#"
py_deferred_sensors:
  schedule: null
  start_date: 2024-01-01
  catchup: false
  tasks:
    long_ago:
      operator: deferring.UntilAsync
      target_time: "2024-01-01T00:00:00+00:00"
    soon:
      operator: deferring.WaitAsync
      delta: {__type__: datetime.timedelta, seconds: 30}
    after:
      operator: airflow.providers.standard.operators.bash.BashOperator
      bash_command: echo waited
      dependencies: [long_ago, soon]
py_deferred_custom:
  schedule: null
  start_date: 2024-01-01
  catchup: false
  tasks:
    first:
      operator: deferring.DeferTo
      trigger_class: my_triggers.PidTrigger
      value: 1
    second:
      operator: deferring.DeferTo
      trigger_class: my_triggers.PidTrigger
      value: 2
py_deferred_timeout:
  schedule: null
  start_date: 2024-01-01
  catchup: false
  tasks:
    stuck:
      operator: deferring.DeferTo
      trigger_class: deferring.Forever
      value: 0
      trigger_timeout: 2
py_deferred_slowly:
  schedule: null
  start_date: 2024-01-01
  catchup: false
  tasks:
    slow:
      operator: deferring.DeferTo
      trigger_class: my_triggers.PidTrigger
      value: 7
      sleep: 12
"#;

/// The operator (on PYTHONPATH): it defers to the trigger class it is given by path, with its
/// value, and records the event it resumes with.
const DEFERRING: &str = r#"
import asyncio
import json
import os
from datetime import timedelta

from airflow.providers.standard.sensors.date_time import DateTimeSensorAsync
from airflow.providers.standard.sensors.time_delta import TimeDeltaSensorAsync
from airflow.sdk import BaseOperator
from airflow.triggers.base import BaseTrigger, TriggerEvent


# Airflow's async sensors under paths of their own: Gust runs the originals natively (they
# never defer there), these through the Task SDK, where they defer to Airflow's temporal
# triggers as in Airflow.
class UntilAsync(DateTimeSensorAsync):
    pass


class WaitAsync(TimeDeltaSensorAsync):
    pass


class ByPath(BaseTrigger):
    """Serializes as the class it names: only the triggerer imports that one."""

    def __init__(self, classpath, **kwargs):
        super().__init__()
        self.classpath, self.kwargs = classpath, kwargs

    def serialize(self):
        return self.classpath, self.kwargs

    async def run(self):
        raise NotImplementedError


class Forever(BaseTrigger):
    def __init__(self, value=0, sleep=0):
        super().__init__()

    def serialize(self):
        return "deferring.Forever", {}

    async def run(self):
        await asyncio.sleep(3600)
        yield TriggerEvent("never")


class DeferTo(BaseOperator):
    def __init__(self, trigger_class, value, sleep=1, trigger_timeout=None, **kwargs):
        super().__init__(**kwargs)
        self.trigger_class, self.value, self.sleep = trigger_class, value, sleep
        self.trigger_timeout = trigger_timeout

    def execute(self, context):
        with open(os.path.join(os.environ["OUT_DIR"], f"deferred_{self.task_id}.json"), "w") as f:
            json.dump({"pid": os.getpid(), "try": context["ti"].try_number}, f)
        timeout = timedelta(seconds=self.trigger_timeout) if self.trigger_timeout else None
        self.defer(
            trigger=ByPath(self.trigger_class, value=self.value, sleep=self.sleep),
            method_name="resumed",
            kwargs={"note": "kept"},
            timeout=timeout,
        )

    def resumed(self, context, event=None, note=None):
        with open(os.path.join(os.environ["OUT_DIR"], f"resumed_{self.task_id}.json"), "w") as f:
            json.dump({"event": event, "note": note, "try": context["ti"].try_number}, f)
        return event["value"]
"#;

/// The trigger beside the DAG file: it reports the process it ran in.
const MY_TRIGGERS: &str = r#"
import asyncio
import os

from airflow.triggers.base import BaseTrigger, TriggerEvent


class PidTrigger(BaseTrigger):
    def __init__(self, value, sleep=1):
        super().__init__()
        self.value, self.sleep = value, sleep

    def serialize(self):
        return "my_triggers.PidTrigger", {"value": self.value, "sleep": self.sleep}

    async def run(self):
        await asyncio.sleep(self.sleep)
        with open("/proc/self/cmdline", "rb") as f:
            cmdline = f.read().decode(errors="replace")
        yield TriggerEvent({
            "value": self.value,
            "pid": os.getpid(),
            "triggerer": "Gust's triggerer" in cmdline,
        })
"#;

/// [`dags_folder`] with the deferring DAGs, their operator on PYTHONPATH and their trigger
/// module beside the DAG file.
fn deferred_dags_folder(root: &Path) -> PathBuf {
    let dags = dags_folder(root);
    std::fs::write(root.join("deferring.py"), DEFERRING).expect("write");
    std::fs::write(dags.join("my_triggers.py"), MY_TRIGGERS).expect("write");
    std::fs::write(dags.join("py_deferred.yaml"), DEFERRED_DAGS).expect("write");
    dags
}

#[test]
fn async_sensors_defer_to_the_scheduler_and_succeed_as_in_airflow() {
    let Some(python) = airflow_python() else {
        return;
    };
    let home = tempfile::tempdir().expect("tempdir");
    let dags = deferred_dags_folder(home.path());
    let gust_out = home.path().join("out-gust");
    std::fs::create_dir_all(&gust_out).expect("mkdir");
    let started = std::time::Instant::now();
    let stdout = succeeded(&mut dags_test(
        home.path(),
        &python,
        &gust_out,
        &dags,
        "py_deferred_sensors",
    ));
    assert_succeeded(&stdout, &["long_ago", "soon", "after"]);
    // Each sensor deferred (its worker gone) and resumed as the same try.
    assert!(stdout.contains("long_ago: deferred (try 1)"), "{stdout}");
    assert!(stdout.contains("soon: deferred (try 1)"), "{stdout}");
    assert!(!stdout.contains("(try 2)"), "{stdout}");
    // `soon` waited for its run's data interval end plus 30 s.
    assert!(
        started.elapsed() >= std::time::Duration::from_secs(30),
        "{stdout}"
    );
    let states = final_states(&stdout);

    let airflow_out = home.path().join("out-airflow");
    let airflow_states = airflow_dags_test(
        &python,
        home.path(),
        &dags,
        "py_deferred_sensors",
        &airflow_out,
    );
    assert_eq!(states, airflow_states);
}

#[test]
fn a_custom_trigger_beside_the_dag_file_runs_in_one_triggerer_process() {
    let Some(python) = airflow_python() else {
        return;
    };
    let home = tempfile::tempdir().expect("tempdir");
    let dags = deferred_dags_folder(home.path());
    let out = home.path().join("out");
    std::fs::create_dir_all(&out).expect("mkdir");
    let stdout = succeeded(&mut dags_test(
        home.path(),
        &python,
        &out,
        &dags,
        "py_deferred_custom",
    ));
    assert_succeeded(&stdout, &["first", "second"]);
    let first = read_json(&out.join("resumed_first.json"));
    let second = read_json(&out.join("resumed_second.json"));
    // Resumed in `next_method` with its kwargs and the event, as the same try.
    assert_eq!(first["note"], "kept", "{first}");
    assert_eq!(first["try"], 1, "{first}");
    assert_eq!(first["event"]["value"], 1, "{first}");
    assert_eq!(second["event"]["value"], 2, "{second}");
    // Both triggers ran in the triggerer, one process, not in either worker.
    assert_eq!(first["event"]["triggerer"], true, "{first}");
    assert_eq!(first["event"]["pid"], second["event"]["pid"]);
    let worker = read_json(&out.join("deferred_first.json"));
    assert_ne!(worker["pid"], first["event"]["pid"]);
}

#[test]
fn a_trigger_that_outlasts_its_timeout_fails_the_task_as_airflow_does() {
    let Some(python) = airflow_python() else {
        return;
    };
    let home = tempfile::tempdir().expect("tempdir");
    let dags = deferred_dags_folder(home.path());
    let out = home.path().join("out");
    std::fs::create_dir_all(&out).expect("mkdir");
    let output = dags_test(home.path(), &python, &out, &dags, "py_deferred_timeout")
        .output()
        .expect("gust runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(!output.status.success(), "{stdout}");
    assert_eq!(final_states(&stdout)["stuck"], "failed", "{stdout}");
    assert!(stdout.contains("stuck: deferred (try 1)"), "{stdout}");
    // It resumed only to fail, as Airflow's `__fail__` has it: its own method never ran.
    assert!(!out.join("resumed_stuck.json").exists());
    let log = find_log(&home.path().join("logs"), "task_id=stuck").expect("a log");
    let text = std::fs::read_to_string(log).expect("log");
    assert!(text.contains("TaskDeferralTimeout"), "{text}");
}

#[test]
fn a_deferred_task_survives_a_killed_scheduler_and_resumes_its_try() {
    let Some(python) = airflow_python() else {
        return;
    };
    let home = tempfile::tempdir().expect("tempdir");
    deferred_dags_folder(home.path());
    let out = home.path().join("out");
    std::fs::create_dir_all(&out).expect("mkdir");
    // The task shows `deferred` while its trigger waits (12 s), holding no worker; the next
    // scheduler starts the trigger again from the store, and the try resumes.
    let (runs, states) = killed_while(home.path(), &python, &out, "py_deferred_slowly", "deferred");
    assert!(runs.contains("\"success\""), "{runs}\n{states}");
    let slow = serde_json::from_str::<serde_json::Value>(&states).expect("JSON")[0].clone();
    assert_eq!(slow["state"], "success", "{states}");
    assert_eq!(slow["try_number"], 1, "{states}");
    let resumed = read_json(&out.join("resumed_slow.json"));
    assert_eq!(resumed["event"]["value"], 7, "{resumed}");
    assert_eq!(resumed["try"], 1, "{resumed}");
}
