//! `SqlSensor`: runs a query on a database connection (PostgreSQL, MySQL/MariaDB or SQLite)
//! until the first cell of its first row passes. Airflow's `success` and `failure` are Python
//! callables; Gust's are maps checked natively ([`CellCheck`]), as `HttpSensor`'s
//! `response_check` is.

use serde::Deserialize;

use super::SensorSettings;
use crate::spec::{ArgumentError, OperatorSpec, read_args};

/// What the first cell must be, checked without Python: every condition given must hold.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CellCheck {
    /// The cell equals this (any YAML value; a string also matches the text of a number or a
    /// boolean, and numbers compare by value: `12.50` equals `12.5`).
    #[serde(default)]
    pub value: Option<serde_json::Value>,
    /// The cell equals one of these.
    #[serde(default)]
    pub one_of: Option<Vec<serde_json::Value>>,
    /// A regular expression the cell's text matches somewhere.
    #[serde(default)]
    pub regex: Option<String>,
    /// The cell is a number greater than this.
    #[serde(default)]
    pub gt: Option<serde_json::Value>,
    /// The cell is a number at least this.
    #[serde(default)]
    pub ge: Option<serde_json::Value>,
    /// The cell is a number less than this.
    #[serde(default)]
    pub lt: Option<serde_json::Value>,
    /// The cell is a number at most this.
    #[serde(default)]
    pub le: Option<serde_json::Value>,
    /// The cell is NULL (`true`) or is not (`false`).
    #[serde(default)]
    pub null: Option<bool>,
}

impl CellCheck {
    /// Whether it says nothing.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// `SqlSensor`'s arguments.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct SqlSensorArgs {
    /// The connection (`postgres`, `mysql`, `mariadb` or `sqlite`).
    pub conn_id: String,
    /// The query (templated).
    pub sql: String,
    /// Its parameters: a map for `%(name)s` (PostgreSQL, MySQL) or `:name` (SQLite), a list
    /// for `%s` or `?`.
    #[serde(default)]
    pub parameters: Option<serde_json::Value>,
    /// What the first cell must be to pass (default: truthy, as Python's `bool`).
    #[serde(default)]
    pub success: Option<CellCheck>,
    /// What the first cell must not be: when it is, the poke fails (checked first).
    #[serde(default)]
    pub failure: Option<CellCheck>,
    /// An empty result fails the poke instead of meaning "not yet".
    #[serde(default)]
    pub fail_on_empty: bool,
    /// Accepted: the connection says everything Gust's drivers use.
    #[serde(default)]
    pub hook_params: Option<serde_json::Value>,
    /// How it waits.
    #[serde(flatten)]
    pub settings: SensorSettings,
}

/// What a Python callable in `success` or `failure` is refused with.
const NOT_A_CALLABLE: &str = "Gust checks the first cell without Python: give a map such as \
    {value: done}, {one_of: [done, skipped]}, {regex: \"^ok\"}, {gt: 0} or {null: false} \
    (docs/dag-format.md#sensors)";

fn check_cell(path: &str, check: Option<&CellCheck>) -> Result<(), ArgumentError> {
    let Some(check) = check else { return Ok(()) };
    let error = |message: String| ArgumentError {
        path: path.to_owned(),
        message,
    };
    if check.is_empty() {
        return Err(error(format!("says nothing to check: {NOT_A_CALLABLE}")));
    }
    if let Some(regex) = &check.regex
        && !regex.contains("{{")
    {
        regex::Regex::new(regex)
            .map_err(|err| error(format!("regex is not a regular expression: {err}")))?;
    }
    for (name, bound) in [
        ("gt", &check.gt),
        ("ge", &check.ge),
        ("lt", &check.lt),
        ("le", &check.le),
    ] {
        match bound {
            None | Some(serde_json::Value::Number(_)) => {}
            Some(serde_json::Value::String(text))
                if text.contains("{{") || text.trim().parse::<f64>().is_ok() => {}
            Some(other) => return Err(error(format!("{name} must be a number, not {other}"))),
        }
    }
    Ok(())
}

fn check(args: &serde_json::Map<String, serde_json::Value>) -> Result<(), ArgumentError> {
    for name in ["success", "failure"] {
        if let Some(serde_json::Value::String(_)) = args.get(name) {
            return Err(ArgumentError {
                path: name.to_owned(),
                message: format!("a Python callable cannot run here: {NOT_A_CALLABLE}"),
            });
        }
    }
    let read = read_args::<SqlSensorArgs>(args)?;
    let sql = read.sql.trim();
    // Airflow reads a `sql` ending in .sql or .hql from a file beside the DAG (template_ext).
    let names_a_file =
        (sql.ends_with(".sql") || sql.ends_with(".hql")) && !sql.contains(char::is_whitespace);
    if names_a_file {
        return Err(ArgumentError {
            path: "sql".to_owned(),
            message: format!(
                "\"{sql}\" names a file; Gust does not read query files: write the query itself in `sql`"
            ),
        });
    }
    if sql.is_empty() {
        return Err(ArgumentError {
            path: "sql".to_owned(),
            message: "is empty: give the query to run".to_owned(),
        });
    }
    match &read.parameters {
        None
        | Some(
            serde_json::Value::Null | serde_json::Value::Object(_) | serde_json::Value::Array(_),
        ) => {}
        Some(other) => {
            return Err(ArgumentError {
                path: "parameters".to_owned(),
                message: format!("must be a map or a list, not {other}"),
            });
        }
    }
    check_cell("success", read.success.as_ref())?;
    check_cell("failure", read.failure.as_ref())?;
    read.settings.check()
}

/// `SqlSensor`.
pub static SPEC: OperatorSpec = OperatorSpec {
    name: "sql_sensor",
    aliases: &[
        "SqlSensor",
        "airflow.providers.common.sql.sensors.sql.SqlSensor",
        "airflow.sensors.sql.SqlSensor",
        "airflow.sensors.sql_sensor.SqlSensor",
    ],
    arguments: sensor_arguments!(
        "conn_id",
        "sql",
        "parameters",
        "success",
        "failure",
        "fail_on_empty",
        "hook_params"
    ),
    renamed_arguments: &[],
    required: &["conn_id", "sql"],
    pushes_xcom_by_default: true,
    holds_worker: false,
    open_arguments: false,
    check,
};

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(value: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
        value.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn arguments_default_as_airflow() {
        let args: SqlSensorArgs =
            read_args(&map(json!({"conn_id": "db", "sql": "select 1"}))).unwrap();
        assert!(!args.fail_on_empty);
        assert_eq!(args.success, None);
        assert!(check(&map(json!({"conn_id": "db", "sql": "select 1"}))).is_ok());
    }

    #[test]
    fn checks_are_checked_when_the_file_loads() {
        let with = |extra: serde_json::Value| {
            let mut args = map(json!({"conn_id": "db", "sql": "select 1"}));
            args.extend(map(extra));
            check(&args)
        };
        let callable = with(json!({"success": "checks.is_done"})).unwrap_err();
        assert_eq!(callable.path, "success");
        assert!(callable.message.contains("{value: done}"), "{callable}");
        assert!(with(json!({"failure": {}})).is_err());
        assert!(with(json!({"success": {"regex": "("}})).is_err());
        assert!(with(json!({"success": {"equals": 1}})).is_err());
        assert!(with(json!({"success": {"gt": "many"}})).is_err());
        assert!(with(json!({"parameters": "x"})).is_err());
        assert!(with(json!({"sql": "checks/partner.sql"})).is_err());
        assert!(
            with(json!({"success": {"gt": "{{ params.n }}", "null": false},
                        "failure": {"one_of": ["failed", -1]}, "parameters": {"n": 1}}))
            .is_ok()
        );
    }
}
