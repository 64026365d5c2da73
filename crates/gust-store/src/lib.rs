//! The metadata store: DAGs, runs, task instances with their tries (and where each try's log
//! is), XComs, variables, connections, pools and import errors, on SQLite (the embedded
//! default) or PostgreSQL, through sqlx.
//!
//! One schema, two engines: each query is written once with `$N` placeholders and runs on either
//! pool. Every state the scheduler moves is updated with compare-and-set (`... WHERE state = $old
//! AND version = $v`), so two writers can never both win; zero rows updated means "re-read and
//! decide again". Times are stored as microseconds since the epoch, JSON as text. This crate
//! stores and reads; deciding what a state should become belongs to gust-core and the scheduler.

mod assets;
mod backfills;
mod claims;
mod connections;
mod dag_versions;
mod dags;
mod deadlines;
mod error;
mod event_logs;
mod heartbeats;
mod instance_queries;
mod metrics;
mod notifications;
mod pools;
mod runs;
mod task_instances;
#[cfg(feature = "testing")]
pub mod testing;
mod time;
mod tries;
mod users;
mod variables;
mod views;
mod xcoms;

use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};

pub use assets::{
    AliasRef, AliasedAsset, AssetEventFilter, AssetRef, AssetRefKind, ConsumingRun, EVENT_ORDERS,
    NewAssetEvent, QueuedAssetEvent, StoredAsset, StoredAssetEvent, StoredAssetRef,
};
pub use backfills::{BackfillGate, NewBackfill, StoredBackfill};
pub use claims::DagClaim;
pub use connections::{Connection, Secret, SecretKey};
pub use dag_versions::{DagVersion, MAX_SOURCE_BYTES};
pub use dags::{DagSummary, ImportError, ImportErrorRecord, StoredDag};
pub use deadlines::{NewDeadline, StoredDeadline};
pub use error::StoreError;
pub use event_logs::{EventColumn, EventFilter, NewEvent, StoredEvent};
pub use heartbeats::{Job, SCHEDULER_JOB};
pub use instance_queries::{InstanceQuery, InstanceState, PreviousInstance};
pub use notifications::{DeliveryStatus, NewDelivery, StoredDelivery};
pub use pools::{DEFAULT_POOL, Pool};
pub use runs::{NewRun, RunFilter, RunOrder, RunType, StoredRun, TimeRange};
pub use task_instances::{
    DurationRange, InstanceFilter, InstanceOrder, InstanceTarget, StoredTaskInstance, UNMAPPED,
};
pub use tries::{StoredDeferral, StoredTry, StoredXCom, TaskMove, TryChange, TryReschedules};
pub use users::{Role, User};
pub use variables::Variable;
pub use views::{
    ConnectionView, MAX_GRID_RUNS, PackedCell, PackedColumn, RunHeader, TaskInstanceView,
};
pub use xcoms::MAX_XCOM_BYTES;

/// How long connecting (or taking a pooled connection) may take before it is an error.
pub const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// A connection pool to the metadata database.
#[derive(Debug, Clone)]
pub struct Store {
    engine: Engine,
}

#[derive(Debug, Clone)]
enum Engine {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs `$body` with `$pool` bound to whichever pool the store has; the body is compiled for
/// both engines.
macro_rules! with_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match &$store.engine {
            $crate::Engine::Sqlite($pool) => $body,
            $crate::Engine::Postgres($pool) => $body,
        }
    };
}
pub(crate) use with_pool;

/// Which database a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineKind {
    /// SQLite, one file.
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

impl Store {
    /// Connects to `url`: `sqlite://PATH` (created if missing, WAL mode) or `postgres://...`.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let connect = |source| StoreError::Connect {
            url: redact(url),
            source,
        };
        let engine = if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url).map_err(connect)?;
            create_private(options.get_filename()).map_err(|e| connect(sqlx::Error::Io(e)))?;
            let options = options
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .foreign_keys(true)
                .busy_timeout(std::time::Duration::from_secs(10));
            Engine::Sqlite(
                SqlitePoolOptions::new()
                    .max_connections(4)
                    // An embedded database's connection does not go stale the way a network
                    // one does; checking it before every use would cost each query and
                    // transaction one more hand-off to the connection's thread.
                    .test_before_acquire(false)
                    .connect_with(options)
                    .await
                    .map_err(connect)?,
            )
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let options = PgConnectOptions::from_str(url).map_err(connect)?;
            // A server that does not answer in time is reported rather than waited on.
            let pool = PgPoolOptions::new()
                .max_connections(10)
                .acquire_timeout(CONNECT_TIMEOUT);
            Engine::Postgres(pool.connect_with(options).await.map_err(connect)?)
        } else {
            return Err(StoreError::UnsupportedUrl(redact(url)));
        };
        Ok(Self { engine })
    }

    /// Which engine this store runs on.
    #[must_use]
    pub fn kind(&self) -> EngineKind {
        match self.engine {
            Engine::Sqlite(_) => EngineKind::Sqlite,
            Engine::Postgres(_) => EngineKind::Postgres,
        }
    }

    /// Brings the schema up to date (idempotent).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        match &self.engine {
            Engine::Sqlite(pool) => sqlx::migrate!("migrations/sqlite").run(pool).await,
            Engine::Postgres(pool) => sqlx::migrate!("migrations/postgres").run(pool).await,
        }
        .map_err(StoreError::Migrate)
    }

    /// Checks the database answers and its schema is current; returns the schema version.
    pub async fn check(&self) -> Result<i64, StoreError> {
        let latest = match &self.engine {
            Engine::Sqlite(_) => sqlx::migrate!("migrations/sqlite")
                .iter()
                .map(|m| m.version)
                .max(),
            Engine::Postgres(_) => sqlx::migrate!("migrations/postgres")
                .iter()
                .map(|m| m.version)
                .max(),
        }
        .unwrap_or(0);
        let sql = "SELECT COALESCE(MAX(version), 0) FROM _sqlx_migrations WHERE success";
        let applied: i64 = with_pool!(self, pool => sqlx::query_scalar(sql).fetch_one(pool).await)
            .map_err(|source| StoreError::NotMigrated { source })?;
        if applied < latest {
            return Err(StoreError::Outdated { applied, latest });
        }
        Ok(applied)
    }

    /// Runs one administrative statement (`CREATE DATABASE`...) outside any transaction; for
    /// tests and `gust db` commands, never with user input.
    pub async fn execute_admin(&self, statement: &str) -> Result<(), StoreError> {
        with_pool!(self, pool => sqlx::raw_sql(statement).execute(pool).await.map(drop))
            .map_err(error::query("an administrative statement"))
    }

    /// Closes every connection.
    pub async fn close(&self) {
        with_pool!(self, pool => pool.close().await);
    }

    /// Like [`Store::sql`], for statements assembled from constant parts.
    pub(crate) fn sql_owned(&self, text: String) -> String {
        match self.engine {
            Engine::Postgres(_) => text,
            Engine::Sqlite(_) => to_sqlite_placeholders(&text),
        }
    }

    /// `text` with `$N` placeholders rewritten for this engine (SQLite numbers them `?N`).
    pub(crate) fn sql(&self, text: &'static str) -> std::borrow::Cow<'static, str> {
        match self.engine {
            Engine::Postgres(_) => std::borrow::Cow::Borrowed(text),
            Engine::Sqlite(_) => std::borrow::Cow::Owned(to_sqlite_placeholders(text)),
        }
    }
}

/// Creates the SQLite database file `path`, when missing, readable by its owner alone (0600):
/// it holds users' password hashes and variables. SQLite gives the `-wal` and `-shm` files it
/// makes beside it the database file's own mode, so they are private too. An in-memory
/// database (no file) and a file that exists are left alone.
fn create_private(path: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    if path.as_os_str().is_empty() || path == std::path::Path::new(":memory:") {
        return Ok(());
    }
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(err) => Err(err),
    }
}

fn to_sqlite_placeholders(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('?');
        } else {
            out.push(c);
        }
    }
    out
}

/// `url` without its password, for messages.
#[must_use]
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_for_sqlite() {
        assert_eq!(
            to_sqlite_placeholders("a = $1 AND b = $12 AND c = '$x'"),
            "a = ?1 AND b = ?12 AND c = '$x'"
        );
    }

    #[tokio::test]
    async fn a_new_sqlite_database_and_its_wal_files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("gust.db");
        let store = Store::connect(&format!("sqlite://{}", db.display()))
            .await
            .unwrap();
        store.migrate().await.unwrap();
        for name in ["gust.db", "gust.db-wal", "gust.db-shm"] {
            let mode = std::fs::metadata(dir.path().join(name))
                .unwrap_or_else(|err| panic!("{name}: {err}"))
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{name} is {mode:o}");
        }
        store.close().await;
    }

    #[test]
    fn passwords_never_appear_in_messages() {
        assert_eq!(
            redact("postgres://gust:s3cret@db:5432/gust"),
            "postgres://gust:***@db:5432/gust"
        );
        assert_eq!(redact("postgres://gust@db/gust"), "postgres://gust@db/gust");
        assert_eq!(redact("sqlite:///tmp/x.db"), "sqlite:///tmp/x.db");
    }
}

#[cfg(test)]
mod schema_tests {
    /// The two engines' migrations must describe the same schema: they may differ only in the
    /// lines that spell an auto-increment key, which SQLite and PostgreSQL write differently.
    #[test]
    fn both_engines_migrations_stay_in_lockstep() {
        let pairs = [
            (
                include_str!("../migrations/sqlite/0001_initial.sql"),
                include_str!("../migrations/postgres/0001_initial.sql"),
            ),
            (
                include_str!("../migrations/sqlite/0002_tries.sql"),
                include_str!("../migrations/postgres/0002_tries.sql"),
            ),
            (
                include_str!("../migrations/sqlite/0003_api.sql"),
                include_str!("../migrations/postgres/0003_api.sql"),
            ),
            (
                include_str!("../migrations/sqlite/0004_scheduler_claims.sql"),
                include_str!("../migrations/postgres/0004_scheduler_claims.sql"),
            ),
            (
                include_str!("../migrations/sqlite/0005_try_log_location.sql"),
                include_str!("../migrations/postgres/0005_try_log_location.sql"),
            ),
            (
                include_str!("../migrations/sqlite/0006_user_ids.sql"),
                include_str!("../migrations/postgres/0006_user_ids.sql"),
            ),
            (
                include_str!("../migrations/sqlite/0007_variables_encrypted.sql"),
                include_str!("../migrations/postgres/0007_variables_encrypted.sql"),
            ),
            (
                include_str!("../migrations/sqlite/0008_api_history.sql"),
                include_str!("../migrations/postgres/0008_api_history.sql"),
            ),
            (
                include_str!("../migrations/sqlite/0009_task_reschedules.sql"),
                include_str!("../migrations/postgres/0009_task_reschedules.sql"),
            ),
            (
                include_str!("../migrations/sqlite/0010_assets.sql"),
                include_str!("../migrations/postgres/0010_assets.sql"),
            ),
            (
                include_str!("../migrations/sqlite/0011_map_index.sql"),
                include_str!("../migrations/postgres/0011_map_index.sql"),
            ),
            (
                include_str!("../migrations/sqlite/0012_task_deferrals.sql"),
                include_str!("../migrations/postgres/0012_task_deferrals.sql"),
            ),
            (
                include_str!("../migrations/sqlite/0013_rendered_map_index.sql"),
                include_str!("../migrations/postgres/0013_rendered_map_index.sql"),
            ),
            (
                include_str!("../migrations/sqlite/0014_notifications.sql"),
                include_str!("../migrations/postgres/0014_notifications.sql"),
            ),
            (
                include_str!("../migrations/sqlite/0015_deadlines.sql"),
                include_str!("../migrations/postgres/0015_deadlines.sql"),
            ),
            (
                include_str!("../migrations/sqlite/0016_parse_duration.sql"),
                include_str!("../migrations/postgres/0016_parse_duration.sql"),
            ),
            (
                include_str!("../migrations/sqlite/0017_asset_aliases.sql"),
                include_str!("../migrations/postgres/0017_asset_aliases.sql"),
            ),
        ];
        assert_eq!(
            std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/sqlite"))
                .map(Iterator::count)
                .unwrap_or(0),
            pairs.len(),
            "every migration is compared here"
        );
        for (sqlite, postgres) in pairs {
            let differing: Vec<(&str, &str)> = sqlite
                .lines()
                .zip(postgres.lines())
                .filter(|(a, b)| a != b)
                .collect();
            assert_eq!(sqlite.lines().count(), postgres.lines().count());
            assert!(
                differing.iter().all(|(a, b)| a.contains("AUTOINCREMENT")
                    && b.contains("GENERATED ALWAYS AS IDENTITY")),
                "{differing:#?}"
            );
        }
    }
}
