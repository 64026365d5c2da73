//! The local pod runtime: `kubernetes_pod` tries run as host processes with the pod's commands,
//! environment, emptyDir volumes, init containers, XCom file and termination message.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use gust_core::clock::SystemClock;
use gust_core::ids::{DagId, RunId, TaskId, TryNumber};
use gust_exec_local::{LocalConfig, LocalExecutor};
use gust_executor::testing::finished;
use gust_executor::{
    Executor, FailureReason, LaunchError, LaunchSpec, TryEvent, TryKey, TryOutcome, event_channel,
};
use serde_json::json;
use tokio::sync::mpsc::Receiver;

/// Runs the test `$name(mode)` once in each mode.
macro_rules! both_modes {
    ($name:ident) => {
        mod $name {
            #[tokio::test]
            async fn in_a_sandbox() {
                super::$name(super::Mode::Sandbox).await;
            }

            #[tokio::test]
            async fn with_rewritten_paths() {
                super::$name(super::Mode::Rewrite).await;
            }
        }
    };
}

struct Harness {
    executor: LocalExecutor,
    events: Receiver<TryEvent>,
    dir: tempfile::TempDir,
}

/// How the local pod runtime reaches mount paths: a bwrap sandbox (where bwrap works; else it
/// falls back to rewriting), or rewritten paths.
#[derive(Clone, Copy)]
enum Mode {
    Sandbox,
    Rewrite,
}

fn harness(run_pods: bool) -> Harness {
    harness_with(run_pods, gust_exec_local::Secrets::default(), Mode::Sandbox)
}

fn harness_in(mode: Mode) -> Harness {
    harness_with(true, gust_exec_local::Secrets::default(), mode)
}

fn harness_with(run_pods: bool, secrets: gust_exec_local::Secrets, mode: Mode) -> Harness {
    let (tx, events) = event_channel();
    let config = LocalConfig {
        kill_grace: Duration::from_millis(300),
        run_pods,
        secrets: secrets.into(),
        sandbox: matches!(mode, Mode::Sandbox),
        ..LocalConfig::default()
    };
    Harness {
        executor: LocalExecutor::new(config, tx, Arc::new(SystemClock)),
        events,
        dir: tempfile::tempdir().expect("tempdir"),
    }
}

fn key(task: &str) -> TryKey {
    TryKey {
        dag_id: DagId::new("pods").expect("id"),
        run_id: RunId::new("manual__1").expect("id"),
        task_id: TaskId::new(task).expect("id"),
        map_index: gust_core::mapping::UNMAPPED,
        try_number: TryNumber(1),
    }
}

impl Harness {
    fn spec(&self, task: &str, args: serde_json::Value, do_xcom_push: bool) -> LaunchSpec {
        LaunchSpec {
            key: key(task),
            operator: "kubernetes_pod".into(),
            args: args.as_object().cloned().expect("a map"),
            do_xcom_push,
            execution_timeout: None,
            log_path: self.log(task),
            dag_file: self.dir.path().join("dag.yaml"),
            context: Default::default(),
        }
    }

    fn log(&self, task: &str) -> PathBuf {
        self.dir.path().join(format!("logs/{task}.log"))
    }

    async fn run(&mut self, spec: LaunchSpec) -> TryOutcome {
        let wanted = spec.key.clone();
        self.executor.start(spec).expect("started");
        finished(&mut self.events, &wanted, Duration::from_secs(20)).await
    }

    fn log_text(&self, task: &str) -> String {
        std::fs::read_to_string(self.log(task)).unwrap_or_default()
    }
}

both_modes!(the_seed_passing_pod_runs_and_logs_its_output);

async fn the_seed_passing_pod_runs_and_logs_its_output(mode: Mode) {
    let mut h = harness_in(mode);
    let spec = h.spec(
        "passing-task",
        json!({"image": "python:3.12-slim", "name": "passing-test",
               "cmds": ["sh", "-c"], "arguments": ["echo hello world; echo $GREETING"],
               "env_vars": {"GREETING": "hi from env"}, "labels": {"foo": "bar"}}),
        false,
    );
    assert_eq!(h.run(spec).await, TryOutcome::Succeeded { xcom: None });
    let log = h.log_text("passing-task");
    assert!(log.contains("stdout: hello world"), "{log}");
    assert!(log.contains("stdout: hi from env"), "{log}");
    assert!(
        log.contains("local pod runtime"),
        "the log says what it is: {log}"
    );
}

both_modes!(a_failing_pod_fails_with_its_exit_code_and_termination_message);

async fn a_failing_pod_fails_with_its_exit_code_and_termination_message(mode: Mode) {
    let mut h = harness_in(mode);
    let spec = h.spec(
        "failing",
        json!({"image": "ubuntu", "cmds": ["sh", "-c"],
               "arguments": ["echo 'no input data' > /dev/termination-log; exit 3"]}),
        false,
    );
    assert_eq!(
        h.run(spec).await,
        TryOutcome::Failed(FailureReason::Pod(
            "container \"base\" exited with code 3: no input data".into()
        ))
    );
}

both_modes!(the_xcom_file_becomes_the_return_value);

async fn the_xcom_file_becomes_the_return_value(mode: Mode) {
    let mut h = harness_in(mode);
    let spec = h.spec(
        "xcom",
        json!({"image": "alpine", "cmds": ["sh", "-c"],
               "arguments": ["mkdir -p /airflow/xcom; echo '{\"train\": \"s3://b/t\", \"rows\": 3}' > /airflow/xcom/return.json"]}),
        true,
    );
    assert_eq!(
        h.run(spec).await,
        TryOutcome::Succeeded {
            xcom: Some(json!({"train": "s3://b/t", "rows": 3}))
        }
    );
    let bad = h.spec(
        "bad-xcom",
        json!({"image": "alpine", "cmds": ["sh", "-c"],
               "arguments": ["echo 'not json' > /airflow/xcom/return.json"]}),
        true,
    );
    let outcome = h.run(bad).await;
    assert!(
        matches!(&outcome, TryOutcome::Failed(FailureReason::Pod(m)) if m.contains("not valid JSON")),
        "{outcome:?}"
    );
}

both_modes!(init_containers_fill_shared_volumes_before_the_base_container);

async fn init_containers_fill_shared_volumes_before_the_base_container(mode: Mode) {
    let mut h = harness_in(mode);
    let spec = h.spec(
        "with-init",
        json!({
            "image": "busybox",
            "volumes": [{"name": "inputs", "emptyDir": {}}],
            "volume_mounts": [{"name": "inputs", "mountPath": "/opt/ml/processing/input"}],
            "init_containers": [{
                "name": "fetch", "image": "busybox", "command": ["sh", "-c"],
                "args": ["echo 42 > /opt/ml/processing/input/answer"],
                "volumeMounts": [{"name": "inputs", "mountPath": "/opt/ml/processing/input"}],
            }],
            "cmds": ["sh", "-c"],
            "arguments": ["echo answer=$(cat /opt/ml/processing/input/answer)"],
        }),
        false,
    );
    assert_eq!(h.run(spec).await, TryOutcome::Succeeded { xcom: None });
    assert!(h.log_text("with-init").contains("stdout: answer=42"));

    let failing_init = h.spec(
        "bad-init",
        json!({"image": "busybox", "cmds": ["true"],
               "init_containers": [{"name": "fetch", "image": "busybox", "command": ["sh", "-c", "exit 4"]}]}),
        false,
    );
    assert_eq!(
        h.run(failing_init).await,
        TryOutcome::Failed(FailureReason::Pod(
            "init container \"fetch\" exited with code 4".into()
        ))
    );
}

#[tokio::test]
async fn skip_codes_skip_and_cluster_only_features_are_refused_clearly() {
    let mut h = harness(true);
    let skip = h.spec(
        "skip",
        json!({"image": "x", "cmds": ["sh", "-c", "exit 100"], "skip_on_exit_code": 100}),
        false,
    );
    assert_eq!(h.run(skip).await, TryOutcome::Skipped { exit_code: 100 });

    let secret = h.spec(
        "secret",
        json!({"image": "x", "cmds": ["true"],
               "secrets": [{"deploy_type": "env", "deploy_target": "pw", "secret": "db", "key": "password"}]}),
        false,
    );
    let outcome = h.run(secret).await;
    assert!(
        matches!(&outcome, TryOutcome::Failed(FailureReason::Pod(m)) if m.contains("Secret \"db\"") && m.contains("gust connections add db")),
        "{outcome:?}"
    );
    let no_command = h.spec("entrypoint", json!({"image": "x"}), false);
    let outcome = h.run(no_command).await;
    assert!(
        matches!(&outcome, TryOutcome::Failed(FailureReason::Pod(m)) if m.contains("give the task `cmds`")),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn without_the_local_pod_runtime_pod_tries_are_refused() {
    let h = harness(false);
    let spec = h.spec("p", json!({"image": "x", "cmds": ["true"]}), false);
    assert!(
        matches!(h.executor.start(spec), Err(LaunchError::Unconfigured(m)) if m.contains("runtime = \"local\""))
    );
}

both_modes!(secrets_come_from_connections_and_never_show_in_the_command_line);

async fn secrets_come_from_connections_and_never_show_in_the_command_line(mode: Mode) {
    let secrets = gust_exec_local::Secrets::from([(
        "airflow-secrets".to_owned(),
        std::collections::BTreeMap::from([
            (
                "sql_alchemy_conn".to_owned(),
                "postgres://u:hunter2@db/x".to_owned(),
            ),
            ("token".to_owned(), "t0k3n".to_owned()),
        ]),
    )]);
    let mut h = harness_with(true, secrets, mode);
    let spec = h.spec(
        "secret-user",
        json!({
            "image": "x",
            "cmds": ["sh", "-c"],
            "arguments": ["ps -eo args > /airflow/out/ps; case \"$SQL_CONN\" in postgres://u:*@db/x) ;; *) exit 3;; esac; test \"$(cat /etc/sql_conn/conn)\" = \"$SQL_CONN\" && test \"$token\" = t0k3n && test -z \"${GUST_POD_VALUE_0:-}\" && echo ok"],
            "volumes": [{"name": "out", "hostPath": {"path": h.dir.path().join("out").display().to_string()}}],
            "volume_mounts": [{"name": "out", "mountPath": "/airflow/out"}],
            "secrets": [
                {"deploy_type": "env", "deploy_target": "sql_conn", "secret": "airflow-secrets", "key": "sql_alchemy_conn"},
                {"deploy_type": "env", "secret": "airflow-secrets"},
                {"deploy_type": "volume", "deploy_target": "/etc/sql_conn", "secret": "airflow-secrets",
                 "items": [{"key": "sql_alchemy_conn", "path": "conn"}]},
            ],
        }),
        false,
    );
    assert_eq!(h.run(spec).await, TryOutcome::Succeeded { xcom: None });
    let log = h.log_text("secret-user");
    assert!(log.contains("stdout: ok"), "{log}");
    assert!(!log.contains("hunter2"), "{log}");
    let in_ps = std::fs::read_to_string(h.dir.path().join("out/ps")).expect("ps output");
    assert!(
        !in_ps.contains("hunter2"),
        "a secret showed in the process list:\n{in_ps}"
    );
}

/// Whether bwrap runs here (as the runtime probes it).
#[allow(
    clippy::disallowed_methods,
    reason = "a test probing for bwrap, as the runtime does"
)]
fn bwrap_works() -> bool {
    std::process::Command::new("bwrap")
        .args(["--ro-bind", "/", "/", "--", "true"])
        .status()
        .is_ok_and(|s| s.success())
}

#[tokio::test]
async fn in_the_sandbox_volumes_are_at_their_mount_paths_and_the_host_is_read_only() {
    if !bwrap_works() {
        eprintln!("bwrap does not run here: the sandbox is not tested (install bubblewrap)");
        return;
    }
    let mut h = harness_in(Mode::Sandbox);
    let spec = h.spec(
        "sandboxed",
        json!({"image": "x", "cmds": ["sh", "-c"],
               "arguments": ["test -d /airflow/xcom && ! touch /etc/gust-sandbox-test 2>/dev/null && pwd && echo '[1]' > /airflow/xcom/return.json"]}),
        true,
    );
    assert_eq!(
        h.run(spec).await,
        TryOutcome::Succeeded {
            xcom: Some(json!([1]))
        }
    );
    let log = h.log_text("sandboxed");
    assert!(log.contains("bwrap sandbox"), "{log}");
    assert!(
        log.contains("stdout: /\n"),
        "the working folder is /: {log}"
    );
    assert!(
        !Path::new("/airflow").exists(),
        "nothing was made on the host"
    );
}
