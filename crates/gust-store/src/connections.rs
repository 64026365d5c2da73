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
#[derive(Clone)]
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

    pub(crate) fn seal(&self, secret: &Secret) -> String {
        self.0.encrypt(secret.expose().as_bytes())
    }

    fn open(&self, token: &str) -> Result<Secret, StoreError> {
        self.open_as(token, "connection secret")
    }

    /// Decrypts `token`, a stored `what` (named in the error when it does not decrypt).
    pub(crate) fn open_as(&self, token: &str, what: &'static str) -> Result<Secret, StoreError> {
        let bytes = self.0.decrypt(token).map_err(|_| StoreError::Corrupt {
            what,
            detail: "it does not decrypt with this key; is [core] fernet_key the key it was stored with?".into(),
        })?;
        String::from_utf8(bytes)
            .map(Secret)
            .map_err(|_| StoreError::Corrupt {
                what,
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

const CONNECTION_COLUMNS: &str = "conn_id, conn_type, host, login, schema_name, port, password_encrypted, extra_encrypted, description";

/// A stored connection row, its secrets still encrypted.
type ConnectionRow = (
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

fn connection_row<R: Row>(r: &R) -> Result<ConnectionRow, sqlx::Error>
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Option<String>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Option<i32>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    Ok((
        r.try_get("conn_id")?,
        r.try_get("conn_type")?,
        r.try_get("host")?,
        r.try_get("login")?,
        r.try_get("schema_name")?,
        r.try_get("port")?,
        r.try_get("password_encrypted")?,
        r.try_get("extra_encrypted")?,
        r.try_get("description")?,
    ))
}

fn open_connection(row: ConnectionRow, key: &SecretKey) -> Result<Connection, StoreError> {
    let (conn_id, conn_type, host, login, schema, port, password, extra, description) = row;
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
        self.write_connection(&sql, conn, key, "storing a connection")
            .await
            .map(drop)
    }

    /// Creates a connection, encrypting its secrets with `key`; `false` when the id is taken
    /// (the stored one is left alone).
    pub async fn create_connection(
        &self,
        conn: &Connection,
        key: &SecretKey,
    ) -> Result<bool, StoreError> {
        let sql = self.sql(
            "INSERT INTO connections (conn_id, conn_type, host, login, schema_name, port, password_encrypted, extra_encrypted, description) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (conn_id) DO NOTHING",
        );
        let done = self
            .write_connection(&sql, conn, key, "creating a connection")
            .await?;
        Ok(done == 1)
    }

    /// Replaces an existing connection, encrypting its secrets with `key`; `false` when there
    /// is none (it is not created).
    pub async fn update_connection(
        &self,
        conn: &Connection,
        key: &SecretKey,
    ) -> Result<bool, StoreError> {
        let sql = self.sql(
            "UPDATE connections SET conn_type = $2, host = $3, login = $4, schema_name = $5, port = $6, \
             password_encrypted = $7, extra_encrypted = $8, description = $9 WHERE conn_id = $1",
        );
        let done = self
            .write_connection(&sql, conn, key, "updating a connection")
            .await?;
        Ok(done == 1)
    }

    /// Runs an `INSERT` or `UPDATE` of `conn` (`$1` its id, then its columns in table order,
    /// its secrets sealed with `key`); the rows it wrote.
    async fn write_connection(
        &self,
        sql: &str,
        conn: &Connection,
        key: &SecretKey,
        what: &'static str,
    ) -> Result<u64, StoreError> {
        let password = conn.password.as_ref().map(|s| key.seal(s));
        let extra = conn.extra.as_ref().map(|s| key.seal(s));
        with_pool!(self, pool => sqlx::query(sql)
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
            .map(|r| r.rows_affected()))
        .map_err(query(what))
    }

    /// Every connection, by id, its secrets decrypted with `key`.
    pub async fn connections(&self, key: &SecretKey) -> Result<Vec<Connection>, StoreError> {
        let sql = self.sql_owned(format!(
            "SELECT {CONNECTION_COLUMNS} FROM connections ORDER BY conn_id"
        ));
        let rows: Vec<ConnectionRow> = with_pool!(self, pool => {
            let rows = sqlx::query(&sql).fetch_all(pool).await.map_err(query("listing connections"))?;
            rows.iter().map(connection_row).collect::<Result<Vec<_>, _>>().map_err(query("listing connections"))?
        });
        rows.into_iter()
            .map(|row| open_connection(row, key))
            .collect()
    }

    /// A connection, its secrets decrypted with `key`.
    pub async fn connection(
        &self,
        conn_id: &str,
        key: &SecretKey,
    ) -> Result<Option<Connection>, StoreError> {
        let sql = self.sql_owned(format!(
            "SELECT {CONNECTION_COLUMNS} FROM connections WHERE conn_id = $1"
        ));
        let row: Option<ConnectionRow> = with_pool!(self, pool => {
            let row = sqlx::query(&sql).bind(conn_id).fetch_optional(pool).await.map_err(query("reading a connection"))?;
            row.as_ref().map(connection_row).transpose().map_err(query("reading a connection"))?
        });
        row.map(|row| open_connection(row, key)).transpose()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(id: &str) -> Connection {
        Connection {
            conn_id: id.into(),
            conn_type: "postgres".into(),
            host: Some("db".into()),
            login: Some("me".into()),
            schema: Some("app".into()),
            port: Some(5432),
            password: Some(Secret::new("hunter2")),
            extra: Some(Secret::new(r#"{"sslmode": "require"}"#)),
            description: None,
        }
    }

    async fn connections_are_created_once_and_listed_decrypted(store: Store) {
        let key = SecretKey::parse(&SecretKey::generate()).unwrap();
        assert!(store.create_connection(&conn("b"), &key).await.unwrap());
        let other = Connection {
            host: Some("elsewhere".into()),
            ..conn("b")
        };
        assert!(
            !store.create_connection(&other, &key).await.unwrap(),
            "ids are unique"
        );
        let bare = Connection {
            password: None,
            extra: None,
            host: None,
            ..conn("a")
        };
        assert!(store.create_connection(&bare, &key).await.unwrap());
        assert_eq!(
            store.connections(&key).await.unwrap(),
            vec![bare, conn("b")]
        );
        assert_eq!(store.connection("b", &key).await.unwrap(), Some(conn("b")));
        let stored = store.raw_connection_password("b").await.unwrap().unwrap();
        assert!(!stored.contains("hunter2"), "encrypted at rest");
        let moved = Connection {
            host: Some("moved".into()),
            password: None,
            ..conn("b")
        };
        assert!(store.update_connection(&moved, &key).await.unwrap());
        assert_eq!(store.connection("b", &key).await.unwrap(), Some(moved));
        assert!(
            !store.update_connection(&conn("nope"), &key).await.unwrap(),
            "updating never creates"
        );
    }

    crate::both_engines!(connections_are_created_once_and_listed_decrypted);
}
