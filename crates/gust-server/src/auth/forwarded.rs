//! What a request says about its client: its address (for login throttling) and whether the
//! browser reached the server over https (for the session cookie's `Secure`). Behind a reverse
//! proxy the connection comes from the proxy, so the proxy's `X-Forwarded-For` and
//! `X-Forwarded-Proto` say it instead; they are believed only when `[api] enable_proxy_fix` says
//! such a proxy is in front (as Airflow's `enable_proxy_fix`), since any client can send them.
//! Like Airflow's default `proxy_fix_x_for = 1`, only the last `X-Forwarded-For` entry (the one
//! the proxy itself added) is taken.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Uri};

use crate::state::AppState;

/// Where a request came from: the client's address and whether it came over https.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientOrigin {
    /// The client's address, when known ([`client_address`]).
    pub address: Option<IpAddr>,
    /// Whether the browser used https ([`is_https`]).
    pub https: bool,
}

impl FromRequestParts<AppState> for ClientOrigin {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Infallible> {
        let proxy_fix = state.proxy_fix();
        Ok(Self {
            address: client_address(parts, proxy_fix),
            https: is_https(&parts.uri, &parts.headers, proxy_fix),
        })
    }
}

/// The client's address: the proxy's word when trusted, else the connection's peer; `None`
/// when the server cannot tell (a request not from a socket, as in-process tests send).
#[must_use]
pub fn client_address(parts: &Parts, proxy_fix: bool) -> Option<IpAddr> {
    if proxy_fix && let Some(address) = forwarded_for(&parts.headers) {
        return Some(address);
    }
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(peer)| peer.ip())
}

/// The last address of `X-Forwarded-For` (of its last header, when there are several).
fn forwarded_for(headers: &HeaderMap) -> Option<IpAddr> {
    let last = headers.get_all("x-forwarded-for").iter().next_back()?;
    let entry = last.to_str().ok()?.rsplit(',').next()?.trim();
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|s| s.ip()))
}

/// Whether the browser reached us over https: the request's own scheme, or the trusted proxy's
/// `X-Forwarded-Proto` (its last entry).
#[must_use]
pub fn is_https(uri: &Uri, headers: &HeaderMap, proxy_fix: bool) -> bool {
    if uri.scheme_str() == Some("https") {
        return true;
    }
    proxy_fix
        && headers
            .get_all("x-forwarded-proto")
            .iter()
            .next_back()
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .is_some_and(|proto| proto.trim().eq_ignore_ascii_case("https"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Request;

    fn parts(headers: &[(&str, &str)], peer: Option<&str>) -> Parts {
        let mut request = Request::builder().uri("/login");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let (mut parts, ()) = request.body(()).unwrap().into_parts();
        if let Some(peer) = peer {
            parts
                .extensions
                .insert(ConnectInfo(peer.parse::<SocketAddr>().unwrap()));
        }
        parts
    }

    #[test]
    fn forwarded_headers_count_only_behind_a_trusted_proxy() {
        let request = parts(
            &[
                ("x-forwarded-for", "203.0.113.9, 198.51.100.7"),
                ("x-forwarded-proto", "https"),
            ],
            Some("10.0.0.2:4000"),
        );
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        assert_eq!(client_address(&request, false), ip("10.0.0.2"));
        assert_eq!(client_address(&request, true), ip("198.51.100.7"));
        assert!(!is_https(&request.uri, &request.headers, false));
        assert!(is_https(&request.uri, &request.headers, true));
        let plain = parts(&[("x-forwarded-proto", "http")], None);
        assert!(!is_https(&plain.uri, &plain.headers, true));
        assert_eq!(client_address(&plain, true), None);
    }
}
