//! Throwaway metadata databases for tests, on both engines: SQLite in a temporary folder, and a
//! fresh PostgreSQL database on the server named by `GUST_TEST_POSTGRES_URL` (dropped afterwards).
//! Without that variable the PostgreSQL variant says loudly that it was skipped; `.ci/run` always
//! sets it.

use std::sync::atomic::{AtomicU32, Ordering};

use crate::Store;

/// The variable naming the PostgreSQL server tests use (an admin URL).
pub const POSTGRES_URL_VAR: &str = "GUST_TEST_POSTGRES_URL";

/// A migrated store and what keeps it alive; dropping it does not drop a PostgreSQL database,
/// [`TestDb::finish`] does.
pub struct TestDb {
    /// The store.
    pub store: Store,
    /// Its URL, for processes started by the test.
    pub url: String,
    cleanup: Cleanup,
}

enum Cleanup {
    Folder(#[allow(dead_code)] tempfile::TempDir),
    Postgres { admin: Store, name: String },
}

impl TestDb {
    /// A migrated store on SQLite in a fresh temporary folder.
    ///
    /// # Panics
    /// When the database cannot be created: tests have nothing to run on then.
    pub async fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join("gust.db").display());
        let store = Store::connect(&url).await.expect("sqlite");
        store.migrate().await.expect("migrate");
        Self {
            store,
            url,
            cleanup: Cleanup::Folder(dir),
        }
    }

    /// A migrated store on a fresh PostgreSQL database, or `None` (said loudly) when no server
    /// is configured.
    ///
    /// # Panics
    /// When the configured server cannot be used.
    pub async fn postgres() -> Option<Self> {
        static DATABASES: AtomicU32 = AtomicU32::new(0);
        let Ok(admin_url) = std::env::var(POSTGRES_URL_VAR) else {
            eprintln!(
                "SKIPPED: {POSTGRES_URL_VAR} is not set, so the PostgreSQL variant did not run"
            );
            return None;
        };
        let admin = Store::connect(&admin_url)
            .await
            .expect("the PostgreSQL test server");
        let name = format!(
            "gust_test_{}_{}",
            std::process::id(),
            DATABASES.fetch_add(1, Ordering::SeqCst)
        );
        admin
            .execute_admin(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .await
            .expect("drop");
        admin
            .execute_admin(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create database");
        let base = admin_url
            .rsplit_once('/')
            .map_or(admin_url.as_str(), |(base, _)| base);
        let url = format!("{base}/{name}");
        let store = Store::connect(&url).await.expect("the fresh database");
        store.migrate().await.expect("migrate");
        Some(Self {
            store,
            url,
            cleanup: Cleanup::Postgres { admin, name },
        })
    }

    /// Closes the store and drops a PostgreSQL database.
    ///
    /// # Panics
    /// When the database cannot be dropped.
    pub async fn finish(self) {
        self.store.close().await;
        if let Cleanup::Postgres { admin, name } = self.cleanup {
            admin
                .execute_admin(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .await
                .expect("drop");
            admin.close().await;
        }
    }
}

/// Expands each `case(store: Store)` async function into two tests, `case::sqlite` and
/// `case::postgres`.
#[macro_export]
macro_rules! both_engines {
    ($($case:ident),* $(,)?) => {$(
        mod $case {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let db = $crate::testing::TestDb::sqlite().await;
                super::$case(db.store.clone()).await;
                db.finish().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let Some(db) = $crate::testing::TestDb::postgres().await else { return };
                super::$case(db.store.clone()).await;
                db.finish().await;
            }
        }
    )*};
}
