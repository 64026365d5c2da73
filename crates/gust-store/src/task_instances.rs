//! Task instances: created with their run, moved only by compare-and-set.

use chrono::{DateTime, Utc};
use gust_core::state::TaskState;
use sqlx::Row;

use crate::error::query;
use crate::time::{opt_from_db, to_db};
use crate::{Store, StoreError, with_pool};

/// A stored task instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredTaskInstance {
    /// The DAG.
    pub dag_id: String,
    /// The run.
    pub run_id: String,
    /// The task.
    pub task_id: String,
    /// Its state.
    pub state: TaskState,
    /// Its latest try (0 before the first).
    pub try_number: i32,
    /// When its retry delay ends (in `up_for_retry`).
    pub next_retry_at: Option<DateTime<Utc>>,
    /// The row's version, for compare-and-set.
    pub version: i64,
}

pub(crate) fn parse_state(text: &str) -> Result<TaskState, StoreError> {
    TaskState::ALL
        .into_iter()
        .find(|s| s.as_str() == text)
        .ok_or_else(|| StoreError::Corrupt {
            what: "task state",
            detail: text.to_owned(),
        })
}

impl Store {
    /// Creates the run's task instances in state `none`; existing ones are left alone.
    pub async fn create_task_instances(
        &self,
        dag_id: &str,
        run_id: &str,
        task_ids: &[&str],
    ) -> Result<(), StoreError> {
        let sql = self.sql(
            "INSERT INTO task_instances (dag_id, run_id, task_id, state) VALUES ($1, $2, $3, 'none') ON CONFLICT DO NOTHING",
        );
        with_pool!(self, pool => {
            let mut tx = pool.begin().await.map_err(query("creating task instances"))?;
            for task_id in task_ids {
                sqlx::query(&sql).bind(dag_id).bind(run_id).bind(*task_id).execute(&mut *tx).await.map_err(query("creating task instances"))?;
            }
            tx.commit().await.map_err(query("creating task instances"))
        })
    }

    /// The run's task instances, by task id.
    pub async fn task_instances(
        &self,
        dag_id: &str,
        run_id: &str,
    ) -> Result<Vec<StoredTaskInstance>, StoreError> {
        let sql = self.sql(
            "SELECT task_id, state, try_number, next_retry_at, version FROM task_instances WHERE dag_id = $1 AND run_id = $2 ORDER BY task_id",
        );
        type Raw = (String, String, i32, Option<i64>, i64);
        let rows: Vec<Raw> = with_pool!(self, pool => {
            let rows = sqlx::query(&sql).bind(dag_id).bind(run_id).fetch_all(pool).await.map_err(query("reading task instances"))?;
            rows.iter()
                .map(|r| Ok::<_, sqlx::Error>((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?, r.try_get(4)?)))
                .collect::<Result<_, _>>()
                .map_err(query("reading task instances"))?
        });
        rows.into_iter()
            .map(|(task_id, state, try_number, next_retry_at, version)| {
                Ok(StoredTaskInstance {
                    dag_id: dag_id.to_owned(),
                    run_id: run_id.to_owned(),
                    task_id,
                    state: parse_state(&state)?,
                    try_number,
                    next_retry_at: opt_from_db(next_retry_at)?,
                    version,
                })
            })
            .collect()
    }

    /// Moves a task instance from the state and version it was read at to `to`; a move to
    /// `queued` starts a new try. `false` when another writer moved it first: re-read, decide
    /// again.
    pub async fn transition_task_instance(
        &self,
        ti: &StoredTaskInstance,
        to: TaskState,
    ) -> Result<bool, StoreError> {
        let sql = self.sql(
            "UPDATE task_instances SET state = $1, version = version + 1, \
             try_number = CASE WHEN $2 = 'queued' THEN try_number + 1 ELSE try_number END \
             WHERE dag_id = $3 AND run_id = $4 AND task_id = $5 AND state = $6 AND version = $7",
        );
        let done = with_pool!(self, pool => sqlx::query(&sql)
            .bind(to.as_str())
            .bind(to.as_str())
            .bind(&ti.dag_id)
            .bind(&ti.run_id)
            .bind(&ti.task_id)
            .bind(ti.state.as_str())
            .bind(ti.version)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()))
        .map_err(query("moving a task instance"))?;
        Ok(done == 1)
    }
}

impl Store {
    /// Clears task instances so they run again (`gust tasks clear`): back to `none`, and their
    /// run back to `queued` if it had finished. Its version changes either way, which tells the
    /// scheduler holding the run to re-read it (and kill the tries of cleared instances).
    /// Returns how many instances were cleared.
    pub async fn clear_task_instances(
        &self,
        dag_id: &str,
        run_id: &str,
        task_ids: &[String],
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let clear = self.sql(
            "UPDATE task_instances SET state = 'none', next_retry_at = NULL, version = version + 1 \
             WHERE dag_id = $1 AND run_id = $2 AND task_id = $3",
        );
        let touch = self.sql(
            "UPDATE dag_runs SET version = version + 1, end_date = NULL, queued_at = CASE WHEN state IN ('success', 'failed') THEN $3 ELSE queued_at END, \
             state = CASE WHEN state IN ('success', 'failed') THEN 'queued' ELSE state END \
             WHERE dag_id = $1 AND run_id = $2",
        );
        with_pool!(self, pool => {
            let mut tx = pool.begin().await.map_err(query("clearing task instances"))?;
            let mut cleared = 0;
            for task_id in task_ids {
                cleared += sqlx::query(&clear).bind(dag_id).bind(run_id).bind(task_id).execute(&mut *tx).await
                    .map_err(query("clearing task instances"))?.rows_affected();
            }
            if cleared > 0 {
                sqlx::query(&touch).bind(dag_id).bind(run_id).bind(to_db(now)).execute(&mut *tx).await.map_err(query("clearing task instances"))?;
            }
            tx.commit().await.map_err(query("clearing task instances"))?;
            Ok(cleared)
        })
    }
}
