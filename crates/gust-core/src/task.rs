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
            priority_weight: 1,
            depends_on_past: false,
            do_xcom_push: true,
            email: Vec::new(),
            email_on_failure: true,
            email_on_retry: true,
            is_setup: false,
            is_teardown: false,
            on_failure_fail_dagrun: false,
        }
    }
}
