//! `[logging] remote_logging`: the remote log store from the configuration, for the scheduler
//! (which uploads each try's log before recording its end) and the API server (which reads a
//! log from the store when its local file is gone). Both must be configured alike.

use std::sync::Arc;

use anyhow::Context;
use gust_artifacts::{Artifacts, StoreCredentials, TransferOptions};
use gust_core::clock::Clock;
use gust_executor::Executor;
use gust_remote_logs::{RemoteLogOptions, RemoteLogs};
use gust_store::Connection;

use crate::config::Config;

/// The remote log store `[logging]` configures, or `None` when remote logging is off. Its
/// credentials are the fields of `remote_log_conn_id` (default `[artifacts] conn_id`) when that
/// connection exists, else the `GUST_ARTIFACTS_*` variables and the standard environment, as
/// for artifacts. A setting that cannot work is an error naming it.
///
/// Read once, when the process starts: the relay and the API server hold the store's clients
/// for their lifetime, and a setting that cannot work must stop the process at start. Unlike
/// the connections tries use (`crate::connections_watch`), a change needs a restart.
pub fn from_config(
    config: &Config,
    connections: &[Connection],
    clock: Arc<dyn Clock>,
) -> anyhow::Result<Option<RemoteLogs>> {
    let logging = &config.logging;
    if !logging.remote_logging {
        return Ok(None);
    }
    let base = logging
        .remote_base_log_folder
        .as_deref()
        .map(str::trim)
        .filter(|b| !b.is_empty())
        .context(
            "[logging] remote_logging is on but remote_base_log_folder is not set; set it to a \
             URI such as s3://bucket/logs",
        )?;
    let conn_id = logging
        .remote_log_conn_id
        .as_deref()
        .unwrap_or(&config.artifacts.conn_id);
    let fields = crate::runtimes::local_secrets(connections).remove(conn_id);
    if fields.is_none() && logging.remote_log_conn_id.is_some() {
        anyhow::bail!(
            "[logging] remote_log_conn_id names the connection \"{conn_id}\", which does not \
             exist; add it with `gust connections add {conn_id} ...` or remove the setting"
        );
    }
    let credentials = fields.map_or_else(StoreCredentials::from_env, StoreCredentials::from_fields);
    // A try's end waits for its upload: fewer request retries than artifacts' default keep that
    // wait short when the store is down (the relay itself tries each upload 3 times).
    let artifacts = Artifacts::new(credentials).with_options(TransferOptions {
        request_retries: 3,
        ..TransferOptions::default()
    });
    artifacts
        .check_location(base)
        .map_err(|err| anyhow::anyhow!("[logging] remote_base_log_folder: {}", err.one_line()))?;
    let logs = RemoteLogs::new(
        Arc::new(artifacts),
        base,
        logging.base_log_folder.clone(),
        clock,
    )
    .with_options(RemoteLogOptions {
        delete_local_logs: logging.delete_local_logs,
        ..RemoteLogOptions::default()
    });
    Ok(Some(logs))
}

/// `runtimes` as the scheduler must see them: through the remote log store when there is one.
#[must_use]
pub fn executor(logs: Option<&RemoteLogs>, runtimes: Arc<dyn Executor>) -> Arc<dyn Executor> {
    match logs {
        Some(logs) => logs.executor(runtimes),
        None => runtimes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gust_core::clock::SystemClock;

    fn config(toml: &str) -> Config {
        use figment::providers::{Format, Serialized, Toml};
        let home = std::path::Path::new("/home/gust");
        figment::Figment::from(Serialized::defaults(Config::defaults(home)))
            .merge(Toml::string(toml))
            .extract()
            .unwrap()
    }

    fn error(toml: &str) -> String {
        match from_config(&config(toml), &[], Arc::new(SystemClock)) {
            Ok(_) => panic!("{toml} was accepted"),
            Err(err) => format!("{err:#}"),
        }
    }

    #[test]
    fn remote_logging_is_off_unless_asked_for() {
        let off = from_config(
            &config("[logging]\nremote_base_log_folder = \"s3://b/logs\"\n"),
            &[],
            Arc::new(SystemClock),
        )
        .unwrap();
        assert!(off.is_none());
    }

    #[test]
    fn bad_settings_are_one_line_naming_the_setting() {
        let missing = error("[logging]\nremote_logging = true\n");
        assert!(
            missing.contains("remote_base_log_folder is not set"),
            "{missing}"
        );
        let scheme =
            error("[logging]\nremote_logging = true\nremote_base_log_folder = \"http://x/logs\"\n");
        assert!(
            scheme.starts_with("[logging] remote_base_log_folder: \"http://x/logs\" is not"),
            "{scheme}"
        );
        let conn = error(
            "[logging]\nremote_logging = true\nremote_base_log_folder = \"s3://b/l\"\nremote_log_conn_id = \"nope\"\n",
        );
        assert!(conn.contains("\"nope\", which does not exist"), "{conn}");
        for text in [missing, scheme, conn] {
            assert!(!text.contains('\n'), "{text}");
        }
    }

    #[tokio::test]
    async fn a_file_uri_or_a_bucket_is_accepted() {
        for base in ["file:///srv/logs", "s3://bucket/logs", "/srv/logs"] {
            let toml = format!(
                "[logging]\nremote_logging = true\nremote_base_log_folder = \"{base}\"\ndelete_local_logs = true\n"
            );
            let logs = from_config(&config(&toml), &[], Arc::new(SystemClock))
                .unwrap()
                .unwrap();
            assert_eq!(logs.base_uri(), base);
        }
    }
}
