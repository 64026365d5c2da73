//! No byte of a secret is shown: `gust standalone` runs a DAG that echoes a sensitive variable,
//! a connection's password (from `{{ conn.db.password }}`, and inside a URL, URL-encoded), `env`
//! secrets and a pod's, and fails a task whose template error quotes a secret; on SQLite with
//! local pods and on PostgreSQL with a (fake) Kubernetes cluster. Every API and UI answer, every
//! CLI output and every file under GUST_HOME but the database itself are searched for them.
//! With `[core] hide_sensitive_var_conn_fields` off, names hide nothing, as in Airflow.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use gust_kube_fake::{FakeCluster, PodScript};
use gust_store::testing::TestDb;

mod common;
use common::gust_process;

const VARIABLE: &str = "var-secret-value";
const PASSWORD: &str = "conn@secret-pw";
const ENV: &str = "env-secret-value";
const POD_ENV: &str = "pod-env-secret";
const CONF: &str = "conf-secret-value";
/// What the secrets look like where they stand, encoded (the password in a URL).
const SHOWN: &[&str] = &[VARIABLE, PASSWORD, "conn%40secret-pw", ENV, POD_ENV, CONF];
/// The image of the pod task, which the fake cluster's kubelet plays.
const POD_IMAGE: &str = "secrets-image";

const DAG: &str = r#"
secrets:
  schedule: null
  tasks:
    shout:
      operator: BashOperator
      bash_command: 'echo "var={{ var.value.api_key }} conn={{ conn.db.password }} env=$MYSECRET url=$DB_URL"; echo "$MYSECRET"'
      env:
        MYSECRET: env-secret-value
        DB_URL: "postgres://me:conn%40secret-pw@db/x"
    pod:
      operator: KubernetesPodOperator
      image: secrets-image
      cmds: ["sh", "-c", "echo \"var={{ var.value.api_key }} conn={{ conn.db.password }} env=$POD_TOKEN\"; mkdir -p /airflow/xcom; printf '\"%s\"' \"$POD_TOKEN\" > /airflow/xcom/return.json"]
      env_vars: {POD_TOKEN: pod-env-secret}
      do_xcom_push: true
    bad:
      operator: BashOperator
      bash_command: '{{ macros.ds_add(var.value.api_key, 1) }}'
    conf_echo:
      operator: BashOperator
      bash_command: 'echo "cf={{ dag_run.conf.db_password }}"'
"#;

/// Where `gust` runs: its home, database and pod runtime.
struct Setup {
    home: PathBuf,
    url: String,
    /// Environment variables choosing the pod runtime (and anything a test adds).
    env: Vec<(String, String)>,
}

impl Setup {
    fn command(&self) -> std::process::Command {
        let mut command = gust_process(&self.home, &self.url);
        command.envs(self.env.iter().map(|(k, v)| (k, v)));
        command
    }

    /// `gust args`, run to its end; answers its output, whether it succeeded or not.
    fn output(&self, args: &[&str]) -> (bool, String) {
        let output = self.command().args(args).output().expect("gust runs");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        (output.status.success(), text)
    }

    /// `gust args`, which must succeed; answers its output.
    fn gust(&self, args: &[&str]) -> String {
        let (ok, text) = self.output(args);
        assert!(ok, "gust {args:?}: {text}");
        text
    }
}

/// `gust standalone` writing to `home/standalone.out`; killed when dropped.
struct Standalone(Child);

impl Drop for Standalone {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn standalone(setup: &Setup) -> (Standalone, u16, String) {
    let home = setup.home.as_path();
    let out = home.join("standalone.out");
    let file = std::fs::File::create(&out).expect("output file");
    let child = setup
        .command()
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

/// Stores the variables and the connection the DAG reads, and a non-sensitive variable that
/// holds the connection's password in a URL.
fn store_secrets(setup: &Setup) {
    std::fs::create_dir_all(setup.home.join("dags")).expect("dags");
    std::fs::write(setup.home.join("dags/secrets.yaml"), DAG).expect("dag file");
    setup.gust(&["db", "migrate"]);
    setup.gust(&["variables", "set", "api_key", VARIABLE]);
    setup.gust(&[
        "variables",
        "set",
        "db_url",
        "postgres://me:conn%40secret-pw@db/x",
    ]);
    setup.gust(&[
        "connections",
        "add",
        "db",
        "--conn-type",
        "postgres",
        "--conn-password",
        PASSWORD,
    ]);
}

/// Waits until the run `path` names has ended; answers its state.
async fn wait_for_end(get: &impl Fn(&str) -> String, path: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let run: serde_json::Value = serde_json::from_str(&get(path)).expect("json");
        let state = run["state"].as_str().unwrap_or_default().to_owned();
        if state == "success" || state == "failed" {
            return state;
        }
        assert!(Instant::now() < deadline, "the run did not end: {run}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn no_secret_is_ever_shown(setup: &Setup) {
    let home = setup.home.as_path();
    store_secrets(setup);
    let (server, port, password) = standalone(setup).await;
    let conf = format!(r#"{{"db_password": "{CONF}", "n": 1}}"#);
    let mut outputs = vec![setup.gust(&[
        "dags", "trigger", "secrets", "--run-id", "r1", "--conf", &conf,
    ])];

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
    assert_eq!(wait_for_end(&get, run).await, "failed", "`bad` fails");

    let ti = get(&format!("{run}/taskInstances/shout"));
    let shown: serde_json::Value = serde_json::from_str(&ti).expect("json");
    assert_eq!(
        shown["rendered_fields"]["bash_command"],
        "echo \"var=*** conn=*** env=$MYSECRET url=$DB_URL\"; echo \"$MYSECRET\""
    );
    assert_eq!(shown["rendered_fields"]["env"]["MYSECRET"], "***");
    assert_eq!(
        shown["rendered_fields"]["env"]["DB_URL"],
        "postgres://me:***@db/x"
    );
    let log = get(&format!("{run}/taskInstances/shout/logs/1"));
    assert!(
        log.contains("var=*** conn=*** env=*** url=postgres://me:***@db/x"),
        "{log}"
    );
    let pod_log = get(&format!("{run}/taskInstances/pod/logs/1"));
    assert!(pod_log.contains("var=*** conn=*** env=***"), "{pod_log}");
    for task in ["shout", "pod"] {
        let xcom = get(&format!(
            "{run}/taskInstances/{task}/xcomEntries/return_value"
        ));
        assert!(xcom.contains(r#""value":"***""#), "{task}: {xcom}");
    }
    let conf_echo = get(&format!("{run}/taskInstances/conf_echo"));
    assert!(conf_echo.contains(r#"echo \"cf=***\""#), "{conf_echo}");
    let conf_log = get(&format!("{run}/taskInstances/conf_echo/logs/1"));
    assert!(conf_log.contains("cf=***"), "{conf_log}");
    let bad = get("/ui/api/dags/secrets/runs/r1/tasks/bad");
    assert!(bad.contains(r#"ds_add: \"***\" is not a date"#), "{bad}");

    let mut answers = vec![
        get(run),
        get("/api/v2/dags/secrets/dagRuns"),
        get(&format!("{run}/taskInstances")),
        get("/api/v2/variables"),
        get("/api/v2/variables/api_key"),
        get("/api/v2/variables/db_url"),
        get("/api/v2/connections"),
        get("/api/v2/connections/db"),
        get("/dags/secrets/runs/r1"),
        get("/variables"),
        get("/connections"),
        ti,
        log,
        pod_log,
        bad,
    ];
    for task in ["shout", "pod", "bad", "conf_echo"] {
        let ti = format!("{run}/taskInstances/{task}");
        answers.push(get(&ti));
        answers.push(get(&format!("{ti}/tries")));
        answers.push(get(&format!("{ti}/logs/1")));
        answers.push(get(&format!("{ti}/xcomEntries")));
        let ui = format!("/ui/api/dags/secrets/runs/r1/tasks/{task}");
        answers.push(get(&ui));
        answers.push(get(&format!("{ui}/logs/1")));
        answers.push(get(&format!("/dags/secrets/runs/r1/tasks/{task}")));
    }
    for (n, answer) in answers.iter().enumerate() {
        assert_hidden(&format!("answer {n}"), answer);
    }
    drop(server);

    let commands: [&[&str]; 7] = [
        &["tasks", "states-for-dag-run", "secrets", "r1"],
        &["dags", "list-runs", "secrets"],
        &["tasks", "dry-run", "secrets", "shout"],
        &["tasks", "dry-run", "secrets", "pod"],
        &["variables", "list"],
        &["connections", "get", "db"],
        &["connections", "list"],
    ];
    for args in commands {
        outputs.push(setup.gust(args));
    }
    // Failing runs print why, which quotes the secret.
    let (ok, test) = setup.output(&["dags", "test", "secrets"]);
    assert!(
        !ok && test.contains(r#"ds_add: "***" is not a date"#),
        "{test}"
    );
    outputs.push(test);
    let (ok, task_test) = setup.output(&["tasks", "test", "secrets", "bad"]);
    assert!(!ok, "{task_test}");
    outputs.push(task_test);
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
    assert!(files >= 7, "the logs were written");
}

/// Pods run as local processes (`[kubernetes] runtime = "local"`).
fn local_pods(home: &Path, url: String) -> Setup {
    Setup {
        home: home.to_owned(),
        url,
        env: vec![("GUST__KUBERNETES__RUNTIME".to_owned(), "local".to_owned())],
    }
}

/// Pods run on `fake`, whose kubelet prints and returns what the pod's command would.
fn on_cluster(home: &Path, url: String, fake: &FakeCluster) -> Setup {
    fake.script(
        POD_IMAGE,
        PodScript {
            lines: vec![format!("var={VARIABLE} conn={PASSWORD} env={POD_ENV}")],
            xcom: Some(format!("\"{POD_ENV}\"")),
            ..PodScript::default()
        },
    );
    let kubeconfig = home.join("kubeconfig");
    std::fs::write(&kubeconfig, fake.kubeconfig_yaml()).expect("kubeconfig");
    Setup {
        home: home.to_owned(),
        url,
        env: vec![(
            "GUST__KUBERNETES__CONFIG_FILE".to_owned(),
            kubeconfig.display().to_string(),
        )],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_is_ever_shown_on_sqlite_with_local_pods() {
    let home = tempfile::tempdir().expect("home");
    let url = format!("sqlite://{}", home.path().join("gust.db").display());
    no_secret_is_ever_shown(&local_pods(home.path(), url)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_is_ever_shown_on_postgres_with_a_cluster() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let fake = FakeCluster::start().await;
    let home = tempfile::tempdir().expect("home");
    no_secret_is_ever_shown(&on_cluster(home.path(), db.url.clone(), &fake)).await;
}

#[test]
fn without_hiding_sensitive_names_only_connections_secrets_are_masked() {
    let home = tempfile::tempdir().expect("home");
    let url = format!("sqlite://{}", home.path().join("gust.db").display());
    let mut setup = local_pods(home.path(), url);
    store_secrets(&setup);
    setup.env.push((
        "GUST__CORE__HIDE_SENSITIVE_VAR_CONN_FIELDS".to_owned(),
        "false".to_owned(),
    ));
    let dry_run = setup.gust(&["tasks", "dry-run", "secrets", "shout"]);
    assert!(
        dry_run.contains(&format!("var={VARIABLE} conn=***")),
        "the variable is shown, the connection's password is not: {dry_run}"
    );
    assert!(dry_run.contains(ENV), "{dry_run}");
    assert!(dry_run.contains("postgres://me:***@db/x"), "{dry_run}");
}
