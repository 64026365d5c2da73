//! One container's scripted life: pull, create, start, print, run, end.
//!
//! Every step writes the container's status through the pod task, so each is one MODIFIED
//! watch event and, where the real kubelet emits one, an event.

use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::PodCommand;
use super::image;
use super::pod::{ContainerPlan, PodTask};
use super::pod_status::{self, Run, Termination};
use crate::clock;
use crate::events::{Reporter, Severity};
use crate::script::ImagePull;

/// How long `ErrImagePull` shows before the kubelet moves to `ImagePullBackOff`.
const ERR_IMAGE_PULL_SHOWN: Duration = Duration::from_millis(20);

/// The first pull back-off; it doubles per failure (the real kubelet starts at 10 s).
const PULL_BACK_OFF_INITIAL: Duration = Duration::from_millis(100);

/// The longest pull back-off (the real kubelet stops at 5 min).
const PULL_BACK_OFF_MAX: Duration = Duration::from_millis(1_600);

/// Runs the container as its script says and returns how it ended; never returns while it
/// cannot start (pull failures, config errors), as a real container would wait forever.
pub(super) async fn run(
    pod: &PodTask,
    plan: &ContainerPlan,
    mut stop: watch::Receiver<Option<i32>>,
) -> Run {
    pull(pod, plan).await;
    if let Some(message) = &plan.script.config_error {
        pod.update_container(&plan.name, |status, _| {
            status.state = Some(pod_status::waiting(
                "CreateContainerConfigError",
                Some(message.clone()),
            ));
        });
        pod.event(
            Some(&plan.name),
            Reporter::Kubelet,
            Severity::Warning,
            "Failed",
            format!("Error: {message}"),
        );
        return std::future::pending().await;
    }
    start(pod, plan);
    let log = pod.state.logs.container(&pod.key, &plan.name);
    let termination = tokio::select! {
        termination = behave(plan, &log) => termination,
        Ok(exit_code) = signalled(&mut stop) => Termination::exited(exit_code, None),
        () = evict_after(plan.script.evict_after) => {
            // The pod task evicts the pod and stops polling this future.
            let _ = pod.commands.send(PodCommand::Evict).await;
            return std::future::pending().await;
        }
    };
    if let Some(xcom) = &plan.script.xcom {
        pod.state.store().set_xcom(&pod.key, xcom.clone());
    }
    let init = plan.init;
    let mut ended = Run::Waiting;
    pod.update_container(&plan.name, |status, now| {
        pod_status::terminate(status, termination, now);
        // A completed init container reports ready, as the kubelet does.
        ended = pod_status::classify(status);
        status.ready = init && ended == Run::Succeeded;
    });
    log.finish();
    ended
}

/// Pulls the image, retrying with back-off while the script says the registry fails.
async fn pull(pod: &PodTask, plan: &ContainerPlan) {
    let image = &plan.image;
    let began = Instant::now();
    let lasting = match plan.script.image_pull {
        ImagePull::RateLimited { lasting } | ImagePull::Registry5xx { lasting } => Some(lasting),
        ImagePull::Ok | ImagePull::NotFound | ImagePull::Denied | ImagePull::InvalidName => None,
    };
    let mut back_off = PULL_BACK_OFF_INITIAL;
    loop {
        let failing = lasting.is_none_or(|lasting| began.elapsed() < lasting);
        let failure = image::attempt(image, &plan.script.image_pull, failing);
        let event = |severity, reason: &str, message: String| {
            pod.event(
                Some(&plan.name),
                Reporter::Kubelet,
                severity,
                reason,
                message,
            );
        };
        let Some(failure) = failure else {
            event(
                Severity::Normal,
                "Pulling",
                format!("Pulling image \"{image}\""),
            );
            let took = began.elapsed();
            event(
                Severity::Normal,
                "Pulled",
                format!(
                    "Successfully pulled image \"{image}\" in {took:?} ({took:?} including waiting). Image size: 4269 bytes."
                ),
            );
            return;
        };
        if !failure.retried {
            pod.update_container(&plan.name, |status, _| {
                status.state = Some(pod_status::waiting(
                    failure.reason,
                    Some(failure.message.clone()),
                ));
            });
            event(Severity::Warning, "InspectFailed", failure.message.clone());
            event(
                Severity::Warning,
                "Failed",
                format!("Error: {}", failure.reason),
            );
            return std::future::pending().await;
        }
        event(
            Severity::Normal,
            "Pulling",
            format!("Pulling image \"{image}\""),
        );
        pod.update_container(&plan.name, |status, _| {
            status.state = Some(pod_status::waiting(
                failure.reason,
                Some(failure.message.clone()),
            ));
        });
        event(Severity::Warning, "Failed", failure.message.clone());
        event(
            Severity::Warning,
            "Failed",
            format!("Error: {}", failure.reason),
        );
        tokio::time::sleep(ERR_IMAGE_PULL_SHOWN).await;
        let back_off_message = image::back_off_message(image);
        pod.update_container(&plan.name, |status, _| {
            status.state = Some(pod_status::waiting(
                "ImagePullBackOff",
                Some(back_off_message.clone()),
            ));
        });
        event(Severity::Normal, "BackOff", back_off_message);
        event(
            Severity::Warning,
            "Failed",
            "Error: ImagePullBackOff".to_owned(),
        );
        tokio::time::sleep(back_off).await;
        back_off = (back_off * 2).min(PULL_BACK_OFF_MAX);
    }
}

/// Creates and starts the container.
fn start(pod: &PodTask, plan: &ContainerPlan) {
    let container_id = format!(
        "containerd://{:016x}{:048x}",
        clock::now().as_nanosecond().unsigned_abs(),
        plan.name.len()
    );
    let image_id = image::image_id(&plan.image);
    let init = plan.init;
    pod.update_container(&plan.name, |status, now| {
        status.container_id = Some(container_id);
        status.image_id = image_id;
        status.state = Some(pod_status::running(now));
        status.started = Some(true);
        // Without readiness probes a running container is ready; init containers only on success.
        status.ready = !init;
    });
    pod.event(
        Some(&plan.name),
        Reporter::Kubelet,
        Severity::Normal,
        "Created",
        format!("Created container: {}", plan.name),
    );
    pod.event(
        Some(&plan.name),
        Reporter::Kubelet,
        Severity::Normal,
        "Started",
        format!("Started container {}", plan.name),
    );
}

/// Prints the script's lines, runs, and says how the process ended.
async fn behave(plan: &ContainerPlan, log: &crate::logs::ContainerLog) -> Termination {
    let script = &plan.script;
    for line in &script.lines {
        log.append(clock::now(), line.clone());
        if !script.line_interval.is_zero() {
            tokio::time::sleep(script.line_interval).await;
        }
    }
    if script.runs_forever {
        return std::future::pending().await;
    }
    if !script.runs_for.is_zero() {
        tokio::time::sleep(script.runs_for).await;
    }
    if script.oom_killed {
        Termination {
            exit_code: 137,
            reason: "OOMKilled",
            message: script.termination_message.clone(),
        }
    } else {
        Termination::exited(script.exit_code, script.termination_message.clone())
    }
}

/// The exit code of the signal the container gets, once it gets one.
async fn signalled(
    stop: &mut watch::Receiver<Option<i32>>,
) -> Result<i32, watch::error::RecvError> {
    let code = stop.wait_for(Option::is_some).await?;
    Ok(code.unwrap_or_default())
}

async fn evict_after(after: Option<Duration>) {
    match after {
        Some(after) => tokio::time::sleep(after).await,
        None => std::future::pending().await,
    }
}
