//! `POST /auth/token` (and `/auth/token/cli`): a username and password, as JSON or a form, for
//! an access token, as Airflow 3's simple auth manager answers it.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum_extra::extract::cookie::{Cookie, SameSite};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::SESSION_COOKIE;
use super::password::verify_password;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// The most a login body may hold.
const MAX_LOGIN_BODY: usize = 4096;

/// Credentials.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginBody {
    /// The user's name.
    pub username: String,
    /// The user's password.
    pub password: String,
}

/// An access token for `Authorization: Bearer`.
#[derive(Debug, Serialize, ToSchema)]
pub struct LoginResponse {
    /// The JWT.
    pub access_token: String,
}

/// The login endpoints (no authentication needed, obviously).
pub fn login_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_token))
        .routes(routes!(create_token_cli))
}

/// Authenticate a user and return an access token.
#[utoipa::path(
    post,
    path = "/auth/token",
    tag = "Login",
    request_body(content = LoginBody, content_type = "application/json"),
    responses(
        (status = 201, body = LoginResponse),
        (status = 400, description = "Unreadable body"),
        (status = 401, description = "Wrong username or password"),
    )
)]
async fn create_token(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<LoginResponse>)> {
    let credentials = parse_body(&headers, &body)?;
    let access_token = check_credentials(&state, &credentials).await?;
    Ok((StatusCode::CREATED, Json(LoginResponse { access_token })))
}

/// Authenticate a user for the command line and return an access token.
#[utoipa::path(
    post,
    path = "/auth/token/cli",
    tag = "Login",
    request_body(content = LoginBody, content_type = "application/json"),
    responses(
        (status = 201, body = LoginResponse),
        (status = 401, description = "Wrong username or password"),
    )
)]
async fn create_token_cli(
    state: State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<LoginResponse>)> {
    create_token(state, headers, body).await
}

fn parse_body(headers: &HeaderMap, body: &[u8]) -> ApiResult<LoginBody> {
    if body.len() > MAX_LOGIN_BODY {
        return Err(ApiError::BadRequest("the login body is too large".into()));
    }
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let parsed = if form {
        serde_urlencoded_form(body)
    } else {
        serde_json::from_slice(body).map_err(|e| e.to_string())
    };
    parsed.map_err(|msg| {
        ApiError::invalid(
            "body",
            "username",
            format!("expected {{\"username\": ..., \"password\": ...}}: {msg}"),
        )
    })
}

fn serde_urlencoded_form(body: &[u8]) -> Result<LoginBody, String> {
    serde_urlencoded::from_bytes(body).map_err(|e| e.to_string())
}

/// The token for a user whose password matches; the same 401 for an unknown user and a wrong
/// password, so the answer does not tell which names exist.
pub async fn check_credentials(state: &AppState, credentials: &LoginBody) -> ApiResult<String> {
    let user = state.store().user(&credentials.username).await?;
    let hash = user.as_ref().map(|u| u.password_hash.clone());
    let password = credentials.password.clone();
    // argon2 is deliberately slow: keep it off the async workers.
    let matches = tokio::task::spawn_blocking(move || {
        hash.is_some_and(|hash| verify_password(&password, &hash))
    })
    .await
    .unwrap_or(false);
    if !matches {
        tracing::warn!(user = %credentials.username, "login refused");
        return Err(ApiError::Unauthorized("Invalid credentials".into()));
    }
    Ok(state.tokens().issue(&credentials.username, state.now()))
}

/// The web UI's session cookie for `token`: HttpOnly, SameSite=Strict, whole site.
#[must_use]
pub fn session_cookie(token: String) -> Cookie<'static> {
    Cookie::build((SESSION_COOKIE, token))
        .http_only(true)
        .same_site(SameSite::Strict)
        .path("/")
        .build()
}
