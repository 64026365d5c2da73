//! `gust scheduler` and `gust standalone`: the long-running processes.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use gust_core::clock::{Clock, SystemClock};
use gust_scheduler::dag_watch::{WatchConfig, watch_folder};
use gust_scheduler::scheduler::{Scheduler, SchedulerConfig};
use gust_scheduler::template_values::TemplateValues;
use gust_store::Store;
use tokio_util::sync::CancellationToken;

use crate::cli::{ApiServerArgs, Listen, ServeArgs, StandaloneArgs};
use crate::config::{self, Config, LogFormat, PodRuntime};
use crate::connections_watch::ConnectionsReader;
use crate::runtimes::Runtimes;

/// Which process to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The scheduler alone, on a migrated database.
    Scheduler,
    /// Everything on this machine: creates GUST_HOME's folders and migrates first.
    Standalone,
}

/// `gust scheduler`.
pub fn scheduler(args: ServeArgs) -> anyhow::Result<ExitCode> {
    serve(Mode::Scheduler, args, None)
}

/// `gust standalone`: the scheduler with the API server in the same process.
pub fn standalone(args: StandaloneArgs) -> anyhow::Result<ExitCode> {
    serve(Mode::Standalone, args.serve, Some(args.listen))
}

/// `gust api-server`: the REST API and the web UI on a migrated database, until Ctrl-C.
pub fn api_server(args: ApiServerArgs) -> anyhow::Result<ExitCode> {
    let home = config::home()?;
    let config = Config::load(&home)?;
    init_logging(config.logging.format);
    let settings = server_settings(&config, &home)?;
    super::runtime()?.block_on(async {
        let store = Store::connect(&config.database.url).await?;
        store
            .check()
            .await
            .context("the metadata database is not ready; run `gust db migrate`")?;
        encrypt_plain_variables(&store, &config, &home).await?;
        let stop = CancellationToken::new();
        let secrets_watch = watch_secrets(&config, &home, &store, &stop).await;
        let connections = crate::runtimes::connections(&config, &home).await;
        let remote_logs =
            crate::remote_logs::from_config(&config, &connections, Arc::new(SystemClock))?;
        let mut state =
            gust_server::AppState::new(store.clone(), Arc::new(SystemClock), settings, None);
        if let Some(logs) = remote_logs {
            state = state.with_remote_logs(logs);
        }
        let (server, address) =
            start_server(&config, &args.listen, state, None, stop.clone()).await?;
        println!("gust {} (API server)", env!("CARGO_PKG_VERSION"));
        println!("  web UI and REST API: {address}");
        println!(
            "  database:            {}",
            gust_store::redact(&config.database.url)
        );
        println!("Ctrl-C stops.");
        let signals = tokio::spawn(stop_on_signals(stop.clone()));
        let result = server.await;
        signals.abort();
        stop.cancel();
        let _ = secrets_watch.await;
        store.close().await;
        result.context("the API server stopped")??;
        Ok(ExitCode::SUCCESS)
    })
}

/// Configures the masker, puts the stored secrets in force before anything runs or answers,
/// and follows them until `stop` (see [`crate::secrets`]).
async fn watch_secrets(
    config: &Config,
    home: &std::path::Path,
    store: &Store,
    stop: &CancellationToken,
) -> tokio::task::JoinHandle<()> {
    crate::secrets::configure(config);
    let mut reader = crate::secrets::SecretsReader::new(store.clone(), config, home.to_owned());
    if let Err(err) = reader.load().await {
        eprintln!("warning: stored secrets are not masked yet: {err:#}");
    }
    tokio::spawn(crate::secrets::follow(
        reader,
        crate::secrets::POLL,
        stop.clone(),
    ))
}

/// Encrypts the variables an earlier Gust stored as plain text, at every start of a scheduler or
/// API server: `gust db migrate` cannot, as it may run without the Fernet key (the Helm chart's
/// init container). Idempotent and safe to interrupt (`Store::encrypt_plain_variables`); until
/// it has run, plain rows are still read as they are.
async fn encrypt_plain_variables(
    store: &Store,
    config: &Config,
    home: &std::path::Path,
) -> anyhow::Result<()> {
    if store.variable_keys().await?.is_empty() {
        return Ok(());
    }
    let key = super::secret_key(config, home)?;
    let sealed = store.encrypt_plain_variables(&key).await?;
    if sealed > 0 {
        tracing::info!("encrypted {sealed} variable(s) an earlier Gust stored as plain text");
    }
    Ok(())
}

/// The server's settings from the configuration.
fn server_settings(
    config: &Config,
    home: &std::path::Path,
) -> anyhow::Result<gust_server::ServerSettings> {
    Ok(gust_server::ServerSettings {
        secret: api_secret(config, home)?.into_bytes(),
        token_ttl: config.api.token_ttl,
        logs_root: config.logging.base_log_folder.clone(),
        fernet_key: Some(super::secret_key(config, home)?),
        pod_defaults: gust_kube::build::PodDefaults {
            namespace: config.kubernetes.namespace.clone(),
            xcom_sidecar_image: config.kubernetes.xcom_sidecar_image.clone(),
            ..gust_kube::build::PodDefaults::default()
        },
        run_id_pattern: config.scheduler.run_id_pattern()?,
    })
}

/// The configured token secret, else the one in `$GUST_HOME/api_secret.key`, made on first use.
fn api_secret(config: &Config, home: &std::path::Path) -> anyhow::Result<String> {
    if let Some(secret) = &config.api.secret_key {
        if secret.len() < 16 {
            anyhow::bail!("[api] secret_key is too short: use at least 16 random characters");
        }
        return Ok(secret.clone());
    }
    let path = home.join("api_secret.key");
    if !path.exists() {
        super::connections::create_private_dir(home)
            .with_context(|| format!("cannot create {}", home.display()))?;
        let secret = gust_server::auth::password::random_password()
            + &gust_server::auth::password::random_password();
        super::connections::write_private(&path, &secret)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    let secret = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    Ok(secret.trim().to_owned())
}

/// Binds the server's address and serves until `stop`, with the Execution API of this
/// process's Python tasks under `/execution` when there is one; answers the task and the URL to
/// show.
async fn start_server(
    config: &Config,
    listen: &Listen,
    state: gust_server::AppState,
    execution: Option<gust_server::execution::ExecutionState>,
    stop: CancellationToken,
) -> anyhow::Result<(tokio::task::JoinHandle<std::io::Result<()>>, String)> {
    let host = listen
        .host
        .clone()
        .unwrap_or_else(|| config.api.host.clone());
    let port = listen.port.unwrap_or(config.api.port);
    let listener = tokio::net::TcpListener::bind((host.as_str(), port))
        .await
        .with_context(|| {
            format!("cannot listen on {host}:{port}; pass --port PORT or set [api] port")
        })?;
    let bound = listener
        .local_addr()
        .context("the listening socket has no address")?;
    let shown = if host == "0.0.0.0" {
        "localhost".to_owned()
    } else {
        host
    };
    let security = gust_server::SecuritySettings {
        throttle: gust_server::auth::throttle::ThrottleSettings {
            per_user: config.api.auth_rate_limit_per_user,
            per_address: config.api.auth_rate_limit_per_address,
        },
        proxy_fix: config.api.enable_proxy_fix,
    };
    let mut state = state.with_security(security);
    if config
        .core
        .test_connection
        .trim()
        .eq_ignore_ascii_case("enabled")
    {
        state = state.with_connection_test();
    }
    if config.api.expose_config {
        state = state.with_exposed_config(config.exposed()?);
    }
    let mut app = gust_server::router(state);
    if let Some(execution) = execution {
        app = app.merge(gust_server::execution::nested(execution));
    }
    let server = tokio::spawn(gust_server::serve(listener, app, stop));
    Ok((server, format!("http://{shown}:{}", bound.port())))
}

/// Serves the scheduler's `/health` and `/metrics` on `[scheduler]
/// scheduler_health_check_server_host:port` until `stop`; answers the task and the URL to show.
async fn start_health_server(
    config: &Config,
    health: gust_server::metrics::SchedulerHealth,
    stop: CancellationToken,
) -> anyhow::Result<(tokio::task::JoinHandle<std::io::Result<()>>, String)> {
    let section = &config.scheduler;
    let host = section.scheduler_health_check_server_host.clone();
    let port = section.scheduler_health_check_server_port;
    let listener = tokio::net::TcpListener::bind((host.as_str(), port))
        .await
        .with_context(|| {
            format!(
                "cannot listen on {host}:{port} for the scheduler's health checks; set [scheduler] \
                 scheduler_health_check_server_port, or enable_health_check = false"
            )
        })?;
    let bound = listener
        .local_addr()
        .context("the listening socket has no address")?;
    let shown = if host == "0.0.0.0" {
        "localhost".to_owned()
    } else {
        host
    };
    let app = gust_server::metrics::scheduler_router(health);
    let server = tokio::spawn(gust_server::serve(listener, app, stop));
    Ok((server, format!("http://{shown}:{}", bound.port())))
}

/// Runs the scheduler until Ctrl-C (or SIGTERM): then no new try starts and the running ones
/// are waited for; a second signal exits at once, leaving them to be adopted on restart. With
/// `listen`, the API server runs in the same process, waking the scheduler on every change.
fn serve(mode: Mode, args: ServeArgs, listen: Option<Listen>) -> anyhow::Result<ExitCode> {
    let home = config::home()?;
    let config = Config::load(&home)?;
    let dags_folder = args
        .folder
        .dags_folder
        .clone()
        .unwrap_or_else(|| config.core.dags_folder.clone());
    init_logging(config.logging.format);
    if mode == Mode::Standalone {
        // GUST_HOME (keys, database) and the logs are the owner's alone; DAG files are not secret.
        for dir in [&home, &config.logging.base_log_folder] {
            super::connections::create_private_dir(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        std::fs::create_dir_all(&config.core.dags_folder)
            .with_context(|| format!("cannot create {}", config.core.dags_folder.display()))?;
    }
    if !dags_folder.is_dir() {
        anyhow::bail!(
            "the DAGs folder {} does not exist; create it or pass --dags-folder DIR",
            dags_folder.display()
        );
    }
    // Held until the scheduler has stopped: on SQLite, a second scheduler is refused.
    let _scheduler_lock = crate::scheduler_lock::acquire(&config.database.url)?;
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
        encrypt_plain_variables(&store, &config, &home).await?;
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let stop = CancellationToken::new();
        let secrets_watch = watch_secrets(&config, &home, &store, &stop).await;
        let watch = WatchConfig {
            python: crate::python_dags::PythonDags::from_config(
                &config,
                &home.join("run").join("python"),
            )
            .map(|p| p as Arc<dyn gust_dagfile::PythonParser>),
            schedules: config.scheduler.schedule_defaults(),
            ..WatchConfig::default()
        };
        let (bags, watcher) =
            watch_folder(dags_folder.clone(), watch, clock.clone(), stop.clone()).await;
        let (tx, events) = gust_executor::event_channel();
        let mut connections_reader = ConnectionsReader::new(store.clone(), &config, home.clone());
        let connections = connections_reader.read().await.unwrap_or_else(|err| {
            eprintln!("warning: connections are not used: {err:#}");
            Vec::new()
        });
        // With remote logs, the runtimes report through the relay that uploads each log first.
        let remote_logs = crate::remote_logs::from_config(&config, &connections, clock.clone())?;
        let relay = remote_logs.as_ref().map(|logs| logs.relay(tx.clone()));
        let tx = relay.as_ref().map_or(tx, gust_remote_logs::Relay::sender);
        let python = crate::python_tasks::start(
            &config,
            Some(home.join("run").join("python")),
            match &config.python.interpreter {
                Some(_) => Some((store.clone(), super::secret_key(&config, &home)?)),
                None => None,
            },
            clock.clone(),
        )
        .await?;
        let runtimes = Runtimes::new(
            &config,
            Some(home.join("run").join("tries")),
            false,
            &connections,
            tx,
            clock.clone(),
            python.as_ref().map(|p| p.runtime.clone()),
            Some(store.clone()),
        );
        // Connections added, changed or deleted while this runs reach the tries that start after.
        let connections_watch = tokio::spawn(crate::connections_watch::follow(
            connections_reader,
            connections.clone(),
            crate::connections_watch::POLL,
            stop.clone(),
            {
                let users = runtimes.connection_users();
                move |connections: &[gust_store::Connection]| users.update(connections)
            },
        ));
        let mut scheduler_config = SchedulerConfig::new(config.logging.base_log_folder.clone());
        scheduler_config.parallelism = config.core.parallelism;
        scheduler_config.max_map_length = config.core.max_map_length;
        scheduler_config.paused_by_default = config.core.dags_are_paused_at_creation;
        scheduler_config.claim_ttl = config.scheduler.scheduler_health_check_threshold;
        // On SQLite the file lock above makes this the only scheduler.
        scheduler_config.exclusive = store.kind() == gust_store::EngineKind::Sqlite;
        scheduler_config.template_values =
            Some(Arc::new(TemplateValues::from_store(store.clone(), {
                let (config, home) = (config.clone(), home.clone());
                Arc::new(move || super::secret_key(&config, &home).ok())
            })));
        // Notifiers and alert emails are sent natively; Python callbacks of natively run tasks
        // and of DAGs run in the tasks' Python environment.
        let python_callbacks = python.as_ref().map(|p| {
            Arc::new(gust_exec_local::PythonCallbacks::new(
                p.runtime.interpreter.clone(),
                p.runtime.work_dir.clone(),
                p.runtime.clock.clone(),
            )) as Arc<dyn gust_executor::callbacks::CallbackRunner>
        });
        scheduler_config.callbacks = Some(Arc::new(crate::notifications::runner(
            &config,
            clock.clone(),
            Some(store.clone()),
            python_callbacks,
        )?));
        scheduler_config.worker_free_operators = gust_operators::OPERATORS
            .iter()
            .filter(|spec| !spec.holds_worker)
            .map(|spec| spec.name.to_owned())
            .collect();
        let health = gust_server::metrics::SchedulerHealth {
            store: store.clone(),
            clock: clock.clone(),
            metrics: scheduler_config.metrics.clone(),
            threshold: config.scheduler.scheduler_health_check_threshold,
        };
        let mut scheduler = Scheduler::new(
            store.clone(),
            crate::remote_logs::executor(remote_logs.as_ref(), runtimes.executor.clone()),
            events,
            bags.clone(),
            clock,
            scheduler_config,
        );
        // Triggers of deferred tasks that the scheduler does not run natively run in one Python
        // process, started on first need and ended with the scheduler.
        let triggerer_stop = CancellationToken::new();
        if let Some(p) = &python {
            let (fired_tx, fired) = gust_executor::deferral::trigger_channel();
            let runner = gust_exec_local::PythonTriggerer::new(
                p.runtime.interpreter.clone(),
                p.runtime.work_dir.clone(),
                fired_tx,
                triggerer_stop.clone(),
            );
            scheduler = scheduler.with_triggerer(Arc::new(runner), fired);
        }
        let server = match &listen {
            Some(listen) => {
                let settings = server_settings(&config, &home)?;
                let mut state = gust_server::AppState::new(
                    store.clone(),
                    Arc::new(SystemClock),
                    settings,
                    Some(scheduler.waker()),
                );
                if let Some(logs) = remote_logs.clone() {
                    state = state.with_remote_logs(logs);
                }
                state = state.with_scheduler(health.clone());
                let execution = python.as_ref().map(|p| p.execution.clone());
                Some(start_server(&config, listen, state, execution, stop.clone()).await?)
            }
            None => None,
        };
        // The scheduler's own /health and /metrics, when no API server shares the process; it
        // answers until the scheduler has stopped, drain included.
        let health_stop = CancellationToken::new();
        let health_server = match (&server, config.scheduler.enable_health_check) {
            (None, true) => match start_health_server(&config, health, health_stop.clone()).await {
                Ok(served) => Some(served),
                Err(err) => {
                    // The port may be another scheduler's on this host: the scheduler runs on
                    // (on Kubernetes its HTTP probes then fail, which says why).
                    tracing::warn!("{err:#}; /health and /metrics are not served");
                    None
                }
            },
            _ => None,
        };
        let first_admin = if mode == Mode::Standalone {
            super::users::ensure_first_admin(&store, &home).await?
        } else {
            None
        };
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
        if let Some(logs) = &remote_logs {
            println!("  remote logs: {}", logs.base_uri());
        }
        println!("  parallelism: {}", config.core.parallelism);
        println!("  pods:        {}", pod_runtime(&config));
        if let Some(python) = &python {
            println!(
                "  python:      {} (Execution API at {})",
                python.runtime.interpreter.display(),
                python.runtime.api_url
            );
        }
        if let Some((_, address)) = &server {
            println!("  web UI, API: {address}");
        }
        match &health_server {
            Some((_, address)) => println!("  health:      {address}/health ({address}/metrics)"),
            None if server.is_none() && config.scheduler.enable_health_check => {
                println!("  health:      not served (see the warning above)");
            }
            None => {}
        }
        if let Some(password) = first_admin {
            println!(
                "Login with username: admin  password: {password}\n  (shown once; also in {})",
                home.join("standalone_admin_password.txt").display()
            );
        }
        println!("Trigger a run with `gust dags trigger DAG_ID`; Ctrl-C stops.");
        // After the banner, so a broken file's line is read as news, not start-up noise.
        let problems = tokio::spawn(super::dag_problems::follow(
            bags.clone(),
            store.clone(),
            stop.clone(),
        ));
        let signals = tokio::spawn(stop_on_signals(stop.clone()));
        let result = scheduler.run(stop.clone()).await;
        triggerer_stop.cancel();
        health_stop.cancel();
        if let Some((health_server, _)) = health_server {
            let _ = health_server.await;
        }
        stop.cancel();
        if let Some((server, _)) = server {
            let _ = server.await;
        }
        signals.abort();
        let _ = problems.await;
        let _ = watcher.await;
        let _ = connections_watch.await;
        let _ = secrets_watch.await;
        runtimes.shutdown().await;
        if let Some(python) = python {
            python.stop().await;
        }
        if let Some(relay) = relay {
            relay.stop().await;
        }
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

/// Logs to stderr, `info` and up unless `RUST_LOG` says otherwise, as text or JSON lines.
fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logger = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => logger.json().try_init(),
        LogFormat::Text => logger
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
    };
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_start_encrypts_variables_an_earlier_gust_stored_plain() {
        let db = gust_store::testing::TestDb::sqlite().await;
        let home = tempfile::tempdir().expect("home");
        let config = Config::defaults(home.path());
        encrypt_plain_variables(&db.store, &config, home.path())
            .await
            .expect("nothing to do");
        assert!(
            !home.path().join("fernet.key").exists(),
            "no key is made for an empty table"
        );
        db.store
            .put_plain_variable("db_url", "postgres://u:hunter2@db/app")
            .await
            .expect("plain");
        encrypt_plain_variables(&db.store, &config, home.path())
            .await
            .expect("encrypts");
        let stored = db.store.raw_variable_value("db_url").await.expect("raw");
        assert!(!stored.expect("row").contains("hunter2"));
        let key = super::super::secret_key(&config, home.path()).expect("key");
        assert_eq!(
            db.store
                .variable("db_url", &key)
                .await
                .expect("read")
                .as_deref(),
            Some("postgres://u:hunter2@db/app")
        );
        db.finish().await;
    }
}
