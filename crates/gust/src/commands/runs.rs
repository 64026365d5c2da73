//! Commands on runs and task instances in the metadata database: `dags trigger | list-runs |
//! backfill`, `tasks states-for-dag-run | clear`.

use std::io::{BufRead, Write};
use std::process::ExitCode;

use anyhow::Context;
use chrono::{DateTime, Utc};
use gust_core::dag::Dag;
use gust_core::schedule::DataInterval;
use gust_store::{NewRun, RunType, Store};

use crate::cli::{DagsFolder, Output};
use crate::config::{self, Config};
use crate::render;

/// Opens the configured metadata database, which must be migrated.
pub async fn open_store(config: &Config) -> anyhow::Result<Store> {
    let store = Store::connect(&config.database.url).await?;
    store
        .check()
        .await
        .context("the metadata database is not ready; run `gust db migrate`")?;
    Ok(store)
}

/// Parses `--conf`.
pub fn parse_conf(
    text: Option<&str>,
) -> anyhow::Result<serde_json::Map<String, serde_json::Value>> {
    match text {
        None => Ok(serde_json::Map::new()),
        Some(text) => match serde_json::from_str::<serde_json::Value>(text) {
            Ok(serde_json::Value::Object(map)) => Ok(map),
            Ok(_) => anyhow::bail!("--conf must be a JSON object, like '{{\"limit\": 10}}'"),
            Err(err) => anyhow::bail!("--conf is not valid JSON: {err}"),
        },
    }
}

fn parse_date(text: &str, dag: Option<&Dag>, flag: &str) -> anyhow::Result<DateTime<Utc>> {
    let tz = dag.map_or(chrono_tz::UTC, |d| d.settings.timezone);
    gust_core::date::parse_datetime(text, tz).with_context(|| format!("{flag} \"{text}\""))
}

/// `gust dags trigger`: a manual run of the DAG the database records (else the folder's).
pub fn trigger(
    dag_id: &str,
    folder: &DagsFolder,
    conf: Option<&str>,
    run_id: Option<String>,
    logical_date: Option<&str>,
    now: DateTime<Utc>,
) -> anyhow::Result<ExitCode> {
    let config = Config::load(&config::home()?)?;
    let conf = parse_conf(conf)?;
    let run_id = run_id
        .map(|id| {
            config
                .scheduler
                .run_id_pattern()?
                .check(&id)
                .context("--run-id")
        })
        .transpose()?;
    super::runtime()?.block_on(async {
        let store = open_store(&config).await?;
        let created = async {
            let found = super::recorded::find(&store, dag_id, folder).await?;
            let dag = found.dag();
            let logical_date = match logical_date {
                Some(text) => parse_date(text, Some(dag), "--logical-date")?,
                None => now,
            };
            let run_id =
                gust_scheduler::trigger::trigger(&store, dag, conf, run_id, logical_date, now)
                    .await?;
            anyhow::Ok(run_id)
        }
        .await;
        store.close().await;
        println!(
            "created run {} of {dag_id}; the scheduler starts it",
            created?
        );
        Ok(ExitCode::SUCCESS)
    })
}

/// `gust dags backfill`: one backfill run per schedule interval whose logical date is within
/// the dates, oldest first, of the DAG the database records (else the folder's).
pub fn backfill(
    dag_id: &str,
    folder: &DagsFolder,
    start: &str,
    end: &str,
    conf: Option<&str>,
    now: DateTime<Utc>,
) -> anyhow::Result<ExitCode> {
    let config = Config::load(&config::home()?)?;
    let conf = parse_conf(conf)?;
    super::runtime()?.block_on(async {
        let store = open_store(&config).await?;
        let result = async {
            let found = super::recorded::find(&store, dag_id, folder).await?;
            let dag = found.dag();
            gust_scheduler::trigger::check_conf(dag, &conf)?;
            let intervals = backfill_intervals(dag, start, end)?;
            let mut created = 0;
            for DataInterval { start, end } in &intervals {
                let run = NewRun {
                    dag_id: dag.id.to_string(),
                    run_id: gust_scheduler::trigger::run_id_for(RunType::Backfill, *end),
                    run_type: RunType::Backfill,
                    logical_date: *start,
                    data_interval: (*start, *end),
                    conf: conf.clone(),
                    queued_at: now,
                };
                if store.create_run(&run).await? {
                    created += 1;
                    println!("{}", run.run_id);
                }
            }
            anyhow::Ok((created, intervals.len()))
        }
        .await;
        store.close().await;
        let (created, total) = result?;
        eprintln!(
            "created {created} backfill runs of {dag_id} ({} already existed); the scheduler runs them",
            total - created
        );
        Ok(ExitCode::SUCCESS)
    })
}

/// The schedule intervals of `dag` whose start is between `--start-date` and `--end-date`.
fn backfill_intervals(dag: &Dag, start: &str, end: &str) -> anyhow::Result<Vec<DataInterval>> {
    let start = parse_date(start, Some(dag), "--start-date")?;
    let end = parse_date(end, Some(dag), "--end-date")?;
    if end < start {
        anyhow::bail!("--end-date is before --start-date");
    }
    let schedule = &dag.settings.schedule;
    let mut intervals = Vec::new();
    let mut next = schedule.next_data_interval(None, start, dag.settings.timezone);
    while let Some(interval) = next.filter(|i| i.start <= end) {
        if intervals.len() >= 10_000 {
            anyhow::bail!("more than 10000 intervals between the dates; backfill a shorter range");
        }
        intervals.push(interval);
        // A run of one instant (a trigger timetable's) is followed too; a next run that does
        // not move on ends the walk.
        next = schedule
            .next_data_interval(Some(&interval), start, dag.settings.timezone)
            .filter(|n| n.end > interval.end);
    }
    if intervals.is_empty() {
        anyhow::bail!(
            "DAG {} has no schedule interval between the dates (schedule: {})",
            dag.id,
            schedule.as_text()
        );
    }
    Ok(intervals)
}

/// `gust dags list-runs`: the runs the database records; an error for a DAG it does not know.
pub fn list_runs(dag_id: &str, limit: i64, output: Output) -> anyhow::Result<ExitCode> {
    let config = Config::load(&config::home()?)?;
    super::runtime()?.block_on(async {
        let store = open_store(&config).await?;
        let runs = store.runs_of_dag(dag_id, limit.clamp(1, 10_000)).await;
        let known = super::recorded::is_known(&store, dag_id).await;
        store.close().await;
        let runs = runs?;
        if runs.is_empty() && !known? {
            anyhow::bail!(
                "no DAG \"{dag_id}\" in the database; a running scheduler records the DAGs of its folder"
            );
        }
        print!("{}", render::runs(&runs, output)?);
        Ok(ExitCode::SUCCESS)
    })
}

/// `gust tasks states-for-dag-run`.
pub fn states_for_dag_run(dag_id: &str, run_id: &str, output: Output) -> anyhow::Result<ExitCode> {
    let config = Config::load(&config::home()?)?;
    super::runtime()?.block_on(async {
        let store = open_store(&config).await?;
        if store.run(dag_id, run_id).await?.is_none() {
            store.close().await;
            anyhow::bail!(
                "DAG {dag_id} has no run \"{run_id}\"; run `gust dags list-runs {dag_id}` to see its runs"
            );
        }
        let tis = store.task_instances(dag_id, run_id).await?;
        let tries = store.tries_of_run(dag_id, run_id).await?;
        store.close().await;
        print!("{}", render::task_states(&tis, &tries, output)?);
        Ok(ExitCode::SUCCESS)
    })
}

/// What `gust tasks clear` selects.
pub struct ClearArgs {
    /// The DAG.
    pub dag_id: String,
    /// `--dags-folder`: where to look for a DAG the database does not record.
    pub folder: DagsFolder,
    /// `-t`.
    pub task_regex: Option<String>,
    /// `--start-date`.
    pub start_date: Option<String>,
    /// `--end-date`.
    pub end_date: Option<String>,
    /// `--only-failed`.
    pub only_failed: bool,
    /// `--yes`.
    pub yes: bool,
}

/// `gust tasks clear`.
pub fn clear(args: ClearArgs, now: DateTime<Utc>) -> anyhow::Result<ExitCode> {
    let config = Config::load(&config::home()?)?;
    let regex = args
        .task_regex
        .as_deref()
        .map(regex::Regex::new)
        .transpose()
        .context("-t/--task-regex")?;
    let start = args
        .start_date
        .as_deref()
        .map(|d| parse_date(d, None, "--start-date"))
        .transpose()?;
    let end = args
        .end_date
        .as_deref()
        .map(|d| parse_date(d, None, "--end-date"))
        .transpose()?;
    super::runtime()?.block_on(async {
        let store = open_store(&config).await?;
        if !super::recorded::is_known(&store, &args.dag_id).await?
            && store.runs_of_dag(&args.dag_id, 1).await?.is_empty()
        {
            // Neither recorded nor run: a DAG of the folder has nothing to clear, and a DAG
            // that is nowhere is a mistake to report.
            let found = super::recorded::find(&store, &args.dag_id, &args.folder).await;
            store.close().await;
            found?;
            println!("nothing to clear");
            return Ok(ExitCode::SUCCESS);
        }
        let mut selected: Vec<(String, Vec<String>)> = Vec::new();
        for run in store.runs_of_dag(&args.dag_id, 100_000).await? {
            if start.is_some_and(|s| run.logical_date < s)
                || end.is_some_and(|e| run.logical_date > e)
            {
                continue;
            }
            let tasks: Vec<String> = store
                .task_instances(&args.dag_id, &run.run_id)
                .await?
                .into_iter()
                .filter(|ti| regex.as_ref().is_none_or(|r| r.is_match(&ti.task_id)))
                .filter(|ti| {
                    !args.only_failed
                        || matches!(
                            ti.state,
                            gust_core::state::TaskState::Failed
                                | gust_core::state::TaskState::UpstreamFailed
                        )
                })
                .map(|ti| ti.task_id)
                .collect();
            if !tasks.is_empty() {
                selected.push((run.run_id, tasks));
            }
        }
        let total: usize = selected.iter().map(|(_, t)| t.len()).sum();
        if total == 0 {
            store.close().await;
            println!("nothing to clear");
            return Ok(ExitCode::SUCCESS);
        }
        for (run_id, tasks) in &selected {
            println!("{run_id}: {}", tasks.join(", "));
        }
        if !args.yes && !confirm(&format!("clear these {total} task instances?"))? {
            store.close().await;
            println!("cancelled");
            return Ok(ExitCode::FAILURE);
        }
        let mut cleared = 0;
        for (run_id, tasks) in &selected {
            cleared += store
                .clear_task_instances(&args.dag_id, run_id, tasks, now)
                .await?;
        }
        store.close().await;
        println!("cleared {cleared} task instances of {}", args.dag_id);
        Ok(ExitCode::SUCCESS)
    })
}

fn confirm(question: &str) -> anyhow::Result<bool> {
    print!("{question} [y/N] ");
    std::io::stdout().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}
