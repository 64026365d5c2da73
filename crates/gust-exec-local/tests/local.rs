//! The local runtime with real processes: outcomes, logs, XCom, timeouts that end the whole
//! process group, kills, environment, working folders and the parallelism limit.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use gust_core::clock::SystemClock;
use gust_core::ids::{DagId, RunId, TaskId, TryNumber};
use gust_exec_local::{LocalConfig, LocalExecutor};
use gust_executor::testing::finished;
use gust_executor::{
    Executor, FailureReason, LaunchError, LaunchSpec, TryEvent, TryEventKind, TryKey, TryOutcome,
    event_channel,
};
use serde_json::json;
use tokio::sync::mpsc::Receiver;

struct Harness {
    executor: LocalExecutor,
    events: Receiver<TryEvent>,
    dir: tempfile::TempDir,
}

fn harness(parallelism: usize) -> Harness {
    let (tx, events) = event_channel();
    let config = LocalConfig {
        parallelism,
        kill_grace: Duration::from_millis(300),
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
        dag_id: DagId::new("d").expect("id"),
        run_id: RunId::new("manual__1").expect("id"),
        task_id: TaskId::new(task).expect("id"),
        map_index: gust_core::mapping::UNMAPPED,
        try_number: TryNumber(1),
    }
}

impl Harness {
    fn spec(&self, task: &str, args: serde_json::Value) -> LaunchSpec {
        LaunchSpec {
            key: key(task),
            operator: "bash".into(),
            args: args.as_object().cloned().expect("a map"),
            do_xcom_push: true,
            execution_timeout: None,
            log_path: self.log(task),
            dag_file: self.dir.path().join("dag.yaml"),
            context: Default::default(),
        }
    }

    fn log(&self, task: &str) -> PathBuf {
        self.dir.path().join(format!("logs/{task}/attempt=1.log"))
    }

    /// Waits (at most 20 s) for the try of `task` to finish.
    async fn finished(&mut self, task: &str) -> TryOutcome {
        finished(&mut self.events, &key(task), Duration::from_secs(20)).await
    }

    async fn run(&mut self, spec: LaunchSpec) -> TryOutcome {
        let task = spec.key.task_id.to_string();
        self.executor.start(spec).expect("started");
        self.finished(&task).await
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

#[tokio::test]
async fn a_successful_try_pushes_its_last_stdout_line_and_logs_every_line() {
    let mut h = harness(4);
    // Two pipes lose the order of lines written at the same instant (see process.rs): the last
    // line comes a moment after the stderr one, as a script's result line does.
    let spec = h.spec(
        "ok",
        json!({"bash_command": "echo first; echo oops >&2; sleep 0.2; echo last"}),
    );
    assert_eq!(
        h.run(spec).await,
        TryOutcome::Succeeded {
            xcom: Some(json!("last"))
        }
    );
    let log = read(&h.log("ok"));
    assert!(
        log.contains("] stdout: first\n")
            && log.contains("] stderr: oops\n")
            && log.contains("] stdout: last\n"),
        "{log}"
    );
    assert!(
        log.lines().all(|l| l.starts_with('[') && l.contains("Z] ")),
        "every line is time-stamped: {log}"
    );
}

#[tokio::test]
async fn a_running_trys_log_reaches_its_file_while_it_runs() {
    let mut h = harness(4);
    let spec = h.spec(
        "slow",
        json!({"bash_command": "echo early; sleep 3; echo late"}),
    );
    h.executor.start(spec).expect("started");
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    while !read(&h.log("slow")).contains("stdout: early") {
        assert!(
            std::time::Instant::now() < deadline,
            "the first line is in the file within 2 s, long before the try ends"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!read(&h.log("slow")).contains("late"));
    assert!(matches!(
        h.finished("slow").await,
        TryOutcome::Succeeded { .. }
    ));
}

#[tokio::test]
async fn without_do_xcom_push_nothing_is_pushed() {
    let mut h = harness(4);
    let mut spec = h.spec("quiet", json!({"bash_command": "echo value"}));
    spec.do_xcom_push = false;
    assert_eq!(h.run(spec).await, TryOutcome::Succeeded { xcom: None });
}

#[tokio::test]
async fn exit_codes_map_to_skip_and_failure() {
    let mut h = harness(4);
    let skip = h.spec("skip", json!({"bash_command": "exit 99"}));
    assert_eq!(h.run(skip).await, TryOutcome::Skipped { exit_code: 99 });
    let custom = h.spec(
        "custom",
        json!({"bash_command": "exit 3", "skip_on_exit_code": [3, 4]}),
    );
    assert_eq!(h.run(custom).await, TryOutcome::Skipped { exit_code: 3 });
    let fail = h.spec("fail", json!({"bash_command": "exit 3"}));
    assert_eq!(
        h.run(fail).await,
        TryOutcome::Failed(FailureReason::ExitCode(3))
    );
    let no_skip = h.spec(
        "noskip",
        json!({"bash_command": "exit 99", "skip_on_exit_code": null}),
    );
    assert_eq!(
        h.run(no_skip).await,
        TryOutcome::Failed(FailureReason::ExitCode(99))
    );
}

fn pid_alive(pid: i32) -> bool {
    // A zombie still answers kill(0); /proc/PID/stat shows it as state Z.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .split(") ")
            .nth(1)
            .is_some_and(|rest| rest.starts_with('Z')),
        Err(_) => false,
    }
}

#[tokio::test]
async fn a_timeout_kills_the_whole_process_group() {
    let mut h = harness(4);
    let pid_file = h.dir.path().join("grandchild.pid");
    let mut spec = h.spec(
        "slow",
        json!({"bash_command": format!("sleep 30 & echo $! > {}; sleep 30", pid_file.display())}),
    );
    spec.execution_timeout = Some(Duration::from_millis(500));
    let started = std::time::Instant::now();
    assert_eq!(
        h.run(spec).await,
        TryOutcome::Failed(FailureReason::TimedOut(Duration::from_millis(500)))
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    let grandchild: i32 = read(&pid_file)
        .trim()
        .parse()
        .expect("the grandchild's pid");
    let mut gone = false;
    for _ in 0..50 {
        if !pid_alive(grandchild) {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        gone,
        "the background sleep {grandchild} outlived the timeout"
    );
    assert!(read(&h.log("slow")).contains("execution_timeout of 0.5s reached"));
}

#[tokio::test]
async fn a_process_ignoring_sigterm_is_killed_after_the_grace_period() {
    let mut h = harness(4);
    let mut spec = h.spec(
        "stubborn",
        json!({"bash_command": "trap '' TERM; sleep 30"}),
    );
    spec.execution_timeout = Some(Duration::from_millis(200));
    let started = std::time::Instant::now();
    assert!(matches!(
        h.run(spec).await,
        TryOutcome::Failed(FailureReason::TimedOut(_))
    ));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "SIGKILL came {:?} after start",
        started.elapsed()
    );
}

#[tokio::test]
async fn kill_ends_a_running_try_with_its_reason() {
    let mut h = harness(4);
    let spec = h.spec("victim", json!({"bash_command": "sleep 30"}));
    h.executor.start(spec).expect("started");
    loop {
        let event = h.events.recv().await.expect("alive");
        if event.kind == TryEventKind::Started {
            break;
        }
    }
    assert_eq!(h.executor.running(), 1);
    h.executor.kill(&key("victim"), "marked failed by a user");
    assert_eq!(
        h.finished("victim").await,
        TryOutcome::Failed(FailureReason::Killed("marked failed by a user".into()))
    );
    assert_eq!(h.executor.running(), 0);
}

#[tokio::test]
async fn env_replaces_the_environment_unless_appended() {
    let mut h = harness(4);
    let replaced = h.spec(
        "replaced",
        json!({"bash_command": "echo \"$GREETING-${HOME:-nohome}\"", "env": {"GREETING": "hi"}}),
    );
    assert_eq!(
        h.run(replaced).await,
        TryOutcome::Succeeded {
            xcom: Some(json!("hi-nohome"))
        }
    );
    let appended = h.spec(
        "appended",
        json!({"bash_command": "test -n \"$HOME\" && echo \"$GREETING\"", "env": {"GREETING": 3}, "append_env": true}),
    );
    assert_eq!(
        h.run(appended).await,
        TryOutcome::Succeeded {
            xcom: Some(json!("3"))
        }
    );
}

#[tokio::test]
async fn the_last_line_of_stdout_and_stderr_as_one_stream_is_pushed_as_airflow_does() {
    let mut h = harness(4);
    let pushed = |outcome: TryOutcome| match outcome {
        TryOutcome::Succeeded { xcom } => xcom,
        other => panic!("the try failed: {other:?}"),
    };
    let err_last = h.spec(
        "err_last",
        json!({"bash_command": "echo out; sleep 0.2; echo 'err  ' >&2"}),
    );
    assert_eq!(pushed(h.run(err_last).await), Some(json!("err")));
    let log = read(&h.log("err_last"));
    assert!(
        log.contains("] stdout: out\n") && log.contains("] stderr: err  \n"),
        "stderr stays marked as stderr in the log: {log}"
    );
    let out_last = h.spec(
        "out_last",
        json!({"bash_command": "echo err >&2; sleep 0.2; printf 'out \\t\\n'"}),
    );
    assert_eq!(pushed(h.run(out_last).await), Some(json!("out")));
    let silent = h.spec("silent", json!({"bash_command": "true"}));
    assert_eq!(
        pushed(h.run(silent).await),
        Some(json!("")),
        "no output pushes \"\", which a pull renders empty"
    );
}

#[tokio::test]
async fn airflow_context_variables_are_set_and_win_over_the_tasks_env() {
    let mut h = harness(4);
    let context = gust_executor::TryContext {
        logical_date: Some(
            chrono::DateTime::parse_from_rfc3339("2024-01-01T06:30:00Z")
                .expect("a date")
                .to_utc(),
        ),
        owner: "data".into(),
        email: vec!["a@example.com".into(), "b@example.com".into()],
        ..gust_executor::TryContext::default()
    };
    let show = "echo \"$AIRFLOW_CTX_DAG_ID|$AIRFLOW_CTX_TASK_ID|$AIRFLOW_CTX_DAG_RUN_ID|$AIRFLOW_CTX_TRY_NUMBER|$AIRFLOW_CTX_LOGICAL_DATE|$AIRFLOW_CTX_DAG_OWNER|$AIRFLOW_CTX_DAG_EMAIL|${OTHER:-}|${HOME:-nohome}\"";
    let expected = "d|ctx|manual__1|1|2024-01-01T06:30:00+00:00|data|a@example.com,b@example.com";
    let mut inherited = h.spec("ctx", json!({ "bash_command": show }));
    inherited.context = context.clone();
    let home = std::env::var("HOME").unwrap_or_else(|_| "nohome".into());
    assert_eq!(
        h.run(inherited).await,
        TryOutcome::Succeeded {
            xcom: Some(json!(format!("{expected}||{home}")))
        }
    );
    // Airflow's BashOperator sets them after the task's `env`: they win over its names.
    let mut replaced = h.spec(
        "ctx",
        json!({"bash_command": show, "env": {"AIRFLOW_CTX_DAG_OWNER": "mine", "OTHER": "x"}}),
    );
    replaced.key.try_number = TryNumber(2);
    replaced.log_path = h.dir.path().join("logs/ctx/attempt=2.log");
    replaced.context = context;
    let outcome = h.executor.start(replaced.clone());
    outcome.expect("started");
    let replaced_outcome = finished(&mut h.events, &replaced.key, Duration::from_secs(20)).await;
    assert_eq!(
        replaced_outcome,
        TryOutcome::Succeeded {
            xcom: Some(json!(format!(
                "{}|x|nohome",
                expected.replace("|1|", "|2|")
            )))
        }
    );
    // An empty owner or no e-mail address is left out, not set empty.
    let mut bare = h.spec(
        "bare",
        json!({"bash_command": "echo \"${AIRFLOW_CTX_DAG_EMAIL-unset} ${AIRFLOW_CTX_DAG_OWNER-unset} ${AIRFLOW_CTX_LOGICAL_DATE-unset}\""}),
    );
    bare.context = gust_executor::TryContext::default();
    assert_eq!(
        h.run(bare).await,
        TryOutcome::Succeeded {
            xcom: Some(json!("unset unset unset"))
        }
    );
}

#[tokio::test]
async fn tries_run_in_a_fresh_temporary_folder_unless_cwd_is_given() {
    let mut h = harness(4);
    let spec = h.spec("tmp", json!({"bash_command": "pwd"}));
    let TryOutcome::Succeeded {
        xcom: Some(serde_json::Value::String(dir)),
    } = h.run(spec).await
    else {
        panic!("pwd failed")
    };
    assert!(dir.contains("gust-try-"), "{dir}");
    // A folder is handed to a later try only when the try before left it empty.
    for (task, command, found) in [
        ("leaves", "touch left; echo n=$(ls -A | wc -l)", "n=1"),
        ("finds", "echo n=$(ls -A | wc -l)", "n=0"),
    ] {
        let spec = h.spec(task, json!({ "bash_command": command }));
        assert_eq!(
            h.run(spec).await,
            TryOutcome::Succeeded {
                xcom: Some(json!(found))
            },
            "{task}: each try starts in an empty folder"
        );
    }
    // Ended tries' folders are removed (or kept for later tries) in the background;
    // shutting down waits for that and removes the kept ones.
    h.executor.shutdown().await;
    assert!(
        !Path::new(&dir).exists(),
        "the temporary folder is removed afterwards"
    );
    let mut h = harness(4);
    let cwd = h.dir.path().display().to_string();
    let spec = h.spec("cwd", json!({"bash_command": "pwd", "cwd": cwd}));
    assert_eq!(
        h.run(spec).await,
        TryOutcome::Succeeded {
            xcom: Some(json!(cwd))
        }
    );
}

#[tokio::test]
async fn parallelism_limits_how_many_tries_run_at_once() {
    let mut h = harness(1);
    let trace = h.dir.path().join("trace");
    for task in ["a", "b", "c"] {
        let command = format!(
            "echo start >> {0}; sleep 0.2; echo end >> {0}",
            trace.display()
        );
        h.executor
            .start(h.spec(task, json!({"bash_command": command})))
            .expect("started");
    }
    for task in ["a", "b", "c"] {
        assert!(matches!(
            h.finished(task).await,
            TryOutcome::Succeeded { .. }
        ));
    }
    assert_eq!(read(&trace), "start\nend\nstart\nend\nstart\nend\n");
}

#[tokio::test]
async fn bad_arguments_and_unknown_operators_are_refused_clearly() {
    let mut h = harness(4);
    let spec = h.spec("bad", json!({"bash_command": 5}));
    assert!(matches!(
        h.run(spec).await,
        TryOutcome::Failed(FailureReason::InvalidArguments(_))
    ));
    let mut spark = h.spec("spark", json!({}));
    spark.operator = "spark_kubernetes".into();
    assert_eq!(
        h.executor.start(spark),
        Err(LaunchError::UnknownOperator("spark_kubernetes".into()))
    );
    let mut empty = h.spec("noop", json!({}));
    empty.operator = "empty".into();
    assert_eq!(h.run(empty).await, TryOutcome::Succeeded { xcom: None });
}

#[tokio::test]
async fn the_same_try_cannot_run_twice_at_once() {
    let h = harness(4);
    h.executor
        .start(h.spec("once", json!({"bash_command": "sleep 1"})))
        .expect("started");
    assert!(matches!(
        h.executor
            .start(h.spec("once", json!({"bash_command": "sleep 1"}))),
        Err(LaunchError::AlreadyRunning(_))
    ));
    h.executor.shutdown().await;
}

#[tokio::test]
async fn shutdown_kills_running_tries() {
    let mut h = harness(4);
    h.executor
        .start(h.spec("long", json!({"bash_command": "sleep 30"})))
        .expect("started");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = std::time::Instant::now();
    h.executor.shutdown().await;
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(
        h.finished("long").await,
        TryOutcome::Failed(FailureReason::Killed("the runtime is shutting down".into()))
    );
    assert!(matches!(
        h.executor
            .start(h.spec("late", json!({"bash_command": "true"}))),
        Err(LaunchError::ShuttingDown)
    ));
}
