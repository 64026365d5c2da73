//! What a pod's status means for its try, as a pure function of the pod: still scheduling,
//! starting (and whether what holds it up is permanent or will pass), running, the base
//! container's end, or a failure, in words a user can act on.

use k8s_openapi::api::core::v1::{ContainerState, ContainerStatus, Pod};

/// The try's view of its pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodView {
    /// Not placed on a node yet; `unschedulable` is the scheduler's reason when it gave one.
    Unscheduled {
        /// Why the scheduler cannot place it (`0/3 nodes are available: ...`).
        unschedulable: Option<String>,
    },
    /// Placed, its base container not running yet.
    Starting {
        /// What it waits on, when Kubernetes says.
        waiting: Option<Waiting>,
    },
    /// The base container runs.
    Running,
    /// The base container ended.
    Ended(Ending),
    /// The pod ended before its base container ever ran, for a reason that is not the task's
    /// (evicted, preempted, its node lost): run it again without spending a try.
    LostBeforeStart(String),
    /// The pod failed for a reason that fails the try.
    Failed(String),
}

/// What a container waits on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    /// Kubernetes' reason (`ErrImagePull`, `CreateContainerConfigError`...).
    pub reason: String,
    /// Its message.
    pub message: String,
    /// Whether waiting cannot help (no such image, access denied, a missing secret).
    pub permanent: bool,
    /// The container.
    pub container: String,
}

impl Waiting {
    /// The failure message for a try whose pod cannot start.
    #[must_use]
    pub fn describe(&self) -> String {
        let hint = match self.reason.as_str() {
            "ErrImagePull" | "ImagePullBackOff" if self.permanent => {
                "; check the image name and tag, and `image_pull_secrets` for a private registry"
            }
            "InvalidImageName" => "; fix the task's `image`",
            "CreateContainerConfigError" => {
                "; a Secret or ConfigMap the pod uses is probably missing from its namespace"
            }
            _ => "",
        };
        format!(
            "container \"{}\" cannot start: {}: {}{hint}",
            self.container, self.reason, self.message
        )
    }
}

/// How the base container ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ending {
    /// Its exit code.
    pub exit_code: i32,
    /// Kubernetes' reason (`Completed`, `Error`, `OOMKilled`).
    pub reason: String,
    /// Its termination message (from /dev/termination-log).
    pub message: String,
}

/// Waiting reasons that never pass by themselves.
const PERMANENT_REASONS: &[&str] = &[
    "InvalidImageName",
    "ErrImageNeverPull",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
];

/// Words in an image pull error that mean it will pass (rate limits, registry outages).
const TRANSIENT_PULL_WORDS: &[&str] = &[
    "429",
    "toomanyrequests",
    "too many requests",
    "rate limit",
    "500 internal",
    "502 bad gateway",
    "503 service unavailable",
    "504 gateway",
    "timeout",
    "i/o timeout",
    "connection reset",
    "temporary failure",
];

/// Pod-level reasons meaning the pod was taken away, not failed by its task.
const TAKEN_AWAY_REASONS: &[&str] = &[
    "Evicted",
    "Preempting",
    "Preempted",
    "NodeLost",
    "NodeShutdown",
    "Terminated",
    "UnexpectedAdmissionError",
];

/// Reads `pod` as its try sees it; `base` names the base container.
#[must_use]
pub fn diagnose(pod: &Pod, base: &str) -> PodView {
    let Some(status) = &pod.status else {
        return PodView::Unscheduled {
            unschedulable: None,
        };
    };
    let phase = status.phase.as_deref().unwrap_or("Pending");
    let base_status = status
        .container_statuses
        .iter()
        .flatten()
        .find(|c| c.name == base);
    // A kubelet sends `lastState: {}` for a container that never ended: only a state that ran
    // counts as a start.
    let ran = |s: &ContainerState| s.running.is_some() || s.terminated.is_some();
    let base_started = base_status.is_some_and(|c| {
        c.state.as_ref().is_some_and(ran) || c.last_state.as_ref().is_some_and(ran)
    });
    // Gust deletes a try's pod only once it has decided the try; a deletion it sees while
    // following was someone else's.
    if pod.metadata.deletion_timestamp.is_some() {
        return PodView::Failed(if base_started {
            "the pod was deleted while it ran".to_owned()
        } else {
            "the pod was deleted before it started".to_owned()
        });
    }
    // Evicted, preempted, node lost: the pod's reason says more than its killed containers.
    let pod_reason = status.reason.as_deref().unwrap_or_default();
    if phase == "Failed" && TAKEN_AWAY_REASONS.contains(&pod_reason) {
        let said = join(pod_reason, status.message.as_deref().unwrap_or_default());
        return if base_started {
            PodView::Failed(format!("the pod was taken away while it ran: {said}"))
        } else {
            PodView::LostBeforeStart(said)
        };
    }
    if let Some(ending) = base_status.and_then(ending) {
        return PodView::Ended(ending);
    }

    if phase == "Failed" {
        let reason = status.reason.clone().unwrap_or_default();
        let message = status.message.clone().unwrap_or_default();
        let said = join(&reason, &message);
        if let Some(init) = failed_init(status.init_container_statuses.iter().flatten()) {
            return PodView::Failed(init);
        }
        if reason == "DeadlineExceeded" {
            return PodView::Failed(format!("the pod ran past activeDeadlineSeconds: {said}"));
        }
        return PodView::Failed(if said.is_empty() {
            "the pod failed".to_owned()
        } else {
            format!("the pod failed: {said}")
        });
    }
    if phase == "Succeeded" {
        // Every container ended, but the base container's status is missing: trust the phase.
        return PodView::Ended(Ending {
            exit_code: 0,
            reason: "Completed".to_owned(),
            message: String::new(),
        });
    }
    if base_started {
        return PodView::Running;
    }
    let scheduled = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "PodScheduled");
    if scheduled.is_none_or(|c| c.status != "True") {
        let unschedulable = scheduled
            .filter(|c| c.reason.as_deref() == Some("Unschedulable"))
            .map(|c| {
                c.message
                    .clone()
                    .unwrap_or_else(|| "Unschedulable".to_owned())
            });
        return PodView::Unscheduled { unschedulable };
    }
    if let Some(init) = failed_init(status.init_container_statuses.iter().flatten()) {
        return PodView::Failed(init);
    }
    let waiting = status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten())
        .find_map(waiting_of);
    // A permanent problem anywhere stops the pod; otherwise report the base container's.
    let waiting = match waiting {
        Some(w) if w.permanent => Some(w),
        other => base_status.and_then(waiting_of).or(other),
    };
    PodView::Starting { waiting }
}

fn join(reason: &str, message: &str) -> String {
    match (reason.is_empty(), message.is_empty()) {
        (true, _) => message.to_owned(),
        (false, true) => reason.to_owned(),
        (false, false) => format!("{reason}: {message}"),
    }
}

fn terminated(
    state: Option<&ContainerState>,
) -> Option<&k8s_openapi::api::core::v1::ContainerStateTerminated> {
    state.and_then(|s| s.terminated.as_ref())
}

fn ending(status: &ContainerStatus) -> Option<Ending> {
    let done = terminated(status.state.as_ref())?;
    Some(Ending {
        exit_code: done.exit_code,
        reason: done.reason.clone().unwrap_or_default(),
        message: done.message.clone().unwrap_or_default(),
    })
}

fn failed_init<'a>(mut inits: impl Iterator<Item = &'a ContainerStatus>) -> Option<String> {
    inits.find_map(|init| {
        let done = terminated(init.state.as_ref())?;
        (done.exit_code != 0).then(|| {
            let mut text = format!(
                "init container \"{}\" exited with code {}",
                init.name, done.exit_code
            );
            if let Some(message) = done.message.as_deref().filter(|m| !m.trim().is_empty()) {
                text.push_str(": ");
                text.push_str(message.trim());
            }
            text
        })
    })
}

fn waiting_of(status: &ContainerStatus) -> Option<Waiting> {
    let waiting = status.state.as_ref()?.waiting.as_ref()?;
    let reason = waiting.reason.clone().unwrap_or_default();
    let message = waiting.message.clone().unwrap_or_default();
    let permanent = match reason.as_str() {
        "ErrImagePull" => pull_error_is_permanent(&message),
        // Its message ("Back-off pulling image") does not say why: the pull error does, in
        // the pod's events (see `pull_error_is_permanent`).
        "ImagePullBackOff" => false,
        other => PERMANENT_REASONS.contains(&other),
    };
    Some(Waiting {
        reason,
        message,
        permanent,
        container: status.name.clone(),
    })
}

/// Whether an image pull error (an `ErrImagePull` message or a `Failed` event) will not pass
/// by waiting: no such image, access denied. Rate limits and registry outages pass.
#[must_use]
pub fn pull_error_is_permanent(message: &str) -> bool {
    let lower = message.to_lowercase();
    !TRANSIENT_PULL_WORDS.iter().any(|w| lower.contains(w))
}

/// The message for a base container that exited with `code`, with its termination message
/// (what it wrote to /dev/termination-log) when it left one. `memory_limit` names the limit
/// when the kernel killed it for memory.
#[must_use]
pub fn exit_message(container: &str, code: i32, termination_message: &str) -> String {
    let mut message = format!("container \"{container}\" exited with code {code}");
    if code == 137 {
        message.push_str(" (killed: SIGKILL, often the memory limit)");
    }
    let termination_message = termination_message.trim();
    if !termination_message.is_empty() {
        message.push_str(": ");
        message.push_str(termination_message);
    }
    message
}

/// The message for a base container that ended with `ending`; `memory_limit` is its limit.
#[must_use]
pub fn ending_message(container: &str, ending: &Ending, memory_limit: Option<&str>) -> String {
    if ending.reason == "OOMKilled" {
        let limit = memory_limit.map_or_else(
            || "no memory limit is set, so the node ran out of memory".to_owned(),
            |l| format!("its memory limit is {l}; raise `container_resources.limits.memory`"),
        );
        return format!(
            "container \"{container}\" was killed for using too much memory (OOMKilled, exit \
             code {}): {limit}",
            ending.exit_code
        );
    }
    exit_message(container, ending.exit_code, &ending.message)
}

#[cfg(test)]
mod tests;
