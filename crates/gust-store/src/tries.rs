//! The scheduler's writes: task-instance moves with what goes with them (the try's history row,
//! its rendered arguments, its XCom, its log's place), many at once in one transaction, each move
//! by compare-and-set. One commit per batch keeps a 1000-task fan-out to a handful of commits.

use chrono::{DateTime, Utc};
use gust_core::state::TaskState;
use sqlx::Row;

use crate::error::query;
use crate::task_instances::parse_state;
use crate::time::{from_db, opt_from_db, to_db};
use crate::xcoms::check_xcom_size;
use crate::{Store, StoreError, with_pool};

/// One task-instance move and what goes with it.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskMove {
    /// The DAG.
    pub dag_id: String,
    /// The run.
    pub run_id: String,
    /// The task.
    pub task_id: String,
    /// Which instance of it ([`crate::UNMAPPED`] when it is not mapped).
    pub map_index: i32,
    /// The state the move starts from, as read.
    pub from: TaskState,
    /// The version it was read at: the move happens only if nobody moved it since.
    pub version: i64,
    /// Where it goes.
    pub to: TaskState,
    /// When its retry delay ends (moves to `up_for_retry`).
    pub next_retry_at: Option<DateTime<Utc>>,
    /// What happens to its try.
    pub try_change: Option<TryChange>,
}

/// What a move does to the task's try history.
#[derive(Debug, Clone, PartialEq)]
pub enum TryChange {
    /// A new try is handed to a runtime (the move to `queued`): its row is created with the
    /// arguments it runs with, its log's place is indexed, earlier XComs of the task go, and
    /// the ones its templates pushed as they rendered are recorded.
    Queued {
        /// The new try's number.
        try_number: i32,
        /// Its arguments, templates rendered.
        rendered_args: serde_json::Value,
        /// The XComs its templates pushed (`ti.xcom_push`), by key: Airflow writes them as it
        /// renders, before the try runs, and keeps them whatever the try does.
        xcoms: Vec<(String, serde_json::Value)>,
        /// Where its log is.
        log_location: String,
        /// When.
        at: DateTime<Utc>,
    },
    /// The try started.
    Started {
        /// Which try.
        try_number: i32,
        /// When.
        at: DateTime<Utc>,
    },
    /// The try ended in the move's target state.
    Ended {
        /// Which try.
        try_number: i32,
        /// When.
        at: DateTime<Utc>,
        /// Why it failed, when it did.
        failure: Option<String>,
        /// The XComs a successful try pushed, by key: its return value as `return_value`,
        /// and any other key it pushed.
        xcoms: Vec<(String, serde_json::Value)>,
        /// The asset events a successful try emits (its task's outlets), recorded and queued
        /// for the DAGs scheduled on their assets with the move.
        outlets: Vec<crate::NewAssetEvent>,
    },
    /// The try asked to run again later as the same try (the move to `up_for_reschedule`): its
    /// row says so and one reschedule is recorded, numbered from 1 within the try.
    Rescheduled {
        /// Which try.
        try_number: i32,
        /// Which of the try's reschedules this is (1 for the first).
        number: i32,
        /// When it asked (Airflow records this as the reschedule's start and end).
        at: DateTime<Utc>,
        /// When it may run again.
        reschedule_date: DateTime<Utc>,
    },
    /// The try deferred itself to a trigger (the move to `deferred`): its row says so, and the
    /// instance's deferral is recorded (replacing an earlier one).
    Deferred {
        /// Which try.
        try_number: i32,
        /// When it deferred.
        at: DateTime<Utc>,
        /// The trigger and where to resume.
        deferral: Box<StoredDeferral>,
    },
}

/// A deferred instance's trigger and where its try resumes, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredDeferral {
    /// The task.
    pub task_id: String,
    /// Which instance of it.
    pub map_index: i32,
    /// The try that deferred.
    pub try_number: i32,
    /// The trigger's class.
    pub classpath: String,
    /// Its kwargs (Airflow's serde form).
    pub trigger_kwargs: serde_json::Value,
    /// When the trigger times out, if it does.
    pub timeout_at: Option<DateTime<Utc>>,
    /// The method the try resumes in.
    pub next_method: String,
    /// Its kwargs (Airflow's serde form).
    pub next_kwargs: serde_json::Value,
    /// When the try deferred.
    pub deferred_at: DateTime<Utc>,
}

/// One try as recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredTry {
    /// The task.
    pub task_id: String,
    /// Which instance of it ([`crate::UNMAPPED`] when it is not mapped).
    pub map_index: i32,
    /// Which try.
    pub try_number: i32,
    /// How it ended (or `queued` / `running`).
    pub state: TaskState,
    /// When it was queued.
    pub queued_at: Option<DateTime<Utc>>,
    /// When it started.
    pub start_date: Option<DateTime<Utc>>,
    /// When it ended.
    pub end_date: Option<DateTime<Utc>>,
    /// Why it failed.
    pub failure: Option<String>,
    /// The arguments it ran with.
    pub rendered_args: Option<serde_json::Value>,
}

/// One XCom as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredXCom {
    /// The task that pushed it.
    pub task_id: String,
    /// Which instance of it ([`crate::UNMAPPED`] when it is not mapped).
    pub map_index: i32,
    /// Its key (`return_value` for what a try returned).
    pub key: String,
    /// Its value.
    pub value: serde_json::Value,
}

/// `moves` cut into runs of consecutive moves of one instance, each starting where the one
/// before it ended (same instance, its `to` and the next version).
fn instance_runs(moves: &[TaskMove]) -> impl Iterator<Item = &[TaskMove]> {
    moves.chunk_by(|a, b| {
        a.dag_id == b.dag_id
            && a.run_id == b.run_id
            && a.task_id == b.task_id
            && a.map_index == b.map_index
            && a.to == b.from
            && a.version + 1 == b.version
    })
}

impl Store {
    /// Applies `moves` in one transaction. Each is compare-and-set: the result says, per move,
    /// whether it happened (`false`: someone else moved the instance first; re-read it). What goes
    /// with a move is written only when the move happens.
    pub async fn apply_moves(&self, moves: &[TaskMove]) -> Result<Vec<bool>, StoreError> {
        for m in moves {
            if let Some(TryChange::Ended { xcoms, .. } | TryChange::Queued { xcoms, .. }) =
                &m.try_change
            {
                for (key, value) in xcoms {
                    check_xcom_size(&m.task_id, key, value)?;
                }
            }
        }
        // Consecutive moves of one instance (scheduled then queued, started then ended) are
        // one update of its row: fewer statements per task, each a round trip, which
        // PostgreSQL pays in latency and SQLite in hand-offs to its connection's thread.
        let update = self.sql(
            "UPDATE task_instances SET state = $1, version = version + $2, next_retry_at = $3, \
             try_number = try_number + $4 \
             WHERE dag_id = $5 AND run_id = $6 AND task_id = $7 AND map_index = $8 AND state = $9 AND version = $10",
        );
        let insert_try = self.sql(
            "INSERT INTO task_tries (dag_id, run_id, task_id, map_index, try_number, state, queued_at, rendered_args, log_location) \
             VALUES ($1, $2, $3, $4, $5, 'queued', $6, $7, $8) \
             ON CONFLICT (dag_id, run_id, task_id, map_index, try_number) DO UPDATE SET state = 'queued', queued_at = excluded.queued_at, \
             rendered_args = excluded.rendered_args, log_location = excluded.log_location",
        );
        let drop_xcoms =
            self.sql("DELETE FROM xcoms WHERE dag_id = $1 AND run_id = $2 AND task_id = $3 AND map_index = $4");
        let start_try = self.sql(
            "UPDATE task_tries SET state = 'running', start_date = $1 \
             WHERE dag_id = $2 AND run_id = $3 AND task_id = $4 AND map_index = $5 AND try_number = $6",
        );
        // `$2` is the start, or the end for a try that ended without a recorded start.
        let end_try = self.sql(
            "UPDATE task_tries SET state = $1, start_date = COALESCE(start_date, $2), end_date = $3, failure = $4 \
             WHERE dag_id = $5 AND run_id = $6 AND task_id = $7 AND map_index = $8 AND try_number = $9",
        );
        let reschedule_try = self.sql(
            "UPDATE task_tries SET state = 'up_for_reschedule', start_date = COALESCE(start_date, $1), end_date = $1 \
             WHERE dag_id = $2 AND run_id = $3 AND task_id = $4 AND map_index = $5 AND try_number = $6",
        );
        let record_reschedule = self.sql(
            "INSERT INTO task_reschedules (dag_id, run_id, task_id, map_index, try_number, number, start_date, end_date, reschedule_date) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $8) \
             ON CONFLICT (dag_id, run_id, task_id, map_index, try_number, number) DO NOTHING",
        );
        let defer_try = self.sql(
            "UPDATE task_tries SET state = 'deferred', start_date = COALESCE(start_date, $1), end_date = $1 \
             WHERE dag_id = $2 AND run_id = $3 AND task_id = $4 AND map_index = $5 AND try_number = $6",
        );
        let record_deferral = self.sql(
            "INSERT INTO task_deferrals (dag_id, run_id, task_id, map_index, try_number, classpath, trigger_kwargs, trigger_timeout, next_method, next_kwargs, deferred_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
             ON CONFLICT (dag_id, run_id, task_id, map_index) DO UPDATE SET try_number = excluded.try_number, classpath = excluded.classpath, \
             trigger_kwargs = excluded.trigger_kwargs, trigger_timeout = excluded.trigger_timeout, next_method = excluded.next_method, \
             next_kwargs = excluded.next_kwargs, deferred_at = excluded.deferred_at",
        );
        let drop_deferral = self.sql(
            "DELETE FROM task_deferrals WHERE dag_id = $1 AND run_id = $2 AND task_id = $3 AND map_index = $4",
        );
        let put_xcom = self.sql(
            "INSERT INTO xcoms (dag_id, run_id, task_id, map_index, key, value) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (dag_id, run_id, task_id, map_index, key) DO UPDATE SET value = excluded.value",
        );
        // (start, end) of each run of one instance's moves, as indices: nothing borrowed from an
        // iterator is held across the awaits below.
        let groups: Vec<(usize, usize)> = instance_runs(moves)
            .scan(0, |start, group| {
                let range = (*start, *start + group.len());
                *start = range.1;
                Some(range)
            })
            .collect();
        let failed = query("recording task instance moves");
        with_pool!(self, pool => {
            let mut tx = pool.begin().await.map_err(failed)?;
            let mut done = Vec::with_capacity(moves.len());
            for &(from, to) in &groups {
                let group = &moves[from..to];
                let (Some(first), Some(last)) = (group.first(), group.last()) else {
                    continue;
                };
                // A rescheduled or resumed try is handed over again under its own number.
                let queued = group
                    .iter()
                    .filter(|m| {
                        m.to == TaskState::Queued
                            && !matches!(m.from, TaskState::UpForReschedule | TaskState::Deferred)
                    })
                    .count();
                let moved = sqlx::query(&update)
                    .bind(last.to.as_str())
                    .bind(i64::try_from(group.len()).unwrap_or(i64::MAX))
                    .bind(last.next_retry_at.map(to_db))
                    .bind(i64::try_from(queued).unwrap_or(i64::MAX))
                    .bind(&first.dag_id)
                    .bind(&first.run_id)
                    .bind(&first.task_id)
                    .bind(first.map_index)
                    .bind(first.from.as_str())
                    .bind(first.version)
                    .execute(&mut *tx)
                    .await
                    .map_err(query("recording task instance moves"))?
                    .rows_affected() == 1;
                done.extend(std::iter::repeat_n(moved, group.len()));
                if !moved {
                    continue;
                }
                let (dag, run, task, index) = (&first.dag_id, &first.run_id, &first.task_id, first.map_index);
                let mut next = 0;
                while let Some(m) = group.get(next) {
                    next += 1;
                    let to = m.to;
                    match &m.try_change {
                        None => {}
                        Some(TryChange::Queued { try_number, rendered_args, xcoms, log_location, at }) => {
                            sqlx::query(&insert_try).bind(dag).bind(run).bind(task).bind(index).bind(try_number).bind(to_db(*at)).bind(rendered_args.to_string()).bind(log_location)
                                .execute(&mut *tx).await.map_err(query("recording a try"))?;
                            // Only an earlier try can have left XComs; a resumed try keeps
                            // what it pushed before deferring, as in Airflow.
                            if m.from == TaskState::Deferred {
                                sqlx::query(&drop_deferral).bind(dag).bind(run).bind(task).bind(index)
                                    .execute(&mut *tx).await.map_err(query("dropping a deferral"))?;
                            } else if *try_number > 1 {
                                sqlx::query(&drop_xcoms).bind(dag).bind(run).bind(task).bind(index)
                                    .execute(&mut *tx).await.map_err(query("dropping old XComs"))?;
                            }
                            for (key, value) in xcoms {
                                sqlx::query(&put_xcom).bind(dag).bind(run).bind(task).bind(index).bind(key).bind(value.to_string())
                                    .execute(&mut *tx).await.map_err(query("recording an XCom"))?;
                            }
                        }
                        Some(TryChange::Started { try_number, at }) => {
                            // A start followed by the same try's end is written with it.
                            if let Some(ended) = group.get(next)
                                && let Some(TryChange::Ended { try_number: n, at: end, failure, xcoms, outlets }) = &ended.try_change
                                && n == try_number
                            {
                                next += 1;
                                let to = ended.to;
                                sqlx::query(&end_try).bind(to.as_str()).bind(to_db(*at)).bind(to_db(*end)).bind(failure.as_deref()).bind(dag).bind(run).bind(task).bind(index).bind(try_number)
                                    .execute(&mut *tx).await.map_err(query("recording a try's end"))?;
                                for (key, value) in xcoms {
                                    sqlx::query(&put_xcom).bind(dag).bind(run).bind(task).bind(index).bind(key).bind(value.to_string())
                                        .execute(&mut *tx).await.map_err(query("recording an XCom"))?;
                                }
                                for event in outlets {
                                    let asset_id = crate::assets::upsert_asset!(self, tx, &event.asset, event.timestamp);
                                    crate::assets::insert_event!(self, tx, asset_id, event);
                                }
                                continue;
                            }
                            sqlx::query(&start_try).bind(to_db(*at)).bind(dag).bind(run).bind(task).bind(index).bind(try_number)
                                .execute(&mut *tx).await.map_err(query("recording a try's start"))?;
                        }
                        Some(TryChange::Rescheduled { try_number, number, at, reschedule_date }) => {
                            sqlx::query(&reschedule_try).bind(to_db(*at)).bind(dag).bind(run).bind(task).bind(index).bind(try_number)
                                .execute(&mut *tx).await.map_err(query("recording a try's reschedule"))?;
                            sqlx::query(&record_reschedule).bind(dag).bind(run).bind(task).bind(index).bind(try_number).bind(number).bind(to_db(*at)).bind(to_db(*reschedule_date))
                                .execute(&mut *tx).await.map_err(query("recording a try's reschedule"))?;
                        }
                        Some(TryChange::Deferred { try_number, at, deferral }) => {
                            sqlx::query(&defer_try).bind(to_db(*at)).bind(dag).bind(run).bind(task).bind(index).bind(try_number)
                                .execute(&mut *tx).await.map_err(query("recording a try's deferral"))?;
                            sqlx::query(&record_deferral).bind(dag).bind(run).bind(task).bind(index).bind(try_number)
                                .bind(&deferral.classpath).bind(deferral.trigger_kwargs.to_string()).bind(deferral.timeout_at.map(to_db))
                                .bind(&deferral.next_method).bind(deferral.next_kwargs.to_string()).bind(to_db(*at))
                                .execute(&mut *tx).await.map_err(query("recording a try's deferral"))?;
                        }
                        Some(TryChange::Ended { try_number, at, failure, xcoms, outlets }) => {
                            sqlx::query(&end_try).bind(to.as_str()).bind(to_db(*at)).bind(to_db(*at)).bind(failure.as_deref()).bind(dag).bind(run).bind(task).bind(index).bind(try_number)
                                .execute(&mut *tx).await.map_err(query("recording a try's end"))?;
                            for (key, value) in xcoms {
                                sqlx::query(&put_xcom).bind(dag).bind(run).bind(task).bind(index).bind(key).bind(value.to_string())
                                    .execute(&mut *tx).await.map_err(query("recording an XCom"))?;
                            }
                            for event in outlets {
                                let asset_id = crate::assets::upsert_asset!(self, tx, &event.asset, event.timestamp);
                                crate::assets::insert_event!(self, tx, asset_id, event);
                            }
                        }
                    }
                }
            }
            tx.commit().await.map_err(query("recording task instance moves"))?;
            Ok(done)
        })
    }

    /// Every try of a run, by task, map index, then try number.
    pub async fn tries_of_run(
        &self,
        dag_id: &str,
        run_id: &str,
    ) -> Result<Vec<StoredTry>, StoreError> {
        let sql = self.sql(
            "SELECT task_id, map_index, try_number, state, queued_at, start_date, end_date, failure, rendered_args FROM task_tries \
             WHERE dag_id = $1 AND run_id = $2 ORDER BY task_id, map_index, try_number",
        );
        type Raw = (
            (String, i32),
            i32,
            String,
            (Option<i64>, Option<i64>, Option<i64>),
            Option<String>,
            Option<String>,
        );
        let rows: Vec<Raw> = with_pool!(self, pool => {
            let rows = sqlx::query(&sql).bind(dag_id).bind(run_id).fetch_all(pool).await.map_err(query("reading tries"))?;
            rows.iter()
                .map(|r| Ok::<Raw, sqlx::Error>(((r.try_get(0)?, r.try_get(1)?), r.try_get(2)?, r.try_get(3)?, (r.try_get(4)?, r.try_get(5)?, r.try_get(6)?), r.try_get(7)?, r.try_get(8)?)))
                .collect::<Result<_, _>>()
                .map_err(query("reading tries"))?
        });
        rows.into_iter()
            .map(
                |((task_id, map_index), try_number, state, (queued, start, end), failure, args)| {
                    let rendered_args = args
                        .map(|text| {
                            serde_json::from_str(&text).map_err(|e| StoreError::Corrupt {
                                what: "rendered arguments",
                                detail: e.to_string(),
                            })
                        })
                        .transpose()?;
                    Ok(StoredTry {
                        task_id,
                        map_index,
                        try_number,
                        state: parse_state(&state)?,
                        queued_at: opt_from_db(queued)?,
                        start_date: opt_from_db(start)?,
                        end_date: opt_from_db(end)?,
                        failure,
                        rendered_args,
                    })
                },
            )
            .collect()
    }

    /// Every XCom of a run, by task, map index, then key.
    pub async fn xcoms_of_run(
        &self,
        dag_id: &str,
        run_id: &str,
    ) -> Result<Vec<StoredXCom>, StoreError> {
        let sql = self.sql(
            "SELECT task_id, map_index, key, value FROM xcoms WHERE dag_id = $1 AND run_id = $2 ORDER BY task_id, map_index, key",
        );
        let rows: Vec<(String, i32, String, String)> = with_pool!(self, pool => sqlx::query_as(&sql).bind(dag_id).bind(run_id).fetch_all(pool).await)
            .map_err(query("reading a run's XComs"))?;
        rows.into_iter()
            .map(|(task_id, map_index, key, text)| {
                let value = serde_json::from_str(&text).map_err(|e| StoreError::Corrupt {
                    what: "XCom",
                    detail: e.to_string(),
                })?;
                Ok(StoredXCom {
                    task_id,
                    map_index,
                    key,
                    value,
                })
            })
            .collect()
    }
}

/// The reschedules of one task instance's latest try.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TryReschedules {
    /// How many.
    pub count: i32,
    /// When the first was recorded.
    pub first: DateTime<Utc>,
}

impl Store {
    /// The reschedules of each instance's latest try in a run, by task and map index
    /// (instances without any are left out): what a sensor's next run of that try is told.
    pub async fn reschedules_of_run(
        &self,
        dag_id: &str,
        run_id: &str,
    ) -> Result<Vec<((String, i32), TryReschedules)>, StoreError> {
        let sql = self.sql(
            "SELECT r.task_id, r.map_index, COUNT(*), MIN(r.start_date) FROM task_reschedules r \
             JOIN task_instances ti ON ti.dag_id = r.dag_id AND ti.run_id = r.run_id \
             AND ti.task_id = r.task_id AND ti.map_index = r.map_index AND ti.try_number = r.try_number \
             WHERE r.dag_id = $1 AND r.run_id = $2 GROUP BY r.task_id, r.map_index ORDER BY r.task_id, r.map_index",
        );
        let rows: Vec<(String, i32, i64, i64)> = with_pool!(self, pool => sqlx::query_as(&sql).bind(dag_id).bind(run_id).fetch_all(pool).await)
            .map_err(query("reading reschedules"))?;
        rows.into_iter()
            .map(|(task, map_index, count, first)| {
                Ok((
                    (task, map_index),
                    TryReschedules {
                        count: i32::try_from(count).unwrap_or(i32::MAX),
                        first: from_db(first)?,
                    },
                ))
            })
            .collect()
    }
}

impl Store {
    /// The deferrals of a run's deferred instances (those whose deferring try is still their
    /// latest), by task and map index: the triggers to run.
    pub async fn deferrals_of_run(
        &self,
        dag_id: &str,
        run_id: &str,
    ) -> Result<Vec<StoredDeferral>, StoreError> {
        let sql = self.sql(
            "SELECT d.task_id, d.map_index, d.try_number, d.classpath, d.trigger_kwargs, d.trigger_timeout, d.next_method, d.next_kwargs, d.deferred_at \
             FROM task_deferrals d JOIN task_instances ti ON ti.dag_id = d.dag_id AND ti.run_id = d.run_id \
             AND ti.task_id = d.task_id AND ti.map_index = d.map_index AND ti.try_number = d.try_number \
             WHERE d.dag_id = $1 AND d.run_id = $2 AND ti.state = 'deferred' ORDER BY d.task_id, d.map_index",
        );
        type Raw = (
            String,
            i32,
            i32,
            String,
            String,
            Option<i64>,
            String,
            String,
            i64,
        );
        let rows: Vec<Raw> = with_pool!(self, pool => sqlx::query_as(&sql).bind(dag_id).bind(run_id).fetch_all(pool).await)
            .map_err(query("reading deferrals"))?;
        let json = |text: &str| {
            serde_json::from_str(text).map_err(|e| StoreError::Corrupt {
                what: "deferral",
                detail: e.to_string(),
            })
        };
        rows.into_iter()
            .map(
                |(
                    task_id,
                    map_index,
                    try_number,
                    classpath,
                    kwargs,
                    timeout,
                    next_method,
                    next_kwargs,
                    at,
                )| {
                    Ok(StoredDeferral {
                        task_id,
                        map_index,
                        try_number,
                        classpath,
                        trigger_kwargs: json(&kwargs)?,
                        timeout_at: opt_from_db(timeout)?,
                        next_method,
                        next_kwargs: json(&next_kwargs)?,
                        deferred_at: from_db(at)?,
                    })
                },
            )
            .collect()
    }
}

impl Store {
    /// Where a try's log was written, as the scheduler indexed it when it queued the try.
    pub async fn log_location(
        &self,
        dag_id: &str,
        run_id: &str,
        task_id: &str,
        map_index: i32,
        try_number: i32,
    ) -> Result<Option<String>, StoreError> {
        let sql = self.sql(
            "SELECT log_location FROM task_tries WHERE dag_id = $1 AND run_id = $2 AND task_id = $3 AND map_index = $4 AND try_number = $5",
        );
        with_pool!(self, pool => sqlx::query_scalar(&sql).bind(dag_id).bind(run_id).bind(task_id).bind(map_index).bind(try_number).fetch_optional(pool).await)
            .map_err(query("reading a log's location"))
    }
}
