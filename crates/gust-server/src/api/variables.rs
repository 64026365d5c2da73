//! `/api/v2/variables`: list, get, create, update and delete variables, the values templates
//! read as `var.value.KEY`. Values under sensitive keys are answered as `***`, as Airflow
//! answers them.

use std::collections::BTreeSet;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use gust_store::Variable;
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
use crate::api::redact::{MASK, is_sensitive, python_json, redact};
use crate::api::search::{matches_pattern, matches_prefix};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// The longest key (Airflow's `ID_LEN`).
pub const MAX_KEY_LEN: usize = 250;

/// The variable endpoints.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_variables, post_variable, bulk_variables))
        .routes(routes!(get_variable, patch_variable, delete_variable))
}

/// A variable (Airflow's `VariableResponse`).
#[derive(Debug, Serialize, ToSchema)]
pub struct VariableResponse {
    pub key: String,
    /// The value; `***` when the key (or a key inside a JSON value) is sensitive.
    pub value: Option<String>,
    pub description: Option<String>,
    /// Always false: Gust stores variables as given (connections' secrets are encrypted).
    pub is_encrypted: bool,
    pub team_name: Option<String>,
}

/// A page of variables.
#[derive(Debug, Serialize, ToSchema)]
pub struct VariableCollectionResponse {
    pub variables: Vec<VariableResponse>,
    pub total_entries: usize,
}

/// A variable to create or change (Airflow's `VariableBody`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VariableBody {
    pub key: String,
    /// Any JSON value; other than a string, it is stored as its JSON text.
    pub value: Value,
    #[serde(default)]
    pub description: Option<String>,
    /// Must be null: Gust has no teams.
    #[serde(default)]
    pub team_name: Option<String>,
}

impl VariableBody {
    /// The checks pydantic makes on Airflow's body.
    fn validate(&self) -> ApiResult<()> {
        if self.key.chars().count() > MAX_KEY_LEN {
            return Err(ApiError::invalid(
                "body",
                "key",
                format!("String should have at most {MAX_KEY_LEN} characters"),
            ));
        }
        no_team(self.team_name.as_ref())
    }

    /// The value as stored: a string as is, anything else as indented JSON (as Airflow's
    /// `json.dumps(value, indent=2)`).
    fn stored_value(&self) -> String {
        match &self.value {
            Value::String(text) => text.clone(),
            other => serde_json::to_string_pretty(other).unwrap_or_else(|_| other.to_string()),
        }
    }
}

/// Refuses a team: Gust has no multi-team mode (Airflow's message when it is off).
pub fn no_team(team_name: Option<&String>) -> ApiResult<()> {
    match team_name {
        None => Ok(()),
        Some(_) => Err(ApiError::invalid(
            "body",
            "team_name",
            "Value error, team_name cannot be set when multi_team mode is disabled. Please contact your administrator.",
        )),
    }
}

/// `GET /variables` filters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct VariablesQuery {
    /// At most this many (default 50, at most 100).
    #[serde(default = "crate::api::page::default_limit")]
    pub limit: usize,
    /// Skip this many.
    #[serde(default)]
    pub offset: usize,
    /// Sort keys: `key`, `id`, `_val`, `description`, `is_encrypted`, `team_name`; `-` first for
    /// descending.
    #[serde(default)]
    pub order_by: Vec<String>,
    /// Case-insensitive `ILIKE` pattern of the key.
    pub variable_key_pattern: Option<String>,
    /// Case-sensitive prefix of the key.
    pub variable_key_prefix_pattern: Option<String>,
}

/// A variable as answered, its secrets hidden.
fn variable_response(variable: Variable) -> VariableResponse {
    VariableResponse {
        value: Some(shown_value(&variable.key, &variable.value)),
        key: variable.key,
        description: variable.description,
        is_encrypted: variable.is_encrypted,
        team_name: None,
    }
}

/// The value as Airflow shows it: JSON re-written as Python writes it with sensitive parts
/// masked, other text masked whole when the key is sensitive; and in any value, every secret
/// the process knows masked (a connection's password inside a `db_url`). The UI shows the same.
pub(crate) fn shown_value(key: &str, stored: &str) -> String {
    match serde_json::from_str::<Value>(stored) {
        Ok(json) => python_json(&redact(&json, Some(key))),
        Err(_) if is_sensitive(key) => MASK.to_owned(),
        Err(_) => gust_secrets::mask(stored),
    }
}

fn not_found(key: &str) -> ApiError {
    ApiError::NotFound(format!("The Variable with key: `{key}` was not found"))
}

/// Get all variables.
#[utoipa::path(get, path = "/api/v2/variables", tag = "Variable", params(VariablesQuery),
    responses((status = 200, body = VariableCollectionResponse), (status = 401), (status = 403), (status = 422)))]
async fn get_variables(
    State(state): State<AppState>,
    Params(query): Params<VariablesQuery>,
) -> ApiResult<Json<VariableCollectionResponse>> {
    let order = OrderBy::parse(
        &query.order_by,
        &[
            "key",
            "id",
            "_val",
            "description",
            "is_encrypted",
            "team_name",
        ],
    )?;
    let mut variables: Vec<Variable> = state
        .store()
        .variable_records(state.fernet_key()?)
        .await?
        .into_iter()
        .filter(|v| {
            matches_pattern(query.variable_key_pattern.as_deref(), &v.key)
                && matches_prefix(query.variable_key_prefix_pattern.as_deref(), &v.key)
        })
        .collect();
    // The store answers by key, which stands in for Airflow's id and breaks ties.
    sort_by(&mut variables, &order, |v, field| match field {
        "_val" => Some(v.value.clone()),
        "description" => v.description.clone(),
        "key" | "id" => Some(v.key.clone()),
        _ => None,
    });
    let total_entries = variables.len();
    let page = Page {
        limit: query.limit,
        offset: query.offset,
    };
    Ok(Json(VariableCollectionResponse {
        variables: page
            .slice(variables)
            .into_iter()
            .map(variable_response)
            .collect(),
        total_entries,
    }))
}

/// Get a variable.
#[utoipa::path(get, path = "/api/v2/variables/{variable_key}", tag = "Variable",
    params(("variable_key" = String, Path)),
    responses((status = 200, body = VariableResponse), (status = 401), (status = 403), (status = 404)))]
async fn get_variable(
    State(state): State<AppState>,
    Path(key): Path<String>,
) -> ApiResult<Json<VariableResponse>> {
    let variable = state
        .store()
        .variable_record(&key, state.fernet_key()?)
        .await?
        .ok_or_else(|| not_found(&key))?;
    Ok(Json(variable_response(variable)))
}

/// Create a variable.
#[utoipa::path(post, path = "/api/v2/variables", tag = "Variable", request_body = VariableBody,
    responses((status = 201, body = VariableResponse), (status = 401), (status = 403), (status = 409), (status = 422)))]
async fn post_variable(
    State(state): State<AppState>,
    Body(body): Body<VariableBody>,
) -> ApiResult<(StatusCode, Json<VariableResponse>)> {
    body.validate()?;
    let variable = create(&state, &body).await?;
    Ok((StatusCode::CREATED, Json(variable_response(variable))))
}

/// Creates the variable `body` describes; 409 when it exists.
async fn create(state: &AppState, body: &VariableBody) -> ApiResult<Variable> {
    let variable = Variable {
        value: body.stored_value(),
        key: body.key.clone(),
        description: body.description.clone(),
        is_encrypted: true,
    };
    if !state
        .store()
        .create_variable(&variable, state.fernet_key()?)
        .await?
    {
        return Err(ApiError::Conflict(format!(
            "The Variable with key: `{}` already exists",
            variable.key
        )));
    }
    tracing::info!(key = %variable.key, "variable created through the API");
    state.wake_scheduler();
    Ok(variable)
}

/// Update a variable: the fields the body carries (and the update mask names, when given).
#[utoipa::path(patch, path = "/api/v2/variables/{variable_key}", tag = "Variable",
    params(("variable_key" = String, Path), UpdateMask), request_body = VariableBody,
    responses((status = 200, body = VariableResponse), (status = 400), (status = 401), (status = 403), (status = 404), (status = 422)))]
async fn patch_variable(
    State(state): State<AppState>,
    Path(key): Path<String>,
    Params(mask): Params<UpdateMask>,
    body: Fields<VariableBody>,
) -> ApiResult<Json<VariableResponse>> {
    body.body.validate()?;
    if body.body.key != key {
        return Err(ApiError::BadRequest(
            "Invalid body, key from request body doesn't match uri parameter".into(),
        ));
    }
    let variable = update(&state, &key, &body, mask.update_mask.as_deref()).await?;
    Ok(Json(variable_response(variable)))
}

/// Changes the variable `key` as a PATCH with `body` and `mask` asks.
async fn update(
    state: &AppState,
    key: &str,
    body: &Fields<VariableBody>,
    mask: Option<&[String]>,
) -> ApiResult<Variable> {
    if mask.is_some_and(|m| m.iter().any(|f| f.trim() == "key")) {
        return Err(ApiError::BadRequest(
            "Update not allowed: the following fields are immutable and cannot be modified: {'key'}"
                .into(),
        ));
    }
    let fernet = state.fernet_key()?;
    let mut variable = state
        .store()
        .variable_record(key, fernet)
        .await?
        .ok_or_else(|| not_found(key))?;
    if body.updates("value", mask) {
        variable.value = body.body.stored_value();
    }
    if body.updates("description", mask) {
        variable.description.clone_from(&body.body.description);
    }
    variable.is_encrypted = true;
    if !state.store().update_variable(&variable, fernet).await? {
        return Err(not_found(key));
    }
    tracing::info!(%key, "variable updated through the API");
    state.wake_scheduler();
    Ok(variable)
}

/// Variables as bulk actions change them.
struct Variables;

impl Resource for Variables {
    type Entity = VariableBody;
    const KEY_FIELD: &'static str = "key";
    const NAMED: &'static str = "variables with these keys:";

    fn key(entity: &VariableBody) -> String {
        entity.key.clone()
    }

    fn validate(entity: &VariableBody) -> ApiResult<()> {
        entity.validate()
    }

    async fn existing(
        &self,
        state: &AppState,
        keys: &BTreeSet<String>,
    ) -> ApiResult<BTreeSet<String>> {
        Ok(state
            .store()
            .variable_records(state.fernet_key()?)
            .await?
            .into_iter()
            .map(|v| v.key)
            .filter(|k| keys.contains(k))
            .collect())
    }

    async fn create(&self, state: &AppState, entity: &Fields<VariableBody>) -> ApiResult<()> {
        create(state, &entity.body).await.map(drop)
    }

    async fn update(
        &self,
        state: &AppState,
        entity: &Fields<VariableBody>,
        mask: Option<&[String]>,
    ) -> ApiResult<()> {
        update(state, &entity.body.key, entity, mask)
            .await
            .map(drop)
    }

    async fn delete(&self, state: &AppState, key: &str) -> ApiResult<()> {
        delete(state, key).await
    }
}

/// Create, update and delete variables in one request.
#[utoipa::path(patch, path = "/api/v2/variables", tag = "Variable", request_body = BulkBody,
    responses((status = 200, body = BulkResponse), (status = 401), (status = 403), (status = 422)))]
async fn bulk_variables(
    State(state): State<AppState>,
    Body(body): Body<BulkBody>,
) -> ApiResult<Json<BulkResponse>> {
    Ok(Json(bulk::run(&state, &Variables, body).await?))
}

/// Delete a variable.
#[utoipa::path(delete, path = "/api/v2/variables/{variable_key}", tag = "Variable",
    params(("variable_key" = String, Path)),
    responses((status = 204), (status = 401), (status = 403), (status = 404)))]
async fn delete_variable(
    State(state): State<AppState>,
    Path(key): Path<String>,
) -> ApiResult<StatusCode> {
    delete(&state, &key).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Deletes the variable `key`; 404 when there is none.
async fn delete(state: &AppState, key: &str) -> ApiResult<()> {
    if !state.store().delete_variable(key).await? {
        return Err(not_found(key));
    }
    tracing::info!(%key, "variable deleted through the API");
    state.wake_scheduler();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::shown_value;

    #[test]
    fn values_are_shown_as_airflow_shows_them() {
        assert_eq!(shown_value("region", "eu"), "eu");
        assert_eq!(shown_value("db_password", "hunter2"), "***");
        assert_eq!(shown_value("n", "42"), "42");
        assert_eq!(
            shown_value("cfg", "{\n  \"api_key\": \"abc\",\n  \"n\": 1\n}"),
            r#"{"api_key": "***", "n": 1}"#
        );
    }
}
