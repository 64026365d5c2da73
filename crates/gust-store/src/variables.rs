//! Variables: named values templates read as `var.value.NAME` / `var.json.NAME`.

use crate::error::query;
use crate::{Store, StoreError, with_pool};

/// A variable with its description, as the REST API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variable {
    /// Its key.
    pub key: String,
    /// Its value (text; JSON values are stored as their JSON text).
    pub value: String,
    /// What it is for.
    pub description: Option<String>,
}

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

    /// One variable with its description.
    pub async fn variable_record(&self, key: &str) -> Result<Option<Variable>, StoreError> {
        let sql = self.sql("SELECT key, value, description FROM variables WHERE key = $1");
        let row: Option<(String, String, Option<String>)> =
            with_pool!(self, pool => sqlx::query_as(&sql).bind(key).fetch_optional(pool).await)
                .map_err(query("reading a variable"))?;
        Ok(row.map(|(key, value, description)| Variable {
            key,
            value,
            description,
        }))
    }

    /// Every variable with its description, by key.
    pub async fn variable_records(&self) -> Result<Vec<Variable>, StoreError> {
        let sql = self.sql("SELECT key, value, description FROM variables ORDER BY key");
        let rows: Vec<(String, String, Option<String>)> =
            with_pool!(self, pool => sqlx::query_as(&sql).fetch_all(pool).await)
                .map_err(query("listing variables"))?;
        Ok(rows
            .into_iter()
            .map(|(key, value, description)| Variable {
                key,
                value,
                description,
            })
            .collect())
    }

    /// Creates a variable; `false` when the key is taken (the stored one is left alone).
    pub async fn create_variable(&self, variable: &Variable) -> Result<bool, StoreError> {
        let sql = self.sql(
            "INSERT INTO variables (key, value, description) VALUES ($1, $2, $3) ON CONFLICT (key) DO NOTHING",
        );
        let done = with_pool!(self, pool => sqlx::query(&sql)
            .bind(&variable.key)
            .bind(&variable.value)
            .bind(&variable.description)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()))
        .map_err(query("creating a variable"))?;
        Ok(done == 1)
    }

    /// Replaces an existing variable's value and description; `false` when there is none.
    pub async fn update_variable(&self, variable: &Variable) -> Result<bool, StoreError> {
        let sql = self.sql("UPDATE variables SET value = $1, description = $2 WHERE key = $3");
        let done = with_pool!(self, pool => sqlx::query(&sql)
            .bind(&variable.value)
            .bind(&variable.description)
            .bind(&variable.key)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()))
        .map_err(query("updating a variable"))?;
        Ok(done == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn variables_are_created_once_updated_and_listed(store: Store) {
        let var = Variable {
            key: "region".into(),
            value: "eu".into(),
            description: Some("where".into()),
        };
        assert!(store.create_variable(&var).await.unwrap());
        let taken = Variable {
            value: "us".into(),
            ..var.clone()
        };
        assert!(
            !store.create_variable(&taken).await.unwrap(),
            "keys are unique"
        );
        assert_eq!(store.variable_record("region").await.unwrap(), Some(var));
        let changed = Variable {
            key: "region".into(),
            value: "us".into(),
            description: None,
        };
        assert!(store.update_variable(&changed).await.unwrap());
        assert!(
            !store
                .update_variable(&Variable {
                    key: "nope".into(),
                    ..changed.clone()
                })
                .await
                .unwrap()
        );
        store.set_variable("a", "1", None).await.unwrap();
        let keys: Vec<String> = store
            .variable_records()
            .await
            .unwrap()
            .into_iter()
            .map(|v| v.key)
            .collect();
        assert_eq!(keys, ["a", "region"]);
        assert_eq!(
            store.variable_record("region").await.unwrap(),
            Some(changed)
        );
        assert_eq!(store.variable_record("nope").await.unwrap(), None);
    }

    crate::both_engines!(variables_are_created_once_updated_and_listed);
}
