//! The Execution API's handlers: task instances (run, state, heartbeat, rendered fields,
//! skip-downstream, rendered map index), XComs, variables, connections, health.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Extension, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, put};
use gust_executor::OutletEvent;
use gust_executor::deferral::Deferral;
use gust_executor::execution::{LiveTry, Reported, Runner};
use gust_template::XComRows;
use uuid::Uuid;

use super::dag_runs::{store_failed, store_of};
use super::models::{
    ConnectionResponse, DagRun, EnterRunning, Heartbeat, MapIndex, RunContext, SkipDownstream,
    SkipTarget, VariablePostBody, VariableResponse, XComResponse,
};
use super::{ExecError, ExecutionState};

type Live = Extension<Arc<LiveTry>>;

/// The routes that need a try's token.
pub(super) fn authenticated() -> Router<ExecutionState> {
    Router::new()
        .route("/task-instances/{id}/run", patch(ti_run))
        .route("/task-instances/{id}/state", patch(ti_state))
        .route("/task-instances/{id}/heartbeat", put(ti_heartbeat))
        .route(
            "/task-instances/{id}/previous-successful-dagrun",
            get(ti_previous_successful_dagrun),
        )
        .route("/task-instances/{id}/rtif", put(ti_rtif))
        .route(
            "/task-instances/{id}/validate-inlets-and-outlets",
            get(ti_validate_inlets_and_outlets),
        )
        .route(
            "/task-instances/{id}/skip-downstream",
            patch(ti_skip_downstream),
        )
        .route(
            "/task-instances/{id}/rendered-map-index",
            patch(ti_rendered_map_index),
        )
        .route(
            "/xcoms/{dag_id}/{run_id}/{task_id}/{*key}",
            get(xcom_get).post(xcom_set).delete(xcom_delete),
        )
        .route(
            "/variables/{key}",
            get(variable_get).put(variable_put).delete(variable_delete),
        )
        .route("/connections/{conn_id}", get(connection_get))
        .route(
            "/task-reschedules/{id}/start_date",
            get(ti_first_reschedule_start),
        )
}

/// `GET /health`.
pub(super) async fn health() -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({"status": "healthy"}))
}

pub(super) fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ExecError> {
    serde_json::from_slice(body).map_err(|err| ExecError::unprocessable(err.to_string()))
}

/// The token's try, which must be the one the path names.
fn this_try(live: &LiveTry, id: Uuid) -> Result<(), ExecError> {
    if live.ti_id == id {
        Ok(())
    } else {
        Err(ExecError::forbidden(format!(
            "the token is not scoped to task instance {id}"
        )))
    }
}

fn masked(value: &serde_json::Value) -> serde_json::Value {
    gust_secrets::current().redact(value, None)
}

/// `PATCH /task-instances/{id}/run`: the worker starts the try and gets its run context.
async fn ti_run(
    State(state): State<ExecutionState>,
    Extension(live): Live,
    Path(id): Path<Uuid>,
    body: Bytes,
) -> Result<axum::Json<RunContext>, ExecError> {
    this_try(&live, id)?;
    let payload: EnterRunning = parse(&body)?;
    if payload.state.as_deref().is_some_and(|s| s != "running") {
        return Err(ExecError::unprocessable("state must be \"running\""));
    }
    {
        let mut progress = live.progress();
        let runner = Runner {
            hostname: payload.hostname.clone(),
            pid: payload.pid,
        };
        if let Some(reported) = &progress.reported {
            return Err(ExecError::conflict(
                "invalid_state",
                "TI was not in a state where it could be marked as running",
            )
            .with_detail("previous_state", reported_state(reported).into()));
        }
        match progress.runner.clone() {
            // The same worker asking again (a lost answer) gets the same context.
            Some(earlier) if earlier == runner => {}
            Some(_) => {
                return Err(ExecError::conflict(
                    "invalid_state",
                    "TI was not in a state where it could be marked as running",
                )
                .with_detail("previous_state", "running".into()));
            }
            None => {
                progress.runner = Some(runner);
                progress.started_at = Some(payload.start_date);
            }
        }
        let _ = payload.unixname;
        progress.last_heartbeat = Some(payload.start_date);
    }
    let run = &live.run;
    let logical_date = run.data_interval.map(|(start, _)| start);
    let consumed_asset_events = if run.run_type == "asset_triggered" {
        let (dag_id, run_id) = (live.key.dag_id.as_str(), live.key.run_id.as_str());
        super::assets::consumed_events(&state, dag_id, run_id).await?
    } else {
        Vec::new()
    };
    Ok(axum::Json(RunContext {
        dag_run: DagRun {
            dag_id: live.key.dag_id.to_string(),
            run_id: live.key.run_id.to_string(),
            logical_date,
            data_interval_start: run.data_interval.map(|(start, _)| start),
            data_interval_end: run.data_interval.map(|(_, end)| end),
            run_after: run
                .run_after
                .or(run.data_interval.map(|(_, end)| end))
                .or(run.start_date)
                .unwrap_or(payload.start_date),
            start_date: run.start_date,
            end_date: None,
            clear_number: 0,
            run_type: if run.run_type.is_empty() {
                "manual".to_owned()
            } else {
                run.run_type.clone()
            },
            state: "running".to_owned(),
            conf: run.conf.clone(),
            triggering_user_name: None,
            consumed_asset_events,
            partition_key: None,
            partition_date: None,
            note: None,
            team_name: None,
        },
        task_reschedule_count: live.reschedules.count,
        max_tries: live.max_tries,
        variables: Vec::new(),
        connections: Vec::new(),
        // A try starts with no XCom of its own: Gust keeps a task's XCom per try (and a
        // resumed try keeps those of its run before the deferral, as Airflow does).
        xcom_keys_to_clear: Vec::new(),
        should_retry: live.should_retry(),
        next_method: live.resume.as_ref().map(|r| r.next_method.clone()),
        next_kwargs: live.resume.as_ref().map(|r| r.next_kwargs.clone()),
    }))
}

fn reported_state(reported: &Reported) -> &'static str {
    match reported {
        Reported::Success => "success",
        Reported::Failed => "failed",
        Reported::UpForRetry { .. } => "up_for_retry",
        Reported::Skipped => "skipped",
        Reported::Reschedule { .. } => "up_for_reschedule",
        Reported::Deferred(_) => "deferred",
        Reported::Removed => "removed",
    }
}

/// What a `PATCH .../state` body reports.
fn read_state(body: &serde_json::Value) -> Result<Reported, ExecError> {
    let state = body
        .get("state")
        .and_then(serde_json::Value::as_str)
        .ok_or_else(|| ExecError::unprocessable("the body names no state"))?;
    let time = |field: &str| -> Result<chrono::DateTime<chrono::Utc>, ExecError> {
        body.get(field)
            .and_then(serde_json::Value::as_str)
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&chrono::Utc))
            .ok_or_else(|| ExecError::unprocessable(format!("{field} must be a date-time")))
    };
    Ok(match state {
        "success" => Reported::Success,
        "failed" => Reported::Failed,
        "skipped" => Reported::Skipped,
        "removed" | "upstream_failed" => Reported::Removed,
        "up_for_retry" => Reported::UpForRetry {
            reason: body
                .get("retry_reason")
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned),
        },
        "up_for_reschedule" => Reported::Reschedule {
            at: time("reschedule_date")?,
        },
        "deferred" => Reported::Deferred(Box::new(read_deferral(body)?)),
        other => {
            return Err(ExecError::unprocessable(format!(
                "state {other:?} cannot be reported"
            )));
        }
    })
}

/// The most asset events one success may report.
const MAX_OUTLET_EVENTS: usize = 1_000;

/// The asset events a `TISuccessStatePayload` reports (`outlet_events`), with their extras
/// (masked, as every value Gust keeps), those emitted through an asset alias with the alias's
/// name and the extra the asset was given.
fn read_outlet_events(body: &serde_json::Value) -> Result<Vec<OutletEvent>, ExecError> {
    let Some(events) = body
        .get("outlet_events")
        .and_then(serde_json::Value::as_array)
    else {
        return Ok(Vec::new());
    };
    if events.len() > MAX_OUTLET_EVENTS {
        return Err(ExecError::unprocessable(format!(
            "outlet_events may hold at most {MAX_OUTLET_EVENTS} events"
        )));
    }
    let mut read = Vec::new();
    for event in events {
        let key = |field: &str| {
            event
                .get("dest_asset_key")
                .and_then(|k| k.get(field))
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| {
                    ExecError::unprocessable(format!(
                        "an outlet event's dest_asset_key has no {field}"
                    ))
                })
        };
        let extra = object(event, "extra")?;
        let through_alias = match event.get("source_alias_name") {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(alias)) => {
                Some((alias.clone(), object(event, "dest_asset_extra")?))
            }
            Some(_) => {
                return Err(ExecError::unprocessable(
                    "an outlet event's source_alias_name must be a string",
                ));
            }
        };
        read.push(OutletEvent {
            name: key("name")?,
            uri: key("uri")?,
            extra,
            through_alias,
        });
    }
    Ok(read)
}

/// An outlet event's `field`, a JSON object (none is empty), masked.
fn object(
    event: &serde_json::Value,
    field: &str,
) -> Result<serde_json::Map<String, serde_json::Value>, ExecError> {
    match event.get(field) {
        None | Some(serde_json::Value::Null) => Ok(serde_json::Map::new()),
        Some(serde_json::Value::Object(extra)) => match masked(&extra.clone().into()) {
            serde_json::Value::Object(extra) => Ok(extra),
            _ => Ok(serde_json::Map::new()),
        },
        Some(_) => Err(ExecError::unprocessable(format!(
            "an outlet event's {field} must be an object"
        ))),
    }
}

/// A `TIDeferredStatePayload`: the trigger and where to resume, kwargs kept in serde's form.
fn read_deferral(body: &serde_json::Value) -> Result<Deferral, ExecError> {
    let text = |field: &str| {
        body.get(field)
            .and_then(serde_json::Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| ExecError::unprocessable(format!("{field} must be a non-empty string")))
    };
    let trigger_timeout = match body.get("trigger_timeout") {
        None | Some(serde_json::Value::Null) => None,
        // Pydantic writes a timedelta as ISO-8601 (`PT5S`); seconds are read too.
        Some(serde_json::Value::String(iso)) => Some(
            gust_core::duration::parse_duration(iso)
                .map_err(|err| ExecError::unprocessable(format!("trigger_timeout: {err}")))?,
        ),
        Some(serde_json::Value::Number(n)) => Some(
            gust_core::duration::duration_from_seconds(n.as_f64().unwrap_or(f64::NAN))
                .map_err(|err| ExecError::unprocessable(format!("trigger_timeout: {err}")))?,
        ),
        Some(_) => {
            return Err(ExecError::unprocessable(
                "trigger_timeout must be a duration",
            ));
        }
    };
    let deferral = Deferral {
        classpath: text("classpath")?,
        trigger_kwargs: body
            .get("trigger_kwargs")
            .cloned()
            .unwrap_or_else(|| serde_json::json!({})),
        trigger_timeout,
        next_method: text("next_method")?,
        next_kwargs: body
            .get("next_kwargs")
            .cloned()
            .unwrap_or_else(|| serde_json::json!({})),
    };
    deferral
        .check()
        .map_err(|err| ExecError::unprocessable(err.to_string()))?;
    Ok(deferral)
}

/// `PATCH /task-instances/{id}/state`: the worker reports how the try ended.
async fn ti_state(
    Extension(live): Live,
    Path(id): Path<Uuid>,
    body: Bytes,
) -> Result<Response, ExecError> {
    this_try(&live, id)?;
    let body: serde_json::Value = parse(&body)?;
    let reported = read_state(&body)?;
    let mut progress = live.progress();
    if progress.runner.is_none() {
        return Err(ExecError::conflict(
            "invalid_state",
            "TI is not running: it must start (PATCH .../run) before it reports a state",
        )
        .with_detail("previous_state", "queued".into()));
    }
    match &progress.reported {
        // Said again (a lost answer): already so.
        Some(earlier) if *earlier == reported => Ok(StatusCode::OK.into_response()),
        Some(earlier) => Err(ExecError::conflict(
            "invalid_state",
            format!("TI already reported {}", reported_state(earlier)),
        )
        .with_detail("previous_state", reported_state(earlier).into())),
        None => {
            if reported == Reported::Success {
                progress.outlet_events = read_outlet_events(&body)?;
            }
            progress.reported = Some(reported);
            Ok(StatusCode::NO_CONTENT.into_response())
        }
    }
}

/// `GET /task-reschedules/{id}/start_date`: when the first run of this try that rescheduled
/// itself started (`null` before any), from which a sensor in reschedule mode measures its
/// `timeout`. Gust keeps one try's reschedules, so the `try_number` the SDK sends (the first
/// try's, for a sensor with retries) names the try the token is scoped to.
async fn ti_first_reschedule_start(
    Extension(live): Live,
    Path(id): Path<Uuid>,
) -> Result<axum::Json<Option<chrono::DateTime<chrono::Utc>>>, ExecError> {
    this_try(&live, id)?;
    Ok(axum::Json(live.reschedules.first_start))
}

/// The try must be running for a worker to act for it.
fn running(live: &LiveTry, hostname: Option<&str>, pid: Option<i64>) -> Result<(), ExecError> {
    let progress = live.progress();
    let Some(runner) = &progress.runner else {
        return Err(ExecError::conflict("not_running", "TI is not running"));
    };
    if progress.reported.is_some() {
        return Err(ExecError::conflict(
            "not_running",
            "TI has already reported its end",
        ));
    }
    if hostname.is_some_and(|h| h != runner.hostname) || pid.is_some_and(|p| p != runner.pid) {
        return Err(ExecError::conflict(
            "running_elsewhere",
            format!(
                "TI is already running elsewhere (pid {} on {})",
                runner.pid, runner.hostname
            ),
        ));
    }
    Ok(())
}

/// `PUT /task-instances/{id}/heartbeat`.
async fn ti_heartbeat(
    State(state): State<ExecutionState>,
    Extension(live): Live,
    Path(id): Path<Uuid>,
    body: Bytes,
) -> Result<StatusCode, ExecError> {
    this_try(&live, id)?;
    let beat: Heartbeat = parse(&body)?;
    running(&live, Some(&beat.hostname), Some(beat.pid))?;
    live.progress().last_heartbeat = Some(state.clock.now());
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /task-instances/{id}/previous-successful-dagrun`: the latest successful run of the try's
/// DAG before its run (by logical date), for the `prev_*_success` template values; all null
/// when there is none, or no store (`gust dags test` runs one run and keeps none).
async fn ti_previous_successful_dagrun(
    State(state): State<ExecutionState>,
    Extension(live): Live,
    Path(id): Path<Uuid>,
) -> Result<axum::Json<serde_json::Value>, ExecError> {
    this_try(&live, id)?;
    let none = serde_json::json!({
        "data_interval_start": null, "data_interval_end": null,
        "start_date": null, "end_date": null,
    });
    let Some((store, _)) = &state.variables else {
        return Ok(axum::Json(none));
    };
    let store_error = |err: gust_store::StoreError| {
        tracing::error!(error = %err, "the previous successful run could not be read");
        ExecError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "store_error",
            "the previous successful run could not be read",
        )
    };
    let (dag_id, run_id) = (live.key.dag_id.as_str(), live.key.run_id.as_str());
    let Some(run) = store.run(dag_id, run_id).await.map_err(store_error)? else {
        return Ok(axum::Json(none));
    };
    let Some(previous) = store
        .previous_successful_run(dag_id, run.logical_date)
        .await
        .map_err(store_error)?
    else {
        return Ok(axum::Json(none));
    };
    let (start, end) = previous.data_interval;
    Ok(axum::Json(serde_json::json!({
        "data_interval_start": start,
        "data_interval_end": end,
        "start_date": previous.start_date,
        "end_date": previous.end_date,
    })))
}

/// `PUT /task-instances/{id}/rtif`: the try's rendered template fields, kept masked.
async fn ti_rtif(
    State(state): State<ExecutionState>,
    Extension(live): Live,
    Path(id): Path<Uuid>,
    body: Bytes,
) -> Result<(StatusCode, axum::Json<serde_json::Value>), ExecError> {
    this_try(&live, id)?;
    let fields: serde_json::Map<String, serde_json::Value> = parse(&body)?;
    let fields = fields
        .into_iter()
        .map(|(name, value)| {
            let value = gust_secrets::current().redact(&value, Some(name.as_str()));
            (name, value)
        })
        .collect();
    let mut progress = live.progress();
    progress.rendered_fields = Some(fields);
    // The task runner sends its rendered fields right before `execute`, where its own
    // execution_timeout starts: the try's does too.
    progress.executing_since = Some(state.clock.now());
    drop(progress);
    Ok((
        StatusCode::CREATED,
        axum::Json(
            serde_json::json!({"message": "Rendered task instance fields successfully set"}),
        ),
    ))
}

/// `GET /task-instances/{id}/validate-inlets-and-outlets`: the task's inactive assets, which
/// the task runner refuses to run with (asked before `execute` by any task with inlets or
/// outlets). Airflow deactivates an asset whose name or URI another asset also has; Gust keeps
/// every asset the DAGs name active (docs/dag-format.md), so none is inactive.
async fn ti_validate_inlets_and_outlets(
    Extension(live): Live,
    Path(id): Path<Uuid>,
) -> Result<axum::Json<serde_json::Value>, ExecError> {
    this_try(&live, id)?;
    Ok(axum::Json(serde_json::json!({"inactive_assets": []})))
}

/// `PATCH /task-instances/{id}/skip-downstream` (branching): recorded for the runtime.
async fn ti_skip_downstream(
    Extension(live): Live,
    Path(id): Path<Uuid>,
    body: Bytes,
) -> Result<StatusCode, ExecError> {
    this_try(&live, id)?;
    let payload: SkipDownstream = parse(&body)?;
    running(&live, None, None)?;
    let tasks = payload.tasks.into_iter().map(|t| match t {
        SkipTarget::Task(task) | SkipTarget::Mapped(task, _) => task,
    });
    live.progress().skip_downstream.extend(tasks);
    Ok(StatusCode::NO_CONTENT)
}

/// The longest instance name kept, as Airflow's `rendered_map_index` column holds.
const MAX_RENDERED_MAP_INDEX: usize = 250;

/// `PATCH /task-instances/{id}/rendered-map-index`: the name a mapped instance's
/// `map_index_template` rendered to in the task runner (after `execute`, so a name the task set
/// in its context while running), over the one Gust rendered as the try was handed over. Kept
/// masked and cut to Airflow's 250 characters; under `gust dags test`, which keeps no runs,
/// only checked.
async fn ti_rendered_map_index(
    State(state): State<ExecutionState>,
    Extension(live): Live,
    Path(id): Path<Uuid>,
    body: Bytes,
) -> Result<StatusCode, ExecError> {
    this_try(&live, id)?;
    let name: String = parse(&body)?;
    if name.is_empty() {
        return Err(ExecError::unprocessable(
            "rendered_map_index cannot be empty",
        ));
    }
    let Ok(store) = store_of(&state) else {
        return Ok(StatusCode::NO_CONTENT);
    };
    let name: String = gust_secrets::mask(&name)
        .chars()
        .take(MAX_RENDERED_MAP_INDEX)
        .collect();
    let key = &live.key;
    store
        .set_rendered_map_index(
            key.dag_id.as_str(),
            key.run_id.as_str(),
            key.task_id.as_str(),
            key.map_index,
            Some(&name),
        )
        .await
        .map_err(store_failed)?;
    Ok(StatusCode::NO_CONTENT)
}

/// The XCom routes read and write the token's own run only (Gust keeps XComs per run);
/// writes are the token's own task's.
fn xcom_scope(
    live: &LiveTry,
    dag_id: &str,
    run_id: &str,
    task_id: &str,
    write: bool,
) -> Result<(), ExecError> {
    let own_run = live.key.dag_id.as_str() == dag_id && live.key.run_id.as_str() == run_id;
    let own_task = own_run && live.key.task_id.as_str() == task_id;
    if (write && !own_task) || !own_run {
        return Err(ExecError::forbidden(format!(
            "task {} of run {} of {} may not {} XComs of task {task_id:?} in run {run_id:?} \
             of {dag_id:?}",
            live.key.task_id,
            live.key.run_id,
            live.key.dag_id,
            if write { "write" } else { "read" }
        )));
    }
    Ok(())
}

type XComPath = Path<(String, String, String, String)>;

/// What a `GET` (or `HEAD`) under `/xcoms/{dag_id}/{run_id}/{task_id}/` asks for: the key may
/// hold slashes, so the sequence routes (`{key}/slice`, `{key}/item/{offset}`) are told apart
/// by their tails, as Airflow's routes are matched.
enum XComRead {
    One(String),
    Slice(String),
    Item(String, i64),
}

impl XComRead {
    fn of(path_key: String) -> Self {
        if let Some(key) = path_key.strip_suffix("/slice") {
            return Self::Slice(key.to_owned());
        }
        if let Some((key, offset)) = path_key.rsplit_once("/item/")
            && let Ok(offset) = offset.parse()
        {
            return Self::Item(key.to_owned(), offset);
        }
        Self::One(path_key)
    }
}

/// `?start=&stop=&step=` of a slice, `?map_index=` or `?offset=` of one value.
#[derive(Debug, serde::Deserialize)]
struct XComQuery {
    #[serde(default)]
    start: Option<i64>,
    #[serde(default)]
    stop: Option<i64>,
    #[serde(default)]
    step: Option<i64>,
    #[serde(default)]
    map_index: Option<i64>,
    #[serde(default)]
    offset: Option<i64>,
}

/// `values[start:stop:step]` as Python slices a list.
fn py_slice(
    values: &[&serde_json::Value],
    start: Option<i64>,
    stop: Option<i64>,
    step: Option<i64>,
) -> Vec<serde_json::Value> {
    let len = i64::try_from(values.len()).unwrap_or(i64::MAX);
    let step = step.filter(|s| *s != 0).unwrap_or(1);
    let clamp = |i: i64, low: i64, high: i64| {
        let i = if i < 0 { i + len } else { i };
        i.clamp(low, high)
    };
    let at = |i: i64| {
        usize::try_from(i)
            .ok()
            .and_then(|i| values.get(i))
            .map(|v| (*v).clone())
    };
    let mut out = Vec::new();
    if step > 0 {
        let (mut i, end) = (
            start.map_or(0, |s| clamp(s, 0, len)),
            stop.map_or(len, |s| clamp(s, 0, len)),
        );
        while i < end {
            out.extend(at(i));
            i += step;
        }
    } else {
        let (mut i, end) = (
            start.map_or(len - 1, |s| clamp(s, -1, len - 1)),
            stop.map_or(-1, |s| clamp(s, -1, len - 1)),
        );
        while i > end {
            out.extend(at(i));
            i += step;
        }
    }
    out
}

/// The XCom rows of `task_id`'s `key` as the token's try sees them, by map index (Airflow's
/// XCom table: a mapped task's instances under their map indexes, a task that is not mapped
/// under -1). The try's own row is what it pushed in this try, as Airflow clears a try's XComs
/// when it starts; its task's other instances' rows are theirs. Shared with the run's XComs,
/// not copied (see [`gust_template::RuntimeLookup::xcom_rows`]), but when a try reads its own
/// task's rows.
fn xcom_rows(live: &LiveTry, task_id: &str, key: &str) -> XComRows {
    let rows = live.lookup.xcom_rows(task_id, key);
    if live.key.task_id.as_str() != task_id {
        return rows;
    }
    let own = live.key.map_index;
    let mut rows = Arc::unwrap_or_clone(rows);
    rows.remove(&own);
    if let Some(value) = live.progress().xcoms.get(key) {
        rows.insert(own, value.clone());
    }
    Arc::new(rows)
}

/// The row `offset` places from the first (from the end when negative) of `rows`, as Airflow's
/// sequence routes count.
fn at_offset<'a>(
    mut rows: impl DoubleEndedIterator<Item = &'a serde_json::Value> + ExactSizeIterator,
    offset: i64,
) -> Option<&'a serde_json::Value> {
    if offset < 0 {
        rows.nth_back(usize::try_from(-(offset + 1)).ok()?)
    } else {
        rows.nth(usize::try_from(offset).ok()?)
    }
}

/// The row at `offset` of `rows`. A mapped task's rows are nearly always its map indexes
/// 0..n, where a row's place is its index: read directly, so that each of 10,000 instances
/// reading its item costs a lookup, not a walk.
fn row_at(rows: &BTreeMap<i32, serde_json::Value>, offset: i64) -> Option<&serde_json::Value> {
    let len = i64::try_from(rows.len()).ok()?;
    let dense = rows.keys().next() == Some(&0)
        && rows.keys().next_back().map(|last| i64::from(*last)) == Some(len - 1);
    if dense {
        let index = if offset < 0 { len + offset } else { offset };
        return i32::try_from(index).ok().and_then(|i| rows.get(&i));
    }
    at_offset(rows.values(), offset)
}

/// `GET /xcoms/{dag_id}/{run_id}/{task_id}/{key}` (and `HEAD`, `.../slice`,
/// `.../item/{offset}`): one row by `map_index` (-1 when not given) or `offset`, the number of
/// rows, a slice of them or one by its place, rows in map-index order. So a mapped upstream
/// reads as the sequence of its instances' values (the Task SDK's `LazyXComSequence`), one that
/// is not mapped as a sequence of its one value.
async fn xcom_get(
    method: axum::http::Method,
    Extension(live): Live,
    Path((dag_id, run_id, task_id, path_key)): XComPath,
    Query(query): Query<XComQuery>,
) -> Result<Response, ExecError> {
    xcom_scope(&live, &dag_id, &run_id, &task_id, false)?;
    let read = XComRead::of(path_key);
    let key = match &read {
        XComRead::One(key) | XComRead::Slice(key) | XComRead::Item(key, _) => key.clone(),
    };
    let rows = xcom_rows(&live, &task_id, &key);
    let not_found = |what: String| {
        ExecError::not_found(format!(
            "XCom with key='{key}' {what} not found for task '{task_id}' in DAG run '{run_id}' \
             of '{dag_id}'"
        ))
    };
    match read {
        XComRead::One(_) if method == axum::http::Method::HEAD => {
            if query.map_index.is_some() {
                return Err(ExecError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "Cannot specify map_index in a HEAD request",
                ));
            }
            Ok((
                [("Content-Range", format!("map_indexes {}", rows.len()))],
                StatusCode::OK,
            )
                .into_response())
        }
        XComRead::One(key) => {
            let found = if let Some(offset) = query.offset {
                // As Airflow: the offset counts the rows that hold a value.
                let held: Vec<&serde_json::Value> =
                    rows.values().filter(|v| !v.is_null()).collect();
                at_offset(held.into_iter(), offset)
                    .cloned()
                    .ok_or_else(|| not_found(format!("offset={offset}")))?
            } else {
                let map_index = query.map_index.unwrap_or(-1);
                i32::try_from(map_index)
                    .ok()
                    .and_then(|i| rows.get(&i))
                    .cloned()
                    .ok_or_else(|| not_found(format!("map_index={map_index}")))?
            };
            Ok(axum::Json(XComResponse { key, value: found }).into_response())
        }
        XComRead::Slice(_) => {
            let sequence: Vec<&serde_json::Value> = rows.values().collect();
            Ok(
                axum::Json(py_slice(&sequence, query.start, query.stop, query.step))
                    .into_response(),
            )
        }
        XComRead::Item(_, offset) => match row_at(&rows, offset) {
            Some(value) => Ok(axum::Json(value.clone()).into_response()),
            None => Err(not_found(format!("offset={offset}"))),
        },
    }
}

/// The try's own map index must be the one a write names (none: the try's).
fn own_map_index(live: &LiveTry, asked: Option<i64>) -> Result<(), ExecError> {
    let own = live.key.map_index;
    match asked {
        Some(asked) if asked != i64::from(own) => Err(ExecError::forbidden(format!(
            "task instance {}[{own}] may not write XComs of map index {asked}",
            live.key.task_id
        ))),
        _ => Ok(()),
    }
}

/// `POST /xcoms/{dag_id}/{run_id}/{task_id}/{key}?map_index=`: the value is kept masked; the
/// return value becomes the try's XCom (its instance's, for a mapped task) when it succeeds.
async fn xcom_set(
    Extension(live): Live,
    Path((dag_id, run_id, task_id, key)): XComPath,
    Query(index): Query<MapIndex>,
    body: Bytes,
) -> Result<(StatusCode, axum::Json<serde_json::Value>), ExecError> {
    xcom_scope(&live, &dag_id, &run_id, &task_id, true)?;
    own_map_index(&live, index.map_index)?;
    let value: serde_json::Value = parse(&body)?;
    running(&live, None, None)?;
    live.progress().xcoms.insert(key, masked(&value));
    Ok((
        StatusCode::CREATED,
        axum::Json(serde_json::json!({"message": "XCom successfully set"})),
    ))
}

/// `DELETE /xcoms/{dag_id}/{run_id}/{task_id}/{key}?map_index=`.
async fn xcom_delete(
    Extension(live): Live,
    Path((dag_id, run_id, task_id, key)): XComPath,
    Query(index): Query<MapIndex>,
) -> Result<axum::Json<serde_json::Value>, ExecError> {
    xcom_scope(&live, &dag_id, &run_id, &task_id, true)?;
    own_map_index(&live, index.map_index)?;
    live.progress().xcoms.remove(&key);
    Ok(axum::Json(serde_json::json!({
        "message": format!("XCom with key: {key} successfully deleted.")
    })))
}

/// `GET /variables/{key}`.
async fn variable_get(
    State(state): State<ExecutionState>,
    Extension(live): Live,
    Path(key): Path<String>,
) -> Result<axum::Json<VariableResponse>, ExecError> {
    match state.broker.variable(&live, &key) {
        Some(value) => Ok(axum::Json(VariableResponse {
            key,
            value: Some(value),
        })),
        None => Err(ExecError::not_found(format!(
            "Variable with key '{key}' not found"
        ))),
    }
}

/// `PUT /variables/{key}`: kept in the store when there is one, and seen at once by the tasks
/// of this process.
async fn variable_put(
    State(state): State<ExecutionState>,
    Path(key): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, axum::Json<serde_json::Value>), ExecError> {
    let payload: VariablePostBody = parse(&body)?;
    let value = payload.val.unwrap_or_default();
    if gust_secrets::current().names().is_sensitive(&key) {
        gust_secrets::add([value.clone()]);
    }
    if let Some((store, fernet)) = &state.variables {
        store
            .set_variable(&key, &value, payload.description.as_deref(), fernet)
            .await
            .map_err(|err| {
                tracing::error!(error = %err, "a task's variable could not be stored");
                ExecError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "store_error",
                    "the variable could not be stored",
                )
            })?;
    }
    state.broker.write_variable(&key, Some(value));
    Ok((
        StatusCode::CREATED,
        axum::Json(serde_json::json!({"message": "Variable successfully set"})),
    ))
}

/// `DELETE /variables/{key}`.
async fn variable_delete(
    State(state): State<ExecutionState>,
    Path(key): Path<String>,
) -> Result<StatusCode, ExecError> {
    if let Some((store, _)) = &state.variables {
        store.delete_variable(&key).await.map_err(|err| {
            tracing::error!(error = %err, "a task's variable could not be deleted");
            ExecError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "store_error",
                "the variable could not be deleted",
            )
        })?;
    }
    state.broker.write_variable(&key, None);
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /connections/{conn_id}`.
async fn connection_get(
    Extension(live): Live,
    Path(conn_id): Path<String>,
) -> Result<axum::Json<ConnectionResponse>, ExecError> {
    let Some(c) = live.lookup.connection(&conn_id) else {
        return Err(ExecError::not_found(format!(
            "Connection with ID {conn_id} not found"
        )));
    };
    Ok(axum::Json(ConnectionResponse {
        conn_id: c.conn_id,
        conn_type: c.conn_type,
        host: c.host,
        schema: c.schema,
        login: c.login,
        password: c.password,
        port: c.port,
        extra: c.extra,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn slices_are_pythons() {
        let values = [json!(0), json!(1), json!(2), json!(3)];
        let refs: Vec<&serde_json::Value> = values.iter().collect();
        let slice = |start, stop, step| py_slice(&refs, start, stop, step);
        assert_eq!(slice(None, None, None), values.to_vec());
        assert_eq!(slice(Some(1), Some(3), None), vec![json!(1), json!(2)]);
        assert_eq!(slice(Some(-2), None, None), vec![json!(2), json!(3)]);
        assert_eq!(
            slice(None, None, Some(-1)),
            vec![json!(3), json!(2), json!(1), json!(0)]
        );
        assert_eq!(slice(None, None, Some(2)), vec![json!(0), json!(2)]);
        assert_eq!(slice(Some(10), None, None), Vec::<serde_json::Value>::new());
        assert_eq!(
            py_slice(&[], None, None, None),
            Vec::<serde_json::Value>::new()
        );
    }

    #[test]
    fn a_row_is_found_by_its_place_whether_or_not_the_map_indexes_are_dense() {
        let dense: BTreeMap<i32, serde_json::Value> = (0..5).map(|i| (i, json!(i * 10))).collect();
        assert_eq!(row_at(&dense, 0), Some(&json!(0)));
        assert_eq!(row_at(&dense, 4), Some(&json!(40)));
        assert_eq!(row_at(&dense, -1), Some(&json!(40)));
        assert_eq!(row_at(&dense, -5), Some(&json!(0)));
        assert_eq!(row_at(&dense, 5), None);
        assert_eq!(row_at(&dense, -6), None);
        // An instance that pushed nothing leaves a gap: places count the rows there are.
        let gaps = BTreeMap::from([(0, json!("a")), (2, json!("c")), (3, json!("d"))]);
        assert_eq!(row_at(&gaps, 1), Some(&json!("c")));
        assert_eq!(row_at(&gaps, -1), Some(&json!("d")));
        assert_eq!(row_at(&gaps, -3), Some(&json!("a")));
        assert_eq!(row_at(&gaps, 3), None);
        let unmapped = BTreeMap::from([(-1, json!([1, 2]))]);
        assert_eq!(row_at(&unmapped, 0), Some(&json!([1, 2])));
        assert_eq!(row_at(&unmapped, -1), Some(&json!([1, 2])));
    }

    #[test]
    fn sequence_routes_are_told_apart_by_their_tails() {
        assert!(
            matches!(XComRead::of("return_value".into()), XComRead::One(k) if k == "return_value")
        );
        assert!(matches!(XComRead::of("a/b/slice".into()), XComRead::Slice(k) if k == "a/b"));
        assert!(matches!(XComRead::of("k/item/-1".into()), XComRead::Item(k, -1) if k == "k"));
        assert!(matches!(XComRead::of("k/item/x".into()), XComRead::One(_)));
    }

    #[test]
    fn a_deferral_is_read_as_the_sdk_sends_it() {
        let body = json!({
            "state": "deferred",
            "classpath": "airflow.providers.standard.triggers.temporal.DateTimeTrigger",
            "trigger_kwargs": {"moment": {"__classname__": "pendulum.datetime.DateTime"}},
            "trigger_timeout": "P7D",
            "next_method": "execute_complete",
            "next_kwargs": {},
            "rendered_map_index": null,
        });
        let Reported::Deferred(deferral) = read_state(&body).expect("a deferral") else {
            panic!("a deferral");
        };
        assert_eq!(
            deferral.trigger_timeout,
            Some(std::time::Duration::from_secs(7 * 86_400))
        );
        assert_eq!(deferral.next_method, "execute_complete");
        let no_class = json!({"state": "deferred", "next_method": "m"});
        assert!(read_state(&no_class).is_err());
    }

    #[test]
    fn outlet_events_are_read_with_their_extras_and_the_alias_they_came_through() {
        let body = json!({
            "state": "success",
            "outlet_events": [
                {"dest_asset_key": {"name": "orders", "uri": "s3://b/orders"}, "extra": {"rows": 3}},
                {"source_alias_name": "alias", "dest_asset_key": {"name": "x", "uri": "x"},
                 "dest_asset_extra": {"team": "a"}, "extra": {}},
            ],
        });
        let events = read_outlet_events(&body).expect("events");
        let map = |v: serde_json::Value| v.as_object().cloned().expect("an object");
        assert_eq!(
            events,
            [
                OutletEvent {
                    name: "orders".into(),
                    uri: "s3://b/orders".into(),
                    extra: map(json!({"rows": 3})),
                    through_alias: None,
                },
                OutletEvent {
                    name: "x".into(),
                    uri: "x".into(),
                    extra: serde_json::Map::new(),
                    through_alias: Some(("alias".into(), map(json!({"team": "a"})))),
                }
            ]
        );
        let bad =
            json!({"outlet_events": [{"dest_asset_key": {"name": "n", "uri": "u"}, "extra": 1}]});
        assert!(read_outlet_events(&bad).is_err());
    }
}
