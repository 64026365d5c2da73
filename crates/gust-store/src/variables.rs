//! Variables: named values templates read as `var.value.NAME` / `var.json.NAME`.
//!
//! Values are encrypted at rest with the Fernet key connections use ([`SecretKey`]), as Airflow
//! encrypts them (`is_encrypted`): a variable often holds a URL with a password in it. Rows
//! written before Gust encrypted them are read as plain text until
//! [`Store::encrypt_plain_variables`] seals them; keys and descriptions stay plain text.

use std::collections::HashMap;

use crate::error::query;
use crate::{Secret, SecretKey, Store, StoreError, with_pool};

/// A variable with its description, as the REST API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variable {
    /// Its key.
    pub key: String,
    /// Its value (text; JSON values are stored as their JSON text).
    pub value: String,
    /// What it is for.
    pub description: Option<String>,
    /// Whether its value is stored encrypted (as read; every write encrypts).
    pub is_encrypted: bool,
}

/// A stored row: key, value as stored, description, whether the value is encrypted.
type VariableRow = (String, String, Option<String>, bool);

const WHAT: &str = "variable value";

/// `row`'s value, decrypted when it is encrypted.
fn open_row(row: VariableRow, fernet: &SecretKey) -> Result<Variable, StoreError> {
    let (key, stored, description, is_encrypted) = row;
    let value = if is_encrypted {
        fernet.open_as(&stored, WHAT)?.expose().to_owned()
    } else {
        stored
    };
    Ok(Variable {
        key,
        value,
        description,
        is_encrypted,
    })
}

fn seal(value: &str, fernet: &SecretKey) -> String {
    fernet.seal(&Secret::new(value))
}

impl Store {
    /// Sets a variable, its value encrypted with `fernet`.
    pub async fn set_variable(
        &self,
        key: &str,
        value: &str,
        description: Option<&str>,
        fernet: &SecretKey,
    ) -> Result<(), StoreError> {
        let sql = self.sql(
            "INSERT INTO variables (key, value, description, is_encrypted) VALUES ($1, $2, $3, TRUE) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value, is_encrypted = excluded.is_encrypted, \
             description = COALESCE(excluded.description, variables.description)",
        );
        let sealed = seal(value, fernet);
        with_pool!(self, pool => sqlx::query(&sql).bind(key).bind(&sealed).bind(description).execute(pool).await.map(drop))
            .map_err(query("setting a variable"))
    }

    /// A variable's value, decrypted with `fernet`.
    pub async fn variable(
        &self,
        key: &str,
        fernet: &SecretKey,
    ) -> Result<Option<String>, StoreError> {
        Ok(self.variable_record(key, fernet).await?.map(|v| v.value))
    }

    /// Every variable's key, sorted (no value is read).
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

    /// Every variable, as templates read them (`var.value.KEY`), decrypted with `fernet`.
    pub async fn all_variables(
        &self,
        fernet: &SecretKey,
    ) -> Result<HashMap<String, String>, StoreError> {
        Ok(self
            .variable_records(fernet)
            .await?
            .into_iter()
            .map(|v| (v.key, v.value))
            .collect())
    }

    /// One variable with its description, decrypted with `fernet`.
    pub async fn variable_record(
        &self,
        key: &str,
        fernet: &SecretKey,
    ) -> Result<Option<Variable>, StoreError> {
        let sql =
            self.sql("SELECT key, value, description, is_encrypted FROM variables WHERE key = $1");
        let row: Option<VariableRow> =
            with_pool!(self, pool => sqlx::query_as(&sql).bind(key).fetch_optional(pool).await)
                .map_err(query("reading a variable"))?;
        row.map(|row| open_row(row, fernet)).transpose()
    }

    /// Every variable with its description, by key, decrypted with `fernet`.
    pub async fn variable_records(&self, fernet: &SecretKey) -> Result<Vec<Variable>, StoreError> {
        let sql =
            self.sql("SELECT key, value, description, is_encrypted FROM variables ORDER BY key");
        let rows: Vec<VariableRow> =
            with_pool!(self, pool => sqlx::query_as(&sql).fetch_all(pool).await)
                .map_err(query("listing variables"))?;
        rows.into_iter().map(|row| open_row(row, fernet)).collect()
    }

    /// Creates a variable, its value encrypted with `fernet`; `false` when the key is taken
    /// (the stored one is left alone).
    pub async fn create_variable(
        &self,
        variable: &Variable,
        fernet: &SecretKey,
    ) -> Result<bool, StoreError> {
        let sql = self.sql(
            "INSERT INTO variables (key, value, description, is_encrypted) VALUES ($1, $2, $3, TRUE) \
             ON CONFLICT (key) DO NOTHING",
        );
        let sealed = seal(&variable.value, fernet);
        let done = with_pool!(self, pool => sqlx::query(&sql)
            .bind(&variable.key)
            .bind(&sealed)
            .bind(&variable.description)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()))
        .map_err(query("creating a variable"))?;
        Ok(done == 1)
    }

    /// Replaces an existing variable's value (encrypted with `fernet`) and description; `false`
    /// when there is none.
    pub async fn update_variable(
        &self,
        variable: &Variable,
        fernet: &SecretKey,
    ) -> Result<bool, StoreError> {
        let sql = self.sql(
            "UPDATE variables SET value = $1, description = $2, is_encrypted = TRUE WHERE key = $3",
        );
        let sealed = seal(&variable.value, fernet);
        let done = with_pool!(self, pool => sqlx::query(&sql)
            .bind(&sealed)
            .bind(&variable.description)
            .bind(&variable.key)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()))
        .map_err(query("updating a variable"))?;
        Ok(done == 1)
    }

    /// Encrypts with `fernet` every variable still stored as plain text (written before Gust
    /// encrypted variables); the number encrypted. Each row is sealed by its own
    /// compare-and-set update (`WHERE value = <the plain text read> AND NOT is_encrypted`), so
    /// a crash part-way leaves every row either plain or sealed, never half-written; running it
    /// again finishes the work, and a row another process changed meanwhile is left to it.
    pub async fn encrypt_plain_variables(&self, fernet: &SecretKey) -> Result<u64, StoreError> {
        let read = self.sql("SELECT key, value FROM variables WHERE NOT is_encrypted");
        let plain: Vec<(String, String)> =
            with_pool!(self, pool => sqlx::query_as(&read).fetch_all(pool).await)
                .map_err(query("reading plain-text variables"))?;
        let write = self.sql(
            "UPDATE variables SET value = $1, is_encrypted = TRUE \
             WHERE key = $2 AND value = $3 AND NOT is_encrypted",
        );
        let mut sealed = 0;
        for (key, value) in plain {
            let token = seal(&value, fernet);
            sealed += with_pool!(self, pool => sqlx::query(&write)
                .bind(&token)
                .bind(&key)
                .bind(&value)
                .execute(pool)
                .await
                .map(|r| r.rows_affected()))
            .map_err(query("encrypting a variable"))?;
        }
        Ok(sealed)
    }

    /// A variable's value as stored, for tests that check it is not plain text.
    #[doc(hidden)]
    pub async fn raw_variable_value(&self, key: &str) -> Result<Option<String>, StoreError> {
        let sql = self.sql("SELECT value FROM variables WHERE key = $1");
        with_pool!(self, pool => sqlx::query_scalar(&sql).bind(key).fetch_optional(pool).await)
            .map_err(query("reading a variable"))
    }

    /// Stores a variable as plain text, as Gust did before it encrypted variables: for tests of
    /// [`Store::encrypt_plain_variables`].
    #[doc(hidden)]
    pub async fn put_plain_variable(&self, key: &str, value: &str) -> Result<(), StoreError> {
        let sql =
            self.sql("INSERT INTO variables (key, value, is_encrypted) VALUES ($1, $2, FALSE)");
        with_pool!(self, pool => sqlx::query(&sql).bind(key).bind(value).execute(pool).await.map(drop))
            .map_err(query("setting a variable"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fernet() -> SecretKey {
        SecretKey::parse(&SecretKey::generate()).unwrap()
    }

    async fn variables_are_created_once_updated_and_listed(store: Store) {
        let key = fernet();
        let var = Variable {
            key: "region".into(),
            value: "eu".into(),
            description: Some("where".into()),
            is_encrypted: true,
        };
        assert!(store.create_variable(&var, &key).await.unwrap());
        let taken = Variable {
            value: "us".into(),
            ..var.clone()
        };
        assert!(
            !store.create_variable(&taken, &key).await.unwrap(),
            "keys are unique"
        );
        assert_eq!(
            store.variable_record("region", &key).await.unwrap(),
            Some(var)
        );
        let changed = Variable {
            key: "region".into(),
            value: "us".into(),
            description: None,
            is_encrypted: true,
        };
        assert!(store.update_variable(&changed, &key).await.unwrap());
        assert!(
            !store
                .update_variable(
                    &Variable {
                        key: "nope".into(),
                        ..changed.clone()
                    },
                    &key
                )
                .await
                .unwrap()
        );
        store.set_variable("a", "1", None, &key).await.unwrap();
        let keys: Vec<String> = store
            .variable_records(&key)
            .await
            .unwrap()
            .into_iter()
            .map(|v| v.key)
            .collect();
        assert_eq!(keys, ["a", "region"]);
        assert_eq!(
            store.variable_record("region", &key).await.unwrap(),
            Some(changed)
        );
        assert_eq!(store.variable_record("nope", &key).await.unwrap(), None);
    }

    async fn variable_values_are_encrypted_at_rest(store: Store) {
        let key = fernet();
        store
            .set_variable(
                "db_url",
                "postgres://u:hunter2@db/app",
                Some("the app"),
                &key,
            )
            .await
            .unwrap();
        let stored = store.raw_variable_value("db_url").await.unwrap().unwrap();
        assert!(!stored.contains("hunter2"), "encrypted at rest: {stored}");
        assert_eq!(
            store.variable("db_url", &key).await.unwrap().as_deref(),
            Some("postgres://u:hunter2@db/app")
        );
        let other = fernet();
        let err = store
            .variable("db_url", &other)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("fernet_key"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }

    async fn plain_variables_from_before_are_encrypted_once(store: Store) {
        let key = fernet();
        store.put_plain_variable("old", "s3cr3t-old").await.unwrap();
        store
            .set_variable("new", "fresh", None, &key)
            .await
            .unwrap();
        // Readable before they are sealed, as Airflow reads rows with is_encrypted false.
        assert_eq!(
            store.variable("old", &key).await.unwrap().as_deref(),
            Some("s3cr3t-old")
        );
        assert!(
            !store
                .variable_record("old", &key)
                .await
                .unwrap()
                .unwrap()
                .is_encrypted
        );
        assert_eq!(store.encrypt_plain_variables(&key).await.unwrap(), 1);
        assert_eq!(
            store.encrypt_plain_variables(&key).await.unwrap(),
            0,
            "idempotent"
        );
        let stored = store.raw_variable_value("old").await.unwrap().unwrap();
        assert!(!stored.contains("s3cr3t"), "{stored}");
        let all = store.all_variables(&key).await.unwrap();
        assert_eq!(all["old"], "s3cr3t-old");
        assert_eq!(all["new"], "fresh");
    }

    crate::both_engines!(
        variables_are_created_once_updated_and_listed,
        variable_values_are_encrypted_at_rest,
        plain_variables_from_before_are_encrypted_once
    );
}
