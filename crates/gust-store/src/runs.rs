//! DAG runs: created once per id (and once per scheduled interval), moved by compare-and-set.

use chrono::{DateTime, Utc};
use gust_core::state::DagRunState;
use sqlx::Row;

use crate::error::query;
use crate::time::{from_db, opt_from_db, to_db};
use crate::{Store, StoreError, with_pool};

/// Why a run exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunType {
    /// Created by the schedule.
    Scheduled,
    /// Triggered by a user or the API.
    Manual,
    /// Created by a backfill.
    Backfill,
}

impl RunType {
    fn as_str(self) -> &'static str {
        match self {
            Self::Scheduled => "scheduled",
            Self::Manual => "manual",
            Self::Backfill => "backfill",
        }
    }

    fn parse(text: &str) -> Result<Self, StoreError> {
        match text {
            "scheduled" => Ok(Self::Scheduled),
            "manual" => Ok(Self::Manual),
            "backfill" => Ok(Self::Backfill),
            other => Err(StoreError::Corrupt {
                what: "run type",
                detail: other.to_owned(),
            }),
        }
    }
}

fn parse_run_state(text: &str) -> Result<DagRunState, StoreError> {
    serde_json::from_value(serde_json::Value::String(text.to_owned())).map_err(|_| {
        StoreError::Corrupt {
            what: "run state",
            detail: text.to_owned(),
        }
    })
}

/// A run to create.
#[derive(Debug, Clone, PartialEq)]
pub struct NewRun {
    /// The DAG.
    pub dag_id: String,
    /// The run's id.
    pub run_id: String,
    /// Why it exists.
    pub run_type: RunType,
    /// Its logical date (its interval's start).
    pub logical_date: DateTime<Utc>,
    /// Its data interval.
    pub data_interval: (DateTime<Utc>, DateTime<Utc>),
    /// Its conf.
    pub conf: serde_json::Map<String, serde_json::Value>,
    /// When it was created.
    pub queued_at: DateTime<Utc>,
}

/// A stored run.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredRun {
    /// The DAG.
    pub dag_id: String,
    /// The run's id.
    pub run_id: String,
    /// Why it exists.
    pub run_type: RunType,
    /// Its state.
    pub state: DagRunState,
    /// Its logical date.
    pub logical_date: DateTime<Utc>,
    /// Its data interval.
    pub data_interval: (DateTime<Utc>, DateTime<Utc>),
    /// Its conf.
    pub conf: serde_json::Map<String, serde_json::Value>,
    /// When it was created.
    pub queued_at: DateTime<Utc>,
    /// When it started running.
    pub start_date: Option<DateTime<Utc>>,
    /// When it ended.
    pub end_date: Option<DateTime<Utc>>,
    /// The row's version, for compare-and-set.
    pub version: i64,
}

/// The columns [`StoredRun`] is read from, in the order `read_runs!` expects.
const RUN_COLUMNS: &str = "dag_id, run_id, run_type, state, logical_date, data_interval_start, data_interval_end, conf, queued_at, start_date, end_date, version";

type RawRun = (
    (String, String, String, String),
    (i64, i64, i64, String, i64),
    (Option<i64>, Option<i64>, i64),
);

/// Runs `$sql` (bound by `$bind`) and reads every row as a [`RawRun`], on either engine.
macro_rules! read_runs {
    ($store:expr, $sql:expr, $what:expr, |$q:ident| $bind:expr) => {
        with_pool!($store, pool => {
            let $q = sqlx::query(&$sql);
            let rows = $bind.fetch_all(pool).await.map_err(query($what))?;
            rows.iter()
                .map(|r| Ok::<RawRun, sqlx::Error>((
                    (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?),
                    (r.try_get(4)?, r.try_get(5)?, r.try_get(6)?, r.try_get(7)?, r.try_get(8)?),
                    (r.try_get(9)?, r.try_get(10)?, r.try_get(11)?),
                )))
                .collect::<Result<Vec<RawRun>, _>>()
                .map_err(query($what))?
        })
    };
}

fn run_from_raw(raw: RawRun) -> Result<StoredRun, StoreError> {
    let (
        (dag_id, run_id, run_type, state),
        (logical, start, end, conf, queued_at),
        (started, ended, version),
    ) = raw;
    let conf = match serde_json::from_str(&conf) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => {
            return Err(StoreError::Corrupt {
                what: "run conf",
                detail: conf,
            });
        }
    };
    Ok(StoredRun {
        dag_id,
        run_id,
        run_type: RunType::parse(&run_type)?,
        state: parse_run_state(&state)?,
        logical_date: from_db(logical)?,
        data_interval: (from_db(start)?, from_db(end)?),
        conf,
        queued_at: from_db(queued_at)?,
        start_date: opt_from_db(started)?,
        end_date: opt_from_db(ended)?,
        version,
    })
}

impl Store {
    /// Creates a queued run; `false` when a run with this id, or a scheduled run for this
    /// interval, already exists (whoever created it first wins).
    pub async fn create_run(&self, run: &NewRun) -> Result<bool, StoreError> {
        let sql = self.sql(
            "INSERT INTO dag_runs (dag_id, run_id, run_type, state, logical_date, data_interval_start, data_interval_end, conf, queued_at) \
             VALUES ($1, $2, $3, 'queued', $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
        );
        let conf = serde_json::Value::Object(run.conf.clone()).to_string();
        let created = with_pool!(self, pool => sqlx::query(&sql)
            .bind(&run.dag_id)
            .bind(&run.run_id)
            .bind(run.run_type.as_str())
            .bind(to_db(run.logical_date))
            .bind(to_db(run.data_interval.0))
            .bind(to_db(run.data_interval.1))
            .bind(&conf)
            .bind(to_db(run.queued_at))
            .execute(pool)
            .await
            .map(|r| r.rows_affected()))
        .map_err(query("creating a run"))?;
        Ok(created == 1)
    }

    /// One run.
    pub async fn run(&self, dag_id: &str, run_id: &str) -> Result<Option<StoredRun>, StoreError> {
        let sql = self.sql_owned(format!(
            "SELECT {RUN_COLUMNS} FROM dag_runs WHERE dag_id = $1 AND run_id = $2"
        ));
        let raw = read_runs!(self, sql, "reading a run", |q| q.bind(dag_id).bind(run_id));
        raw.into_iter().next().map(run_from_raw).transpose()
    }

    /// Every run still to finish (queued or running), oldest logical date first.
    pub async fn active_runs(&self) -> Result<Vec<StoredRun>, StoreError> {
        let sql = self.sql_owned(format!(
            "SELECT {RUN_COLUMNS} FROM dag_runs WHERE state IN ('queued', 'running') ORDER BY logical_date, id"
        ));
        let raw = read_runs!(self, sql, "reading active runs", |q| q);
        raw.into_iter().map(run_from_raw).collect()
    }

    /// A DAG's runs, newest logical date first, at most `limit`.
    pub async fn runs_of_dag(
        &self,
        dag_id: &str,
        limit: i64,
    ) -> Result<Vec<StoredRun>, StoreError> {
        let sql = self.sql_owned(format!(
            "SELECT {RUN_COLUMNS} FROM dag_runs WHERE dag_id = $1 ORDER BY logical_date DESC, id DESC LIMIT $2"
        ));
        let raw = read_runs!(self, sql, "reading a DAG's runs", |q| q
            .bind(dag_id)
            .bind(limit));
        raw.into_iter().map(run_from_raw).collect()
    }

    /// The run of `dag_id` just before `logical_date` (what `depends_on_past` looks at).
    pub async fn previous_run(
        &self,
        dag_id: &str,
        logical_date: DateTime<Utc>,
    ) -> Result<Option<StoredRun>, StoreError> {
        let sql = self.sql_owned(format!(
            "SELECT {RUN_COLUMNS} FROM dag_runs WHERE dag_id = $1 AND logical_date < $2 ORDER BY logical_date DESC, id DESC LIMIT 1"
        ));
        let raw = read_runs!(self, sql, "reading the previous run", |q| q
            .bind(dag_id)
            .bind(to_db(logical_date)));
        raw.into_iter().next().map(run_from_raw).transpose()
    }

    /// The data interval of the DAG's latest scheduled run: where its schedule continues from.
    pub async fn latest_scheduled_interval(
        &self,
        dag_id: &str,
    ) -> Result<Option<(DateTime<Utc>, DateTime<Utc>)>, StoreError> {
        let sql = self.sql(
            "SELECT data_interval_start, data_interval_end FROM dag_runs WHERE dag_id = $1 AND run_type = 'scheduled' \
             ORDER BY logical_date DESC LIMIT 1",
        );
        let raw: Option<(i64, i64)> =
            with_pool!(self, pool => sqlx::query_as(&sql).bind(dag_id).fetch_optional(pool).await)
                .map_err(query("reading the latest scheduled run"))?;
        raw.map(|(start, end)| Ok((from_db(start)?, from_db(end)?)))
            .transpose()
    }

    /// Moves a run from `from` (at `version`) to `to`, stamping its start or end; `false` when
    /// someone else moved it first.
    pub async fn transition_run(
        &self,
        run: &StoredRun,
        to: DagRunState,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let sql = self.sql(
            "UPDATE dag_runs SET state = $1, version = version + 1, \
             start_date = CASE WHEN $2 = 'running' AND start_date IS NULL THEN $3 ELSE start_date END, \
             end_date = CASE WHEN $2 IN ('success', 'failed') THEN $3 ELSE end_date END \
             WHERE dag_id = $4 AND run_id = $5 AND state = $6 AND version = $7",
        );
        let done = with_pool!(self, pool => sqlx::query(&sql)
            .bind(to.as_str())
            .bind(to.as_str())
            .bind(to_db(now))
            .bind(&run.dag_id)
            .bind(&run.run_id)
            .bind(run.state.as_str())
            .bind(run.version)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()))
        .map_err(query("moving a run"))?;
        Ok(done == 1)
    }
}
