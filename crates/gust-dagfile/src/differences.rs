//! Finding the keys of a DAG that Airflow, through dag-factory 1.1.0, reads differently from
//! Gust: each becomes a [`Warning`] at the key's place.
//!
//! This reads the DAG's entry with its defaults already merged in (so a key inherited from a
//! defaults file is reported where that file sets it) and decides nothing about loading: it runs
//! only on DAGs that loaded.

use crate::build::values::named_entries;
use crate::warning::{Difference, SECONDS_SETTINGS, Warning};
use crate::yaml::{Key, Mapping, Node, Value};

/// The warnings for the DAG `dag_id` whose merged entry is `dag`, in file order.
pub(crate) fn scan(dag_id: &str, dag: &Node) -> Vec<Warning> {
    let mut out = Vec::new();
    let Some(map) = dag.as_map() else {
        return out;
    };
    let mut warn = |node_at: &crate::Location, task: Option<&str>, difference| {
        out.push(Warning {
            location: node_at.clone(),
            dag: dag_id.to_owned(),
            task: task.map(str::to_owned),
            difference,
        });
    };
    if let Some((key, _)) = map.entry("chains") {
        warn(&key.at, None, Difference::Chains);
    }
    if let Some((key, node)) = map.entry("dagrun_timeout_sec") {
        warn(
            &key.at,
            None,
            Difference::DagrunTimeoutSeconds {
                seconds: whole(node),
            },
        );
    }
    let default_args = map.get("default_args").and_then(Node::as_map);
    if let Some((key, _)) = map.entry("owner")
        && !default_args.is_some_and(|args| args.contains("owner"))
    {
        warn(&key.at, None, Difference::DagOwner);
    }
    // Groups' default_args reach their tasks as the DAG's do, and Airflow filters both alike.
    let mut defaults: Vec<&Mapping> = default_args.into_iter().collect();
    // The entries were checked when the DAG loaded, so nothing here can be a new problem.
    let mut checked = Vec::new();
    if let Some(groups) = map.get("task_groups") {
        defaults.extend(
            named_entries(groups, "task_groups", "group_name", &mut checked)
                .into_iter()
                .filter_map(|group| group.fields.get("default_args").and_then(Node::as_map)),
        );
    }
    for args in defaults {
        for (sec, key, node) in seconds_settings(args) {
            warn(&key.at, None, seconds_setting(sec, false, node));
        }
    }
    if let Some(tasks) = map.get("tasks") {
        for task in named_entries(tasks, "tasks", "task_id", &mut checked) {
            for (sec, key, node) in seconds_settings(task.fields) {
                warn(
                    &key.at,
                    Some(task.name.as_str()),
                    seconds_setting(sec, true, node),
                );
            }
        }
    }
    out.sort_by(|a, b| a.location.cmp(&b.location));
    out
}

/// The `*_sec` settings `map` sets, each with its key's place and its value.
fn seconds_settings(map: &Mapping) -> impl Iterator<Item = (&'static str, &Key, &Node)> {
    SECONDS_SETTINGS
        .iter()
        .filter_map(|(sec, _)| map.entry(sec).map(|(key, node)| (*sec, key, node)))
}

fn seconds_setting(key: &'static str, in_task: bool, node: &Node) -> Difference {
    Difference::SecondsSetting {
        key,
        in_task,
        seconds: whole(node),
    }
}

/// The node's value when it is a whole number of seconds.
fn whole(node: &Node) -> Option<i64> {
    match &node.value {
        Value::Int(n) => Some(*n),
        Value::Str(text) => text.trim().parse().ok(),
        _ => None,
    }
}
