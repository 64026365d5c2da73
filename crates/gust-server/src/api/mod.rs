//! Airflow 3's public REST API (`/api/v2`), endpoint group by endpoint group, each module
//! declaring its routes with their OpenAPI descriptions (the served document is generated from
//! these declarations).

#[allow(
    missing_docs,
    reason = "response fields are Airflow's, described by its OpenAPI document"
)]
pub mod dags;
pub mod extract;
pub mod monitor;
pub mod page;
pub mod time;

use utoipa_axum::router::OpenApiRouter;

use crate::state::AppState;

/// The endpoints anyone may call.
pub fn public_routes() -> OpenApiRouter<AppState> {
    monitor::routes()
}

/// The endpoints that need credentials.
pub fn protected_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().merge(dags::routes())
}
