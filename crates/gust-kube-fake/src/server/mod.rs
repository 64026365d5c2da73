//! The HTTP surface: routing, request recording, fault injection and shared helpers.
//!
//! Each resource has its own module (`pods`, `watch`, `logs`, `exec`, `events`); they turn
//! requests into store and kubelet operations and answer with real Kubernetes JSON. Every error,
//! including unknown paths and malformed input, is a `Status` body (see `crate::status`).

mod apply;
mod discovery;
mod events;
pub(crate) mod exec;
mod logs;
mod pods;
mod query;
mod resources;
mod watch;

use std::sync::Arc;

use axum::Router;
use axum::extract::{FromRequestParts, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use k8s_openapi::api::core::v1::Pod;
use serde::Serialize;

use crate::cluster::ClusterState;
use crate::lock;
use crate::status::ApiError;
use crate::store::PodKey;

/// The shared state as handlers extract it.
type Shared = State<Arc<ClusterState>>;

/// The router serving the fake API.
pub(crate) fn router(state: Arc<ClusterState>) -> Router {
    Router::new()
        .route("/version", get(version))
        .route("/api/v1/pods", get(pods::list_all))
        .route("/api/v1/events", get(events::list_all))
        .route(
            "/api/v1/namespaces/{namespace}/pods",
            get(pods::list).post(pods::create),
        )
        .route(
            "/api/v1/namespaces/{namespace}/pods/{name}",
            get(pods::get).delete(pods::delete).patch(pods::patch),
        )
        .route(
            "/api/v1/namespaces/{namespace}/pods/{name}/log",
            get(logs::get),
        )
        .route(
            "/api/v1/namespaces/{namespace}/pods/{name}/exec",
            get(exec::exec).post(exec::exec),
        )
        .route("/api/v1/namespaces/{namespace}/events", get(events::list))
        .route("/api", get(discovery::api_versions))
        .route("/api/v1", get(discovery::core_resources))
        .route("/apis", get(discovery::api_groups))
        .route("/apis/{group}/{version}", get(discovery::group_resources))
        .route("/api/v1/{resource}", any(resources::core_cluster))
        .route(
            "/api/v1/{resource}/{name}",
            any(resources::core_cluster_object),
        )
        .route(
            "/api/v1/namespaces/{namespace}",
            any(resources::namespace_object),
        )
        .route(
            "/api/v1/namespaces/{namespace}/{resource}",
            any(resources::core_namespaced),
        )
        .route(
            "/api/v1/namespaces/{namespace}/{resource}/{name}",
            any(resources::core_namespaced_object),
        )
        .route(
            "/apis/{group}/{version}/{resource}",
            any(resources::group_cluster),
        )
        .route(
            "/apis/{group}/{version}/{resource}/{name}",
            any(resources::group_cluster_object),
        )
        .route(
            "/apis/{group}/{version}/namespaces/{namespace}/{resource}",
            any(resources::group_namespaced),
        )
        .route(
            "/apis/{group}/{version}/namespaces/{namespace}/{resource}/{name}",
            any(resources::group_namespaced_object),
        )
        .route(
            "/apis/{group}/{version}/namespaces/{namespace}/{resource}/{name}/status",
            any(resources::group_namespaced_status),
        )
        .fallback(|| async { ApiError::unknown_path() })
        .method_not_allowed_fallback(|| async { ApiError::method_not_allowed() })
        .layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            record_and_inject,
        ))
        .with_state(state)
}

/// Records every request, then fails it if a fault is armed.
async fn record_and_inject(State(state): Shared, request: Request, next: Next) -> Response {
    let target = request
        .uri()
        .path_and_query()
        .map_or_else(|| request.uri().path().to_owned(), ToString::to_string);
    lock(&state.requests).push((request.method().clone(), target));
    let injected = {
        let mut faults = lock(&state.faults);
        (faults.fail_next > 0).then(|| {
            faults.fail_next -= 1;
            faults.status
        })
    };
    match injected {
        Some(status) => ApiError::injected(status).into_response(),
        None => next.run(request).await,
    }
}

async fn version() -> Response {
    json(
        StatusCode::OK,
        &serde_json::json!({
            "major": "1",
            "minor": "33",
            "gitVersion": "v1.33.0-gust-fake",
            "platform": "linux/amd64",
        }),
    )
}

/// A JSON response with `status`.
pub(crate) fn json<T: Serialize + ?Sized>(status: StatusCode, body: &T) -> Response {
    match serde_json::to_vec(body) {
        Ok(body) => {
            let mut response = (status, body).into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            response
        }
        Err(error) => {
            tracing::error!(%error, "a response could not be serialized");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// The `{namespace}` of a collection path.
pub(crate) struct Namespace(pub(crate) String);

impl<S: Send + Sync> FromRequestParts<S> for Namespace {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(namespace) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|rejection| ApiError::bad_request(rejection.body_text()))?;
        Ok(Namespace(namespace))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for PodKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path((namespace, name)) = Path::<(String, String)>::from_request_parts(parts, state)
            .await
            .map_err(|rejection| ApiError::bad_request(rejection.body_text()))?;
        Ok(PodKey { namespace, name })
    }
}

/// The pod under `key`, or 404.
pub(crate) fn existing_pod(state: &ClusterState, key: &PodKey) -> Result<Arc<Pod>, ApiError> {
    state
        .store()
        .pod(key)
        .ok_or_else(|| ApiError::pod_not_found(&key.name))
}

/// The container a log or exec request targets, resolved as the API server does.
pub(crate) fn target_container(pod: &Pod, requested: Option<&str>) -> Result<String, ApiError> {
    let pod_name = pod.metadata.name.as_deref().unwrap_or_default();
    let spec = pod.spec.as_ref();
    let main: Vec<&str> = spec
        .map(|s| s.containers.iter().map(|c| c.name.as_str()).collect())
        .unwrap_or_default();
    let init: Vec<&str> = spec
        .and_then(|s| s.init_containers.as_ref())
        .map(|init| init.iter().map(|c| c.name.as_str()).collect())
        .unwrap_or_default();
    match requested.filter(|name| !name.is_empty()) {
        Some(name) if main.contains(&name) || init.contains(&name) => Ok(name.to_owned()),
        Some(name) => Err(ApiError::bad_request(format!(
            "container {name} is not valid for pod {pod_name}"
        ))),
        None => match main.as_slice() {
            [only] => Ok((*only).to_owned()),
            _ => {
                let mut message = format!(
                    "a container name must be specified for pod {pod_name}, choose one of: [{}]",
                    main.join(" ")
                );
                if !init.is_empty() {
                    message.push_str(&format!(
                        " or one of the init containers: [{}]",
                        init.join(" ")
                    ));
                }
                Err(ApiError::bad_request(message))
            }
        },
    }
}
