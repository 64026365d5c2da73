//! Callbacks of tasks Gust runs natively (bash, pods, processing steps...) and of DAGs, which
//! Airflow runs in Python: its DAG processor runs them with a context it builds from the run
//! and the task instance. Gust does the same in the `[python] interpreter` environment, once the
//! move that calls for one is committed (see the scheduler).
//!
//! Python tasks run their own Python callbacks in their worker, as Airflow's task runner does:
//! none of theirs come here. The notifiers Gust sends itself (Airflow's notifier classes named
//! in callbacks, and `email_on_failure`/`email_on_retry`) come here for every task, each
//! request saying what it calls for ([`Calls`]); every [`CallbackRunner`] takes its own part.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use gust_core::ids::{DagId, RunId, TaskId};

use gust_core::notify::Notifier;

use crate::{RunFacts, SharedLookup};

/// Which callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallbackKind {
    /// A task's `on_execute_callback`: its try started.
    TaskExecute,
    /// A task's `on_success_callback`.
    TaskSuccess,
    /// A task's `on_failure_callback`: its try failed for good.
    TaskFailure,
    /// A task's `on_retry_callback`: its try failed, another follows.
    TaskRetry,
    /// A task's `on_skipped_callback`: its try skipped itself.
    TaskSkipped,
    /// A DAG's `on_success_callback`: its run succeeded.
    DagSuccess,
    /// A DAG's `on_failure_callback`: its run failed.
    DagFailure,
    /// A DAG's deadline alert (`deadline`): its run had not finished by the deadline.
    DeadlineMissed,
}

impl CallbackKind {
    /// Whether a task that names `task` callbacks, in a DAG that names `dag` ones, has this one.
    #[must_use]
    pub fn is_named(
        self,
        task: &gust_core::task::TaskCallbacks,
        dag: &gust_core::dag::DagCallbacks,
    ) -> bool {
        match self {
            Self::TaskExecute => task.on_execute,
            Self::TaskSuccess => task.on_success,
            Self::TaskFailure => task.on_failure,
            Self::TaskRetry => task.on_retry,
            Self::TaskSkipped => task.on_skipped,
            Self::DagSuccess => dag.on_success,
            Self::DagFailure => dag.on_failure,
            // Only notifiers Gust sends: a deadline names no Python callback.
            Self::DeadlineMissed => false,
        }
    }

    /// The callback's event, as the attribute `on_<event>_callback` names it.
    #[must_use]
    pub fn event(self) -> &'static str {
        match self {
            Self::TaskExecute => "execute",
            Self::TaskSuccess | Self::DagSuccess => "success",
            Self::TaskFailure | Self::DagFailure => "failure",
            Self::TaskRetry => "retry",
            Self::TaskSkipped => "skipped",
            Self::DeadlineMissed => "deadline",
        }
    }

    /// Whether it is about a run rather than a task.
    #[must_use]
    pub fn of_dag(self) -> bool {
        matches!(
            self,
            Self::DagSuccess | Self::DagFailure | Self::DeadlineMissed
        )
    }
}

/// The task instance a task callback is about.
#[derive(Debug, Clone, PartialEq)]
pub struct CallbackTask {
    /// The task.
    pub task_id: TaskId,
    /// Its try.
    pub try_number: u32,
    /// Its state after the move (Airflow's name).
    pub state: &'static str,
}

/// What one event of a task or a run calls for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Calls {
    /// A Python callback (run in the `[python] interpreter` environment).
    pub python: bool,
    /// The notifiers Gust sends.
    pub notifiers: Vec<Notifier>,
    /// Who gets Airflow's alert email (`email` with `email_on_failure` or `email_on_retry`).
    pub email: Vec<String>,
}

impl Calls {
    /// What `kind` calls for on `task`: its Python callback unless the Task SDK runs the task
    /// (its worker runs them), its notifiers, and the alert email of a failure or a retry.
    #[must_use]
    pub fn of_task(kind: CallbackKind, task: &gust_core::task::Task) -> Self {
        let settings = &task.settings;
        let email = match kind {
            CallbackKind::TaskFailure if settings.email_on_failure => settings.email.clone(),
            CallbackKind::TaskRetry if settings.email_on_retry => settings.email.clone(),
            _ => Vec::new(),
        };
        Self {
            python: kind.is_named(&settings.callbacks, &Default::default())
                && !gust_operators::python::runs_in_task_sdk(&task.operator),
            notifiers: settings.notifiers.of_event(kind.event()).to_vec(),
            email,
        }
    }

    /// What `kind` calls for on `dag`'s run.
    #[must_use]
    pub fn of_dag(kind: CallbackKind, dag: &gust_core::dag::Dag) -> Self {
        Self {
            python: kind.is_named(&Default::default(), &dag.settings.callbacks),
            notifiers: dag.settings.notifiers.of_event(kind.event()).to_vec(),
            email: Vec::new(),
        }
    }

    /// Whether it calls for nothing.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        !self.python && self.notifiers.is_empty() && self.email.is_empty()
    }
}

/// One callback to run.
#[derive(Debug, Clone, PartialEq)]
pub struct CallbackRequest {
    /// Which.
    pub kind: CallbackKind,
    /// The DAG.
    pub dag_id: DagId,
    /// Its file, which dag-factory builds where the callback runs.
    pub dag_file: PathBuf,
    /// The run.
    pub run_id: RunId,
    /// The run's logical date.
    pub logical_date: Option<DateTime<Utc>>,
    /// The run, as Airflow's context tells it.
    pub run: RunFacts,
    /// The run's state (Airflow's name).
    pub run_state: &'static str,
    /// The task instance: the one a task callback is about, or the one that decided the run a
    /// DAG callback is about (its context is then that task instance's, as in Airflow).
    pub task: Option<CallbackTask>,
    /// Why: a task's failure (its context's `exception`), or a DAG callback's reason
    /// (`success`, `task_failure`, `timed_out`).
    pub reason: Option<String>,
    /// Where its output goes: the try's log for a task callback.
    pub log_path: PathBuf,
    /// What the event calls for.
    pub calls: Calls,
    /// The DAG's params (templates' `params`, the run's conf over them).
    pub params: serde_json::Map<String, serde_json::Value>,
    /// How many tries the task may have in all (its retries + 1), for the alert email.
    pub max_tries: u32,
    /// Variables and connections, for templates and the notifiers' connections.
    pub lookup: SharedLookup,
}

/// Runs callbacks, each on its own, without holding up the caller.
pub trait CallbackRunner: Send + Sync + std::fmt::Debug {
    /// Starts `request`'s callback; its output and failure go to its log.
    fn run(&self, request: CallbackRequest);
}
