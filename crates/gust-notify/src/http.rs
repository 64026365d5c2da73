//! Notifications over HTTP (reqwest): a generic webhook (Airflow's `HttpNotifier`, or Gust's
//! `webhook` with a `url`), a Slack incoming webhook (`SlackWebhookNotifier`) and Slack's Web
//! API (`SlackNotifier`), each from its rendered arguments and the connection it names. URLs
//! and tokens that come from connections join the secrets masker and are never recorded.

use std::time::Duration;

use gust_core::notify::NotifierKind;
use gust_template::{RuntimeLookup, TemplateConnection, join_url as join};

use crate::error::{NotifyError, safe};
use crate::render::text;

/// Slack's incoming webhooks, when a connection gives only the token path.
const SLACK_WEBHOOK_BASE: &str = "https://hooks.slack.com/services";
/// Slack's Web API.
const SLACK_API_BASE: &str = "https://slack.com/api/";

/// One HTTP request a notifier makes.
#[derive(Clone)]
pub struct Call {
    /// The method.
    pub method: reqwest::Method,
    /// Where (may hold a secret: never recorded).
    pub url: String,
    /// Its headers (may hold a token: never recorded).
    pub headers: Vec<(String, String)>,
    /// A login and password for Basic authentication (a connection's).
    pub basic_auth: Option<(String, String)>,
    /// Its body: JSON, or text as written.
    pub body: Option<Body>,
    /// How long one attempt may take.
    pub timeout: Duration,
    /// The answer is Slack's Web API's (`{"ok": false, "error": ...}` is a failure).
    pub slack_api: bool,
    /// Where it goes, safe to record and show.
    pub target: String,
}

/// Never prints the URL or the headers.
impl std::fmt::Debug for Call {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Call")
            .field("method", &self.method)
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

/// A request's body.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    /// Sent as JSON.
    Json(serde_json::Value),
    /// Sent as written.
    Text(String),
}

/// The call an HTTP notifier of `kind` makes with `args` (rendered).
pub fn call(
    kind: NotifierKind,
    args: &serde_json::Map<String, serde_json::Value>,
    lookup: &dyn RuntimeLookup,
    default_timeout: Duration,
) -> Result<Call, NotifyError> {
    let name = kind.as_str();
    let timeout = match args.get("timeout") {
        None | Some(serde_json::Value::Null) => default_timeout,
        Some(value) => value
            .as_f64()
            .filter(|s| *s > 0.0 && *s <= 3600.0)
            .map(Duration::from_secs_f64)
            .ok_or_else(|| NotifyError::BadArgument {
                notifier: name,
                argument: "timeout",
                why: "must be a number of seconds from 0 to 3600".to_owned(),
            })?,
    };
    match kind {
        NotifierKind::Webhook => webhook(args, lookup, timeout),
        NotifierKind::SlackWebhook => slack_webhook(args, lookup, timeout),
        NotifierKind::Slack => slack_api(args, lookup, timeout),
        NotifierKind::Email => Err(NotifyError::BadArgument {
            notifier: name,
            argument: "callback",
            why: "is sent over SMTP, not HTTP".to_owned(),
        }),
    }
}

/// A connection by id, its password joining the masker.
fn connection(
    lookup: &dyn RuntimeLookup,
    conn_id: &str,
) -> Result<TemplateConnection, NotifyError> {
    let conn = lookup
        .connection(conn_id)
        .ok_or_else(|| NotifyError::MissingConnection(conn_id.to_owned()))?;
    if let Some(password) = conn.password.clone().filter(|p| !p.is_empty()) {
        gust_secrets::add([password]);
    }
    Ok(conn)
}

/// The generic webhook: `url`, or `http_conn_id`'s base URL (as Airflow's HttpHook builds it)
/// joined with `endpoint`; `json` (any value, templates rendered) or `data` as the body.
fn webhook(
    args: &serde_json::Map<String, serde_json::Value>,
    lookup: &dyn RuntimeLookup,
    timeout: Duration,
) -> Result<Call, NotifyError> {
    const N: &str = "webhook";
    let endpoint = text(args, N, "endpoint")?.unwrap_or_default();
    let headers = headers(args)?;
    let mut basic_auth = None;
    let (url, target) = match text(args, N, "url")? {
        Some(url) => {
            let target = describe_url(&url)?;
            (join(&url, &endpoint), target)
        }
        None => {
            let conn_id =
                text(args, N, "http_conn_id")?.unwrap_or_else(|| "http_default".to_owned());
            let conn = connection(lookup, &conn_id)?;
            // Airflow's HttpHook logs in with the connection's login and password.
            basic_auth = conn
                .login
                .clone()
                .filter(|l| !l.is_empty())
                .map(|login| (login, conn.password.clone().unwrap_or_default()));
            (conn.http_url(&endpoint), format!("connection {conn_id}"))
        }
    };
    let method = text(args, N, "method")?
        .unwrap_or_else(|| "POST".to_owned())
        .to_ascii_uppercase()
        .parse::<reqwest::Method>()
        .map_err(|_| NotifyError::BadArgument {
            notifier: N,
            argument: "method",
            why: "is not an HTTP method".to_owned(),
        })?;
    let body = match (args.get("json"), args.get("data")) {
        (Some(json), _) if !json.is_null() => Some(Body::Json(json.clone())),
        (_, Some(serde_json::Value::String(data))) => Some(Body::Text(data.clone())),
        (_, Some(data)) if !data.is_null() => Some(Body::Json(data.clone())),
        _ => None,
    };
    Ok(Call {
        method,
        url,
        headers,
        basic_auth,
        body,
        timeout,
        slack_api: false,
        target,
    })
}

/// A Slack incoming webhook: the connection's password is the webhook URL, or its token path
/// under the connection's host (Slack's by default), as Airflow's SlackWebhookHook reads it.
fn slack_webhook(
    args: &serde_json::Map<String, serde_json::Value>,
    lookup: &dyn RuntimeLookup,
    timeout: Duration,
) -> Result<Call, NotifyError> {
    const N: &str = "slack_webhook";
    let conn_id =
        text(args, N, "slack_webhook_conn_id")?.unwrap_or_else(|| "slack_default".to_owned());
    let conn = connection(lookup, &conn_id)?;
    let token = conn.password.clone().unwrap_or_default();
    let url = if token.starts_with("http://") || token.starts_with("https://") {
        token
    } else {
        let base = conn
            .host
            .clone()
            .filter(|h| !h.is_empty())
            .map_or_else(|| SLACK_WEBHOOK_BASE.to_owned(), |_| conn.http_base());
        join(&base, &token)
    };
    gust_secrets::add([url.clone()]);
    let body = slack_body(
        args,
        &[
            "text",
            "blocks",
            "attachments",
            "unfurl_links",
            "unfurl_media",
        ],
    );
    if body.get("text").is_none()
        && body.get("blocks").is_none()
        && body.get("attachments").is_none()
    {
        return Err(NotifyError::BadArgument {
            notifier: N,
            argument: "text",
            why: "is needed when there are no blocks or attachments".to_owned(),
        });
    }
    Ok(Call {
        method: reqwest::Method::POST,
        url,
        headers: Vec::new(),
        basic_auth: None,
        body: Some(Body::Json(serde_json::Value::Object(body))),
        timeout,
        slack_api: false,
        target: format!("connection {conn_id}"),
    })
}

/// Slack's `chat.postMessage` with the connection's password as the bot token; the API's base
/// URL from `base_url`, the connection's extra `base_url`, or Slack's.
fn slack_api(
    args: &serde_json::Map<String, serde_json::Value>,
    lookup: &dyn RuntimeLookup,
    timeout: Duration,
) -> Result<Call, NotifyError> {
    const N: &str = "slack";
    let conn_id = text(args, N, "slack_conn_id")?.unwrap_or_else(|| "slack_api_default".to_owned());
    let conn = connection(lookup, &conn_id)?;
    let token = conn
        .password
        .clone()
        .filter(|t| !t.is_empty())
        .ok_or_else(|| NotifyError::BadArgument {
            notifier: N,
            argument: "slack_conn_id",
            why: format!("names connection \"{conn_id}\", whose password (the bot token) is empty"),
        })?;
    let extra_base = conn
        .extra
        .as_deref()
        .and_then(|e| serde_json::from_str::<serde_json::Value>(e).ok())
        .and_then(|e| {
            e.get("base_url")
                .and_then(|b| b.as_str())
                .map(str::to_owned)
        });
    let base = text(args, N, "base_url")?
        .or(extra_base)
        .unwrap_or_else(|| SLACK_API_BASE.to_owned());
    let mut body = slack_body(
        args,
        &[
            "text",
            "channel",
            "username",
            "icon_url",
            "blocks",
            "attachments",
            "unfurl_links",
            "unfurl_media",
        ],
    );
    // SlackNotifier's defaults.
    body.entry("channel").or_insert_with(|| "#general".into());
    body.entry("username").or_insert_with(|| "Airflow".into());
    body.entry("text")
        .or_insert_with(|| "This is a default message".into());
    Ok(Call {
        method: reqwest::Method::POST,
        url: join(&base, "chat.postMessage"),
        headers: vec![("Authorization".to_owned(), format!("Bearer {token}"))],
        basic_auth: None,
        body: Some(Body::Json(serde_json::Value::Object(body))),
        timeout,
        slack_api: true,
        target: format!("connection {conn_id}"),
    })
}

/// The given arguments among `names`, as a Slack message's fields. `blocks` and `attachments`
/// given as JSON text (as SlackNotifier takes them) are parsed.
fn slack_body(
    args: &serde_json::Map<String, serde_json::Value>,
    names: &[&str],
) -> serde_json::Map<String, serde_json::Value> {
    names
        .iter()
        .filter_map(|name| {
            let value = args.get(*name).filter(|v| !v.is_null())?.clone();
            let value = match (*name, value) {
                ("blocks" | "attachments", serde_json::Value::String(text)) => {
                    serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text))
                }
                (_, value) => value,
            };
            Some(((*name).to_owned(), value))
        })
        .collect()
}

fn headers(
    args: &serde_json::Map<String, serde_json::Value>,
) -> Result<Vec<(String, String)>, NotifyError> {
    match args.get("headers") {
        None | Some(serde_json::Value::Null) => Ok(Vec::new()),
        Some(serde_json::Value::Object(map)) => Ok(map
            .iter()
            .map(|(k, v)| {
                let v = match v {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (k.clone(), v)
            })
            .collect()),
        Some(_) => Err(NotifyError::BadArgument {
            notifier: "webhook",
            argument: "headers",
            why: "must be a map of header names to values".to_owned(),
        }),
    }
}

/// A URL written in a DAG file, described without its path or query (where tokens live).
fn describe_url(url: &str) -> Result<String, NotifyError> {
    let parsed = url::Url::parse(url).map_err(|err| NotifyError::BadArgument {
        notifier: "webhook",
        argument: "url",
        why: format!("is not a URL: {err}"),
    })?;
    Ok(format!(
        "{}://{}{}",
        parsed.scheme(),
        parsed.host_str().unwrap_or(""),
        parsed.port().map(|p| format!(":{p}")).unwrap_or_default()
    ))
}

/// Makes `call` once with `client`.
pub async fn send(client: &reqwest::Client, call: &Call) -> Result<(), NotifyError> {
    let mut request = client
        .request(call.method.clone(), &call.url)
        .timeout(call.timeout);
    for (name, value) in &call.headers {
        request = request.header(name, value);
    }
    if let Some((login, password)) = &call.basic_auth {
        request = request.basic_auth(login, Some(password));
    }
    request = match &call.body {
        Some(Body::Json(json)) => request.json(json),
        Some(Body::Text(text)) => request.body(text.clone()),
        None => request,
    };
    // reqwest's errors quote the URL, which may be a secret: shown without it, and masked.
    let response = request
        .send()
        .await
        .map_err(|err| NotifyError::Http(safe(&err.without_url().to_string())))?;
    let status = response.status();
    let answer = response
        .text()
        .await
        .map_err(|err| NotifyError::Http(safe(&err.without_url().to_string())))?;
    if !status.is_success() {
        return Err(NotifyError::Rejected {
            status: status.as_u16(),
            body: safe(&answer),
        });
    }
    if call.slack_api {
        let parsed: serde_json::Value = serde_json::from_str(&answer).unwrap_or_default();
        if parsed.get("ok").and_then(serde_json::Value::as_bool) != Some(true) {
            let error = parsed
                .get("error")
                .and_then(serde_json::Value::as_str)
                .unwrap_or("no \"ok\" in the answer");
            return Err(NotifyError::Rejected {
                status: status.as_u16(),
                body: safe(error),
            });
        }
    }
    Ok(())
}
