//! Airflow's Execution API, the one Airflow 3's Task SDK talks to while it runs a task: served
//! under `/execution/` so that Python tasks run in Airflow's own task runner
//! (`airflow.sdk.execution_time.execute_workload`) while Gust keeps scheduling, state and XComs.
//!
//! Every route but `/health` needs a try's token ([`tokens`]); a token acts only for its own
//! try, and only while that try runs here (the [`ExecutionBroker`] holds the live tries). The
//! routes record what the worker says (started, heartbeats, XComs, rendered fields, the state
//! it reports) in the broker; the runtime that started the try turns the reported state into
//! the try's outcome once the worker exits, so only the scheduler moves task state. Requests
//! and answers follow Airflow's schemas for [`API_VERSION`], the version
//! apache-airflow-task-sdk 1.3 (Airflow 3.3) sends in its `Airflow-API-Version` header.

mod assets;
mod dag_runs;
mod models;
mod routes;
mod task_states;
pub mod tokens;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use gust_core::clock::Clock;
use gust_executor::execution::{ExecutionBroker, LiveTry, Refused};
use gust_store::{SecretKey, Store};

pub use tokens::{TASK_TOKEN_TTL, TaskTokens};

/// The Execution API version served: the one the Task SDK of Airflow 3.3 speaks.
pub const API_VERSION: &str = "2026-06-30";

/// The header that carries the version, both ways.
const VERSION_HEADER: &str = "airflow-api-version";

/// The largest body a worker may send (an XCom, rendered fields).
pub const MAX_EXECUTION_BODY_BYTES: usize = 8 << 20;

/// What the Execution API's handlers share.
#[derive(Clone)]
pub struct ExecutionState {
    broker: Arc<ExecutionBroker>,
    clock: Arc<dyn Clock>,
    /// The store: where variables tasks set are kept, with the key they are encrypted with, and
    /// runs are read from (none: variables in this process only, as for `gust dags test`).
    variables: Option<(Store, SecretKey)>,
    /// How long tokens last, to know when to hand out a fresh one.
    token_ttl: std::time::Duration,
}

impl ExecutionState {
    /// Handlers over `broker`'s tries, telling time by `clock`.
    #[must_use]
    pub fn new(broker: Arc<ExecutionBroker>, clock: Arc<dyn Clock>) -> Self {
        Self {
            broker,
            clock,
            variables: None,
            token_ttl: TASK_TOKEN_TTL,
        }
    }

    /// Variables set by tasks are also written to `store`, encrypted with `key`.
    #[must_use]
    pub fn with_variable_store(mut self, store: Store, key: SecretKey) -> Self {
        self.variables = Some((store, key));
        self
    }

    /// Tokens last `ttl` (the broker's token issuer's validity).
    #[must_use]
    pub fn with_token_ttl(mut self, ttl: std::time::Duration) -> Self {
        self.token_ttl = ttl;
        self
    }
}

/// The Execution API's routes, to be nested under `/execution`.
pub fn router(state: ExecutionState) -> Router {
    let authenticated = routes::authenticated()
        .merge(dag_runs::routes())
        .merge(assets::routes())
        .merge(task_states::routes())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            authenticate,
        ));
    Router::new()
        .route("/health", axum::routing::get(routes::health))
        .merge(authenticated)
        .layer(axum::middleware::from_fn(negotiate_version))
        .layer(DefaultBodyLimit::max(MAX_EXECUTION_BODY_BYTES))
        .with_state(state)
}

/// The Execution API's routes under `/execution`, to serve alone or merge into a server's.
pub fn nested(state: ExecutionState) -> Router {
    Router::new().nest("/execution", router(state))
}

/// An error answered as Airflow's `HTTPException` is: `{"detail": ...}`.
#[derive(Debug)]
pub(crate) struct ExecError {
    status: StatusCode,
    detail: serde_json::Value,
}

impl ExecError {
    fn new(status: StatusCode, reason: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            detail: serde_json::json!({"reason": reason, "message": message.into()}),
        }
    }

    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub(crate) fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "access_denied", message)
    }

    pub(crate) fn conflict(reason: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, reason, message)
    }

    pub(crate) fn unprocessable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_payload", message)
    }

    pub(crate) fn with_detail(mut self, key: &str, value: serde_json::Value) -> Self {
        if let Some(detail) = self.detail.as_object_mut() {
            detail.insert(key.to_owned(), value);
        }
        self
    }
}

impl IntoResponse for ExecError {
    fn into_response(self) -> Response {
        (
            self.status,
            axum::Json(serde_json::json!({"detail": self.detail})),
        )
            .into_response()
    }
}

/// Refuses versions other than [`API_VERSION`] (a request without the header gets it, as
/// Airflow's server defaults to its latest), and names the version in every answer.
async fn negotiate_version(request: Request, next: Next) -> Response {
    let asked = request
        .headers()
        .get(VERSION_HEADER)
        .map(|v| v.to_str().unwrap_or("").to_owned());
    if let Some(asked) = asked
        && asked != API_VERSION
    {
        return ExecError {
            status: StatusCode::BAD_REQUEST,
            detail: serde_json::Value::String(format!(
                "Airflow-API-Version {asked:?} is not served: Gust serves {API_VERSION}, the \
                 version of apache-airflow-task-sdk 1.3 (Airflow 3.3); install \
                 apache-airflow==3.3.* in the Python environment of [python] interpreter"
            )),
        }
        .into_response();
    }
    let mut response = next.run(request).await;
    response
        .headers_mut()
        .insert(VERSION_HEADER, HeaderValue::from_static(API_VERSION));
    response
}

/// Finds the try the bearer token is scoped to and hands it to the handler; answers with a
/// fresh token (`Refreshed-API-Token`) once the worker's has lived half its life.
async fn authenticate(
    State(state): State<ExecutionState>,
    mut request: Request,
    next: Next,
) -> Response {
    let token = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .unwrap_or("");
    let now = state.clock.now();
    let (live, grant) = match state.broker.authorize(token, now) {
        Ok(found) => found,
        Err(refused @ Refused::BadToken) => {
            return ExecError::new(StatusCode::FORBIDDEN, "invalid_token", refused.to_string())
                .into_response();
        }
        Err(refused) => return ExecError::not_found(refused.to_string()).into_response(),
    };
    let ti_id = live.ti_id;
    request.extensions_mut().insert::<Arc<LiveTry>>(live);
    let mut response = next.run(request).await;
    let half = chrono::Duration::from_std(state.token_ttl / 2).unwrap_or_default();
    if grant.expires_at - now < half
        && let Ok(fresh) = HeaderValue::from_str(&state.broker.reissue(ti_id, now))
    {
        response.headers_mut().insert("Refreshed-API-Token", fresh);
    }
    response
}
