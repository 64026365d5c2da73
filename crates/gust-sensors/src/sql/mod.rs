//! `SqlSensor`'s poke (sqlx): one connection per poke to the `conn_id` connection's database
//! (PostgreSQL, MySQL/MariaDB or SQLite), the query run, its first row's first cell read and
//! judged as Airflow's SqlSensor judges it (`failure` first, then `success`, else Python's
//! truthiness), and the connection closed. A poke every `poke_interval` needs no pool; the
//! connection is opened within [`CONNECT_TIMEOUT`] and the query answers within
//! [`QUERY_TIMEOUT`]. Only the first row is read.
//!
//! The connection's password joins the masker, and every message is masked and kept to one
//! line: the drivers' errors may quote what they were given.

mod cell;
mod params;

use std::time::Duration;

use gust_operators::sensors::sql::SqlSensorArgs;
use gust_template::{RuntimeLookup, TemplateConnection};
use sqlx::{Connection, Row, ValueRef};

pub use cell::Cell;
use params::{Param, Prepared, Style, prepare};

use crate::decide::Poke;

/// Binds each parameter with its own type.
macro_rules! bind {
    ($query:expr, $binds:expr) => {{
        let mut query = $query;
        for param in $binds {
            query = match param {
                Param::Null => query.bind(None::<String>),
                Param::Bool(b) => query.bind(*b),
                Param::Int(i) => query.bind(*i),
                Param::Float(x) => query.bind(*x),
                Param::Text(text) => query.bind(text.as_str()),
            };
        }
        query
    }};
}

/// Opens a connection with `$options`, runs `$query`, reads the first row's first cell with
/// `$cell` and closes the connection: `None` when there is no row.
macro_rules! first_row_cell {
    ($options:expr, $query:expr, $cell:expr) => {{
        let mut db = connect($options).await?;
        let row = bounded($query.fetch_optional(&mut db)).await;
        let _ = db.close().await;
        row?.map(|row| $cell(&row)).transpose()
    }};
}

/// Sets what PostgreSQL's and MySQL's connect options take alike from Airflow's connection
/// fields: host (default localhost), port (default `$port`), login, password and schema (the
/// database).
macro_rules! server_fields {
    ($options:expr, $conn:expr, $port:expr) => {{
        let conn: &TemplateConnection = $conn;
        let mut options = $options
            .host(non_empty(&conn.host).unwrap_or("localhost"))
            .port(port(conn, $port)?);
        if let Some(login) = non_empty(&conn.login) {
            options = options.username(login);
        }
        if let Some(password) = non_empty(&conn.password) {
            options = options.password(password);
        }
        if let Some(database) = non_empty(&conn.schema) {
            options = options.database(database);
        }
        options
    }};
}

/// Decodes the first cell as the first type in the list that the column's type fits.
macro_rules! first_fitting {
    ($row:expr; $($ty:ty => $make:expr),* $(,)?) => {
        $(
            if let Ok(value) = $row.try_get::<$ty, _>(0) {
                let make: fn($ty) -> Cell = $make;
                return Ok(make(value));
            }
        )*
    };
}

/// How long opening the connection may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the query may take.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(300);

/// The database a connection reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Engine {
    Postgres,
    MySql,
    Sqlite,
}

impl Engine {
    fn of(conn: &TemplateConnection) -> Option<Self> {
        match conn.conn_type.to_ascii_lowercase().as_str() {
            "postgres" | "postgresql" => Some(Self::Postgres),
            "mysql" | "mariadb" => Some(Self::MySql),
            "sqlite" => Some(Self::Sqlite),
            _ => None,
        }
    }

    fn style(self) -> Style {
        match self {
            Self::Postgres => Style::PyformatInline,
            Self::MySql => Style::PyformatBound,
            Self::Sqlite => Style::Qmark,
        }
    }
}

/// Where a poke runs, for its messages.
#[derive(Debug, Clone, Copy)]
pub struct Task<'a> {
    /// The DAG.
    pub dag_id: &'a str,
    /// The task.
    pub task_id: &'a str,
}

/// One poke of `SqlSensor`: met when the first cell passes; "not yet" when it does not or when
/// there is no row (a failure with `fail_on_empty`); an error when `failure` matches, or when
/// the connection or the query fails.
pub async fn poke(
    args: &SqlSensorArgs,
    lookup: Option<&dyn RuntimeLookup>,
    task: Task<'_>,
) -> (Poke, String) {
    let parameters = args
        .parameters
        .as_ref()
        .map_or_else(|| "None".to_owned(), ToString::to_string);
    let said = format!("Poking: {} (with parameters {parameters})", args.sql.trim());
    let conn_id = &args.conn_id;
    let at = format!(
        "SqlSensor of DAG \"{}\", task \"{}\", on connection \"{conn_id}\"",
        task.dag_id, task.task_id
    );
    let fail = |why: String| Poke::Error(one_line(&format!("{at}: {why}")));
    let Some(conn) = lookup.and_then(|l| l.connection(conn_id)) else {
        return (
            fail(format!(
                "the connection does not exist: create it with `gust connections add {conn_id} --conn-type postgres --conn-host HOST --conn-login USER --conn-password ... --conn-schema DATABASE` (or mysql, or sqlite with --conn-host /path/to/file.db)"
            )),
            said,
        );
    };
    if let Some(password) = non_empty(&conn.password) {
        gust_secrets::add([password.to_owned()]);
    }
    let Some(engine) = Engine::of(&conn) else {
        return (
            fail(format!(
                "its type is \"{}\"; SqlSensor runs natively on postgres, mysql, mariadb and sqlite connections",
                conn.conn_type
            )),
            said,
        );
    };
    let prepared = match prepare(&args.sql, args.parameters.as_ref(), engine.style()) {
        Ok(prepared) => prepared,
        Err(why) => return (fail(why), said),
    };
    let found = match first_cell(engine, &conn, &prepared).await {
        Ok(found) => found,
        Err(why) => return (fail(mask(&why, &conn)), said),
    };
    let Some(cell) = found else {
        if args.fail_on_empty {
            return (
                fail("No rows returned, raising as per fail_on_empty flag".to_owned()),
                said,
            );
        }
        return (Poke::NotYet, format!("{said}: no rows yet"));
    };
    if let Some(failure) = &args.failure {
        match cell::passes(failure, &cell, "failure") {
            Ok(true) => {
                return (
                    fail(format!("Failure criteria met: the first cell is {cell}")),
                    said,
                );
            }
            Ok(false) => {}
            Err(why) => return (fail(why), said),
        }
    }
    let met = match &args.success {
        Some(success) => match cell::passes(success, &cell, "success") {
            Ok(met) => met,
            Err(why) => return (fail(why), said),
        },
        None => cell.truthy(),
    };
    let said = format!(
        "{said}: the first cell is {}",
        mask(&cell.to_string(), &conn)
    );
    (if met { Poke::Met } else { Poke::NotYet }, said)
}

/// `text` on one line, secrets masked.
fn one_line(text: &str) -> String {
    gust_secrets::mask(&text.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// `text` with the connection's password hidden, even before the masker knows it.
fn mask(text: &str, conn: &TemplateConnection) -> String {
    match non_empty(&conn.password) {
        Some(password) => text.replace(password, "***"),
        None => text.to_owned(),
    }
}

/// The first row's first cell, `None` when the query returns no row.
async fn first_cell(
    engine: Engine,
    conn: &TemplateConnection,
    prepared: &Prepared,
) -> Result<Option<Cell>, String> {
    // PostgreSQL's parameters are written into the query (`Style::PyformatInline`).
    match engine {
        Engine::Postgres => first_row_cell!(
            postgres_options(conn)?,
            sqlx::query(&prepared.sql),
            postgres_cell
        ),
        Engine::MySql => first_row_cell!(
            mysql_options(conn)?,
            bind!(sqlx::query(&prepared.sql), &prepared.binds),
            mysql_cell
        ),
        Engine::Sqlite => first_row_cell!(
            sqlite_options(conn)?,
            bind!(sqlx::query(&prepared.sql), &prepared.binds),
            sqlite_cell
        ),
    }
}

async fn connect<C>(options: C) -> Result<C::Connection, String>
where
    C: sqlx::ConnectOptions,
    C::Connection: Sized,
{
    match tokio::time::timeout(CONNECT_TIMEOUT, options.connect()).await {
        Ok(Ok(db)) => Ok(db),
        Ok(Err(err)) => Err(format!("cannot connect: {}", error_text(&err))),
        Err(_) => Err(format!(
            "cannot connect: no answer within {}s",
            CONNECT_TIMEOUT.as_secs()
        )),
    }
}

async fn bounded<T>(query: impl Future<Output = Result<T, sqlx::Error>>) -> Result<T, String> {
    match tokio::time::timeout(QUERY_TIMEOUT, query).await {
        Ok(Ok(found)) => Ok(found),
        Ok(Err(err)) => Err(format!("the query failed: {}", error_text(&err))),
        Err(_) => Err(format!(
            "the query did not answer within {}s",
            QUERY_TIMEOUT.as_secs()
        )),
    }
}

/// An error with its causes, as one line.
fn error_text(err: &sqlx::Error) -> String {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        let line = cause.to_string();
        if !text.contains(&line) {
            text = format!("{text}: {line}");
        }
        source = cause.source();
    }
    text
}

/// A connection field that is set and not empty.
fn non_empty(field: &Option<String>) -> Option<&str> {
    field.as_deref().filter(|text| !text.is_empty())
}

fn port(conn: &TemplateConnection, default: u16) -> Result<u16, String> {
    conn.port.map_or(Ok(default), |port| {
        u16::try_from(port).map_err(|_| format!("its port {port} is not a port number"))
    })
}

/// The connection's extra, as a map (empty when it has none or it is not JSON).
fn extra(conn: &TemplateConnection) -> serde_json::Map<String, serde_json::Value> {
    conn.extra
        .as_deref()
        .and_then(|e| serde_json::from_str(e).ok())
        .unwrap_or_default()
}

/// Airflow's Postgres connection: host, port (5432), login, password, schema as the database,
/// `sslmode` in the extra.
fn postgres_options(conn: &TemplateConnection) -> Result<sqlx::postgres::PgConnectOptions, String> {
    let mut options = server_fields!(
        sqlx::postgres::PgConnectOptions::new_without_pgpass().application_name("gust-sql-sensor"),
        conn,
        5432
    );
    if let Some(mode) = extra(conn)
        .get("sslmode")
        .and_then(serde_json::Value::as_str)
    {
        let mode = mode
            .parse()
            .map_err(|_| format!("its extra sslmode \"{mode}\" is not a PostgreSQL sslmode"))?;
        options = options.ssl_mode(mode);
    }
    Ok(options)
}

/// Airflow's MySQL connection: host, port (3306), login, password, schema as the database,
/// `unix_socket` in the extra.
fn mysql_options(conn: &TemplateConnection) -> Result<sqlx::mysql::MySqlConnectOptions, String> {
    let mut options = server_fields!(sqlx::mysql::MySqlConnectOptions::new(), conn, 3306);
    if let Some(socket) = extra(conn)
        .get("unix_socket")
        .and_then(serde_json::Value::as_str)
    {
        options = options.socket(socket);
    }
    Ok(options)
}

/// Airflow's SQLite connection: the database file is its host (or its schema).
fn sqlite_options(conn: &TemplateConnection) -> Result<sqlx::sqlite::SqliteConnectOptions, String> {
    let file = non_empty(&conn.host)
        .or_else(|| non_empty(&conn.schema))
        .ok_or_else(|| "it names no database file: set its host to the file's path".to_owned())?;
    Ok(sqlx::sqlite::SqliteConnectOptions::new()
        .filename(file)
        .create_if_missing(false)
        .busy_timeout(CONNECT_TIMEOUT))
}

fn unsupported(type_name: &str) -> String {
    format!(
        "the first cell is of type {type_name}, which SqlSensor cannot read: cast it in the query (to text or a number)"
    )
}

fn postgres_cell(row: &sqlx::postgres::PgRow) -> Result<Cell, String> {
    use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};
    use sqlx::TypeInfo;
    let raw = row.try_get_raw(0).map_err(|err| error_text(&err))?;
    if raw.is_null() {
        return Ok(Cell::Null);
    }
    let type_name = raw.type_info().name().to_owned();
    first_fitting!(row;
        bool => Cell::Bool,
        i16 => |v: i16| Cell::Int(v.into()),
        i32 => |v: i32| Cell::Int(v.into()),
        i64 => |v: i64| Cell::Int(v.into()),
        f32 => |v: f32| Cell::Float(v.into()),
        f64 => Cell::Float,
        String => Cell::Text,
        DateTime<Utc> => |v: DateTime<Utc>| Cell::Text(v.to_rfc3339()),
        NaiveDateTime => |v: NaiveDateTime| Cell::Text(v.to_string()),
        NaiveDate => |v: NaiveDate| Cell::Text(v.to_string()),
        NaiveTime => |v: NaiveTime| Cell::Text(v.to_string()),
        Vec<u8> => Cell::Bytes,
    );
    let bytes = raw.as_bytes().map_err(|err| err.to_string())?;
    if raw.format() == sqlx::postgres::PgValueFormat::Text {
        // The simple protocol's answers are text whatever their type.
        let text = String::from_utf8_lossy(bytes).into_owned();
        return Ok(match type_name.as_str() {
            "NUMERIC" => Cell::Decimal(text),
            "JSON" | "JSONB" => serde_json::from_str(&text).map_or(Cell::Text(text), Cell::Json),
            _ => Cell::Text(text),
        });
    }
    match type_name.as_str() {
        "NUMERIC" => cell::numeric_text(bytes).map(Cell::Decimal),
        "UUID" if bytes.len() == 16 => {
            let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            Ok(Cell::Text(format!(
                "{}-{}-{}-{}-{}",
                &hex[..8],
                &hex[8..12],
                &hex[12..16],
                &hex[16..20],
                &hex[20..]
            )))
        }
        // jsonb's binary form is a version byte, then the text.
        "JSON" | "JSONB" => {
            let text = if type_name == "JSONB" {
                bytes.get(1..).unwrap_or_default()
            } else {
                bytes
            };
            serde_json::from_slice(text)
                .map(Cell::Json)
                .map_err(|err| format!("the first cell is not JSON: {err}"))
        }
        other => Err(unsupported(other)),
    }
}

fn mysql_cell(row: &sqlx::mysql::MySqlRow) -> Result<Cell, String> {
    use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};
    use sqlx::TypeInfo;
    let raw = row.try_get_raw(0).map_err(|err| error_text(&err))?;
    if raw.is_null() {
        return Ok(Cell::Null);
    }
    let type_name = raw.type_info().name().to_owned();
    first_fitting!(row;
        i64 => |v: i64| Cell::Int(v.into()),
        u64 => |v: u64| Cell::Int(v.into()),
        f64 => Cell::Float,
        f32 => |v: f32| Cell::Float(v.into()),
        String => Cell::Text,
        NaiveDateTime => |v: NaiveDateTime| Cell::Text(v.to_string()),
        DateTime<Utc> => |v: DateTime<Utc>| Cell::Text(v.to_rfc3339()),
        NaiveDate => |v: NaiveDate| Cell::Text(v.to_string()),
        NaiveTime => |v: NaiveTime| Cell::Text(v.to_string()),
        bool => Cell::Bool,
        Vec<u8> => Cell::Bytes,
    );
    // MySQL sends DECIMAL and JSON as text.
    match type_name.as_str() {
        "DECIMAL" => row
            .try_get_unchecked::<String, _>(0)
            .map(Cell::Decimal)
            .map_err(|err| error_text(&err)),
        "JSON" => row
            .try_get_unchecked::<String, _>(0)
            .map(|text| serde_json::from_str(&text).map_or(Cell::Text(text), Cell::Json))
            .map_err(|err| error_text(&err)),
        other => Err(unsupported(other)),
    }
}

fn sqlite_cell(row: &sqlx::sqlite::SqliteRow) -> Result<Cell, String> {
    use sqlx::TypeInfo;
    let raw = row.try_get_raw(0).map_err(|err| error_text(&err))?;
    if raw.is_null() {
        return Ok(Cell::Null);
    }
    let type_name = raw.type_info().name().to_owned();
    first_fitting!(row;
        i64 => |v: i64| Cell::Int(v.into()),
        f64 => Cell::Float,
        String => Cell::Text,
        Vec<u8> => Cell::Bytes,
        bool => Cell::Bool,
    );
    Err(unsupported(&type_name))
}
