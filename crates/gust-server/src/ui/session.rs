//! Logging in and out, and who may see what: [`PageUser`] sends the unauthenticated to
//! `/login`, [`DataUser`] answers them 401. Both carry the session's CSRF token, which pages
//! embed so their scripts can send it with every change.

use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::{Form, RequestPartsExt};
use axum_extra::extract::CookieJar;
use axum_extra::extract::cookie::Cookie;
use gust_store::Role;
use serde::Deserialize;

use crate::auth::{self, Caller, SESSION_COOKIE};
use crate::error::ApiError;
use crate::state::AppState;
use crate::ui::templates::render;

/// The longest user name or password the login form reads.
const MAX_CREDENTIAL_LEN: usize = 256;

/// A signed-in user looking at a page.
#[derive(Debug, Clone)]
pub struct PageUser(pub Caller);

/// A signed-in user asking for the UI's JSON or events (all reads, which every role may do).
#[derive(Debug, Clone, Copy)]
pub struct DataUser;

impl PageUser {
    /// The page context every template gets: user, role, CSRF token, whether to show changes.
    pub fn context(&self) -> minijinja::Value {
        let caller = &self.0;
        minijinja::context! {
            user => caller.username,
            role => caller.role.as_str(),
            csrf => caller.csrf.clone().unwrap_or_default(),
            can_edit => caller.role >= Role::Op,
        }
    }
}

async fn caller(parts: &mut Parts, state: &AppState) -> Result<Caller, ApiError> {
    let jar: CookieJar = parts
        .extract()
        .await
        .unwrap_or_else(|never: std::convert::Infallible| match never {});
    auth::identify(state, &parts.headers, &jar).await
}

impl FromRequestParts<AppState> for PageUser {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        match caller(parts, state).await {
            Ok(caller) => Ok(PageUser(caller)),
            Err(ApiError::Unauthorized(_)) => {
                let next = parts
                    .uri
                    .path_and_query()
                    .map_or("/", axum::http::uri::PathAndQuery::as_str);
                let target = format!("/login?next={}", encode_component(next));
                Err(Redirect::to(&target).into_response())
            }
            Err(other) => Err(other.into_response()),
        }
    }
}

impl FromRequestParts<AppState> for DataUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        caller(parts, state).await.map(|_| DataUser)
    }
}

/// Percent-encodes everything but unreserved characters (for a `next` query value).
fn encode_component(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Where to go after logging in: a path on this site only, never another origin.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(path)
            if path.starts_with('/')
                && !path.starts_with("//")
                && !path.contains('\\')
                && path.len() <= 2048 =>
        {
            path.to_owned()
        }
        _ => "/dags".to_owned(),
    }
}

/// `?next=` of the login page.
#[derive(Debug, Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

/// The login form's fields.
#[derive(Debug, Deserialize)]
pub struct LoginForm {
    username: String,
    password: String,
    next: Option<String>,
}

/// `GET /login`.
pub async fn login_page(Query(query): Query<NextQuery>) -> Result<Html<String>, ApiError> {
    render(
        "login.html",
        minijinja::context! { next => safe_next(query.next.as_deref()), error => "" },
    )
}

/// Whether a form post came from a page of this site: a browser's `Origin` header, when it
/// sends one, must name the host the request went to (so another site cannot sign a visitor in
/// to an account of its choosing). Behind a proxy, `X-Forwarded-Host` counts as the host.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    // Behind a reverse proxy, the host the browser used may arrive as X-Forwarded-Host.
    let hosts: Vec<&str> = [header::HOST.as_str(), "x-forwarded-host"]
        .into_iter()
        .filter_map(|name| headers.get(name).and_then(|v| v.to_str().ok()))
        .collect();
    origin
        .split_once("://")
        .is_some_and(|(_, authority)| hosts.contains(&authority))
}

/// `POST /login`: a session cookie and a redirect, or the form again with one line saying why.
pub async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    jar: CookieJar,
    Form(form): Form<LoginForm>,
) -> Response {
    let next = safe_next(form.next.as_deref());
    let again = |status: StatusCode, error: &str| match render(
        "login.html",
        minijinja::context! { next => next.clone(), error => error, username => form.username.clone() },
    ) {
        Ok(page) => (status, page).into_response(),
        Err(err) => err.into_response(),
    };
    if !same_origin(&headers) {
        tracing::warn!("a sign-in posted from another site was refused");
        return again(StatusCode::FORBIDDEN, "Sign in from this site's own page.");
    }
    if form.username.len() > MAX_CREDENTIAL_LEN || form.password.len() > MAX_CREDENTIAL_LEN {
        return again(
            StatusCode::BAD_REQUEST,
            "The user name or password is too long.",
        );
    }
    let credentials = auth::LoginBody {
        username: form.username.clone(),
        password: form.password.clone(),
    };
    match auth::check_credentials(&state, &credentials).await {
        Ok(token) => {
            tracing::info!(user = %form.username, "signed in to the web UI");
            (jar.add(auth::session_cookie(token)), Redirect::to(&next)).into_response()
        }
        Err(ApiError::Unauthorized(_)) => {
            again(StatusCode::UNAUTHORIZED, "Wrong user name or password.")
        }
        Err(err) => err.into_response(),
    }
}

/// The logout form's CSRF field.
#[derive(Debug, Deserialize)]
pub struct LogoutForm {
    csrf: String,
}

/// `POST /logout`: drops the session cookie (the form carries the CSRF token, so another site
/// cannot log a user out).
pub async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    jar: CookieJar,
    Form(form): Form<LogoutForm>,
) -> Response {
    if let Ok(caller) = auth::identify(&state, &headers, &jar).await
        && caller.csrf.as_deref() != Some(form.csrf.as_str())
    {
        return ApiError::Forbidden.into_response();
    }
    let jar = jar.remove(Cookie::build(SESSION_COOKIE).path("/"));
    (jar, Redirect::to("/login")).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_never_leaves_the_site() {
        assert_eq!(safe_next(Some("/dags/x?tab=graph")), "/dags/x?tab=graph");
        assert_eq!(safe_next(Some("//evil.example/")), "/dags");
        assert_eq!(safe_next(Some("https://evil.example/")), "/dags");
        assert_eq!(safe_next(Some("/\\evil.example")), "/dags");
        assert_eq!(safe_next(None), "/dags");
    }

    #[test]
    fn sign_ins_from_other_sites_are_refused() {
        let headers = |origin: Option<&str>| {
            let mut h = HeaderMap::new();
            h.insert(header::HOST, "gust.example:8080".parse().unwrap());
            if let Some(origin) = origin {
                h.insert(header::ORIGIN, origin.parse().unwrap());
            }
            h
        };
        assert!(same_origin(&headers(None)));
        assert!(same_origin(&headers(Some("http://gust.example:8080"))));
        assert!(!same_origin(&headers(Some("https://evil.example"))));
        assert!(!same_origin(&headers(Some("null"))));
    }

    #[test]
    fn next_is_percent_encoded() {
        assert_eq!(encode_component("/dags/a?b=c&d"), "/dags/a%3Fb%3Dc%26d");
    }
}
