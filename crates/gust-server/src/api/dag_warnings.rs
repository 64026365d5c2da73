//! `/api/v2/dagWarnings`: what is wrong with a loaded DAG without stopping it from loading
//! (Airflow's `list_dag_warnings`). Gust has one of Airflow's kinds: a task that names a pool
//! that does not exist ("non-existent pool"), which the scheduler would fail at dispatch.
//! Airflow's DAG processor records these at parse time; Gust works them out when asked, from
//! the recorded DAGs and the pools as they are now, so a pool created since clears its warning
//! at once. Airflow's other kinds (asset conflicts, values that vary at parse time) cannot
//! arise in Gust's YAML DAGs.

use std::collections::{BTreeSet, HashSet};

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::extract::Params;
use crate::api::page::{OrderBy, Page, sort_by};
use crate::api::python_repr::python_list;
use crate::api::time::Timestamp;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// The DAG warning endpoint.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_dag_warnings))
}

/// Airflow's name for a warning about pools that do not exist.
const NONEXISTENT_POOL: &str = "non-existent pool";
/// Every warning type Airflow's schema allows (its `DagWarningType`).
const WARNING_TYPES: [&str; 3] = ["asset conflict", NONEXISTENT_POOL, "runtime varying value"];

/// One warning (Airflow's `DAGWarningResponse`).
#[derive(Debug, Serialize, ToSchema)]
pub struct DagWarningResponse {
    pub dag_id: String,
    pub warning_type: String,
    pub message: String,
    pub timestamp: Timestamp,
    pub dag_display_name: String,
}

/// A page of warnings (Airflow's `DAGWarningCollectionResponse`).
#[derive(Debug, Serialize, ToSchema)]
pub struct DagWarningCollectionResponse {
    pub dag_warnings: Vec<DagWarningResponse>,
    pub total_entries: usize,
}

/// `GET /dagWarnings` filters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DagWarningsQuery {
    /// Only this DAG's warnings.
    pub dag_id: Option<String>,
    /// Only warnings of this type (`asset conflict`, `non-existent pool`, `runtime varying
    /// value`).
    pub warning_type: Option<String>,
    /// At most this many (default 50, at most 100).
    #[serde(default = "crate::api::page::default_limit")]
    pub limit: usize,
    /// How many to skip.
    #[serde(default)]
    pub offset: usize,
    /// Sort keys: `dag_id`, `warning_type`, `message`, `timestamp`; `-` first for descending.
    #[serde(default)]
    pub order_by: Vec<String>,
}

/// List DAG warnings.
#[utoipa::path(get, path = "/api/v2/dagWarnings", tag = "DagWarning", params(DagWarningsQuery),
    responses((status = 200, body = DagWarningCollectionResponse), (status = 401), (status = 403), (status = 422)))]
async fn list_dag_warnings(
    State(state): State<AppState>,
    Params(query): Params<DagWarningsQuery>,
) -> ApiResult<Json<DagWarningCollectionResponse>> {
    if let Some(kind) = &query.warning_type
        && !WARNING_TYPES.contains(&kind.as_str())
    {
        return Err(ApiError::invalid(
            "query",
            "warning_type",
            "Input should be 'asset conflict', 'non-existent pool' or 'runtime varying value'",
        ));
    }
    let mut order = OrderBy::parse(
        &query.order_by,
        &["dag_id", "warning_type", "message", "timestamp"],
    )?;
    if order.is_empty() {
        order.push(OrderBy {
            field: "dag_id".into(),
            descending: false,
        });
    }
    let pools: HashSet<String> = state
        .store()
        .pools()
        .await?
        .into_iter()
        .map(|p| p.name)
        .collect();
    let mut warnings = Vec::new();
    let wants_pools = query
        .warning_type
        .as_deref()
        .is_none_or(|kind| kind == NONEXISTENT_POOL);
    for summary in state.store().dag_summaries().await? {
        if !summary.is_active
            || !wants_pools
            || query
                .dag_id
                .as_deref()
                .is_some_and(|id| id != summary.dag_id)
        {
            continue;
        }
        let dag = state.definition(&summary).await?;
        let missing: BTreeSet<&str> = dag
            .tasks()
            .map(|task| task.settings.pool.as_str())
            .filter(|pool| !pools.contains(*pool))
            .collect();
        if missing.is_empty() {
            continue;
        }
        warnings.push(DagWarningResponse {
            message: format!(
                "Dag '{}' references non-existent pools: {}",
                summary.dag_id,
                python_list(&missing)
            ),
            dag_display_name: summary.dag_id.clone(),
            dag_id: summary.dag_id,
            warning_type: NONEXISTENT_POOL.to_owned(),
            timestamp: summary.last_parsed.into(),
        });
    }
    sort_by(&mut warnings, &order, |w, field| match field {
        "timestamp" => w
            .timestamp
            .0
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "warning_type" => w.warning_type.clone(),
        "message" => w.message.clone(),
        _ => w.dag_id.clone(),
    });
    let total_entries = warnings.len();
    let page = Page {
        limit: query.limit,
        offset: query.offset,
    };
    Ok(Json(DagWarningCollectionResponse {
        dag_warnings: page.slice(warnings),
        total_entries,
    }))
}
