//! Events: `GET /api/v1/namespaces/{ns}/events` and `GET /api/v1/events`, by field selector.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use k8s_openapi::List;
use k8s_openapi::api::core::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ListMeta;

use super::query::Query;
use super::{Namespace, Shared, json};
use crate::cluster::ClusterState;
use crate::status::ApiError;

/// `GET /api/v1/namespaces/{ns}/events`.
pub(crate) async fn list(
    State(state): Shared,
    Namespace(namespace): Namespace,
    query: Query,
) -> Result<Response, ApiError> {
    respond(&state, Some(&namespace), &query)
}

/// `GET /api/v1/events`.
pub(crate) async fn list_all(State(state): Shared, query: Query) -> Result<Response, ApiError> {
    respond(&state, None, &query)
}

fn respond(
    state: &ClusterState,
    namespace: Option<&str>,
    query: &Query,
) -> Result<Response, ApiError> {
    if query.flag("watch")? {
        return Err(ApiError::bad_request(
            "the fake cluster does not watch events",
        ));
    }
    let fields = query.event_field_selector()?;
    let store = state.store();
    let items = store
        .events()
        .iter()
        .filter(|event| namespace.is_none_or(|ns| event.metadata.namespace.as_deref() == Some(ns)))
        .filter(|event| fields.matches_event(event))
        .cloned()
        .collect();
    let list: List<Event> = List {
        metadata: ListMeta {
            resource_version: Some(store.resource_version().to_string()),
            ..ListMeta::default()
        },
        items,
    };
    drop(store);
    Ok(json(StatusCode::OK, &list))
}
