//! Finding, when DAGs load, names a template uses that no run will define.
//!
//! The template is rendered once with stand-in values for everything a run defines; a name
//! reported undefined is a problem only when no run could define it: not a context name
//! (`{{ nope }}`), a missing attribute of a fixed object (`dag_run.nope`), or a variable or
//! connection the caller says does not exist. Params and `dag_run.conf` keys are never reported,
//! since a run's conf may add them (Airflow's `dag_run_conf_overrides_params`). Other failures of
//! the stand-in rendering (a stand-in XCom of `None`) say nothing about the real run and are
//! ignored.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::DateTime;
use minijinja::Value;

use crate::context::TemplateContext;
use crate::lookup::{RuntimeLookup, TemplateConnection};

/// What is known, when checking, about the variables and connections runs will see.
#[derive(Debug, Clone, Default)]
pub struct Known {
    /// The variables that exist, or `None` when that cannot be known (they may be created later).
    pub variables: Option<HashSet<String>>,
    /// The connections that exist, or `None` when that cannot be known.
    pub connections: Option<HashSet<String>>,
}

impl Known {
    /// Whether nothing is known: every variable and connection may exist.
    pub(crate) fn is_nothing_known(&self) -> bool {
        self.variables.is_none() && self.connections.is_none()
    }
}

/// The names Gust's context defines at the top level.
const GUST_NAMES: &[&str] = &[
    "conn",
    "dag",
    "dag_run",
    "data_interval_end",
    "data_interval_start",
    "ds",
    "ds_nodash",
    "logical_date",
    "macros",
    "params",
    "run_id",
    "task",
    "task_instance",
    "task_instance_key_str",
    "ti",
    "try_number",
    "ts",
    "ts_nodash",
    "ts_nodash_with_tz",
    "triggering_asset_events",
    "inlet_events",
    "var",
];

/// The names of Airflow 3.3's context (`airflow.sdk.definitions.context.Context`).
const AIRFLOW_NAMES: &[&str] = &[
    "asset_state_store",
    "conn",
    "dag",
    "dag_run",
    "data_interval_end",
    "data_interval_start",
    "ds",
    "ds_nodash",
    "exception",
    "expanded_ti_count",
    "inlet_events",
    "inlets",
    "logical_date",
    "macros",
    "map_index_template",
    "outlet_events",
    "outlets",
    "params",
    "partition_date",
    "partition_key",
    "prev_data_interval_end_success",
    "prev_data_interval_start_success",
    "prev_end_date_success",
    "prev_start_date_success",
    "reason",
    "run_id",
    "task",
    "task_instance",
    "task_instance_key_str",
    "task_reschedule_count",
    "task_state_store",
    "templates_dict",
    "test_mode",
    "ti",
    "triggering_asset_events",
    "try_number",
    "ts",
    "ts_nodash",
    "ts_nodash_with_tz",
    "var",
];

/// Methods of context objects: a path ending in one is a call, not a missing attribute.
const METHODS: &[&str] = &[
    "xcom_pull",
    "xcom_push",
    "for_asset",
    "for_asset_alias",
    "ds_add",
    "ds_format",
    "strftime",
    "isoformat",
    "timestamp",
    "date",
    "weekday",
    "isoweekday",
    "get",
    "get_extra_dejson",
    "replace",
    "add",
    "subtract",
    "start_of",
    "end_of",
];

/// Why `name` (the shortest undefined path) will be undefined in every run, or `None` when a
/// run may define it.
pub(crate) fn why_undefined(name: &str, known: &Known) -> Option<String> {
    let parts: Vec<&str> = name.split('.').collect();
    let root = parts[0];
    if !GUST_NAMES.contains(&root) {
        return Some(if AIRFLOW_NAMES.contains(&root) {
            format!("Airflow's context has \"{root}\", Gust's does not yet")
        } else {
            format!("no context name \"{root}\"")
        });
    }
    match parts.as_slice() {
        ["macros", "dateutil", ..] => Some(
            "Gust has no macros.dateutil; use the dates' own methods: logical_date.add(months=1), \
             .subtract(weeks=1), .replace(day=1), .start_of('month')"
                .to_owned(),
        ),
        ["params", ..] | ["dag_run", "conf", ..] => None,
        ["conn", id] => known
            .connections
            .as_ref()
            .filter(|ids| !ids.contains(*id))
            .map(|_| format!("connection \"{id}\" does not exist")),
        ["var", "value" | "json", key] => known
            .variables
            .as_ref()
            .filter(|keys| !keys.contains(*key))
            .map(|_| format!("variable \"{key}\" does not exist")),
        // Inside a variable's or a connection's value: what it holds is known only at run time.
        ["var" | "conn", ..] => None,
        // A method's result undefined (`ti.xcom_pull(...)['k']` with a stand-in XCom of `None`):
        // minijinja names the method's path; what it returns is known only at run time.
        [.., attribute] if METHODS.contains(attribute) => None,
        [.., parent, attribute] => Some(format!("\"{parent}\" has no attribute \"{attribute}\"")),
        [_] | [] => None,
    }
}

/// The context a check renders with: a fixed run, stand-ins for variables and connections.
pub(crate) fn probe(known: &Known) -> Value {
    let start = DateTime::UNIX_EPOCH;
    let ctx = TemplateContext::new("dag", "task", "manual__check", start, start);
    ctx.to_value(Arc::new(StandIns(known.clone())))
}

/// Variables and connections with stand-in values: all of them when it is not known which
/// exist (so that rendering goes on past them), else those that do.
struct StandIns(Known);

impl RuntimeLookup for StandIns {
    fn variable(&self, key: &str) -> Option<String> {
        let exists = self
            .0
            .variables
            .as_ref()
            .is_none_or(|keys| keys.contains(key));
        exists.then(|| "{}".to_owned())
    }

    fn connection(&self, conn_id: &str) -> Option<TemplateConnection> {
        let exists = self
            .0
            .connections
            .as_ref()
            .is_none_or(|ids| ids.contains(conn_id));
        exists.then(|| TemplateConnection {
            conn_id: conn_id.to_owned(),
            ..TemplateConnection::default()
        })
    }

    fn xcom(&self, _task_id: &str, _key: &str) -> Option<serde_json::Value> {
        None
    }
}
