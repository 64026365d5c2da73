//! The DAG setting `deadline` (Airflow 3.1's deadline alerts), one alert or a list, in the form
//! dag-factory passes to Airflow (`__type__` objects built with their keyword arguments):
//!
//! ```yaml
//! deadline:
//!   __type__: airflow.sdk.definitions.deadline.DeadlineAlert
//!   reference: {__type__: airflow.sdk.definitions.deadline.DagRunQueuedAtDeadline}
//!   interval: {__type__: datetime.timedelta, minutes: 15}
//!   callback:
//!     __type__: airflow.sdk.definitions.callback.AsyncCallback
//!     callback_callable: airflow.providers.slack.notifications.slack_webhook.SlackWebhookNotifier
//!     kwargs: {text: "{{ dag_run.dag_id }} is late"}
//! ```
//!
//! and in Gust's compact form: `reference: DAGRUN_QUEUED_AT` (or `DAGRUN_LOGICAL_DATE`,
//! `{fixed_datetime: ...}`, `{average_runtime: {max_runs: 10}}`), `interval: 15m`, and
//! `callback:` as any other callback setting (`{callback: PATH, ...arguments}`). Only the
//! notifiers Gust sends natively can be a deadline's callback.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use gust_core::deadline::{DeadlineAlert, DeadlineReference};
use gust_core::notify::{Notifier, NotifierKind};

use super::notifiers::with_arguments;
use super::values::{self, Read};
use crate::diagnostic::Diagnostic;
use crate::yaml::{Mapping, Node, Value};

const KEY: &str = "deadline";

/// Reads `deadline`: one alert or a list of them.
pub fn read_deadlines(node: &Node, tz: Tz, now: DateTime<Utc>) -> Read<Vec<DeadlineAlert>> {
    match &node.value {
        Value::Null => Ok(Vec::new()),
        Value::Seq(items) => items.iter().map(|item| alert(item, tz, now)).collect(),
        // dag-factory's typed list: `{__type__: builtins.list, items: [...]}`.
        Value::Map(map) if map.get("__type__").and_then(Node::as_str) == Some("builtins.list") => {
            match map.get("items") {
                Some(items) => read_deadlines(items, tz, now),
                None => Ok(Vec::new()),
            }
        }
        _ => Ok(vec![alert(node, tz, now)?]),
    }
}

/// A constructor's argument as dag-factory passes it: by keyword, or at `position` in
/// `__args__` (its positional arguments).
fn argument<'a>(map: &'a Mapping, name: &str, position: usize) -> Option<&'a Node> {
    map.get(name)
        .or_else(|| match map.get("__args__").map(|a| &a.value) {
            Some(Value::Seq(args)) => args.get(position),
            _ => None,
        })
}

/// The last part of a `__type__` tag, when the map has one.
fn type_name(map: &Mapping) -> Option<&str> {
    let tag = map.get("__type__")?.as_str()?;
    Some(tag.rsplit('.').next().unwrap_or(tag))
}

fn alert(node: &Node, tz: Tz, now: DateTime<Utc>) -> Read<DeadlineAlert> {
    let map = node.as_map().ok_or_else(|| {
        Diagnostic::new(
            node.at.clone(),
            format!(
                "\"{KEY}\" must be a deadline alert (a map of reference, interval and \
                 callback) or a list of them, not {}",
                node.kind()
            ),
        )
    })?;
    if let Some(name) = type_name(map)
        && name != "DeadlineAlert"
    {
        return Err(tag_error(
            node,
            map,
            "airflow.sdk.definitions.deadline.DeadlineAlert",
        ));
    }
    let mut name = None;
    let (mut reference, mut interval, mut notifiers) = (None, None, None);
    // DeadlineAlert(reference, interval, callback, name) given by position (`__args__`).
    let positional = ["reference", "interval", "callback", "name"]
        .into_iter()
        .enumerate()
        .filter(|(_, arg)| !map.contains(arg))
        .filter_map(|(at, arg)| argument(map, arg, at).map(|node| (arg, node)));
    let keywords = map
        .iter()
        .filter(|(k, _)| !matches!(k.name.as_str(), "__type__" | "__args__"))
        .map(|(k, node)| (k.name.as_str(), node));
    for (arg, value) in keywords.chain(positional) {
        match arg {
            "name" => name = values::opt_string(value, "deadline.name")?,
            "reference" => reference = Some(read_reference(value, tz, now)?),
            "interval" => interval = Some(values::duration(value, "deadline.interval")?),
            "callback" => notifiers = Some(read_callback(value)?),
            other => {
                let at = map.entry(other).map_or(&value.at, |(k, _)| &k.at);
                return Err(Diagnostic::new(
                    at.clone(),
                    format!("unknown deadline alert argument \"{other}\""),
                )
                .with_hint("a deadline alert takes reference, interval, callback and name"));
            }
        }
    }
    let missing = |what: &str| {
        Diagnostic::new(
            node.at.clone(),
            format!("\"{KEY}\" needs \"{what}\""),
        )
        .with_hint(
            "e.g. reference: DAGRUN_QUEUED_AT, interval: 15m, callback: {callback: webhook, url: ...}",
        )
    };
    Ok(DeadlineAlert {
        name,
        reference: reference.ok_or_else(|| missing("reference"))?,
        interval: interval.ok_or_else(|| missing("interval"))?,
        notifiers: notifiers.ok_or_else(|| missing("callback"))?,
    })
}

fn tag_error(node: &Node, map: &Mapping, want: &str) -> Diagnostic {
    let tag = map.get("__type__");
    Diagnostic::new(
        tag.map_or_else(|| node.at.clone(), |t| t.at.clone()),
        format!(
            "\"{KEY}\": expected a {want}, not {}",
            tag.and_then(Node::as_str).unwrap_or("?")
        ),
    )
}

const REFERENCE_HINT: &str = "use DAGRUN_QUEUED_AT, DAGRUN_LOGICAL_DATE, {fixed_datetime: \
    2025-01-01T06:00:00Z}, {average_runtime: {max_runs: 10, min_runs: 5}} or dag-factory's \
    {__type__: airflow.sdk.definitions.deadline.DagRunQueuedAtDeadline}";

fn read_reference(node: &Node, tz: Tz, now: DateTime<Utc>) -> Read<DeadlineReference> {
    let unknown = |what: &str| {
        Diagnostic::new(
            node.at.clone(),
            format!("\"{KEY}.reference\": unknown deadline reference {what}"),
        )
        .with_hint(REFERENCE_HINT)
    };
    match &node.value {
        Value::Str(text) => {
            let name = text.trim().trim_start_matches("DeadlineReference.");
            match name.to_ascii_uppercase().as_str() {
                "DAGRUN_QUEUED_AT" => Ok(DeadlineReference::DagRunQueuedAt),
                "DAGRUN_LOGICAL_DATE" => Ok(DeadlineReference::DagRunLogicalDate),
                _ => Err(unknown(&format!("\"{text}\""))),
            }
        }
        Value::Map(map) => match type_name(map) {
            Some("DagRunQueuedAtDeadline") => Ok(DeadlineReference::DagRunQueuedAt),
            Some("DagRunLogicalDateDeadline") => Ok(DeadlineReference::DagRunLogicalDate),
            Some("FixedDatetimeDeadline") => {
                let at = argument(map, "_datetime", 0)
                    .or_else(|| map.get("datetime"))
                    .ok_or_else(|| unknown("without its \"_datetime\""))?;
                let when = values::datetime(at, "deadline.reference._datetime", tz, now)?;
                Ok(DeadlineReference::FixedDatetime(when))
            }
            Some("AverageRuntimeDeadline") => average(map),
            Some(other) => Err(unknown(&format!("\"{other}\""))),
            None => {
                if let Some(at) = map.get("fixed_datetime") {
                    let key = "deadline.reference.fixed_datetime";
                    Ok(DeadlineReference::FixedDatetime(values::datetime(
                        at, key, tz, now,
                    )?))
                } else if let Some(args) = map.get("average_runtime") {
                    match &args.value {
                        Value::Null => average(&Mapping::default()),
                        _ => average(values::map(args, "deadline.reference.average_runtime")?),
                    }
                } else {
                    Err(unknown(
                        "(a map without __type__, fixed_datetime or average_runtime)",
                    ))
                }
            }
        },
        _ => Err(unknown(&format!("({})", node.kind()))),
    }
}

/// `AVERAGE_RUNTIME(max_runs=10, min_runs=max_runs)`, as Airflow defaults them.
fn average(map: &Mapping) -> Read<DeadlineReference> {
    let mut max_runs = 10;
    let mut min_runs = None;
    let positional = [("max_runs", 0), ("min_runs", 1)]
        .into_iter()
        .filter(|(name, _)| !map.contains(name))
        .filter_map(|(name, at)| argument(map, name, at).map(|node| (name, node)));
    let keywords = map
        .iter()
        .filter(|(k, _)| !matches!(k.name.as_str(), "__type__" | "__args__"))
        .map(|(k, node)| (k.name.as_str(), node));
    for (name, value) in keywords.chain(positional) {
        let key = map.entry(name).map(|(k, _)| k);
        match name {
            "max_runs" => {
                // Airflow reads 0 as its default of 10.
                let n = values::count(value, "max_runs", 0)?;
                max_runs = if n == 0 { 10 } else { n };
            }
            "min_runs" => min_runs = Some(values::count(value, "min_runs", 1)?),
            other => {
                return Err(Diagnostic::new(
                    key.map_or_else(|| value.at.clone(), |k| k.at.clone()),
                    format!("\"{KEY}.reference\": AVERAGE_RUNTIME takes no \"{other}\""),
                )
                .with_hint("it takes max_runs and min_runs"));
            }
        }
    }
    Ok(DeadlineReference::AverageRuntime {
        max_runs,
        min_runs: min_runs.unwrap_or(max_runs),
    })
}

/// A deadline's callback: Airflow's `AsyncCallback`/`SyncCallback` object, a callback setting's
/// `{callback: PATH, ...}`, a bare path, or a list of those; each must be a native notifier.
fn read_callback(node: &Node) -> Read<Vec<Notifier>> {
    match &node.value {
        Value::Seq(items) => items.iter().map(one_callback).collect(),
        _ => one_callback(node).map(|n| vec![n]),
    }
}

fn one_callback(node: &Node) -> Read<Notifier> {
    let key = "deadline.callback";
    match &node.value {
        Value::Str(path) => with_arguments(node, key, kind(node, path)?, std::iter::empty()),
        Value::Map(map) => match type_name(map) {
            Some("AsyncCallback" | "SyncCallback") => {
                // `executor` says where Airflow runs a SyncCallback; Gust sends it itself.
                if let Some((extra, _)) = map.iter().find(|(k, _)| {
                    !matches!(
                        k.name.as_str(),
                        "__type__" | "__args__" | "callback_callable" | "kwargs" | "executor"
                    )
                }) {
                    return Err(Diagnostic::new(
                        extra.at.clone(),
                        format!("\"{key}\": a callback takes no \"{}\"", extra.name),
                    )
                    .with_hint("it takes callback_callable and kwargs"));
                }
                let path = argument(map, "callback_callable", 0).ok_or_else(|| {
                    Diagnostic::new(
                        node.at.clone(),
                        format!("\"{key}\" needs \"callback_callable\": a notifier's class path"),
                    )
                })?;
                let kind = kind(path, path.as_str().unwrap_or(""))?;
                match argument(map, "kwargs", 1).map(|k| (k, &k.value)) {
                    None | Some((_, Value::Null)) => {
                        with_arguments(node, key, kind, std::iter::empty())
                    }
                    Some((kwargs, _)) => {
                        let kwargs = values::map(kwargs, "deadline.callback.kwargs")?;
                        with_arguments(node, key, kind, kwargs.iter())
                    }
                }
            }
            Some(_) => Err(tag_error(
                node,
                map,
                "airflow.sdk.definitions.callback.AsyncCallback",
            )),
            None => {
                let path = map.get("callback").ok_or_else(|| {
                    Diagnostic::new(
                        node.at.clone(),
                        format!("\"{key}\" as a map needs \"callback\": the notifier's class path"),
                    )
                })?;
                let kind = kind(path, path.as_str().unwrap_or(""))?;
                let args = map.iter().filter(|(arg, _)| arg.name != "callback");
                with_arguments(node, key, kind, args)
            }
        },
        _ => Err(Diagnostic::new(
            node.at.clone(),
            format!("\"{key}\" must be a notifier, not {}", node.kind()),
        )),
    }
}

fn kind(node: &Node, path: &str) -> Read<NotifierKind> {
    NotifierKind::from_callback_path(path).ok_or_else(|| {
        Diagnostic::new(
            node.at.clone(),
            format!(
                "\"deadline.callback\" names \"{path}\", which Gust cannot run when a deadline \
                 passes: deadline callbacks are the notifiers Gust sends itself"
            ),
        )
        .with_hint(
            "use airflow.providers.slack.notifications.slack_webhook.SlackWebhookNotifier, \
             SlackNotifier, SmtpNotifier, airflow.providers.http.notifications.HttpNotifier \
             or webhook",
        )
    })
}
