//! Variables: named values templates read as `var.value.NAME` / `var.json.NAME`.

use crate::error::query;
use crate::{Store, StoreError, with_pool};

impl Store {
    /// Sets a variable.
    pub async fn set_variable(
        &self,
        key: &str,
        value: &str,
        description: Option<&str>,
    ) -> Result<(), StoreError> {
        let sql = self.sql(
            "INSERT INTO variables (key, value, description) VALUES ($1, $2, $3) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value, description = COALESCE(excluded.description, variables.description)",
        );
        with_pool!(self, pool => sqlx::query(&sql).bind(key).bind(value).bind(description).execute(pool).await.map(drop))
            .map_err(query("setting a variable"))
    }

    /// A variable's value.
    pub async fn variable(&self, key: &str) -> Result<Option<String>, StoreError> {
        let sql = self.sql("SELECT value FROM variables WHERE key = $1");
        with_pool!(self, pool => sqlx::query_scalar(&sql).bind(key).fetch_optional(pool).await)
            .map_err(query("reading a variable"))
    }

    /// Every variable's key, sorted.
    pub async fn variable_keys(&self) -> Result<Vec<String>, StoreError> {
        let sql = self.sql("SELECT key FROM variables ORDER BY key");
        with_pool!(self, pool => sqlx::query_scalar(&sql).fetch_all(pool).await)
            .map_err(query("listing variables"))
    }

    /// Deletes a variable; `false` when there was none.
    pub async fn delete_variable(&self, key: &str) -> Result<bool, StoreError> {
        let sql = self.sql("DELETE FROM variables WHERE key = $1");
        let done = with_pool!(self, pool => sqlx::query(&sql).bind(key).execute(pool).await.map(|r| r.rows_affected()))
            .map_err(query("deleting a variable"))?;
        Ok(done == 1)
    }

    /// Every variable, as templates read them (`var.value.KEY`).
    pub async fn all_variables(
        &self,
    ) -> Result<std::collections::HashMap<String, String>, StoreError> {
        let sql = self.sql("SELECT key, value FROM variables");
        let rows: Vec<(String, String)> =
            with_pool!(self, pool => sqlx::query_as(&sql).fetch_all(pool).await)
                .map_err(query("reading variables"))?;
        Ok(rows.into_iter().collect())
    }
}
