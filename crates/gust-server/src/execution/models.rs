//! The Execution API's request and response bodies, field for field as Airflow's
//! `airflow.api_fastapi.execution_api.datamodels` declare them for API version
//! [`super::API_VERSION`] (the Task SDK rejects extra fields in several of them).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// `TIEnterRunningPayload`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnterRunning {
    #[serde(default)]
    pub state: Option<String>,
    pub hostname: String,
    pub unixname: String,
    pub pid: i64,
    pub start_date: DateTime<Utc>,
}

/// `TIRunContext` (unset fields left out, as Airflow answers with `exclude_unset`).
#[derive(Debug, Serialize)]
pub struct RunContext {
    pub dag_run: DagRun,
    pub task_reschedule_count: u32,
    pub max_tries: u32,
    pub variables: Vec<VariableResponse>,
    pub connections: Vec<ConnectionResponse>,
    pub xcom_keys_to_clear: Vec<String>,
    pub should_retry: bool,
    /// Set only when the try resumes after a deferral.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_method: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_kwargs: Option<serde_json::Value>,
}

/// `DagRun` (the SDK forbids extra fields).
#[derive(Debug, Serialize)]
pub struct DagRun {
    pub dag_id: String,
    pub run_id: String,
    pub logical_date: Option<DateTime<Utc>>,
    pub data_interval_start: Option<DateTime<Utc>>,
    pub data_interval_end: Option<DateTime<Utc>>,
    pub run_after: DateTime<Utc>,
    pub start_date: Option<DateTime<Utc>>,
    pub end_date: Option<DateTime<Utc>>,
    pub clear_number: u32,
    pub run_type: String,
    pub state: String,
    pub conf: serde_json::Map<String, serde_json::Value>,
    pub triggering_user_name: Option<String>,
    pub consumed_asset_events: Vec<serde_json::Value>,
    pub partition_key: Option<String>,
    pub partition_date: Option<DateTime<Utc>>,
    pub note: Option<String>,
    pub team_name: Option<String>,
}

/// `TIHeartbeatInfo`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Heartbeat {
    pub hostname: String,
    pub pid: i64,
}

/// `TISkippedDownstreamTasksStatePayload`: task ids, or (task id, map index) pairs.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SkipDownstream {
    pub tasks: Vec<SkipTarget>,
}

/// One task to skip.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum SkipTarget {
    Task(String),
    Mapped(String, serde::de::IgnoredAny),
}

/// `XComResponse`.
#[derive(Debug, Serialize)]
pub struct XComResponse {
    pub key: String,
    pub value: serde_json::Value,
}

/// `VariableResponse`.
#[derive(Debug, Serialize)]
pub struct VariableResponse {
    pub key: String,
    pub value: Option<String>,
}

/// `VariablePostBody`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VariablePostBody {
    pub val: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
}

/// `ConnectionResponse`.
#[derive(Debug, Serialize)]
pub struct ConnectionResponse {
    pub conn_id: String,
    pub conn_type: String,
    pub host: Option<String>,
    pub schema: Option<String>,
    pub login: Option<String>,
    pub password: Option<String>,
    pub port: Option<i64>,
    pub extra: Option<String>,
}

/// `?map_index=` on XCom routes.
#[derive(Debug, Deserialize)]
pub struct MapIndex {
    #[serde(default)]
    pub map_index: Option<i64>,
}
