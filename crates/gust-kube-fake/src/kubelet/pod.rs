//! One pod's task: schedule, start, run init containers then containers, and end on command.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ContainerStatus, HostIP, Pod, PodIP, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use tokio::sync::{mpsc, watch};

use super::pod_status::{self, Run};
use super::{PodCommand, container};
use crate::clock;
use crate::cluster::ClusterState;
use crate::events::{self, NODE_NAME, Reporter, Severity};
use crate::script::{PodScript, Scheduling};
use crate::store::PodKey;

/// The fake node's address.
const HOST_IP: &str = "10.0.0.10";

/// The scheduler's message when no node fits.
const UNSCHEDULABLE_MESSAGE: &str = "0/1 nodes are available: 1 Insufficient memory. preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod.";

/// A container to run and the script it follows.
#[derive(Clone, Debug)]
pub(super) struct ContainerPlan {
    /// The container's name.
    pub(super) name: String,
    /// Its image.
    pub(super) image: String,
    /// What it does.
    pub(super) script: PodScript,
    /// Whether it is an init container.
    pub(super) init: bool,
}

/// Everything the task of one pod needs; shared by its container futures.
pub(super) struct PodTask {
    pub(super) state: Arc<ClusterState>,
    pub(super) key: PodKey,
    pub(super) uid: String,
    pub(super) pod: Arc<Pod>,
    pub(super) commands: mpsc::Sender<PodCommand>,
    init: Vec<ContainerPlan>,
    main: Vec<ContainerPlan>,
    stops: HashMap<String, watch::Sender<Option<i32>>>,
}

impl PodTask {
    /// Plans the pod's containers from the scripts registered now.
    pub(super) fn new(
        state: Arc<ClusterState>,
        key: PodKey,
        pod: Arc<Pod>,
        commands: mpsc::Sender<PodCommand>,
    ) -> Self {
        let spec = pod.spec.clone().unwrap_or_default();
        let plan = |containers: Vec<k8s_openapi::api::core::v1::Container>, init: bool| {
            containers
                .into_iter()
                .map(|c| {
                    let image = c.image.unwrap_or_default();
                    // The XCom sidecar sleeps until it is interrupted (KPO's command), so it
                    // runs until an exec sends it `kill`.
                    let script = if c.name == crate::server::exec::XCOM_SIDECAR {
                        crate::PodScript {
                            runs_forever: true,
                            ..crate::PodScript::default()
                        }
                    } else {
                        state.kubelet.script_for(&image)
                    };
                    ContainerPlan {
                        script,
                        name: c.name,
                        image,
                        init,
                    }
                })
                .collect::<Vec<_>>()
        };
        let init = plan(spec.init_containers.unwrap_or_default(), true);
        let main = plan(spec.containers, false);
        let stops = init
            .iter()
            .chain(&main)
            .map(|c| (c.name.clone(), watch::Sender::new(None)))
            .collect();
        PodTask {
            uid: pod.metadata.uid.clone().unwrap_or_default(),
            state,
            key,
            pod,
            commands,
            init,
            main,
            stops,
        }
    }

    /// Plays the pod until it is removed or the cluster shuts down.
    pub(super) async fn run(self, mut commands: mpsc::Receiver<PodCommand>) {
        let shutdown = self.state.shutdown.clone();
        let lifecycle = self.lifecycle();
        tokio::pin!(lifecycle);
        let mut progressing = true;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = &mut lifecycle, if progressing => progressing = false,
                command = commands.recv() => match command {
                    None => return,
                    Some(PodCommand::Signal { container, exit_code }) => {
                        if let Some(stop) = self.stops.get(&container) {
                            stop.send_replace(Some(exit_code));
                        }
                    }
                    Some(PodCommand::Evict) => {
                        // The lifecycle is no longer polled: nothing else starts on an evicted pod.
                        progressing = false;
                        self.evict();
                    }
                    Some(PodCommand::Terminate { grace }) => {
                        self.terminate(grace, &mut commands).await;
                        return;
                    }
                },
            }
        }
    }

    /// Scheduling, start, init containers in order, then every container at once.
    async fn lifecycle(&self) {
        let scripts = self
            .init
            .iter()
            .chain(&self.main)
            .map(|c| &c.script.scheduling);
        match slowest(scripts) {
            Scheduling::Immediately => {}
            Scheduling::After(delay) => tokio::time::sleep(delay).await,
            Scheduling::Unschedulable => {
                self.unschedulable();
                return std::future::pending().await;
            }
        }
        self.bind();
        self.start();
        for plan in &self.init {
            if container::run(self, plan, self.stop_receiver(&plan.name)).await != Run::Succeeded {
                return;
            }
        }
        let containers = self
            .main
            .iter()
            .map(|plan| container::run(self, plan, self.stop_receiver(&plan.name)));
        futures::future::join_all(containers).await;
    }

    fn stop_receiver(&self, container: &str) -> watch::Receiver<Option<i32>> {
        match self.stops.get(container) {
            Some(stop) => stop.subscribe(),
            None => watch::Sender::new(None).subscribe(),
        }
    }

    /// Changes the pod's status, then recomputes phase and conditions, as one MODIFIED event.
    pub(super) fn update(&self, change: impl FnOnce(&mut PodStatus, Timestamp)) {
        self.update_pod(|pod, now| {
            let status = pod.status.get_or_insert_with(PodStatus::default);
            change(status, now);
            pod_status::refresh(status, now);
        });
    }

    /// Changes the status of one container (see [`PodTask::update`]).
    pub(super) fn update_container(
        &self,
        name: &str,
        change: impl FnOnce(&mut ContainerStatus, Timestamp),
    ) {
        self.update(|status, now| {
            if let Some(container) = pod_status::container_mut(status, name) {
                change(container, now);
            }
        });
    }

    fn update_pod(&self, change: impl FnOnce(&mut Pod, Timestamp)) {
        let now = clock::now();
        self.state
            .store()
            .update(&self.key, Some(&self.uid), |pod| change(pod, now));
    }

    /// Emits an event about the pod (or one of its containers).
    pub(super) fn event(
        &self,
        container: Option<&str>,
        reporter: Reporter,
        severity: Severity,
        reason: &str,
        message: String,
    ) {
        let event = events::pod_event(
            &self.pod,
            container,
            reporter,
            severity,
            reason,
            message,
            clock::now(),
        );
        self.state.store().add_event(event);
    }

    fn unschedulable(&self) {
        self.update(|status, now| {
            pod_status::set_scheduled(status, Some(UNSCHEDULABLE_MESSAGE.to_owned()), now);
        });
        self.event(
            None,
            Reporter::Scheduler,
            Severity::Warning,
            "FailedScheduling",
            UNSCHEDULABLE_MESSAGE.to_owned(),
        );
    }

    fn bind(&self) {
        self.update_pod(|pod, now| {
            if let Some(spec) = pod.spec.as_mut() {
                spec.node_name = Some(NODE_NAME.to_owned());
            }
            let status = pod.status.get_or_insert_with(PodStatus::default);
            pod_status::set_scheduled(status, None, now);
        });
        self.event(
            None,
            Reporter::Scheduler,
            Severity::Normal,
            "Scheduled",
            format!("Successfully assigned {} to {NODE_NAME}", self.key),
        );
    }

    /// The kubelet admits the pod: sandbox, IPs, start time, every container waiting.
    fn start(&self) {
        let pod_ip = pod_ip(&self.uid);
        let statuses = |plans: &[ContainerPlan], reason: &str| {
            plans
                .iter()
                .map(|plan| ContainerStatus {
                    name: plan.name.clone(),
                    image: plan.image.clone(),
                    state: Some(pod_status::waiting(reason, None)),
                    started: Some(false),
                    ..ContainerStatus::default()
                })
                .collect::<Vec<_>>()
        };
        let main_reason = if self.init.is_empty() {
            "ContainerCreating"
        } else {
            "PodInitializing"
        };
        let init = statuses(&self.init, "PodInitializing");
        let main = statuses(&self.main, main_reason);
        self.update(|status, now| {
            status.host_ip = Some(HOST_IP.to_owned());
            status.host_ips = Some(vec![HostIP {
                ip: HOST_IP.to_owned(),
            }]);
            status.pod_ip = Some(pod_ip.clone());
            status.pod_ips = Some(vec![PodIP { ip: pod_ip }]);
            status.start_time = Some(Time(now));
            status.init_container_statuses = (!init.is_empty()).then_some(init);
            status.container_statuses = Some(main);
        });
    }

    /// The eviction manager kills the pod: every container stopped, phase Failed, reason Evicted.
    pub(super) fn evict(&self) {
        for name in self.running_containers() {
            self.event(
                Some(&name),
                Reporter::Kubelet,
                Severity::Normal,
                "Killing",
                format!("Stopping container {name}"),
            );
        }
        self.update(pod_status::evict);
        self.event(
            None,
            Reporter::Kubelet,
            Severity::Warning,
            "Evicted",
            pod_status::EVICTION_MESSAGE.to_owned(),
        );
        self.state.logs.finish_pod(&self.key);
    }

    /// Stops every running container (SIGTERM, then SIGKILL after `grace` for those that ignore
    /// it), then removes the pod.
    async fn terminate(&self, grace: Duration, commands: &mut mpsc::Receiver<PodCommand>) {
        let running = self.running_containers();
        for name in &running {
            self.event(
                Some(name),
                Reporter::Kubelet,
                Severity::Normal,
                "Killing",
                format!("Stopping container {name}"),
            );
        }
        let stubborn: Vec<&ContainerPlan> = self
            .init
            .iter()
            .chain(&self.main)
            .filter(|plan| plan.script.ignores_sigterm && running.contains(&plan.name))
            .collect();
        let polite: Vec<&String> = running
            .iter()
            .filter(|name| !stubborn.iter().any(|plan| &plan.name == *name))
            .collect();
        if !polite.is_empty() {
            self.update(|status, now| {
                for name in &polite {
                    if let Some(container) = pod_status::container_mut(status, name) {
                        pod_status::terminate(
                            container,
                            pod_status::Termination::exited(143, None),
                            now,
                        );
                    }
                }
            });
        }
        if !stubborn.is_empty() {
            self.wait_grace(grace, commands).await;
            self.update(|status, now| pod_status::kill_all(status, 137, now));
        }
        self.state.logs.remove_pod(&self.key);
        self.state.store().remove(&self.key, Some(&self.uid));
        self.state.kubelet.forget(&self.key, &self.commands);
    }

    /// Waits out the grace period; a second deletion may shorten it, as in a real cluster.
    async fn wait_grace(&self, grace: Duration, commands: &mut mpsc::Receiver<PodCommand>) {
        let deadline = tokio::time::sleep(grace);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                () = &mut deadline => return,
                () = self.state.shutdown.cancelled() => return,
                command = commands.recv() => match command {
                    Some(PodCommand::Terminate { grace: shorter }) => {
                        let now = tokio::time::Instant::now();
                        if now + shorter < deadline.deadline() {
                            deadline.as_mut().reset(now + shorter);
                        }
                    }
                    Some(PodCommand::Signal { .. } | PodCommand::Evict) => {}
                    None => return,
                },
            }
        }
    }

    fn running_containers(&self) -> Vec<String> {
        let Some(pod) = self.state.store().pod(&self.key) else {
            return Vec::new();
        };
        let status = pod.status.clone().unwrap_or_default();
        let init = status.init_container_statuses.into_iter().flatten();
        let main = status.container_statuses.into_iter().flatten();
        init.chain(main)
            .filter(|c| pod_status::classify(c) == Run::Running)
            .map(|c| c.name)
            .collect()
    }
}

/// The scheduling of a pod whose containers have these scripts: the slowest one wins.
fn slowest<'a>(scripts: impl Iterator<Item = &'a Scheduling>) -> Scheduling {
    scripts.fold(Scheduling::Immediately, |slowest, next| {
        match (slowest, next) {
            (Scheduling::Unschedulable, _) | (_, Scheduling::Unschedulable) => {
                Scheduling::Unschedulable
            }
            (Scheduling::After(a), Scheduling::After(b)) => Scheduling::After(a.max(*b)),
            (Scheduling::After(a), Scheduling::Immediately) => Scheduling::After(a),
            (Scheduling::Immediately, next) => next.clone(),
        }
    })
}

/// A stable pod IP in 10.244.0.0/16 derived from the uid.
fn pod_ip(uid: &str) -> String {
    let serial =
        u64::from_str_radix(uid.rsplit('-').next().unwrap_or_default(), 16).unwrap_or_default();
    format!("10.244.{}.{}", (serial / 250) % 256, serial % 250 + 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_slowest_scheduling_wins() {
        let ms = Duration::from_millis;
        let schedulings = [
            Scheduling::Immediately,
            Scheduling::After(ms(5)),
            Scheduling::After(ms(2)),
        ];
        assert_eq!(slowest(schedulings.iter()), Scheduling::After(ms(5)));
        let never = [Scheduling::After(ms(5)), Scheduling::Unschedulable];
        assert_eq!(slowest(never.iter()), Scheduling::Unschedulable);
        assert_eq!(slowest([].iter()), Scheduling::Immediately);
    }

    #[test]
    fn pod_ips_differ_per_pod() {
        assert_ne!(
            pod_ip("00000000-0000-4000-8000-000000000001"),
            pod_ip("00000000-0000-4000-8000-000000000002")
        );
    }
}
