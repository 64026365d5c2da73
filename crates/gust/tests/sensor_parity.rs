//! Differential test of the native sensors: tests/airflow/sensors/sensor_parity.yaml run by
//! `airflow dags test` (Airflow 3.3.2, the file loaded by dag-factory 1.1.0) and by `gust dags
//! test`, against the same folder, SQLite database and local HTTP server. Every task of
//! `sensor_parity` (time, file, SQL and HTTP sensors) and of `sensor_downstream`
//! (ExternalTaskSensor over two runs of `sensor_upstream`) must end in the same state at the
//! same try, except the differences Gust makes on purpose, listed in [`INTENDED`] (and in
//! docs/dag-format.md). Skipped loudly without the Airflow venv (GUST_TEST_AIRFLOW_PYTHON)
//! unless GUST_REQUIRE_AIRFLOW=1.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{airflow_command, airflow_python, gust, gust_process, kill9};

/// A task's final state and the try it ended at (0: it never ran).
type Ended = (String, u32);

/// Each DAG's tasks, by task id.
type Runs = BTreeMap<String, BTreeMap<String, Ended>>;

/// The DAGs compared; `sensor_upstream` only feeds the ExternalTaskSensors.
const COMPARED: [&str; 2] = ["sensor_parity", "sensor_downstream"];

/// The logical date of `sensor_downstream`'s run and of one of `sensor_upstream`'s (the other is
/// an hour earlier, for `execution_delta`).
const LOGICAL_DATE: &str = "2024-01-01T00:00:00+00:00";
const AN_HOUR_EARLIER: &str = "2023-12-31T23:00:00+00:00";

/// Where Gust ends differently on purpose: (DAG, task, Airflow's end, Gust's end, why).
const INTENDED: [(&str, &str, &str, &str, &str); 2] = [
    (
        "sensor_parity",
        "file_default_conn",
        "failed",
        "success",
        "Airflow 3 creates no default connections, so fs_default does not exist there; Gust takes \
         the missing fs_default as the default Airflow 2 made ({\"path\": \"/\"})",
    ),
    (
        "sensor_parity",
        "sql_missing_db",
        "success",
        "failed",
        "Python's sqlite3 creates a database file that does not exist (an empty one, so `select 1` \
         passes); Gust's SqlSensor fails the poke rather than create files",
    ),
];

fn dag_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/airflow/sensors/sensor_parity.yaml")
}

/// The folder, database and server both runs read.
struct World {
    root: PathBuf,
    /// The local HTTP server's port.
    port: u16,
}

impl World {
    fn folder(&self) -> PathBuf {
        self.root.join("fs")
    }

    fn database(&self) -> PathBuf {
        self.root.join("loads.sqlite")
    }

    fn missing_database(&self) -> PathBuf {
        self.root.join("missing.sqlite")
    }

    /// The DAG file with its placeholders replaced, written into `dags`.
    fn write_dag_file(&self, dags: &Path) {
        let text = std::fs::read_to_string(dag_file()).expect("the DAG file");
        let text = text.replace("@TIMEZONE@", &noon_zone()).replace(
            "@ABSOLUTE_FILE@",
            &self.folder().join("in/a.csv").display().to_string(),
        );
        std::fs::create_dir_all(dags).expect("mkdir");
        std::fs::write(dags.join("sensor_parity.yaml"), text).expect("write");
    }
}

/// A fixed-offset zone where it is now between 06:00 and 18:00, so that the TimeSensors'
/// targets (00:00:01 and 23:59:59 there) are hours behind and ahead whenever the test runs.
fn noon_zone() -> String {
    let now = gust_core::clock::Clock::now(&gust_core::clock::SystemClock);
    let hour = i32::try_from(chrono::Timelike::hour(&now)).expect("an hour");
    // Etc/GMT-N is N hours ahead of UTC.
    let ahead = 12 - hour;
    match ahead.cmp(&0) {
        std::cmp::Ordering::Equal => "Etc/GMT".to_owned(),
        std::cmp::Ordering::Greater => format!("Etc/GMT-{ahead}"),
        std::cmp::Ordering::Less => format!("Etc/GMT+{}", -ahead),
    }
}

/// The files, the SQLite database (made by `python`'s sqlite3) and the HTTP server.
fn make_world(python: &Path, root: &Path, runtime: &tokio::runtime::Runtime) -> World {
    let folder = root.join("fs");
    for dir in ["in", "nested/deeper", "empty", "hidden", "deep/a/b"] {
        std::fs::create_dir_all(folder.join(dir)).expect("mkdir");
    }
    for file in [
        "in/a.csv",
        "nested/deeper/x",
        "hidden/.secret",
        "deep/a/b/c.csv",
    ] {
        std::fs::write(folder.join(file), "x").expect("write");
    }
    let database = root.join("loads.sqlite");
    #[allow(
        clippy::disallowed_methods,
        reason = "the test makes its database with Python"
    )]
    let made = std::process::Command::new(python)
        .arg("-c")
        .arg(
            "import sqlite3, sys\nc = sqlite3.connect(sys.argv[1])\n\
             c.execute('create table loads (name text, state text)')\n\
             c.executemany('insert into loads values (?, ?)', [('a', 'done'), ('b', 'running')])\n\
             c.commit()",
        )
        .arg(&database)
        .status()
        .expect("python runs");
    assert!(made.success(), "the database was not made");
    let port = runtime.block_on(serve());
    World {
        root: root.to_path_buf(),
        port,
    }
}

/// A local HTTP server: `/ok` answers 200, `/broken` 500, `/later/X` 404 the first time and
/// 200 after, anything else 404. Runs until the runtime stops.
async fn serve() -> u16 {
    use axum::http::{StatusCode, Uri};
    let seen: Arc<Mutex<HashSet<String>>> = Arc::default();
    let app = axum::Router::new().fallback(move |uri: Uri| {
        let seen = seen.clone();
        async move {
            let path = uri.path();
            let status = match path {
                "/ok" => StatusCode::OK,
                "/broken" => StatusCode::INTERNAL_SERVER_ERROR,
                later if later.starts_with("/later/") => {
                    if seen.lock().expect("a lock").insert(later.to_owned()) {
                        StatusCode::NOT_FOUND
                    } else {
                        StatusCode::OK
                    }
                }
                _ => StatusCode::NOT_FOUND,
            };
            (status, "ok")
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let port = listener.local_addr().expect("an address").port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    port
}

/// Prints `ENDED {dag: {task: [state, try]}}` for the compared DAGs, and `UPSTREAM [...]` with
/// the states of `sensor_upstream`'s runs, from Airflow's database.
const ENDED: &str = r#"
import json
from airflow.models.dagrun import DagRun
from airflow.models.taskinstance import TaskInstance
from airflow.utils.session import create_session
ended = {}
with create_session() as session:
    for dag, task, state, tries in session.query(
        TaskInstance.dag_id, TaskInstance.task_id, TaskInstance.state, TaskInstance.try_number
    ).filter(TaskInstance.dag_id.in_(["sensor_parity", "sensor_downstream"])):
        ended.setdefault(dag, {})[task] = [getattr(state, "value", state), tries]
    upstream = sorted(
        getattr(r.state, "value", r.state)
        for r in session.query(DagRun).filter(DagRun.dag_id == "sensor_upstream")
    )
print("ENDED " + json.dumps(ended))
print("UPSTREAM " + json.dumps(upstream))
"#;

/// `airflow dags test` of the DAGs, in a fresh AIRFLOW_HOME under `world.root`.
fn airflow_runs(python: &Path, world: &World) -> Runs {
    let home = world.root.join("airflow-home");
    let dags = world.root.join("airflow-dags");
    world.write_dag_file(&dags);
    std::fs::write(
        dags.join("load.py"),
        format!(
            "# An Airflow DAG file: dag-factory builds the YAML file's DAGs.\nfrom dagfactory import load_yaml_dags\nload_yaml_dags(globals_dict=globals(), config_filepath={:?})\n",
            dags.join("sensor_parity.yaml").display().to_string()
        ),
    )
    .expect("write");
    let connections = [
        (
            "AIRFLOW_CONN_FS_PARITY",
            serde_json::json!({"conn_type": "fs", "extra": {"path": world.folder()}}),
        ),
        (
            "AIRFLOW_CONN_SQLITE_PARITY",
            serde_json::json!({"conn_type": "sqlite", "host": world.database()}),
        ),
        (
            "AIRFLOW_CONN_SQLITE_MISSING",
            serde_json::json!({"conn_type": "sqlite", "host": world.root.join("airflow-missing.sqlite")}),
        ),
        (
            "AIRFLOW_CONN_HTTP_PARITY",
            serde_json::json!({"conn_type": "http", "host": "127.0.0.1", "port": world.port}),
        ),
    ];
    let airflow = |args: &[&str]| {
        let output = airflow_command(python, &home, &dags)
            .args(args)
            .envs(connections.iter().map(|(k, v)| (k, v.to_string())))
            .output()
            .expect("airflow runs");
        String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr)
    };
    airflow(&["-m", "airflow", "db", "migrate"]);
    // Runs with failed tasks exit 1 on purpose: the task instances are what is compared.
    for date in [AN_HOUR_EARLIER, LOGICAL_DATE] {
        airflow(&["-m", "airflow", "dags", "test", "sensor_upstream", date]);
    }
    let parity = airflow(&["-m", "airflow", "dags", "test", "sensor_parity"]);
    let downstream = airflow(&[
        "-m",
        "airflow",
        "dags",
        "test",
        "sensor_downstream",
        LOGICAL_DATE,
    ]);
    let printed = airflow(&["-c", ENDED]);
    let line = |prefix: &str| {
        printed
            .lines()
            .find_map(|line| line.strip_prefix(prefix))
            .map(str::to_owned)
            .unwrap_or_else(|| panic!("no {prefix}in: {printed}\n{parity}\n{downstream}"))
    };
    let upstream: Vec<String> = serde_json::from_str(&line("UPSTREAM ")).expect("JSON");
    assert_eq!(
        upstream,
        ["failed", "failed"],
        "Airflow's upstream runs: {printed}"
    );
    serde_json::from_str(&line("ENDED ")).expect("JSON states")
}

/// Each task's last state and try in `gust dags test`'s progress lines
/// (`<time> <task>: <state> (try N)...`).
fn gust_ended(stdout: &str) -> BTreeMap<String, Ended> {
    let mut ended = BTreeMap::new();
    for line in stdout.lines().filter(|l| l.starts_with("20")) {
        let Some((task, rest)) = line
            .split_once(' ')
            .and_then(|(_, moved)| moved.split_once(": "))
        else {
            continue;
        };
        let state = rest.split_whitespace().next().unwrap_or_default();
        let tries = rest
            .split_once("(try ")
            .and_then(|(_, n)| n.split_once(')'))
            .and_then(|(n, _)| n.parse().ok())
            .unwrap_or(0);
        ended.insert(task.to_owned(), (state.to_owned(), tries));
    }
    ended
}

/// `gust dags test` of the DAGs, in a fresh GUST_HOME under `world.root`; `sensor_upstream`'s
/// runs are made by a `gust scheduler` first, for the ExternalTaskSensors to read.
fn gust_runs(world: &World, runtime: &tokio::runtime::Runtime) -> Runs {
    let home = world.root.join("gust-home");
    let dags = home.join("dags");
    world.write_dag_file(&dags);
    gust(&home).args(["db", "migrate"]).assert().success();
    let add = |conn_id: &str, args: &[&str]| {
        gust(&home)
            .args(["connections", "add", conn_id])
            .args(args)
            .assert()
            .success();
    };
    let extra = serde_json::json!({"path": world.folder()}).to_string();
    add("fs_parity", &["--conn-type", "fs", "--conn-extra", &extra]);
    let database = world.database().display().to_string();
    add(
        "sqlite_parity",
        &["--conn-type", "sqlite", "--conn-host", &database],
    );
    let missing = world.missing_database().display().to_string();
    add(
        "sqlite_missing",
        &["--conn-type", "sqlite", "--conn-host", &missing],
    );
    let port = world.port.to_string();
    add(
        "http_parity",
        &[
            "--conn-type",
            "http",
            "--conn-host",
            "127.0.0.1",
            "--conn-port",
            &port,
        ],
    );
    for (run, date) in [("earlier", AN_HOUR_EARLIER), ("same", LOGICAL_DATE)] {
        gust(&home)
            .args(["dags", "trigger", "sensor_upstream", "--run-id", run])
            .args(["--logical-date", date, "--dags-folder"])
            .arg(&dags)
            .assert()
            .success();
    }
    let url = format!("sqlite://{}", home.join("gust.db").display());
    let scheduler = gust_process(&home, &url)
        .arg("scheduler")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("a scheduler starts");
    let finished = upstream_finished(&home, runtime, Instant::now() + Duration::from_secs(60));
    kill9(scheduler);
    assert!(finished, "gust's sensor_upstream runs did not finish");

    let mut runs = Runs::new();
    for (dag, date) in [
        ("sensor_parity", None),
        ("sensor_downstream", Some(LOGICAL_DATE)),
    ] {
        let mut test = gust(&home);
        test.args(["dags", "test", dag, "--dags-folder"]).arg(&dags);
        if let Some(date) = date {
            test.args(["--logical-date", date]);
        }
        let output = test.output().expect("gust runs");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            stdout.contains(&format!(" of {dag}: ")),
            "gust dags test {dag} did not finish: {stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        runs.insert(dag.to_owned(), gust_ended(&stdout));
    }
    runs
}

/// Whether both of `sensor_upstream`'s runs ended (failed: a task fails on purpose) before
/// `deadline`.
fn upstream_finished(home: &Path, runtime: &tokio::runtime::Runtime, deadline: Instant) -> bool {
    loop {
        let output = gust(home)
            .args(["dags", "list-runs", "sensor_upstream", "--output", "json"])
            .output()
            .expect("list-runs");
        let runs: serde_json::Value =
            serde_json::from_slice(&output.stdout).unwrap_or(serde_json::Value::Null);
        let ended = runs.as_array().is_some_and(|runs| {
            runs.len() == 2
                && runs
                    .iter()
                    .all(|r| matches!(r["state"].as_str(), Some("failed" | "success")))
        });
        if ended {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        runtime.block_on(async { tokio::time::sleep(Duration::from_millis(200)).await });
    }
}

#[test]
fn sensors_end_as_in_airflow_except_where_gust_differs_on_purpose() {
    let Some(python) = airflow_python() else {
        return;
    };
    let root = tempfile::tempdir().expect("tempdir");
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let world = make_world(&python, root.path(), &runtime);
    // The two sides share only the folder, the database (read only) and the server.
    let (airflow, gust) = std::thread::scope(|scope| {
        let airflow = scope.spawn(|| airflow_runs(&python, &world));
        let gust = gust_runs(&world, &runtime);
        (airflow.join().expect("the Airflow side"), gust)
    });

    let (mut airflow, mut gust) = (airflow, gust);
    for dag in COMPARED {
        assert!(
            gust.contains_key(dag) && airflow.contains_key(dag),
            "{dag} did not run"
        );
    }
    for (dag, task, in_airflow, in_gust, why) in INTENDED {
        let take = |runs: &mut Runs| {
            runs.get_mut(dag)
                .and_then(|tasks| tasks.remove(task))
                .unwrap_or_default()
                .0
        };
        assert_eq!(
            (take(&mut airflow).as_str(), take(&mut gust).as_str()),
            (in_airflow, in_gust),
            "{dag}.{task} no longer differs as intended ({why})"
        );
    }
    let mut unlike = Vec::new();
    for dag in COMPARED {
        let (ours, theirs) = (&gust[dag], &airflow[dag]);
        for task in ours
            .keys()
            .chain(theirs.keys())
            .collect::<std::collections::BTreeSet<_>>()
        {
            if ours.get(task) != theirs.get(task) {
                unlike.push(format!(
                    "{dag}.{task}: Gust {:?}, Airflow {:?}",
                    ours.get(task),
                    theirs.get(task)
                ));
            }
        }
    }
    assert!(
        unlike.is_empty(),
        "tasks ended unlike Airflow's, as (state, try):\n{}",
        unlike.join("\n")
    );
}
