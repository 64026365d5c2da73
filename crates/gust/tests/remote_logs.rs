//! Remote task logs against a real S3 server (moto, tests/s3/start-moto.sh): a real scheduler
//! uploads each try's log to the bucket before recording its end; with the local log folder
//! gone (an API server on another machine), `gust api-server` still serves the whole log, page
//! by page, through the REST API and the UI; a store that refuses the upload fails no try and
//! says so in the log. No credential shows in any output, log or answer.

#![allow(
    clippy::unwrap_used,
    reason = "helpers of a test: a failure fails the test"
)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use gust_artifacts::testing::{
    LOGIN, SECRET, create_bucket, endpoint, endpoint_from, unique_bucket,
};

/// Lines the chatty task prints: about 3 MB of log with the time stamps, several API pages.
const LINES: usize = 30_000;

const RUN_ID: &str = "scheduled__2026-01-01T00:00:00+00:00";

fn dag(folder: &Path) {
    std::fs::create_dir_all(folder).unwrap();
    std::fs::write(
        folder.join("remote.yaml"),
        format!(
            r#"
remote_logs:
  schedule: "@once"
  start_date: 2026-01-01
  is_paused_upon_creation: false
  tasks:
    chatty:
      operator: bash
      bash_command: 'for i in $(seq 1 {LINES}); do echo "line $i of a chatty task, long enough to fill pages"; done'
    quiet:
      operator: bash
      bash_command: "echo done"
      dependencies: [chatty]
"#
        ),
    )
    .unwrap();
}

/// A child process, killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn command(home: &Path, args: &[&str], out: &Path, err: &Path) -> std::process::Command {
    #[allow(
        clippy::disallowed_methods,
        reason = "the test starts the binary as a user would"
    )]
    let mut command = std::process::Command::new(assert_cmd::cargo::cargo_bin("gust"));
    command
        .env("GUST_HOME", home)
        .env_remove("GUST__CORE__DAGS_FOLDER")
        .args(args)
        .stdout(std::fs::File::create(out).unwrap())
        .stderr(std::fs::File::create(err).unwrap());
    command
}

/// Waits until `gust dags list-runs` shows the run ended; answers its JSON.
#[allow(clippy::disallowed_methods, reason = "polls another process")]
fn wait_for_run(home: &Path, scheduler_err: &Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let out = common::gust(home)
            .args(["dags", "list-runs", "remote_logs", "-o", "json"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if text.contains("\"success\"") || text.contains("\"failed\"") {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "the run did not end in 120 s: {text}\nscheduler: {}",
            std::fs::read_to_string(scheduler_err).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Runs the DAG with a real scheduler until its run ends; answers the scheduler's output.
fn run_scheduler(home: &Path, dags: &Path) -> String {
    let (out, err) = (home.join("scheduler.out"), home.join("scheduler.err"));
    let child = command(
        home,
        &["scheduler", "--dags-folder", dags.to_str().unwrap()],
        &out,
        &err,
    )
    .spawn()
    .unwrap();
    let scheduler = Proc(child);
    let runs = wait_for_run(home, &err);
    assert!(runs.contains("\"success\""), "{runs}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(scheduler.0.id()).unwrap()),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    drop(scheduler);
    std::fs::read_to_string(&out).unwrap() + &std::fs::read_to_string(&err).unwrap()
}

fn config(home: &Path, base: &str, delete_local: bool) {
    std::fs::write(
        home.join("gust.toml"),
        format!(
            "[core]\ndags_are_paused_at_creation = false\n\n[logging]\nremote_logging = true\n\
             remote_base_log_folder = \"{base}\"\ndelete_local_logs = {delete_local}\n"
        ),
    )
    .unwrap();
}

/// One HTTP/1.1 request; answers the status and the body.
fn http(port: u16, path: &str, headers: &[(&str, &str)], body: Option<&str>) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let method = if body.is_some() { "POST" } else { "GET" };
    let body = body.unwrap_or("");
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
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).expect("receive");
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer[9..12].parse().expect("a status code");
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// Starts `gust api-server` on a free port; answers it, its port, and its stderr's path.
fn api_server(home: &Path) -> (Proc, u16, PathBuf) {
    let err = home.join("api.err");
    let mut cmd = command(
        home,
        &["api-server", "--port", "0", "--host", "127.0.0.1"],
        &home.join("api.out"),
        &err,
    );
    cmd.stdout(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let server = Proc(child);
    let mut lines = BufReader::new(stdout).lines();
    let port = loop {
        let line = lines
            .next()
            .unwrap_or_else(|| {
                panic!(
                    "the API server stopped: {}",
                    std::fs::read_to_string(&err).unwrap_or_default()
                )
            })
            .unwrap();
        if let Some(address) = line.split("http://127.0.0.1:").nth(1) {
            break address.trim().parse::<u16>().unwrap();
        }
    };
    // Keep reading its stdout so it never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (server, port, err)
}

fn bearer(home: &Path, port: u16) -> String {
    common::gust(home)
        .args([
            "users",
            "create",
            "-u",
            "ada",
            "-p",
            "long-enough-pass",
            "-r",
            "viewer",
        ])
        .assert()
        .success();
    let (status, body) = http(
        port,
        "/auth/token",
        &[("Content-Type", "application/json")],
        Some(r#"{"username": "ada", "password": "long-enough-pass"}"#),
    );
    assert_eq!(status, 201, "{body}");
    let token: serde_json::Value = serde_json::from_str(&body).unwrap();
    format!("Bearer {}", token["access_token"].as_str().unwrap())
}

/// Every page of a try's log through the REST API: the lines' events, and each answer's body.
fn whole_log(port: u16, auth: &str, task: &str) -> (Vec<String>, String) {
    let run = RUN_ID.replace('+', "%2B");
    let base = format!("/api/v2/dags/remote_logs/dagRuns/{run}/taskInstances/{task}/logs/1");
    let (mut events, mut bodies, mut token) = (Vec::new(), String::new(), None::<String>);
    for page in 0.. {
        assert!(page < 50, "the log never ended");
        let path = match &token {
            Some(t) => format!("{base}?token={t}"),
            None => base.clone(),
        };
        let (status, body) = http(port, &path, &[("Authorization", auth)], None);
        assert_eq!(status, 200, "{body}");
        let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
        for line in answer["content"].as_array().unwrap() {
            events.push(line["event"].as_str().unwrap().to_owned());
        }
        bodies.push_str(&body);
        match answer["continuation_token"].as_str() {
            Some(next) => token = Some(next.to_owned()),
            None => break,
        }
    }
    (events, bodies)
}

fn assert_no_credentials(what: &str, text: &str) {
    assert!(!text.contains(SECRET), "the secret key leaked in {what}");
    assert!(!text.contains(LOGIN), "the access key leaked in {what}");
}

#[test]
fn a_moved_api_server_shows_the_whole_log_from_object_storage() {
    let Some(endpoint) = endpoint() else { return };
    let bucket = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(create_bucket(&endpoint, &unique_bucket("remote-logs")));
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    common::add_artifacts_connection(home, &endpoint, LOGIN, SECRET);
    config(home, &format!("s3://{bucket}/logs"), true);
    let dags = home.join("dags");
    dag(&dags);

    let output = run_scheduler(home, &dags);
    assert!(
        output.contains(&format!("remote logs: s3://{bucket}/logs")),
        "{output}"
    );
    assert_no_credentials("the scheduler's output", &output);

    // Both logs are in the bucket, at the local layout's paths.
    let artifacts = gust_artifacts::Artifacts::new(gust_artifacts::testing::credentials(&endpoint));
    let listed = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(artifacts.list(&format!("s3://{bucket}/logs/")))
        .unwrap();
    let uris: Vec<&str> = listed.iter().map(|e| e.uri.as_str()).collect();
    assert_eq!(
        uris,
        [
            format!(
                "s3://{bucket}/logs/dag_id=remote_logs/run_id={RUN_ID}/task_id=chatty/attempt=1.log"
            ),
            format!(
                "s3://{bucket}/logs/dag_id=remote_logs/run_id={RUN_ID}/task_id=quiet/attempt=1.log"
            ),
        ]
    );
    assert!(listed[0].size > 2 * 1024 * 1024, "{}", listed[0].size);
    // delete_local_logs: the uploaded files went once their tries' ends were recorded.
    let local = home.join(format!(
        "logs/dag_id=remote_logs/run_id={RUN_ID}/task_id=chatty/attempt=1.log"
    ));
    assert!(!local.exists(), "{} is still there", local.display());

    // Another machine: no local logs at all.
    let _ = std::fs::remove_dir_all(home.join("logs"));
    let (server, port, err) = api_server(home);
    let auth = bearer(home, port);
    let (events, bodies) = whole_log(port, &auth, "chatty");
    let printed: Vec<&String> = events.iter().filter(|e| e.starts_with("line ")).collect();
    assert_eq!(printed.len(), LINES);
    for (i, event) in printed.iter().enumerate() {
        assert_eq!(
            **event,
            format!("line {} of a chatty task, long enough to fill pages", i + 1)
        );
    }
    assert_eq!(events.last().map(String::as_str), Some("try succeeded"));
    assert_no_credentials("the API's answers", &bodies);
    let (events, _) = whole_log(port, &auth, "quiet");
    assert!(
        events.ends_with(&["done".to_owned(), "try succeeded".to_owned()]),
        "{events:?}"
    );

    // The UI's log view reads the same store: its tail, then from an offset.
    let run = RUN_ID.replace('+', "%2B");
    let ui = format!("/ui/api/dags/remote_logs/runs/{run}/tasks/chatty/logs/1");
    let (status, body) = http(port, &ui, &[("Authorization", &auth)], None);
    assert_eq!(status, 200, "{body}");
    let tail: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(tail["exists"], true);
    let text = tail["text"].as_str().unwrap();
    assert!(text.trim_end().ends_with("gust: try succeeded"), "{text}");
    assert!(text.starts_with('['), "the tail starts at a whole line");
    assert_eq!(tail["offset"], tail["size"]);
    let (_, body) = http(
        port,
        &format!("{ui}?offset=0"),
        &[("Authorization", &auth)],
        None,
    );
    let head: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(
        head["text"]
            .as_str()
            .unwrap()
            .lines()
            .nth(1)
            .unwrap()
            .ends_with("stdout: line 1 of a chatty task, long enough to fill pages"),
        "{body:.300}"
    );
    drop(server);
    assert_no_credentials(
        "the API server's log",
        &std::fs::read_to_string(err).unwrap(),
    );
}

#[test]
fn a_store_that_refuses_the_upload_fails_no_try_and_the_log_says_so() {
    // The second moto checks signatures and knows no user: every request gets a 403.
    let Some(endpoint) = endpoint_from("GUST_TEST_S3_AUTH_ENDPOINT") else {
        return;
    };
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    common::add_artifacts_connection(home, &endpoint, LOGIN, SECRET);
    config(home, "s3://refused/logs", true);
    let dags = home.join("dags");
    dag(&dags);
    let output = run_scheduler(home, &dags);
    assert_no_credentials("the scheduler's output", &output);
    // The uploads failed: the local logs stay (delete_local_logs deletes only uploaded ones),
    // each ending with why.
    let log = std::fs::read_to_string(home.join(format!(
        "logs/dag_id=remote_logs/run_id={RUN_ID}/task_id=quiet/attempt=1.log"
    )))
    .unwrap();
    // One line, even when the store's answer spans several.
    let last = log.lines().last().unwrap();
    assert!(last.contains("after 1 try"), "{log}");
    assert!(
        last.contains(&format!(
            "gust: could not upload this log to s3://refused/logs/dag_id=remote_logs/run_id={RUN_ID}/task_id=quiet/attempt=1.log"
        )) && last.contains("permission denied"),
        "{log}"
    );
    assert!(log.contains("gust: try succeeded"), "{log}");
    assert_no_credentials("the log", &log);
}

#[test]
#[allow(clippy::disallowed_methods, reason = "waits for another process")]
fn a_try_adopted_after_a_scheduler_crash_has_its_log_uploaded_at_its_end() {
    let Some(endpoint) = endpoint() else { return };
    let bucket = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(create_bucket(
            &endpoint,
            &unique_bucket("remote-logs-crash"),
        ));
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    common::add_artifacts_connection(home, &endpoint, LOGIN, SECRET);
    config(home, &format!("s3://{bucket}/logs"), false);
    let dags = home.join("dags");
    std::fs::create_dir_all(&dags).unwrap();
    std::fs::write(
        dags.join("slow.yaml"),
        r#"
remote_logs:
  schedule: "@once"
  start_date: 2026-01-01
  is_paused_upon_creation: false
  tasks:
    slow: {operator: bash, bash_command: "echo before; sleep 4", do_xcom_push: false}
"#,
    )
    .unwrap();
    let local = home.join(format!(
        "logs/dag_id=remote_logs/run_id={RUN_ID}/task_id=slow/attempt=1.log"
    ));
    let args = ["scheduler", "--dags-folder", dags.to_str().unwrap()];
    let first = Proc(
        command(home, &args, &home.join("s1.out"), &home.join("s1.err"))
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while !std::fs::read_to_string(&local).is_ok_and(|l| l.contains("stdout: before")) {
        assert!(Instant::now() < deadline, "the try never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(first); // SIGKILL: the try runs on without a scheduler
    let (out, err) = (home.join("s2.out"), home.join("s2.err"));
    let second = Proc(command(home, &args, &out, &err).spawn().unwrap());
    let runs = wait_for_run(home, &err);
    assert!(
        runs.contains("\"success\""),
        "{runs}\nlog: {}\nscheduler: {}",
        std::fs::read_to_string(&local).unwrap_or_default(),
        std::fs::read_to_string(&err).unwrap_or_default()
    );
    drop(second);
    let artifacts = gust_artifacts::Artifacts::new(gust_artifacts::testing::credentials(&endpoint));
    let uri =
        format!("s3://{bucket}/logs/dag_id=remote_logs/run_id={RUN_ID}/task_id=slow/attempt=1.log");
    let slice = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(artifacts.read_range(&uri, std::io::SeekFrom::Start(0), 1 << 20))
        .unwrap();
    let text = String::from_utf8_lossy(&slice.bytes);
    // What the log holds at the try's end, written before and after the crash (the output of
    // an adopted try is not captured, the local runtime says so).
    assert!(
        text.contains("stdout: before") && text.contains("gust: the scheduler restarted"),
        "{text}"
    );
    assert!(text.trim_end().ends_with("succeeded"), "{text}");
    for file in ["s1.out", "s1.err", "s2.out", "s2.err"] {
        assert_no_credentials(file, &std::fs::read_to_string(home.join(file)).unwrap());
    }
}
