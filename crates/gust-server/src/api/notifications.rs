//! `/api/v2/dags/{dag_id}/notifications`: Gust's own endpoint (Airflow has none; its clients
//! never call it) listing the notifications a DAG's runs sent: each notifier or alert email
//! of a task's or a run's event, with its status (`pending`, `sent`, `failed`), how many
//! attempts it took and its last error. Read-only; targets and errors hold no secret.

use axum::Json;
use axum::extract::State;
use gust_store::StoredDelivery;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::extract::{Params, PathParams};
use crate::api::page::MAX_PAGE;
use crate::api::time::Timestamp;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// The notification endpoint.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_notifications))
}

/// One delivery.
#[derive(Debug, Serialize, ToSchema)]
pub struct NotificationResponse {
    pub id: i64,
    pub dag_id: String,
    pub dag_run_id: String,
    pub task_id: Option<String>,
    pub map_index: i32,
    pub try_number: Option<i32>,
    /// `execute`, `success`, `failure`, `retry` or `skipped`.
    pub event: String,
    /// `email`, `slack_webhook`, `slack` or `webhook`.
    pub notifier: String,
    /// Where it went: addresses, a connection id, or a URL's scheme and host.
    pub target: String,
    /// `pending`, `sent` or `failed`.
    pub status: String,
    pub attempts: i32,
    pub error: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// A page of deliveries, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct NotificationCollectionResponse {
    pub notifications: Vec<NotificationResponse>,
    pub total_entries: i64,
}

/// `GET /dags/{dag_id}/notifications` filters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct NotificationsQuery {
    /// Only this run's.
    pub dag_run_id: Option<String>,
    /// At most this many (default 50, at most 100).
    #[serde(default = "crate::api::page::default_limit")]
    pub limit: usize,
    /// Skip this many.
    #[serde(default)]
    pub offset: usize,
}

fn response(stored: StoredDelivery) -> NotificationResponse {
    let d = stored.delivery;
    NotificationResponse {
        id: stored.id,
        dag_id: d.dag_id,
        dag_run_id: d.run_id,
        task_id: d.task_id,
        map_index: d.map_index,
        try_number: d.try_number,
        event: d.event,
        notifier: d.notifier,
        target: gust_secrets::mask(&d.target),
        status: stored.status.as_str().to_owned(),
        attempts: stored.attempts,
        error: stored.error.map(|e| gust_secrets::mask(&e)),
        created_at: d.at.into(),
        updated_at: stored.updated_at.into(),
    }
}

/// List the notifications a DAG's runs sent (Gust's own endpoint).
#[utoipa::path(get, path = "/api/v2/dags/{dag_id}/notifications", tag = "Notification (Gust)",
    params(("dag_id" = String, Path), NotificationsQuery),
    responses((status = 200, body = NotificationCollectionResponse), (status = 401), (status = 403), (status = 404), (status = 422)))]
async fn list_notifications(
    State(state): State<AppState>,
    PathParams(dag_id): PathParams<String>,
    Params(query): Params<NotificationsQuery>,
) -> ApiResult<Json<NotificationCollectionResponse>> {
    if state.store().dag_summary(&dag_id).await?.is_none() {
        return Err(ApiError::not_found("Dag", &dag_id));
    }
    let limit = i64::try_from(query.limit.min(MAX_PAGE)).unwrap_or(50);
    let offset = i64::try_from(query.offset).unwrap_or(i64::MAX);
    let (deliveries, total_entries) = state
        .store()
        .deliveries(&dag_id, query.dag_run_id.as_deref(), limit, offset)
        .await?;
    Ok(Json(NotificationCollectionResponse {
        notifications: deliveries.into_iter().map(response).collect(),
        total_entries,
    }))
}
