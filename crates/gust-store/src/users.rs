//! Users of the REST API and the web UI: a name, an argon2 password hash and a role. Hashing
//! and checking passwords belongs to the server; this module only keeps the hash.

use chrono::{DateTime, Utc};

use crate::error::query;
use crate::time::{from_db, to_db};
use crate::{Store, StoreError, with_pool};

/// What a user may do, each role including the ones before it (Airflow's Viewer, Op, Admin).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Reads everything (except secrets, which nobody reads back).
    Viewer,
    /// Also runs things: pauses DAGs, triggers and clears runs, marks tasks, edits variables,
    /// connections and pools.
    Op,
    /// Also manages users.
    Admin,
}

impl Role {
    /// Every role, least privileged first.
    pub const ALL: [Role; 3] = [Role::Viewer, Role::Op, Role::Admin];

    /// The role's stored and displayed name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Op => "op",
            Role::Admin => "admin",
        }
    }

    /// The role named `name` (case-insensitive).
    #[must_use]
    pub fn parse(name: &str) -> Option<Role> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str().eq_ignore_ascii_case(name))
    }
}

/// A stored user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The login name.
    pub username: String,
    /// The argon2 hash of the password (PHC string form).
    pub password_hash: String,
    /// What the user may do.
    pub role: Role,
    /// When the user was created.
    pub created_at: DateTime<Utc>,
}

type UserRow = (String, String, String, i64);

fn user_from_row((username, password_hash, role, created_at): UserRow) -> Result<User, StoreError> {
    Ok(User {
        role: Role::parse(&role).ok_or_else(|| StoreError::Corrupt {
            what: "user role",
            detail: role.clone(),
        })?,
        username,
        password_hash,
        created_at: from_db(created_at)?,
    })
}

impl Store {
    /// Creates a user; `false` when the name is taken.
    pub async fn create_user(&self, user: &User) -> Result<bool, StoreError> {
        let sql = self.sql(
            "INSERT INTO users (username, password_hash, role, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (username) DO NOTHING",
        );
        let done = with_pool!(self, pool => sqlx::query(&sql)
            .bind(&user.username)
            .bind(&user.password_hash)
            .bind(user.role.as_str())
            .bind(to_db(user.created_at))
            .execute(pool)
            .await
            .map(|r| r.rows_affected()))
        .map_err(query("creating a user"))?;
        Ok(done == 1)
    }

    /// One user.
    pub async fn user(&self, username: &str) -> Result<Option<User>, StoreError> {
        let sql = self
            .sql("SELECT username, password_hash, role, created_at FROM users WHERE username = $1");
        let row: Option<UserRow> = with_pool!(self, pool => sqlx::query_as(&sql).bind(username).fetch_optional(pool).await)
            .map_err(query("reading a user"))?;
        row.map(user_from_row).transpose()
    }

    /// Every user, by name.
    pub async fn users(&self) -> Result<Vec<User>, StoreError> {
        let sql = self
            .sql("SELECT username, password_hash, role, created_at FROM users ORDER BY username");
        let rows: Vec<UserRow> =
            with_pool!(self, pool => sqlx::query_as(&sql).fetch_all(pool).await)
                .map_err(query("listing users"))?;
        rows.into_iter().map(user_from_row).collect()
    }

    /// Deletes a user; `false` when there was none.
    pub async fn delete_user(&self, username: &str) -> Result<bool, StoreError> {
        let sql = self.sql("DELETE FROM users WHERE username = $1");
        let done = with_pool!(self, pool => sqlx::query(&sql).bind(username).execute(pool).await.map(|r| r.rows_affected()))
            .map_err(query("deleting a user"))?;
        Ok(done == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TestDb;

    async fn users_round_trip(store: &Store) {
        let now = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let alice = User {
            username: "alice".into(),
            password_hash: "$argon2id$...".into(),
            role: Role::Op,
            created_at: now,
        };
        assert!(store.create_user(&alice).await.unwrap());
        assert!(
            !store.create_user(&alice).await.unwrap(),
            "names are unique"
        );
        assert_eq!(store.user("alice").await.unwrap(), Some(alice.clone()));
        assert_eq!(store.users().await.unwrap(), vec![alice]);
        assert!(store.delete_user("alice").await.unwrap());
        assert!(!store.delete_user("alice").await.unwrap());
        assert_eq!(store.user("alice").await.unwrap(), None);
    }

    #[tokio::test]
    async fn users_on_sqlite() {
        let db = TestDb::sqlite().await;
        users_round_trip(&db.store).await;
        db.finish().await;
    }

    #[tokio::test]
    async fn users_on_postgres() {
        let Some(db) = TestDb::postgres().await else {
            return;
        };
        users_round_trip(&db.store).await;
        db.finish().await;
    }

    #[test]
    fn roles_parse_their_names_and_order_by_privilege() {
        assert_eq!(Role::parse("Admin"), Some(Role::Admin));
        assert_eq!(Role::parse("superuser"), None);
        assert!(Role::Viewer < Role::Op && Role::Op < Role::Admin);
    }
}
