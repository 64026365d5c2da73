//! Who is calling and what they may do.
//!
//! Every request but health, version, the OpenAPI document and the login endpoints must carry
//! credentials: `Authorization: Bearer <JWT>` (API clients, as in Airflow 3) or the web UI's
//! session cookie (the same JWT, HttpOnly and SameSite=Strict). The user's role is read from the
//! database each time, and [`permissions`] says which role each call needs (Airflow's role
//! table); a cookie-carried request that changes something must also carry the session's CSRF
//! token in `X-CSRF-Token`, so another site cannot make a logged-in browser act. Every refusal
//! is logged.

pub mod forwarded;
mod login;
pub mod password;
pub mod permissions;
pub mod throttle;
pub mod token;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method};
use axum::middleware::Next;
use axum::response::Response;
use axum_extra::extract::CookieJar;
use gust_store::Role;

use crate::error::ApiError;
use crate::state::AppState;

pub use login::{LoginBody, LoginError, check_credentials, login_routes, session_cookie};

/// The cookie holding the web UI's session token.
pub const SESSION_COOKIE: &str = "_token";
/// The header carrying the CSRF token on cookie-authenticated changes.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// An authenticated caller, put into the request's extensions by [`authenticate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The user's name.
    pub username: String,
    /// What the user may do.
    pub role: Role,
    /// The session's CSRF token when the caller came with the session cookie.
    pub csrf: Option<String>,
}

impl Caller {
    /// Ok when the caller's role includes `needed`; a logged 403 otherwise.
    pub fn require(&self, needed: Role, what: &str) -> Result<(), ApiError> {
        if self.role >= needed {
            Ok(())
        } else {
            tracing::warn!(user = %self.username, role = self.role.as_str(), needed = needed.as_str(), %what, "denied");
            Err(ApiError::Forbidden)
        }
    }
}

/// The CSRF token of a session: a digest of its (secret, HttpOnly) token, so it needs no
/// storage and no page can compute it without reading the cookie.
#[must_use]
pub fn csrf_token(session_token: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(format!("gust-csrf:{session_token}").as_bytes())
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Finds the caller of a request: the bearer token, else the session cookie.
pub async fn identify(
    state: &AppState,
    headers: &HeaderMap,
    jar: &CookieJar,
) -> Result<Caller, ApiError> {
    let bearer = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    let (token, from_cookie) = match (bearer, jar.get(SESSION_COOKIE)) {
        (Some(token), _) => (token.to_owned(), false),
        (None, Some(cookie)) => (cookie.value().to_owned(), true),
        (None, None) => return Err(ApiError::Unauthorized("Not authenticated".into())),
    };
    let subject = state
        .tokens()
        .verify(&token)
        .map_err(|e| ApiError::Unauthorized(e.to_string()))?;
    // The account must be the one the token was issued to, not a later one of the same name.
    let user = state
        .store()
        .user(&subject.username)
        .await?
        .filter(|user| user.id == subject.user_id)
        .ok_or_else(|| ApiError::Unauthorized("the token's user no longer exists".into()))?;
    Ok(Caller {
        username: user.username,
        role: user.role,
        csrf: from_cookie.then(|| csrf_token(&token)),
    })
}

/// Middleware: refuses unauthenticated requests (401) and calls the caller's role does not
/// allow (403, [`permissions::required_role`]), checks the CSRF token of cookie-authenticated
/// changes, and hands the [`Caller`] to the handler.
pub async fn authenticate(
    State(state): State<AppState>,
    jar: CookieJar,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let caller = match identify(&state, request.headers(), &jar).await {
        Ok(caller) => caller,
        Err(err) => {
            tracing::info!(method = %request.method(), path = %request.uri().path(), "unauthenticated request refused");
            return Err(err);
        }
    };
    let what = format!("{} {}", request.method(), request.uri().path());
    caller.require(
        permissions::required_role(request.method(), request.uri().path()),
        &what,
    )?;
    let changes = !matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    if changes && let Some(expected) = &caller.csrf {
        let sent = request
            .headers()
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok());
        if sent != Some(expected.as_str()) {
            tracing::warn!(user = %caller.username, %what, "denied: missing or wrong CSRF token");
            return Err(ApiError::Forbidden);
        }
    }
    request.extensions_mut().insert(caller);
    Ok(next.run(request).await)
}
