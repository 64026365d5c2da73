//! What the command-line tests share: the examples folder and `gust` run as a user runs it.
#![allow(dead_code, reason = "each test file uses some of the helpers")]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub mod instances;
pub mod python_scheduler;
pub mod xcoms;

use assert_cmd::Command;

/// The repository's example DAGs.
pub fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/dags")
}

/// `gust` with `home` as GUST_HOME, so the user's own configuration never leaks in.
pub fn gust(home: &Path) -> Command {
    let mut cmd = Command::cargo_bin("gust").expect("the gust binary");
    cmd.env("GUST_HOME", home)
        .env_remove("GUST__CORE__DAGS_FOLDER")
        .env_remove("GUST__KUBERNETES__RUNTIME");
    cmd
}

/// The `gust` binary as a process of its own (to run beside the test, or to be killed) on the
/// database at `url`, with `home` as GUST_HOME and `home/dags` as its DAGs folder. Its health
/// server takes a port of its own (tests run side by side) and it logs warnings and errors.
pub fn gust_process(home: &Path, url: &str) -> std::process::Command {
    #[allow(clippy::disallowed_methods, reason = "the test starts gust processes")]
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_gust"));
    command
        .env("GUST_HOME", home)
        .env("GUST__DATABASE__URL", url)
        .env("GUST__CORE__DAGS_FOLDER", home.join("dags"))
        .env("GUST__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT", "0")
        .env("RUST_LOG", "warn");
    command
}

/// Kills `child` with SIGKILL, as a crash would, and reaps it.
pub fn kill9(mut child: std::process::Child) {
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid"));
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
    let _ = child.wait();
}

/// Migrates `home`'s database and adds the `artifacts_default` connection: an S3 server at
/// `endpoint` with `login` and `secret` as its access key pair.
pub fn add_artifacts_connection(home: &Path, endpoint: &str, login: &str, secret: &str) {
    gust(home).args(["db", "migrate"]).assert().success();
    let extra = serde_json::json!({"endpoint_url": endpoint, "region_name": "us-east-1"});
    gust(home)
        .args([
            "connections",
            "add",
            "artifacts_default",
            "--conn-type",
            "aws",
        ])
        .args([
            "--conn-login",
            login,
            "--conn-password",
            secret,
            "--conn-extra",
        ])
        .arg(extra.to_string())
        .assert()
        .success();
}

/// The run id `gust dags test` (or `tasks test`) names on its last line, `run ID of DAG: STATE`:
/// it is the time the run was triggered (`manual__…`), so tests read it rather than guess it.
pub fn test_run_id(stdout: &str) -> String {
    stdout
        .lines()
        .rev()
        .find_map(|line| Some(line.strip_prefix("run ")?.split_once(" of ")?.0.to_owned()))
        .unwrap_or_else(|| panic!("no `run ID of DAG` line in: {stdout}"))
}

/// The Airflow venv's Python: `GUST_TEST_AIRFLOW_PYTHON`, else `target/airflow-venv/bin/python`;
/// when neither exists the test says so and is skipped (and fails with GUST_REQUIRE_AIRFLOW=1,
/// as in CI).
pub fn airflow_python() -> Option<PathBuf> {
    let path = std::env::var_os("GUST_TEST_AIRFLOW_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/airflow-venv/bin/python")
        });
    if path.exists() {
        Some(path)
    } else {
        assert!(
            std::env::var("GUST_REQUIRE_AIRFLOW").as_deref() != Ok("1"),
            "GUST_REQUIRE_AIRFLOW=1 but there is no Airflow venv at {}",
            path.display()
        );
        eprintln!(
            "SKIPPED: no Airflow venv at {} (set GUST_TEST_AIRFLOW_PYTHON, or run .ci/run, which \
             makes target/airflow-venv)",
            path.display()
        );
        None
    }
}

/// Airflow (`python`, the Airflow venv's) with `home` as AIRFLOW_HOME and `dags` as its DAGs
/// folder, without Airflow's example DAGs or dag-factory's telemetry: add the arguments.
pub fn airflow_command(python: &Path, home: &Path, dags: &Path) -> std::process::Command {
    #[allow(clippy::disallowed_methods, reason = "the test runs Airflow")]
    let mut command = std::process::Command::new(python);
    command
        .env("AIRFLOW_HOME", home)
        .env("AIRFLOW__CORE__DAGS_FOLDER", dags)
        .env("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
        .env("AIRFLOW__DAG_FACTORY__ENABLE_TELEMETRY", "False");
    command
}

/// Each task's last state in `gust dags test`'s progress lines (`<time> <task>: <state>...`).
pub fn final_states(stdout: &str) -> std::collections::BTreeMap<String, String> {
    let mut states = std::collections::BTreeMap::new();
    for line in stdout.lines().filter(|l| l.starts_with("20")) {
        if let Some((task, rest)) = line
            .split_once(' ')
            .and_then(|(_, moved)| moved.split_once(": "))
        {
            let state = rest.split_whitespace().next().unwrap_or_default();
            states.insert(task.to_owned(), state.to_owned());
        }
    }
    states
}

/// One HTTP/1.1 request to 127.0.0.1:`port` (retrying the connection for up to 10 s while the
/// server starts); answers the status and the body.
pub fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut stream = loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(stream) => break stream,
            Err(err) if Instant::now() < deadline => {
                let _ = err;
                std::thread::yield_now();
            }
            Err(err) => panic!("cannot connect: {err}"),
        }
    };
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).expect("send");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("receive");
    let status = answer[9..12].parse().expect("a status code");
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}
