//! `HttpSensor` and `HttpOperator` (also `SimpleHttpOperator`): an HTTP request to a path under
//! an HTTP connection's base URL. Airflow's `response_check` is a Python callable; Gust's is a
//! map checked natively: the status codes that pass, and a regex or a JSONPath the body must
//! match ([`ResponseCheck`]).

use serde::Deserialize;

use super::SensorSettings;
use crate::spec::{ArgumentError, OperatorSpec, read_args};

/// The connection both use unless told otherwise (Airflow's).
pub const DEFAULT_CONN_ID: &str = "http_default";

/// What a response must be to pass, checked without Python.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResponseCheck {
    /// The status codes that pass (default: any 2xx).
    #[serde(default)]
    pub status_codes: Vec<u16>,
    /// A regular expression the body must match somewhere.
    #[serde(default)]
    pub regex: Option<String>,
    /// A JSONPath (`$.status`) that must select something in the body, parsed as JSON.
    #[serde(default)]
    pub jsonpath: Option<String>,
    /// What the JSONPath's first match must equal (any JSON value; a string also matches the
    /// text of a number or a boolean).
    #[serde(default)]
    pub value: Option<serde_json::Value>,
}

/// `HttpSensor`'s arguments.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct HttpSensorArgs {
    /// The path under the connection's base URL (templated).
    pub endpoint: String,
    /// The connection (default `http_default`).
    #[serde(default = "default_conn_id")]
    pub http_conn_id: String,
    /// The method (default `GET`).
    #[serde(default = "get")]
    pub method: String,
    /// Query parameters of a GET, the form body of other methods.
    #[serde(default)]
    pub request_params: Option<serde_json::Map<String, serde_json::Value>>,
    /// Headers.
    #[serde(default)]
    pub headers: Option<serde_json::Map<String, serde_json::Value>>,
    /// The error statuses that mean "not yet" rather than a failure (default `["404"]`).
    #[serde(default = "not_found")]
    pub response_error_codes_allowlist: Vec<serde_json::Value>,
    /// What the response must be ([`ResponseCheck`]).
    #[serde(default)]
    pub response_check: Option<ResponseCheck>,
    /// `timeout` of one request and `check_response` (Airflow's `extra_options`).
    #[serde(default)]
    pub extra_options: Option<serde_json::Map<String, serde_json::Value>>,
    /// Accepted (Airflow's).
    #[serde(default)]
    pub tcp_keep_alive: Option<serde_json::Value>,
    /// How it waits.
    #[serde(flatten)]
    pub settings: SensorSettings,
}

/// `HttpOperator`'s arguments.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct HttpOperatorArgs {
    /// The path under the connection's base URL (templated).
    #[serde(default)]
    pub endpoint: Option<String>,
    /// The connection (default `http_default`).
    #[serde(default = "default_conn_id")]
    pub http_conn_id: String,
    /// The method (default `POST`).
    #[serde(default = "post")]
    pub method: String,
    /// Query parameters of a GET; the body of other methods: text as written, a map as JSON
    /// when the `Content-Type` header says JSON, else as a form.
    #[serde(default)]
    pub data: Option<serde_json::Value>,
    /// Headers.
    #[serde(default)]
    pub headers: Option<serde_json::Map<String, serde_json::Value>>,
    /// What the response must be ([`ResponseCheck`]); without it any 2xx passes.
    #[serde(default)]
    pub response_check: Option<ResponseCheck>,
    /// `timeout` of the request and `check_response` (Airflow's `extra_options`).
    #[serde(default)]
    pub extra_options: Option<serde_json::Map<String, serde_json::Value>>,
    /// Write the response's body to the try's log.
    #[serde(default)]
    pub log_response: bool,
    /// Accepted (Airflow's).
    #[serde(default)]
    pub tcp_keep_alive: Option<serde_json::Value>,
    /// Accepted: the request is async whatever this says.
    #[serde(default)]
    pub deferrable: bool,
}

fn default_conn_id() -> String {
    DEFAULT_CONN_ID.to_owned()
}

fn get() -> String {
    "GET".to_owned()
}

fn post() -> String {
    "POST".to_owned()
}

fn not_found() -> Vec<serde_json::Value> {
    vec!["404".into()]
}

fn check_method(method: &str) -> Result<(), ArgumentError> {
    const METHODS: [&str; 7] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];
    if METHODS.contains(&method.to_ascii_uppercase().as_str()) || method.contains("{{") {
        Ok(())
    } else {
        Err(ArgumentError {
            path: "method".to_owned(),
            message: format!("\"{method}\" is not one of {}", METHODS.join(", ")),
        })
    }
}

fn check_response(check: Option<&ResponseCheck>) -> Result<(), ArgumentError> {
    let Some(check) = check else { return Ok(()) };
    if let Some(regex) = &check.regex
        && !regex.contains("{{")
    {
        regex::Regex::new(regex).map_err(|err| ArgumentError {
            path: "response_check.regex".to_owned(),
            message: format!("not a regular expression: {err}"),
        })?;
    }
    if let Some(path) = &check.jsonpath
        && !path.contains("{{")
    {
        use jsonpath_rust::JsonPath;
        serde_json::Value::Null
            .query(path)
            .map_err(|err| ArgumentError {
                path: "response_check.jsonpath".to_owned(),
                message: format!("not a JSONPath: {err}"),
            })?;
    }
    if check.value.is_some() && check.jsonpath.is_none() {
        return Err(ArgumentError {
            path: "response_check.value".to_owned(),
            message: "needs a jsonpath whose match it is compared with".to_owned(),
        });
    }
    Ok(())
}

fn check_sensor(args: &serde_json::Map<String, serde_json::Value>) -> Result<(), ArgumentError> {
    let read = read_args::<HttpSensorArgs>(args)?;
    check_method(&read.method)?;
    check_response(read.response_check.as_ref())?;
    read.settings.check()
}

fn check_operator(args: &serde_json::Map<String, serde_json::Value>) -> Result<(), ArgumentError> {
    let read = read_args::<HttpOperatorArgs>(args)?;
    check_method(&read.method)?;
    check_response(read.response_check.as_ref())
}

/// `HttpSensor`.
pub static SENSOR_SPEC: OperatorSpec = OperatorSpec {
    name: "http_sensor",
    aliases: &[
        "HttpSensor",
        "airflow.providers.http.sensors.http.HttpSensor",
        "airflow.sensors.http_sensor.HttpSensor",
    ],
    arguments: sensor_arguments!(
        "endpoint",
        "http_conn_id",
        "method",
        "request_params",
        "headers",
        "response_error_codes_allowlist",
        "response_check",
        "extra_options",
        "tcp_keep_alive",
        "tcp_keep_alive_idle",
        "tcp_keep_alive_count",
        "tcp_keep_alive_interval"
    ),
    renamed_arguments: &[],
    required: &["endpoint"],
    pushes_xcom_by_default: true,
    holds_worker: false,
    open_arguments: false,
    check: check_sensor,
};

/// `HttpOperator` and `SimpleHttpOperator`.
pub static OPERATOR_SPEC: OperatorSpec = OperatorSpec {
    name: "http_operator",
    aliases: &[
        "HttpOperator",
        "SimpleHttpOperator",
        "airflow.providers.http.operators.http.HttpOperator",
        "airflow.providers.http.operators.http.SimpleHttpOperator",
        "airflow.operators.http_operator.SimpleHttpOperator",
    ],
    arguments: &[
        "endpoint",
        "http_conn_id",
        "method",
        "data",
        "headers",
        "response_check",
        "extra_options",
        "log_response",
        "tcp_keep_alive",
        "tcp_keep_alive_idle",
        "tcp_keep_alive_count",
        "tcp_keep_alive_interval",
        "deferrable",
        "auth_type",
    ],
    renamed_arguments: &[],
    required: &[],
    pushes_xcom_by_default: true,
    holds_worker: false,
    open_arguments: false,
    check: check_operator,
};

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(value: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
        value.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn sensor_arguments_default_as_airflow() {
        let args: HttpSensorArgs = read_args(&map(json!({"endpoint": "/health"}))).unwrap();
        assert_eq!(args.http_conn_id, "http_default");
        assert_eq!(args.method, "GET");
        assert_eq!(args.response_error_codes_allowlist, [json!("404")]);
        let op: HttpOperatorArgs = read_args(&map(json!({}))).unwrap();
        assert_eq!(op.method, "POST");
    }

    #[test]
    fn response_checks_are_checked_when_the_file_loads() {
        let bad_regex = map(json!({"endpoint": "/", "response_check": {"regex": "("}}));
        assert!(check_sensor(&bad_regex).is_err());
        let value_alone = map(json!({"endpoint": "/", "response_check": {"value": "ok"}}));
        assert!(check_sensor(&value_alone).is_err());
        let unknown = map(json!({"endpoint": "/", "response_check": {"status": [200]}}));
        assert!(check_sensor(&unknown).is_err());
        let bad_path = map(json!({"endpoint": "/", "response_check": {"jsonpath": "$[?"}}));
        assert!(check_sensor(&bad_path).is_err());
        assert!(check_sensor(&unknown).is_err());
        let good = map(json!({"endpoint": "/", "response_check":
            {"status_codes": [200], "jsonpath": "$.state", "value": "done"}}));
        assert!(check_sensor(&good).is_ok());
        assert!(check_operator(&map(json!({"method": "FETCH"}))).is_err());
    }
}
