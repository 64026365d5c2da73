//! A scripted Spark operator: once the SparkApplication CRD is applied, every SparkApplication
//! created lives the life the Spark operator gives it. It is `SUBMITTED` and gets a driver pod
//! (`<name>-driver`, container `spark-kubernetes-driver`, owned by the application), which the
//! scripted kubelet runs as the [`crate::PodScript`] of the application's image says; the
//! application is `RUNNING` once the driver runs, then `COMPLETED` when the driver exits 0 or
//! `FAILED` (with an `errorMessage`) when it does not. A [`SparkScript`] registered for the
//! application's name or image can fail the submission instead.
//!
//! Register the CRD with [`spark_application_crd`] (or any manifest of it) before creating
//! applications: without it the kind is not served, as on a cluster without the operator.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, EnvVar, Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use serde_json::{Value, json};

use crate::cluster::ClusterState;
use crate::kubelet::Kubelet;
use crate::kubelet::pod_status;
use crate::lock;
use crate::resources::ObjectKey;
use crate::store::PodKey;

/// The Spark operator's API group.
pub const SPARK_GROUP: &str = "sparkoperator.k8s.io";
/// The driver's container name.
pub const DRIVER_CONTAINER: &str = "spark-kubernetes-driver";
/// How long an application stays `SUBMITTED` before its driver pod is created.
const SUBMISSION_DELAY: Duration = Duration::from_millis(20);

/// How a SparkApplication's submission goes, registered by application name or image with
/// [`crate::FakeCluster::script_spark`]. The default submits the driver, whose life then
/// follows the image's [`crate::PodScript`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SparkScript {
    /// Fails the submission (`SUBMISSION_FAILED`) with this message; no driver is created.
    pub submission_failure: Option<String>,
    /// How long the application stays `SUBMITTED` before its driver pod exists.
    pub submitted_for: Duration,
    /// The `errorMessage` of a failed application (default: the driver's exit code).
    pub failure_message: Option<String>,
}

/// The SparkApplication CRD (`sparkoperator.k8s.io/v1beta2`), as the operator's chart installs it
/// (without its long schema).
#[must_use]
pub fn spark_application_crd() -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "sparkapplications.sparkoperator.k8s.io"},
        "spec": {
            "group": SPARK_GROUP,
            "names": {
                "kind": "SparkApplication",
                "listKind": "SparkApplicationList",
                "plural": "sparkapplications",
                "singular": "sparkapplication",
                "shortNames": ["sparkapp"],
            },
            "scope": "Namespaced",
            "versions": [{
                "name": "v1beta2",
                "served": true,
                "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}},
                "subresources": {"status": {}},
            }],
        },
    })
}

/// Starts the application's life when a SparkApplication was just created.
pub(crate) fn created(state: &Arc<ClusterState>, key: &ObjectKey, object: &Value) {
    if key.group != SPARK_GROUP || key.plural != "sparkapplications" {
        return;
    }
    let script = script_for(state, object);
    let state_for_task = Arc::clone(state);
    let key = key.clone();
    let object = object.clone();
    state
        .tasks
        .spawn(async move { run(state_for_task, key, object, script).await });
}

fn script_for(state: &ClusterState, object: &Value) -> SparkScript {
    let name = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let image = object
        .pointer("/spec/image")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let scripts = lock(&state.spark_scripts);
    scripts
        .iter()
        .find(|(by, _)| {
            by == name
                || by == image
                || name
                    .strip_prefix(by.as_str())
                    .is_some_and(|rest| rest.starts_with('-'))
        })
        .map(|(_, script)| script.clone())
        .unwrap_or_default()
}

/// Sets `status` on the application; false once it is gone.
fn set_status(state: &ClusterState, key: &ObjectKey, status: Value) -> bool {
    state
        .resources()
        .update(key, |object| {
            let current = object.get("status").cloned().unwrap_or_else(|| json!({}));
            let mut merged = current;
            if let (Value::Object(merged), Value::Object(new)) = (&mut merged, status) {
                for (k, v) in new {
                    merged.insert(k, v);
                }
            }
            object["status"] = merged;
        })
        .is_ok()
}

fn state_status(state: &str, message: Option<&str>) -> Value {
    let mut application_state = json!({"state": state});
    if let Some(message) = message {
        application_state["errorMessage"] = json!(message);
    }
    json!({"applicationState": application_state})
}

async fn run(state: Arc<ClusterState>, key: ObjectKey, app: Value, script: SparkScript) {
    tokio::select! {
        () = state.shutdown.cancelled() => {}
        () = play(&state, &key, &app, &script) => {}
    }
}

async fn play(state: &Arc<ClusterState>, key: &ObjectKey, app: &Value, script: &SparkScript) {
    tokio::time::sleep(SUBMISSION_DELAY).await;
    if let Some(message) = &script.submission_failure {
        set_status(state, key, state_status("SUBMISSION_FAILED", Some(message)));
        return;
    }
    let driver = format!("{}-driver", key.name);
    let uid = app
        .pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let mut submitted = state_status("SUBMITTED", None);
    submitted["driverInfo"] = json!({"podName": driver});
    submitted["sparkApplicationId"] = json!(format!(
        "spark-{}",
        uid.rsplit('-').next().unwrap_or_default()
    ));
    submitted["submissionAttempts"] = json!(1);
    if !set_status(state, key, submitted) {
        return;
    }
    tokio::time::sleep(script.submitted_for).await;
    let pod_key = PodKey::new(&key.namespace, &driver);
    let Some(mut changes) = start_driver(state, &pod_key, app, &uid) else {
        set_status(
            state,
            key,
            state_status(
                "SUBMISSION_FAILED",
                Some(&format!("driver pod {driver} already exists")),
            ),
        );
        return;
    };
    let mut running = false;
    loop {
        let pod = state.store().pod(&pod_key);
        let Some(pod) = pod else {
            set_status(
                state,
                key,
                state_status("FAILED", Some("driver pod not found")),
            );
            return;
        };
        let container = pod
            .status
            .as_ref()
            .and_then(|s| pod_status::container(s, DRIVER_CONTAINER))
            .and_then(|c| c.state.clone());
        if let Some(container) = container {
            if let Some(ended) = container.terminated {
                let (state_name, message) = if ended.exit_code == 0 {
                    ("COMPLETED", None)
                } else {
                    let message = script.failure_message.clone().unwrap_or_else(|| {
                        format!(
                            "driver container failed with ExitCode: {}, Reason: {}",
                            ended.exit_code,
                            ended.reason.unwrap_or_else(|| "Error".to_owned())
                        )
                    });
                    ("FAILED", Some(message))
                };
                set_status(state, key, state_status(state_name, message.as_deref()));
                return;
            }
            if container.running.is_some() && !running {
                running = true;
                if !set_status(state, key, state_status("RUNNING", None)) {
                    return;
                }
            }
        }
        // The application deleted: its driver goes with it (garbage collection), and so do we.
        if state.resources().get(key).is_none() {
            return;
        }
        match changes.recv().await {
            Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// Creates the driver pod, owned by the application; a receiver of pod changes to follow it.
fn start_driver(
    state: &Arc<ClusterState>,
    pod_key: &PodKey,
    app: &Value,
    uid: &str,
) -> Option<tokio::sync::broadcast::Receiver<Arc<crate::store::WatchRecord>>> {
    let text = |pointer: &str| {
        app.pointer(pointer)
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let image = text("/spec/driver/image").or_else(|| text("/spec/image"));
    let mut labels: std::collections::BTreeMap<String, String> = app
        .pointer("/spec/driver/labels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                .collect()
        })
        .unwrap_or_default();
    labels.insert("spark-role".to_owned(), "driver".to_owned());
    labels.insert(
        "sparkoperator.k8s.io/app-name".to_owned(),
        pod_key.name.trim_end_matches("-driver").to_owned(),
    );
    let env: Option<Vec<EnvVar>> = app
        .pointer("/spec/driver/env")
        .and_then(|e| serde_json::from_value(e.clone()).ok());
    let mut pod = Pod {
        metadata: ObjectMeta {
            name: Some(pod_key.name.clone()),
            namespace: Some(pod_key.namespace.clone()),
            labels: Some(labels),
            owner_references: Some(vec![OwnerReference {
                api_version: format!("{SPARK_GROUP}/v1beta2"),
                kind: "SparkApplication".to_owned(),
                name: pod_key.name.trim_end_matches("-driver").to_owned(),
                uid: uid.to_owned(),
                controller: Some(true),
                ..OwnerReference::default()
            }]),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: DRIVER_CONTAINER.to_owned(),
                image,
                env,
                ..Container::default()
            }],
            restart_policy: Some("Never".to_owned()),
            service_account_name: text("/spec/driver/serviceAccount"),
            ..PodSpec::default()
        }),
        status: None,
    };
    crate::admission::default_pod(&mut pod);
    let mut store = state.store();
    if store.contains(pod_key) {
        return None;
    }
    let changes = store
        .subscribe(store.resource_version())
        .ok()
        .map(|subscription| subscription.live)?;
    let pod = store.insert(pod_key.clone(), pod);
    Kubelet::start(state, pod_key.clone(), pod);
    drop(store);
    Some(changes)
}
