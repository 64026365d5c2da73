//! Task instances: created with their run, moved only by compare-and-set.

use chrono::{DateTime, Utc};
use gust_core::state::TaskState;
use sqlx::Row;

use crate::error::query;
use crate::runs::TimeRange;
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
    /// Which of a mapped task's instances ([`UNMAPPED`] for a task that is not mapped).
    pub map_index: i32,
    /// Its state.
    pub state: TaskState,
    /// Its latest try (0 before the first).
    pub try_number: i32,
    /// When its retry delay ends (in `up_for_retry`).
    pub next_retry_at: Option<DateTime<Utc>>,
    /// The row's version, for compare-and-set.
    pub version: i64,
    /// A user's note on the instance.
    pub note: Option<String>,
    /// A mapped instance's name, its task's `map_index_template` rendered (Airflow's
    /// `rendered_map_index`); `None` until rendered or without a template.
    pub rendered_map_index: Option<String>,
}

pub use gust_core::mapping::UNMAPPED;

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
    /// Creates the run's task instances in state `none`, unmapped; existing ones are left
    /// alone.
    pub async fn create_task_instances(
        &self,
        dag_id: &str,
        run_id: &str,
        task_ids: &[&str],
    ) -> Result<(), StoreError> {
        let sql = self.sql(
            // Only for a task with no instance yet: an expanded task has none at map index -1.
            "INSERT INTO task_instances (dag_id, run_id, task_id, state) \
             SELECT CAST($1 AS TEXT), CAST($2 AS TEXT), CAST($3 AS TEXT), 'none' \
             WHERE NOT EXISTS (SELECT 1 FROM task_instances WHERE dag_id = $1 AND run_id = $2 AND task_id = $3) \
             ON CONFLICT DO NOTHING",
        );
        with_pool!(self, pool => {
            let mut tx = pool.begin().await.map_err(query("creating task instances"))?;
            for task_id in task_ids {
                sqlx::query(&sql).bind(dag_id).bind(run_id).bind(*task_id).execute(&mut *tx).await.map_err(query("creating task instances"))?;
            }
            tx.commit().await.map_err(query("creating task instances"))
        })
    }

    /// The run's task instances, by task id then map index.
    pub async fn task_instances(
        &self,
        dag_id: &str,
        run_id: &str,
    ) -> Result<Vec<StoredTaskInstance>, StoreError> {
        let sql = self.sql(
            "SELECT task_id, map_index, state, try_number, next_retry_at, version, note, rendered_map_index FROM task_instances \
             WHERE dag_id = $1 AND run_id = $2 ORDER BY task_id, map_index",
        );
        type Raw = (
            String,
            i32,
            String,
            i32,
            Option<i64>,
            i64,
            Option<String>,
            Option<String>,
        );
        let rows: Vec<Raw> = with_pool!(self, pool => {
            let rows = sqlx::query(&sql).bind(dag_id).bind(run_id).fetch_all(pool).await.map_err(query("reading task instances"))?;
            rows.iter()
                .map(|r| Ok::<_, sqlx::Error>((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?, r.try_get(4)?, r.try_get(5)?, r.try_get(6)?, r.try_get(7)?)))
                .collect::<Result<_, _>>()
                .map_err(query("reading task instances"))?
        });
        rows.into_iter()
            .map(
                |(
                    task_id,
                    map_index,
                    state,
                    try_number,
                    next_retry_at,
                    version,
                    note,
                    rendered_map_index,
                )| {
                    Ok(StoredTaskInstance {
                        dag_id: dag_id.to_owned(),
                        run_id: run_id.to_owned(),
                        task_id,
                        map_index,
                        state: parse_state(&state)?,
                        try_number,
                        next_retry_at: opt_from_db(next_retry_at)?,
                        version,
                        note,
                        rendered_map_index,
                    })
                },
            )
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
             try_number = CASE WHEN $2 = 'queued' AND state <> 'up_for_reschedule' THEN try_number + 1 ELSE try_number END \
             WHERE dag_id = $3 AND run_id = $4 AND task_id = $5 AND map_index = $6 AND state = $7 AND version = $8",
        );
        let done = with_pool!(self, pool => sqlx::query(&sql)
            .bind(to.as_str())
            .bind(to.as_str())
            .bind(&ti.dag_id)
            .bind(&ti.run_id)
            .bind(&ti.task_id)
            .bind(ti.map_index)
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
    /// Expands a mapped task's unexpanded instance (`map_index` -1, read at its state and
    /// version) into `count` instances, as Airflow does: it becomes instance 0 (keeping its
    /// state and note) and instances 1 to `count - 1` are created in state `none`, in one
    /// transaction. `false` when another writer moved it first (or it was expanded already): re-read.
    /// An empty list is not expanded: the task is skipped as any other.
    pub async fn expand_task_instance(
        &self,
        ti: &StoredTaskInstance,
        count: u32,
    ) -> Result<bool, StoreError> {
        if count == 0 || ti.map_index != UNMAPPED {
            return Ok(false);
        }
        let first = self.sql(
            "UPDATE task_instances SET map_index = 0, version = version + 1 \
             WHERE dag_id = $1 AND run_id = $2 AND task_id = $3 AND map_index = -1 AND state = $4 AND version = $5",
        );
        let rest = self.sql(
            "INSERT INTO task_instances (dag_id, run_id, task_id, map_index, state) VALUES ($1, $2, $3, $4, 'none') \
             ON CONFLICT DO NOTHING",
        );
        let failed = query("expanding a mapped task");
        with_pool!(self, pool => {
            let mut tx = pool.begin().await.map_err(failed)?;
            let moved = sqlx::query(&first).bind(&ti.dag_id).bind(&ti.run_id).bind(&ti.task_id).bind(ti.state.as_str()).bind(ti.version)
                .execute(&mut *tx).await.map_err(query("expanding a mapped task"))?.rows_affected() == 1;
            if !moved {
                return Ok(false);
            }
            for index in 1..count {
                sqlx::query(&rest).bind(&ti.dag_id).bind(&ti.run_id).bind(&ti.task_id).bind(i32::try_from(index).unwrap_or(i32::MAX))
                    .execute(&mut *tx).await.map_err(query("expanding a mapped task"))?;
            }
            tx.commit().await.map_err(query("expanding a mapped task"))?;
            Ok(true)
        })
    }
}

/// The instances of one task an operation names: every one (`map_index` `None`), or one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InstanceTarget {
    /// The task.
    pub task_id: String,
    /// Only this instance of it (a mapped instance's index, or [`UNMAPPED`]).
    pub map_index: Option<i32>,
}

impl InstanceTarget {
    /// Every instance of `task_id`.
    #[must_use]
    pub fn all(task_id: impl Into<String>) -> Self {
        Self {
            task_id: task_id.into(),
            map_index: None,
        }
    }

    /// Instance `map_index` of `task_id`.
    #[must_use]
    pub fn one(task_id: impl Into<String>, map_index: i32) -> Self {
        Self {
            task_id: task_id.into(),
            map_index: Some(map_index),
        }
    }

    /// `sql` with the instance's index compared to parameter `$n` when it names one (`column`
    /// qualified as the statement needs).
    fn narrow(&self, sql: &str, column: &str, n: usize) -> String {
        match self.map_index {
            Some(_) => format!("{sql} AND {column} = ${n}"),
            None => sql.to_owned(),
        }
    }
}

/// Task ids as targets naming every instance of each.
fn every_instance(task_ids: &[String]) -> Vec<InstanceTarget> {
    task_ids.iter().map(InstanceTarget::all).collect()
}

impl Store {
    /// Gives an expanded mapped task `count` instances again, as Airflow revises the map
    /// indexes of a cleared task whose upstream now returns a list of another length: instances
    /// from `count` on that are waiting (`none`) become `removed`, removed ones below `count`
    /// wait again, and missing ones are created in `none`; the XComs of removed ones are
    /// deleted. Only waiting instances change (the task was cleared as a whole); one
    /// transaction. Returns how many rows changed.
    pub async fn revise_expansion(
        &self,
        dag_id: &str,
        run_id: &str,
        task_id: &str,
        count: u32,
    ) -> Result<u64, StoreError> {
        let count = i32::try_from(count).unwrap_or(i32::MAX);
        let remove = self.sql(
            "UPDATE task_instances SET state = 'removed', version = version + 1 \
             WHERE dag_id = $1 AND run_id = $2 AND task_id = $3 AND map_index >= $4 AND state = 'none'",
        );
        let restore = self.sql(
            "UPDATE task_instances SET state = 'none', version = version + 1 \
             WHERE dag_id = $1 AND run_id = $2 AND task_id = $3 AND map_index >= 0 AND map_index < $4 AND state = 'removed'",
        );
        // A removed instance's values are not part of its task's any more.
        let forget = self.sql(
            "DELETE FROM xcoms WHERE dag_id = $1 AND run_id = $2 AND task_id = $3 AND map_index >= $4",
        );
        let existing = self.sql(
            "SELECT CAST(COALESCE(MAX(map_index) + 1, 0) AS BIGINT) FROM task_instances WHERE dag_id = $1 AND run_id = $2 AND task_id = $3",
        );
        let create = self.sql(
            "INSERT INTO task_instances (dag_id, run_id, task_id, map_index, state) VALUES ($1, $2, $3, $4, 'none') \
             ON CONFLICT DO NOTHING",
        );
        let failed = query("revising a mapped task's instances");
        with_pool!(self, pool => {
            let mut tx = pool.begin().await.map_err(failed)?;
            let mut changed = 0;
            for sql in [&remove, &restore, &forget] {
                changed += sqlx::query(sql).bind(dag_id).bind(run_id).bind(task_id).bind(count)
                    .execute(&mut *tx).await.map_err(failed)?.rows_affected();
            }
            let (have,): (i64,) = sqlx::query_as(&existing).bind(dag_id).bind(run_id).bind(task_id)
                .fetch_one(&mut *tx).await.map_err(failed)?;
            for index in i32::try_from(have).unwrap_or(i32::MAX)..count {
                changed += sqlx::query(&create).bind(dag_id).bind(run_id).bind(task_id).bind(index)
                    .execute(&mut *tx).await.map_err(failed)?.rows_affected();
            }
            tx.commit().await.map_err(failed)?;
            Ok(changed)
        })
    }

    /// Clears tasks so they run again (`gust tasks clear`), every instance of a mapped one:
    /// back to `none`, and their
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
        self.clear_instances(dag_id, run_id, &every_instance(task_ids), now)
            .await
    }

    /// Clears the instances `targets` name (every instance of a task, or one mapped instance,
    /// as Airflow's `[task_id, map_index]` pairs) as [`Store::clear_task_instances`] does.
    pub async fn clear_instances(
        &self,
        dag_id: &str,
        run_id: &str,
        targets: &[InstanceTarget],
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let clear = "UPDATE task_instances SET state = 'none', next_retry_at = NULL, version = version + 1 \
             WHERE dag_id = $1 AND run_id = $2 AND task_id = $3";
        let touch = self.sql(
            "UPDATE dag_runs SET version = version + 1, end_date = NULL, queued_at = CASE WHEN state IN ('success', 'failed') THEN $3 ELSE queued_at END, \
             state = CASE WHEN state IN ('success', 'failed') THEN 'queued' ELSE state END \
             WHERE dag_id = $1 AND run_id = $2",
        );
        with_pool!(self, pool => {
            let mut tx = pool.begin().await.map_err(query("clearing task instances"))?;
            let mut cleared = 0;
            for target in targets {
                let sql = self.sql_owned(target.narrow(clear, "map_index", 4));
                let mut q = sqlx::query(&sql).bind(dag_id).bind(run_id).bind(&target.task_id);
                if let Some(index) = target.map_index {
                    q = q.bind(index);
                }
                cleared += q.execute(&mut *tx).await.map_err(query("clearing task instances"))?.rows_affected();
            }
            if cleared > 0 {
                sqlx::query(&touch).bind(dag_id).bind(run_id).bind(to_db(now)).execute(&mut *tx).await.map_err(query("clearing task instances"))?;
            }
            tx.commit().await.map_err(query("clearing task instances"))?;
            Ok(cleared)
        })
    }
}

impl Store {
    /// Marks task instances of one run as a user asks (`success`, `failed` or `skipped`), and
    /// clears those of `reset` that are `failed` or `upstream_failed` so they run again (what
    /// Airflow does downstream of a task marked by hand). One transaction bumps the version of
    /// every instance changed and of the run, so a scheduler holding the run re-reads it: it
    /// kills the tries of marked instances and never starts them again. The live try of a
    /// marked instance is ended in its history with the new state. A finished run whose
    /// instances changed (marked or cleared) goes back to the queue, so the scheduler derives
    /// its state again from its task instances as at the end of any run (failed when a leaf
    /// failed or is upstream_failed, else success): a task marked failed in a successful run
    /// fails the run when it decides the run's state. Returns the marked instances that
    /// changed.
    pub async fn mark_task_instances(
        &self,
        dag_id: &str,
        run_id: &str,
        task_ids: &[String],
        to: TaskState,
        reset: &[String],
        now: DateTime<Utc>,
    ) -> Result<Vec<String>, StoreError> {
        self.mark_instances(dag_id, run_id, &every_instance(task_ids), to, reset, now)
            .await
    }

    /// Marks the instances `targets` name (every instance of a task, or one mapped instance)
    /// as [`Store::mark_task_instances`] does; returns the tasks of the targets that changed.
    pub async fn mark_instances(
        &self,
        dag_id: &str,
        run_id: &str,
        targets: &[InstanceTarget],
        to: TaskState,
        reset: &[String],
        now: DateTime<Utc>,
    ) -> Result<Vec<String>, StoreError> {
        let end_try = "UPDATE task_tries SET state = $1, end_date = $2 WHERE dag_id = $3 AND run_id = $4 AND task_id = $5 \
             AND state IN ('queued', 'running', 'up_for_reschedule') AND try_number = \
             (SELECT ti.try_number FROM task_instances ti WHERE ti.dag_id = task_tries.dag_id AND ti.run_id = task_tries.run_id \
             AND ti.task_id = task_tries.task_id AND ti.map_index = task_tries.map_index AND ti.state <> $1)";
        let mark = "UPDATE task_instances SET state = $1, next_retry_at = NULL, version = version + 1 \
             WHERE dag_id = $2 AND run_id = $3 AND task_id = $4 AND state <> $1";
        let clear = self.sql(
            "UPDATE task_instances SET state = 'none', next_retry_at = NULL, version = version + 1 \
             WHERE dag_id = $1 AND run_id = $2 AND task_id = $3 AND state IN ('failed', 'upstream_failed')",
        );
        let touch = self.sql(
            "UPDATE dag_runs SET version = version + 1, \
             end_date = CASE WHEN state IN ('success', 'failed') THEN NULL ELSE end_date END, \
             queued_at = CASE WHEN state IN ('success', 'failed') THEN $3 ELSE queued_at END, \
             state = CASE WHEN state IN ('success', 'failed') THEN 'queued' ELSE state END \
             WHERE dag_id = $1 AND run_id = $2",
        );
        let failed = query("marking task instances");
        with_pool!(self, pool => {
            let mut tx = pool.begin().await.map_err(failed)?;
            let mut changed = Vec::new();
            for target in targets {
                let end_sql = self.sql_owned(target.narrow(end_try, "task_tries.map_index", 6));
                let mut q = sqlx::query(&end_sql).bind(to.as_str()).bind(to_db(now)).bind(dag_id).bind(run_id).bind(&target.task_id);
                if let Some(index) = target.map_index {
                    q = q.bind(index);
                }
                q.execute(&mut *tx).await.map_err(query("marking task instances"))?;
                let mark_sql = self.sql_owned(target.narrow(mark, "map_index", 5));
                let mut q = sqlx::query(&mark_sql).bind(to.as_str()).bind(dag_id).bind(run_id).bind(&target.task_id);
                if let Some(index) = target.map_index {
                    q = q.bind(index);
                }
                let moved = q.execute(&mut *tx).await.map_err(query("marking task instances"))?.rows_affected();
                if moved > 0 && !changed.contains(&target.task_id) {
                    changed.push(target.task_id.clone());
                }
            }
            let mut cleared = 0;
            for task_id in reset {
                cleared += sqlx::query(&clear).bind(dag_id).bind(run_id).bind(task_id)
                    .execute(&mut *tx).await.map_err(query("marking task instances"))?.rows_affected();
            }
            if !changed.is_empty() || cleared > 0 {
                sqlx::query(&touch).bind(dag_id).bind(run_id).bind(to_db(now))
                    .execute(&mut *tx).await.map_err(query("marking task instances"))?;
            }
            tx.commit().await.map_err(query("marking task instances"))?;
            Ok(changed)
        })
    }

    /// Sets (or removes) a task instance's note; `false` when there is no such instance.
    pub async fn set_task_instance_note(
        &self,
        dag_id: &str,
        run_id: &str,
        task_id: &str,
        map_index: i32,
        note: Option<&str>,
    ) -> Result<bool, StoreError> {
        let sql = self.sql(
            "UPDATE task_instances SET note = $1 WHERE dag_id = $2 AND run_id = $3 AND task_id = $4 AND map_index = $5",
        );
        let done = with_pool!(self, pool => sqlx::query(&sql).bind(note).bind(dag_id).bind(run_id).bind(task_id).bind(map_index).execute(pool).await.map(|r| r.rows_affected()))
            .map_err(query("setting a task instance's note"))?;
        Ok(done == 1)
    }

    /// Records a mapped instance's name (its `map_index_template` rendered); `false` when
    /// there is no such instance.
    pub async fn set_rendered_map_index(
        &self,
        dag_id: &str,
        run_id: &str,
        task_id: &str,
        map_index: i32,
        rendered: Option<&str>,
    ) -> Result<bool, StoreError> {
        let sql = self.sql(
            "UPDATE task_instances SET rendered_map_index = $1 WHERE dag_id = $2 AND run_id = $3 AND task_id = $4 AND map_index = $5",
        );
        let done = with_pool!(self, pool => sqlx::query(&sql).bind(rendered).bind(dag_id).bind(run_id).bind(task_id).bind(map_index).execute(pool).await.map(|r| r.rows_affected()))
            .map_err(query("recording a mapped instance's name"))?;
        Ok(done == 1)
    }
}

/// Which task instances a listing across runs wants; empty fields filter nothing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InstanceFilter {
    /// Only these DAGs'.
    pub dag_ids: Vec<String>,
    /// Only these runs' (by run id).
    pub run_ids: Vec<String>,
    /// Only these tasks'.
    pub task_ids: Vec<String>,
    /// Only in these states.
    pub states: Vec<TaskState>,
    /// Only at these try numbers.
    pub try_numbers: Vec<i32>,
    /// Only these instances' indexes ([`UNMAPPED`] for tasks that are not mapped).
    pub map_indexes: Vec<i32>,
    /// By their run's logical date.
    pub logical_date: TimeRange,
    /// By the time their run may start (its data interval's end).
    pub run_after: TimeRange,
    /// By their current try's start.
    pub start_date: TimeRange,
    /// By their current try's end.
    pub end_date: TimeRange,
    /// By their current try's duration, in seconds (a try not finished has none).
    pub duration: DurationRange,
}

/// Bounds on a duration in seconds (each bound optional).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct DurationRange {
    /// At least.
    pub gte: Option<f64>,
    /// More than.
    pub gt: Option<f64>,
    /// At most.
    pub lte: Option<f64>,
    /// Less than.
    pub lt: Option<f64>,
}

/// A column task instances can be listed in the order of (then by run and task).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstanceOrder {
    /// Their run's creation order.
    Run,
    /// Task id.
    TaskId,
    /// State name.
    State,
    /// Try number.
    TryNumber,
    /// Map index (the instances of a mapped task in their order).
    MapIndex,
    /// Rendered map index, then map index (Airflow's compound order: without a template every
    /// name ties and the index decides).
    RenderedMapIndex,
    /// Their current try's start (instances not started last, as PostgreSQL sorts nulls).
    StartDate,
    /// Their current try's end (likewise).
    EndDate,
    /// Their current try's duration (likewise).
    Duration,
}

impl InstanceOrder {
    /// The `ORDER BY` terms for this column: nulls sort after every value, ascending, on both
    /// engines (SQLite would put them first).
    fn terms(self, descending: bool) -> String {
        let direction = if descending { "DESC" } else { "ASC" };
        let nullable =
            |column: &str| format!("({column} IS NULL) {direction}, {column} {direction}");
        match self {
            Self::Run => format!("r.id {direction}"),
            Self::TaskId => format!("ti.task_id {direction}"),
            Self::State => format!("ti.state {direction}"),
            Self::TryNumber => format!("ti.try_number {direction}"),
            Self::MapIndex => format!("ti.map_index {direction}"),
            Self::RenderedMapIndex => format!(
                "{}, ti.map_index {direction}",
                nullable("ti.rendered_map_index")
            ),
            Self::StartDate => nullable("t.start_date"),
            Self::EndDate => nullable("t.end_date"),
            Self::Duration => nullable(TRY_DURATION),
        }
    }
}

/// The current try's duration in microseconds (null until it has ended).
const TRY_DURATION: &str = "(t.end_date - t.start_date)";

/// Seconds as the store's microseconds, for comparing with [`TRY_DURATION`].
fn seconds_to_micros(seconds: f64) -> i64 {
    // Saturating: a bound past any duration a try can have compares the same.
    (seconds * 1_000_000.0).round() as i64
}

impl Store {
    /// The task instances `filter` selects across runs, ordered by `order`, `limit` of them
    /// after skipping `offset`, with how many match in all.
    pub async fn list_task_instances(
        &self,
        filter: &InstanceFilter,
        order: &[(InstanceOrder, bool)],
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<StoredTaskInstance>, i64), StoreError> {
        use crate::runs::Bound;
        let mut clauses: Vec<String> = Vec::new();
        let mut binds: Vec<Bound> = Vec::new();
        let mut any_of = |column: &str, values: Vec<Bound>, clauses: &mut Vec<String>| {
            crate::runs::push_any_of(column, values, &mut binds, clauses);
        };
        let texts = |values: &[String]| values.iter().cloned().map(Bound::Text).collect();
        any_of("ti.dag_id", texts(&filter.dag_ids), &mut clauses);
        any_of("ti.run_id", texts(&filter.run_ids), &mut clauses);
        any_of("ti.task_id", texts(&filter.task_ids), &mut clauses);
        let states = filter
            .states
            .iter()
            .map(|s| Bound::Text(s.as_str().to_owned()))
            .collect();
        any_of("ti.state", states, &mut clauses);
        let tries = filter
            .try_numbers
            .iter()
            .map(|n| Bound::Int(i64::from(*n)))
            .collect();
        any_of("ti.try_number", tries, &mut clauses);
        let indexes = filter
            .map_indexes
            .iter()
            .map(|n| Bound::Int(i64::from(*n)))
            .collect();
        any_of("ti.map_index", indexes, &mut clauses);
        let bounds = |column: &str,
                      bounds: [Option<i64>; 4],
                      binds: &mut Vec<Bound>,
                      clauses: &mut Vec<String>| {
            for (op, bound) in [">=", ">", "<=", "<"].into_iter().zip(bounds) {
                if let Some(value) = bound {
                    binds.push(Bound::Int(value));
                    clauses.push(format!("{column} {op} ${}", binds.len()));
                }
            }
        };
        for (column, range) in [
            ("r.logical_date", filter.logical_date),
            ("r.data_interval_end", filter.run_after),
            ("t.start_date", filter.start_date),
            ("t.end_date", filter.end_date),
        ] {
            let micros = [range.gte, range.gt, range.lte, range.lt].map(|t| t.map(to_db));
            bounds(column, micros, &mut binds, &mut clauses);
        }
        let d = filter.duration;
        let micros = [d.gte, d.gt, d.lte, d.lt].map(|s| s.map(seconds_to_micros));
        bounds(TRY_DURATION, micros, &mut binds, &mut clauses);
        let clause = if clauses.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", clauses.join(" AND "))
        };
        let mut keys: Vec<String> = order
            .iter()
            .map(|(column, descending)| column.terms(*descending))
            .collect();
        keys.push("r.id ASC, ti.task_id ASC, ti.map_index ASC".to_owned());
        // The current try (if any) gives the instance its start, end and duration.
        let from = "FROM task_instances ti JOIN dag_runs r ON r.dag_id = ti.dag_id AND r.run_id = ti.run_id \
             LEFT JOIN task_tries t ON t.dag_id = ti.dag_id AND t.run_id = ti.run_id \
             AND t.task_id = ti.task_id AND t.map_index = ti.map_index AND t.try_number = ti.try_number";
        let n = binds.len();
        let sql = self.sql_owned(format!(
            "SELECT ti.dag_id, ti.run_id, ti.task_id, ti.map_index, ti.state, ti.try_number, ti.next_retry_at, ti.version, ti.note, ti.rendered_map_index \
             {from}{clause} ORDER BY {} LIMIT ${} OFFSET ${}",
            keys.join(", "),
            n + 1,
            n + 2
        ));
        type Raw = (
            String,
            String,
            String,
            i32,
            String,
            i32,
            Option<i64>,
            i64,
            Option<String>,
            Option<String>,
        );
        let failed = query("listing task instances");
        let rows: Vec<Raw> = with_pool!(self, pool => {
            let mut q = sqlx::query_as::<_, Raw>(&sql);
            for b in &binds {
                q = match b {
                    Bound::Text(t) => q.bind(t.as_str()),
                    Bound::Int(i) => q.bind(*i),
                };
            }
            q.bind(limit).bind(offset).fetch_all(pool).await
        })
        .map_err(failed)?;
        let total = self
            .count_bound(
                &format!("{from}{clause}"),
                &binds,
                "counting task instances",
            )
            .await?;
        let instances = rows
            .into_iter()
            .map(
                |(
                    dag_id,
                    run_id,
                    task_id,
                    map_index,
                    state,
                    try_number,
                    next_retry_at,
                    version,
                    note,
                    rendered_map_index,
                )| {
                    Ok(StoredTaskInstance {
                        dag_id,
                        run_id,
                        task_id,
                        map_index,
                        state: parse_state(&state)?,
                        try_number,
                        next_retry_at: opt_from_db(next_retry_at)?,
                        version,
                        note,
                        rendered_map_index,
                    })
                },
            )
            .collect::<Result<_, StoreError>>()?;
        Ok((instances, total))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{NewRun, RunType, TaskMove, TryChange};
    use chrono::TimeZone;
    use gust_core::state::DagRunState;

    fn at(hour: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, hour, 0, 0).unwrap()
    }

    async fn set(store: &Store, task: &str, to: TaskState, try_change: Option<TryChange>) {
        let ti = store
            .task_instances("d", "r")
            .await
            .unwrap()
            .into_iter()
            .find(|t| t.task_id == task)
            .unwrap();
        let mv = TaskMove {
            dag_id: "d".into(),
            run_id: "r".into(),
            task_id: task.into(),
            map_index: UNMAPPED,
            from: ti.state,
            version: ti.version,
            to,
            next_retry_at: None,
            try_change,
        };
        assert_eq!(store.apply_moves(&[mv]).await.unwrap(), vec![true]);
    }

    async fn marking_ends_the_live_try_and_clears_what_failed_downstream(store: Store) {
        let run = NewRun {
            dag_id: "d".into(),
            run_id: "r".into(),
            run_type: RunType::Manual,
            logical_date: at(1),
            data_interval: (at(1), at(1)),
            conf: serde_json::Map::new(),
            queued_at: at(1),
        };
        assert!(store.create_run(&run).await.unwrap());
        let queued = store.run("d", "r").await.unwrap().unwrap();
        assert!(
            store
                .transition_run(&queued, DagRunState::Running, at(1))
                .await
                .unwrap()
        );
        store
            .create_task_instances("d", "r", &["a", "b", "c"])
            .await
            .unwrap();
        set(
            &store,
            "a",
            TaskState::Queued,
            Some(TryChange::Queued {
                try_number: 1,
                rendered_args: serde_json::json!({}),
                xcoms: Vec::new(),
                log_location: "a.log".into(),
                at: at(2),
            }),
        )
        .await;
        set(
            &store,
            "a",
            TaskState::Running,
            Some(TryChange::Started {
                try_number: 1,
                at: at(2),
            }),
        )
        .await;
        set(&store, "b", TaskState::UpstreamFailed, None).await;
        let before = store.run("d", "r").await.unwrap().unwrap();
        let running = store.run("d", "r").await.unwrap().unwrap();
        assert!(
            store
                .transition_run(&running, DagRunState::Failed, at(3))
                .await
                .unwrap()
        );

        let changed = store
            .mark_task_instances(
                "d",
                "r",
                &["a".to_owned()],
                TaskState::Success,
                &["b".to_owned(), "c".to_owned()],
                at(4),
            )
            .await
            .unwrap();
        assert_eq!(changed, vec!["a".to_owned()]);
        let tis = store.task_instances("d", "r").await.unwrap();
        let states: Vec<TaskState> = tis.iter().map(|t| t.state).collect();
        assert_eq!(
            states,
            vec![TaskState::Success, TaskState::NoStatus, TaskState::NoStatus],
            "b was upstream_failed and is cleared; c had not run and is left alone"
        );
        let tries = store.tries_of_run("d", "r").await.unwrap();
        assert_eq!(
            (tries[0].state, tries[0].end_date),
            (TaskState::Success, Some(at(4)))
        );
        let after = store.run("d", "r").await.unwrap().unwrap();
        assert_eq!(
            after.state,
            DagRunState::Queued,
            "the failed run runs again"
        );
        assert!(after.version > before.version + 1);

        let again = store
            .mark_task_instances("d", "r", &["a".to_owned()], TaskState::Success, &[], at(5))
            .await
            .unwrap();
        assert!(again.is_empty(), "already success: nothing changes");
        assert!(
            store
                .set_task_instance_note("d", "r", "a", UNMAPPED, Some("done by hand"))
                .await
                .unwrap()
        );
        let a = store.task_instances("d", "r").await.unwrap().remove(0);
        assert_eq!(a.note.as_deref(), Some("done by hand"));
        assert!(
            !store
                .set_task_instance_note("d", "r", "zz", UNMAPPED, None)
                .await
                .unwrap()
        );

        let done = InstanceFilter {
            dag_ids: vec!["d".into()],
            states: vec![TaskState::Success],
            ..InstanceFilter::default()
        };
        let (found, total) = store.list_task_instances(&done, &[], 10, 0).await.unwrap();
        assert_eq!((found.len(), total), (1, 1));
        assert_eq!(found[0].note.as_deref(), Some("done by hand"));
        let every = InstanceFilter::default();
        let (page, total) = store
            .list_task_instances(&every, &[(InstanceOrder::TaskId, true)], 2, 0)
            .await
            .unwrap();
        let ids: Vec<&str> = page.iter().map(|t| t.task_id.as_str()).collect();
        assert_eq!((ids, total), (vec!["c", "b"], 3));
        let tried = InstanceFilter {
            try_numbers: vec![1],
            run_ids: vec!["r".into()],
            ..InstanceFilter::default()
        };
        assert_eq!(
            store
                .list_task_instances(&tried, &[], 10, 0)
                .await
                .unwrap()
                .1,
            1
        );
    }

    crate::both_engines!(marking_ends_the_live_try_and_clears_what_failed_downstream);

    async fn a_mapped_task_expands_once_into_its_instances(store: Store) {
        store
            .create_task_instances("d", "r", &["m", "other"])
            .await
            .unwrap();
        let unexpanded = store.task_instances("d", "r").await.unwrap().remove(0);
        assert_eq!(unexpanded.map_index, UNMAPPED);
        assert!(
            !store.expand_task_instance(&unexpanded, 0).await.unwrap(),
            "an empty list skips"
        );
        assert!(store.expand_task_instance(&unexpanded, 3).await.unwrap());
        assert!(
            !store.expand_task_instance(&unexpanded, 3).await.unwrap(),
            "expanded already: the version it was read at is gone"
        );
        let keys: Vec<(String, i32, TaskState, i64)> = store
            .task_instances("d", "r")
            .await
            .unwrap()
            .into_iter()
            .map(|t| (t.task_id, t.map_index, t.state, t.version))
            .collect();
        assert_eq!(
            keys,
            [
                ("m".to_owned(), 0, TaskState::NoStatus, 1),
                ("m".to_owned(), 1, TaskState::NoStatus, 0),
                ("m".to_owned(), 2, TaskState::NoStatus, 0),
                ("other".to_owned(), UNMAPPED, TaskState::NoStatus, 0),
            ]
        );
    }

    crate::both_engines!(a_mapped_task_expands_once_into_its_instances);

    /// Airflow 3.3.2 leaves a finished run's state alone when a mark clears nothing downstream,
    /// so a run could say success with a task marked failed; Gust queues it again so the
    /// scheduler derives its state from its task instances.
    async fn a_mark_in_a_finished_run_queues_it_to_derive_its_state_again(store: Store) {
        let run = NewRun {
            dag_id: "d".into(),
            run_id: "r".into(),
            run_type: RunType::Manual,
            logical_date: at(1),
            data_interval: (at(1), at(1)),
            conf: serde_json::Map::new(),
            queued_at: at(1),
        };
        assert!(store.create_run(&run).await.unwrap());
        let queued = store.run("d", "r").await.unwrap().unwrap();
        assert!(
            store
                .transition_run(&queued, DagRunState::Running, at(1))
                .await
                .unwrap()
        );
        store
            .create_task_instances("d", "r", &["a", "b"])
            .await
            .unwrap();
        set(&store, "a", TaskState::Success, None).await;
        // A mark in a running run leaves the run to the scheduler that runs it.
        let changed = store
            .mark_task_instances("d", "r", &["b".to_owned()], TaskState::Success, &[], at(2))
            .await
            .unwrap();
        assert_eq!(changed, vec!["b".to_owned()]);
        let running = store.run("d", "r").await.unwrap().unwrap();
        assert_eq!(
            (running.state, running.queued_at),
            (DagRunState::Running, at(1))
        );
        assert!(
            store
                .transition_run(&running, DagRunState::Success, at(3))
                .await
                .unwrap()
        );
        let finished = store.run("d", "r").await.unwrap().unwrap();
        assert_eq!(finished.end_date, Some(at(3)));

        // Marking one failed in the successful run: the run goes back to the queue.
        let changed = store
            .mark_task_instances("d", "r", &["b".to_owned()], TaskState::Failed, &[], at(4))
            .await
            .unwrap();
        assert_eq!(changed, vec!["b".to_owned()]);
        let requeued = store.run("d", "r").await.unwrap().unwrap();
        assert_eq!(
            (requeued.state, requeued.queued_at, requeued.end_date),
            (DagRunState::Queued, at(4), None),
            "the run's state is derived again"
        );
        assert!(requeued.version > finished.version);
        let states: Vec<TaskState> = store
            .task_instances("d", "r")
            .await
            .unwrap()
            .iter()
            .map(|t| t.state)
            .collect();
        assert_eq!(states, vec![TaskState::Success, TaskState::Failed]);

        // A mark that changes nothing leaves a finished run alone.
        assert!(
            store
                .transition_run(&requeued, DagRunState::Failed, at(5))
                .await
                .unwrap()
        );
        let failed = store.run("d", "r").await.unwrap().unwrap();
        let unchanged = store
            .mark_task_instances("d", "r", &["b".to_owned()], TaskState::Failed, &[], at(6))
            .await
            .unwrap();
        assert!(unchanged.is_empty());
        let after = store.run("d", "r").await.unwrap().unwrap();
        assert_eq!(
            (after.state, after.version),
            (DagRunState::Failed, failed.version)
        );
    }

    crate::both_engines!(a_mark_in_a_finished_run_queues_it_to_derive_its_state_again);
}
