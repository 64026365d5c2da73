//! The DAGs folder: finding DAG files and defaults files, and loading them all.
//!
//! Files are `*.yaml`/`*.yml` anywhere below the folder; hidden files and folders (git-sync's
//! `.git`, editors' swap files) are skipped, and `.gustignore` files skip more with gitignore
//! patterns. A `defaults.yml`/`defaults.yaml` is not a DAG file: it holds defaults for every DAG
//! file in its folder and below, the nearer one winning.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use gust_core::dag::Dag;
use gust_template::Renderer;

use crate::build::BuildContext;
use crate::diagnostic::Diagnostic;
use crate::file::{load_dags, read_yaml};
use crate::location::Location;
use crate::python::PythonParser;
use crate::warning::Warning;
use crate::yaml::{MAX_FILE_BYTES, Node};

/// The file that holds gitignore-style patterns of files to skip.
pub const IGNORE_FILE: &str = ".gustignore";

/// What loading a folder yielded: the good DAGs and the problems (import errors), side by side.
#[derive(Debug, Default)]
pub struct FolderLoad {
    /// DAGs that passed every check, sorted by id.
    pub dags: Vec<Dag>,
    /// Every problem, by file then position.
    pub problems: Vec<Diagnostic>,
    /// What Airflow would read differently in the good DAGs, by file then position; a key
    /// inherited by several DAGs (from a defaults file) is reported once.
    pub warnings: Vec<Warning>,
    /// Every DAG file read (defaults files not included), sorted.
    pub files: Vec<PathBuf>,
    /// How long each DAG file took to parse: a YAML file read and built, Airflow's parse of a
    /// Python file (absent: files not read, and Python files without a Python environment).
    pub parse_durations: BTreeMap<PathBuf, std::time::Duration>,
    /// The Python traceback of each Python DAG file's import error, by the problem's place.
    pub tracebacks: BTreeMap<Location, String>,
}

/// Why a folder could not be read at all.
#[derive(Debug, thiserror::Error)]
pub enum FolderError {
    /// The folder does not exist or is not a folder.
    #[error("DAGs folder {} does not exist or is not a folder", path.display())]
    NotAFolder {
        /// The folder.
        path: PathBuf,
    },
}

/// Whether `path` is a defaults file rather than a DAG file.
#[must_use]
pub fn is_defaults_file(path: &Path) -> bool {
    matches!(
        path.file_name().and_then(|n| n.to_str()),
        Some("defaults.yml" | "defaults.yaml")
    )
}

fn is_dag_file(path: &Path) -> bool {
    is_yaml(path) || crate::python::is_python(path)
}

fn is_yaml(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml")
    )
}

/// Finds the DAG files and defaults files below `root`, sorted.
fn discover(root: &Path) -> (Vec<PathBuf>, Vec<PathBuf>, Vec<Diagnostic>) {
    let mut dag_files = Vec::new();
    let mut defaults = Vec::new();
    let mut problems = Vec::new();
    let walker = ignore::WalkBuilder::new(root)
        .standard_filters(false)
        .hidden(true)
        .follow_links(true)
        .add_custom_ignore_filename(IGNORE_FILE)
        .build();
    for entry in walker {
        match entry {
            Ok(entry) => {
                let path = entry.path();
                if !entry.file_type().is_some_and(|t| t.is_file()) || !is_dag_file(path) {
                    continue;
                }
                if is_defaults_file(path) {
                    defaults.push(path.to_path_buf());
                } else {
                    dag_files.push(path.to_path_buf());
                }
            }
            Err(err) => {
                let path = match &err {
                    ignore::Error::WithPath { path, .. } => path.clone(),
                    _ => root.to_path_buf(),
                };
                problems.push(Diagnostic::new(
                    Location::start_of(path.into()),
                    format!("cannot read: {err}"),
                ));
            }
        }
    }
    dag_files.sort();
    defaults.sort();
    (dag_files, defaults, problems)
}

/// What a load takes besides the files: the Python parser and what schedule strings mean.
#[derive(Clone, Copy, Default)]
pub struct LoadWith<'a> {
    /// What parses `.py` files (none: `.py` files are not DAG files).
    pub python: Option<&'a dyn PythonParser>,
    /// What a cron string or timedelta schedule means.
    pub schedules: gust_core::schedule::ScheduleDefaults,
}

/// Loads every YAML DAG below `root` (Python DAG files are skipped: see [`load_folder_with`]).
/// `now` anchors relative start dates.
pub fn load_folder(root: &Path, now: DateTime<Utc>) -> Result<FolderLoad, FolderError> {
    load_folder_with(root, now, LoadWith::default())
}

/// Loads every DAG below `root`, the `.py` files with `with.python`. `now` anchors relative
/// start dates.
pub fn load_folder_with(
    root: &Path,
    now: DateTime<Utc>,
    with: LoadWith<'_>,
) -> Result<FolderLoad, FolderError> {
    if !root.is_dir() {
        return Err(FolderError::NotAFolder {
            path: root.to_path_buf(),
        });
    }
    let (dag_files, defaults_files, problems) = discover(root);
    Ok(Loader::new(root, now, problems, &defaults_files, with).load(dag_files))
}

/// Loads the given files and folders (as `gust dags validate PATH...` does). Files inside
/// `dags_folder` get the defaults files between it and them; other files those of their own folder.
pub fn load_paths(paths: &[PathBuf], dags_folder: &Path, now: DateTime<Utc>) -> FolderLoad {
    load_paths_with(paths, dags_folder, now, LoadWith::default())
}

/// [`load_paths`], the `.py` files parsed with `with.python`.
pub fn load_paths_with(
    paths: &[PathBuf],
    dags_folder: &Path,
    now: DateTime<Utc>,
    with: LoadWith<'_>,
) -> FolderLoad {
    let mut total = FolderLoad::default();
    for path in paths {
        let load = if path.is_dir() {
            match load_folder_with(path, now, with) {
                Ok(load) => load,
                Err(err) => {
                    total.problems.push(Diagnostic::new(
                        Location::start_of(path.as_path().into()),
                        err.to_string(),
                    ));
                    continue;
                }
            }
        } else {
            let root = if path.starts_with(dags_folder) {
                dags_folder.to_path_buf()
            } else {
                path.parent()
                    .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
            };
            let defaults: Vec<PathBuf> = ancestors_within(path, &root)
                .into_iter()
                .flat_map(|dir| [dir.join("defaults.yml"), dir.join("defaults.yaml")])
                .filter(|p| p.is_file())
                .collect();
            Loader::new(&root, now, Vec::new(), &defaults, with).load(vec![path.clone()])
        };
        total.dags.extend(load.dags);
        total.problems.extend(load.problems);
        total.warnings.extend(load.warnings);
        total.files.extend(load.files);
        total.parse_durations.extend(load.parse_durations);
        total.tracebacks.extend(load.tracebacks);
    }
    total.dags.sort_by(|a, b| a.id.cmp(&b.id));
    total.warnings = once_each(total.warnings);
    total
}

/// The folders from `root` down to the folder holding `file`.
fn ancestors_within(file: &Path, root: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = file
        .ancestors()
        .skip(1)
        .take_while(|dir| dir.starts_with(root))
        .map(Path::to_path_buf)
        .collect();
    if dirs.is_empty() {
        dirs.extend(file.parent().map(Path::to_path_buf));
    }
    dirs.reverse();
    dirs
}

struct Loader<'a> {
    root: &'a Path,
    now: DateTime<Utc>,
    problems: Vec<Diagnostic>,
    /// Parsed defaults by folder; `Err` holds where the broken defaults file is.
    defaults: HashMap<PathBuf, Result<Node, PathBuf>>,
    renderer: Renderer,
    python: Option<&'a dyn PythonParser>,
    schedules: gust_core::schedule::ScheduleDefaults,
    tracebacks: BTreeMap<Location, String>,
}

impl<'a> Loader<'a> {
    fn new(
        root: &'a Path,
        now: DateTime<Utc>,
        problems: Vec<Diagnostic>,
        defaults_files: &[PathBuf],
        with: LoadWith<'a>,
    ) -> Self {
        let mut loader = Self {
            root,
            now,
            problems,
            defaults: HashMap::new(),
            renderer: Renderer::new(),
            python: with.python,
            schedules: with.schedules,
            tracebacks: BTreeMap::new(),
        };
        for path in defaults_files {
            let parsed = read_file(path)
                .and_then(|text| read_yaml(path, &text))
                .and_then(|node| {
                    if node.as_map().is_some() {
                        Ok(node)
                    } else {
                        Err(Diagnostic::new(
                            node.at.clone(),
                            format!(
                                "a defaults file must be a map of DAG settings, not {}",
                                node.kind()
                            ),
                        ))
                    }
                });
            let dir = path.parent().map_or_else(PathBuf::new, Path::to_path_buf);
            match parsed {
                Ok(node) => {
                    loader.defaults.insert(dir, Ok(node));
                }
                Err(problem) => {
                    loader.problems.push(problem);
                    loader.defaults.insert(dir, Err(path.clone()));
                }
            }
        }
        loader
    }

    fn load(mut self, found: Vec<PathBuf>) -> FolderLoad {
        let mut dags: BTreeMap<String, Dag> = BTreeMap::new();
        let mut warnings = Vec::new();
        let root_dir = self.root.display().to_string();
        let (python_files, mut dag_files): (Vec<PathBuf>, Vec<PathBuf>) = found
            .into_iter()
            .partition(|path| crate::python::is_python(path));
        let (python_files, mut parse_durations) = self.load_python(python_files, &mut dags);
        for path in &dag_files {
            let started = std::time::Instant::now();
            let mut layers = Vec::new();
            let mut broken = None;
            for dir in ancestors_within(path, self.root) {
                match self.defaults.get(&dir) {
                    Some(Ok(node)) => layers.push(node.clone()),
                    Some(Err(defaults_path)) => broken = Some(defaults_path.clone()),
                    None => {}
                }
            }
            if let Some(defaults_path) = broken {
                self.problems.push(
                    Diagnostic::new(
                        Location::start_of(path.as_path().into()),
                        format!(
                            "not loaded: its defaults file {} has errors",
                            defaults_path.display()
                        ),
                    )
                    .with_hint("fix the defaults file first"),
                );
                continue;
            }
            let root = match read_file(path).and_then(|text| read_yaml(path, &text)) {
                Ok(root) => root,
                Err(problem) => {
                    self.problems.push(problem);
                    continue;
                }
            };
            let ctx = BuildContext {
                now: self.now,
                renderer: &self.renderer,
                fileloc: path,
                schedules: self.schedules,
                task_sdk: None,
            };
            let file = load_dags(root, &layers, &root_dir, &ctx);
            self.problems.extend(file.problems);
            // A DAG refused as a duplicate is not loaded, so its warnings are not said.
            let refused = self.add_dags(path, file.dags, &mut dags);
            warnings.extend(
                file.warnings
                    .into_iter()
                    .filter(|w| !refused.contains(&w.dag)),
            );
            parse_durations.insert(path.clone(), started.elapsed());
        }
        self.problems.sort_by(|a, b| a.location.cmp(&b.location));
        dag_files.extend(python_files);
        dag_files.sort();
        FolderLoad {
            dags: dags.into_values().collect(),
            problems: self.problems,
            warnings: once_each(warnings),
            files: dag_files,
            parse_durations,
            tracebacks: self.tracebacks,
        }
    }

    /// Adds a file's DAGs to `dags`, refusing (and answering) those whose id is taken.
    fn add_dags(
        &mut self,
        path: &Path,
        file_dags: Vec<Dag>,
        dags: &mut BTreeMap<String, Dag>,
    ) -> Vec<String> {
        let mut refused = Vec::new();
        for dag in file_dags {
            if let Some(first) = dags.get(dag.id.as_str()) {
                self.problems.push(
                    Diagnostic::new(
                        Location::start_of(path.into()),
                        format!(
                            "DAG \"{}\" is also defined in {}",
                            dag.id,
                            first.fileloc.display()
                        ),
                    )
                    .in_dag(dag.id.as_str(), None)
                    .with_hint("DAG ids must be unique across the DAGs folder; rename one"),
                );
                refused.push(dag.id.to_string());
                continue;
            }
            dags.insert(dag.id.to_string(), dag);
        }
        refused
    }

    /// Parses the Python DAG files with the parser (none: they are not DAG files) and adds
    /// their DAGs. Answers the files parsed and how long each took.
    fn load_python(
        &mut self,
        files: Vec<PathBuf>,
        dags: &mut BTreeMap<String, Dag>,
    ) -> (Vec<PathBuf>, BTreeMap<PathBuf, std::time::Duration>) {
        let mut durations = BTreeMap::new();
        let Some(python) = self.python else {
            return (Vec::new(), durations);
        };
        let mut candidates = Vec::new();
        for path in files {
            match read_file(&path) {
                Ok(text) if crate::python::might_contain_dag(text.as_bytes()) => {
                    candidates.push(path);
                }
                Ok(_) => {}
                Err(problem) => self.problems.push(problem),
            }
        }
        if candidates.is_empty() {
            return (candidates, durations);
        }
        let mut parsed = python.parse(&candidates, self.root);
        parsed.sort_by(|a, b| a.file.cmp(&b.file));
        for file in &parsed {
            durations.insert(
                file.file.clone(),
                std::time::Duration::from_secs_f64(file.seconds.max(0.0)),
            );
            let ctx = BuildContext {
                now: self.now,
                renderer: &self.renderer,
                fileloc: &file.file,
                schedules: self.schedules,
                task_sdk: None,
            };
            let load = crate::python::load_python_file(file, &ctx, &mut self.tracebacks);
            self.problems.extend(load.problems);
            self.add_dags(&file.file, load.dags, dags);
        }
        (candidates, durations)
    }
}

/// The warnings sorted by place, each place and difference once (a key in a defaults file is
/// inherited by every DAG below it, but is one thing to fix).
fn once_each(mut warnings: Vec<Warning>) -> Vec<Warning> {
    warnings.sort_by(|a, b| a.location.cmp(&b.location));
    let mut seen = std::collections::HashSet::new();
    warnings.retain(|w| seen.insert((w.location.clone(), w.difference.clone())));
    warnings
}

/// Reads a file's text, refusing oversized files before reading them.
fn read_file(path: &Path) -> Result<String, Diagnostic> {
    let at = || Location::start_of(Arc::from(path));
    let size = std::fs::metadata(path)
        .map_err(|err| Diagnostic::new(at(), format!("cannot read: {err}")))?
        .len();
    if size > MAX_FILE_BYTES as u64 {
        return Err(Diagnostic::new(
            at(),
            format!("the file is {size} bytes; DAG files may be at most {MAX_FILE_BYTES} bytes"),
        )
        .with_hint("split the DAGs over several files"));
    }
    let bytes =
        std::fs::read(path).map_err(|err| Diagnostic::new(at(), format!("cannot read: {err}")))?;
    String::from_utf8(bytes).map_err(|err| {
        Diagnostic::new(
            at(),
            format!(
                "the file is not UTF-8 text (invalid byte at offset {})",
                err.utf8_error().valid_up_to()
            ),
        )
    })
}
