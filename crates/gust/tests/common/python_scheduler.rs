//! `gust scheduler` running Python tasks, as the Python-task tests drive it.

use std::path::{Path, PathBuf};

use assert_cmd::Command;

use super::gust;

/// A JSON file a task wrote (failing the test, naming it, when it was not written).
pub fn read_json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|err| panic!("{} was not written: {err}", path.display()));
    serde_json::from_str(&text).expect("JSON")
}

/// The stdout of `command`, which must succeed.
pub fn succeeded(command: &mut Command) -> String {
    let output = command.assert().success().get_output().stdout.clone();
    String::from_utf8_lossy(&output).into_owned()
}

/// `gust scheduler` with Python tasks, on a SQLite database in `home`, its callables writing
/// under `out`; killed when dropped.
pub struct PythonScheduler {
    home: PathBuf,
    url: String,
    python: PathBuf,
    child: Option<std::process::Child>,
}

impl PythonScheduler {
    pub fn start(home: &Path, python: &Path, out: &Path) -> Self {
        let url = format!("sqlite://{}", home.join("gust.db").display());
        let mut scheduler = Self {
            home: home.to_owned(),
            url,
            python: python.to_owned(),
            child: None,
        };
        scheduler.gust().args(["db", "migrate"]).assert().success();
        let log = std::fs::File::create(home.join("scheduler.log")).expect("a log");
        let child = super::gust_process(home, &scheduler.url)
            .arg("scheduler")
            .env("GUST__PYTHON__INTERPRETER", python)
            .env("GUST__CORE__DAGS_ARE_PAUSED_AT_CREATION", "false")
            .env("AIRFLOW__DAG_FACTORY__ENABLE_TELEMETRY", "False")
            .env("OUT_DIR", out)
            // The file's other DAGs import a custom operator from there.
            .env("PYTHONPATH", home)
            .stdout(log.try_clone().expect("a log"))
            .stderr(log)
            .spawn()
            .expect("the scheduler starts");
        scheduler.child = Some(child);
        scheduler
    }

    /// A `gust` command on the scheduler's database and Python.
    pub fn gust(&self) -> Command {
        let mut command = gust(&self.home);
        command
            .env("GUST__DATABASE__URL", &self.url)
            .env("GUST__PYTHON__INTERPRETER", &self.python);
        command
    }

    /// Triggers run `run_id` of `dag_id`, trying again until the scheduler has read the DAGs
    /// folder (two minutes at most): a trigger before that is refused.
    #[allow(clippy::disallowed_methods, reason = "polls the scheduler it started")]
    pub fn trigger(&self, dag_id: &str, run_id: &str) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        while !self
            .gust()
            .args(["dags", "trigger", dag_id, "--run-id", run_id])
            .output()
            .expect("gust runs")
            .status
            .success()
        {
            assert!(
                std::time::Instant::now() < deadline,
                "{dag_id} was never triggered: {}",
                std::fs::read_to_string(self.home.join("scheduler.log")).unwrap_or_default()
            );
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
    }

    /// The id of `dag_id`'s first run.
    pub fn first_run_id(&self, dag_id: &str) -> String {
        let listed = self
            .gust()
            .args(["dags", "list-runs", dag_id, "-o", "json"])
            .output()
            .expect("gust runs");
        serde_json::from_slice::<serde_json::Value>(&listed.stdout).expect("JSON")[0]["run_id"]
            .as_str()
            .expect("a run id")
            .to_owned()
    }

    /// `gust tasks states-for-dag-run DAG RUN -o json`.
    pub fn states_of_run(&self, dag_id: &str, run_id: &str) -> String {
        let output = self
            .gust()
            .args(["tasks", "states-for-dag-run", dag_id, run_id, "-o", "json"])
            .output()
            .expect("gust runs");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Waits (two minutes at most) until a task of the run is in `state`.
    #[allow(clippy::disallowed_methods, reason = "polls the scheduler it started")]
    pub fn wait_for_state(&self, dag_id: &str, run_id: &str, state: &str) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        let quoted = format!("\"{state}\"");
        while !self.states_of_run(dag_id, run_id).contains(&quoted) {
            assert!(
                std::time::Instant::now() < deadline,
                "no task of {dag_id} went {state}: {}",
                std::fs::read_to_string(self.home.join("scheduler.log")).unwrap_or_default()
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    /// `gust dags list-runs DAG -o json` once a run of `dag_id` has ended.
    #[allow(clippy::disallowed_methods, reason = "polls the scheduler it started")]
    pub fn wait_for_a_run(&self, dag_id: &str) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(180);
        loop {
            let listed = self
                .gust()
                .args(["dags", "list-runs", dag_id, "-o", "json"])
                .output()
                .expect("gust runs");
            let text = String::from_utf8_lossy(&listed.stdout).into_owned();
            if text.contains("\"success\"") || text.contains("\"failed\"") {
                return text;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no run of {dag_id} ended in 180 s: {text}\n{}",
                std::fs::read_to_string(self.home.join("scheduler.log")).unwrap_or_default()
            );
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
    }
}

impl PythonScheduler {
    /// The state of run `run_id` of `dag_id` once it has ended.
    #[allow(clippy::disallowed_methods, reason = "polls the scheduler it started")]
    pub fn wait_for_run(&self, dag_id: &str, run_id: &str) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(180);
        loop {
            let listed = self
                .gust()
                .args(["dags", "list-runs", dag_id, "-o", "json"])
                .output()
                .expect("gust runs");
            let runs: serde_json::Value =
                serde_json::from_slice(&listed.stdout).unwrap_or_default();
            let state = runs
                .as_array()
                .and_then(|runs| runs.iter().find(|r| r["run_id"] == run_id))
                .and_then(|run| run["state"].as_str())
                .unwrap_or_default()
                .to_owned();
            if state == "success" || state == "failed" {
                return state;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "run {run_id} of {dag_id} did not end in 180 s: {runs}\n{}",
                std::fs::read_to_string(self.home.join("scheduler.log")).unwrap_or_default()
            );
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
    }

    /// `gust tasks states-for-dag-run DAG RUN -o json`.
    pub fn task_states(&self, dag_id: &str, run_id: &str) -> serde_json::Value {
        let listed = succeeded(self.gust().args([
            "tasks",
            "states-for-dag-run",
            dag_id,
            run_id,
            "-o",
            "json",
        ]));
        serde_json::from_str(&listed).expect("JSON")
    }
}

impl Drop for PythonScheduler {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            super::kill9(child);
        }
    }
}
