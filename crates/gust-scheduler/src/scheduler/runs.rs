//! DAG runs: created from schedules, started within `max_active_runs`, loaded into memory (with
//! their live tries adopted after a restart), re-read when someone else changed them, and ended
//! when their tasks are done.

use std::collections::HashMap;
use std::sync::Arc;

use gust_core::ids::{InstanceId, RunId, TaskId, TryNumber};
use gust_core::readiness::run_state;
use gust_core::schedule::{DataInterval, Schedule};
use gust_core::state::{DagRunState, TaskEvent, TaskState};
use gust_core::timetable::{due_intervals, next_run};
use gust_executor::TryKey;
use gust_store::{NewRun, RunType, StoredRun};

use super::active::{ActiveRun, RunKey};
use super::{Scheduler, SchedulerError, Timer};
use crate::launch::launch_spec;
use crate::trigger::run_id_for;
use crate::xcom::RunXComs;

/// The longest a schedule with nothing due is left unexamined, so a paused DAG that is unpaused
/// or a run that ends is noticed without a timer of its own.
const SCHEDULE_RECHECK: chrono::Duration = chrono::Duration::seconds(30);

impl Scheduler {
    /// Creates the scheduled runs that are due, within each DAG's `max_active_runs`, and sets a
    /// timer for the next interval's end.
    pub(super) async fn create_scheduled_runs(&mut self) -> Result<(), SchedulerError> {
        let now = self.clock.now();
        let mut active: HashMap<String, u32> = HashMap::new();
        for run in self.store.active_runs().await? {
            *active.entry(run.dag_id).or_default() += 1;
        }
        let mut next_wake = now + SCHEDULE_RECHECK;
        let dags: Vec<_> = self.bag.dags().map(|e| e.dag.clone()).collect();
        for dag in dags {
            let settings = &dag.settings;
            if matches!(settings.schedule, Schedule::Manual)
                || !self.owned.contains(dag.id.as_str())
                || self.paused.get(dag.id.as_str()).copied().unwrap_or(true)
            {
                continue;
            }
            let running = active.get(dag.id.as_str()).copied().unwrap_or(0);
            let room = settings.max_active_runs.saturating_sub(running) as usize;
            let last = self
                .store
                .latest_scheduled_interval(dag.id.as_str())
                .await?
                .map(|(start, end)| DataInterval { start, end });
            let due = due_intervals(settings, last.as_ref(), now, room);
            let mut latest = last;
            for interval in due {
                let run = NewRun {
                    dag_id: dag.id.to_string(),
                    run_id: run_id_for(RunType::Scheduled, interval.end),
                    run_type: RunType::Scheduled,
                    logical_date: interval.start,
                    data_interval: (interval.start, interval.end),
                    conf: serde_json::Map::new(),
                    queued_at: now,
                };
                if self.store.create_run(&run).await? {
                    tracing::info!(dag_id = %dag.id, run_id = %run.run_id, "created a scheduled run");
                }
                latest = Some(interval);
                self.runs_due = true;
            }
            if let Some(next) =
                next_run(settings, latest.as_ref(), now).filter(|next| next.end > now)
            {
                next_wake = next_wake.min(next.end);
            }
        }
        self.timers.retain(|_, timers| {
            timers.retain(|t| *t != Timer::Schedules);
            !timers.is_empty()
        });
        self.add_timer(next_wake, Timer::Schedules);
        Ok(())
    }

    /// Starts queued runs (oldest first, within `max_active_runs`, not while their DAG is
    /// paused) and loads running runs this scheduler does not hold yet (after a restart) or
    /// holds at an older version (changed by someone else).
    pub(super) async fn refresh_runs(&mut self) -> Result<(), SchedulerError> {
        // Only the runs of DAGs this scheduler holds are its to start and drive.
        let mut stored = self.store.active_runs().await?;
        stored.retain(|run| self.owned.contains(&run.dag_id));
        let mut running: HashMap<String, u32> = HashMap::new();
        for run in stored.iter().filter(|r| r.state == DagRunState::Running) {
            *running.entry(run.dag_id.clone()).or_default() += 1;
        }
        // A backfill's queued runs wait while it is paused, and start within its own
        // `max_active_runs` as well as their DAG's (Airflow's backfill semantics).
        let backfill_queued = stored
            .iter()
            .any(|r| r.state == DagRunState::Queued && r.run_type == RunType::Backfill);
        let mut gates: HashMap<(String, String), gust_store::BackfillGate> = HashMap::new();
        let mut backfill_running: HashMap<i64, u32> = HashMap::new();
        if backfill_queued {
            for gate in self.store.backfill_gates().await? {
                backfill_running.insert(gate.backfill_id, gate.running);
                gates.insert((gate.dag_id.clone(), gate.run_id.clone()), gate);
            }
        }
        // A held run no longer active was finished (or deleted) by someone else, say a user
        // marking it through the API: re-reading it kills its tries and forgets it.
        let mut held_elsewhere: Vec<RunKey> = self
            .runs
            .keys()
            .filter(|key| {
                !stored
                    .iter()
                    .any(|r| r.dag_id == key.0 && r.run_id == key.1)
            })
            .cloned()
            .collect();
        for run in stored {
            let key = (run.dag_id.clone(), run.run_id.clone());
            if self.deadline_dags.contains(&run.dag_id)
                && !self.deadline_runs.contains(&key)
                && let Some(dag) = self.dag(&run.dag_id)
            {
                self.track_deadlines(&run, &dag).await?;
            }
            match self.runs.get(&key) {
                Some(held) if held.run.version == run.version => continue,
                Some(_) => {
                    held_elsewhere.push(key);
                    continue;
                }
                None => {}
            }
            let Some(dag) = self.dag(&run.dag_id) else {
                continue; // Its DAG is not (or no longer) in force: it waits.
            };
            let mut run = run;
            if run.state == DagRunState::Queued {
                let paused = self.paused.get(&run.dag_id).copied().unwrap_or(true);
                let count = running.entry(run.dag_id.clone()).or_default();
                if paused || *count >= dag.settings.max_active_runs || self.draining {
                    continue;
                }
                let gate = gates.get(&key);
                if let Some(gate) = gate {
                    let started = backfill_running.get(&gate.backfill_id).copied();
                    if gate.paused || started.unwrap_or(0) >= gate.max_active_runs {
                        continue;
                    }
                }
                let now = self.clock.now();
                if !self
                    .store
                    .transition_run(&run, DagRunState::Running, now)
                    .await?
                {
                    continue; // Someone else started it.
                }
                *count += 1;
                if let Some(gate) = gate {
                    *backfill_running.entry(gate.backfill_id).or_default() += 1;
                }
                run.state = DagRunState::Running;
                run.version += 1;
                run.start_date = run.start_date.or(Some(now));
                tracing::info!(dag_id = %run.dag_id, run_id = %run.run_id, "run started");
            }
            self.load_run(run, dag).await?;
        }
        self.stale.extend(held_elsewhere);
        Ok(())
    }

    pub(super) fn dag(&self, dag_id: &str) -> Option<Arc<gust_core::dag::Dag>> {
        self.bag
            .dags()
            .find(|e| e.dag.id.as_str() == dag_id)
            .map(|e| e.dag.clone())
    }

    /// Re-reads the runs someone else moved.
    pub(super) async fn reload_stale(&mut self) -> Result<(), SchedulerError> {
        let stale: Vec<RunKey> = self.stale.drain().collect();
        for key in stale {
            tracing::debug!(dag_id = %key.0, run_id = %key.1, "re-reading a run");
            self.unload_run(&key);
            let Some(run) = self.store.run(&key.0, &key.1).await? else {
                self.kill_tries_of(&key, "its run was deleted");
                continue;
            };
            let Some(dag) = self.dag(&key.0) else {
                continue;
            };
            match run.state {
                DagRunState::Running => self.load_run(run, dag).await?,
                // Queued again (cleared): `refresh_runs` starts it and decides about its tries.
                DagRunState::Queued => self.runs_due = true,
                // Finished by someone else (a user marked it): nothing of it runs on.
                DagRunState::Success | DagRunState::Failed => {
                    self.deadlines_met(&key).await?;
                    self.kill_tries_of(&key, "its run was marked finished by a user");
                    self.runs_due = true;
                }
            }
        }
        Ok(())
    }

    /// Kills the tries this process runs for `key`'s run (once the next batch is committed).
    fn kill_tries_of(&mut self, key: &RunKey, why: &str) {
        let unwanted: Vec<TryKey> = self
            .live
            .iter()
            .filter(|k| k.dag_id.as_str() == key.0 && k.run_id.as_str() == key.1)
            .cloned()
            .collect();
        for try_key in unwanted {
            self.pending
                .then_unconditionally(super::After::Kill(try_key, why.to_owned()));
        }
    }

    /// Forgets a run held in memory: its slots are given back (its tries, if any, stay live
    /// until they report).
    pub(super) fn unload_run(&mut self, key: &RunKey) {
        let Some(run) = self.runs.remove(key) else {
            return;
        };
        // Starts not committed yet were made on the state being forgotten; a try's end moves
        // its instance from `queued` all the same.
        self.started.forget_run(key);
        for (instance, state) in run.all_instances() {
            if state.holds_slot()
                && let Some(task) = run.dag.task(&instance.task_id)
            {
                self.slots.track(key, task, false);
                for limit in super::slots::Limit::held_by(key, task) {
                    self.line.unpark_one(&limit);
                    self.worker_free_line.unpark_one(&limit);
                }
            }
        }
        self.line.forget_run(key);
        self.worker_free_line.forget_run(key);
    }

    /// Takes a running run into memory: its instances (creating those of tasks new to the DAG,
    /// removing those of tasks that left it), its XComs, timers for its retries and timeout,
    /// and its tries: those this process does not know are adopted from the runtime, and those
    /// it runs that are no longer wanted (cleared, marked) are killed.
    async fn load_run(
        &mut self,
        run: StoredRun,
        dag: Arc<gust_core::dag::Dag>,
    ) -> Result<(), SchedulerError> {
        let key: RunKey = (run.dag_id.clone(), run.run_id.clone());
        let Ok(run_id) = RunId::new(run.run_id.clone()) else {
            tracing::warn!(dag_id = %run.dag_id, run_id = %run.run_id, "a stored run has an invalid id; skipped");
            return Ok(());
        };
        let task_ids: Vec<&str> = dag.tasks().map(|t| t.id.as_str()).collect();
        self.store
            .create_task_instances(&run.dag_id, &run.run_id, &task_ids)
            .await?;
        let stored = self.store.task_instances(&run.dag_id, &run.run_id).await?;
        let xcoms = RunXComs::new(self.template_values.clone());
        // The events of the inlets its templates read are read before its tries render.
        self.template_values.read_events_of(
            dag.tasks()
                .filter(|task| crate::launch::reads_inlet_events(task))
                .flat_map(crate::launch::inlets)
                .flat_map(|inlet| inlet.queries()),
        );
        for x in self.store.xcoms_of_run(&run.dag_id, &run.run_id).await? {
            xcoms.push(&x.task_id, x.map_index, &x.key, x.value);
        }
        let (previous, past) = self.previous_run_states(&dag, &run).await?;
        let tis: HashMap<InstanceId, _> = stored
            .into_iter()
            .filter_map(|ti| {
                let task = TaskId::new(ti.task_id.clone()).ok()?;
                Some((InstanceId::mapped(task, ti.map_index), ti))
            })
            .collect();
        let timeout_at = dag
            .settings
            .dagrun_timeout
            .zip(run.start_date)
            .map(|(limit, start)| {
                start + chrono::Duration::from_std(limit).unwrap_or(chrono::Duration::MAX)
            });
        // Only a sensor waiting to poke again has reschedules worth reading.
        let rescheduled = tis
            .values()
            .any(|ti| ti.state == TaskState::UpForReschedule);
        let deferred = tis.values().any(|ti| ti.state == TaskState::Deferred);
        let mut active = ActiveRun::new(
            dag.clone(),
            run,
            run_id.clone(),
            tis,
            Arc::new(xcoms),
            previous,
            past,
        );
        if active.run.run_type == RunType::AssetTriggered {
            let events = self.store.run_asset_events(&key.0, &key.1).await?;
            active.asset_events = crate::template_values::triggering_asset_events(&events);
        }
        if rescheduled {
            for ((task, map_index), so_far) in self.store.reschedules_of_run(&key.0, &key.1).await?
            {
                if let Ok(task) = TaskId::new(task) {
                    active.reschedules.insert(
                        InstanceId::mapped(task, map_index),
                        gust_executor::Reschedules {
                            count: u32::try_from(so_far.count).unwrap_or(0),
                            first_start: Some(so_far.first),
                        },
                    );
                }
            }
        }
        self.runs.insert(key.clone(), active);
        if deferred {
            let stored = self.store.deferrals_of_run(&key.0, &key.1).await?;
            self.restart_triggers(&key, stored);
        }
        if let Some(at) = timeout_at {
            self.add_timer(at, Timer::RunTimeout(key.clone()));
        }

        let mut batch = std::mem::take(&mut self.pending);
        let Some(held) = self.runs.get(&key) else {
            return Ok(());
        };
        let logical_date = held.run.logical_date;
        let (facts, run_xcoms) = (held.facts(), held.xcoms.clone());
        let now = self.clock.now();
        let mut removed = Vec::new();
        let mut holding = Vec::new();
        let mut retries = Vec::new();
        let mut reschedules = Vec::new();
        let mut waiting = Vec::new();
        for (task_id, ti) in &held.tis {
            match dag.task(&task_id.task_id) {
                None if !ti.state.is_finished() => removed.push(task_id.clone()),
                None => {}
                Some(task) => match ti.state {
                    s if s.holds_slot() => {
                        holding.push((task.clone(), task_id.map_index, ti.try_number));
                    }
                    TaskState::UpForRetry => {
                        retries.push((task_id.clone(), ti.next_retry_at.unwrap_or(now)));
                    }
                    TaskState::UpForReschedule => {
                        reschedules.push((task_id.clone(), ti.next_retry_at.unwrap_or(now)));
                    }
                    TaskState::Scheduled => waiting.push(task_id.clone()),
                    _ => {}
                },
            }
        }
        for task_id in removed {
            self.move_into(&mut batch, &key, &task_id, TaskEvent::Remove, None, None);
        }
        for (at, task_id) in retries.into_iter().map(|(t, at)| (at, t)) {
            self.add_timer(at, Timer::Retry(key.clone(), task_id));
        }
        for (task_id, at) in reschedules {
            self.add_timer(at, Timer::Reschedule(key.clone(), task_id));
        }
        for task_id in waiting {
            self.wait_for_slot(&key, &task_id);
        }
        let tries = if holding.is_empty() {
            Vec::new()
        } else {
            self.store.tries_of_run(&key.0, &key.1).await?
        };
        for (task, map_index, try_number) in holding {
            self.slots.track(&key, &task, true);
            let n = u32::try_from(try_number).unwrap_or(0);
            let try_key = TryKey {
                dag_id: dag.id.clone(),
                run_id: run_id.clone(),
                task_id: task.id.clone(),
                map_index,
                try_number: TryNumber(n),
            };
            if self.live.contains(&try_key) {
                continue;
            }
            // A try handed over by an earlier scheduler process: adopt it as it was started.
            let args = tries
                .iter()
                .find(|t| {
                    t.task_id == task.id.as_str()
                        && t.map_index == map_index
                        && t.try_number == try_number
                })
                .and_then(|t| t.rendered_args.clone())
                .and_then(|a| a.as_object().cloned())
                .unwrap_or_default();
            let spec = launch_spec(
                &dag,
                &task,
                &run_id,
                logical_date,
                map_index,
                n,
                args,
                &self.config.logs_root,
                facts.clone(),
                run_xcoms.clone(),
            );
            tracing::info!(%try_key, "adopting a try started before the scheduler restarted");
            self.live.insert(try_key);
            self.executor.adopt(spec);
        }
        // Tries this process runs for instances of this run that moved on are no longer wanted.
        let unwanted: Vec<TryKey> = self
            .live
            .iter()
            .filter(|k| k.dag_id.as_str() == key.0 && k.run_id.as_str() == key.1)
            .filter(|k| {
                self.runs.get(&key).is_none_or(|r| {
                    let instance = k.instance();
                    r.try_number(&instance) != k.try_number.0 || !r.state(&instance).holds_slot()
                })
            })
            .cloned()
            .collect();
        for try_key in unwanted {
            batch.then_unconditionally(super::After::Kill(
                try_key,
                "its task instance was cleared or marked by a user".to_owned(),
            ));
        }
        self.pending = batch;
        Ok(())
    }

    /// For `depends_on_past`: the previous run, if it is still active (its live states are
    /// read), or its final task states.
    async fn previous_run_states(
        &self,
        dag: &gust_core::dag::Dag,
        run: &StoredRun,
    ) -> Result<(Option<RunKey>, Option<HashMap<TaskId, TaskState>>), SchedulerError> {
        if !dag.tasks().any(|t| t.settings.depends_on_past) {
            return Ok((None, None));
        }
        let Some(previous) = self
            .store
            .previous_run(&run.dag_id, run.logical_date)
            .await?
        else {
            return Ok((None, None));
        };
        if matches!(previous.state, DagRunState::Queued | DagRunState::Running) {
            return Ok((Some((previous.dag_id, previous.run_id)), None));
        }
        // A mapped task's instances add up to its state as a whole.
        let mut instances: HashMap<TaskId, Vec<TaskState>> = HashMap::new();
        for ti in self
            .store
            .task_instances(&previous.dag_id, &previous.run_id)
            .await?
        {
            if let Ok(id) = TaskId::new(ti.task_id) {
                instances.entry(id).or_default().push(ti.state);
            }
        }
        let states = instances
            .into_iter()
            .map(|(id, states)| (id, gust_core::mapping::task_state(states)))
            .collect();
        Ok((None, Some(states)))
    }

    /// Ends the runs whose tasks have all finished; `true` when any did.
    pub(super) async fn finish_runs(&mut self) -> Result<bool, SchedulerError> {
        let done: Vec<RunKey> = self
            .runs
            .iter()
            .filter(|(_, r)| !r.needs_pass() && r.all_finished())
            .map(|(k, _)| k.clone())
            .collect();
        let mut any = false;
        for key in done {
            let Some(run) = self.runs.get(&key) else {
                continue;
            };
            let state = if run.timed_out {
                DagRunState::Failed
            } else {
                run_state(&run.dag, &run.states)
            };
            let now = self.clock.now();
            if !self.store.transition_run(&run.run, state, now).await? {
                self.stale.insert(key.clone());
                continue;
            }
            tracing::info!(dag_id = %key.0, run_id = %key.1, %state, "run finished");
            self.dag_callback(run, state).await;
            let states = run.states.tasks().clone();
            self.unload_run(&key);
            self.deadlines_met(&key).await?;
            for other in self.runs.values_mut() {
                if other.previous.as_ref() == Some(&key) {
                    other.previous = None;
                    other.past = Some(states.clone());
                    other.whole_pass = true;
                }
            }
            any = true;
            self.runs_due = true;
            self.schedules_due = true;
        }
        Ok(any)
    }
}
