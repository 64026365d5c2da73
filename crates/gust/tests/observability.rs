//! `gust scheduler`'s health server and the API server's `/metrics`, run as a user runs them:
//! a DAG triggered from the CLI runs, and both processes' Prometheus endpoints report it.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::gust;

/// A server process, killed when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `gust ARGS` and reads its banner up to the line naming `http://127.0.0.1:PORT`.
fn start(home: &Path, args: &[&str], env: &[(&str, &str)]) -> (Server, u16) {
    #[allow(
        clippy::disallowed_methods,
        reason = "the test starts the binary as a user would"
    )]
    let mut command = std::process::Command::new(assert_cmd::cargo::cargo_bin("gust"));
    command
        .env("GUST_HOME", home)
        .env("GUST__CORE__DAGS_ARE_PAUSED_AT_CREATION", "false")
        .env("GUST__KUBERNETES__RUNTIME", "local")
        .envs(env.iter().copied())
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = command.spawn().expect("start gust");
    let stdout = child.stdout.take().expect("stdout");
    let server = Server(child);
    let mut lines = BufReader::new(stdout).lines();
    let port = loop {
        let line = lines
            .next()
            .expect("the banner names the address")
            .expect("stdout");
        if let Some(address) = line.split("http://127.0.0.1:").nth(1) {
            let digits: String = address.chars().take_while(char::is_ascii_digit).collect();
            break digits.parse::<u16>().expect("a port");
        }
    };
    // Keep reading the banner so the process never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (server, port)
}

/// `GET path`; answers the status and the body.
fn get(port: u16, path: &str) -> (u16, String) {
    common::http(port, "GET", path, &[], "")
}

/// The value of one series in a text exposition, if it is there.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.parse().ok())
}

#[allow(clippy::disallowed_methods, reason = "polls another process")]
fn pause() {
    std::thread::sleep(Duration::from_millis(100));
}

const DAG: &str = r"
probed:
  schedule: null
  tasks:
    one: {operator: BashOperator, bash_command: echo one}
    two: {operator: BashOperator, bash_command: echo two, dependencies: [one]}
";

#[test]
fn the_scheduler_and_the_api_server_serve_health_and_metrics() {
    let home = tempfile::tempdir().unwrap();
    let dags = home.path().join("dags");
    std::fs::create_dir_all(&dags).unwrap();
    std::fs::write(dags.join("probed.yaml"), DAG).unwrap();
    gust(home.path()).args(["db", "migrate"]).assert().success();
    let folder = dags.to_str().unwrap();
    let (_scheduler, health_port) = start(
        home.path(),
        &["scheduler", "--dags-folder", folder],
        &[
            (
                "GUST__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_HOST",
                "127.0.0.1",
            ),
            ("GUST__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT", "0"),
        ],
    );
    let (_api, api_port) = start(
        home.path(),
        &["api-server", "--host", "127.0.0.1", "--port", "0"],
        &[],
    );

    // Until the loop's first heartbeat (its first poll, well within a second) the answer is
    // 503 "has not beaten yet", as a probe sees it.
    let deadline = Instant::now() + Duration::from_secs(10);
    let (status, body) = loop {
        let (status, body) = get(health_port, "/health");
        if status == 200 || Instant::now() > deadline {
            break (status, body);
        }
        assert!(body.contains("has not beaten yet"), "{body}");
        pause();
    };
    assert_eq!(status, 200, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["status"], "healthy", "{body}");
    assert_eq!(json["metadatabase"], "healthy", "{body}");

    gust(home.path())
        .args(["dags", "trigger", "probed", "--dags-folder", folder])
        .assert()
        .success();
    let deadline = Instant::now() + Duration::from_secs(30);
    let api_metrics = loop {
        let (status, text) = get(api_port, "/metrics");
        assert_eq!(status, 200, "{text}");
        if value(&text, "gust_dag_runs{state=\"success\"}") == Some(1.0) {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "the run did not succeed:\n{text}"
        );
        pause();
    };
    assert_eq!(
        value(&api_metrics, "gust_task_instances{state=\"success\"}"),
        Some(2.0)
    );
    assert!(
        value(&api_metrics, "gust_schedulers_latest_heartbeat_age_seconds")
            .is_some_and(|age| (0.0..30.0).contains(&age)),
        "{api_metrics}"
    );

    let (status, text) = get(health_port, "/metrics");
    assert_eq!(status, 200, "{text}");
    assert_eq!(
        value(
            &text,
            "gust_scheduler_tries_finished_total{outcome=\"success\"}"
        ),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        value(&text, "gust_scheduler_scheduling_delay_seconds_count"),
        Some(2.0),
        "{text}"
    );
    assert!(
        value(
            &text,
            "gust_scheduler_db_call_duration_seconds_count{call=\"poll\"}"
        )
        .is_some_and(|n| n >= 1.0),
        "{text}"
    );
    assert!(
        value(&text, "gust_scheduler_heartbeat_age_seconds")
            .is_some_and(|age| (0.0..30.0).contains(&age)),
        "{text}"
    );
    // The health server's only other path is /metrics.
    assert_eq!(get(health_port, "/api/v2/dags").0, 404);
}
