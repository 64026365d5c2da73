//! Task groups: full ids (`outer.inner`), prefixes for their tasks, inherited default_args, and
//! mapped task groups (`expand:`/`expand_kwargs:`/`partial:`, Airflow's `@task_group` with
//! `.expand`), whose every task gets one instance per item.

use std::collections::HashMap;

use gust_core::ids::GroupId;

use super::task::read_names;
use super::values::{self, NamedEntry};
use crate::diagnostic::{Diagnostic, closest};
use crate::location::Location;
use crate::yaml::Mapping;

/// How deeply task groups may nest; deeper is a mistake, and would make UIs unreadable.
pub const MAX_GROUP_DEPTH: usize = 32;

/// Keys a task group entry accepts.
const GROUP_KEYS: &[&str] = &[
    "group_name",
    "tooltip",
    "dependencies",
    "parent_group_name",
    "default_args",
    "prefix_group_id",
    "ui_color",
    "ui_fgcolor",
    "expand",
    "expand_kwargs",
    "partial",
];

/// A group entry's keys, read.
struct GroupFields<'a> {
    parent: Option<(String, Location)>,
    prefix: bool,
    default_args: Option<&'a Mapping>,
    tooltip: Option<String>,
    dependencies: Vec<(String, Location)>,
    /// The entry's keys, when it is mapped (`expand:` or `expand_kwargs:`).
    mapped: Option<&'a Mapping>,
}

/// The mapped task group a task is in (itself, or the closest enclosing group that is mapped):
/// its tasks take its `expand:`/`expand_kwargs:` and `partial:` as their own.
#[derive(Debug, Clone)]
pub struct MappedGroup<'a> {
    /// The mapped group's full id.
    pub id: GroupId,
    /// Its entry's keys.
    pub fields: &'a Mapping,
}

/// A group with everything resolved that does not need the tasks.
#[derive(Debug, Clone)]
pub struct Group<'a> {
    /// The full id (`outer.inner`).
    pub id: GroupId,
    /// Hover text.
    pub tooltip: Option<String>,
    /// The enclosing group's name as written.
    pub parent: Option<String>,
    /// What the group depends on, as written.
    pub dependencies: Vec<(String, Location)>,
    /// `default_args` of the enclosing groups and this one, outermost first.
    pub default_args: Vec<&'a Mapping>,
    /// What its tasks' and child groups' ids start with (`outer.inner.`, or the parent's
    /// prefix when `prefix_group_id` is false).
    pub child_prefix: String,
    /// Where the entry starts.
    pub at: Location,
    /// The mapped group its tasks are expanded with, if any.
    pub mapped: Option<MappedGroup<'a>>,
}

/// Resolves every group's id, prefix and inherited defaults. Groups with problems are left out.
pub fn resolve<'a>(
    entries: &[NamedEntry<'a>],
    problems: &mut Vec<Diagnostic>,
) -> HashMap<String, Group<'a>> {
    let mut first_at: HashMap<&str, &Location> = HashMap::new();
    let mut parsed: HashMap<&str, GroupFields<'a>> = HashMap::new();
    for entry in entries {
        if let Some(first) = first_at.get(entry.name.as_str()) {
            problems.push(Diagnostic::new(
                entry.at.clone(),
                format!(
                    "duplicate task group \"{}\" (first at line {})",
                    entry.name, first.line
                ),
            ));
            continue;
        }
        first_at.insert(&entry.name, &entry.at);
        let mut parent = None;
        let mut prefix = true;
        let mut default_args = None;
        let mut tooltip = None;
        let mut dependencies = Vec::new();
        for (key, value) in entry.fields.iter() {
            let result = match key.name.as_str() {
                "group_name" | "ui_color" | "ui_fgcolor" => Ok(()),
                // Read with each of the group's tasks, which take them as their own.
                "expand" | "expand_kwargs" | "partial" => Ok(()),
                "tooltip" => values::opt_string(value, "tooltip").map(|t| tooltip = t),
                "parent_group_name" => values::string(value, "parent_group_name")
                    .map(|p| parent = Some((p, value.at.clone()))),
                "prefix_group_id" => values::boolean(value, "prefix_group_id").map(|p| prefix = p),
                "default_args" => {
                    values::map(value, "default_args").map(|m| default_args = Some(m))
                }
                "dependencies" => read_names(value, "dependencies").map(|d| dependencies = d),
                other => {
                    let problem = Diagnostic::new(
                        key.at.clone(),
                        format!("unknown task group key \"{other}\""),
                    );
                    Err(match closest(other, GROUP_KEYS.iter().copied()) {
                        Some(near) => problem.with_hint(format!("did you mean \"{near}\"?")),
                        None => problem
                            .with_hint(format!("task groups take: {}", GROUP_KEYS.join(", "))),
                    })
                }
            };
            if let Err(p) = result {
                problems.push(p);
            }
        }
        let mapped = ["expand", "expand_kwargs"]
            .iter()
            .any(|key| entry.fields.get(key).is_some());
        if mapped {
            // What the group maps over comes first: its roots depend on it, as in Airflow.
            dependencies.extend(super::mapping::expand_upstreams(entry.fields).unwrap_or_default());
        } else if let Some((key, _)) = entry.fields.entry("partial") {
            problems.push(
                Diagnostic::new(
                    key.at.clone(),
                    format!(
                        "task group \"{}\" has `partial:` but is not mapped",
                        entry.name
                    ),
                )
                .with_hint(
                    "add `expand:` (or `expand_kwargs:`) to the group, or remove `partial:`",
                ),
            );
        }
        parsed.insert(
            &entry.name,
            GroupFields {
                parent,
                prefix,
                default_args,
                tooltip,
                dependencies,
                mapped: mapped.then_some(entry.fields),
            },
        );
    }

    let mut resolved: HashMap<String, Group<'a>> = HashMap::new();
    let mut too_deep_reported = false;
    for entry in entries {
        if resolved.contains_key(&entry.name) || !parsed.contains_key(entry.name.as_str()) {
            continue;
        }
        // Walk up the parents to the outermost group, then build ids on the way down.
        let mut chain = vec![entry.name.as_str()];
        let mut failed = false;
        while let Some(GroupFields {
            parent: Some((parent, at)),
            ..
        }) = parsed.get(chain[chain.len() - 1])
        {
            if chain.contains(&parent.as_str()) {
                problems.push(Diagnostic::new(
                    at.clone(),
                    format!(
                        "task group \"{}\" is nested in itself through parent_group_name",
                        entry.name
                    ),
                ));
                failed = true;
                break;
            }
            if !parsed.contains_key(parent.as_str()) {
                let problem = Diagnostic::new(
                    at.clone(),
                    format!("parent group \"{parent}\" is not a task group of the DAG"),
                );
                problems.push(match closest(parent, parsed.keys().copied()) {
                    Some(near) => problem.with_hint(format!("did you mean \"{near}\"?")),
                    None => problem,
                });
                failed = true;
                break;
            }
            chain.push(parent);
            if chain.len() > MAX_GROUP_DEPTH {
                // Said once: every group below the limit would repeat it.
                if !too_deep_reported {
                    too_deep_reported = true;
                    problems.push(Diagnostic::new(
                        entry.at.clone(),
                        format!(
                            "task group \"{}\" is nested more than {MAX_GROUP_DEPTH} groups deep",
                            entry.name
                        ),
                    ));
                }
                failed = true;
                break;
            }
        }
        if failed {
            continue;
        }
        let mut outer: Option<Group<'a>> = None;
        for name in chain.into_iter().rev() {
            if let Some(done) = resolved.get(name) {
                outer = Some(done.clone());
                continue;
            }
            let GroupFields {
                parent,
                prefix,
                default_args,
                tooltip,
                dependencies,
                mapped,
            } = &parsed[name];
            let parent_prefix = outer
                .as_ref()
                .map_or(String::new(), |g| g.child_prefix.clone());
            let full = format!("{parent_prefix}{name}");
            let id = match GroupId::new(full) {
                Ok(id) => id,
                Err(err) => {
                    problems.push(Diagnostic::new(first_at[name].clone(), err.to_string()));
                    break;
                }
            };
            let outer_mapped = outer.as_ref().and_then(|g| g.mapped.clone());
            let mapped = match (mapped, outer_mapped) {
                (Some(_), Some(outer_mapped)) => {
                    problems.push(
                        Diagnostic::new(
                            first_at[name].clone(),
                            format!(
                                "task group \"{id}\" is mapped inside mapped task group \"{}\", which Gust cannot run yet",
                                outer_mapped.id
                            ),
                        )
                        .with_hint("map one of the two groups only"),
                    );
                    break;
                }
                (Some(fields), None) => Some(MappedGroup {
                    id: id.clone(),
                    fields,
                }),
                (None, outer_mapped) => outer_mapped,
            };
            let mut inherited = outer
                .as_ref()
                .map_or_else(Vec::new, |g| g.default_args.clone());
            inherited.extend(default_args.iter().copied());
            let group = Group {
                child_prefix: if *prefix {
                    format!("{id}.")
                } else {
                    parent_prefix
                },
                id,
                tooltip: tooltip.clone(),
                parent: parent.as_ref().map(|(p, _)| p.clone()),
                dependencies: dependencies.clone(),
                default_args: inherited,
                at: first_at[name].clone(),
                mapped,
            };
            resolved.insert(name.to_owned(), group.clone());
            outer = Some(group);
        }
    }
    resolved
}
