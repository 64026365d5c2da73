//! Backfills (Airflow's `backfill`): a request to run a DAG over past intervals, whose runs
//! name it in `dag_runs.backfill_id`. The API creates, pauses and cancels them; whether one is
//! complete is read from its runs.

use chrono::{DateTime, Utc};
use sqlx::Row;

use crate::error::query;
use crate::time::{from_db, opt_from_db, to_db};
use crate::{Store, StoreError, with_pool};

/// What holds back a queued run of a backfill (see [`Store::backfill_gates`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackfillGate {
    /// The run's DAG.
    pub dag_id: String,
    /// The run.
    pub run_id: String,
    /// Its backfill.
    pub backfill_id: i64,
    /// The backfill is paused: its queued runs wait.
    pub paused: bool,
    /// At most this many of the backfill's runs run at once.
    pub max_active_runs: u32,
    /// How many of its runs are running.
    pub running: u32,
}

/// A backfill to record.
#[derive(Debug, Clone, PartialEq)]
pub struct NewBackfill {
    /// The DAG.
    pub dag_id: String,
    /// The first logical date asked for.
    pub from_date: DateTime<Utc>,
    /// The last logical date asked for.
    pub to_date: DateTime<Utc>,
    /// Whether runs are created newest first.
    pub run_backwards: bool,
    /// The conf every run gets (JSON object), if any.
    pub dag_run_conf: Option<serde_json::Map<String, serde_json::Value>>,
    /// `none`, `failed` or `completed`: which existing runs are run again.
    pub reprocess_behavior: String,
    /// How many of its runs may run at once.
    pub max_active_runs: i64,
    /// Who asked for it.
    pub triggering_user_name: Option<String>,
    /// When it was asked for.
    pub created_at: DateTime<Utc>,
}

/// A recorded backfill.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredBackfill {
    /// Its id.
    pub id: i64,
    /// What was asked.
    pub backfill: NewBackfill,
    /// Whether its runs not started yet wait.
    pub is_paused: bool,
    /// When it was cancelled (or recorded complete).
    pub completed_at: Option<DateTime<Utc>>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, dag_id, from_date, to_date, dag_run_conf, run_backwards, is_paused, \
                       reprocess_behavior, max_active_runs, created_at, completed_at, updated_at, \
                       triggering_user_name";

type Raw = (
    (i64, String, i64, i64, Option<String>),
    (i32, i32, String, i32),
    (i64, Option<i64>, i64, Option<String>),
);

fn from_raw(raw: Raw) -> Result<StoredBackfill, StoreError> {
    let (
        (id, dag_id, from, to, conf),
        (backwards, paused, reprocess_behavior, max_active_runs),
        (created, completed, updated, user),
    ) = raw;
    let dag_run_conf = conf
        .map(|text| match serde_json::from_str(&text) {
            Ok(serde_json::Value::Object(map)) => Ok(map),
            _ => Err(StoreError::Corrupt {
                what: "backfill conf",
                detail: format!("backfill {id}'s conf is not a JSON object"),
            }),
        })
        .transpose()?;
    Ok(StoredBackfill {
        id,
        backfill: NewBackfill {
            dag_id,
            from_date: from_db(from)?,
            to_date: from_db(to)?,
            run_backwards: backwards != 0,
            dag_run_conf,
            reprocess_behavior,
            max_active_runs: i64::from(max_active_runs),
            triggering_user_name: user,
            created_at: from_db(created)?,
        },
        is_paused: paused != 0,
        completed_at: opt_from_db(completed)?,
        updated_at: from_db(updated)?,
    })
}

macro_rules! read_backfills {
    ($store:expr, $sql:expr, $what:expr, |$q:ident| $bind:expr) => {
        with_pool!($store, pool => {
            let $q = sqlx::query(&$sql);
            let rows = $bind.fetch_all(pool).await.map_err(query($what))?;
            rows.iter()
                .map(|r| Ok::<Raw, sqlx::Error>((
                    (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?, r.try_get(4)?),
                    (r.try_get(5)?, r.try_get(6)?, r.try_get(7)?, r.try_get(8)?),
                    (r.try_get(9)?, r.try_get(10)?, r.try_get(11)?, r.try_get(12)?),
                )))
                .collect::<Result<Vec<Raw>, _>>()
                .map_err(query($what))?
        })
    };
}

impl Store {
    /// Records a backfill; answers its id.
    pub async fn create_backfill(&self, backfill: &NewBackfill) -> Result<i64, StoreError> {
        let sql = self.sql(
            "INSERT INTO backfills (dag_id, from_date, to_date, dag_run_conf, run_backwards, is_paused, \
             reprocess_behavior, max_active_runs, created_at, updated_at, triggering_user_name) \
             VALUES ($1, $2, $3, $4, $5, 0, $6, $7, $8, $8, $9) RETURNING id",
        );
        let conf = backfill
            .dag_run_conf
            .as_ref()
            .map(|c| serde_json::Value::Object(c.clone()).to_string());
        let max_active = i32::try_from(backfill.max_active_runs).unwrap_or(i32::MAX);
        with_pool!(self, pool => sqlx::query_scalar(&sql)
            .bind(&backfill.dag_id)
            .bind(to_db(backfill.from_date))
            .bind(to_db(backfill.to_date))
            .bind(conf)
            .bind(i32::from(backfill.run_backwards))
            .bind(&backfill.reprocess_behavior)
            .bind(max_active)
            .bind(to_db(backfill.created_at))
            .bind(&backfill.triggering_user_name)
            .fetch_one(pool)
            .await)
        .map_err(query("recording a backfill"))
    }

    /// One backfill.
    pub async fn backfill(&self, id: i64) -> Result<Option<StoredBackfill>, StoreError> {
        let sql = self.sql_owned(format!("SELECT {COLUMNS} FROM backfills WHERE id = $1"));
        let raw = read_backfills!(self, sql, "reading a backfill", |q| q.bind(id));
        raw.into_iter().next().map(from_raw).transpose()
    }

    /// A DAG's backfills, oldest first.
    pub async fn backfills_of_dag(&self, dag_id: &str) -> Result<Vec<StoredBackfill>, StoreError> {
        let sql = self.sql_owned(format!(
            "SELECT {COLUMNS} FROM backfills WHERE dag_id = $1 ORDER BY id"
        ));
        let raw = read_backfills!(self, sql, "listing backfills", |q| q.bind(dag_id));
        raw.into_iter().map(from_raw).collect()
    }

    /// Pauses or unpauses a backfill not completed; `false` when it is completed or missing.
    pub async fn set_backfill_paused(
        &self,
        id: i64,
        paused: bool,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let sql = self.sql(
            "UPDATE backfills SET is_paused = $2, updated_at = $3 WHERE id = $1 AND completed_at IS NULL",
        );
        let done = with_pool!(self, pool => sqlx::query(&sql).bind(id).bind(i32::from(paused)).bind(to_db(now))
            .execute(pool).await.map(|r| r.rows_affected()))
        .map_err(query("pausing a backfill"))?;
        Ok(done == 1)
    }

    /// Records a backfill complete at `now` (paused, as Airflow's cancel leaves it); `false`
    /// when it already was.
    pub async fn complete_backfill(&self, id: i64, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let sql = self.sql(
            "UPDATE backfills SET is_paused = 1, completed_at = $2, updated_at = $2 \
             WHERE id = $1 AND completed_at IS NULL",
        );
        let done = with_pool!(self, pool => sqlx::query(&sql).bind(id).bind(to_db(now))
            .execute(pool).await.map(|r| r.rows_affected()))
        .map_err(query("completing a backfill"))?;
        Ok(done == 1)
    }

    /// Names `backfill_id` as the backfill of run `run_id` of `dag_id`.
    pub async fn set_run_backfill(
        &self,
        dag_id: &str,
        run_id: &str,
        backfill_id: i64,
    ) -> Result<(), StoreError> {
        let sql =
            self.sql("UPDATE dag_runs SET backfill_id = $3 WHERE dag_id = $1 AND run_id = $2");
        with_pool!(self, pool => sqlx::query(&sql).bind(dag_id).bind(run_id).bind(backfill_id)
            .execute(pool).await.map(drop))
        .map_err(query("tagging a backfill run"))
    }

    /// What holds back the queued runs of backfills still to complete, by (DAG, run): their
    /// backfill, whether it is paused, its `max_active_runs`, and how many of its runs are
    /// running. Runs outside any backfill are not listed.
    pub async fn backfill_gates(&self) -> Result<Vec<BackfillGate>, StoreError> {
        let sql = "SELECT r.dag_id, r.run_id, b.id, b.is_paused, b.max_active_runs, \
                   (SELECT COUNT(*) FROM dag_runs o WHERE o.backfill_id = b.id AND o.state = 'running') \
                   FROM dag_runs r JOIN backfills b ON b.id = r.backfill_id \
                   WHERE r.state = 'queued' AND b.completed_at IS NULL";
        let rows = with_pool!(self, pool => {
            let rows = sqlx::query(sql).fetch_all(pool).await.map_err(query("reading backfill gates"))?;
            rows.iter()
                .map(|r| Ok::<_, sqlx::Error>(BackfillGate {
                    dag_id: r.try_get(0)?,
                    run_id: r.try_get(1)?,
                    backfill_id: r.try_get(2)?,
                    paused: r.try_get::<i32, _>(3)? != 0,
                    max_active_runs: u32::try_from(r.try_get::<i32, _>(4)?).unwrap_or(0),
                    running: u32::try_from(r.try_get::<i64, _>(5)?).unwrap_or(u32::MAX),
                }))
                .collect::<Result<Vec<_>, _>>()
                .map_err(query("reading backfill gates"))?
        });
        Ok(rows)
    }

    /// The runs of a backfill: `(run_id, state, end_date)`.
    pub async fn backfill_runs(
        &self,
        backfill_id: i64,
    ) -> Result<Vec<(String, String, Option<DateTime<Utc>>)>, StoreError> {
        let sql = self.sql(
            "SELECT run_id, state, end_date FROM dag_runs WHERE backfill_id = $1 ORDER BY logical_date",
        );
        let rows: Vec<(String, String, Option<i64>)> =
            with_pool!(self, pool => sqlx::query_as(&sql)
            .bind(backfill_id).fetch_all(pool).await)
            .map_err(query("reading a backfill's runs"))?;
        rows.into_iter()
            .map(|(run_id, state, end)| Ok((run_id, state, opt_from_db(end)?)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{NewRun, RunType};

    async fn a_backfill_is_recorded_paused_tagged_and_completed(store: Store) {
        let t = |s| DateTime::from_timestamp(s, 0).unwrap();
        let new = NewBackfill {
            dag_id: "etl".into(),
            from_date: t(0),
            to_date: t(86_400),
            run_backwards: true,
            dag_run_conf: Some(serde_json::json!({"a": 1}).as_object().unwrap().clone()),
            reprocess_behavior: "failed".into(),
            max_active_runs: 3,
            triggering_user_name: Some("ada".into()),
            created_at: t(100),
        };
        let id = store.create_backfill(&new).await.unwrap();
        let stored = store.backfill(id).await.unwrap().unwrap();
        assert_eq!(stored.backfill, new);
        assert!(!stored.is_paused);
        assert_eq!((stored.completed_at, stored.updated_at), (None, t(100)));
        assert!(store.set_backfill_paused(id, true, t(200)).await.unwrap());
        assert!(store.backfill(id).await.unwrap().unwrap().is_paused);

        let run = NewRun {
            dag_id: "etl".into(),
            run_id: "backfill__1".into(),
            run_type: RunType::Backfill,
            logical_date: t(0),
            data_interval: (t(0), t(86_400)),
            conf: serde_json::Map::new(),
            queued_at: t(100),
        };
        assert!(store.create_run(&run).await.unwrap());
        store
            .set_run_backfill("etl", "backfill__1", id)
            .await
            .unwrap();
        assert_eq!(
            store.backfill_runs(id).await.unwrap(),
            vec![("backfill__1".to_owned(), "queued".to_owned(), None)]
        );

        assert!(store.complete_backfill(id, t(300)).await.unwrap());
        assert!(!store.complete_backfill(id, t(400)).await.unwrap());
        assert!(!store.set_backfill_paused(id, false, t(500)).await.unwrap());
        let done = store.backfill(id).await.unwrap().unwrap();
        assert_eq!(done.completed_at, Some(t(300)));
        assert_eq!(store.backfills_of_dag("etl").await.unwrap(), vec![done]);
        assert!(store.backfills_of_dag("other").await.unwrap().is_empty());
    }

    crate::both_engines!(a_backfill_is_recorded_paused_tagged_and_completed);
}
