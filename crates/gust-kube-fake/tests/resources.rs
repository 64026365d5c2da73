//! Objects other than pods, through the real kube client: discovery, server-side apply,
//! CRDs and their custom resources, deletion with garbage collection, and the scripted Spark
//! operator.

mod common;

use std::time::Duration;

use common::{client, within};
use futures::{StreamExt, TryStreamExt};
use gust_kube_fake::{FakeCluster, PodScript, SparkScript, spark_application_crd};
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams,
    PostParams,
};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, discovery};
use serde_json::{Value, json};

fn spark_gvk() -> GroupVersionKind {
    GroupVersionKind::gvk("sparkoperator.k8s.io", "v1beta2", "SparkApplication")
}

async fn apply_crd(cluster: &FakeCluster) {
    let crds: Api<DynamicObject> = Api::all_with(
        client(cluster),
        &ApiResource::from_gvk(&GroupVersionKind::gvk(
            "apiextensions.k8s.io",
            "v1",
            "CustomResourceDefinition",
        )),
    );
    let crd: DynamicObject = serde_json::from_value(spark_application_crd()).expect("a CRD");
    within(
        "apply the CRD",
        crds.patch(
            "sparkapplications.sparkoperator.k8s.io",
            &PatchParams::apply("gust").force(),
            &Patch::Apply(&crd),
        ),
    )
    .await
    .expect("the CRD is applied");
}

#[tokio::test]
async fn discovery_maps_builtin_kinds_and_a_missing_crd_is_a_404() {
    let cluster = FakeCluster::start().await;
    let client = client(&cluster);
    let (resource, caps) = within(
        "discover ConfigMap",
        discovery::pinned_kind(&client, &GroupVersionKind::gvk("", "v1", "ConfigMap")),
    )
    .await
    .expect("ConfigMap is served");
    assert_eq!(resource.plural, "configmaps");
    assert_eq!(caps.scope, discovery::Scope::Namespaced);
    let missing = within(
        "discover Spark",
        discovery::pinned_kind(&client, &spark_gvk()),
    )
    .await
    .expect_err("no CRD, no kind");
    assert!(
        matches!(&missing, kube::Error::Api(status) if status.code == 404),
        "{missing:?}"
    );
    let everything = within("full discovery", discovery::Discovery::new(client).run())
        .await
        .expect("discovery runs");
    assert!(everything.has_group("apiextensions.k8s.io"));
    assert!(!everything.has_group("sparkoperator.k8s.io"));
}

#[tokio::test]
async fn server_side_apply_creates_then_merges_by_field_manager() {
    let cluster = FakeCluster::start().await;
    let api: Api<ConfigMap> = Api::namespaced(client(&cluster), "ml");
    let first: ConfigMap = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "settings"},
        "data": {"a": "1", "b": "2"},
    }))
    .expect("a ConfigMap");
    let params = PatchParams::apply("gust");
    let created = within(
        "apply",
        api.patch("settings", &params, &Patch::Apply(&first)),
    )
    .await
    .expect("created by apply");
    assert_eq!(created.metadata.namespace.as_deref(), Some("ml"));
    let managers = created.metadata.managed_fields.expect("managed fields");
    assert_eq!(managers[0].manager.as_deref(), Some("gust"));
    assert_eq!(managers[0].operation.as_deref(), Some("Apply"));

    let second: ConfigMap = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "settings"},
        "data": {"a": "3"},
    }))
    .expect("a ConfigMap");
    let updated = within(
        "apply again",
        api.patch("settings", &params, &Patch::Apply(&second)),
    )
    .await
    .expect("applied");
    let data = updated.data.expect("data");
    assert_eq!(data.get("a").map(String::as_str), Some("3"));
    assert!(
        !data.contains_key("b"),
        "a field gust no longer applies is removed"
    );

    // Another manager changing gust's field conflicts unless it forces.
    let other = PatchParams::apply("someone-else");
    let theirs: ConfigMap = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}, "data": {"a": "9"},
    }))
    .expect("a ConfigMap");
    let conflict = within(
        "conflict",
        api.patch("settings", &other, &Patch::Apply(&theirs)),
    )
    .await
    .expect_err("a conflict");
    assert!(
        matches!(&conflict, kube::Error::Api(s) if s.code == 409 && s.message.contains("gust: .data.a")),
        "{conflict:?}"
    );
    within(
        "forced",
        api.patch("settings", &other.force(), &Patch::Apply(&theirs)),
    )
    .await
    .expect("forced");

    within("delete", api.delete("settings", &DeleteParams::default()))
        .await
        .expect("deleted");
    let gone = within("get", api.get("settings")).await.expect_err("gone");
    assert!(
        matches!(gone, kube::Error::Api(s) if s.code == 404 && s.message.contains("configmaps \"settings\" not found"))
    );
}

#[tokio::test]
async fn create_list_and_label_selection_work_for_any_served_kind() {
    let cluster = FakeCluster::start().await;
    let api: Api<ConfigMap> = Api::namespaced(client(&cluster), "default");
    for (name, team) in [("a", "ml"), ("b", "web")] {
        let cm: ConfigMap = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {"team": team}}, "data": {"k": "v"},
        }))
        .expect("a ConfigMap");
        within("create", api.create(&PostParams::default(), &cm))
            .await
            .expect("created");
    }
    let again: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "a"}})).expect("a ConfigMap");
    let exists = within("create twice", api.create(&PostParams::default(), &again))
        .await
        .expect_err("taken");
    assert!(matches!(exists, kube::Error::Api(s) if s.code == 409));
    let ml = within("list", api.list(&ListParams::default().labels("team=ml")))
        .await
        .expect("listed");
    assert_eq!(ml.items.len(), 1);
    assert_eq!(ml.items[0].metadata.name.as_deref(), Some("a"));
    assert_eq!(cluster.objects("", "configmaps").len(), 2);
}

#[tokio::test]
async fn a_spark_application_runs_its_driver_to_completion_and_deletion_takes_the_driver() {
    let cluster = FakeCluster::start().await;
    cluster.script(
        "spark:3.5",
        PodScript {
            lines: vec!["Pi is roughly 3.14".into()],
            runs_for: Duration::from_millis(100),
            ..PodScript::default()
        },
    );
    let client = client(&cluster);
    apply_crd(&cluster).await;
    let (resource, _) = within("discover", discovery::pinned_kind(&client, &spark_gvk()))
        .await
        .expect("served once the CRD is applied");
    assert_eq!(resource.plural, "sparkapplications");
    let apps: Api<DynamicObject> = Api::namespaced_with(client.clone(), "spark", &resource);
    let app: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "sparkoperator.k8s.io/v1beta2", "kind": "SparkApplication",
        "metadata": {"name": "pi", "namespace": "spark"},
        "spec": {"type": "Python", "mode": "cluster", "image": "spark:3.5",
                 "mainApplicationFile": "local:///opt/pi.py", "driver": {}, "executor": {"instances": 1}},
    }))
    .expect("an app");
    within("create", apps.create(&PostParams::default(), &app))
        .await
        .expect("created");

    // Follow it as a runtime does: a watch on the application, states in order.
    let config = watcher::Config::default().fields("metadata.name=pi");
    let mut states = Vec::new();
    let mut events = watcher(apps.clone(), config).applied_objects().boxed();
    within("states", async {
        while let Some(app) = events.try_next().await.expect("the watch works") {
            let state = app.data["status"]["applicationState"]["state"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            if !state.is_empty() && states.last() != Some(&state) {
                states.push(state.clone());
            }
            if state == "COMPLETED" {
                break;
            }
        }
    })
    .await;
    assert_eq!(states, ["SUBMITTED", "RUNNING", "COMPLETED"]);
    let pods: Api<Pod> = Api::namespaced(client.clone(), "spark");
    let log = within(
        "driver log",
        pods.logs(
            "pi-driver",
            &kube::api::LogParams {
                container: Some("spark-kubernetes-driver".into()),
                ..Default::default()
            },
        ),
    )
    .await
    .expect("the driver's log");
    assert_eq!(log, "Pi is roughly 3.14\n");

    within("delete", apps.delete("pi", &DeleteParams::default()))
        .await
        .expect("deleted");
    within("the driver goes with it", async {
        while cluster.pod("spark", "pi-driver").is_some() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn a_failing_driver_or_submission_fails_the_application_with_a_message() {
    let cluster = FakeCluster::start().await;
    cluster.script(
        "spark:broken",
        PodScript {
            exit_code: 1,
            ..PodScript::default()
        },
    );
    cluster.script_spark(
        "rejected",
        SparkScript {
            submission_failure: Some("failed to run spark-submit: invalid class".into()),
            ..SparkScript::default()
        },
    );
    apply_crd(&cluster).await;
    let apps: Api<DynamicObject> = Api::namespaced_with(
        client(&cluster),
        "default",
        &ApiResource::from_gvk_with_plural(&spark_gvk(), "sparkapplications"),
    );
    for (name, image) in [("broken", "spark:broken"), ("rejected-x1", "spark:ok")] {
        let app: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "sparkoperator.k8s.io/v1beta2", "kind": "SparkApplication",
            "metadata": {"name": name}, "spec": {"image": image},
        }))
        .expect("an app");
        within("create", apps.create(&PostParams::default(), &app))
            .await
            .expect("created");
    }
    let state_of = |name: &'static str| {
        let apps = apps.clone();
        async move {
            within(name, async {
                loop {
                    let app = apps.get(name).await.expect("exists");
                    let state: Value = app.data["status"]["applicationState"].clone();
                    if matches!(
                        state["state"].as_str(),
                        Some("FAILED" | "SUBMISSION_FAILED")
                    ) {
                        return state;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
            .await
        }
    };
    let broken = state_of("broken").await;
    assert_eq!(broken["state"], "FAILED");
    assert!(
        broken["errorMessage"]
            .as_str()
            .unwrap_or_default()
            .contains("ExitCode: 1"),
        "{broken}"
    );
    let rejected = state_of("rejected-x1").await;
    assert_eq!(rejected["state"], "SUBMISSION_FAILED");
    assert_eq!(
        rejected["errorMessage"],
        "failed to run spark-submit: invalid class"
    );
    assert!(cluster.pod("default", "rejected-x1-driver").is_none());
}
