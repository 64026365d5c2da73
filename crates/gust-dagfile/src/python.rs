//! Python DAG files: what Airflow's own parser made of a `.py` file, turned into Gust's DAGs.
//!
//! Gust does not read Python. A [`PythonParser`] (the binary's, which runs Airflow's `DagBag`
//! in the `[python] interpreter` environment) answers, per file, each DAG in dag-factory's shape
//! (its settings, its tasks with their settings, upstreams and groups, and the arguments each
//! operator was given) and the file's import errors with Airflow's tracebacks. This module
//! decides which tasks Gust runs natively (an operator Gust has, given only arguments YAML can
//! hold) and which the Task SDK runs from the `.py` file itself, then builds the DAGs with the
//! YAML builder, so a Python DAG is checked exactly as a YAML one. It spawns nothing and reads
//! no file but through the parser. Start at [`load_python_file`].

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

use crate::build::{BuildContext, build_dag};
use crate::diagnostic::Diagnostic;
use crate::file::FileLoad;
use crate::location::Location;
use crate::yaml::{Key, Mapping, Node, Value};

/// Parses Python DAG files with Airflow. Implemented where processes may be spawned (the local
/// runtime); called from blocking code (a folder load runs on a blocking thread).
pub trait PythonParser: Send + Sync {
    /// Parses `files` (absolute `.py` paths), with `bundle` (the DAGs folder) on `sys.path` as
    /// Airflow's DAG bundle is. Answers one result per file, in any order; a file the parser
    /// could not handle at all is answered with an error of its own.
    fn parse(&self, files: &[PathBuf], bundle: &Path) -> Vec<ParsedFile>;
}

/// What Airflow made of one `.py` file.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct ParsedFile {
    /// The file.
    pub file: PathBuf,
    /// Its DAGs.
    #[serde(default)]
    pub dags: Vec<ParsedDag>,
    /// Its import errors (each Airflow's traceback).
    #[serde(default)]
    pub errors: Vec<ImportError>,
    /// How long parsing it took, in seconds.
    #[serde(default)]
    pub seconds: f64,
}

/// One import error of a file, as Airflow wrote it.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct ImportError {
    /// The traceback (or message) Airflow recorded.
    pub message: String,
}

/// One DAG of a file, in dag-factory's shape.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct ParsedDag {
    /// The DAG's id.
    pub dag_id: String,
    /// Its settings and tasks as dag-factory YAML holds them (tasks keyed by full task id,
    /// groups by full group id, without the operators' own arguments).
    pub dag: serde_json::Value,
    /// Each task's operator arguments that YAML can hold, by task id.
    #[serde(default)]
    pub arguments: BTreeMap<String, serde_json::Map<String, serde_json::Value>>,
    /// Why a task's arguments cannot all be written in YAML (a function, an XComArg...), by
    /// task id: such a task runs in the Task SDK and cannot be exported.
    #[serde(default)]
    pub not_expressible: BTreeMap<String, Vec<String>>,
    /// What Gust could not read of the DAG (a timetable it has no schedule for...).
    #[serde(default)]
    pub problems: Vec<String>,
}

/// Whether a `.py` file may hold DAGs, by Airflow's safe-mode heuristic
/// (`might_contain_dag_via_default_heuristic`): it mentions `airflow`, and `dag` or `asset`,
/// in any case. Other files (helpers a DAG imports) are not parsed.
#[must_use]
pub fn might_contain_dag(text: &[u8]) -> bool {
    let lower = text.to_ascii_lowercase();
    let has = |word: &[u8]| lower.windows(word.len()).any(|w| w == word);
    has(b"airflow") && (has(b"dag") || has(b"asset"))
}

/// Whether `path` names a Python file.
#[must_use]
pub fn is_python(path: &Path) -> bool {
    path.extension().and_then(|e| e.to_str()) == Some("py")
}

/// How one task of a Python DAG runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskRoute {
    /// By Gust, with the operator's arguments read from the file.
    Native,
    /// By the Task SDK, which loads the `.py` file itself; why it is not native.
    TaskSdk(String),
}

/// How `task` of `dag` runs: natively when its operator is one Gust runs itself (by the exact
/// class, not a subclass, whose code Gust would not run) and all of its arguments are values
/// that operator takes. A mapped task runs in the Task SDK (for now: Gust could run a mapped
/// native operator itself, but its arguments would have to be read per instance).
#[must_use]
pub fn route(dag: &ParsedDag, task_id: &str) -> TaskRoute {
    let task = dag.dag.get("tasks").and_then(|tasks| tasks.get(task_id));
    let class = task
        .and_then(|task| task.get("operator"))
        .and_then(serde_json::Value::as_str)
        .unwrap_or_default();
    if task.is_some_and(|t| t.get("expand").is_some() || t.get("expand_kwargs").is_some()) {
        // The Task SDK picks each instance's item from the file's own MappedOperator.
        return TaskRoute::TaskSdk(
            "a mapped task of a Python DAG file runs in the Task SDK".into(),
        );
    }
    if task.is_some_and(|t| in_mapped_group(dag, t)) {
        // What the group expands over are its function's arguments, which the Task SDK
        // resolves from the file's own MappedTaskGroup, not the operator's.
        return TaskRoute::TaskSdk(
            "a task of a mapped task group of a Python DAG file runs in the Task SDK".into(),
        );
    }
    let Some(spec) = gust_operators::resolve(class)
        .filter(|spec| !gust_operators::python::runs_in_task_sdk(spec.name))
        .filter(|spec| spec.aliases.contains(&class))
    else {
        return TaskRoute::TaskSdk(format!("Gust does not run {class} itself"));
    };
    if let Some(why) = dag.not_expressible.get(task_id).and_then(|w| w.first()) {
        return TaskRoute::TaskSdk(why.clone());
    }
    let given = dag.arguments.get(task_id).cloned().unwrap_or_default();
    let mut args = serde_json::Map::new();
    for (name, value) in given {
        let canonical = spec.canonical_argument(&name).unwrap_or(&name).to_owned();
        if !spec.takes(&canonical) {
            return TaskRoute::TaskSdk(format!(
                "Gust's {} does not take argument {name:?}",
                spec.name
            ));
        }
        args.insert(canonical, value);
    }
    if let Err(err) = (spec.check)(&args) {
        return TaskRoute::TaskSdk(format!("argument {}: {}", err.path, err.message));
    }
    TaskRoute::Native
}

/// Whether `task` (its dag-factory shape) is in a mapped task group of `dag`, or in a group
/// nested in one.
fn in_mapped_group(dag: &ParsedDag, task: &serde_json::Value) -> bool {
    let groups = dag.dag.get("task_groups");
    let mut group = task
        .get("task_group_name")
        .and_then(serde_json::Value::as_str);
    // At most one step per group, whatever the parents say.
    let steps = groups
        .and_then(serde_json::Value::as_object)
        .map_or(0, serde_json::Map::len);
    for _ in 0..=steps {
        let Some(entry) = group.and_then(|g| groups.and_then(|all| all.get(g))) else {
            return false;
        };
        if entry.get("expand").is_some() || entry.get("expand_kwargs").is_some() {
            return true;
        }
        group = entry
            .get("parent_group_name")
            .and_then(serde_json::Value::as_str);
    }
    false
}

/// The DAGs of one parsed file, with its import errors as diagnostics; `tracebacks` gets the
/// Python traceback of each import error, by its place.
pub fn load_python_file(
    parsed: &ParsedFile,
    ctx: &BuildContext<'_>,
    tracebacks: &mut BTreeMap<Location, String>,
) -> FileLoad {
    let mut out = FileLoad::default();
    let file: Arc<Path> = parsed.file.as_path().into();
    for error in &parsed.errors {
        let (problem, traceback) = import_error(&file, &error.message);
        if let Some(traceback) = traceback {
            tracebacks.insert(problem.location.clone(), traceback);
        }
        out.problems.push(problem);
    }
    for dag in &parsed.dags {
        let at = Location::start_of(Arc::clone(&file));
        let before = out.problems.len();
        for problem in &dag.problems {
            out.problems
                .push(Diagnostic::new(at.clone(), problem.clone()).in_dag(&dag.dag_id, None));
        }
        if out.problems.len() > before {
            continue;
        }
        let (shape, task_sdk) = yaml_shape(dag);
        let node = node_from_json(&shape, &at);
        let key = Key {
            name: dag.dag_id.clone(),
            at: at.clone(),
        };
        let ctx = BuildContext {
            now: ctx.now,
            renderer: ctx.renderer,
            fileloc: ctx.fileloc,
            schedules: ctx.schedules,
            task_sdk: Some(&task_sdk),
        };
        if let Some(built) = build_dag(&key, &node, &ctx, &mut out.problems) {
            out.dags.push(built);
        }
    }
    out
}

/// The DAG in dag-factory's shape with the arguments of its native tasks laid in, and the tasks
/// the Task SDK runs.
fn yaml_shape(dag: &ParsedDag) -> (serde_json::Value, HashSet<String>) {
    let mut shape = dag.dag.clone();
    let mut task_sdk = HashSet::new();
    if let Some(tasks) = shape
        .get_mut("tasks")
        .and_then(serde_json::Value::as_object_mut)
    {
        for (task_id, task) in tasks.iter_mut() {
            match route(dag, task_id) {
                TaskRoute::Native => {
                    if let (Some(task), Some(args)) =
                        (task.as_object_mut(), dag.arguments.get(task_id))
                    {
                        task.extend(args.clone());
                    }
                }
                TaskRoute::TaskSdk(_) => {
                    task_sdk.insert(task_id.clone());
                }
            }
        }
    }
    (shape, task_sdk)
}

/// The dag-factory YAML of `dag` (`gust dags export-yaml`), when every task can be written in
/// it; otherwise the first task that cannot, and why.
pub fn export_yaml(dag: &ParsedDag) -> Result<serde_json::Value, String> {
    let tasks = dag
        .dag
        .get("tasks")
        .and_then(serde_json::Value::as_object)
        .map(|tasks| tasks.keys().cloned().collect::<Vec<_>>())
        .unwrap_or_default();
    if let Some(problem) = dag.problems.first() {
        return Err(problem.clone());
    }
    for task in tasks {
        if let TaskRoute::TaskSdk(why) = route(dag, &task) {
            return Err(format!(
                "task {task} of DAG {} cannot be written in YAML: {why}",
                dag.dag_id
            ));
        }
    }
    let (mut shape, _) = yaml_shape(dag);
    // The task ids are full ids: their groups add no prefix (`prefix_group_id: false`), and
    // dependencies name them so.
    if let Some(tasks) = shape
        .get_mut("tasks")
        .and_then(serde_json::Value::as_object_mut)
    {
        for task in tasks.values_mut() {
            let Some(task) = task.as_object_mut() else {
                continue;
            };
            if task
                .get("dependencies")
                .and_then(serde_json::Value::as_array)
                .is_some_and(Vec::is_empty)
            {
                task.remove("dependencies");
            }
            // What the operator does by default goes without saying.
            let default_push = task
                .get("operator")
                .and_then(serde_json::Value::as_str)
                .and_then(gust_operators::resolve)
                .map(|spec| spec.pushes_xcom_by_default);
            if task
                .get("do_xcom_push")
                .and_then(serde_json::Value::as_bool)
                == default_push
            {
                task.remove("do_xcom_push");
            }
        }
    }
    if shape
        .get("task_groups")
        .and_then(serde_json::Value::as_object)
        .is_some_and(serde_json::Map::is_empty)
        && let Some(map) = shape.as_object_mut()
    {
        map.remove("task_groups");
    }
    let mut file = serde_json::Map::new();
    file.insert(dag.dag_id.clone(), shape);
    Ok(serde_json::Value::Object(file))
}

/// An import error as a diagnostic: at the last line of the traceback in the file itself (where
/// the user's mistake is), saying the exception's last line; and the whole traceback, when
/// there is more to it than that line.
fn import_error(file: &Arc<Path>, traceback: &str) -> (Diagnostic, Option<String>) {
    let wanted = format!("File \"{}\", line ", file.display());
    let line = traceback
        .lines()
        .rev()
        .filter_map(|l| l.trim_start().strip_prefix(&wanted))
        .find_map(|rest| {
            rest.split(|c: char| !c.is_ascii_digit())
                .next()
                .and_then(|n| n.parse::<u32>().ok())
        })
        .unwrap_or(1);
    let summary = traceback
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('^') && !l.starts_with('~'))
        .unwrap_or("the file could not be imported");
    let at = Location {
        file: Arc::clone(file),
        line,
        col: 1,
    };
    let whole = (summary != traceback.trim()).then(|| traceback.trim_end().to_owned());
    (Diagnostic::new(at, summary.to_owned()), whole)
}

/// A JSON value as a positioned YAML tree, every node at `at` (the file: a `.py` file has no
/// positions for its parts).
fn node_from_json(value: &serde_json::Value, at: &Location) -> Node {
    use serde_json::Value as J;
    let value = match value {
        J::Null => Value::Null,
        J::Bool(b) => Value::Bool(*b),
        J::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => Value::Float(n.as_f64().unwrap_or_default()),
        },
        J::String(s) => Value::Str(s.clone()),
        J::Array(items) => Value::Seq(items.iter().map(|v| node_from_json(v, at)).collect()),
        J::Object(entries) => {
            let mut map = Mapping::default();
            for (k, v) in entries {
                map.insert(
                    Key {
                        name: k.clone(),
                        at: at.clone(),
                    },
                    node_from_json(v, at),
                );
            }
            Value::Map(map)
        }
    };
    Node {
        value,
        at: at.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parsed(task: serde_json::Value, args: serde_json::Value) -> ParsedDag {
        ParsedDag {
            dag_id: "d".to_owned(),
            dag: json!({"tasks": {"t": task}}),
            arguments: [(
                "t".to_owned(),
                args.as_object().cloned().unwrap_or_default(),
            )]
            .into_iter()
            .collect(),
            not_expressible: BTreeMap::new(),
            problems: Vec::new(),
        }
    }

    #[test]
    fn airflow_s_safe_mode_heuristic_decides_which_files_are_parsed() {
        assert!(might_contain_dag(b"from airflow.sdk import DAG"));
        assert!(might_contain_dag(b"# AIRFLOW\nx = Asset('a')"));
        assert!(!might_contain_dag(b"def helper(): return 'dag'"));
        assert!(!might_contain_dag(b"import airflow"));
    }

    #[test]
    fn a_native_operator_with_yaml_arguments_runs_natively_and_anything_else_in_the_task_sdk() {
        let bash = "airflow.providers.standard.operators.bash.BashOperator";
        assert_eq!(
            route(
                &parsed(json!({"operator": bash}), json!({"bash_command": "echo 1"})),
                "t"
            ),
            TaskRoute::Native
        );
        // A subclass of BashOperator (@task.bash) runs code Gust does not have.
        let decorated = "airflow.providers.standard.decorators.bash._BashDecoratedOperator";
        assert!(matches!(
            route(
                &parsed(json!({"operator": decorated}), json!({"bash_command": "x"})),
                "t"
            ),
            TaskRoute::TaskSdk(_)
        ));
        let mut unknown_argument = parsed(
            json!({"operator": bash}),
            json!({"bash_command": "x", "output_processor_x": 1}),
        );
        assert!(
            matches!(route(&unknown_argument, "t"), TaskRoute::TaskSdk(why) if why.contains("output_processor_x"))
        );
        unknown_argument.arguments.clear();
        unknown_argument.not_expressible.insert(
            "t".to_owned(),
            vec!["argument 'env' is a function".to_owned()],
        );
        assert_eq!(
            route(&unknown_argument, "t"),
            TaskRoute::TaskSdk("argument 'env' is a function".to_owned())
        );
    }

    #[test]
    fn an_import_error_points_at_the_file_s_own_frame_and_says_the_exception() {
        let file: Arc<Path> = Path::new("/dags/etl.py").into();
        let traceback = "Traceback (most recent call last):\n  File \"<frozen importlib._bootstrap>\", line 241, in _call\n  File \"/dags/etl.py\", line 7, in <module>\n    import nope\nModuleNotFoundError: No module named 'nope'\n";
        let (problem, whole) = import_error(&file, traceback);
        assert_eq!(
            problem.to_string(),
            "/dags/etl.py:7:1: ModuleNotFoundError: No module named 'nope'"
        );
        assert!(whole.is_some_and(|t| t.contains("line 241")));
    }

    #[test]
    fn export_refuses_a_task_yaml_cannot_hold_naming_it() {
        let python = parsed(
            json!({"operator": "airflow.providers.standard.operators.python.PythonOperator"}),
            json!({}),
        );
        let err = export_yaml(&python).expect_err("not expressible");
        assert!(err.contains("task t of DAG d"), "{err}");
        let bash = parsed(
            json!({"operator": "airflow.providers.standard.operators.bash.BashOperator", "dependencies": []}),
            json!({"bash_command": "echo 1"}),
        );
        assert_eq!(
            export_yaml(&bash).expect("expressible"),
            json!({"d": {"tasks": {"t": {"operator": "airflow.providers.standard.operators.bash.BashOperator", "bash_command": "echo 1"}}}})
        );
    }
}
