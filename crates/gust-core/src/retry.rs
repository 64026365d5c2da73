//! When a failed try is retried: Airflow's `retry_delay`, doubled per failed try with
//! `retry_exponential_backoff`, capped by `max_retry_delay` (or a day, Airflow's cap).

use std::time::Duration;

use crate::task::TaskSettings;

/// The longest wait exponential backoff reaches when `max_retry_delay` is not set (Airflow's).
pub const DEFAULT_MAX_RETRY_DELAY: Duration = Duration::from_secs(24 * 60 * 60);

/// Whether try `try_number` (from 1) may be followed by another.
#[must_use]
pub fn can_retry(settings: &TaskSettings, try_number: u32) -> bool {
    try_number <= settings.retries
}

/// How long to wait after try `try_number` (from 1) failed before the next try.
#[must_use]
pub fn retry_delay(settings: &TaskSettings, try_number: u32) -> Duration {
    if !settings.retry_exponential_backoff {
        return settings.retry_delay;
    }
    let cap = settings.max_retry_delay.unwrap_or(DEFAULT_MAX_RETRY_DELAY);
    // delay * 2^(try_number - 1): the first retry waits retry_delay, then it doubles.
    let doublings = try_number.saturating_sub(1).min(32);
    settings
        .retry_delay
        .saturating_mul(1u32 << doublings.min(31))
        .min(cap)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(retries: u32, delay: u64, backoff: bool, max: Option<u64>) -> TaskSettings {
        TaskSettings {
            retries,
            retry_delay: Duration::from_secs(delay),
            retry_exponential_backoff: backoff,
            max_retry_delay: max.map(Duration::from_secs),
            ..TaskSettings::default()
        }
    }

    #[test]
    fn retries_count_tries_after_the_first() {
        let s = settings(2, 60, false, None);
        assert!(can_retry(&s, 1));
        assert!(can_retry(&s, 2));
        assert!(!can_retry(&s, 3));
        assert!(!can_retry(&settings(0, 60, false, None), 1));
    }

    #[test]
    fn a_fixed_delay_stays_fixed() {
        let s = settings(5, 60, false, None);
        assert_eq!(retry_delay(&s, 1), Duration::from_secs(60));
        assert_eq!(retry_delay(&s, 4), Duration::from_secs(60));
    }

    #[test]
    fn retry_waits_for_exponential_backoff_up_to_its_cap() {
        let s = settings(10, 60, true, Some(300));
        let waits: Vec<u64> = (1..=5).map(|n| retry_delay(&s, n).as_secs()).collect();
        assert_eq!(waits, [60, 120, 240, 300, 300]);
        let uncapped = settings(100, 60, true, None);
        assert_eq!(retry_delay(&uncapped, 90), DEFAULT_MAX_RETRY_DELAY);
    }
}
