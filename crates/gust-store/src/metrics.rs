//! Counts for monitoring: DAG runs and task instances by state (one `GROUP BY` each, for the
//! API server's `/metrics`), and a round trip to tell whether the database answers (for the
//! scheduler's `/health`). Reads only; nothing here is used to decide anything.

use gust_core::state::{DagRunState, TaskState};

use crate::error::query;
use crate::task_instances::parse_state;
use crate::{Store, StoreError, with_pool};

/// Every run state, to find a stored name's state.
const RUN_STATES: [DagRunState; 4] = [
    DagRunState::Queued,
    DagRunState::Running,
    DagRunState::Success,
    DagRunState::Failed,
];

impl Store {
    /// How many DAG runs are in each state; states no run is in are left out.
    pub async fn count_runs_by_state(&self) -> Result<Vec<(DagRunState, i64)>, StoreError> {
        let sql = "SELECT state, COUNT(*) FROM dag_runs GROUP BY state";
        let rows: Vec<(String, i64)> =
            with_pool!(self, pool => sqlx::query_as(sql).fetch_all(pool).await)
                .map_err(query("counting runs by state"))?;
        rows.into_iter()
            .map(|(state, count)| {
                RUN_STATES
                    .into_iter()
                    .find(|s| s.as_str() == state)
                    .map(|s| (s, count))
                    .ok_or(StoreError::Corrupt {
                        what: "run state",
                        detail: state,
                    })
            })
            .collect()
    }

    /// How many task instances are in each state; states no instance is in are left out.
    pub async fn count_task_instances_by_state(&self) -> Result<Vec<(TaskState, i64)>, StoreError> {
        let sql = "SELECT state, COUNT(*) FROM task_instances GROUP BY state";
        let rows: Vec<(String, i64)> =
            with_pool!(self, pool => sqlx::query_as(sql).fetch_all(pool).await)
                .map_err(query("counting task instances by state"))?;
        rows.into_iter()
            .map(|(state, count)| Ok((parse_state(&state)?, count)))
            .collect()
    }

    /// One round trip to the database: `Ok` when it answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        with_pool!(self, pool => sqlx::query("SELECT 1").execute(pool).await.map(drop))
            .map_err(query("reaching the database"))
    }
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;
    use gust_core::state::{DagRunState, TaskState};

    use crate::{NewRun, RunType, Store};

    async fn counts_are_grouped_by_state(store: Store) {
        assert_eq!(store.count_runs_by_state().await.unwrap(), []);
        assert_eq!(store.count_task_instances_by_state().await.unwrap(), []);
        store.ping().await.unwrap();
        let t = |s| DateTime::from_timestamp(s, 0).unwrap();
        for (i, run_id) in ["a", "b", "c"].into_iter().enumerate() {
            let start = t(1_000 * i64::try_from(i).unwrap());
            let run = NewRun {
                dag_id: "d".into(),
                run_id: run_id.into(),
                run_type: RunType::Manual,
                logical_date: start,
                data_interval: (start, start),
                conf: serde_json::Map::new(),
                queued_at: start,
            };
            assert!(store.create_run(&run).await.unwrap());
            store
                .create_task_instances("d", run_id, &["x", "y"])
                .await
                .unwrap();
        }
        let b = store.run("d", "b").await.unwrap().unwrap();
        assert!(
            store
                .transition_run(&b, DagRunState::Running, t(5))
                .await
                .unwrap()
        );
        let mut runs = store.count_runs_by_state().await.unwrap();
        runs.sort_by_key(|(s, _)| s.as_str());
        assert_eq!(runs, [(DagRunState::Queued, 2), (DagRunState::Running, 1)]);
        assert_eq!(
            store.count_task_instances_by_state().await.unwrap(),
            [(TaskState::NoStatus, 6)]
        );
        store.close().await;
        assert!(store.ping().await.is_err(), "a closed pool does not answer");
    }

    crate::both_engines!(counts_are_grouped_by_state);
}
