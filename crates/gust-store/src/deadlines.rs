//! Deadlines of runs (Airflow's `deadline` table): written when a scheduler first sees a run
//! whose DAG has deadline alerts, deleted while pending when the run finishes in time, and
//! claimed once missed, by one conditional UPDATE, so that exactly one scheduler sends its
//! notifiers, whatever restarts or other schedulers there are.

use chrono::{DateTime, Utc};
use gust_core::notify::Notifier;
use sqlx::Row;

use crate::error::query;
use crate::time::{from_db, to_db};
use crate::{Store, StoreError, with_pool};

/// A run's deadline to record.
#[derive(Debug, Clone, PartialEq)]
pub struct NewDeadline {
    /// The DAG.
    pub dag_id: String,
    /// The run.
    pub run_id: String,
    /// Which of the DAG's alerts (its place in `deadline`), so a run has each once.
    pub alert_index: i32,
    /// The alert's name, if it has one.
    pub alert_name: Option<String>,
    /// Airflow's name of its reference (`DagRunQueuedAtDeadline`...).
    pub reference_type: String,
    /// When the run must have finished by.
    pub deadline_time: DateTime<Utc>,
    /// What to send when it has not.
    pub notifiers: Vec<Notifier>,
    /// When it was recorded.
    pub created_at: DateTime<Utc>,
}

/// A recorded deadline.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredDeadline {
    /// Its id.
    pub id: i64,
    /// What was recorded.
    pub deadline: NewDeadline,
    /// Whether it passed before the run finished (and its notifiers were sent).
    pub missed: bool,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, dag_id, run_id, alert_index, alert_name, reference_type, \
                       deadline_time, callback, missed, created_at, updated_at";

/// Reads a row of `COLUMNS` (a macro: the row types of the two engines differ).
macro_rules! raw {
    ($row:expr) => {
        (|| -> Result<Raw, sqlx::Error> {
            let row = $row;
            Ok(Raw {
                id: row.try_get(0)?,
                dag_id: row.try_get(1)?,
                run_id: row.try_get(2)?,
                alert_index: row.try_get(3)?,
                alert_name: row.try_get(4)?,
                reference_type: row.try_get(5)?,
                deadline_time: row.try_get(6)?,
                callback: row.try_get(7)?,
                missed: row.try_get(8)?,
                created_at: row.try_get(9)?,
                updated_at: row.try_get(10)?,
            })
        })()
    };
}

impl Store {
    /// Records `deadlines`; one already recorded for its run and alert is kept as it was (a
    /// restarted scheduler computes them again).
    pub async fn create_deadlines(&self, deadlines: &[NewDeadline]) -> Result<(), StoreError> {
        let sql = self.sql(
            "INSERT INTO deadlines (dag_id, run_id, alert_index, alert_name, reference_type, \
             deadline_time, callback, missed, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, 0, $8, $8) \
             ON CONFLICT (dag_id, run_id, alert_index) DO NOTHING",
        );
        for d in deadlines {
            let callback =
                serde_json::to_string(&d.notifiers).map_err(|err| StoreError::Corrupt {
                    what: "deadline callback",
                    detail: err.to_string(),
                })?;
            with_pool!(self, pool => sqlx::query(&sql)
                .bind(&d.dag_id)
                .bind(&d.run_id)
                .bind(d.alert_index)
                .bind(&d.alert_name)
                .bind(&d.reference_type)
                .bind(to_db(d.deadline_time))
                .bind(&callback)
                .bind(to_db(d.created_at))
                .execute(pool)
                .await
                .map(drop))
            .map_err(query("recording a deadline"))?;
        }
        Ok(())
    }

    /// The deadlines of a run not missed yet, soonest first.
    pub async fn pending_deadlines(
        &self,
        dag_id: &str,
        run_id: &str,
    ) -> Result<Vec<StoredDeadline>, StoreError> {
        let sql = self.sql_owned(format!(
            "SELECT {COLUMNS} FROM deadlines WHERE dag_id = $1 AND run_id = $2 AND missed = 0 \
             ORDER BY deadline_time, id"
        ));
        let rows = with_pool!(self, pool => {
            let rows = sqlx::query(&sql)
                .bind(dag_id)
                .bind(run_id)
                .fetch_all(pool)
                .await
                .map_err(query("reading deadlines"))?;
            rows.iter().map(|row| raw!(row)).collect::<Result<Vec<Raw>, _>>().map_err(query("reading deadlines"))?
        });
        rows.into_iter().map(Raw::into_stored).collect()
    }

    /// Marks deadline `id` missed, if no one has: `true` for the one caller that did, who then
    /// sends its notifiers.
    pub async fn claim_deadline(&self, id: i64, at: DateTime<Utc>) -> Result<bool, StoreError> {
        let sql = self
            .sql("UPDATE deadlines SET missed = 1, updated_at = $1 WHERE id = $2 AND missed = 0");
        with_pool!(self, pool => sqlx::query(&sql)
            .bind(to_db(at))
            .bind(id)
            .execute(pool)
            .await
            .map(|r| r.rows_affected() == 1))
        .map_err(query("claiming a deadline"))
    }

    /// Deletes a run's deadlines not missed (it finished in time, as Airflow prunes them); how
    /// many there were.
    pub async fn delete_pending_deadlines(
        &self,
        dag_id: &str,
        run_id: &str,
    ) -> Result<u64, StoreError> {
        let sql =
            self.sql("DELETE FROM deadlines WHERE dag_id = $1 AND run_id = $2 AND missed = 0");
        with_pool!(self, pool => sqlx::query(&sql)
            .bind(dag_id)
            .bind(run_id)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()))
        .map_err(query("deleting a run's deadlines"))
    }

    /// The deadlines of a DAG (all DAGs for `None`), of one run when `run_id` is given, only
    /// missed ones (or only pending ones) when `missed` says so, soonest first, at most `limit`
    /// after `offset`, with how many there are in all.
    pub async fn deadlines(
        &self,
        dag_id: Option<&str>,
        run_id: Option<&str>,
        missed: Option<bool>,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<StoredDeadline>, i64), StoreError> {
        let filter = "($1 IS NULL OR dag_id = $1) AND ($2 IS NULL OR run_id = $2) \
                      AND ($3 IS NULL OR missed = $3)";
        let sql = self.sql_owned(format!(
            "SELECT {COLUMNS} FROM deadlines WHERE {filter} ORDER BY deadline_time, id \
             LIMIT $4 OFFSET $5"
        ));
        let count_sql = self.sql_owned(format!("SELECT COUNT(*) FROM deadlines WHERE {filter}"));
        let missed = missed.map(i32::from);
        let rows = with_pool!(self, pool => {
            let rows = sqlx::query(&sql)
                .bind(dag_id)
                .bind(run_id)
                .bind(missed)
                .bind(limit)
                .bind(offset)
                .fetch_all(pool)
                .await
                .map_err(query("reading deadlines"))?;
            rows.iter().map(|row| raw!(row)).collect::<Result<Vec<Raw>, _>>().map_err(query("reading deadlines"))?
        });
        let total: i64 = with_pool!(self, pool => sqlx::query_scalar(&count_sql)
            .bind(dag_id)
            .bind(run_id)
            .bind(missed)
            .fetch_one(pool)
            .await)
        .map_err(query("counting deadlines"))?;
        let deadlines = rows
            .into_iter()
            .map(Raw::into_stored)
            .collect::<Result<_, _>>()?;
        Ok((deadlines, total))
    }

    /// How long the DAG's last `limit` successful runs took, newest first (for an
    /// average-runtime deadline).
    pub async fn recent_run_durations(
        &self,
        dag_id: &str,
        limit: i64,
    ) -> Result<Vec<chrono::Duration>, StoreError> {
        let sql = self.sql(
            "SELECT start_date, end_date FROM dag_runs WHERE dag_id = $1 AND state = 'success' \
             AND start_date IS NOT NULL AND end_date IS NOT NULL \
             ORDER BY end_date DESC LIMIT $2",
        );
        let rows: Vec<(i64, i64)> = with_pool!(self, pool => sqlx::query_as(&sql)
            .bind(dag_id)
            .bind(limit)
            .fetch_all(pool)
            .await)
        .map_err(query("reading recent run durations"))?;
        rows.into_iter()
            .map(|(start, end)| Ok(from_db(end)? - from_db(start)?))
            .collect()
    }
}

/// A row as read, before its times and callback are checked.
struct Raw {
    id: i64,
    dag_id: String,
    run_id: String,
    alert_index: i32,
    alert_name: Option<String>,
    reference_type: String,
    deadline_time: i64,
    callback: String,
    missed: i32,
    created_at: i64,
    updated_at: i64,
}

impl Raw {
    fn into_stored(self) -> Result<StoredDeadline, StoreError> {
        let notifiers =
            serde_json::from_str(&self.callback).map_err(|err| StoreError::Corrupt {
                what: "deadline callback",
                detail: err.to_string(),
            })?;
        Ok(StoredDeadline {
            id: self.id,
            missed: self.missed != 0,
            updated_at: from_db(self.updated_at)?,
            deadline: NewDeadline {
                dag_id: self.dag_id,
                run_id: self.run_id,
                alert_index: self.alert_index,
                alert_name: self.alert_name,
                reference_type: self.reference_type,
                deadline_time: from_db(self.deadline_time)?,
                notifiers,
                created_at: from_db(self.created_at)?,
            },
        })
    }
}
