//! The scripted kubelet: every failure a pod runtime must diagnose shows up in the pod status
//! (and events) as a real cluster shows it.

mod common;

use std::time::Duration;

use common::{
    container_state, create, phase, pod, pods, wait_for, wait_for_waiting, waiting_reason,
};
use gust_kube_fake::{FakeCluster, ImagePull, PodScript, Scheduling};
use k8s_openapi::api::core::v1::{Container, Pod};
use kube::Api;

const MS: fn(u64) -> Duration = Duration::from_millis;

async fn run_one(script: PodScript) -> (FakeCluster, Api<Pod>) {
    let cluster = FakeCluster::start().await;
    cluster.script("scripted", script);
    let api = pods(&cluster, "default");
    create(&api, &pod("p", &[("base", "scripted")])).await;
    (cluster, api)
}

fn condition(pod: &Pod, type_: &str) -> (String, Option<String>, Option<String>) {
    let condition = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == type_))
        .unwrap_or_else(|| panic!("no {type_} condition"));
    (
        condition.status.clone(),
        condition.reason.clone(),
        condition.message.clone(),
    )
}

fn waiting_message(pod: &Pod, name: &str) -> String {
    container_state(pod, name)
        .and_then(|s| s.waiting)
        .and_then(|w| w.message)
        .unwrap_or_default()
}

fn reasons(cluster: &FakeCluster) -> Vec<String> {
    cluster
        .events("default", "p")
        .into_iter()
        .filter_map(|e| e.reason)
        .collect()
}

#[tokio::test]
async fn a_successful_pod_reports_a_realistic_status() {
    let (_cluster, api) = run_one(PodScript::default()).await;
    let done = wait_for(&api, "p", "success", |p| phase(p) == "Succeeded").await;
    let status = done.status.unwrap();
    assert!(status.host_ip.is_some() && status.pod_ip.is_some() && status.start_time.is_some());
    assert_eq!(done.spec.unwrap().node_name.as_deref(), Some("fake-node"));
    let base = &status.container_statuses.unwrap()[0];
    let terminated = base.state.clone().unwrap().terminated.unwrap();
    assert_eq!(
        (terminated.exit_code, terminated.reason.as_deref()),
        (0, Some("Completed"))
    );
    assert!(terminated.started_at.is_some() && terminated.finished_at.is_some());
    assert!(
        base.image_id
            .starts_with("docker.io/library/scripted@sha256:")
    );
}

#[tokio::test]
async fn an_unschedulable_pod_stays_pending_with_the_scheduler_reason() {
    let (cluster, api) = run_one(PodScript {
        scheduling: Scheduling::Unschedulable,
        ..PodScript::default()
    })
    .await;
    let pending = wait_for(&api, "p", "unschedulable", |p| {
        p.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some()
    })
    .await;
    assert_eq!(phase(&pending), "Pending");
    let (status, reason, message) = condition(&pending, "PodScheduled");
    assert_eq!(
        (status.as_str(), reason.as_deref()),
        ("False", Some("Unschedulable"))
    );
    assert!(message.unwrap().starts_with("0/1 nodes are available"));
    let events = cluster.events("default", "p");
    let failed = events
        .iter()
        .find(|e| e.reason.as_deref() == Some("FailedScheduling"))
        .unwrap();
    assert_eq!(failed.type_.as_deref(), Some("Warning"));
}

#[tokio::test]
async fn a_delayed_schedule_binds_later() {
    let (_cluster, api) = run_one(PodScript {
        scheduling: Scheduling::After(MS(150)),
        ..PodScript::default()
    })
    .await;
    tokio::time::sleep(MS(50)).await;
    let early = api.get("p").await.unwrap();
    assert!(early.spec.as_ref().unwrap().node_name.is_none());
    wait_for(&api, "p", "success", |p| phase(p) == "Succeeded").await;
}

#[tokio::test]
async fn a_missing_image_backs_off_forever() {
    let (cluster, api) = run_one(PodScript {
        image_pull: ImagePull::NotFound,
        ..PodScript::default()
    })
    .await;
    let pulling = wait_for_waiting(&api, "p", "ErrImagePull").await;
    let message = waiting_message(&pulling, "base");
    assert!(
        message.starts_with("Failed to pull image \"scripted\": rpc error: code = NotFound"),
        "{message}"
    );
    assert!(message.ends_with("not found"), "{message}");
    let backing_off = wait_for_waiting(&api, "p", "ImagePullBackOff").await;
    assert_eq!(
        waiting_message(&backing_off, "base"),
        "Back-off pulling image \"scripted\""
    );
    assert_eq!(phase(&backing_off), "Pending");
    let reasons = reasons(&cluster);
    assert!(reasons.contains(&"Failed".to_owned()) && reasons.contains(&"BackOff".to_owned()));
}

#[tokio::test]
async fn a_denied_pull_says_so() {
    let (_cluster, api) = run_one(PodScript {
        image_pull: ImagePull::Denied,
        ..PodScript::default()
    })
    .await;
    let denied = wait_for_waiting(&api, "p", "ErrImagePull").await;
    assert!(waiting_message(&denied, "base").contains("pull access denied"));
}

#[tokio::test]
async fn a_rate_limited_pull_recovers() {
    let (_cluster, api) = run_one(PodScript {
        image_pull: ImagePull::RateLimited { lasting: MS(150) },
        ..PodScript::default()
    })
    .await;
    let limited = wait_for_waiting(&api, "p", "ErrImagePull").await;
    assert!(waiting_message(&limited, "base").contains("429 Too Many Requests"));
    wait_for(&api, "p", "success", |p| phase(p) == "Succeeded").await;
}

#[tokio::test]
async fn a_failing_registry_recovers() {
    let (_cluster, api) = run_one(PodScript {
        image_pull: ImagePull::Registry5xx { lasting: MS(150) },
        ..PodScript::default()
    })
    .await;
    let failing = wait_for_waiting(&api, "p", "ErrImagePull").await;
    assert!(waiting_message(&failing, "base").contains("503 Service Unavailable"));
    wait_for(&api, "p", "success", |p| phase(p) == "Succeeded").await;
}

#[tokio::test]
async fn an_invalid_image_name_is_reported_as_such() {
    let (_cluster, api) = run_one(PodScript {
        image_pull: ImagePull::InvalidName,
        ..PodScript::default()
    })
    .await;
    let invalid = wait_for_waiting(&api, "p", "InvalidImageName").await;
    assert!(waiting_message(&invalid, "base").contains("invalid reference format"));
}

#[tokio::test]
async fn a_config_error_keeps_the_container_waiting() {
    let (_cluster, api) = run_one(PodScript {
        config_error: Some("secret \"db\" not found".to_owned()),
        ..PodScript::default()
    })
    .await;
    let stuck = wait_for_waiting(&api, "p", "CreateContainerConfigError").await;
    assert_eq!(waiting_message(&stuck, "base"), "secret \"db\" not found");
    assert_eq!(phase(&stuck), "Pending");
}

#[tokio::test]
async fn a_non_zero_exit_fails_the_pod_with_its_termination_message() {
    let (_cluster, api) = run_one(PodScript {
        exit_code: 3,
        termination_message: Some("table missing".to_owned()),
        ..PodScript::default()
    })
    .await;
    let failed = wait_for(&api, "p", "failure", |p| phase(p) == "Failed").await;
    let terminated = container_state(&failed, "base")
        .unwrap()
        .terminated
        .unwrap();
    assert_eq!(terminated.exit_code, 3);
    assert_eq!(terminated.reason.as_deref(), Some("Error"));
    assert_eq!(terminated.message.as_deref(), Some("table missing"));
}

#[tokio::test]
async fn an_oom_kill_is_reported_with_exit_code_137() {
    let (_cluster, api) = run_one(PodScript {
        oom_killed: true,
        ..PodScript::default()
    })
    .await;
    let failed = wait_for(&api, "p", "failure", |p| phase(p) == "Failed").await;
    let terminated = container_state(&failed, "base")
        .unwrap()
        .terminated
        .unwrap();
    assert_eq!(
        (terminated.exit_code, terminated.reason.as_deref()),
        (137, Some("OOMKilled"))
    );
}

#[tokio::test]
async fn a_scripted_eviction_fails_the_pod_as_evicted() {
    let (cluster, api) = run_one(PodScript {
        runs_forever: true,
        evict_after: Some(MS(50)),
        ..PodScript::default()
    })
    .await;
    let evicted = wait_for(&api, "p", "eviction", |p| phase(p) == "Failed").await;
    let status = evicted.status.clone().unwrap();
    assert_eq!(status.reason.as_deref(), Some("Evicted"));
    assert_eq!(
        status.message.as_deref(),
        Some("The node was low on resource: memory.")
    );
    assert!(
        container_state(&evicted, "base")
            .unwrap()
            .terminated
            .is_some()
    );
    assert!(reasons(&cluster).contains(&"Evicted".to_owned()));
}

#[tokio::test]
async fn the_evict_fault_fails_a_running_pod() {
    let (cluster, api) = run_one(PodScript {
        runs_forever: true,
        ..PodScript::default()
    })
    .await;
    wait_for(&api, "p", "running", |p| phase(p) == "Running").await;
    assert!(cluster.evict("default", "p"));
    let evicted = wait_for(&api, "p", "eviction", |p| phase(p) == "Failed").await;
    assert_eq!(evicted.status.unwrap().reason.as_deref(), Some("Evicted"));
}

#[tokio::test]
async fn an_external_delete_removes_the_pod() {
    let (cluster, api) = run_one(PodScript {
        runs_forever: true,
        ..PodScript::default()
    })
    .await;
    wait_for(&api, "p", "running", |p| phase(p) == "Running").await;
    assert!(cluster.delete_externally("default", "p"));
    common::within("the pod to go", async {
        while api.get_opt("p").await.unwrap().is_some() {
            tokio::time::sleep(MS(10)).await;
        }
    })
    .await;
    assert_eq!(cluster.deleted_count(), 1);
}

fn with_init(init: &[(&str, &str)]) -> Pod {
    let mut pod = pod("p", &[("base", "main")]);
    if let Some(spec) = pod.spec.as_mut() {
        spec.init_containers = Some(
            init.iter()
                .map(|(name, image)| Container {
                    name: (*name).to_owned(),
                    image: Some((*image).to_owned()),
                    ..Container::default()
                })
                .collect(),
        );
    }
    pod
}

#[tokio::test]
async fn init_containers_run_in_order_before_the_containers() {
    let cluster = FakeCluster::start().await;
    cluster.script(
        "slow-init",
        PodScript {
            runs_for: MS(80),
            ..PodScript::default()
        },
    );
    let api = pods(&cluster, "default");
    create(
        &api,
        &with_init(&[("first", "slow-init"), ("second", "busybox")]),
    )
    .await;
    let initializing = wait_for(&api, "p", "the first init container", |p| {
        container_state(p, "first").is_some_and(|s| s.running.is_some())
    })
    .await;
    assert_eq!(phase(&initializing), "Pending");
    assert_eq!(
        waiting_reason(&initializing, "second").as_deref(),
        Some("PodInitializing")
    );
    assert_eq!(
        waiting_reason(&initializing, "base").as_deref(),
        Some("PodInitializing")
    );
    assert_eq!(condition(&initializing, "Initialized").0, "False");
    let done = wait_for(&api, "p", "success", |p| phase(p) == "Succeeded").await;
    assert_eq!(condition(&done, "Initialized").0, "True");
}

#[tokio::test]
async fn a_failing_init_container_fails_the_pod() {
    let cluster = FakeCluster::start().await;
    cluster.script(
        "broken-init",
        PodScript {
            exit_code: 2,
            ..PodScript::default()
        },
    );
    let api = pods(&cluster, "default");
    create(&api, &with_init(&[("migrate", "broken-init")])).await;
    let failed = wait_for(&api, "p", "failure", |p| phase(p) == "Failed").await;
    let init = &failed
        .status
        .as_ref()
        .unwrap()
        .init_container_statuses
        .as_ref()
        .unwrap()[0];
    let terminated = init.state.clone().unwrap().terminated.unwrap();
    assert_eq!(terminated.exit_code, 2);
    assert_eq!(
        waiting_reason(&failed, "base").as_deref(),
        Some("PodInitializing")
    );
}

#[tokio::test]
async fn a_never_ending_sidecar_keeps_the_pod_running() {
    let cluster = FakeCluster::start().await;
    cluster.script(
        "istio",
        PodScript {
            runs_forever: true,
            ..PodScript::default()
        },
    );
    let api = pods(&cluster, "default");
    create(
        &api,
        &pod("p", &[("base", "busybox"), ("istio-proxy", "istio")]),
    )
    .await;
    let base_done = wait_for(&api, "p", "the base container to end", |p| {
        container_state(p, "base").is_some_and(|s| s.terminated.is_some())
    })
    .await;
    assert_eq!(phase(&base_done), "Running");
    let (ready, reason, message) = condition(&base_done, "Ready");
    assert_eq!(
        (ready.as_str(), reason.as_deref()),
        ("False", Some("ContainersNotReady"))
    );
    assert_eq!(
        message.as_deref(),
        Some("containers with unready status: [base]")
    );
}
