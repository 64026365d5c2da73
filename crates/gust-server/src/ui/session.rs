//! Logging in and out, and who may see what: [`PageUser`] sends the unauthenticated to
//! `/login`, [`DataUser`] answers them 401. Both carry the session's CSRF token, which pages
//! embed so their scripts can send it with every change. Sign-ins are throttled as the API's
//! are, return only to a path on this site, and are refused when posted from another site.

use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::{Form, RequestPartsExt};
use axum_extra::extract::CookieJar;
use axum_extra::extract::cookie::Cookie;
use serde::Deserialize;

use crate::auth::forwarded::ClientOrigin;
use crate::auth::permissions::{may_act_on_dags, may_read_configuration};
use crate::auth::{self, Caller, LoginError, SESSION_COOKIE};
use crate::error::ApiError;
use crate::state::AppState;
use crate::ui::templates::{PageError, render};

/// The longest user name or password the login form reads.
const MAX_CREDENTIAL_LEN: usize = 256;

/// A signed-in user looking at a page.
#[derive(Debug, Clone)]
pub struct PageUser(pub Caller);

/// A signed-in user asking for the UI's JSON or events (all reads, which every role may do).
#[derive(Debug, Clone, Copy)]
pub struct DataUser;

impl PageUser {
    /// The page context every template gets: user, role, CSRF token, whether to show changes
    /// and the links to variables and connections.
    pub fn context(&self) -> minijinja::Value {
        let caller = &self.0;
        minijinja::context! {
            user => caller.username,
            role => caller.role.as_str(),
            csrf => caller.csrf.clone().unwrap_or_default(),
            can_edit => may_act_on_dags(caller.role),
            can_read_config => may_read_configuration(caller.role),
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

/// A `next` that cannot be a path: it has a control character (a browser drops tabs and line
/// breaks from a URL, so `/\t/evil.example` would become `//evil.example`, another site).
#[derive(Debug, thiserror::Error)]
#[error("the `next` parameter has a control character; give a path on this site, such as /dags")]
pub struct BadNext;

/// Where to go after logging in: a path on this site only, never another origin. It must start
/// with one `/` followed by a character that is not `/`, `\` or a control character (`//x`
/// and `/\x` name another host to a browser); anything else goes to `/dags`. Non-ASCII
/// characters are percent-encoded so the answer's `Location` header is valid.
fn safe_next(next: Option<&str>) -> Result<String, BadNext> {
    let Some(path) = next else {
        return Ok("/dags".to_owned());
    };
    if path.chars().any(char::is_control) {
        return Err(BadNext);
    }
    let mut chars = path.chars();
    let on_this_site = chars.next() == Some('/')
        && chars
            .next()
            .is_none_or(|second| second != '/' && second != '\\')
        && path.len() <= 2048;
    if !on_this_site {
        return Ok("/dags".to_owned());
    }
    Ok(path
        .bytes()
        .map(|b| {
            if b.is_ascii() {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect())
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
pub async fn login_page(Query(query): Query<NextQuery>) -> Result<Html<String>, PageError> {
    let next = safe_next(query.next.as_deref())
        .map_err(|e| PageError(ApiError::BadRequest(e.to_string())))?;
    Ok(render(
        "login.html",
        minijinja::context! { next => next, error => "" },
    )?)
}

/// Whether a form post came from a page of this site (so another site cannot sign a visitor in
/// to an account of its choosing): the browser's `Origin` header, or when it sends none its
/// `Referer`, must name the host the request went to; with neither, the post is taken (some
/// privacy settings drop both, and a browser posting across sites sends `Origin`). Behind a
/// proxy, `X-Forwarded-Host` counts as the host.
fn same_origin(headers: &HeaderMap) -> bool {
    let text = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    let Some(source) = text(header::ORIGIN).or_else(|| text(header::REFERER)) else {
        return true;
    };
    // Behind a reverse proxy, the host the browser used may arrive as X-Forwarded-Host.
    let hosts: Vec<&str> = [header::HOST.as_str(), "x-forwarded-host"]
        .into_iter()
        .filter_map(|name| headers.get(name).and_then(|v| v.to_str().ok()))
        .collect();
    source.split_once("://").is_some_and(|(_, rest)| {
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        hosts.contains(&authority)
    })
}

/// `POST /login`: a session cookie and a redirect, or the form again with one line saying why.
pub async fn login(
    State(state): State<AppState>,
    client: ClientOrigin,
    headers: HeaderMap,
    jar: CookieJar,
    Form(form): Form<LoginForm>,
) -> Response {
    let next = match safe_next(form.next.as_deref()) {
        Ok(next) => next,
        Err(bad) => return PageError(ApiError::BadRequest(bad.to_string())).into_response(),
    };
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
    match auth::check_credentials(&state, &client, &credentials).await {
        Ok(token) => {
            tracing::info!(user = %form.username, "signed in to the web UI");
            let cookie = auth::session_cookie(token, client.https);
            (jar.add(cookie), Redirect::to(&next)).into_response()
        }
        Err(LoginError::Api(ApiError::Unauthorized(_))) => {
            again(StatusCode::UNAUTHORIZED, "Wrong user name or password.")
        }
        Err(LoginError::Throttled(throttled)) => {
            let message = format!(
                "Too many sign-in attempts; try again in {} seconds.",
                throttled.retry_after_secs()
            );
            let mut page = again(StatusCode::TOO_MANY_REQUESTS, &message);
            page.headers_mut().insert(
                header::RETRY_AFTER,
                header::HeaderValue::from(throttled.retry_after_secs()),
            );
            page
        }
        Err(LoginError::Api(err)) => err.into_response(),
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
        let next = |text: Option<&str>| safe_next(text).unwrap();
        assert_eq!(next(Some("/dags/x?tab=graph")), "/dags/x?tab=graph");
        assert_eq!(next(Some("/")), "/");
        assert_eq!(next(Some("//evil.example/")), "/dags");
        assert_eq!(next(Some("https://evil.example/")), "/dags");
        assert_eq!(next(Some("/\\evil.example")), "/dags");
        assert_eq!(next(Some("/dags/caf\u{e9}")), "/dags/caf%C3%A9");
        assert_eq!(next(None), "/dags");
        // Browsers drop tabs and line breaks: `/<tab>/evil.example` is `//evil.example`.
        for bad in [
            "/\t/evil.example",
            "/\n/evil.example",
            "/dags\r\nSet-Cookie: x=y",
            "/\u{0}",
        ] {
            assert!(safe_next(Some(bad)).is_err(), "{bad:?}");
        }
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
    fn without_an_origin_the_referer_must_be_this_site() {
        let headers = |referer: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::HOST, "gust.example:8080".parse().unwrap());
            h.insert(header::REFERER, referer.parse().unwrap());
            h
        };
        assert!(same_origin(&headers(
            "http://gust.example:8080/login?next=/dags"
        )));
        assert!(!same_origin(&headers(
            "https://evil.example/gust.example:8080"
        )));
        assert!(!same_origin(&headers(
            "https://gust.example:8080.evil.example/"
        )));
        assert!(!same_origin(&headers("not a url")));
    }

    #[test]
    fn next_is_percent_encoded() {
        assert_eq!(encode_component("/dags/a?b=c&d"), "/dags/a%3Fb%3Dc%26d");
    }
}
