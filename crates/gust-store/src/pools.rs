//! Pools: named slot budgets tasks take slots from (`default_pool` has 128).

use gust_core::state::TaskState;
use sqlx::Row;

use crate::error::query;
use crate::task_instances::parse_state;
use crate::{Store, StoreError, with_pool};

/// The pool every task uses unless it names another; it cannot be deleted.
pub const DEFAULT_POOL: &str = "default_pool";

/// A pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool {
    /// Its name.
    pub name: String,
    /// How many slots it has.
    pub slots: i32,
    /// What it is for.
    pub description: Option<String>,
}

impl Store {
    /// Creates or resizes a pool.
    pub async fn set_pool(&self, pool_def: &Pool) -> Result<(), StoreError> {
        let sql = self.sql(
            "INSERT INTO pools (name, slots, description) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET slots = excluded.slots, description = excluded.description",
        );
        with_pool!(self, pool => sqlx::query(&sql).bind(&pool_def.name).bind(pool_def.slots).bind(&pool_def.description).execute(pool).await.map(drop))
            .map_err(query("setting a pool"))
    }

    /// Every pool, by name.
    pub async fn pools(&self) -> Result<Vec<Pool>, StoreError> {
        let sql = self.sql("SELECT name, slots, description FROM pools ORDER BY name");
        with_pool!(self, pool => {
            let rows = sqlx::query(&sql).fetch_all(pool).await.map_err(query("listing pools"))?;
            rows.iter()
                .map(|r| Ok::<_, sqlx::Error>(Pool { name: r.try_get("name")?, slots: r.try_get("slots")?, description: r.try_get("description")? }))
                .collect::<Result<Vec<_>, _>>()
                .map_err(query("listing pools"))
        })
    }

    /// One pool.
    pub async fn pool(&self, name: &str) -> Result<Option<Pool>, StoreError> {
        let sql = self.sql("SELECT name, slots, description FROM pools WHERE name = $1");
        let row: Option<(String, i32, Option<String>)> =
            with_pool!(self, pool => sqlx::query_as(&sql).bind(name).fetch_optional(pool).await)
                .map_err(query("reading a pool"))?;
        Ok(row.map(|(name, slots, description)| Pool {
            name,
            slots,
            description,
        }))
    }

    /// Creates a pool; `false` when the name is taken (the stored one is left alone).
    pub async fn create_pool(&self, pool_def: &Pool) -> Result<bool, StoreError> {
        let sql = self.sql(
            "INSERT INTO pools (name, slots, description) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING",
        );
        let done = with_pool!(self, pool => sqlx::query(&sql)
            .bind(&pool_def.name)
            .bind(pool_def.slots)
            .bind(&pool_def.description)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()))
        .map_err(query("creating a pool"))?;
        Ok(done == 1)
    }

    /// Resizes or re-describes an existing pool; `false` when there is none (it is not
    /// created).
    pub async fn update_pool(&self, pool_def: &Pool) -> Result<bool, StoreError> {
        let sql = self.sql("UPDATE pools SET slots = $1, description = $2 WHERE name = $3");
        let done = with_pool!(self, pool => sqlx::query(&sql)
            .bind(pool_def.slots)
            .bind(&pool_def.description)
            .bind(&pool_def.name)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()))
        .map_err(query("updating a pool"))?;
        Ok(done == 1)
    }

    /// Deletes a pool; `false` when there was none. Refusing to delete [`DEFAULT_POOL`] is the
    /// caller's rule to apply.
    pub async fn delete_pool(&self, name: &str) -> Result<bool, StoreError> {
        let sql = self.sql("DELETE FROM pools WHERE name = $1");
        let done = with_pool!(self, pool => sqlx::query(&sql).bind(name).execute(pool).await.map(|r| r.rows_affected()))
            .map_err(query("deleting a pool"))?;
        Ok(done == 1)
    }

    /// The task instances of unfinished runs that wait for or hold pool slots (`scheduled`,
    /// `queued`, `running`), or are counted in their pool while they hold none (`deferred`), as (DAG, task, state): which pool each uses is in its DAG's
    /// definition, not in the row.
    pub async fn slot_holders(&self) -> Result<Vec<(String, String, TaskState)>, StoreError> {
        let sql = self.sql(
            "SELECT ti.dag_id, ti.task_id, ti.state FROM task_instances ti \
             JOIN dag_runs r ON r.dag_id = ti.dag_id AND r.run_id = ti.run_id \
             WHERE r.state IN ('queued', 'running') AND ti.state IN ('scheduled', 'queued', 'running', 'deferred') \
             ORDER BY ti.dag_id, ti.task_id",
        );
        let rows: Vec<(String, String, String)> =
            with_pool!(self, pool => sqlx::query_as(&sql).fetch_all(pool).await)
                .map_err(query("counting pool slots"))?;
        rows.into_iter()
            .map(|(dag_id, task_id, state)| Ok((dag_id, task_id, parse_state(&state)?)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn pools_are_created_once_read_and_deleted(store: Store) {
        let etl = Pool {
            name: "etl".into(),
            slots: 4,
            description: Some("loads".into()),
        };
        assert!(store.create_pool(&etl).await.unwrap());
        assert!(
            !store
                .create_pool(&Pool {
                    slots: 9,
                    ..etl.clone()
                })
                .await
                .unwrap(),
            "names are unique"
        );
        assert_eq!(store.pool("etl").await.unwrap(), Some(etl.clone()));
        let bigger = Pool {
            slots: 8,
            ..etl.clone()
        };
        assert!(store.update_pool(&bigger).await.unwrap());
        assert_eq!(store.pool("etl").await.unwrap(), Some(bigger));
        assert!(
            !store
                .update_pool(&Pool {
                    name: "nope".into(),
                    ..etl.clone()
                })
                .await
                .unwrap(),
            "updating never creates"
        );
        assert!(
            store.pool(DEFAULT_POOL).await.unwrap().is_some(),
            "made by the schema"
        );
        assert!(store.delete_pool("etl").await.unwrap());
        assert!(!store.delete_pool("etl").await.unwrap());
        assert_eq!(store.pool("etl").await.unwrap(), None);
        assert!(store.slot_holders().await.unwrap().is_empty());
    }

    async fn slot_holders_are_the_waiting_and_running_tasks_of_unfinished_runs(store: Store) {
        let t = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let run = crate::NewRun {
            dag_id: "d".into(),
            run_id: "r".into(),
            run_type: crate::RunType::Manual,
            logical_date: t,
            data_interval: (t, t),
            conf: serde_json::Map::new(),
            queued_at: t,
        };
        assert!(store.create_run(&run).await.unwrap());
        store
            .create_task_instances("d", "r", &["a", "b", "c"])
            .await
            .unwrap();
        let tis = store.task_instances("d", "r").await.unwrap();
        assert!(
            store
                .transition_task_instance(&tis[0], TaskState::Scheduled)
                .await
                .unwrap()
        );
        assert!(
            store
                .transition_task_instance(&tis[1], TaskState::Queued)
                .await
                .unwrap()
        );
        assert_eq!(
            store.slot_holders().await.unwrap(),
            vec![
                ("d".to_owned(), "a".to_owned(), TaskState::Scheduled),
                ("d".to_owned(), "b".to_owned(), TaskState::Queued),
            ]
        );
    }

    crate::both_engines!(
        pools_are_created_once_read_and_deleted,
        slot_holders_are_the_waiting_and_running_tasks_of_unfinished_runs
    );
}
