//! One task entry: its operator, its settings and its operator arguments, checked.

use std::collections::HashSet;

use gust_core::task::TaskSettings;
use gust_operators::{OperatorSpec, refused};
use gust_template::Renderer;

use super::mapping::{self, MAPPING_KEYS};
use super::settings;
use super::setup_teardown;
use super::values;
use crate::diagnostic::{Diagnostic, closest};
use crate::location::Location;
use crate::yaml::{Mapping, Node, Value};

/// Keys of a task entry that are neither settings nor operator arguments.
pub const TASK_KEYS: &[&str] = &[
    "operator",
    "task_id",
    "dependencies",
    "task_group_name",
    "doc_md",
    "as_teardown",
];

/// A task entry after its defaults were laid under it.
pub struct TaskEntry<'a> {
    /// The task's name as written (without its group's prefix).
    pub name: &'a str,
    /// Where the entry starts.
    pub at: &'a Location,
    /// The task's own keys.
    pub own: &'a Mapping,
    /// `default_args` of the DAG and its groups, outermost first; the task's own keys win.
    pub defaults: Vec<&'a Mapping>,
    /// The folder of the DAG file, which dag-factory's `file:` of datasets is relative to.
    pub dag_dir: &'a std::path::Path,
    /// A task of a Python DAG file that the Task SDK runs from the file itself: its operator
    /// (a class path) and arguments are Python's, not Gust's to check.
    pub task_sdk: bool,
    /// The mapped task group the task is in, if any: it is expanded with the group.
    pub mapped_group: Option<&'a super::groups::MappedGroup<'a>>,
}

/// A task entry read and checked, before its dependencies are resolved.
pub struct ReadTask {
    /// The operator.
    pub operator: &'static OperatorSpec,
    /// Operator arguments under canonical names.
    pub args: serde_json::Map<String, serde_json::Value>,
    /// Shared settings.
    pub settings: TaskSettings,
    /// Names the task depends on, as written, with their places.
    pub dependencies: Vec<(String, Location)>,
    /// Markdown documentation.
    pub doc_md: Option<String>,
    /// The setups named by `as_teardown: {setups: [...]}`, with their places (also dependencies).
    pub setups: Vec<(String, Location)>,
    /// How the task is mapped, if it is; an upstream it maps over is named as written.
    pub mapping: Option<gust_core::mapping::Mapping>,
}

/// Reads one task. Every problem is pushed to `problems`; `None` when the task cannot be built.
pub fn read_task(
    entry: &TaskEntry<'_>,
    renderer: &Renderer,
    problems: &mut Vec<Diagnostic>,
) -> Option<ReadTask> {
    let operator = read_operator(entry, problems)?;
    // A task of a mapped group takes the group's `expand:` and `partial:` as its own.
    let in_group = match entry.mapped_group {
        Some(group) => match mapping::in_mapped_group(entry.own, group) {
            Ok(own) => Some(own),
            Err(problem) => {
                // The rest would be judged against keys the task does not have.
                problems.push(problem);
                return None;
            }
        },
        None => None,
    };
    let own = in_group.as_ref().unwrap_or(entry.own);
    // dag-factory lays `partial:`'s arguments in among the task's own.
    let merged = mapping::with_partial(own).unwrap_or_else(|problem| {
        problems.push(problem);
        None
    });
    let own_map = merged.as_ref().unwrap_or(own);
    let mut settings = TaskSettings {
        do_xcom_push: operator.pushes_xcom_by_default,
        ..TaskSettings::default()
    };
    let mut args = serde_json::Map::new();
    let mut arg_nodes: Vec<(&str, &Node)> = Vec::new();
    let mut dependencies = Vec::new();
    // The tasks whose XComs a TaskFlow task takes as arguments (`+task_id`): upstreams too.
    let mut xcom_upstreams = Vec::new();
    let mut doc_md = None;
    let mut setups = Vec::new();
    let own_keys: HashSet<&str> = own_map.iter().map(|(k, _)| k.name.as_str()).collect();
    // Arguments a misspelling was taken for, so a typo is reported once rather than also as missing.
    let mut suggested: HashSet<&str> = HashSet::new();

    // Defaults first, then the task's own keys, so that later values replace earlier ones.
    let layers = entry
        .defaults
        .iter()
        .map(|m| (false, *m))
        .chain([(true, own_map)]);
    for (own, layer) in layers {
        for (key, node) in layer.iter() {
            let name = key.name.as_str();
            if !own && own_keys.contains(name) {
                continue;
            }
            let result = match name {
                "operator" | "task_id" => Ok(()),
                // Read as a whole below.
                _ if own && MAPPING_KEYS.contains(&name) => Ok(()),
                "dependencies" => read_names(node, name).map(|names| dependencies = names),
                // The group was resolved by the caller, which needs it to lay the group's defaults.
                "task_group_name" => values::string(node, name).map(drop),
                "doc_md" => values::opt_string(node, name).map(|d| doc_md = d),
                "outlets" => super::assets::read_task_assets(node, name, entry.dag_dir).map(
                    |(assets, aliases)| {
                        settings.outlets = assets;
                        settings.outlet_aliases = aliases;
                    },
                ),
                // An inlet alias matters only to the Task SDK (`inlet_events`), which reads
                // the task from the file itself.
                "inlets" => super::assets::read_task_assets(node, name, entry.dag_dir)
                    .map(|(assets, _)| settings.inlets = assets),
                "as_teardown" => setup_teardown::read_as_teardown(node).map(|teardown| {
                    teardown.apply(&mut settings);
                    setups = teardown.setups;
                }),
                _ if settings::is_setting(name) => settings::apply(&mut settings, name, node),
                _ => {
                    let canonical = operator.canonical_argument(name).unwrap_or(name);
                    if operator.takes(canonical) {
                        let value = node.to_json();
                        if operator.name == gust_operators::python::TASKFLOW_SPEC.name
                            && let Some(task) = gust_operators::python::xcom_arg_task(&value)
                        {
                            xcom_upstreams.push((task.to_owned(), node.at.clone()));
                        }
                        args.insert(canonical.to_owned(), value);
                        arg_nodes.push((canonical, node));
                        Ok(())
                    } else if !own {
                        // default_args apply only to operators that take them, as in Airflow.
                        Ok(())
                    } else if let Some(why) = refused::refused_argument(name) {
                        Err(Diagnostic::new(
                            key.at.clone(),
                            format!("argument \"{name}\" cannot be used"),
                        )
                        .with_hint(why))
                    } else {
                        let (problem, near) = unknown_argument(operator, name, &key.at);
                        suggested.extend(near);
                        Err(problem)
                    }
                }
            };
            if let Err(problem) = result {
                problems.push(problem);
            }
        }
    }

    // What a mapped group maps over is its roots' upstream (the group's dependency), not
    // every one of its tasks'.
    let mut group_upstreams = Vec::new();
    let sources = if entry.mapped_group.is_some() {
        &mut group_upstreams
    } else {
        &mut xcom_upstreams
    };
    let mapped = mapping::read_mapping(own_map, operator, sources)
        .unwrap_or_else(|problem| {
            problems.push(problem);
            None
        })
        .map(|mut m| {
            m.group = entry.mapped_group.map(|g| g.id.clone());
            m
        });
    // A teardown runs after its setups: they are among its dependencies.
    dependencies.extend(setups.iter().cloned());
    for (name, at) in xcom_upstreams {
        if !dependencies.iter().any(|(listed, _)| *listed == name) {
            dependencies.push((name, at));
        }
    }
    setup_teardown::teardown_rule(&mut settings, &own_keys);
    if let Err(problem) = setup_teardown::check_task(&settings, entry) {
        problems.push(problem);
    }

    let mut complete = true;
    // An expanded argument is given to every instance; `expand_kwargs` over an upstream's
    // output gives what it gives, known only at run time.
    let expanded = mapped.as_ref().map(mapping::expanded_names);
    let kwargs_at_run_time = mapped.as_ref().is_some_and(|m| {
        matches!(
            m.expand,
            gust_core::mapping::Expand::Kwargs(
                gust_core::mapping::Source::XCom(_) | gust_core::mapping::Source::XComKey(..)
            )
        )
    });
    for required in operator.required {
        let is_expanded = expanded
            .as_ref()
            .is_some_and(|names| names.iter().any(|n| n == required));
        if args.contains_key(*required) || is_expanded || kwargs_at_run_time {
            continue;
        }
        complete = false;
        if !suggested.contains(required) {
            problems.push(
                Diagnostic::new(
                    entry.at.clone(),
                    format!(
                        "missing argument \"{required}\" for operator {}",
                        operator.name
                    ),
                )
                .with_hint(format!("add `{required}:` to the task")),
            );
        }
    }
    // Without its required arguments the typed check would only repeat what was said above.
    // A mapped task is checked as its first instance would run, when its lists are written
    // in the file; over an upstream's output, its instances are checked when they run.
    let checked = match &mapped {
        _ if !complete => Ok(()),
        None => (operator.check)(&args),
        Some(m) => {
            mapping::first_instance_args(m, &args).map_or(Ok(()), |first| (operator.check)(&first))
        }
    };
    if let Err(err) = checked {
        let top = err.path.split(['.', '[']).next().unwrap_or_default();
        let at = arg_nodes
            .iter()
            .find(|(name, _)| *name == top)
            .map_or(entry.at, |(_, n)| &n.at);
        problems.push(Diagnostic::new(
            at.clone(),
            format!("argument \"{}\": {}", err.path, err.message),
        ));
    }
    // The Task SDK renders its tasks' templates with Airflow's Jinja, which Gust's renderer
    // would not judge rightly.
    if !gust_operators::python::runs_in_task_sdk(operator.name) {
        for (_, node) in &arg_nodes {
            check_templates(node, renderer, problems);
        }
    }
    Some(ReadTask {
        operator,
        args,
        settings,
        dependencies,
        doc_md,
        setups,
        mapping: mapped,
    })
}

fn read_operator(
    entry: &TaskEntry<'_>,
    problems: &mut Vec<Diagnostic>,
) -> Option<&'static OperatorSpec> {
    if entry.task_sdk {
        return Some(&gust_operators::python::CLASS_PATH_SPEC);
    }
    // dag-factory builds a task with `decorator:` and no `operator:` of its own as TaskFlow.
    if entry.own.get("operator").is_none()
        && let Some(decorator) = entry.own.get("decorator")
    {
        if gust_operators::python::enabled() {
            return Some(&gust_operators::python::TASKFLOW_SPEC);
        }
        problems.push(
            Diagnostic::new(
                decorator.at.clone(),
                format!("TaskFlow task \"{}\" needs Python", entry.name),
            )
            .with_hint(gust_operators::python::NOT_CONFIGURED),
        );
        return None;
    }
    let Some(node) = entry
        .own
        .get("operator")
        .or_else(|| entry.defaults.iter().rev().find_map(|m| m.get("operator")))
    else {
        problems.push(
            Diagnostic::new(
                entry.at.clone(),
                format!("task \"{}\" has no operator", entry.name),
            )
            .with_hint("add `operator: bash` (or another operator) to the task"),
        );
        return None;
    };
    let name = match values::string(node, "operator") {
        Ok(name) => name,
        Err(problem) => {
            problems.push(problem);
            return None;
        }
    };
    if let Some(spec) = gust_operators::resolve(&name) {
        if spec.open_arguments {
            let hint = if spec.name == gust_operators::python::TASKFLOW_SPEC.name {
                "a TaskFlow task names its decorator in place of an operator: `decorator: \
                 airflow.sdk.task`"
            } else {
                "name the operator by its Airflow class path (package.module.Class)"
            };
            problems.push(
                Diagnostic::new(
                    node.at.clone(),
                    format!("operator \"{name}\" cannot be named"),
                )
                .with_hint(hint),
            );
            return None;
        }
        return Some(spec);
    }
    // Any other Airflow operator, by its class path, runs in the Task SDK.
    if gust_operators::python::enabled() && gust_operators::python::is_class_path(&name) {
        return Some(&gust_operators::python::CLASS_PATH_SPEC);
    }
    let problem = Diagnostic::new(node.at.clone(), format!("unknown operator \"{name}\""));
    problems.push(if let Some(why) = refused::refused_operator(&name) {
        problem.with_hint(why)
    } else if let Some(near) = closest(&name, gust_operators::registry::all_names()) {
        problem.with_hint(format!("did you mean \"{near}\"?"))
    } else {
        let names: Vec<&str> = gust_operators::registry::available()
            .filter(|s| !s.open_arguments)
            .map(|s| s.name)
            .collect();
        problem.with_hint(format!("Gust's operators are: {}", names.join(", ")))
    });
    None
}

fn unknown_argument(
    operator: &OperatorSpec,
    name: &str,
    at: &Location,
) -> (Diagnostic, Option<&'static str>) {
    let candidates = operator
        .arguments
        .iter()
        .copied()
        .chain(settings::SETTING_KEYS.iter().copied())
        .chain(TASK_KEYS.iter().copied())
        .chain(MAPPING_KEYS.iter().copied());
    let problem = Diagnostic::new(
        at.clone(),
        format!("unknown argument \"{name}\" for operator {}", operator.name),
    );
    let near = closest(name, candidates);
    let problem = match near {
        Some(near) => problem.with_hint(format!("did you mean \"{near}\"?")),
        None if operator.arguments.is_empty() => problem.with_hint(format!(
            "operator {} takes no arguments of its own",
            operator.name
        )),
        None => problem.with_hint(format!(
            "operator {} takes: {}",
            operator.name,
            operator.arguments.join(", ")
        )),
    };
    (problem, near)
}

/// A name or a list of names, with their places.
pub fn read_names(node: &Node, key: &str) -> values::Read<Vec<(String, Location)>> {
    match &node.value {
        Value::Null => Ok(Vec::new()),
        Value::Str(name) => Ok(vec![(name.clone(), node.at.clone())]),
        Value::Seq(items) => items
            .iter()
            .map(|item| values::string(item, key).map(|name| (name, item.at.clone())))
            .collect(),
        _ => Err(Diagnostic::new(
            node.at.clone(),
            format!(
                "\"{key}\" must be a list of task names, not {}",
                node.kind()
            ),
        )),
    }
}

/// Checks every string inside `node` as a template, so syntax errors and names no run will
/// define surface at load time. Which variables and connections exist cannot be known here.
fn check_templates(node: &Node, renderer: &Renderer, problems: &mut Vec<Diagnostic>) {
    let mut pending = vec![node];
    while let Some(node) = pending.pop() {
        match &node.value {
            Value::Str(text) => {
                if let Err(err) = renderer.check(text, &gust_template::Known::default()) {
                    problems.push(Diagnostic::new(node.at.clone(), err.to_string()));
                }
            }
            Value::Seq(items) => pending.extend(items.iter()),
            Value::Map(map) => pending.extend(map.iter().map(|(_, v)| v)),
            _ => {}
        }
    }
}
