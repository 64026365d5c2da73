//! DAGs as last parsed: definition, fingerprint, paused flag.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::Row;

use crate::error::query;
use crate::time::{from_db, to_db};
use crate::{Store, StoreError, with_pool};

/// A DAG's stored record.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredDag {
    /// The DAG's id.
    pub dag_id: String,
    /// The file it came from.
    pub fileloc: String,
    /// Its definition, as JSON text (kept as text: a large DAG's definition is megabytes of
    /// JSON, which a `Value` tree would multiply).
    pub definition: String,
    /// A digest of the definition.
    pub fingerprint: String,
    /// Whether the scheduler leaves it alone.
    pub is_paused: bool,
    /// Whether its file has errors and this is its last good version.
    pub is_stale: bool,
    /// When it was last parsed.
    pub last_parsed: DateTime<Utc>,
    /// How long its file took to parse then (`None`: not measured).
    pub last_parse_duration: Option<Duration>,
}

impl Store {
    /// Records a parsed DAG; a new DAG starts paused when `paused_if_new`. The paused flag of a
    /// known DAG is left as users set it. A definition whose fingerprint is new is a new
    /// version of the DAG ([`Store::record_dag_version`]).
    pub async fn upsert_dag(&self, dag: &StoredDag, paused_if_new: bool) -> Result<(), StoreError> {
        let sql = self.sql(
            "INSERT INTO dags (dag_id, fileloc, definition, fingerprint, is_paused, is_stale, last_parsed, last_parse_duration) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (dag_id) DO UPDATE SET fileloc = excluded.fileloc, definition = excluded.definition, \
             fingerprint = excluded.fingerprint, is_stale = excluded.is_stale, last_parsed = excluded.last_parsed, \
             last_parse_duration = excluded.last_parse_duration",
        );
        with_pool!(self, pool => sqlx::query(&sql)
            .bind(&dag.dag_id)
            .bind(&dag.fileloc)
            .bind(&dag.definition)
            .bind(&dag.fingerprint)
            .bind(i32::from(paused_if_new))
            .bind(i32::from(dag.is_stale))
            .bind(to_db(dag.last_parsed))
            .bind(dag.last_parse_duration.map(|d| d.as_secs_f64()))
            .execute(pool)
            .await
            .map(drop))
        .map_err(query("recording a DAG"))?;
        self.record_dag_version(&dag.dag_id, &dag.fingerprint, &dag.fileloc, dag.last_parsed)
            .await
            .map(drop)
    }

    /// One DAG.
    pub async fn dag(&self, dag_id: &str) -> Result<Option<StoredDag>, StoreError> {
        let sql = self.sql("SELECT dag_id, fileloc, definition, fingerprint, is_paused, is_stale, last_parsed, last_parse_duration FROM dags WHERE dag_id = $1");
        let row = with_pool!(self, pool => sqlx::query(&sql).bind(dag_id).fetch_optional(pool).await.map_err(query("reading a DAG"))?
            .map(|row| {
                let definition: String = row.try_get("definition")?;
                Ok::<_, sqlx::Error>((row.try_get("dag_id")?, row.try_get("fileloc")?, definition, row.try_get("fingerprint")?,
                    row.try_get::<i32, _>("is_paused")?, row.try_get::<i32, _>("is_stale")?, row.try_get::<i64, _>("last_parsed")?,
                    row.try_get::<Option<f64>, _>("last_parse_duration")?))
            })
            .transpose()
            .map_err(query("reading a DAG"))?);
        row.map(
            |(dag_id, fileloc, definition, fingerprint, paused, stale, parsed, took)| {
                Ok(StoredDag {
                    dag_id,
                    fileloc,
                    definition,
                    fingerprint,
                    is_paused: paused != 0,
                    is_stale: stale != 0,
                    last_parsed: from_db(parsed)?,
                    last_parse_duration: parse_duration(took),
                })
            },
        )
        .transpose()
    }

    /// Pauses or unpauses a DAG; `false` when there is no such DAG.
    pub async fn set_paused(&self, dag_id: &str, paused: bool) -> Result<bool, StoreError> {
        let sql = self.sql("UPDATE dags SET is_paused = $1 WHERE dag_id = $2");
        let done = with_pool!(self, pool => sqlx::query(&sql).bind(i32::from(paused)).bind(dag_id).execute(pool).await.map(|r| r.rows_affected()))
            .map_err(query("pausing a DAG"))?;
        Ok(done == 1)
    }
}

/// A DAG's stored record without its definition: what lists need, cheap to read for thousands
/// of DAGs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DagSummary {
    /// The DAG's id.
    pub dag_id: String,
    /// The file it came from.
    pub fileloc: String,
    /// A digest of the definition: equal digests, equal definitions.
    pub fingerprint: String,
    /// Whether the scheduler leaves it alone.
    pub is_paused: bool,
    /// Whether its file has errors and this is its last good version.
    pub is_stale: bool,
    /// Whether its file still defines it.
    pub is_active: bool,
    /// When it was last parsed.
    pub last_parsed: DateTime<Utc>,
    /// How long its file took to parse then (`None`: not measured).
    pub last_parse_duration: Option<Duration>,
}

/// A stored parse duration (seconds) as a duration; a negative or broken one is none.
fn parse_duration(seconds: Option<f64>) -> Option<Duration> {
    seconds.and_then(|s| Duration::try_from_secs_f64(s).ok())
}

type SummaryRow = (String, String, String, i32, i32, i32, i64, Option<f64>);

fn summary_from_row(row: SummaryRow) -> Result<DagSummary, StoreError> {
    let (dag_id, fileloc, fingerprint, paused, stale, active, parsed, took) = row;
    Ok(DagSummary {
        dag_id,
        fileloc,
        fingerprint,
        is_paused: paused != 0,
        is_stale: stale != 0,
        is_active: active != 0,
        last_parsed: from_db(parsed)?,
        last_parse_duration: parse_duration(took),
    })
}

const SUMMARY_COLUMNS: &str = "dag_id, fileloc, fingerprint, is_paused, is_stale, is_active, last_parsed, last_parse_duration";

impl Store {
    /// Every DAG's summary, by id (inactive ones too: their history is kept).
    pub async fn dag_summaries(&self) -> Result<Vec<DagSummary>, StoreError> {
        let sql = self.sql_owned(format!(
            "SELECT {SUMMARY_COLUMNS} FROM dags ORDER BY dag_id"
        ));
        let rows: Vec<SummaryRow> =
            with_pool!(self, pool => sqlx::query_as(&sql).fetch_all(pool).await)
                .map_err(query("listing DAGs"))?;
        rows.into_iter().map(summary_from_row).collect()
    }

    /// One DAG's summary.
    pub async fn dag_summary(&self, dag_id: &str) -> Result<Option<DagSummary>, StoreError> {
        let sql = self.sql_owned(format!(
            "SELECT {SUMMARY_COLUMNS} FROM dags WHERE dag_id = $1"
        ));
        let row: Option<SummaryRow> =
            with_pool!(self, pool => sqlx::query_as(&sql).bind(dag_id).fetch_optional(pool).await)
                .map_err(query("reading a DAG"))?;
        row.map(summary_from_row).transpose()
    }

    /// One DAG's definition (JSON text) with its fingerprint.
    pub async fn dag_definition(
        &self,
        dag_id: &str,
    ) -> Result<Option<(String, String)>, StoreError> {
        let sql = self.sql("SELECT fingerprint, definition FROM dags WHERE dag_id = $1");
        with_pool!(self, pool => sqlx::query_as(&sql).bind(dag_id).fetch_optional(pool).await)
            .map_err(query("reading a DAG"))
    }

    /// Deletes a DAG's record and all its history (runs, task instances, tries with their
    /// log locations, XComs, versions, backfills), as Airflow's delete does; a file that still defines it brings it back on the
    /// next parse. `false` when there was no such DAG.
    pub async fn delete_dag(&self, dag_id: &str) -> Result<bool, StoreError> {
        // The event log keeps its records, as Airflow's does (`keep_records_in_log`).
        let tables = [
            "xcoms",
            "task_reschedules",
            "task_deferrals",
            "task_tries",
            "task_instances",
            "dag_runs",
            "dag_versions",
            "backfills",
            "dags",
        ];
        let statements: Vec<String> = tables
            .iter()
            .map(|table| self.sql_owned(format!("DELETE FROM {table} WHERE dag_id = $1")))
            .collect();
        with_pool!(self, pool => {
            let mut tx = pool.begin().await.map_err(query("deleting a DAG"))?;
            let mut deleted = 0;
            for sql in &statements {
                deleted = sqlx::query(sql).bind(dag_id).execute(&mut *tx).await
                    .map_err(query("deleting a DAG"))?.rows_affected();
            }
            tx.commit().await.map_err(query("deleting a DAG"))?;
            Ok(deleted == 1)
        })
    }
}

/// One file's import errors, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportError {
    /// The file.
    pub file: String,
    /// Its problems, one line each (`FILE:LINE:COL: DAG[.TASK]: message`).
    pub problems: Vec<String>,
}

/// One file's import errors with when they were recorded, as the REST API lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportErrorRecord {
    /// The file and its problems.
    pub error: ImportError,
    /// When the file was last parsed with these problems.
    pub timestamp: DateTime<Utc>,
}

impl Store {
    /// Marks every DAG not in `present` inactive (its file is gone or no longer defines it) and
    /// the ones in it active. History of inactive DAGs is kept, as Airflow keeps it.
    pub async fn set_active_dags(&self, present: &[&str]) -> Result<(), StoreError> {
        let all: Vec<String> = {
            let sql = self.sql("SELECT dag_id FROM dags");
            with_pool!(self, pool => sqlx::query_scalar(&sql).fetch_all(pool).await)
                .map_err(query("listing DAGs"))?
        };
        let sql = self.sql("UPDATE dags SET is_active = $1 WHERE dag_id = $2");
        for dag_id in all {
            let active = i32::from(present.contains(&dag_id.as_str()));
            with_pool!(self, pool => sqlx::query(&sql).bind(active).bind(&dag_id).execute(pool).await.map(drop))
                .map_err(query("marking DAGs active"))?;
        }
        Ok(())
    }

    /// The active DAGs' ids with their paused flags, by id.
    pub async fn dag_pause_flags(&self) -> Result<Vec<(String, bool)>, StoreError> {
        let sql =
            self.sql("SELECT dag_id, is_paused FROM dags WHERE is_active = 1 ORDER BY dag_id");
        let rows: Vec<(String, i32)> =
            with_pool!(self, pool => sqlx::query_as(&sql).fetch_all(pool).await)
                .map_err(query("listing DAGs"))?;
        Ok(rows
            .into_iter()
            .map(|(id, paused)| (id, paused != 0))
            .collect())
    }

    /// Replaces the stored import errors with `errors`.
    pub async fn replace_import_errors(
        &self,
        errors: &[ImportError],
        now: chrono::DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let delete = self.sql("DELETE FROM import_errors");
        let insert =
            self.sql("INSERT INTO import_errors (file, problems, timestamp) VALUES ($1, $2, $3)");
        with_pool!(self, pool => {
            let mut tx = pool.begin().await.map_err(query("recording import errors"))?;
            sqlx::query(&delete).execute(&mut *tx).await.map_err(query("recording import errors"))?;
            for error in errors {
                let problems = serde_json::Value::from(error.problems.clone()).to_string();
                sqlx::query(&insert).bind(&error.file).bind(&problems).bind(to_db(now)).execute(&mut *tx).await.map_err(query("recording import errors"))?;
            }
            tx.commit().await.map_err(query("recording import errors"))
        })
    }

    /// The stored import errors, by file.
    pub async fn import_errors(&self) -> Result<Vec<ImportError>, StoreError> {
        Ok(self
            .import_error_records()
            .await?
            .into_iter()
            .map(|record| record.error)
            .collect())
    }

    /// The stored import errors with their times, by file.
    pub async fn import_error_records(&self) -> Result<Vec<ImportErrorRecord>, StoreError> {
        let sql = self.sql("SELECT file, problems, timestamp FROM import_errors ORDER BY file");
        let rows: Vec<(String, String, i64)> =
            with_pool!(self, pool => sqlx::query_as(&sql).fetch_all(pool).await)
                .map_err(query("reading import errors"))?;
        rows.into_iter()
            .map(|(file, problems, timestamp)| {
                let problems =
                    serde_json::from_str(&problems).map_err(|e| StoreError::Corrupt {
                        what: "import errors",
                        detail: e.to_string(),
                    })?;
                Ok(ImportErrorRecord {
                    error: ImportError { file, problems },
                    timestamp: from_db(timestamp)?,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod import_error_tests {
    use super::*;

    async fn import_errors_are_replaced_and_read_with_their_time(store: Store) {
        let t = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let broken = ImportError {
            file: "/dags/b.yaml".into(),
            problems: vec!["b.yaml:1:1: bad".into(), "b.yaml:2:1: worse".into()],
        };
        store
            .replace_import_errors(std::slice::from_ref(&broken), t)
            .await
            .unwrap();
        assert_eq!(
            store.import_error_records().await.unwrap(),
            vec![ImportErrorRecord {
                error: broken.clone(),
                timestamp: t,
            }]
        );
        assert_eq!(store.import_errors().await.unwrap(), vec![broken]);
        store.replace_import_errors(&[], t).await.unwrap();
        assert!(store.import_error_records().await.unwrap().is_empty());
    }

    crate::both_engines!(import_errors_are_replaced_and_read_with_their_time);
}
