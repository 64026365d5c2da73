//! The JSON the pages draw from, shaped for drawing rather than for API clients: the grid is one
//! string of one-letter state codes per run (500,000 cells are 500 kB), the graph's layout comes
//! computed and cached per DAG fingerprint, and a task instance comes with its tries, masked
//! arguments and XComs in one answer.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::SeekFrom;
use std::sync::{Arc, Mutex, OnceLock};

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use gust_core::dag::Dag;
use gust_core::schedule::DataInterval;
use gust_core::state::TaskState;
use gust_store::RunHeader;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::api::time::Timestamp;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::ui::layout::{self, NODE_HEIGHT, NODE_WIDTH};
use crate::ui::mask::masked_args;
use crate::ui::session::DataUser;

/// How many runs the grid shows when the page does not say.
pub const DEFAULT_GRID_RUNS: i64 = 25;
/// The most runs one grid may show.
pub const MAX_GRID_RUNS: i64 = 365;
/// How many recent runs the DAG list shows per DAG.
pub const RECENT_RUNS: i64 = 10;
/// The most log bytes one answer carries.
const MAX_LOG_CHUNK: u64 = 256 * 1024;
/// How much of a log the page shows first when it does not ask for a place: its end.
const LOG_TAIL: u64 = 64 * 1024;

/// The one-letter code of a task state in the grid's strings (`-`: no task instance).
#[must_use]
pub fn state_code(state: TaskState) -> u8 {
    match state {
        TaskState::NoStatus => b'n',
        TaskState::Scheduled => b'c',
        TaskState::Queued => b'q',
        TaskState::Running => b'r',
        TaskState::Success => b's',
        TaskState::Failed => b'f',
        TaskState::UpForRetry => b'u',
        TaskState::UpForReschedule => b'h',
        TaskState::Deferred => b'd',
        TaskState::Skipped => b'k',
        TaskState::UpstreamFailed => b'p',
        TaskState::Removed => b'x',
    }
}

/// A run as the UI draws it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RunJson {
    run_id: String,
    run_type: String,
    state: String,
    logical_date: Timestamp,
    start_date: Option<Timestamp>,
    end_date: Option<Timestamp>,
}

impl From<&RunHeader> for RunJson {
    fn from(run: &RunHeader) -> Self {
        RunJson {
            run_id: run.run_id.clone(),
            run_type: run.run_type.clone(),
            state: run.state.as_str().to_owned(),
            logical_date: run.logical_date.into(),
            start_date: run.start_date.map(Into::into),
            end_date: run.end_date.map(Into::into),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The DAG list.

/// One DAG in the list.
#[derive(Debug, Serialize, PartialEq)]
pub struct DagRow {
    dag_id: String,
    description: Option<String>,
    is_paused: bool,
    is_stale: bool,
    schedule: String,
    /// The next scheduled run's logical date (the start of its data interval).
    next_run: Option<Timestamp>,
    /// When that run is due to start: the end of its data interval (already past when the
    /// scheduler has runs to catch up on).
    next_run_after: Option<Timestamp>,
    tags: Vec<String>,
    owners: Vec<String>,
    tasks: usize,
    fileloc: String,
    has_import_errors: bool,
    /// The latest runs, newest first.
    recent_runs: Vec<RunJson>,
}

/// `GET /ui/api/dags`: every DAG with its latest runs, and the import errors.
pub async fn dags(_: DataUser, State(state): State<AppState>) -> ApiResult<Json<Value>> {
    Ok(Json(dags_snapshot(&state).await?))
}

/// The DAG list as JSON: `{dags: [...], import_errors: [...]}`. Three queries however many
/// DAGs and runs there are.
pub async fn dags_snapshot(state: &AppState) -> ApiResult<Value> {
    let store = state.store();
    let summaries = store.dag_summaries().await?;
    let errors = store.import_errors().await?;
    let error_files: BTreeSet<&str> = errors.iter().map(|e| e.file.as_str()).collect();
    let mut recent: HashMap<String, Vec<RunJson>> = HashMap::new();
    for run in store.ui_recent_runs(RECENT_RUNS).await? {
        recent
            .entry(run.dag_id.clone())
            .or_default()
            .push(RunJson::from(&run));
    }
    let latest: HashMap<String, DataInterval> = store
        .ui_latest_scheduled_intervals()
        .await?
        .into_iter()
        .map(|(dag, start, end)| (dag, DataInterval { start, end }))
        .collect();
    let mut rows = Vec::with_capacity(summaries.len());
    for summary in &summaries {
        if !summary.is_active {
            continue;
        }
        let dag = state.definition(summary).await?;
        let settings = &dag.settings;
        let next = next_interval(state, &dag, latest.get(&summary.dag_id));
        let owners: BTreeSet<String> = dag.tasks().map(|t| t.settings.owner.clone()).collect();
        rows.push(DagRow {
            dag_id: summary.dag_id.clone(),
            description: settings.description.clone(),
            is_paused: summary.is_paused,
            is_stale: summary.is_stale,
            schedule: settings.schedule.as_text(),
            next_run: next.as_ref().map(|n| n.start.into()),
            next_run_after: next.as_ref().map(|n| n.end.into()),
            tags: settings.tags.clone(),
            owners: owners.into_iter().collect(),
            tasks: dag.tasks().len(),
            fileloc: summary.fileloc.clone(),
            has_import_errors: error_files.contains(summary.fileloc.as_str()),
            recent_runs: recent.remove(&summary.dag_id).unwrap_or_default(),
        });
    }
    let import_errors: Vec<Value> = errors
        .iter()
        .map(|e| json!({"file": e.file, "problems": e.problems}))
        .collect();
    Ok(json!({"dags": rows, "import_errors": import_errors}))
}

/// The data interval of the DAG's next scheduled run, after `latest` (its latest scheduled
/// run's); `None` when it has no time schedule or its schedule has ended.
pub fn next_interval(
    state: &AppState,
    dag: &Dag,
    latest: Option<&DataInterval>,
) -> Option<DataInterval> {
    gust_core::timetable::next_run(&dag.settings, latest, state.now())
}

// ---------------------------------------------------------------------------------------------
// The grid.

/// `?runs=N` (how many latest runs) or `?run_id=R` (one run).
#[derive(Debug, Deserialize)]
pub struct GridQuery {
    runs: Option<i64>,
    run_id: Option<String>,
}

impl GridQuery {
    /// How many runs to show, bounded.
    pub fn limit(&self) -> i64 {
        self.runs
            .unwrap_or(DEFAULT_GRID_RUNS)
            .clamp(1, MAX_GRID_RUNS)
    }
}

/// A DAG's tasks and groups as the grid and graph list them.
fn structure(dag: &Dag) -> (Vec<Value>, Vec<Value>) {
    let tasks = dag
        .tasks()
        .map(|t| json!({"id": t.id.as_str(), "group": t.group.as_ref().map(|g| g.as_str()), "operator": t.operator, "mapped": t.mapping.is_some()}))
        .collect();
    let groups = dag
        .groups
        .values()
        .map(|g| json!({"id": g.id.as_str(), "parent": g.parent.as_ref().map(|p| p.as_str()), "tooltip": g.tooltip}))
        .collect();
    (tasks, groups)
}

/// The runs to draw (newest first, as read).
pub async fn grid_runs(
    state: &AppState,
    dag_id: &str,
    query: &GridQuery,
) -> ApiResult<Vec<RunHeader>> {
    match &query.run_id {
        Some(run_id) => Ok(state
            .store()
            .ui_run(dag_id, run_id)
            .await?
            .into_iter()
            .collect()),
        None => Ok(state.store().ui_runs(dag_id, query.limit()).await?),
    }
}

/// One run's column of the grid.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Column {
    /// A state code per task, in the DAG's task order; a mapped task's is its instances'
    /// aggregate state ([`aggregate_code`]).
    pub codes: String,
    /// For each expanded mapped task (by its index in the DAG's task order), how many of its
    /// instances are in each state.
    pub mapped: BTreeMap<usize, BTreeMap<&'static str, u32>>,
}

/// The states' codes from the most pressing to the least, as Airflow 3's grid ranks a mapped
/// task's or a group's instances (`state_priority`: failed first, removed last).
pub const AGGREGATE_ORDER: &[u8] = b"fpuhrdqcnskx";

/// The code of the most pressing state among `states`' (`-` when there is none).
#[must_use]
pub fn aggregate_code<'a>(states: impl IntoIterator<Item = &'a TaskState>) -> u8 {
    states
        .into_iter()
        .map(|s| state_code(*s))
        .min_by_key(|code| {
            AGGREGATE_ORDER
                .iter()
                .position(|c| c == code)
                .unwrap_or(AGGREGATE_ORDER.len())
        })
        .unwrap_or(b'-')
}

/// Each named run's column (one query): its state codes in the DAG's task order, a mapped
/// task's instances counted by state.
pub async fn grid_cells(
    state: &AppState,
    dag: &Dag,
    run_ids: &[String],
) -> ApiResult<HashMap<String, Column>> {
    let index: HashMap<&str, usize> = dag
        .tasks()
        .enumerate()
        .map(|(i, t)| (t.id.as_str(), i))
        .collect();
    let columns = state
        .store()
        .ui_grid_columns(dag.id.as_str(), run_ids)
        .await?;
    let mut cells = HashMap::with_capacity(columns.len());
    for column in &columns {
        let mut codes = vec![b'-'; index.len()];
        let mut instances: BTreeMap<usize, Vec<TaskState>> = BTreeMap::new();
        for cell in column.cells() {
            let cell = cell?;
            let Some(&i) = index.get(cell.task_id) else {
                continue;
            };
            if cell.mapped {
                instances.entry(i).or_default().push(cell.state);
            } else {
                codes[i] = state_code(cell.state);
            }
        }
        let mut mapped = BTreeMap::new();
        for (i, states) in instances {
            codes[i] = aggregate_code(&states);
            let mut counts: BTreeMap<&'static str, u32> = BTreeMap::new();
            for s in &states {
                *counts.entry(s.as_str()).or_default() += 1;
            }
            mapped.insert(i, counts);
        }
        cells.insert(
            column.run_id.clone(),
            Column {
                // Only ASCII codes were written.
                codes: String::from_utf8_lossy(&codes).into_owned(),
                mapped,
            },
        );
    }
    Ok(cells)
}

/// `GET /ui/api/dags/{dag_id}/grid`: tasks, groups, runs (oldest first), one string of state
/// codes per run and, per run, its mapped tasks' instances counted by state.
pub async fn grid(
    _: DataUser,
    State(state): State<AppState>,
    Path(dag_id): Path<String>,
    Query(query): Query<GridQuery>,
) -> ApiResult<Json<Value>> {
    let (summary, dag) = state.dag(&dag_id).await?;
    let mut runs = grid_runs(&state, &dag_id, &query).await?;
    runs.reverse();
    let run_ids: Vec<String> = runs.iter().map(|r| r.run_id.clone()).collect();
    let mut cells = grid_cells(&state, &dag, &run_ids).await?;
    let blank = Column {
        codes: "-".repeat(dag.tasks().len()),
        mapped: BTreeMap::new(),
    };
    let (tasks, groups) = structure(&dag);
    let (columns, mapped): (Vec<String>, Vec<_>) = run_ids
        .iter()
        .map(|id| {
            let column = cells.remove(id).unwrap_or_else(|| blank.clone());
            (column.codes, column.mapped)
        })
        .unzip();
    Ok(Json(json!({
        "dag_id": dag_id,
        "fingerprint": summary.fingerprint,
        "is_paused": summary.is_paused,
        "tasks": tasks,
        "groups": groups,
        "runs": runs.iter().map(RunJson::from).collect::<Vec<_>>(),
        "cells": columns,
        "mapped": mapped,
    })))
}

// ---------------------------------------------------------------------------------------------
// The graph.

/// Laid-out graphs by DAG id and folded groups, each valid for one fingerprint.
type LayoutCache = Mutex<HashMap<String, (String, Arc<String>)>>;

/// The most DAGs whose layout is kept; beyond it the cache starts again.
const MAX_CACHED_LAYOUTS: usize = 256;

fn layouts() -> &'static LayoutCache {
    static CACHE: OnceLock<LayoutCache> = OnceLock::new();
    CACHE.get_or_init(LayoutCache::default)
}

/// `?collapsed=G1,G2`: the task groups drawn folded, each as one node.
#[derive(Debug, Default, Deserialize)]
pub struct GraphQuery {
    collapsed: Option<String>,
}

/// The graph's JSON for `dag` with the groups in `collapsed` folded: its nodes (tasks, and a
/// node per outermost folded group standing for all its tasks) with their places, and edges
/// as index pairs between nodes. Groups left open are kept together in each column
/// ([`layout::layout_grouped`]) for the page to draw a box around their members.
pub fn graph_json(dag: &Dag, fingerprint: &str, collapsed: &BTreeSet<String>) -> String {
    let group_number: HashMap<&str, u32> = dag
        .groups
        .keys()
        .enumerate()
        .map(|(i, g)| (g.as_str(), u32::try_from(i).unwrap_or(u32::MAX)))
        .collect();
    // A group's chain of groups, outermost first.
    fn chain_of<'a>(dag: &'a Dag, group: Option<&'a gust_core::ids::GroupId>) -> Vec<&'a str> {
        let mut chain = Vec::new();
        let mut at = group;
        while let Some(g) = at {
            chain.push(g.as_str());
            at = dag.groups.get(g).and_then(|g| g.parent.as_ref());
        }
        chain.reverse();
        chain
    }
    let mut nodes: Vec<Value> = Vec::new();
    let mut chains: Vec<Vec<u32>> = Vec::new();
    let mut node_of_task: Vec<usize> = Vec::with_capacity(dag.tasks().len());
    let mut node_of_group: HashMap<&str, usize> = HashMap::new();
    for (i, task) in dag.tasks().enumerate() {
        let chain = chain_of(dag, task.group.as_ref());
        let folded = chain.iter().position(|g| collapsed.contains(*g));
        let open = &chain[..folded.unwrap_or(chain.len())];
        let numbers: Vec<u32> = open
            .iter()
            .filter_map(|g| group_number.get(g).copied())
            .collect();
        match folded {
            Some(depth) => {
                let group = chain[depth];
                let node = *node_of_group.entry(group).or_insert_with(|| {
                    nodes.push(json!({
                        "kind": "group",
                        "id": group,
                        "group": open.last(),
                        "members": [],
                    }));
                    chains.push(numbers.clone());
                    nodes.len() - 1
                });
                if let Some(members) = nodes[node]["members"].as_array_mut() {
                    members.push(json!(i));
                }
                node_of_task.push(node);
            }
            None => {
                nodes.push(json!({
                    "kind": "task",
                    "id": task.id.as_str(),
                    "operator": task.operator,
                    "group": open.last(),
                    "task": i,
                    "mapped": task.mapping.is_some(),
                }));
                chains.push(numbers);
                node_of_task.push(nodes.len() - 1);
            }
        }
    }
    let index: HashMap<&str, usize> = dag
        .tasks()
        .enumerate()
        .map(|(i, t)| (t.id.as_str(), i))
        .collect();
    let mut edges: Vec<(usize, usize)> = dag
        .tasks()
        .enumerate()
        .flat_map(|(i, t)| {
            t.upstream
                .iter()
                .filter_map(|u| {
                    index
                        .get(u.as_str())
                        .map(|&from| (node_of_task[from], node_of_task[i]))
                })
                .collect::<Vec<_>>()
        })
        .filter(|(a, b)| a != b)
        .collect();
    edges.sort_unstable();
    edges.dedup();
    let laid = layout::layout_grouped(nodes.len(), &edges, &chains);
    let (tasks, groups) = structure(dag);
    json!({
        "fingerprint": fingerprint,
        "width": laid.width,
        "height": laid.height,
        "node_width": NODE_WIDTH,
        "node_height": NODE_HEIGHT,
        "group_gap": layout::GROUP_GAP,
        "tasks": tasks,
        "groups": groups,
        "nodes": nodes,
        "positions": laid.position.iter().map(|(x, y)| [x.round(), y.round()]).collect::<Vec<_>>(),
        "edges": edges.iter().map(|(a, b)| [a, b]).collect::<Vec<_>>(),
    })
    .to_string()
}

/// `GET /ui/api/dags/{dag_id}/graph?collapsed=G1,G2`: the laid-out graph, computed once per
/// version of the DAG and set of folded groups.
pub async fn graph(
    _: DataUser,
    State(state): State<AppState>,
    Path(dag_id): Path<String>,
    Query(query): Query<GraphQuery>,
) -> ApiResult<Response> {
    let (summary, dag) = state.dag(&dag_id).await?;
    // Only the DAG's own groups count, so the cache holds at most a set per real choice.
    let collapsed: BTreeSet<String> = query
        .collapsed
        .as_deref()
        .unwrap_or_default()
        .split(',')
        .filter(|g| dag.groups.keys().any(|known| known.as_str() == *g))
        .map(str::to_owned)
        .collect();
    let key = format!(
        "{dag_id}\n{}",
        collapsed
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(",")
    );
    let cached = {
        let cache = layouts()
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        cache
            .get(&key)
            .filter(|(fp, _)| *fp == summary.fingerprint)
            .map(|(_, json)| json.clone())
    };
    let body = match cached {
        Some(json) => json,
        None => {
            let fingerprint = summary.fingerprint.clone();
            let json =
                tokio::task::spawn_blocking(move || graph_json(&dag, &fingerprint, &collapsed))
                    .await
                    .map_err(|_| ApiError::BadRequest("laying out the graph failed".into()))?;
            let json = Arc::new(json);
            let mut cache = layouts()
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if cache.len() >= MAX_CACHED_LAYOUTS {
                cache.clear();
            }
            cache.insert(key, (summary.fingerprint.clone(), json.clone()));
            json
        }
    };
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        body.as_ref().clone(),
    )
        .into_response())
}

// ---------------------------------------------------------------------------------------------
// A task instance.

/// `?map_index=N`: which instance of a mapped task (default: the one of a task not mapped).
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct InstanceQuery {
    map_index: Option<i32>,
}

impl InstanceQuery {
    /// The instance's `map_index`.
    #[must_use]
    pub fn map_index(&self) -> i32 {
        self.map_index.unwrap_or(gust_store::UNMAPPED)
    }
}

/// `GET /ui/api/dags/{dag_id}/runs/{run_id}/tasks/{task_id}?map_index=N`.
pub async fn task_instance(
    _: DataUser,
    State(state): State<AppState>,
    Path((dag_id, run_id, task_id)): Path<(String, String, String)>,
    Query(instance): Query<InstanceQuery>,
) -> ApiResult<Json<Value>> {
    Ok(Json(
        task_instance_json(&state, &dag_id, &run_id, &task_id, instance.map_index()).await?,
    ))
}

/// A task instance, its run, its task's settings, its tries (arguments masked) and XComs
/// (masked).
pub async fn task_instance_json(
    state: &AppState,
    dag_id: &str,
    run_id: &str,
    task_id: &str,
    map_index: i32,
) -> ApiResult<Value> {
    let store = state.store();
    let run = store
        .ui_run(dag_id, run_id)
        .await?
        .ok_or_else(|| ApiError::not_found("DagRun", run_id))?;
    // The conf's secrets are masked in the tries' arguments too (a template may render one).
    let conf = store
        .run(dag_id, run_id)
        .await?
        .map(|r| r.conf)
        .unwrap_or_default();
    let ti = store
        .ui_task_instance(dag_id, run_id, task_id, map_index)
        .await?
        .ok_or_else(|| ApiError::not_found("TaskInstance", task_id))?;
    // A pod task's tries also show the pod they ran as.
    let (_, dag) = state.dag(dag_id).await?;
    let task = dag.tasks().find(|t| t.id.as_str() == task_id);
    let pod_task = task.filter(|t| t.operator == "kubernetes_pod");
    // A processing step's tries also list their input and output URIs; its XCom (the outputs'
    // URIs) is its current try's.
    let processing = task.is_some_and(|t| t.operator == "processing");
    let returned = ti
        .xcoms
        .iter()
        .find(|(key, _)| key == "return_value")
        .map(|(_, value)| value);
    let tries: Vec<Value> = ti
        .tries
        .iter()
        .map(|t| {
            // The try's own secrets (its sensitive env values) are masked wherever they appear.
            let masker = t
                .rendered_args
                .as_ref()
                .and_then(Value::as_object)
                .map_or_else(gust_secrets::current, |args| {
                    std::sync::Arc::new(crate::api::redact::masker_for_args(args, &conf))
                });
            let pod_manifest = pod_task.zip(t.rendered_args.as_ref()).map(|(task, args)| {
                match crate::ui::pod::manifest(
                    &dag,
                    task,
                    run_id,
                    t.try_number,
                    args,
                    state.pod_defaults(),
                ) {
                    Ok(yaml) => json!({"yaml": masker.mask(&yaml)}),
                    Err(why) => json!({"error": masker.mask(&why)}),
                }
            });
            let artifacts = t.rendered_args.as_ref().filter(|_| processing).map(|args| {
                let xcom = returned.filter(|_| t.try_number == ti.try_number);
                crate::ui::processing::artifacts(args, xcom)
            });
            let duration = t
                .start_date
                .zip(t.end_date)
                .map(|(s, e)| (e - s).num_milliseconds() as f64 / 1000.0);
            json!({
                "try_number": t.try_number,
                "state": t.state.as_str(),
                "queued_at": t.queued_at.map(Timestamp::from),
                "start_date": t.start_date.map(Timestamp::from),
                "end_date": t.end_date.map(Timestamp::from),
                "duration": duration,
                "failure": t.failure.as_deref().map(|f| masker.mask(f)),
                "rendered_args": t.rendered_args.as_ref().map(|a| masked_args(a, &conf)),
                "pod_manifest": pod_manifest,
                "artifacts": artifacts,
            })
        })
        .collect();
    let xcoms: Vec<Value> = ti
        .xcoms
        .iter()
        .map(|(key, value)| {
            let shown = crate::api::redact::redact(value, Some(key));
            json!({"key": key, "value": shown})
        })
        .collect();
    let task_json = task.map(|t| {
        json!({
            "operator": t.operator,
            "trigger_rule": t.settings.trigger_rule.as_str(),
            "retries": t.settings.retries,
            "pool": t.settings.pool,
            "owner": t.settings.owner,
            "group": t.group.as_ref().map(|g| g.as_str()),
            "mapped": t.mapping.is_some(),
        })
    });
    Ok(json!({
        "dag_id": dag_id,
        "run_id": run_id,
        "task_id": task_id,
        "map_index": map_index,
        "task": task_json,
        "run": RunJson::from(&run),
        "state": ti.state.as_str(),
        "try_number": ti.try_number,
        "next_retry_at": ti.next_retry_at.map(Timestamp::from),
        "note": ti.note,
        "tries": tries,
        "xcoms": xcoms,
    }))
}

// ---------------------------------------------------------------------------------------------
// Logs.

/// `?offset=N`: where to read from (default: near the end); `map_index=N`: which instance of
/// a mapped task.
#[derive(Debug, Deserialize)]
pub struct LogQuery {
    offset: Option<u64>,
    map_index: Option<i32>,
}

/// `GET /ui/api/dags/{dag_id}/runs/{run_id}/tasks/{task_id}/logs/{try_number}`: a chunk of the
/// try's log from `offset` (at most 256 kB, whole lines), and where the next chunk starts.
pub async fn log(
    _: DataUser,
    State(state): State<AppState>,
    Path((dag_id, run_id, task_id, try_number)): Path<(String, String, String, i32)>,
    Query(query): Query<LogQuery>,
) -> ApiResult<Json<Value>> {
    let map_index = query.map_index.unwrap_or(gust_store::UNMAPPED);
    let location = state
        .store()
        .log_location(&dag_id, &run_id, &task_id, map_index, try_number)
        .await?;
    let Some(location) = location else {
        return Ok(Json(
            json!({"text": "", "offset": 0, "size": 0, "exists": false}),
        ));
    };
    let chunk = read_chunk(std::path::Path::new(&location), query.offset).await;
    match chunk {
        Ok((text, offset, size)) => Ok(Json(
            json!({"text": text, "offset": offset, "size": size, "exists": true}),
        )),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            let key = log_key(&dag_id, &run_id, &task_id, map_index, try_number);
            match (state.remote_logs(), key) {
                (Some(logs), Some(key)) => remote_log(logs, &key, query.offset).await,
                _ => Ok(Json(
                    json!({"text": "", "offset": 0, "size": 0, "exists": false}),
                )),
            }
        }
        Err(err) => {
            tracing::warn!(%location, error = %err, "a try's log could not be read");
            Err(ApiError::NotFound(format!(
                "The log of try {try_number} of {task_id} could not be read"
            )))
        }
    }
}

/// The try a log page names, when its parts are valid ids.
fn log_key(
    dag_id: &str,
    run_id: &str,
    task_id: &str,
    map_index: i32,
    try_number: i32,
) -> Option<gust_executor::TryKey> {
    Some(gust_executor::TryKey {
        dag_id: gust_core::ids::DagId::new(dag_id.to_owned()).ok()?,
        run_id: gust_core::ids::RunId::new(run_id.to_owned()).ok()?,
        task_id: gust_core::ids::TaskId::new(task_id.to_owned()).ok()?,
        map_index,
        try_number: gust_core::ids::TryNumber(u32::try_from(try_number).ok()?),
    })
}

/// A chunk of a finished try's log from the remote log store (its local file is gone), read
/// as from the file: a ranged read from `offset`, or of the last [`LOG_TAIL`] bytes.
async fn remote_log(
    logs: &gust_remote_logs::RemoteLogs,
    key: &gust_executor::TryKey,
    offset: Option<u64>,
) -> ApiResult<Json<Value>> {
    let tail = i64::try_from(LOG_TAIL).unwrap_or(i64::MAX);
    let from = offset.map_or(SeekFrom::End(-tail), SeekFrom::Start);
    match logs.read(key, from, MAX_LOG_CHUNK).await {
        Ok(Some(slice)) => {
            let (text, end) = whole_lines(&slice.bytes, offset.is_none() && slice.start > 0);
            Ok(Json(
                json!({"text": text, "offset": slice.start + end as u64, "size": slice.size, "exists": true}),
            ))
        }
        Ok(None) => Ok(Json(
            json!({"text": "", "offset": 0, "size": 0, "exists": false}),
        )),
        Err(failure) => {
            tracing::warn!(uri = %logs.uri_of(key), "a try's remote log could not be read: {}", failure.message);
            Err(ApiError::NotFound(format!(
                "The log of try {} of {} could not be read",
                key.try_number, key.task_id
            )))
        }
    }
}

/// The whole lines of `bytes` (skipping a partial first line when `mid_line`): their text and
/// the offset, in `bytes`, after the last one.
fn whole_lines(bytes: &[u8], mid_line: bool) -> (String, usize) {
    let skipped = if mid_line {
        bytes.iter().position(|&b| b == b'\n').map_or(0, |i| i + 1)
    } else {
        0
    };
    // End at a line's end, so a line being written is read whole next time.
    let end = bytes
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(skipped, |i| i + 1)
        .max(skipped);
    // Lines are masked when written; a secret added since (a new variable) is masked here too.
    (
        gust_secrets::mask(&String::from_utf8_lossy(&bytes[skipped..end])),
        end,
    )
}

/// Reads whole lines of `path` from `offset` (or the last [`LOG_TAIL`] bytes): the text, where
/// the next read starts, and the file's size.
async fn read_chunk(
    path: &std::path::Path,
    offset: Option<u64>,
) -> std::io::Result<(String, u64, u64)> {
    let mut file = tokio::fs::File::open(path).await?;
    let size = file.metadata().await?.len();
    let tailing = offset.is_none();
    let start = offset
        .unwrap_or_else(|| size.saturating_sub(LOG_TAIL))
        .min(size);
    file.seek(SeekFrom::Start(start)).await?;
    let mut bytes = Vec::new();
    file.take(MAX_LOG_CHUNK).read_to_end(&mut bytes).await?;
    // Starts at a line's beginning when tailing.
    let (text, end) = whole_lines(&bytes, tailing && start > 0);
    Ok((text, start + end as u64, size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn log_chunks_are_whole_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("attempt=1.log");
        std::fs::write(&path, "one\ntwo\nthr").unwrap();
        let (text, offset, size) = read_chunk(&path, Some(0)).await.unwrap();
        assert_eq!((text.as_str(), offset, size), ("one\ntwo\n", 8, 11));
        let (text, offset, _) = read_chunk(&path, Some(offset)).await.unwrap();
        assert_eq!((text.as_str(), offset), ("", 8));
        std::fs::write(&path, "one\ntwo\nthree\n").unwrap();
        let (text, offset, _) = read_chunk(&path, Some(8)).await.unwrap();
        assert_eq!((text.as_str(), offset), ("three\n", 14));
    }

    #[test]
    fn a_mapped_tasks_state_is_its_most_pressing_instances_as_in_airflow() {
        use TaskState::*;
        assert_eq!(aggregate_code(&[Success, Failed, Running]), b'f');
        assert_eq!(aggregate_code(&[Success, Running, Queued]), b'r');
        assert_eq!(aggregate_code(&[Success, NoStatus]), b'n');
        assert_eq!(aggregate_code(&[Success, Skipped]), b's');
        assert_eq!(aggregate_code(&[Skipped, Removed]), b'k');
        assert_eq!(aggregate_code(&[Deferred, Queued]), b'd');
        assert_eq!(aggregate_code(&[] as &[TaskState]), b'-');
        // Every state is ranked.
        for state in TaskState::ALL {
            assert!(AGGREGATE_ORDER.contains(&state_code(state)), "{state:?}");
        }
    }

    #[test]
    fn state_codes_are_distinct() {
        let codes: BTreeSet<u8> = TaskState::ALL.into_iter().map(state_code).collect();
        assert_eq!(codes.len(), TaskState::ALL.len());
        assert!(!codes.contains(&b'-'));
    }
}
