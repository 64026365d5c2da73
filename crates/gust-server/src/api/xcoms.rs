//! `.../taskInstances/{task_id}/xcomEntries`: the XComs a task pushed (list, and one by key).
//!
//! Gust keeps XCom values as JSON, so `deserialize` changes nothing and `stringify` answers the
//! value's JSON text. The store keeps no time per XCom: its `timestamp` is when the task's
//! latest try ended (or started, or was queued), which is when the value was recorded.
//!
//! `POST .../xcomEntries` adds an XCom by hand (Airflow's `create_xcom_entry`); it never
//! replaces one, and refuses the keys Airflow's deserializer reserves, since Python tasks read
//! XComs through Airflow's Task SDK.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use gust_store::StoredRun;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::dag_runs::find_run;
use crate::api::extract::{Body, Params, PathParams};
use crate::api::page::Page;
use crate::api::time::Timestamp;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// The XCom endpoints.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_xcom_entries, create_xcom_entry))
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
    /// Only this instance of a mapped task (-1: of tasks that are not mapped).
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
    /// Which instance of a mapped task (-1, the default, for a task that is not mapped).
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

/// When each task instance's XComs were recorded, by (task, map index): its latest try's end
/// (or start, or queueing), else when the run was queued.
async fn recorded_at(
    state: &AppState,
    run: &StoredRun,
) -> ApiResult<std::collections::HashMap<(String, i32), DateTime<Utc>>> {
    let mut at = std::collections::HashMap::new();
    for attempt in state.store().tries_of_run(&run.dag_id, &run.run_id).await? {
        if let Some(t) = attempt
            .end_date
            .or(attempt.start_date)
            .or(attempt.queued_at)
        {
            // Tries come oldest first, so the latest wins.
            at.insert((attempt.task_id, attempt.map_index), t);
        }
    }
    Ok(at)
}

fn entry(
    run: &StoredRun,
    task_id: &str,
    map_index: i32,
    key: &str,
    at: Option<DateTime<Utc>>,
) -> XComResponse {
    XComResponse {
        key: key.to_owned(),
        timestamp: at.unwrap_or(run.queued_at).into(),
        logical_date: Some(run.logical_date.into()),
        map_index: i64::from(map_index),
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
    let at = recorded_at(&state, &run).await?;
    let entries: Vec<XComResponse> = state
        .store()
        .xcoms_of_run(&dag_id, &run_id)
        .await?
        .into_iter()
        .filter(|x| {
            (task_id == "~" || x.task_id == task_id)
                && query.xcom_key.as_ref().is_none_or(|k| *k == x.key)
                && query.map_index.is_none_or(|m| m == i64::from(x.map_index))
        })
        .map(|x| {
            let at = at.get(&(x.task_id.clone(), x.map_index)).copied();
            entry(&run, &x.task_id, x.map_index, &x.key, at)
        })
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
    // Past any index a task can be mapped to: no such instance, so no such XCom.
    let map_index = i32::try_from(query.map_index).map_err(|_| not_found())?;
    let value = state
        .store()
        .xcom(&dag_id, &run_id, &task_id, map_index, &key)
        .await?
        .ok_or_else(not_found)?;
    let run = find_run(&state, &dag_id, &run_id).await?;
    let at = recorded_at(&state, &run).await?;
    let at = at.get(&(task_id.clone(), map_index)).copied();
    let xcom = entry(&run, &task_id, map_index, &key, at);
    // Values are masked when pushed; one stored before a secret was known is masked here.
    let value = crate::api::redact::redact(&value, Some(&key));
    let value = if query.stringify {
        serde_json::Value::String(value.to_string())
    } else {
        value
    };
    Ok(Json(XComResponseNative { xcom, value }).into_response())
}

/// Airflow's reserved serialization keys (`airflow._shared.serialization.FORBIDDEN_XCOM_KEYS`):
/// a value holding one could make Airflow's deserializer, which Python tasks read XComs with,
/// build an object of the sender's choosing.
const FORBIDDEN_XCOM_KEYS: [&str; 8] = [
    "__classname__",
    "__version__",
    "__data__",
    "__id__",
    "__cache__",
    "__type",
    "__source",
    "__var",
];

/// The reserved keys `value` holds, in order, with where the first is (Airflow's check, which
/// also looks inside strings that are JSON objects or arrays).
fn forbidden_keys(value: &serde_json::Value, path: &str) -> Option<(String, Vec<&'static str>)> {
    use serde_json::Value;
    match value {
        Value::String(text) => match serde_json::from_str::<Value>(text) {
            Ok(decoded @ (Value::Object(_) | Value::Array(_))) => forbidden_keys(&decoded, path),
            _ => None,
        },
        Value::Object(map) => {
            let mut found: Vec<&'static str> = FORBIDDEN_XCOM_KEYS
                .into_iter()
                .filter(|k| map.contains_key(*k))
                .collect();
            if !found.is_empty() {
                found.sort_unstable();
                return Some((path.to_owned(), found));
            }
            map.iter()
                .find_map(|(k, v)| forbidden_keys(v, &format!("{path}.{k}")))
        }
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, v)| forbidden_keys(v, &format!("{path}[{i}]"))),
        Value::Null | Value::Bool(_) | Value::Number(_) => None,
    }
}

/// An XCom to add (Airflow's `XComCreateBody`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct XComCreateBody {
    pub key: String,
    pub value: serde_json::Value,
    #[serde(default = "unmapped")]
    pub map_index: i64,
}

/// Create an XCom entry.
#[utoipa::path(post, path = "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/xcomEntries", tag = "XCom",
    params(("dag_id" = String, Path), ("dag_run_id" = String, Path), ("task_id" = String, Path)),
    request_body = XComCreateBody,
    responses((status = 201, body = XComResponseNative), (status = 400), (status = 401), (status = 403), (status = 404), (status = 409), (status = 422)))]
async fn create_xcom_entry(
    State(state): State<AppState>,
    PathParams((dag_id, run_id, task_id)): PathParams<(String, String, String)>,
    Body(body): Body<XComCreateBody>,
) -> ApiResult<Response> {
    if let Some((path, keys)) = forbidden_keys(&body.value, "value") {
        return Err(ApiError::invalid(
            "body",
            "value",
            format!(
                "Value error, XCom {path} contains reserved serialization keys: {}. These keys are reserved for internal use.",
                keys.join(", ")
            ),
        ));
    }
    // Airflow's order: the DAG, then its task, then the run.
    let (_, dag) = state.dag(&dag_id).await?;
    let known_task = gust_core::ids::TaskId::new(task_id.clone())
        .ok()
        .is_some_and(|id| dag.task(&id).is_some());
    if !known_task {
        return Err(ApiError::NotFound(format!(
            "Task with ID: `{task_id}` not found in dag: `{dag_id}`"
        )));
    }
    let run = state.store().run(&dag_id, &run_id).await?.ok_or_else(|| {
        ApiError::NotFound(format!(
            "Dag Run with ID: `{run_id}` not found for dag: `{dag_id}`"
        ))
    })?;
    let Ok(map_index) = i32::try_from(body.map_index) else {
        return Err(ApiError::BadRequest(format!(
            "an XCom's map_index is -1 (not mapped) or an instance's index, not {}",
            body.map_index
        )));
    };
    if map_index < -1 {
        return Err(ApiError::BadRequest(format!(
            "an XCom's map_index is -1 (not mapped) or an instance's index, not {map_index}"
        )));
    }
    if body.value.to_string().len() > gust_store::MAX_XCOM_BYTES {
        return Err(ApiError::BadRequest(format!(
            "The XCom with key: `{}` is larger than {} bytes of JSON; XComs pass references between tasks, not data",
            body.key,
            gust_store::MAX_XCOM_BYTES
        )));
    }
    let created = state
        .store()
        .create_xcom(
            &dag_id,
            &run_id,
            &task_id,
            map_index,
            &body.key,
            &body.value,
        )
        .await?;
    if !created {
        return Err(ApiError::Conflict(format!(
            "The XCom with key: `{}` with mentioned task instance already exists.",
            body.key
        )));
    }
    let at = recorded_at(&state, &run).await?;
    let at = at.get(&(task_id.clone(), map_index)).copied();
    let xcom = entry(&run, &task_id, map_index, &body.key, at);
    let value = crate::api::redact::redact(&body.value, Some(&body.key));
    Ok((
        StatusCode::CREATED,
        Json(XComResponseNative { xcom, value }),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::forbidden_keys;

    #[test]
    fn reserved_keys_are_found_wherever_airflow_looks() {
        assert_eq!(forbidden_keys(&json!({"a": [1, {"b": 2}]}), "value"), None);
        assert_eq!(
            forbidden_keys(&json!({"a": [1, {"__var": 2, "__type": "x"}]}), "value"),
            Some(("value.a[1]".to_owned(), vec!["__type", "__var"]))
        );
        let smuggled = json!(r#"{"__classname__": "os.system"}"#);
        assert_eq!(
            forbidden_keys(&smuggled, "value").map(|(_, keys)| keys),
            Some(vec!["__classname__"])
        );
        assert_eq!(forbidden_keys(&json!("__classname__"), "value"), None);
    }
}
