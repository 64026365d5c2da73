//! Deadline alerts (a DAG's `deadline`): when this scheduler first sees an active run of a DAG
//! it holds, the run's deadlines are dated and stored (once per run and alert, whoever stores
//! them first), and each pending one gets a timer in the scheduler's timer wheel. When a timer
//! comes and the run is still active, the deadline is claimed in the store (one conditional
//! UPDATE: one scheduler wins, even after restarts or beside other schedulers) and its
//! notifiers go to the callback runner. A run that finishes deletes its pending deadlines.

use std::sync::Arc;

use gust_core::deadline::RunTimes;
use gust_core::ids::RunId;
use gust_core::state::DagRunState;
use gust_executor::callbacks::{CallbackKind, CallbackRequest, Calls};
use gust_store::{NewDeadline, StoredDeadline, StoredRun};

use super::active::{RunKey, run_facts};
use super::{Scheduler, SchedulerError, Timer};
use crate::xcom::RunXComs;

impl Scheduler {
    /// Stores the deadlines of `run` (of a DAG with deadline alerts) and sets a timer for each
    /// one pending, the first time this process sees the run.
    pub(super) async fn track_deadlines(
        &mut self,
        run: &StoredRun,
        dag: &gust_core::dag::Dag,
    ) -> Result<(), SchedulerError> {
        let alerts = &dag.settings.deadlines;
        let key: RunKey = (run.dag_id.clone(), run.run_id.clone());
        if alerts.is_empty() || self.deadline_runs.contains(&key) {
            return Ok(());
        }
        let now = self.clock.now();
        let times = RunTimes {
            queued_at: run.queued_at,
            logical_date: run.logical_date,
            now,
        };
        let most_runs = alerts
            .iter()
            .filter_map(|a| match a.reference {
                gust_core::deadline::DeadlineReference::AverageRuntime { max_runs, .. } => {
                    Some(i64::from(max_runs))
                }
                _ => None,
            })
            .max();
        let durations = match most_runs {
            Some(n) => self.store.recent_run_durations(&run.dag_id, n).await?,
            None => Vec::new(),
        };
        let new: Vec<NewDeadline> = alerts
            .iter()
            .enumerate()
            .filter_map(|(index, alert)| {
                Some(NewDeadline {
                    dag_id: run.dag_id.clone(),
                    run_id: run.run_id.clone(),
                    alert_index: i32::try_from(index).ok()?,
                    alert_name: alert.name.clone(),
                    reference_type: alert.reference.reference_type().to_owned(),
                    deadline_time: alert.deadline_for(&times, &durations)?,
                    notifiers: alert.notifiers.clone(),
                    created_at: now,
                })
            })
            .collect();
        self.store.create_deadlines(&new).await?;
        for deadline in self.store.pending_deadlines(&key.0, &key.1).await? {
            self.add_timer(
                deadline.deadline.deadline_time,
                Timer::Deadline(key.clone(), deadline.id),
            );
            self.deadline_alerts.insert(deadline.id, deadline);
        }
        self.deadline_runs.insert(key);
        Ok(())
    }

    /// Forgets a finished run's deadlines: those still pending were met, and are deleted.
    pub(super) async fn deadlines_met(&mut self, key: &RunKey) -> Result<(), SchedulerError> {
        if !self.deadline_runs.remove(key) {
            return Ok(());
        }
        self.deadline_alerts
            .retain(|_, d| d.deadline.dag_id != key.0 || d.deadline.run_id != key.1);
        let met = self.store.delete_pending_deadlines(&key.0, &key.1).await?;
        if met > 0 {
            tracing::debug!(dag_id = %key.0, run_id = %key.1, met, "the run finished before its deadlines");
        }
        Ok(())
    }

    /// Sends the notifiers of the deadlines whose timers came, for runs still active, each
    /// once the store says this scheduler is the one to.
    pub(super) async fn fire_deadlines(&mut self) -> Result<(), SchedulerError> {
        for (key, id) in std::mem::take(&mut self.deadlines_due) {
            let Some(deadline) = self.deadline_alerts.remove(&id) else {
                continue; // Its run finished in time.
            };
            let stored = match self.runs.get(&key) {
                Some(held) => held.run.clone(),
                None => match self.store.run(&key.0, &key.1).await? {
                    Some(run) => run,
                    None => continue, // Deleted.
                },
            };
            if matches!(stored.state, DagRunState::Success | DagRunState::Failed) {
                // Finished (by a user, or in another process) before its deadline.
                self.deadlines_met(&key).await?;
                continue;
            }
            let now = self.clock.now();
            if !self.store.claim_deadline(id, now).await? {
                continue; // Another scheduler sent it, or the run finished meanwhile.
            }
            tracing::warn!(
                dag_id = %key.0,
                run_id = %key.1,
                deadline = %deadline.deadline.deadline_time,
                "a run missed its deadline"
            );
            let Some(runner) = &self.config.callbacks else {
                continue;
            };
            if let Some(request) = self.deadline_request(&stored, &deadline) {
                runner.run(request);
            }
        }
        Ok(())
    }

    /// What the notifiers of a missed deadline are sent with: the run's context, the deadline
    /// as `reason` (and `deadline.deadline_time`).
    fn deadline_request(
        &self,
        run: &StoredRun,
        deadline: &StoredDeadline,
    ) -> Option<CallbackRequest> {
        let dag = self.dag(&run.dag_id)?;
        let run_id = RunId::new(run.run_id.clone()).ok()?;
        let key: RunKey = (run.dag_id.clone(), run.run_id.clone());
        let lookup: Arc<dyn gust_template::RuntimeLookup> = match self.runs.get(&key) {
            Some(held) => held.xcoms.clone(),
            None => Arc::new(RunXComs::new(self.template_values.clone())),
        };
        Some(CallbackRequest {
            kind: CallbackKind::DeadlineMissed,
            dag_id: dag.id.clone(),
            dag_file: dag.fileloc.clone(),
            log_path: crate::log_path::dag_callbacks_log_path(
                &self.config.logs_root,
                &dag.id,
                &run_id,
            ),
            run_id,
            logical_date: Some(run.logical_date),
            run: run_facts(run),
            run_state: run.state.as_str(),
            task: None,
            reason: Some(deadline.deadline.deadline_time.to_rfc3339()),
            calls: Calls {
                python: false,
                notifiers: deadline.deadline.notifiers.clone(),
                email: Vec::new(),
            },
            params: dag.settings.params.clone(),
            max_tries: 0,
            lookup: gust_executor::SharedLookup(Some(lookup)),
        })
    }
}
