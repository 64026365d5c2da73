//! Feeding the process's secrets masker (`gust_secrets`): its settings from the configuration
//! ([`configure`]), and the secrets the metadata database holds ([`stored_secrets`]): every
//! connection's password and sensitive `extra` values, every variable under a sensitive key.
//! Long-running processes read them again every [`POLL`] ([`follow`]), so a secret added with
//! `gust variables set` or the API is masked from then on; one-off commands read them once
//! ([`load_once`]).
//!
//! It never prints a secret: a failed read says what failed, not what was read.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use gust_secrets::SensitiveNames;
use gust_store::{Connection, Store};
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::connections_watch::ConnectionsReader;

/// How often the stored secrets are read again: as often as connections are.
pub const POLL: Duration = crate::connections_watch::POLL;

/// Puts `[core] sensitive_var_conn_names`, `[core] hide_sensitive_var_conn_fields` and
/// `[logging] min_length_masked_secret` in force.
pub fn configure(config: &Config) {
    gust_secrets::configure(
        SensitiveNames::with_extra(&config.core.sensitive_var_conn_names)
            .hiding(config.core.hide_sensitive_var_conn_fields),
        config.logging.min_length_masked_secret,
    );
}

/// The secrets in `connections` and `variables`, sorted, each once: a connection's password
/// (always, as Airflow masks it), its `extra` whole and every value under a sensitive key in it;
/// a variable's value when its key is sensitive, and the values under sensitive keys of a
/// variable that holds a JSON object.
#[must_use]
pub fn stored_secrets(
    connections: &[Connection],
    variables: &HashMap<String, String>,
    names: &SensitiveNames,
) -> Vec<String> {
    let mut found = Vec::new();
    for conn in connections {
        if let Some(password) = &conn.password {
            found.push(password.expose().to_owned());
        }
        if let Some(extra) = &conn.extra {
            found.push(extra.expose().to_owned());
            if let Ok(json) = serde_json::from_str(extra.expose()) {
                found.extend(names.secrets_in(&json, None));
            }
        }
    }
    for (key, value) in variables {
        if names.is_sensitive(key) {
            found.push(value.clone());
        }
        if let Ok(json) = serde_json::from_str(value) {
            found.extend(names.secrets_in(&json, Some(key)));
        }
    }
    found.sort();
    found.dedup();
    found
}

/// Reads the stored secrets from a metadata database.
pub struct SecretsReader {
    store: Store,
    connections: ConnectionsReader,
}

impl SecretsReader {
    /// A reader of `store`'s secrets, connections decrypted with the key `config` and `home` name.
    #[must_use]
    pub fn new(store: Store, config: &Config, home: PathBuf) -> Self {
        Self {
            connections: ConnectionsReader::new(store.clone(), config, home),
            store,
        }
    }

    /// The stored secrets now.
    pub async fn read(&mut self) -> anyhow::Result<Vec<String>> {
        let connections = self.connections.read().await?;
        let variables = if self.store.variable_keys().await?.is_empty() {
            HashMap::new()
        } else {
            let key = self.connections.key()?;
            self.store.all_variables(&key).await?
        };
        Ok(stored_secrets(
            &connections,
            &variables,
            gust_secrets::current().names(),
        ))
    }

    /// Reads the stored secrets and puts them in force; says why when it cannot.
    pub async fn load(&mut self) -> anyhow::Result<()> {
        gust_secrets::set_stored(self.read().await?);
        Ok(())
    }
}

/// Re-reads the stored secrets every `every` until `stop`. A failed read is logged (once until
/// it changes) and the secrets read before stay in force.
pub async fn follow(mut reader: SecretsReader, every: Duration, stop: CancellationToken) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last_error = None;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticks.tick() => {}
        }
        match reader.load().await {
            Ok(()) => last_error = None,
            Err(err) => {
                let text = format!("{err:#}");
                if last_error.as_ref() != Some(&text) {
                    tracing::warn!(
                        "cannot read the secrets to mask, the ones read before stay masked: {text}"
                    );
                    last_error = Some(text);
                }
            }
        }
    }
}

/// For one-off commands (`dags test`, `tasks test`, `tasks dry-run`, listings): configures the
/// masker and reads the stored secrets once, when there is a database. Without one there is
/// nothing stored to mask; a database that cannot be read is a warning.
pub async fn load_once(config: &Config, home: &Path) {
    configure(config);
    let url = &config.database.url;
    // Do not create an empty SQLite database just by looking for one.
    if url
        .strip_prefix("sqlite://")
        .is_some_and(|path| !Path::new(path).exists())
    {
        return;
    }
    let Ok(store) = Store::connect(url).await else {
        return;
    };
    if store.check().await.is_ok()
        && let Err(err) = SecretsReader::new(store.clone(), config, home.to_owned())
            .load()
            .await
    {
        eprintln!("warning: stored secrets are not masked: {err:#}");
    }
    store.close().await;
}

#[cfg(test)]
mod tests {
    use gust_store::Secret;

    use super::*;

    fn connection(password: Option<&str>, extra: Option<&str>) -> Connection {
        Connection {
            conn_id: "db".to_owned(),
            conn_type: "postgres".to_owned(),
            host: Some("db.example".to_owned()),
            login: Some("me".to_owned()),
            schema: None,
            port: None,
            password: password.map(Secret::new),
            extra: extra.map(Secret::new),
            description: None,
        }
    }

    #[test]
    fn passwords_sensitive_extras_and_sensitive_variables_are_secrets() {
        let connections = [
            connection(
                Some("conn-password"),
                Some(r#"{"region": "eu-west-1", "api_key": "extra-key"}"#),
            ),
            connection(None, None),
        ];
        let variables = HashMap::from([
            ("api_key".to_owned(), "var-api-key".to_owned()),
            ("region".to_owned(), "eu-west-1".to_owned()),
            (
                "settings".to_owned(),
                r#"{"token": "json-token", "n": "plain-value"}"#.to_owned(),
            ),
        ]);
        let found = stored_secrets(&connections, &variables, &SensitiveNames::default());
        assert_eq!(
            found,
            [
                "conn-password",
                "extra-key",
                "json-token",
                "var-api-key",
                r#"{"region": "eu-west-1", "api_key": "extra-key"}"#,
            ]
        );
    }

    #[test]
    fn without_hiding_sensitive_names_only_connections_passwords_and_extras_are_secrets() {
        let extra = r#"{"api_key": "extra-key"}"#;
        let connections = [connection(Some("conn-password"), Some(extra))];
        let variables = HashMap::from([
            ("api_key".to_owned(), "var-api-key".to_owned()),
            (
                "settings".to_owned(),
                r#"{"token": "json-token"}"#.to_owned(),
            ),
        ]);
        let names = SensitiveNames::default().hiding(false);
        let found = stored_secrets(&connections, &variables, &names);
        assert_eq!(found, ["conn-password", extra]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_variable_set_while_running_is_masked_within_a_poll() {
        let db = gust_store::testing::TestDb::sqlite().await;
        let home = tempfile::tempdir().expect("home");
        let config = Config::defaults(home.path());
        configure(&config);
        let reader = SecretsReader::new(db.store.clone(), &config, home.path().to_owned());
        let stop = CancellationToken::new();
        let follower = tokio::spawn(follow(reader, Duration::from_millis(20), stop.clone()));
        db.store
            .set_variable(
                "service_token",
                "late-token-value",
                None,
                &crate::commands::secret_key(&config, home.path()).expect("key"),
            )
            .await
            .expect("set");
        let mut masked = false;
        for _ in 0..500 {
            if gust_secrets::mask("x late-token-value") == "x ***" {
                masked = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        stop.cancel();
        follower.await.expect("follower");
        assert!(masked, "the new variable's value was never masked");
    }
}
