//! Moving task instances: deciding what is ready (the core's readiness pass), admitting waiting
//! tasks to slots and handing them over, and turning runtime events, retry delays and run
//! timeouts into moves.

use chrono::{DateTime, Utc};
use gust_core::ids::{InstanceId, TaskId};
use gust_core::readiness::{settle, settle_changed};
use gust_core::retry::{can_retry, retry_delay};
use gust_core::state::{TaskEvent, TaskState};
use gust_executor::callbacks::CallbackKind;
use gust_executor::{FailureReason, TryEvent, TryEventKind, TryKey, TryOutcome};
use gust_store::TryChange;

use super::active::RunKey;
use super::slots::{Blocked, Limit};
use super::{After, Batch, Scheduler, Timer};
use crate::launch::{Rendered, RunContext, launch_spec, render_args, render_map_index};
use crate::metrics::{Line, TryResult};

impl Scheduler {
    /// Moves `task` of `run` by `event`, keeping slot counts, into `batch`. An illegal move is a
    /// bug or a race with another writer; either way the run is re-read rather than trusted.
    pub(super) fn move_into(
        &mut self,
        batch: &mut Batch,
        run_key: &RunKey,
        instance: &InstanceId,
        event: TaskEvent,
        next_retry_at: Option<DateTime<Utc>>,
        try_change: Option<TryChange>,
    ) -> bool {
        let Some(run) = self.runs.get_mut(run_key) else {
            return false;
        };
        let task = &instance.task_id;
        let before = run.state(instance);
        match run.move_task(instance, event, next_retry_at, try_change) {
            Ok(planned) => {
                let after = planned.to;
                let depends_on_past = run
                    .dag
                    .task(task)
                    .is_some_and(|t| t.settings.depends_on_past);
                if before.holds_slot() != after.holds_slot()
                    && let Some(t) = run.dag.task(task)
                {
                    self.slots.track(run_key, t, after.holds_slot());
                    if !after.holds_slot() {
                        // A slot given back: what its limits held back may start now.
                        for limit in Limit::held_by(run_key, t) {
                            self.line.unpark_one(&limit);
                            self.worker_free_line.unpark_one(&limit);
                        }
                    }
                }
                batch.push(run_key, planned);
                if depends_on_past {
                    // The next run's instance of this task waits on this one.
                    for next in self.runs.values_mut() {
                        if next.previous.as_ref() == Some(run_key) {
                            next.changed.push(task.clone());
                        }
                    }
                }
                true
            }
            Err(err) => {
                tracing::warn!(dag_id = %run_key.0, run_id = %run_key.1, task_id = %task, map_index = instance.map_index, "{err}; re-reading the run");
                self.stale.insert(run_key.clone());
                false
            }
        }
    }

    /// Decides the tasks of every run with moves since its last pass whose upstreams allow it:
    /// skipped and upstream_failed ones are moved, ready ones are scheduled and put in line.
    /// Only the moved tasks' downstream tasks are looked at, unless the run needs a whole pass.
    pub(super) fn settle_dirty(&mut self, batch: &mut Batch) {
        let dirty: Vec<RunKey> = self
            .runs
            .iter()
            .filter(|(_, r)| r.needs_pass())
            .map(|(k, _)| k.clone())
            .collect();
        for key in dirty {
            let Some(run) = self.runs.get_mut(&key) else {
                continue;
            };
            let whole = std::mem::take(&mut run.whole_pass);
            let changed = std::mem::take(&mut run.changed);
            let Some(run) = self.runs.get(&key) else {
                continue;
            };
            // For `depends_on_past`: the previous run's task states, or none when there is no
            // previous run (the first run may always go). A previous run still active blocks
            // tasks until its own instance succeeds.
            let past = match (&run.previous, &run.past) {
                (Some(previous), _) => self.runs.get(previous).map(|p| p.states.tasks()),
                (None, past) => past.as_ref(),
            };
            let past_ok = |task: &TaskId| {
                past.is_none_or(|states| {
                    states
                        .get(task)
                        .is_none_or(|s| matches!(s, TaskState::Success | TaskState::Skipped))
                })
            };
            let settled = if whole {
                settle(&run.dag, &run.states, past_ok)
            } else {
                settle_changed(&run.dag, &run.states, &changed, past_ok)
            };
            for (task, state) in settled.finished {
                let event = if state == TaskState::Skipped {
                    TaskEvent::Skip
                } else {
                    TaskEvent::UpstreamFail
                };
                // Each instance of a mapped task that has not started is decided alike.
                let waiting = self.runs.get(&key).map_or_else(Vec::new, |run| {
                    run.instances(&task)
                        .into_iter()
                        .filter(|i| run.state(i) == TaskState::NoStatus)
                        .collect()
                });
                for instance in waiting {
                    self.move_into(batch, &key, &instance, event, None, None);
                }
            }
            for task in settled.ready {
                let mapped = self
                    .runs
                    .get(&key)
                    .and_then(|run| run.dag.task(&task))
                    .is_some_and(|t| t.mapping.is_some());
                if mapped {
                    self.expand(batch, &key, &task);
                    continue;
                }
                let instance = InstanceId::unmapped(task);
                if self.move_into(batch, &key, &instance, TaskEvent::Schedule, None, None) {
                    self.wait_for_slot(&key, &instance);
                }
            }
        }
    }

    /// Puts a task now `scheduled` in line for slots: by its `priority_weight`, in the line of
    /// tries that hold no worker (pods) when its operator is one of those.
    pub(super) fn wait_for_slot(&mut self, run_key: &RunKey, instance: &InstanceId) {
        let task = self
            .runs
            .get(run_key)
            .and_then(|r| r.dag.task(&instance.task_id));
        let weight = task.map_or(1, |t| t.settings.priority_weight);
        let worker_free = task.is_some_and(|t| self.slots.worker_free.contains(&t.operator));
        let line = if worker_free {
            &mut self.worker_free_line
        } else {
            &mut self.line
        };
        line.push(weight, run_key.clone(), instance.clone(), self.clock.now());
    }

    /// Hands waiting tasks to the runtime while slots allow, highest priority first; tries that
    /// hold no worker are not held back by `parallelism`.
    pub(super) fn admit(&mut self, batch: &mut Batch) {
        if self.draining {
            return;
        }
        let worker_free = std::mem::take(&mut self.worker_free_line);
        let line = std::mem::replace(&mut self.line, worker_free);
        self.admit_line(batch);
        self.worker_free_line = std::mem::replace(&mut self.line, line);
        self.admit_line(batch);
    }

    /// Admits from `self.line` until `parallelism` stops it or the line is done.
    fn admit_line(&mut self, batch: &mut Batch) {
        let mut place = None;
        while let Some((at, run_key, instance)) = self.line.next_after(place) {
            place = Some(at);
            let Some(run) = self.runs.get(&run_key) else {
                self.line.remove(at);
                continue;
            };
            // A rescheduled try waits in line in `up_for_reschedule` (see `reschedule_due`), a
            // resumed one in `deferred` once its trigger fired (see `deferrals.rs`).
            let resume = self.resumption(&run_key, &instance);
            let waits = match run.state(&instance) {
                TaskState::Scheduled | TaskState::UpForReschedule => true,
                TaskState::Deferred => resume.is_some(),
                _ => false,
            };
            if !waits {
                self.line.remove(at);
                continue;
            }
            let dag = run.dag.clone();
            let Some(task) = dag.task(&instance.task_id) else {
                self.line.remove(at);
                continue;
            };
            match self
                .slots
                .check(&run_key, dag.settings.max_active_tasks, task)
            {
                Ok(()) => {}
                Err(Blocked::Parallelism) => return,
                Err(Blocked::Full(limit)) => {
                    // Looked at again once a slot under that limit is given back.
                    self.line.park(at, limit);
                    continue;
                }
                Err(Blocked::UnknownPool(pool)) => {
                    self.line.remove(at);
                    let why = format!(
                        "pool \"{pool}\" does not exist; create it with `gust pools set {pool} SLOTS`"
                    );
                    let args = serde_json::Value::Null;
                    self.queue_and_fail(batch, &run_key, &instance, args, why, Retry::AsSet);
                    continue;
                }
            }
            let waiting_since = self.line.since(at);
            self.line.remove(at);
            let try_number = run.next_try_number(&instance);
            let rendered =
                crate::mapped::instance_args(task, &instance, &run.xcoms).and_then(|mapped| {
                    render_args(
                        &self.renderer,
                        &dag,
                        task,
                        RunContext {
                            run_id: &run.run_id,
                            interval: run.interval(),
                            conf: &run.run.conf,
                            asset_events: &run.asset_events,
                        },
                        try_number,
                        mapped.as_ref(),
                        run.xcoms.clone(),
                    )
                });
            let run_id = run.run_id.clone();
            match rendered {
                Ok(Rendered { args, xcoms }) => {
                    let name = render_map_index(
                        &self.renderer,
                        &dag,
                        task,
                        RunContext {
                            run_id: &run.run_id,
                            interval: run.interval(),
                            conf: &run.run.conf,
                            asset_events: &run.asset_events,
                        },
                        (instance.map_index, try_number),
                        &args,
                        run.xcoms.clone(),
                    )
                    .and_then(|named| {
                        // As Airflow's early rendering: a template that does not render
                        // leaves the instance shown by its index, and the try runs.
                        named
                            .map_err(|why| tracing::warn!(%why, "a mapped instance is not named"))
                            .ok()
                    });
                    let mut spec = launch_spec(
                        &dag,
                        task,
                        &run_id,
                        run.run.logical_date,
                        instance.map_index,
                        try_number,
                        args,
                        &self.config.logs_root,
                        run.facts(),
                        run.xcoms.clone(),
                    );
                    if try_number == run.try_number(&instance)
                        && let Some(so_far) = run.reschedules.get(&instance)
                    {
                        spec.context.reschedules = *so_far;
                    }
                    spec.context.resume = resume;
                    if try_number > 1 {
                        // The store drops what the last try pushed as this one is queued.
                        run.xcoms
                            .forget(instance.task_id.as_str(), instance.map_index);
                    }
                    for (key, value) in &xcoms {
                        let task = instance.task_id.as_str();
                        run.xcoms.push(task, instance.map_index, key, value.clone());
                    }
                    let change = TryChange::Queued {
                        try_number: i32::try_from(try_number).unwrap_or(i32::MAX),
                        rendered_args: serde_json::Value::Object(spec.args.clone()),
                        xcoms,
                        log_location: spec.log_path.display().to_string(),
                        at: self.clock.now(),
                    };
                    if self.move_into(
                        batch,
                        &run_key,
                        &instance,
                        TaskEvent::Queue,
                        None,
                        Some(change),
                    ) {
                        let key = spec.key.clone();
                        batch.then(After::Launch(Box::new(spec)));
                        if let Some(name) = name {
                            batch.then(After::Name(key, name));
                        }
                        if let Some(since) = waiting_since {
                            self.config
                                .metrics
                                .scheduling_delay(self.clock.now() - since);
                        }
                    }
                }
                Err(why) => {
                    let raw = serde_json::Value::Object(task.args.clone());
                    self.queue_and_fail(batch, &run_key, &instance, raw, why, Retry::AsSet);
                }
            }
        }
    }

    /// A try that fails before it can be handed over (its templates do not render, its pool
    /// does not exist, its lists cannot be expanded): it is recorded as a try, with the reason
    /// (shown in its log), and fails like any.
    pub(super) fn queue_and_fail(
        &mut self,
        batch: &mut Batch,
        run_key: &RunKey,
        instance: &InstanceId,
        args: serde_json::Value,
        why: String,
        retry: Retry,
    ) {
        let Some(run) = self.runs.get(run_key) else {
            return;
        };
        let try_number = run.next_try_number(instance);
        let log = crate::log_path::log_path(
            &self.config.logs_root,
            &TryKey {
                dag_id: run.dag.id.clone(),
                run_id: run.run_id.clone(),
                task_id: instance.task_id.clone(),
                map_index: instance.map_index,
                try_number: gust_core::ids::TryNumber(try_number),
            },
        );
        let change = TryChange::Queued {
            try_number: i32::try_from(try_number).unwrap_or(i32::MAX),
            rendered_args: args,
            xcoms: Vec::new(),
            log_location: log.display().to_string(),
            at: self.clock.now(),
        };
        if self.move_into(
            batch,
            run_key,
            instance,
            TaskEvent::Queue,
            None,
            Some(change),
        ) {
            batch.then(After::FailureLog(log, why.clone()));
            self.fail_try(batch, run_key, instance, try_number, why, retry);
        }
    }

    /// Fails try `try_number` of a queued or running task: up_for_retry with a timer when tries
    /// remain and `retry` allows, failed otherwise.
    fn fail_try(
        &mut self,
        batch: &mut Batch,
        run_key: &RunKey,
        instance: &InstanceId,
        try_number: u32,
        why: String,
        retry: Retry,
    ) {
        let Some(settings) = self
            .runs
            .get(run_key)
            .and_then(|r| r.dag.task(&instance.task_id))
            .map(|t| t.settings.clone())
        else {
            return;
        };
        let now = self.clock.now();
        let retry = retry == Retry::AsSet && can_retry(&settings, try_number);
        let retry_at = retry.then(|| {
            now + chrono::Duration::from_std(retry_delay(&settings, try_number))
                .unwrap_or(chrono::Duration::MAX)
        });
        let change = TryChange::Ended {
            try_number: i32::try_from(try_number).unwrap_or(i32::MAX),
            at: now,
            // Why it failed may quote output or arguments: shown in the API, UI and CLI.
            failure: Some(gust_secrets::mask(&why)),
            xcoms: Vec::new(),
            outlets: Vec::new(),
        };
        let event = TaskEvent::Fail { can_retry: retry };
        if self.move_into(batch, run_key, instance, event, retry_at, Some(change)) {
            let kind = if retry {
                CallbackKind::TaskRetry
            } else {
                CallbackKind::TaskFailure
            };
            let why = Some(gust_secrets::mask(&why));
            self.then_task_callback(batch, run_key, instance, try_number, kind, why);
            self.config.metrics.try_finished(TryResult::Failed);
            if let Some(at) = retry_at {
                self.add_timer(at, Timer::Retry(run_key.clone(), instance.clone()));
            }
        }
    }

    /// The runtime refused a try: it failed to start.
    pub(super) fn on_launch_error(&mut self, key: TryKey, why: String) {
        self.on_event(TryEvent {
            key,
            kind: TryEventKind::Finished(TryOutcome::Failed(FailureReason::Spawn(why))),
        });
    }

    /// Turns a runtime event into moves (committed by the next step).
    pub(super) fn on_event(&mut self, event: TryEvent) {
        let mut batch = std::mem::take(&mut self.pending);
        self.apply_event(&mut batch, event);
        self.pending = batch;
    }

    fn apply_event(&mut self, batch: &mut Batch, event: TryEvent) {
        let run_key: RunKey = (event.key.dag_id.to_string(), event.key.run_id.to_string());
        let task_id = event.key.instance();
        let try_number = event.key.try_number.0;
        let current = self
            .runs
            .get(&run_key)
            .map(|r| (r.try_number(&task_id), r.state(&task_id)));
        let is_current = current.is_some_and(|(n, state)| n == try_number && state.holds_slot());
        if !is_current {
            // A try of a run or instance that moved on (cleared, marked, timed out): its end
            // changes nothing, but its record can go.
            if matches!(event.kind, TryEventKind::Finished(_)) {
                batch.then_unconditionally(After::Release(event.key));
            }
            return;
        }
        let now = self.clock.now();
        let state = current.map_or(TaskState::NoStatus, |(_, s)| s);
        let n = i32::try_from(try_number).unwrap_or(i32::MAX);
        let outcome = match event.kind {
            TryEventKind::Started => {
                if state == TaskState::Queued {
                    let change = TryChange::Started {
                        try_number: n,
                        at: now,
                    };
                    // Committed with the next batch (see `START_COMMIT_DELAY`).
                    let mut started = std::mem::take(&mut self.started);
                    if self.move_into(
                        &mut started,
                        &run_key,
                        &task_id,
                        TaskEvent::Start,
                        None,
                        Some(change),
                    ) {
                        let kind = CallbackKind::TaskExecute;
                        self.then_task_callback(
                            &mut started,
                            &run_key,
                            &task_id,
                            try_number,
                            kind,
                            None,
                        );
                    }
                    self.started = started;
                    self.started_due.get_or_insert_with(|| {
                        tokio::time::Instant::now() + super::START_COMMIT_DELAY
                    });
                }
                return;
            }
            TryEventKind::Finished(outcome) => outcome,
        };
        if state == TaskState::Queued && outcome != TryOutcome::NeverStarted {
            let change = TryChange::Started {
                try_number: n,
                at: now,
            };
            if !self.move_into(
                batch,
                &run_key,
                &task_id,
                TaskEvent::Start,
                None,
                Some(change),
            ) {
                return;
            }
        }
        let ended = |failure: Option<String>, xcoms| TryChange::Ended {
            try_number: n,
            at: now,
            failure,
            xcoms,
            outlets: Vec::new(),
        };
        // Failures are counted where every failed try goes (`fail_try`).
        let counted = match &outcome {
            TryOutcome::Succeeded { .. } | TryOutcome::SucceededReporting { .. } => {
                Some(TryResult::Success)
            }
            TryOutcome::Skipped { .. } | TryOutcome::SkippedItself { .. } => {
                Some(TryResult::Skipped)
            }
            TryOutcome::NeverStarted => Some(TryResult::NeverStarted),
            TryOutcome::Rescheduled { .. } => Some(TryResult::Rescheduled),
            TryOutcome::Deferred(_) => Some(TryResult::Deferred),
            TryOutcome::Failed(_) => None,
        };
        let moved = match outcome {
            TryOutcome::Succeeded { xcom } => {
                let xcoms = crate::xcom::Pushed::returned(xcom);
                let moved = self.succeed(batch, &run_key, &task_id, xcoms, &[], ended);
                if moved {
                    let kind = CallbackKind::TaskSuccess;
                    self.then_task_callback(batch, &run_key, &task_id, try_number, kind, None);
                }
                moved
            }
            TryOutcome::SucceededReporting {
                xcoms,
                skip,
                outlet_events,
            } => {
                let xcoms = crate::xcom::Pushed::by_key(xcoms);
                let moved = self.succeed(batch, &run_key, &task_id, xcoms, &outlet_events, ended);
                if moved {
                    let kind = CallbackKind::TaskSuccess;
                    self.then_task_callback(batch, &run_key, &task_id, try_number, kind, None);
                    self.skip_downstream(batch, &run_key, &task_id, &skip);
                }
                moved
            }
            TryOutcome::SkippedItself { reason } => {
                self.skip_try(batch, &run_key, &task_id, try_number, reason, ended)
            }
            TryOutcome::Skipped { exit_code } => {
                let why = format!("exit code {exit_code} is a skip code");
                self.skip_try(batch, &run_key, &task_id, try_number, why, ended)
            }
            TryOutcome::Rescheduled { at } => {
                self.reschedule_try(batch, &run_key, &task_id, try_number, at)
            }
            TryOutcome::Deferred(deferral) => {
                self.defer_try(batch, &run_key, &task_id, try_number, *deferral)
            }
            TryOutcome::Failed(reason) => {
                let reason = reason.to_string();
                self.fail_try(batch, &run_key, &task_id, try_number, reason, Retry::AsSet);
                true
            }
            TryOutcome::NeverStarted => {
                let why =
                    "never started (the scheduler stopped before handing it over); queued again"
                        .to_owned();
                let requeued = self.move_into(
                    batch,
                    &run_key,
                    &task_id,
                    TaskEvent::Requeue,
                    None,
                    Some(ended(Some(why), Vec::new())),
                );
                if requeued {
                    self.wait_for_slot(&run_key, &task_id);
                }
                requeued
            }
        };
        if moved {
            batch.then(After::Release(event.key));
            if let Some(result) = counted {
                self.config.metrics.try_finished(result);
            }
        }
    }

    /// Moves a try's task to success, its XComs (masked: a secret a try returns is stored and
    /// passed on masked, as its log shows it) recorded first so that downstream tasks see them.
    pub(super) fn succeed(
        &mut self,
        batch: &mut Batch,
        run_key: &RunKey,
        instance: &InstanceId,
        pushed: crate::xcom::Pushed,
        reported: &[gust_executor::OutletEvent],
        ended: impl FnOnce(Option<String>, Vec<(String, serde_json::Value)>) -> TryChange,
    ) -> bool {
        let xcom = pushed.xcom.map(|value| crate::xcom::masked(&value));
        if let Some(run) = self.runs.get(run_key)
            && !instance.is_mapped()
            && let Some(task) = run.dag.task(&instance.task_id)
            && let Err(why) = crate::mapped::check_mappable(
                &run.dag,
                task,
                xcom.as_ref(),
                self.config.max_map_length,
            )
        {
            // As Airflow's task runner: a task whose value a downstream task is mapped over
            // fails when that value cannot be mapped over.
            let try_number = run.try_number(instance);
            self.fail_try(batch, run_key, instance, try_number, why, Retry::AsSet);
            return true;
        }
        let xcoms = crate::xcom::recorded(xcom, &pushed.keyed_xcoms);
        if let Some(run) = self.runs.get(run_key) {
            for (key, value) in &xcoms {
                let task = instance.task_id.as_str();
                run.xcoms.push(task, instance.map_index, key, value.clone());
            }
        }
        let mut change = ended(None, xcoms);
        self.outlet_events(run_key, instance, reported, &mut change);
        self.move_into(
            batch,
            run_key,
            instance,
            TaskEvent::Succeed,
            None,
            Some(change),
        )
    }

    /// Fills a successful try's end with the asset events of its task's outlets, named after
    /// the try, at its end, as Airflow's `register_asset_changes`: one per event the try
    /// `reported` for the asset (with its extra), else one with an empty extra. Reported events
    /// of assets that are not the task's outlets are left out, as in Airflow. Events the try
    /// emitted through one of its outlet aliases are recorded too, one per asset, asset extra
    /// and extra (naming every alias that emitted it), the asset created if it is new.
    fn outlet_events(
        &self,
        run_key: &RunKey,
        instance: &InstanceId,
        reported: &[gust_executor::OutletEvent],
        change: &mut TryChange,
    ) {
        let TryChange::Ended { at, outlets, .. } = change else {
            return;
        };
        let task_id = &instance.task_id;
        let Some(task) = self.runs.get(run_key).and_then(|run| run.dag.task(task_id)) else {
            return;
        };
        let source = Some((run_key.0.clone(), run_key.1.clone(), task_id.to_string()));
        let event = |asset: &gust_core::asset::Asset, extra| gust_store::NewAssetEvent {
            asset: asset.clone(),
            extra,
            source: source.clone(),
            aliases: Vec::new(),
            timestamp: *at,
        };
        for asset in &task.settings.outlets {
            let extras: Vec<_> = reported
                .iter()
                .filter(|e| e.through_alias.is_none())
                .filter(|e| e.name == asset.name && e.uri == asset.uri)
                .map(|e| e.extra.clone())
                .collect();
            if extras.is_empty() {
                outlets.push(event(asset, serde_json::Map::new()));
            } else {
                outlets.extend(extras.into_iter().map(|extra| event(asset, extra)));
            }
        }
        type Emitted<'a> = (&'a str, &'a str, String, String);
        let mut through: std::collections::BTreeMap<
            Emitted<'_>,
            Vec<gust_core::asset::AssetAlias>,
        > = std::collections::BTreeMap::new();
        for reported in reported {
            let Some((name, asset_extra)) = &reported.through_alias else {
                continue;
            };
            let Some(alias) = task
                .settings
                .outlet_aliases
                .iter()
                .find(|a| a.name == *name)
            else {
                continue;
            };
            // serde_json's maps are sorted by key, so equal extras have equal texts.
            let key = (
                reported.name.as_str(),
                reported.uri.as_str(),
                serde_json::Value::Object(asset_extra.clone()).to_string(),
                serde_json::Value::Object(reported.extra.clone()).to_string(),
            );
            let aliases = through.entry(key).or_default();
            if !aliases.contains(alias) {
                aliases.push(alias.clone());
            }
        }
        for ((name, uri, asset_extra, extra), aliases) in through {
            let asset_extra: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(&asset_extra).unwrap_or_default();
            let asset =
                gust_core::asset::Asset::new(Some(name), Some(uri), None, Some(&asset_extra));
            let Ok(asset) = asset else {
                tracing::warn!(dag_id = %run_key.0, run_id = %run_key.1, %task_id, "an asset event through an alias names an asset Gust cannot record: {name} ({uri})");
                continue;
            };
            outlets.push(gust_store::NewAssetEvent {
                aliases,
                ..event(&asset, serde_json::from_str(&extra).unwrap_or_default())
            });
        }
    }

    /// Skips the tasks a succeeded try asked to skip (a branch, a short circuit), as Airflow's
    /// `skip-downstream` does: those of its run that have not started. A task that runs or
    /// ended already, and a name the run does not hold, are left as they are.
    fn skip_downstream(
        &mut self,
        batch: &mut Batch,
        run_key: &RunKey,
        by: &InstanceId,
        skip: &[String],
    ) {
        for name in skip {
            let found = TaskId::new(name.as_str()).ok().and_then(|task| {
                let run = self.runs.get(run_key)?;
                run.dag.task(&task)?;
                let instances: Vec<(InstanceId, TaskState)> = run
                    .instances(&task)
                    .into_iter()
                    .map(|i| {
                        let state = run.state(&i);
                        (i, state)
                    })
                    .collect();
                Some(instances)
            });
            let Some(instances) = found else {
                tracing::warn!(dag_id = %run_key.0, run_id = %run_key.1, task_id = %by, "asked to skip {name}, which the DAG does not hold");
                continue;
            };
            for (instance, state) in instances {
                if matches!(state, TaskState::NoStatus | TaskState::Scheduled) {
                    self.move_into(batch, run_key, &instance, TaskEvent::Skip, None, None);
                }
            }
        }
    }

    /// A try skipped itself: its task is skipped, and its `on_skipped_callback` runs.
    pub(super) fn skip_try(
        &mut self,
        batch: &mut Batch,
        run_key: &RunKey,
        task_id: &InstanceId,
        try_number: u32,
        reason: String,
        ended: impl FnOnce(Option<String>, Vec<(String, serde_json::Value)>) -> TryChange,
    ) -> bool {
        let moved = self.move_into(
            batch,
            run_key,
            task_id,
            TaskEvent::Skip,
            None,
            Some(ended(Some(reason), Vec::new())),
        );
        if moved {
            let kind = CallbackKind::TaskSkipped;
            self.then_task_callback(batch, run_key, task_id, try_number, kind, None);
        }
        moved
    }

    /// A try asked to run again at `at`, as the same try (a sensor in `reschedule` mode): it
    /// gives its slot back and waits for the date, its reschedule recorded.
    fn reschedule_try(
        &mut self,
        batch: &mut Batch,
        run_key: &RunKey,
        task_id: &InstanceId,
        try_number: u32,
        at: DateTime<Utc>,
    ) -> bool {
        let now = self.clock.now();
        let Some(run) = self.runs.get_mut(run_key) else {
            return false;
        };
        let mut so_far = run.reschedules.get(task_id).copied().unwrap_or_default();
        so_far.count += 1;
        so_far.first_start.get_or_insert(now);
        let change = TryChange::Rescheduled {
            try_number: i32::try_from(try_number).unwrap_or(i32::MAX),
            number: i32::try_from(so_far.count).unwrap_or(i32::MAX),
            at: now,
            reschedule_date: at,
        };
        let moved = self.move_into(
            batch,
            run_key,
            task_id,
            TaskEvent::Reschedule,
            Some(at),
            Some(change),
        );
        if moved {
            if let Some(run) = self.runs.get_mut(run_key) {
                run.reschedules.insert(task_id.clone(), so_far);
            }
            self.add_timer(at, Timer::Reschedule(run_key.clone(), task_id.clone()));
        }
        moved
    }

    /// A rescheduled try's date came: it waits in line for a slot, staying `up_for_reschedule`
    /// until it is handed over again under the same try number.
    pub(super) fn reschedule_due(&mut self, run_key: &RunKey, task_id: &InstanceId) {
        let is_waiting = self.due_in(run_key, task_id, TaskState::UpForReschedule);
        if is_waiting {
            self.wait_for_slot(run_key, task_id);
        }
    }

    /// Whether `task_id` waits in `state` for a date that has come. A timer may be stale: a
    /// run re-read sets its timers again, and an earlier reschedule's timer must not poke a
    /// sensor that rescheduled itself since, before its own date.
    fn due_in(&self, run_key: &RunKey, task_id: &InstanceId, state: TaskState) -> bool {
        let now = self.clock.now();
        self.runs.get(run_key).is_some_and(|r| {
            r.state(task_id) == state
                && r.tis
                    .get(task_id)
                    .is_none_or(|ti| ti.next_retry_at.is_none_or(|at| at <= now))
        })
    }

    /// A retry delay ended: the task waits for a slot again.
    pub(super) fn retry_due(&mut self, run_key: &RunKey, task_id: &InstanceId) {
        let is_waiting = self.due_in(run_key, task_id, TaskState::UpForRetry);
        if !is_waiting {
            return;
        }
        let mut batch = std::mem::take(&mut self.pending);
        if self.move_into(
            &mut batch,
            run_key,
            task_id,
            TaskEvent::Schedule,
            None,
            None,
        ) {
            self.wait_for_slot(run_key, task_id);
        }
        self.pending = batch;
    }

    /// A run passed its `dagrun_timeout`: its running tries are killed and fail, what has not
    /// run is skipped, and the run fails (Airflow's behaviour).
    pub(super) fn run_timed_out(&mut self, run_key: &RunKey) {
        let Some(run) = self.runs.get_mut(run_key) else {
            return;
        };
        let limit = run
            .dag
            .settings
            .dagrun_timeout
            .map_or(0.0, |d| d.as_secs_f64());
        run.timed_out = true;
        let unfinished: Vec<(InstanceId, TaskState, u32)> = run
            .all_instances()
            .filter(|(i, s)| !s.is_finished() && run.dag.task(&i.task_id).is_some())
            .map(|(i, s)| (i.clone(), s, run.try_number(i)))
            .collect();
        let dag_id = run.dag.id.clone();
        let run_id = run.run_id.clone();
        let why = format!("the run exceeded its dagrun_timeout of {limit}s");
        let now = self.clock.now();
        let mut batch = std::mem::take(&mut self.pending);
        for (task, state, try_number) in unfinished {
            if state.holds_slot() {
                let change = TryChange::Ended {
                    try_number: i32::try_from(try_number).unwrap_or(i32::MAX),
                    at: now,
                    failure: Some(why.clone()),
                    xcoms: Vec::new(),
                    outlets: Vec::new(),
                };
                if self.move_into(
                    &mut batch,
                    run_key,
                    &task,
                    TaskEvent::MarkFailed,
                    None,
                    Some(change),
                ) {
                    self.config.metrics.try_finished(TryResult::Failed);
                    batch.then(After::Kill(
                        TryKey {
                            dag_id: dag_id.clone(),
                            run_id: run_id.clone(),
                            task_id: task.task_id.clone(),
                            map_index: task.map_index,
                            try_number: gust_core::ids::TryNumber(try_number),
                        },
                        why.clone(),
                    ));
                }
            } else {
                let event = if matches!(
                    state,
                    TaskState::UpForRetry | TaskState::UpForReschedule | TaskState::Deferred
                ) {
                    TaskEvent::MarkFailed
                } else {
                    TaskEvent::Skip
                };
                self.move_into(&mut batch, run_key, &task, event, None, None);
            }
        }
        self.pending = batch;
    }
}

impl Scheduler {
    /// Sets the gauges of what waits and what runs, after a step.
    pub(super) fn record_gauges(&self) {
        let metrics = &self.config.metrics;
        // Parked tasks wait too (for their DAG's, task's or pool's slots).
        let waiting = |line: &super::slots::WaitingLine| line.count() + line.parked();
        metrics.queue_depth(Line::Workers, waiting(&self.line));
        metrics.queue_depth(Line::WorkerFree, waiting(&self.worker_free_line));
        metrics.tries_followed(self.executor.running());
    }
}

impl Batch {
    /// `action` whatever the commit finds.
    pub(super) fn then_unconditionally(&mut self, action: After) {
        self.after.push((None, action));
    }
}

/// Whether a failed try may be retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Retry {
    /// As the task's `retries` allow.
    AsSet,
    /// Never: trying again would fail the same way (a mapped task's lists that cannot be
    /// expanded do not change).
    Never,
}
