//! `gust scheduler` and `gust standalone`: the long-running processes.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use gust_core::clock::{Clock, SystemClock};
use gust_scheduler::dag_watch::{WatchConfig, watch_folder};
use gust_scheduler::scheduler::{Scheduler, SchedulerConfig};
use gust_store::Store;
use tokio_util::sync::CancellationToken;

use crate::cli::ServeArgs;
use crate::config::{self, Config, PodRuntime};
use crate::runtimes::Runtimes;

/// Which process to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The scheduler alone, on a migrated database.
    Scheduler,
    /// Everything on this machine: creates GUST_HOME's folders and migrates first.
    Standalone,
}

/// Runs the scheduler until Ctrl-C (or SIGTERM): then no new try starts and the running ones
/// are waited for; a second signal exits at once, leaving them to be adopted on restart.
pub fn serve(mode: Mode, args: ServeArgs) -> anyhow::Result<ExitCode> {
    let home = config::home()?;
    let config = Config::load(&home)?;
    let dags_folder = args
        .folder
        .dags_folder
        .clone()
        .unwrap_or_else(|| config.core.dags_folder.clone());
    init_logging();
    if mode == Mode::Standalone {
        for dir in [
            &home,
            &config.core.dags_folder,
            &config.logging.base_log_folder,
        ] {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
    }
    if !dags_folder.is_dir() {
        anyhow::bail!(
            "the DAGs folder {} does not exist; create it or pass --dags-folder DIR",
            dags_folder.display()
        );
    }
    let runtime = super::runtime()?;
    runtime.block_on(async {
        let store = Store::connect(&config.database.url).await?;
        if mode == Mode::Standalone {
            store.migrate().await?;
        }
        store
            .check()
            .await
            .context("the metadata database is not ready; run `gust db migrate`")?;
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let stop = CancellationToken::new();
        let (bags, watcher) = watch_folder(
            dags_folder.clone(),
            WatchConfig::default(),
            clock.clone(),
            stop.clone(),
        )
        .await;
        let (tx, events) = gust_executor::event_channel();
        let connections = crate::runtimes::connections(&config, &home).await;
        let runtimes = Runtimes::new(
            &config,
            Some(home.join("run").join("tries")),
            false,
            &connections,
            tx,
            clock.clone(),
        );
        let mut scheduler_config = SchedulerConfig::new(config.logging.base_log_folder.clone());
        scheduler_config.parallelism = config.core.parallelism;
        scheduler_config.paused_by_default = config.core.dags_are_paused_at_creation;
        scheduler_config.worker_free_operators = gust_operators::OPERATORS
            .iter()
            .filter(|spec| !spec.holds_worker)
            .map(|spec| spec.name.to_owned())
            .collect();
        let scheduler = Scheduler::new(
            store.clone(),
            runtimes.executor.clone(),
            events,
            bags.clone(),
            clock,
            scheduler_config,
        );
        let dag_count = bags.borrow().dags().count();
        println!("gust {} ({mode:?})", env!("CARGO_PKG_VERSION"));
        println!(
            "  DAGs folder: {} ({dag_count} DAGs)",
            dags_folder.display()
        );
        println!(
            "  database:    {}",
            gust_store::redact(&config.database.url)
        );
        println!(
            "  logs:        {}",
            config.logging.base_log_folder.display()
        );
        println!("  parallelism: {}", config.core.parallelism);
        println!("  pods:        {}", pod_runtime(&config));
        println!("Trigger a run with `gust dags trigger DAG_ID`; Ctrl-C stops.");
        let signals = tokio::spawn(stop_on_signals(stop.clone()));
        let result = scheduler.run(stop.clone()).await;
        stop.cancel();
        signals.abort();
        let _ = watcher.await;
        runtimes.shutdown().await;
        store.close().await;
        result?;
        Ok(ExitCode::SUCCESS)
    })
}

/// Cancels `stop` on the first Ctrl-C or SIGTERM; exits the process on the second.
async fn stop_on_signals(stop: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        return;
    };
    for round in 0..2 {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        if round == 0 {
            eprintln!(
                "stopping: no new tries start; waiting for running ones (signal again to exit now)"
            );
            stop.cancel();
        } else {
            eprintln!("exiting now; running tries are adopted when the scheduler restarts");
            std::process::exit(130);
        }
    }
}

/// Logs to stderr, `info` and up unless `RUST_LOG` says otherwise.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// Where pod tasks run, for the start-up banner.
fn pod_runtime(config: &Config) -> String {
    let k = &config.kubernetes;
    match k.runtime {
        PodRuntime::Local => {
            "local pod runtime (the pods' commands run as processes here)".to_owned()
        }
        PodRuntime::Cluster => match (&k.config_file, &k.cluster_context, k.in_cluster) {
            (_, _, Some(true)) => "this cluster (in-cluster service account)".to_owned(),
            (Some(file), context, _) => format!(
                "cluster from {}{}",
                file.display(),
                context
                    .as_deref()
                    .map(|c| format!(" (context {c})"))
                    .unwrap_or_default()
            ),
            (None, Some(context), _) => format!("kubeconfig context {context}"),
            (None, None, _) => {
                "the cluster of KUBECONFIG or ~/.kube/config, else in-cluster".to_owned()
            }
        },
    }
}
