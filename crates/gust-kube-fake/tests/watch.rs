//! Watches with the real kube client and kube-runtime's watcher: events, resume, 410, bookmarks.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{create, phase, pod, pods, within};
use futures::{StreamExt, TryStreamExt};
use gust_kube_fake::{FakeCluster, Method, PodScript};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, WatchEvent, WatchParams};
use kube::runtime::watcher::{self, Event};

fn name(pod: &Pod) -> &str {
    pod.metadata.name.as_deref().unwrap_or_default()
}

#[tokio::test]
async fn the_watcher_sees_a_pod_go_pending_running_succeeded() {
    let cluster = FakeCluster::start().await;
    cluster.script(
        "worker",
        PodScript {
            runs_for: Duration::from_millis(100),
            ..PodScript::default()
        },
    );
    let api = pods(&cluster, "default");
    let mut events = watcher::watcher(api.clone(), watcher::Config::default()).boxed();
    within("initial list", async {
        while !matches!(events.try_next().await.unwrap(), Some(Event::InitDone)) {}
    })
    .await;
    create(&api, &pod("p", &[("base", "worker")])).await;
    let phases = within("the pod to succeed", async {
        let mut phases: Vec<String> = Vec::new();
        while let Some(event) = events.try_next().await.unwrap() {
            if let Event::Apply(pod) = event {
                let phase = phase(&pod).to_owned();
                if phases.last() != Some(&phase) {
                    phases.push(phase.clone());
                }
                if phase == "Succeeded" {
                    break;
                }
            }
        }
        phases
    })
    .await;
    assert_eq!(phases, ["Pending", "Running", "Succeeded"]);
}

#[tokio::test]
async fn the_watcher_resumes_after_connections_break_without_relisting() {
    let cluster = FakeCluster::start().await;
    let api = pods(&cluster, "default");
    let mut events = watcher::watcher(api.clone(), watcher::Config::default()).boxed();
    within("initial list", async {
        while !matches!(events.try_next().await.unwrap(), Some(Event::InitDone)) {}
    })
    .await;
    create(&api, &pod("before", &[("base", "busybox")])).await;
    let mut seen = HashSet::new();
    within("the first pod", async {
        while !seen.contains("before") {
            if let Some(Ok(Event::Apply(pod))) = events.next().await {
                seen.insert(name(&pod).to_owned());
            }
        }
    })
    .await;
    cluster.break_connections();
    create(&api, &pod("after", &[("base", "busybox")])).await;
    within("the pod created after the break", async {
        while !seen.contains("after") {
            // The broken stream surfaces as an error the watcher recovers from.
            if let Some(Ok(Event::Apply(pod))) = events.next().await {
                seen.insert(name(&pod).to_owned());
            }
        }
    })
    .await;
    let watches = cluster
        .requests()
        .iter()
        .filter(|(_, path)| path.contains("watch=true"))
        .count();
    let lists = cluster
        .requests()
        .iter()
        .filter(|(method, path)| {
            *method == Method::GET
                && path.starts_with("/api/v1/namespaces/default/pods?")
                && !path.contains("watch=true")
        })
        .count();
    assert!(watches >= 2, "the watcher reconnected ({watches} watches)");
    assert_eq!(lists, 1, "resuming from a resourceVersion needs no re-list");
}

#[tokio::test]
async fn the_watcher_relists_after_410_gone() {
    let cluster = FakeCluster::start().await;
    let api = pods(&cluster, "default");
    create(&api, &pod("old", &[("base", "busybox")])).await;
    let mut events = watcher::watcher(api.clone(), watcher::Config::default()).boxed();
    within("initial list", async {
        while !matches!(events.try_next().await.unwrap(), Some(Event::InitDone)) {}
    })
    .await;
    cluster.compact_history();
    cluster.break_connections();
    let mut gone = false;
    let mut relisted = false;
    within("a re-list after 410", async {
        while !relisted {
            match events.next().await {
                Some(Err(watcher::Error::WatchError(status))) if status.code == 410 => gone = true,
                Some(Ok(Event::InitDone)) => relisted = true,
                _ => {}
            }
        }
    })
    .await;
    assert!(gone, "the watcher saw the 410");
    create(&api, &pod("new", &[("base", "busybox")])).await;
    within("a change after the re-list", async {
        loop {
            if let Some(Ok(Event::Apply(pod))) = events.next().await
                && name(&pod) == "new"
            {
                break;
            }
        }
    })
    .await;
}

#[tokio::test]
async fn a_watch_from_a_compacted_version_answers_an_expired_error() {
    let cluster = FakeCluster::start().await;
    let api = pods(&cluster, "default");
    let created = create(&api, &pod("p", &[("base", "busybox")])).await;
    cluster.compact_history();
    let version = created.metadata.resource_version.unwrap();
    let mut stream = within("watch", api.watch(&WatchParams::default(), &version))
        .await
        .unwrap()
        .boxed();
    match within("the error event", stream.try_next()).await.unwrap() {
        Some(WatchEvent::Error(status)) => {
            assert_eq!(status.code, 410);
            assert_eq!(status.reason, "Expired");
        }
        other => panic!("expected a 410 error event, got {other:?}"),
    }
}

#[tokio::test]
async fn deleting_a_running_pod_is_seen_as_modified_then_deleted() {
    let cluster = FakeCluster::start().await;
    cluster.script(
        "server",
        PodScript {
            runs_forever: true,
            ..PodScript::default()
        },
    );
    let api = pods(&cluster, "default");
    let created = create(&api, &pod("p", &[("base", "server")])).await;
    common::wait_for(&api, "p", "running", |p| phase(p) == "Running").await;
    let from = created.metadata.resource_version.unwrap();
    let params = WatchParams::default().fields("metadata.name=p");
    let mut stream = api.watch(&params, &from).await.unwrap().boxed();
    within(
        "delete",
        api.delete("p", &DeleteParams::default().grace_period(5)),
    )
    .await
    .unwrap();
    let kinds = within("the deletion", async {
        let mut kinds = Vec::new();
        while let Some(event) = stream.try_next().await.unwrap() {
            match event {
                WatchEvent::Modified(pod) if pod.metadata.deletion_timestamp.is_some() => {
                    kinds.push("MODIFIED (deleting)")
                }
                WatchEvent::Deleted(_) => {
                    kinds.push("DELETED");
                    break;
                }
                _ => {}
            }
        }
        kinds
    })
    .await;
    assert_eq!(kinds.first(), Some(&"MODIFIED (deleting)"));
    assert_eq!(kinds.last(), Some(&"DELETED"));
    let killing = cluster.events("default", "p");
    assert!(
        killing
            .iter()
            .any(|e| e.reason.as_deref() == Some("Killing"))
    );
}

#[tokio::test]
async fn a_container_ignoring_sigterm_holds_deletion_for_the_grace_period() {
    let cluster = FakeCluster::start().await;
    cluster.script(
        "stubborn",
        PodScript {
            runs_forever: true,
            ignores_sigterm: true,
            ..PodScript::default()
        },
    );
    let api = pods(&cluster, "default");
    create(&api, &pod("p", &[("base", "stubborn")])).await;
    common::wait_for(&api, "p", "running", |p| phase(p) == "Running").await;
    let started = tokio::time::Instant::now();
    api.delete("p", &DeleteParams::default().grace_period(1))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let terminating = cluster.pod("default", "p").expect("still terminating");
    assert!(terminating.metadata.deletion_timestamp.is_some());
    within("the pod to go", async {
        while cluster.pod("default", "p").is_some() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(started.elapsed() >= Duration::from_secs(1));
}

#[tokio::test]
async fn watches_allowing_bookmarks_get_them() {
    let cluster = FakeCluster::start().await;
    let api = pods(&cluster, "default");
    let params = WatchParams::default();
    let mut stream = api.watch(&params, "0").await.unwrap().boxed();
    let event = within("a bookmark", stream.try_next()).await.unwrap();
    assert!(
        matches!(event, Some(WatchEvent::Bookmark(_))),
        "got {event:?}"
    );
}

#[tokio::test]
async fn the_streaming_list_initial_watch_works() {
    let cluster = FakeCluster::start().await;
    let api = pods(&cluster, "default");
    create(&api, &pod("existing", &[("base", "busybox")])).await;
    let config = watcher::Config::default().streaming_lists();
    let mut events = watcher::watcher(api.clone(), config).boxed();
    let initial = within("the initial events", async {
        let mut initial = Vec::new();
        loop {
            match events.try_next().await.unwrap() {
                Some(Event::InitApply(pod)) => initial.push(name(&pod).to_owned()),
                Some(Event::InitDone) => break initial,
                _ => {}
            }
        }
    })
    .await;
    assert_eq!(initial, ["existing"]);
}

#[tokio::test]
async fn a_thousand_pods_reach_several_watchers() {
    const PODS: usize = 1_000;
    const WATCHERS: usize = 4;
    let cluster = FakeCluster::start().await;
    let api = pods(&cluster, "default");
    let mut watchers = Vec::new();
    for _ in 0..WATCHERS {
        let mut events = watcher::watcher(api.clone(), watcher::Config::default()).boxed();
        within("initial list", async {
            while !matches!(events.try_next().await.unwrap(), Some(Event::InitDone)) {}
        })
        .await;
        watchers.push(tokio::spawn(async move {
            let mut succeeded = HashSet::new();
            while succeeded.len() < PODS {
                if let Some(Ok(Event::Apply(pod))) = events.next().await
                    && phase(&pod) == "Succeeded"
                {
                    succeeded.insert(name(&pod).to_owned());
                }
            }
        }));
    }
    let creates = (0..PODS).map(|i| {
        let api = api.clone();
        async move { create(&api, &pod(&format!("p-{i}"), &[("base", "busybox")])).await }
    });
    within("creating the pods", async {
        futures::stream::iter(creates)
            .buffer_unordered(32)
            .collect::<Vec<_>>()
            .await
    })
    .await;
    for watcher in watchers {
        within("every watcher to see every pod succeed", watcher)
            .await
            .unwrap();
    }
    assert_eq!(cluster.created_count(), PODS as u64);
}
