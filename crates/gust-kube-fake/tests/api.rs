//! The pod API over real HTTP with the real kube client: CRUD, selectors, errors, faults.

mod common;

use std::time::Duration;

use common::{client, create, pod, pods, within};
use gust_kube_fake::{FakeCluster, Method, StatusCode};
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{
    Api, Config,
    config::{KubeConfigOptions, Kubeconfig},
};

fn api_status(error: kube::Error) -> kube::core::Status {
    match error {
        kube::Error::Api(status) => *status,
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_created_pod_can_be_read_listed_and_deleted() {
    let cluster = FakeCluster::start().await;
    let api = pods(&cluster, "default");
    let created = create(&api, &pod("task-1", &[("base", "busybox")])).await;
    let meta = &created.metadata;
    assert!(meta.uid.is_some());
    assert!(meta.resource_version.is_some());
    assert!(meta.creation_timestamp.is_some());
    assert_eq!(meta.namespace.as_deref(), Some("default"));

    let fetched = within("get", api.get("task-1")).await.unwrap();
    assert_eq!(fetched.metadata.uid, meta.uid);
    let listed = within("list", api.list(&ListParams::default()))
        .await
        .unwrap();
    assert_eq!(listed.items.len(), 1);
    assert!(listed.metadata.resource_version.is_some());

    let deleted = within("delete", api.delete("task-1", &DeleteParams::default()))
        .await
        .unwrap();
    let deleted = deleted.left().expect("a graceful delete answers the pod");
    assert!(deleted.metadata.deletion_timestamp.is_some());
    within("the pod to go", async {
        while api.get_opt("task-1").await.unwrap().is_some() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert_eq!((cluster.created_count(), cluster.deleted_count()), (1, 1));
    let missing = api_status(api.get("task-1").await.unwrap_err());
    assert_eq!(missing.code, 404);
    assert_eq!(missing.reason, "NotFound");
}

#[tokio::test]
async fn label_and_field_selectors_filter_lists() {
    let cluster = FakeCluster::start().await;
    let api = pods(&cluster, "default");
    for (name, labels) in [
        ("a", vec![("dag_id", "etl"), ("task_id", "load")]),
        ("b", vec![("dag_id", "etl")]),
        ("c", vec![("dag_id", "report"), ("skip", "yes")]),
    ] {
        let mut pod = pod(name, &[("base", "busybox")]);
        pod.metadata.labels = Some(
            labels
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        );
        create(&api, &pod).await;
    }
    let names = |list: kube::core::ObjectList<Pod>| {
        list.items
            .into_iter()
            .map(|p| p.metadata.name.unwrap_or_default())
            .collect::<Vec<_>>()
    };
    let list = |selector: &str| {
        let api = api.clone();
        let params = ListParams::default().labels(selector);
        async move { names(within("list", api.list(&params)).await.unwrap()) }
    };
    assert_eq!(list("dag_id=etl").await, ["a", "b"]);
    assert_eq!(list("dag_id!=etl").await, ["c"]);
    assert_eq!(list("task_id").await, ["a"]);
    assert_eq!(list("!skip,dag_id=etl,!task_id").await, ["b"]);
    let by_name = ListParams::default().fields("metadata.name=b");
    assert_eq!(names(api.list(&by_name).await.unwrap()), ["b"]);
    let everywhere: Api<Pod> = Api::all(client(&cluster));
    assert_eq!(
        everywhere
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len(),
        3
    );
    let paged = api.list(&ListParams::default().limit(2)).await.unwrap();
    assert_eq!(paged.items.len(), 2);
    let token = paged.metadata.continue_.expect("a second page");
    let rest = api
        .list(&ListParams::default().limit(2).continue_token(&token))
        .await
        .unwrap();
    assert_eq!(names(rest), ["c"]);
    let bad = api_status(
        api.list(&ListParams::default().labels("a in b"))
            .await
            .unwrap_err(),
    );
    assert_eq!(bad.code, 400);
}

#[tokio::test]
async fn a_duplicate_name_is_rejected_with_already_exists() {
    let cluster = FakeCluster::start().await;
    let api = pods(&cluster, "default");
    let pod = pod("twice", &[("base", "busybox")]);
    create(&api, &pod).await;
    let status = api_status(api.create(&PostParams::default(), &pod).await.unwrap_err());
    assert_eq!(status.code, 409);
    assert_eq!(status.reason, "AlreadyExists");
    assert_eq!(status.message, "pods \"twice\" already exists");
}

#[tokio::test]
async fn invalid_pods_are_rejected_with_invalid() {
    let cluster = FakeCluster::start().await;
    let api = pods(&cluster, "default");
    let empty = pod("empty", &[]);
    let status = api_status(
        api.create(&PostParams::default(), &empty)
            .await
            .unwrap_err(),
    );
    assert_eq!(status.code, 422);
    assert_eq!(status.reason, "Invalid");
    assert_eq!(
        status.message,
        "Pod \"empty\" is invalid: spec.containers: Required value"
    );
    let badly_named = pod("Bad_Name", &[("base", "busybox")]);
    let status = api_status(
        api.create(&PostParams::default(), &badly_named)
            .await
            .unwrap_err(),
    );
    assert_eq!(status.code, 422);
    assert!(
        status
            .message
            .contains("metadata.name: Invalid value: \"Bad_Name\"")
    );
}

#[tokio::test]
async fn generate_name_gets_a_random_suffix() {
    let cluster = FakeCluster::start().await;
    let api = pods(&cluster, "default");
    let mut template = pod("", &[("base", "busybox")]);
    template.metadata.name = None;
    template.metadata.generate_name = Some("task-".to_owned());
    let first = create(&api, &template).await.metadata.name.unwrap();
    let second = create(&api, &template).await.metadata.name.unwrap();
    assert!(first.starts_with("task-") && first.len() == "task-".len() + 5);
    assert_ne!(first, second);
}

#[tokio::test]
async fn merge_patches_change_labels() {
    let cluster = FakeCluster::start().await;
    let api = pods(&cluster, "default");
    create(&api, &pod("p", &[("base", "busybox")])).await;
    let patch = serde_json::json!({"metadata": {"labels": {"gust/adopted": "true"}}});
    let merged = api
        .patch("p", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    assert_eq!(merged.metadata.labels.unwrap()["gust/adopted"], "true");
    let strategic = serde_json::json!({"metadata": {"labels": {"gust/adopted": null, "x": "y"}}});
    let patched = api
        .patch("p", &PatchParams::default(), &Patch::Strategic(&strategic))
        .await
        .unwrap();
    let labels = patched.metadata.labels.unwrap();
    assert!(!labels.contains_key("gust/adopted"));
    assert_eq!(labels["x"], "y");
}

#[tokio::test]
async fn injected_failures_answer_a_status_then_recover() {
    let cluster = FakeCluster::start().await;
    let api = pods(&cluster, "default");
    cluster.set_fail_next(2, StatusCode::INTERNAL_SERVER_ERROR);
    for _ in 0..2 {
        let status = api_status(api.list(&ListParams::default()).await.unwrap_err());
        assert_eq!(status.code, 500);
        assert_eq!(status.reason, "InternalError");
    }
    assert!(api.list(&ListParams::default()).await.is_ok());
    // kube's default retry policy waits out a 429, as it would against a real server.
    cluster.set_fail_next(1, StatusCode::TOO_MANY_REQUESTS);
    assert!(
        within("retry a 429", api.list(&ListParams::default()))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn every_request_is_recorded_and_unknown_paths_are_404_statuses() {
    let cluster = FakeCluster::start().await;
    let api = pods(&cluster, "default");
    api.list(&ListParams::default().labels("a=b"))
        .await
        .unwrap();
    let requests = cluster.requests();
    assert_eq!(requests[0].0, Method::GET);
    assert_eq!(
        requests[0].1,
        "/api/v1/namespaces/default/pods?&labelSelector=a%3Db"
    );
    let client = client(&cluster);
    let request = http_get("/apis/example.com/v1/widgets");
    let status = api_status(
        client
            .request::<serde_json::Value>(request)
            .await
            .unwrap_err(),
    );
    assert_eq!(status.code, 404);
    assert_eq!(
        status.message,
        "the server could not find the requested resource"
    );
}

fn http_get(path: &str) -> axum::http::Request<Vec<u8>> {
    axum::http::Request::get(path)
        .body(Vec::new())
        .expect("a GET request builds")
}

#[tokio::test]
async fn the_kubeconfig_reaches_the_cluster() {
    let cluster = FakeCluster::start().await;
    let kubeconfig = Kubeconfig::from_yaml(&cluster.kubeconfig_yaml()).unwrap();
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    assert_eq!(config.default_namespace, "default");
    let client = kube::Client::try_from(config).unwrap();
    let api: Api<Pod> = Api::default_namespaced(client);
    assert!(
        within("list", api.list(&ListParams::default()))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn the_kubelet_emits_events_listed_by_involved_object() {
    let cluster = FakeCluster::start().await;
    let api = pods(&cluster, "default");
    let created = create(&api, &pod("evented", &[("base", "busybox")])).await;
    common::wait_for(&api, "evented", "the pod to succeed", |p| {
        common::phase(p) == "Succeeded"
    })
    .await;
    let events: Api<Event> = Api::namespaced(client(&cluster), "default");
    let by_name = ListParams::default().fields("involvedObject.name=evented");
    let listed = within("events", events.list(&by_name)).await.unwrap();
    let reasons: Vec<_> = listed
        .items
        .iter()
        .filter_map(|e| e.reason.as_deref())
        .collect();
    assert_eq!(
        reasons,
        ["Scheduled", "Pulling", "Pulled", "Created", "Started"]
    );
    let scheduled = &listed.items[0];
    assert_eq!(scheduled.type_.as_deref(), Some("Normal"));
    assert_eq!(
        scheduled.message.as_deref(),
        Some("Successfully assigned default/evented to fake-node")
    );
    assert!(scheduled.first_timestamp.is_some());
    let uid = created.metadata.uid.unwrap();
    let by_uid = ListParams::default().fields(&format!("involvedObject.uid={uid}"));
    assert_eq!(events.list(&by_uid).await.unwrap().items.len(), 5);
    assert_eq!(cluster.events("default", "evented").len(), 5);
}
