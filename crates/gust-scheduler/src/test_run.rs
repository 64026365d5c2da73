//! One DAG run, start to finish, in this process: what `gust dags test` does.
//!
//! Nothing is stored: states, tries and XComs live in memory for the run's length. The decisions
//! are the scheduler's own (gust-core's trigger rules, lifecycle and retry delays), so a DAG that
//! passes here behaves the same under the scheduler. Downstream tasks start the moment their
//! upstreams end: the driver reacts to each runtime event, with no polling interval.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use gust_core::clock::SystemClock;
use gust_core::dag::Dag;
use gust_core::ids::{InstanceId, RunId, TaskId, TryNumber};
use gust_core::readiness::{RunStates, run_state, settle, settle_changed};
use gust_core::retry::{can_retry, retry_delay};
use gust_core::schedule::DataInterval;
use gust_core::state::{DagRunState, TaskEvent, TaskState};
use gust_executor::callbacks::{CallbackKind, CallbackRequest, CallbackTask, Calls};
use gust_executor::deferral::{
    Deferral, EndState, Resume, TriggerFired, TriggerResult, TriggerRunner, TriggerSpec,
};
use gust_executor::{Executor, TryEvent, TryEventKind, TryKey, TryOutcome};
use gust_template::Renderer;
use tokio::sync::mpsc::Receiver;
use tokio::time::Instant;

use crate::launch::{RunContext, launch_spec, render_args};
use crate::mapped::InstanceStates;
use crate::xcom::RunXComs;

/// What to run.
#[derive(Debug, Clone)]
pub struct TestRunSpec {
    /// The run's id (`manual__<trigger time>` by convention, as Airflow 3.3 names manual runs).
    pub run_id: RunId,
    /// The run's data interval; its start is the logical date.
    pub interval: DataInterval,
    /// The run's conf, overriding the DAG's params.
    pub conf: serde_json::Map<String, serde_json::Value>,
    /// Where try logs go.
    pub logs_root: PathBuf,
    /// Variables templates can read (`var.value.NAME`), as they were when the run started.
    pub variables: HashMap<String, String>,
    /// Connections templates can read (`conn.ID.host`), as they were when the run started.
    pub connections: HashMap<String, gust_template::TemplateConnection>,
    /// Runs the callbacks of natively run tasks and of the DAG (none: they are not run).
    pub callbacks: Option<Arc<dyn gust_executor::callbacks::CallbackRunner>>,
    /// The most instances one mapped task may have (`[core] max_map_length`).
    pub max_map_length: usize,
    /// Runs the triggers of deferred tasks that are not run natively (none: such a trigger
    /// fails its task, saying why).
    pub triggerer: Option<TestTriggerer>,
}

/// The Python triggerer a test run uses, and where it reports.
#[derive(Debug, Clone)]
pub struct TestTriggerer {
    /// Runs the triggers.
    pub runner: Arc<dyn TriggerRunner>,
    /// Where it reports their ends.
    pub fired: Arc<tokio::sync::Mutex<Receiver<TriggerFired>>>,
}

/// How one task ended (a mapped task: all its instances).
#[derive(Debug, Clone, PartialEq)]
pub struct TaskReport {
    /// The task.
    pub task_id: TaskId,
    /// Its final state (a mapped task's from its instances').
    pub state: TaskState,
    /// How many instances it had (1 unless it is mapped).
    pub instances: usize,
    /// How many tries ran (of all its instances).
    pub tries: u32,
    /// How long its last try took, when one ran.
    pub duration: Option<Duration>,
    /// Why its last try failed, when it did.
    pub failure: Option<String>,
}

/// How the run ended.
#[derive(Debug, Clone, PartialEq)]
pub struct RunReport {
    /// The run's final state.
    pub state: DagRunState,
    /// Every task, in topological order.
    pub tasks: Vec<TaskReport>,
    /// Why the run stopped early, if it did (its timeout).
    pub stopped: Option<String>,
}

/// Per-instance bookkeeping during the run (its state is in `Driver::states`).
#[derive(Debug, Default)]
struct Instance {
    tries: u32,
    /// When its latest try ended, in the run's order of ends (for the DAG callback's context).
    ended: u64,
    /// The latest try's reschedules (a sensor in `reschedule` mode).
    reschedules: gust_executor::Reschedules,
    started: Option<Instant>,
    duration: Option<Duration>,
    failure: Option<String>,
    /// The latest try's deferral, while it is deferred, and how it resumes once its trigger
    /// fired.
    deferral: Option<(Deferral, Option<Resume>)>,
}

/// What wakes a deferred task.
#[derive(Debug)]
enum Wake {
    /// Its native trigger fires.
    Fire(TriggerResult),
    /// Its trigger timed out.
    Timeout,
}

/// A task instance's move, as it happens: what `gust dags test` prints, one line each.
#[derive(Debug, Clone, PartialEq)]
pub struct StateChange {
    /// The task instance.
    pub instance: InstanceId,
    /// Its new state.
    pub state: TaskState,
    /// The try it is at (0 before the first).
    pub try_number: u32,
    /// Why its try failed, when it just did.
    pub failure: Option<String>,
}

/// Runs `dag` once with `executor`, whose events arrive on `events`. Returns when every task has
/// finished (or the run's `dagrun_timeout` passed).
pub async fn run(
    dag: &Dag,
    spec: &TestRunSpec,
    executor: &dyn Executor,
    events: &mut Receiver<TryEvent>,
) -> RunReport {
    run_with_progress(dag, spec, executor, events, &mut |_| {}).await
}

/// [`run`], telling `progress` every move of a task instance as it happens.
pub async fn run_with_progress(
    dag: &Dag,
    spec: &TestRunSpec,
    executor: &dyn Executor,
    events: &mut Receiver<TryEvent>,
    progress: &mut (dyn FnMut(StateChange) + Send),
) -> RunReport {
    let mut driver = Driver::new(dag, spec, executor, progress);
    let deadline = dag.settings.dagrun_timeout.map(|t| Instant::now() + t);
    let mut stopped = None;
    let mut timed_out = false;
    loop {
        driver.step();
        driver.write_failure_logs().await;
        if driver.unfinished == 0 {
            break;
        }
        let next_retry = driver.retry_at.keys().next().copied();
        let next_trigger = driver.trigger_at.keys().next().copied();
        tokio::select! {
            fired = next_fired(spec.triggerer.as_ref()) => match fired {
                Some(fired) => driver.trigger_fired(fired),
                None => {
                    stopped = Some("the triggerer stopped".to_owned());
                    break;
                }
            },
            () = sleep_until(next_trigger), if next_trigger.is_some() => driver.release_triggers(),
            event = events.recv() => match event {
                Some(event) => driver.on_event(event),
                None => {
                    stopped = Some("the runtime stopped".to_owned());
                    break;
                }
            },
            () = sleep_until(next_retry), if next_retry.is_some() => driver.release_retries(),
            () = sleep_until(deadline), if deadline.is_some() => {
                let limit = dag.settings.dagrun_timeout.unwrap_or_default();
                stopped = Some(format!("the run exceeded its dagrun_timeout of {}s", limit.as_secs_f64()));
                timed_out = true;
                driver.kill_all("dagrun_timeout reached", events).await;
                break;
            }
        }
    }
    let state = if stopped.is_some() {
        DagRunState::Failed
    } else {
        run_state(dag, &driver.states)
    };
    driver.dag_callback(state, timed_out);
    driver.report(stopped)
}

async fn next_fired(triggerer: Option<&TestTriggerer>) -> Option<TriggerFired> {
    match triggerer {
        Some(t) => t.fired.lock().await.recv().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

struct Driver<'a> {
    dag: &'a Dag,
    progress: &'a mut (dyn FnMut(StateChange) + Send),
    /// Logs of tries that failed before a runtime had them (their templates did not render),
    /// to write: the path and the reason.
    failure_logs: Vec<(PathBuf, String)>,
    spec: &'a TestRunSpec,
    executor: &'a dyn Executor,
    renderer: Renderer,
    xcoms: Arc<RunXComs>,
    /// When the run started, as Python tasks are told.
    started_at: chrono::DateTime<chrono::Utc>,
    instances: HashMap<InstanceId, Instance>,
    /// Every instance's state; tasks not in it have none yet.
    states: InstanceStates,
    /// How many tasks are not finished: the run ends when none are.
    unfinished: usize,
    /// Instances waiting for their retry delay or reschedule date, by when it ends.
    retry_at: BTreeMap<Instant, Vec<InstanceId>>,
    /// Deferred instances' native triggers and trigger timeouts, by when they come.
    trigger_at: BTreeMap<Instant, Vec<(InstanceId, u32, Wake)>>,
    /// How many tries have ended so far (their order, for the DAG callback's context).
    ends: u64,
    /// Tries held back by the DAG's `max_active_tasks` or their task's `max_active_tis_per_dag`
    /// / `max_active_tis_per_dagrun` (one run here, so both bound the same instances), by task,
    /// each with its place in the order they became ready.
    held: HashMap<TaskId, VecDeque<(u64, InstanceId)>>,
    /// The next place in that order.
    held_seq: u64,
    /// How many instances hold a slot (queued or running), in all and by task.
    active: u32,
    active_by_task: HashMap<TaskId, u32>,
    /// Tasks whose state moved since the run was last settled; `None` before the first pass,
    /// which decides every task. Settling only these and their downstream tasks keeps a pass
    /// after an event as cheap as what the event touched, whatever the DAG's size.
    moved: Option<Vec<TaskId>>,
}

impl<'a> Driver<'a> {
    fn new(
        dag: &'a Dag,
        spec: &'a TestRunSpec,
        executor: &'a dyn Executor,
        progress: &'a mut (dyn FnMut(StateChange) + Send),
    ) -> Self {
        Self {
            dag,
            progress,
            failure_logs: Vec::new(),
            spec,
            executor,
            renderer: Renderer::new(),
            xcoms: Arc::new(RunXComs::new(Arc::new(
                crate::template_values::TemplateValues::fixed(
                    spec.variables.clone(),
                    spec.connections.clone(),
                ),
            ))),
            started_at: gust_core::clock::Clock::now(&SystemClock),
            instances: dag
                .tasks()
                .map(|t| (InstanceId::unmapped(t.id.clone()), Instance::default()))
                .collect(),
            states: InstanceStates::default(),
            unfinished: dag.tasks().len(),
            retry_at: BTreeMap::new(),
            trigger_at: BTreeMap::new(),
            ends: 0,
            held: HashMap::new(),
            held_seq: 0,
            active: 0,
            active_by_task: HashMap::new(),
            moved: None,
        }
    }

    fn state(&self, task: &InstanceId) -> TaskState {
        self.states.get(task)
    }

    /// Moves `task` by `event`. The driver only asks for legal moves; an illegal one is a bug,
    /// which it reports in the task's failure rather than crash the run.
    fn transition(&mut self, task: &InstanceId, event: TaskEvent) {
        let from = self.state(task);
        match from.apply(event) {
            Ok(to) => self.set_state(task, to),
            Err(err) => {
                self.instances.entry(task.clone()).or_default().failure =
                    Some(format!("internal: {err}"))
            }
        }
    }

    fn set_state(&mut self, task: &InstanceId, to: TaskState) {
        let from = self.states.get(task);
        let (whole_before, whole_after) = self.states.set(task, to);
        match (whole_before.is_finished(), whole_after.is_finished()) {
            (false, true) => self.unfinished -= 1,
            (true, false) => self.unfinished += 1,
            _ => {}
        }
        if from.holds_slot() != to.holds_slot() {
            let by_task = self.active_by_task.entry(task.task_id.clone()).or_default();
            if to.holds_slot() {
                self.active += 1;
                *by_task += 1;
            } else {
                self.active = self.active.saturating_sub(1);
                *by_task = by_task.saturating_sub(1);
            }
        }
        if from != to {
            if let Some(moved) = &mut self.moved {
                moved.push(task.task_id.clone());
            }
            let instance = self.instances.get(task);
            let failed = matches!(to, TaskState::Failed | TaskState::UpForRetry);
            (self.progress)(StateChange {
                instance: task.clone(),
                state: to,
                try_number: instance.map_or(0, |i| i.tries),
                failure: instance.filter(|_| failed).and_then(|i| i.failure.clone()),
            });
        }
    }

    /// Settles the run and starts every ready task, until nothing moves: a try that fails
    /// before a runtime has it (its templates do not render) moves its downstream tasks at
    /// once, with no runtime event to wake the run for them.
    fn step(&mut self) {
        loop {
            self.admit_held();
            let settled = match self.moved.replace(Vec::new()) {
                None => settle(self.dag, &self.states, |_| true),
                Some(moved) if moved.is_empty() => return,
                Some(moved) => settle_changed(self.dag, &self.states, &moved, |_| true),
            };
            if settled.finished.is_empty() && settled.ready.is_empty() {
                return;
            }
            for (task, state) in settled.finished {
                let event = if state == TaskState::Skipped {
                    TaskEvent::Skip
                } else {
                    TaskEvent::UpstreamFail
                };
                for instance in self.states.instances(&task) {
                    if self.state(&instance) == TaskState::NoStatus {
                        self.transition(&instance, event);
                    }
                }
            }
            for task in settled.ready {
                if self.dag.task(&task).is_some_and(|t| t.mapping.is_some()) {
                    self.expand(&task);
                    continue;
                }
                let instance = InstanceId::unmapped(task);
                self.transition(&instance, TaskEvent::Schedule);
                self.launch(&instance);
            }
        }
    }

    /// Writes the logs of tries that failed before a runtime had them, so that every try that
    /// counted has a log saying why it ended.
    async fn write_failure_logs(&mut self) {
        for (path, why) in std::mem::take(&mut self.failure_logs) {
            if let Err(err) = gust_executor::try_log::write_failure(&path, &SystemClock, &why).await
            {
                tracing::warn!(log = %path.display(), error = %err, "could not write a try's log");
            }
        }
    }

    /// Expands the mapped `task_id` (its trigger rule is met) and starts its instances, as the
    /// scheduler does: over nothing it is skipped; when it cannot be expanded it fails, without
    /// retrying.
    fn expand(&mut self, task_id: &TaskId) {
        let Some(task) = self.dag.task(task_id) else {
            return;
        };
        if !self.states.is_expanded(task_id) {
            let unmapped = InstanceId::unmapped(task_id.clone());
            let max = self.spec.max_map_length;
            match crate::mapped::length(task, &self.xcoms, max) {
                Ok(0) => {
                    self.transition(&unmapped, TaskEvent::Skip);
                    return;
                }
                Ok(count) => {
                    self.instances.remove(&unmapped);
                    self.states.expand(task_id, count);
                    self.xcoms.expanded(task_id.as_str(), count);
                    for instance in self.states.instances(task_id) {
                        self.instances.insert(instance, Instance::default());
                    }
                }
                Err(err) => {
                    let why = format!("task \"{task_id}\" cannot be expanded: {err}");
                    self.transition(&unmapped, TaskEvent::Schedule);
                    self.transition(&unmapped, TaskEvent::Queue);
                    if let Some(instance) = self.instances.get_mut(&unmapped) {
                        instance.tries += 1;
                        instance.failure = Some(why.clone());
                    }
                    let key = self.try_key(&unmapped, 1);
                    let log = crate::log_path::log_path(&self.spec.logs_root, &key);
                    self.failure_logs.push((log, why));
                    self.transition(&unmapped, TaskEvent::Fail { can_retry: false });
                    self.ended(&unmapped);
                    return;
                }
            }
        }
        for instance in self.states.instances(task_id) {
            if self.state(&instance) != TaskState::NoStatus {
                continue;
            }
            match crate::mapped::waiting_instance_event(self.dag, task, &self.states, &instance) {
                Some(TaskEvent::Schedule) => {
                    self.transition(&instance, TaskEvent::Schedule);
                    self.launch(&instance);
                }
                Some(event) => self.transition(&instance, event),
                None => {}
            }
        }
    }

    fn try_key(&self, instance: &InstanceId, try_number: u32) -> TryKey {
        TryKey {
            dag_id: self.dag.id.clone(),
            run_id: self.spec.run_id.clone(),
            task_id: instance.task_id.clone(),
            map_index: instance.map_index,
            try_number: TryNumber(try_number),
        }
    }

    /// Starts the next try of `task_id` now if the DAG's and its task's limits leave room,
    /// else holds it until a slot is given back, as the scheduler does.
    fn launch(&mut self, task_id: &InstanceId) {
        if self.has_room(&task_id.task_id) {
            self.start_try(task_id);
        } else {
            self.held_seq += 1;
            let place = self.held_seq;
            self.held
                .entry(task_id.task_id.clone())
                .or_default()
                .push_back((place, task_id.clone()));
        }
    }

    /// Whether one more try of `task` may hold a slot now.
    fn has_room(&self, task: &TaskId) -> bool {
        if self.active >= self.dag.settings.max_active_tasks {
            return false;
        }
        let limit = self.dag.task(task).and_then(|t| {
            let s = &t.settings;
            match (s.max_active_tis_per_dag, s.max_active_tis_per_dagrun) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            }
        });
        limit.is_none_or(|limit| self.active_by_task.get(task).copied().unwrap_or(0) < limit)
    }

    /// Starts held tries, oldest first, while limits leave room (a task at its own limit does
    /// not hold back the others).
    fn admit_held(&mut self) {
        loop {
            let next = self
                .held
                .iter()
                .filter(|(task, queue)| !queue.is_empty() && self.has_room(task))
                .filter_map(|(task, queue)| queue.front().map(|(place, _)| (*place, task)))
                .min_by_key(|(place, _)| *place)
                .map(|(_, task)| task.clone());
            let Some(task) = next else {
                return;
            };
            let Some((_, instance)) = self.held.get_mut(&task).and_then(VecDeque::pop_front) else {
                return;
            };
            if self.held.get(&task).is_some_and(VecDeque::is_empty) {
                self.held.remove(&task);
            }
            self.start_try(&instance);
        }
    }

    fn start_try(&mut self, task_id: &InstanceId) {
        let Some(task) = self.dag.task(&task_id.task_id) else {
            return;
        };
        let rescheduled = matches!(
            self.state(task_id),
            TaskState::UpForReschedule | TaskState::Deferred
        );
        let instance = self.instances.entry(task_id.clone()).or_default();
        let resume = instance.deferral.take().and_then(|(_, resume)| resume);
        // A rescheduled or resumed try runs again under its own number.
        if !rescheduled {
            instance.tries += 1;
            instance.reschedules = gust_executor::Reschedules::default();
        }
        let try_number = instance.tries;
        let reschedules = instance.reschedules;
        let run = RunContext {
            run_id: &self.spec.run_id,
            interval: self.spec.interval,
            conf: &self.spec.conf,
            asset_events: &serde_json::Map::new(),
        };
        let rendered =
            crate::mapped::instance_args(task, task_id, &self.xcoms).and_then(|mapped| {
                render_args(
                    &self.renderer,
                    self.dag,
                    task,
                    run,
                    try_number,
                    mapped.as_ref(),
                    self.xcoms.clone(),
                )
            });
        let args = match rendered {
            Ok(rendered) => {
                // Pushed as the templates rendered, before the try runs, as in Airflow.
                for (key, value) in rendered.xcoms {
                    self.xcoms
                        .push(task_id.task_id.as_str(), task_id.map_index, &key, value);
                }
                rendered.args
            }
            Err(err) => {
                let key = self.try_key(task_id, try_number);
                self.failure_logs.push((
                    crate::log_path::log_path(&self.spec.logs_root, &key),
                    err.clone(),
                ));
                self.transition(task_id, TaskEvent::Queue);
                self.fail(task_id, err);
                return;
            }
        };
        let mut spec = launch_spec(
            self.dag,
            task,
            &self.spec.run_id,
            self.spec.interval.start,
            task_id.map_index,
            try_number,
            args,
            &self.spec.logs_root,
            self.run_facts(),
            self.xcoms.clone(),
        );
        spec.context.reschedules = reschedules;
        spec.context.resume = resume;
        self.transition(task_id, TaskEvent::Queue);
        if let Err(err) = self.executor.start(spec) {
            self.fail(task_id, err.to_string());
        }
    }

    /// Fails the current try of `task`, retrying when tries remain.
    fn fail(&mut self, task_id: &InstanceId, why: String) {
        let Some(task) = self.dag.task(&task_id.task_id) else {
            return;
        };
        let tries = self.instances.get(task_id).map_or(1, |i| i.tries);
        let retry = can_retry(&task.settings, tries);
        let delay = retry_delay(&task.settings, tries);
        if let Some(instance) = self.instances.get_mut(task_id) {
            // Why it failed may quote a rendered value: printed and reported masked, as the
            // scheduler stores it.
            instance.failure = Some(gust_secrets::mask(&why));
            instance.duration = instance.started.take().map(|s| s.elapsed());
        }
        self.transition(task_id, TaskEvent::Fail { can_retry: retry });
        self.ended(task_id);
        let kind = if retry {
            CallbackKind::TaskRetry
        } else {
            CallbackKind::TaskFailure
        };
        let why = self.instances.get(task_id).and_then(|i| i.failure.clone());
        self.task_callback(task_id, kind, why);
        if retry {
            self.retry_at
                .entry(Instant::now() + delay)
                .or_default()
                .push(task_id.clone());
        }
    }

    /// The run, as a Python task or a callback is told it.
    fn run_facts(&self) -> gust_executor::RunFacts {
        gust_executor::RunFacts {
            data_interval: Some((self.spec.interval.start, self.spec.interval.end)),
            run_after: Some(self.spec.interval.end),
            start_date: Some(self.started_at),
            run_type: "manual".to_owned(),
            conf: self.spec.conf.clone(),
        }
    }

    /// Notes that the latest try of `task_id` ended now.
    fn ended(&mut self, task_id: &InstanceId) {
        self.ends += 1;
        let order = self.ends;
        if let Some(instance) = self.instances.get_mut(task_id) {
            instance.ended = order;
        }
    }

    /// A callback request of this run, about `task` if any.
    fn callback_request(
        &self,
        kind: CallbackKind,
        run_state: &'static str,
        task: Option<&InstanceId>,
        reason: Option<String>,
        calls: Calls,
    ) -> CallbackRequest {
        let tries = task
            .and_then(|t| self.instances.get(t))
            .map_or(0, |i| i.tries);
        let key = |task_id: &InstanceId| self.try_key(task_id, tries);
        let of_dag = matches!(kind, CallbackKind::DagSuccess | CallbackKind::DagFailure);
        let log_path = match task {
            Some(task_id) if !of_dag => {
                crate::log_path::log_path(&self.spec.logs_root, &key(task_id))
            }
            _ => crate::log_path::dag_callbacks_log_path(
                &self.spec.logs_root,
                &self.dag.id,
                &self.spec.run_id,
            ),
        };
        CallbackRequest {
            kind,
            dag_id: self.dag.id.clone(),
            dag_file: self.dag.fileloc.clone(),
            run_id: self.spec.run_id.clone(),
            logical_date: Some(self.spec.interval.start),
            run: self.run_facts(),
            run_state,
            task: task.map(|task_id| CallbackTask {
                task_id: task_id.task_id.clone(),
                try_number: tries,
                state: self.state(task_id).as_str(),
            }),
            reason,
            log_path,
            max_tries: task
                .and_then(|t| self.dag.task(&t.task_id))
                .map_or(0, |t| t.settings.retries.saturating_add(1)),
            calls,
            params: self.dag.settings.params.clone(),
            lookup: gust_executor::SharedLookup(Some(
                self.xcoms.clone() as Arc<dyn gust_template::RuntimeLookup>
            )),
        }
    }

    /// Runs `kind`'s callback of `task_id` when it names one and Gust runs it natively (a
    /// Python task runs its own).
    fn task_callback(&self, task_id: &InstanceId, kind: CallbackKind, reason: Option<String>) {
        let (Some(runner), Some(task)) = (&self.spec.callbacks, self.dag.task(&task_id.task_id))
        else {
            return;
        };
        let calls = Calls::of_task(kind, task);
        if !calls.is_empty() {
            runner.run(self.callback_request(kind, "running", Some(task_id), reason, calls));
        }
    }

    /// Runs the DAG's callback for the run's end, in the context of the task instance that
    /// decided it (the last to end in the deciding state), as the scheduler does.
    fn dag_callback(&self, state: DagRunState, timed_out: bool) {
        let Some(runner) = &self.spec.callbacks else {
            return;
        };
        let Some((kind, reason)) = crate::scheduler::callbacks::dag_callback_kind(state, timed_out)
        else {
            return;
        };
        let calls = Calls::of_dag(kind, self.dag);
        if calls.is_empty() {
            return;
        }
        let deciding = if state == DagRunState::Success {
            TaskState::Success
        } else {
            TaskState::Failed
        };
        let task = self
            .instances
            .iter()
            .filter(|(id, _)| self.state(id) == deciding)
            .max_by_key(|(_, i)| i.ended)
            .map(|(id, _)| id.clone());
        runner.run(self.callback_request(
            kind,
            state.as_str(),
            task.as_ref(),
            Some(reason.to_owned()),
            calls,
        ));
    }

    /// The current try asked to run again at `at` (a sensor in `reschedule` mode): it waits
    /// for the date as a retry waits for its delay, then runs again as the same try.
    fn reschedule(&mut self, task_id: &InstanceId, at: chrono::DateTime<chrono::Utc>) {
        let now = gust_core::clock::Clock::now(&SystemClock);
        if let Some(instance) = self.instances.get_mut(task_id) {
            instance.reschedules.count += 1;
            instance.reschedules.first_start.get_or_insert(now);
        }
        self.finish_timing(task_id, None);
        self.transition(task_id, TaskEvent::Reschedule);
        let wait = (at - now).to_std().unwrap_or_default();
        self.retry_at
            .entry(Instant::now() + wait)
            .or_default()
            .push(task_id.clone());
    }

    fn on_event(&mut self, event: TryEvent) {
        let task_id = event.key.instance();
        let current_try = self.instances.get(&task_id).map_or(0, |i| i.tries);
        if matches!(event.kind, TryEventKind::Finished(_)) {
            // Recorded as soon as it is handled (in memory): the runtime may clean up.
            self.executor.release(&event.key);
        }
        if event.key.try_number.0 != current_try {
            return; // A late event of an earlier try.
        }
        match event.kind {
            TryEventKind::Started => {
                self.transition(&task_id, TaskEvent::Start);
                if let Some(instance) = self.instances.get_mut(&task_id) {
                    instance.started = Some(Instant::now());
                }
                self.task_callback(&task_id, CallbackKind::TaskExecute, None);
            }
            TryEventKind::Finished(outcome) => {
                if self.state(&task_id) == TaskState::Queued {
                    // Finished without a Started event (it failed to start): count it as started.
                    self.transition(&task_id, TaskEvent::Start);
                }
                match outcome {
                    TryOutcome::Succeeded { xcom } => {
                        let pushed = crate::xcom::Pushed::returned(xcom);
                        self.succeed(&task_id, pushed, &[]);
                    }
                    TryOutcome::SucceededReporting { xcoms, skip, .. } => {
                        let pushed = crate::xcom::Pushed::by_key(xcoms);
                        self.succeed(&task_id, pushed, &skip);
                    }
                    TryOutcome::Skipped { .. } | TryOutcome::SkippedItself { .. } => {
                        self.transition(&task_id, TaskEvent::Skip);
                        self.finish_timing(&task_id, None);
                        self.ended(&task_id);
                        self.task_callback(&task_id, CallbackKind::TaskSkipped, None);
                    }
                    TryOutcome::Rescheduled { at } => self.reschedule(&task_id, at),
                    TryOutcome::Deferred(deferral) => self.defer(&task_id, *deferral),
                    TryOutcome::Failed(reason) => self.fail(&task_id, reason.to_string()),
                    // Only adopted tries report this, and a test run adopts none.
                    TryOutcome::NeverStarted => {
                        self.fail(&task_id, "the runtime never started it".to_owned());
                    }
                }
            }
        }
    }

    /// A try succeeded: its XComs are recorded before the success, so downstream tasks see
    /// them (masked, as the scheduler records them), then the tasks it asked to skip that have
    /// not started are skipped, as the scheduler does.
    fn succeed(&mut self, task_id: &InstanceId, pushed: crate::xcom::Pushed, skip: &[String]) {
        let xcom = pushed.xcom.map(|value| crate::xcom::masked(&value));
        // A mapped instance's value is one item of what a downstream task maps over.
        if let Some(task) = self
            .dag
            .task(&task_id.task_id)
            .filter(|_| !task_id.is_mapped())
        {
            let max = self.spec.max_map_length;
            if let Err(why) = crate::mapped::check_mappable(self.dag, task, xcom.as_ref(), max) {
                // As Airflow's task runner: a value a downstream task is mapped over must be
                // mappable, or the task that returned it fails.
                self.fail(task_id, why);
                return;
            }
        }
        let name = task_id.task_id.as_str();
        for (key, value) in crate::xcom::recorded(xcom, &pushed.keyed_xcoms) {
            self.xcoms.push(name, task_id.map_index, &key, value);
        }
        self.transition(task_id, TaskEvent::Succeed);
        self.finish_timing(task_id, None);
        self.ended(task_id);
        self.task_callback(task_id, CallbackKind::TaskSuccess, None);
        let waiting = skip
            .iter()
            .filter_map(|name| TaskId::new(name.as_str()).ok())
            .filter(|task| self.dag.task(task).is_some())
            .flat_map(|task| self.states.instances(&task))
            .filter(|instance| self.state(instance) == TaskState::NoStatus)
            .collect::<Vec<_>>();
        for task in waiting {
            self.transition(&task, TaskEvent::Skip);
        }
    }

    fn finish_timing(&mut self, task_id: &InstanceId, failure: Option<String>) {
        if let Some(instance) = self.instances.get_mut(task_id) {
            instance.duration = instance.started.take().map(|s| s.elapsed());
            instance.failure = failure;
        }
    }

    /// Puts tasks whose retry delay or reschedule date has passed back in line.
    fn release_retries(&mut self) {
        let now = Instant::now();
        let due: Vec<Instant> = self.retry_at.range(..=now).map(|(at, _)| *at).collect();
        for at in due {
            for task in self.retry_at.remove(&at).unwrap_or_default() {
                match self.state(&task) {
                    TaskState::UpForRetry => {
                        self.transition(&task, TaskEvent::Schedule);
                        self.launch(&task);
                    }
                    TaskState::UpForReschedule => self.launch(&task),
                    _ => {}
                }
            }
        }
    }

    /// The current try deferred itself: its trigger runs (natively, or in the triggerer) and
    /// it runs again as the same try once that fires, as under the scheduler.
    fn defer(&mut self, task_id: &InstanceId, deferral: Deferral) {
        let now = gust_core::clock::Clock::now(&SystemClock);
        self.finish_timing(task_id, None);
        self.transition(task_id, TaskEvent::Defer);
        let try_number = self.instances.get(task_id).map_or(0, |i| i.tries);
        let after = |at: chrono::DateTime<chrono::Utc>| {
            Instant::now() + (at - now).to_std().unwrap_or_default()
        };
        if let Some(at) = gust_executor::deferral::timeout_at(now, deferral.trigger_timeout) {
            let entry = (task_id.clone(), try_number, Wake::Timeout);
            self.trigger_at.entry(after(at)).or_default().push(entry);
        }
        let native = crate::native_triggers::native(&deferral.classpath, &deferral.trigger_kwargs);
        let key = self.try_key(task_id, try_number);
        let spec = TriggerSpec::new(
            key.clone(),
            &deferral.classpath,
            &deferral.trigger_kwargs,
            &self.dag.fileloc,
        );
        let classpath = deferral.classpath.clone();
        if let Some(instance) = self.instances.get_mut(task_id) {
            instance.deferral = Some((deferral, None));
        }
        match (native, self.spec.triggerer.clone()) {
            (Some(trigger), _) => {
                let entry = (task_id.clone(), try_number, Wake::Fire(trigger.result));
                self.trigger_at
                    .entry(after(trigger.at))
                    .or_default()
                    .push(entry);
            }
            (None, Some(triggerer)) => triggerer.runner.run(spec),
            (None, None) => self.trigger_fired(TriggerFired {
                key,
                result: TriggerResult::Failed(vec![format!(
                    "trigger {classpath} runs in Python, and no [python] interpreter is configured"
                )]),
            }),
        }
    }

    /// A deferred task's trigger ended: it resumes (runs again as the same try), or the
    /// trigger ended it.
    fn trigger_fired(&mut self, fired: TriggerFired) {
        let task_id = fired.key.instance();
        let waiting = self.state(&task_id) == TaskState::Deferred
            && self.instances.get(&task_id).is_some_and(|i| {
                i.tries == fired.key.try_number.0
                    && i.deferral.as_ref().is_some_and(|(_, r)| r.is_none())
            });
        if !waiting {
            return;
        }
        let resume = match fired.result {
            TriggerResult::Event(payload) => self
                .instances
                .get(&task_id)
                .and_then(|i| i.deferral.as_ref())
                .map(|(deferral, _)| deferral.resume_with_event(payload)),
            TriggerResult::Failed(traceback) => Some(Resume::trigger_failed(traceback)),
            TriggerResult::EndTask(state) => {
                if let Some(instance) = self.instances.get_mut(&task_id) {
                    instance.deferral = None;
                }
                match state {
                    EndState::Success => {
                        self.succeed(&task_id, crate::xcom::Pushed::returned(None), &[]);
                    }
                    EndState::Skipped => {
                        self.transition(&task_id, TaskEvent::Skip);
                        self.ended(&task_id);
                    }
                    EndState::Failed => {
                        if let Some(instance) = self.instances.get_mut(&task_id) {
                            instance.failure = Some("its trigger failed it".to_owned());
                        }
                        self.transition(&task_id, TaskEvent::Fail { can_retry: false });
                        self.ended(&task_id);
                    }
                }
                return;
            }
        };
        self.resume(&task_id, resume);
    }

    fn resume(&mut self, task_id: &InstanceId, resume: Option<Resume>) {
        if let Some((_, slot)) = self
            .instances
            .get_mut(task_id)
            .and_then(|i| i.deferral.as_mut())
        {
            *slot = resume;
        }
        self.launch(task_id);
    }

    /// Fires the native triggers and timeouts that are due.
    fn release_triggers(&mut self) {
        let now = Instant::now();
        let due: Vec<Instant> = self.trigger_at.range(..=now).map(|(at, _)| *at).collect();
        for at in due {
            for (task_id, try_number, wake) in self.trigger_at.remove(&at).unwrap_or_default() {
                let key = self.try_key(&task_id, try_number);
                match wake {
                    Wake::Fire(result) => self.trigger_fired(TriggerFired { key, result }),
                    Wake::Timeout => {
                        let waiting = self.state(&task_id) == TaskState::Deferred
                            && self.instances.get(&task_id).is_some_and(|i| {
                                i.tries == try_number
                                    && i.deferral.as_ref().is_some_and(|(_, r)| r.is_none())
                            });
                        if waiting {
                            if let Some(triggerer) = &self.spec.triggerer {
                                triggerer.runner.cancel(&key);
                            }
                            self.resume(&task_id, Some(Resume::timed_out()));
                        }
                    }
                }
            }
        }
    }

    /// Kills every running try and waits for them to report.
    async fn kill_all(&mut self, reason: &str, events: &mut Receiver<TryEvent>) {
        let live: Vec<TryKey> = self
            .instances
            .iter()
            .filter(|(id, _)| self.state(id).holds_slot())
            .map(|(id, i)| self.try_key(id, i.tries))
            .collect();
        for key in &live {
            self.executor.kill(key, reason);
        }
        let mut waiting = live.len();
        while waiting > 0 {
            let Some(event) = events.recv().await else {
                break;
            };
            if let TryEventKind::Finished(_) = &event.kind {
                waiting -= 1;
                let instance = event.key.instance();
                self.transition(&instance, TaskEvent::MarkFailed);
                self.finish_timing(&instance, Some(format!("killed: {reason}")));
            }
        }
        // As in Airflow, a timed-out run's tasks that never ran are skipped. This ends the run
        // from outside the lifecycle (a retry-waiting task could not be skipped from within).
        let unfinished: Vec<InstanceId> = self
            .dag
            .tasks()
            .flat_map(|t| self.states.instances(&t.id))
            .filter(|i| !self.state(i).is_finished())
            .collect();
        for task in unfinished {
            self.set_state(&task, TaskState::Skipped);
        }
    }

    fn report(self, stopped: Option<String>) -> RunReport {
        let states = &self.states;
        let state = if stopped.is_some() {
            DagRunState::Failed
        } else {
            run_state(self.dag, states)
        };
        let tasks = self
            .dag
            .topological_order()
            .map(|t| {
                let ids = states.instances(&t.id);
                let instances: Vec<&Instance> =
                    ids.iter().filter_map(|i| self.instances.get(i)).collect();
                TaskReport {
                    task_id: t.id.clone(),
                    state: states.task_state(&t.id),
                    instances: ids.len(),
                    tries: instances.iter().map(|i| i.tries).sum(),
                    duration: instances.iter().filter_map(|i| i.duration).max(),
                    failure: instances.iter().find_map(|i| i.failure.clone()),
                }
            })
            .collect();
        RunReport {
            state,
            tasks,
            stopped,
        }
    }
}
