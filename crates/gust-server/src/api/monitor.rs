//! `GET /api/v2/monitor/health` and `GET /api/v2/version`: the two endpoints that need no
//! credentials, for load balancers and probes.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::time::Timestamp;
use crate::state::AppState;

/// A scheduler is healthy when its latest heartbeat is this recent (Airflow's
/// `scheduler_health_check_threshold`).
pub const HEARTBEAT_THRESHOLD: chrono::Duration = chrono::Duration::seconds(30);

/// The public endpoints.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_health))
        .routes(routes!(get_version))
}

/// A component's status.
#[derive(Debug, Serialize, ToSchema)]
pub struct BaseInfoResponse {
    /// `healthy` or `unhealthy`.
    pub status: Option<String>,
}

/// The schedulers' status.
#[derive(Debug, Serialize, ToSchema)]
pub struct SchedulerInfoResponse {
    /// `healthy` when a scheduler's heartbeat is recent.
    pub status: Option<String>,
    /// The latest heartbeat of any scheduler.
    pub latest_scheduler_heartbeat: Option<Timestamp>,
}

/// The triggerer's status: Gust has no triggerer (following is always asynchronous in the
/// scheduler), so both are null, as Airflow reports a triggerer that never ran.
#[derive(Debug, Serialize, ToSchema)]
pub struct TriggererInfoResponse {
    /// Always null.
    pub status: Option<String>,
    /// Always null.
    pub latest_triggerer_heartbeat: Option<Timestamp>,
}

/// The health of each component.
#[derive(Debug, Serialize, ToSchema)]
pub struct HealthInfoResponse {
    /// The metadata database.
    pub metadatabase: BaseInfoResponse,
    /// The schedulers.
    pub scheduler: SchedulerInfoResponse,
    /// The triggerer (none in Gust).
    pub triggerer: TriggererInfoResponse,
}

/// The server's version.
#[derive(Debug, Serialize, ToSchema)]
pub struct VersionInfo {
    /// Gust's version.
    pub version: String,
    /// The git commit it was built from, when known.
    pub git_version: Option<String>,
}

fn status(healthy: bool) -> Option<String> {
    Some(if healthy { "healthy" } else { "unhealthy" }.to_owned())
}

/// Get the health of the metadata database and the schedulers.
#[utoipa::path(get, path = "/api/v2/monitor/health", tag = "Monitor",
    responses((status = 200, body = HealthInfoResponse)))]
async fn get_health(State(state): State<AppState>) -> Json<HealthInfoResponse> {
    let heartbeat = state.store().latest_scheduler_heartbeat().await;
    let database_ok = heartbeat.is_ok();
    let latest = heartbeat.ok().flatten();
    let scheduler_ok = latest.is_some_and(|at| state.now() - at < HEARTBEAT_THRESHOLD);
    Json(HealthInfoResponse {
        metadatabase: BaseInfoResponse {
            status: status(database_ok),
        },
        scheduler: SchedulerInfoResponse {
            status: status(scheduler_ok),
            latest_scheduler_heartbeat: latest.map(Timestamp),
        },
        triggerer: TriggererInfoResponse {
            status: None,
            latest_triggerer_heartbeat: None,
        },
    })
}

/// Get the version of Gust.
#[utoipa::path(get, path = "/api/v2/version", tag = "Version",
    responses((status = 200, body = VersionInfo)))]
async fn get_version() -> Json<VersionInfo> {
    Json(VersionInfo {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        git_version: option_env!("GUST_GIT_VERSION")
            .filter(|v| !v.is_empty())
            .map(str::to_owned),
    })
}
