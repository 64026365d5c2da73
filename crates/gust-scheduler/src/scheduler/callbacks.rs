//! Which committed moves call for a callback: a task's (Python callbacks for tasks Gust runs
//! natively, as Python tasks run theirs in their worker; notifiers and alert emails for every
//! task) and a DAG's when its run ends. The configured [`CallbackRunner`] runs them after the
//! move is committed: Python's in Python, the notifiers' in gust-notify.

use gust_core::ids::{InstanceId, TaskId};
use gust_core::state::{DagRunState, TaskState};
use gust_executor::TryKey;
use gust_executor::callbacks::{CallbackKind, CallbackRequest, CallbackTask, Calls};

use super::active::{ActiveRun, RunKey};
use super::{After, Batch, Scheduler};

impl Scheduler {
    /// Adds `kind`'s callback of `task_id` after the move just pushed to `batch`, when the task
    /// names one, Gust runs the task natively and a runner is configured.
    pub(super) fn then_task_callback(
        &self,
        batch: &mut Batch,
        run_key: &RunKey,
        instance: &InstanceId,
        try_number: u32,
        kind: CallbackKind,
        reason: Option<String>,
    ) {
        if self.config.callbacks.is_none() {
            return;
        }
        let Some(run) = self.runs.get(run_key) else {
            return;
        };
        let task_id = &instance.task_id;
        let Some(task) = run.dag.task(task_id) else {
            return;
        };
        let calls = Calls::of_task(kind, task);
        if calls.is_empty() {
            return;
        }
        let key = TryKey {
            dag_id: run.dag.id.clone(),
            run_id: run.run_id.clone(),
            task_id: task_id.clone(),
            map_index: instance.map_index,
            try_number: gust_core::ids::TryNumber(try_number),
        };
        let state = run.state(instance).as_str();
        let request = CallbackRequest {
            kind,
            task: Some(CallbackTask {
                task_id: task_id.clone(),
                try_number,
                state,
            }),
            reason,
            log_path: crate::log_path::log_path(&self.config.logs_root, &key),
            calls,
            max_tries: task.settings.retries.saturating_add(1),
            ..run_request(run, kind, "running")
        };
        batch.then(After::Callback(Box::new(request)));
    }

    /// Runs the DAG's callback for the end of `run`, already committed as `state`. As in
    /// Airflow, its context is that of the task instance that decided the run, when there is
    /// one: the failed one that ended last, or the succeeded one that ended last.
    pub(super) async fn dag_callback(&self, run: &ActiveRun, state: DagRunState) {
        let Some(runner) = &self.config.callbacks else {
            return;
        };
        let Some((kind, reason)) = dag_callback_kind(state, run.timed_out) else {
            return;
        };
        let calls = Calls::of_dag(kind, &run.dag);
        if calls.is_empty() {
            return;
        }
        let deciding = if state == DagRunState::Success {
            TaskState::Success
        } else {
            TaskState::Failed
        };
        let mut request = run_request(run, kind, state.as_str());
        request.calls = calls;
        request.reason = Some(reason.to_owned());
        request.log_path = crate::log_path::dag_callbacks_log_path(
            &self.config.logs_root,
            &run.dag.id,
            &run.run_id,
        );
        match self
            .store
            .tries_of_run(&run.run.dag_id, &run.run.run_id)
            .await
        {
            Ok(tries) => {
                request.task = tries
                    .into_iter()
                    .filter(|t| {
                        t.state == deciding
                            && TaskId::new(t.task_id.as_str()).is_ok_and(|id| {
                                run.state(&InstanceId::mapped(id, t.map_index)) == deciding
                            })
                    })
                    .max_by_key(|t| t.end_date)
                    .and_then(|t| {
                        Some(CallbackTask {
                            task_id: TaskId::new(t.task_id).ok()?,
                            try_number: u32::try_from(t.try_number).ok()?,
                            state: deciding.as_str(),
                        })
                    });
            }
            Err(err) => {
                tracing::warn!(dag_id = %run.dag.id, run_id = %run.run_id, "the run's tries could not be read for its callback's context: {err}");
            }
        }
        runner.run(request);
    }
}

/// The DAG callback a run's end calls for, with its reason, as Airflow names them.
#[must_use]
pub(crate) fn dag_callback_kind(
    state: DagRunState,
    timed_out: bool,
) -> Option<(CallbackKind, &'static str)> {
    match state {
        DagRunState::Success => Some((CallbackKind::DagSuccess, "success")),
        DagRunState::Failed if timed_out => Some((CallbackKind::DagFailure, "timed_out")),
        DagRunState::Failed => Some((CallbackKind::DagFailure, "task_failure")),
        DagRunState::Queued | DagRunState::Running => None,
    }
}

/// A request for `run`'s `kind` callback, without a task.
fn run_request(run: &ActiveRun, kind: CallbackKind, run_state: &'static str) -> CallbackRequest {
    CallbackRequest {
        kind,
        dag_id: run.dag.id.clone(),
        dag_file: run.dag.fileloc.clone(),
        run_id: run.run_id.clone(),
        logical_date: Some(run.run.logical_date),
        run: run.facts(),
        run_state,
        task: None,
        reason: None,
        log_path: std::path::PathBuf::new(),
        calls: Calls::default(),
        params: run.dag.settings.params.clone(),
        max_tries: 0,
        lookup: gust_executor::SharedLookup(Some(
            run.xcoms.clone() as std::sync::Arc<dyn gust_template::RuntimeLookup>
        )),
    }
}
