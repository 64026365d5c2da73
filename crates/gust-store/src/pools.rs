//! Pools: named slot budgets tasks take slots from (`default_pool` has 128).

use sqlx::Row;

use crate::error::query;
use crate::{Store, StoreError, with_pool};

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
}
