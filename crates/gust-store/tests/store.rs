//! The store's behaviour, every test run on both engines: SQLite in a temporary file and a fresh
//! PostgreSQL database on the server named by GUST_TEST_POSTGRES_URL (skipped, loudly, when the
//! variable is unset; `.ci/run` always sets it).

use std::sync::atomic::{AtomicU32, Ordering};

use chrono::{DateTime, TimeZone, Utc};
use gust_core::state::{DagRunState, TaskState};
use gust_store::{
    Connection, EngineKind, NewRun, Pool, RunType, Secret, SecretKey, Store, StoredDag,
};

/// A migrated store on SQLite, in a folder that lives as long as the returned guard.
async fn sqlite() -> (Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("gust.db").display());
    let store = Store::connect(&url).await.expect("sqlite");
    store.migrate().await.expect("migrate");
    (store, dir)
}

static DATABASES: AtomicU32 = AtomicU32::new(0);

/// A migrated store on a fresh PostgreSQL database, or `None` when no server is configured.
async fn postgres() -> Option<(Store, Store, String)> {
    let Ok(admin_url) = std::env::var("GUST_TEST_POSTGRES_URL") else {
        eprintln!(
            "SKIPPED: GUST_TEST_POSTGRES_URL is not set, so the PostgreSQL variant did not run"
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
        .execute_admin(&format!("DROP DATABASE IF EXISTS {name}"))
        .await
        .expect("drop");
    admin
        .execute_admin(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create database");
    let base = admin_url
        .rsplit_once('/')
        .map_or(admin_url.as_str(), |(base, _)| base);
    let store = Store::connect(&format!("{base}/{name}"))
        .await
        .expect("the fresh database");
    store.migrate().await.expect("migrate");
    Some((store, admin, name))
}

/// Expands `case` into a SQLite and a PostgreSQL test.
macro_rules! both_engines {
    ($($case:ident),* $(,)?) => {$(
        mod $case {
            #[tokio::test]
            async fn sqlite() {
                let (store, _dir) = super::sqlite().await;
                super::$case(store).await;
            }

            #[tokio::test]
            async fn postgres() {
                let Some((store, admin, name)) = super::postgres().await else { return };
                super::$case(store.clone()).await;
                store.close().await;
                admin.execute_admin(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await.expect("drop");
            }
        }
    )*};
}

both_engines!(
    migrations_are_idempotent_and_checked,
    dags_keep_their_paused_flag_across_reparses,
    a_run_is_created_once_per_id_and_once_per_scheduled_interval,
    run_states_move_by_compare_and_set,
    task_instances_move_by_compare_and_set_and_count_tries,
    xcoms_round_trip_and_are_bounded,
    variables_and_pools_round_trip,
    connection_secrets_are_encrypted_at_rest,
);

fn at(hour: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 1, 1, hour, 0, 0)
        .single()
        .expect("a time")
}

async fn migrations_are_idempotent_and_checked(store: Store) {
    store
        .migrate()
        .await
        .expect("a second migration is a no-op");
    assert_eq!(store.check().await.expect("current"), 1);
    assert!(matches!(
        store.kind(),
        EngineKind::Sqlite | EngineKind::Postgres
    ));
}

fn dag(id: &str, fingerprint: &str) -> StoredDag {
    StoredDag {
        dag_id: id.into(),
        fileloc: "/dags/d.yaml".into(),
        definition: serde_json::json!({"id": id}),
        fingerprint: fingerprint.into(),
        is_paused: false,
        is_stale: false,
        last_parsed: at(1),
    }
}

async fn dags_keep_their_paused_flag_across_reparses(store: Store) {
    store
        .upsert_dag(&dag("d", "v1"), true)
        .await
        .expect("insert");
    assert!(
        store
            .dag("d")
            .await
            .expect("read")
            .expect("present")
            .is_paused,
        "new DAGs start paused when asked"
    );
    assert!(store.set_paused("d", false).await.expect("unpause"));
    store
        .upsert_dag(&dag("d", "v2"), true)
        .await
        .expect("update");
    let stored = store.dag("d").await.expect("read").expect("present");
    assert!(!stored.is_paused, "a re-parse keeps the user's choice");
    assert_eq!(stored.fingerprint, "v2");
    assert_eq!(stored.last_parsed, at(1));
    assert!(!store.set_paused("ghost", true).await.expect("no error"));
    assert_eq!(store.dag("ghost").await.expect("read"), None);
}

fn new_run(run_id: &str, run_type: RunType, hour: u32) -> NewRun {
    NewRun {
        dag_id: "d".into(),
        run_id: run_id.into(),
        run_type,
        logical_date: at(hour),
        data_interval: (at(hour), at(hour + 1)),
        conf: serde_json::json!({"k": 1})
            .as_object()
            .cloned()
            .expect("map"),
        queued_at: at(hour + 1),
    }
}

async fn a_run_is_created_once_per_id_and_once_per_scheduled_interval(store: Store) {
    assert!(
        store
            .create_run(&new_run("scheduled__1", RunType::Scheduled, 1))
            .await
            .expect("create")
    );
    assert!(
        !store
            .create_run(&new_run("scheduled__1", RunType::Scheduled, 1))
            .await
            .expect("same id")
    );
    assert!(
        !store
            .create_run(&new_run("scheduled__other", RunType::Scheduled, 1))
            .await
            .expect("same interval")
    );
    assert!(
        store
            .create_run(&new_run("manual__1", RunType::Manual, 1))
            .await
            .expect("manual runs may share it")
    );
    let run = store
        .run("d", "scheduled__1")
        .await
        .expect("read")
        .expect("present");
    assert_eq!(
        (run.state, run.run_type, run.logical_date),
        (DagRunState::Queued, RunType::Scheduled, at(1))
    );
    assert_eq!(run.conf["k"], 1);
}

async fn run_states_move_by_compare_and_set(store: Store) {
    store
        .create_run(&new_run("r", RunType::Manual, 2))
        .await
        .expect("create");
    let queued = store.run("d", "r").await.expect("read").expect("present");
    assert!(
        store
            .transition_run(&queued, DagRunState::Running, at(3))
            .await
            .expect("move")
    );
    assert!(
        !store
            .transition_run(&queued, DagRunState::Running, at(3))
            .await
            .expect("stale"),
        "a stale read cannot win"
    );
    let running = store.run("d", "r").await.expect("read").expect("present");
    assert_eq!(
        (running.state, running.start_date, running.version),
        (DagRunState::Running, Some(at(3)), 1)
    );
    assert!(
        store
            .transition_run(&running, DagRunState::Success, at(4))
            .await
            .expect("finish")
    );
    let done = store.run("d", "r").await.expect("read").expect("present");
    assert_eq!(
        (done.state, done.start_date, done.end_date),
        (DagRunState::Success, Some(at(3)), Some(at(4)))
    );
}

async fn task_instances_move_by_compare_and_set_and_count_tries(store: Store) {
    store
        .create_task_instances("d", "r", &["a", "b"])
        .await
        .expect("create");
    store
        .create_task_instances("d", "r", &["a"])
        .await
        .expect("creating again is harmless");
    let tis = store.task_instances("d", "r").await.expect("read");
    assert_eq!(
        tis.iter()
            .map(|t| (t.task_id.as_str(), t.state))
            .collect::<Vec<_>>(),
        [("a", TaskState::NoStatus), ("b", TaskState::NoStatus)]
    );
    let a = tis[0].clone();
    assert!(
        store
            .transition_task_instance(&a, TaskState::Scheduled)
            .await
            .expect("schedule")
    );
    assert!(
        !store
            .transition_task_instance(&a, TaskState::Scheduled)
            .await
            .expect("stale")
    );
    let a = store
        .task_instances("d", "r")
        .await
        .expect("read")
        .remove(0);
    assert!(
        store
            .transition_task_instance(&a, TaskState::Queued)
            .await
            .expect("queue")
    );
    let a = store
        .task_instances("d", "r")
        .await
        .expect("read")
        .remove(0);
    assert_eq!(
        (a.state, a.try_number, a.version),
        (TaskState::Queued, 1, 2)
    );
}

async fn xcoms_round_trip_and_are_bounded(store: Store) {
    let value = serde_json::json!({"train": "s3://b/train", "n": [1, 2]});
    store
        .put_xcom("d", "r", "t", "return_value", &value)
        .await
        .expect("put");
    assert_eq!(
        store
            .xcom("d", "r", "t", "return_value")
            .await
            .expect("get"),
        Some(value)
    );
    store
        .put_xcom("d", "r", "t", "return_value", &serde_json::json!(2))
        .await
        .expect("replace");
    assert_eq!(
        store
            .xcom("d", "r", "t", "return_value")
            .await
            .expect("get"),
        Some(serde_json::json!(2))
    );
    assert_eq!(store.xcom("d", "r", "t", "other").await.expect("get"), None);
    let huge = serde_json::Value::String("x".repeat(2 * 1024 * 1024));
    assert!(store.put_xcom("d", "r", "t", "big", &huge).await.is_err());
}

async fn variables_and_pools_round_trip(store: Store) {
    store
        .set_variable("env", "prod", Some("where we are"))
        .await
        .expect("set");
    store
        .set_variable("env", "staging", None)
        .await
        .expect("replace");
    assert_eq!(
        store.variable("env").await.expect("get").as_deref(),
        Some("staging")
    );
    assert_eq!(store.variable_keys().await.expect("list"), ["env"]);
    assert!(store.delete_variable("env").await.expect("delete"));
    assert!(!store.delete_variable("env").await.expect("delete again"));

    let pools = store.pools().await.expect("pools");
    assert_eq!(
        pools,
        [Pool {
            name: "default_pool".into(),
            slots: 128,
            description: Some("Default pool".into())
        }]
    );
    store
        .set_pool(&Pool {
            name: "ml".into(),
            slots: 4,
            description: None,
        })
        .await
        .expect("set");
    assert_eq!(store.pools().await.expect("pools").len(), 2);
}

async fn connection_secrets_are_encrypted_at_rest(store: Store) {
    let key = SecretKey::parse(&SecretKey::generate()).expect("a generated key is valid");
    let conn = Connection {
        conn_id: "warehouse".into(),
        conn_type: "postgres".into(),
        host: Some("db".into()),
        login: Some("etl".into()),
        schema: Some("dw".into()),
        port: Some(5432),
        password: Some(Secret::new("hunter2")),
        extra: Some(Secret::new(r#"{"sslmode": "require"}"#)),
        description: None,
    };
    store.put_connection(&conn, &key).await.expect("put");
    assert_eq!(
        store.connection("warehouse", &key).await.expect("get"),
        Some(conn.clone())
    );
    let raw = store
        .raw_connection_password("warehouse")
        .await
        .expect("raw")
        .expect("stored");
    assert!(!raw.contains("hunter2"), "the password is stored encrypted");
    assert!(
        !format!("{conn:?}").contains("hunter2"),
        "Debug never shows secrets"
    );
    let other = SecretKey::parse(&SecretKey::generate()).expect("key");
    let err = store
        .connection("warehouse", &other)
        .await
        .expect_err("a wrong key cannot decrypt");
    assert!(err.to_string().contains("fernet_key"), "{err}");
    assert_eq!(
        store.connection_ids().await.expect("list"),
        [("warehouse".to_owned(), "postgres".to_owned())]
    );
    assert!(store.delete_connection("warehouse").await.expect("delete"));
}
