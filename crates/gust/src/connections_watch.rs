//! Connections that take effect while Gust runs: [`ConnectionsReader`] reads the connections
//! table (secrets decrypted), and [`follow`] re-reads it every [`POLL`] and hands each set that
//! differs from the last to the runtimes, so `gust connections add` or a POST to
//! `/api/v2/connections` reaches the next try that starts, as an Airflow task fetches its
//! connection when it runs. Tries already running keep the connections they started with.
//!
//! Why a poll and not a notification: SQLite has no change notifications, and the API server
//! and the CLI that write connections are other processes. One query a second over a table of a
//! few rows is cheap next to the scheduler's own poll; PostgreSQL's LISTEN/NOTIFY could wake
//! this sooner later without changing what the runtimes see.
//!
//! It never prints a secret: changes are logged by connection id only.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use gust_store::{Connection, SecretKey, Store};
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::config::Config;

/// How often the connections are read again: as often as the scheduler polls the database for
/// what other processes wrote, so a change is in force within about a second.
pub const POLL: Duration = Duration::from_secs(1);

/// Reads the connections from a metadata database.
pub struct ConnectionsReader {
    store: Store,
    config: Config,
    home: PathBuf,
    /// Read (or made) once the first connection or variable exists: an empty table needs no
    /// key, and `fernet.key` is not created for nothing.
    key: Option<SecretKey>,
}

impl ConnectionsReader {
    /// A reader of `store`'s connections, decrypting them with the key `config` and `home` name.
    #[must_use]
    pub fn new(store: Store, config: &Config, home: PathBuf) -> Self {
        Self {
            store,
            config: config.clone(),
            home,
            key: None,
        }
    }

    /// The key secrets are decrypted with, read (or made) on first use.
    pub fn key(&mut self) -> anyhow::Result<SecretKey> {
        if let Some(key) = &self.key {
            return Ok(key.clone());
        }
        let key = crate::commands::secret_key(&self.config, &self.home)?;
        self.key = Some(key.clone());
        Ok(key)
    }

    /// Every connection, by id. One whose secrets do not decrypt is left out (tasks that need
    /// it then say it is missing); the error is about the table or the key as a whole.
    pub async fn read(&mut self) -> anyhow::Result<Vec<Connection>> {
        if self.key.is_none() && self.store.connection_ids().await?.is_empty() {
            return Ok(Vec::new());
        }
        let key = self.key()?;
        if let Ok(all) = self.store.connections(&key).await {
            return Ok(all);
        }
        // One row that does not decrypt fails the whole list: read the others one by one.
        let mut found = Vec::new();
        for (id, _) in self.store.connection_ids().await? {
            if let Ok(Some(conn)) = self.store.connection(&id, &key).await {
                found.push(conn);
            }
        }
        Ok(found)
    }
}

/// Re-reads the connections every [`POLL`] until `stop`, calling `apply` with each set that
/// differs from the one before (`current`, what the runtimes were built with). A failed read is
/// logged (once until it changes) and the runtimes keep what they have.
pub async fn follow(
    mut reader: ConnectionsReader,
    mut current: Vec<Connection>,
    every: Duration,
    stop: CancellationToken,
    mut apply: impl FnMut(&[Connection]) + Send,
) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    ticks.tick().await;
    let mut last_error = None;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticks.tick() => {}
        }
        match reader.read().await {
            // The decrypted rows are the fingerprint: a connection saved again unchanged
            // (its ciphertext differs, Fernet is randomised) is no change.
            Ok(found) if found == current => last_error = None,
            Ok(found) => {
                tracing::info!(
                    "connections changed ({}); tries starting from now use them",
                    changes(&current, &found)
                );
                apply(&found);
                current = found;
                last_error = None;
            }
            Err(err) => {
                let text = format!("{err:#}");
                if last_error.as_ref() != Some(&text) {
                    tracing::warn!(
                        "cannot read the connections, tries use the ones read before: {text}"
                    );
                    last_error = Some(text);
                }
            }
        }
    }
}

/// What changed, by connection id only (never a field: they may be secrets).
fn changes(before: &[Connection], after: &[Connection]) -> String {
    let index = |list: &[Connection]| -> BTreeMap<String, Connection> {
        list.iter()
            .map(|c| (c.conn_id.clone(), c.clone()))
            .collect()
    };
    let (before, after) = (index(before), index(after));
    let mut parts = Vec::new();
    for (id, conn) in &after {
        match before.get(id) {
            None => parts.push(format!("added {id}")),
            Some(old) if old != conn => parts.push(format!("changed {id}")),
            Some(_) => {}
        }
    }
    for id in before.keys().filter(|id| !after.contains_key(*id)) {
        parts.push(format!("deleted {id}"));
    }
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use gust_store::Secret;
    use gust_store::testing::TestDb;

    use super::*;

    fn connection(id: &str, password: &str) -> Connection {
        Connection {
            conn_id: id.to_owned(),
            conn_type: "generic".to_owned(),
            host: None,
            login: Some("user".to_owned()),
            schema: None,
            port: None,
            password: Some(Secret::new(password)),
            extra: None,
            description: None,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn changes_reach_apply_once_each_and_never_print_a_secret() {
        let db = TestDb::sqlite().await;
        let home = tempfile::tempdir().expect("home");
        let config = Config::defaults(home.path());
        let key = crate::commands::secret_key(&config, home.path()).expect("key");
        let reader = ConnectionsReader::new(db.store.clone(), &config, home.path().to_owned());
        let seen: Arc<Mutex<Vec<Vec<String>>>> = Arc::default();
        let stop = CancellationToken::new();
        let follower = tokio::spawn(follow(
            reader,
            Vec::new(),
            Duration::from_millis(20),
            stop.clone(),
            {
                let seen = Arc::clone(&seen);
                move |conns: &[Connection]| {
                    let passwords = conns
                        .iter()
                        .map(|c| c.password.as_ref().map_or("", Secret::expose).to_owned())
                        .collect();
                    seen.lock().expect("lock").push(passwords);
                }
            },
        ));
        let wait_for = |count: usize| {
            let seen = Arc::clone(&seen);
            async move {
                for _ in 0..500 {
                    if seen.lock().expect("lock").len() >= count {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                panic!("apply was not called {count} times");
            }
        };
        db.store
            .put_connection(&connection("db", "hunter2"), &key)
            .await
            .expect("add");
        wait_for(1).await;
        // Saved again unchanged: no call.
        db.store
            .put_connection(&connection("db", "hunter2"), &key)
            .await
            .expect("save");
        tokio::time::sleep(Duration::from_millis(100)).await;
        db.store.delete_connection("db").await.expect("delete");
        wait_for(2).await;
        stop.cancel();
        follower.await.expect("the follower stops with its token");
        let seen = seen.lock().expect("lock").clone();
        assert_eq!(seen, vec![vec!["hunter2".to_owned()], vec![]]);
        let said = changes(&[connection("a", "hunter2")], &[connection("a", "other")]);
        assert_eq!(said, "changed a");
        db.finish().await;
    }
}
