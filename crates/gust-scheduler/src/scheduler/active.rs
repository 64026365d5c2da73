//! A running DAG run as the scheduler holds it: the stored run, its task instances as last
//! committed (state and version, for compare-and-set), and its XComs for templates.
//!
//! Moves are made here, in memory, through the core's lifecycle ([`TaskState::apply`]); each move
//! yields the [`TaskMove`] that commits it. If the commit finds the row moved by someone else,
//! the scheduler re-reads the whole run.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use gust_core::dag::Dag;
use gust_core::ids::{InstanceId, RunId, TaskId};
use gust_core::readiness::RunStates;
use gust_core::schedule::DataInterval;
use gust_core::state::{IllegalTransition, TaskEvent, TaskState};
use gust_store::{StoredRun, StoredTaskInstance, TaskMove, TryChange};

use crate::mapped::InstanceStates;
use crate::xcom::RunXComs;

/// Which run: (DAG id, run id).
pub type RunKey = (String, String);

/// A run being driven.
pub struct ActiveRun {
    /// The DAG version in force.
    pub dag: Arc<Dag>,
    /// The run as last committed.
    pub run: StoredRun,
    /// The run's id, checked.
    pub run_id: RunId,
    /// Its task instances, as last committed: one per task, and one per item of each mapped
    /// task once it is expanded.
    pub tis: HashMap<InstanceId, StoredTaskInstance>,
    /// Every instance's state, and each task's as a whole, for the core's readiness pass (kept
    /// equal to `tis`).
    pub states: InstanceStates,
    /// Its XComs and the variables templates read.
    pub xcoms: Arc<RunXComs>,
    /// The asset events it consumed, by asset URI, for `triggering_asset_events` (empty unless
    /// asset-triggered).
    pub asset_events: serde_json::Map<String, serde_json::Value>,
    /// For `depends_on_past`: the previous run's task states, once it has finished.
    pub past: Option<HashMap<TaskId, TaskState>>,
    /// The previous run's key, while it is itself active.
    pub previous: Option<RunKey>,
    /// Whether all its tasks need a readiness pass (it was just loaded, or what
    /// `depends_on_past` reads changed).
    pub whole_pass: bool,
    /// Tasks that moved since the last readiness pass: only they and their downstream tasks
    /// need one.
    pub changed: Vec<TaskId>,
    /// How many of the DAG's tasks have not finished, kept with every move.
    unfinished: usize,
    /// It passed its `dagrun_timeout`: it fails whatever its leaves say.
    pub timed_out: bool,
    /// The reschedules of tasks whose latest try rescheduled itself (sensors in `reschedule`
    /// mode), told to that try's next run.
    pub reschedules: HashMap<InstanceId, gust_executor::Reschedules>,
    /// The deferred tries of its instances, with their triggers.
    pub deferrals: HashMap<InstanceId, super::deferrals::Waiting>,
}

impl ActiveRun {
    /// The run as a try that reads it itself (a Python task) is told.
    #[must_use]
    pub fn facts(&self) -> gust_executor::RunFacts {
        run_facts(&self.run)
    }

    /// A run taken into memory, in need of a whole readiness pass.
    pub fn new(
        dag: Arc<Dag>,
        run: StoredRun,
        run_id: RunId,
        tis: HashMap<InstanceId, StoredTaskInstance>,
        xcoms: Arc<RunXComs>,
        previous: Option<RunKey>,
        past: Option<HashMap<TaskId, TaskState>>,
    ) -> Self {
        let states = InstanceStates::of(tis.iter().map(|(id, ti)| (id.clone(), ti.state)));
        let unfinished = dag
            .tasks()
            .filter(|t| !states.task_state(&t.id).is_finished())
            .count();
        Self {
            dag,
            run,
            run_id,
            tis,
            states,
            xcoms,
            asset_events: serde_json::Map::new(),
            past,
            previous,
            whole_pass: true,
            changed: Vec::new(),
            unfinished,
            timed_out: false,
            reschedules: HashMap::new(),
            deferrals: HashMap::new(),
        }
    }

    /// Whether a readiness pass has something to look at.
    pub fn needs_pass(&self) -> bool {
        self.whole_pass || !self.changed.is_empty()
    }

    /// The run's data interval.
    pub fn interval(&self) -> DataInterval {
        DataInterval {
            start: self.run.data_interval.0,
            end: self.run.data_interval.1,
        }
    }

    /// An instance's committed state.
    pub fn state(&self, instance: &InstanceId) -> TaskState {
        self.tis
            .get(instance)
            .map_or(TaskState::NoStatus, |ti| ti.state)
    }

    /// A task's instances: each of its items once it is expanded, else its one instance.
    pub fn instances(&self, task: &TaskId) -> Vec<InstanceId> {
        self.states.instances(task)
    }

    /// Every instance of the run, with its committed state.
    pub fn all_instances(&self) -> impl Iterator<Item = (&InstanceId, TaskState)> {
        self.tis.iter().map(|(id, ti)| (id, ti.state))
    }

    /// Takes in an expansion committed to the store (see `Store::expand_task_instance`): the
    /// task's unmapped instance became instance 0, and instances 1 to `count - 1` were made,
    /// all in `none`.
    pub fn expanded(&mut self, task: &TaskId, count: u32) {
        let Some(mut first) = self.tis.remove(&InstanceId::unmapped(task.clone())) else {
            return;
        };
        for index in 0..i32::try_from(count).unwrap_or(i32::MAX) {
            let ti = if index == 0 {
                first.map_index = 0;
                first.version += 1;
                first.clone()
            } else {
                StoredTaskInstance {
                    map_index: index,
                    state: TaskState::NoStatus,
                    try_number: 0,
                    next_retry_at: None,
                    version: 0,
                    note: None,
                    ..first.clone()
                }
            };
            self.tis.insert(InstanceId::mapped(task.clone(), index), ti);
        }
        self.states.expand(task, count as usize);
    }

    /// Moves `instance` by `event` in memory and returns the move to commit.
    pub fn move_task(
        &mut self,
        instance: &InstanceId,
        event: TaskEvent,
        next_retry_at: Option<DateTime<Utc>>,
        try_change: Option<TryChange>,
    ) -> Result<TaskMove, IllegalTransition> {
        let Some(ti) = self.tis.get_mut(instance) else {
            return Err(IllegalTransition {
                from: TaskState::Removed,
                event,
            });
        };
        let to = ti.state.apply(event)?;
        let planned = TaskMove {
            dag_id: ti.dag_id.clone(),
            run_id: ti.run_id.clone(),
            task_id: ti.task_id.clone(),
            map_index: ti.map_index,
            from: ti.state,
            version: ti.version,
            to,
            next_retry_at,
            try_change,
        };
        let from = ti.state;
        ti.state = to;
        ti.version += 1;
        ti.next_retry_at = next_retry_at;
        // A rescheduled or resumed try is handed over again under its own number; any other
        // is a new try.
        if to == TaskState::Queued
            && !matches!(from, TaskState::UpForReschedule | TaskState::Deferred)
        {
            ti.try_number += 1;
            self.reschedules.remove(instance);
        }
        if from == TaskState::Deferred {
            self.deferrals.remove(instance);
        }
        let task = &instance.task_id;
        let (was, whole) = self.states.set(instance, to);
        let was_finished = was.is_finished();
        if was_finished != whole.is_finished() && self.dag.task(task).is_some() {
            if was_finished {
                self.unfinished += 1;
            } else {
                self.unfinished = self.unfinished.saturating_sub(1);
            }
        }
        self.changed.push(task.clone());
        Ok(planned)
    }

    /// The number of the try `instance` is handed over with next: its latest again when that
    /// try rescheduled or deferred itself, else a new one.
    pub fn next_try_number(&self, instance: &InstanceId) -> u32 {
        let latest = self.try_number(instance);
        if matches!(
            self.state(instance),
            TaskState::UpForReschedule | TaskState::Deferred
        ) {
            latest
        } else {
            latest + 1
        }
    }

    /// The latest try number of `instance`.
    pub fn try_number(&self, instance: &InstanceId) -> u32 {
        self.tis
            .get(instance)
            .map_or(0, |ti| u32::try_from(ti.try_number).unwrap_or(0))
    }

    /// Whether every task of the DAG has finished.
    pub fn all_finished(&self) -> bool {
        self.unfinished == 0
    }
}

/// What Airflow's context tells of a run.
pub fn run_facts(run: &StoredRun) -> gust_executor::RunFacts {
    gust_executor::RunFacts {
        data_interval: Some(run.data_interval),
        // As Airflow sets it: a scheduled run may start once its interval has ended, a
        // manual one once it is triggered.
        run_after: Some(match run.run_type {
            gust_store::RunType::Manual | gust_store::RunType::OperatorTriggered => run.queued_at,
            gust_store::RunType::Scheduled
            | gust_store::RunType::Backfill
            | gust_store::RunType::AssetTriggered => run.data_interval.1,
        }),
        start_date: run.start_date,
        run_type: run.run_type.as_str().to_owned(),
        conf: run.conf.clone(),
    }
}
