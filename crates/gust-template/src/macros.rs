//! `macros`: what Airflow's `macros` module offers templates (`airflow.sdk.execution_time.macros`),
//! as far as minijinja can hold it: `ds_add`, `ds_format`, `datetime`, `timedelta`, `random`,
//! `uuid` and `json`. Airflow's Python is the reference for every printed form.
//!
//! Python modules become objects here: `macros.datetime(2024, 1, 2)`, `macros.datetime.now()`,
//! `macros.uuid.uuid4().hex`, `macros.json.dumps(x)`. Date arithmetic with `+`/`-` is not
//! available (minijinja has no operators on objects); `macros.ds_add` and the dates' own
//! methods (`crate::date_math`: `.add(days=1)`, `.subtract(...)`, `.replace(...)`) cover it.

use std::fmt;
use std::sync::Arc;

use chrono::{NaiveDate, NaiveDateTime, NaiveTime, TimeDelta};
use minijinja::value::{Kwargs, Object, ObjectRepr, Rest, Value, from_args};
use minijinja::{Error, ErrorKind, State};

use crate::objects::{DateTimeValue, invalid, strftime, strptime};

/// `macros`.
#[derive(Debug)]
pub(crate) struct Macros;

impl Object for Macros {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        Some(match key.as_str()? {
            "datetime" => Value::from_object(DateTimeClass),
            "timedelta" => Value::from_object(TimeDeltaClass),
            "random" => Value::from_object(Random),
            "uuid" => Value::from_object(UuidModule),
            "json" => Value::from_object(JsonModule),
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
            "ds_add" => {
                let (ds, days): (Value, Value) = from_args(args)?;
                ds_add(&ds.to_string(), &days).map(Value::from)
            }
            "ds_format" => {
                let (ds, input, output): (Value, &str, &str) = from_args(args)?;
                strftime(strptime(&ds.to_string(), input)?, output, false)
            }
            _ => Err(Error::from(ErrorKind::UnknownMethod)),
        }
    }
}

/// Airflow's `ds_add`: zero days give `ds` back untouched; days may be negative or fractional
/// (Python adds `timedelta(days=days)` to midnight and keeps the date).
fn ds_add(ds: &str, days: &Value) -> Result<String, Error> {
    let days = f64::try_from(days.clone())
        .map_err(|_| invalid(format!("ds_add: days must be a number, not {days}")))?;
    if days == 0.0 {
        return Ok(ds.to_owned());
    }
    let date = NaiveDate::parse_from_str(ds, "%Y-%m-%d")
        .map_err(|_| invalid(format!("ds_add: \"{ds}\" is not a date (YYYY-MM-DD)")))?;
    let micros = days * 86_400_000_000.0;
    let shifted = (micros.is_finite() && micros.abs() < 1e17)
        .then(|| TimeDelta::microseconds(micros as i64))
        .and_then(|d| date.and_time(NaiveTime::MIN).checked_add_signed(d))
        .ok_or_else(|| invalid(format!("ds_add({ds}, {days}) is out of range")))?;
    Ok(shifted.format("%Y-%m-%d").to_string())
}

/// Reads Python-style arguments: positional in `names` order, then keywords by name.
pub(crate) fn python_args(
    what: &str,
    args: &[Value],
    names: &[&str],
) -> Result<Vec<Option<Value>>, Error> {
    let (positional, kwargs): (Rest<Value>, Kwargs) = from_args(args)?;
    if positional.len() > names.len() {
        return Err(invalid(format!(
            "{what} takes at most {} arguments",
            names.len()
        )));
    }
    let mut out: Vec<Option<Value>> = vec![None; names.len()];
    for (slot, value) in out.iter_mut().zip(positional.iter()) {
        *slot = Some(value.clone());
    }
    for (slot, name) in out.iter_mut().zip(names) {
        if let Some(value) = kwargs.get::<Option<Value>>(name)? {
            if slot.is_some() {
                return Err(invalid(format!("{what} got \"{name}\" twice")));
            }
            *slot = Some(value);
        }
    }
    kwargs.assert_all_used()?;
    Ok(out)
}

fn number(what: &str, name: &str, value: Option<&Value>) -> Result<f64, Error> {
    match value {
        None => Ok(0.0),
        Some(v) => f64::try_from(v.clone())
            .map_err(|_| invalid(format!("{what}: {name} must be a number, not {v}"))),
    }
}

/// `macros.datetime`: Python's `datetime` class. Calling it makes a naive datetime.
#[derive(Debug)]
struct DateTimeClass;

impl Object for DateTimeClass {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }

    fn call(self: &Arc<Self>, _state: &State<'_, '_>, args: &[Value]) -> Result<Value, Error> {
        const NAMES: [&str; 7] = [
            "year",
            "month",
            "day",
            "hour",
            "minute",
            "second",
            "microsecond",
        ];
        let values = python_args("datetime()", args, &NAMES)?;
        let mut fields = [0_i64; 7];
        for ((field, value), name) in fields.iter_mut().zip(&values).zip(NAMES) {
            *field = match value {
                Some(v) => i64::try_from(v.clone()).map_err(|_| {
                    invalid(format!("datetime(): {name} must be an integer, not {v}"))
                })?,
                None if name == "year" || name == "month" || name == "day" => {
                    return Err(invalid(format!("datetime() needs {name}")));
                }
                None => 0,
            };
        }
        let [year, month, day, hour, minute, second, micro] = fields;
        let out_of_range = || invalid("datetime(): a field is out of range");
        let date = NaiveDate::from_ymd_opt(
            i32::try_from(year).map_err(|_| out_of_range())?,
            u32::try_from(month).map_err(|_| out_of_range())?,
            u32::try_from(day).map_err(|_| out_of_range())?,
        )
        .ok_or_else(out_of_range)?;
        let time = NaiveTime::from_hms_micro_opt(
            u32::try_from(hour).map_err(|_| out_of_range())?,
            u32::try_from(minute).map_err(|_| out_of_range())?,
            u32::try_from(second).map_err(|_| out_of_range())?,
            u32::try_from(micro).map_err(|_| out_of_range())?,
        )
        .ok_or_else(out_of_range)?;
        Ok(DateTimeValue::naive(date.and_time(time)))
    }

    fn call_method(
        self: &Arc<Self>,
        _state: &State<'_, '_>,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        match method {
            // Python's `now()` and `utcnow()` are naive; this process runs in UTC as Airflow's
            // workers are expected to.
            "now" | "utcnow" | "today" => {
                let () = from_args(args)?;
                Ok(DateTimeValue::naive(wall_clock_now()))
            }
            "strptime" => {
                let (text, format): (&str, &str) = from_args(args)?;
                Ok(DateTimeValue::naive(strptime(text, format)?))
            }
            "fromisoformat" => {
                let (text,): (&str,) = from_args(args)?;
                if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
                    return Ok(DateTimeValue::value(t.with_timezone(&chrono::Utc)));
                }
                ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%d"]
                    .iter()
                    .find_map(|f| strptime(text, f).ok())
                    .map(DateTimeValue::naive)
                    .ok_or_else(|| invalid(format!("invalid isoformat string: \"{text}\"")))
            }
            _ => Err(Error::from(ErrorKind::UnknownMethod)),
        }
    }

    fn render(self: &Arc<Self>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<class 'datetime.datetime'>")
    }
}

/// The wall clock, for Python's `datetime.now()`: the one clock read in this crate, as it is in
/// Airflow's rendering.
#[allow(clippy::disallowed_methods)]
fn wall_clock_now() -> NaiveDateTime {
    chrono::Utc::now().naive_utc()
}

/// `macros.timedelta`: Python's `timedelta` class.
#[derive(Debug)]
struct TimeDeltaClass;

impl Object for TimeDeltaClass {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }

    fn call(self: &Arc<Self>, _state: &State<'_, '_>, args: &[Value]) -> Result<Value, Error> {
        const NAMES: [&str; 7] = [
            "days",
            "seconds",
            "microseconds",
            "milliseconds",
            "minutes",
            "hours",
            "weeks",
        ];
        const MICROS: [f64; 7] = [86_400e6, 1e6, 1.0, 1e3, 60e6, 3_600e6, 7.0 * 86_400e6];
        let values = python_args("timedelta()", args, &NAMES)?;
        let mut micros = 0.0;
        for ((value, name), unit) in values.iter().zip(NAMES).zip(MICROS) {
            micros += number("timedelta()", name, value.as_ref())? * unit;
        }
        // Python rounds to the nearest microsecond; 1e17 µs is past Python's own limit too.
        if !micros.is_finite() || micros.abs() > 1e17 {
            return Err(invalid("timedelta() is out of range"));
        }
        Ok(Value::from_object(TimeDeltaValue(micros.round() as i64)))
    }

    fn render(self: &Arc<Self>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<class 'datetime.timedelta'>")
    }
}

/// A duration in microseconds, printed and taken apart as Python's `timedelta`.
#[derive(Debug, Clone, Copy)]
struct TimeDeltaValue(i64);

impl TimeDeltaValue {
    const DAY: i64 = 86_400_000_000;

    /// Python's normal form: days (any sign), seconds in [0, 86400), microseconds in [0, 1e6).
    fn parts(self) -> (i64, i64, i64) {
        let days = self.0.div_euclid(Self::DAY);
        let rest = self.0.rem_euclid(Self::DAY);
        (days, rest / 1_000_000, rest % 1_000_000)
    }
}

impl Object for TimeDeltaValue {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let (days, seconds, micros) = self.parts();
        Some(Value::from(match key.as_str()? {
            "days" => days,
            "seconds" => seconds,
            "microseconds" => micros,
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
            "total_seconds" => {
                let () = from_args(args)?;
                Ok(Value::from(self.0 as f64 / 1e6))
            }
            _ => Err(Error::from(ErrorKind::UnknownMethod)),
        }
    }

    /// `1 day, 2:00:00`, `-1 day, 23:00:00`, `0:00:00.500000`, as Python prints them.
    fn render(self: &Arc<Self>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (days, seconds, micros) = self.parts();
        if days != 0 {
            let plural = if days.abs() == 1 { "" } else { "s" };
            write!(f, "{days} day{plural}, ")?;
        }
        write!(
            f,
            "{}:{:02}:{:02}",
            seconds / 3600,
            seconds % 3600 / 60,
            seconds % 60
        )?;
        if micros != 0 {
            write!(f, ".{micros:06}")?;
        }
        Ok(())
    }
}

/// `macros.random()`: Python's `random.random`, a float in [0, 1).
#[derive(Debug)]
struct Random;

impl Object for Random {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }

    fn call(self: &Arc<Self>, _state: &State<'_, '_>, args: &[Value]) -> Result<Value, Error> {
        let () = from_args(args)?;
        Ok(Value::from(rand::random::<f64>()))
    }
}

/// `macros.uuid`: Python's `uuid` module, with `uuid4()`.
#[derive(Debug)]
struct UuidModule;

impl Object for UuidModule {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }

    fn call_method(
        self: &Arc<Self>,
        _state: &State<'_, '_>,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        match method {
            "uuid4" => {
                let () = from_args(args)?;
                Ok(Value::from_object(UuidValue(uuid::Uuid::new_v4())))
            }
            _ => Err(Error::from(ErrorKind::UnknownMethod)),
        }
    }
}

/// A UUID: prints hyphenated, `.hex` without hyphens, as Python's `UUID`.
#[derive(Debug)]
struct UuidValue(uuid::Uuid);

impl Object for UuidValue {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        match key.as_str()? {
            "hex" => Some(Value::from(self.0.simple().to_string())),
            _ => None,
        }
    }

    fn render(self: &Arc<Self>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.hyphenated())
    }
}

/// `macros.json`: Python's `json` module, `dumps` and `loads`.
#[derive(Debug)]
struct JsonModule;

impl Object for JsonModule {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }

    fn call_method(
        self: &Arc<Self>,
        _state: &State<'_, '_>,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        match method {
            "dumps" => {
                let (value, kwargs): (Value, Kwargs) = from_args(args)?;
                let sort_keys: Option<bool> = kwargs.get("sort_keys")?;
                kwargs.assert_all_used()?;
                let json = serde_json::to_value(&value)
                    .map_err(|err| invalid(format!("json.dumps: {err}")))?;
                let mut out = String::new();
                python_dumps(&json, sort_keys.unwrap_or(false), &mut out);
                Ok(Value::from(out))
            }
            "loads" => {
                let (text,): (&str,) = from_args(args)?;
                serde_json::from_str::<serde_json::Value>(text)
                    .map(Value::from_serialize)
                    .map_err(|err| invalid(format!("json.loads: {err}")))
            }
            _ => Err(Error::from(ErrorKind::UnknownMethod)),
        }
    }
}

/// Python's `json.dumps` defaults: `", "` and `": "` separators, non-ASCII escaped.
pub(crate) fn python_dumps(value: &serde_json::Value, sort_keys: bool, out: &mut String) {
    use serde_json::Value as J;
    match value {
        J::String(s) => python_string(s, out),
        J::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                python_dumps(item, sort_keys, out);
            }
            out.push(']');
        }
        J::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            if sort_keys {
                entries.sort_by(|a, b| a.0.cmp(b.0));
            }
            out.push('{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                python_string(key, out);
                out.push_str(": ");
                python_dumps(item, sort_keys, out);
            }
            out.push('}');
        }
        J::Null | J::Bool(_) | J::Number(_) => out.push_str(&value.to_string()),
    }
}

/// A JSON string with Python's `ensure_ascii`: every non-ASCII character as `\uXXXX`.
fn python_string(s: &str, out: &mut String) {
    let escaped = serde_json::Value::String(s.to_owned()).to_string();
    for c in escaped.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0_u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
}
