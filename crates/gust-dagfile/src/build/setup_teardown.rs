//! Setup and teardown tasks in a DAG file: `is_setup`, `is_teardown`,
//! `on_failure_fail_dagrun` (settings) and `as_teardown` (Airflow's `.as_teardown(setups=...)`),
//! checked as Airflow checks them.

use std::collections::{HashMap, HashSet};

use gust_core::ids::TaskId;
use gust_core::task::{Task, TaskSettings};
use gust_core::trigger_rule::TriggerRule;
use indexmap::IndexMap;

use super::task::{TaskEntry, read_names};
use super::values::{self, Read};
use crate::diagnostic::Diagnostic;
use crate::location::Location;
use crate::yaml::{Node, Value};

/// `as_teardown: true` or `as_teardown: {setups: [...], on_failure_fail_dagrun: true}`.
pub struct AsTeardown {
    is_teardown: bool,
    on_failure_fail_dagrun: Option<bool>,
    /// The setup tasks, by name as written: they become setups and upstreams of the task.
    pub setups: Vec<(String, Location)>,
}

impl AsTeardown {
    /// Makes the task a teardown (or not, for `as_teardown: false`).
    pub fn apply(&self, settings: &mut TaskSettings) {
        settings.is_teardown = self.is_teardown;
        if let Some(fail) = self.on_failure_fail_dagrun {
            settings.on_failure_fail_dagrun = fail;
        }
    }
}

/// Reads an `as_teardown` entry.
pub fn read_as_teardown(node: &Node) -> Read<AsTeardown> {
    if let Value::Map(map) = &node.value {
        let mut teardown = AsTeardown {
            is_teardown: true,
            on_failure_fail_dagrun: None,
            setups: Vec::new(),
        };
        for (key, value) in map.iter() {
            match key.name.as_str() {
                "setups" => teardown.setups = read_names(value, "setups")?,
                "on_failure_fail_dagrun" => {
                    teardown.on_failure_fail_dagrun =
                        Some(values::boolean(value, "on_failure_fail_dagrun")?);
                }
                other => {
                    return Err(Diagnostic::new(
                        key.at.clone(),
                        format!("unknown \"as_teardown\" field \"{other}\""),
                    )
                    .with_hint("use setups and on_failure_fail_dagrun"));
                }
            }
        }
        return Ok(teardown);
    }
    Ok(AsTeardown {
        is_teardown: values::boolean(node, "as_teardown")?,
        on_failure_fail_dagrun: None,
        setups: Vec::new(),
    })
}

/// A teardown's trigger rule is `all_done_setup_success`, as `as_teardown()` sets it, unless
/// the task names its own (one from `default_args` does not count).
pub fn teardown_rule(settings: &mut TaskSettings, own_keys: &HashSet<&str>) {
    if settings.is_teardown && !own_keys.contains("trigger_rule") {
        settings.trigger_rule = TriggerRule::AllDoneSetupSuccess;
    }
}

/// Checks one task's setup and teardown settings.
pub fn check_task(settings: &TaskSettings, entry: &TaskEntry<'_>) -> Read<()> {
    if settings.on_failure_fail_dagrun && !settings.is_teardown {
        return Err(Diagnostic::new(
            entry.at.clone(),
            "\"on_failure_fail_dagrun\" is only for teardown tasks",
        )
        .with_hint("add `is_teardown: true` to the task, or remove on_failure_fail_dagrun"));
    }
    if settings.is_setup && settings.is_teardown {
        return Err(Diagnostic::new(
            entry.at.clone(),
            "a task cannot be both a setup and a teardown",
        )
        .with_hint("keep one of is_setup and is_teardown"));
    }
    Ok(())
}

/// Marks the tasks that `as_teardown: {setups: [...]}` names as setups: for each teardown, the
/// names among its upstream tasks (by id, or by name within its group).
pub fn mark_setups(
    tasks: &mut IndexMap<TaskId, Task>,
    named: &[(TaskId, Vec<(String, Location)>)],
) {
    for (teardown, names) in named {
        let Some(upstream) = tasks.get(teardown).map(|t| t.upstream.clone()) else {
            continue;
        };
        for (name, _) in names {
            let found = upstream.iter().find(|id| {
                let id = id.as_str();
                id == name || id.rsplit('.').next() == Some(name.as_str())
            });
            if let Some(task) = found.and_then(|id| tasks.get_mut(id)) {
                task.settings.is_setup = true;
            }
        }
    }
}

/// Airflow's DAG check: every task right after a setup is a teardown or has the trigger rule
/// `all_success`, so that clearing a setup behaves the same everywhere.
pub fn check_dag(
    tasks: &IndexMap<TaskId, Task>,
    places: &HashMap<TaskId, Location>,
    problems: &mut Vec<Diagnostic>,
) {
    for task in tasks.values() {
        if task.settings.is_teardown || task.settings.trigger_rule == TriggerRule::AllSuccess {
            continue;
        }
        let setup = task
            .upstream
            .iter()
            .find(|up| tasks.get(*up).is_some_and(|u| u.settings.is_setup));
        if let (Some(setup), Some(at)) = (setup, places.get(&task.id)) {
            let mut problem = Diagnostic::new(
                at.clone(),
                format!(
                    "task follows setup task \"{setup}\" with trigger rule \"{}\"; Airflow requires all_success right after a setup",
                    task.settings.trigger_rule
                ),
            )
            .with_hint("remove the trigger_rule, or make the task a teardown");
            problem.task = Some(task.id.to_string());
            problems.push(problem);
        }
    }
}
