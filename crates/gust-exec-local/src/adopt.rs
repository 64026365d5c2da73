//! Adopting a try that an earlier process of the scheduler started: its process is not our
//! child, so its record (record.rs) tells whether it still runs and how it ended.

use std::time::Duration;

use gust_core::clock::Clock;
use gust_executor::{FailureReason, LaunchSpec, TryOutcome};
use gust_operators::bash::BashArgs;

use crate::output::LogWriter;
use crate::record::{RecordStatus, TryRecord};
use gust_executor::running::TryHandle;

use crate::{LocalConfig, bash, group};

/// How often an adopted try that still runs is looked at. Its process is not our child, so
/// nothing wakes us when it ends; adopted tries exist only after a crash, so the cost is small.
const POLL: Duration = Duration::from_millis(100);

/// Waits for the adopted try to end and says how it did.
pub async fn wait(
    spec: &LaunchSpec,
    config: &LocalConfig,
    clock: &dyn Clock,
    handle: &TryHandle,
) -> TryOutcome {
    let Some(dir) = &config.state_dir else {
        return TryOutcome::Failed(FailureReason::Lost(
            "this runtime keeps no records (it has no state folder)".into(),
        ));
    };
    let record = TryRecord::find(dir, &spec.key);
    let mut log = LogWriter::open(&spec.log_path, clock).await.ok();
    let mut noted = false;
    // The try's execution_timeout still counts from its start, before the restart.
    let deadline = spec.execution_timeout.and_then(|limit| {
        let started = record.started_at()?;
        let limit_left = chrono::Duration::from_std(limit).ok()? - (clock.now() - started);
        Some(tokio::time::Instant::now() + limit_left.to_std().unwrap_or(Duration::ZERO))
    });
    let outcome = loop {
        match record.status() {
            RecordStatus::Exited(code) => break exited(spec, code),
            RecordStatus::Signaled(signal) => {
                break TryOutcome::Failed(FailureReason::Signal(signal));
            }
            RecordStatus::Absent => break TryOutcome::NeverStarted,
            RecordStatus::Vanished => {
                break TryOutcome::Failed(FailureReason::Lost(
                    "its process ended without recording an exit code".into(),
                ));
            }
            RecordStatus::Running => {
                if !noted {
                    noted = true;
                    note(&mut log, "the scheduler restarted; adopted the try, which is still running (its further output is not captured)").await;
                }
                tokio::select! {
                    () = tokio::time::sleep(POLL) => {}
                    () = sleep_until(deadline) => {
                        let limit = spec.execution_timeout.unwrap_or_default();
                        note(&mut log, &format!("execution_timeout of {}s reached: killing the try", limit.as_secs_f64())).await;
                        if let Some(pgid) = record.pid() {
                            group::terminate(pgid, config.kill_grace).await;
                        }
                        break TryOutcome::Failed(FailureReason::TimedOut(limit));
                    }
                    () = handle.cancel.cancelled() => {
                        let reason = handle.reason();
                        if let Some(pgid) = record.pid() {
                            group::terminate(pgid, config.kill_grace).await;
                        }
                        break TryOutcome::Failed(FailureReason::Killed(reason));
                    }
                }
            }
        }
    };
    let summary = match &outcome {
        TryOutcome::Succeeded { .. } | TryOutcome::SucceededReporting { .. } => {
            format!("adopted {}", outcome.summary())
        }
        TryOutcome::Skipped { exit_code } => {
            format!("adopted try exited with skip code {exit_code}")
        }
        TryOutcome::SkippedItself { reason } => format!("adopted try skipped: {reason}"),
        TryOutcome::Rescheduled { .. } | TryOutcome::Deferred(_) => {
            format!("adopted {}", outcome.summary())
        }
        TryOutcome::Failed(reason) => format!("adopted try failed: {reason}"),
        TryOutcome::NeverStarted => "the try never started; it will be queued again".to_owned(),
    };
    note(&mut log, &summary).await;
    outcome
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn note(log: &mut Option<LogWriter<'_>>, text: &str) {
    if let Some(writer) = log.as_mut() {
        let _ = writer.line("gust", text).await;
        let _ = writer.flush().await;
    }
}

/// The outcome of an adopted try that exited with `code`.
fn exited(spec: &LaunchSpec, code: i32) -> TryOutcome {
    if spec.operator != "bash" {
        return TryOutcome::Failed(FailureReason::Lost(format!(
            "operator {} leaves no record to adopt",
            spec.operator
        )));
    }
    let args: BashArgs = match gust_operators::read_args(&spec.args) {
        Ok(args) => args,
        Err(err) => return TryOutcome::Failed(FailureReason::InvalidArguments(err.to_string())),
    };
    match bash::outcome_of_code(code, &args, false, None) {
        // Its return value is the last line of its output, which went to the scheduler that died:
        // succeeding without it would hand downstream tasks a missing value.
        TryOutcome::Succeeded { .. } if spec.do_xcom_push => TryOutcome::Failed(
            FailureReason::Lost("it succeeded, but its XCom (the last line of its output) was lost with the scheduler".into()),
        ),
        outcome => outcome,
    }
}
