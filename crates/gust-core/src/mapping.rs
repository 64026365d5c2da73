//! Dynamic task mapping (Airflow's `partial`/`expand`): one task run once per item of a list
//! known only when the run gets to it, each run an instance told apart by its `map_index`.
//!
//! The lists are either written in the DAG file or another task's return value (its XCom). How
//! many instances a task has is decided once every list is known ([`Mapping::length`]), and each
//! instance's arguments are derived from its index alone ([`Mapping::instance_args`]), so nothing
//! per instance needs keeping: a scheduler that restarts derives the same arguments again.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::ids::{GroupId, TaskId};
use crate::state::TaskState;

/// The `map_index` of a task that is not mapped (its one instance), as in Airflow.
pub const UNMAPPED: i32 = -1;

/// Airflow's default `[core] max_map_length`: the most instances one mapped task may have.
pub const DEFAULT_MAX_MAP_LENGTH: usize = 1024;

/// How a task is mapped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mapping {
    /// What the instances differ by.
    pub expand: Expand,
    /// A template naming each instance in the UI and API (`rendered_map_index`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub map_index_template: Option<String>,
    /// The mapped task group this mapping is the expansion of (`@task_group` with `.expand`):
    /// every task of the group has one instance per item, and instance `i` of a task follows
    /// instance `i` of its upstreams in the same group rather than the whole of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<GroupId>,
}

/// What the instances of a mapped task differ by.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Expand {
    /// `expand:`: each named argument takes the items of its list; with several, every
    /// combination runs (Airflow's cross product: the last argument varies fastest), in the
    /// order the arguments are written.
    Args(Vec<(String, Source)>),
    /// `expand_kwargs:`: one map of arguments per item.
    Kwargs(Source),
}

/// Where a mapped argument's list comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// Written in the DAG file.
    Literal(Vec<Value>),
    /// An upstream task's return value (`task.output`, `XComArg(task)`, `+task`); a mapped
    /// upstream's is the list of its instances' values, in map-index order.
    XCom(TaskId),
    /// Another XCom of an upstream task, by key (`task.output['key']`,
    /// `XComArg(task, key='key')`): Gust answers a key with the field of that name of the
    /// task's return value, as Airflow's operators push such fields as XComs of their own.
    XComKey(TaskId, String),
}

impl Source {
    /// The upstream task this list comes from, and the XCom key (`None`: its return value).
    #[must_use]
    pub fn upstream(&self) -> Option<(&TaskId, Option<&str>)> {
        match self {
            Source::Literal(_) => None,
            Source::XCom(task) => Some((task, None)),
            Source::XComKey(task, key) => Some((task, Some(key.as_str()))),
        }
    }
}

/// How mapping reads an upstream's XCom: by task and key (`None`: its return value).
pub type XComLookup<'a> = dyn Fn(&TaskId, Option<&str>) -> Option<Value> + 'a;

/// Why a mapped task cannot be expanded: it fails, as in Airflow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExpandError {
    /// The upstream pushed no return value (or no XCom of that key).
    #[error("expanding over {task}'s {}: {task} pushed none", key.as_deref().map_or_else(|| "return value".to_owned(), |k| format!("XCom \"{k}\"")))]
    NoValue {
        /// The upstream.
        task: TaskId,
        /// The XCom's key (`None`: the return value).
        key: Option<String>,
    },
    /// The value to expand over is not a list (nor a map).
    #[error("expanding \"{argument}\": its value is {kind}, not a list or a map")]
    NotAList {
        /// The argument (`expand_kwargs` for a whole map).
        argument: String,
        /// What the value is.
        kind: &'static str,
    },
    /// An item of `expand_kwargs` is not a map of arguments.
    #[error("expand_kwargs: item {index} is {kind}, not a map of arguments")]
    NotArguments {
        /// Which item.
        index: usize,
        /// What it is.
        kind: &'static str,
    },
    /// More instances than `[core] max_map_length` allows.
    #[error(
        "expanding would make {length} instances, more than [core] max_map_length ({max}) allows"
    )]
    TooLong {
        /// How many instances expanding would make.
        length: usize,
        /// The limit.
        max: usize,
    },
}

/// A JSON value's kind, for messages.
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a map",
    }
}

/// The items of a value mapped over: a list's own, or a map's `[key, value]` pairs (Airflow maps
/// over a dict's items).
fn items(argument: &str, value: &Value) -> Result<Vec<Value>, ExpandError> {
    match value {
        Value::Array(items) => Ok(items.clone()),
        Value::Object(map) => Ok(map
            .iter()
            .map(|(k, v)| Value::Array(vec![Value::String(k.clone()), v.clone()]))
            .collect()),
        other => Err(ExpandError::NotAList {
            argument: argument.to_owned(),
            kind: kind(other),
        }),
    }
}

impl Mapping {
    /// Where each list comes from.
    pub fn sources(&self) -> impl Iterator<Item = &Source> {
        let sources: Vec<&Source> = match &self.expand {
            Expand::Args(args) => args.iter().map(|(_, s)| s).collect(),
            Expand::Kwargs(source) => vec![source],
        };
        sources.into_iter()
    }

    /// The upstream tasks whose XComs are mapped over.
    pub fn xcom_tasks(&self) -> impl Iterator<Item = &TaskId> {
        self.sources()
            .filter_map(|s| s.upstream().map(|(task, _)| task))
    }

    /// Every list, resolved once: `xcom` gives an upstream's XCom by key (`None`: its return
    /// value). What the result answers (how many instances, each one's arguments) needs no
    /// further look-up, so a scheduler resolves a task's lists once per expansion rather than
    /// once per instance.
    pub fn resolve(&self, xcom: &XComLookup<'_>) -> Result<Lists, ExpandError> {
        let resolve = |argument: &str, source: &Source| match source {
            Source::Literal(items) => Ok(items.clone()),
            Source::XCom(task) | Source::XComKey(task, _) => {
                let key = source.upstream().and_then(|(_, key)| key);
                let value = xcom(task, key).ok_or_else(|| ExpandError::NoValue {
                    task: task.clone(),
                    key: key.map(str::to_owned),
                })?;
                items(argument, &value)
            }
        };
        let sources = self.xcom_tasks().cloned().collect();
        match &self.expand {
            Expand::Args(args) => Ok(Lists {
                by_argument: args
                    .iter()
                    .map(|(name, source)| Ok((name.clone(), resolve(name, source)?)))
                    .collect::<Result<_, ExpandError>>()?,
                kwargs: false,
                sources,
            }),
            Expand::Kwargs(source) => {
                let list = resolve("expand_kwargs", source)?;
                for (index, item) in list.iter().enumerate() {
                    if !item.is_object() {
                        return Err(ExpandError::NotArguments {
                            index,
                            kind: kind(item),
                        });
                    }
                }
                Ok(Lists {
                    by_argument: vec![(String::new(), list)],
                    kwargs: true,
                    sources,
                })
            }
        }
    }

    /// How many instances the task has, once its upstreams' values are known (0: it is
    /// skipped); more than `max` is an error.
    pub fn length(&self, xcom: &XComLookup<'_>, max: usize) -> Result<usize, ExpandError> {
        self.resolve(xcom)?.checked_len(max)
    }

    /// The arguments instance `index` is given on top of the task's own (`partial`) ones;
    /// `None` when there is no such instance.
    pub fn instance_args(
        &self,
        xcom: &XComLookup<'_>,
        index: usize,
    ) -> Result<Option<Map<String, Value>>, ExpandError> {
        Ok(self.resolve(xcom)?.args(index))
    }
}

/// A mapped task's lists once resolved ([`Mapping::resolve`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Lists {
    /// Each `expand:` argument's items, in the order written; for `expand_kwargs:`, one entry
    /// (named "") holding the maps of arguments.
    by_argument: Vec<(String, Vec<Value>)>,
    kwargs: bool,
    /// The upstream tasks whose values were resolved: a new value of one makes these stale.
    sources: Vec<TaskId>,
}

impl Lists {
    /// How many instances: the product of the lists' lengths (saturating).
    #[must_use]
    pub fn len(&self) -> usize {
        self.by_argument
            .iter()
            .try_fold(1usize, |n, (_, list)| n.checked_mul(list.len()))
            .unwrap_or(usize::MAX)
    }

    /// Whether there are no instances (the task is skipped).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// [`Lists::len`], or an error when it is more than `max` (`[core] max_map_length`).
    pub fn checked_len(&self, max: usize) -> Result<usize, ExpandError> {
        let length = self.len();
        if length > max {
            return Err(ExpandError::TooLong { length, max });
        }
        Ok(length)
    }

    /// Whether these lists were resolved from `task`'s value.
    #[must_use]
    pub fn depends_on(&self, task: &str) -> bool {
        self.sources.iter().any(|t| t.as_str() == task)
    }

    /// The arguments instance `index` is given; `None` when there is no such instance.
    #[must_use]
    pub fn args(&self, index: usize) -> Option<Map<String, Value>> {
        if self.kwargs {
            let item = self
                .by_argument
                .first()
                .and_then(|(_, list)| list.get(index));
            return item.and_then(|v| v.as_object().cloned());
        }
        // As Airflow decomposes an index: the last argument varies fastest.
        let mut rest = index;
        let mut args = Map::new();
        for (name, list) in self.by_argument.iter().rev() {
            if list.is_empty() {
                return None;
            }
            args.insert(name.clone(), list[rest % list.len()].clone());
            rest /= list.len();
        }
        (rest == 0).then_some(args)
    }
}

/// The state a mapped task has as a whole, from its instances' states, for what looks at tasks
/// rather than instances (readiness, the run's outcome): `none` while any instance waits for its
/// trigger rule (so the rule is looked at again), unfinished while any instance is, then
/// failed, upstream_failed, skipped or success in that order of precedence (Airflow decides a
/// run from its leaves' instances the same way). Removed instances do not count; a task with
/// none left is skipped, as Airflow skips a task expanded over nothing.
#[must_use]
pub fn task_state(instances: impl IntoIterator<Item = TaskState>) -> TaskState {
    let mut counts = StateCounts::default();
    instances.into_iter().for_each(|s| counts.add(s));
    counts.task_state()
}

/// How many instances of a mapped task are in each state, kept as they move so that the task's
/// state as a whole ([`task_state`]) costs no walk over thousands of instances per move.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StateCounts {
    counts: std::collections::BTreeMap<TaskState, usize>,
}

impl StateCounts {
    /// Counts one more instance in `state`.
    pub fn add(&mut self, state: TaskState) {
        *self.counts.entry(state).or_default() += 1;
    }

    /// Counts one instance fewer in `state`.
    pub fn remove(&mut self, state: TaskState) {
        if let Some(n) = self.counts.get_mut(&state) {
            *n -= 1;
            if *n == 0 {
                self.counts.remove(&state);
            }
        }
    }

    /// Calls `each` with every state counted and how many instances are in it.
    pub fn for_each(&self, each: &mut dyn FnMut(TaskState, usize)) {
        self.counts.iter().for_each(|(state, n)| each(*state, *n));
    }

    /// The task's state as a whole (see [`task_state`]).
    #[must_use]
    pub fn task_state(&self) -> TaskState {
        let present = |s: &TaskState| self.counts.contains_key(s);
        if present(&TaskState::NoStatus) {
            return TaskState::NoStatus;
        }
        let counted = self.counts.keys().filter(|s| **s != TaskState::Removed);
        if counted.clone().any(|s| !s.is_finished()) {
            return TaskState::Running;
        }
        [
            TaskState::Failed,
            TaskState::UpstreamFailed,
            TaskState::Success,
        ]
        .into_iter()
        .find(present)
        .unwrap_or(TaskState::Skipped)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn task(id: &str) -> TaskId {
        TaskId::new(id).unwrap()
    }

    fn none(_: &TaskId, _: Option<&str>) -> Option<Value> {
        None
    }

    #[test]
    fn several_lists_map_to_every_combination_the_last_varying_fastest() {
        let mapping = Mapping {
            expand: Expand::Args(vec![
                ("a".into(), Source::Literal(vec![json!(1), json!(2)])),
                ("b".into(), Source::XCom(task("up"))),
            ]),
            map_index_template: None,
            group: None,
        };
        let xcom =
            |t: &TaskId, _: Option<&str>| (t.as_str() == "up").then(|| json!(["x", "y", "z"]));
        assert_eq!(mapping.length(&xcom, 1024), Ok(6));
        let all: Vec<Value> = (0..6)
            .map(|i| Value::Object(mapping.instance_args(&xcom, i).unwrap().unwrap()))
            .collect();
        assert_eq!(
            all,
            [
                json!({"a": 1, "b": "x"}),
                json!({"a": 1, "b": "y"}),
                json!({"a": 1, "b": "z"}),
                json!({"a": 2, "b": "x"}),
                json!({"a": 2, "b": "y"}),
                json!({"a": 2, "b": "z"}),
            ]
        );
        assert_eq!(mapping.instance_args(&xcom, 6), Ok(None));
        assert_eq!(
            mapping.xcom_tasks().collect::<Vec<_>>(),
            [&task("up")],
            "only the XCom source is an upstream"
        );
    }

    #[test]
    fn an_upstream_value_that_is_missing_not_a_list_or_too_long_is_an_error() {
        let mapping = Mapping {
            expand: Expand::Args(vec![("n".into(), Source::XCom(task("up")))]),
            map_index_template: None,
            group: None,
        };
        assert_eq!(
            mapping.length(&none, 1024),
            Err(ExpandError::NoValue {
                task: task("up"),
                key: None
            })
        );
        let text = |_: &TaskId, _: Option<&str>| Some(json!("abc"));
        let err = mapping.length(&text, 1024).unwrap_err();
        assert_eq!(
            err.to_string(),
            "expanding \"n\": its value is a string, not a list or a map"
        );
        let long = |_: &TaskId, _: Option<&str>| Some(Value::Array(vec![json!(0); 1025]));
        let err = mapping.length(&long, 1024).unwrap_err();
        assert_eq!(
            err.to_string(),
            "expanding would make 1025 instances, more than [core] max_map_length (1024) allows"
        );
        let empty = |_: &TaskId, _: Option<&str>| Some(json!([]));
        assert_eq!(mapping.length(&empty, 1024), Ok(0), "an empty list skips");
        let map = |_: &TaskId, _: Option<&str>| Some(json!({"k": 1}));
        assert_eq!(
            mapping.instance_args(&map, 0).unwrap(),
            Some(Map::from_iter([("n".to_owned(), json!(["k", 1]))])),
            "a map is mapped over its items"
        );
    }

    #[test]
    fn a_keyed_source_reads_that_xcom_of_its_upstream() {
        let mapping = Mapping {
            expand: Expand::Kwargs(Source::XComKey(task("prepare"), "grid".into())),
            map_index_template: None,
            group: None,
        };
        let xcom = |t: &TaskId, key: Option<&str>| {
            (t.as_str() == "prepare" && key == Some("grid"))
                .then(|| json!([{"env": {"RATE": "0.1"}}, {"env": {"RATE": "0.5"}}]))
        };
        assert_eq!(mapping.length(&xcom, 1024), Ok(2));
        assert_eq!(mapping.xcom_tasks().collect::<Vec<_>>(), [&task("prepare")]);
        let err = mapping.length(&none, 1024).unwrap_err();
        assert_eq!(
            err.to_string(),
            "expanding over prepare's XCom \"grid\": prepare pushed none"
        );
    }

    #[test]
    fn a_mapped_task_is_as_far_as_its_instances_are() {
        use TaskState::{Failed, NoStatus, Removed, Running, Skipped, Success, UpstreamFailed};
        assert_eq!(task_state([Success, NoStatus, Running]), NoStatus);
        assert_eq!(task_state([Success, TaskState::Queued]), Running);
        assert_eq!(task_state([Success, Skipped, Failed]), Failed);
        assert_eq!(task_state([UpstreamFailed, Success]), UpstreamFailed);
        assert_eq!(task_state([Skipped, Success, Removed]), Success);
        assert_eq!(task_state([Skipped, Skipped]), Skipped);
        assert_eq!(task_state([Removed]), Skipped);
    }

    #[test]
    fn expand_kwargs_gives_each_instance_one_map_of_arguments() {
        let mapping = Mapping {
            expand: Expand::Kwargs(Source::Literal(vec![
                json!({"bash_command": "echo 1"}),
                json!({"bash_command": "echo 2", "env": {"X": "1"}}),
            ])),
            map_index_template: None,
            group: None,
        };
        assert_eq!(mapping.length(&none, 1024), Ok(2));
        assert_eq!(
            mapping.instance_args(&none, 1).unwrap().map(Value::Object),
            Some(json!({"bash_command": "echo 2", "env": {"X": "1"}}))
        );
        let bad = Mapping {
            expand: Expand::Kwargs(Source::Literal(vec![json!(1)])),
            map_index_template: None,
            group: None,
        };
        assert_eq!(
            bad.length(&none, 1024),
            Err(ExpandError::NotArguments {
                index: 0,
                kind: "a number"
            })
        );
    }
}
