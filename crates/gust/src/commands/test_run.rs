//! `gust dags test`: one run of a DAG in this process, with the local runtime.

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use chrono::{DateTime, Utc};
use gust_core::clock::{Clock, SystemClock};
use gust_core::ids::RunId;
use gust_core::schedule::DataInterval;
use gust_core::state::DagRunState;
use gust_scheduler::template_values::template_connection;
use gust_scheduler::test_run::{RunReport, StateChange, TestRunSpec, run_with_progress};
use gust_store::Store;

use crate::config::Config;
use crate::render;
use crate::runtimes::Runtimes;

/// What `gust dags test` was asked.
pub struct TestArgs {
    /// The DAG.
    pub dag: gust_core::dag::Dag,
    /// `--conf`, unparsed.
    pub conf: Option<String>,
    /// `--logical-date`, unparsed.
    pub logical_date: Option<String>,
    /// `--local-pods`: run pod tasks with the local pod runtime.
    pub local_pods: bool,
}

/// Runs the DAG once and prints the report.
pub fn run_test(args: TestArgs, config: &Config) -> anyhow::Result<ExitCode> {
    let clock = Arc::new(SystemClock);
    let conf = super::runs::parse_conf(args.conf.as_deref())?;
    let logical_date: DateTime<Utc> = match &args.logical_date {
        None => clock.now(),
        Some(text) => gust_core::date::parse_datetime(text, args.dag.settings.timezone)
            .context("--logical-date")?,
    };
    // Named as Airflow 3.3 names a manual run: after the time it was triggered, not its logical
    // date, so two test runs of the same date keep their logs apart.
    let run_id = RunId::new(gust_scheduler::trigger::manual_run_id(clock.now()))?;
    let home = crate::config::home()?;
    let runtime = super::runtime()?;
    let report: RunReport = runtime.block_on(async {
        let variables = variables_if_any(config, &home).await;
        let python = crate::python_tasks::start(config, None, None, clock.clone()).await?;
        // Callbacks of natively run tasks and of the DAG run in the Python tasks' environment.
        let python_callbacks = python.as_ref().map(|p| {
            Arc::new(gust_exec_local::PythonCallbacks::new(
                p.runtime.interpreter.clone(),
                p.runtime.work_dir.clone(),
                p.runtime.clock.clone(),
            ))
        });
        // Notifiers and alert emails are sent natively (recorded nowhere: a test run has no
        // database of its own).
        let callbacks = Arc::new(crate::notifications::runner(
            config,
            clock.clone(),
            None,
            python_callbacks
                .clone()
                .map(|c| c as Arc<dyn gust_executor::callbacks::CallbackRunner>),
        )?);
        // Triggers of deferred tasks that Gust does not run natively run in one Python process.
        let triggerer_stop = tokio_util::sync::CancellationToken::new();
        let triggerer = python.as_ref().map(|p| {
            let (fired_tx, fired) = gust_executor::deferral::trigger_channel();
            gust_scheduler::test_run::TestTriggerer {
                runner: Arc::new(gust_exec_local::PythonTriggerer::new(
                    p.runtime.interpreter.clone(),
                    p.runtime.work_dir.clone(),
                    fired_tx,
                    triggerer_stop.clone(),
                )),
                fired: Arc::new(tokio::sync::Mutex::new(fired)),
            }
        });
        let spec = TestRunSpec {
            run_id: run_id.clone(),
            // A manual run covers its logical date alone, as Airflow's manual runs of unscheduled DAGs.
            interval: DataInterval {
                start: logical_date,
                end: logical_date,
            },
            conf,
            logs_root: config.logging.base_log_folder.clone(),
            variables,
            connections: (crate::runtimes::connections(config, &home)
                .await
                .into_iter())
            .map(|c| (c.conn_id.clone(), template_connection(c)))
            .collect(),
            callbacks: Some(callbacks.clone() as Arc<dyn gust_executor::callbacks::CallbackRunner>),
            max_map_length: config.core.max_map_length,
            triggerer,
        };
        let (tx, mut events) = gust_executor::event_channel();
        let connections = crate::runtimes::connections(config, &home).await;
        let runtimes = Runtimes::new(
            config,
            None,
            args.local_pods,
            &connections,
            tx,
            clock.clone(),
            python.as_ref().map(|p| p.runtime.clone()),
            existing_store(config).await,
        );
        // One line per move as it happens, so a run waiting on a retry delay does not look hung.
        let mut progress =
            |change: StateChange| println!("{}", progress_line(clock.now(), &change));
        let report = run_with_progress(
            &args.dag,
            &spec,
            runtimes.executor.as_ref(),
            &mut events,
            &mut progress,
        )
        .await;
        triggerer_stop.cancel();
        runtimes.shutdown().await;
        // The run ends once its callbacks have.
        callbacks.wait().await;
        if let Some(python_callbacks) = python_callbacks {
            python_callbacks.wait().await;
        }
        if let Some(python) = python {
            python.stop().await;
        }
        anyhow::Ok(report)
    })?;
    print!("{}", render::run_report(&report));
    println!(
        "run {run_id} of {}: {}; logs in {}",
        args.dag.id,
        report.state,
        config
            .logging
            .base_log_folder
            .join(format!("dag_id={}", args.dag.id))
            .display()
    );
    if let Some(why) = &report.stopped {
        println!("stopped: {why}");
    }
    Ok(if report.state == DagRunState::Success {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `2024-03-05T10:00:01Z t1: running (try 1)`, with the failure's first line when it failed.
fn progress_line(now: DateTime<Utc>, change: &StateChange) -> String {
    let stamp = now.format("%Y-%m-%dT%H:%M:%SZ");
    let mut line = format!("{stamp} {}: {}", change.instance, change.state);
    if change.try_number > 0 {
        line.push_str(&format!(" (try {})", change.try_number));
    }
    if let Some(why) = change.failure.as_deref().and_then(|f| f.lines().next()) {
        line.push_str(": ");
        line.push_str(why);
    }
    line
}

/// The metadata database when there is one, for what tasks read from it (a native
/// `ExternalTaskSensor`); a one-off run works without it.
async fn existing_store(config: &Config) -> Option<Store> {
    let url = &config.database.url;
    // Do not create an empty SQLite database just by looking for one.
    if url
        .strip_prefix("sqlite://")
        .is_some_and(|path| !std::path::Path::new(path).exists())
    {
        return None;
    }
    let store = Store::connect(url).await.ok()?;
    store.check().await.ok()?;
    Some(store)
}

/// The variables in the metadata database, when there is one; a test run works without it.
/// Their values are decrypted with the Fernet key (asked for only when there are some); one
/// that does not decrypt is left out, with a warning.
pub async fn variables_if_any(config: &Config, home: &std::path::Path) -> HashMap<String, String> {
    let Some(store) = existing_store(config).await else {
        return HashMap::new();
    };
    let mut variables = HashMap::new();
    let keys = store.variable_keys().await.unwrap_or_default();
    if !keys.is_empty() {
        match super::secret_key(config, home) {
            Ok(fernet) => {
                for key in keys {
                    match store.variable(&key, &fernet).await {
                        Ok(Some(value)) => {
                            variables.insert(key, value);
                        }
                        Ok(None) => {}
                        Err(err) => eprintln!("warning: variable \"{key}\" is left out: {err}"),
                    }
                }
            }
            Err(err) => eprintln!("warning: the stored variables are left out: {err:#}"),
        }
    }
    store.close().await;
    variables
}
