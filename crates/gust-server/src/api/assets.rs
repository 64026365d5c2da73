//! `/api/v2/assets`: assets, their events (listed, and created by users or other systems, which
//! triggers the DAGs scheduled on them), the events queued for consuming DAGs, and the events a
//! run consumed (`upstreamAssetEvents`), in Airflow 3.3's shapes.
//!
//! Gust has no asset aliases, watchers or partitions: those fields are always empty.

use std::collections::HashMap;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use gust_store::{AssetEventFilter, AssetRefKind, StoredAsset, StoredAssetEvent, StoredAssetRef};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::extract::{Body, Params, PathParams};
use crate::api::page::{OrderBy, Page, sort_by};
use crate::api::search::{matches_pattern, matches_prefix};
use crate::api::time::{Timestamp, parse_time};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// The asset endpoints.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_assets))
        .routes(routes!(get_asset_events, create_asset_event))
        .routes(routes!(get_asset))
        .routes(routes!(get_asset_queued_events, delete_asset_queued_events))
        .routes(routes!(get_dag_queued_events, delete_dag_queued_events))
        .routes(routes!(
            get_dag_asset_queued_event,
            delete_dag_asset_queued_event
        ))
        .routes(routes!(get_upstream_asset_events))
}

/// A DAG scheduled on an asset.
#[derive(Debug, Serialize, ToSchema)]
pub struct DagScheduleAssetReference {
    pub dag_id: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// A task that updates (outlet) or reads (inlet) an asset.
#[derive(Debug, Serialize, ToSchema)]
pub struct TaskAssetReference {
    pub dag_id: String,
    pub task_id: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// The newest event of an asset.
#[derive(Debug, Serialize, ToSchema)]
pub struct LastAssetEventResponse {
    pub id: Option<i64>,
    pub timestamp: Option<Timestamp>,
}

/// An asset (Airflow's `AssetResponse`).
#[derive(Debug, Serialize, ToSchema)]
pub struct AssetResponse {
    pub id: i64,
    pub name: String,
    pub uri: String,
    pub group: String,
    #[schema(value_type = Option<Object>)]
    pub extra: Option<serde_json::Map<String, serde_json::Value>>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub scheduled_dags: Vec<DagScheduleAssetReference>,
    pub producing_tasks: Vec<TaskAssetReference>,
    pub consuming_tasks: Vec<TaskAssetReference>,
    /// Gust has no asset aliases.
    #[schema(value_type = Vec<Object>)]
    pub aliases: Vec<serde_json::Value>,
    /// Gust has no asset watchers.
    #[schema(value_type = Vec<Object>)]
    pub watchers: Vec<serde_json::Value>,
    pub last_asset_event: Option<LastAssetEventResponse>,
}

/// A page of assets.
#[derive(Debug, Serialize, ToSchema)]
pub struct AssetCollectionResponse {
    pub assets: Vec<AssetResponse>,
    pub total_entries: usize,
}

/// A run that consumed an asset event (Airflow's `DagRunAssetReference`).
#[derive(Debug, Serialize, ToSchema)]
pub struct DagRunAssetReference {
    pub run_id: String,
    pub dag_id: String,
    pub logical_date: Option<Timestamp>,
    pub start_date: Timestamp,
    pub end_date: Option<Timestamp>,
    pub state: String,
    pub data_interval_start: Option<Timestamp>,
    pub data_interval_end: Option<Timestamp>,
    pub partition_key: Option<String>,
    /// Whether this event triggered the run (the newest event it consumed).
    pub triggering: bool,
}

/// An asset event (Airflow's `AssetEventResponse`).
#[derive(Debug, Serialize, ToSchema)]
pub struct AssetEventResponse {
    pub id: i64,
    pub asset_id: i64,
    pub uri: Option<String>,
    pub name: Option<String>,
    pub group: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub extra: Option<serde_json::Map<String, serde_json::Value>>,
    pub source_task_id: Option<String>,
    pub source_dag_id: Option<String>,
    pub source_run_id: Option<String>,
    pub source_map_index: i32,
    pub created_dagruns: Vec<DagRunAssetReference>,
    pub timestamp: Timestamp,
    pub partition_key: Option<String>,
}

/// A page of asset events.
#[derive(Debug, Serialize, ToSchema)]
pub struct AssetEventCollectionResponse {
    pub asset_events: Vec<AssetEventResponse>,
    pub total_entries: i64,
}

/// An event waiting for a DAG scheduled on its asset.
#[derive(Debug, Serialize, ToSchema)]
pub struct QueuedEventResponse {
    pub dag_id: String,
    pub asset_id: i64,
    pub created_at: Timestamp,
    pub dag_display_name: String,
}

/// Queued events.
#[derive(Debug, Serialize, ToSchema)]
pub struct QueuedEventCollectionResponse {
    pub queued_events: Vec<QueuedEventResponse>,
    pub total_entries: usize,
}

/// `POST /assets/events`: an event of an asset, from a user or another system.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAssetEventsBody {
    pub asset_id: i64,
    /// Not supported by Gust: must be null.
    pub partition_key: Option<String>,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub extra: serde_json::Map<String, serde_json::Value>,
    /// Multi-team access control; Gust has one team, so it must be null.
    #[schema(value_type = Option<Object>)]
    pub access_control: Option<serde_json::Value>,
}

/// `GET /assets` filters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AssetsQuery {
    /// At most this many (default 50, at most 100).
    #[serde(default = "crate::api::page::default_limit")]
    pub limit: usize,
    /// Skip this many.
    #[serde(default)]
    pub offset: usize,
    /// `ILIKE` pattern of the name.
    pub name_pattern: Option<String>,
    /// `ILIKE` pattern of the URI.
    pub uri_pattern: Option<String>,
    /// Case-sensitive prefix of the name.
    pub name_prefix_pattern: Option<String>,
    /// Case-sensitive prefix of the URI.
    pub uri_prefix_pattern: Option<String>,
    /// Only assets some of these DAGs schedule on or update.
    #[serde(default)]
    pub dag_ids: Vec<String>,
    /// Only assets a DAG refers to (default true).
    #[serde(default = "yes")]
    pub only_active: bool,
    /// `id`, `name`, `uri`, `created_at`, `updated_at`; `-` first for descending.
    #[serde(default)]
    pub order_by: Vec<String>,
}

fn yes() -> bool {
    true
}

/// `GET /assets/events` filters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AssetEventsQuery {
    /// At most this many (default 50, at most 100).
    #[serde(default = "crate::api::page::default_limit")]
    pub limit: usize,
    /// Skip this many.
    #[serde(default)]
    pub offset: usize,
    /// `source_task_id`, `source_dag_id`, `source_run_id`, `source_map_index`, `timestamp`
    /// (default), also `id` and `asset_id`; `-` first for descending.
    #[serde(default)]
    pub order_by: Vec<String>,
    pub asset_id: Option<i64>,
    pub source_dag_id: Option<String>,
    pub source_task_id: Option<String>,
    pub source_run_id: Option<String>,
    pub source_map_index: Option<i32>,
    pub timestamp_gte: Option<String>,
    pub timestamp_lte: Option<String>,
}

/// `before`, for the queued-event endpoints.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BeforeQuery {
    /// Only events queued before this time.
    pub before: Option<String>,
}

impl BeforeQuery {
    fn time(&self) -> ApiResult<Option<chrono::DateTime<chrono::Utc>>> {
        time_param("before", self.before.as_deref())
    }
}

fn time_param(field: &str, text: Option<&str>) -> ApiResult<Option<chrono::DateTime<chrono::Utc>>> {
    text.map(|t| {
        parse_time(t).ok_or_else(|| {
            ApiError::invalid(
                "query",
                field,
                "Input should be a valid datetime with a timezone",
            )
        })
    })
    .transpose()
}

fn asset_not_found(id: i64) -> ApiError {
    ApiError::NotFound(format!("The Asset with ID: `{id}` was not found"))
}

/// An asset with what refers to it and its newest event.
fn asset_response(
    asset: StoredAsset,
    refs: &[&StoredAssetRef],
    last: Option<&(i64, chrono::DateTime<chrono::Utc>)>,
) -> AssetResponse {
    let task_refs = |kind: AssetRefKind| {
        refs.iter()
            .filter(|r| r.kind == kind)
            .map(|r| TaskAssetReference {
                dag_id: r.dag_id.clone(),
                task_id: r.task_id.clone(),
                created_at: r.created_at.into(),
                updated_at: r.created_at.into(),
            })
            .collect()
    };
    AssetResponse {
        id: asset.id,
        name: asset.name,
        uri: asset.uri,
        group: asset.group,
        extra: Some(crate::api::redact::redact_conf(&asset.extra)),
        created_at: asset.created_at.into(),
        updated_at: asset.updated_at.into(),
        scheduled_dags: refs
            .iter()
            .filter(|r| r.kind == AssetRefKind::Schedule)
            .map(|r| DagScheduleAssetReference {
                dag_id: r.dag_id.clone(),
                created_at: r.created_at.into(),
                updated_at: r.created_at.into(),
            })
            .collect(),
        producing_tasks: task_refs(AssetRefKind::Outlet),
        consuming_tasks: task_refs(AssetRefKind::Inlet),
        aliases: Vec::new(),
        watchers: Vec::new(),
        last_asset_event: Some(LastAssetEventResponse {
            id: last.map(|(id, _)| *id),
            timestamp: last.map(|(_, at)| (*at).into()),
        }),
    }
}

/// Every asset with its references and newest event, as the list and the UI show them.
pub async fn all_assets(state: &AppState) -> ApiResult<Vec<AssetResponse>> {
    let store = state.store();
    let refs = store.asset_references().await?;
    let last = store.last_asset_events().await?;
    let mut by_asset: HashMap<i64, Vec<&StoredAssetRef>> = HashMap::new();
    for r in &refs {
        by_asset.entry(r.asset_id).or_default().push(r);
    }
    Ok(store
        .assets()
        .await?
        .into_iter()
        .map(|asset| {
            let refs = by_asset.get(&asset.id).map_or(&[][..], Vec::as_slice);
            let last = last.get(&asset.id);
            asset_response(asset, refs, last)
        })
        .collect())
}

/// Get assets.
#[utoipa::path(get, path = "/api/v2/assets", tag = "Asset", params(AssetsQuery),
    responses((status = 200, body = AssetCollectionResponse), (status = 401), (status = 403), (status = 422)))]
async fn get_assets(
    State(state): State<AppState>,
    Params(query): Params<AssetsQuery>,
) -> ApiResult<Json<AssetCollectionResponse>> {
    let order = OrderBy::parse(
        &query.order_by,
        &["id", "name", "uri", "created_at", "updated_at"],
    )?;
    let mut assets: Vec<AssetResponse> = all_assets(&state)
        .await?
        .into_iter()
        .filter(|a| {
            let dags = a
                .scheduled_dags
                .iter()
                .map(|r| &r.dag_id)
                .chain(a.producing_tasks.iter().map(|r| &r.dag_id))
                .chain(a.consuming_tasks.iter().map(|r| &r.dag_id));
            let mut dags = dags.peekable();
            let active = dags.peek().is_some();
            matches_pattern(query.name_pattern.as_deref(), &a.name)
                && matches_pattern(query.uri_pattern.as_deref(), &a.uri)
                && matches_prefix(query.name_prefix_pattern.as_deref(), &a.name)
                && matches_prefix(query.uri_prefix_pattern.as_deref(), &a.uri)
                && (!query.only_active || active)
                && (query.dag_ids.is_empty() || dags.any(|d| query.dag_ids.contains(d)))
        })
        .collect();
    sort_by(&mut assets, &order, |a, field| match field {
        "name" => (0, a.name.clone()),
        "uri" => (0, a.uri.clone()),
        "created_at" => (a.created_at.0.timestamp_micros(), String::new()),
        "updated_at" => (a.updated_at.0.timestamp_micros(), String::new()),
        _ => (a.id, String::new()),
    });
    let total_entries = assets.len();
    let page = Page {
        limit: query.limit,
        offset: query.offset,
    };
    Ok(Json(AssetCollectionResponse {
        assets: page.slice(assets),
        total_entries,
    }))
}

/// Get an asset.
#[utoipa::path(get, path = "/api/v2/assets/{asset_id}", tag = "Asset",
    params(("asset_id" = i64, Path)),
    responses((status = 200, body = AssetResponse), (status = 401), (status = 403), (status = 404)))]
async fn get_asset(
    State(state): State<AppState>,
    PathParams(asset_id): PathParams<i64>,
) -> ApiResult<Json<AssetResponse>> {
    all_assets(&state)
        .await?
        .into_iter()
        .find(|a| a.id == asset_id)
        .map(Json)
        .ok_or_else(|| asset_not_found(asset_id))
}

/// Events as the API answers them, each with the runs that consumed it.
async fn event_responses(
    state: &AppState,
    events: Vec<StoredAssetEvent>,
) -> ApiResult<Vec<AssetEventResponse>> {
    let ids: Vec<i64> = events.iter().map(|e| e.id).collect();
    let consumers = state.store().consuming_runs(&ids).await?;
    let mut runs: HashMap<(String, String), Option<gust_store::StoredRun>> = HashMap::new();
    for c in &consumers {
        if let std::collections::hash_map::Entry::Vacant(slot) =
            runs.entry((c.dag_id.clone(), c.run_id.clone()))
        {
            slot.insert(state.store().run(&c.dag_id, &c.run_id).await?);
        }
    }
    Ok(events
        .into_iter()
        .map(|e| {
            let created_dagruns = consumers
                .iter()
                .filter(|c| c.event_id == e.id)
                .filter_map(|c| {
                    let run = runs.get(&(c.dag_id.clone(), c.run_id.clone()))?.as_ref()?;
                    let dated = run.run_type != gust_store::RunType::AssetTriggered;
                    Some(DagRunAssetReference {
                        run_id: run.run_id.clone(),
                        dag_id: run.dag_id.clone(),
                        logical_date: dated.then(|| run.logical_date.into()),
                        start_date: run.start_date.unwrap_or(run.queued_at).into(),
                        end_date: run.end_date.map(Into::into),
                        state: run.state.as_str().to_owned(),
                        data_interval_start: dated.then(|| run.data_interval.0.into()),
                        data_interval_end: dated.then(|| run.data_interval.1.into()),
                        partition_key: None,
                        triggering: c.triggering,
                    })
                })
                .collect();
            AssetEventResponse {
                id: e.id,
                asset_id: e.asset_id,
                uri: Some(e.uri),
                name: Some(e.name),
                group: Some(e.group),
                extra: Some(crate::api::redact::redact_conf(&e.extra)),
                source_task_id: e.source_task_id,
                source_dag_id: e.source_dag_id,
                source_run_id: e.source_run_id,
                source_map_index: e.source_map_index,
                created_dagruns,
                timestamp: e.timestamp.into(),
                partition_key: None,
            }
        })
        .collect())
}

/// Get asset events.
#[utoipa::path(get, path = "/api/v2/assets/events", tag = "Asset", params(AssetEventsQuery),
    responses((status = 200, body = AssetEventCollectionResponse), (status = 401), (status = 403), (status = 422)))]
async fn get_asset_events(
    State(state): State<AppState>,
    Params(query): Params<AssetEventsQuery>,
) -> ApiResult<Json<AssetEventCollectionResponse>> {
    let allowed: Vec<&str> = gust_store::EVENT_ORDERS.iter().map(|(n, _)| *n).collect();
    let order = OrderBy::parse(&query.order_by, &allowed)?;
    let order = order.first().map_or_else(
        || "timestamp".to_owned(),
        |o| format!("{}{}", if o.descending { "-" } else { "" }, o.field),
    );
    let filter = AssetEventFilter {
        asset_id: query.asset_id,
        source_dag_id: query.source_dag_id,
        source_task_id: query.source_task_id,
        source_run_id: query.source_run_id,
        source_map_index: query.source_map_index,
        timestamp_gte: time_param("timestamp_gte", query.timestamp_gte.as_deref())?,
        timestamp_lte: time_param("timestamp_lte", query.timestamp_lte.as_deref())?,
        ..AssetEventFilter::default()
    };
    let limit = i64::try_from(query.limit.min(crate::api::page::MAX_PAGE)).unwrap_or(0);
    let offset = i64::try_from(query.offset).unwrap_or(i64::MAX);
    let (events, total_entries) = state
        .store()
        .asset_events(&filter, &order, limit, offset)
        .await?;
    Ok(Json(AssetEventCollectionResponse {
        asset_events: event_responses(&state, events).await?,
        total_entries,
    }))
}

/// Create an asset event: the DAGs scheduled on the asset get a run when their condition is met.
#[utoipa::path(post, path = "/api/v2/assets/events", tag = "Asset", request_body = CreateAssetEventsBody,
    responses((status = 200, body = AssetEventResponse), (status = 401), (status = 403), (status = 404), (status = 422)))]
async fn create_asset_event(
    State(state): State<AppState>,
    Body(body): Body<CreateAssetEventsBody>,
) -> ApiResult<Json<AssetEventResponse>> {
    if body.partition_key.is_some() {
        return Err(ApiError::invalid(
            "body",
            "partition_key",
            "Gust does not support partitioned assets; leave partition_key out",
        ));
    }
    if body.access_control.is_some() {
        return Err(ApiError::invalid(
            "body",
            "access_control",
            "Gust has a single team; leave access_control out",
        ));
    }
    let mut extra = body.extra;
    extra.insert("from_rest_api".to_owned(), serde_json::Value::Bool(true));
    let id = state
        .store()
        .create_event_of_asset(body.asset_id, extra, state.now())
        .await?
        .ok_or_else(|| {
            ApiError::NotFound(format!("Asset with ID: `{}` was not found", body.asset_id))
        })?;
    tracing::info!(
        asset_id = body.asset_id,
        event_id = id,
        "asset event created through the API"
    );
    state.wake_scheduler();
    let filter = AssetEventFilter {
        asset_id: Some(body.asset_id),
        ..AssetEventFilter::default()
    };
    let (events, _) = state.store().asset_events(&filter, "-id", 1, 0).await?;
    let event = event_responses(&state, events)
        .await?
        .into_iter()
        .find(|e| e.id == id)
        .ok_or_else(|| asset_not_found(body.asset_id))?;
    Ok(Json(event))
}

async fn queued(
    state: &AppState,
    dag_id: Option<&str>,
    asset_id: Option<i64>,
    before: Option<chrono::DateTime<chrono::Utc>>,
) -> ApiResult<Vec<QueuedEventResponse>> {
    Ok(state
        .store()
        .queued_asset_events(dag_id, asset_id)
        .await?
        .into_iter()
        .filter(|q| before.is_none_or(|b| q.created_at < b))
        .map(|q| QueuedEventResponse {
            dag_display_name: q.dag_id.clone(),
            dag_id: q.dag_id,
            asset_id: q.asset_id,
            created_at: q.created_at.into(),
        })
        .collect())
}

fn collection(queued_events: Vec<QueuedEventResponse>) -> Json<QueuedEventCollectionResponse> {
    Json(QueuedEventCollectionResponse {
        total_entries: queued_events.len(),
        queued_events,
    })
}

/// Get the queued events of an asset.
#[utoipa::path(get, path = "/api/v2/assets/{asset_id}/queuedEvents", tag = "Asset",
    params(("asset_id" = i64, Path), BeforeQuery),
    responses((status = 200, body = QueuedEventCollectionResponse), (status = 401), (status = 403), (status = 404)))]
async fn get_asset_queued_events(
    State(state): State<AppState>,
    PathParams(asset_id): PathParams<i64>,
    Params(query): Params<BeforeQuery>,
) -> ApiResult<Json<QueuedEventCollectionResponse>> {
    let events = queued(&state, None, Some(asset_id), query.time()?).await?;
    Ok(collection(events))
}

/// Delete the queued events of an asset.
#[utoipa::path(delete, path = "/api/v2/assets/{asset_id}/queuedEvents", tag = "Asset",
    params(("asset_id" = i64, Path), BeforeQuery),
    responses((status = 204), (status = 401), (status = 403), (status = 404)))]
async fn delete_asset_queued_events(
    State(state): State<AppState>,
    PathParams(asset_id): PathParams<i64>,
    Params(query): Params<BeforeQuery>,
) -> ApiResult<StatusCode> {
    let deleted = state
        .store()
        .delete_queued_asset_events(None, Some(asset_id), query.time()?)
        .await?;
    if deleted == 0 {
        return Err(ApiError::NotFound(format!(
            "Queue event with asset_id: `{asset_id}` was not found"
        )));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Get the events queued for a DAG.
#[utoipa::path(get, path = "/api/v2/dags/{dag_id}/assets/queuedEvents", tag = "Asset",
    params(("dag_id" = String, Path), BeforeQuery),
    responses((status = 200, body = QueuedEventCollectionResponse), (status = 401), (status = 403), (status = 404)))]
async fn get_dag_queued_events(
    State(state): State<AppState>,
    PathParams(dag_id): PathParams<String>,
    Params(query): Params<BeforeQuery>,
) -> ApiResult<Json<QueuedEventCollectionResponse>> {
    let events = queued(&state, Some(&dag_id), None, query.time()?).await?;
    if events.is_empty() {
        return Err(ApiError::NotFound(format!(
            "Queue event with dag_id: `{dag_id}` was not found"
        )));
    }
    Ok(collection(events))
}

/// Delete the events queued for a DAG.
#[utoipa::path(delete, path = "/api/v2/dags/{dag_id}/assets/queuedEvents", tag = "Asset",
    params(("dag_id" = String, Path), BeforeQuery),
    responses((status = 204), (status = 401), (status = 403), (status = 404)))]
async fn delete_dag_queued_events(
    State(state): State<AppState>,
    PathParams(dag_id): PathParams<String>,
    Params(query): Params<BeforeQuery>,
) -> ApiResult<StatusCode> {
    let deleted = state
        .store()
        .delete_queued_asset_events(Some(&dag_id), None, query.time()?)
        .await?;
    if deleted == 0 {
        return Err(ApiError::NotFound(format!(
            "Queue event with dag_id: `{dag_id}` was not found"
        )));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Get the event of an asset queued for a DAG.
#[utoipa::path(get, path = "/api/v2/dags/{dag_id}/assets/{asset_id}/queuedEvents", tag = "Asset",
    params(("dag_id" = String, Path), ("asset_id" = i64, Path), BeforeQuery),
    responses((status = 200, body = QueuedEventResponse), (status = 401), (status = 403), (status = 404)))]
async fn get_dag_asset_queued_event(
    State(state): State<AppState>,
    PathParams((dag_id, asset_id)): PathParams<(String, i64)>,
    Params(query): Params<BeforeQuery>,
) -> ApiResult<Json<QueuedEventResponse>> {
    queued(&state, Some(&dag_id), Some(asset_id), query.time()?)
        .await?
        .into_iter()
        .next()
        .map(Json)
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "Queued event with dag_id: `{dag_id}` and asset_id: `{asset_id}` was not found"
            ))
        })
}

/// Delete the event of an asset queued for a DAG.
#[utoipa::path(delete, path = "/api/v2/dags/{dag_id}/assets/{asset_id}/queuedEvents", tag = "Asset",
    params(("dag_id" = String, Path), ("asset_id" = i64, Path), BeforeQuery),
    responses((status = 204), (status = 401), (status = 403), (status = 404)))]
async fn delete_dag_asset_queued_event(
    State(state): State<AppState>,
    PathParams((dag_id, asset_id)): PathParams<(String, i64)>,
    Params(query): Params<BeforeQuery>,
) -> ApiResult<StatusCode> {
    let deleted = state
        .store()
        .delete_queued_asset_events(Some(&dag_id), Some(asset_id), query.time()?)
        .await?;
    if deleted == 0 {
        return Err(ApiError::NotFound(format!(
            "Queued event with dag_id: `{dag_id}` and asset_id: `{asset_id}` was not found"
        )));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Get the asset events that triggered a run (those it consumed).
#[utoipa::path(get, path = "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/upstreamAssetEvents", tag = "DagRun",
    params(("dag_id" = String, Path), ("dag_run_id" = String, Path)),
    responses((status = 200, body = AssetEventCollectionResponse), (status = 401), (status = 403), (status = 404)))]
async fn get_upstream_asset_events(
    State(state): State<AppState>,
    PathParams((dag_id, run_id)): PathParams<(String, String)>,
) -> ApiResult<Json<AssetEventCollectionResponse>> {
    if state.store().run(&dag_id, &run_id).await?.is_none() {
        return Err(ApiError::NotFound(format!(
            "The DagRun with dag_id: `{dag_id}` and run_id: `{run_id}` was not found"
        )));
    }
    let events = state.store().run_asset_events(&dag_id, &run_id).await?;
    let asset_events = event_responses(&state, events).await?;
    Ok(Json(AssetEventCollectionResponse {
        total_entries: i64::try_from(asset_events.len()).unwrap_or(i64::MAX),
        asset_events,
    }))
}
