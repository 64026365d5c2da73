//! Connections: how tasks reach outside systems. Passwords and extras are encrypted at rest with
//! Fernet, the scheme and key format of Airflow's `fernet_key`, so an Airflow key works as is;
//! they are never printed (see [`Secret`]).

use std::fmt;

use sqlx::Row;

use crate::error::query;
use crate::{Store, StoreError, with_pool};

/// A secret value: readable by code that asks for it, shown as `***` everywhere else.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    #[must_use]
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself; call only where it is used, never to print it.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// The key secrets are encrypted with (a Fernet key: 32 bytes, URL-safe base64).
pub struct SecretKey(fernet::Fernet);

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(***)")
    }
}

impl SecretKey {
    /// Reads a key; `None` if it is not a valid Fernet key.
    #[must_use]
    pub fn parse(key: &str) -> Option<Self> {
        fernet::Fernet::new(key.trim()).map(Self)
    }

    /// A new random key.
    #[must_use]
    pub fn generate() -> String {
        fernet::Fernet::generate_key()
    }

    fn seal(&self, secret: &Secret) -> String {
        self.0.encrypt(secret.expose().as_bytes())
    }

    fn open(&self, token: &str) -> Result<Secret, StoreError> {
        let bytes = self.0.decrypt(token).map_err(|_| StoreError::Corrupt {
            what: "connection secret",
            detail: "it does not decrypt with this key; is [core] fernet_key the key it was stored with?".into(),
        })?;
        String::from_utf8(bytes)
            .map(Secret)
            .map_err(|_| StoreError::Corrupt {
                what: "connection secret",
                detail: "not UTF-8 text".into(),
            })
    }
}

/// A connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    /// Its id (`kubernetes_default`, `s3_artifacts`...).
    pub conn_id: String,
    /// Its type (`kubernetes`, `aws`, `postgres`...).
    pub conn_type: String,
    /// Host.
    pub host: Option<String>,
    /// User name.
    pub login: Option<String>,
    /// Schema or database.
    pub schema: Option<String>,
    /// Port.
    pub port: Option<i32>,
    /// Password (encrypted at rest).
    pub password: Option<Secret>,
    /// Extra settings as JSON (encrypted at rest: they often hold tokens).
    pub extra: Option<Secret>,
    /// What it is for.
    pub description: Option<String>,
}

impl Store {
    /// Creates or replaces a connection, encrypting its secrets with `key`.
    pub async fn put_connection(
        &self,
        conn: &Connection,
        key: &SecretKey,
    ) -> Result<(), StoreError> {
        let sql = self.sql(
            "INSERT INTO connections (conn_id, conn_type, host, login, schema_name, port, password_encrypted, extra_encrypted, description) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (conn_id) DO UPDATE SET conn_type = excluded.conn_type, host = excluded.host, login = excluded.login, \
             schema_name = excluded.schema_name, port = excluded.port, password_encrypted = excluded.password_encrypted, \
             extra_encrypted = excluded.extra_encrypted, description = excluded.description",
        );
        let password = conn.password.as_ref().map(|s| key.seal(s));
        let extra = conn.extra.as_ref().map(|s| key.seal(s));
        with_pool!(self, pool => sqlx::query(&sql)
            .bind(&conn.conn_id)
            .bind(&conn.conn_type)
            .bind(&conn.host)
            .bind(&conn.login)
            .bind(&conn.schema)
            .bind(conn.port)
            .bind(&password)
            .bind(&extra)
            .bind(&conn.description)
            .execute(pool)
            .await
            .map(drop))
        .map_err(query("storing a connection"))
    }

    /// A connection, its secrets decrypted with `key`.
    pub async fn connection(
        &self,
        conn_id: &str,
        key: &SecretKey,
    ) -> Result<Option<Connection>, StoreError> {
        let sql = self.sql(
            "SELECT conn_id, conn_type, host, login, schema_name, port, password_encrypted, extra_encrypted, description \
             FROM connections WHERE conn_id = $1",
        );
        type Raw = (
            String,
            String,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<i32>,
            Option<String>,
            Option<String>,
            Option<String>,
        );
        let raw: Option<Raw> = with_pool!(self, pool => {
            let row = sqlx::query(&sql).bind(conn_id).fetch_optional(pool).await.map_err(query("reading a connection"))?;
            row.map(|r| Ok::<Raw, sqlx::Error>((r.try_get("conn_id")?, r.try_get("conn_type")?, r.try_get("host")?, r.try_get("login")?,
                r.try_get("schema_name")?, r.try_get("port")?, r.try_get("password_encrypted")?, r.try_get("extra_encrypted")?, r.try_get("description")?)))
                .transpose()
                .map_err(query("reading a connection"))?
        });
        raw.map(
            |(conn_id, conn_type, host, login, schema, port, password, extra, description)| {
                Ok(Connection {
                    conn_id,
                    conn_type,
                    host,
                    login,
                    schema,
                    port,
                    password: password.map(|t| key.open(&t)).transpose()?,
                    extra: extra.map(|t| key.open(&t)).transpose()?,
                    description,
                })
            },
        )
        .transpose()
    }

    /// Every connection's id and type, by id (no secrets are read).
    pub async fn connection_ids(&self) -> Result<Vec<(String, String)>, StoreError> {
        let sql = self.sql("SELECT conn_id, conn_type FROM connections ORDER BY conn_id");
        with_pool!(self, pool => sqlx::query_as(&sql).fetch_all(pool).await)
            .map_err(query("listing connections"))
    }

    /// Deletes a connection; `false` when there was none.
    pub async fn delete_connection(&self, conn_id: &str) -> Result<bool, StoreError> {
        let sql = self.sql("DELETE FROM connections WHERE conn_id = $1");
        let done = with_pool!(self, pool => sqlx::query(&sql).bind(conn_id).execute(pool).await.map(|r| r.rows_affected()))
            .map_err(query("deleting a connection"))?;
        Ok(done == 1)
    }

    /// The stored (encrypted) password of a connection, for tests that check it is not plain text.
    #[doc(hidden)]
    pub async fn raw_connection_password(
        &self,
        conn_id: &str,
    ) -> Result<Option<String>, StoreError> {
        let sql = self.sql("SELECT password_encrypted FROM connections WHERE conn_id = $1");
        with_pool!(self, pool => sqlx::query_scalar(&sql).bind(conn_id).fetch_optional(pool).await)
            .map(Option::flatten)
            .map_err(query("reading a connection"))
    }
}
