//! `/api/v2/providers`: Airflow's installed provider packages (`get_providers`). Gust's
//! operators are built in, not installed as packages, so the list is always empty; the
//! endpoint is served so that clients that list providers get Airflow's answer rather than 404.

use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::extract::Params;
use crate::state::AppState;

/// The provider endpoint.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_providers))
}

/// A provider package (Airflow's `ProviderResponse`).
#[derive(Debug, Serialize, ToSchema)]
pub struct ProviderResponse {
    pub package_name: String,
    pub description: String,
    pub version: String,
    pub documentation_url: Option<String>,
}

/// A page of providers (Airflow's `ProviderCollectionResponse`).
#[derive(Debug, Serialize, ToSchema)]
pub struct ProviderCollectionResponse {
    pub providers: Vec<ProviderResponse>,
    pub total_entries: usize,
}

/// `GET /providers` paging.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ProvidersQuery {
    /// At most this many (default 50).
    #[serde(default = "crate::api::page::default_limit")]
    pub limit: usize,
    /// How many to skip.
    #[serde(default)]
    pub offset: usize,
}

/// Get providers: none, as Gust installs no provider packages.
#[utoipa::path(get, path = "/api/v2/providers", tag = "Provider", params(ProvidersQuery),
    responses((status = 200, body = ProviderCollectionResponse), (status = 401), (status = 403), (status = 422)))]
async fn get_providers(
    Params(_paging): Params<ProvidersQuery>,
) -> Json<ProviderCollectionResponse> {
    Json(ProviderCollectionResponse {
        providers: Vec::new(),
        total_entries: 0,
    })
}
