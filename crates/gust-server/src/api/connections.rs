//! `/api/v2/connections`: list, get, create, update and delete connections. Secrets are
//! write-only: a stored password is answered as `***` (as Airflow answers it), sensitive keys of
//! `extra` likewise, and a `***` sent back in a PATCH keeps the stored secret. They are
//! encrypted at rest with the server's Fernet key.

use std::collections::BTreeSet;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use gust_store::{Connection, Secret, SecretKey};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::bulk::{self, BulkBody, BulkResponse, Resource};
use crate::api::dags::UpdateMask;
use crate::api::extract::{Body, Params};
use crate::api::fields::Fields;
use crate::api::page::{OrderBy, Page, sort_by};
use crate::api::redact::{MASK, merge, python_json, redact};
use crate::api::search::{matches_pattern, matches_prefix};
use crate::api::variables::no_team;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// The longest connection id (Airflow's limit).
pub const MAX_CONNECTION_ID_LEN: usize = 200;

/// The connection endpoints.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_connections, post_connection, bulk_connections))
        .routes(routes!(get_connection, patch_connection, delete_connection))
}

/// A connection, secrets hidden (Airflow's `ConnectionResponse`).
#[derive(Debug, Serialize, ToSchema)]
pub struct ConnectionResponse {
    pub connection_id: String,
    pub conn_type: String,
    pub description: Option<String>,
    pub host: Option<String>,
    pub login: Option<String>,
    pub schema: Option<String>,
    pub port: Option<i32>,
    /// `***` when a password is stored, else null: it is never answered.
    pub password: Option<String>,
    /// The extra JSON object as text, sensitive keys' values as `***`.
    pub extra: Option<String>,
    pub team_name: Option<String>,
}

/// A page of connections.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConnectionCollectionResponse {
    pub connections: Vec<ConnectionResponse>,
    pub total_entries: usize,
}

/// A connection to create or change (Airflow's `ConnectionBody`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectionBody {
    pub connection_id: String,
    pub conn_type: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default)]
    pub login: Option<String>,
    #[serde(default)]
    pub schema: Option<String>,
    #[serde(default)]
    pub port: Option<i64>,
    /// Write-only.
    #[serde(default)]
    pub password: Option<String>,
    /// A JSON object as text.
    #[serde(default)]
    pub extra: Option<String>,
    /// Must be null: Gust has no teams.
    #[serde(default)]
    pub team_name: Option<String>,
}

impl ConnectionBody {
    /// The checks pydantic makes on Airflow's body; the port as stored, and `extra` as stored
    /// (an empty text reads as `{}`, as in Airflow).
    pub(crate) fn validate(&self) -> ApiResult<(Option<i32>, Option<String>)> {
        let id = &self.connection_id;
        if id.chars().count() > MAX_CONNECTION_ID_LEN {
            return Err(ApiError::invalid(
                "body",
                "connection_id",
                format!("String should have at most {MAX_CONNECTION_ID_LEN} characters"),
            ));
        }
        if id.is_empty()
            || !id
                .chars()
                .all(|c| c.is_alphanumeric() || matches!(c, '_' | '.' | '-'))
        {
            return Err(ApiError::invalid(
                "body",
                "connection_id",
                r"String should match pattern '^[\w.-]+$'",
            ));
        }
        no_team(self.team_name.as_ref())?;
        let port =
            self.port.map(i32::try_from).transpose().map_err(|_| {
                ApiError::invalid("body", "port", "the port does not fit in 32 bits")
            })?;
        let extra = match self.extra.as_deref() {
            None => None,
            Some("") => Some("{}".to_owned()),
            Some(text) => match serde_json::from_str::<Value>(text) {
                Ok(Value::Object(_)) => Some(text.to_owned()),
                Ok(_) => {
                    return Err(ApiError::invalid(
                        "body",
                        "extra",
                        "Value error, The `extra` field must be a valid JSON object (e.g., {'key': 'value'})",
                    ));
                }
                Err(_) => {
                    return Err(ApiError::invalid(
                        "body",
                        "extra",
                        "Value error, The `extra` field must be a valid JSON object (e.g., {'key': 'value'}), but encountered non-JSON in `extra` field",
                    ));
                }
            },
        };
        Ok((port, extra))
    }
}

/// `GET /connections` filters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ConnectionsQuery {
    /// At most this many (default 50, at most 100).
    #[serde(default = "crate::api::page::default_limit")]
    pub limit: usize,
    /// Skip this many.
    #[serde(default)]
    pub offset: usize,
    /// Sort keys: `conn_id`, `connection_id`, `conn_type`, `description`, `host`, `port`, `id`,
    /// `team_name`; `-` first for descending.
    #[serde(default)]
    pub order_by: Vec<String>,
    /// Case-insensitive `ILIKE` pattern of the connection id.
    pub connection_id_pattern: Option<String>,
    /// Case-sensitive prefix of the connection id.
    pub connection_id_prefix_pattern: Option<String>,
}

fn not_found(connection_id: &str) -> ApiError {
    ApiError::NotFound(format!(
        "The Connection with connection_id: `{connection_id}` was not found"
    ))
}

/// A connection as answered: the password as `***`, `extra`'s sensitive values as `***`.
fn connection_response(conn: Connection) -> ConnectionResponse {
    let extra = conn.extra.map(|extra| match extra.expose() {
        "" => String::new(),
        text => match serde_json::from_str::<Value>(text) {
            Ok(json) => python_json(&redact(&json, None)),
            // Not JSON (stored by something else): nothing in it can be shown safely.
            Err(_) => MASK.to_owned(),
        },
    });
    ConnectionResponse {
        connection_id: conn.conn_id,
        conn_type: conn.conn_type,
        description: conn.description,
        host: conn.host,
        login: conn.login,
        schema: conn.schema,
        port: conn.port,
        password: conn.password.map(|_| MASK.to_owned()),
        extra,
        team_name: None,
    }
}

/// Get all connections.
#[utoipa::path(get, path = "/api/v2/connections", tag = "Connection", params(ConnectionsQuery),
    responses((status = 200, body = ConnectionCollectionResponse), (status = 401), (status = 403), (status = 422)))]
async fn get_connections(
    State(state): State<AppState>,
    Params(query): Params<ConnectionsQuery>,
) -> ApiResult<Json<ConnectionCollectionResponse>> {
    let order = OrderBy::parse(
        &query.order_by,
        &[
            "conn_id",
            "conn_type",
            "description",
            "host",
            "port",
            "id",
            "team_name",
            "connection_id",
        ],
    )?;
    let key = state.fernet_key()?;
    let mut connections: Vec<Connection> = state
        .store()
        .connections(key)
        .await?
        .into_iter()
        .filter(|c| {
            matches_pattern(query.connection_id_pattern.as_deref(), &c.conn_id)
                && matches_prefix(query.connection_id_prefix_pattern.as_deref(), &c.conn_id)
        })
        .collect();
    // The store answers by id, which stands in for Airflow's row id and breaks ties.
    sort_by(&mut connections, &order, |c, field| match field {
        "conn_type" => (Some(c.conn_type.clone()), None),
        "description" => (c.description.clone(), None),
        "host" => (c.host.clone(), None),
        "port" => (None, c.port),
        "conn_id" | "connection_id" | "id" => (Some(c.conn_id.clone()), None),
        _ => (None, None),
    });
    let total_entries = connections.len();
    let page = Page {
        limit: query.limit,
        offset: query.offset,
    };
    Ok(Json(ConnectionCollectionResponse {
        connections: page
            .slice(connections)
            .into_iter()
            .map(connection_response)
            .collect(),
        total_entries,
    }))
}

/// Get a connection.
#[utoipa::path(get, path = "/api/v2/connections/{connection_id}", tag = "Connection",
    params(("connection_id" = String, Path)),
    responses((status = 200, body = ConnectionResponse), (status = 401), (status = 403), (status = 404)))]
async fn get_connection(
    State(state): State<AppState>,
    Path(connection_id): Path<String>,
) -> ApiResult<Json<ConnectionResponse>> {
    let conn = read(&state, state.fernet_key()?, &connection_id).await?;
    Ok(Json(connection_response(conn)))
}

pub(crate) async fn read(
    state: &AppState,
    key: &SecretKey,
    connection_id: &str,
) -> ApiResult<Connection> {
    state
        .store()
        .connection(connection_id, key)
        .await?
        .ok_or_else(|| not_found(connection_id))
}

/// Create a connection.
#[utoipa::path(post, path = "/api/v2/connections", tag = "Connection", request_body = ConnectionBody,
    responses((status = 201, body = ConnectionResponse), (status = 401), (status = 403), (status = 409), (status = 422)))]
async fn post_connection(
    State(state): State<AppState>,
    Body(body): Body<ConnectionBody>,
) -> ApiResult<(StatusCode, Json<ConnectionResponse>)> {
    let conn = create(&state, &body).await?;
    Ok((StatusCode::CREATED, Json(connection_response(conn))))
}

/// Creates the connection `body` describes; 409 when it exists.
async fn create(state: &AppState, body: &ConnectionBody) -> ApiResult<Connection> {
    let (port, extra) = body.validate()?;
    let key = state.fernet_key()?;
    let conn = Connection {
        conn_id: body.connection_id.clone(),
        conn_type: body.conn_type.clone(),
        host: body.host.clone(),
        login: body.login.clone(),
        schema: body.schema.clone(),
        port,
        password: body.password.clone().map(Secret::new),
        extra: extra.map(Secret::new),
        description: body.description.clone(),
    };
    if !state.store().create_connection(&conn, key).await? {
        return Err(ApiError::Conflict(format!(
            "The Connection with connection_id: `{}` already exists",
            conn.conn_id
        )));
    }
    tracing::info!(connection_id = %conn.conn_id, "connection created through the API");
    Ok(conn)
}

/// Update a connection: the fields the body carries (and the update mask names, when given).
/// A password or `extra` value of `***` keeps the stored secret.
#[utoipa::path(patch, path = "/api/v2/connections/{connection_id}", tag = "Connection",
    params(("connection_id" = String, Path), UpdateMask), request_body = ConnectionBody,
    responses((status = 200, body = ConnectionResponse), (status = 400), (status = 401), (status = 403), (status = 404), (status = 422)))]
async fn patch_connection(
    State(state): State<AppState>,
    Path(connection_id): Path<String>,
    Params(mask): Params<UpdateMask>,
    body: Fields<ConnectionBody>,
) -> ApiResult<Json<ConnectionResponse>> {
    body.body.validate()?;
    if body.body.connection_id != connection_id {
        return Err(ApiError::BadRequest(
            "The connection_id in the request body does not match the URL parameter".into(),
        ));
    }
    let conn = update(&state, &body, mask.update_mask.as_deref()).await?;
    Ok(Json(connection_response(conn)))
}

/// Changes the connection `body` names as a PATCH with `body` and `mask` asks.
async fn update(
    state: &AppState,
    body: &Fields<ConnectionBody>,
    mask: Option<&[String]>,
) -> ApiResult<Connection> {
    let connection_id = &body.body.connection_id;
    let key = state.fernet_key()?;
    let conn = merged(read(state, key, connection_id).await?, body, mask)?;
    if !state.store().update_connection(&conn, key).await? {
        return Err(not_found(connection_id));
    }
    tracing::info!(%connection_id, "connection updated through the API");
    Ok(conn)
}

/// `conn` changed as a PATCH with `body` and `mask` changes it (not stored).
pub(crate) fn merged(
    mut conn: Connection,
    body: &Fields<ConnectionBody>,
    mask: Option<&[String]>,
) -> ApiResult<Connection> {
    let (port, extra) = body.body.validate()?;
    let mask = mask.filter(|m| !m.is_empty());
    let new = &body.body;
    if body.updates("conn_type", mask) {
        conn.conn_type.clone_from(&new.conn_type);
    }
    if body.updates("description", mask) {
        conn.description.clone_from(&new.description);
    }
    if body.updates("host", mask) {
        conn.host.clone_from(&new.host);
    }
    if body.updates("login", mask) {
        conn.login.clone_from(&new.login);
    }
    if body.updates("schema", mask) {
        conn.schema.clone_from(&new.schema);
    }
    if body.updates("port", mask) {
        conn.port = port;
    }
    // As in Airflow, a secret named by the mask is set even when the body leaves it out.
    let secret_named = |field: &str| match mask {
        Some(mask) => mask.iter().any(|f| f.trim() == field),
        None => body.has(field),
    };
    if secret_named("password") {
        conn.password = match &new.password {
            Some(p) if p == MASK => conn.password.take(),
            other => other.clone().map(Secret::new),
        };
    }
    if secret_named("extra") {
        conn.extra = merged_extra(extra, conn.extra.take());
    }
    Ok(conn)
}

/// Connections as bulk actions change them.
struct Connections;

impl Resource for Connections {
    type Entity = ConnectionBody;
    const KEY_FIELD: &'static str = "connection_id";
    const NAMED: &'static str = "connections with these connection_ids:";

    fn key(entity: &ConnectionBody) -> String {
        entity.connection_id.clone()
    }

    fn validate(entity: &ConnectionBody) -> ApiResult<()> {
        entity.validate().map(drop)
    }

    async fn existing(
        &self,
        state: &AppState,
        keys: &BTreeSet<String>,
    ) -> ApiResult<BTreeSet<String>> {
        let key = state.fernet_key()?;
        let mut found = BTreeSet::new();
        for id in keys {
            if state.store().connection(id, key).await?.is_some() {
                found.insert(id.clone());
            }
        }
        Ok(found)
    }

    async fn create(&self, state: &AppState, entity: &Fields<ConnectionBody>) -> ApiResult<()> {
        create(state, &entity.body).await.map(drop)
    }

    async fn update(
        &self,
        state: &AppState,
        entity: &Fields<ConnectionBody>,
        mask: Option<&[String]>,
    ) -> ApiResult<()> {
        update(state, entity, mask).await.map(drop)
    }

    async fn delete(&self, state: &AppState, key: &str) -> ApiResult<()> {
        delete(state, key).await
    }
}

/// Create, update and delete connections in one request.
#[utoipa::path(patch, path = "/api/v2/connections", tag = "Connection", request_body = BulkBody,
    responses((status = 200, body = BulkResponse), (status = 401), (status = 403), (status = 422)))]
async fn bulk_connections(
    State(state): State<AppState>,
    Body(body): Body<BulkBody>,
) -> ApiResult<Json<BulkResponse>> {
    Ok(Json(bulk::run(&state, &Connections, body).await?))
}

/// The new `extra`, with every `***` under a sensitive key replaced by the stored value.
fn merged_extra(new: Option<String>, old: Option<Secret>) -> Option<Secret> {
    let new = new?;
    let Some(old) = old else {
        return Some(Secret::new(new));
    };
    match (
        serde_json::from_str::<Value>(&new),
        serde_json::from_str::<Value>(old.expose()),
    ) {
        (Ok(new_json), Ok(old_json)) => {
            Some(Secret::new(python_json(&merge(&new_json, &old_json, None))))
        }
        _ => Some(Secret::new(new)),
    }
}

/// Delete a connection.
#[utoipa::path(delete, path = "/api/v2/connections/{connection_id}", tag = "Connection",
    params(("connection_id" = String, Path)),
    responses((status = 204), (status = 401), (status = 403), (status = 404)))]
async fn delete_connection(
    State(state): State<AppState>,
    Path(connection_id): Path<String>,
) -> ApiResult<StatusCode> {
    delete(&state, &connection_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Deletes a connection; 404 when there is none.
async fn delete(state: &AppState, connection_id: &str) -> ApiResult<()> {
    if !state.store().delete_connection(connection_id).await? {
        return Err(not_found(connection_id));
    }
    tracing::info!(%connection_id, "connection deleted through the API");
    Ok(())
}
