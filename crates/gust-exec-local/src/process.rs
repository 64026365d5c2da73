//! One local try: run the [`Plan`] its operator made (a bash script) in its own process group,
//! stream its output to the log, enforce the timeout, and map the exit to an outcome.

use std::future::Future;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};

use gust_core::clock::Clock;
use gust_executor::running::TryHandle;
use gust_executor::{FailureReason, LaunchSpec, TryOutcome};
use tokio::process::Command;
use tokio_util::task::TaskTracker;

use crate::LocalConfig;
use crate::group;
use crate::output::{Decoder, Lines, LogWriter};
use crate::ready::{Readied, Ready, Recording};
use crate::record::{EXIT_FILE_VAR, EXIT_TRAP, TryRecord};

/// How long output is still read after the main process exits, for pipes held by its children.
use std::time::Duration;

const DRAIN_GRACE: std::time::Duration = std::time::Duration::from_secs(2);
/// How long a written log line may sit in the log's buffer before it reaches the file, where
/// the API and the UI tail it. Flushing on a timer, not per line, keeps chatty tasks cheap.
const LOG_FLUSH_INTERVAL: std::time::Duration = std::time::Duration::from_millis(250);

/// Maps a try's exit code and last line of output to its outcome.
pub type Finish = Box<dyn FnOnce(i32, Option<String>) -> TryOutcome + Send>;

/// What a try runs, as its operator prepared it.
pub struct Plan {
    /// The script, run by `bash -c`.
    pub script: String,
    /// Its environment: `None` inherits the scheduler's.
    pub env: Option<Vec<(String, String)>>,
    /// Whether `env` replaces the inherited environment rather than adding to it.
    pub clear_env: bool,
    /// Its working folder.
    pub cwd: PathBuf,
    /// How its output is decoded.
    pub decoder: Decoder,
    /// How a decoded line of output reads in the log (and as the last line).
    pub render: fn(String) -> String,
    /// What is started, for the log (`bash`, `local pod NAME`).
    pub what: String,
    /// Folders that must live as long as the try (removed when it ends).
    pub folders: Vec<tempfile::TempDir>,
    /// The empty folder a bash try runs in (given back when it ends).
    pub scratch: Option<crate::reuse::Scratch>,
    /// How its exit maps to an outcome.
    pub finish: Finish,
    /// A check made while the process runs, which may end the try.
    pub watchdog: Option<Watchdog>,
}

/// A check the runtime makes every `every` while a try's process runs: `Some(why)` kills the
/// try, which fails for that reason (a Python worker that stopped heartbeating).
pub struct Watchdog {
    /// How often it checks.
    pub every: Duration,
    /// The check.
    pub check: Box<dyn FnMut() -> Option<String> + Send>,
    /// How long ago the task itself started executing, while it does (a Python worker's task,
    /// between reaching `execute` and reporting its end): with it, the try's `execution_timeout`
    /// counts from then rather than from the process's start, as Airflow's task runner counts
    /// it, and no longer applies once the task reported its end. Asked every [`START_POLL`].
    pub running_for: Option<Box<dyn Fn() -> Option<Duration> + Send>>,
}

/// How often a try whose `execution_timeout` counts from its task's start asks when it started.
const START_POLL: Duration = Duration::from_millis(100);

/// Runs one try to its end: plans a pod try (a bash try comes planned), runs it, logs the
/// outcome.
pub async fn run<F, Fut>(
    spec: &LaunchSpec,
    config: &LocalConfig,
    clock: &dyn Clock,
    ready: Ready,
    cleanup: &TaskTracker,
    handle: &TryHandle,
    started: F,
) -> TryOutcome
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = ()>,
{
    let mut log = LogWriter::from_file(ready.log, clock);
    let planned = match ready.readied {
        Err(outcome) => Err(outcome),
        Ok(Readied {
            plan: Some(plan),
            record,
        }) => Ok((plan, record)),
        Ok(Readied { plan: None, record }) => match spec.operator.as_str() {
            "kubernetes_pod" => crate::pod::plan(spec, &config.secrets, config.sandbox, &mut log)
                .await
                .map(|plan| (plan, record)),
            other => Err(TryOutcome::Failed(FailureReason::InvalidArguments(
                format!("the local runtime does not run operator \"{other}\""),
            ))),
        },
    };
    let outcome = match planned {
        Ok((plan, record)) => {
            let parts = TryParts {
                spec,
                plan,
                record,
                config,
                cleanup,
            };
            run_plan(parts, &mut log, handle, started).await
        }
        Err(outcome) => outcome,
    };
    let summary = outcome.summary();
    let _ = log.line("gust", &summary).await;
    let _ = log.flush().await;
    outcome
}

/// What a planned try runs with.
struct TryParts<'a> {
    spec: &'a LaunchSpec,
    plan: Plan,
    record: Option<Recording>,
    config: &'a LocalConfig,
    /// Runs the clean-up left for after the outcome (removing the scratch folder).
    cleanup: &'a TaskTracker,
}

async fn run_plan<F, Fut>(
    parts: TryParts<'_>,
    log: &mut LogWriter<'_>,
    handle: &TryHandle,
    started: F,
) -> TryOutcome
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = ()>,
{
    let TryParts {
        spec,
        mut plan,
        record,
        config,
        cleanup,
    } = parts;
    // With a state folder, the try leaves a record a restarted scheduler can read (record.rs):
    // its lock is the process's stdin, and bash writes its exit code as it exits.
    let (stdin, pid_writer, exit_path) = match record {
        Some(Recording {
            record,
            lock,
            pid_writer,
        }) => (
            Stdio::from(lock),
            Some(pid_writer),
            Some(record.exit_path().to_owned()),
        ),
        None => (Stdio::null(), None, None),
    };
    let script = match &exit_path {
        Some(_) => format!("{}{}", *EXIT_TRAP, plan.script),
        None => plan.script.clone(),
    };
    let mut command = Command::new(&config.bash);
    command
        .arg("-c")
        .arg(&script)
        .current_dir(&plan.cwd)
        .process_group(0)
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(env) = &plan.env {
        if plan.clear_env {
            command.env_clear();
        }
        command.envs(env.iter().map(|(k, v)| (k, v)));
    }
    if let Some(path) = &exit_path {
        command.env(EXIT_FILE_VAR, path);
    }
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(err) => {
            return TryOutcome::Failed(FailureReason::Spawn(format!("{}: {err}", config.bash)));
        }
    };
    // The parent's copy of the lock is closed with `command`; the child's keeps it.
    drop(command);
    let pgid = child.id().unwrap_or(0);
    if let Some(mut lock) = pid_writer {
        // Without it an adopted try can be waited for but not killed; the try itself is fine.
        // Our handle closes here: the lock stays held by the process's.
        let _ = TryRecord::write_pid(&mut lock, pgid);
    }
    // Said once the process runs, so that a try's log never says it started when it did not;
    // flushed now, so that it says so even if the scheduler dies during the try.
    let _ = log
        .line(
            "gust",
            &format!(
                "started {} ({}) in {}, process group {pgid}",
                spec.key,
                plan.what,
                plan.cwd.display()
            ),
        )
        .await;
    let _ = log.flush().await;
    started().await;
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return TryOutcome::Failed(FailureReason::Spawn("no output pipes".into()));
    };
    let decoder = plan.decoder;
    let render = plan.render;
    // The pod's volumes and the scratch folder outlive the process, then go with the try.
    let folders = (plan.folders, plan.scratch);
    let mut out = Lines::new(stdout);
    let mut err = Lines::new(stderr);
    let (mut out_open, mut err_open) = (true, true);
    let mut last_line: Option<String> = None;
    let mut status: Option<ExitStatus> = None;
    let timeout = spec.execution_timeout;
    let running_for = plan.watchdog.as_mut().and_then(|w| w.running_for.take());
    // Without a task start to wait for, the timeout counts from the process's start.
    let mut deadline = timeout
        .filter(|_| running_for.is_none())
        .map(|t| tokio::time::Instant::now() + t);
    let mut start_poll = tokio::time::interval(START_POLL);
    start_poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut drain_deadline = None;
    let mut flush_every = tokio::time::interval(LOG_FLUSH_INTERVAL);
    flush_every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut watchdog = plan.watchdog;
    let mut watch_every = tokio::time::interval(
        watchdog
            .as_ref()
            .map_or(Duration::from_secs(3600), |w| w.every),
    );
    watch_every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    while status.is_none() || out_open || err_open {
        // In a fixed order, so that a try's outcome does not depend on chance: the flush
        // timer and what ends the try first (each ready once), then stderr before stdout.
        // Airflow reads both as one stream (stderr merged into stdout); two pipes keep stderr
        // marked in the log but lose the order of lines written at the same instant, and
        // reading stderr first makes stdout's the last line then, which is what is pushed.
        tokio::select! {
            biased;
            _ = flush_every.tick() => {
                let _ = log.flush().await;
            },
            () = handle.cancel.cancelled(), if status.is_none() => {
                let reason = handle.reason();
                let _ = log.line("gust", &format!("killing the try: {reason}")).await;
                return fail_killing(pgid, config, FailureReason::Killed(reason)).await;
            },
            _ = start_poll.tick(), if timeout.is_some() && running_for.is_some() && status.is_none() => {
                // No answer: not executing yet, or no more (its end is reported), so no deadline.
                deadline = timeout
                    .zip(running_for.as_ref().and_then(|f| f()))
                    .map(|(limit, ran)| tokio::time::Instant::now() + limit.saturating_sub(ran));
            },
            () = sleep_until(deadline), if deadline.is_some() && status.is_none() => {
                let limit = timeout.unwrap_or_default();
                let _ = log.line("gust", &format!("execution_timeout of {}s reached: killing the try", limit.as_secs_f64())).await;
                return fail_killing(pgid, config, FailureReason::TimedOut(limit)).await;
            },
            _ = watch_every.tick(), if watchdog.is_some() && status.is_none() => {
                if let Some(why) = watchdog.as_mut().and_then(|w| (w.check)()) {
                    let _ = log.line("gust", &format!("killing the try: {why}")).await;
                    return fail_killing(pgid, config, FailureReason::Task(why)).await;
                }
            },
            () = sleep_until(drain_deadline), if drain_deadline.is_some() => {
                group::signal(pgid, nix::sys::signal::Signal::SIGKILL);
                break;
            },
            exit = child.wait(), if status.is_none() => match exit {
                Ok(exit) => {
                    status = Some(exit);
                    // Leftover children of the command are ended, as their output is no longer wanted.
                    group::signal(pgid, nix::sys::signal::Signal::SIGTERM);
                    drain_deadline = Some(tokio::time::Instant::now() + DRAIN_GRACE);
                }
                Err(e) => return fail_killing(pgid, config, FailureReason::Spawn(format!("lost the process: {e}"))).await,
            },
            line = err.next_line(), if err_open => match line {
                Ok(Some(bytes)) => {
                    let text = render(decoder.decode(&bytes));
                    if log.line("stderr", &text).await.is_err() {
                        return fail_killing(pgid, config, FailureReason::Log(spec.log_path.display().to_string())).await;
                    }
                    last_line = Some(text);
                }
                _ => err_open = false,
            },
            line = out.next_line(), if out_open => match line {
                Ok(Some(bytes)) => {
                    let text = render(decoder.decode(&bytes));
                    if log.line("stdout", &text).await.is_err() {
                        return fail_killing(pgid, config, FailureReason::Log(spec.log_path.display().to_string())).await;
                    }
                    last_line = Some(text);
                }
                _ => out_open = false,
            },
        }
        if !out_open || !err_open {
            let _ = log.flush().await;
        }
    }
    let _ = log.flush().await;
    // A pod's outcome is read from its folders.
    let outcome = outcome(status, plan.finish, last_line);
    // Removing a folder takes the file system a while: it is done off the try's way to its
    // outcome, and `LocalExecutor::shutdown` waits for it.
    if !folders.0.is_empty() || folders.1.is_some() {
        cleanup.spawn_blocking(move || drop(folders));
    }
    outcome
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn fail_killing(pgid: u32, config: &LocalConfig, reason: FailureReason) -> TryOutcome {
    group::terminate(pgid, config.kill_grace).await;
    TryOutcome::Failed(reason)
}

fn outcome(status: Option<ExitStatus>, finish: Finish, last_line: Option<String>) -> TryOutcome {
    use std::os::unix::process::ExitStatusExt;
    let Some(status) = status else {
        return TryOutcome::Failed(FailureReason::Spawn(
            "the process ended without a status".into(),
        ));
    };
    match (status.code(), status.signal()) {
        (Some(code), _) => finish(code, last_line),
        (None, Some(signal)) => TryOutcome::Failed(FailureReason::Signal(signal)),
        (None, None) => TryOutcome::Failed(FailureReason::Spawn(
            "the process ended without a status".into(),
        )),
    }
}
