//! Counts for monitoring: DAG runs and task instances by state (one `GROUP BY` each, for the
//! API server's `/metrics`), runs by DAG and state (for the API's `dagStats`), and a round
//! trip to tell whether the database answers (for the scheduler's `/health`). Reads only;
//! nothing here is used to decide anything.

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

/// The run state stored as `name`.
fn run_state(name: String) -> Result<DagRunState, StoreError> {
    RUN_STATES
        .into_iter()
        .find(|s| s.as_str() == name)
        .ok_or(StoreError::Corrupt {
            what: "run state",
            detail: name,
        })
}

impl Store {
    /// How many DAG runs are in each state; states no run is in are left out.
    pub async fn count_runs_by_state(&self) -> Result<Vec<(DagRunState, i64)>, StoreError> {
        let sql = "SELECT state, COUNT(*) FROM dag_runs GROUP BY state";
        let rows: Vec<(String, i64)> =
            with_pool!(self, pool => sqlx::query_as(sql).fetch_all(pool).await)
                .map_err(query("counting runs by state"))?;
        rows.into_iter()
            .map(|(state, count)| Ok((run_state(state)?, count)))
            .collect()
    }

    /// How many runs each DAG has in each state, ordered by DAG id: only DAGs that are recorded
    /// and have runs, and only those in `dag_ids` unless it is empty (Airflow's `dagStats`).
    pub async fn count_runs_by_dag_and_state(
        &self,
        dag_ids: &[String],
    ) -> Result<Vec<(String, DagRunState, i64)>, StoreError> {
        let filter = if dag_ids.is_empty() {
            String::new()
        } else {
            let marks: Vec<String> = (1..=dag_ids.len()).map(|i| format!("${i}")).collect();
            format!(" WHERE r.dag_id IN ({})", marks.join(", "))
        };
        let sql = self.sql_owned(format!(
            "SELECT r.dag_id, r.state, COUNT(*) FROM dag_runs r JOIN dags d ON d.dag_id = r.dag_id\
             {filter} GROUP BY r.dag_id, r.state ORDER BY r.dag_id"
        ));
        let rows: Vec<(String, String, i64)> = with_pool!(self, pool => {
            let mut q = sqlx::query_as(&sql);
            for dag_id in dag_ids {
                q = q.bind(dag_id.as_str());
            }
            q.fetch_all(pool).await
        })
        .map_err(query("counting runs by DAG and state"))?;
        rows.into_iter()
            .map(|(dag_id, state, count)| Ok((dag_id, run_state(state)?, count)))
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

    async fn runs_are_counted_per_recorded_dag_and_state(store: Store) {
        let t = |s| DateTime::from_timestamp(s, 0).unwrap();
        for dag_id in ["b", "a"] {
            let dag = crate::StoredDag {
                dag_id: dag_id.into(),
                fileloc: "dags.yaml".into(),
                definition: "{}".into(),
                fingerprint: "f".into(),
                is_paused: false,
                is_stale: false,
                last_parsed: t(0),
                last_parse_duration: None,
            };
            store.upsert_dag(&dag, false).await.unwrap();
        }
        // "gone" has a run but no DAG row: Airflow's join leaves it out.
        for (dag_id, run_id) in [("a", "1"), ("a", "2"), ("b", "1"), ("gone", "1")] {
            let run = NewRun {
                dag_id: dag_id.into(),
                run_id: run_id.into(),
                run_type: RunType::Manual,
                logical_date: t(0),
                data_interval: (t(0), t(0)),
                conf: serde_json::Map::new(),
                queued_at: t(0),
            };
            assert!(store.create_run(&run).await.unwrap());
        }
        let a2 = store.run("a", "2").await.unwrap().unwrap();
        assert!(
            store
                .transition_run(&a2, DagRunState::Running, t(5))
                .await
                .unwrap()
        );
        let mut all = store.count_runs_by_dag_and_state(&[]).await.unwrap();
        all.sort_by_key(|(dag_id, state, _)| (dag_id.clone(), state.as_str()));
        assert_eq!(
            all,
            [
                ("a".to_owned(), DagRunState::Queued, 1),
                ("a".to_owned(), DagRunState::Running, 1),
                ("b".to_owned(), DagRunState::Queued, 1),
            ]
        );
        let only_b = store
            .count_runs_by_dag_and_state(&["b".to_owned(), "nope".to_owned()])
            .await
            .unwrap();
        assert_eq!(only_b, [("b".to_owned(), DagRunState::Queued, 1)]);
    }

    crate::both_engines!(
        counts_are_grouped_by_state,
        runs_are_counted_per_recorded_dag_and_state
    );
}
