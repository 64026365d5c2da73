//! Deferral, as Airflow 3 does it: a try of a deferrable operator hands its wait to a trigger
//! (a [`Deferral`]), gives its worker back, and runs again as the same try, in the method the
//! deferral names ([`Resume`]), once the trigger fires.
//!
//! The scheduler records the deferral and runs its trigger: Airflow's temporal triggers as its
//! own timers, any other class through a [`TriggerRunner`] (the long-lived Python triggerer of
//! the local runtime), whose [`TriggerFired`] reports arrive on a channel, as tries' events do.
//! Kwargs stay in the form Airflow's serde gave them (`airflow.sdk.serde.serialize`): only
//! Python reads them.

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::TryKey;

/// The most bytes (of JSON) a deferral's trigger kwargs and next kwargs may take together:
/// they say what to wait for and where to resume, not data.
pub const MAX_DEFERRAL_BYTES: usize = 256 * 1024;

/// Airflow's `next_method` for a try resumed only to fail (its trigger timed out or failed).
pub const FAIL_METHOD: &str = "__fail__";

/// Airflow's `TriggerFailureReason.TRIGGER_TIMEOUT`, the error a timed-out trigger resumes with.
pub const TRIGGER_TIMEOUT: &str = "Trigger timeout";

/// Airflow's `TriggerFailureReason.TRIGGER_FAILURE`, the error a failed trigger resumes with.
pub const TRIGGER_FAILURE: &str = "Trigger failure";

/// What a deferring try reported (Airflow's `TIDeferredStatePayload`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deferral {
    /// The trigger's class (`module.Class`).
    pub classpath: String,
    /// The trigger's keyword arguments, serialized by Airflow's serde.
    pub trigger_kwargs: serde_json::Value,
    /// How long the trigger may wait before the try resumes failing (`trigger_timeout`).
    pub trigger_timeout: Option<Duration>,
    /// The operator's method the try resumes in.
    pub next_method: String,
    /// Its keyword arguments, serialized by Airflow's serde (a JSON object).
    pub next_kwargs: serde_json::Value,
}

/// Why a deferral is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeferralError {
    /// Its kwargs are over [`MAX_DEFERRAL_BYTES`].
    #[error(
        "the deferral to {classpath} carries {bytes} bytes of kwargs; the limit is {MAX_DEFERRAL_BYTES}: pass references, not data, to triggers"
    )]
    TooLarge {
        /// The trigger class.
        classpath: String,
        /// How many bytes.
        bytes: usize,
    },
    /// `next_kwargs` is not a JSON object.
    #[error("next_kwargs of the deferral to {classpath} must be an object")]
    NextKwargs {
        /// The trigger class.
        classpath: String,
    },
}

impl Deferral {
    /// Checks the bounds a deferral must keep.
    pub fn check(&self) -> Result<(), DeferralError> {
        if !self.next_kwargs.is_object() {
            return Err(DeferralError::NextKwargs {
                classpath: self.classpath.clone(),
            });
        }
        let bytes = self.trigger_kwargs.to_string().len() + self.next_kwargs.to_string().len();
        if bytes > MAX_DEFERRAL_BYTES {
            return Err(DeferralError::TooLarge {
                classpath: self.classpath.clone(),
                bytes,
            });
        }
        Ok(())
    }

    /// The try's resumption once its trigger fired with `payload` (serde's form): the next
    /// kwargs with the event added, as Airflow's `handle_event_submit` adds it.
    #[must_use]
    pub fn resume_with_event(&self, payload: serde_json::Value) -> Resume {
        let mut kwargs = self.next_kwargs.as_object().cloned().unwrap_or_default();
        kwargs.insert("event".to_owned(), payload);
        Resume {
            next_method: self.next_method.clone(),
            next_kwargs: serde_json::Value::Object(kwargs),
        }
    }
}

/// How a resumed try runs: the run context the Execution API answers carries these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resume {
    /// The method to call instead of `execute` (`__fail__`: fail at once).
    pub next_method: String,
    /// Its keyword arguments, serialized by Airflow's serde.
    pub next_kwargs: serde_json::Value,
}

impl Resume {
    /// The resumption of a try whose trigger timed out (Airflow's `check_trigger_timeouts`):
    /// the task raises `TaskDeferralTimeout`.
    #[must_use]
    pub fn timed_out() -> Self {
        Self {
            next_method: FAIL_METHOD.to_owned(),
            next_kwargs: serde_json::json!({ "error": TRIGGER_TIMEOUT }),
        }
    }

    /// The resumption of a try whose trigger failed (Airflow's `Trigger.submit_failure`): the
    /// task logs the trigger's traceback and raises `TaskDeferralError`.
    #[must_use]
    pub fn trigger_failed(traceback: Vec<String>) -> Self {
        Self {
            next_method: FAIL_METHOD.to_owned(),
            next_kwargs: serde_json::json!({ "error": TRIGGER_FAILURE, "traceback": traceback }),
        }
    }
}

/// A trigger to run for a deferred try.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TriggerSpec {
    /// The deferred try.
    pub key: TryKey,
    /// The trigger's class (`module.Class`).
    pub classpath: String,
    /// Its keyword arguments, serialized by Airflow's serde.
    pub kwargs: serde_json::Value,
    /// The DAG file's folder: a trigger class defined in a module beside the DAG file imports
    /// from there, as the task's own code does.
    pub dag_folder: PathBuf,
}

impl TriggerSpec {
    /// The trigger `classpath` with `kwargs` for the deferred try `key` of a task of the DAG
    /// file `dag_file`.
    #[must_use]
    pub fn new(
        key: TryKey,
        classpath: &str,
        kwargs: &serde_json::Value,
        dag_file: &std::path::Path,
    ) -> Self {
        Self {
            key,
            classpath: classpath.to_owned(),
            kwargs: kwargs.clone(),
            dag_folder: dag_file
                .parent()
                .map(std::path::Path::to_path_buf)
                .unwrap_or_default(),
        }
    }
}

/// How a trigger ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TriggerResult {
    /// It yielded an event: its payload, serialized by Airflow's serde.
    Event(serde_json::Value),
    /// It ended the task itself (a `TaskSuccessEvent`, `TaskFailedEvent` or
    /// `TaskSkippedEvent`, for `end_from_trigger`).
    EndTask(EndState),
    /// It raised, or could not be built: its traceback's lines.
    Failed(Vec<String>),
}

/// The state a trigger ends its task in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndState {
    /// `success`.
    Success,
    /// `failed`.
    Failed,
    /// `skipped`.
    Skipped,
}

/// A trigger's end, reported by a [`TriggerRunner`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TriggerFired {
    /// The deferred try.
    pub key: TryKey,
    /// How the trigger ended.
    pub result: TriggerResult,
}

/// The capacity of a trigger runner's report channel.
pub const TRIGGER_CHANNEL_CAPACITY: usize = 4096;

/// A bounded channel for trigger reports.
#[must_use]
pub fn trigger_channel() -> (
    tokio::sync::mpsc::Sender<TriggerFired>,
    tokio::sync::mpsc::Receiver<TriggerFired>,
) {
    tokio::sync::mpsc::channel(TRIGGER_CHANNEL_CAPACITY)
}

/// Runs triggers that Gust cannot run natively; reports each one's end (once) on the channel
/// it was built with.
pub trait TriggerRunner: Send + Sync + std::fmt::Debug {
    /// Starts `spec`'s trigger. Running one already running for the same try does nothing.
    fn run(&self, spec: TriggerSpec);
    /// Stops the trigger of `key` (its task was cleared or marked); nothing is reported.
    fn cancel(&self, key: &TryKey);
}

/// When a deferral's trigger times out, if it has a timeout.
#[must_use]
pub fn timeout_at(deferred_at: DateTime<Utc>, timeout: Option<Duration>) -> Option<DateTime<Utc>> {
    let timeout = chrono::Duration::from_std(timeout?).ok()?;
    deferred_at.checked_add_signed(timeout)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deferral(next_kwargs: serde_json::Value) -> Deferral {
        Deferral {
            classpath: "a.B".to_owned(),
            trigger_kwargs: serde_json::json!({"x": 1}),
            trigger_timeout: None,
            next_method: "execute_complete".to_owned(),
            next_kwargs,
        }
    }

    #[test]
    fn the_event_joins_the_next_kwargs_as_airflow_adds_it() {
        let resume = deferral(serde_json::json!({"a": 1})).resume_with_event("moment".into());
        assert_eq!(resume.next_method, "execute_complete");
        assert_eq!(
            resume.next_kwargs,
            serde_json::json!({"a": 1, "event": "moment"})
        );
        assert_eq!(
            Resume::timed_out().next_kwargs,
            serde_json::json!({"error": "Trigger timeout"})
        );
    }

    #[test]
    fn oversized_or_malformed_deferrals_are_refused_naming_the_trigger() {
        assert!(deferral(serde_json::json!({})).check().is_ok());
        let err = deferral(serde_json::json!([])).check().unwrap_err();
        assert!(err.to_string().contains("a.B"), "{err}");
        let big = serde_json::json!({"blob": "x".repeat(MAX_DEFERRAL_BYTES)});
        let err = deferral(big).check().unwrap_err();
        assert!(matches!(err, DeferralError::TooLarge { .. }), "{err}");
    }
}
