//! The Execution API's asset routes: the assets and events a Python task reads (its
//! `inlet_events`, `Asset` lookups), and the events an asset-triggered run consumed, given to the
//! task in its run context (`dag_run.consumed_asset_events`, its `triggering_asset_events`).
//! An asset alias answers the assets attached to it (`by-alias`) and the events emitted through
//! it (`by-asset-alias`, a task's `inlet_events[AssetAlias(name)]`).

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::routing::get;
use gust_store::{AssetEventFilter, Store, StoredAsset, StoredAssetEvent};
use serde_json::{Value, json};

use super::dag_runs::{store_failed, store_of};
use super::task_states::QueryPairs;
use super::{ExecError, ExecutionState};

/// The asset routes (behind the task token, as the others).
pub(super) fn routes() -> Router<ExecutionState> {
    Router::new()
        .route("/assets/by-name", get(by_name))
        .route("/assets/by-uri", get(by_uri))
        .route("/assets/by-alias", get(by_alias))
        .route("/asset-events/by-asset", get(events_by_asset))
        .route("/asset-events/by-asset-alias", get(events_by_alias))
}

/// `AssetResponse`.
fn asset_json(asset: &StoredAsset) -> Value {
    json!({"name": asset.name, "uri": asset.uri, "group": asset.group, "extra": asset.extra})
}

async fn find_asset(
    state: &ExecutionState,
    pick: impl Fn(&StoredAsset) -> bool,
    missing: String,
) -> Result<axum::Json<Value>, ExecError> {
    let store = store_of(state)?;
    let assets = store.assets().await.map_err(store_failed)?;
    assets
        .iter()
        .find(|a| pick(a))
        .map(|a| axum::Json(asset_json(a)))
        .ok_or_else(|| ExecError::not_found(missing))
}

/// `GET /assets/by-name?name=`.
async fn by_name(
    State(state): State<ExecutionState>,
    RawQuery(query): RawQuery,
) -> Result<axum::Json<Value>, ExecError> {
    let pairs = QueryPairs::parse(query.as_deref())?;
    let name = pairs.required("name")?.to_owned();
    let missing = format!("Asset with name {name} not found");
    find_asset(&state, |a| a.name == name, missing).await
}

/// `GET /assets/by-uri?uri=`.
async fn by_uri(
    State(state): State<ExecutionState>,
    RawQuery(query): RawQuery,
) -> Result<axum::Json<Value>, ExecError> {
    let pairs = QueryPairs::parse(query.as_deref())?;
    let uri = pairs.required("uri")?.to_owned();
    let missing = format!("Asset with URI {uri} not found");
    find_asset(&state, |a| a.uri == uri, missing).await
}

/// `GET /assets/by-alias?alias_name=`: the assets attached to the alias so far.
async fn by_alias(
    State(state): State<ExecutionState>,
    RawQuery(query): RawQuery,
) -> Result<axum::Json<Value>, ExecError> {
    let pairs = QueryPairs::parse(query.as_deref())?;
    let alias = pairs.required("alias_name")?.to_owned();
    // `gust dags test` keeps no assets: nothing is attached to any alias.
    let Ok(store) = store_of(&state) else {
        return Ok(axum::Json(json!([])));
    };
    let attached = store.aliased_assets().await.map_err(store_failed)?;
    let assets = store.assets().await.map_err(store_failed)?;
    let found: Vec<Value> = attached
        .iter()
        .filter(|a| a.alias == alias)
        .filter_map(|a| assets.iter().find(|s| s.name == a.name && s.uri == a.uri))
        .map(asset_json)
        .collect();
    Ok(axum::Json(Value::Array(found)))
}

/// `GET /asset-events/by-asset-alias?name=&after=&before=&ascending=&limit=`: the events emitted
/// through the alias.
async fn events_by_alias(
    State(state): State<ExecutionState>,
    RawQuery(query): RawQuery,
) -> Result<axum::Json<Value>, ExecError> {
    let pairs = QueryPairs::parse(query.as_deref())?;
    let filter = AssetEventFilter {
        alias: Some(pairs.required("name")?.to_owned()),
        timestamp_gte: pairs.date("after")?,
        timestamp_lte: pairs.date("before")?,
        ..AssetEventFilter::default()
    };
    events_answer(&state, &pairs, &filter).await
}

/// The most events one answer holds when the task names no `limit`.
const MAX_EVENTS: i64 = 10_000;

/// `GET /asset-events/by-asset?name=&uri=&after=&before=&ascending=&limit=`.
async fn events_by_asset(
    State(state): State<ExecutionState>,
    RawQuery(query): RawQuery,
) -> Result<axum::Json<Value>, ExecError> {
    let pairs = QueryPairs::parse(query.as_deref())?;
    // The SDK's client sends both, the one it does not use empty.
    let given = |key: &str| pairs.one(key).filter(|v| !v.is_empty());
    let (name, uri) = (given("name"), given("uri"));
    if name.is_none() && uri.is_none() {
        return Err(ExecError::new(
            axum::http::StatusCode::BAD_REQUEST,
            "Missing parameter",
            "name and uri cannot both be None",
        ));
    }
    let filter = AssetEventFilter {
        name: name.map(str::to_owned),
        uri: uri.map(str::to_owned),
        timestamp_gte: pairs.date("after")?,
        timestamp_lte: pairs.date("before")?,
        ..AssetEventFilter::default()
    };
    events_answer(&state, &pairs, &filter).await
}

/// The events `filter` picks, in the order and number `pairs` ask (`ascending`, `limit`), as
/// an `AssetEventsResponse`.
async fn events_answer(
    state: &ExecutionState,
    pairs: &QueryPairs,
    filter: &AssetEventFilter,
) -> Result<axum::Json<Value>, ExecError> {
    let ascending = pairs
        .one("ascending")
        .is_none_or(|a| !a.eq_ignore_ascii_case("false"));
    let limit = match pairs.one("limit") {
        Some(text) => text
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .ok_or_else(|| ExecError::unprocessable("limit must be a whole number"))?
            .min(MAX_EVENTS),
        None => MAX_EVENTS,
    };
    let order = if ascending { "timestamp" } else { "-timestamp" };
    // `gust dags test` keeps no asset events: a task reading its inlets reads none.
    let Ok(store) = store_of(state) else {
        return Ok(axum::Json(json!({"asset_events": []})));
    };
    let (events, _) = store
        .asset_events(filter, order, limit, 0)
        .await
        .map_err(store_failed)?;
    let runs = consuming_runs(store, &events).await?;
    let events: Vec<Value> = events
        .iter()
        .map(|e| {
            let mut event = event_json(e);
            event["id"] = json!(e.id);
            event["asset"]["group"] = json!(e.group);
            event["created_dagruns"] = Value::Array(
                runs.iter()
                    .filter(|(id, _)| *id == e.id)
                    .map(|(_, run)| run.clone())
                    .collect(),
            );
            event
        })
        .collect();
    Ok(axum::Json(json!({"asset_events": events})))
}

/// The runs that consumed `events`, as `DagRunAssetReference`s, by event id.
async fn consuming_runs(
    store: &Store,
    events: &[StoredAssetEvent],
) -> Result<Vec<(i64, Value)>, ExecError> {
    let ids: Vec<i64> = events.iter().map(|e| e.id).collect();
    let mut out = Vec::new();
    for c in store.consuming_runs(&ids).await.map_err(store_failed)? {
        let Some(run) = store
            .run(&c.dag_id, &c.run_id)
            .await
            .map_err(store_failed)?
        else {
            continue;
        };
        out.push((
            c.event_id,
            json!({
                "run_id": run.run_id, "dag_id": run.dag_id,
                "logical_date": null,
                "start_date": run.start_date.unwrap_or(run.queued_at),
                "end_date": run.end_date,
                "state": run.state.as_str(),
                "data_interval_start": null, "data_interval_end": null,
                "partition_key": null,
            }),
        ));
    }
    Ok(out)
}

/// An event as `AssetEventDagRunReference` (what a run context lists).
fn event_json(e: &StoredAssetEvent) -> Value {
    json!({
        "asset": {"name": e.name, "uri": e.uri, "extra": {}},
        "extra": e.extra,
        "source_task_id": e.source_task_id,
        "source_dag_id": e.source_dag_id,
        "source_run_id": e.source_run_id,
        "source_map_index": e.source_map_index,
        "source_aliases": [],
        "timestamp": e.timestamp,
        "partition_key": null,
    })
}

/// The events the run consumed, for its run context; none without a store (`gust dags test`).
pub(super) async fn consumed_events(
    state: &ExecutionState,
    dag_id: &str,
    run_id: &str,
) -> Result<Vec<Value>, ExecError> {
    let Ok(store) = store_of(state) else {
        return Ok(Vec::new());
    };
    let events = store
        .run_asset_events(dag_id, run_id)
        .await
        .map_err(store_failed)?;
    Ok(events.iter().map(event_json).collect())
}
