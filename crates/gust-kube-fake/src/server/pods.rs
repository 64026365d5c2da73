//! The pod collection and pod objects: create, get, list (or watch), patch, delete.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use k8s_openapi::List;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{DeleteOptions, ListMeta, StatusCause};
use serde_json::Value;

use super::query::Query;
use super::{Namespace, Shared, existing_pod, json, watch};
use crate::admission;
use crate::cluster::ClusterState;
use crate::kubelet::Kubelet;
use crate::selector::{FieldSelector, LabelSelector};
use crate::status::ApiError;
use crate::store::PodKey;

/// Which pods a list or watch covers.
#[derive(Clone, Debug, Default)]
pub(crate) struct PodFilter {
    /// Only this namespace, or every one.
    pub(crate) namespace: Option<String>,
    /// The label selector.
    pub(crate) labels: LabelSelector,
    /// The field selector.
    pub(crate) fields: FieldSelector,
}

impl PodFilter {
    fn from_query(namespace: Option<String>, query: &Query) -> Result<Self, ApiError> {
        Ok(PodFilter {
            namespace,
            labels: query.label_selector()?,
            fields: query.pod_field_selector()?,
        })
    }

    /// Whether the pod is in scope and selected.
    pub(crate) fn matches(&self, pod: &Pod) -> bool {
        self.namespace
            .as_ref()
            .is_none_or(|ns| pod.metadata.namespace.as_ref() == Some(ns))
            && self.labels.matches(pod.metadata.labels.as_ref())
            && self.fields.matches_pod(pod)
    }
}

/// `GET /api/v1/namespaces/{ns}/pods`: list, or watch with `watch=true`.
pub(crate) async fn list(
    State(state): Shared,
    Namespace(namespace): Namespace,
    query: Query,
) -> Result<Response, ApiError> {
    list_or_watch(&state, Some(namespace), &query)
}

/// `GET /api/v1/pods`: list or watch across namespaces.
pub(crate) async fn list_all(State(state): Shared, query: Query) -> Result<Response, ApiError> {
    list_or_watch(&state, None, &query)
}

fn list_or_watch(
    state: &Arc<ClusterState>,
    namespace: Option<String>,
    query: &Query,
) -> Result<Response, ApiError> {
    let filter = PodFilter::from_query(namespace, query)?;
    if query.flag("watch")? {
        return watch::serve(state, filter, query);
    }
    let limit = query.number::<usize>("limit")?.filter(|limit| *limit > 0);
    let after = query
        .get("continue")
        .filter(|token| !token.is_empty())
        .map(|token| {
            token
                .split_once('/')
                .map(|(ns, name)| PodKey::new(ns, name))
                .ok_or_else(|| ApiError::bad_request(format!("invalid continue token {token:?}")))
        })
        .transpose()?;
    let list = {
        let store = state.store();
        let selected = store
            .pods()
            .filter(|(key, _)| after.as_ref().is_none_or(|after| *key > after))
            .filter(|(_, pod)| filter.matches(pod));
        let mut items = Vec::new();
        let mut next = None;
        for (key, pod) in selected {
            if limit.is_some_and(|limit| items.len() == limit) {
                next = Some(key);
                break;
            }
            items.push(Pod::clone(pod));
        }
        let continue_ = next.and(items.last()).map(|last| {
            format!(
                "{}/{}",
                last.metadata.namespace.as_deref().unwrap_or_default(),
                last.metadata.name.as_deref().unwrap_or_default()
            )
        });
        List {
            metadata: ListMeta {
                resource_version: Some(store.resource_version().to_string()),
                continue_,
                ..ListMeta::default()
            },
            items,
        }
    };
    Ok(json(StatusCode::OK, &list))
}

/// `POST /api/v1/namespaces/{ns}/pods`.
pub(crate) async fn create(
    State(state): Shared,
    Namespace(namespace): Namespace,
    body: Bytes,
) -> Result<Response, ApiError> {
    let mut pod: Pod = serde_json::from_slice(&body).map_err(|error| {
        ApiError::bad_request(format!(
            "Pod in version \"v1\" cannot be handled as a Pod: {error}"
        ))
    })?;
    match pod.metadata.namespace.as_deref() {
        None | Some("") => pod.metadata.namespace = Some(namespace.clone()),
        Some(ns) if ns == namespace => {}
        Some(_) => {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
    }
    let mut store = state.store();
    if pod.metadata.name.as_deref().unwrap_or_default().is_empty()
        && let Some(prefix) = pod.metadata.generate_name.as_deref()
    {
        let seed = store.created_count() + store.resource_version();
        pod.metadata.name = Some(format!("{prefix}{}", admission::generated_suffix(seed)));
    }
    let name = pod.metadata.name.clone().unwrap_or_default();
    let causes = admission::validate_pod(&pod);
    if !causes.is_empty() {
        return Err(ApiError::invalid(&name, causes));
    }
    let key = PodKey::new(&namespace, &name);
    if store.contains(&key) {
        return Err(ApiError::already_exists(&name));
    }
    admission::default_pod(&mut pod);
    let pod = store.insert(key.clone(), pod);
    // Started under the store's lock, so a delete racing the create always finds the pod's task.
    Kubelet::start(&state, key, Arc::clone(&pod));
    drop(store);
    Ok(json(StatusCode::CREATED, &*pod))
}

/// `GET /api/v1/namespaces/{ns}/pods/{name}`.
pub(crate) async fn get(State(state): Shared, key: PodKey) -> Result<Response, ApiError> {
    let pod = existing_pod(&state, &key)?;
    Ok(json(StatusCode::OK, &*pod))
}

/// `DELETE /api/v1/namespaces/{ns}/pods/{name}`: graceful deletion.
pub(crate) async fn delete(
    State(state): Shared,
    key: PodKey,
    query: Query,
    body: Bytes,
) -> Result<Response, ApiError> {
    let options: DeleteOptions = if body.iter().all(u8::is_ascii_whitespace) {
        DeleteOptions::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|error| ApiError::bad_request(format!("invalid DeleteOptions: {error}")))?
    };
    let grace = query
        .number::<i64>("gracePeriodSeconds")?
        .or(options.grace_period_seconds);
    let pod = existing_pod(&state, &key)?;
    if let Some(preconditions) = &options.preconditions {
        if preconditions
            .uid
            .as_ref()
            .is_some_and(|uid| pod.metadata.uid.as_ref() != Some(uid))
        {
            return Err(ApiError::conflict(
                &key.name,
                "Precondition failed: UID in precondition does not match the UID of the object",
            ));
        }
        if preconditions
            .resource_version
            .as_ref()
            .is_some_and(|rv| pod.metadata.resource_version.as_ref() != Some(rv))
        {
            return Err(ApiError::conflict(
                &key.name,
                "Precondition failed: ResourceVersion in precondition does not match the ResourceVersion of the object",
            ));
        }
    }
    let pod = state
        .delete_pod(&key, grace)
        .ok_or_else(|| ApiError::pod_not_found(&key.name))?;
    Ok(json(StatusCode::OK, &pod))
}

/// `PATCH /api/v1/namespaces/{ns}/pods/{name}`: merge and strategic-merge patches of metadata.
pub(crate) async fn patch(
    State(state): Shared,
    key: PodKey,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    let media_type = content_type.split(';').next().unwrap_or_default().trim();
    if !matches!(
        media_type,
        "application/merge-patch+json" | "application/strategic-merge-patch+json"
    ) {
        return Err(ApiError::unsupported_media_type(content_type));
    }
    let patch: Value = serde_json::from_slice(&body)
        .map_err(|error| ApiError::bad_request(format!("invalid patch: {error}")))?;
    let current = existing_pod(&state, &key)?;
    let patched = apply_merge_patch(&current, &patch)
        .map_err(|error| ApiError::bad_request(format!("invalid patch: {error}")))?;
    if patched.spec != current.spec {
        return Err(ApiError::invalid(
            &key.name,
            vec![StatusCause {
                reason: Some("FieldValueForbidden".to_owned()),
                field: Some("spec".to_owned()),
                message: Some(
                    "Forbidden: pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)"
                        .to_owned(),
                ),
            }],
        ));
    }
    let uid = current.metadata.uid.clone();
    let updated = state
        .store()
        .update(&key, uid.as_deref(), |pod| {
            pod.metadata.labels = patched.metadata.labels;
            pod.metadata.annotations = patched.metadata.annotations;
            pod.metadata.finalizers = patched.metadata.finalizers;
            pod.metadata.owner_references = patched.metadata.owner_references;
        })
        .ok_or_else(|| ApiError::pod_not_found(&key.name))?;
    Ok(json(StatusCode::OK, &*updated))
}

/// Applies a JSON merge patch (RFC 7386) to the pod.
fn apply_merge_patch(pod: &Pod, patch: &Value) -> Result<Pod, serde_json::Error> {
    let mut document = serde_json::to_value(pod)?;
    merge(&mut document, patch);
    serde_json::from_value(document)
}

fn merge(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(serde_json::Map::new());
    }
    if let Value::Object(target) = target {
        for (key, value) in patch {
            if value.is_null() {
                target.remove(key);
            } else {
                merge(target.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_patch_adds_replaces_and_removes_keys() {
        let mut document = serde_json::json!({"a": {"x": 1, "y": 2}, "b": [1, 2]});
        merge(
            &mut document,
            &serde_json::json!({"a": {"x": null, "z": 3}, "b": [3]}),
        );
        assert_eq!(
            document,
            serde_json::json!({"a": {"y": 2, "z": 3}, "b": [3]})
        );
    }
}
