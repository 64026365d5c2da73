//! `POST /api/v2/connections/test`: tests a connection, as Airflow's `test_connection`, when
//! `[core] test_connection = Enabled` (off by default, as in Airflow: a test makes the server
//! reach whatever host the caller names). Off, it answers Airflow's 403.
//!
//! What Gust tests natively: a `postgres` connection by signing in to the database with its
//! login, password and schema; any other connection with a host by opening a TCP connection to
//! its host and port (`http` and `https` default to 80 and 443). A connection without a host
//! cannot be tested (`status: false`). As in Airflow, a stored connection's secrets are used
//! for a test of the same id (a `***` password keeps the stored one), but only against the
//! stored host and port: a test of another destination must bring its own password.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use gust_store::{Connection, Secret};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::connections::{ConnectionBody, merged, read};
use crate::api::fields::Fields;
use crate::api::redact::MASK;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// How long a test may take to reach its host (and sign in).
pub const TEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Airflow's answer when testing is off.
pub const DISABLED: &str = "Testing connections is disabled in Airflow configuration. Contact your deployment admin to enable it.";

/// The connection test endpoint.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(test_connection))
}

/// A test's outcome (Airflow's `ConnectionTestResponse`).
#[derive(Debug, Serialize, ToSchema)]
pub struct ConnectionTestResponse {
    pub status: bool,
    pub message: String,
}

/// Whether two hosts or ports name the same destination (blank counts as unset, as the UI
/// sends blanks for fields a type does not use).
fn same_endpoint(requested: Option<&str>, stored: Option<&str>) -> bool {
    requested.filter(|v| !v.is_empty()) == stored.filter(|v| !v.is_empty())
}

/// The connection to test: the body over the stored connection of the same id when there is
/// one (and the destination is the same), else the body alone.
async fn connection_to_test(
    state: &AppState,
    body: &Fields<ConnectionBody>,
) -> ApiResult<Connection> {
    let (port, extra) = body.body.validate()?;
    let key = state.fernet_key()?;
    let stored = match read(state, key, &body.body.connection_id).await {
        Ok(conn) => Some(conn),
        Err(ApiError::NotFound(_)) => None,
        Err(other) => return Err(other),
    };
    if let Some(stored) = stored {
        let host_changed =
            body.has("host") && !same_endpoint(body.body.host.as_deref(), stored.host.as_deref());
        let port_changed = body.has("port")
            && !same_endpoint(
                port.map(|p| p.to_string()).as_deref(),
                stored.port.map(|p| p.to_string()).as_deref(),
            );
        let own_password = body.has("password")
            && body
                .body
                .password
                .as_deref()
                .is_some_and(|p| !p.is_empty() && p != MASK);
        if !(host_changed || port_changed) {
            return merged(stored, body, None);
        }
        if !own_password {
            return Err(ApiError::BadRequest(
                "The host or port to test differs from the stored connection. Include the credentials to test in the request body.".into(),
            ));
        }
    }
    let new = &body.body;
    Ok(Connection {
        conn_id: new.connection_id.clone(),
        conn_type: new.conn_type.clone(),
        host: new.host.clone(),
        login: new.login.clone(),
        schema: new.schema.clone(),
        port,
        password: new.password.clone().map(Secret::new),
        extra: extra.map(Secret::new),
        description: new.description.clone(),
    })
}

/// `text` percent-encoded for a URL's user, password or path.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// The host and port to reach: the host without a scheme or path (an http connection's host
/// is often a URL), and the port, else the type's default.
fn destination(conn: &Connection) -> Option<(String, u16)> {
    let host = conn.host.as_deref()?.trim();
    let (scheme, rest) = match host.split_once("://") {
        Some((scheme, rest)) => (Some(scheme.to_ascii_lowercase()), rest),
        None => (None, host),
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    let (name, port_in_host) = match authority.rsplit_once(':') {
        Some((name, port)) if !name.ends_with(']') || name.starts_with('[') => {
            (name, port.parse::<u16>().ok())
        }
        _ => (authority, None),
    };
    let name = name.trim_start_matches('[').trim_end_matches(']');
    if name.is_empty() {
        return None;
    }
    let kind = scheme.unwrap_or_else(|| conn.conn_type.to_ascii_lowercase());
    let default = match kind.as_str() {
        "https" => Some(443),
        "http" => Some(80),
        "postgres" | "postgresql" => Some(5432),
        _ => None,
    };
    let port = conn
        .port
        .and_then(|p| u16::try_from(p).ok())
        .or(port_in_host)
        .or(default)?;
    Some((name.to_owned(), port))
}

/// Tests `conn`: `(status, message)` as Airflow answers them.
async fn test(conn: &Connection) -> (bool, String) {
    let kind = conn.conn_type.to_ascii_lowercase();
    let Some((host, port)) = destination(conn) else {
        return (
            false,
            format!(
                "Gust cannot test this `{}` connection: it names no host and port to reach",
                conn.conn_type
            ),
        );
    };
    if kind == "postgres" || kind == "postgresql" {
        let login = conn.login.as_deref().map(encode).unwrap_or_default();
        let password = conn
            .password
            .as_ref()
            .map(|p| format!(":{}", encode(p.expose())))
            .unwrap_or_default();
        let at = if login.is_empty() && password.is_empty() {
            String::new()
        } else {
            format!("{login}{password}@")
        };
        let database = conn.schema.as_deref().map(encode).unwrap_or_default();
        let url = format!("postgres://{at}{host}:{port}/{database}");
        return match tokio::time::timeout(TEST_TIMEOUT, gust_store::Store::connect(&url)).await {
            Ok(Ok(store)) => {
                store.close().await;
                (true, "Connection successfully tested".to_owned())
            }
            Ok(Err(err)) => {
                let mut message = err.to_string();
                let mut source = std::error::Error::source(&err);
                while let Some(cause) = source {
                    message = format!("{message}: {cause}");
                    source = cause.source();
                }
                if let Some(password) = &conn.password
                    && !password.expose().is_empty()
                {
                    message = message.replace(password.expose(), MASK);
                }
                (false, gust_secrets::mask(&message))
            }
            Err(_) => (
                false,
                format!(
                    "{host}:{port} did not answer within {}s",
                    TEST_TIMEOUT.as_secs()
                ),
            ),
        };
    }
    match tokio::time::timeout(
        TEST_TIMEOUT,
        tokio::net::TcpStream::connect((host.as_str(), port)),
    )
    .await
    {
        Ok(Ok(_)) => (
            true,
            format!("Connection successfully tested: {host}:{port} accepted a TCP connection"),
        ),
        Ok(Err(err)) => (false, format!("cannot reach {host}:{port}: {err}")),
        Err(_) => (
            false,
            format!(
                "{host}:{port} did not answer within {}s",
                TEST_TIMEOUT.as_secs()
            ),
        ),
    }
}

/// Test a connection.
#[utoipa::path(post, path = "/api/v2/connections/test", tag = "Connection", request_body = ConnectionBody,
    responses((status = 200, body = ConnectionTestResponse), (status = 400), (status = 401), (status = 403), (status = 422)))]
async fn test_connection(
    State(state): State<AppState>,
    body: Fields<ConnectionBody>,
) -> ApiResult<Json<ConnectionTestResponse>> {
    if !state.connection_test_enabled() {
        return Err(ApiError::Refused(DISABLED.into()));
    }
    let conn = connection_to_test(&state, &body).await?;
    let (status, message) = test(&conn).await;
    tracing::info!(connection_id = %conn.conn_id, status, "connection tested through the API");
    Ok(Json(ConnectionTestResponse { status, message }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(conn_type: &str, host: Option<&str>, port: Option<i32>) -> Connection {
        Connection {
            conn_id: "c".into(),
            conn_type: conn_type.into(),
            host: host.map(str::to_owned),
            login: None,
            schema: None,
            port,
            password: None,
            extra: None,
            description: None,
        }
    }

    #[test]
    fn the_destination_comes_from_the_host_port_and_type() {
        assert_eq!(
            destination(&conn("http", Some("https://api.example.com/v1"), None)),
            Some(("api.example.com".into(), 443))
        );
        assert_eq!(
            destination(&conn("http", Some("api.example.com"), None)),
            Some(("api.example.com".into(), 80))
        );
        assert_eq!(
            destination(&conn("http", Some("h:8080"), None)),
            Some(("h".into(), 8080))
        );
        assert_eq!(
            destination(&conn("postgres", Some("db"), Some(6543))),
            Some(("db".into(), 6543))
        );
        assert_eq!(destination(&conn("redis", Some("cache"), None)), None);
        assert_eq!(destination(&conn("aws", None, None)), None);
    }

    #[test]
    fn credentials_are_encoded_for_a_url() {
        assert_eq!(encode("p@ss:w/rd"), "p%40ss%3Aw%2Frd");
    }
}
