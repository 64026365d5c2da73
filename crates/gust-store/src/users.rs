//! Users of the REST API and the web UI: a name, an id never reused, an argon2 password hash
//! and a role. Hashing and checking passwords belongs to the server; this module only keeps the
//! hash.

use chrono::{DateTime, Utc};

use crate::error::query;
use crate::time::{from_db, to_db};
use crate::{Store, StoreError, with_pool};

/// What a user may do, each role including the ones before it: Airflow's Viewer, User, Op and
/// Admin (its FAB auth manager's default roles).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Reads DAGs, runs, task instances, logs, XComs, pools and import errors; not variables
    /// or connections.
    Viewer,
    /// Also acts on DAGs: pauses and deletes them, triggers, clears, marks and deletes runs and
    /// task instances.
    User,
    /// Also reads and edits variables and connections, and edits pools.
    Op,
    /// Also manages users.
    Admin,
}

impl Role {
    /// Every role, least privileged first.
    pub const ALL: [Role; 4] = [Role::Viewer, Role::User, Role::Op, Role::Admin];

    /// The role's stored and displayed name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::User => "user",
            Role::Op => "op",
            Role::Admin => "admin",
        }
    }

    /// The role named `name` in any case (`viewer`, or Airflow's `Viewer`).
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
    /// The account's id: random, never reused, so a token that names it names this account
    /// and not a later one that takes the same name.
    pub id: String,
    /// The login name.
    pub username: String,
    /// The argon2 hash of the password (PHC string form).
    pub password_hash: String,
    /// What the user may do.
    pub role: Role,
    /// When the user was created.
    pub created_at: DateTime<Utc>,
}

impl User {
    /// A new account with a fresh id.
    #[must_use]
    pub fn new(
        username: String,
        password_hash: String,
        role: Role,
        created_at: DateTime<Utc>,
    ) -> Self {
        Self {
            id: uuid::Uuid::new_v4().simple().to_string(),
            username,
            password_hash,
            role,
            created_at,
        }
    }
}

type UserRow = (String, String, String, String, i64);

fn user_from_row(
    (id, username, password_hash, role, created_at): UserRow,
) -> Result<User, StoreError> {
    Ok(User {
        id,
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
            "INSERT INTO users (id, username, password_hash, role, created_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
        );
        let done = with_pool!(self, pool => sqlx::query(&sql)
            .bind(&user.id)
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
        let sql = self.sql(
            "SELECT id, username, password_hash, role, created_at FROM users WHERE username = $1",
        );
        let row: Option<UserRow> = with_pool!(self, pool => sqlx::query_as(&sql).bind(username).fetch_optional(pool).await)
            .map_err(query("reading a user"))?;
        row.map(user_from_row).transpose()
    }

    /// Every user, by name.
    pub async fn users(&self) -> Result<Vec<User>, StoreError> {
        let sql = self.sql(
            "SELECT id, username, password_hash, role, created_at FROM users ORDER BY username",
        );
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
        let alice = User::new("alice".into(), "$argon2id$...".into(), Role::Op, now);
        assert!(store.create_user(&alice).await.unwrap());
        assert!(
            !store.create_user(&alice).await.unwrap(),
            "names are unique"
        );
        assert_eq!(store.user("alice").await.unwrap(), Some(alice.clone()));
        assert_eq!(store.users().await.unwrap(), vec![alice.clone()]);
        assert!(store.delete_user("alice").await.unwrap());
        assert!(!store.delete_user("alice").await.unwrap());
        assert_eq!(store.user("alice").await.unwrap(), None);
        let again = User::new("alice".into(), "$argon2id$...".into(), Role::Op, now);
        assert!(store.create_user(&again).await.unwrap());
        assert_ne!(
            store.user("alice").await.unwrap().unwrap().id,
            alice.id,
            "a name taken again is another account"
        );
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
        for (airflow, role) in [
            ("Viewer", Role::Viewer),
            ("User", Role::User),
            ("Op", Role::Op),
            ("Admin", Role::Admin),
        ] {
            assert_eq!(Role::parse(airflow), Some(role));
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        assert_eq!(Role::parse("superuser"), None);
        assert!(Role::Viewer < Role::User && Role::User < Role::Op && Role::Op < Role::Admin);
    }
}
