//! Task instances read across the runs of one DAG, for a task that waits on another DAG's
//! tasks (`ExternalTaskSensor` through the Execution API): how many are in given states, each
//! one's state, and the latest one before a date. Read-only: only the scheduler moves states.

use chrono::{DateTime, Utc};
use gust_core::state::TaskState;
use sqlx::Row;

use crate::error::query;
use crate::runs::{Bound, push_any_of};
use crate::task_instances::parse_state;
use crate::time::{from_db, opt_from_db, to_db};
use crate::{Store, StoreError, with_pool};

/// Which task instances of one DAG a question is about; an empty list filters nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstanceQuery {
    /// The DAG.
    pub dag_id: String,
    /// Only these tasks'.
    pub task_ids: Vec<String>,
    /// Only these runs' (by run id).
    pub run_ids: Vec<String>,
    /// Only those of runs at these logical dates.
    pub logical_dates: Vec<DateTime<Utc>>,
    /// Only in these states (`None`: in any state; `Some` of an empty list: none at all).
    pub states: Option<Vec<TaskState>>,
    /// Only instances at this map index (`Some(-1)`: tasks that are not mapped; `None`: every
    /// instance, each of a mapped task's counting on its own, as Airflow's rows do).
    pub map_index: Option<i32>,
}

/// One task instance's state, in its run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceState {
    /// The run.
    pub run_id: String,
    /// The task.
    pub task_id: String,
    /// Which instance of a mapped task (-1: the task is not mapped).
    pub map_index: i32,
    /// Its state.
    pub state: TaskState,
}

/// A task's instance in an earlier run, with its current try's times.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreviousInstance {
    /// The run.
    pub run_id: String,
    /// The run's logical date.
    pub logical_date: DateTime<Utc>,
    /// Its state.
    pub state: TaskState,
    /// Its latest try (0 before the first).
    pub try_number: i32,
    /// When its latest try started.
    pub start_date: Option<DateTime<Utc>>,
    /// When its latest try ended.
    pub end_date: Option<DateTime<Utc>>,
}

/// The instances and their runs, joined so logical dates can be asked about.
const FROM: &str =
    "FROM task_instances ti JOIN dag_runs r ON r.dag_id = ti.dag_id AND r.run_id = ti.run_id";

/// `q` as a `WHERE` clause over [`FROM`], with its values in placeholder order; `None` when it
/// can match nothing (it asks for no state at all).
fn where_clause(q: &InstanceQuery) -> Option<(String, Vec<Bound>)> {
    let mut binds = vec![Bound::Text(q.dag_id.clone())];
    let mut clauses = vec!["ti.dag_id = $1".to_owned()];
    let mut any_of = |column: &str, values: Vec<Bound>| {
        push_any_of(column, values, &mut binds, &mut clauses);
    };
    let texts = |values: &[String]| values.iter().cloned().map(Bound::Text).collect();
    any_of("ti.task_id", texts(&q.task_ids));
    any_of("ti.run_id", texts(&q.run_ids));
    let dates = q
        .logical_dates
        .iter()
        .map(|at| Bound::Int(to_db(*at)))
        .collect();
    any_of("r.logical_date", dates);
    any_of(
        "ti.map_index",
        q.map_index
            .map(|i| Bound::Int(i.into()))
            .into_iter()
            .collect(),
    );
    if let Some(states) = &q.states {
        if states.is_empty() {
            return None;
        }
        let states = states
            .iter()
            .map(|s| Bound::Text(s.as_str().to_owned()))
            .collect();
        any_of("ti.state", states);
    }
    Some((format!(" WHERE {}", clauses.join(" AND ")), binds))
}

impl Store {
    /// How many task instances `q` selects.
    pub async fn count_instances(&self, q: &InstanceQuery) -> Result<i64, StoreError> {
        let Some((clause, binds)) = where_clause(q) else {
            return Ok(0);
        };
        self.count_bound(
            &format!("{FROM}{clause}"),
            &binds,
            "counting task instances",
        )
        .await
    }

    /// The state of each task instance `q` selects, at most `limit` of them, by run (in the
    /// order they were created) then task.
    pub async fn instance_states(
        &self,
        q: &InstanceQuery,
        limit: i64,
    ) -> Result<Vec<InstanceState>, StoreError> {
        let Some((clause, binds)) = where_clause(q) else {
            return Ok(Vec::new());
        };
        let sql = self.sql_owned(format!(
            "SELECT ti.run_id, ti.task_id, ti.map_index, ti.state {FROM}{clause} ORDER BY r.id, ti.task_id, ti.map_index LIMIT ${}",
            binds.len() + 1
        ));
        let rows: Vec<(String, String, i32, String)> = with_pool!(self, pool => {
            let mut q = sqlx::query_as(&sql);
            for b in &binds {
                q = match b {
                    Bound::Text(t) => q.bind(t.as_str()),
                    Bound::Int(i) => q.bind(*i),
                };
            }
            q.bind(limit).fetch_all(pool).await
        })
        .map_err(query("reading task instance states"))?;
        rows.into_iter()
            .map(|(run_id, task_id, map_index, state)| {
                Ok(InstanceState {
                    run_id,
                    task_id,
                    map_index,
                    state: parse_state(&state)?,
                })
            })
            .collect()
    }

    /// The instance `map_index` (-1: the task is not mapped) of `task_id` in the latest run of
    /// `dag_id` (by logical date) before `before` (any run when `None`), in state `state` when
    /// given.
    pub async fn previous_instance(
        &self,
        dag_id: &str,
        (task_id, map_index): (&str, i32),
        before: Option<DateTime<Utc>>,
        state: Option<TaskState>,
    ) -> Result<Option<PreviousInstance>, StoreError> {
        let mut binds = vec![
            Bound::Text(dag_id.to_owned()),
            Bound::Text(task_id.to_owned()),
            Bound::Int(map_index.into()),
        ];
        let mut clause = String::new();
        if let Some(before) = before {
            binds.push(Bound::Int(to_db(before)));
            clause.push_str(&format!(" AND r.logical_date < ${}", binds.len()));
        }
        if let Some(state) = state {
            binds.push(Bound::Text(state.as_str().to_owned()));
            clause.push_str(&format!(" AND ti.state = ${}", binds.len()));
        }
        // The instance's latest try gives it its start and end, as Airflow's task instance has.
        let sql = self.sql_owned(format!(
            "SELECT ti.run_id, r.logical_date, ti.state, ti.try_number, t.start_date, t.end_date {FROM} \
             LEFT JOIN task_tries t ON t.dag_id = ti.dag_id AND t.run_id = ti.run_id \
             AND t.task_id = ti.task_id AND t.map_index = ti.map_index AND t.try_number = ti.try_number \
             WHERE ti.dag_id = $1 AND ti.task_id = $2 AND ti.map_index = $3{clause} \
             ORDER BY r.logical_date DESC, r.id DESC LIMIT 1"
        ));
        let failed = query("reading a previous task instance");
        let row = with_pool!(self, pool => {
            let mut q = sqlx::query(&sql);
            for b in &binds {
                q = match b {
                    Bound::Text(t) => q.bind(t.as_str()),
                    Bound::Int(i) => q.bind(*i),
                };
            }
            q.fetch_optional(pool).await.and_then(|row| {
                row.map(|r| {
                    Ok::<_, sqlx::Error>((
                        r.try_get::<String, _>(0)?,
                        r.try_get::<i64, _>(1)?,
                        r.try_get::<String, _>(2)?,
                        r.try_get::<i32, _>(3)?,
                        r.try_get::<Option<i64>, _>(4)?,
                        r.try_get::<Option<i64>, _>(5)?,
                    ))
                })
                .transpose()
            })
        })
        .map_err(failed)?;
        row.map(|(run_id, logical, state, try_number, start, end)| {
            Ok(PreviousInstance {
                run_id,
                logical_date: from_db(logical)?,
                state: parse_state(&state)?,
                try_number,
                start_date: opt_from_db(start)?,
                end_date: opt_from_db(end)?,
            })
        })
        .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{NewRun, RunType, TaskMove, TryChange};
    use chrono::TimeZone;

    fn day(d: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, d, 0, 0, 0).unwrap()
    }

    /// A run of `d` at `day(n)` with instances of `a` and `b`, `a` moved to `a_state` (with a
    /// try that ran on that day when it ended).
    async fn run_with(store: &Store, n: u32, a_state: TaskState) {
        let run_id = format!("r{n}");
        let run = NewRun {
            dag_id: "d".into(),
            run_id: run_id.clone(),
            run_type: RunType::Scheduled,
            logical_date: day(n),
            data_interval: (day(n), day(n + 1)),
            conf: serde_json::Map::new(),
            queued_at: day(n),
        };
        assert!(store.create_run(&run).await.unwrap());
        store
            .create_task_instances("d", &run_id, &["a", "b"])
            .await
            .unwrap();
        if a_state == TaskState::NoStatus {
            return;
        }
        let version = store.task_instances("d", &run_id).await.unwrap()[0].version;
        let step = |from, version, to, try_change| TaskMove {
            dag_id: "d".into(),
            run_id: run_id.clone(),
            task_id: "a".into(),
            map_index: crate::UNMAPPED,
            from,
            version,
            to,
            next_retry_at: None,
            try_change: Some(try_change),
        };
        let moves = [
            step(
                TaskState::NoStatus,
                version,
                TaskState::Queued,
                TryChange::Queued {
                    try_number: 1,
                    rendered_args: serde_json::json!({}),
                    xcoms: Vec::new(),
                    log_location: "a.log".into(),
                    at: day(n),
                },
            ),
            step(
                TaskState::Queued,
                version + 1,
                TaskState::Running,
                TryChange::Started {
                    try_number: 1,
                    at: day(n),
                },
            ),
            step(
                TaskState::Running,
                version + 2,
                a_state,
                TryChange::Ended {
                    try_number: 1,
                    at: day(n) + chrono::Duration::hours(1),
                    failure: None,
                    xcoms: Vec::new(),
                    outlets: Vec::new(),
                },
            ),
        ];
        assert_eq!(store.apply_moves(&moves).await.unwrap(), vec![true; 3]);
    }

    async fn instances_are_counted_and_found_across_runs_by_date_task_and_state(store: Store) {
        run_with(&store, 1, TaskState::Success).await;
        run_with(&store, 2, TaskState::Failed).await;
        run_with(&store, 3, TaskState::NoStatus).await;
        let query =
            |task_ids: &[&str], dates: &[u32], states: Option<Vec<TaskState>>| InstanceQuery {
                dag_id: "d".into(),
                task_ids: task_ids.iter().map(|t| (*t).to_owned()).collect(),
                run_ids: Vec::new(),
                logical_dates: dates.iter().map(|n| day(*n)).collect(),
                states,
                map_index: None,
            };
        let count = |q: InstanceQuery| {
            let store = store.clone();
            async move { store.count_instances(&q).await.unwrap() }
        };
        assert_eq!(count(query(&[], &[], None)).await, 6);
        assert_eq!(count(query(&["a"], &[], None)).await, 3);
        assert_eq!(
            count(query(&["a"], &[1, 2], Some(vec![TaskState::Success]))).await,
            1
        );
        assert_eq!(
            count(query(&[], &[3], Some(vec![TaskState::NoStatus]))).await,
            2,
            "no status is Airflow's null"
        );
        assert_eq!(count(query(&[], &[], Some(Vec::new()))).await, 0);
        let other = InstanceQuery {
            dag_id: "other".into(),
            ..InstanceQuery::default()
        };
        assert_eq!(count(other).await, 0);
        let by_run = InstanceQuery {
            run_ids: vec!["r2".into()],
            ..query(&["a"], &[], None)
        };
        let states = store.instance_states(&by_run, 100).await.unwrap();
        assert_eq!(
            states,
            vec![InstanceState {
                run_id: "r2".into(),
                task_id: "a".into(),
                map_index: -1,
                state: TaskState::Failed
            }]
        );
        assert_eq!(
            store
                .instance_states(&query(&[], &[], None), 4)
                .await
                .unwrap()
                .len(),
            4,
            "at most the limit"
        );

        let latest = store
            .previous_instance("d", ("a", -1), None, None)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((latest.run_id.as_str(), latest.try_number), ("r3", 0));
        assert_eq!(latest.start_date, None);
        let before = store
            .previous_instance("d", ("a", -1), Some(day(3)), None)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            before,
            PreviousInstance {
                run_id: "r2".into(),
                logical_date: day(2),
                state: TaskState::Failed,
                try_number: 1,
                start_date: Some(day(2)),
                end_date: Some(day(2) + chrono::Duration::hours(1)),
            }
        );
        let succeeded = store
            .previous_instance("d", ("a", -1), Some(day(3)), Some(TaskState::Success))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(succeeded.run_id, "r1");
        assert!(
            store
                .previous_instance("d", ("a", -1), Some(day(1)), None)
                .await
                .unwrap()
                .is_none()
        );
    }

    async fn a_mapped_tasks_instances_count_one_by_one_and_are_asked_for_by_map_index(
        store: Store,
    ) {
        run_with(&store, 1, TaskState::NoStatus).await;
        let b = store.task_instances("d", "r1").await.unwrap()[1].clone();
        assert_eq!(b.task_id, "b");
        assert!(store.expand_task_instance(&b, 3).await.unwrap());
        let query = |map_index: Option<i32>| InstanceQuery {
            dag_id: "d".into(),
            map_index,
            ..InstanceQuery::default()
        };
        let count = |q: InstanceQuery| {
            let store = store.clone();
            async move { store.count_instances(&q).await.unwrap() }
        };
        assert_eq!(count(query(None)).await, 4, "a, and b's three instances");
        assert_eq!(count(query(Some(-1))).await, 1, "only a is not mapped");
        assert_eq!(count(query(Some(2))).await, 1);
        assert_eq!(count(query(Some(3))).await, 0);
        let states = store.instance_states(&query(None), 100).await.unwrap();
        let named: Vec<(&str, i32)> = states
            .iter()
            .map(|s| (s.task_id.as_str(), s.map_index))
            .collect();
        assert_eq!(named, [("a", -1), ("b", 0), ("b", 1), ("b", 2)]);
        let found = store
            .previous_instance("d", ("b", 1), None, None)
            .await
            .unwrap();
        assert_eq!(found.map(|f| f.run_id), Some("r1".to_owned()));
        assert!(
            store
                .previous_instance("d", ("b", -1), None, None)
                .await
                .unwrap()
                .is_none(),
            "b has no unmapped instance once expanded"
        );
    }

    crate::both_engines!(instances_are_counted_and_found_across_runs_by_date_task_and_state);
    crate::both_engines!(a_mapped_tasks_instances_count_one_by_one_and_are_asked_for_by_map_index);
}
