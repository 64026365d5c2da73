//! `/api/v2/dags/{dag_id}/dagVersions` and `/api/v2/dagSources/{dag_id}`: a DAG's versions (a
//! new one each time its parsed definition's fingerprint changes, as Airflow 3 versions a DAG
//! when its serialized form changes) and the text of its file at each version. Gust's DAGs all
//! come from one folder, which these answer as Airflow's default bundle, `dags-folder`, with no
//! bundle version.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use gust_store::DagVersion;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::extract::{Params, PathParams};
use crate::api::page::{OrderBy, Page, sort_by};
use crate::api::time::Timestamp;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// The bundle every Gust DAG is in (Airflow's default bundle for the DAGs folder).
pub const BUNDLE_NAME: &str = "dags-folder";

/// The version and source endpoints.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_dag_versions))
        .routes(routes!(get_dag_version))
        .routes(routes!(get_dag_source))
}

/// One version (Airflow's `DagVersionResponse`).
#[derive(Debug, Serialize, ToSchema)]
pub struct DagVersionResponse {
    pub id: String,
    pub version_number: i64,
    pub dag_id: String,
    pub bundle_name: Option<String>,
    pub bundle_version: Option<String>,
    pub created_at: Timestamp,
    pub dag_display_name: String,
    pub bundle_url: Option<String>,
}

/// A page of versions.
#[derive(Debug, Serialize, ToSchema)]
pub struct DAGVersionCollectionResponse {
    pub dag_versions: Vec<DagVersionResponse>,
    pub total_entries: usize,
}

/// A DAG's file text (Airflow's `DAGSourceResponse`).
#[derive(Debug, Serialize, ToSchema)]
pub struct DAGSourceResponse {
    pub content: Option<String>,
    pub dag_id: String,
    pub version_number: Option<i64>,
    pub dag_display_name: String,
}

/// `GET /dags/{dag_id}/dagVersions` filters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DagVersionsQuery {
    /// At most this many (default 50, at most 100).
    #[serde(default = "crate::api::page::default_limit")]
    pub limit: usize,
    /// Skip this many.
    #[serde(default)]
    pub offset: usize,
    /// Only this version.
    pub version_number: Option<i64>,
    /// Only this bundle's (`dags-folder`).
    pub bundle_name: Option<String>,
    /// Only this bundle version's (Gust's versions have none).
    pub bundle_version: Option<String>,
    /// Sort keys: `id`, `version_number`, `bundle_name`, `bundle_version`; `-` first for
    /// descending.
    #[serde(default)]
    pub order_by: Vec<String>,
}

/// `GET /dagSources/{dag_id}` parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DagSourceQuery {
    /// The version whose text to answer (default: the latest).
    pub version_number: Option<i64>,
}

fn version_response(version: DagVersion) -> DagVersionResponse {
    DagVersionResponse {
        id: version.id,
        version_number: version.version_number,
        dag_display_name: version.dag_id.clone(),
        dag_id: version.dag_id,
        bundle_name: Some(BUNDLE_NAME.to_owned()),
        bundle_version: None,
        created_at: version.created_at.into(),
        bundle_url: None,
    }
}

/// Get all versions of a DAG (`~`: of every DAG).
#[utoipa::path(get, path = "/api/v2/dags/{dag_id}/dagVersions", tag = "DagVersion",
    params(("dag_id" = String, Path), DagVersionsQuery),
    responses((status = 200, body = DAGVersionCollectionResponse), (status = 400), (status = 401), (status = 403), (status = 404), (status = 422)))]
async fn get_dag_versions(
    State(state): State<AppState>,
    PathParams(dag_id): PathParams<String>,
    Params(query): Params<DagVersionsQuery>,
) -> ApiResult<Json<DAGVersionCollectionResponse>> {
    let order = OrderBy::parse(
        &query.order_by,
        &["id", "version_number", "bundle_name", "bundle_version"],
    )?;
    let one_dag = (dag_id != "~").then_some(dag_id.as_str());
    if let Some(dag_id) = one_dag
        && state.store().dag_summary(dag_id).await?.is_none()
    {
        return Err(ApiError::not_found("Dag", dag_id));
    }
    let mut versions: Vec<DagVersion> = state
        .store()
        .dag_versions(one_dag)
        .await?
        .into_iter()
        .filter(|v| {
            query.version_number.is_none_or(|n| n == v.version_number)
                && query
                    .bundle_name
                    .as_deref()
                    .is_none_or(|b| b == BUNDLE_NAME)
                && query.bundle_version.is_none()
        })
        .collect();
    // Airflow's default order is the primary key, a UUID; Gust's is the order of creation.
    sort_by(&mut versions, &order, |v, field| match field {
        "id" => Some((v.id.clone(), 0)),
        "version_number" => Some((String::new(), v.version_number)),
        _ => None,
    });
    let total_entries = versions.len();
    let page = Page {
        limit: query.limit,
        offset: query.offset,
    };
    Ok(Json(DAGVersionCollectionResponse {
        dag_versions: page
            .slice(versions)
            .into_iter()
            .map(version_response)
            .collect(),
        total_entries,
    }))
}

/// Get one version of a DAG.
#[utoipa::path(get, path = "/api/v2/dags/{dag_id}/dagVersions/{version_number}", tag = "DagVersion",
    params(("dag_id" = String, Path), ("version_number" = i64, Path)),
    responses((status = 200, body = DagVersionResponse), (status = 401), (status = 403), (status = 404), (status = 422)))]
async fn get_dag_version(
    State(state): State<AppState>,
    PathParams((dag_id, version_number)): PathParams<(String, i64)>,
) -> ApiResult<Json<DagVersionResponse>> {
    let version = state
        .store()
        .dag_version(&dag_id, Some(version_number))
        .await?
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "The DagVersion with dag_id: `{dag_id}` and version_number: `{version_number}` was not found"
            ))
        })?;
    Ok(Json(version_response(version)))
}

/// What the caller accepts, as Airflow reads `Accept` for the DAG source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Accept {
    Json,
    Text,
}

fn accept(headers: &HeaderMap) -> ApiResult<Accept> {
    let value = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("*/*");
    if value.starts_with("*/*") || value.starts_with("application/json") {
        Ok(Accept::Json)
    } else if value.starts_with("text/plain") {
        Ok(Accept::Text)
    } else {
        Err(ApiError::NotAcceptable(
            "Only application/json or text/plain is supported".into(),
        ))
    }
}

/// Get a DAG's file text, at its latest version or the one asked for.
#[utoipa::path(get, path = "/api/v2/dagSources/{dag_id}", tag = "DagSource",
    params(("dag_id" = String, Path), DagSourceQuery),
    responses((status = 200, body = DAGSourceResponse), (status = 400), (status = 401), (status = 403), (status = 404), (status = 406), (status = 422)))]
async fn get_dag_source(
    State(state): State<AppState>,
    headers: HeaderMap,
    PathParams(dag_id): PathParams<String>,
    Params(query): Params<DagSourceQuery>,
) -> ApiResult<Response> {
    let accept = accept(&headers)?;
    let shown_number = query
        .version_number
        .map_or_else(|| "None".to_owned(), |n| n.to_string());
    let version = state
        .store()
        .dag_version(&dag_id, query.version_number)
        .await?
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "The source code of the Dag {dag_id}, version_number {shown_number} was not found"
            ))
        })?;
    let content = state
        .store()
        .dag_version_source(&dag_id, version.version_number)
        .await?
        .flatten()
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "Code not found. dag_id='{dag_id}' version_number='{shown_number}'"
            ))
        })?;
    let content = gust_secrets::mask(&content);
    Ok(match accept {
        Accept::Text => (
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            content,
        )
            .into_response(),
        Accept::Json => Json(DAGSourceResponse {
            content: Some(content),
            dag_display_name: dag_id.clone(),
            dag_id,
            version_number: Some(version.version_number),
        })
        .into_response(),
    })
}
