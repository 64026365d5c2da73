//! Template objects that behave as Airflow's do: datetimes that print like Python's and have
//! `.strftime()`, the task instance with `xcom_pull`, `var.value`/`var.json`, and `macros`.

use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, Timelike, Utc};
use minijinja::value::{Kwargs, Object, ObjectRepr, Value, from_args};
use minijinja::{Error, ErrorKind, State};

use crate::date_math;
use crate::lookup::RuntimeLookup;

/// `2024-01-01T00:00:00+00:00`, as Python's `isoformat()` prints an aware UTC datetime.
pub(crate) fn iso(t: DateTime<Utc>) -> String {
    DateTimeValue::aware(t).isoformat('T')
}

pub(crate) fn invalid(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidOperation, message.into())
}

/// A datetime in a template: prints as Python's `str(datetime)`. Airflow's context dates are
/// aware (UTC); `macros.datetime(...)` and `strptime` make naive ones, as Python does.
#[derive(Debug, Clone, Copy)]
pub struct DateTimeValue {
    /// The wall time (UTC for aware values).
    pub at: NaiveDateTime,
    /// Whether it is aware (UTC), printed with `+00:00`.
    pub utc: bool,
}

impl DateTimeValue {
    /// An aware UTC datetime.
    pub fn aware(t: DateTime<Utc>) -> Self {
        Self {
            at: t.naive_utc(),
            utc: true,
        }
    }

    /// The aware datetime as a template value.
    pub fn value(t: DateTime<Utc>) -> Value {
        Value::from_object(Self::aware(t))
    }

    /// A naive datetime as a template value.
    pub fn naive(at: NaiveDateTime) -> Value {
        Value::from_object(Self { at, utc: false })
    }

    /// The datetime a value holds: one of ours (naive ones taken as UTC), or text in RFC 3339
    /// or `YYYY-MM-DD` form.
    pub fn from_value(value: &Value) -> Option<DateTime<Utc>> {
        if let Some(ours) = value.downcast_object_ref::<DateTimeValue>() {
            return Some(ours.at.and_utc());
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

    /// Another time, as aware or naive as this one.
    fn with(&self, at: NaiveDateTime) -> Value {
        Value::from_object(Self { at, utc: self.utc })
    }

    /// Python's `isoformat(sep)`: microseconds only when there are some, `+00:00` when aware.
    fn isoformat(&self, sep: char) -> String {
        let micros = self.at.nanosecond() / 1_000;
        let mut out = self
            .at
            .format(&format!("%Y-%m-%d{sep}%H:%M:%S"))
            .to_string();
        if micros != 0 {
            out.push_str(&format!(".{micros:06}"));
        }
        if self.utc {
            out.push_str("+00:00");
        }
        out
    }
}

impl Object for DateTimeValue {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let t = self.at;
        Some(Value::from(match key.as_str()? {
            "year" => t.year(),
            "month" => t.month() as i32,
            "day" => t.day() as i32,
            "hour" => t.hour() as i32,
            "minute" => t.minute() as i32,
            "second" => t.second() as i32,
            "microsecond" => (t.nanosecond() / 1_000) as i32,
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
                strftime(self.at, format, self.utc)
            }
            "isoformat" => {
                let (sep,): (Option<&str>,) = from_args(args)?;
                let sep = sep.and_then(|s| s.chars().next()).unwrap_or('T');
                Ok(Value::from(self.isoformat(sep)))
            }
            "timestamp" => Ok(Value::from(self.at.and_utc().timestamp())),
            "date" => Ok(Value::from(self.at.format("%Y-%m-%d").to_string())),
            "weekday" => Ok(Value::from(self.at.weekday().num_days_from_monday())),
            "isoweekday" => Ok(Value::from(self.at.weekday().number_from_monday())),
            "replace" => Ok(self.with(date_math::replace(self.at, args)?)),
            // pendulum's methods: only the context's dates are pendulum DateTimes in Airflow;
            // `macros.datetime(...)` makes a plain Python datetime, which lacks them.
            "add" if self.utc => Ok(self.with(date_math::shift(self.at, method, 1, args)?)),
            "subtract" if self.utc => Ok(self.with(date_math::shift(self.at, method, -1, args)?)),
            "start_of" if self.utc => Ok(self.with(date_math::boundary(self.at, false, args)?)),
            "end_of" if self.utc => Ok(self.with(date_math::boundary(self.at, true, args)?)),
            _ => Err(Error::from(ErrorKind::UnknownMethod)),
        }
    }

    fn render(self: &Arc<Self>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.isoformat(' '))
    }
}

/// Formats with Python's strftime codes. chrono's agree for all but `%f` (Python: six digits of
/// microseconds) and `%z`/`%Z` of a naive datetime (Python: empty).
pub(crate) fn strftime(t: NaiveDateTime, format: &str, utc: bool) -> Result<Value, Error> {
    use std::fmt::Write as _;
    let mut chrono_format = String::with_capacity(format.len());
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            chrono_format.push(c);
            continue;
        }
        match chars.next() {
            Some('f') => chrono_format.push_str("%6f"),
            Some('z' | 'Z') if !utc => {}
            Some(other) => {
                chrono_format.push('%');
                chrono_format.push(other);
            }
            None => chrono_format.push('%'),
        }
    }
    let mut out = String::new();
    let formatted = if utc {
        write!(out, "{}", t.and_utc().format(&chrono_format))
    } else {
        write!(out, "{}", t.format(&chrono_format))
    };
    formatted.map_err(|_| invalid(format!("invalid date format \"{format}\"")))?;
    Ok(Value::from(out))
}

/// Python's `datetime.strptime`: the text must match the whole format; fields the format
/// lacks default to 1900-01-01 00:00:00.
pub(crate) fn strptime(text: &str, format: &str) -> Result<NaiveDateTime, Error> {
    use chrono::format::{Parsed, StrftimeItems, parse};
    let mismatch = || invalid(format!("\"{text}\" does not match the format \"{format}\""));
    let mut parsed = Parsed::new();
    parse(&mut parsed, text, StrftimeItems::new(format)).map_err(|_| mismatch())?;
    if parsed.year().is_none() && parsed.year_mod_100().is_none() && parsed.isoyear().is_none() {
        parsed.set_year(1900).map_err(|_| mismatch())?;
    }
    let dated_otherwise = parsed.ordinal().is_some()
        || parsed.isoweek().is_some()
        || parsed.week_from_mon().is_some()
        || parsed.week_from_sun().is_some();
    if !dated_otherwise {
        if parsed.month().is_none() {
            parsed.set_month(1).map_err(|_| mismatch())?;
        }
        if parsed.day().is_none() {
            parsed.set_day(1).map_err(|_| mismatch())?;
        }
    }
    if parsed.hour_mod_12().is_none() {
        parsed.set_hour(0).map_err(|_| mismatch())?;
    } else if parsed.hour_div_12().is_none() {
        parsed.set_ampm(false).map_err(|_| mismatch())?;
    }
    if parsed.minute().is_none() {
        parsed.set_minute(0).map_err(|_| mismatch())?;
    }
    parsed
        .to_naive_datetime_with_offset(0)
        .map_err(|_| mismatch())
}

/// `ti` / `task_instance`.
pub(crate) struct TaskInstance {
    pub dag_id: String,
    pub task_id: String,
    pub run_id: String,
    pub try_number: u32,
    pub map_index: i32,
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
            "map_index" => Value::from(self.map_index),
            _ => return None,
        })
    }

    fn call_method(
        self: &Arc<Self>,
        _state: &State<'_, '_>,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        match method {
            "xcom_pull" => self.xcom_pull(args),
            "xcom_push" => self.xcom_push(args),
            _ => Err(Error::from(ErrorKind::UnknownMethod)),
        }
    }
}

impl TaskInstance {
    /// `ti.xcom_push(key, value)`: kept for the try being rendered (see
    /// [`RuntimeLookup::push_xcom`]); it renders as Python's `None`, what Airflow's returns.
    fn xcom_push(&self, args: &[Value]) -> Result<Value, Error> {
        let (key, value, kwargs): (Option<String>, Option<Value>, Kwargs) = from_args(args)?;
        let key = match key {
            Some(key) => key,
            None => kwargs.get::<Option<String>>("key")?.ok_or_else(|| {
                invalid("xcom_push needs a key, e.g. ti.xcom_push(key='k', value=1)")
            })?,
        };
        let value = match value {
            Some(value) => value,
            None => kwargs.get::<Option<Value>>("value")?.ok_or_else(|| {
                invalid("xcom_push needs a value, e.g. ti.xcom_push(key='k', value=1)")
            })?,
        };
        kwargs.assert_all_used()?;
        let value = serde_json::to_value(&value)
            .map_err(|err| invalid(format!("XCom \"{key}\" is not a JSON value: {err}")))?;
        self.lookup.push_xcom(&key, value);
        Ok(Value::from(()))
    }

    /// `ti.xcom_pull(task_ids, key=..., default=...)`: the run's XComs. Airflow's `dag_id`
    /// and `run_id` may name this run's own; `include_prior_dates` may be false.
    fn xcom_pull(&self, args: &[Value]) -> Result<Value, Error> {
        let (positional, kwargs): (Option<Value>, Kwargs) = from_args(args)?;
        let task_ids: Option<Value> = match positional {
            Some(ids) => Some(ids),
            None => kwargs.get("task_ids")?,
        };
        let key: Option<String> = kwargs.get("key")?;
        let default: Option<Value> = kwargs.get("default")?;
        let other_dag = kwargs
            .get::<Option<String>>("dag_id")?
            .filter(|dag_id| *dag_id != self.dag_id);
        let other_run = kwargs
            .get::<Option<String>>("run_id")?
            .filter(|run_id| *run_id != self.run_id);
        let prior_dates = kwargs
            .get::<Option<bool>>("include_prior_dates")?
            .unwrap_or(false);
        kwargs.assert_all_used()?;
        if let Some(dag_id) = other_dag {
            return Err(invalid(format!(
                "xcom_pull reads the XComs of this run of DAG {} only, not of DAG {dag_id}",
                self.dag_id
            )));
        }
        if let Some(run_id) = other_run {
            return Err(invalid(format!(
                "xcom_pull reads the XComs of this run ({}) only, not of run {run_id}",
                self.run_id
            )));
        }
        if prior_dates {
            return Err(invalid(
                "xcom_pull reads the XComs of this run only: include_prior_dates=True is not supported",
            ));
        }
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
    env.add_filter("tojson", tojson);
    env.add_filter("ds", filter("%Y-%m-%d"));
    env.add_filter("ds_nodash", filter("%Y%m%d"));
    env.add_filter("ts", filter("iso"));
    env.add_filter("ts_nodash", filter("%Y%m%dT%H%M%S"));
    env.add_filter("ts_nodash_with_tz", filter("%Y%m%dT%H%M%S%z"));
}

/// Jinja's `tojson` as Airflow renders it: Python's `json.dumps` with sorted keys (`", "` and
/// `": "` between items, non-ASCII escaped; with `indent`, one item a line), then `<`, `>`,
/// `&` and `'` escaped as Jinja's `htmlsafe_json_dumps` does.
fn tojson(value: &Value, indent: Option<usize>, kwargs: Kwargs) -> Result<Value, Error> {
    let indent = match indent {
        Some(width) => Some(width),
        None => kwargs.get::<Option<usize>>("indent")?,
    };
    kwargs.assert_all_used()?;
    let json = serde_json::to_value(value)
        .map_err(|err| invalid(format!("tojson: not a JSON value: {err}")))?;
    let out = match indent {
        None => {
            let mut out = String::new();
            crate::macros::python_dumps(&json, true, &mut out);
            out
        }
        Some(width) => {
            let spaces = " ".repeat(width);
            let formatter = serde_json::ser::PrettyFormatter::with_indent(spaces.as_bytes());
            let mut bytes = Vec::new();
            let mut serializer = serde_json::Serializer::with_formatter(&mut bytes, formatter);
            serde::Serialize::serialize(&sorted(json), &mut serializer)
                .map_err(|err| invalid(format!("tojson: {err}")))?;
            String::from_utf8_lossy(&bytes).into_owned()
        }
    };
    let safe = out
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
        .replace('\'', "\\u0027");
    Ok(Value::from_safe_string(safe))
}

/// `value` with every object's keys in order, as `sort_keys=True` writes them.
fn sorted(value: serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::Object(map) => {
            let mut entries: Vec<_> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            serde_json::Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        serde_json::Value::Array(items) => {
            serde_json::Value::Array(items.into_iter().map(sorted).collect())
        }
        other => other,
    }
}
