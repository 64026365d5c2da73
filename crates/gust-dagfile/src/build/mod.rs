//! One DAG entry of a file (defaults already merged in) read into a [`Dag`].
//!
//! Reading goes in passes: DAG settings, task groups, tasks, then the graph (dependencies,
//! group dependencies and chains), collecting every problem on the way.

mod assets;
mod chains;
mod deadlines;
mod graph;
mod groups;
mod mapping;
mod notifiers;
mod settings;
mod setup_teardown;
mod task;
mod timetables;
pub(crate) mod values;

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use gust_core::dag::{Dag, DagSettings, TaskGroup};
use gust_core::ids::{DagId, TaskId};
use gust_core::schedule::Schedule;
use gust_core::task::Task;
use gust_operators::refused;
use gust_template::Renderer;
use indexmap::IndexMap;

use crate::diagnostic::{Diagnostic, closest};
use crate::location::Location;
use crate::yaml::{Key, Mapping, Node, Value};

pub use chains::{ChainError, parse_chain};

/// Every key a DAG entry accepts.
pub const DAG_KEYS: &[&str] = &[
    "description",
    "schedule",
    "schedule_interval",
    "timezone",
    "start_date",
    "end_date",
    "catchup",
    "max_active_runs",
    "max_active_tasks",
    "concurrency",
    "dagrun_timeout",
    "dagrun_timeout_sec",
    "params",
    "tags",
    "owner",
    "default_args",
    "is_paused_upon_creation",
    "doc_md",
    "deadline",
    "tasks",
    "task_groups",
    "chains",
    "default_view",
    "orientation",
];

/// What reading needs besides the file: the load time (for relative start dates) and the
/// template engine (to check template syntax).
pub struct BuildContext<'a> {
    /// When the file is being loaded.
    pub now: DateTime<Utc>,
    /// The template engine.
    pub renderer: &'a Renderer,
    /// The file the DAG is read from.
    pub fileloc: &'a std::path::Path,
    /// What a cron string or timedelta schedule means.
    pub schedules: gust_core::schedule::ScheduleDefaults,
    /// Of a Python DAG file: the tasks (by id) the Task SDK runs from the file itself, whatever
    /// their operator (`None` for YAML files).
    pub task_sdk: Option<&'a std::collections::HashSet<String>>,
}

/// Reads the DAG `key: node`. Problems are pushed to `problems` with the DAG (and task) named;
/// `None` when any problem makes the DAG unusable.
pub fn build_dag(
    key: &Key,
    node: &Node,
    ctx: &BuildContext<'_>,
    problems: &mut Vec<Diagnostic>,
) -> Option<Dag> {
    let mut local = Vec::new();
    let dag = build(key, node, ctx, &mut local);
    let failed = !local.is_empty();
    problems.extend(local.into_iter().map(|mut d| {
        d.dag.get_or_insert_with(|| key.name.clone());
        d
    }));
    if failed { None } else { dag }
}

fn build(
    key: &Key,
    node: &Node,
    ctx: &BuildContext<'_>,
    problems: &mut Vec<Diagnostic>,
) -> Option<Dag> {
    let id = DagId::new(key.name.clone())
        .map_err(|err| problems.push(Diagnostic::new(key.at.clone(), err.to_string())))
        .ok();
    let Some(map) = node.as_map() else {
        problems.push(Diagnostic::new(
            node.at.clone(),
            format!(
                "DAG \"{}\" must be a map of settings, not {}",
                key.name,
                node.kind()
            ),
        ));
        return None;
    };

    let default_args = match map.get("default_args") {
        Some(n) => values::map(n, "default_args")
            .map_err(|p| problems.push(p))
            .ok(),
        None => None,
    };
    let settings = read_settings(map, default_args, ctx, problems);
    let task_defaults = task_defaults(map, default_args);
    if let Some(args) = default_args {
        check_default_args(args, problems);
    }

    let group_entries = map
        .get("task_groups")
        .map(|n| values::named_entries(n, "task_groups", "group_name", problems))
        .unwrap_or_default();
    let groups = groups::resolve(&group_entries, problems);
    let tasks = read_tasks(
        map.get("tasks"),
        task_defaults.as_ref(),
        &groups,
        ctx,
        problems,
    );
    let chains = map.get("chains");
    let edges = graph::resolve(&tasks, &groups, chains, problems);

    if !problems.is_empty() {
        return None;
    }
    let id = id?;
    let mut task_map = IndexMap::new();
    // Where each task is written, and the setups each `as_teardown` names.
    let mut task_places = HashMap::new();
    let mut setup_names = Vec::new();
    for (task_id, built) in tasks {
        task_places.insert(task_id.clone(), built.at.clone());
        if !built.read.setups.is_empty() {
            setup_names.push((task_id.clone(), built.read.setups.clone()));
        }
        let mut upstream: Vec<TaskId> = edges.get(&task_id).cloned().unwrap_or_default();
        upstream.sort();
        upstream.dedup();
        let task_mapping = built
            .read
            .mapping
            .map(|m| mapping::resolve_upstreams(m, &upstream));
        task_map.insert(
            task_id.clone(),
            Task {
                id: task_id,
                operator: built.read.operator.name.to_owned(),
                args: built.read.args,
                upstream,
                group: built
                    .group
                    .and_then(|g| groups.get(&g))
                    .map(|g| g.id.clone()),
                settings: built.read.settings,
                doc_md: built.read.doc_md,
                mapping: task_mapping,
            },
        );
    }
    setup_teardown::mark_setups(&mut task_map, &setup_names);
    setup_teardown::check_dag(&task_map, &task_places, problems);
    if !problems.is_empty() {
        return None;
    }
    let mut group_list: Vec<&groups::Group<'_>> = groups.values().collect();
    group_list.sort_by_key(|g| (g.id.as_str().matches('.').count(), g.at.clone()));
    let group_map = group_list
        .into_iter()
        .map(|g| {
            let parent = g
                .parent
                .as_ref()
                .and_then(|p| groups.get(p))
                .map(|p| p.id.clone());
            (
                g.id.clone(),
                TaskGroup {
                    id: g.id.clone(),
                    tooltip: g.tooltip.clone(),
                    parent,
                },
            )
        })
        .collect();
    Dag::new(
        id,
        settings?,
        task_map,
        group_map,
        ctx.fileloc.to_path_buf(),
    )
    .map_err(|err| problems.push(Diagnostic::new(key.at.clone(), err.to_string())))
    .ok()
}

fn read_settings(
    map: &Mapping,
    default_args: Option<&Mapping>,
    ctx: &BuildContext<'_>,
    problems: &mut Vec<Diagnostic>,
) -> Option<DagSettings> {
    let mut settings = DagSettings::default();
    let before = problems.len();
    if let Some(node) = map.get("timezone") {
        match values::string(node, "timezone").and_then(|name| {
            gust_core::date::parse_timezone(&name)
                .map_err(|err| Diagnostic::new(node.at.clone(), format!("\"timezone\": {err}")))
        }) {
            Ok(tz) => settings.timezone = tz,
            Err(p) => problems.push(p),
        }
    }
    let tz = settings.timezone;
    // start_date and end_date may sit in default_args, as many Airflow DAGs have them.
    let from_args = |name: &str| default_args.and_then(|args| args.get(name));
    for (key, node) in map.iter() {
        let name = key.name.as_str();
        let result: values::Read<()> = match name {
            "tasks" | "task_groups" | "chains" | "default_args" | "timezone" | "owner" => Ok(()),
            // Airflow 2's UI layout settings: dag-factory passes them to Airflow 2 only, and
            // Airflow 3 has neither, so they are accepted and change nothing.
            "default_view" | "orientation" => values::string(node, name).map(drop),
            "description" => values::opt_string(node, name).map(|v| settings.description = v),
            "doc_md" => values::opt_string(node, name).map(|v| settings.doc_md = v),
            "schedule" | "schedule_interval" if assets::is_asset_schedule(node) => {
                let dag_dir = ctx.fileloc.parent().unwrap_or(std::path::Path::new("."));
                assets::read_asset_schedule(node, name, dag_dir, tz, ctx.now).map(|s| {
                    settings.schedule = s.time.with_defaults(ctx.schedules, tz);
                    settings.assets = Some(s.assets);
                })
            }
            "schedule" | "schedule_interval" => read_schedule(node, name, tz, ctx.now)
                .map(|s| settings.schedule = s.with_defaults(ctx.schedules, tz)),
            // dag-factory 1.1.0 passes `timetable:` to the DAG, which Airflow 3 refuses.
            "timetable" => Err(Diagnostic::new(
                key.at.clone(),
                "DAG setting \"timetable\" cannot be used: Airflow 3's DAG has no timetable argument".to_owned(),
            )
            .with_hint("write the timetable as the schedule: schedule: {__type__: airflow.timetables.trigger.CronTriggerTimetable, cron: \"0 1 * * *\", timezone: UTC}")),
            "start_date" => {
                values::datetime(node, name, tz, ctx.now).map(|d| settings.start_date = Some(d))
            }
            "end_date" => {
                values::datetime(node, name, tz, ctx.now).map(|d| settings.end_date = Some(d))
            }
            "catchup" => values::boolean(node, name).map(|v| settings.catchup = v),
            "max_active_runs" => values::count(node, name, 1).map(|v| settings.max_active_runs = v),
            "max_active_tasks" | "concurrency" => {
                values::count(node, name, 1).map(|v| settings.max_active_tasks = v)
            }
            "dagrun_timeout" | "dagrun_timeout_sec" => {
                values::opt_duration(node, name).map(|v| settings.dagrun_timeout = v)
            }
            "params" => values::map(node, name).map(|m| {
                settings.params = m
                    .iter()
                    .map(|(k, v)| (k.name.clone(), v.to_json()))
                    .collect();
            }),
            "tags" => values::string_list(node, name).map(|v| settings.tags = v),
            "is_paused_upon_creation" => {
                values::boolean(node, name).map(|v| settings.is_paused_upon_creation = Some(v))
            }
            "deadline" => deadlines::read_deadlines(node, tz, ctx.now)
                .map(|alerts| settings.deadlines = alerts),
            callback if refused::is_dag_callback(callback) => {
                notifiers::read_callback(node, name, &mut settings.notifiers).map(|python| {
                    if python {
                        settings.callbacks.note(callback);
                    }
                })
            }
            _ => Err(unknown_dag_key(key)),
        };
        if let Err(p) = result {
            problems.push(p);
        }
    }
    for (name, slot) in [
        ("start_date", &mut settings.start_date),
        ("end_date", &mut settings.end_date),
    ] {
        if let (None, Some(node)) = (&slot, from_args(name)) {
            {
                match values::datetime(node, name, tz, ctx.now) {
                    Ok(d) => *slot = Some(d),
                    Err(p) => problems.push(p),
                }
            }
        }
    }
    // Airflow runs a continuous DAG one run at a time and refuses it with more.
    if matches!(settings.schedule, Schedule::Continuous)
        && settings.max_active_runs > 1
        && let Some(at) = map.get("schedule").or_else(|| map.get("schedule_interval"))
    {
        problems.push(
            Diagnostic::new(
                at.at.clone(),
                format!(
                    "a continuous schedule requires max_active_runs <= 1, not {}",
                    settings.max_active_runs
                ),
            )
            .with_hint("set max_active_runs: 1"),
        );
    }
    if let (Some(start), Some(end)) = (settings.start_date, settings.end_date)
        && end < start
    {
        {
            let at = map
                .get("end_date")
                .or_else(|| from_args("end_date"))
                .map(|n| n.at.clone());
            if let Some(at) = at {
                problems.push(Diagnostic::new(
                    at,
                    format!("end_date {end} is before start_date {start}"),
                ));
            }
        }
    }
    (problems.len() == before).then_some(settings)
}

fn unknown_dag_key(key: &Key) -> Diagnostic {
    let name = key.name.as_str();
    if let Some(why) = refused::refused_argument(name) {
        return Diagnostic::new(
            key.at.clone(),
            format!("DAG setting \"{name}\" cannot be used"),
        )
        .with_hint(why);
    }
    let problem = Diagnostic::new(key.at.clone(), format!("unknown DAG setting \"{name}\""));
    match closest(name, DAG_KEYS.iter().copied()) {
        Some(near) => problem.with_hint(format!("did you mean \"{near}\"?")),
        None => problem.with_hint("task arguments belong under `tasks:` or `default_args:`"),
    }
}

fn read_schedule(
    node: &Node,
    key: &str,
    tz: chrono_tz::Tz,
    now: DateTime<Utc>,
) -> values::Read<Schedule> {
    match &node.value {
        Value::Null => Ok(Schedule::Manual),
        Value::Map(map) if timetables::is_timetable(map) => timetables::read(node, map, key, tz, now),
        Value::Str(text) => Schedule::parse(text)
            .map_err(|err| Diagnostic::new(node.at.clone(), format!("\"{key}\": {err}"))),
        // dag-factory writes a timedelta schedule as `{__type__: datetime.timedelta, days: 1}`.
        Value::Map(map) if is_timedelta(map) => {
            let every = values::duration(node, key)?;
            Schedule::interval(every)
                .map_err(|err| Diagnostic::new(node.at.clone(), format!("\"{key}\": {err}")))
        }
        Value::Seq(_) | Value::Map(_) => Err(Diagnostic::new(
            node.at.clone(),
            format!("\"{key}\" must be a time schedule or assets"),
        )
        .with_hint("use a cron expression, a preset such as @daily, a duration such as 1h, {__type__: datetime.timedelta, days: 1}, a timetable such as {__type__: airflow.timetables.trigger.CronTriggerTimetable, cron: \"0 1 * * *\", timezone: UTC}, a list of asset URIs, {datasets: \"a & b\"}, or null")),
        _ => Err(Diagnostic::new(node.at.clone(), format!("\"{key}\" must be a cron expression, a preset, a duration or null, not {}", node.kind()))),
    }
}

/// Whether a schedule's map is a timedelta: tagged `datetime.timedelta`, or untagged with only
/// timedelta fields (the tag is what says so when it is there; a map of assets has none of them).
fn is_timedelta(map: &Mapping) -> bool {
    const FIELDS: [&str; 7] = [
        "weeks",
        "days",
        "hours",
        "minutes",
        "seconds",
        "milliseconds",
        "microseconds",
    ];
    match map.get("__type__").map(|tag| &tag.value) {
        Some(Value::Str(tag)) => tag == "datetime.timedelta",
        Some(_) => false,
        None => !map.is_empty() && map.iter().all(|(k, _)| FIELDS.contains(&k.name.as_str())),
    }
}

/// What every task of the DAG starts from: `default_args` without its DAG-only keys, and the
/// DAG-level `owner` when `default_args` names none.
fn task_defaults(dag: &Mapping, default_args: Option<&Mapping>) -> Option<Mapping> {
    let mut defaults = default_args.cloned().unwrap_or_default();
    defaults.remove("start_date");
    defaults.remove("end_date");
    if let Some((key, owner)) = dag.entry("owner").filter(|_| !defaults.contains("owner")) {
        defaults.insert(key.clone(), owner.clone());
    }
    (!defaults.is_empty()).then_some(defaults)
}

/// Flags `default_args` keys that no task could use, which are almost always typos.
fn check_default_args(args: &Mapping, problems: &mut Vec<Diagnostic>) {
    let known = |name: &str| {
        settings::is_setting(name)
            || matches!(name, "start_date" | "end_date" | "operator" | "doc_md")
            || gust_operators::registry::available()
                .any(|op| op.accepts(name) || op.canonical_argument(name).is_some())
    };
    for (key, _) in args.iter() {
        let name = key.name.as_str();
        if known(name) {
            continue;
        }
        if let Some(why) = refused::refused_argument(name) {
            problems.push(
                Diagnostic::new(
                    key.at.clone(),
                    format!("default argument \"{name}\" cannot be used"),
                )
                .with_hint(why),
            );
            continue;
        }
        let all = settings::SETTING_KEYS.iter().copied().chain(
            gust_operators::registry::available().flat_map(|op| op.arguments.iter().copied()),
        );
        let problem = Diagnostic::new(
            key.at.clone(),
            format!("unknown default argument \"{name}\": no task setting or operator takes it"),
        );
        problems.push(match closest(name, all) {
            Some(near) => problem.with_hint(format!("did you mean \"{near}\"?")),
            None => problem,
        });
    }
}

/// A task read, with the names needed to resolve the graph.
pub(crate) struct BuiltTask {
    /// The task's name as written, without group prefix.
    pub name: String,
    /// The group's name as written, if any.
    pub group: Option<String>,
    /// Where the entry starts.
    pub at: Location,
    /// The checked task.
    pub read: task::ReadTask,
}

fn read_tasks(
    node: Option<&Node>,
    dag_defaults: Option<&Mapping>,
    groups: &HashMap<String, groups::Group<'_>>,
    ctx: &BuildContext<'_>,
    problems: &mut Vec<Diagnostic>,
) -> IndexMap<TaskId, BuiltTask> {
    let runs_in_task_sdk = |name: &str| ctx.task_sdk.is_some_and(|tasks| tasks.contains(name));
    let mut tasks: IndexMap<TaskId, BuiltTask> = IndexMap::new();
    let Some(node) = node else { return tasks };
    let entries = values::named_entries(node, "tasks", "task_id", problems);
    for values::NamedEntry {
        name,
        at,
        fields: own,
    } in entries
    {
        let mut task_problems = Vec::new();
        let group_name = own.get("task_group_name").and_then(Node::as_str);
        let group = group_name.and_then(|g| groups.get(g));
        let mut defaults: Vec<&Mapping> = dag_defaults.into_iter().collect();
        if let Some(group) = group {
            defaults.extend(group.default_args.iter().copied());
        }
        let entry = task::TaskEntry {
            name: &name,
            at: &at,
            own,
            defaults,
            dag_dir: ctx.fileloc.parent().unwrap_or(std::path::Path::new(".")),
            task_sdk: runs_in_task_sdk(&name),
            mapped_group: group.and_then(|g| g.mapped.as_ref()),
        };
        let read = task::read_task(&entry, ctx.renderer, &mut task_problems);
        if let (Some(g), None) = (group_name, group) {
            let at = own
                .get("task_group_name")
                .map_or(at.clone(), |n| n.at.clone());
            let problem = Diagnostic::new(
                at,
                format!("task group \"{g}\" is not declared under task_groups"),
            );
            task_problems.push(match closest(g, groups.keys().map(String::as_str)) {
                Some(near) => problem.with_hint(format!("did you mean \"{near}\"?")),
                None => problem.with_hint("declare it under `task_groups:`"),
            });
        }
        let prefix = group.map_or("", |g| g.child_prefix.as_str());
        let id = match TaskId::new(format!("{prefix}{name}")) {
            Ok(id) => Some(id),
            Err(err) => {
                task_problems.push(Diagnostic::new(at.clone(), err.to_string()));
                None
            }
        };
        let task_label = id.as_ref().map_or(name.clone(), ToString::to_string);
        let duplicate = id
            .as_ref()
            .and_then(|id| tasks.get(id))
            .map(|first| first.at.line);
        if let (Some(first_line), Some(id)) = (duplicate, &id) {
            task_problems.push(Diagnostic::new(
                at.clone(),
                format!("duplicate task_id \"{id}\" (first at line {first_line})"),
            ));
        }
        problems.extend(task_problems.into_iter().map(|mut d| {
            d.task.get_or_insert_with(|| task_label.clone());
            d
        }));
        // A task with problems still takes part in the graph, so that its dependencies are
        // checked too; any problem keeps the DAG from loading.
        if let (None, Some(id), Some(read)) = (duplicate, id, read) {
            tasks.insert(
                id,
                BuiltTask {
                    name,
                    group: group_name.map(str::to_owned),
                    at,
                    read,
                },
            );
        }
    }
    tasks
}
