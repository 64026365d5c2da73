//! `/api/v2/pools`: list, get, create, update and delete pools, each with its slots in use.
//! Which pool a task instance uses is in its DAG's definition (the task's `pool` and
//! `pool_slots`), so the counts come from the unfinished runs' task instances read against
//! their DAGs' current definitions.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use gust_core::ids::TaskId;
use gust_core::state::TaskState;
use gust_store::{DEFAULT_POOL, Pool};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::bulk::{self, BulkBody, BulkResponse, Resource};
use crate::api::dags::UpdateMask;
use crate::api::extract::{Body, Params};
use crate::api::fields::Fields;
use crate::api::page::{OrderBy, Page, sort_by};
use crate::api::search::{matches_pattern, matches_prefix};
use crate::api::variables::no_team;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// The longest pool name (Airflow's limit).
pub const MAX_POOL_NAME_LEN: usize = 256;

/// The pool endpoints.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_pools, post_pool, bulk_pools))
        .routes(routes!(get_pool, patch_pool, delete_pool))
}

/// A pool with its slots in use (Airflow's `PoolResponse`).
#[derive(Debug, Serialize, ToSchema)]
pub struct PoolResponse {
    pub name: String,
    pub slots: i64,
    pub description: Option<String>,
    /// Always false: Gust's deferred tasks hold no slot (their trigger runs in the scheduler).
    pub include_deferred: bool,
    /// Slots held by queued and running tries.
    pub occupied_slots: i64,
    pub running_slots: i64,
    pub queued_slots: i64,
    /// Slots wanted by tasks waiting for them.
    pub scheduled_slots: i64,
    /// `slots - occupied_slots`.
    pub open_slots: i64,
    /// The `pool_slots` of the pool's deferred tasks (counted, but not occupied).
    pub deferred_slots: i64,
    pub team_name: Option<String>,
}

/// A page of pools.
#[derive(Debug, Serialize, ToSchema)]
pub struct PoolCollectionResponse {
    pub pools: Vec<PoolResponse>,
    pub total_entries: usize,
}

/// A pool to create (Airflow's `PoolBody`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PoolBody {
    #[serde(alias = "pool")]
    pub name: String,
    pub slots: i64,
    #[serde(default)]
    pub description: Option<String>,
    /// Accepted for Airflow's clients; it changes nothing: Gust's deferred tasks never hold a slot.
    #[serde(default)]
    pub include_deferred: bool,
    /// Must be null: Gust has no teams.
    #[serde(default)]
    pub team_name: Option<String>,
}

/// What `PATCH /pools/{pool_name}` changes (Airflow's `PoolPatchBody`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PoolPatchBody {
    /// The pool's name (it cannot change).
    #[serde(default, alias = "name")]
    pub pool: Option<String>,
    #[serde(default)]
    pub slots: Option<i64>,
    #[serde(default)]
    pub description: Option<String>,
    /// Accepted for Airflow's clients; it changes nothing: Gust's deferred tasks never hold a slot.
    #[serde(default)]
    pub include_deferred: Option<bool>,
    /// Must be null: Gust has no teams.
    #[serde(default)]
    pub team_name: Option<String>,
}

/// `GET /pools` filters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PoolsQuery {
    /// At most this many (default 50, at most 100).
    #[serde(default = "crate::api::page::default_limit")]
    pub limit: usize,
    /// Skip this many.
    #[serde(default)]
    pub offset: usize,
    /// Sort keys: `id`, `pool`, `name`; `-` first for descending.
    #[serde(default)]
    pub order_by: Vec<String>,
    /// Case-insensitive `ILIKE` pattern of the name.
    pub pool_name_pattern: Option<String>,
    /// Case-sensitive prefix of the name.
    pub pool_name_prefix_pattern: Option<String>,
}

/// A pool size as stored; Gust's scheduler gives every pool a fixed size, so Airflow's `-1`
/// (unlimited) is refused.
fn checked_slots(slots: i64) -> ApiResult<i32> {
    if slots < 0 {
        return Err(ApiError::invalid(
            "body",
            "slots",
            "Gust pools have a fixed number of slots: give 0 or more (-1, unlimited, is not supported)",
        ));
    }
    i32::try_from(slots)
        .map_err(|_| ApiError::invalid("body", "slots", format!("{slots} slots is too many")))
}

fn not_found(name: &str) -> ApiError {
    ApiError::NotFound(format!("The Pool with name: `{name}` was not found"))
}

/// Slots taken or wanted in one pool, by state.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Usage {
    running: i64,
    queued: i64,
    scheduled: i64,
    deferred: i64,
}

impl Usage {
    /// The slots taken: by running and queued tries (scheduled ones wait for theirs).
    pub(crate) fn occupied(self) -> i64 {
        self.running + self.queued
    }
}

/// Every pool's usage: the unfinished runs' `scheduled`, `queued` and `running` task
/// instances, each counted with its task's `pool_slots` in its task's pool.
pub(crate) async fn usage(state: &AppState) -> ApiResult<HashMap<String, Usage>> {
    let mut by_dag: BTreeMap<String, Vec<(String, TaskState)>> = BTreeMap::new();
    for (dag_id, task_id, task_state) in state.store().slot_holders().await? {
        by_dag
            .entry(dag_id)
            .or_default()
            .push((task_id, task_state));
    }
    let mut usage: HashMap<String, Usage> = HashMap::new();
    for (dag_id, tasks) in by_dag {
        // A DAG deleted since its run started holds no slots the scheduler counts either.
        let Some(summary) = state.store().dag_summary(&dag_id).await? else {
            continue;
        };
        let dag = state.definition(&summary).await?;
        for (task_id, task_state) in tasks {
            let Ok(task_id) = TaskId::new(task_id) else {
                continue;
            };
            let Some(task) = dag.task(&task_id) else {
                continue;
            };
            let slots = i64::from(task.settings.pool_slots);
            let entry = usage.entry(task.settings.pool.clone()).or_default();
            match task_state {
                TaskState::Running => entry.running += slots,
                TaskState::Queued => entry.queued += slots,
                TaskState::Scheduled => entry.scheduled += slots,
                TaskState::Deferred => entry.deferred += slots,
                TaskState::NoStatus
                | TaskState::Success
                | TaskState::Failed
                | TaskState::UpForRetry
                | TaskState::UpForReschedule
                | TaskState::Skipped
                | TaskState::UpstreamFailed
                | TaskState::Removed => {}
            }
        }
    }
    Ok(usage)
}

fn pool_response(pool: Pool, usage: &HashMap<String, Usage>) -> PoolResponse {
    let used = usage.get(&pool.name).copied().unwrap_or_default();
    let occupied = used.occupied();
    PoolResponse {
        slots: i64::from(pool.slots),
        open_slots: i64::from(pool.slots) - occupied,
        name: pool.name,
        description: pool.description,
        include_deferred: false,
        occupied_slots: occupied,
        running_slots: used.running,
        queued_slots: used.queued,
        scheduled_slots: used.scheduled,
        deferred_slots: used.deferred,
        team_name: None,
    }
}

/// Get all pools.
#[utoipa::path(get, path = "/api/v2/pools", tag = "Pool", params(PoolsQuery),
    responses((status = 200, body = PoolCollectionResponse), (status = 401), (status = 403), (status = 422)))]
async fn get_pools(
    State(state): State<AppState>,
    Params(query): Params<PoolsQuery>,
) -> ApiResult<Json<PoolCollectionResponse>> {
    let order = OrderBy::parse(&query.order_by, &["id", "pool", "name"])?;
    let mut pools: Vec<Pool> = state
        .store()
        .pools()
        .await?
        .into_iter()
        .filter(|p| {
            matches_pattern(query.pool_name_pattern.as_deref(), &p.name)
                && matches_prefix(query.pool_name_prefix_pattern.as_deref(), &p.name)
        })
        .collect();
    // Every key sorts by name, which stands in for Airflow's row id.
    sort_by(&mut pools, &order, |p, _| p.name.clone());
    let total_entries = pools.len();
    let page = Page {
        limit: query.limit,
        offset: query.offset,
    };
    let pools = page.slice(pools);
    let usage = usage(&state).await?;
    Ok(Json(PoolCollectionResponse {
        pools: pools
            .into_iter()
            .map(|p| pool_response(p, &usage))
            .collect(),
        total_entries,
    }))
}

/// Get a pool.
#[utoipa::path(get, path = "/api/v2/pools/{pool_name}", tag = "Pool",
    params(("pool_name" = String, Path)),
    responses((status = 200, body = PoolResponse), (status = 401), (status = 403), (status = 404)))]
async fn get_pool(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<PoolResponse>> {
    let pool = state
        .store()
        .pool(&name)
        .await?
        .ok_or_else(|| not_found(&name))?;
    Ok(Json(pool_response(pool, &usage(&state).await?)))
}

/// Create a pool.
#[utoipa::path(post, path = "/api/v2/pools", tag = "Pool", request_body = PoolBody,
    responses((status = 201, body = PoolResponse), (status = 401), (status = 403), (status = 409), (status = 422)))]
async fn post_pool(
    State(state): State<AppState>,
    Body(body): Body<PoolBody>,
) -> ApiResult<(StatusCode, Json<PoolResponse>)> {
    let pool = create(&state, &body).await?;
    let usage = usage(&state).await?;
    Ok((StatusCode::CREATED, Json(pool_response(pool, &usage))))
}

impl PoolBody {
    /// The checks pydantic makes on Airflow's body; the slots as stored.
    fn validate(&self) -> ApiResult<i32> {
        if self.name.chars().count() > MAX_POOL_NAME_LEN {
            return Err(ApiError::invalid(
                "body",
                "name",
                format!("String should have at most {MAX_POOL_NAME_LEN} characters"),
            ));
        }
        no_team(self.team_name.as_ref())?;
        checked_slots(self.slots)
    }
}

/// Creates the pool `body` describes; 409 when it exists.
async fn create(state: &AppState, body: &PoolBody) -> ApiResult<Pool> {
    let pool = Pool {
        slots: body.validate()?,
        name: body.name.clone(),
        description: body.description.clone(),
    };
    if !state.store().create_pool(&pool).await? {
        return Err(ApiError::Conflict(format!(
            "The Pool with name: `{}` already exists",
            pool.name
        )));
    }
    tracing::info!(pool = %pool.name, slots = pool.slots, "pool created through the API");
    state.wake_scheduler();
    Ok(pool)
}

/// Update a pool: the fields the body carries (and the update mask names, when given); of
/// `default_pool` only the slots, named by the mask.
#[utoipa::path(patch, path = "/api/v2/pools/{pool_name}", tag = "Pool",
    params(("pool_name" = String, Path), UpdateMask), request_body = PoolPatchBody,
    responses((status = 200, body = PoolResponse), (status = 400), (status = 401), (status = 403), (status = 404), (status = 422)))]
async fn patch_pool(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Params(mask): Params<UpdateMask>,
    body: Fields<PoolPatchBody>,
) -> ApiResult<Json<PoolResponse>> {
    no_team(body.body.team_name.as_ref())?;
    if body.body.pool.as_ref().is_some_and(|n| *n != name) {
        return Err(ApiError::BadRequest(
            "Invalid body, pool name from request body doesn't match uri parameter".into(),
        ));
    }
    let mask = mask.update_mask.as_deref().filter(|m| !m.is_empty());
    let change = PoolChange {
        slots: body.updates("slots", mask).then_some(body.body.slots),
        description: body
            .updates("description", mask)
            .then(|| body.body.description.clone()),
    };
    let pool = update(&state, &name, change, mask).await?;
    let usage = usage(&state).await?;
    Ok(Json(pool_response(pool, &usage)))
}

/// What an update changes in a pool: each field `Some` when it is to change.
struct PoolChange {
    slots: Option<Option<i64>>,
    description: Option<Option<String>>,
}

/// Changes the pool `name` as `change` says; of `default_pool` only the slots, named by
/// `mask`.
async fn update(
    state: &AppState,
    name: &str,
    change: PoolChange,
    mask: Option<&[String]>,
) -> ApiResult<Pool> {
    let mask = mask.filter(|m| !m.is_empty());
    if name == DEFAULT_POOL
        && !mask.is_some_and(|m| {
            m.iter()
                .all(|f| matches!(f.trim(), "slots" | "include_deferred"))
        })
    {
        return Err(ApiError::BadRequest(
            "Only slots and included_deferred can be modified on Default Pool".into(),
        ));
    }
    let mut pool = state
        .store()
        .pool(name)
        .await?
        .ok_or_else(|| not_found(name))?;
    if let Some(slots) = change.slots {
        let Some(slots) = slots else {
            return Err(ApiError::invalid(
                "body",
                "slots",
                "Input should be a valid integer",
            ));
        };
        pool.slots = checked_slots(slots)?;
    }
    if let Some(description) = change.description {
        pool.description = description;
    }
    if !state.store().update_pool(&pool).await? {
        return Err(not_found(name));
    }
    tracing::info!(pool = %pool.name, slots = pool.slots, "pool updated through the API");
    state.wake_scheduler();
    Ok(pool)
}

/// Pools as bulk actions change them.
struct Pools;

impl Resource for Pools {
    type Entity = PoolBody;
    const KEY_FIELD: &'static str = "name";
    const NAMED: &'static str = "pools with these pool names:";

    fn key(entity: &PoolBody) -> String {
        entity.name.clone()
    }

    fn validate(entity: &PoolBody) -> ApiResult<()> {
        entity.validate().map(drop)
    }

    async fn existing(
        &self,
        state: &AppState,
        keys: &BTreeSet<String>,
    ) -> ApiResult<BTreeSet<String>> {
        Ok(state
            .store()
            .pools()
            .await?
            .into_iter()
            .map(|p| p.name)
            .filter(|n| keys.contains(n))
            .collect())
    }

    async fn create(&self, state: &AppState, entity: &Fields<PoolBody>) -> ApiResult<()> {
        create(state, &entity.body).await.map(drop)
    }

    async fn update(
        &self,
        state: &AppState,
        entity: &Fields<PoolBody>,
        mask: Option<&[String]>,
    ) -> ApiResult<()> {
        let change = PoolChange {
            slots: entity
                .updates("slots", mask)
                .then_some(Some(entity.body.slots)),
            description: entity
                .updates("description", mask)
                .then(|| entity.body.description.clone()),
        };
        update(state, &entity.body.name, change, mask)
            .await
            .map(drop)
    }

    async fn delete(&self, state: &AppState, key: &str) -> ApiResult<()> {
        delete(state, key).await
    }
}

/// Create, update and delete pools in one request.
#[utoipa::path(patch, path = "/api/v2/pools", tag = "Pool", request_body = BulkBody,
    responses((status = 200, body = BulkResponse), (status = 401), (status = 403), (status = 422)))]
async fn bulk_pools(
    State(state): State<AppState>,
    Body(body): Body<BulkBody>,
) -> ApiResult<Json<BulkResponse>> {
    Ok(Json(bulk::run(&state, &Pools, body).await?))
}

/// Delete a pool (not `default_pool`).
#[utoipa::path(delete, path = "/api/v2/pools/{pool_name}", tag = "Pool",
    params(("pool_name" = String, Path)),
    responses((status = 204), (status = 400), (status = 401), (status = 403), (status = 404)))]
async fn delete_pool(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    delete(&state, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Deletes a pool (not `default_pool`); 404 when there is none.
async fn delete(state: &AppState, name: &str) -> ApiResult<()> {
    if name == DEFAULT_POOL {
        return Err(ApiError::BadRequest("Default Pool can't be deleted".into()));
    }
    if !state.store().delete_pool(name).await? {
        return Err(not_found(name));
    }
    tracing::info!(pool = %name, "pool deleted through the API");
    state.wake_scheduler();
    Ok(())
}
