//! Runs compared by their XComs, every key: each run's XComs as `task.key` (`task[i].key` for
//! a mapped instance) to value, read from Airflow's database after `airflow dags test` and from
//! Gust's store after a scheduled run.

use std::collections::BTreeMap;
use std::path::Path;

/// A run's XComs: `task.key` to value.
pub type XComs = BTreeMap<String, serde_json::Value>;

/// Prints `XCOMS {dag_id: {"task.key": value}}` from Airflow's database: each value as stored
/// (`deserialize_value` would parse a string that holds JSON once more).
const AIRFLOW_XCOMS: &str = r#"
import json
from airflow.models.xcom import XComModel
from airflow.utils.session import create_session

runs = {}
with create_session() as session:
    for row in session.query(XComModel):
        task = row.task_id if row.map_index < 0 else "%s[%d]" % (row.task_id, row.map_index)
        runs.setdefault(row.dag_id, {})["%s.%s" % (task, row.key)] = row.value
print("XCOMS " + json.dumps(runs))
"#;

/// Prints `XCOMS {"task.key": value}` of one run from Gust's SQLite store (`sys.argv`: the
/// database, the DAG, the run).
const GUST_XCOMS: &str = r#"
import json, sqlite3, sys
db = sqlite3.connect(sys.argv[1])
xcoms = {}
for task, index, key, value in db.execute(
    "SELECT task_id, map_index, key, value FROM xcoms WHERE dag_id = ? AND run_id = ?",
    (sys.argv[2], sys.argv[3]),
):
    task = task if index < 0 else "%s[%d]" % (task, index)
    xcoms["%s.%s" % (task, key)] = json.loads(value)
print("XCOMS " + json.dumps(xcoms))
"#;

/// The JSON after `XCOMS ` in what a script printed.
fn printed_xcoms<T: serde::de::DeserializeOwned>(output: &std::process::Output) -> T {
    let printed = String::from_utf8_lossy(&output.stdout);
    let json = printed
        .lines()
        .find_map(|line| line.strip_prefix("XCOMS "))
        .unwrap_or_else(|| {
            panic!(
                "no XComs in: {printed}{}",
                String::from_utf8_lossy(&output.stderr)
            )
        });
    serde_json::from_str(json).expect("JSON XComs")
}

/// Every DAG's XComs in the Airflow home under `root` (after [`super::instances::airflow_runs`]
/// or any `airflow dags test` there).
pub fn airflow_xcoms(python: &Path, root: &Path, dags: &Path) -> BTreeMap<String, XComs> {
    let output = super::airflow_command(python, &root.join("airflow-home"), dags)
        .args(["-c", AIRFLOW_XCOMS])
        .output()
        .expect("airflow runs");
    printed_xcoms(&output)
}

/// The XComs of run `run_id` of `dag_id` in Gust's SQLite store `db`.
pub fn gust_xcoms(python: &Path, db: &Path, dag_id: &str, run_id: &str) -> XComs {
    #[allow(
        clippy::disallowed_methods,
        reason = "the test reads the store with Python"
    )]
    let output = std::process::Command::new(python)
        .args(["-c", GUST_XCOMS])
        .arg(db)
        .args([dag_id, run_id])
        .output()
        .expect("python runs");
    printed_xcoms(&output)
}
