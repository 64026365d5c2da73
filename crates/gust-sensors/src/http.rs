//! `HttpSensor`'s poke and `HttpOperator`'s request (reqwest): a request to an endpoint under
//! an HTTP connection's base URL, as Airflow's HttpHook makes it, and the response judged by a
//! [`ResponseCheck`] instead of a Python callable. The connection's password joins the masker;
//! errors never quote the URL.

use std::time::Duration;

use gust_operators::sensors::http::{HttpOperatorArgs, HttpSensorArgs, ResponseCheck};
use gust_template::RuntimeLookup;
use jsonpath_rust::JsonPath;

use crate::decide::Poke;

/// How long one request may take unless `extra_options.timeout` says otherwise.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// The most of a response's body kept (for the XCom, the checks and the log).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// One request's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// Its status.
    pub status: u16,
    /// Its body as text (at most [`MAX_BODY_BYTES`]).
    pub body: String,
}

/// What to send.
struct Request<'a> {
    conn_id: &'a str,
    endpoint: &'a str,
    method: &'a str,
    headers: Option<&'a serde_json::Map<String, serde_json::Value>>,
    /// Query parameters of a GET, the body of other methods.
    data: Option<&'a serde_json::Value>,
    extra_options: Option<&'a serde_json::Map<String, serde_json::Value>>,
}

/// Sends `request` with `client`, reading the connection from `lookup`.
async fn send(
    client: &reqwest::Client,
    request: &Request<'_>,
    lookup: Option<&dyn RuntimeLookup>,
) -> Result<Answer, String> {
    let conn_id = request.conn_id;
    let conn = lookup
        .and_then(|l| l.connection(conn_id))
        .ok_or_else(|| format!("connection \"{conn_id}\" (http_conn_id) does not exist: create it with `gust connections add {conn_id} --conn-type http --conn-host https://example.com`"))?;
    if let Some(password) = conn.password.clone().filter(|p| !p.is_empty()) {
        gust_secrets::add([password]);
    }
    let url = conn.http_url(request.endpoint);
    let method = request
        .method
        .to_ascii_uppercase()
        .parse::<reqwest::Method>()
        .map_err(|_| format!("\"{}\" is not an HTTP method", request.method))?;
    let timeout = request
        .extra_options
        .and_then(|o| o.get("timeout"))
        .and_then(serde_json::Value::as_f64)
        .filter(|s| *s > 0.0 && *s <= 3600.0)
        .map_or(DEFAULT_TIMEOUT, Duration::from_secs_f64);
    let mut builder = client.request(method.clone(), &url).timeout(timeout);
    let mut json_body = false;
    // The connection's extra holds default headers, as Airflow's HttpHook reads them.
    let extra_headers: serde_json::Map<String, serde_json::Value> = conn
        .extra
        .as_deref()
        .and_then(|e| serde_json::from_str(e).ok())
        .unwrap_or_default();
    for (name, value) in extra_headers
        .iter()
        .chain(request.headers.into_iter().flatten())
    {
        let value = match value {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        if name.eq_ignore_ascii_case("content-type") && value.contains("json") {
            json_body = true;
        }
        builder = builder.header(name.as_str(), value);
    }
    if let Some(login) = conn.login.clone().filter(|l| !l.is_empty()) {
        builder = builder.basic_auth(login, conn.password.clone());
    }
    builder = match request.data {
        None | Some(serde_json::Value::Null) => builder,
        Some(data) if method == reqwest::Method::GET => builder.query(&query_pairs(data)),
        Some(serde_json::Value::String(text)) => builder.body(text.clone()),
        Some(data) if json_body => builder.body(data.to_string()),
        Some(data) => builder.form(&query_pairs(data)),
    };
    let response = builder
        .send()
        .await
        .map_err(|err| gust_secrets::mask(&err.without_url().to_string()))?;
    let status = response.status().as_u16();
    let bytes = response
        .bytes()
        .await
        .map_err(|err| gust_secrets::mask(&err.without_url().to_string()))?;
    let kept = &bytes[..bytes.len().min(MAX_BODY_BYTES)];
    Ok(Answer {
        status,
        body: String::from_utf8_lossy(kept).into_owned(),
    })
}

/// A map's entries as query or form pairs (values as text).
fn query_pairs(data: &serde_json::Value) -> Vec<(String, String)> {
    match data {
        serde_json::Value::Object(map) => map
            .iter()
            .map(|(k, v)| {
                let v = match v {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (k.clone(), v)
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// Whether `answer` passes `check` (any 2xx, and no more, without one); why not when it
/// does not.
pub fn passes(check: Option<&ResponseCheck>, answer: &Answer) -> Result<(), String> {
    let default = ResponseCheck::default();
    let check = check.unwrap_or(&default);
    let status_ok = if check.status_codes.is_empty() {
        (200..300).contains(&answer.status)
    } else {
        check.status_codes.contains(&answer.status)
    };
    if !status_ok {
        return Err(format!("the status is {}", answer.status));
    }
    if let Some(pattern) = &check.regex {
        let regex =
            regex::Regex::new(pattern).map_err(|err| format!("response_check.regex: {err}"))?;
        if !regex.is_match(&answer.body) {
            return Err(format!("the body does not match /{pattern}/"));
        }
    }
    if let Some(path) = &check.jsonpath {
        let body: serde_json::Value = serde_json::from_str(&answer.body)
            .map_err(|_| "the body is not JSON, which response_check.jsonpath needs".to_owned())?;
        let found = body
            .query(path)
            .map_err(|err| format!("response_check.jsonpath: {err}"))?;
        let Some(first) = found.first() else {
            return Err(format!("{path} selects nothing in the body"));
        };
        if let Some(wanted) = &check.value
            && !same(first, wanted)
        {
            return Err(format!("{path} is {first}, not {wanted}"));
        }
    }
    Ok(())
}

/// Equal, or a string equal to the other's text (`"3"` and `3`, `"true"` and `true`).
pub(crate) fn same(found: &serde_json::Value, wanted: &serde_json::Value) -> bool {
    found == wanted
        || match (found, wanted) {
            (serde_json::Value::String(s), other) | (other, serde_json::Value::String(s)) => {
                !other.is_string() && s.as_str() == other.to_string().as_str()
            }
            _ => false,
        }
}

/// One poke of `HttpSensor`: met when the response passes its check; "not yet" when it does
/// not, or when its status is in `response_error_codes_allowlist` (404 by default); an error
/// for any other failing status or when the request fails.
pub async fn poke(
    client: &reqwest::Client,
    args: &HttpSensorArgs,
    lookup: Option<&dyn RuntimeLookup>,
) -> (Poke, String) {
    let said = format!("Poking: {}", args.endpoint);
    let params = args.request_params.clone().map(serde_json::Value::Object);
    let request = Request {
        conn_id: &args.http_conn_id,
        endpoint: &args.endpoint,
        method: &args.method,
        headers: args.headers.as_ref(),
        data: params.as_ref(),
        extra_options: args.extra_options.as_ref(),
    };
    let answer = match send(client, &request, lookup).await {
        Ok(answer) => answer,
        Err(why) => return (Poke::Error(why), said),
    };
    let allowed = |status: u16| {
        args.response_error_codes_allowlist
            .iter()
            .any(|code| match code {
                serde_json::Value::String(s) => s.trim() == status.to_string(),
                serde_json::Value::Number(n) => n.as_u64() == Some(u64::from(status)),
                _ => false,
            })
    };
    let listed = args
        .response_check
        .as_ref()
        .is_some_and(|c| c.status_codes.contains(&answer.status));
    if answer.status >= 400 && !listed {
        return if allowed(answer.status) {
            (Poke::NotYet, format!("{said} (status {})", answer.status))
        } else {
            (
                Poke::Error(format!(
                    "{} answered {}: {}",
                    args.endpoint,
                    answer.status,
                    cut(&answer.body)
                )),
                said,
            )
        };
    }
    match passes(args.response_check.as_ref(), &answer) {
        Ok(()) => (Poke::Met, said),
        Err(why) => (Poke::NotYet, format!("{said} (not yet: {why})")),
    }
}

/// `HttpOperator`'s request: the response's body (its XCom, as Airflow's `response.text`) when
/// it passes its check, else why not.
pub async fn run(
    client: &reqwest::Client,
    args: &HttpOperatorArgs,
    lookup: Option<&dyn RuntimeLookup>,
) -> Result<Answer, String> {
    let request = Request {
        conn_id: &args.http_conn_id,
        endpoint: args.endpoint.as_deref().unwrap_or(""),
        method: &args.method,
        headers: args.headers.as_ref(),
        data: args.data.as_ref(),
        extra_options: args.extra_options.as_ref(),
    };
    let answer = send(client, &request, lookup).await?;
    // `extra_options: {check_response: false}` takes any status, as Airflow's HttpHook does.
    let checks_status = args
        .extra_options
        .as_ref()
        .and_then(|o| o.get("check_response"))
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(true);
    if !checks_status && args.response_check.is_none() {
        return Ok(answer);
    }
    passes(args.response_check.as_ref(), &answer)
        .map(|()| answer.clone())
        .map_err(|why| format!("{why}: {}", cut(&answer.body)))
}

/// The start of a body, for a message.
fn cut(body: &str) -> String {
    let masked = gust_secrets::mask(body);
    match masked.char_indices().nth(300) {
        Some((at, _)) => format!("{}...", &masked[..at]),
        None => masked,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn answer(status: u16, body: &str) -> Answer {
        Answer {
            status,
            body: body.to_owned(),
        }
    }

    #[test]
    fn without_a_check_any_2xx_passes() {
        assert!(passes(None, &answer(204, "")).is_ok());
        assert!(passes(None, &answer(302, "")).is_err());
    }

    #[test]
    fn status_codes_regex_and_jsonpath_are_checked() {
        let check = ResponseCheck {
            status_codes: vec![200, 202],
            regex: Some("ready|done".to_owned()),
            jsonpath: Some("$.job.state".to_owned()),
            value: Some(json!("done")),
        };
        assert!(passes(Some(&check), &answer(202, r#"{"job": {"state": "done"}}"#)).is_ok());
        let running = passes(Some(&check), &answer(200, r#"{"job": {"state": "ready"}}"#));
        assert_eq!(
            running,
            Err("$.job.state is \"ready\", not \"done\"".to_owned())
        );
        assert!(passes(Some(&check), &answer(201, r#"{"job": {"state": "done"}}"#)).is_err());
        let numbers = ResponseCheck {
            jsonpath: Some("$.count".to_owned()),
            value: Some(json!("3")),
            ..ResponseCheck::default()
        };
        assert!(passes(Some(&numbers), &answer(200, r#"{"count": 3}"#)).is_ok());
        assert!(passes(Some(&numbers), &answer(200, "not json")).is_err());
    }
}
