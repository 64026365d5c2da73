//! Which scheduler drives which DAG. Several schedulers share one database by DAG: each holds
//! claims on some DAGs until a time it keeps pushing forward, and only the holder creates,
//! starts and drives that DAG's runs. A claim not renewed in time (its scheduler died) is taken
//! over by another. Claiming locks the candidate rows with `FOR UPDATE SKIP LOCKED` on
//! PostgreSQL, so schedulers claiming at the same moment neither wait for each other nor take
//! the same DAG; SQLite has a single scheduler (the process lock beside the file).

use crate::error::query;
use crate::time::{opt_from_db, to_db};
use crate::{Engine, Store, StoreError, with_pool};
use chrono::{DateTime, Utc};

/// A DAG's claim as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DagClaim {
    /// The DAG.
    pub dag_id: String,
    /// The scheduler holding it, if any.
    pub scheduler_id: Option<String>,
    /// Until when.
    pub claimed_until: Option<DateTime<Utc>>,
}

impl DagClaim {
    /// Whether nobody holds it at `now` (never claimed, released, or its holder stopped
    /// renewing).
    #[must_use]
    pub fn is_free_at(&self, now: DateTime<Utc>) -> bool {
        self.scheduler_id.is_none() || self.claimed_until.is_none_or(|until| until < now)
    }
}

impl Store {
    /// Pushes every claim `scheduler_id` holds to `until` and returns the DAGs it holds: a DAG
    /// missing from the answer was taken over by another scheduler.
    pub async fn renew_dag_claims(
        &self,
        scheduler_id: &str,
        until: DateTime<Utc>,
    ) -> Result<Vec<String>, StoreError> {
        let sql =
            self.sql("UPDATE dags SET claimed_until = $2 WHERE scheduler_id = $1 RETURNING dag_id");
        with_pool!(self, pool => sqlx::query_scalar(&sql).bind(scheduler_id).bind(to_db(until)).fetch_all(pool).await)
            .map_err(query("renewing DAG claims"))
    }

    /// Claims for `scheduler_id`, until `until`, at most `limit` active DAGs held by someone
    /// else or nobody that `take` accepts (typically: free, or held by a scheduler known to be
    /// dead). Returns the DAGs claimed. Each claim is a compare-and-set on the holder and time
    /// `take` saw; on PostgreSQL the row is locked with `FOR UPDATE SKIP LOCKED`, so a DAG
    /// another scheduler is claiming at this moment is passed over rather than waited for.
    pub async fn claim_dags(
        &self,
        scheduler_id: &str,
        until: DateTime<Utc>,
        limit: usize,
        mut take: impl FnMut(&DagClaim) -> bool + Send,
    ) -> Result<Vec<String>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let select = self.sql(
            "SELECT dag_id, scheduler_id, claimed_until FROM dags \
             WHERE is_active = 1 AND (scheduler_id IS NULL OR scheduler_id <> $1) \
             ORDER BY dag_id",
        );
        let rows: Vec<(String, Option<String>, Option<i64>)> =
            with_pool!(self, pool => sqlx::query_as(&select).bind(scheduler_id).fetch_all(pool).await)
                .map_err(query("reading DAG claims"))?;
        let update = self.sql(match self.engine {
            Engine::Postgres(_) => {
                "UPDATE dags SET scheduler_id = $1, claimed_until = $2 WHERE dag_id = \
                 (SELECT dag_id FROM dags WHERE dag_id = $3 AND scheduler_id IS NOT DISTINCT FROM $4 \
                  AND claimed_until IS NOT DISTINCT FROM $5 FOR UPDATE SKIP LOCKED)"
            }
            Engine::Sqlite(_) => {
                "UPDATE dags SET scheduler_id = $1, claimed_until = $2 WHERE dag_id = $3 \
                 AND scheduler_id IS NOT DISTINCT FROM $4 AND claimed_until IS NOT DISTINCT FROM $5"
            }
        });
        let mut claimed = Vec::new();
        for (dag_id, holder, held_until) in rows {
            if claimed.len() >= limit {
                break;
            }
            let claim = DagClaim {
                dag_id,
                scheduler_id: holder.clone(),
                claimed_until: opt_from_db(held_until)?,
            };
            if !take(&claim) {
                continue;
            }
            let won = with_pool!(self, pool => sqlx::query(&update)
                .bind(scheduler_id).bind(to_db(until)).bind(&claim.dag_id).bind(&holder).bind(held_until)
                .execute(pool).await.map(|done| done.rows_affected() == 1))
            .map_err(query("claiming a DAG"))?;
            if won {
                claimed.push(claim.dag_id);
            }
        }
        Ok(claimed)
    }

    /// Every active DAG's claim, by DAG id (what `gust scheduler status`-like views show).
    pub async fn dag_claims(&self) -> Result<Vec<DagClaim>, StoreError> {
        let sql = self.sql(
            "SELECT dag_id, scheduler_id, claimed_until FROM dags WHERE is_active = 1 ORDER BY dag_id",
        );
        let rows: Vec<(String, Option<String>, Option<i64>)> =
            with_pool!(self, pool => sqlx::query_as(&sql).fetch_all(pool).await)
                .map_err(query("reading DAG claims"))?;
        rows.into_iter()
            .map(|(dag_id, scheduler_id, until)| {
                Ok(DagClaim {
                    dag_id,
                    scheduler_id,
                    claimed_until: opt_from_db(until)?,
                })
            })
            .collect()
    }

    /// Gives up `scheduler_id`'s claims on `dag_ids` (all of them when `None`), so that another
    /// scheduler can take them at once.
    pub async fn release_dag_claims(
        &self,
        scheduler_id: &str,
        dag_ids: Option<&[String]>,
    ) -> Result<(), StoreError> {
        let failed = query("releasing DAG claims");
        match dag_ids {
            None => {
                let sql = self.sql(
                    "UPDATE dags SET scheduler_id = NULL, claimed_until = NULL WHERE scheduler_id = $1",
                );
                with_pool!(self, pool => sqlx::query(&sql).bind(scheduler_id).execute(pool).await.map(drop))
                    .map_err(failed)
            }
            Some(dag_ids) => {
                let sql = self.sql(
                    "UPDATE dags SET scheduler_id = NULL, claimed_until = NULL \
                     WHERE scheduler_id = $1 AND dag_id = $2",
                );
                for dag_id in dag_ids {
                    with_pool!(self, pool => sqlx::query(&sql).bind(scheduler_id).bind(dag_id).execute(pool).await.map(drop))
                        .map_err(query("releasing DAG claims"))?;
                }
                Ok(())
            }
        }
    }

    /// How many active DAGs there are and which schedulers heart-beat since `since`: what a
    /// scheduler's fair share of DAGs is computed from.
    pub async fn claim_census(
        &self,
        since: DateTime<Utc>,
    ) -> Result<(usize, Vec<String>), StoreError> {
        let count = self.sql("SELECT COUNT(*) FROM dags WHERE is_active = 1");
        let dags: i64 = with_pool!(self, pool => sqlx::query_scalar(&count).fetch_one(pool).await)
            .map_err(query("counting DAGs"))?;
        let live = self.sql(
            "SELECT scheduler_id FROM scheduler_heartbeats WHERE heartbeat >= $1 ORDER BY scheduler_id",
        );
        let schedulers: Vec<String> = with_pool!(self, pool => sqlx::query_scalar(&live).bind(to_db(since)).fetch_all(pool).await)
            .map_err(query("listing live schedulers"))?;
        Ok((usize::try_from(dags).unwrap_or(0), schedulers))
    }

    /// The `queued` and `running` task instances of unfinished runs of the DAGs `scheduler_id`
    /// does not hold, as (DAG, task): the pool slots other schedulers' tries hold.
    pub async fn slots_held_elsewhere(
        &self,
        scheduler_id: &str,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let sql = self.sql(
            "SELECT ti.dag_id, ti.task_id FROM task_instances ti \
             JOIN dag_runs r ON r.dag_id = ti.dag_id AND r.run_id = ti.run_id \
             JOIN dags d ON d.dag_id = ti.dag_id \
             WHERE r.state IN ('queued', 'running') AND ti.state IN ('queued', 'running') \
             AND (d.scheduler_id IS NULL OR d.scheduler_id <> $1)",
        );
        with_pool!(self, pool => sqlx::query_as(&sql).bind(scheduler_id).fetch_all(pool).await)
            .map_err(query("counting other schedulers' pool slots"))
    }

    /// Forgets the heartbeat of `scheduler_id` (it stopped cleanly), so the others' fair share
    /// grows at once.
    pub async fn forget_scheduler(&self, scheduler_id: &str) -> Result<(), StoreError> {
        let sql = self.sql("DELETE FROM scheduler_heartbeats WHERE scheduler_id = $1");
        with_pool!(self, pool => sqlx::query(&sql).bind(scheduler_id).execute(pool).await.map(drop))
            .map_err(query("forgetting a scheduler"))
    }
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;

    use crate::testing::TestDb;
    use crate::{Store, StoredDag};

    fn t(s: i64) -> DateTime<chrono::Utc> {
        DateTime::from_timestamp(s, 0).unwrap()
    }

    async fn add_dags(store: &Store, ids: &[&str]) {
        for id in ids {
            let dag = StoredDag {
                dag_id: (*id).to_owned(),
                fileloc: format!("{id}.yaml"),
                definition: "{}".to_owned(),
                fingerprint: "f".to_owned(),
                is_paused: false,
                is_stale: false,
                last_parsed: t(0),
                last_parse_duration: None,
            };
            store.upsert_dag(&dag, false).await.unwrap();
        }
    }

    async fn claims_are_exclusive_and_taken_over_when_they_run_out(db: TestDb) {
        let store = &db.store;
        add_dags(store, &["a", "b", "c"]).await;
        let free = |now| move |c: &crate::DagClaim| c.is_free_at(now);
        assert_eq!(
            store
                .claim_dags("s1", t(110), 2, free(t(100)))
                .await
                .unwrap(),
            ["a", "b"]
        );
        // The other scheduler only finds what is left.
        assert_eq!(
            store
                .claim_dags("s2", t(110), 5, free(t(100)))
                .await
                .unwrap(),
            ["c"]
        );
        assert_eq!(store.renew_dag_claims("s1", t(120)).await.unwrap().len(), 2);
        // s2 stops renewing: at 115 its claim on c ran out, s1's did not.
        assert_eq!(
            store
                .claim_dags("s1", t(130), 5, free(t(115)))
                .await
                .unwrap(),
            ["c"]
        );
        let mut held = store.renew_dag_claims("s2", t(130)).await.unwrap();
        assert!(held.is_empty(), "{held:?}");
        store
            .release_dag_claims("s1", Some(&["b".to_owned()]))
            .await
            .unwrap();
        held = store.renew_dag_claims("s1", t(130)).await.unwrap();
        held.sort();
        assert_eq!(held, ["a", "c"]);
        assert_eq!(
            store
                .claim_dags("s2", t(140), 5, free(t(120)))
                .await
                .unwrap(),
            ["b"]
        );
        let claims = store.dag_claims().await.unwrap();
        let holders: Vec<Option<&str>> = claims.iter().map(|c| c.scheduler_id.as_deref()).collect();
        assert_eq!(holders, [Some("s1"), Some("s2"), Some("s1")]);
        store.release_dag_claims("s1", None).await.unwrap();
        assert!(
            store
                .renew_dag_claims("s1", t(150))
                .await
                .unwrap()
                .is_empty()
        );

        store.scheduler_heartbeat("s1", t(100)).await.unwrap();
        store.scheduler_heartbeat("s2", t(90)).await.unwrap();
        assert_eq!(
            store.claim_census(t(95)).await.unwrap(),
            (3, vec!["s1".to_owned()])
        );
        store.forget_scheduler("s1").await.unwrap();
        assert_eq!(
            store.claim_census(t(0)).await.unwrap(),
            (3, vec!["s2".to_owned()])
        );
        db.finish().await;
    }

    #[tokio::test]
    async fn sqlite_claims_are_exclusive_and_taken_over_when_they_run_out() {
        claims_are_exclusive_and_taken_over_when_they_run_out(TestDb::sqlite().await).await;
    }

    #[tokio::test]
    async fn postgres_claims_are_exclusive_and_taken_over_when_they_run_out() {
        let Some(db) = TestDb::postgres().await else {
            return;
        };
        claims_are_exclusive_and_taken_over_when_they_run_out(db).await;
    }

    /// Many schedulers claiming at the same moment on PostgreSQL: every DAG ends with exactly
    /// one of them.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_claims_never_share_a_dag() {
        let Some(db) = TestDb::postgres().await else {
            return;
        };
        let ids: Vec<String> = (0..40).map(|i| format!("dag{i:02}")).collect();
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        add_dags(&db.store, &refs).await;
        let mut claimers = Vec::new();
        for s in 0..6 {
            let store = db.store.clone();
            claimers.push(tokio::spawn(async move {
                let me = format!("s{s}");
                let mut mine = Vec::new();
                for _ in 0..5 {
                    mine.extend(
                        store
                            .claim_dags(&me, t(200), 3, |c| c.is_free_at(t(100)))
                            .await
                            .unwrap(),
                    );
                }
                mine
            }));
        }
        let mut all = Vec::new();
        for claimer in claimers {
            all.extend(claimer.await.unwrap());
        }
        all.sort();
        assert_eq!(all, ids, "each DAG claimed exactly once");
        db.finish().await;
    }
}
