//! Every kind but pods and events, generically: create, get, list (or watch), server-side apply
//! and merge patches, replace and delete, namespaced or cluster-wide, for the built-in kinds and
//! any kind a stored CRD defines (`crate::resources`). A kind that is not served is a 404, as
//! for a CRD that is not installed. Deleting an object deletes the pods and objects it owns
//! (`ownerReferences`), as the garbage collector would.

use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::time::{Interval, Sleep};
use tokio_util::sync::CancellationToken;

use super::query::Query;
use super::{Shared, apply, json};
use crate::cluster::ClusterState;
use crate::resources::{
    CRD_GROUP, CRD_RESOURCE, ObjectKey, ObjectRecord, ResourceType, WriteError, metadata,
};
use crate::selector::LabelSelector;
use crate::status::{ApiError, expired};
use crate::store::{Change, Expired, PodKey};

/// How often a watch that allows bookmarks gets one.
const BOOKMARK_INTERVAL: Duration = Duration::from_secs(1);
/// The largest request body read: a CRD with a big schema fits.
const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

/// What a request addresses: a kind, maybe a namespace, maybe one object.
#[derive(Clone, Debug)]
struct Target {
    group: String,
    version: String,
    plural: String,
    namespace: Option<String>,
    name: Option<String>,
}

/// The request's method, headers, query and body, passed on whole.
struct Call {
    method: Method,
    query: Query,
    headers: HeaderMap,
    body: Bytes,
}

/// `/api/v1/namespaces/{namespace}/{resource}`.
pub(crate) async fn core_namespaced(
    State(state): Shared,
    Path((namespace, resource)): Path<(String, String)>,
    method: Method,
    query: Query,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let target = Target::new("", "v1", resource, Some(namespace), None);
    serve(
        &state,
        target,
        Call {
            method,
            query,
            headers,
            body,
        },
    )
}

/// `/api/v1/namespaces/{namespace}/{resource}/{name}`.
pub(crate) async fn core_namespaced_object(
    State(state): Shared,
    Path((namespace, resource, name)): Path<(String, String, String)>,
    method: Method,
    query: Query,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let target = Target::new("", "v1", resource, Some(namespace), Some(name));
    serve(
        &state,
        target,
        Call {
            method,
            query,
            headers,
            body,
        },
    )
}

/// `/api/v1/{resource}`: a cluster-wide kind, or a namespaced one across namespaces.
pub(crate) async fn core_cluster(
    State(state): Shared,
    Path(resource): Path<String>,
    method: Method,
    query: Query,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let target = Target::new("", "v1", resource, None, None);
    serve(
        &state,
        target,
        Call {
            method,
            query,
            headers,
            body,
        },
    )
}

/// `/api/v1/{resource}/{name}` (and `/api/v1/namespaces/{name}`).
pub(crate) async fn core_cluster_object(
    State(state): Shared,
    Path((resource, name)): Path<(String, String)>,
    method: Method,
    query: Query,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let target = Target::new("", "v1", resource, None, Some(name));
    serve(
        &state,
        target,
        Call {
            method,
            query,
            headers,
            body,
        },
    )
}

/// `/api/v1/namespaces/{namespace}`: a Namespace object.
pub(crate) async fn namespace_object(
    State(state): Shared,
    Path(name): Path<String>,
    method: Method,
    query: Query,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let target = Target::new("", "v1", "namespaces".to_owned(), None, Some(name));
    serve(
        &state,
        target,
        Call {
            method,
            query,
            headers,
            body,
        },
    )
}

/// `/apis/{group}/{version}/namespaces/{namespace}/{resource}`.
pub(crate) async fn group_namespaced(
    State(state): Shared,
    Path((group, version, namespace, resource)): Path<(String, String, String, String)>,
    method: Method,
    query: Query,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let target = Target::new(&group, &version, resource, Some(namespace), None);
    serve(
        &state,
        target,
        Call {
            method,
            query,
            headers,
            body,
        },
    )
}

/// `/apis/{group}/{version}/namespaces/{namespace}/{resource}/{name}`.
pub(crate) async fn group_namespaced_object(
    State(state): Shared,
    Path((group, version, namespace, resource, name)): Path<(
        String,
        String,
        String,
        String,
        String,
    )>,
    method: Method,
    query: Query,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let target = Target::new(&group, &version, resource, Some(namespace), Some(name));
    serve(
        &state,
        target,
        Call {
            method,
            query,
            headers,
            body,
        },
    )
}

/// `/apis/{group}/{version}/namespaces/{namespace}/{resource}/{name}/status`: read only.
pub(crate) async fn group_namespaced_status(
    State(state): Shared,
    Path((group, version, namespace, resource, name)): Path<(
        String,
        String,
        String,
        String,
        String,
    )>,
    method: Method,
) -> Result<Response, ApiError> {
    if method != Method::GET {
        return Err(ApiError::method_not_allowed());
    }
    let target = Target::new(&group, &version, resource, Some(namespace), Some(name));
    let kind = resolve(&state, &target)?;
    let key = target.key(&kind)?;
    let object = state
        .resources()
        .get(&key)
        .ok_or_else(|| ApiError::object_not_found(&kind.qualified(), &key.name))?;
    Ok(json(StatusCode::OK, &shown(&object, &target, &kind)))
}

/// `/apis/{group}/{version}/{resource}`.
pub(crate) async fn group_cluster(
    State(state): Shared,
    Path((group, version, resource)): Path<(String, String, String)>,
    method: Method,
    query: Query,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let target = Target::new(&group, &version, resource, None, None);
    serve(
        &state,
        target,
        Call {
            method,
            query,
            headers,
            body,
        },
    )
}

/// `/apis/{group}/{version}/{resource}/{name}`.
pub(crate) async fn group_cluster_object(
    State(state): Shared,
    Path((group, version, resource, name)): Path<(String, String, String, String)>,
    method: Method,
    query: Query,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let target = Target::new(&group, &version, resource, None, Some(name));
    serve(
        &state,
        target,
        Call {
            method,
            query,
            headers,
            body,
        },
    )
}

impl Target {
    fn new(
        group: &str,
        version: &str,
        plural: String,
        namespace: Option<String>,
        name: Option<String>,
    ) -> Self {
        Target {
            group: group.to_owned(),
            version: version.to_owned(),
            plural,
            namespace,
            name,
        }
    }

    /// The object's key; only for requests naming one object.
    fn key(&self, kind: &ResourceType) -> Result<ObjectKey, ApiError> {
        let name = self
            .name
            .clone()
            .ok_or_else(|| ApiError::bad_request("a name is needed"))?;
        Ok(ObjectKey {
            group: kind.group.clone(),
            plural: kind.plural.clone(),
            namespace: if kind.namespaced {
                self.namespace.clone().unwrap_or_default()
            } else {
                String::new()
            },
            name,
        })
    }
}

/// The served kind the target names, or 404 as a real server answers for a kind it lacks.
fn resolve(state: &ClusterState, target: &Target) -> Result<ResourceType, ApiError> {
    let kind = state
        .resources()
        .find_type(&target.group, &target.version, &target.plural)
        .filter(|kind| !kind.elsewhere)
        .ok_or_else(ApiError::unknown_path)?;
    // A cluster-wide kind has no namespaced paths; a namespaced one is only listed across them.
    let fits = !matches!(
        (kind.namespaced, &target.namespace, &target.name),
        (false, Some(_), _) | (true, None, Some(_))
    );
    if !fits {
        return Err(ApiError::unknown_path());
    }
    Ok(kind)
}

fn serve(state: &Arc<ClusterState>, target: Target, call: Call) -> Result<Response, ApiError> {
    let kind = resolve(state, &target)?;
    if call.body.len() > MAX_BODY_BYTES {
        return Err(ApiError::bad_request("the request body is too large"));
    }
    match (&call.method, target.name.is_some()) {
        (&Method::GET, false) if call.query.flag("watch")? => {
            watch(state, &target, &kind, &call.query)
        }
        (&Method::GET, false) => list(state, &target, &kind, &call.query),
        (&Method::POST, false) => create(state, &target, &kind, &call),
        (&Method::GET, true) => {
            let key = target.key(&kind)?;
            let object = state
                .resources()
                .get(&key)
                .ok_or_else(|| ApiError::object_not_found(&kind.qualified(), &key.name))?;
            Ok(json(StatusCode::OK, &shown(&object, &target, &kind)))
        }
        (&Method::PATCH, true) => patch(state, &target, &kind, &call),
        (&Method::PUT, true) => replace(state, &target, &kind, &call),
        (&Method::DELETE, true) => delete(state, &target, &kind),
        _ => Err(ApiError::method_not_allowed()),
    }
}

/// The object as the request's version shows it.
fn shown(object: &Value, target: &Target, kind: &ResourceType) -> Value {
    let mut object = object.clone();
    object["apiVersion"] = json!(kind.api_version(&target.version));
    object["kind"] = json!(kind.kind);
    object
}

fn labels_of(object: &Value) -> BTreeMap<String, String> {
    object
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                .collect()
        })
        .unwrap_or_default()
}

/// Which objects a list or watch covers: labels, and `metadata.name` / `metadata.namespace`.
#[derive(Clone, Debug, Default)]
struct ObjectFilter {
    group: String,
    plural: String,
    namespace: Option<String>,
    labels: LabelSelector,
    fields: Vec<(String, String, bool)>,
}

impl ObjectFilter {
    fn new(target: &Target, kind: &ResourceType, query: &Query) -> Result<Self, ApiError> {
        let labels = query.label_selector()?;
        let mut fields = Vec::new();
        for term in query
            .get("fieldSelector")
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
        {
            let (field, value, equal) = if let Some((f, v)) = term.split_once("!=") {
                (f, v, false)
            } else if let Some((f, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                (f, v, true)
            } else {
                return Err(ApiError::bad_request(format!(
                    "invalid selector: {term:?}; can't understand it"
                )));
            };
            let field = field.trim();
            if !matches!(field, "metadata.name" | "metadata.namespace") {
                return Err(ApiError::bad_request(format!(
                    "field label not supported: {field}"
                )));
            }
            fields.push((field.to_owned(), value.trim().to_owned(), equal));
        }
        Ok(ObjectFilter {
            group: kind.group.clone(),
            plural: kind.plural.clone(),
            namespace: target.namespace.clone().filter(|_| kind.namespaced),
            labels,
            fields,
        })
    }

    fn matches(&self, group: &str, plural: &str, object: &Value) -> bool {
        let text = |pointer: &str| {
            object
                .pointer(pointer)
                .and_then(Value::as_str)
                .unwrap_or_default()
        };
        group == self.group
            && plural == self.plural
            && self
                .namespace
                .as_deref()
                .is_none_or(|ns| text("/metadata/namespace") == ns)
            && self.labels.matches(Some(&labels_of(object)))
            && self.fields.iter().all(|(field, value, equal)| {
                let actual = match field.as_str() {
                    "metadata.name" => text("/metadata/name"),
                    _ => text("/metadata/namespace"),
                };
                (actual == value) == *equal
            })
    }
}

fn list(
    state: &ClusterState,
    target: &Target,
    kind: &ResourceType,
    query: &Query,
) -> Result<Response, ApiError> {
    let filter = ObjectFilter::new(target, kind, query)?;
    let resources = state.resources();
    let items: Vec<Value> = resources
        .list(&kind.group, &kind.plural, filter.namespace.as_deref())
        .into_iter()
        .filter(|(_, object)| filter.matches(&kind.group, &kind.plural, object))
        .map(|(_, object)| shown(&object, target, kind))
        .collect();
    let body = json!({
        "apiVersion": kind.api_version(&target.version),
        "kind": format!("{}List", kind.kind),
        "metadata": {"resourceVersion": resources.resource_version().to_string()},
        "items": items,
    });
    drop(resources);
    Ok(json(StatusCode::OK, &body))
}

fn parse_body(body: &Bytes) -> Result<Value, ApiError> {
    let value: Value = serde_json::from_slice(body).map_err(|error| {
        ApiError::bad_request(format!("the request body is not a JSON object: {error}"))
    })?;
    if !value.is_object() {
        return Err(ApiError::bad_request(
            "the request body is not a JSON object",
        ));
    }
    Ok(value)
}

/// Checks the body's kind and namespace against the request, fills them in, and names it.
fn admit(
    state: &ClusterState,
    target: &Target,
    kind: &ResourceType,
    mut object: Value,
) -> Result<(ObjectKey, Value), ApiError> {
    if let Some(given) = object.get("kind").and_then(Value::as_str)
        && given != kind.kind
    {
        return Err(ApiError::bad_request(format!(
            "the kind of the object ({given}) does not match the resource ({})",
            kind.kind
        )));
    }
    object["apiVersion"] = json!(kind.api_version(&target.version));
    object["kind"] = json!(kind.kind);
    let namespace = target.namespace.clone();
    let meta = metadata(&mut object);
    if kind.namespaced {
        match meta.get("namespace").and_then(Value::as_str) {
            None | Some("") => {
                meta.insert(
                    "namespace".to_owned(),
                    json!(namespace.clone().unwrap_or_default()),
                );
            }
            Some(ns) if Some(ns) == namespace.as_deref() => {}
            Some(_) => {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
        }
    } else {
        meta.remove("namespace");
    }
    let name = match meta.get("name").and_then(Value::as_str) {
        Some(name) if !name.is_empty() => name.to_owned(),
        _ => match meta.get("generateName").and_then(Value::as_str) {
            Some(prefix) if !prefix.is_empty() => {
                let seed = state.resources().resource_version();
                let name = format!("{prefix}{}", crate::admission::generated_suffix(seed));
                meta.insert("name".to_owned(), json!(name));
                name
            }
            _ => {
                return Err(ApiError::object_invalid(
                    &kind.kind,
                    "",
                    "metadata.name",
                    "Required value: name or generateName is required",
                ));
            }
        },
    };
    if let Some(expected) = &target.name
        && *expected != name
    {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({name}) does not match the name on the URL ({expected})"
        )));
    }
    if !crate::admission::is_dns1123_subdomain(&name) {
        return Err(ApiError::object_invalid(
            &kind.kind,
            &name,
            "metadata.name",
            "Invalid value: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.'",
        ));
    }
    if crate::jobs::is_job(&kind.group, &kind.plural) {
        crate::jobs::admit(&mut object, &name)?;
    }
    if kind.group == CRD_GROUP && kind.plural == CRD_RESOURCE {
        establish(&mut object, &name)?;
    }
    let key = ObjectKey {
        group: kind.group.clone(),
        plural: kind.plural.clone(),
        namespace: if kind.namespaced {
            namespace.unwrap_or_default()
        } else {
            String::new()
        },
        name,
    };
    Ok((key, object))
}

/// Checks a CRD and marks it established, as the apiextensions controller does.
fn establish(crd: &mut Value, name: &str) -> Result<(), ApiError> {
    let Some(kind) = crate::resources::crd_type(crd) else {
        return Err(ApiError::object_invalid(
            "CustomResourceDefinition",
            name,
            "spec",
            "Required value: group, names.plural, names.kind and at least one served version",
        ));
    };
    let expected = format!("{}.{}", kind.plural, kind.group);
    if name != expected {
        return Err(ApiError::object_invalid(
            "CustomResourceDefinition",
            name,
            "metadata.name",
            &format!(
                "Invalid value: \"{name}\": must be spec.names.plural+\".\"+spec.group ({expected})"
            ),
        ));
    }
    let names = crd.pointer("/spec/names").cloned().unwrap_or_default();
    crd["status"] = json!({
        "acceptedNames": names,
        "storedVersions": [kind.versions[0]],
        "conditions": [
            {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts"},
            {"type": "Established", "status": "True", "reason": "InitialNamesAccepted"},
        ],
    });
    Ok(())
}

fn create(
    state: &Arc<ClusterState>,
    target: &Target,
    kind: &ResourceType,
    call: &Call,
) -> Result<Response, ApiError> {
    let (key, object) = admit(state, target, kind, parse_body(&call.body)?)?;
    let manager = call
        .query
        .get("fieldManager")
        .unwrap_or("unknown")
        .to_owned();
    let object = apply::created(object, &manager, "Update");
    let stored = state
        .resources()
        .create(key.clone(), object)
        .map_err(|_| ApiError::object_exists(&kind.qualified(), &key.name))?;
    crate::spark::created(state, &key, &stored);
    crate::jobs::created(state, &key, &stored);
    Ok(json(StatusCode::CREATED, &shown(&stored, target, kind)))
}

fn patch(
    state: &Arc<ClusterState>,
    target: &Target,
    kind: &ResourceType,
    call: &Call,
) -> Result<Response, ApiError> {
    let content_type = call
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    let media_type = content_type.split(';').next().unwrap_or_default().trim();
    let key = target.key(kind)?;
    match media_type {
        "application/apply-patch+yaml" => server_side_apply(state, target, kind, call, key),
        "application/merge-patch+json" | "application/strategic-merge-patch+json" => {
            let patch = parse_body(&call.body)?;
            let updated = state
                .resources()
                .update(&key, |object| merge(object, &patch))
                .map_err(|_| ApiError::object_not_found(&kind.qualified(), &key.name))?;
            Ok(json(StatusCode::OK, &shown(&updated, target, kind)))
        }
        _ => Err(ApiError::unsupported_media_type(content_type)),
    }
}

fn server_side_apply(
    state: &Arc<ClusterState>,
    target: &Target,
    kind: &ResourceType,
    call: &Call,
    key: ObjectKey,
) -> Result<Response, ApiError> {
    let Some(manager) = call.query.get("fieldManager").filter(|m| !m.is_empty()) else {
        return Err(ApiError::object_invalid(
            &kind.kind,
            &key.name,
            "fieldManager",
            "Required value: is required for apply patch",
        ));
    };
    let force = call.query.flag("force")?;
    let (key, applied) = admit(state, target, kind, parse_body(&call.body)?)?;
    let mut resources = state.resources();
    let Some(current) = resources.get(&key) else {
        let object = apply::created(applied, manager, "Apply");
        let stored = resources
            .create(key.clone(), object)
            .map_err(|_| ApiError::object_exists(&kind.qualified(), &key.name))?;
        drop(resources);
        crate::spark::created(state, &key, &stored);
        crate::jobs::created(state, &key, &stored);
        return Ok(json(StatusCode::CREATED, &shown(&stored, target, kind)));
    };
    let merged = apply::apply(&current, &applied, manager, force).map_err(|conflicts| {
        ApiError::apply_conflict(&kind.qualified(), &key.name, &conflicts.fields)
    })?;
    let updated = resources
        .update(&key, |object| {
            let status = object.get("status").cloned();
            *object = merged;
            if let Some(status) = status
                && kind.group != CRD_GROUP
            {
                object["status"] = status;
            }
        })
        .map_err(|_| ApiError::object_not_found(&kind.qualified(), &key.name))?;
    drop(resources);
    Ok(json(StatusCode::OK, &shown(&updated, target, kind)))
}

fn replace(
    state: &Arc<ClusterState>,
    target: &Target,
    kind: &ResourceType,
    call: &Call,
) -> Result<Response, ApiError> {
    let (key, object) = admit(state, target, kind, parse_body(&call.body)?)?;
    let updated = state
        .resources()
        .update(&key, |current| {
            let keep = current.pointer("/metadata/managedFields").cloned();
            *current = object;
            if let Some(keep) = keep {
                metadata(current).insert("managedFields".to_owned(), keep);
            }
        })
        .map_err(|_| ApiError::object_not_found(&kind.qualified(), &key.name))?;
    Ok(json(StatusCode::OK, &shown(&updated, target, kind)))
}

fn delete(
    state: &Arc<ClusterState>,
    target: &Target,
    kind: &ResourceType,
) -> Result<Response, ApiError> {
    let key = target.key(kind)?;
    let removed = state
        .resources()
        .remove(&key)
        .map_err(|error| match error {
            WriteError::NotFound | WriteError::Exists => {
                ApiError::object_not_found(&kind.qualified(), &key.name)
            }
        })?;
    if let Some(uid) = removed.pointer("/metadata/uid").and_then(Value::as_str) {
        collect_garbage(state, uid);
    }
    Ok(json(StatusCode::OK, &shown(&removed, target, kind)))
}

/// Deletes what the object with `uid` owned: pods (gracefully) and other objects.
pub(crate) fn collect_garbage(state: &Arc<ClusterState>, uid: &str) {
    let owned_by = |refs: Option<&Value>| {
        refs.and_then(Value::as_array).is_some_and(|refs| {
            refs.iter()
                .any(|r| r.get("uid").and_then(Value::as_str) == Some(uid))
        })
    };
    let pods: Vec<PodKey> = state
        .store()
        .pods()
        .filter(|(_, pod)| {
            pod.metadata
                .owner_references
                .iter()
                .flatten()
                .any(|r| r.uid == uid)
        })
        .map(|(key, _)| key.clone())
        .collect();
    for pod in pods {
        state.delete_pod(&pod, None);
    }
    let objects: Vec<(ObjectKey, String)> = state
        .resources()
        .all()
        .filter(|(_, object)| owned_by(object.pointer("/metadata/ownerReferences")))
        .map(|(key, object)| {
            let uid = object
                .pointer("/metadata/uid")
                .and_then(Value::as_str)
                .unwrap_or_default();
            (key.clone(), uid.to_owned())
        })
        .collect();
    for (key, owned_uid) in objects {
        if state.resources().remove(&key).is_ok() {
            collect_garbage(state, &owned_uid);
        }
    }
}

/// RFC 7386 merge patch.
fn merge(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
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

fn watch(
    state: &Arc<ClusterState>,
    target: &Target,
    kind: &ResourceType,
    query: &Query,
) -> Result<Response, ApiError> {
    let filter = ObjectFilter::new(target, kind, query)?;
    let requested = match query.get("resourceVersion") {
        None | Some("" | "0") => None,
        Some(text) => Some(text.parse::<u64>().map_err(|_| {
            ApiError::bad_request(format!("resourceVersion: Invalid value: {text:?}"))
        })?),
    };
    let send_initial = query.flag("sendInitialEvents")?;
    let bookmarks = query.flag("allowWatchBookmarks")?;
    let timeout = query.number::<u64>("timeoutSeconds")?;
    let mut pending = VecDeque::new();
    let subscription = {
        let resources = state.resources();
        let start = match requested {
            Some(requested) if !send_initial => requested,
            _ => resources.resource_version(),
        };
        let subscription = resources.subscribe(start);
        if subscription.is_ok() && (requested.is_none() || send_initial) {
            for (_, object) in
                resources.list(&kind.group, &kind.plural, filter.namespace.as_deref())
            {
                if filter.matches(&kind.group, &kind.plural, &object) {
                    pending.push_back(line(
                        "ADDED",
                        &serde_json::to_vec(&*object).unwrap_or_default(),
                    ));
                }
            }
        }
        subscription
    };
    let api_version = kind.api_version(&target.version);
    let session = match subscription {
        Err(Expired { requested, oldest }) => {
            pending.push_back(line(
                "ERROR",
                &serde_json::to_vec(&expired(requested, oldest)).unwrap_or_default(),
            ));
            Session {
                filter,
                api_version,
                kind: kind.kind.clone(),
                pending,
                replay: VecDeque::new(),
                live: None,
                progress: 0,
                bookmarks: None,
                deadline: None,
                breaker: CancellationToken::new(),
                shutdown: state.shutdown.clone(),
                state: Arc::clone(state),
            }
        }
        Ok(subscription) => {
            if send_initial && bookmarks {
                pending.push_back(bookmark(
                    &api_version,
                    &kind.kind,
                    subscription.resource_version,
                    true,
                ));
            }
            Session {
                filter,
                api_version,
                kind: kind.kind.clone(),
                pending,
                replay: subscription.replay.into(),
                live: Some(subscription.live),
                progress: subscription
                    .resource_version
                    .min(requested.unwrap_or(u64::MAX)),
                bookmarks: bookmarks.then(|| {
                    let start = tokio::time::Instant::now() + BOOKMARK_INTERVAL;
                    tokio::time::interval_at(start, BOOKMARK_INTERVAL)
                }),
                deadline: timeout.map(|s| Box::pin(tokio::time::sleep(Duration::from_secs(s)))),
                breaker: state.breaker(),
                shutdown: state.shutdown.clone(),
                state: Arc::clone(state),
            }
        }
    };
    let stream = futures::stream::unfold(session, |mut session| async move {
        session.next().await.map(|chunk| (chunk, session))
    });
    let mut response = Body::from_stream(stream).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

/// One open watch over generic objects.
struct Session {
    state: Arc<ClusterState>,
    filter: ObjectFilter,
    api_version: String,
    kind: String,
    pending: VecDeque<Bytes>,
    replay: VecDeque<Arc<ObjectRecord>>,
    live: Option<broadcast::Receiver<Arc<ObjectRecord>>>,
    progress: u64,
    bookmarks: Option<Interval>,
    deadline: Option<Pin<Box<Sleep>>>,
    breaker: CancellationToken,
    shutdown: CancellationToken,
}

impl Session {
    async fn next(&mut self) -> Option<Result<Bytes, io::Error>> {
        loop {
            if let Some(line) = self.pending.pop_front() {
                return Some(Ok(line));
            }
            if let Some(record) = self.replay.pop_front() {
                self.pass(&record);
                continue;
            }
            let live = self.live.as_mut()?;
            let bookmarks = self.bookmarks.as_mut();
            let deadline = self.deadline.as_mut();
            tokio::select! {
                biased;
                () = self.breaker.cancelled() => {
                    self.live = None;
                    return Some(Err(io::Error::new(io::ErrorKind::ConnectionAborted, "the fake cluster broke the connection")));
                }
                () = self.shutdown.cancelled() => return None,
                () = async { match deadline { Some(d) => d.await, None => std::future::pending().await } } => return None,
                received = live.recv() => match received {
                    Ok(record) => self.pass(&record),
                    Err(RecvError::Lagged(_)) => self.catch_up(),
                    Err(RecvError::Closed) => return None,
                },
                _ = async { match bookmarks { Some(i) => i.tick().await, None => std::future::pending().await } } => {
                    self.pending.push_back(bookmark(&self.api_version, &self.kind, self.progress, false));
                }
            }
        }
    }

    fn pass(&mut self, record: &ObjectRecord) {
        if record.resource_version <= self.progress {
            return;
        }
        self.progress = record.resource_version;
        let now = self
            .filter
            .matches(&record.group, &record.plural, &record.object);
        let before = record
            .previous
            .as_deref()
            .is_some_and(|o| self.filter.matches(&record.group, &record.plural, o));
        let kind = match (record.change, before, now) {
            (Change::Added, _, true) => "ADDED",
            (Change::Deleted, _, true) => "DELETED",
            (Change::Modified, true, true) => "MODIFIED",
            (Change::Modified, false, true) => "ADDED",
            (Change::Modified, true, false) => "DELETED",
            (Change::Added | Change::Deleted | Change::Modified, _, false) => return,
        };
        self.pending.push_back(line(kind, &record.json));
    }

    fn catch_up(&mut self) {
        match self.state.resources().subscribe(self.progress) {
            Ok(subscription) => {
                self.replay = subscription.replay.into();
                self.live = Some(subscription.live);
            }
            Err(Expired { requested, oldest }) => {
                self.pending.push_back(line(
                    "ERROR",
                    &serde_json::to_vec(&expired(requested, oldest)).unwrap_or_default(),
                ));
                self.live = None;
            }
        }
    }
}

fn line(kind: &str, object: &[u8]) -> Bytes {
    let mut line = Vec::with_capacity(object.len() + 32);
    line.extend_from_slice(b"{\"type\":\"");
    line.extend_from_slice(kind.as_bytes());
    line.extend_from_slice(b"\",\"object\":");
    line.extend_from_slice(object);
    line.extend_from_slice(b"}\n");
    Bytes::from(line)
}

fn bookmark(
    api_version: &str,
    kind: &str,
    resource_version: u64,
    initial_events_end: bool,
) -> Bytes {
    let mut metadata = json!({ "resourceVersion": resource_version.to_string() });
    if initial_events_end {
        metadata["annotations"] = json!({ "k8s.io/initial-events-end": "true" });
    }
    let object = json!({ "kind": kind, "apiVersion": api_version, "metadata": metadata });
    line("BOOKMARK", &serde_json::to_vec(&object).unwrap_or_default())
}
