//! A task: one node of a DAG, with its operator, its arguments and the settings every operator
//! shares (retries, timeouts, trigger rule, pool...).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::ids::{GroupId, TaskId};
use crate::trigger_rule::TriggerRule;

/// One task of a DAG, validated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    /// The task's id, prefixed with its group's id when it is in a group.
    pub id: TaskId,
    /// The canonical (short) name of the operator that runs it, e.g. `bash`.
    pub operator: String,
    /// The operator's own arguments under their canonical names, templates not yet rendered.
    pub args: serde_json::Map<String, serde_json::Value>,
    /// The tasks that must finish before this one, sorted.
    pub upstream: Vec<TaskId>,
    /// The innermost task group holding the task.
    pub group: Option<GroupId>,
    /// Settings shared by every operator.
    pub settings: TaskSettings,
    /// Markdown documentation shown in the UI.
    pub doc_md: Option<String>,
    /// How the task is mapped (`expand`), when it is: one instance per item.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mapping: Option<crate::mapping::Mapping>,
}

/// Settings every task has, whatever its operator: Airflow's `BaseOperator` arguments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskSettings {
    /// Who owns the task (default `airflow`, as in Airflow).
    pub owner: String,
    /// How many times a failed try is retried (default 0).
    pub retries: u32,
    /// The wait before a retry (default 5 minutes, Airflow's).
    pub retry_delay: Duration,
    /// Double the wait after each failed try.
    pub retry_exponential_backoff: bool,
    /// The longest wait exponential backoff may reach.
    pub max_retry_delay: Option<Duration>,
    /// A try running longer than this is killed and fails.
    pub execution_timeout: Option<Duration>,
    /// When the task may run given its upstream states.
    pub trigger_rule: TriggerRule,
    /// The pool whose slots the task takes (default `default_pool`).
    pub pool: String,
    /// How many of the pool's slots one try takes (default 1).
    pub pool_slots: u32,
    /// At most this many of the task's instances run at once, over all runs of its DAG
    /// (`max_active_tis_per_dag`; `None`: no limit of its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_active_tis_per_dag: Option<u32>,
    /// At most this many of the task's instances run at once within one run
    /// (`max_active_tis_per_dagrun`, what bounds a mapped task's fan-out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_active_tis_per_dagrun: Option<u32>,
    /// Higher runs first when slots are scarce (default 1).
    pub priority_weight: i32,
    /// Run only if this task succeeded (or was skipped) in the previous DAG run.
    pub depends_on_past: bool,
    /// Keep the task's return value as an XCom (default true).
    pub do_xcom_push: bool,
    /// Addresses to notify.
    pub email: Vec<String>,
    /// Notify when a try fails for good (default true, as in Airflow).
    pub email_on_failure: bool,
    /// Notify when a try is retried (default true, as in Airflow).
    pub email_on_retry: bool,
    /// A setup task: the tasks after it need it to succeed, and its teardowns run whatever
    /// happens (Airflow's `is_setup`/`as_setup()`).
    #[serde(default)]
    pub is_setup: bool,
    /// A teardown task: runs once its setups ran, whatever the work between did; its own
    /// failure does not fail the run unless `on_failure_fail_dagrun` (Airflow's `is_teardown`).
    #[serde(default)]
    pub is_teardown: bool,
    /// A teardown whose failure fails the run.
    #[serde(default)]
    pub on_failure_fail_dagrun: bool,
    /// Which callbacks the task names (`on_failure_callback`...).
    #[serde(default)]
    pub callbacks: TaskCallbacks,
    /// The notifiers Gust sends on the task's events (Airflow's notifier classes named in
    /// its callbacks), without Python.
    #[serde(default, skip_serializing_if = "crate::notify::Notifiers::is_empty")]
    pub notifiers: crate::notify::Notifiers,
    /// The assets a successful try updates (an asset event each).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outlets: Vec<crate::asset::Asset>,
    /// The asset aliases among its outlets: a successful try's events attached through them
    /// (`outlet_events[AssetAlias(name)].add(asset)`) are recorded, the assets attached to the
    /// alias.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outlet_aliases: Vec<crate::asset::AssetAlias>,
    /// The assets the task reads (shown, and in `inlet_events` of Python tasks).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inlets: Vec<crate::asset::Asset>,
}

/// The Python callbacks a task names, in any form dag-factory reads (a dotted path, a notifier
/// Gust does not send itself with its arguments, `<callback>_name` with `<callback>_file`).
/// Gust keeps only which exist: the callables themselves are Python's, read by dag-factory
/// where they run. The notifiers Gust sends are in [`TaskSettings::notifiers`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskCallbacks {
    /// `on_execute_callback`: before a try runs.
    pub on_execute: bool,
    /// `on_success_callback`: after a try succeeds.
    pub on_success: bool,
    /// `on_failure_callback`: after a try fails for good.
    pub on_failure: bool,
    /// `on_retry_callback`: after a try fails and another will follow.
    pub on_retry: bool,
    /// `on_skipped_callback`: after a try skips itself.
    pub on_skipped: bool,
}

/// The callback an argument names: `on_failure_callback` for itself and for dag-factory's
/// `on_failure_callback_name` and `on_failure_callback_file`.
#[must_use]
pub fn callback_of(argument: &str) -> &str {
    argument
        .strip_suffix("_name")
        .or_else(|| argument.strip_suffix("_file"))
        .unwrap_or(argument)
}

impl TaskCallbacks {
    /// Notes the callback a task argument names (`on_failure_callback`, or its `_name` or
    /// `_file` part); `false` when the name is not a task callback's.
    pub fn note(&mut self, argument: &str) -> bool {
        let flag = match callback_of(argument) {
            "on_execute_callback" => &mut self.on_execute,
            "on_success_callback" => &mut self.on_success,
            "on_failure_callback" => &mut self.on_failure,
            "on_retry_callback" => &mut self.on_retry,
            "on_skipped_callback" => &mut self.on_skipped,
            _ => return false,
        };
        *flag = true;
        true
    }
}

/// Airflow's default wait between tries.
pub const DEFAULT_RETRY_DELAY: Duration = Duration::from_secs(300);

/// The pool tasks use unless told otherwise.
pub const DEFAULT_POOL: &str = "default_pool";

impl Default for TaskSettings {
    fn default() -> Self {
        Self {
            owner: "airflow".to_owned(),
            retries: 0,
            retry_delay: DEFAULT_RETRY_DELAY,
            retry_exponential_backoff: false,
            max_retry_delay: None,
            execution_timeout: None,
            trigger_rule: TriggerRule::AllSuccess,
            pool: DEFAULT_POOL.to_owned(),
            pool_slots: 1,
            max_active_tis_per_dag: None,
            max_active_tis_per_dagrun: None,
            priority_weight: 1,
            depends_on_past: false,
            do_xcom_push: true,
            email: Vec::new(),
            email_on_failure: true,
            email_on_retry: true,
            is_setup: false,
            is_teardown: false,
            on_failure_fail_dagrun: false,
            callbacks: TaskCallbacks::default(),
            notifiers: crate::notify::Notifiers::default(),
            outlets: Vec::new(),
            outlet_aliases: Vec::new(),
            inlets: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dag::DagCallbacks;

    #[test]
    fn a_callback_is_noted_by_any_of_its_three_names() {
        let mut callbacks = TaskCallbacks::default();
        assert!(callbacks.note("on_failure_callback"));
        assert!(callbacks.note("on_retry_callback_file"));
        assert!(!callbacks.note("sla_miss_callback"));
        assert_eq!(
            callbacks,
            TaskCallbacks {
                on_failure: true,
                on_retry: true,
                ..TaskCallbacks::default()
            }
        );
        let mut dag = DagCallbacks::default();
        assert!(dag.note("on_success_callback_name"));
        assert!(!dag.note("on_retry_callback"));
        assert!(dag.on_success && !dag.on_failure);
    }
}
