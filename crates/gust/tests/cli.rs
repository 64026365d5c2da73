//! The `gust` binary as a user runs it: DAG inspection commands, exit codes and configuration.

use std::path::Path;

use predicates::prelude::*;

mod common;

use common::{examples, gust, gust_process, test_run_id};

#[test]
fn validate_accepts_the_examples() {
    let home = tempfile::tempdir().expect("tempdir");
    gust(home.path())
        .args(["dags", "validate"])
        .arg(examples())
        .assert()
        .success()
        .stderr(predicate::str::contains("all valid"));
}

#[test]
fn validate_prints_every_problem_on_its_own_line_and_exits_1() {
    let home = tempfile::tempdir().expect("tempdir");
    let dags = home.path().join("dags");
    std::fs::create_dir_all(&dags).expect("mkdir");
    std::fs::write(
        dags.join("a.yaml"),
        "a:\n  tasks:\n    t: {operator: bash, bash_comand: x}\n",
    )
    .expect("write");
    std::fs::write(
        dags.join("b.yaml"),
        "b:\n  schedule: every tuesday\n  tasks: {t: {operator: empty}}\n",
    )
    .expect("write");
    let out = gust(home.path())
        .args(["dags", "validate"])
        .assert()
        .code(1)
        .get_output()
        .stdout
        .clone();
    let text = String::from_utf8(out).expect("utf-8");
    let lines: Vec<&str> = text.lines().collect();
    // The misspelt argument is reported once: not also as a missing bash_command.
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines[0].ends_with("a.yaml:3:25: a.t: unknown argument \"bash_comand\" for operator bash; did you mean \"bash_command\"?"), "{text}");
    assert!(lines[1].ends_with("b.yaml:2:13: b: \"schedule\": invalid schedule \"every tuesday\": expected a cron expression (\"0 3 * * *\"), a preset (@daily), a duration (1h) or null"), "{text}");
}

#[test]
fn validate_prints_each_warning_on_one_line_and_exits_0_when_there_are_only_warnings() {
    let home = tempfile::tempdir().expect("tempdir");
    let dags = home.path().join("dags");
    std::fs::create_dir_all(&dags).expect("mkdir");
    std::fs::write(
        dags.join("c.yaml"),
        "c:\n  default_args: {retry_delay_sec: 30}\n  tasks: {a: {operator: empty}, b: {operator: empty}}\n  chains: ['a >> b']\n",
    )
    .expect("write");
    let out = gust(home.path())
        .args(["dags", "validate"])
        .assert()
        .success()
        .stderr(predicate::str::contains(
            "1 DAG in 1 file: all valid (2 warnings: Airflow with dag-factory would read these files differently)",
        ))
        .get_output()
        .stdout
        .clone();
    let text = String::from_utf8(out).expect("utf-8");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(
        lines[0].ends_with("c.yaml:2:18: c: warning: Airflow ignores `retry_delay_sec` in default_args (dag-factory 1.1.0 passes it on unchanged): there the tasks keep Airflow's default retry_delay; write `retry_delay: 30` (seconds) instead"),
        "{text}"
    );
    assert!(
        lines[1].ends_with("c.yaml:4:3: c: warning: dag-factory 1.1.0 ignores `chains`: in Airflow these dependencies do not exist and the tasks run without them; write the edges as `dependencies:` of the downstream tasks, which both read"),
        "{text}"
    );
}

#[test]
fn list_shows_dags_as_table_json_and_yaml() {
    let home = tempfile::tempdir().expect("tempdir");
    gust(home.path())
        .args(["dags", "list", "--dags-folder"])
        .arg(examples())
        .assert()
        .success()
        .stdout(
            predicate::str::contains("kube_operator_diamond")
                .and(predicate::str::contains("dag_id")),
        );
    let out = gust(home.path())
        .args(["dags", "list", "--output", "json", "--dags-folder"])
        .arg(examples())
        .output()
        .expect("run");
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let diamond = rows
        .as_array()
        .expect("a list")
        .iter()
        .find(|r| r["dag_id"] == "kube_operator_diamond")
        .expect("the diamond");
    assert_eq!(diamond["tasks"], 4);
    assert_eq!(diamond["schedule"], "1d");
    gust(home.path())
        .args(["dags", "list", "-o", "yaml", "--dags-folder"])
        .arg(examples())
        .assert()
        .success()
        .stdout(predicate::str::contains("- dag_id: example_cleanup"));
}

#[test]
fn show_draws_the_graph_as_text_dot_and_mermaid() {
    let home = tempfile::tempdir().expect("tempdir");
    let show = |format: &str| {
        let out = gust(home.path())
            .args([
                "dags",
                "show",
                "kube_operator_diamond",
                "--format",
                format,
                "--dags-folder",
            ])
            .arg(examples())
            .output()
            .expect("run");
        assert!(out.status.success());
        String::from_utf8(out.stdout).expect("utf-8")
    };
    let text = show("text");
    assert!(text.contains("t4  [bash]  <- t2, t3"), "{text}");
    let dot = show("dot");
    assert!(
        dot.starts_with("digraph \"kube_operator_diamond\"") && dot.contains("\"t1\" -> \"t2\";"),
        "{dot}"
    );
    let mermaid = show("mermaid");
    assert!(
        mermaid.starts_with("flowchart LR") && mermaid.contains("t0 --> t1"),
        "{mermaid}"
    );
}

#[test]
fn show_of_an_unknown_dag_is_one_clear_line() {
    let home = tempfile::tempdir().expect("tempdir");
    gust(home.path())
        .args(["dags", "show", "nope", "--dags-folder"])
        .arg(examples())
        .assert()
        .code(1)
        .stderr(format!(
            "error: no DAG \"nope\" in {}; run `gust dags list` to see its DAGs\n",
            examples().display()
        ));
}

#[test]
fn list_import_errors_lists_broken_files() {
    let home = tempfile::tempdir().expect("tempdir");
    let dags = home.path().join("dags");
    std::fs::create_dir_all(&dags).expect("mkdir");
    std::fs::write(dags.join("x.yaml"), "x: [").expect("write");
    gust(home.path())
        .args(["dags", "list-import-errors"])
        .assert()
        .success()
        .stdout(predicate::str::contains("x.yaml:2:1: invalid YAML"));
    gust(home.path())
        .args(["dags", "list"])
        .assert()
        .success()
        .stderr(predicate::str::contains("1 import errors"));
}

#[test]
fn config_comes_from_gust_toml_and_the_environment_wins() {
    let home = tempfile::tempdir().expect("tempdir");
    gust(home.path())
        .args(["config", "list"])
        .assert()
        .success()
        .stdout(predicate::str::contains(format!(
            "dags_folder = \"{}\"",
            home.path().join("dags").display()
        )));
    std::fs::write(
        home.path().join("gust.toml"),
        "[core]\ndags_folder = \"/from/file\"\n",
    )
    .expect("write");
    gust(home.path())
        .args(["config", "list"])
        .assert()
        .stdout(predicate::str::contains("/from/file"));
    gust(home.path())
        .args(["config", "list"])
        .env("GUST__CORE__DAGS_FOLDER", "/from/env")
        .assert()
        .stdout(predicate::str::contains("/from/env"));
}

#[test]
fn a_missing_dags_folder_says_how_to_set_one() {
    let home = tempfile::tempdir().expect("tempdir");
    gust(home.path())
        .args(["dags", "list"])
        .assert()
        .code(1)
        .stderr(
            predicate::str::contains("--dags-folder")
                .and(predicate::str::contains("does not exist")),
        );
}

#[test]
fn dags_test_runs_the_example_diamond_and_exits_0() {
    let home = tempfile::tempdir().expect("tempdir");
    let out = gust(home.path())
        .args([
            "dags",
            "test",
            "kube_operator_diamond",
            "--logical-date",
            "2024-01-01",
            "--dags-folder",
        ])
        .arg(examples())
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "of kube_operator_diamond: success",
        ));
    let run_id = test_run_id(&String::from_utf8_lossy(&out.get_output().stdout));
    // Airflow 3.3 names a manual run after the time it was triggered, not its logical date.
    let stamp = run_id.strip_prefix("manual__").expect("manual__");
    let at = chrono::DateTime::parse_from_rfc3339(stamp).expect("an RFC 3339 time");
    #[allow(
        clippy::disallowed_methods,
        reason = "the id must name the wall-clock time the binary read"
    )]
    let now = chrono::Utc::now();
    assert!(
        stamp.ends_with("+00:00") && (now - at.to_utc()).num_seconds().abs() < 60,
        "{run_id} is the trigger time, not the logical date 2024-01-01"
    );
    let log = home.path().join(format!(
        "logs/dag_id=kube_operator_diamond/run_id={run_id}/task_id=t4/attempt=1.log"
    ));
    let text = std::fs::read_to_string(&log).expect("t4's log");
    assert!(text.contains("stdout: hello world from t4"), "{text}");
}

#[test]
fn dags_test_exits_1_when_the_run_fails_and_names_the_failure() {
    let home = tempfile::tempdir().expect("tempdir");
    let dags = home.path().join("dags");
    std::fs::create_dir_all(&dags).expect("mkdir");
    std::fs::write(
        dags.join("f.yaml"),
        "f:\n  tasks:\n    boom: {operator: bash, bash_command: 'exit 3'}\n",
    )
    .expect("write");
    gust(home.path())
        .args(["dags", "test", "f"])
        .assert()
        .code(1)
        .stdout(
            predicate::str::contains("boom")
                .and(predicate::str::contains("exited with code 3"))
                .and(predicate::str::contains(": failed;")),
        );
    gust(home.path())
        .args(["dags", "test", "f", "--conf", "[1]"])
        .assert()
        .code(1)
        .stderr("error: --conf must be a JSON object, like '{\"limit\": 10}'\n");
}

#[test]
fn db_migrate_creates_the_sqlite_schema_and_check_confirms_it() {
    let home = tempfile::tempdir().expect("tempdir");
    gust(home.path())
        .args(["db", "check"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("run `gust db migrate`"));
    gust(home.path())
        .args(["db", "migrate"])
        .assert()
        .success()
        .stdout(predicate::str::contains("schema at version 17"));
    gust(home.path())
        .args(["db", "check"])
        .assert()
        .success()
        .stdout(predicate::str::contains("(current)"));
    assert!(home.path().join("gust.db").exists());
}

#[test]
fn the_database_password_is_never_printed() {
    let home = tempfile::tempdir().expect("tempdir");
    let url = "postgres://gust:hunter2@127.0.0.1:1/gust";
    gust(home.path())
        .args(["config", "list"])
        .env("GUST__DATABASE__URL", url)
        .assert()
        .success()
        .stdout(
            predicate::str::contains("postgres://gust:***@127.0.0.1:1/gust")
                .and(predicate::str::contains("hunter2").not()),
        );
    gust(home.path())
        .args(["db", "check"])
        .env("GUST__DATABASE__URL", url)
        .assert()
        .code(1)
        .stderr(
            predicate::str::contains("cannot connect")
                .and(predicate::str::contains("hunter2").not()),
        );
}

#[test]
fn variables_are_stored_and_reach_templates_in_dags_test() {
    let home = tempfile::tempdir().expect("tempdir");
    gust(home.path())
        .args(["variables", "list"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("gust db migrate"));
    gust(home.path()).args(["db", "migrate"]).assert().success();
    gust(home.path())
        .args(["variables", "set", "target", "warehouse"])
        .assert()
        .success();
    for file in ["gust.db", "gust.db-wal"] {
        let bytes = std::fs::read(home.path().join(file)).unwrap_or_default();
        assert!(
            !bytes.windows(9).any(|w| w == b"warehouse"),
            "variables are encrypted at rest ({file})"
        );
    }
    gust(home.path())
        .args(["variables", "get", "target"])
        .assert()
        .success()
        .stdout("warehouse\n");
    gust(home.path())
        .args(["variables", "list"])
        .assert()
        .success()
        .stdout("target\n");
    let dags = home.path().join("dags");
    std::fs::create_dir_all(&dags).expect("mkdir");
    std::fs::write(
        dags.join("v.yaml"),
        "v:\n  tasks:\n    t: {operator: bash, bash_command: 'echo {{ var.value.target }}'}\n",
    )
    .expect("write");
    gust(home.path())
        .args(["dags", "test", "v"])
        .assert()
        .success();
    gust(home.path())
        .args(["variables", "delete", "target"])
        .assert()
        .success();
    gust(home.path())
        .args(["variables", "get", "target"])
        .assert()
        .code(1)
        .stderr("error: no variable \"target\"; `gust variables list` shows them\n");
    gust(home.path())
        .args(["dags", "test", "v"])
        .assert()
        .code(1)
        .stdout(predicate::str::contains(
            "undefined name \"var.value.target\"",
        ));
}

#[test]
fn pools_are_set_and_listed() {
    let home = tempfile::tempdir().expect("tempdir");
    gust(home.path()).args(["db", "migrate"]).assert().success();
    gust(home.path())
        .args(["pools", "set", "gpu", "2", "--description", "the GPU nodes"])
        .assert()
        .success();
    gust(home.path())
        .args(["pools", "list"])
        .assert()
        .success()
        .stdout("default_pool\t128\tDefault pool\ngpu\t2\tthe GPU nodes\n");
}

#[test]
fn tasks_test_runs_one_task_without_its_upstreams() {
    let home = tempfile::tempdir().expect("tempdir");
    gust(home.path())
        .args([
            "tasks",
            "test",
            "kube_operator_diamond",
            "t4",
            "--dags-folder",
        ])
        .arg(examples())
        .assert()
        .success()
        .stdout(predicate::str::contains("t4").and(predicate::str::contains("t1").not()));
    gust(home.path())
        .args(["tasks", "test", "kube_operator_diamond", "t9", "--dags-folder"])
        .arg(examples())
        .assert()
        .code(1)
        .stderr("error: DAG \"kube_operator_diamond\" has no task \"t9\"; its tasks are: t1, t2, t3, t4\n");
}

#[test]
fn connections_keep_their_secrets_encrypted_and_never_print_them() {
    let home = tempfile::tempdir().expect("tempdir");
    gust(home.path()).args(["db", "migrate"]).assert().success();
    gust(home.path())
        .args([
            "connections",
            "add",
            "warehouse",
            "--conn-type",
            "postgres",
            "--conn-host",
            "db",
            "--conn-port",
            "5432",
        ])
        .args([
            "--conn-login",
            "etl",
            "--conn-password",
            "hunter2",
            "--conn-extra",
            r#"{"sslmode": "require"}"#,
        ])
        .assert()
        .success();
    let key = std::fs::read_to_string(home.path().join("fernet.key")).expect("a key was generated");
    assert!(
        gust_store_key_is_private(&home.path().join("fernet.key")),
        "the key file is private"
    );
    gust(home.path())
        .args(["connections", "get", "warehouse"])
        .assert()
        .success()
        .stdout(
            predicate::str::contains("host: db")
                .and(predicate::str::contains("password: ***"))
                .and(predicate::str::contains("hunter2").not()),
        );
    gust(home.path())
        .args(["connections", "list"])
        .assert()
        .success()
        .stdout("warehouse\tpostgres\n");
    let db = std::fs::read(home.path().join("gust.db")).expect("the database");
    assert!(
        !db.windows(7).any(|w| w == b"hunter2"),
        "the password is not stored in plain text"
    );
    gust(home.path())
        .args(["config", "list"])
        .env("GUST__CORE__FERNET_KEY", key.trim())
        .assert()
        .success()
        .stdout(
            predicate::str::contains("fernet_key = \"***\"")
                .and(predicate::str::contains(key.trim()).not()),
        );
    gust(home.path())
        .args([
            "connections",
            "add",
            "bad",
            "--conn-type",
            "x",
            "--conn-extra",
            "[1]",
        ])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "--conn-extra must be a JSON object",
        ));
    gust(home.path())
        .args(["connections", "delete", "warehouse"])
        .assert()
        .success();
}

fn gust_store_key_is_private(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|m| m.permissions().mode() & 0o077 == 0)
        .unwrap_or(false)
}

/// Every file and folder under `root` (itself included) with its permission bits.
fn modes_under(root: &Path) -> Vec<(std::path::PathBuf, u32)> {
    use std::os::unix::fs::PermissionsExt;
    let mut found = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(path) = pending.pop() {
        let meta = std::fs::metadata(&path).expect("metadata");
        if meta.is_dir() {
            pending.extend(
                std::fs::read_dir(&path)
                    .expect("read_dir")
                    .map(|e| e.expect("entry").path()),
            );
        }
        found.push((path, meta.permissions().mode() & 0o777));
    }
    found
}

#[test]
fn the_home_database_and_logs_are_their_owners_alone() {
    let root = tempfile::tempdir().expect("tempdir");
    let home = root.path().join("home");
    gust(&home).args(["db", "migrate"]).assert().success();
    let dags = home.join("dags");
    std::fs::create_dir_all(&dags).expect("mkdir");
    std::fs::write(
        dags.join("v.yaml"),
        "v:\n  tasks:\n    t: {operator: bash, bash_command: 'echo hi'}\n",
    )
    .expect("write");
    gust(&home).args(["dags", "test", "v"]).assert().success();
    let modes = modes_under(&home);
    let mode_of = |name: &str| {
        modes
            .iter()
            .find(|(p, _)| p.file_name().is_some_and(|n| n == name))
            .map(|(_, m)| *m)
    };
    assert_eq!(mode_of("home"), Some(0o700));
    assert_eq!(mode_of("gust.db"), Some(0o600));
    let logs: Vec<_> = modes
        .iter()
        .filter(|(p, _)| p.starts_with(home.join("logs")))
        .collect();
    assert!(
        logs.iter()
            .any(|(p, _)| p.extension().is_some_and(|e| e == "log")),
        "{logs:?}"
    );
    for (path, mode) in logs {
        let private = if path.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(*mode, private, "{}", path.display());
    }
}

#[test]
fn dags_are_paused_at_creation_and_pause_and_unpause_are_recorded() {
    let home = tempfile::tempdir().expect("tempdir");
    gust(home.path())
        .args(["dags", "pause", "kube_operator_diamond", "--dags-folder"])
        .arg(examples())
        .assert()
        .code(1)
        .stderr(predicate::str::contains("gust db migrate"));
    gust(home.path()).args(["db", "migrate"]).assert().success();
    gust(home.path())
        .args(["dags", "unpause", "kube_operator_diamond", "--dags-folder"])
        .arg(examples())
        .assert()
        .success()
        .stdout("kube_operator_diamond: unpaused\n");
    let out = gust(home.path())
        .args(["dags", "list", "-o", "json", "--dags-folder"])
        .arg(examples())
        .output()
        .expect("run");
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let paused = |id: &str| {
        rows.as_array()
            .expect("list")
            .iter()
            .find(|r| r["dag_id"] == id)
            .expect("row")["is_paused"]
            .clone()
    };
    assert_eq!(paused("kube_operator_diamond"), false);
    assert_eq!(
        paused("example_cleanup"),
        true,
        "new DAGs start paused, as in Airflow"
    );
    gust(home.path())
        .args(["dags", "pause", "nope", "--dags-folder"])
        .arg(examples())
        .assert()
        .code(1)
        .stderr(predicate::str::contains("no DAG \"nope\""));
}

#[test]
fn a_connection_can_be_added_from_an_airflow_uri() {
    let home = tempfile::tempdir().expect("tempdir");
    gust(home.path()).args(["db", "migrate"]).assert().success();
    gust(home.path())
        .args([
            "connections",
            "add",
            "s3_artifacts",
            "--conn-uri",
            "aws://AKIA:s3cr%2Ft@/?endpoint_url=http%3A%2F%2F127.0.0.1%3A9000",
        ])
        .assert()
        .success();
    gust(home.path())
        .args(["connections", "get", "s3_artifacts"])
        .assert()
        .success()
        .stdout(
            predicate::str::contains("conn_type: aws")
                .and(predicate::str::contains("login: AKIA"))
                .and(predicate::str::contains("s3cr").not()),
        );
    gust(home.path())
        .args(["connections", "add", "bare"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("--conn-type is required"));
}

#[test]
fn config_list_never_prints_the_keys() {
    let home = tempfile::tempdir().expect("tempdir");
    gust(home.path())
        .args(["config", "list"])
        .env("GUST__API__SECRET_KEY", "api-signing-secret-42")
        .env("GUST__CORE__FERNET_KEY", "fernet-secret-43")
        .assert()
        .success()
        .stdout(
            predicate::str::contains("secret_key = \"***\"")
                .and(predicate::str::contains("api-signing-secret-42").not())
                .and(predicate::str::contains("fernet-secret-43").not()),
        );
}

/// A DAG file with one bash task and no schedule, for the tests that record DAGs.
const ONE_TASK: &str = "recorded:\n  schedule: 1d\n  start_date: 2024-01-01\n  catchup: false\n  tasks:\n    t: {operator: bash, bash_command: 'true'}\n";

/// A home whose database records the DAG `recorded` of the folder `elsewhere`, as a scheduler on
/// that folder would, while the configured folder (`home/dags`) is empty.
fn home_recording_a_dag_elsewhere() -> (tempfile::TempDir, std::path::PathBuf) {
    let home = tempfile::tempdir().expect("tempdir");
    let elsewhere = home.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).expect("mkdir");
    std::fs::create_dir_all(home.path().join("dags")).expect("mkdir");
    std::fs::write(elsewhere.join("recorded.yaml"), ONE_TASK).expect("write");
    gust(home.path()).args(["db", "migrate"]).assert().success();
    gust(home.path())
        .args(["dags", "pause", "recorded", "--dags-folder"])
        .arg(&elsewhere)
        .assert()
        .success();
    (home, elsewhere)
}

#[test]
fn commands_on_runs_work_from_the_dags_the_database_records_whatever_folder_is_given() {
    let (home, _elsewhere) = home_recording_a_dag_elsewhere();
    let other = home.path().join("other");
    std::fs::create_dir_all(&other).expect("mkdir");
    gust(home.path())
        .args(["dags", "unpause", "recorded"])
        .assert()
        .success()
        .stdout("recorded: unpaused\n");
    gust(home.path())
        .args(["dags", "pause", "recorded", "--dags-folder"])
        .arg(&other)
        .assert()
        .success();
    let out = gust(home.path())
        .args(["dags", "trigger", "recorded", "--conf", "{}"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let text = String::from_utf8(out).expect("utf-8");
    let run_id = text
        .split_whitespace()
        .nth(2)
        .expect("created run RUN_ID of ...")
        .to_owned();
    gust(home.path())
        .args(["dags", "trigger", "recorded", "--dags-folder"])
        .arg(&other)
        .assert()
        .success();
    gust(home.path())
        .args(["dags", "list-runs", "recorded"])
        .assert()
        .success()
        .stdout(predicate::str::contains(&run_id));
    gust(home.path())
        .args(["tasks", "states-for-dag-run", "recorded", &run_id])
        .assert()
        .success();
    gust(home.path())
        .args([
            "dags",
            "backfill",
            "recorded",
            "--start-date",
            "2024-01-01",
            "--end-date",
            "2024-01-02",
        ])
        .assert()
        .success();
    gust(home.path())
        .args(["tasks", "clear", "recorded", "-y", "--dags-folder"])
        .arg(&other)
        .assert()
        .success();
    // A DAG neither recorded nor in the folder is a one-line error naming both places.
    for args in [
        &["dags", "trigger", "nope"][..],
        &["dags", "pause", "nope"],
        &["tasks", "clear", "nope", "-y"],
        &["dags", "list-runs", "nope"],
    ] {
        gust(home.path())
            .args(args)
            .assert()
            .code(1)
            .stderr(predicate::str::starts_with(
                "error: no DAG \"nope\" in the database",
            ));
    }
}

#[test]
fn backfill_runs_are_named_after_their_interval_end_as_airflow_3_names_them() {
    let (home, _elsewhere) = home_recording_a_dag_elsewhere();
    gust(home.path())
        .args([
            "dags",
            "backfill",
            "recorded",
            "--start-date",
            "2024-01-01",
            "--end-date",
            "2024-01-01",
        ])
        .assert()
        .success()
        .stdout("backfill__2024-01-02T00:00:00+00:00\n");
}

#[test]
fn a_run_id_outside_the_allowed_pattern_is_a_clear_error() {
    let (home, _elsewhere) = home_recording_a_dag_elsewhere();
    gust(home.path())
        .args(["dags", "trigger", "recorded", "--run-id", "x/y"])
        .assert()
        .code(1)
        .stderr(predicate::str::starts_with(
            "error: --run-id: run id \"x/y\" does not match [scheduler] allowed_run_id_pattern",
        ));
    gust(home.path())
        .args(["dags", "trigger", "recorded", "--run-id", "x_y"])
        .assert()
        .success();
    gust(home.path())
        .env("GUST__SCHEDULER__ALLOWED_RUN_ID_PATTERN", "^ticket-[0-9]+$")
        .args(["dags", "trigger", "recorded", "--run-id", "x_z"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("\"^ticket-[0-9]+$\""));
}

#[test]
fn manual_runs_are_named_after_the_trigger_time_not_the_logical_date() {
    let (home, _elsewhere) = home_recording_a_dag_elsewhere();
    let trigger = || {
        let out = gust(home.path())
            .args([
                "dags",
                "trigger",
                "recorded",
                "--logical-date",
                "2024-01-01",
            ])
            .assert()
            .success()
            .get_output()
            .stdout
            .clone();
        let text = String::from_utf8(out).expect("utf-8");
        text.split_whitespace()
            .nth(2)
            .expect("the run id")
            .to_owned()
    };
    let first = trigger();
    let second = trigger();
    // Airflow 3.3: `manual__` and the trigger time as Python's isoformat() writes it.
    let stamp = first.strip_prefix("manual__").expect("manual__");
    let at = chrono::DateTime::parse_from_rfc3339(stamp).expect("an RFC 3339 time");
    assert!(
        stamp.ends_with("+00:00") && !stamp.starts_with("2024-01-01"),
        "{first}"
    );
    #[allow(
        clippy::disallowed_methods,
        reason = "the id must name the wall-clock time the binary read"
    )]
    let now = chrono::Utc::now();
    assert!(
        (now - at.to_utc()).num_seconds().abs() < 60,
        "{first} is now"
    );
    assert_ne!(first, second, "two triggers, two ids");
}

#[test]
fn validate_with_nothing_to_validate_says_so_and_exits_1() {
    let home = tempfile::tempdir().expect("tempdir");
    let dags = home.path().join("dags");
    std::fs::create_dir_all(&dags).expect("mkdir");
    gust(home.path())
        .args(["dags", "validate"])
        .assert()
        .code(1)
        .stderr(format!(
            "nothing to validate: no DAG files (*.yaml, *.yml) in {}\n",
            dags.display()
        ));
}

#[test]
fn file_commands_on_an_empty_default_folder_say_which_folder_they_read() {
    let (home, elsewhere) = home_recording_a_dag_elsewhere();
    let dags = home.path().join("dags");
    gust(home.path())
        .args(["dags", "list"])
        .assert()
        .success()
        .stderr(format!(
            "no DAG files in {} ([core] dags_folder); the database records DAGs from {}: pass --dags-folder {}\n",
            dags.display(),
            elsewhere.display(),
            elsewhere.display()
        ));
    gust(home.path())
        .args(["dags", "show", "recorded"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(format!(
            "error: no DAG \"recorded\" in {} ([core] dags_folder); the database records it from {}",
            dags.display(),
            elsewhere.join("recorded.yaml").display()
        )));
    // With nothing recorded either, the line still names the folder read.
    let fresh = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(fresh.path().join("dags")).expect("mkdir");
    gust(fresh.path())
        .args(["dags", "list"])
        .assert()
        .success()
        .stderr(predicate::str::contains(format!(
            "no DAG files in {} ([core] dags_folder); pass --dags-folder DIR",
            fresh.path().join("dags").display()
        )));
}

#[test]
fn users_create_accepts_airflows_capitalised_role_names() {
    let home = tempfile::tempdir().expect("tempdir");
    gust(home.path()).args(["db", "migrate"]).assert().success();
    for (name, role) in [
        ("ada", "Admin"),
        ("olga", "Op"),
        ("ulla", "User"),
        ("vic", "VIEWER"),
    ] {
        gust(home.path())
            .args(["users", "create", "--username", name])
            .args(["--password", "correct-horse", "--role", role])
            .assert()
            .success();
    }
    gust(home.path())
        .args(["users", "list", "-o", "json"])
        .assert()
        .success()
        .stdout(
            predicate::str::contains("\"admin\"")
                .and(predicate::str::contains("\"op\""))
                .and(predicate::str::contains("\"user\""))
                .and(predicate::str::contains("\"viewer\"")),
        );
    gust(home.path())
        .args([
            "users",
            "create",
            "-u",
            "u",
            "-p",
            "correct-horse",
            "-r",
            "Superuser",
        ])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "[possible values: viewer, user, op, admin]",
        ));
}

#[test]
fn the_examples_use_only_pools_a_fresh_database_has() {
    let now = chrono::TimeZone::with_ymd_and_hms(&chrono::Utc, 2026, 1, 1, 0, 0, 0).unwrap();
    let load = gust_dagfile::load_folder(&examples(), now).expect("load");
    assert!(load.problems.is_empty(), "{:?}", load.problems);
    for dag in &load.dags {
        for task in dag.tasks() {
            assert_eq!(
                task.settings.pool, "default_pool",
                "{}.{} would fail on first start",
                dag.id, task.id
            );
        }
    }
}

#[test]
fn the_scheduler_log_says_when_a_dag_file_fails_to_import_and_when_a_pool_is_missing() {
    use std::io::BufRead;
    let home = tempfile::tempdir().expect("tempdir");
    let dags = home.path().join("dags");
    std::fs::create_dir_all(&dags).expect("mkdir");
    std::fs::write(
        dags.join("broken.yaml"),
        "broken:\n  tasks:\n    t: {operator: nope}\n",
    )
    .expect("write");
    std::fs::write(
        dags.join("pooled.yaml"),
        "pooled:\n  default_args: {pool: ml}\n  tasks: {t: {operator: empty}}\n",
    )
    .expect("write");
    let url = format!("sqlite://{}", home.path().join("gust.db").display());
    gust(home.path()).args(["db", "migrate"]).assert().success();
    let mut child = gust_process(home.path(), &url)
        .arg("scheduler")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the scheduler starts");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let (mut broken, mut pooled) = (None, None);
    while broken.is_none() || pooled.is_none() {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let Ok(line) = lines.recv_timeout(left) else {
            break;
        };
        if line.contains("failed to import") {
            broken = Some(line);
        } else if line.contains("pools that do not exist") {
            pooled = Some(line);
        }
    }
    common::kill9(child);
    let broken = broken.expect("a line for the broken file");
    assert!(
        broken.contains(&format!("{}:3:", dags.join("broken.yaml").display()))
            && broken.contains("unknown operator \"nope\""),
        "{broken}"
    );
    let pooled = pooled.expect("a line for the missing pool");
    assert!(
        pooled.contains("DAG \"pooled\" uses pools that do not exist: ml"),
        "{pooled}"
    );
}

#[test]
fn a_dag_a_scheduler_on_another_folder_records_is_triggered_without_naming_the_folder() {
    // The README's first steps: `gust standalone --dags-folder examples/dags`, then, from another
    // terminal, `gust dags trigger DAG` with the configured folder empty.
    let home = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(home.path().join("dags")).expect("mkdir");
    let elsewhere = home.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).expect("mkdir");
    std::fs::write(elsewhere.join("recorded.yaml"), ONE_TASK).expect("write");
    let url = format!("sqlite://{}", home.path().join("gust.db").display());
    gust(home.path()).args(["db", "migrate"]).assert().success();
    let child = gust_process(home.path(), &url)
        .args(["scheduler", "--dags-folder"])
        .arg(&elsewhere)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("the scheduler starts");
    // The scheduler records its folder's DAGs as it starts; until then the DAG is nowhere here.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let triggered = loop {
        let out = gust(home.path())
            .args(["dags", "trigger", "recorded", "--conf", "{}"])
            .output()
            .expect("run");
        if out.status.success() || std::time::Instant::now() > deadline {
            break out;
        }
        std::thread::yield_now();
    };
    common::kill9(child);
    assert!(triggered.status.success(), "{triggered:?}");
    assert!(
        String::from_utf8_lossy(&triggered.stdout).starts_with("created run manual__"),
        "{triggered:?}"
    );
}

#[test]
fn map_index_names_one_instance_of_a_mapped_task_in_tasks_test_and_dry_run() {
    let home = tempfile::tempdir().expect("tempdir");
    let dags = home.path().join("dags");
    std::fs::create_dir_all(&dags).expect("mkdir");
    std::fs::write(
        dags.join("m.yaml"),
        "m:\n  tasks:\n    fan:\n      operator: bash\n      partial: {bash_command: '[ \"$SHARD\" = b ]'}\n      expand:\n        env: [{SHARD: a}, {SHARD: b}]\n    plain: {operator: bash, bash_command: 'true'}\n",
    )
    .expect("write");
    let tasks = |args: &[&str]| {
        let mut cmd = gust(home.path());
        cmd.arg("tasks").args(args).arg("--dags-folder").arg(&dags);
        cmd
    };
    // Only the second instance's item passes its check.
    tasks(&["test", "m", "fan", "--map-index", "1"])
        .assert()
        .success();
    tasks(&["test", "m", "fan", "--map-index", "0"])
        .assert()
        .code(1);
    tasks(&["dry-run", "m", "fan", "--map-index", "1"])
        .assert()
        .success()
        .stdout(predicate::str::contains("SHARD: b"));
    tasks(&["test", "m", "fan"])
        .assert()
        .code(1)
        .stderr("error: task \"fan\" of DAG \"m\" is mapped: name one of its instances with --map-index N (0 for the first)\n");
    tasks(&["dry-run", "m", "fan", "--map-index", "2"])
        .assert()
        .code(1)
        .stderr("error: --map-index 2 is out of range: task \"fan\" of DAG \"m\" has 2 mapped instance(s), 0 to 2 exclusive\n");
    tasks(&["test", "m", "plain", "--map-index", "0"])
        .assert()
        .code(1)
        .stderr("error: task \"plain\" of DAG \"m\" is not mapped: drop --map-index\n");
    tasks(&["test", "m", "plain", "--map-index", "-1"])
        .assert()
        .success();
}
