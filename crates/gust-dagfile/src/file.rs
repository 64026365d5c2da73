//! One DAG file: its DAGs, each with the defaults files and the file's `default` block laid
//! underneath.

use std::path::Path;
use std::sync::Arc;

use gust_core::dag::Dag;

use crate::build::{BuildContext, build_dag};
use crate::diagnostic::Diagnostic;
use crate::differences;
use crate::location::Location;
use crate::merge::{deep_merge, substitute_root_dir};
use crate::warning::Warning;
use crate::yaml::{self, Node, Value};

/// The key of a file's block of settings shared by all its DAGs.
pub const DEFAULT_KEY: &str = "default";

/// What one file yielded: its good DAGs and every problem found.
#[derive(Debug, Default)]
pub struct FileLoad {
    /// DAGs that passed every check.
    pub dags: Vec<Dag>,
    /// Every problem, in file order.
    pub problems: Vec<Diagnostic>,
    /// What Airflow would read differently in the good DAGs, by DAG then place.
    pub warnings: Vec<Warning>,
}

/// Reads the YAML of `path` (a DAG or defaults file) into a tree, or a diagnostic.
pub fn read_yaml(path: &Path, text: &str) -> Result<Node, Diagnostic> {
    let file: Arc<Path> = path.into();
    yaml::load(&file, text).map_err(|err| {
        let at = err
            .location()
            .cloned()
            .unwrap_or_else(|| Location::start_of(Arc::clone(&file)));
        let hint = match &err {
            yaml::LoadError::TooLarge { .. } => Some("split the DAGs over several files"),
            yaml::LoadError::DuplicateKey { .. } => {
                Some("task_ids and DAG ids must be unique; rename or remove one")
            }
            _ => None,
        };
        let d = Diagnostic::new(at, err.to_string());
        match hint {
            Some(h) => d.with_hint(h),
            None => d,
        }
    })
}

/// Reads every DAG of a parsed file. `defaults` are the parsed defaults files that apply,
/// farthest first; `root_dir` replaces `$CONFIG_ROOT_DIR`.
pub fn load_dags(
    root: Node,
    defaults: &[Node],
    root_dir: &str,
    ctx: &BuildContext<'_>,
) -> FileLoad {
    let mut out = FileLoad::default();
    let kind = root.kind();
    let Value::Map(mut entries) = root.value else {
        if kind != "null" {
            out.problems.push(Diagnostic::new(
                root.at,
                format!("a DAG file must be a map of DAG ids to DAGs, not {kind}"),
            ));
        } else {
            out.problems.push(
                Diagnostic::new(root.at, "the file is empty")
                    .with_hint("add a DAG (dag_id: {tasks: ...}) or add the file to .gustignore"),
            );
        }
        return out;
    };
    // dag-factory's file of named datasets (`datasets: [{name, uri}]`, which `outlets:` and
    // `schedule:` name with `file:`) sits in the DAGs folder in its examples: it holds no DAG,
    // and a DAG named `datasets` would be a map, never a list.
    if entries.len() == 1
        && matches!(
            entries.get("datasets").map(|n| &n.value),
            Some(Value::Seq(_))
        )
    {
        return out;
    }
    let file_default = entries.remove(DEFAULT_KEY).map(|(_, node)| node);
    let mut base: Option<Node> = None;
    for layer in defaults.iter().cloned().chain(file_default) {
        base = Some(match base {
            Some(below) => deep_merge(below, layer),
            None => layer,
        });
    }
    if entries.is_empty() {
        out.problems.push(
            Diagnostic::new(root.at, "the file holds no DAG")
                .with_hint("add a DAG (dag_id: {tasks: ...}) or add the file to .gustignore"),
        );
    }
    for (key, node) in entries {
        let mut dag = match &base {
            Some(base) if node.as_map().is_some() => deep_merge(base.clone(), node),
            _ => node,
        };
        substitute_root_dir(&mut dag, root_dir);
        if let Some(built) = build_dag(&key, &dag, ctx, &mut out.problems) {
            out.warnings.extend(differences::scan(&key.name, &dag));
            out.dags.push(built);
        }
    }
    out
}
