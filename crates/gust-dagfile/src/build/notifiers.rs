//! Callback settings (`on_failure_callback`...) of tasks and DAGs, read as dag-factory reads
//! them: a dotted path, `{callback: path, ...arguments}`, or a list of those, and
//! `<callback>_name` with `<callback>_file`. A `callback:` naming one of Airflow's notifier
//! classes Gust sends natively (`SlackWebhookNotifier`, `SmtpNotifier`...) becomes a
//! [`Notifier`]; anything else is a Python callable, which needs `[python] interpreter`.

use gust_core::notify::{Notifier, NotifierKind, Notifiers};

use super::values::Read;
use crate::diagnostic::Diagnostic;
use crate::yaml::{Key, Node, Value};

/// Reads the callback setting `key` into `notifiers`; `Ok(true)` when it also names a Python
/// callable (so the Python callback runner has something to run).
pub fn read_callback(node: &Node, key: &str, notifiers: &mut Notifiers) -> Read<bool> {
    let callback = gust_core::task::callback_of(key);
    if callback != key {
        // `<callback>_name` and `<callback>_file` name a Python function.
        return match &node.value {
            Value::Str(text) if !text.trim().is_empty() => python_callable(node, key),
            _ => Err(Diagnostic::new(
                node.at.clone(),
                format!("\"{key}\" must be a non-empty string, not {}", node.kind()),
            )),
        };
    }
    let mut read = Vec::new();
    let mut python = false;
    match &node.value {
        Value::Seq(items) => {
            for item in items {
                python |= read_one(item, key, &mut read)?;
            }
        }
        _ => python = read_one(node, key, &mut read)?,
    }
    if let Some(slot) = notifiers.slot(callback) {
        // A task's own setting replaces its default_args' (as a dict update does in Airflow).
        *slot = read;
    }
    if python {
        python_callable(node, key)
    } else {
        Ok(false)
    }
}

/// A Python callable is named: fine with a Python environment, refused without one.
fn python_callable(node: &Node, key: &str) -> Read<bool> {
    if gust_operators::python::enabled() {
        Ok(true)
    } else {
        Err(Diagnostic::new(
            node.at.clone(),
            format!(
                "\"{key}\" names a Python callable, which needs a Python environment; Gust \
                 sends Airflow's SmtpNotifier, SlackWebhookNotifier, SlackNotifier and \
                 HttpNotifier itself"
            ),
        )
        .with_hint(gust_operators::python::NOT_CONFIGURED))
    }
}

/// One callback: `Ok(true)` when it is a Python callable, else its notifier joins `read`.
fn read_one(node: &Node, key: &str, read: &mut Vec<Notifier>) -> Read<bool> {
    match &node.value {
        Value::Str(text) if !text.trim().is_empty() => {
            match NotifierKind::from_callback_path(text) {
                Some(kind) => {
                    read.push(notifier(node, key, kind, serde_json::Map::new())?);
                    Ok(false)
                }
                None => Ok(true),
            }
        }
        Value::Map(map) => {
            let Some(path) = map.get("callback") else {
                return Err(Diagnostic::new(
                    node.at.clone(),
                    format!("\"{key}\" as a map needs \"callback\": the notifier's class path"),
                )
                .with_hint(
                    "e.g. callback: airflow.providers.slack.notifications.slack_webhook.\
                     SlackWebhookNotifier, with its arguments beside it",
                ));
            };
            let Some(kind) = path.as_str().and_then(NotifierKind::from_callback_path) else {
                return match path.as_str() {
                    Some(text) if !text.trim().is_empty() => Ok(true),
                    _ => Err(Diagnostic::new(
                        path.at.clone(),
                        format!(
                            "\"{key}.callback\" must be a dotted path, not {}",
                            path.kind()
                        ),
                    )),
                };
            };
            let args = map.iter().filter(|(arg, _)| arg.name != "callback");
            read.push(with_arguments(node, key, kind, args)?);
            Ok(false)
        }
        _ => Err(Diagnostic::new(
            node.at.clone(),
            format!(
                "\"{key}\" must be a dotted path (module.function), a notifier \
                 ({{callback: path, ...}}) or a list of those, not {}",
                node.kind()
            ),
        )),
    }
}

/// A notifier of `kind` with `args` (Airflow's names, templates unrendered), each checked.
pub fn with_arguments<'a>(
    node: &Node,
    key: &str,
    kind: NotifierKind,
    args: impl Iterator<Item = (&'a Key, &'a Node)>,
) -> Read<Notifier> {
    let mut read = serde_json::Map::new();
    for (arg, value) in args {
        if !kind.arguments().contains(&arg.name.as_str()) {
            return Err(Diagnostic::new(
                arg.at.clone(),
                format!(
                    "\"{key}\": the {} notifier takes no argument \"{}\"",
                    kind.as_str(),
                    arg.name
                ),
            )
            .with_hint(format!("it takes: {}", kind.arguments().join(", "))));
        }
        read.insert(arg.name.clone(), value.to_json());
    }
    notifier(node, key, kind, read)
}

/// A notifier, once its arguments are known to be enough.
fn notifier(
    node: &Node,
    key: &str,
    kind: NotifierKind,
    args: serde_json::Map<String, serde_json::Value>,
) -> Read<Notifier> {
    let missing: Vec<&str> = kind
        .required()
        .iter()
        .copied()
        .filter(|name| !args.contains_key(*name))
        .collect();
    if !missing.is_empty() {
        return Err(Diagnostic::new(
            node.at.clone(),
            format!(
                "\"{key}\": the {} notifier needs {}",
                kind.as_str(),
                missing.join(", ")
            ),
        ));
    }
    if kind == NotifierKind::Webhook
        && !args.contains_key("url")
        && !args.contains_key("http_conn_id")
    {
        return Err(Diagnostic::new(
            node.at.clone(),
            format!("\"{key}\": the webhook notifier needs \"url\" or \"http_conn_id\""),
        )
        .with_hint(
            "http_conn_id names a connection whose host is the URL; endpoint is added to it",
        ));
    }
    if let Some(retries) = args.get("retries")
        && retries.as_u64().is_none_or(|n| n > 20)
    {
        return Err(Diagnostic::new(
            node.at.clone(),
            format!("\"{key}\": retries must be a whole number from 0 to 20"),
        ));
    }
    Ok(Notifier { kind, args })
}
