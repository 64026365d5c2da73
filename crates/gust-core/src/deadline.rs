//! Deadline alerts (Airflow 3.1's `deadline` DAG argument): a reference point of a run, an
//! interval after it, and the notifiers sent when the run has not finished by then. Pure data
//! and the pure function that dates a run's deadline; the scheduler stores, times and fires
//! them, gust-notify sends them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::notify::Notifier;

/// What a deadline counts from (Airflow's `DeadlineReference`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeadlineReference {
    /// When the run was queued (`DeadlineReference.DAGRUN_QUEUED_AT`).
    DagRunQueuedAt,
    /// The run's logical date (`DeadlineReference.DAGRUN_LOGICAL_DATE`).
    DagRunLogicalDate,
    /// A fixed time, whatever the run (`DeadlineReference.FIXED_DATETIME(dt)`).
    FixedDatetime(DateTime<Utc>),
    /// When the run is created plus the average duration of the DAG's last `max_runs`
    /// finished runs; no deadline while fewer than `min_runs` have finished
    /// (`DeadlineReference.AVERAGE_RUNTIME(max_runs, min_runs)`).
    AverageRuntime {
        /// How many recent runs the average is over (Airflow's default 10).
        max_runs: u32,
        /// How many must have finished for a deadline to be set (default `max_runs`).
        min_runs: u32,
    },
}

impl DeadlineReference {
    /// Airflow's name for it (`DagRunQueuedAtDeadline`...), as its API's `reference_type`.
    #[must_use]
    pub fn reference_type(&self) -> &'static str {
        match self {
            Self::DagRunQueuedAt => "DagRunQueuedAtDeadline",
            Self::DagRunLogicalDate => "DagRunLogicalDateDeadline",
            Self::FixedDatetime(_) => "FixedDatetimeDeadline",
            Self::AverageRuntime { .. } => "AverageRuntimeDeadline",
        }
    }
}

/// One deadline alert of a DAG.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadlineAlert {
    /// Its name (Airflow's `name`), shown with its deadlines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// What it counts from.
    pub reference: DeadlineReference,
    /// How long after the reference the run must have finished (never negative in Gust).
    pub interval: std::time::Duration,
    /// What is sent when the deadline passes first.
    pub notifiers: Vec<Notifier>,
}

/// What dating a run's deadline reads of the run and its DAG's history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunTimes {
    /// When the run was queued.
    pub queued_at: DateTime<Utc>,
    /// Its logical date.
    pub logical_date: DateTime<Utc>,
    /// Now (when the deadline is set).
    pub now: DateTime<Utc>,
}

impl DeadlineAlert {
    /// When a run must have finished by, given its times and, for an average-runtime
    /// reference, the durations of the DAG's last finished runs (newest first); `None` when
    /// too few runs have finished to average.
    #[must_use]
    pub fn deadline_for(
        &self,
        run: &RunTimes,
        recent_durations: &[chrono::Duration],
    ) -> Option<DateTime<Utc>> {
        let reference = match self.reference {
            DeadlineReference::DagRunQueuedAt => run.queued_at,
            DeadlineReference::DagRunLogicalDate => run.logical_date,
            DeadlineReference::FixedDatetime(at) => at,
            DeadlineReference::AverageRuntime { max_runs, min_runs } => {
                let take = usize::try_from(max_runs).unwrap_or(usize::MAX);
                let used: Vec<chrono::Duration> =
                    recent_durations.iter().take(take).copied().collect();
                let needed = usize::try_from(min_runs.max(1)).unwrap_or(usize::MAX);
                if used.len() < needed {
                    return None;
                }
                let total: i64 = used.iter().map(chrono::Duration::num_milliseconds).sum();
                let count = i64::try_from(used.len()).unwrap_or(i64::MAX);
                run.now + chrono::Duration::milliseconds(total / count)
            }
        };
        let interval = chrono::Duration::from_std(self.interval).ok()?;
        reference.checked_add_signed(interval)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 3, 5, h, m, 0)
            .single()
            .expect("a time")
    }

    fn alert(reference: DeadlineReference, minutes: u64) -> DeadlineAlert {
        DeadlineAlert {
            name: None,
            reference,
            interval: std::time::Duration::from_secs(minutes * 60),
            notifiers: Vec::new(),
        }
    }

    /// Queued at 01:00, dated 00:00, seen at 02:00.
    fn run() -> RunTimes {
        RunTimes {
            queued_at: at(1, 0),
            logical_date: at(0, 0),
            now: at(2, 0),
        }
    }

    #[test]
    fn each_reference_dates_the_deadline_from_its_own_point() {
        let queued = alert(DeadlineReference::DagRunQueuedAt, 15);
        assert_eq!(queued.deadline_for(&run(), &[]), Some(at(1, 15)));
        let logical = alert(DeadlineReference::DagRunLogicalDate, 90);
        assert_eq!(logical.deadline_for(&run(), &[]), Some(at(1, 30)));
        let fixed = alert(DeadlineReference::FixedDatetime(at(6, 0)), 0);
        assert_eq!(fixed.deadline_for(&run(), &[]), Some(at(6, 0)));
    }

    #[test]
    fn an_average_runtime_needs_its_minimum_of_finished_runs() {
        let average = alert(
            DeadlineReference::AverageRuntime {
                max_runs: 2,
                min_runs: 2,
            },
            5,
        );
        let ten = chrono::Duration::minutes(10);
        let twenty = chrono::Duration::minutes(20);
        assert_eq!(average.deadline_for(&run(), &[ten]), None);
        // The newest two only: (10 + 20) / 2 = 15 minutes from now, plus 5.
        assert_eq!(
            average.deadline_for(&run(), &[ten, twenty, chrono::Duration::hours(9)]),
            Some(at(2, 20))
        );
    }
}
