//! `/api/v2/dagTags`: the tags of the DAGs that are not stale, each once (Airflow's
//! `get_dag_tags`), for tag pickers and filters.

use std::collections::BTreeSet;

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::extract::Params;
use crate::api::page::{OrderBy, Page};
use crate::api::search::{matches_pattern, matches_prefix};
use crate::error::ApiResult;
use crate::state::AppState;

/// The DAG tag endpoints.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_dag_tags))
}

/// A page of tag names (Airflow's `DAGTagCollectionResponse`).
#[derive(Debug, Serialize, ToSchema)]
pub struct DagTagCollectionResponse {
    pub tags: Vec<String>,
    pub total_entries: usize,
}

/// `GET /dagTags` filters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DagTagsQuery {
    /// At most this many (default 50, at most 100).
    #[serde(default = "crate::api::page::default_limit")]
    pub limit: usize,
    /// How many to skip.
    #[serde(default)]
    pub offset: usize,
    /// `name` or `-name` (the default is by name).
    #[serde(default)]
    pub order_by: Vec<String>,
    /// Tags containing this (SQL `ILIKE` pattern; `a|b` for either).
    pub tag_name_pattern: Option<String>,
    /// Tags starting with this (case-sensitive; `a|b` for either).
    pub tag_name_prefix_pattern: Option<String>,
}

/// Get all DAG tags.
#[utoipa::path(get, path = "/api/v2/dagTags", tag = "DAG", params(DagTagsQuery),
    responses((status = 200, body = DagTagCollectionResponse), (status = 400), (status = 401), (status = 403), (status = 422)))]
async fn get_dag_tags(
    State(state): State<AppState>,
    Params(query): Params<DagTagsQuery>,
) -> ApiResult<Json<DagTagCollectionResponse>> {
    let order = OrderBy::parse(&query.order_by, &["name"])?;
    let mut names = BTreeSet::new();
    for summary in state.store().dag_summaries().await? {
        if !summary.is_active {
            continue;
        }
        let dag = state.definition(&summary).await?;
        names.extend(
            dag.settings
                .tags
                .iter()
                .filter(|tag| {
                    matches_pattern(query.tag_name_pattern.as_deref(), tag)
                        && matches_prefix(query.tag_name_prefix_pattern.as_deref(), tag)
                })
                .cloned(),
        );
    }
    let mut tags: Vec<String> = names.into_iter().collect();
    if order.first().is_some_and(|o| o.descending) {
        tags.reverse();
    }
    let total_entries = tags.len();
    let page = Page {
        limit: query.limit,
        offset: query.offset,
    };
    Ok(Json(DagTagCollectionResponse {
        tags: page.slice(tags),
        total_entries,
    }))
}
