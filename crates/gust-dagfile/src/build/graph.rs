//! The DAG's edges: task dependencies, task group dependencies and chains, with names resolved
//! and groups expanded to their boundary tasks as Airflow does (`group >> t` links the group's
//! leaves to `t`; `t >> group` links `t` to the group's roots).
//!
//! Group boundaries are computed from the task-to-task edges, so an edge that only reaches a
//! group through another group does not change which of its tasks are roots or leaves.

use std::collections::{BTreeSet, HashMap};

use gust_core::ids::TaskId;
use indexmap::IndexMap;

use super::BuiltTask;
use super::chains::parse_chain;
use super::groups::Group;
use super::values;
use crate::diagnostic::{Diagnostic, closest};
use crate::location::Location;
use crate::yaml::{Node, Value};

/// What a name in a dependency or chain refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ref {
    Task(TaskId),
    /// A group, by its name as written.
    Group(String),
}

/// Every task's upstream tasks.
pub type Upstream = HashMap<TaskId, Vec<TaskId>>;

/// Resolves every edge of the DAG. Problems (unknown or ambiguous names, bad chains) are pushed.
pub(crate) fn resolve(
    tasks: &IndexMap<TaskId, BuiltTask>,
    groups: &HashMap<String, Group<'_>>,
    chains: Option<&Node>,
    problems: &mut Vec<Diagnostic>,
) -> Upstream {
    let names = Names::new(tasks, groups);
    // (upstream, downstream) pairs as written.
    let mut links: Vec<(Ref, Ref)> = Vec::new();
    for (id, task) in tasks {
        for (name, at) in &task.read.dependencies {
            if let Some(up) = names.find(name, at, problems, Some(id.as_str())) {
                links.push((up, Ref::Task(id.clone())));
            }
        }
    }
    for (name, group) in groups {
        for (dep, at) in &group.dependencies {
            if let Some(up) = names.find(dep, at, problems, None) {
                links.push((up, Ref::Group(name.clone())));
            }
        }
    }
    if let Some(node) = chains {
        for (expr, at) in chain_texts(node, problems) {
            match parse_chain(&expr) {
                Ok(pairs) => {
                    for (up, down) in pairs {
                        if let (Some(u), Some(d)) = (
                            names.find(&up, &at, problems, None),
                            names.find(&down, &at, problems, None),
                        ) {
                            links.push((u, d));
                        }
                    }
                }
                Err(err) => problems.push(
                    Diagnostic::new(at, format!("chain \"{expr}\": {err}"))
                        .with_hint("write chains as \"a >> [b, c] >> d\""),
                ),
            }
        }
    }

    let mut upstream: Upstream = HashMap::new();
    for (up, down) in &links {
        if let (Ref::Task(u), Ref::Task(d)) = (up, down) {
            upstream.entry(d.clone()).or_default().push(u.clone());
        }
    }
    let members = group_members(tasks, groups);
    let boundary = |group: &str, leaves: bool| -> Vec<TaskId> {
        let Some(inside) = members.get(group) else {
            return Vec::new();
        };
        inside
            .iter()
            .filter(|t| {
                if leaves {
                    // A leaf: no member lists it as upstream.
                    !inside
                        .iter()
                        .any(|m| upstream.get(*m).is_some_and(|ups| ups.contains(t)))
                } else {
                    !upstream
                        .get(*t)
                        .is_some_and(|ups| ups.iter().any(|u| inside.contains(u)))
                }
            })
            .map(|t| (*t).clone())
            .collect()
    };
    let mut expanded = Vec::new();
    for (up, down) in &links {
        if matches!((up, down), (Ref::Task(_), Ref::Task(_))) {
            continue;
        }
        let ups = match up {
            Ref::Task(t) => vec![t.clone()],
            Ref::Group(g) => boundary(g, true),
        };
        let downs = match down {
            Ref::Task(t) => vec![t.clone()],
            Ref::Group(g) => boundary(g, false),
        };
        for d in &downs {
            for u in &ups {
                expanded.push((u.clone(), d.clone()));
            }
        }
    }
    for (u, d) in expanded {
        upstream.entry(d).or_default().push(u);
    }
    upstream
}

/// The tasks of every group, nested groups' tasks included.
fn group_members<'t>(
    tasks: &'t IndexMap<TaskId, BuiltTask>,
    groups: &HashMap<String, Group<'_>>,
) -> HashMap<String, BTreeSet<&'t TaskId>> {
    let mut members: HashMap<String, BTreeSet<&TaskId>> = HashMap::new();
    for (id, task) in tasks {
        let mut group = task.group.clone();
        // Parent chains were checked for cycles when groups were resolved; the bound is a guard.
        let mut hops = 0;
        while let Some(name) = group {
            members.entry(name.clone()).or_default().insert(id);
            group = groups.get(&name).and_then(|g| g.parent.clone());
            hops += 1;
            if hops > groups.len() {
                break;
            }
        }
    }
    members
}

fn chain_texts(node: &Node, problems: &mut Vec<Diagnostic>) -> Vec<(String, Location)> {
    match &node.value {
        Value::Null => Vec::new(),
        Value::Str(text) => vec![(text.clone(), node.at.clone())],
        Value::Seq(items) => items
            .iter()
            .filter_map(|item| match values::string(item, "chains") {
                Ok(text) => Some((text, item.at.clone())),
                Err(p) => {
                    problems.push(p);
                    None
                }
            })
            .collect(),
        _ => {
            problems.push(Diagnostic::new(
                node.at.clone(),
                format!(
                    "\"chains\" must be a list of expressions such as \"a >> b\", not {}",
                    node.kind()
                ),
            ));
            Vec::new()
        }
    }
}

/// Name lookup: full task ids, task names as written, and group names.
struct Names<'a> {
    full: HashMap<&'a str, &'a TaskId>,
    written: HashMap<&'a str, Vec<&'a TaskId>>,
    groups: HashMap<&'a str, &'a str>,
}

impl<'a> Names<'a> {
    fn new(tasks: &'a IndexMap<TaskId, BuiltTask>, groups: &'a HashMap<String, Group<'_>>) -> Self {
        let mut written: HashMap<&str, Vec<&TaskId>> = HashMap::new();
        for (id, task) in tasks {
            written.entry(task.name.as_str()).or_default().push(id);
        }
        let mut group_names = HashMap::new();
        for (name, group) in groups {
            group_names.insert(name.as_str(), name.as_str());
            group_names.insert(group.id.as_str(), name.as_str());
        }
        Self {
            full: tasks.keys().map(|id| (id.as_str(), id)).collect(),
            written,
            groups: group_names,
        }
    }

    fn find(
        &self,
        name: &str,
        at: &Location,
        problems: &mut Vec<Diagnostic>,
        task: Option<&str>,
    ) -> Option<Ref> {
        let report = |problems: &mut Vec<Diagnostic>, d: Diagnostic| {
            let mut d = d;
            d.task = task.map(str::to_owned);
            problems.push(d);
        };
        if let Some(id) = self.full.get(name) {
            return Some(Ref::Task((*id).clone()));
        }
        match self.written.get(name).map(Vec::as_slice) {
            Some([id]) => return Some(Ref::Task((*id).clone())),
            Some(several) if several.len() > 1 => {
                let ids: Vec<&str> = several.iter().map(|id| id.as_str()).collect();
                report(
                    problems,
                    Diagnostic::new(
                        at.clone(),
                        format!("\"{name}\" is ambiguous: it names {}", ids.join(", ")),
                    )
                    .with_hint("use the full task_id with its group prefix"),
                );
                return None;
            }
            _ => {}
        }
        if let Some(group) = self.groups.get(name) {
            return Some(Ref::Group((*group).to_owned()));
        }
        let candidates = self
            .full
            .keys()
            .chain(self.written.keys())
            .chain(self.groups.keys())
            .copied();
        let problem = Diagnostic::new(
            at.clone(),
            format!("\"{name}\" is neither a task nor a task group of the DAG"),
        );
        report(
            problems,
            match closest(name, candidates) {
                Some(near) => problem.with_hint(format!("did you mean \"{near}\"?")),
                None => problem,
            },
        );
        None
    }
}
