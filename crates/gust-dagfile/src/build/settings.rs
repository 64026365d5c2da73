//! Settings every task has (Airflow's `BaseOperator` arguments), read from `default_args` and
//! task entries.

use gust_core::task::TaskSettings;
use gust_core::trigger_rule::TriggerRule;

use super::values::{self, Read};
use crate::diagnostic::Diagnostic;
use crate::yaml::Node;

/// Every key that sets a [`TaskSettings`] field, including the `*_sec` spellings.
pub const SETTING_KEYS: &[&str] = &[
    "owner",
    "retries",
    "retry_delay",
    "retry_delay_sec",
    "retry_exponential_backoff",
    "max_retry_delay",
    "max_retry_delay_sec",
    "execution_timeout",
    "execution_timeout_sec",
    "trigger_rule",
    "pool",
    "pool_slots",
    "max_active_tis_per_dag",
    "max_active_tis_per_dagrun",
    "priority_weight",
    "depends_on_past",
    "do_xcom_push",
    "email",
    "email_on_failure",
    "email_on_retry",
    "is_setup",
    "is_teardown",
    "on_failure_fail_dagrun",
];

/// Whether `key` sets a task setting.
#[must_use]
pub fn is_setting(key: &str) -> bool {
    SETTING_KEYS.contains(&key) || gust_operators::refused::is_task_callback(key)
}

/// Applies one setting to `settings`.
pub fn apply(settings: &mut TaskSettings, key: &str, node: &Node) -> Read<()> {
    match key {
        "owner" => settings.owner = values::string(node, key)?,
        "retries" => settings.retries = values::count(node, key, 0)?,
        "retry_delay" | "retry_delay_sec" => settings.retry_delay = values::duration(node, key)?,
        "retry_exponential_backoff" => {
            settings.retry_exponential_backoff = values::boolean(node, key)?
        }
        "max_retry_delay" | "max_retry_delay_sec" => {
            settings.max_retry_delay = values::opt_duration(node, key)?;
        }
        "execution_timeout" | "execution_timeout_sec" => {
            settings.execution_timeout = values::opt_duration(node, key)?;
        }
        "trigger_rule" => {
            let text = values::string(node, key)?;
            settings.trigger_rule = text.parse().map_err(|_| {
                let names = TriggerRule::ALL.map(TriggerRule::as_str);
                let mut d =
                    Diagnostic::new(node.at.clone(), format!("unknown trigger rule \"{text}\""));
                d = match crate::diagnostic::closest(&text, names) {
                    Some(near) => d.with_hint(format!("did you mean \"{near}\"?")),
                    None => d.with_hint(format!("use one of: {}", names.join(", "))),
                };
                d
            })?;
        }
        "pool" => settings.pool = values::string(node, key)?,
        "pool_slots" => settings.pool_slots = values::count(node, key, 1)?,
        "max_active_tis_per_dag" => {
            settings.max_active_tis_per_dag = values::opt_count(node, key, 1)?
        }
        "max_active_tis_per_dagrun" => {
            settings.max_active_tis_per_dagrun = values::opt_count(node, key, 1)?;
        }
        "priority_weight" => {
            let n = values::integer(node, key, i64::from(i32::MIN))?;
            settings.priority_weight = i32::try_from(n).map_err(|_| {
                Diagnostic::new(node.at.clone(), format!("\"{key}\" is too large: {n}"))
            })?;
        }
        "depends_on_past" => settings.depends_on_past = values::boolean(node, key)?,
        "do_xcom_push" => settings.do_xcom_push = values::boolean(node, key)?,
        "email" => settings.email = values::string_list(node, key)?,
        "email_on_failure" => settings.email_on_failure = values::boolean(node, key)?,
        "email_on_retry" => settings.email_on_retry = values::boolean(node, key)?,
        "is_setup" => settings.is_setup = values::boolean(node, key)?,
        "is_teardown" => settings.is_teardown = values::boolean(node, key)?,
        "on_failure_fail_dagrun" => settings.on_failure_fail_dagrun = values::boolean(node, key)?,
        callback if gust_operators::refused::is_task_callback(callback) => {
            if super::notifiers::read_callback(node, key, &mut settings.notifiers)? {
                settings.callbacks.note(callback);
            }
        }
        other => {
            return Err(Diagnostic::new(
                node.at.clone(),
                format!("\"{other}\" is not a task setting"),
            ));
        }
    }
    Ok(())
}
