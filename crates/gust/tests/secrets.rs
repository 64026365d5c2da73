//! No byte of a secret is shown: `gust standalone` runs a DAG that echoes a sensitive variable,
//! a connection's password (inside a URL, URL-encoded) and an `env` secret, on SQLite and on
//! PostgreSQL; every API and UI answer, every CLI output and every file under GUST_HOME but the
//! database itself are searched for them.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use gust_store::testing::TestDb;

mod common;
use common::gust_process;

const VARIABLE: &str = "var-secret-value";
const PASSWORD: &str = "conn@secret-pw";
const ENV: &str = "env-secret-value";
const CONF: &str = "conf-secret-value";
/// What the secrets look like where they stand, encoded (the password in a URL).
const SHOWN: &[&str] = &[VARIABLE, PASSWORD, "conn%40secret-pw", ENV, CONF];

const DAG: &str = r#"
secrets:
  schedule: null
  tasks:
    shout:
      operator: BashOperator
      bash_command: 'echo "var={{ var.value.api_key }} env=$MYSECRET url=$DB_URL"; echo "$MYSECRET"'
      env:
        MYSECRET: env-secret-value
        DB_URL: "postgres://me:conn%40secret-pw@db/x"
"#;

/// `gust` on `url` with `home` as GUST_HOME, run to its end; answers its output.
fn gust(home: &Path, url: &str, args: &[&str]) -> String {
    let output = gust_process(home, url)
        .args(args)
        .output()
        .expect("gust runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "gust {args:?}: {text}");
    text
}

/// `gust standalone` writing to `home/standalone.out`; killed when dropped.
struct Standalone(Child);

impl Drop for Standalone {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn standalone(home: &Path, url: &str) -> (Standalone, u16, String) {
    let out = home.join("standalone.out");
    let file = std::fs::File::create(&out).expect("output file");
    let child = gust_process(home, url)
        .env("GUST__CORE__DAGS_ARE_PAUSED_AT_CREATION", "false")
        .args(["standalone", "--port", "0", "--host", "127.0.0.1"])
        .stdout(file.try_clone().expect("file"))
        .stderr(file)
        .spawn()
        .expect("standalone starts");
    let server = Standalone(child);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let banner = std::fs::read_to_string(&out).unwrap_or_default();
        if banner.contains("Ctrl-C stops.") {
            let port = banner
                .split("http://127.0.0.1:")
                .nth(1)
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|p| p.parse().ok())
                .unwrap_or_else(|| panic!("no address: {banner}"));
            let password = std::fs::read_to_string(home.join("standalone_admin_password.txt"))
                .expect("the admin password")
                .trim()
                .to_owned();
            return (server, port, password);
        }
        assert!(Instant::now() < deadline, "no banner: {banner}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One HTTP/1.1 request; answers the status and the body.
fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
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

fn assert_hidden(what: &str, text: &str) {
    for secret in SHOWN {
        assert!(!text.contains(secret), "{secret} shown in {what}: {text}");
    }
}

async fn no_secret_is_ever_shown(url: &str, home: &Path) {
    std::fs::create_dir_all(home.join("dags")).expect("dags");
    std::fs::write(home.join("dags/secrets.yaml"), DAG).expect("dag file");
    gust(home, url, &["db", "migrate"]);
    gust(home, url, &["variables", "set", "api_key", VARIABLE]);
    gust(
        home,
        url,
        &[
            "connections",
            "add",
            "db",
            "--conn-type",
            "postgres",
            "--conn-password",
            PASSWORD,
        ],
    );
    let (server, port, password) = standalone(home, url).await;
    let conf = format!(r#"{{"db_password": "{CONF}", "n": 1}}"#);
    let mut outputs = vec![gust(
        home,
        url,
        &[
            "dags", "trigger", "secrets", "--run-id", "r1", "--conf", &conf,
        ],
    )];

    let login = format!(r#"{{"username": "admin", "password": "{password}"}}"#);
    let (status, body) = http(
        port,
        "POST",
        "/auth/token",
        &[("Content-Type", "application/json")],
        &login,
    );
    assert_eq!(status, 201, "{body}");
    let token: serde_json::Value = serde_json::from_str(&body).expect("json");
    let bearer = format!("Bearer {}", token["access_token"].as_str().expect("token"));
    let get = |path: &str| {
        let (status, body) = http(port, "GET", path, &[("Authorization", &bearer)], "");
        assert_eq!(status, 200, "{path}: {body}");
        body
    };
    let run = "/api/v2/dags/secrets/dagRuns/r1";
    let deadline = Instant::now() + Duration::from_secs(60);
    while !get(run).contains(r#""state":"success""#) {
        assert!(
            Instant::now() < deadline,
            "the run did not succeed: {}",
            get(run)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let ti = get(&format!("{run}/taskInstances/shout"));
    let shown: serde_json::Value = serde_json::from_str(&ti).expect("json");
    assert_eq!(
        shown["rendered_fields"]["bash_command"],
        "echo \"var=*** env=$MYSECRET url=$DB_URL\"; echo \"$MYSECRET\""
    );
    assert_eq!(shown["rendered_fields"]["env"]["MYSECRET"], "***");
    assert_eq!(
        shown["rendered_fields"]["env"]["DB_URL"],
        "postgres://me:***@db/x"
    );
    let log = get(&format!("{run}/taskInstances/shout/logs/1"));
    assert!(
        log.contains("var=*** env=*** url=postgres://me:***@db/x"),
        "{log}"
    );
    let xcom = get(&format!(
        "{run}/taskInstances/shout/xcomEntries/return_value"
    ));
    assert!(xcom.contains(r#""value":"***""#), "{xcom}");
    let answers = [
        get(run),
        ti,
        get(&format!("{run}/taskInstances/shout/tries")),
        log,
        xcom,
        get("/api/v2/variables"),
        get("/api/v2/variables/api_key"),
        get("/api/v2/connections/db"),
        get("/ui/api/dags/secrets/runs/r1/tasks/shout"),
        get("/ui/api/dags/secrets/runs/r1/tasks/shout/logs/1"),
    ];
    for (n, answer) in answers.iter().enumerate() {
        assert_hidden(&format!("answer {n}"), answer);
    }
    drop(server);

    outputs.push(gust(
        home,
        url,
        &["tasks", "states-for-dag-run", "secrets", "r1"],
    ));
    outputs.push(gust(home, url, &["tasks", "dry-run", "secrets", "shout"]));
    outputs.push(gust(home, url, &["dags", "test", "secrets"]));
    outputs.push(gust(home, url, &["variables", "list"]));
    outputs.push(gust(home, url, &["connections", "get", "db"]));
    for output in &outputs {
        assert_hidden("the CLI's output", output);
    }

    // Every file Gust wrote (logs of both runs, the server's output); not the database nor the
    // DAG file, which keep what the user wrote.
    let mut files = 0;
    for entry in walkdir::WalkDir::new(home) {
        let entry = entry.expect("walk");
        let name = entry.file_name().to_string_lossy();
        if !entry.file_type().is_file()
            || name.starts_with("gust.db")
            || entry.path().starts_with(home.join("dags"))
        {
            continue;
        }
        let bytes = std::fs::read(entry.path()).expect("read");
        assert_hidden(
            &entry.path().display().to_string(),
            &String::from_utf8_lossy(&bytes),
        );
        files += 1;
    }
    assert!(files >= 3, "the logs were written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_is_ever_shown_on_sqlite() {
    let home = tempfile::tempdir().expect("home");
    let url = format!("sqlite://{}", home.path().join("gust.db").display());
    no_secret_is_ever_shown(&url, home.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_is_ever_shown_on_postgres() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let home = tempfile::tempdir().expect("home");
    no_secret_is_ever_shown(&db.url, home.path()).await;
}
