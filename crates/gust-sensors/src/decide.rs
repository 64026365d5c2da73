//! What a poke means for its try: a pure function of the poke's answer, the sensor's settings
//! and the time, as Airflow's `BaseSensorOperator.execute` decides in `reschedule` mode.

use std::time::Duration;

use chrono::{DateTime, Utc};
use gust_executor::{FailureReason, TryOutcome};
use gust_operators::sensors::SensorSettings;
use sha1::{Digest, Sha1};

/// What one poke found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Poke {
    /// The condition is met.
    Met,
    /// Not yet.
    NotYet,
    /// The sensor skips itself at once (Airflow's `AirflowSkipException` from `poke`).
    Skip(String),
    /// The poke failed (Airflow's other exceptions): `silent_fail` takes it as "not yet",
    /// `never_fail` skips, otherwise the try fails.
    Error(String),
}

/// Where a sensor's try stands when it pokes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts<'a> {
    /// The DAG, for the backoff's jitter.
    pub dag_id: &'a str,
    /// The task, for the backoff's jitter.
    pub task_id: &'a str,
    /// When the sensor's first poke of this try started (its first reschedule's start, or now
    /// when it has not rescheduled yet): `timeout` counts from it.
    pub started_at: DateTime<Utc>,
    /// Now.
    pub now: DateTime<Utc>,
}

/// The outcome of a try whose poke found `poke`.
#[must_use]
pub fn decide(poke: Poke, settings: &SensorSettings, facts: &Facts<'_>) -> TryOutcome {
    let met = match poke {
        Poke::Met => true,
        Poke::NotYet => false,
        Poke::Skip(reason) => return TryOutcome::SkippedItself { reason },
        Poke::Error(_) if settings.silent_fail => false,
        Poke::Error(why) if settings.never_fail => {
            return TryOutcome::SkippedItself {
                reason: format!("Skipping due to never_fail is set to True: {why}"),
            };
        }
        Poke::Error(why) => return TryOutcome::Failed(FailureReason::Task(why)),
    };
    if met {
        return TryOutcome::Succeeded { xcom: None };
    }
    let run_duration = seconds_between(facts.started_at, facts.now);
    let timeout = settings.timeout.as_secs_f64();
    if run_duration > timeout {
        let message = format!(
            "Sensor has timed out; run duration of {run_duration} seconds exceeds the specified timeout of {timeout}."
        );
        return if settings.soft_fail {
            TryOutcome::SkippedItself { reason: message }
        } else {
            TryOutcome::Failed(FailureReason::Task(message))
        };
    }
    let wait = next_poke_interval(settings, facts, run_duration);
    let wait = chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::MAX);
    TryOutcome::Rescheduled {
        at: facts
            .now
            .checked_add_signed(wait)
            .unwrap_or(DateTime::<Utc>::MAX_UTC),
    }
}

fn seconds_between(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    (to - from)
        .num_microseconds()
        .map_or(f64::MAX, |us| us as f64 / 1e6)
}

/// Python's `timedelta.max.total_seconds() - 1`, the longest wait Airflow computes.
const LONGEST_WAIT: f64 = 86_399_999_999_999.0;

/// The wait before the next poke: `poke_interval`, or with `exponential_backoff` the interval
/// Airflow's `_get_next_poke_interval` computes in `reschedule` mode (the poke count estimated
/// from the time elapsed, each step doubled with a jitter hashed from the DAG, task, first
/// poke and step; at most what remains of `timeout`, and of `max_wait`).
#[must_use]
pub fn next_poke_interval(settings: &SensorSettings, facts: &Facts<'_>, elapsed: f64) -> Duration {
    if !settings.exponential_backoff {
        return settings.poke_interval;
    }
    let poke_interval = settings.poke_interval.as_secs_f64();
    let started_at = python_datetime(facts.started_at);
    let jittered = |count: i32| {
        let min_backoff = (poke_interval * 2f64.powi(count - 2)).trunc().max(1.0);
        if min_backoff >= LONGEST_WAIT {
            return LONGEST_WAIT;
        }
        // Exact: `min_backoff` is a whole number below 2^47.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let modulus = min_backoff as u128;
        let digest = Sha1::digest(
            format!("{}#{}#{started_at}#{count}", facts.dag_id, facts.task_id).as_bytes(),
        );
        let remainder = digest.iter().fold(0_u128, |acc, byte| {
            (acc * 256 + u128::from(*byte)) % modulus
        });
        #[allow(clippy::cast_precision_loss)]
        let jitter = remainder as f64;
        (min_backoff + jitter).min(LONGEST_WAIT)
    };
    let mut cumulative = 0.0;
    let mut count = 0;
    while cumulative <= elapsed {
        count += 1;
        cumulative += jittered(count);
    }
    let delay = jittered(count);
    let mut interval = (settings.timeout.as_secs_f64() - elapsed.trunc()).min(delay);
    if let Some(max_wait) = settings.max_wait {
        interval = interval.min(max_wait.as_secs_f64());
    }
    Duration::try_from_secs_f64(interval.max(0.0)).unwrap_or(Duration::MAX)
}

/// `str(datetime)` of an aware UTC date, as Python prints it into the jitter's hash.
fn python_datetime(at: DateTime<Utc>) -> String {
    if at.timestamp_subsec_micros() == 0 {
        at.format("%Y-%m-%d %H:%M:%S+00:00").to_string()
    } else {
        at.format("%Y-%m-%d %H:%M:%S%.6f+00:00").to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn facts(elapsed: i64) -> Facts<'static> {
        let started_at = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap();
        Facts {
            dag_id: "d",
            task_id: "t",
            started_at,
            now: started_at + chrono::Duration::seconds(elapsed),
        }
    }

    fn settings() -> SensorSettings {
        SensorSettings {
            poke_interval: Duration::from_secs(10),
            timeout: Duration::from_secs(100),
            ..SensorSettings::default()
        }
    }

    #[test]
    fn a_met_poke_succeeds_and_an_unmet_one_reschedules_after_the_poke_interval() {
        let f = facts(5);
        assert_eq!(
            decide(Poke::Met, &settings(), &f),
            TryOutcome::Succeeded { xcom: None }
        );
        assert_eq!(
            decide(Poke::NotYet, &settings(), &f),
            TryOutcome::Rescheduled {
                at: f.now + chrono::Duration::seconds(10)
            }
        );
    }

    #[test]
    fn past_the_timeout_it_fails_or_with_soft_fail_skips() {
        let f = facts(101);
        let TryOutcome::Failed(FailureReason::Task(why)) = decide(Poke::NotYet, &settings(), &f)
        else {
            panic!("fails");
        };
        assert!(why.contains("Sensor has timed out; run duration of 101 seconds exceeds the specified timeout of 100."), "{why}");
        let soft = SensorSettings {
            soft_fail: true,
            ..settings()
        };
        assert!(matches!(
            decide(Poke::NotYet, &soft, &f),
            TryOutcome::SkippedItself { .. }
        ));
        // At the timeout exactly it still waits, as Airflow's `>`.
        assert!(matches!(
            decide(Poke::NotYet, &settings(), &facts(100)),
            TryOutcome::Rescheduled { .. }
        ));
    }

    #[test]
    fn poke_errors_fail_unless_silent_fail_or_never_fail() {
        let f = facts(1);
        let err = || Poke::Error("boom".into());
        assert_eq!(
            decide(err(), &settings(), &f),
            TryOutcome::Failed(FailureReason::Task("boom".into()))
        );
        let silent = SensorSettings {
            silent_fail: true,
            ..settings()
        };
        assert!(matches!(
            decide(err(), &silent, &f),
            TryOutcome::Rescheduled { .. }
        ));
        let never = SensorSettings {
            never_fail: true,
            ..settings()
        };
        assert!(matches!(
            decide(err(), &never, &f),
            TryOutcome::SkippedItself { .. }
        ));
        assert!(matches!(
            decide(Poke::Skip("x".into()), &settings(), &f),
            TryOutcome::SkippedItself { .. }
        ));
    }

    #[test]
    fn exponential_backoff_matches_airflow() {
        // Airflow 3.3.2's BaseSensorOperator(poke_interval=5, timeout=1000, mode="reschedule",
        // exponential_backoff=True)._get_next_poke_interval(started_at, lambda: elapsed, 1)
        // for dag "d", task "t", started_at 2024-01-01 00:00:00+00:00:
        let backoff = SensorSettings {
            poke_interval: Duration::from_secs(5),
            timeout: Duration::from_secs(1000),
            exponential_backoff: true,
            ..SensorSettings::default()
        };
        let waits: Vec<u64> = [0, 10, 100, 500]
            .into_iter()
            .map(|elapsed| next_poke_interval(&backoff, &facts(elapsed), elapsed as f64).as_secs())
            .collect();
        assert_eq!(waits, AIRFLOW_WAITS);
        let capped = SensorSettings {
            max_wait: Some(Duration::from_secs(3)),
            ..backoff
        };
        assert_eq!(next_poke_interval(&capped, &facts(100), 100.0).as_secs(), 3);
    }

    /// What Airflow answers (see the test above).
    const AIRFLOW_WAITS: [u64; 4] = [3, 18, 77, 300];

    #[test]
    fn python_prints_dates_with_an_offset_and_micros_only_when_set() {
        let at = Utc.with_ymd_and_hms(2024, 1, 1, 6, 30, 0).unwrap();
        assert_eq!(python_datetime(at), "2024-01-01 06:30:00+00:00");
        let at = at + chrono::Duration::microseconds(250);
        assert_eq!(python_datetime(at), "2024-01-01 06:30:00.000250+00:00");
    }
}
