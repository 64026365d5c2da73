//! One module per command group; each turns parsed arguments into output and an exit code.

mod artifacts;
mod config;
mod conn_uri;
mod connections;
mod dag_problems;
mod dags;
mod db;
mod dry_run;
mod map_index;
mod pools;
mod python;
mod recorded;
mod runs;
mod serve;
mod test_run;
mod users;
mod variables;

pub(crate) use connections::secret_key;
pub use dags::relative;

use std::process::ExitCode;

use crate::cli::{Cli, Command};

/// Runs the parsed command.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    // Commands that run tasks or print runs, tries and rendered arguments mask what is stored.
    if matches!(cli.command, Command::Dags(_) | Command::Tasks(_)) {
        mask_stored_secrets();
    }
    match cli.command {
        Command::Dags(command) => dags::run(command),
        Command::Config(command) => config::run(command),
        Command::Db(command) => db::run(command),
        Command::Variables(command) => variables::run(command),
        Command::Pools(command) => pools::run(command),
        Command::Connections(command) => connections::run(command),
        Command::Tasks(command) => dags::run_tasks(command),
        Command::Kubernetes(crate::cli::KubernetesCommand::Rbac {
            namespace,
            service_account,
            folder,
        }) => {
            // Loaded first: it decides whether Python tasks load at all.
            let config = crate::config::Config::load(&crate::config::home()?)?;
            let (mut operators, reads) = dags::cluster_calls(&folder)?;
            // Python tasks call the cluster (their worker pods' Secrets) only as worker pods.
            if config.kubernetes.worker_image.is_none() {
                operators.retain(|op| !gust_operators::python::runs_in_task_sdk(op));
            }
            print!(
                "{}",
                gust_kube::rbac::manifests_with(&namespace, &service_account, &operators, &reads)?
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Users(command) => users::run(command),
        Command::Python(command) => python::run(command),
        Command::Artifacts(command) => artifacts::run(command),
        Command::Scheduler(args) => serve::scheduler(args),
        Command::ApiServer(args) => serve::api_server(args),
        Command::Standalone(args) => serve::standalone(args),
        Command::Version => {
            // The image build passes the commit it was built from (see the Dockerfile).
            match option_env!("GUST_GIT_VERSION").filter(|v| !v.is_empty()) {
                Some(git) => println!("gust {} (git {git})", env!("CARGO_PKG_VERSION")),
                None => println!("gust {}", env!("CARGO_PKG_VERSION")),
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Reads the stored secrets into the process's masker (`crate::secrets`), if the configuration
/// loads (a command that needs it then reports why it does not).
fn mask_stored_secrets() {
    let Ok(home) = crate::config::home() else {
        return;
    };
    let Ok(config) = crate::config::Config::load(&home) else {
        return;
    };
    if let Ok(runtime) = runtime() {
        runtime.block_on(crate::secrets::load_once(&config, &home));
    }
}

/// The async runtime commands that talk to the database or run tasks use.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    use anyhow::Context;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}
