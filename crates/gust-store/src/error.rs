//! What can go wrong with the metadata database.

/// A failure of the metadata store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be reached or opened.
    #[error("cannot connect to the metadata database {url}")]
    Connect {
        /// The URL, password removed.
        url: String,
        /// Why.
        #[source]
        source: sqlx::Error,
    },
    /// The URL names no supported engine.
    #[error("unsupported database URL \"{0}\"; use sqlite://PATH or postgres://USER@HOST/DB")]
    UnsupportedUrl(String),
    /// Migrating the schema failed.
    #[error("migrating the metadata database failed")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    /// The schema was never migrated.
    #[error("the metadata database has no Gust schema; run `gust db migrate`")]
    NotMigrated {
        /// What the database said.
        #[source]
        source: sqlx::Error,
    },
    /// The schema is older than this binary.
    #[error(
        "the metadata database schema is at version {applied}, this gust needs {latest}; run `gust db migrate`"
    )]
    Outdated {
        /// The version applied.
        applied: i64,
        /// The version needed.
        latest: i64,
    },
    /// A query failed.
    #[error("metadata database query failed: {what}")]
    Query {
        /// What was being done.
        what: &'static str,
        /// Why.
        #[source]
        source: sqlx::Error,
    },
    /// A stored value could not be read back.
    #[error("stored {what} is unreadable: {detail}")]
    Corrupt {
        /// What was being read.
        what: &'static str,
        /// Why.
        detail: String,
    },
}

impl StoreError {
    /// Whether waiting and retrying may help (a lost connection, a busy database, a
    /// serialization conflict), as opposed to a mistake that retrying repeats.
    #[must_use]
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Connect { source, .. } | Self::Query { source, .. } => transient(source),
            Self::UnsupportedUrl(_)
            | Self::Migrate(_)
            | Self::NotMigrated { .. }
            | Self::Outdated { .. }
            | Self::Corrupt { .. } => false,
        }
    }
}

fn transient(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        // SQLITE_BUSY / SQLITE_LOCKED, and PostgreSQL's serialization failure and deadlock.
        sqlx::Error::Database(db) => {
            matches!(db.code().as_deref(), Some("5" | "6" | "40001" | "40P01"))
        }
        _ => false,
    }
}

/// Wraps a sqlx error with what was being done.
pub(crate) fn query(what: &'static str) -> impl Fn(sqlx::Error) -> StoreError + Copy {
    move |source| StoreError::Query { what, source }
}
