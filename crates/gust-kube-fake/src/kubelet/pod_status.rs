//! Pure pod-status rules: phase and conditions from container states, as the kubelet derives them.
//!
//! Everything here is a function of the status and `now`; the pod task decides when to call it.
//! Pods behave as with `restartPolicy: Never`: a failed init container fails the pod, and the
//! pod ends once every container has ended.

use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    ContainerStatus, PodCondition, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

/// The eviction message the kubelet writes under memory pressure.
pub(crate) const EVICTION_MESSAGE: &str = "The node was low on resource: memory.";

const UNKNOWN_MESSAGE: &str = "The container could not be located when the pod was terminated";

/// Where a container is in its life, read from its status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Run {
    /// Not started (or no state yet).
    Waiting,
    /// Started and not ended.
    Running,
    /// Ended with exit code 0.
    Succeeded,
    /// Ended with a non-zero exit code.
    Failed,
}

/// Where the container is in its life.
pub(crate) fn classify(status: &ContainerStatus) -> Run {
    let state = status.state.as_ref();
    if let Some(terminated) = state.and_then(|s| s.terminated.as_ref()) {
        if terminated.exit_code == 0 {
            Run::Succeeded
        } else {
            Run::Failed
        }
    } else if state.and_then(|s| s.running.as_ref()).is_some() {
        Run::Running
    } else {
        Run::Waiting
    }
}

/// A waiting state with a reason and an optional message.
pub(crate) fn waiting(reason: &str, message: Option<String>) -> ContainerState {
    ContainerState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(reason.to_owned()),
            message,
        }),
        ..ContainerState::default()
    }
}

/// A running state since `started`.
pub(crate) fn running(started: Timestamp) -> ContainerState {
    ContainerState {
        running: Some(ContainerStateRunning {
            started_at: Some(Time(started)),
        }),
        ..ContainerState::default()
    }
}

/// How a container ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Termination {
    /// The exit code.
    pub(crate) exit_code: i32,
    /// `Completed`, `Error`, `OOMKilled` or `ContainerStatusUnknown`.
    pub(crate) reason: &'static str,
    /// The termination message, if any.
    pub(crate) message: Option<String>,
}

impl Termination {
    /// A process exit with `exit_code`: `Completed` for 0, else `Error`.
    pub(crate) fn exited(exit_code: i32, message: Option<String>) -> Self {
        Termination {
            exit_code,
            reason: if exit_code == 0 { "Completed" } else { "Error" },
            message,
        }
    }
}

/// Ends the container's current state as `termination` at `now`.
pub(crate) fn terminate(status: &mut ContainerStatus, termination: Termination, now: Timestamp) {
    let started_at = status
        .state
        .as_ref()
        .and_then(|state| state.running.as_ref())
        .and_then(|running| running.started_at.clone());
    status.state = Some(ContainerState {
        terminated: Some(ContainerStateTerminated {
            exit_code: termination.exit_code,
            reason: Some(termination.reason.to_owned()),
            message: termination.message,
            started_at,
            finished_at: Some(Time(now)),
            container_id: status.container_id.clone(),
            ..ContainerStateTerminated::default()
        }),
        ..ContainerState::default()
    });
    status.ready = false;
    status.started = Some(false);
}

/// The status entry of the (init) container called `name`.
pub(crate) fn container_mut<'a>(
    status: &'a mut PodStatus,
    name: &str,
) -> Option<&'a mut ContainerStatus> {
    let init = status.init_container_statuses.iter_mut().flatten();
    let main = status.container_statuses.iter_mut().flatten();
    init.chain(main).find(|c| c.name == name)
}

/// The status entry of the (init) container called `name`.
pub(crate) fn container<'a>(status: &'a PodStatus, name: &str) -> Option<&'a ContainerStatus> {
    let init = status.init_container_statuses.iter().flatten();
    let main = status.container_statuses.iter().flatten();
    init.chain(main).find(|c| c.name == name)
}

/// Whether the phase can no longer change.
pub(crate) fn is_terminal(status: &PodStatus) -> bool {
    matches!(status.phase.as_deref(), Some("Succeeded" | "Failed"))
}

/// The phase the container states imply (restartPolicy Never).
pub(crate) fn phase(status: &PodStatus) -> &'static str {
    let init = status
        .init_container_statuses
        .as_deref()
        .unwrap_or_default();
    let main = status.container_statuses.as_deref().unwrap_or_default();
    let init: Vec<Run> = init.iter().map(classify).collect();
    let main: Vec<Run> = main.iter().map(classify).collect();
    if init.contains(&Run::Failed) {
        "Failed"
    } else if init.iter().any(|run| *run != Run::Succeeded)
        || main.is_empty()
        || main.contains(&Run::Waiting)
    {
        "Pending"
    } else if main.contains(&Run::Running) {
        "Running"
    } else if main.contains(&Run::Failed) {
        "Failed"
    } else {
        "Succeeded"
    }
}

/// Recomputes phase and conditions of a started pod after its containers changed.
pub(crate) fn refresh(status: &mut PodStatus, now: Timestamp) {
    if status.start_time.is_none() {
        return;
    }
    if !is_terminal(status) {
        status.phase = Some(phase(status).to_owned());
    }
    let terminal = is_terminal(status);
    let names_where = |statuses: &Option<Vec<ContainerStatus>>,
                       pick: &dyn Fn(&ContainerStatus) -> bool| {
        statuses
            .iter()
            .flatten()
            .filter(|c| pick(c))
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    };
    let incomplete = names_where(&status.init_container_statuses, &|c| {
        classify(c) != Run::Succeeded
    });
    let unready = names_where(&status.container_statuses, &|c| !c.ready);
    set_condition(status, "PodReadyToStartContainers", !terminal, None, now);
    let initialized = (!incomplete.is_empty()).then(|| {
        (
            "ContainersNotInitialized",
            format!("containers with incomplete status: [{incomplete}]"),
        )
    });
    set_condition(
        status,
        "Initialized",
        initialized.is_none(),
        initialized,
        now,
    );
    let not_ready = if terminal {
        Some(("PodCompleted", String::new()))
    } else if !unready.is_empty() {
        Some((
            "ContainersNotReady",
            format!("containers with unready status: [{unready}]"),
        ))
    } else {
        None
    };
    let ready = not_ready.is_none();
    set_condition(status, "Ready", ready, not_ready.clone(), now);
    set_condition(status, "ContainersReady", ready, not_ready, now);
}

/// Sets `PodScheduled`: true when bound, else false with reason `Unschedulable` and `message`.
pub(crate) fn set_scheduled(status: &mut PodStatus, unschedulable: Option<String>, now: Timestamp) {
    let why = unschedulable.map(|message| ("Unschedulable", message));
    set_condition(status, "PodScheduled", why.is_none(), why, now);
}

/// Ends the pod as the kubelet's eviction manager does: every container killed, phase Failed.
pub(crate) fn evict(status: &mut PodStatus, now: Timestamp) {
    kill_all(status, 137, now);
    status.phase = Some("Failed".to_owned());
    status.reason = Some("Evicted".to_owned());
    status.message = Some(EVICTION_MESSAGE.to_owned());
    set_condition(
        status,
        "DisruptionTarget",
        true,
        Some(("TerminationByKubelet", EVICTION_MESSAGE.to_owned())),
        now,
    );
    refresh(status, now);
}

/// Kills every container not yet ended: running ones exit with `exit_code`, waiting ones are unknown.
pub(crate) fn kill_all(status: &mut PodStatus, exit_code: i32, now: Timestamp) {
    let init = status.init_container_statuses.iter_mut().flatten();
    let main = status.container_statuses.iter_mut().flatten();
    for container in init.chain(main) {
        let termination = match classify(container) {
            Run::Running => Termination::exited(exit_code, None),
            Run::Waiting if status.start_time.is_some() => Termination {
                exit_code: 137,
                reason: "ContainerStatusUnknown",
                message: Some(UNKNOWN_MESSAGE.to_owned()),
            },
            Run::Waiting | Run::Succeeded | Run::Failed => continue,
        };
        terminate(container, termination, now);
    }
}

const CONDITION_ORDER: &[&str] = &[
    "DisruptionTarget",
    "PodReadyToStartContainers",
    "Initialized",
    "Ready",
    "ContainersReady",
    "PodScheduled",
];

fn set_condition(
    status: &mut PodStatus,
    type_: &str,
    value: bool,
    why: Option<(&str, String)>,
    now: Timestamp,
) {
    let value = if value { "True" } else { "False" };
    let (reason, message) = match why {
        Some((reason, message)) => (
            Some(reason.to_owned()),
            (!message.is_empty()).then_some(message),
        ),
        None => (None, None),
    };
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(condition) => {
            if condition.status != value {
                condition.status = value.to_owned();
                condition.last_transition_time = Some(Time(now));
            }
            condition.reason = reason;
            condition.message = message;
        }
        None => conditions.push(PodCondition {
            type_: type_.to_owned(),
            status: value.to_owned(),
            reason,
            message,
            last_transition_time: Some(Time(now)),
            ..PodCondition::default()
        }),
    }
    conditions.sort_by_key(|c| {
        CONDITION_ORDER
            .iter()
            .position(|known| *known == c.type_)
            .unwrap_or(CONDITION_ORDER.len())
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status_of(name: &str, state: ContainerState) -> ContainerStatus {
        let ready = state.running.is_some();
        ContainerStatus {
            name: name.to_owned(),
            state: Some(state),
            ready,
            ..ContainerStatus::default()
        }
    }

    fn exited(code: i32) -> ContainerState {
        let mut status = status_of("x", running(Timestamp::UNIX_EPOCH));
        terminate(
            &mut status,
            Termination::exited(code, None),
            Timestamp::UNIX_EPOCH,
        );
        status.state.unwrap_or_default()
    }

    fn pod(init: Vec<ContainerStatus>, main: Vec<ContainerStatus>) -> PodStatus {
        PodStatus {
            start_time: Some(Time(Timestamp::UNIX_EPOCH)),
            phase: Some("Pending".to_owned()),
            init_container_statuses: (!init.is_empty()).then_some(init),
            container_statuses: Some(main),
            ..PodStatus::default()
        }
    }

    fn condition<'a>(status: &'a PodStatus, type_: &str) -> &'a PodCondition {
        status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == type_)
            .unwrap()
    }

    #[test]
    fn phase_follows_the_container_states() {
        let cases = [
            (vec![waiting("ContainerCreating", None)], "Pending"),
            (vec![running(Timestamp::UNIX_EPOCH)], "Running"),
            (vec![exited(0)], "Succeeded"),
            (vec![exited(1)], "Failed"),
            (vec![exited(0), running(Timestamp::UNIX_EPOCH)], "Running"),
            (vec![exited(0), exited(2)], "Failed"),
            (
                vec![
                    running(Timestamp::UNIX_EPOCH),
                    waiting("ErrImagePull", None),
                ],
                "Pending",
            ),
        ];
        for (states, expected) in cases {
            let main = states
                .into_iter()
                .enumerate()
                .map(|(i, s)| status_of(&format!("c{i}"), s))
                .collect();
            assert_eq!(phase(&pod(vec![], main)), expected);
        }
    }

    #[test]
    fn a_failed_init_container_fails_the_pod() {
        let status = pod(
            vec![status_of("init", exited(1))],
            vec![status_of("base", waiting("PodInitializing", None))],
        );
        assert_eq!(phase(&status), "Failed");
    }

    #[test]
    fn a_running_init_container_keeps_the_pod_pending_and_uninitialized() {
        let mut status = pod(
            vec![status_of("init", running(Timestamp::UNIX_EPOCH))],
            vec![status_of("base", waiting("PodInitializing", None))],
        );
        refresh(&mut status, Timestamp::UNIX_EPOCH);
        assert_eq!(status.phase.as_deref(), Some("Pending"));
        let initialized = condition(&status, "Initialized");
        assert_eq!(initialized.status, "False");
        assert_eq!(
            initialized.message.as_deref(),
            Some("containers with incomplete status: [init]")
        );
    }

    #[test]
    fn a_completed_pod_is_not_ready_with_reason_pod_completed() {
        let mut status = pod(vec![], vec![status_of("base", exited(0))]);
        refresh(&mut status, Timestamp::UNIX_EPOCH);
        assert_eq!(status.phase.as_deref(), Some("Succeeded"));
        assert_eq!(
            condition(&status, "Ready").reason.as_deref(),
            Some("PodCompleted")
        );
    }

    #[test]
    fn a_terminal_phase_never_changes() {
        let mut status = pod(vec![], vec![status_of("base", exited(0))]);
        status.phase = Some("Failed".to_owned());
        refresh(&mut status, Timestamp::UNIX_EPOCH);
        assert_eq!(status.phase.as_deref(), Some("Failed"));
    }

    #[test]
    fn eviction_kills_running_containers_and_fails_the_pod() {
        let mut status = pod(
            vec![],
            vec![status_of("base", running(Timestamp::UNIX_EPOCH))],
        );
        evict(&mut status, Timestamp::UNIX_EPOCH);
        assert_eq!(status.phase.as_deref(), Some("Failed"));
        assert_eq!(status.reason.as_deref(), Some("Evicted"));
        let base = container(&status, "base").unwrap();
        let terminated = base.state.as_ref().unwrap().terminated.as_ref().unwrap();
        assert_eq!(terminated.exit_code, 137);
        assert_eq!(condition(&status, "DisruptionTarget").status, "True");
    }
}
