//! Typed readers for YAML values: each reads one node as a string, number, duration, date...
//! and on a mismatch returns a [`Diagnostic`] at the node saying what was expected.
//!
//! The DAG and task are added by the caller, which knows them.

use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use gust_core::date::{self, DatetimeParts};
use gust_core::duration::{self, TimedeltaParts};

use crate::diagnostic::Diagnostic;
use crate::location::Location;
use crate::yaml::{Mapping, Node, Value};

/// A reader's result: the value, or the problem at the node.
pub type Read<T> = Result<T, Diagnostic>;

fn expected(node: &Node, key: &str, what: &str) -> Diagnostic {
    Diagnostic::new(
        node.at.clone(),
        format!("\"{key}\" must be {what}, not {}", node.kind()),
    )
}

/// A string (numbers and booleans are refused: quote them if text is meant).
pub fn string(node: &Node, key: &str) -> Read<String> {
    match &node.value {
        Value::Str(text) => Ok(text.clone()),
        _ => Err(expected(node, key, "a string")),
    }
}

/// A string, or `None` for null.
pub fn opt_string(node: &Node, key: &str) -> Read<Option<String>> {
    match &node.value {
        Value::Null => Ok(None),
        _ => string(node, key).map(Some),
    }
}

/// A boolean.
pub fn boolean(node: &Node, key: &str) -> Read<bool> {
    match &node.value {
        Value::Bool(b) => Ok(*b),
        Value::Str(text) if matches!(text.as_str(), "true" | "True" | "false" | "False") => {
            Ok(text.eq_ignore_ascii_case("true"))
        }
        _ => Err(expected(node, key, "true or false")),
    }
}

/// A whole number at least `min`.
pub fn integer(node: &Node, key: &str, min: i64) -> Read<i64> {
    let n = match &node.value {
        Value::Int(n) => *n,
        Value::Str(text) => text
            .trim()
            .parse()
            .map_err(|_| expected(node, key, "a whole number"))?,
        _ => return Err(expected(node, key, "a whole number")),
    };
    if n < min {
        return Err(Diagnostic::new(
            node.at.clone(),
            format!("\"{key}\" must be at least {min}, not {n}"),
        ));
    }
    Ok(n)
}

/// A whole number at least `min` that fits a `u32`.
pub fn count(node: &Node, key: &str, min: u32) -> Read<u32> {
    let n = integer(node, key, i64::from(min))?;
    u32::try_from(n)
        .map_err(|_| Diagnostic::new(node.at.clone(), format!("\"{key}\" is too large: {n}")))
}

/// A [`count`], or `None` for null.
pub fn opt_count(node: &Node, key: &str, min: u32) -> Read<Option<u32>> {
    match &node.value {
        Value::Null => Ok(None),
        _ => count(node, key, min).map(Some),
    }
}

/// A list of strings; a single string is a list of one, as Airflow accepts for `email`, `tags`...
pub fn string_list(node: &Node, key: &str) -> Read<Vec<String>> {
    match &node.value {
        Value::Null => Ok(Vec::new()),
        Value::Str(text) => Ok(vec![text.clone()]),
        Value::Seq(items) => items.iter().map(|item| string(item, key)).collect(),
        _ => Err(expected(node, key, "a string or a list of strings")),
    }
}

/// A map.
pub fn map<'a>(node: &'a Node, key: &str) -> Read<&'a Mapping> {
    node.as_map().ok_or_else(|| expected(node, key, "a map"))
}

/// A duration in any form dag-factory users write: seconds, `5m`, `1h30m`, `PT5M`, or
/// `{__type__: datetime.timedelta, ...}`. `key_is_seconds` is set for the `*_sec` spellings.
pub fn duration(node: &Node, key: &str) -> Read<Duration> {
    let result = match &node.value {
        Value::Int(n) => duration::duration_from_seconds(*n as f64),
        Value::Float(f) => duration::duration_from_seconds(*f),
        Value::Str(text) => duration::parse_duration(text),
        Value::Map(map) => return timedelta(node, map, key),
        _ => {
            return Err(expected(
                node,
                key,
                "a duration (300, \"5m\", \"1h30m\" or \"PT5M\")",
            ));
        }
    };
    result.map_err(|err| Diagnostic::new(node.at.clone(), format!("\"{key}\": {err}")))
}

/// A duration, or `None` for null.
pub fn opt_duration(node: &Node, key: &str) -> Read<Option<Duration>> {
    match node.value {
        Value::Null => Ok(None),
        _ => duration(node, key).map(Some),
    }
}

fn timedelta(node: &Node, map: &Mapping, key: &str) -> Read<Duration> {
    check_type_tag(map, "datetime.timedelta", key)?;
    let mut parts = TimedeltaParts::default();
    for (k, v) in map.iter() {
        let slot = match k.name.as_str() {
            "__type__" => continue,
            "weeks" => &mut parts.weeks,
            "days" => &mut parts.days,
            "hours" => &mut parts.hours,
            "minutes" => &mut parts.minutes,
            "seconds" => &mut parts.seconds,
            "milliseconds" => &mut parts.milliseconds,
            "microseconds" => &mut parts.microseconds,
            other => {
                return Err(Diagnostic::new(
                    k.at.clone(),
                    format!("unknown timedelta field \"{other}\""),
                )
                .with_hint(
                    "use weeks, days, hours, minutes, seconds, milliseconds or microseconds",
                ));
            }
        };
        *slot = number(v, &k.name)?;
    }
    duration::duration_from_timedelta(&parts)
        .map_err(|err| Diagnostic::new(node.at.clone(), format!("\"{key}\": {err}")))
}

fn number(node: &Node, key: &str) -> Read<f64> {
    match node.value {
        Value::Int(n) => Ok(n as f64),
        Value::Float(f) => Ok(f),
        _ => Err(expected(node, key, "a number")),
    }
}

/// Checks a `__type__` key, when present, names `want`.
pub fn check_type_tag(map: &Mapping, want: &str, key: &str) -> Read<()> {
    match map.get("__type__") {
        None => Ok(()),
        Some(tag) => match tag.as_str() {
            Some(t) if t == want => Ok(()),
            _ => Err(Diagnostic::new(
                tag.at.clone(),
                format!(
                    "\"{key}\" must be a {want}, not {}",
                    tag.as_str().unwrap_or(tag.kind())
                ),
            )),
        },
    }
}

/// A point in time: a date, an RFC 3339 time, `{__type__: datetime.datetime, ...}` or one of
/// dag-factory's relative start dates (`2 days`: two days before `now`, at midnight).
pub fn datetime(node: &Node, key: &str, tz: Tz, now: DateTime<Utc>) -> Read<DateTime<Utc>> {
    let fail = |err: date::DateError| Diagnostic::new(node.at.clone(), format!("\"{key}\": {err}"));
    match &node.value {
        Value::Str(text) => match date::parse_relative_start(text, now, tz).map_err(fail)? {
            Some(when) => Ok(when),
            None => date::parse_datetime(text, tz).map_err(fail),
        },
        Value::Map(map) => {
            check_type_tag(map, "datetime.datetime", key)?;
            let mut parts = DatetimeParts {
                month: 1,
                day: 1,
                ..DatetimeParts::default()
            };
            for (k, v) in map.iter() {
                match k.name.as_str() {
                    "__type__" => {}
                    "year" => {
                        parts.year = i32::try_from(integer(v, "year", 1)?).unwrap_or(i32::MAX)
                    }
                    "month" => parts.month = count(v, "month", 1)?,
                    "day" => parts.day = count(v, "day", 1)?,
                    "hour" => parts.hour = count(v, "hour", 0)?,
                    "minute" => parts.minute = count(v, "minute", 0)?,
                    "second" => parts.second = count(v, "second", 0)?,
                    "microsecond" => parts.microsecond = count(v, "microsecond", 0)?,
                    "tzinfo" => parts.tzinfo = opt_string(v, "tzinfo")?,
                    other => {
                        return Err(Diagnostic::new(
                            k.at.clone(),
                            format!("unknown datetime field \"{other}\""),
                        )
                        .with_hint(
                            "use year, month, day, hour, minute, second, microsecond or tzinfo",
                        ));
                    }
                }
            }
            date::datetime_from_parts(&parts, tz).map_err(fail)
        }
        _ => Err(expected(
            node,
            key,
            "a date (2024-01-01), a time (2024-01-01T06:00:00Z) or a relative start (\"2 days\")",
        )),
    }
}

/// One entry of a list-or-map section (`tasks`, `task_groups`): its name, place and keys.
pub struct NamedEntry<'a> {
    /// The name: the map key, or the entry's `id_key` value.
    pub name: String,
    /// Where the entry starts.
    pub at: Location,
    /// Its keys.
    pub fields: &'a Mapping,
}

/// Reads a section written in either of dag-factory's forms: a map keyed by name, or a list of
/// maps each naming itself with `id_key`. `what` is the section's key, for messages.
pub fn named_entries<'a>(
    node: &'a Node,
    what: &str,
    id_key: &str,
    problems: &mut Vec<Diagnostic>,
) -> Vec<NamedEntry<'a>> {
    match &node.value {
        Value::Null => Vec::new(),
        Value::Map(map) => map
            .iter()
            .filter_map(|(key, value)| match self::map(value, &key.name) {
                Ok(fields) => Some(NamedEntry {
                    name: key.name.clone(),
                    at: key.at.clone(),
                    fields,
                }),
                Err(problem) => {
                    problems.push(problem);
                    None
                }
            })
            .collect(),
        Value::Seq(items) => items
            .iter()
            .filter_map(|item| {
                let fields = self::map(item, what).map_err(|p| problems.push(p)).ok()?;
                let Some(id) = fields.get(id_key) else {
                    problems.push(
                        Diagnostic::new(
                            item.at.clone(),
                            format!("entry of \"{what}\" has no {id_key}"),
                        )
                        .with_hint(format!("add `{id_key}: NAME` to the entry")),
                    );
                    return None;
                };
                let name = string(id, id_key).map_err(|p| problems.push(p)).ok()?;
                Some(NamedEntry {
                    name,
                    at: item.at.clone(),
                    fields,
                })
            })
            .collect(),
        _ => {
            problems.push(Diagnostic::new(
                node.at.clone(),
                format!("\"{what}\" must be a map keyed by name or a list of entries with {id_key}, not {}", node.kind()),
            ));
            Vec::new()
        }
    }
}
