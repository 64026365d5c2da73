//! Template objects that behave as Airflow's do: datetimes that print like Python's and have
//! `.strftime()`, the task instance with `xcom_pull`, `var.value`/`var.json`, and `macros`.

use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, Timelike, Utc};
use minijinja::value::{Kwargs, Object, ObjectRepr, Value, from_args};
use minijinja::{Error, ErrorKind, State};

use crate::lookup::RuntimeLookup;

/// `2024-01-01T00:00:00+00:00`, as Python's `isoformat()` prints an aware UTC datetime.
pub(crate) fn iso(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.f")
        .to_string()
        .trim_end_matches(".")
        .to_owned()
        + "+00:00"
}

fn invalid(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidOperation, message.into())
}

/// A datetime in a template: prints as Python's `str(datetime)`.
#[derive(Debug, Clone, Copy)]
pub struct DateTimeValue(pub DateTime<Utc>);

impl DateTimeValue {
    /// The datetime as a template value.
    pub fn value(t: DateTime<Utc>) -> Value {
        Value::from_object(DateTimeValue(t))
    }

    /// The datetime a value holds: one of ours, or text in RFC 3339 or `YYYY-MM-DD` form.
    pub fn from_value(value: &Value) -> Option<DateTime<Utc>> {
        if let Some(ours) = value.downcast_object_ref::<DateTimeValue>() {
            return Some(ours.0);
        }
        let text = value.as_str()?;
        DateTime::parse_from_rfc3339(text)
            .map(|t| t.with_timezone(&Utc))
            .ok()
            .or_else(|| {
                NaiveDate::parse_from_str(text, "%Y-%m-%d")
                    .ok()
                    .map(|d| d.and_time(chrono::NaiveTime::MIN).and_utc())
            })
    }
}

impl Object for DateTimeValue {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let t = self.0;
        Some(Value::from(match key.as_str()? {
            "year" => t.year(),
            "month" => t.month() as i32,
            "day" => t.day() as i32,
            "hour" => t.hour() as i32,
            "minute" => t.minute() as i32,
            "second" => t.second() as i32,
            _ => return None,
        }))
    }

    fn call_method(
        self: &Arc<Self>,
        _state: &State<'_, '_>,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        match method {
            "strftime" => {
                let (format,): (&str,) = from_args(args)?;
                strftime(self.0.naive_utc(), format)
            }
            "isoformat" => Ok(Value::from(iso(self.0))),
            "timestamp" => Ok(Value::from(self.0.timestamp())),
            "date" => Ok(Value::from(self.0.format("%Y-%m-%d").to_string())),
            _ => Err(Error::from(ErrorKind::UnknownMethod)),
        }
    }

    fn render(self: &Arc<Self>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.0.format("%Y-%m-%d %H:%M:%S%.f").to_string();
        write!(f, "{}+00:00", text.trim_end_matches('.'))
    }
}

/// Formats with Python's strftime codes (chrono's are compatible for the common ones).
fn strftime(t: NaiveDateTime, format: &str) -> Result<Value, Error> {
    use std::fmt::Write as _;
    let mut out = String::new();
    write!(out, "{}", t.format(format))
        .map_err(|_| invalid(format!("invalid date format \"{format}\"")))?;
    Ok(Value::from(out))
}

/// `ti` / `task_instance`.
pub(crate) struct TaskInstance {
    pub dag_id: String,
    pub task_id: String,
    pub run_id: String,
    pub try_number: u32,
    pub lookup: Arc<dyn RuntimeLookup>,
}

impl fmt::Debug for TaskInstance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "<TaskInstance: {}.{} {} [try {}]>",
            self.dag_id, self.task_id, self.run_id, self.try_number
        )
    }
}

impl Object for TaskInstance {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        Some(match key.as_str()? {
            "dag_id" => Value::from(self.dag_id.clone()),
            "task_id" => Value::from(self.task_id.clone()),
            "run_id" => Value::from(self.run_id.clone()),
            "try_number" => Value::from(self.try_number),
            _ => return None,
        })
    }

    fn call_method(
        self: &Arc<Self>,
        _state: &State<'_, '_>,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        if method != "xcom_pull" {
            return Err(Error::from(ErrorKind::UnknownMethod));
        }
        let (positional, kwargs): (Option<Value>, Kwargs) = from_args(args)?;
        let task_ids: Option<Value> = match positional {
            Some(ids) => Some(ids),
            None => kwargs.get("task_ids")?,
        };
        let key: Option<String> = kwargs.get("key")?;
        let default: Option<Value> = kwargs.get("default")?;
        kwargs.assert_all_used()?;
        let key = key.unwrap_or_else(|| "return_value".to_owned());
        let pull = |task: &str| {
            self.lookup
                .xcom(task, &key)
                .map(Value::from_serialize)
                .or_else(|| default.clone())
                .unwrap_or(Value::from(()))
        };
        match task_ids {
            None => Err(invalid(
                "xcom_pull needs task_ids, e.g. ti.xcom_pull(task_ids='extract')",
            )),
            Some(ids) if ids.as_str().is_some() => Ok(pull(ids.as_str().unwrap_or_default())),
            Some(ids) => {
                let mut values = Vec::new();
                for id in ids.try_iter()? {
                    let id = id
                        .as_str()
                        .ok_or_else(|| invalid("task_ids must be a task id or a list of task ids"))?
                        .to_owned();
                    values.push(pull(&id));
                }
                Ok(Value::from(values))
            }
        }
    }
}

/// `var`: `var.value.NAME`, `var.json.NAME`, and `.get(NAME, default)` on both.
#[derive(Clone)]
pub(crate) struct Variables {
    pub lookup: Arc<dyn RuntimeLookup>,
}

impl fmt::Debug for Variables {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<variables>")
    }
}

impl Object for Variables {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let json = match key.as_str()? {
            "value" => false,
            "json" => true,
            _ => return None,
        };
        Some(Value::from_object(VariableAccessor {
            lookup: Arc::clone(&self.lookup),
            json,
        }))
    }
}

/// `var.value` or `var.json`.
pub(crate) struct VariableAccessor {
    lookup: Arc<dyn RuntimeLookup>,
    json: bool,
}

impl fmt::Debug for VariableAccessor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.json {
            "<var.json>"
        } else {
            "<var.value>"
        })
    }
}

impl VariableAccessor {
    fn read(&self, name: &str) -> Result<Option<Value>, Error> {
        let Some(text) = self.lookup.variable(name) else {
            return Ok(None);
        };
        if !self.json {
            return Ok(Some(Value::from(text)));
        }
        serde_json::from_str::<serde_json::Value>(&text)
            .map(|v| Some(Value::from_serialize(v)))
            .map_err(|err| invalid(format!("variable \"{name}\" is not valid JSON: {err}")))
    }
}

impl Object for VariableAccessor {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        // A JSON error cannot be raised from an attribute lookup; it surfaces as undefined and
        // `.get()` reports it in full.
        self.read(key.as_str()?).ok().flatten()
    }

    fn call_method(
        self: &Arc<Self>,
        _state: &State<'_, '_>,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        if method != "get" {
            return Err(Error::from(ErrorKind::UnknownMethod));
        }
        let (name, default): (&str, Option<Value>) = from_args(args)?;
        match self.read(name)? {
            Some(value) => Ok(value),
            None => default.ok_or_else(|| invalid(format!("variable \"{name}\" is not set"))),
        }
    }
}

/// `macros`: Airflow's date helpers.
#[derive(Debug)]
pub(crate) struct Macros;

impl Object for Macros {
    fn call_method(
        self: &Arc<Self>,
        _state: &State<'_, '_>,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        match method {
            "ds_add" => {
                let (ds, days): (&str, i64) = from_args(args)?;
                let date = parse_ds(ds)?;
                let shifted = chrono::Duration::try_days(days)
                    .and_then(|d| date.checked_add_signed(d))
                    .ok_or_else(|| invalid(format!("ds_add({ds}, {days}) is out of range")))?;
                Ok(Value::from(shifted.format("%Y-%m-%d").to_string()))
            }
            "ds_format" => {
                let (ds, input, output): (&str, &str, &str) = from_args(args)?;
                let parsed = NaiveDateTime::parse_from_str(ds, input)
                    .or_else(|_| {
                        NaiveDate::parse_from_str(ds, input)
                            .map(|d| d.and_time(chrono::NaiveTime::MIN))
                    })
                    .map_err(|_| {
                        invalid(format!("ds_format: \"{ds}\" does not match \"{input}\""))
                    })?;
                strftime(parsed, output)
            }
            _ => Err(Error::from(ErrorKind::UnknownMethod)),
        }
    }
}

fn parse_ds(ds: &str) -> Result<NaiveDate, Error> {
    NaiveDate::parse_from_str(ds, "%Y-%m-%d")
        .map_err(|_| invalid(format!("\"{ds}\" is not a date (YYYY-MM-DD)")))
}

/// Airflow's date filters: `{{ logical_date | ds }}` and friends.
pub(crate) fn add_filters(env: &mut minijinja::Environment<'static>) {
    fn filter(
        format: &'static str,
    ) -> impl Fn(&Value) -> Result<String, Error> + Send + Sync + 'static {
        move |value: &Value| {
            let t = DateTimeValue::from_value(value)
                .ok_or_else(|| invalid(format!("{value} is not a date or datetime")))?;
            Ok(if format == "iso" {
                iso(t)
            } else {
                t.format(format).to_string()
            })
        }
    }
    env.add_filter("ds", filter("%Y-%m-%d"));
    env.add_filter("ds_nodash", filter("%Y%m%d"));
    env.add_filter("ts", filter("iso"));
    env.add_filter("ts_nodash", filter("%Y%m%dT%H%M%S"));
    env.add_filter("ts_nodash_with_tz", filter("%Y%m%dT%H%M%S%z"));
}
