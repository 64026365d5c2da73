//! Deferred tasks: a try that deferred itself is recorded `deferred` with its trigger (one
//! commit), gives its slot back, and its trigger runs: Airflow's temporal triggers as this
//! scheduler's own timers (`native_triggers.rs`), any other class in the Python triggerer
//! ([`gust_executor::deferral::TriggerRunner`]). When the trigger fires (or times out, or
//! fails), the try waits in line for a slot, still `deferred`, and is handed over again under
//! the same number to run its `next_method`, as Airflow resumes it.
//!
//! A scheduler that loads a run holding deferred tasks (at start-up, after a crash, on taking
//! over a DAG) starts their triggers again from the store: only the scheduler holding the DAG's
//! claim loads its runs, so one scheduler runs a given trigger. A trigger whose task was cleared
//! or marked meanwhile is cancelled.

use gust_core::ids::{InstanceId, TaskId, TryNumber};
use gust_core::state::{TaskEvent, TaskState};
use gust_executor::TryKey;
use gust_executor::deferral::{
    Deferral, EndState, Resume, TriggerFired, TriggerResult, TriggerSpec, timeout_at,
};
use gust_store::{StoredDeferral, TryChange};

use super::active::RunKey;
use super::{After, Batch, Scheduler, Timer};
use crate::native_triggers::native;

/// A deferred try as its run holds it.
#[derive(Debug, Clone)]
pub struct Waiting {
    /// The try that deferred.
    pub try_number: u32,
    /// What it deferred to.
    pub deferral: StoredDeferral,
    /// Set once its trigger fired (or timed out, or failed): how it resumes.
    pub resume: Option<Resume>,
}

impl Scheduler {
    /// A try deferred itself: it is recorded `deferred` with its trigger, which starts once
    /// that is committed.
    pub(super) fn defer_try(
        &mut self,
        batch: &mut Batch,
        run_key: &RunKey,
        task_id: &InstanceId,
        try_number: u32,
        deferral: Deferral,
    ) -> bool {
        let now = self.clock.now();
        let stored = StoredDeferral {
            task_id: task_id.task_id.to_string(),
            map_index: task_id.map_index,
            try_number: i32::try_from(try_number).unwrap_or(i32::MAX),
            classpath: deferral.classpath,
            trigger_kwargs: deferral.trigger_kwargs,
            timeout_at: timeout_at(now, deferral.trigger_timeout),
            next_method: deferral.next_method,
            next_kwargs: deferral.next_kwargs,
            deferred_at: now,
        };
        let change = TryChange::Deferred {
            try_number: stored.try_number,
            at: now,
            deferral: Box::new(stored.clone()),
        };
        let moved = self.move_into(
            batch,
            run_key,
            task_id,
            TaskEvent::Defer,
            None,
            Some(change),
        );
        if moved {
            tracing::info!(dag_id = %run_key.0, run_id = %run_key.1, %task_id, trigger = %stored.classpath, "task deferred");
            batch.then(After::Trigger(run_key.clone(), task_id.clone()));
            if let Some(run) = self.runs.get_mut(run_key) {
                run.deferrals.insert(
                    task_id.clone(),
                    Waiting {
                        try_number,
                        deferral: stored,
                        resume: None,
                    },
                );
            }
        }
        moved
    }

    /// Starts the trigger of `task_id`'s deferred try (its deferral is committed): a timer for
    /// a temporal trigger, the Python triggerer for any other, and a timer for its timeout.
    pub(super) fn start_trigger(&mut self, run_key: &RunKey, task_id: &InstanceId) {
        let Some(run) = self.runs.get(run_key) else {
            return;
        };
        let Some(waiting) = run.deferrals.get(task_id) else {
            return;
        };
        if run.state(task_id) != TaskState::Deferred || waiting.resume.is_some() {
            return;
        }
        let key = TryKey {
            dag_id: run.dag.id.clone(),
            run_id: run.run_id.clone(),
            task_id: task_id.task_id.clone(),
            map_index: task_id.map_index,
            try_number: TryNumber(waiting.try_number),
        };
        let deferral = &waiting.deferral;
        let timeout = deferral.timeout_at;
        let native = native(&deferral.classpath, &deferral.trigger_kwargs);
        let spec = TriggerSpec::new(
            key.clone(),
            &deferral.classpath,
            &deferral.trigger_kwargs,
            &run.dag.fileloc,
        );
        let classpath = deferral.classpath.clone();
        if let Some(at) = timeout {
            self.add_timer(at, Timer::TriggerTimeout(key.clone()));
        }
        match (native, self.triggerer.clone()) {
            (Some(trigger), _) => {
                self.add_timer(trigger.at, Timer::TriggerFires(key, trigger.result));
            }
            (None, Some(runner)) => {
                runner.run(spec);
                self.python_triggers.insert(key);
            }
            (None, None) => {
                let why = format!(
                    "trigger {classpath} runs in Python, and no [python] interpreter is configured"
                );
                self.trigger_fired(TriggerFired {
                    key,
                    result: TriggerResult::Failed(vec![why]),
                });
            }
        }
    }

    /// The deferred try `key`, if its instance still waits on its trigger.
    fn waiting_on_trigger(&self, key: &TryKey) -> Option<RunKey> {
        let run_key: RunKey = (key.dag_id.to_string(), key.run_id.to_string());
        let run = self.runs.get(&run_key)?;
        let instance = key.instance();
        let waiting = run.deferrals.get(&instance)?;
        (run.state(&instance) == TaskState::Deferred
            && waiting.try_number == key.try_number.0
            && waiting.resume.is_none())
        .then_some(run_key)
    }

    /// A trigger ended: the try resumes (waits for a slot to run its `next_method`), or the
    /// trigger ended the task itself. A trigger of a try that moved on changes nothing.
    pub(super) fn trigger_fired(&mut self, fired: TriggerFired) {
        self.python_triggers.remove(&fired.key);
        let Some(run_key) = self.waiting_on_trigger(&fired.key) else {
            return;
        };
        let task_id = fired.key.instance();
        let resume = match fired.result {
            TriggerResult::Event(payload) => self.runs.get(&run_key).and_then(|run| {
                let waiting = run.deferrals.get(&task_id)?;
                Some(resume_with_event(&waiting.deferral, payload))
            }),
            TriggerResult::Failed(traceback) => {
                tracing::warn!(dag_id = %run_key.0, run_id = %run_key.1, %task_id, "the task's trigger failed: {}", traceback.last().map_or("", String::as_str));
                Some(Resume::trigger_failed(traceback))
            }
            TriggerResult::EndTask(state) => {
                self.end_from_trigger(&run_key, &task_id, fired.key.try_number.0, state);
                return;
            }
        };
        self.resume(&run_key, &task_id, resume);
    }

    /// A deferred try's `trigger_timeout` passed before its trigger fired: it resumes to fail
    /// (`TaskDeferralTimeout`), as Airflow's `check_trigger_timeouts` has it, and its trigger
    /// is cancelled.
    pub(super) fn trigger_timed_out(&mut self, key: &TryKey) {
        let Some(run_key) = self.waiting_on_trigger(key) else {
            return;
        };
        tracing::info!(%key, "the task's trigger timed out");
        if self.python_triggers.remove(key)
            && let Some(runner) = &self.triggerer
        {
            runner.cancel(key);
        }
        self.resume(&run_key, &key.instance(), Some(Resume::timed_out()));
    }

    fn resume(&mut self, run_key: &RunKey, task_id: &InstanceId, resume: Option<Resume>) {
        let Some(waiting) = self
            .runs
            .get_mut(run_key)
            .and_then(|run| run.deferrals.get_mut(task_id))
        else {
            return;
        };
        waiting.resume = Some(resume.unwrap_or_else(|| {
            Resume::trigger_failed(vec!["the deferral was not recorded".to_owned()])
        }));
        self.wait_for_slot(run_key, task_id);
    }

    /// The trigger ended the task itself (`end_from_trigger`): no worker runs again.
    fn end_from_trigger(
        &mut self,
        run_key: &RunKey,
        task_id: &InstanceId,
        try_number: u32,
        state: EndState,
    ) {
        let now = self.clock.now();
        let n = i32::try_from(try_number).unwrap_or(i32::MAX);
        let ended = move |failure: Option<String>, xcoms| TryChange::Ended {
            try_number: n,
            at: now,
            failure,
            xcoms,
            outlets: Vec::new(),
        };
        let mut batch = std::mem::take(&mut self.pending);
        let moved = match state {
            EndState::Success => {
                let nothing = crate::xcom::Pushed::returned(None);
                self.succeed(&mut batch, run_key, task_id, nothing, &[], ended)
            }
            EndState::Skipped => {
                let why = "its trigger skipped it".to_owned();
                self.skip_try(&mut batch, run_key, task_id, try_number, why, ended)
            }
            EndState::Failed => self.move_into(
                &mut batch,
                run_key,
                task_id,
                TaskEvent::Fail { can_retry: false },
                None,
                Some(ended(Some("its trigger failed it".to_owned()), Vec::new())),
            ),
        };
        if moved && let Some(run) = self.runs.get_mut(run_key) {
            run.deferrals.remove(task_id);
        }
        self.pending = batch;
    }

    /// Starts the triggers of a run just loaded whose tasks are deferred, from their records.
    pub(super) fn restart_triggers(&mut self, run_key: &RunKey, stored: Vec<StoredDeferral>) {
        let Some(run) = self.runs.get_mut(run_key) else {
            return;
        };
        let mut started = Vec::new();
        for deferral in stored {
            let Ok(task) = TaskId::new(deferral.task_id.clone()) else {
                continue;
            };
            let task_id = InstanceId::mapped(task, deferral.map_index);
            let try_number = u32::try_from(deferral.try_number).unwrap_or(0);
            if run.state(&task_id) != TaskState::Deferred || run.try_number(&task_id) != try_number
            {
                continue;
            }
            run.deferrals.insert(
                task_id.clone(),
                Waiting {
                    try_number,
                    deferral,
                    resume: None,
                },
            );
            started.push(task_id);
        }
        // A deferred instance without a record (written by a Gust without deferral) fails.
        let unrecorded: Vec<InstanceId> = run
            .all_instances()
            .filter(|(id, s)| *s == TaskState::Deferred && !run.deferrals.contains_key(*id))
            .map(|(id, _)| id.clone())
            .collect();
        for task_id in started {
            self.start_trigger(run_key, &task_id);
        }
        for task_id in unrecorded {
            let Some(run) = self.runs.get_mut(run_key) else {
                return;
            };
            let try_number = run.try_number(&task_id);
            run.deferrals.insert(
                task_id.clone(),
                Waiting {
                    try_number,
                    deferral: StoredDeferral {
                        task_id: task_id.task_id.to_string(),
                        map_index: task_id.map_index,
                        try_number: i32::try_from(try_number).unwrap_or(i32::MAX),
                        classpath: String::new(),
                        trigger_kwargs: serde_json::Value::Null,
                        timeout_at: None,
                        next_method: String::new(),
                        next_kwargs: serde_json::json!({}),
                        deferred_at: self.clock.now(),
                    },
                    resume: None,
                },
            );
            self.resume(run_key, &task_id, None);
        }
    }

    /// Cancels the Python triggers whose tries no longer wait on them (their task was cleared
    /// or marked, their run ended or went to another scheduler).
    pub(super) fn cancel_unwanted_triggers(&mut self) {
        if self.python_triggers.is_empty() {
            return;
        }
        let unwanted: Vec<TryKey> = self
            .python_triggers
            .iter()
            .filter(|key| self.waiting_on_trigger(key).is_none())
            .cloned()
            .collect();
        for key in unwanted {
            self.python_triggers.remove(&key);
            if let Some(runner) = &self.triggerer {
                tracing::info!(%key, "cancelling the trigger of a task that moved on");
                runner.cancel(&key);
            }
        }
    }

    /// How a resumed try of `task_id` runs, if it is one.
    pub(super) fn resumption(&self, run_key: &RunKey, task_id: &InstanceId) -> Option<Resume> {
        let run = self.runs.get(run_key)?;
        if run.state(task_id) != TaskState::Deferred {
            return None;
        }
        run.deferrals.get(task_id)?.resume.clone()
    }
}

/// The resumption of a deferral whose trigger fired with `payload`.
fn resume_with_event(deferral: &StoredDeferral, payload: serde_json::Value) -> Resume {
    Deferral {
        classpath: deferral.classpath.clone(),
        trigger_kwargs: serde_json::Value::Null,
        trigger_timeout: None,
        next_method: deferral.next_method.clone(),
        next_kwargs: deferral.next_kwargs.clone(),
    }
    .resume_with_event(payload)
}
