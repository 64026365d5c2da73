//! Each scheduler's latest heartbeat, for health checks, and each scheduler as a job
//! (Airflow's `job` table: a `SchedulerJob` row per scheduler, started at its first heartbeat).

use chrono::{DateTime, Utc};
use sqlx::Row;

use crate::error::query;
use crate::time::{from_db, opt_from_db, to_db};
use crate::{Store, StoreError, with_pool};

/// The job type every Gust scheduler (and `gust standalone`) is recorded as.
pub const SCHEDULER_JOB: &str = "SchedulerJob";

/// A scheduler as a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// Its number, in the order schedulers first beat.
    pub id: i64,
    /// The scheduler's id (`host:pid`).
    pub scheduler_id: String,
    /// Always [`SCHEDULER_JOB`].
    pub job_type: String,
    /// `running`, or `success` once it stopped cleanly.
    pub state: String,
    /// The host it runs on.
    pub hostname: Option<String>,
    /// Its first heartbeat.
    pub start_date: DateTime<Utc>,
    /// When it stopped cleanly.
    pub end_date: Option<DateTime<Utc>>,
    /// Its latest heartbeat.
    pub latest_heartbeat: DateTime<Utc>,
}

/// The host part of a scheduler id (`host:pid`).
fn host_of(scheduler_id: &str) -> Option<&str> {
    scheduler_id
        .rsplit_once(':')
        .map(|(host, _)| host)
        .filter(|host| !host.is_empty())
}

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
            .map_err(query("recording a heartbeat"))?;
        let job = self.sql(
            "INSERT INTO jobs (scheduler_id, job_type, state, hostname, start_date, latest_heartbeat) \
             VALUES ($1, $2, 'running', $3, $4, $4) \
             ON CONFLICT (scheduler_id) DO UPDATE SET latest_heartbeat = excluded.latest_heartbeat, \
             state = 'running', end_date = NULL",
        );
        with_pool!(self, pool => sqlx::query(&job)
            .bind(scheduler_id)
            .bind(SCHEDULER_JOB)
            .bind(host_of(scheduler_id))
            .bind(to_db(now))
            .execute(pool)
            .await
            .map(drop))
        .map_err(query("recording a scheduler job's heartbeat"))
    }

    /// Records that the scheduler `scheduler_id` stopped cleanly at `now` (its job succeeded).
    pub async fn scheduler_stopped(
        &self,
        scheduler_id: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let sql = self.sql(
            "UPDATE jobs SET state = 'success', end_date = $2, latest_heartbeat = $2 WHERE scheduler_id = $1",
        );
        with_pool!(self, pool => sqlx::query(&sql).bind(scheduler_id).bind(to_db(now)).execute(pool).await.map(drop))
            .map_err(query("recording a scheduler's stop"))
    }

    /// Every scheduler job, oldest first.
    pub async fn jobs(&self) -> Result<Vec<Job>, StoreError> {
        let sql = "SELECT id, scheduler_id, job_type, state, hostname, start_date, end_date, latest_heartbeat \
                   FROM jobs ORDER BY id";
        let rows = with_pool!(self, pool => {
            let rows = sqlx::query(sql).fetch_all(pool).await.map_err(query("listing jobs"))?;
            rows.iter()
                .map(|r| Ok::<_, sqlx::Error>((
                    r.try_get::<i64, _>(0)?, r.try_get::<String, _>(1)?, r.try_get::<String, _>(2)?,
                    r.try_get::<String, _>(3)?, r.try_get::<Option<String>, _>(4)?,
                    r.try_get::<i64, _>(5)?, r.try_get::<Option<i64>, _>(6)?, r.try_get::<i64, _>(7)?,
                )))
                .collect::<Result<Vec<_>, _>>()
                .map_err(query("listing jobs"))?
        });
        rows.into_iter()
            .map(
                |(id, scheduler_id, job_type, state, hostname, start, end, beat)| {
                    Ok(Job {
                        id,
                        scheduler_id,
                        job_type,
                        state,
                        hostname,
                        start_date: from_db(start)?,
                        end_date: opt_from_db(end)?,
                        latest_heartbeat: from_db(beat)?,
                    })
                },
            )
            .collect()
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

    async fn each_scheduler_is_a_job_started_at_its_first_heartbeat(store: crate::Store) {
        let t = |s| chrono::DateTime::from_timestamp(s, 0).unwrap();
        store
            .scheduler_heartbeat("node-a:12", t(100))
            .await
            .unwrap();
        store.scheduler_heartbeat("node-b:7", t(150)).await.unwrap();
        store
            .scheduler_heartbeat("node-a:12", t(160))
            .await
            .unwrap();
        store.scheduler_stopped("node-b:7", t(170)).await.unwrap();
        let jobs = store.jobs().await.unwrap();
        assert_eq!(jobs.len(), 2);
        assert_eq!(jobs[0].scheduler_id, "node-a:12");
        assert_eq!(jobs[0].hostname.as_deref(), Some("node-a"));
        assert_eq!(jobs[0].job_type, super::SCHEDULER_JOB);
        assert_eq!(
            (jobs[0].start_date, jobs[0].latest_heartbeat),
            (t(100), t(160))
        );
        assert_eq!(
            (jobs[0].state.as_str(), jobs[0].end_date),
            ("running", None)
        );
        assert_eq!(
            (jobs[1].state.as_str(), jobs[1].end_date),
            ("success", Some(t(170)))
        );
        assert!(jobs[0].id < jobs[1].id);
    }

    crate::both_engines!(each_scheduler_is_a_job_started_at_its_first_heartbeat);
}
