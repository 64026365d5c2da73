//! Sharing the work with other schedulers, by DAG. Every poll a scheduler renews the claims it
//! holds, takes over the DAGs of schedulers that died (their claims ran out, or their process is
//! gone from this host), takes free DAGs up to its fair share (active DAGs divided by live
//! schedulers) and gives back idle DAGs beyond it, so that a scheduler joining later gets its
//! part. Only the holder of a DAG's claim creates, starts and drives its runs, so its
//! `max_active_runs`, `max_active_tasks` and `depends_on_past` are decided in one place; the
//! compare-and-set on every move still guards each row.
//!
//! A scheduler that finds a claim of its own taken (it could not renew for longer than the
//! threshold: a stalled process, a database outage) stops with an error rather than drive a DAG
//! another scheduler drives; its tries are adopted by the new holder.

use std::collections::HashSet;

use gust_core::ids::{DagId, TaskId};
use gust_executor::SweepScope;

use super::{Scheduler, SchedulerError};

/// Whether `holder` names a scheduler process of this host (`HOST:PID`) that no longer exists:
/// its DAGs need not wait for its claims to run out.
fn died_on_this_host(holder: &str, host: &str) -> bool {
    let Some((holder_host, pid)) = holder.rsplit_once(':') else {
        return false;
    };
    let Ok(pid) = pid.parse::<i32>() else {
        return false;
    };
    if holder_host != host || pid <= 0 {
        return false;
    }
    // Signal 0 checks existence only; EPERM means it exists under another user.
    matches!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
        Err(nix::errno::Errno::ESRCH)
    )
}

/// This host's name, as scheduler ids carry it.
pub(super) fn host_name() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|name| name.into_string().ok())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// The DAGs a scheduler holds beyond `share`, among those it can give back (`idle`), in a
/// stable order.
fn surplus(owned: &HashSet<String>, idle: impl Fn(&str) -> bool, share: usize) -> Vec<String> {
    let extra = owned.len().saturating_sub(share);
    let mut candidates: Vec<String> = owned.iter().filter(|d| idle(d)).cloned().collect();
    candidates.sort();
    candidates.truncate(extra);
    candidates
}

impl Scheduler {
    /// Renews, takes over, claims and gives back DAGs (see the module's documentation).
    pub(super) async fn claim_round(&mut self) -> Result<(), SchedulerError> {
        let now = self.clock.now();
        let ttl = chrono::Duration::from_std(self.config.claim_ttl)
            .unwrap_or_else(|_| chrono::Duration::seconds(30));
        let until = now + ttl;
        let id = self.config.id.clone();
        let held: HashSet<String> = self
            .store
            .renew_dag_claims(&id, until)
            .await?
            .into_iter()
            .collect();
        if let Some(lost) = self.owned.iter().find(|dag| !held.contains(*dag)) {
            return Err(SchedulerError::ClaimLost {
                dag_id: lost.clone(),
                threshold: self.config.claim_ttl,
            });
        }
        // Held already by a process with this id before (a container restarted in its pod).
        for dag in held.difference(&self.owned) {
            self.unswept.insert(dag.clone());
        }
        self.owned = held;
        if self.draining {
            return Ok(());
        }

        let (dags, live) = self.store.claim_census(now - ttl).await?;
        let host = &self.host;
        let others = live
            .iter()
            .filter(|s| *s != &id && !died_on_this_host(s, host))
            .count();
        self.others_live = others > 0;
        let live = others + 1;
        let share = if self.config.exclusive {
            usize::MAX
        } else {
            dags.div_ceil(live)
        };
        let in_bag: HashSet<String> = self.bag.dags().map(|e| e.dag.id.to_string()).collect();
        let exclusive = self.config.exclusive;
        let mut room = share.saturating_sub(self.owned.len());
        let claimed =
            self.store
                .claim_dags(&id, until, usize::MAX, |claim| {
                    if !in_bag.contains(&claim.dag_id) {
                        return false;
                    }
                    let orphaned = claim.scheduler_id.as_deref().is_some_and(|holder| {
                        claim.is_free_at(now) || died_on_this_host(holder, host)
                    });
                    // The DAGs of a scheduler that died need a driver now, whatever the shares.
                    if exclusive || orphaned {
                        return true;
                    }
                    if claim.scheduler_id.is_none() && room > 0 {
                        room -= 1;
                        return true;
                    }
                    false
                })
                .await?;
        for dag in claimed {
            tracing::info!(dag_id = %dag, scheduler = %id, "claimed the DAG");
            self.unswept.insert(dag.clone());
            self.owned.insert(dag);
            self.runs_due = true;
            self.schedules_due = true;
        }

        let busy: HashSet<&str> = self.live.iter().map(|k| k.dag_id.as_str()).collect();
        let give_back = surplus(&self.owned, |dag| !busy.contains(dag), share);
        if !give_back.is_empty() {
            self.store.release_dag_claims(&id, Some(&give_back)).await?;
            for dag in give_back {
                tracing::info!(dag_id = %dag, scheduler = %id, "gave the DAG back for another scheduler");
                self.owned.remove(&dag);
                self.unswept.remove(&dag);
                let runs: Vec<_> = self.runs.keys().filter(|k| k.0 == dag).cloned().collect();
                for run in runs {
                    self.unload_run(&run);
                }
            }
        }
        Ok(())
    }

    /// Counts the pool slots the tries of other schedulers' DAGs hold, so that a pool shared
    /// across schedulers is not filled by each of them: read every poll, so two schedulers
    /// admitting into the same pool within one poll interval can still over-fill it briefly.
    pub(super) async fn count_pool_slots_elsewhere(&mut self) -> Result<(), SchedulerError> {
        self.slots.pool_used_elsewhere.clear();
        // Alone (or on SQLite), every slot held is this scheduler's own: nothing to read.
        if self.config.exclusive || !self.others_live {
            return Ok(());
        }
        for (dag_id, task_id) in self.store.slots_held_elsewhere(&self.config.id).await? {
            let Ok(task_id) = TaskId::new(task_id) else {
                continue;
            };
            let Some(task) = self
                .bag
                .dags()
                .find(|e| e.dag.id.as_str() == dag_id)
                .and_then(|e| e.dag.task(&task_id))
            else {
                continue;
            };
            *self
                .slots
                .pool_used_elsewhere
                .entry(task.settings.pool.clone())
                .or_default() += i64::from(task.settings.pool_slots);
        }
        Ok(())
    }

    /// Cleans up, once their runs are loaded and live tries adopted, what earlier processes left
    /// behind for the DAGs this scheduler has just taken charge of.
    pub(super) fn sweep_new_claims(&mut self) {
        if self.unswept.is_empty() {
            return;
        }
        let dags: HashSet<DagId> = self
            .unswept
            .drain()
            .filter_map(|dag| DagId::new(dag).ok())
            .collect();
        let live = self
            .live
            .iter()
            .filter(|k| dags.contains(&k.dag_id))
            .cloned()
            .collect();
        self.executor.sweep(SweepScope { dags, live });
    }

    /// Gives back every claim (the scheduler stops cleanly): other schedulers take its DAGs at
    /// their next poll and re-attach to the pods it leaves running.
    pub(super) async fn release_claims(&mut self) -> Result<(), SchedulerError> {
        self.store.release_dag_claims(&self.config.id, None).await?;
        self.store.forget_scheduler(&self.config.id).await?;
        // Its job ends in success (the API's `jobs`), as a SchedulerJob that exits does.
        self.store
            .scheduler_stopped(&self.config.id, self.clock.now())
            .await?;
        self.owned.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scheduler_of_this_host_is_dead_only_when_its_process_is_gone() {
        let host = host_name();
        let me = format!("{host}:{}", std::process::id());
        assert!(!died_on_this_host(&me, &host));
        // Pids are below 2^22 on Linux: this one cannot exist.
        assert!(died_on_this_host(&format!("{host}:99999999"), &host));
        assert!(!died_on_this_host("elsewhere:99999999", &host));
        assert!(!died_on_this_host("no-pid", &host));
        assert!(!died_on_this_host(&format!("{host}:0"), &host));
    }

    #[test]
    fn only_idle_dags_beyond_the_share_are_given_back() {
        let owned: HashSet<String> = ["a", "b", "c", "d"].map(String::from).into();
        assert_eq!(surplus(&owned, |_| true, 2), ["a", "b"]);
        assert_eq!(surplus(&owned, |d| d != "a", 2), ["b", "c"]);
        assert_eq!(surplus(&owned, |_| true, 4), Vec::<String>::new());
        assert_eq!(surplus(&owned, |_| false, 1), Vec::<String>::new());
    }
}
