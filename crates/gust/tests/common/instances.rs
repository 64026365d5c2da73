//! Runs compared instance by instance with Airflow's: each task instance's final state and the
//! value it returned, keyed `task` (a task that is not mapped) or `task[map_index]`, read from
//! Airflow's database after `airflow dags test` and from `gust dags test`'s progress lines and
//! tries' logs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What one run's task instances ended as in Airflow.
#[derive(Debug, Default, serde::Deserialize)]
pub struct AirflowRun {
    /// Each instance's final state.
    pub states: BTreeMap<String, String>,
    /// Each instance's return value (its `return_value` XCom), as Python's `str` prints it.
    pub returned: BTreeMap<String, String>,
}

/// Prints `INSTANCES {dag_id: {"states": {...}, "returned": {...}}}` from Airflow's database.
const INSTANCES_OF_THE_RUNS: &str = r#"
import json
from airflow.models.taskinstance import TaskInstance
from airflow.models.xcom import XComModel
from airflow.utils.session import create_session

def name(task_id, map_index):
    return task_id if map_index < 0 else "%s[%d]" % (task_id, map_index)

runs = {}
with create_session() as session:
    for dag, task, index, state in session.query(
        TaskInstance.dag_id, TaskInstance.task_id, TaskInstance.map_index, TaskInstance.state
    ):
        run = runs.setdefault(dag, {"states": {}, "returned": {}})
        run["states"][name(task, index)] = getattr(state, "value", state)
    for row in session.query(XComModel).filter(XComModel.key == "return_value"):
        run = runs.setdefault(row.dag_id, {"states": {}, "returned": {}})
        run["returned"][name(row.task_id, row.map_index)] = str(XComModel.deserialize_value(row))
print("INSTANCES " + json.dumps(runs))
"#;

/// `airflow dags test` of each of `dag_ids`, in one fresh AIRFLOW_HOME under `root` with `dags`
/// as its DAGs folder and `env` set: each DAG's run, as Airflow's database holds it.
pub fn airflow_runs(
    python: &Path,
    root: &Path,
    dags: &Path,
    dag_ids: &[&str],
    env: &[(&str, &Path)],
) -> BTreeMap<String, AirflowRun> {
    let home = root.join("airflow-home");
    let airflow = |args: &[&str]| {
        let output = super::airflow_command(python, &home, dags)
            .args(args)
            .envs(env.iter().copied())
            .output()
            .expect("airflow runs");
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    airflow(&["-m", "airflow", "db", "migrate"]);
    for dag_id in dag_ids {
        // A run whose tasks fail on purpose exits 1: the instances are what is compared.
        airflow(&["-m", "airflow", "dags", "test", dag_id]);
    }
    let printed = airflow(&["-c", INSTANCES_OF_THE_RUNS]);
    let json = printed
        .lines()
        .find_map(|line| line.strip_prefix("INSTANCES "))
        .unwrap_or_else(|| panic!("no instances in: {printed}"));
    serde_json::from_str(json).expect("JSON instances")
}

/// What one run's task instances ended as in `gust dags test`.
#[derive(Debug, Default)]
pub struct GustRun {
    /// Each instance's final state.
    pub states: BTreeMap<String, String>,
    /// Each instance's last try's log.
    pub logs: BTreeMap<String, String>,
}

/// The run `gust dags test DAG_ID` printed as `stdout`, its tries' logs under `logs` (the base
/// log folder). A mapped task's line before it was expanded names no instance, as Airflow's
/// instance -1 becomes instance 0: it is left out when the task has instances.
pub fn gust_run(stdout: &str, logs: &Path, dag_id: &str) -> GustRun {
    let mut states = super::final_states(stdout);
    let expanded: Vec<String> = states
        .keys()
        .filter_map(|k| k.strip_suffix("[0]").map(str::to_owned))
        .collect();
    for task in expanded {
        states.remove(&task);
    }
    let mut tries: BTreeMap<String, (u32, PathBuf)> = BTreeMap::new();
    let mut pending = vec![logs.join(format!("dag_id={dag_id}"))];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
                continue;
            }
            let text = path.display().to_string();
            let part = |name: &str| {
                text.split('/')
                    .find_map(|p| p.strip_prefix(name))
                    .map(str::to_owned)
            };
            let (Some(task), Some(attempt)) = (part("task_id="), part("attempt=")) else {
                continue;
            };
            let attempt: u32 = attempt.trim_end_matches(".log").parse().unwrap_or(0);
            let key = match part("map_index=") {
                Some(index) => format!("{task}[{index}]"),
                None => task,
            };
            if tries.get(&key).is_none_or(|(seen, _)| *seen < attempt) {
                tries.insert(key, (attempt, path));
            }
        }
    }
    let logs = tries
        .into_iter()
        .map(|(key, (_, path))| (key, std::fs::read_to_string(path).unwrap_or_default()))
        .collect();
    GustRun { states, logs }
}

/// What a try's log says it returned (`Done. Returned value was: V`, then the line's fields).
fn returned_in(log: &str) -> Vec<&str> {
    log.lines()
        .filter_map(|line| line.split_once("Returned value was: ").map(|(_, v)| v))
        .collect()
}

/// Asserts that Gust's run of `dag_id` ended each instance as Airflow's did, and that each
/// instance returned what it returned in Airflow.
pub fn assert_alike(dag_id: &str, gust: &GustRun, airflow: &AirflowRun) {
    assert_eq!(
        gust.states, airflow.states,
        "{dag_id}: Gust's instances (left) ended unlike Airflow's (right)"
    );
    for (key, value) in &airflow.returned {
        let log = gust
            .logs
            .get(key)
            .unwrap_or_else(|| panic!("{dag_id}: no log of {key} in Gust"));
        let said = returned_in(log);
        assert!(
            said.iter()
                .any(|s| *s == value || s.starts_with(&format!("{value} "))),
            "{dag_id}: {key} returned {value} in Airflow, {said:?} in Gust"
        );
    }
    for (key, log) in &gust.logs {
        // A task that returns None says so, and pushes nothing.
        let none = |s: &&str| *s == "None" || s.starts_with("None ");
        if returned_in(log).iter().any(|s| !none(s)) {
            assert!(
                airflow.returned.contains_key(key),
                "{dag_id}: {key} returned a value in Gust and none in Airflow"
            );
        }
    }
}
