//! Adopting tries after a scheduler restart, with real processes: a second runtime over the same
//! state folder plays the restarted scheduler.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use gust_core::clock::SystemClock;
use gust_core::ids::{DagId, RunId, TaskId, TryNumber};
use gust_exec_local::{LocalConfig, LocalExecutor};
use gust_executor::{
    Executor, FailureReason, LaunchSpec, TryEvent, TryEventKind, TryKey, TryOutcome, event_channel,
};
use serde_json::json;
use tokio::sync::mpsc::Receiver;

fn runtime(state: &Path) -> (LocalExecutor, Receiver<TryEvent>) {
    let (tx, events) = event_channel();
    let config = LocalConfig {
        kill_grace: Duration::from_millis(300),
        state_dir: Some(state.to_path_buf()),
        ..LocalConfig::default()
    };
    (
        LocalExecutor::new(config, tx, Arc::new(SystemClock)),
        events,
    )
}

fn spec(dir: &Path, task: &str, command: &str, do_xcom_push: bool) -> LaunchSpec {
    LaunchSpec {
        key: TryKey {
            dag_id: DagId::new("d").expect("id"),
            run_id: RunId::new("manual__1").expect("id"),
            task_id: TaskId::new(task).expect("id"),
            map_index: gust_core::mapping::UNMAPPED,
            try_number: TryNumber(1),
        },
        operator: "bash".into(),
        args: json!({"bash_command": command})
            .as_object()
            .cloned()
            .expect("map"),
        do_xcom_push,
        execution_timeout: None,
        log_path: dir.join(format!("logs/{task}.log")),
        dag_file: dir.join("dag.yaml"),
        context: Default::default(),
    }
}

async fn finished(events: &mut Receiver<TryEvent>) -> TryOutcome {
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let event = events.recv().await.expect("the runtime is alive");
            if let TryEventKind::Finished(outcome) = event.kind {
                return outcome;
            }
        }
    })
    .await
    .expect("the try finished in time")
}

#[tokio::test]
async fn a_try_still_running_is_waited_for_and_its_exit_code_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    let (first, mut first_events) = runtime(&state);
    let try_spec = spec(dir.path(), "t", "sleep 0.5; exit 3", false);
    first.start(try_spec.clone()).expect("started");
    tokio::time::sleep(Duration::from_millis(150)).await;

    let (second, mut second_events) = runtime(&state);
    second.adopt(try_spec.clone());
    assert_eq!(
        finished(&mut second_events).await,
        TryOutcome::Failed(FailureReason::ExitCode(3))
    );
    assert_eq!(
        finished(&mut first_events).await,
        TryOutcome::Failed(FailureReason::ExitCode(3))
    );
    let log = std::fs::read_to_string(&try_spec.log_path).expect("log");
    assert!(
        log.contains("adopted the try, which is still running"),
        "{log}"
    );
}

#[tokio::test]
async fn a_try_that_ended_is_known_by_its_exit_code_and_xcom_pushers_are_lost() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    let (first, mut first_events) = runtime(&state);
    let quiet = spec(dir.path(), "quiet", "true", false);
    let pusher = spec(dir.path(), "pusher", "echo 42", true);
    first.start(quiet.clone()).expect("started");
    finished(&mut first_events).await;
    first.start(pusher.clone()).expect("started");
    finished(&mut first_events).await;

    let (second, mut events) = runtime(&state);
    second.adopt(quiet.clone());
    assert_eq!(
        finished(&mut events).await,
        TryOutcome::Succeeded { xcom: None }
    );
    second.adopt(pusher);
    assert!(matches!(
        finished(&mut events).await,
        TryOutcome::Failed(FailureReason::Lost(why)) if why.contains("XCom")
    ));
    second.release(&quiet.key);
    second.adopt(quiet);
    assert_eq!(finished(&mut events).await, TryOutcome::NeverStarted);
}

#[tokio::test]
async fn a_try_killed_without_a_trace_is_lost_and_one_never_handed_over_never_started() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    let (first, mut first_events) = runtime(&state);
    let doomed = spec(dir.path(), "doomed", "kill -9 $$", false);
    first.start(doomed.clone()).expect("started");
    assert_eq!(
        finished(&mut first_events).await,
        TryOutcome::Failed(FailureReason::Signal(9))
    );

    let (second, mut events) = runtime(&state);
    second.adopt(doomed);
    assert!(matches!(
        finished(&mut events).await,
        TryOutcome::Failed(FailureReason::Lost(_))
    ));
    second.adopt(spec(dir.path(), "never", "true", false));
    assert_eq!(finished(&mut events).await, TryOutcome::NeverStarted);
}

/// The process group of the try whose log is `log`, once its start is logged.
async fn process_group(log: &Path) -> i32 {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let pgid = text
                .split("process group ")
                .nth(1)
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|n| n.parse().ok());
            if let Some(pgid) = pgid {
                return pgid;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the try started")
}

#[tokio::test]
async fn a_bash_try_killed_by_a_signal_is_recorded_as_killed_not_as_its_last_status() {
    use nix::sys::signal::Signal;
    for signal in [Signal::SIGPIPE, Signal::SIGTERM] {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = dir.path().join("state");
        let (first, mut first_events) = runtime(&state);
        // Its last command succeeds again and again: before the fix, bash's EXIT trap recorded
        // that 0 as it died of the signal, and the adopted try "succeeded but lost its XCom".
        let looping = spec(
            dir.path(),
            "looping",
            "echo started; while :; do sleep 0.05; done",
            true,
        );
        first.start(looping.clone()).expect("started");
        let pgid = process_group(&looping.log_path).await;
        // Bash alone gets the signal, as bash does when it writes to the pipe of a scheduler
        // that is gone (SIGPIPE) or a user kills it.
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pgid), signal).expect("signalled");
        assert_eq!(
            finished(&mut first_events).await,
            TryOutcome::Failed(FailureReason::Signal(signal as i32)),
            "bash still dies of {signal}"
        );

        let (second, mut events) = runtime(&state);
        second.adopt(looping.clone());
        assert_eq!(
            finished(&mut events).await,
            TryOutcome::Failed(FailureReason::Signal(signal as i32)),
            "the record names {signal}"
        );
        let log = std::fs::read_to_string(&looping.log_path).expect("log");
        assert!(
            log.contains(&format!(
                "adopted try failed: killed by signal {}",
                signal as i32
            )),
            "{log}"
        );
    }
}

#[tokio::test]
async fn a_try_readied_during_its_commit_runs_and_a_discarded_one_leaves_nothing_behind() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    let (runtime, mut events) = runtime(&state);
    let kept = spec(dir.path(), "kept", "echo hi", true);
    runtime.prepare(&kept);
    runtime.start(kept.clone()).expect("started");
    assert_eq!(
        finished(&mut events).await,
        TryOutcome::Succeeded {
            xcom: Some(json!("hi"))
        }
    );
    let log = std::fs::read_to_string(&kept.log_path).expect("log");
    assert!(
        log.contains("started d.kept manual__1 try 1 (bash)"),
        "{log}"
    );
    assert!(log.contains("stdout: hi"), "{log}");

    let dropped = spec(dir.path(), "dropped", "true", false);
    runtime.prepare(&dropped);
    runtime.discard(&dropped.key);
    // Shutting down waits for the clean-up.
    runtime.shutdown().await;
    assert!(!dropped.log_path.exists(), "its empty log is removed");
    let left: Vec<String> = std::fs::read_dir(&state)
        .expect("state folder")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert!(
        left.iter().all(|name| !name.contains("task_id=dropped")),
        "{left:?}"
    );
}

#[tokio::test]
async fn a_try_readied_again_right_after_being_discarded_keeps_its_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    let (first, mut events) = runtime(&state);
    // Its move lost (discarded), then was made again: the same try, the same paths. The first
    // readying's clean-up must not take the second one's files.
    for round in 0..20 {
        let again = spec(dir.path(), &format!("again{round}"), "echo out", true);
        first.prepare(&again);
        first.discard(&again.key);
        first.prepare(&again);
        first.start(again.clone()).expect("started");
        assert_eq!(
            finished(&mut events).await,
            TryOutcome::Succeeded {
                xcom: Some(json!("out"))
            }
        );
        let log = std::fs::read_to_string(&again.log_path).expect("the log is kept");
        assert!(log.contains("stdout: out"), "{log}");
        let (other, mut other_events) = runtime(&state);
        other.adopt(again.clone());
        assert_eq!(
            finished(&mut other_events).await,
            TryOutcome::Failed(FailureReason::Lost(
                "it succeeded, but its XCom (the last line of its output) was lost with the scheduler".into()
            )),
            "its record is kept until released"
        );
    }
}

#[tokio::test]
async fn a_try_readied_when_the_scheduler_died_never_started() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    let (first, _first_events) = runtime(&state);
    let orphan = spec(dir.path(), "orphan", "true", false);
    first.prepare(&orphan);
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let readied = std::fs::read_dir(&state).is_ok_and(|mut entries| {
                entries.any(|e| e.is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".lock")))
            });
            if readied {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the try's record was readied");
    // The scheduler dies before its commit went through: nothing was spawned.
    drop(first);

    let (second, mut events) = runtime(&state);
    second.adopt(orphan);
    assert_eq!(finished(&mut events).await, TryOutcome::NeverStarted);
}

#[tokio::test]
async fn an_adopted_try_can_be_killed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    let (first, mut first_events) = runtime(&state);
    let long = spec(dir.path(), "long", "sleep 30", false);
    first.start(long.clone()).expect("started");
    tokio::time::sleep(Duration::from_millis(150)).await;

    let (second, mut events) = runtime(&state);
    second.adopt(long.clone());
    tokio::time::sleep(Duration::from_millis(150)).await;
    second.kill(&long.key, "cleared by a user");
    assert_eq!(
        finished(&mut events).await,
        TryOutcome::Failed(FailureReason::Killed("cleared by a user".into()))
    );
    assert!(matches!(
        finished(&mut first_events).await,
        TryOutcome::Failed(FailureReason::Signal(_))
    ));
}

#[tokio::test]
async fn an_adopted_try_still_times_out_from_its_own_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    let (first, mut first_events) = runtime(&state);
    let long = spec(dir.path(), "long", "sleep 30", false);
    // The first scheduler "dies" (it never enforces the timeout); the second adopts the try.
    first.start(long.clone()).expect("started");
    tokio::time::sleep(Duration::from_millis(300)).await;

    let (second, mut events) = runtime(&state);
    let mut adopted = long.clone();
    adopted.execution_timeout = Some(Duration::from_secs(1));
    let began = std::time::Instant::now();
    second.adopt(adopted);
    assert_eq!(
        finished(&mut events).await,
        TryOutcome::Failed(FailureReason::TimedOut(Duration::from_secs(1)))
    );
    assert!(
        began.elapsed() < Duration::from_millis(1500),
        "counted from the try's start, not the adoption"
    );
    assert!(matches!(
        finished(&mut first_events).await,
        TryOutcome::Failed(FailureReason::Signal(_))
    ));
}
