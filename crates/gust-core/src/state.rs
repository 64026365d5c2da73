//! The lifecycle of a task instance and of a DAG run, as Airflow names them, with one pure
//! transition function that accepts every legal move and refuses every other.
//!
//! The scheduler is the only writer of these states: it loads a state, asks [`TaskState::apply`]
//! for the next one, commits it with compare-and-set, and only then acts on it.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A task instance's state (Airflow's names; `NoStatus` is Airflow's `None`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// Created with its run; its upstreams have not let it run yet.
    NoStatus,
    /// Its upstreams allow it to run; waiting for a slot.
    Scheduled,
    /// Handed to a runtime; not started yet.
    Queued,
    /// A try is running.
    Running,
    /// The last try succeeded.
    Success,
    /// The last try failed and no retries are left (or it was marked failed).
    Failed,
    /// The last try failed; another waits for its retry delay.
    UpForRetry,
    /// Its try asked to run again later (a sensor in `reschedule` mode): the same try runs
    /// again once its reschedule date has passed and a slot is free, holding none meanwhile.
    UpForReschedule,
    /// Its try deferred itself to a trigger (a deferrable operator): it holds no slot while the
    /// trigger waits, and the same try runs again (its `next_method`) once the trigger fires.
    Deferred,
    /// Not run: its trigger rule said skip, or the try asked to be skipped.
    Skipped,
    /// Not run because an upstream failed.
    UpstreamFailed,
    /// The task is no longer in the DAG.
    Removed,
}

/// Something that happens to a task instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskEvent {
    /// Its trigger rule is met (from `NoStatus`), or its retry delay has passed (from `UpForRetry`).
    Schedule,
    /// A pool slot was taken and the try handed to a runtime (a new try, or from
    /// `UpForReschedule` the same try again).
    Queue,
    /// The runtime never started the queued try (the scheduler stopped between committing it and
    /// handing it over): it waits for a slot again, without counting as a failed try.
    Requeue,
    /// The runtime started the try.
    Start,
    /// The try ended successfully.
    Succeed,
    /// The try asked to run again later, as the same try (a sensor in `reschedule` mode).
    Reschedule,
    /// The try deferred itself to a trigger.
    Defer,
    /// The try failed (or was lost or timed out); `can_retry` when tries remain.
    Fail {
        /// Whether another try is allowed.
        can_retry: bool,
    },
    /// Skip: its trigger rule said so, or the try exited with a skip code.
    Skip,
    /// An upstream failed, so it will not run.
    UpstreamFail,
    /// The task left the DAG.
    Remove,
    /// A user cleared it to run again.
    Clear,
    /// A user marked it succeeded.
    MarkSuccess,
    /// A user marked it failed.
    MarkFailed,
}

/// A move the lifecycle does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("task instance cannot go from {from} on {event:?}")]
pub struct IllegalTransition {
    /// The state it was in.
    pub from: TaskState,
    /// What was asked.
    pub event: TaskEvent,
}

impl TaskState {
    /// Every state, for exhaustive tests.
    pub const ALL: [TaskState; 12] = [
        Self::NoStatus,
        Self::Scheduled,
        Self::Queued,
        Self::Running,
        Self::Success,
        Self::Failed,
        Self::UpForRetry,
        Self::UpForReschedule,
        Self::Deferred,
        Self::Skipped,
        Self::UpstreamFailed,
        Self::Removed,
    ];

    /// The state's name as Airflow's API and UI show it (`None` for no status).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NoStatus => "none",
            Self::Scheduled => "scheduled",
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Success => "success",
            Self::Failed => "failed",
            Self::UpForRetry => "up_for_retry",
            Self::UpForReschedule => "up_for_reschedule",
            Self::Deferred => "deferred",
            Self::Skipped => "skipped",
            Self::UpstreamFailed => "upstream_failed",
            Self::Removed => "removed",
        }
    }

    /// Whether no more tries will happen unless a user clears it.
    #[must_use]
    pub fn is_finished(self) -> bool {
        match self {
            Self::Success | Self::Failed | Self::Skipped | Self::UpstreamFailed | Self::Removed => {
                true
            }
            Self::NoStatus
            | Self::Scheduled
            | Self::Queued
            | Self::Running
            | Self::UpForRetry
            | Self::UpForReschedule
            | Self::Deferred => false,
        }
    }

    /// Whether a try holds (or is about to hold) a pool slot.
    #[must_use]
    pub fn holds_slot(self) -> bool {
        match self {
            Self::Queued | Self::Running => true,
            Self::NoStatus
            | Self::Scheduled
            | Self::Success
            | Self::Failed
            | Self::UpForRetry
            | Self::UpForReschedule
            | Self::Deferred
            | Self::Skipped
            | Self::UpstreamFailed
            | Self::Removed => false,
        }
    }

    /// The state after `event`, or why `event` cannot happen now.
    ///
    /// Every (state, event) pair is decided here, explicitly: adding a state or an event does
    /// not compile until its moves are.
    pub fn apply(self, event: TaskEvent) -> Result<TaskState, IllegalTransition> {
        use TaskEvent as E;
        use TaskState as S;
        let illegal = Err(IllegalTransition { from: self, event });
        match (self, event) {
            // Users may clear or mark any instance; clearing a running one is the scheduler's
            // cue to kill its try, which it does after committing.
            (_, E::Clear) => Ok(S::NoStatus),
            (_, E::MarkSuccess) => Ok(S::Success),
            (_, E::MarkFailed) => Ok(S::Failed),
            (S::Removed, E::Remove) => illegal,
            (_, E::Remove) => Ok(S::Removed),

            (S::NoStatus, E::Schedule) | (S::UpForRetry, E::Schedule) => Ok(S::Scheduled),
            (S::NoStatus | S::Scheduled, E::UpstreamFail) => Ok(S::UpstreamFailed),
            (S::NoStatus | S::Scheduled | S::Running, E::Skip) => Ok(S::Skipped),
            (
                S::NoStatus,
                E::Queue
                | E::Requeue
                | E::Start
                | E::Succeed
                | E::Reschedule
                | E::Defer
                | E::Fail { .. },
            ) => illegal,

            (S::Scheduled, E::Queue) => Ok(S::Queued),
            (
                S::Scheduled,
                E::Schedule
                | E::Requeue
                | E::Start
                | E::Succeed
                | E::Reschedule
                | E::Defer
                | E::Fail { .. },
            ) => illegal,

            (S::Queued, E::Start) => Ok(S::Running),
            (S::Queued, E::Requeue) => Ok(S::Scheduled),
            // A try that fails before it starts (its pod cannot be created) fails like any try.
            (S::Queued, E::Fail { can_retry: true }) => Ok(S::UpForRetry),
            (S::Queued, E::Fail { can_retry: false }) => Ok(S::Failed),
            (
                S::Queued,
                E::Schedule
                | E::Queue
                | E::Succeed
                | E::Reschedule
                | E::Defer
                | E::Skip
                | E::UpstreamFail,
            ) => illegal,

            (S::Running, E::Succeed) => Ok(S::Success),
            (S::Running, E::Reschedule) => Ok(S::UpForReschedule),
            (S::Running, E::Defer) => Ok(S::Deferred),
            (S::Running, E::Fail { can_retry: true }) => Ok(S::UpForRetry),
            (S::Running, E::Fail { can_retry: false }) => Ok(S::Failed),
            (S::Running, E::Schedule | E::Queue | E::Requeue | E::Start | E::UpstreamFail) => {
                illegal
            }

            (
                S::UpForRetry,
                E::Queue
                | E::Requeue
                | E::Start
                | E::Succeed
                | E::Reschedule
                | E::Defer
                | E::Fail { .. }
                | E::Skip
                | E::UpstreamFail,
            ) => illegal,

            // Its reschedule date passed and a slot is free: the same try is handed over again
            // (it never goes back to `Scheduled`, which would start a new try).
            (S::UpForReschedule, E::Queue) => Ok(S::Queued),
            (
                S::UpForReschedule,
                E::Schedule
                | E::Requeue
                | E::Start
                | E::Succeed
                | E::Reschedule
                | E::Defer
                | E::Fail { .. }
                | E::Skip
                | E::UpstreamFail,
            ) => illegal,

            // Its trigger fired (or timed out, or failed): the same try is handed over again to
            // run its `next_method` once a slot is free. A trigger may also end the task itself
            // (`end_from_trigger`: success, failure or skip) without a worker.
            (S::Deferred, E::Queue) => Ok(S::Queued),
            (S::Deferred, E::Succeed) => Ok(S::Success),
            (S::Deferred, E::Fail { can_retry: true }) => Ok(S::UpForRetry),
            (S::Deferred, E::Fail { can_retry: false }) => Ok(S::Failed),
            (S::Deferred, E::Skip) => Ok(S::Skipped),
            (
                S::Deferred,
                E::Schedule | E::Requeue | E::Start | E::Reschedule | E::Defer | E::UpstreamFail,
            ) => illegal,

            (
                S::Success | S::Failed | S::Skipped | S::UpstreamFailed | S::Removed,
                E::Schedule
                | E::Queue
                | E::Requeue
                | E::Start
                | E::Succeed
                | E::Reschedule
                | E::Defer
                | E::Fail { .. }
                | E::Skip
                | E::UpstreamFail,
            ) => illegal,
        }
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A DAG run's state (Airflow's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DagRunState {
    /// Created, waiting for `max_active_runs` to let it start.
    Queued,
    /// Its tasks are being run.
    Running,
    /// Every leaf succeeded or was skipped.
    Success,
    /// A leaf failed, or the run timed out or deadlocked.
    Failed,
}

impl DagRunState {
    /// The state's name as Airflow shows it.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Success => "success",
            Self::Failed => "failed",
        }
    }
}

impl fmt::Display for DagRunState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use TaskEvent as E;
    use TaskState as S;

    const EVENTS: [TaskEvent; 15] = [
        E::Schedule,
        E::Queue,
        E::Requeue,
        E::Start,
        E::Succeed,
        E::Reschedule,
        E::Defer,
        E::Fail { can_retry: true },
        E::Fail { can_retry: false },
        E::Skip,
        E::UpstreamFail,
        E::Remove,
        E::Clear,
        E::MarkSuccess,
        E::MarkFailed,
    ];

    /// The whole lifecycle as a table: one row per state, one column per event in `EVENTS`
    /// order; `-` marks a move that must be refused.
    const TABLE: &str = "
        state              schedule   queue   requeue    start    succeed  resched            defer     fail_r        fail    skip     upstream_f       remove   clear  mark_s   mark_f
        none               scheduled  -       -          -        -        -                  -         -             -       skipped  upstream_failed  removed  none   success  failed
        scheduled          -          queued  -          -        -        -                  -         -             -       skipped  upstream_failed  removed  none   success  failed
        queued             -          -       scheduled  running  -        -                  -         up_for_retry  failed  -        -                removed  none   success  failed
        running            -          -       -          -        success  up_for_reschedule  deferred  up_for_retry  failed  skipped  -                removed  none   success  failed
        success            -          -       -          -        -        -                  -         -             -       -        -                removed  none   success  failed
        failed             -          -       -          -        -        -                  -         -             -       -        -                removed  none   success  failed
        up_for_retry       scheduled  -       -          -        -        -                  -         -             -       -        -                removed  none   success  failed
        up_for_reschedule  -          queued  -          -        -        -                  -         -             -       -        -                removed  none   success  failed
        deferred           -          queued  -          -        success  -                  -         up_for_retry  failed  skipped  -                removed  none   success  failed
        skipped            -          -       -          -        -        -                  -         -             -       -        -                removed  none   success  failed
        upstream_failed    -          -       -          -        -        -                  -         -             -       -        -                removed  none   success  failed
        removed            -          -       -          -        -        -                  -         -             -       -        -                -        none   success  failed
    ";

    fn by_name(name: &str) -> TaskState {
        TaskState::ALL
            .into_iter()
            .find(|s| s.as_str() == name)
            .unwrap_or_else(|| panic!("no state {name}"))
    }

    #[test]
    fn every_state_and_event_pair_follows_the_lifecycle_table() {
        let rows: Vec<Vec<&str>> = TABLE
            .lines()
            .map(|l| l.split_whitespace().collect())
            .filter(|r: &Vec<&str>| !r.is_empty())
            .collect();
        assert_eq!(rows.len(), TaskState::ALL.len() + 1, "one row per state");
        for row in &rows[1..] {
            let from = by_name(row[0]);
            assert_eq!(row.len(), EVENTS.len() + 1, "row {}", row[0]);
            for (event, expected) in EVENTS.iter().zip(&row[1..]) {
                let got = from.apply(*event);
                match *expected {
                    "-" => assert!(
                        got.is_err(),
                        "{from} on {event:?} should be refused, got {got:?}"
                    ),
                    name => assert_eq!(got, Ok(by_name(name)), "{from} on {event:?}"),
                }
            }
        }
    }

    #[test]
    fn finished_states_are_exactly_those_no_try_follows() {
        let finished: Vec<_> = TaskState::ALL
            .into_iter()
            .filter(|s| s.is_finished())
            .collect();
        assert_eq!(
            finished,
            [
                S::Success,
                S::Failed,
                S::Skipped,
                S::UpstreamFailed,
                S::Removed
            ]
        );
    }

    #[test]
    fn refusals_name_the_state_and_event() {
        let err = S::Success.apply(E::Start).unwrap_err();
        assert_eq!(
            err.to_string(),
            "task instance cannot go from success on Start"
        );
    }

    #[test]
    fn states_serialize_with_airflow_names() {
        assert_eq!(
            serde_json::to_string(&S::UpForRetry).unwrap(),
            "\"up_for_retry\""
        );
        assert_eq!(
            serde_json::to_string(&DagRunState::Running).unwrap(),
            "\"running\""
        );
    }
}
