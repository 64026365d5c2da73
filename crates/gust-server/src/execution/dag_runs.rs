//! The Execution API's DAG-run routes: a task triggering a run of another DAG
//! (`TriggerDagRunOperator`) or clearing it (`reset_dag_run`), that run's state while the task
//! waits for it, a run's detail, the run before a date, and run counts. They need the store:
//! under `gust dags test`, which keeps no runs, they are refused saying so.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use gust_core::dag::Dag;
use gust_core::ids::RunId;
use gust_core::state::DagRunState;
use gust_scheduler::trigger::{TriggerError, trigger_by_task};
use gust_store::{RunFilter, RunOrder, Store, StoreError, StoredRun, TimeRange};
use serde::Deserialize;

use super::models::DagRun;
use super::task_states::QueryPairs;
use super::{ExecError, ExecutionState};

/// The DAG-run routes (behind the task token, as the others).
pub(super) fn routes() -> Router<ExecutionState> {
    Router::new()
        .route("/dag-runs/count", get(count))
        .route("/dag-runs/previous", get(previous))
        .route("/dag-runs/{dag_id}/{run_id}", get(detail).post(trigger))
        .route("/dag-runs/{dag_id}/{run_id}/clear", post(clear))
        .route("/dag-runs/{dag_id}/{run_id}/state", get(run_state))
}

/// `TriggerDAGRunPayload`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TriggerPayload {
    #[serde(default)]
    logical_date: Option<DateTime<Utc>>,
    #[serde(default)]
    run_after: Option<DateTime<Utc>>,
    #[serde(default)]
    conf: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default)]
    reset_dag_run: Option<bool>,
    #[serde(default)]
    partition_key: Option<String>,
    #[serde(default)]
    note: Option<String>,
}

pub(super) fn store_of(state: &ExecutionState) -> Result<&Store, ExecError> {
    state
        .variables
        .as_ref()
        .map(|(store, _)| store)
        .ok_or_else(|| {
            ExecError::new(
                StatusCode::BAD_REQUEST,
                "no_store",
                "gust dags test runs one DAG and keeps no runs: runs of other DAGs are read and \
             triggered under gust scheduler or gust standalone",
            )
        })
}

pub(super) fn store_failed(err: StoreError) -> ExecError {
    tracing::error!(error = %err, "a DAG run could not be read or written for a task");
    ExecError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "store_error",
        "the DAG run could not be read or written",
    )
}

/// Refuses a DAG that is gone from its files or whose file does not load, as Airflow refuses
/// to trigger or clear one.
async fn triggerable(store: &Store, dag_id: &str) -> Result<(), ExecError> {
    let summary = store
        .dag_summary(dag_id)
        .await
        .map_err(store_failed)?
        .filter(|s| s.is_active)
        .ok_or_else(|| ExecError::not_found(format!("Dag with dag_id: '{dag_id}' not found")))?;
    let broken = store.import_errors().await.map_err(store_failed)?;
    if broken.iter().any(|e| e.file == summary.fileloc) {
        return Err(ExecError::new(
            StatusCode::BAD_REQUEST,
            "import_errors",
            format!("Dag with dag_id '{dag_id}' has import errors and cannot be triggered"),
        ));
    }
    Ok(())
}

/// `POST /dag-runs/{dag_id}/{run_id}`: creates an `operator_triggered` run, as Airflow's route.
async fn trigger(
    State(state): State<ExecutionState>,
    Path((dag_id, run_id)): Path<(String, String)>,
    body: Bytes,
) -> Result<StatusCode, ExecError> {
    let payload: TriggerPayload = super::routes::parse(&body)?;
    let store = store_of(&state)?;
    let not_found = || ExecError::not_found(format!("Dag with dag_id: '{dag_id}' not found"));
    triggerable(store, &dag_id).await?;
    if payload.partition_key.is_some() {
        return Err(ExecError::new(
            StatusCode::BAD_REQUEST,
            "not_partitioned",
            format!("Dag with dag_id '{dag_id}' is not partitioned"),
        ));
    }
    let (_, text) = store
        .dag_definition(&dag_id)
        .await
        .map_err(store_failed)?
        .ok_or_else(not_found)?;
    let dag: Dag = serde_json::from_str(&text).map_err(|err| {
        store_failed(StoreError::Corrupt {
            what: "DAG definition",
            detail: format!("{dag_id}: {err}"),
        })
    })?;
    let run_id = RunId::new(run_id).map_err(|err| ExecError::unprocessable(err.to_string()))?;
    let now = state.clock.now();
    // Gust's runs all have a logical date: the operator's, else when the run may start.
    let logical_date = payload.logical_date.or(payload.run_after).unwrap_or(now);
    let conf = payload.conf.unwrap_or_default();
    let _ = payload.reset_dag_run; // The SDK clears an existing run itself, through `/clear`.
    let created = match trigger_by_task(store, &dag, conf, run_id, logical_date, now).await {
        Ok(created) => created,
        Err(TriggerError::Exists { dag_id, run_id }) => {
            return Err(ExecError::conflict(
                "already_exists",
                format!("A run already exists for Dag '{dag_id}' with run_id '{run_id}'"),
            ));
        }
        Err(TriggerError::Store(err)) => return Err(store_failed(err)),
        Err(err) => {
            return Err(ExecError::new(
                StatusCode::BAD_REQUEST,
                "value_error",
                err.to_string(),
            ));
        }
    };
    if let Some(note) = payload.note.as_deref() {
        store
            .set_run_note(&dag_id, &created, Some(note))
            .await
            .map_err(store_failed)?;
    }
    tracing::info!(%dag_id, run_id = %created, "run triggered by a task");
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /dag-runs/{dag_id}/{run_id}/state`.
async fn run_state(
    State(state): State<ExecutionState>,
    Path((dag_id, run_id)): Path<(String, String)>,
) -> Result<axum::Json<serde_json::Value>, ExecError> {
    let store = store_of(&state)?;
    let run = store
        .run(&dag_id, &run_id)
        .await
        .map_err(store_failed)?
        .ok_or_else(|| {
            ExecError::not_found(format!(
                "Dag run with dag_id '{dag_id}' and run_id '{run_id}' was not found"
            ))
        })?;
    Ok(axum::Json(serde_json::json!({"state": run.state})))
}

/// `GET /dag-runs/count?dag_id=..&run_ids=..&states=..&logical_dates=..`.
async fn count(
    State(state): State<ExecutionState>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> Result<axum::Json<i64>, ExecError> {
    let pairs = QueryPairs::parse(query.as_deref())?;
    let dag_id = pairs.required("dag_id")?;
    let (run_ids, states) = (pairs.all("run_ids")?, pairs.all("states")?);
    let logical_dates = pairs.dates("logical_dates")?;
    // States are names here (Airflow compares them as strings): a name no run can have
    // matches nothing.
    let known: Vec<DagRunState> = states
        .iter()
        .filter_map(|name| serde_json::from_value(name.as_str().into()).ok())
        .collect();
    if !states.is_empty() && known.is_empty() {
        return Ok(axum::Json(0));
    }
    let filter = RunFilter {
        dag_ids: Some(vec![dag_id.to_owned()]),
        run_ids,
        states: known,
        logical_dates,
        ..RunFilter::default()
    };
    let counted = store_of(&state)?
        .count_runs(&filter)
        .await
        .map_err(store_failed)?;
    Ok(axum::Json(counted))
}

/// A stored run as the Task SDK's `DagRun`.
fn dag_run_of(run: StoredRun) -> DagRun {
    DagRun {
        dag_id: run.dag_id,
        run_id: run.run_id,
        logical_date: Some(run.logical_date),
        data_interval_start: Some(run.data_interval.0),
        data_interval_end: Some(run.data_interval.1),
        // Gust's runs may start once their data interval has ended.
        run_after: run.data_interval.1,
        start_date: run.start_date,
        end_date: run.end_date,
        clear_number: 0,
        run_type: run.run_type.as_str().to_owned(),
        state: run.state.as_str().to_owned(),
        conf: run.conf,
        triggering_user_name: None,
        consumed_asset_events: Vec::new(),
        partition_key: None,
        partition_date: None,
        note: run.note,
        team_name: None,
    }
}

fn run_not_found(dag_id: &str, run_id: &str) -> ExecError {
    ExecError::not_found(format!(
        "Dag run with dag_id '{dag_id}' and run_id '{run_id}' was not found"
    ))
}

/// `GET /dag-runs/{dag_id}/{run_id}`: the run's detail.
async fn detail(
    State(state): State<ExecutionState>,
    Path((dag_id, run_id)): Path<(String, String)>,
) -> Result<axum::Json<DagRun>, ExecError> {
    let store = store_of(&state)?;
    let run = store
        .run(&dag_id, &run_id)
        .await
        .map_err(store_failed)?
        .ok_or_else(|| run_not_found(&dag_id, &run_id))?;
    Ok(axum::Json(dag_run_of(run)))
}

/// `GET /dag-runs/previous?dag_id=..&logical_date=..&state=..`: the DAG's latest run before
/// `logical_date` (in `state` when given), or `null`.
async fn previous(
    State(state): State<ExecutionState>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> Result<axum::Json<Option<DagRun>>, ExecError> {
    let pairs = QueryPairs::parse(query.as_deref())?;
    let dag_id = pairs.required("dag_id")?.to_owned();
    let before = pairs
        .date("logical_date")?
        .ok_or_else(|| ExecError::unprocessable("logical_date is required"))?;
    let states = pairs
        .one("state")
        .map(|name| {
            serde_json::from_value::<DagRunState>(name.into())
                .map_err(|_| ExecError::unprocessable(format!("state {name:?} is not a run state")))
        })
        .transpose()?
        .into_iter()
        .collect();
    let store = store_of(&state)?;
    let filter = RunFilter {
        dag_ids: Some(vec![dag_id]),
        states,
        logical_date: TimeRange {
            lt: Some(before),
            ..TimeRange::default()
        },
        ..RunFilter::default()
    };
    let (runs, _) = store
        .list_runs(&filter, &[(RunOrder::LogicalDate, true)], 1, 0)
        .await
        .map_err(store_failed)?;
    Ok(axum::Json(runs.into_iter().next().map(dag_run_of)))
}

/// `POST /dag-runs/{dag_id}/{run_id}/clear` (`TriggerDagRunOperator` with `reset_dag_run`, when
/// the run exists): every task instance of the run goes back to no status, and a finished run
/// back to the queue, as `gust tasks clear` does; the scheduler holding a running one re-reads
/// it and kills the tries of its cleared instances.
async fn clear(
    State(state): State<ExecutionState>,
    Path((dag_id, run_id)): Path<(String, String)>,
) -> Result<StatusCode, ExecError> {
    let store = store_of(&state)?;
    triggerable(store, &dag_id).await?;
    if store
        .run(&dag_id, &run_id)
        .await
        .map_err(store_failed)?
        .is_none()
    {
        return Err(ExecError::not_found(format!(
            "Dag run with run_id: '{run_id}' not found"
        )));
    }
    let tasks: Vec<String> = store
        .task_instances(&dag_id, &run_id)
        .await
        .map_err(store_failed)?
        .into_iter()
        .map(|ti| ti.task_id)
        .collect();
    let cleared = store
        .clear_task_instances(&dag_id, &run_id, &tasks, state.clock.now())
        .await
        .map_err(store_failed)?;
    tracing::info!(%dag_id, %run_id, cleared, "run cleared by a task");
    Ok(StatusCode::NO_CONTENT)
}
