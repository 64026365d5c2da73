//! The tries that run through Airflow's Task SDK, as the Execution API sees them: each one
//! admitted with an id (the SDK's task instance id) and a token scoped to it, what its worker
//! has said so far (started, heartbeats, XComs pushed, rendered fields, the state it reported),
//! and what it may read (its run's XComs, variables, connections).
//!
//! The runtime that starts a Python try admits it here, hands the id and token to the worker,
//! and once the worker's process has ended reads the state the worker reported
//! ([`ExecutionBroker::finish`]): the worker reports, the runtime turns the report into a
//! [`crate::TryOutcome`], and the scheduler alone moves task state, as for any other try. The
//! HTTP side (gust-server's `execution` module) only reads and records through this broker.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use chrono::{DateTime, Utc};
use gust_template::RuntimeLookup;
use uuid::Uuid;

use crate::{LaunchSpec, TryKey};

/// Issues and checks the per-try tokens workers present (implemented where the signing key
/// lives, gust-server).
pub trait TryTokens: Send + Sync {
    /// A token for try `ti_id`, valid from `now` for a short while.
    fn issue(&self, ti_id: Uuid, now: DateTime<Utc>) -> String;
    /// The try a token was issued for, and when it expires, if it is valid at `now`.
    fn verify(&self, token: &str, now: DateTime<Utc>) -> Option<TokenGrant>;
}

/// What a valid token grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenGrant {
    /// The try it is scoped to.
    pub ti_id: Uuid,
    /// When it stops being valid.
    pub expires_at: DateTime<Utc>,
}

/// A state a worker reports for its try (`PATCH /task-instances/{id}/state`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reported {
    /// It succeeded.
    Success,
    /// It failed and asks not to be retried.
    Failed,
    /// It failed and may be retried.
    UpForRetry {
        /// Why, as the worker said.
        reason: Option<String>,
    },
    /// It skipped itself (`AirflowSkipException`).
    Skipped,
    /// It asked to run again later, as the same try (a sensor in reschedule mode).
    Reschedule {
        /// When.
        at: DateTime<Utc>,
    },
    /// It deferred itself to a trigger (a deferrable operator).
    Deferred(Box<crate::deferral::Deferral>),
    /// It reported itself removed or upstream-failed.
    Removed,
}

/// A worker's process as it said when it started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Runner {
    /// Its host.
    pub hostname: String,
    /// Its process id.
    pub pid: i64,
}

/// What a try's worker has said so far.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    /// It started (`PATCH .../run`).
    pub runner: Option<Runner>,
    /// When it started (its `run` call); it builds the DAG after that.
    pub started_at: Option<DateTime<Utc>>,
    /// When its rendered fields came, which the task runner sends right before `execute`,
    /// where its own `execution_timeout` starts.
    pub executing_since: Option<DateTime<Utc>>,
    /// Its last heartbeat.
    pub last_heartbeat: Option<DateTime<Utc>>,
    /// The XComs it pushed, by key, values masked.
    pub xcoms: HashMap<String, serde_json::Value>,
    /// Its rendered template fields, masked.
    pub rendered_fields: Option<serde_json::Map<String, serde_json::Value>>,
    /// The downstream tasks it asked to skip (branching).
    pub skip_downstream: Vec<String>,
    /// The asset events it reported with its success, with their extras.
    pub outlet_events: Vec<crate::OutletEvent>,
    /// The state it reported last.
    pub reported: Option<Reported>,
}

/// When a try's worker started and its task began executing, as far as known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StartTimes {
    /// Its `run` call.
    pub started_at: Option<DateTime<Utc>>,
    /// Its rendered fields, sent right before `execute`.
    pub executing_since: Option<DateTime<Utc>>,
}

/// What a try's worker has said of its liveness, for the zombie watch of a worker pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerHeard {
    /// Its last heartbeat (its `run` call counts as one); `None` while it has not called.
    pub last_heartbeat: Option<DateTime<Utc>>,
    /// It has reported how its task ended: it is only finishing up, no longer a task to watch.
    pub reported: bool,
}

/// One admitted try.
pub struct LiveTry {
    /// Its id, the Task SDK's task instance id.
    pub ti_id: Uuid,
    /// Which try.
    pub key: TryKey,
    /// Its run, as the worker is told.
    pub run: crate::RunFacts,
    /// Airflow's `max_tries`: the task's retries.
    pub max_tries: u32,
    /// What it may read: its run's XComs, variables, connections.
    pub lookup: Arc<dyn RuntimeLookup>,
    /// When it was admitted (its worker has been starting since).
    pub admitted_at: DateTime<Utc>,
    /// Its reschedules before this run of it.
    pub reschedules: crate::Reschedules,
    /// Set when it resumes after a deferral.
    pub resume: Option<crate::deferral::Resume>,
    progress: Mutex<Progress>,
}

impl fmt::Debug for LiveTry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LiveTry")
            .field("ti_id", &self.ti_id)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl LiveTry {
    /// What its worker has said so far, to read or record.
    pub fn progress(&self) -> MutexGuard<'_, Progress> {
        // Each change is one assignment: a poisoned lock still holds a whole value.
        self.progress.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the try should be retried if it fails now, as Airflow decides it (`max_tries`
    /// is the task's retries; the first try is 1).
    #[must_use]
    pub fn should_retry(&self) -> bool {
        self.max_tries != 0 && self.key.try_number.0 <= self.max_tries
    }
}

/// A try admitted to the Execution API: hand `ti_id` and `token` to its worker.
pub struct Admitted {
    /// The try's id.
    pub ti_id: Uuid,
    /// Its token (a secret: never logged).
    pub token: String,
}

impl fmt::Debug for Admitted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Admitted")
            .field("ti_id", &self.ti_id)
            .finish_non_exhaustive()
    }
}

/// Why an Execution API request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// No valid token (missing, expired, forged).
    #[error("invalid or expired task token")]
    BadToken,
    /// The token's try is not running here (it ended, or another process runs it).
    #[error("task instance {0} is not running")]
    NotRunning(Uuid),
    /// The token is another try's.
    #[error("the token is not scoped to task instance {0}")]
    OtherTry(Uuid),
}

/// The Python tries running in this process, by id.
pub struct ExecutionBroker {
    tokens: Arc<dyn TryTokens>,
    tries: Mutex<HashMap<Uuid, Arc<LiveTry>>>,
    /// Variables tasks wrote in this process, over what the lookups hold (`None`: deleted).
    variables: Mutex<HashMap<String, Option<String>>>,
}

impl fmt::Debug for ExecutionBroker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExecutionBroker").finish_non_exhaustive()
    }
}

impl ExecutionBroker {
    /// A broker whose tokens `tokens` issues and checks.
    #[must_use]
    pub fn new(tokens: Arc<dyn TryTokens>) -> Self {
        Self {
            tokens,
            tries: Mutex::default(),
            variables: Mutex::default(),
        }
    }

    fn tries(&self) -> MutexGuard<'_, HashMap<Uuid, Arc<LiveTry>>> {
        self.tries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Admits `spec`'s try: from now until [`ExecutionBroker::finish`], a worker holding the
    /// returned token may act for it. Its lookup is the one the scheduler gave the try (none:
    /// it reads nothing).
    pub fn admit(&self, spec: &LaunchSpec, now: DateTime<Utc>) -> Admitted {
        let ti_id = Uuid::new_v4();
        let lookup = spec
            .context
            .lookup
            .0
            .clone()
            .unwrap_or_else(|| Arc::new(gust_template::NoLookup));
        let live = LiveTry {
            ti_id,
            key: spec.key.clone(),
            run: spec.context.run.clone(),
            max_tries: spec.context.retries,
            lookup,
            admitted_at: now,
            reschedules: spec.context.reschedules,
            resume: spec.context.resume.clone(),
            progress: Mutex::default(),
        };
        self.tries().insert(ti_id, Arc::new(live));
        Admitted {
            ti_id,
            token: self.tokens.issue(ti_id, now),
        }
    }

    /// Ends try `ti_id`: its token stops working, and what its worker said is returned.
    pub fn finish(&self, ti_id: Uuid) -> Option<Progress> {
        let live = self.tries().remove(&ti_id)?;
        let progress = live.progress().clone();
        Some(progress)
    }

    /// When try `ti_id`'s worker was last heard of: its last heartbeat, else its start (its
    /// `run` call), else its admission (the worker is starting); `None` once the try has ended.
    #[must_use]
    pub fn last_heard(&self, ti_id: Uuid) -> Option<DateTime<Utc>> {
        let live = self.tries().get(&ti_id).cloned()?;
        let progress = live.progress();
        Some(
            [progress.last_heartbeat, progress.started_at]
                .into_iter()
                .flatten()
                .fold(live.admitted_at, DateTime::max),
        )
    }

    /// What try `ti_id`'s worker has said of its liveness; `None` once the try has ended. Unlike
    /// [`ExecutionBroker::last_heard`], admission does not count: a worker pod is admitted
    /// before it is even scheduled.
    #[must_use]
    pub fn worker_heard(&self, ti_id: Uuid) -> Option<WorkerHeard> {
        let live = self.tries().get(&ti_id).cloned()?;
        let progress = live.progress();
        Some(WorkerHeard {
            last_heartbeat: progress.last_heartbeat,
            reported: progress.reported.is_some(),
        })
    }

    /// When try `ti_id`'s worker started (its `run` call) and when its task started executing
    /// (its rendered fields came), as far as known; `None` once the try has ended or its task
    /// has reported how it ended (its worker is only finishing up).
    #[must_use]
    pub fn start_times(&self, ti_id: Uuid) -> Option<StartTimes> {
        let live = self.tries().get(&ti_id).cloned()?;
        let progress = live.progress();
        if progress.reported.is_some() {
            return None;
        }
        Some(StartTimes {
            started_at: progress.started_at,
            executing_since: progress.executing_since,
        })
    }

    /// The live try `token` was issued for, with the token's grant.
    pub fn authorize(
        &self,
        token: &str,
        now: DateTime<Utc>,
    ) -> Result<(Arc<LiveTry>, TokenGrant), Refused> {
        let grant = self.tokens.verify(token, now).ok_or(Refused::BadToken)?;
        let live = self
            .tries()
            .get(&grant.ti_id)
            .cloned()
            .ok_or(Refused::NotRunning(grant.ti_id))?;
        Ok((live, grant))
    }

    /// A fresh token for `ti_id` (the worker's is about to expire).
    #[must_use]
    pub fn reissue(&self, ti_id: Uuid, now: DateTime<Utc>) -> String {
        self.tokens.issue(ti_id, now)
    }

    /// Variable `key` as `live` sees it: written by a task of this process, else its lookup's.
    #[must_use]
    pub fn variable(&self, live: &LiveTry, key: &str) -> Option<String> {
        let written = self
            .variables
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
            .cloned();
        match written {
            Some(value) => value,
            None => live.lookup.variable(key),
        }
    }

    /// Records a variable a task set (`Some`) or deleted (`None`), for the tasks of this
    /// process that read it next.
    pub fn write_variable(&self, key: &str, value: Option<String>) {
        self.variables
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key.to_owned(), value);
    }
}
