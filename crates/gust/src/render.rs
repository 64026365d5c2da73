//! Turning DAGs and problems into text: tables, JSON, YAML, and graphs as text, DOT or Mermaid.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::Path;

use gust_core::dag::Dag;
use gust_core::duration::format_duration;
use gust_dagfile::Diagnostic;
use serde::Serialize;

use crate::cli::{GraphFormat, Output};
use crate::commands::relative;

/// One row of `gust dags list`.
#[derive(Debug, Serialize)]
struct DagRow {
    dag_id: String,
    fileloc: String,
    owners: String,
    schedule: String,
    tasks: usize,
    tags: Vec<String>,
    is_paused: Option<bool>,
    description: Option<String>,
}

fn rows(dags: &[Dag], root: &Path, paused: &HashMap<String, bool>) -> Vec<DagRow> {
    dags.iter()
        .map(|dag| {
            let mut owners: Vec<&str> = dag.tasks().map(|t| t.settings.owner.as_str()).collect();
            owners.sort_unstable();
            owners.dedup();
            DagRow {
                dag_id: dag.id.to_string(),
                fileloc: relative(&dag.fileloc, root).display().to_string(),
                owners: owners.join(", "),
                schedule: dag.settings.schedule.as_text(),
                tasks: dag.tasks().len(),
                tags: dag.settings.tags.clone(),
                is_paused: paused.get(dag.id.as_str()).copied(),
                description: dag.settings.description.clone(),
            }
        })
        .collect()
}

/// `gust dags list`.
/// `paused` holds the pause flags the metadata database knows (empty without one).
pub fn dag_list(
    dags: &[Dag],
    root: &Path,
    output: Output,
    paused: &HashMap<String, bool>,
) -> anyhow::Result<String> {
    let rows = rows(dags, root, paused);
    structured(&rows, output).unwrap_or_else(|| {
        let mut table = table(&[
            "dag_id", "fileloc", "owners", "schedule", "tasks", "tags", "paused",
        ]);
        for row in &rows {
            table.add_row(vec![
                row.dag_id.clone(),
                row.fileloc.clone(),
                row.owners.clone(),
                row.schedule.clone(),
                row.tasks.to_string(),
                row.tags.join(", "),
                row.is_paused.map_or_else(String::new, |p| p.to_string()),
            ]);
        }
        Ok(format!("{table}\n"))
    })
}

/// `gust dags list-import-errors`.
pub fn import_errors(
    problems: &[Diagnostic],
    tracebacks: &std::collections::BTreeMap<gust_dagfile::Location, String>,
    output: Output,
) -> anyhow::Result<String> {
    structured(problems, output).unwrap_or_else(|| {
        if problems.is_empty() {
            return Ok("No import errors.\n".to_owned());
        }
        Ok(problems
            .iter()
            .map(|p| match tracebacks.get(&p.location) {
                // A Python DAG file's import error: Airflow's traceback under its line.
                Some(traceback) => format!("{p}\n    {}\n", traceback.replace('\n', "\n    ")),
                None => format!("{p}\n"),
            })
            .collect())
    })
}

fn structured<T: Serialize + ?Sized>(value: &T, output: Output) -> Option<anyhow::Result<String>> {
    match output {
        Output::Table => None,
        Output::Json => Some(
            serde_json::to_string_pretty(value)
                .map(|s| s + "\n")
                .map_err(Into::into),
        ),
        Output::Yaml => Some(serde_yaml_ng::to_string(value).map_err(Into::into)),
    }
}

fn table(header: &[&str]) -> comfy_table::Table {
    let mut table = comfy_table::Table::new();
    table
        .load_preset(comfy_table::presets::NOTHING)
        .set_header(header.to_vec());
    table
}

/// `gust dags show`.
#[must_use]
pub fn graph(dag: &Dag, format: GraphFormat) -> String {
    match format {
        GraphFormat::Text => text_graph(dag),
        GraphFormat::Dot => dot_graph(dag),
        GraphFormat::Mermaid => mermaid_graph(dag),
    }
}

fn text_graph(dag: &Dag) -> String {
    let s = &dag.settings;
    let mut out = format!("{}  schedule: {}", dag.id, s.schedule.as_text());
    if let Some(start) = s.start_date {
        let _ = write!(out, "  start: {}", start.to_rfc3339());
    }
    if let Some(timeout) = s.dagrun_timeout {
        let _ = write!(out, "  timeout: {}", format_duration(timeout));
    }
    out.push('\n');
    for task in dag.topological_order() {
        let _ = write!(out, "  {}  [{}]", task.id, task.operator);
        if !task.upstream.is_empty() {
            let ups: Vec<&str> = task.upstream.iter().map(|u| u.as_str()).collect();
            let _ = write!(out, "  <- {}", ups.join(", "));
        }
        if task.settings.trigger_rule != gust_core::trigger_rule::TriggerRule::AllSuccess {
            let _ = write!(out, "  ({})", task.settings.trigger_rule);
        }
        out.push('\n');
    }
    out
}

fn quoted(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

fn dot_graph(dag: &Dag) -> String {
    let mut out = format!(
        "digraph {} {{\n  rankdir=LR;\n  node [shape=box, style=rounded];\n",
        quoted(dag.id.as_str())
    );
    // Tasks in groups go into nested clusters, as Airflow draws groups.
    let mut by_group: BTreeMap<Option<&str>, Vec<&str>> = BTreeMap::new();
    for task in dag.tasks() {
        by_group
            .entry(task.group.as_ref().map(|g| g.as_str()))
            .or_default()
            .push(task.id.as_str());
    }
    fn cluster(
        dag: &Dag,
        group: Option<&str>,
        by_group: &BTreeMap<Option<&str>, Vec<&str>>,
        depth: usize,
        out: &mut String,
    ) {
        let pad = "  ".repeat(depth);
        for task in by_group.get(&group).into_iter().flatten() {
            let _ = writeln!(out, "{pad}{};", quoted(task));
        }
        for child in dag
            .groups
            .values()
            .filter(|g| g.parent.as_ref().map(|p| p.as_str()) == group)
        {
            let _ = writeln!(
                out,
                "{pad}subgraph {} {{\n{pad}  label={};",
                quoted(&format!("cluster_{}", child.id)),
                quoted(child.id.as_str())
            );
            cluster(dag, Some(child.id.as_str()), by_group, depth + 1, out);
            let _ = writeln!(out, "{pad}}}");
        }
    }
    cluster(dag, None, &by_group, 1, &mut out);
    for task in dag.tasks() {
        for up in &task.upstream {
            let _ = writeln!(
                out,
                "  {} -> {};",
                quoted(up.as_str()),
                quoted(task.id.as_str())
            );
        }
    }
    out.push_str("}\n");
    out
}

fn mermaid_graph(dag: &Dag) -> String {
    // Mermaid ids may not contain dots; number the tasks and show their ids as labels.
    let index: BTreeMap<&str, usize> = dag
        .tasks()
        .enumerate()
        .map(|(i, t)| (t.id.as_str(), i))
        .collect();
    let mut out = String::from("flowchart LR\n");
    for (i, task) in dag.tasks().enumerate() {
        let _ = writeln!(
            out,
            "  t{i}[\"{}\"]",
            task.id.as_str().replace('"', "#quot;")
        );
    }
    for task in dag.tasks() {
        for up in &task.upstream {
            let _ = writeln!(
                out,
                "  t{} --> t{}",
                index[up.as_str()],
                index[task.id.as_str()]
            );
        }
    }
    out
}

/// `gust dags test`'s table: every task with its state, tries, duration and failure.
#[must_use]
pub fn run_report(report: &gust_scheduler::test_run::RunReport) -> String {
    let mut table = table(&["task_id", "state", "tries", "duration", "failure"]);
    for task in &report.tasks {
        table.add_row(vec![
            task.task_id.to_string(),
            task.state.to_string(),
            task.tries.to_string(),
            task.duration
                .map_or_else(String::new, |d| format!("{:.3}s", d.as_secs_f64())),
            gust_secrets::mask(task.failure.as_deref().unwrap_or_default()),
        ]);
    }
    format!("{table}\n")
}

fn when(t: Option<chrono::DateTime<chrono::Utc>>) -> String {
    t.map_or_else(String::new, |t| {
        t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    })
}

/// One row of `gust dags list-runs`.
#[derive(Debug, Serialize)]
struct RunRow {
    dag_id: String,
    run_id: String,
    state: String,
    run_type: String,
    logical_date: String,
    start_date: String,
    end_date: String,
}

/// `gust dags list-runs`.
pub fn runs(runs: &[gust_store::StoredRun], output: Output) -> anyhow::Result<String> {
    let rows: Vec<RunRow> = runs
        .iter()
        .map(|r| RunRow {
            dag_id: r.dag_id.clone(),
            run_id: r.run_id.clone(),
            state: r.state.to_string(),
            run_type: r.run_type.as_str().to_owned(),
            logical_date: when(Some(r.logical_date)),
            start_date: when(r.start_date),
            end_date: when(r.end_date),
        })
        .collect();
    if let Some(text) = structured(&rows, output) {
        return text;
    }
    Ok({
        let mut t = table(&[
            "run_id",
            "state",
            "run_type",
            "logical_date",
            "start_date",
            "end_date",
        ]);
        for r in &rows {
            t.add_row(vec![
                r.run_id.clone(),
                r.state.clone(),
                r.run_type.clone(),
                r.logical_date.clone(),
                r.start_date.clone(),
                r.end_date.clone(),
            ]);
        }
        format!("{t}\n")
    })
}

/// One row of `gust users list` (never the password hash).
#[derive(Debug, Serialize)]
struct UserRow {
    username: String,
    role: &'static str,
    created_at: String,
}

/// `gust users list`.
pub fn users(users: &[gust_store::User], output: Output) -> anyhow::Result<String> {
    let rows: Vec<UserRow> = users
        .iter()
        .map(|u| UserRow {
            username: u.username.clone(),
            role: u.role.as_str(),
            created_at: when(Some(u.created_at)),
        })
        .collect();
    if let Some(text) = structured(&rows, output) {
        return text;
    }
    let mut t = table(&["username", "role", "created_at"]);
    for r in &rows {
        t.add_row(vec![
            r.username.clone(),
            r.role.to_owned(),
            r.created_at.clone(),
        ]);
    }
    Ok(format!("{t}\n"))
}

/// One row of `gust tasks states-for-dag-run`.
#[derive(Debug, Serialize)]
struct TaskStateRow {
    task_id: String,
    /// Which instance of a mapped task (left out when the run has none, as Airflow leaves its
    /// column out; empty for an unmapped task's).
    #[serde(skip_serializing_if = "Option::is_none")]
    map_index: Option<String>,
    /// A mapped instance's name (its `map_index_template` rendered), in JSON and YAML only.
    #[serde(skip_serializing_if = "Option::is_none")]
    rendered_map_index: Option<String>,
    state: String,
    try_number: i32,
    start_date: String,
    end_date: String,
    duration: Option<f64>,
    failure: Option<String>,
}

/// `gust tasks states-for-dag-run`: each instance with its latest try.
pub fn task_states(
    tis: &[gust_store::StoredTaskInstance],
    tries: &[gust_store::StoredTry],
    output: Output,
) -> anyhow::Result<String> {
    let any_mapped = tis.iter().any(|ti| ti.map_index >= 0);
    let rows: Vec<TaskStateRow> = tis
        .iter()
        .map(|ti| {
            let latest = tries
                .iter()
                .filter(|t| t.task_id == ti.task_id && t.map_index == ti.map_index)
                .max_by_key(|t| t.try_number);
            let start = latest.and_then(|t| t.start_date);
            let end = latest.and_then(|t| t.end_date);
            TaskStateRow {
                task_id: ti.task_id.clone(),
                map_index: any_mapped.then(|| {
                    if ti.map_index >= 0 {
                        ti.map_index.to_string()
                    } else {
                        String::new()
                    }
                }),
                rendered_map_index: ti.rendered_map_index.clone(),
                state: ti.state.to_string(),
                try_number: ti.try_number,
                start_date: when(start),
                end_date: when(end),
                duration: start
                    .zip(end)
                    .map(|(s, e)| (e - s).num_milliseconds() as f64 / 1000.0),
                failure: latest
                    .and_then(|t| t.failure.as_deref())
                    .map(gust_secrets::mask),
            }
        })
        .collect();
    if let Some(text) = structured(&rows, output) {
        return text;
    }
    Ok({
        let mut headers = vec!["task_id"];
        if any_mapped {
            headers.push("map_index");
        }
        headers.extend([
            "state",
            "try",
            "start_date",
            "end_date",
            "duration",
            "failure",
        ]);
        let mut t = table(&headers);
        for r in &rows {
            let mut cells = vec![r.task_id.clone()];
            cells.extend(r.map_index.clone());
            t.add_row(cells.into_iter().chain([
                r.state.clone(),
                r.try_number.to_string(),
                r.start_date.clone(),
                r.end_date.clone(),
                r.duration.map_or_else(String::new, |d| format!("{d:.3}s")),
                r.failure.clone().unwrap_or_default(),
            ]));
        }
        format!("{t}\n")
    })
}
