//! `gust dags list | validate | show | test | list-import-errors` read DAG files; `pause |
//! unpause | trigger | backfill | list-runs` act on the DAGs the database records
//! ([`super::recorded`]).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use chrono::{DateTime, Utc};
use gust_dagfile::FolderLoad;

use crate::cli::{DagsCommand, DagsFolder};
use crate::config::{self, Config};
use crate::render;

/// Runs a `gust dags` command.
pub fn run(command: DagsCommand) -> anyhow::Result<ExitCode> {
    match command {
        DagsCommand::List { folder, output } => {
            let (root, load) = load(&folder)?;
            let paused = pause_flags_if_any()?;
            print!("{}", render::dag_list(&load.dags, &root, output, &paused)?);
            warn_about_problems(&load);
            say_when_empty(&folder, &root, &load)?;
            Ok(ExitCode::SUCCESS)
        }
        DagsCommand::Validate { paths, folder } => {
            let dags_folder = dags_folder(&folder)?;
            let paths = if paths.is_empty() {
                vec![dags_folder.clone()]
            } else {
                paths
            };
            let (python, schedules) = python_dags()?;
            let load = gust_dagfile::load_paths_with(
                &paths,
                &dags_folder,
                wall_clock_now(),
                gust_dagfile::LoadWith {
                    python: python
                        .as_deref()
                        .map(|p| p as &dyn gust_dagfile::PythonParser),
                    schedules,
                },
            );
            for problem in &load.problems {
                println!("{problem}");
            }
            // How long Airflow took over each Python file, as its `dags report` says.
            let python_files = load
                .parse_durations
                .iter()
                .filter(|(file, _)| gust_dagfile::python::is_python(file));
            for (file, took) in python_files {
                eprintln!(
                    "{}: parsed by Airflow in {:.2}s",
                    relative(file, &dags_folder).display(),
                    took.as_secs_f64()
                );
            }
            // Warnings do not fail validation: Gust runs the DAG as written, but Airflow would not.
            for warning in &load.warnings {
                println!("{warning}");
            }
            let warnings = match load.warnings.len() {
                0 => String::new(),
                n => format!(
                    " ({}: Airflow with dag-factory would read these files differently)",
                    counted(n, "warning")
                ),
            };
            if load.files.is_empty() && load.problems.is_empty() {
                let read: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
                eprintln!(
                    "nothing to validate: no DAG files ({}) in {}",
                    if python.is_some() {
                        "*.yaml, *.yml, *.py"
                    } else {
                        "*.yaml, *.yml"
                    },
                    read.join(", ")
                );
                Ok(ExitCode::FAILURE)
            } else if load.problems.is_empty() {
                eprintln!(
                    "{} in {}: all valid{warnings}",
                    counted(load.dags.len(), "DAG"),
                    counted(load.files.len(), "file")
                );
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!(
                    "{}; {} valid{warnings}",
                    counted(load.problems.len(), "problem"),
                    counted(load.dags.len(), "DAG")
                );
                Ok(ExitCode::FAILURE)
            }
        }
        DagsCommand::ExportYaml { dag_id, folder } => {
            let dag = find_dag(&folder, &dag_id)?;
            print!("{}", export_yaml(&dag, &dags_folder(&folder)?)?);
            Ok(ExitCode::SUCCESS)
        }
        DagsCommand::Show {
            dag_id,
            folder,
            format,
        } => {
            let dag = find_dag(&folder, &dag_id)?;
            print!("{}", render::graph(&dag, format));
            Ok(ExitCode::SUCCESS)
        }
        DagsCommand::Test {
            dag_id,
            folder,
            conf,
            logical_date,
            local_pods,
        } => {
            let dag = find_dag(&folder, &dag_id)?;
            test_once(dag, &folder, conf, logical_date, local_pods)
        }
        DagsCommand::Pause { dag_id, folder } => set_paused(&folder, &dag_id, true),
        DagsCommand::Unpause { dag_id, folder } => set_paused(&folder, &dag_id, false),
        DagsCommand::Trigger {
            dag_id,
            folder,
            conf,
            run_id,
            logical_date,
        } => super::runs::trigger(
            &dag_id,
            &folder,
            conf.as_deref(),
            run_id,
            logical_date.as_deref(),
            wall_clock_now(),
        ),
        DagsCommand::ListRuns {
            dag_id,
            limit,
            output,
        } => super::runs::list_runs(&dag_id, limit, output),
        DagsCommand::Backfill {
            dag_id,
            folder,
            start_date,
            end_date,
            conf,
        } => super::runs::backfill(
            &dag_id,
            &folder,
            &start_date,
            &end_date,
            conf.as_deref(),
            wall_clock_now(),
        ),
        DagsCommand::ListImportErrors { folder, output } => {
            let (root, load) = load(&folder)?;
            print!(
                "{}",
                render::import_errors(&load.problems, &load.tracebacks, output)?
            );
            say_when_empty(&folder, &root, &load)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Runs a `gust tasks` command.
pub fn run_tasks(command: crate::cli::TasksCommand) -> anyhow::Result<ExitCode> {
    match command {
        crate::cli::TasksCommand::StatesForDagRun {
            dag_id,
            run_id,
            output,
        } => super::runs::states_for_dag_run(&dag_id, &run_id, output),
        crate::cli::TasksCommand::Clear {
            dag_id,
            folder,
            task_regex,
            start_date,
            end_date,
            only_failed,
            yes,
        } => super::runs::clear(
            super::runs::ClearArgs {
                dag_id,
                folder,
                task_regex,
                start_date,
                end_date,
                only_failed,
                yes,
            },
            wall_clock_now(),
        ),
        crate::cli::TasksCommand::Test {
            dag_id,
            task_id,
            folder,
            conf,
            logical_date,
            local_pods,
            map_index,
        } => {
            let dag = find_dag(&folder, &dag_id)?;
            let config = Config::load(&config::home()?)?;
            let task = super::map_index::one_instance(
                dag.id.as_str(),
                find_task(&dag, &task_id)?,
                map_index,
                config.core.max_map_length,
            )?;
            test_once(
                single_task(&dag, task)?,
                &folder,
                conf,
                logical_date,
                local_pods,
            )
        }
        crate::cli::TasksCommand::DryRun {
            dag_id,
            task_id,
            folder,
            conf,
            logical_date,
            map_index,
        } => {
            let dag = find_dag(&folder, &dag_id)?;
            let config = Config::load(&config::home()?)?;
            super::dry_run::dry_run(
                &dag,
                super::dry_run::Named {
                    task_id: &task_id,
                    map_index,
                },
                conf,
                logical_date,
                &config,
            )
        }
    }
}

/// The pause flags in the metadata database, when there is one (listing DAGs needs none).
fn pause_flags_if_any() -> anyhow::Result<std::collections::HashMap<String, bool>> {
    let config = Config::load(&config::home()?)?;
    super::runtime()?.block_on(async {
        let Some(store) = super::recorded::open_if_any(&config).await else {
            return Ok(Default::default());
        };
        let flags = store
            .dag_pause_flags()
            .await
            .unwrap_or_default()
            .into_iter()
            .collect();
        store.close().await;
        Ok(flags)
    })
}

/// Pauses or unpauses the DAG the database records; one it does not record yet is found in the
/// DAGs folder, whose DAGs are recorded first (new ones paused as the scheduler would) so the
/// flag is there when a scheduler starts.
fn set_paused(folder: &DagsFolder, dag_id: &str, paused: bool) -> anyhow::Result<ExitCode> {
    let config = Config::load(&config::home()?)?;
    super::runtime()?.block_on(async {
        let store = super::runs::open_store(&config).await?;
        let result = async {
            if let super::recorded::Found::InFolder { load, .. } =
                super::recorded::find(&store, dag_id, folder).await?
            {
                let mut bag = gust_dagfile::DagBag::default();
                bag.update(load);
                gust_scheduler::sync::record_dags(
                    &store,
                    &bag,
                    wall_clock_now(),
                    config.core.dags_are_paused_at_creation,
                )
                .await?;
            }
            anyhow::ensure!(
                store.set_paused(dag_id, paused).await?,
                "DAG \"{dag_id}\" was deleted meanwhile"
            );
            Ok(())
        }
        .await;
        store.close().await;
        result?;
        println!("{dag_id}: {}", if paused { "paused" } else { "unpaused" });
        Ok(ExitCode::SUCCESS)
    })
}

/// Runs `dag` once in-process: `dags test` and `tasks test`.
fn test_once(
    dag: gust_core::dag::Dag,
    folder: &DagsFolder,
    conf: Option<String>,
    logical_date: Option<String>,
    local_pods: bool,
) -> anyhow::Result<ExitCode> {
    let mut config = Config::load(&config::home()?)?;
    // A Python DAG file's tasks load it from the folder it was read from.
    config.core.dags_folder = dags_folder(folder)?;
    super::test_run::run_test(
        super::test_run::TestArgs {
            dag,
            conf,
            logical_date,
            local_pods,
        },
        &config,
    )
}

/// `n` and `noun`, plural unless `n` is one: "1 DAG", "2 DAGs".
fn counted(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// `dag` cut down to `task` alone (one of its tasks, or one instance of a mapped one), without
/// its upstreams: what `tasks test` runs.
fn single_task(
    dag: &gust_core::dag::Dag,
    mut task: gust_core::task::Task,
) -> anyhow::Result<gust_core::dag::Dag> {
    task.upstream.clear();
    let tasks = [(task.id.clone(), task)].into_iter().collect();
    Ok(gust_core::dag::Dag::new(
        dag.id.clone(),
        dag.settings.clone(),
        tasks,
        dag.groups.clone(),
        dag.fileloc.clone(),
    )?)
}

/// The task `task_id` of `dag`, or an error listing its tasks.
pub fn find_task<'d>(
    dag: &'d gust_core::dag::Dag,
    task_id: &str,
) -> anyhow::Result<&'d gust_core::task::Task> {
    dag.tasks()
        .find(|t| t.id.as_str() == task_id)
        .ok_or_else(|| {
            let ids: Vec<&str> = dag.tasks().map(|t| t.id.as_str()).collect();
            anyhow::anyhow!(
                "DAG \"{}\" has no task \"{task_id}\"; its tasks are: {}",
                dag.id,
                ids.join(", ")
            )
        })
}

/// The DAG `dag_id` of the DAGs folder, or an error saying which folder was read and why the DAG
/// is not there (with where the database records it from, when it does).
fn find_dag(folder: &DagsFolder, dag_id: &str) -> anyhow::Result<gust_core::dag::Dag> {
    let (root, load) = load(folder)?;
    let broken = load
        .problems
        .iter()
        .any(|p| p.dag.as_deref() == Some(dag_id));
    match load.dags.into_iter().find(|d| d.id.as_str() == dag_id) {
        Some(dag) => Ok(dag),
        None if broken => {
            anyhow::bail!("DAG \"{dag_id}\" has errors; run `gust dags validate` to see them")
        }
        None => {
            let config = Config::load(&config::home()?)?;
            let recorded =
                super::runtime()?.block_on(super::recorded::recorded_file(&config, dag_id));
            match recorded {
                Some(file) => anyhow::bail!(
                    "no DAG \"{dag_id}\" in {}; the database records it from {file}: pass \
                     --dags-folder with the folder that holds it",
                    read_folder(folder, &root)
                ),
                None => anyhow::bail!(
                    "no DAG \"{dag_id}\" in {}; run `gust dags list` to see its DAGs",
                    read_folder(folder, &root)
                ),
            }
        }
    }
}

/// The folder a command read, and where that came from when no flag named it.
fn read_folder(folder: &DagsFolder, root: &Path) -> String {
    match folder.dags_folder {
        Some(_) => root.display().to_string(),
        None => format!("{} ([core] dags_folder)", root.display()),
    }
}

/// Says on stderr which folder was read when it holds no DAG file, and where the database's DAGs
/// come from when it records some: an empty list must not look like "no DAGs anywhere".
fn say_when_empty(folder: &DagsFolder, root: &Path, load: &FolderLoad) -> anyhow::Result<()> {
    if !load.files.is_empty() {
        return Ok(());
    }
    let config = Config::load(&config::home()?)?;
    let recorded = super::runtime()?.block_on(super::recorded::recorded_files(&config));
    match common_folder(&recorded) {
        Some(dir) => eprintln!(
            "no DAG files in {}; the database records DAGs from {}: pass --dags-folder {}",
            read_folder(folder, root),
            dir.display(),
            dir.display()
        ),
        None => eprintln!(
            "no DAG files in {}; pass --dags-folder DIR to read another folder",
            read_folder(folder, root)
        ),
    }
    Ok(())
}

/// The deepest folder holding every file of `files`, if any.
fn common_folder(files: &[String]) -> Option<PathBuf> {
    let mut common: Option<PathBuf> = None;
    for file in files {
        let dir = Path::new(file).parent()?;
        common = Some(match common {
            None => dir.to_path_buf(),
            Some(so_far) => so_far
                .components()
                .zip(dir.components())
                .take_while(|(a, b)| a == b)
                .map(|(a, _)| a)
                .collect(),
        });
    }
    common.filter(|dir| !dir.as_os_str().is_empty())
}

/// What the folder's DAGs call on a cluster, for `gust kubernetes rbac`: the operators they
/// use, and the kinds their `kubernetes_resource_sensor` tasks read (those whose `api_version`
/// and `kind` are not templates). A folder named with `--dags-folder` must load; the configured
/// one is skipped when it does not exist yet.
pub fn cluster_calls(
    folder: &DagsFolder,
) -> anyhow::Result<(BTreeSet<String>, BTreeSet<gust_kube::rbac::Read>)> {
    let root = dags_folder(folder)?;
    if folder.dags_folder.is_none() && !root.is_dir() {
        return Ok(Default::default());
    }
    let (_, load) = load(folder)?;
    let tasks = || load.dags.iter().flat_map(|dag| dag.tasks());
    let operators = tasks().map(|task| task.operator.clone()).collect();
    let reads = tasks()
        .filter(|task| task.operator == gust_operators::sensors::kubernetes::RESOURCE_SPEC.name)
        .filter_map(|task| {
            let text = |name: &str| {
                task.args
                    .get(name)
                    .and_then(serde_json::Value::as_str)
                    .filter(|text| !text.contains("{{"))
                    .map(str::trim)
            };
            Some(gust_kube::rbac::Read::of(
                text("api_version")?,
                text("kind")?,
            ))
        })
        .collect();
    Ok((operators, reads))
}

/// The DAGs folder: the flag, else the configuration.
pub(super) fn dags_folder(folder: &DagsFolder) -> anyhow::Result<PathBuf> {
    match &folder.dags_folder {
        Some(dir) => Ok(dir.clone()),
        None => Ok(Config::load(&config::home()?)?.core.dags_folder),
    }
}

/// The DAGs folder (the flag's, else the configured one) and what loading it found.
pub(super) fn load(folder: &DagsFolder) -> anyhow::Result<(PathBuf, FolderLoad)> {
    let root = dags_folder(folder)?;
    let (python, schedules) = python_dags()?;
    let load = gust_dagfile::load_folder_with(
        &root,
        wall_clock_now(),
        gust_dagfile::LoadWith {
            python: python
                .as_deref()
                .map(|p| p as &dyn gust_dagfile::PythonParser),
            schedules,
        },
    )
    .with_context(|| "cannot load DAGs (set [core] dags_folder or pass --dags-folder DIR)")?;
    Ok((root, load))
}

/// The parser of Python DAG files, when `[python] interpreter` is set.
/// The parser of Python DAG files (when `[python] interpreter` is set) and what schedule
/// strings mean, from the configuration.
fn python_dags() -> anyhow::Result<(
    Option<std::sync::Arc<crate::python_dags::PythonDags>>,
    gust_core::schedule::ScheduleDefaults,
)> {
    let home = config::home()?;
    let config = Config::load(&home)?;
    Ok((
        crate::python_dags::PythonDags::from_config(&config, &home.join("run").join("python")),
        config.scheduler.schedule_defaults(),
    ))
}

/// The dag-factory YAML of a Python DAG (`gust dags export-yaml`).
fn export_yaml(dag: &gust_core::dag::Dag, root: &Path) -> anyhow::Result<String> {
    use gust_dagfile::PythonParser;
    if !gust_dagfile::python::is_python(&dag.fileloc) {
        anyhow::bail!(
            "DAG \"{}\" is already YAML: {}",
            dag.id,
            dag.fileloc.display()
        );
    }
    let (Some(python), _) = python_dags()? else {
        anyhow::bail!("Python DAG files need [python] interpreter (see docs/python-dags.md)");
    };
    let parsed = python.parse(std::slice::from_ref(&dag.fileloc), root);
    let found = parsed
        .iter()
        .flat_map(|file| &file.dags)
        .find(|d| d.dag_id == dag.id.as_str())
        .with_context(|| {
            format!(
                "Airflow found no DAG \"{}\" in {}",
                dag.id,
                dag.fileloc.display()
            )
        })?;
    let value = gust_dagfile::python::export_yaml(found).map_err(anyhow::Error::msg)?;
    let mut text = format!(
        "# dag-factory YAML of {} (written by `gust dags export-yaml {}`)\n",
        dag.fileloc.display(),
        dag.id
    );
    text.push_str(&serde_yaml_ng::to_string(&value).context("cannot write YAML")?);
    Ok(text)
}

fn warn_about_problems(load: &FolderLoad) {
    if !load.problems.is_empty() {
        eprintln!(
            "warning: {} import errors; run `gust dags list-import-errors` to see them",
            load.problems.len()
        );
    }
}

/// A path shown relative to the DAGs folder when it is inside it.
pub fn relative<'a>(path: &'a Path, root: &Path) -> &'a Path {
    path.strip_prefix(root).unwrap_or(path)
}

/// The time DAG files are loaded at (relative start dates count back from it). The binary is the
/// edge of the system, the one place the wall clock is read; everything below takes it as a value.
#[allow(clippy::disallowed_methods)]
fn wall_clock_now() -> DateTime<Utc> {
    Utc::now()
}
