//! `/api/v2/dagStats`: how many runs each DAG has in each run state (Airflow's
//! `get_dag_stats`), for dashboards that show a DAG's recent health at a glance.

use axum::Json;
use axum::extract::State;
use gust_core::state::DagRunState;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::extract::Params;
use crate::error::ApiResult;
use crate::state::AppState;

/// The DAG statistics endpoint.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_dag_stats))
}

/// Every run state, in the order Airflow lists them (its `DagRunState` enum's order).
const STATES: [DagRunState; 4] = [
    DagRunState::Queued,
    DagRunState::Running,
    DagRunState::Success,
    DagRunState::Failed,
];

/// How many runs of one DAG are in one state (Airflow's `DagStatsStateResponse`).
#[derive(Debug, Serialize, ToSchema)]
pub struct DagStatsStateResponse {
    pub state: String,
    pub count: i64,
}

/// One DAG's counts, every state listed (Airflow's `DagStatsResponse`).
#[derive(Debug, Serialize, ToSchema)]
pub struct DagStatsResponse {
    pub dag_id: String,
    pub dag_display_name: String,
    pub stats: Vec<DagStatsStateResponse>,
}

/// The DAGs' counts (Airflow's `DagStatsCollectionResponse`).
#[derive(Debug, Serialize, ToSchema)]
pub struct DagStatsCollectionResponse {
    pub dags: Vec<DagStatsResponse>,
    pub total_entries: usize,
}

/// `GET /dagStats` filters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DagStatsQuery {
    /// Only these DAGs (repeat the parameter for several); every DAG with runs otherwise.
    #[serde(default)]
    pub dag_ids: Vec<String>,
}

/// Get DAG statistics: for each DAG with runs, ordered by id, its run count in every state.
#[utoipa::path(get, path = "/api/v2/dagStats", tag = "DagStats", params(DagStatsQuery),
    responses((status = 200, body = DagStatsCollectionResponse), (status = 400), (status = 401), (status = 403), (status = 404), (status = 422)))]
async fn get_dag_stats(
    State(state): State<AppState>,
    Params(query): Params<DagStatsQuery>,
) -> ApiResult<Json<DagStatsCollectionResponse>> {
    let counts = state
        .store()
        .count_runs_by_dag_and_state(&query.dag_ids)
        .await?;
    Ok(Json(collect(counts)))
}

/// The response for `counts` (DAG, state, count), which come ordered by DAG: one entry per
/// DAG, each listing all four states, zero where the DAG has no run in it.
fn collect(counts: Vec<(String, DagRunState, i64)>) -> DagStatsCollectionResponse {
    let mut dags: Vec<(String, [i64; 4])> = Vec::new();
    for (dag_id, run_state, count) in counts {
        if dags.last().is_none_or(|(last, _)| *last != dag_id) {
            dags.push((dag_id, [0; 4]));
        }
        let slot = STATES.iter().position(|s| *s == run_state);
        if let (Some((_, per_state)), Some(slot)) = (dags.last_mut(), slot) {
            per_state[slot] += count;
        }
    }
    let dags: Vec<DagStatsResponse> = dags
        .into_iter()
        .map(|(dag_id, per_state)| DagStatsResponse {
            dag_display_name: dag_id.clone(),
            dag_id,
            stats: STATES
                .iter()
                .zip(per_state)
                .map(|(s, count)| DagStatsStateResponse {
                    state: s.as_str().to_owned(),
                    count,
                })
                .collect(),
        })
        .collect();
    DagStatsCollectionResponse {
        total_entries: dags.len(),
        dags,
    }
}
