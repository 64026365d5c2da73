//! `GET /api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/wait`: the run's state as newline-delimited
//! JSON, one line now and one every `interval` seconds until the run has finished; the last
//! line carries the `return_value` XComs of the tasks named by `result` (Airflow's experimental
//! `wait_dag_run_until_finished`). Gust has no DAG-declared result tasks, so without `result`
//! the last line has no results, as in Airflow for a DAG that declares none.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use gust_core::state::DagRunState;
use serde::{Deserialize, Serialize};
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::dag_runs::find_run;
use crate::api::extract::{Params, PathParams};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// The wait endpoint.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(wait_dag_run_until_finished))
}

/// The shortest wait between two reads of the run: a smaller `interval` is accepted, as
/// Airflow accepts any positive one, but the database is not read more often than this.
pub const MIN_INTERVAL: Duration = Duration::from_millis(50);

/// `GET .../wait` options.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WaitQuery {
    /// Seconds between two reads of the run's state (required, more than 0).
    pub interval: Option<f64>,
    /// Tasks whose `return_value` XCom the last line carries (repeat for several).
    #[serde(default)]
    pub result: Vec<String>,
}

/// One line of the stream.
#[derive(Debug, Serialize)]
struct Line {
    state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    results: Option<BTreeMap<String, serde_json::Value>>,
}

/// What the stream needs between two lines.
struct Waiter {
    state: AppState,
    dag_id: String,
    run_id: String,
    interval: Duration,
    result_tasks: Vec<String>,
}

impl Waiter {
    /// The run's line now, and whether it is the last one; `None` once the run is gone
    /// (deleted while waited on).
    async fn line(&self) -> ApiResult<Option<(String, bool)>> {
        let Some(run) = self.state.store().run(&self.dag_id, &self.run_id).await? else {
            return Ok(None);
        };
        let finished = matches!(run.state, DagRunState::Success | DagRunState::Failed);
        let results = if finished {
            self.results().await?
        } else {
            None
        };
        let line = Line {
            state: run.state.as_str().to_owned(),
            results,
        };
        let mut text = serde_json::to_string(&line).unwrap_or_default();
        text.push('\n');
        Ok(Some((text, finished)))
    }

    /// The `return_value` XComs of the result tasks that pushed one, masked as every XCom
    /// answered; `None` when there are none (Airflow leaves `results` out then).
    async fn results(&self) -> ApiResult<Option<BTreeMap<String, serde_json::Value>>> {
        let mut results = BTreeMap::new();
        for task_id in &self.result_tasks {
            if let Some(value) = self
                .state
                .store()
                .xcom(
                    &self.dag_id,
                    &self.run_id,
                    task_id,
                    gust_store::UNMAPPED,
                    "return_value",
                )
                .await?
            {
                let value = crate::api::redact::redact(&value, Some("return_value"));
                results.insert(task_id.clone(), value);
            }
        }
        Ok((!results.is_empty()).then_some(results))
    }
}

/// Experimental: wait for a DAG run to finish, streaming its state as NDJSON.
#[utoipa::path(get, path = "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/wait", tag = "DagRun",
    params(("dag_id" = String, Path), ("dag_run_id" = String, Path), WaitQuery),
    responses((status = 200, description = "One JSON object a line: the run's state, and `results` once it has finished", content_type = "application/x-ndjson", body = String),
        (status = 401), (status = 403), (status = 404), (status = 422)))]
async fn wait_dag_run_until_finished(
    State(state): State<AppState>,
    PathParams((dag_id, run_id)): PathParams<(String, String)>,
    Params(query): Params<WaitQuery>,
) -> ApiResult<Response> {
    let seconds = query
        .interval
        .ok_or_else(|| ApiError::invalid("query", "interval", "Field required"))?;
    if !(seconds > 0.0 && seconds.is_finite()) {
        return Err(ApiError::invalid(
            "query",
            "interval",
            "Input should be greater than 0",
        ));
    }
    find_run(&state, &dag_id, &run_id).await?;
    let interval = Duration::try_from_secs_f64(seconds)
        .unwrap_or(Duration::MAX)
        .max(MIN_INTERVAL);
    let waiter = Waiter {
        state,
        dag_id,
        run_id,
        interval,
        result_tasks: query.result,
    };
    // (waiter, whether to wait before reading): `None` once the last line is sent.
    let lines = futures::stream::unfold(Some((waiter, false)), |step| async move {
        let (waiter, wait_first) = step?;
        if wait_first {
            tokio::time::sleep(waiter.interval).await;
        }
        match waiter.line().await {
            Ok(Some((text, last))) => {
                let next = (!last).then_some((waiter, true));
                Some((Ok::<_, ApiError>(Bytes::from(text)), next))
            }
            Ok(None) => None,
            Err(err) => {
                tracing::warn!(%err, "reading a waited-on run failed; the stream ends");
                Some((Err(err), None))
            }
        }
    });
    Ok((
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(lines),
    )
        .into_response())
}
