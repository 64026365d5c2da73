//! The Secret of a Python try run as a pod (`gust_executor::task_sdk::WorkerPod`): the try's
//! ExecuteTask workload, whose token must not show in the pod's spec, and its DAG bundle.
//!
//! It is created right after the pod, owned by it: the pod waits in `ContainerCreating` until
//! its Secret volume can be mounted, and the cluster's garbage collector deletes the Secret with
//! the pod even if Gust dies in between. Gust also deletes it itself when it cleans the pod up
//! (a kept pod keeps no Secret: the token died with the try anyway).

use gust_executor::task_sdk::WorkerPod;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Api;
use kube::api::{DeleteParams, PostParams};

use super::api_error::api_error;
use crate::build::MANAGED_BY_LABEL;

/// The Secret of `worker`, owned by `pod` (as created, with its uid).
#[must_use]
pub fn secret(worker: &WorkerPod, pod: &Pod) -> Secret {
    let owner = OwnerReference {
        api_version: "v1".to_owned(),
        kind: "Pod".to_owned(),
        name: pod.metadata.name.clone().unwrap_or_default(),
        uid: pod.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: None,
    };
    let data = worker.secret_data.as_ref().map(|data| {
        data.iter()
            .map(|(key, value)| (key.clone(), ByteString(value.clone().into_bytes())))
            .collect()
    });
    Secret {
        metadata: ObjectMeta {
            name: Some(worker.secret_name.clone()),
            namespace: pod.metadata.namespace.clone(),
            labels: Some([(MANAGED_BY_LABEL.0.to_owned(), MANAGED_BY_LABEL.1.to_owned())].into()),
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        data,
        immutable: Some(true),
        ..Secret::default()
    }
}

/// Creates `worker`'s Secret for `pod`. One left by an earlier pod of the same try (a pod
/// created again after an eviction) is replaced.
pub async fn create(api: &Api<Secret>, worker: &WorkerPod, pod: &Pod) -> Result<(), String> {
    let secret = secret(worker, pod);
    let fail = |err: &kube::Error| {
        format!(
            "cannot create the try's Secret {}: {}",
            worker.secret_name,
            api_error(err)
        )
    };
    match api.create(&PostParams::default(), &secret).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 409 => {
            delete(api, &worker.secret_name).await;
            api.create(&PostParams::default(), &secret)
                .await
                .map(|_| ())
                .map_err(|err| fail(&err))
        }
        Err(err) => Err(fail(&err)),
    }
}

/// Deletes the Secret `name`; one already gone is fine.
pub async fn delete(api: &Api<Secret>, name: &str) -> Option<String> {
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Some(format!("deleted the try's Secret {name}")),
        Err(kube::Error::Api(status)) if status.code == 404 => None,
        Err(err) => Some(format!(
            "could not delete the try's Secret {name}: {}",
            api_error(&err)
        )),
    }
}
