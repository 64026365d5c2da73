//! Helpers shared by the integration tests: a real `kube::Client` on the fake, pods, timeouts.

#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::future::Future;
use std::time::Duration;

use gust_kube_fake::FakeCluster;
use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
use kube::api::PostParams;
use kube::{Api, Client, Config};

/// The longest any test step may take before the test fails rather than hangs.
pub const STEP: Duration = Duration::from_secs(10);

/// A `kube::Client` talking to the fake over plain HTTP.
pub fn client(cluster: &FakeCluster) -> Client {
    let config = Config::new(cluster.url().parse().expect("the fake's URL parses"));
    Client::try_from(config).expect("a client builds from the fake's URL")
}

/// The pods API of `namespace`.
pub fn pods(cluster: &FakeCluster, namespace: &str) -> Api<Pod> {
    Api::namespaced(client(cluster), namespace)
}

/// Runs `future`, failing the test if it takes longer than [`STEP`].
pub async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(STEP, future).await {
        Ok(value) => value,
        Err(_) => panic!("timed out: {what}"),
    }
}

/// A pod named `name` with one container per `(name, image)`.
pub fn pod(name: &str, containers: &[(&str, &str)]) -> Pod {
    let mut pod = Pod {
        spec: Some(PodSpec {
            containers: containers
                .iter()
                .map(|(name, image)| Container {
                    name: (*name).to_owned(),
                    image: Some((*image).to_owned()),
                    ..Container::default()
                })
                .collect(),
            restart_policy: Some("Never".to_owned()),
            ..PodSpec::default()
        }),
        ..Pod::default()
    };
    pod.metadata.name = Some(name.to_owned());
    pod
}

/// Creates the pod and returns it as stored.
pub async fn create(api: &Api<Pod>, pod: &Pod) -> Pod {
    within("create", api.create(&PostParams::default(), pod))
        .await
        .expect("the pod is created")
}

/// Polls the pod until `done` holds for it (tests only; the library itself never polls).
pub async fn wait_for(api: &Api<Pod>, name: &str, what: &str, done: impl Fn(&Pod) -> bool) -> Pod {
    within(what, async {
        loop {
            if let Ok(pod) = api.get(name).await
                && done(&pod)
            {
                return pod;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
}

/// The pod's phase.
pub fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or_default()
}

/// The waiting reason of the container called `name`, if it is waiting.
pub fn waiting_reason(pod: &Pod, name: &str) -> Option<String> {
    container_state(pod, name)?.waiting?.reason
}

/// Waits until pod `name`'s base container waits with `reason`; returns the pod then.
pub async fn wait_for_waiting(api: &Api<Pod>, name: &str, reason: &str) -> Pod {
    wait_for(api, name, reason, |p| {
        waiting_reason(p, "base").as_deref() == Some(reason)
    })
    .await
}

/// The state of the (init) container called `name`.
pub fn container_state(
    pod: &Pod,
    name: &str,
) -> Option<k8s_openapi::api::core::v1::ContainerState> {
    let status = pod.status.as_ref()?;
    status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten())
        .find(|c| c.name == name)?
        .state
        .clone()
}
