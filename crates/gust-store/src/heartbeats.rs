//! Each scheduler's latest heartbeat, for health checks.

use chrono::{DateTime, Utc};

use crate::error::query;
use crate::time::{opt_from_db, to_db};
use crate::{Store, StoreError, with_pool};

impl Store {
    /// Records that the scheduler `scheduler_id` is alive at `now`.
    pub async fn scheduler_heartbeat(
        &self,
        scheduler_id: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let sql = self.sql(
            "INSERT INTO scheduler_heartbeats (scheduler_id, heartbeat) VALUES ($1, $2) \
             ON CONFLICT (scheduler_id) DO UPDATE SET heartbeat = excluded.heartbeat",
        );
        with_pool!(self, pool => sqlx::query(&sql).bind(scheduler_id).bind(to_db(now)).execute(pool).await.map(drop))
            .map_err(query("recording a heartbeat"))
    }

    /// The latest heartbeat of any scheduler.
    pub async fn latest_scheduler_heartbeat(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let sql = self.sql("SELECT MAX(heartbeat) FROM scheduler_heartbeats");
        let latest: Option<i64> =
            with_pool!(self, pool => sqlx::query_scalar(&sql).fetch_one(pool).await)
                .map_err(query("reading heartbeats"))?;
        opt_from_db(latest)
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::TestDb;

    #[tokio::test]
    async fn the_latest_heartbeat_of_any_scheduler_is_reported() {
        let db = TestDb::sqlite().await;
        let t = |s| chrono::DateTime::from_timestamp(s, 0).unwrap();
        assert_eq!(db.store.latest_scheduler_heartbeat().await.unwrap(), None);
        db.store.scheduler_heartbeat("a", t(100)).await.unwrap();
        db.store.scheduler_heartbeat("b", t(50)).await.unwrap();
        db.store.scheduler_heartbeat("b", t(200)).await.unwrap();
        assert_eq!(
            db.store.latest_scheduler_heartbeat().await.unwrap(),
            Some(t(200))
        );
        db.finish().await;
    }
}
