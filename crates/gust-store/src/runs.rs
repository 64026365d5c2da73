//! DAG runs: created once per id (and once per scheduled interval), moved by compare-and-set.

use chrono::{DateTime, Utc};
use gust_core::state::DagRunState;
use sqlx::Row;

use crate::error::query;
use crate::time::{from_db, opt_from_db, to_db};
use crate::{Store, StoreError, with_pool};

/// Bounds on one time column of a listing (each bound optional).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimeRange {
    /// At or after.
    pub gte: Option<DateTime<Utc>>,
    /// After.
    pub gt: Option<DateTime<Utc>>,
    /// At or before.
    pub lte: Option<DateTime<Utc>>,
    /// Before.
    pub lt: Option<DateTime<Utc>>,
}

/// Which runs a listing wants; empty fields filter nothing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunFilter {
    /// Only these DAGs (`None`: every DAG).
    pub dag_ids: Option<Vec<String>>,
    /// Only these runs (by run id).
    pub run_ids: Vec<String>,
    /// Only runs in these states.
    pub states: Vec<DagRunState>,
    /// Only runs of these types.
    pub run_types: Vec<RunType>,
    /// Only runs of these exact logical dates.
    pub logical_dates: Vec<DateTime<Utc>>,
    /// By logical date.
    pub logical_date: TimeRange,
    /// By the time the run may start (its data interval's end).
    pub run_after: TimeRange,
    /// By start date.
    pub start_date: TimeRange,
    /// By end date.
    pub end_date: TimeRange,
}

/// A column runs can be listed in the order of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunOrder {
    /// Creation order.
    Id,
    /// State name.
    State,
    /// DAG id.
    DagId,
    /// Run id.
    RunId,
    /// Logical date.
    LogicalDate,
    /// When the run may start.
    RunAfter,
    /// Start date.
    StartDate,
    /// End date.
    EndDate,
}

impl RunOrder {
    fn column(self) -> &'static str {
        match self {
            Self::Id => "id",
            Self::State => "state",
            Self::DagId => "dag_id",
            Self::RunId => "run_id",
            Self::LogicalDate => "logical_date",
            Self::RunAfter => "data_interval_end",
            Self::StartDate => "start_date",
            Self::EndDate => "end_date",
        }
    }
}

/// A value bound into an assembled statement.
pub(crate) enum Bound {
    Text(String),
    Int(i64),
}

impl Store {
    /// `SELECT COUNT(*) {from}`: how many rows an assembled `FROM ... WHERE ...` selects, its
    /// placeholders bound from `binds`.
    pub(crate) async fn count_bound(
        &self,
        from: &str,
        binds: &[Bound],
        what: &'static str,
    ) -> Result<i64, StoreError> {
        let sql = self.sql_owned(format!("SELECT COUNT(*) {from}"));
        with_pool!(self, pool => {
            let mut q = sqlx::query_scalar(&sql);
            for b in binds {
                q = match b {
                    Bound::Text(t) => q.bind(t.as_str()),
                    Bound::Int(i) => q.bind(*i),
                };
            }
            q.fetch_one(pool).await
        })
        .map_err(query(what))
    }
}

/// `column DIR, ..., id ASC`: the order of a page, ties broken by creation.
pub(crate) fn order_keys(order: impl IntoIterator<Item = (&'static str, bool)>) -> String {
    order
        .into_iter()
        .map(|(column, descending)| format!("{column} {}", if descending { "DESC" } else { "ASC" }))
        .chain(std::iter::once("id ASC".to_owned()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Appends `column IN (...)` over `values` to `clauses`, their placeholders numbered after
/// those already in `binds`; nothing when there are no values (no filter).
pub(crate) fn push_any_of(
    column: &str,
    values: Vec<Bound>,
    binds: &mut Vec<Bound>,
    clauses: &mut Vec<String>,
) {
    if values.is_empty() {
        return;
    }
    let marks: Vec<String> = values
        .into_iter()
        .map(|value| {
            binds.push(value);
            format!("${}", binds.len())
        })
        .collect();
    clauses.push(format!("{column} IN ({})", marks.join(", ")));
}

/// `filter` as a `WHERE` clause over `dag_runs`, with its values in placeholder order.
fn run_filter_sql(filter: &RunFilter) -> (String, Vec<Bound>) {
    let mut clauses: Vec<String> = Vec::new();
    let mut binds: Vec<Bound> = Vec::new();
    let mut any_of = |column: &str, values: Vec<String>, clauses: &mut Vec<String>| {
        let marks: Vec<String> = values
            .into_iter()
            .map(|v| {
                binds.push(Bound::Text(v));
                format!("${}", binds.len())
            })
            .collect();
        clauses.push(format!("{column} IN ({})", marks.join(", ")));
    };
    if let Some(dag_ids) = &filter.dag_ids {
        if dag_ids.is_empty() {
            clauses.push("1 = 0".to_owned());
        } else {
            any_of("dag_id", dag_ids.clone(), &mut clauses);
        }
    }
    if !filter.run_ids.is_empty() {
        any_of("run_id", filter.run_ids.clone(), &mut clauses);
    }
    if !filter.states.is_empty() {
        let states = filter
            .states
            .iter()
            .map(|s| s.as_str().to_owned())
            .collect();
        any_of("state", states, &mut clauses);
    }
    if !filter.run_types.is_empty() {
        let types = filter
            .run_types
            .iter()
            .map(|t| t.as_str().to_owned())
            .collect();
        any_of("run_type", types, &mut clauses);
    }
    if !filter.logical_dates.is_empty() {
        let marks: Vec<String> = filter
            .logical_dates
            .iter()
            .map(|date| {
                binds.push(Bound::Int(to_db(*date)));
                format!("${}", binds.len())
            })
            .collect();
        clauses.push(format!("logical_date IN ({})", marks.join(", ")));
    }
    for (column, range) in [
        ("logical_date", filter.logical_date),
        ("data_interval_end", filter.run_after),
        ("start_date", filter.start_date),
        ("end_date", filter.end_date),
    ] {
        for (op, bound) in [
            (">=", range.gte),
            (">", range.gt),
            ("<=", range.lte),
            ("<", range.lt),
        ] {
            if let Some(t) = bound {
                binds.push(Bound::Int(to_db(t)));
                clauses.push(format!("{column} {op} ${}", binds.len()));
            }
        }
    }
    let clause = if clauses.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", clauses.join(" AND "))
    };
    (clause, binds)
}

/// Why a run exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunType {
    /// Created by the schedule.
    Scheduled,
    /// Triggered by a user or the API.
    Manual,
    /// Created by a backfill.
    Backfill,
    /// Triggered by a task (`TriggerDagRunOperator`, through the Execution API).
    OperatorTriggered,
    /// Created by asset events meeting the DAG's asset condition.
    AssetTriggered,
}

impl RunType {
    /// The type's name as Airflow writes it.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Scheduled => "scheduled",
            Self::Manual => "manual",
            Self::Backfill => "backfill",
            Self::OperatorTriggered => "operator_triggered",
            Self::AssetTriggered => "asset_triggered",
        }
    }

    fn parse(text: &str) -> Result<Self, StoreError> {
        match text {
            "scheduled" => Ok(Self::Scheduled),
            "manual" => Ok(Self::Manual),
            "backfill" => Ok(Self::Backfill),
            "operator_triggered" => Ok(Self::OperatorTriggered),
            "asset_triggered" => Ok(Self::AssetTriggered),
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
    /// A user's note on the run.
    pub note: Option<String>,
}

/// The columns [`StoredRun`] is read from, in the order `read_runs!` expects.
const RUN_COLUMNS: &str = "dag_id, run_id, run_type, state, logical_date, data_interval_start, data_interval_end, conf, queued_at, start_date, end_date, version, note";

type RawRun = (
    (String, String, String, String),
    (i64, i64, i64, String, i64),
    (Option<i64>, Option<i64>, i64, Option<String>),
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
                    (r.try_get(9)?, r.try_get(10)?, r.try_get(11)?, r.try_get(12)?),
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
        (started, ended, version, note),
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
        note,
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

    /// Each DAG's latest run: the one created last, which Airflow's DAG list calls its last
    /// run (`last_run_state`, `last_run_start_date`).
    pub async fn latest_runs(&self) -> Result<Vec<StoredRun>, StoreError> {
        let sql = self.sql_owned(format!(
            "SELECT {RUN_COLUMNS} FROM dag_runs WHERE id IN (SELECT MAX(id) FROM dag_runs GROUP BY dag_id) ORDER BY dag_id"
        ));
        let raw = read_runs!(self, sql, "reading each DAG's latest run", |q| q);
        raw.into_iter().map(run_from_raw).collect()
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

    /// The latest successful run of `dag_id` before `logical_date` (what a task's
    /// `prev_*_success` template values and Airflow's `previous-successful-dagrun` name).
    pub async fn previous_successful_run(
        &self,
        dag_id: &str,
        logical_date: DateTime<Utc>,
    ) -> Result<Option<StoredRun>, StoreError> {
        let sql = self.sql_owned(format!(
            "SELECT {RUN_COLUMNS} FROM dag_runs WHERE dag_id = $1 AND logical_date < $2 AND state = 'success' ORDER BY logical_date DESC, id DESC LIMIT 1"
        ));
        let raw = read_runs!(self, sql, "reading the previous successful run", |q| q
            .bind(dag_id)
            .bind(to_db(logical_date)));
        raw.into_iter().next().map(run_from_raw).transpose()
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

impl Store {
    /// The runs `filter` selects, ordered by `order` (then by creation), `limit` of them after
    /// skipping `offset`, with how many match in all.
    pub async fn list_runs(
        &self,
        filter: &RunFilter,
        order: &[(RunOrder, bool)],
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<StoredRun>, i64), StoreError> {
        let (clause, binds) = run_filter_sql(filter);
        let keys = order_keys(order.iter().map(|(column, desc)| (column.column(), *desc)));
        let n = binds.len();
        let sql = self.sql_owned(format!(
            "SELECT {RUN_COLUMNS} FROM dag_runs{clause} ORDER BY {keys} LIMIT ${} OFFSET ${}",
            n + 1,
            n + 2
        ));
        let raw = read_runs!(self, sql, "listing runs", |q| {
            let mut q = q;
            for b in &binds {
                q = match b {
                    Bound::Text(t) => q.bind(t.as_str()),
                    Bound::Int(i) => q.bind(*i),
                };
            }
            q.bind(limit).bind(offset)
        });
        let total = self
            .count_bound(&format!("FROM dag_runs{clause}"), &binds, "counting runs")
            .await?;
        let runs = raw
            .into_iter()
            .map(run_from_raw)
            .collect::<Result<_, _>>()?;
        Ok((runs, total))
    }

    /// How many runs `filter` selects, counted by the database.
    pub async fn count_runs(&self, filter: &RunFilter) -> Result<i64, StoreError> {
        let (clause, binds) = run_filter_sql(filter);
        self.count_bound(&format!("FROM dag_runs{clause}"), &binds, "counting runs")
            .await
    }

    /// Sets (or removes) a run's note; `false` when there is no such run.
    pub async fn set_run_note(
        &self,
        dag_id: &str,
        run_id: &str,
        note: Option<&str>,
    ) -> Result<bool, StoreError> {
        let sql = self.sql("UPDATE dag_runs SET note = $1 WHERE dag_id = $2 AND run_id = $3");
        let done = with_pool!(self, pool => sqlx::query(&sql).bind(note).bind(dag_id).bind(run_id).execute(pool).await.map(|r| r.rows_affected()))
            .map_err(query("setting a run's note"))?;
        Ok(done == 1)
    }

    /// Deletes a run that is not running, with its task instances, tries (and where their logs are), and
    /// XComs (log files stay, as Airflow leaves them). `None` when there is no such run, `Some(false)`
    /// when it is running (a scheduler holds it).
    pub async fn delete_run(&self, dag_id: &str, run_id: &str) -> Result<Option<bool>, StoreError> {
        let delete_run = self
            .sql("DELETE FROM dag_runs WHERE dag_id = $1 AND run_id = $2 AND state <> 'running'");
        let exists = self.sql("SELECT COUNT(*) FROM dag_runs WHERE dag_id = $1 AND run_id = $2");
        let rest: Vec<String> = [
            "xcoms",
            "task_reschedules",
            "task_deferrals",
            "task_tries",
            "task_instances",
        ]
        .iter()
        .map(|table| {
            self.sql_owned(format!(
                "DELETE FROM {table} WHERE dag_id = $1 AND run_id = $2"
            ))
        })
        .collect();
        let failed = query("deleting a run");
        with_pool!(self, pool => {
            let mut tx = pool.begin().await.map_err(failed)?;
            let deleted = sqlx::query(&delete_run).bind(dag_id).bind(run_id).execute(&mut *tx).await
                .map_err(query("deleting a run"))?.rows_affected();
            if deleted == 0 {
                let found: i64 = sqlx::query_scalar(&exists).bind(dag_id).bind(run_id).fetch_one(&mut *tx).await
                    .map_err(query("deleting a run"))?;
                tx.rollback().await.map_err(query("deleting a run"))?;
                return Ok((found > 0).then_some(false));
            }
            for sql in &rest {
                sqlx::query(sql).bind(dag_id).bind(run_id).execute(&mut *tx).await
                    .map_err(query("deleting a run"))?;
            }
            tx.commit().await.map_err(query("deleting a run"))?;
            Ok(Some(true))
        })
    }

    /// Sets a run's state as a user asks (Airflow's "mark run as"), in one transaction that
    /// bumps the versions of everything it changes, so a scheduler holding the run re-reads it
    /// and kills the tries no longer wanted:
    /// - `success` and `failed`, as Airflow 3 marks a run: running instances (`running`,
    ///   `up_for_reschedule`) take that state, the others not finished become `skipped`, and
    ///   finished ones keep theirs;
    /// - `queued`: only the run changes; the scheduler starts it again.
    ///
    /// Live tries of changed instances are ended in their history with the new state. `false`
    /// when there is no such run.
    pub async fn mark_run(
        &self,
        dag_id: &str,
        run_id: &str,
        to: DagRunState,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        // Instances are changed before the run, so a scheduler never sees the run finished with
        // its instances unchanged. `$1` is the instance state, `$2..` the run and the states moved.
        let running = "state IN ('running', 'up_for_reschedule')";
        let pending = "state IN ('none', 'scheduled', 'queued', 'up_for_retry')";
        let instance_moves: Vec<(&str, &str)> = match to {
            DagRunState::Success => vec![("success", running), ("skipped", pending)],
            DagRunState::Failed => vec![("failed", running), ("skipped", pending)],
            DagRunState::Queued | DagRunState::Running => Vec::new(),
        };
        let end_tries = |condition: &str| {
            self.sql_owned(format!(
                "UPDATE task_tries SET state = $1, end_date = $2 WHERE dag_id = $3 AND run_id = $4 \
                 AND state IN ('queued', 'running', 'up_for_reschedule') AND EXISTS (SELECT 1 FROM task_instances ti \
                 WHERE ti.dag_id = task_tries.dag_id AND ti.run_id = task_tries.run_id \
                 AND ti.task_id = task_tries.task_id AND ti.map_index = task_tries.map_index \
                 AND ti.try_number = task_tries.try_number AND ti.{condition})"
            ))
        };
        let move_instances = |condition: &str| {
            self.sql_owned(format!(
                "UPDATE task_instances SET state = $1, next_retry_at = NULL, version = version + 1 \
                 WHERE dag_id = $2 AND run_id = $3 AND {condition}"
            ))
        };
        let statements: Vec<(&str, String, String)> = instance_moves
            .iter()
            .map(|(state, condition)| (*state, end_tries(condition), move_instances(condition)))
            .collect();
        let move_run = self.sql(
            "UPDATE dag_runs SET state = $1, version = version + 1, \
             end_date = CASE WHEN $1 IN ('success', 'failed') THEN $2 ELSE NULL END, \
             queued_at = CASE WHEN $1 = 'queued' THEN $2 ELSE queued_at END \
             WHERE dag_id = $3 AND run_id = $4",
        );
        let failed = query("marking a run");
        with_pool!(self, pool => {
            let mut tx = pool.begin().await.map_err(failed)?;
            for (state, end_tries, move_instances) in &statements {
                sqlx::query(end_tries).bind(*state).bind(to_db(now)).bind(dag_id).bind(run_id)
                    .execute(&mut *tx).await.map_err(query("marking a run"))?;
                sqlx::query(move_instances).bind(*state).bind(dag_id).bind(run_id)
                    .execute(&mut *tx).await.map_err(query("marking a run"))?;
            }
            let moved = sqlx::query(&move_run).bind(to.as_str()).bind(to_db(now)).bind(dag_id).bind(run_id)
                .execute(&mut *tx).await.map_err(query("marking a run"))?.rows_affected();
            tx.commit().await.map_err(query("marking a run"))?;
            Ok(moved == 1)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{TaskMove, TryChange};
    use chrono::TimeZone;
    use gust_core::state::TaskState;

    fn at(hour: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, hour, 0, 0).unwrap()
    }

    fn new_run(dag: &str, run: &str, hour: u32, run_type: RunType) -> NewRun {
        NewRun {
            dag_id: dag.into(),
            run_id: run.into(),
            run_type,
            logical_date: at(hour),
            data_interval: (at(hour), at(hour + 1)),
            conf: serde_json::Map::new(),
            queued_at: at(hour),
        }
    }

    /// A run of `a` then `b` with `a` running its first try.
    async fn running_run(store: &Store, run: &str) -> StoredRun {
        store
            .create_run(&new_run("d", run, 1, RunType::Manual))
            .await
            .unwrap();
        let queued = store.run("d", run).await.unwrap().unwrap();
        assert!(
            store
                .transition_run(&queued, DagRunState::Running, at(2))
                .await
                .unwrap()
        );
        store
            .create_task_instances("d", run, &["a", "b"])
            .await
            .unwrap();
        let mv = |from, to, change| TaskMove {
            dag_id: "d".into(),
            run_id: run.into(),
            task_id: "a".into(),
            map_index: crate::UNMAPPED,
            from,
            version: 0,
            to,
            next_retry_at: None,
            try_change: change,
        };
        let queue = mv(
            TaskState::NoStatus,
            TaskState::Queued,
            Some(TryChange::Queued {
                try_number: 1,
                rendered_args: serde_json::json!({}),
                xcoms: Vec::new(),
                log_location: "/logs/a/attempt=1.log".into(),
                at: at(2),
            }),
        );
        assert_eq!(store.apply_moves(&[queue]).await.unwrap(), vec![true]);
        let mut start = mv(
            TaskState::Queued,
            TaskState::Running,
            Some(TryChange::Started {
                try_number: 1,
                at: at(2),
            }),
        );
        start.version = 1;
        assert_eq!(store.apply_moves(&[start]).await.unwrap(), vec![true]);
        store.run("d", run).await.unwrap().unwrap()
    }

    async fn runs_are_listed_filtered_sorted_and_paged(store: Store) {
        for (dag, run, hour, kind) in [
            ("d", "r1", 1, RunType::Scheduled),
            ("d", "r2", 3, RunType::Manual),
            ("e", "r3", 2, RunType::Scheduled),
        ] {
            assert!(
                store
                    .create_run(&new_run(dag, run, hour, kind))
                    .await
                    .unwrap()
            );
        }
        let ids = |runs: Vec<StoredRun>| runs.into_iter().map(|r| r.run_id).collect::<Vec<_>>();
        let all = RunFilter::default();
        let (runs, total) = store.list_runs(&all, &[], 10, 0).await.unwrap();
        assert_eq!(
            (ids(runs), total),
            (vec!["r1".into(), "r2".into(), "r3".into()], 3)
        );
        let by_date = [(RunOrder::LogicalDate, true)];
        let (runs, total) = store.list_runs(&all, &by_date, 1, 1).await.unwrap();
        assert_eq!((ids(runs), total), (vec!["r3".to_owned()], 3));
        let of_d = RunFilter {
            dag_ids: Some(vec!["d".into()]),
            logical_date: TimeRange {
                gte: Some(at(2)),
                ..TimeRange::default()
            },
            ..RunFilter::default()
        };
        assert_eq!(
            ids(store.list_runs(&of_d, &[], 10, 0).await.unwrap().0),
            vec!["r2"]
        );
        let manual_queued = RunFilter {
            states: vec![DagRunState::Queued],
            run_types: vec![RunType::Manual],
            run_after: TimeRange {
                lt: Some(at(5)),
                ..TimeRange::default()
            },
            ..RunFilter::default()
        };
        assert_eq!(
            store.list_runs(&manual_queued, &[], 10, 0).await.unwrap().1,
            1
        );
        let nothing = RunFilter {
            dag_ids: Some(Vec::new()),
            ..RunFilter::default()
        };
        assert_eq!(store.list_runs(&nothing, &[], 10, 0).await.unwrap().1, 0);
        let named = RunFilter {
            run_ids: vec!["r1".into(), "r3".into(), "nope".into()],
            ..RunFilter::default()
        };
        assert_eq!(store.count_runs(&named).await.unwrap(), 2);
        let dated = RunFilter {
            logical_dates: vec![at(2), at(5)],
            ..RunFilter::default()
        };
        assert_eq!(
            ids(store.list_runs(&dated, &[], 10, 0).await.unwrap().0),
            vec!["r3"]
        );

        assert!(
            store
                .set_run_note("d", "r1", Some("looked at"))
                .await
                .unwrap()
        );
        let r1 = store.run("d", "r1").await.unwrap().unwrap();
        assert_eq!(r1.note.as_deref(), Some("looked at"));
        assert!(!store.set_run_note("d", "nope", None).await.unwrap());
    }

    async fn only_runs_not_running_are_deleted_with_their_history(store: Store) {
        let run = running_run(&store, "live").await;
        assert_eq!(store.delete_run("d", "live").await.unwrap(), Some(false));
        assert!(
            store
                .transition_run(&run, DagRunState::Failed, at(3))
                .await
                .unwrap()
        );
        assert_eq!(store.delete_run("d", "live").await.unwrap(), Some(true));
        assert_eq!(store.run("d", "live").await.unwrap(), None);
        assert!(store.task_instances("d", "live").await.unwrap().is_empty());
        assert!(store.tries_of_run("d", "live").await.unwrap().is_empty());
        assert_eq!(
            store
                .log_location("d", "live", "a", crate::UNMAPPED, 1)
                .await
                .unwrap(),
            None
        );
        assert_eq!(store.delete_run("d", "live").await.unwrap(), None);
    }

    async fn marking_a_run_moves_its_instances_and_versions(store: Store) {
        let before = running_run(&store, "r").await;
        assert_eq!(
            store
                .log_location("d", "r", "a", crate::UNMAPPED, 1)
                .await
                .unwrap()
                .as_deref(),
            Some("/logs/a/attempt=1.log")
        );
        assert!(
            store
                .mark_run("d", "r", DagRunState::Failed, at(4))
                .await
                .unwrap()
        );
        let after = store.run("d", "r").await.unwrap().unwrap();
        assert_eq!(after.state, DagRunState::Failed);
        assert_eq!(after.end_date, Some(at(4)));
        assert!(
            after.version > before.version,
            "a holding scheduler re-reads it"
        );
        let states: Vec<(String, TaskState)> = store
            .task_instances("d", "r")
            .await
            .unwrap()
            .into_iter()
            .map(|t| (t.task_id, t.state))
            .collect();
        assert_eq!(
            states,
            vec![
                ("a".into(), TaskState::Failed),
                ("b".into(), TaskState::Skipped)
            ]
        );
        let tries = store.tries_of_run("d", "r").await.unwrap();
        assert_eq!(tries[0].state, TaskState::Failed);
        assert_eq!(tries[0].end_date, Some(at(4)));

        assert!(
            store
                .mark_run("d", "r", DagRunState::Success, at(5))
                .await
                .unwrap()
        );
        let states = |run: &'static str| {
            let store = store.clone();
            async move {
                store
                    .task_instances("d", run)
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|t| t.state)
                    .collect::<Vec<_>>()
            }
        };
        assert_eq!(
            states("r").await,
            vec![TaskState::Failed, TaskState::Skipped],
            "finished instances keep their states"
        );
        running_run(&store, "s").await;
        assert!(
            store
                .mark_run("d", "s", DagRunState::Success, at(5))
                .await
                .unwrap()
        );
        assert_eq!(
            states("s").await,
            vec![TaskState::Success, TaskState::Skipped],
            "the running instance succeeds, the one not started is skipped (Airflow 3)"
        );
        assert!(
            store
                .mark_run("d", "r", DagRunState::Queued, at(6))
                .await
                .unwrap()
        );
        let queued = store.run("d", "r").await.unwrap().unwrap();
        assert_eq!((queued.state, queued.end_date), (DagRunState::Queued, None));
        assert_eq!(queued.queued_at, at(6));
        assert!(
            !store
                .mark_run("d", "nope", DagRunState::Failed, at(6))
                .await
                .unwrap()
        );
    }

    crate::both_engines!(
        runs_are_listed_filtered_sorted_and_paged,
        only_runs_not_running_are_deleted_with_their_history,
        marking_a_run_moves_its_instances_and_versions,
    );
}
