//! `gust dags list | validate | show | list-import-errors`.

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
            Ok(ExitCode::SUCCESS)
        }
        DagsCommand::Validate { paths, folder } => {
            let dags_folder = dags_folder(&folder)?;
            let paths = if paths.is_empty() {
                vec![dags_folder.clone()]
            } else {
                paths
            };
            let load = gust_dagfile::load_paths(&paths, &dags_folder, wall_clock_now());
            for problem in &load.problems {
                println!("{problem}");
            }
            if load.problems.is_empty() {
                eprintln!(
                    "{} DAGs in {} files: all valid",
                    load.dags.len(),
                    load.files.len()
                );
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!(
                    "{} problems; {} DAGs valid",
                    load.problems.len(),
                    load.dags.len()
                );
                Ok(ExitCode::FAILURE)
            }
        }
        DagsCommand::Show {
            dag_id,
            folder,
            format,
        } => {
            let (_, load) = load(&folder)?;
            let dag = find_dag(load, &dag_id)?;
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
            let dag = find_dag(load(&folder)?.1, &dag_id)?;
            test_once(dag, conf, logical_date, local_pods)
        }
        DagsCommand::Pause { dag_id, folder } => set_paused(&folder, &dag_id, true),
        DagsCommand::Unpause { dag_id, folder } => set_paused(&folder, &dag_id, false),
        DagsCommand::Trigger {
            dag_id,
            folder,
            conf,
            run_id,
            logical_date,
        } => {
            let dag = find_dag(load(&folder)?.1, &dag_id)?;
            super::runs::trigger(
                &dag,
                conf.as_deref(),
                run_id,
                logical_date.as_deref(),
                wall_clock_now(),
            )
        }
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
        } => {
            let dag = find_dag(load(&folder)?.1, &dag_id)?;
            super::runs::backfill(
                &dag,
                &start_date,
                &end_date,
                conf.as_deref(),
                wall_clock_now(),
            )
        }
        DagsCommand::ListImportErrors { folder, output } => {
            let (_, load) = load(&folder)?;
            print!("{}", render::import_errors(&load.problems, output)?);
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
            task_regex,
            start_date,
            end_date,
            only_failed,
            yes,
        } => super::runs::clear(
            super::runs::ClearArgs {
                dag_id,
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
        } => {
            let dag = find_dag(load(&folder)?.1, &dag_id)?;
            test_once(single_task(&dag, &task_id)?, conf, logical_date, local_pods)
        }
        crate::cli::TasksCommand::DryRun {
            dag_id,
            task_id,
            folder,
            conf,
            logical_date,
        } => {
            let dag = find_dag(load(&folder)?.1, &dag_id)?;
            let config = Config::load(&config::home()?)?;
            super::dry_run::dry_run(&dag, &task_id, conf, logical_date, &config)
        }
    }
}

/// The pause flags in the metadata database, when there is one (listing DAGs needs none).
fn pause_flags_if_any() -> anyhow::Result<std::collections::HashMap<String, bool>> {
    let config = Config::load(&config::home()?)?;
    let url = config.database.url;
    if url
        .strip_prefix("sqlite://")
        .is_some_and(|path| !Path::new(path).exists())
    {
        return Ok(Default::default());
    }
    super::runtime()?.block_on(async {
        let Ok(store) = gust_store::Store::connect(&url).await else {
            return Ok(Default::default());
        };
        let flags = match store.check().await {
            Ok(_) => store
                .dag_pause_flags()
                .await
                .unwrap_or_default()
                .into_iter()
                .collect(),
            Err(_) => Default::default(),
        };
        store.close().await;
        Ok(flags)
    })
}

/// Records the folder's DAGs in the metadata database, then pauses or unpauses one.
fn set_paused(folder: &DagsFolder, dag_id: &str, paused: bool) -> anyhow::Result<ExitCode> {
    let config = Config::load(&config::home()?)?;
    let (_, load) = load(folder)?;
    let known = load.dags.iter().any(|d| d.id.as_str() == dag_id);
    let mut bag = gust_dagfile::DagBag::default();
    bag.update(load);
    super::runtime()?.block_on(async {
        let store = gust_store::Store::connect(&config.database.url).await?;
        store.check().await?;
        gust_scheduler::sync::sync_bag(
            &store,
            &bag,
            wall_clock_now(),
            config.core.dags_are_paused_at_creation,
        )
        .await?;
        let found = store.set_paused(dag_id, paused).await?;
        store.close().await;
        if !found || !known {
            anyhow::bail!("no DAG \"{dag_id}\"; run `gust dags list` to see the DAGs");
        }
        println!("{dag_id}: {}", if paused { "paused" } else { "unpaused" });
        Ok(ExitCode::SUCCESS)
    })
}

/// Runs `dag` once in-process: `dags test` and `tasks test`.
fn test_once(
    dag: gust_core::dag::Dag,
    conf: Option<String>,
    logical_date: Option<String>,
    local_pods: bool,
) -> anyhow::Result<ExitCode> {
    let config = Config::load(&config::home()?)?;
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

/// `dag` cut down to `task_id` alone, without its upstreams: what `tasks test` runs.
fn single_task(dag: &gust_core::dag::Dag, task_id: &str) -> anyhow::Result<gust_core::dag::Dag> {
    let mut task = find_task(dag, task_id)?.clone();
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

/// The DAG `dag_id` of a loaded folder, or an error saying why it is not there.
fn find_dag(load: FolderLoad, dag_id: &str) -> anyhow::Result<gust_core::dag::Dag> {
    let broken = load
        .problems
        .iter()
        .any(|p| p.dag.as_deref() == Some(dag_id));
    match load.dags.into_iter().find(|d| d.id.as_str() == dag_id) {
        Some(dag) => Ok(dag),
        None if broken => {
            anyhow::bail!("DAG \"{dag_id}\" has errors; run `gust dags validate` to see them")
        }
        None => anyhow::bail!("no DAG \"{dag_id}\"; run `gust dags list` to see the DAGs"),
    }
}

/// The operators the folder's DAGs use, for `gust kubernetes rbac`. A folder named with
/// `--dags-folder` must load; the configured one is skipped when it does not exist yet.
pub fn operators_used(folder: &DagsFolder) -> anyhow::Result<std::collections::BTreeSet<String>> {
    let root = dags_folder(folder)?;
    if folder.dags_folder.is_none() && !root.is_dir() {
        return Ok(std::collections::BTreeSet::new());
    }
    let (_, load) = load(folder)?;
    Ok(load
        .dags
        .iter()
        .flat_map(|dag| dag.tasks().map(|task| task.operator.clone()))
        .collect())
}

/// The DAGs folder: the flag, else the configuration.
fn dags_folder(folder: &DagsFolder) -> anyhow::Result<PathBuf> {
    match &folder.dags_folder {
        Some(dir) => Ok(dir.clone()),
        None => Ok(Config::load(&config::home()?)?.core.dags_folder),
    }
}

fn load(folder: &DagsFolder) -> anyhow::Result<(PathBuf, FolderLoad)> {
    let root = dags_folder(folder)?;
    let load = gust_dagfile::load_folder(&root, wall_clock_now())
        .with_context(|| "cannot load DAGs (set [core] dags_folder or pass --dags-folder DIR)")?;
    Ok((root, load))
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
