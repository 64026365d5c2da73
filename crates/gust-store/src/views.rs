//! Bulk reads for the web UI: the latest runs of every DAG, a DAG's grid (every task's state in
//! its last runs, packed one string per run so 500,000 cells are 100 rows), one task instance
//! with its tries, XComs and log location. Read-only: nothing here writes.

use chrono::{DateTime, Utc};
use gust_core::state::{DagRunState, TaskState};
use sqlx::Row;

use crate::error::query;
use crate::task_instances::parse_state;
use crate::time::{from_db, opt_from_db};
use crate::tries::StoredTry;
use crate::{EngineKind, Store, StoreError, with_pool};

/// The most runs one grid read may ask for.
pub const MAX_GRID_RUNS: i64 = 1000;

/// A run as the UI's lists and grid show it (no conf: that is read on the run's own page).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunHeader {
    /// The DAG.
    pub dag_id: String,
    /// The run.
    pub run_id: String,
    /// `scheduled`, `manual` or `backfill`.
    pub run_type: String,
    /// Its state.
    pub state: DagRunState,
    /// Its logical date.
    pub logical_date: DateTime<Utc>,
    /// When it started.
    pub start_date: Option<DateTime<Utc>>,
    /// When it ended.
    pub end_date: Option<DateTime<Utc>>,
    /// The row's version: it changes with every move and every clear.
    pub version: i64,
}

/// Every task instance of one run, packed: `task_id state` pairs joined by commas, as the
/// database concatenated them (task ids never hold a space or a comma); an instance of an
/// expanded mapped task (`map_index` 0 or more) is `task_id state m`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackedColumn {
    /// The run.
    pub run_id: String,
    /// `t1 success,t2 running,m1 success m,...`.
    pub packed: String,
}

/// One task instance of a [`PackedColumn`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackedCell<'a> {
    /// Its task.
    pub task_id: &'a str,
    /// Its state.
    pub state: TaskState,
    /// Whether it is one of an expanded mapped task's instances (`map_index` 0 or more).
    pub mapped: bool,
}

impl PackedColumn {
    /// Each task instance; an unreadable one is an error naming the run.
    pub fn cells(&self) -> impl Iterator<Item = Result<PackedCell<'_>, StoreError>> {
        self.packed
            .split(',')
            .filter(|pair| !pair.is_empty())
            .map(|pair| {
                let corrupt = || StoreError::Corrupt {
                    what: "task instance",
                    detail: format!("{}: {pair}", self.run_id),
                };
                let (task_id, rest) = pair.split_once(' ').ok_or_else(corrupt)?;
                let (state, mapped) = match rest.split_once(' ') {
                    Some((state, "m")) => (state, true),
                    Some(_) => return Err(corrupt()),
                    None => (rest, false),
                };
                Ok(PackedCell {
                    task_id,
                    state: parse_state(state)?,
                    mapped,
                })
            })
    }
}

/// One task instance with what its page shows.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskInstanceView {
    /// Its state.
    pub state: TaskState,
    /// Its latest try (0 before the first).
    pub try_number: i32,
    /// When its retry delay ends.
    pub next_retry_at: Option<DateTime<Utc>>,
    /// Its note.
    pub note: Option<String>,
    /// Every try, oldest first.
    pub tries: Vec<StoredTry>,
    /// Its XComs, as (key, JSON value).
    pub xcoms: Vec<(String, serde_json::Value)>,
}

const HEADER_COLUMNS: &str =
    "dag_id, run_id, run_type, state, logical_date, start_date, end_date, version";

type RawHeader = (
    String,
    String,
    String,
    String,
    i64,
    Option<i64>,
    Option<i64>,
    i64,
);

fn header_from_raw(raw: RawHeader) -> Result<RunHeader, StoreError> {
    let (dag_id, run_id, run_type, state, logical, start, end, version) = raw;
    let state = serde_json::from_value(serde_json::Value::String(state.clone())).map_err(|_| {
        StoreError::Corrupt {
            what: "run state",
            detail: state,
        }
    })?;
    Ok(RunHeader {
        dag_id,
        run_id,
        run_type,
        state,
        logical_date: from_db(logical)?,
        start_date: opt_from_db(start)?,
        end_date: opt_from_db(end)?,
        version,
    })
}

impl Store {
    /// The latest `per_dag` runs of every DAG, newest first within each DAG (one query, on the
    /// `(dag_id, logical_date)` index).
    pub async fn ui_recent_runs(&self, per_dag: i64) -> Result<Vec<RunHeader>, StoreError> {
        let sql = self.sql_owned(format!(
            "SELECT {HEADER_COLUMNS} FROM (SELECT {HEADER_COLUMNS}, ROW_NUMBER() OVER (PARTITION BY dag_id ORDER BY logical_date DESC, id DESC) AS n \
             FROM dag_runs) AS ranked WHERE n <= $1 ORDER BY dag_id, logical_date DESC"
        ));
        let rows: Vec<RawHeader> =
            with_pool!(self, pool => sqlx::query_as(&sql).bind(per_dag).fetch_all(pool).await)
                .map_err(query("reading recent runs"))?;
        rows.into_iter().map(header_from_raw).collect()
    }

    /// A DAG's latest `limit` runs (at most [`MAX_GRID_RUNS`]), newest first.
    pub async fn ui_runs(&self, dag_id: &str, limit: i64) -> Result<Vec<RunHeader>, StoreError> {
        let sql = self.sql_owned(format!(
            "SELECT {HEADER_COLUMNS} FROM dag_runs WHERE dag_id = $1 ORDER BY logical_date DESC, id DESC LIMIT $2"
        ));
        let limit = limit.clamp(0, MAX_GRID_RUNS);
        let rows: Vec<RawHeader> = with_pool!(self, pool => sqlx::query_as(&sql).bind(dag_id).bind(limit).fetch_all(pool).await)
            .map_err(query("reading a DAG's runs"))?;
        rows.into_iter().map(header_from_raw).collect()
    }

    /// One run's header.
    pub async fn ui_run(
        &self,
        dag_id: &str,
        run_id: &str,
    ) -> Result<Option<RunHeader>, StoreError> {
        let sql = self.sql_owned(format!(
            "SELECT {HEADER_COLUMNS} FROM dag_runs WHERE dag_id = $1 AND run_id = $2"
        ));
        let row: Option<RawHeader> = with_pool!(self, pool => sqlx::query_as(&sql).bind(dag_id).bind(run_id).fetch_optional(pool).await)
            .map_err(query("reading a run"))?;
        row.map(header_from_raw).transpose()
    }

    /// The task instances of the named runs of a DAG, one packed column per run (runs without
    /// task instances are left out). One query, on the task instances' primary key.
    pub async fn ui_grid_columns(
        &self,
        dag_id: &str,
        run_ids: &[String],
    ) -> Result<Vec<PackedColumn>, StoreError> {
        if run_ids.is_empty() {
            return Ok(Vec::new());
        }
        let aggregate = match self.kind() {
            EngineKind::Sqlite => {
                "group_concat(task_id || ' ' || state || CASE WHEN map_index >= 0 THEN ' m' ELSE '' END, ',')"
            }
            EngineKind::Postgres => {
                "string_agg(task_id || ' ' || state || CASE WHEN map_index >= 0 THEN ' m' ELSE '' END, ',')"
            }
        };
        let placeholders: Vec<String> = (0..run_ids.len()).map(|i| format!("${}", i + 2)).collect();
        let sql = self.sql_owned(format!(
            "SELECT run_id, {aggregate} FROM task_instances WHERE dag_id = $1 AND run_id IN ({}) GROUP BY run_id",
            placeholders.join(", ")
        ));
        let rows: Vec<(String, Option<String>)> = with_pool!(self, pool => {
            let mut q = sqlx::query_as(&sql).bind(dag_id);
            for run_id in run_ids {
                q = q.bind(run_id);
            }
            q.fetch_all(pool).await
        })
        .map_err(query("reading a DAG's grid"))?;
        Ok(rows
            .into_iter()
            .map(|(run_id, packed)| PackedColumn {
                run_id,
                packed: packed.unwrap_or_default(),
            })
            .collect())
    }

    /// One task instance with its tries, XComs and note; `None` when there is no such instance.
    pub async fn ui_task_instance(
        &self,
        dag_id: &str,
        run_id: &str,
        task_id: &str,
        map_index: i32,
    ) -> Result<Option<TaskInstanceView>, StoreError> {
        let ti_sql = self.sql(
            "SELECT state, try_number, next_retry_at, note FROM task_instances \
             WHERE dag_id = $1 AND run_id = $2 AND task_id = $3 AND map_index = $4",
        );
        let ti: Option<(String, i32, Option<i64>, Option<String>)> = with_pool!(self, pool =>
            sqlx::query_as(&ti_sql).bind(dag_id).bind(run_id).bind(task_id).bind(map_index).fetch_optional(pool).await)
        .map_err(query("reading a task instance"))?;
        let Some((state, try_number, next_retry_at, note)) = ti else {
            return Ok(None);
        };
        let tries_sql = self.sql(
            "SELECT try_number, state, queued_at, start_date, end_date, failure, rendered_args FROM task_tries \
             WHERE dag_id = $1 AND run_id = $2 AND task_id = $3 AND map_index = $4 ORDER BY try_number",
        );
        type RawTry = (
            i32,
            String,
            (Option<i64>, Option<i64>, Option<i64>),
            Option<String>,
            Option<String>,
        );
        let raw: Vec<RawTry> = with_pool!(self, pool => {
            let rows = sqlx::query(&tries_sql).bind(dag_id).bind(run_id).bind(task_id).bind(map_index).fetch_all(pool).await.map_err(query("reading tries"))?;
            rows.iter()
                .map(|r| Ok::<RawTry, sqlx::Error>((r.try_get(0)?, r.try_get(1)?, (r.try_get(2)?, r.try_get(3)?, r.try_get(4)?), r.try_get(5)?, r.try_get(6)?)))
                .collect::<Result<_, _>>()
                .map_err(query("reading tries"))?
        });
        let tries = raw
            .into_iter()
            .map(|(number, state, (queued, start, end), failure, args)| {
                Ok(StoredTry {
                    task_id: task_id.to_owned(),
                    map_index,
                    try_number: number,
                    state: parse_state(&state)?,
                    queued_at: opt_from_db(queued)?,
                    start_date: opt_from_db(start)?,
                    end_date: opt_from_db(end)?,
                    failure,
                    rendered_args: args.map(|text| {
                        serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text))
                    }),
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let xcom_sql = self.sql(
            "SELECT key, value FROM xcoms WHERE dag_id = $1 AND run_id = $2 AND task_id = $3 AND map_index = $4 ORDER BY key",
        );
        let xcoms: Vec<(String, String)> = with_pool!(self, pool =>
            sqlx::query_as(&xcom_sql).bind(dag_id).bind(run_id).bind(task_id).bind(map_index).fetch_all(pool).await)
        .map_err(query("reading XComs"))?;
        Ok(Some(TaskInstanceView {
            state: parse_state(&state)?,
            try_number,
            next_retry_at: opt_from_db(next_retry_at)?,
            note,
            tries,
            xcoms: xcoms
                .into_iter()
                .map(|(key, text)| {
                    let value =
                        serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
                    (key, value)
                })
                .collect(),
        }))
    }

    /// The data interval of every DAG's latest scheduled run, by DAG (where each schedule
    /// continues from), in one query.
    pub async fn ui_latest_scheduled_intervals(
        &self,
    ) -> Result<Vec<(String, DateTime<Utc>, DateTime<Utc>)>, StoreError> {
        let sql = self.sql(
            "SELECT r.dag_id, r.data_interval_start, r.data_interval_end FROM dag_runs r \
             JOIN (SELECT dag_id, MAX(logical_date) AS latest FROM dag_runs WHERE run_type = 'scheduled' GROUP BY dag_id) m \
             ON r.dag_id = m.dag_id AND r.logical_date = m.latest WHERE r.run_type = 'scheduled'",
        );
        let rows: Vec<(String, i64, i64)> =
            with_pool!(self, pool => sqlx::query_as(&sql).fetch_all(pool).await)
                .map_err(query("reading the latest scheduled runs"))?;
        rows.into_iter()
            .map(|(dag, start, end)| Ok((dag, from_db(start)?, from_db(end)?)))
            .collect()
    }
}

/// A connection as the UI lists it: never its password or extra, only whether it has them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionView {
    /// Its id.
    pub conn_id: String,
    /// Its type.
    pub conn_type: String,
    /// Its host.
    pub host: Option<String>,
    /// Its login.
    pub login: Option<String>,
    /// Its schema.
    pub schema: Option<String>,
    /// Its port.
    pub port: Option<i32>,
    /// Whether a password is stored (it is never read here).
    pub has_password: bool,
    /// Whether an extra is stored (it may hold secrets, so it is never read here).
    pub has_extra: bool,
    /// Its description.
    pub description: Option<String>,
}

impl Store {
    /// Every connection, by id, without decrypting anything.
    pub async fn ui_connections(&self) -> Result<Vec<ConnectionView>, StoreError> {
        let sql = self.sql(
            "SELECT conn_id, conn_type, host, login, schema_name, port, password_encrypted IS NOT NULL, extra_encrypted IS NOT NULL, description \
             FROM connections ORDER BY conn_id",
        );
        type Raw = (
            String,
            String,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<i32>,
            bool,
            bool,
            Option<String>,
        );
        let rows: Vec<Raw> = with_pool!(self, pool => sqlx::query_as(&sql).fetch_all(pool).await)
            .map_err(query("listing connections"))?;
        Ok(rows
            .into_iter()
            .map(
                |(
                    conn_id,
                    conn_type,
                    host,
                    login,
                    schema,
                    port,
                    has_password,
                    has_extra,
                    description,
                )| ConnectionView {
                    conn_id,
                    conn_type,
                    host,
                    login,
                    schema,
                    port,
                    has_password,
                    has_extra,
                    description,
                },
            )
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_packed_column_reads_back_as_cells() {
        let column = PackedColumn {
            run_id: "r".into(),
            packed: "a success,b.c up_for_retry,m failed m".into(),
        };
        let cells: Vec<_> = column
            .cells()
            .map(|c| c.map(|c| (c.task_id, c.state, c.mapped)))
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            cells,
            vec![
                ("a", TaskState::Success, false),
                ("b.c", TaskState::UpForRetry, false),
                ("m", TaskState::Failed, true)
            ]
        );
        let bad = PackedColumn {
            run_id: "r".into(),
            packed: "nostate".into(),
        };
        assert!(bad.cells().next().unwrap().is_err());
        let odd = PackedColumn {
            run_id: "r".into(),
            packed: "a success x".into(),
        };
        assert!(odd.cells().next().unwrap().is_err());
    }
}
