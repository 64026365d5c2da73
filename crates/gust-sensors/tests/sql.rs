//! `SqlSensor` against real databases: the PostgreSQL server named by `GUST_TEST_POSTGRES_URL`,
//! the MySQL/MariaDB server named by `GUST_TEST_MYSQL_URL` (an account that may create users
//! and databases: the test signs in as a user it creates, with a password) and SQLite files.
//! A variable that is not set skips its database's test, saying so; `.ci/run` sets both.
//!
//! Each poke is called directly (not met, a row inserted, then met), and one DAG runs under
//! `gust dags test`'s driver, so the poke's wiring into the sensor runtime is tested too.

mod support;

use std::sync::Arc;
use std::time::Duration;

use gust_core::clock::{Clock, SystemClock};
use gust_core::state::TaskState;
use gust_executor::event_channel;
use gust_operators::read_args;
use gust_operators::sensors::sql::SqlSensorArgs;
use gust_sensors::SensorExecutor;
use gust_sensors::decide::Poke;
use gust_sensors::sql::{Task, poke};
use gust_template::{MapLookup, TemplateConnection};
use serde_json::{Value, json};
use sqlx::{Connection, Executor};
use support::{load_dag, run_spec, run_within, states};

const TASK: Task<'static> = Task {
    dag_id: "orders",
    task_id: "wait_for_partner",
};

/// A connection's fields from a database URL.
fn connection(conn_id: &str, conn_type: &str, url: &str) -> TemplateConnection {
    let url = url::Url::parse(url).expect("a database URL");
    TemplateConnection {
        conn_id: conn_id.to_owned(),
        conn_type: conn_type.to_owned(),
        host: url.host_str().map(str::to_owned),
        login: Some(url.username().to_owned()).filter(|l| !l.is_empty()),
        password: url.password().map(str::to_owned),
        schema: Some(url.path().trim_start_matches('/').to_owned()).filter(|s| !s.is_empty()),
        port: url.port().map(i64::from),
        ..TemplateConnection::default()
    }
}

fn lookup(connections: impl IntoIterator<Item = TemplateConnection>) -> MapLookup {
    MapLookup {
        connections: connections
            .into_iter()
            .map(|c| (c.conn_id.clone(), c))
            .collect(),
        ..MapLookup::default()
    }
}

async fn poke_with(lookup: &MapLookup, args: Value) -> (Poke, String) {
    let args: SqlSensorArgs =
        read_args(args.as_object().expect("a map")).expect("the arguments read");
    poke(&args, Some(lookup), TASK).await
}

fn error(poke: Poke) -> String {
    match poke {
        Poke::Error(why) => why,
        other => panic!("expected an error, got {other:?}"),
    }
}

/// A name no other run of this test uses at the same time.
fn unique(prefix: &str) -> String {
    let nanos = SystemClock.now().timestamp_subsec_nanos();
    format!("{prefix}_{}_{nanos}", std::process::id())
}

#[tokio::test]
async fn postgres_sensor_waits_for_a_row_then_passes_and_fails_clearly() {
    let Ok(url) = std::env::var("GUST_TEST_POSTGRES_URL") else {
        eprintln!("SKIPPED: GUST_TEST_POSTGRES_URL is not set");
        return;
    };
    let table = unique("gust_sql_sensor");
    let mut admin = sqlx::PgConnection::connect(&url).await.expect("PostgreSQL");
    admin
        .execute(
            format!("create table {table} (day date, state text, amount numeric(10,2))").as_str(),
        )
        .await
        .expect("a table");
    // A password the server does not check (trust) but that must never be printed.
    let mut conn = connection("partners_db", "postgres", &url);
    conn.password = Some("pg-secret-5b1e".to_owned());
    let lookup = lookup([conn]);
    let wait = json!({
        "conn_id": "partners_db",
        "sql": format!("select state from {table} where day = %(day)s and state like 'rea%%'"),
        "parameters": {"day": "2024-01-01"},
    });

    let (first, said) = poke_with(&lookup, wait.clone()).await;
    assert_eq!(first, Poke::NotYet, "{said}");
    let mut empty_fails = wait.clone();
    empty_fails["fail_on_empty"] = json!(true);
    let why = error(poke_with(&lookup, empty_fails).await.0);
    assert!(
        why.contains("No rows returned, raising as per fail_on_empty flag"),
        "{why}"
    );

    admin
        .execute(format!("insert into {table} values ('2024-01-01', 'ready', 0.00)").as_str())
        .await
        .expect("a row");
    let (second, said) = poke_with(&lookup, wait.clone()).await;
    assert_eq!(second, Poke::Met, "{said}");
    assert!(said.contains("the first cell is \"ready\""), "{said}");

    // A zero NUMERIC is false, as Python's Decimal("0.00"); a check compares it by value.
    let amount = |check: Value| json!({"conn_id": "partners_db", "sql": format!("select amount from {table}"), "success": check});
    let mut truthiness = amount(json!(null));
    truthiness.as_object_mut().expect("a map").remove("success");
    assert_eq!(poke_with(&lookup, truthiness).await.0, Poke::NotYet);
    assert_eq!(
        poke_with(&lookup, amount(json!({"value": 0}))).await.0,
        Poke::Met
    );
    assert_eq!(
        poke_with(&lookup, amount(json!({"gt": "0"}))).await.0,
        Poke::NotYet
    );

    let failing = json!({
        "conn_id": "partners_db",
        "sql": format!("select state from {table}"),
        "failure": {"one_of": ["ready", "lost"]},
        "success": {"value": "ready"},
    });
    let why = error(poke_with(&lookup, failing).await.0);
    assert!(
        why.contains("Failure criteria met: the first cell is \"ready\""),
        "{why}"
    );

    let bad = json!({"conn_id": "partners_db", "sql": "select * from no_such_table_here"});
    let why = error(poke_with(&lookup, bad).await.0);
    assert!(why.starts_with("SqlSensor of DAG \"orders\", task \"wait_for_partner\", on connection \"partners_db\": the query failed:"), "{why}");
    assert!(why.contains("no_such_table_here"), "{why}");
    assert!(
        !why.contains('\n') && !why.contains("pg-secret-5b1e"),
        "{why}"
    );

    admin
        .execute(format!("drop table {table}").as_str())
        .await
        .expect("dropped");
    admin.close().await.expect("closed");
}

#[tokio::test]
async fn mysql_sensor_signs_in_with_its_password_and_waits_for_a_row() {
    let Ok(url) = std::env::var("GUST_TEST_MYSQL_URL") else {
        eprintln!("SKIPPED: GUST_TEST_MYSQL_URL is not set");
        return;
    };
    let mut admin = sqlx::MySqlConnection::connect(&url).await.expect("MySQL");
    let database = unique("gust_sql_sensor");
    let user = "gust_sql_sensor";
    let password = "my-secret-9c2d";
    for statement in [
        format!("create database {database}"),
        format!("create user if not exists '{user}'@'%' identified by '{password}'"),
        format!("alter user '{user}'@'%' identified by '{password}'"),
        format!("grant select on {database}.* to '{user}'@'%'"),
        format!(
            "create table {database}.jobs (name varchar(40), done tinyint(1), total decimal(8,2))"
        ),
    ] {
        admin.execute(statement.as_str()).await.expect(&statement);
    }
    let base = connection("warehouse", "mysql", &url);
    let conn = TemplateConnection {
        login: Some(user.to_owned()),
        password: Some(password.to_owned()),
        schema: Some(database.clone()),
        ..base
    };
    let wrong_password = TemplateConnection {
        conn_id: "warehouse_wrong".to_owned(),
        password: Some("not-my-secret-1".to_owned()),
        ..conn.clone()
    };
    let lookup = lookup([conn, wrong_password]);
    let wait = json!({
        "conn_id": "warehouse",
        "sql": "select done from jobs where name = %(name)s",
        "parameters": {"name": "nightly"},
    });
    assert_eq!(poke_with(&lookup, wait.clone()).await.0, Poke::NotYet);
    admin
        .execute(format!("insert into {database}.jobs values ('nightly', 0, 0.00)").as_str())
        .await
        .expect("a row");
    // A row whose cell is 0 is not met yet (Python's bool(0)).
    assert_eq!(poke_with(&lookup, wait.clone()).await.0, Poke::NotYet);
    admin
        .execute(format!("update {database}.jobs set done = 1, total = 12.50").as_str())
        .await
        .expect("updated");
    let (met, said) = poke_with(&lookup, wait).await;
    assert_eq!(met, Poke::Met, "{said}");
    let total = json!({
        "conn_id": "warehouse",
        "sql": "select total from jobs where name = %s",
        "parameters": ["nightly"],
        "success": {"value": 12.5},
    });
    assert_eq!(poke_with(&lookup, total).await.0, Poke::Met);

    let refused = json!({"conn_id": "warehouse_wrong", "sql": "select 1"});
    let why = error(poke_with(&lookup, refused).await.0);
    assert!(
        why.contains("on connection \"warehouse_wrong\": cannot connect:"),
        "{why}"
    );
    assert!(!why.contains("not-my-secret-1"), "{why}");
    let bad = json!({"conn_id": "warehouse", "sql": "select nothing from jobs"});
    let why = error(poke_with(&lookup, bad).await.0);
    assert!(
        why.contains("task \"wait_for_partner\", on connection \"warehouse\": the query failed:"),
        "{why}"
    );
    assert!(why.contains("nothing"), "{why}");

    admin
        .execute(format!("drop database {database}").as_str())
        .await
        .expect("dropped");
    admin.close().await.expect("closed");
}

#[tokio::test]
async fn sqlite_sensor_reads_a_database_file_and_names_what_is_missing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("landing.db");
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&file)
        .create_if_missing(true);
    let mut admin = sqlx::SqliteConnection::connect_with(&options)
        .await
        .expect("SQLite");
    admin
        .execute("create table files (name text, size integer)")
        .await
        .expect("a table");
    let conn = TemplateConnection {
        conn_id: "landing".to_owned(),
        conn_type: "sqlite".to_owned(),
        host: Some(file.display().to_string()),
        ..TemplateConnection::default()
    };
    let lookup = lookup([conn]);
    let wait = json!({
        "conn_id": "landing",
        "sql": "select size from files where name = :name",
        "parameters": {"name": "orders.csv"},
        "success": {"gt": 0},
    });
    assert_eq!(poke_with(&lookup, wait.clone()).await.0, Poke::NotYet);
    admin
        .execute("insert into files values ('orders.csv', 2048)")
        .await
        .expect("a row");
    assert_eq!(poke_with(&lookup, wait).await.0, Poke::Met);

    let unknown = json!({"conn_id": "nowhere", "sql": "select 1"});
    let why = error(poke_with(&lookup, unknown).await.0);
    assert!(why.contains("on connection \"nowhere\": the connection does not exist: create it with `gust connections add nowhere"), "{why}");
    let bad = json!({"conn_id": "landing", "sql": "select from"});
    let why = error(poke_with(&lookup, bad).await.0);
    assert!(why.starts_with("SqlSensor of DAG \"orders\", task \"wait_for_partner\", on connection \"landing\": the query failed:"), "{why}");
    admin.close().await.expect("closed");
}

const DAG: &str = r#"
landing:
  schedule: null
  tasks:
    wait:
      operator: airflow.providers.common.sql.sensors.sql.SqlSensor
      conn_id: landing
      sql: "select count(*) from files where name like '{{ params.prefix }}%'"
      poke_interval: 0.2
    broken:
      operator: SqlSensor
      conn_id: landing
      sql: select * from no_such_table
  params:
    prefix: orders
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sql_sensor_task_runs_natively_in_a_dag() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("landing.db");
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&file)
        .create_if_missing(true);
    let mut admin = sqlx::SqliteConnection::connect_with(&options)
        .await
        .expect("SQLite");
    for statement in [
        "create table files (name text)",
        "insert into files values ('orders-1.csv')",
    ] {
        admin.execute(statement).await.expect(statement);
    }
    let now = SystemClock.now();
    let dag = load_dag(dir.path(), DAG, now);
    let (tx, mut events) = event_channel();
    let executor = SensorExecutor::new(tx, Arc::new(SystemClock), None);
    let mut spec = run_spec(dir.path(), "manual__sql", now);
    spec.connections = [(
        "landing".to_owned(),
        TemplateConnection {
            conn_id: "landing".to_owned(),
            conn_type: "sqlite".to_owned(),
            host: Some(file.display().to_string()),
            ..TemplateConnection::default()
        },
    )]
    .into();
    let report = run_within(Duration::from_secs(60), &dag, &spec, &executor, &mut events).await;
    assert_eq!(
        states(&report),
        [("broken", TaskState::Failed), ("wait", TaskState::Success)],
        "{report:?}"
    );
    admin.close().await.expect("closed");
}
