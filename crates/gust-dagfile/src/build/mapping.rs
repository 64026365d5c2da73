//! A mapped task's keys, as dag-factory reads them: `partial:` (arguments every instance shares,
//! laid under the task's own keys; a key in both is an error, as dag-factory says) and
//! `expand:` (arguments each instance takes one item of), plus Airflow's `expand_kwargs:` (one
//! map of arguments per instance) and `map_index_template:`.
//!
//! A list is written in the file, or is an upstream's return value in any of dag-factory's
//! spellings: `task.output`, `XComArg(task)` (dag-factory's own `XcomArg(task)` too) and
//! TaskFlow's `+task`, or another of its XComs by key (`task.output['key']`). The upstream
//! becomes a dependency, as Airflow makes it one.

use gust_core::ids::TaskId;
use gust_core::mapping::{Expand, Mapping as TaskMapping, Source};
use gust_operators::OperatorSpec;

use super::groups::MappedGroup;
use super::values::{self, Read};
use crate::diagnostic::Diagnostic;
use crate::location::Location;
use crate::yaml::{Mapping, Node, Value};

/// The keys a mapped task adds to a task entry.
pub const MAPPING_KEYS: &[&str] = &["partial", "expand", "expand_kwargs", "map_index_template"];

/// The task's own keys with `partial:`'s entries laid in (dag-factory merges them into the
/// task's arguments); `None` when there is no `partial:`.
pub fn with_partial(own: &Mapping) -> Read<Option<Mapping>> {
    let Some(node) = own.get("partial") else {
        return Ok(None);
    };
    let partial = values::map(node, "partial")?;
    let mut merged = own.clone();
    merged.remove("partial");
    for (k, v) in partial.iter() {
        if let Some((first, _)) = own.entry(&k.name) {
            return Err(Diagnostic::new(
                k.at.clone(),
                format!(
                    "\"{}\" is given both in partial and in the task (line {})",
                    k.name, first.at.line
                ),
            )
            .with_hint("give it once: in `partial:` or beside it"));
        }
        if MAPPING_KEYS.contains(&k.name.as_str()) {
            return Err(Diagnostic::new(
                k.at.clone(),
                format!("\"{}\" cannot be inside partial", k.name),
            )
            .with_hint(format!("write `{}:` beside `partial:`", k.name)));
        }
        merged.insert(k.clone(), v.clone());
    }
    Ok(Some(merged))
}

/// The upstream a string names, in one of dag-factory's spellings of its return value
/// (`task.output`, `XComArg(task)`, `XcomArg(task)`, `+task`), with the XCom key when it names
/// another (Airflow's `task.output['key']`, `XComArg(task, key='key')`, TaskFlow's
/// `+task["key"]`).
fn xcom_ref(text: &str) -> Option<(&str, Option<&str>)> {
    let text = text.trim();
    let (name, key) = if let Some(rest) = text.strip_prefix('+') {
        split_subscript(rest)?
    } else if let Some(task) = text.strip_suffix(".output") {
        (task, None)
    } else if let Some(at) = text.rfind(".output[") {
        (&text[..at], Some(subscript(&text[at + ".output".len()..])?))
    } else {
        let inner = ["XComArg(", "XcomArg("]
            .iter()
            .find_map(|open| text.strip_prefix(open))?
            .strip_suffix(')')?;
        match inner.split_once(',') {
            None => (inner.trim(), None),
            Some((task, key)) => {
                let key = key
                    .trim()
                    .strip_prefix("key")?
                    .trim_start()
                    .strip_prefix('=')?;
                (task.trim(), Some(quoted(key.trim())?))
            }
        }
    };
    let is_name = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.'));
    is_name.then_some((name, key))
}

/// `name` or `name["key"]`.
fn split_subscript(text: &str) -> Option<(&str, Option<&str>)> {
    match text.find('[') {
        None => Some((text, None)),
        Some(at) => Some((&text[..at], Some(subscript(&text[at..])?))),
    }
}

/// The key of `['key']` or `["key"]`.
fn subscript(text: &str) -> Option<&str> {
    quoted(text.trim().strip_prefix('[')?.strip_suffix(']')?.trim())
}

/// The text between matching single or double quotes.
fn quoted(text: &str) -> Option<&str> {
    let inner = text
        .strip_prefix('\'')
        .and_then(|t| t.strip_suffix('\''))
        .or_else(|| text.strip_prefix('"').and_then(|t| t.strip_suffix('"')))?;
    (!inner.is_empty()).then_some(inner)
}

/// One list: written in the file, or an upstream's return value (noted in `upstreams`).
fn read_source(node: &Node, key: &str, upstreams: &mut Vec<(String, Location)>) -> Read<Source> {
    match &node.value {
        Value::Seq(items) => Ok(Source::Literal(items.iter().map(Node::to_json).collect())),
        // Airflow maps over a dict's items, each a (key, value) pair.
        Value::Map(map) => Ok(Source::Literal(
            map.iter()
                .map(|(k, v)| serde_json::json!([k.name, v.to_json()]))
                .collect(),
        )),
        Value::Str(text) => {
            let Some((name, xcom_key)) = xcom_ref(text) else {
                return Err(Diagnostic::new(
                    node.at.clone(),
                    format!("\"{key}\" must be a list or an upstream's output, not \"{text}\""),
                )
                .with_hint("write a list, or `task.output`, `XComArg(task)` or `+task`"));
            };
            let task = TaskId::new(name)
                .map_err(|err| Diagnostic::new(node.at.clone(), err.to_string()))?;
            upstreams.push((name.to_owned(), node.at.clone()));
            Ok(match xcom_key {
                None => Source::XCom(task),
                Some(key) => Source::XComKey(task, key.to_owned()),
            })
        }
        _ => Err(Diagnostic::new(
            node.at.clone(),
            format!(
                "\"{key}\" must be a list or an upstream's output, not {}",
                node.kind()
            ),
        )),
    }
}

/// The upstreams a mapped task group's `expand:` or `expand_kwargs:` maps over (`fields`: the
/// group's keys), as written.
pub fn expand_upstreams(fields: &Mapping) -> Read<Vec<(String, Location)>> {
    let mut upstreams = Vec::new();
    if let Some(node) = fields.get("expand") {
        for (k, v) in values::map(node, "expand")?.iter() {
            read_source(v, &format!("expand.{}", k.name), &mut upstreams)?;
        }
    }
    if let Some(node) = fields.get("expand_kwargs") {
        read_source(node, "expand_kwargs", &mut upstreams)?;
    }
    Ok(upstreams)
}

/// A task of mapped task group `group`: its own keys with the group's `expand:` or
/// `expand_kwargs:` and `partial:` laid in, as if the task had them, so each of its instances
/// gets the group's item of its index. A task mapped itself inside a mapped group is refused
/// (Airflow maps it again within each of the group's instances; Gust does not yet), as is an
/// argument given both by the group's `partial:` and the task.
pub fn in_mapped_group(own: &Mapping, group: &MappedGroup<'_>) -> Read<Mapping> {
    if let Some((key, _)) = own.entry("expand").or_else(|| own.entry("expand_kwargs")) {
        return Err(Diagnostic::new(
            key.at.clone(),
            format!(
                "the task is mapped inside mapped task group \"{}\", which Gust cannot run yet",
                group.id
            ),
        )
        .with_hint("map the group or its task, not both"));
    }
    let mut merged = own.clone();
    for key in ["expand", "expand_kwargs"] {
        if let Some((k, v)) = group.fields.entry(key) {
            merged.insert(k.clone(), v.clone());
        }
    }
    if let Some((group_key, group_partial)) = group.fields.entry("partial") {
        let mut partial = match own.get("partial") {
            Some(node) => values::map(node, "partial")?.clone(),
            None => Mapping::default(),
        };
        for (k, v) in values::map(group_partial, "partial")?.iter() {
            if let Some((first, _)) = partial.entry(&k.name).or_else(|| own.entry(&k.name)) {
                return Err(Diagnostic::new(
                    first.at.clone(),
                    format!(
                        "\"{}\" is given both by mapped task group \"{}\"'s partial (line {}) and the task",
                        k.name, group.id, k.at.line
                    ),
                )
                .with_hint("give it once"));
            }
            partial.insert(k.clone(), v.clone());
        }
        merged.insert(
            group_key.clone(),
            Node {
                value: Value::Map(partial),
                at: group_partial.at.clone(),
            },
        );
    }
    Ok(merged)
}

/// A mapped task's `expand:` or `expand_kwargs:` and `map_index_template:`; `None` when the task
/// is not mapped. The upstreams whose outputs it maps over are pushed to `upstreams`; every
/// expanded argument must be one `operator` takes, and not also be given to the task.
pub fn read_mapping(
    own: &Mapping,
    operator: &OperatorSpec,
    upstreams: &mut Vec<(String, Location)>,
) -> Read<Option<TaskMapping>> {
    let expand = match (own.entry("expand"), own.entry("expand_kwargs")) {
        (None, None) => {
            if let Some(node) = own.get("map_index_template") {
                return Err(Diagnostic::new(
                    node.at.clone(),
                    "\"map_index_template\" names the instances of a mapped task; this task is not mapped",
                )
                .with_hint("add `expand:` or remove `map_index_template:`"));
            }
            return Ok(None);
        }
        (Some((_, _)), Some((key, _))) => {
            return Err(Diagnostic::new(
                key.at.clone(),
                "a task is expanded by `expand:` or by `expand_kwargs:`, not both",
            ));
        }
        (Some((_, node)), None) => {
            let map = values::map(node, "expand")?;
            if map.is_empty() {
                return Err(Diagnostic::new(
                    node.at.clone(),
                    "\"expand\" must name at least one argument",
                ));
            }
            let mut args = Vec::new();
            for (k, v) in map.iter() {
                let canonical = operator.canonical_argument(&k.name).unwrap_or(&k.name);
                if !operator.takes(canonical) {
                    return Err(Diagnostic::new(
                        k.at.clone(),
                        format!(
                            "cannot expand \"{}\": operator {} takes no such argument",
                            k.name, operator.name
                        ),
                    ));
                }
                let given = own.iter().find(|(key, _)| {
                    operator.canonical_argument(&key.name).unwrap_or(&key.name) == canonical
                });
                if let Some((given, _)) = given {
                    return Err(Diagnostic::new(
                        k.at.clone(),
                        format!(
                            "\"{}\" is both expanded and given to the task (line {})",
                            k.name, given.at.line
                        ),
                    ));
                }
                let source = read_source(v, &format!("expand.{}", k.name), upstreams)?;
                args.push((canonical.to_owned(), source));
            }
            Expand::Args(args)
        }
        (None, Some((_, node))) => {
            let source = read_source(node, "expand_kwargs", upstreams)?;
            if let Source::Literal(items) = &source {
                check_kwargs(node, items, operator)?;
            }
            Expand::Kwargs(source)
        }
    };
    let map_index_template = own
        .get("map_index_template")
        .map(|node| values::string(node, "map_index_template"))
        .transpose()?;
    Ok(Some(TaskMapping {
        expand,
        map_index_template,
        group: None,
    }))
}

/// `mapping` with each upstream it maps over named by its id: a name written in a group's task
/// is the id of the upstream it resolved to (`group.name`).
#[must_use]
pub fn resolve_upstreams(mut mapping: TaskMapping, upstream: &[TaskId]) -> TaskMapping {
    let resolve = |source: &mut Source| {
        if let Source::XCom(task) | Source::XComKey(task, _) = source
            && !upstream.contains(task)
        {
            let suffix = format!(".{task}");
            if let Some(id) = upstream.iter().find(|u| u.as_str().ends_with(&suffix)) {
                *task = id.clone();
            }
        }
    };
    match &mut mapping.expand {
        Expand::Args(args) => args.iter_mut().for_each(|(_, source)| resolve(source)),
        Expand::Kwargs(source) => resolve(source),
    }
    mapping
}

/// Every literal item of `expand_kwargs` is a map of arguments the operator takes.
fn check_kwargs(node: &Node, items: &[serde_json::Value], operator: &OperatorSpec) -> Read<()> {
    for (index, item) in items.iter().enumerate() {
        let Some(map) = item.as_object() else {
            return Err(Diagnostic::new(
                node.at.clone(),
                format!("\"expand_kwargs\" item {index} must be a map of arguments"),
            ));
        };
        for name in map.keys() {
            let canonical = operator.canonical_argument(name).unwrap_or(name);
            if !operator.takes(canonical) {
                return Err(Diagnostic::new(
                    node.at.clone(),
                    format!(
                        "\"expand_kwargs\" item {index}: operator {} takes no argument \"{name}\"",
                        operator.name
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// The arguments the first instance would run with, when every list is written in the file
/// (for checking them as the operator's types at load time); `None` when a list comes from an
/// upstream, known only at run time, or a list is empty.
#[must_use]
pub fn first_instance_args(
    mapping: &TaskMapping,
    args: &serde_json::Map<String, serde_json::Value>,
) -> Option<serde_json::Map<String, serde_json::Value>> {
    let no_xcom = |_: &TaskId, _: Option<&str>| None;
    let extra = mapping.instance_args(&no_xcom, 0).ok()??;
    let mut all = args.clone();
    all.extend(extra);
    Some(all)
}

/// The arguments a mapped task's instances get, whatever their lists hold: these count as given
/// when the operator's required arguments are checked.
#[must_use]
pub fn expanded_names(mapping: &TaskMapping) -> Vec<String> {
    match &mapping.expand {
        Expand::Args(args) => args.iter().map(|(name, _)| name.clone()).collect(),
        Expand::Kwargs(Source::Literal(items)) => items
            .iter()
            .filter_map(serde_json::Value::as_object)
            .flat_map(|m| m.keys().cloned())
            .collect(),
        // Known only when the upstream has run.
        Expand::Kwargs(Source::XCom(_) | Source::XComKey(..)) => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use serde_json::json;

    use super::*;

    /// `text` (one task's keys) read as a bash task's mapping, with the upstreams it names.
    fn read(text: &str) -> (Read<Option<TaskMapping>>, Vec<String>) {
        let file: Arc<Path> = Arc::from(Path::new("dag.yaml"));
        let node = crate::yaml::load(&file, text).expect("yaml");
        let own = node.as_map().expect("a map");
        let merged = with_partial(own).expect("partial");
        let own = merged.as_ref().unwrap_or(own);
        let bash = gust_operators::resolve("bash").expect("bash");
        let mut upstreams = Vec::new();
        let read = read_mapping(own, bash, &mut upstreams);
        (read, upstreams.into_iter().map(|(name, _)| name).collect())
    }

    #[test]
    fn expand_reads_literal_lists_and_upstream_outputs_in_file_order() {
        let (mapping, upstreams) = read(
            "operator: bash\nexpand:\n  env: [{A: '1'}, {A: '2'}]\n  bash_command: XComArg(request)\nmap_index_template: '{{ task.env }}'\n",
        );
        let mapping = mapping.expect("read").expect("mapped");
        assert_eq!(
            mapping.expand,
            Expand::Args(vec![
                (
                    "env".into(),
                    Source::Literal(vec![json!({"A": "1"}), json!({"A": "2"})])
                ),
                (
                    "bash_command".into(),
                    Source::XCom(TaskId::new("request").unwrap())
                ),
            ])
        );
        assert_eq!(
            mapping.map_index_template.as_deref(),
            Some("{{ task.env }}")
        );
        assert_eq!(
            upstreams,
            ["request"],
            "an output mapped over is a dependency"
        );
    }

    #[test]
    fn partial_joins_the_tasks_arguments_and_may_not_repeat_them() {
        let file: Arc<Path> = Arc::from(Path::new("dag.yaml"));
        let node = crate::yaml::load(
            &file,
            "operator: bash\npartial: {env: {X: '1'}}\nexpand: {bash_command: [a, b]}\n",
        )
        .expect("yaml");
        let merged = with_partial(node.as_map().unwrap()).unwrap().unwrap();
        assert!(merged.contains("env") && !merged.contains("partial"));
        let twice = crate::yaml::load(&file, "operator: bash\nenv: {}\npartial: {env: {X: '1'}}\n")
            .expect("yaml");
        let err = with_partial(twice.as_map().unwrap()).unwrap_err();
        assert_eq!(
            err.message,
            "\"env\" is given both in partial and in the task (line 2)"
        );
    }

    #[test]
    fn a_mapping_that_cannot_be_is_reported_where_it_is_written() {
        let message = |text: &str| read(text).0.unwrap_err().message;
        assert_eq!(
            message("expand: {colour: [a]}\n"),
            "cannot expand \"colour\": operator bash takes no such argument"
        );
        assert_eq!(
            message("bash_command: x\nexpand: {bash_command: [a]}\n"),
            "\"bash_command\" is both expanded and given to the task (line 1)"
        );
        assert_eq!(
            message("expand: {bash_command: echo}\n"),
            "\"expand.bash_command\" must be a list or an upstream's output, not \"echo\""
        );
        assert_eq!(
            message("expand: {bash_command: [a]}\nexpand_kwargs: []\n"),
            "a task is expanded by `expand:` or by `expand_kwargs:`, not both"
        );
        assert_eq!(
            message("expand_kwargs: [{bash_command: a}, 3]\n"),
            "\"expand_kwargs\" item 1 must be a map of arguments"
        );
        assert_eq!(
            message("map_index_template: x\n"),
            "\"map_index_template\" names the instances of a mapped task; this task is not mapped"
        );
        assert!(matches!(read("bash_command: x\n").0, Ok(None)));
    }

    #[test]
    fn an_upstream_is_named_in_each_of_dag_factorys_spellings() {
        for text in [
            "request.output",
            "XComArg(request)",
            "XcomArg(request)",
            "+request",
        ] {
            assert_eq!(xcom_ref(text), Some(("request", None)), "{text}");
        }
        for text in [
            "request.output['grid']",
            "request.output[\"grid\"]",
            "XComArg(request, key='grid')",
            "XcomArg(request, key = \"grid\")",
            "+request['grid']",
        ] {
            assert_eq!(xcom_ref(text), Some(("request", Some("grid"))), "{text}");
        }
        assert_eq!(
            xcom_ref("group.output_step.output['k']"),
            Some(("group.output_step", Some("k")))
        );
        assert_eq!(xcom_ref("echo hi"), None);
        assert_eq!(xcom_ref(".output"), None);
        assert_eq!(xcom_ref("request.output[grid]"), None, "the key is quoted");
        assert_eq!(xcom_ref("XComArg(request, 'grid')"), None);
    }
}
