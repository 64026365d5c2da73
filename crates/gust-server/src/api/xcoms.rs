//! `.../taskInstances/{task_id}/xcomEntries`: the XComs a task pushed (list, and one by key).
//!
//! Gust keeps XCom values as JSON, so `deserialize` changes nothing and `stringify` answers the
//! value's JSON text. The store keeps no time per XCom: its `timestamp` is when the task's
//! latest try ended (or started, or was queued), which is when the value was recorded.

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use gust_store::StoredRun;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::dag_runs::find_run;
use crate::api::extract::Params;
use crate::api::page::Page;
use crate::api::time::Timestamp;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// The XCom endpoints.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_xcom_entries))
        .routes(routes!(get_xcom_entry))
}

/// An XCom without its value (Airflow's `XComResponse`).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct XComResponse {
    pub key: String,
    pub timestamp: Timestamp,
    pub logical_date: Option<Timestamp>,
    pub map_index: i64,
    pub task_id: String,
    pub dag_id: String,
    pub run_id: String,
    pub dag_display_name: String,
    pub task_display_name: String,
    pub run_after: Timestamp,
}

/// An XCom with its value (Airflow's `XComResponseNative`, or `XComResponseString` when the
/// value is the JSON text).
#[derive(Debug, Serialize, ToSchema)]
pub struct XComResponseNative {
    #[serde(flatten)]
    pub xcom: XComResponse,
    pub value: serde_json::Value,
}

/// A task's XComs.
#[derive(Debug, Serialize, ToSchema)]
pub struct XComCollectionResponse {
    pub xcom_entries: Vec<XComResponse>,
    pub total_entries: usize,
}

/// `GET .../xcomEntries` filters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct XComsQuery {
    /// Only this key.
    pub xcom_key: Option<String>,
    /// Only this mapped instance (Gust has no mapped tasks: -1).
    pub map_index: Option<i64>,
    /// At most this many (default 50, at most 100).
    #[serde(default = "crate::api::page::default_limit")]
    pub limit: usize,
    /// Skip this many.
    #[serde(default)]
    pub offset: usize,
}

/// `GET .../xcomEntries/{xcom_key}` options.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct XComQuery {
    /// Which mapped instance (Gust has no mapped tasks: -1).
    #[serde(default = "unmapped")]
    pub map_index: i64,
    /// Answer the value deserialized (Gust's values are JSON already).
    #[serde(default)]
    pub deserialize: bool,
    /// Answer the value as its JSON text.
    #[serde(default)]
    pub stringify: bool,
}

fn unmapped() -> i64 {
    -1
}

/// When each task's XComs were recorded: its latest try's end (or start, or queueing), else
/// when the run was queued.
async fn recorded_at(
    state: &AppState,
    run: &StoredRun,
) -> ApiResult<std::collections::HashMap<String, DateTime<Utc>>> {
    let mut at = std::collections::HashMap::new();
    for attempt in state.store().tries_of_run(&run.dag_id, &run.run_id).await? {
        if let Some(t) = attempt
            .end_date
            .or(attempt.start_date)
            .or(attempt.queued_at)
        {
            // Tries come oldest first, so the latest wins.
            at.insert(attempt.task_id, t);
        }
    }
    Ok(at)
}

fn entry(run: &StoredRun, task_id: &str, key: &str, at: Option<DateTime<Utc>>) -> XComResponse {
    XComResponse {
        key: key.to_owned(),
        timestamp: at.unwrap_or(run.queued_at).into(),
        logical_date: Some(run.logical_date.into()),
        map_index: -1,
        task_id: task_id.to_owned(),
        dag_id: run.dag_id.clone(),
        run_id: run.run_id.clone(),
        dag_display_name: run.dag_id.clone(),
        task_display_name: task_id.to_owned(),
        run_after: run.data_interval.1.into(),
    }
}

/// Get a task's XComs (`~` as the task id: every task's in the run).
#[utoipa::path(get, path = "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/xcomEntries", tag = "XCom",
    params(("dag_id" = String, Path), ("dag_run_id" = String, Path), ("task_id" = String, Path), XComsQuery),
    responses((status = 200, body = XComCollectionResponse), (status = 400), (status = 401), (status = 403), (status = 404), (status = 422)))]
async fn get_xcom_entries(
    State(state): State<AppState>,
    Path((dag_id, run_id, task_id)): Path<(String, String, String)>,
    Params(query): Params<XComsQuery>,
) -> ApiResult<Json<XComCollectionResponse>> {
    if dag_id == "~" || run_id == "~" {
        return Err(ApiError::BadRequest(
            "Gust lists the XComs of one run: name the DAG and the run".into(),
        ));
    }
    let run = find_run(&state, &dag_id, &run_id).await?;
    if query.map_index.is_some_and(|m| m != -1) {
        return Ok(Json(XComCollectionResponse {
            xcom_entries: Vec::new(),
            total_entries: 0,
        }));
    }
    let at = recorded_at(&state, &run).await?;
    let entries: Vec<XComResponse> = state
        .store()
        .xcoms_of_run(&dag_id, &run_id)
        .await?
        .into_iter()
        .filter(|(task, key, _)| {
            (task_id == "~" || *task == task_id) && query.xcom_key.as_ref().is_none_or(|k| k == key)
        })
        .map(|(task, key, _)| entry(&run, &task, &key, at.get(&task).copied()))
        .collect();
    let total_entries = entries.len();
    let page = Page {
        limit: query.limit,
        offset: query.offset,
    };
    Ok(Json(XComCollectionResponse {
        xcom_entries: page.slice(entries),
        total_entries,
    }))
}

/// Get one XCom with its value.
#[utoipa::path(get, path = "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/xcomEntries/{xcom_key}", tag = "XCom",
    params(("dag_id" = String, Path), ("dag_run_id" = String, Path), ("task_id" = String, Path), ("xcom_key" = String, Path), XComQuery),
    responses((status = 200, body = XComResponseNative), (status = 400), (status = 401), (status = 403), (status = 404), (status = 422)))]
async fn get_xcom_entry(
    State(state): State<AppState>,
    Path((dag_id, run_id, task_id, key)): Path<(String, String, String, String)>,
    Params(query): Params<XComQuery>,
) -> ApiResult<Response> {
    if query.map_index < -1 {
        return Err(ApiError::invalid(
            "query",
            "map_index",
            "Input should be greater than or equal to -1",
        ));
    }
    let not_found = || ApiError::NotFound(format!("XCom entry with key: `{key}` not found"));
    if query.map_index != -1 {
        return Err(not_found());
    }
    let value = state
        .store()
        .xcom(&dag_id, &run_id, &task_id, &key)
        .await?
        .ok_or_else(not_found)?;
    let run = find_run(&state, &dag_id, &run_id).await?;
    let at = recorded_at(&state, &run).await?;
    let xcom = entry(&run, &task_id, &key, at.get(&task_id).copied());
    // Values are masked when pushed; one stored before a secret was known is masked here.
    let value = crate::api::redact::redact(&value, Some(&key));
    let value = if query.stringify {
        serde_json::Value::String(value.to_string())
    } else {
        value
    };
    Ok(Json(XComResponseNative { xcom, value }).into_response())
}
