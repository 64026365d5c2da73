//! `POST /auth/token` (and `/auth/token/cli`): a username and password, as JSON or a form, for
//! an access token, as Airflow 3's simple auth manager answers it. Attempts are throttled per
//! user name and per client address ([`super::throttle`]), and an unknown name costs the same
//! password check as a known one, so timing does not tell which names exist.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum_extra::extract::cookie::{Cookie, SameSite};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::SESSION_COOKIE;
use super::forwarded::ClientOrigin;
use super::password::{dummy_hash, verify_password};
use super::throttle::Throttled;
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
        (status = 429, description = "Too many attempts for this user or from this address; `Retry-After` says when to try again"),
    )
)]
async fn create_token(
    State(state): State<AppState>,
    client: ClientOrigin,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<LoginResponse>), LoginError> {
    let credentials = parse_body(&headers, &body)?;
    let access_token = check_credentials(&state, &client, &credentials).await?;
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
        (status = 429, description = "Too many attempts for this user or from this address; `Retry-After` says when to try again"),
    )
)]
async fn create_token_cli(
    state: State<AppState>,
    client: ClientOrigin,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<LoginResponse>), LoginError> {
    create_token(state, client, headers, body).await
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

/// Why a sign-in failed.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// Too many attempts for the user or from the address: 429 with `Retry-After`.
    #[error(transparent)]
    Throttled(#[from] Throttled),
    /// Wrong credentials, or a request or database failure, as the API answers them.
    #[error(transparent)]
    Api(#[from] ApiError),
}

impl IntoResponse for LoginError {
    fn into_response(self) -> Response {
        match self {
            LoginError::Throttled(throttled) => (
                StatusCode::TOO_MANY_REQUESTS,
                [(
                    header::RETRY_AFTER,
                    throttled.retry_after_secs().to_string(),
                )],
                Json(serde_json::json!({ "detail": throttled.to_string() })),
            )
                .into_response(),
            LoginError::Api(err) => err.into_response(),
        }
    }
}

/// The token for a user whose password matches; the same 401 for an unknown user and a wrong
/// password, so the answer does not tell which names exist, and the same argon2 check (against
/// [`dummy_hash`] for an unknown name), so neither does the time it takes. Throttled first, so
/// a flood of attempts costs no hashing.
pub async fn check_credentials(
    state: &AppState,
    client: &ClientOrigin,
    credentials: &LoginBody,
) -> Result<String, LoginError> {
    if let Err(throttled) = state
        .login_throttle()
        .attempt(client.address, &credentials.username)
    {
        tracing::warn!(user = %credentials.username, address = ?client.address, "login throttled");
        return Err(throttled.into());
    }
    let user = state
        .store()
        .user(&credentials.username)
        .await
        .map_err(ApiError::from)?;
    let hash = user
        .as_ref()
        .map_or_else(|| dummy_hash().to_owned(), |u| u.password_hash.clone());
    let password = credentials.password.clone();
    // argon2 is deliberately slow: keep it off the async workers.
    let matches = tokio::task::spawn_blocking(move || verify_password(&password, &hash))
        .await
        .unwrap_or(false);
    match user {
        Some(user) if matches => {
            crate::audit::record_login(state, &user.username).await;
            Ok(state.tokens().issue(&user.username, &user.id, state.now()))
        }
        _ => {
            tracing::warn!(user = %credentials.username, "login refused");
            Err(ApiError::Unauthorized("Invalid credentials".into()).into())
        }
    }
}

/// The web UI's session cookie for `token`: HttpOnly, SameSite=Strict, whole site, and
/// `Secure` when the browser came over https (so it is never sent back over plain http).
#[must_use]
pub fn session_cookie(token: String, secure: bool) -> Cookie<'static> {
    Cookie::build((SESSION_COOKIE, token))
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(secure)
        .path("/")
        .build()
}
