//! Discovery: `/api`, `/api/v1`, `/apis` and `/apis/{group}/{version}`, listing the built-in
//! kinds and every kind a stored CRD defines, so that kube's discovery (`pinned_kind`,
//! `Discovery::run`) maps a manifest's kind to its resource as on a real cluster. A group or
//! version no CRD serves is a 404, which is how a client learns that a CRD is not installed.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use super::{Shared, json};
use crate::resources::ResourceType;
use crate::status::ApiError;

/// The verbs every stored kind supports.
const VERBS: &[&str] = &[
    "create", "delete", "get", "list", "patch", "update", "watch",
];

/// `GET /api`: the core group's versions.
pub(crate) async fn api_versions() -> Response {
    json(
        StatusCode::OK,
        &json!({
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}],
        }),
    )
}

/// `GET /apis`: every named group and its versions.
pub(crate) async fn api_groups(State(state): Shared) -> Response {
    let types = state.resources().types().to_vec();
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for t in types.iter().filter(|t| !t.group.is_empty()) {
        let versions = groups.entry(t.group.clone()).or_default();
        for version in &t.versions {
            if !versions.contains(version) {
                versions.push(version.clone());
            }
        }
    }
    let groups: Vec<Value> = groups
        .into_iter()
        .map(|(name, versions)| {
            let entries: Vec<Value> = versions
                .iter()
                .map(|v| json!({"groupVersion": format!("{name}/{v}"), "version": v}))
                .collect();
            let preferred = entries.first().cloned().unwrap_or_default();
            json!({"name": name, "versions": entries, "preferredVersion": preferred})
        })
        .collect();
    json(
        StatusCode::OK,
        &json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}),
    )
}

/// `GET /api/v1`: the core kinds.
pub(crate) async fn core_resources(State(state): Shared) -> Response {
    let types = state.resources().types().to_vec();
    json(StatusCode::OK, &resource_list(&types, "", "v1"))
}

/// `GET /apis/{group}/{version}`: the kinds of one group version, or 404.
pub(crate) async fn group_resources(
    State(state): Shared,
    Path((group, version)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let types = state.resources().types().to_vec();
    let served = types
        .iter()
        .any(|t| t.group == group && t.versions.contains(&version));
    if !served {
        return Err(ApiError::unknown_path());
    }
    Ok(json(
        StatusCode::OK,
        &resource_list(&types, &group, &version),
    ))
}

fn resource_list(types: &[ResourceType], group: &str, version: &str) -> Value {
    let mut resources = Vec::new();
    for t in types
        .iter()
        .filter(|t| t.group == group && t.versions.iter().any(|v| v == version))
    {
        resources.push(json!({
            "name": t.plural,
            "singularName": t.singular,
            "namespaced": t.namespaced,
            "kind": t.kind,
            "verbs": VERBS,
        }));
        if t.status {
            resources.push(json!({
                "name": format!("{}/status", t.plural),
                "singularName": "",
                "namespaced": t.namespaced,
                "kind": t.kind,
                "verbs": ["get", "patch", "update"],
            }));
        }
    }
    let group_version = if group.is_empty() {
        version.to_owned()
    } else {
        format!("{group}/{version}")
    };
    json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": resources,
    })
}
