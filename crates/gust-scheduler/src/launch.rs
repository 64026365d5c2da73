//! Turning a task of a run into what a runtime starts: its templates rendered with the run's
//! context (right before the try, so XComs and variables are current), its log's place.

use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use gust_core::dag::Dag;
use gust_core::ids::{RunId, TryNumber};
use gust_core::schedule::DataInterval;
use gust_core::task::Task;
use gust_executor::{LaunchSpec, RunFacts, SharedLookup, TryContext, TryKey};
use gust_template::{Renderer, RuntimeLookup, TemplateContext};

use crate::log_path::log_path;

/// The run a try belongs to, as templates see it.
#[derive(Debug, Clone, Copy)]
pub struct RunContext<'a> {
    /// The run's id.
    pub run_id: &'a RunId,
    /// Its data interval (its start is the logical date).
    pub interval: DataInterval,
    /// Its conf, overriding the DAG's params.
    pub conf: &'a serde_json::Map<String, serde_json::Value>,
    /// The asset events it consumed, by asset URI (`triggering_asset_events`).
    pub asset_events: &'a serde_json::Map<String, serde_json::Value>,
}

/// A task's arguments rendered for one try, and the XComs its templates pushed as they
/// rendered (`ti.xcom_push`), masked, by key, the last push of a key kept.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    /// The arguments, templates rendered.
    pub args: serde_json::Map<String, serde_json::Value>,
    /// What the templates pushed.
    pub xcoms: Vec<(String, serde_json::Value)>,
}

/// Renders `task`'s arguments for try `try_number` of the run; an instance of a mapped task
/// (`mapped`: its map index and the arguments it is given) has its own arguments on top of the
/// task's. The error names the task, the argument and what went wrong. The values the run's conf holds under sensitive names join the
/// process's secrets masker first, so neither the try's log nor a render error (which may
/// quote what a template read) shows one.
pub fn render_args(
    renderer: &Renderer,
    dag: &Dag,
    task: &Task,
    run: RunContext<'_>,
    try_number: u32,
    mapped: Option<&serde_json::Map<String, serde_json::Value>>,
    lookup: Arc<dyn RuntimeLookup>,
) -> Result<Rendered, String> {
    let mut written = task.args.clone();
    if let Some(instance_args) = mapped {
        written.extend(instance_args.clone());
    }
    // A Python task's templates are rendered by Airflow's Task SDK as it runs the task, with
    // Airflow's own Jinja: Gust hands its arguments over as written.
    if gust_operators::python::runs_in_task_sdk(&task.operator) {
        return Ok(Rendered {
            args: written,
            xcoms: Vec::new(),
        });
    }
    let ctx = try_context(dag, task, run, try_number);
    gust_secrets::add(conf_secrets(run.conf));
    let keeping = Arc::new(KeepingPushes {
        lookup,
        pushed: std::sync::Mutex::default(),
    });
    let mut args = serde_json::Map::with_capacity(written.len());
    for (name, value) in &written {
        let rendered = renderer
            .render_value(value, name, &ctx, keeping.clone())
            .map_err(|err| err.to_string())?;
        args.insert(name.clone(), rendered);
    }
    let xcoms = std::mem::take(
        &mut *keeping
            .pushed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    Ok(Rendered { args, xcoms })
}

/// The run's lookup as one try's templates see it, keeping what they push.
struct KeepingPushes {
    lookup: Arc<dyn RuntimeLookup>,
    pushed: std::sync::Mutex<Vec<(String, serde_json::Value)>>,
}

impl RuntimeLookup for KeepingPushes {
    fn variable(&self, key: &str) -> Option<String> {
        self.lookup.variable(key)
    }

    fn connection(&self, conn_id: &str) -> Option<gust_template::TemplateConnection> {
        self.lookup.connection(conn_id)
    }

    fn xcom(&self, task_id: &str, key: &str) -> Option<serde_json::Value> {
        self.lookup.xcom(task_id, key)
    }

    fn xcom_rows(&self, task_id: &str, key: &str) -> gust_template::XComRows {
        self.lookup.xcom_rows(task_id, key)
    }

    fn asset_events(&self, asset: &gust_template::AssetQuery) -> Vec<serde_json::Value> {
        self.lookup.asset_events(asset)
    }

    fn push_xcom(&self, key: &str, value: serde_json::Value) {
        let mut pushed = self
            .pushed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        pushed.retain(|(kept, _)| kept != key);
        pushed.push((key.to_owned(), crate::xcom::masked(&value)));
    }
}

/// The template context of try `try_number` of `task` in the run.
fn try_context(dag: &Dag, task: &Task, run: RunContext<'_>, try_number: u32) -> TemplateContext {
    let mut ctx = TemplateContext::new(
        dag.id.as_str(),
        task.id.as_str(),
        run.run_id.as_str(),
        run.interval.start,
        run.interval.end,
    );
    ctx.try_number = try_number;
    ctx.params = dag.settings.params.clone();
    ctx.conf = run.conf.clone();
    ctx.triggering_asset_events = run.asset_events.clone();
    ctx.inlets = inlets(task);
    ctx
}

/// `task`'s inlets as templates see them.
#[must_use]
pub fn inlets(task: &Task) -> Vec<gust_template::Inlet> {
    task.settings
        .inlets
        .iter()
        .map(|asset| gust_template::Inlet {
            name: asset.name.clone(),
            uri: asset.uri.clone(),
        })
        .collect()
}

/// Whether `task`'s templates read `inlet_events`: the events of its inlets are then read from
/// the store before its tries render.
#[must_use]
pub fn reads_inlet_events(task: &Task) -> bool {
    !task.settings.inlets.is_empty()
        && !gust_operators::python::runs_in_task_sdk(&task.operator)
        && task
            .args
            .values()
            .any(|value| value.to_string().contains("inlet_events"))
}

/// The name of instance `map_index` of a mapped task: its `map_index_template` rendered with
/// the try's context, `task.<argument>` being the arguments the try runs with (`args`) and
/// `ti.map_index` the index. `None` when the task has no template or the instance is not
/// mapped; an error says why the template does not render. Airflow's task runner renders it
/// before `execute` (and again after, for names a Python task sets in its context while it
/// runs); Gust's operators set none, so Gust renders it once, as the try is handed over.
pub fn render_map_index(
    renderer: &Renderer,
    dag: &Dag,
    task: &Task,
    run: RunContext<'_>,
    (map_index, try_number): (i32, u32),
    args: &serde_json::Map<String, serde_json::Value>,
    lookup: Arc<dyn RuntimeLookup>,
) -> Option<Result<String, String>> {
    let template = task.mapping.as_ref()?.map_index_template.as_deref()?;
    if map_index < 0 {
        return None;
    }
    let mut ctx = try_context(dag, task, run, try_number);
    ctx.map_index = map_index;
    ctx.task_args = args.clone();
    Some(
        renderer
            .render_str(template, &ctx, lookup)
            .map_err(|err| format!("map_index_template of task {}: {err}", task.id)),
    )
}

/// The values a run's conf holds under sensitive names (`{"db_password": ...}`), at any depth.
#[must_use]
pub fn conf_secrets(conf: &serde_json::Map<String, serde_json::Value>) -> Vec<String> {
    gust_secrets::current()
        .names()
        .secrets_in(&serde_json::Value::Object(conf.clone()), None)
}

/// The runtime's view of a try whose arguments are rendered. The values its arguments hold
/// under sensitive names (`env: {MYSECRET: ...}`) join the process's secrets masker first, so
/// the try's log never shows them. `run` and `lookup` are what a try that reads its run itself
/// (a Python task, through the Execution API) is told and may read.
#[must_use]
#[allow(clippy::too_many_arguments, reason = "each is one fact of the try")]
pub fn launch_spec(
    dag: &Dag,
    task: &Task,
    run_id: &RunId,
    logical_date: DateTime<Utc>,
    map_index: i32,
    try_number: u32,
    args: serde_json::Map<String, serde_json::Value>,
    logs_root: &Path,
    run: RunFacts,
    lookup: Arc<dyn RuntimeLookup>,
) -> LaunchSpec {
    let key = TryKey {
        dag_id: dag.id.clone(),
        run_id: run_id.clone(),
        task_id: task.id.clone(),
        map_index,
        try_number: TryNumber(try_number),
    };
    gust_secrets::add_from(&args);
    LaunchSpec {
        log_path: log_path(logs_root, &key),
        key,
        operator: task.operator.clone(),
        args,
        do_xcom_push: task.settings.do_xcom_push,
        execution_timeout: task.settings.execution_timeout,
        dag_file: dag.fileloc.clone(),
        context: TryContext {
            logical_date: Some(logical_date),
            owner: task.settings.owner.clone(),
            email: task.settings.email.clone(),
            run,
            retries: task.settings.retries,
            lookup: SharedLookup(Some(lookup)),
            reschedules: gust_executor::Reschedules::default(),
            worker_pod: None,
            resume: None,
            timezone: Some(dag.settings.timezone),
        },
    }
}
