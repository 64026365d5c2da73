//! The scheduler's own numbers, for Prometheus: tries finished by outcome, how long tasks wait
//! between `scheduled` and being handed to a runtime, how many wait for a slot, how many tries
//! the runtimes follow, how long its database calls take, and how old its heartbeat is.
//!
//! [`SchedulerMetrics`] is a cheap handle (clone it freely) around one registry of its own, not
//! a global: the scheduler records into it, and whoever serves HTTP renders it in Prometheus'
//! text format ([`SchedulerMetrics::render`]). It also holds the loop's latest heartbeat, which
//! the scheduler's `/health` reads. Recording never fails and never blocks the loop for longer
//! than an atomic add. This module knows no HTTP server.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

/// How a try ended, as `gust_scheduler_tries_finished_total` counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TryResult {
    /// It succeeded.
    Success,
    /// It failed (whether or not it is retried), timed out, was killed or lost.
    Failed,
    /// It ended with a skip exit code.
    Skipped,
    /// It was never handed over before a scheduler stopped; it is queued again.
    NeverStarted,
    /// It asked to run again later, as the same try (a sensor in `reschedule` mode).
    Rescheduled,
    /// It deferred itself to a trigger, to run again as the same try once that fires.
    Deferred,
}

impl TryResult {
    /// The label value.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failed => "failed",
            Self::Skipped => "skipped",
            Self::NeverStarted => "never_started",
            Self::Rescheduled => "rescheduled",
            Self::Deferred => "deferred",
        }
    }
}

/// Which line a task waits in: tries that hold a worker, or tries that hold none (pods).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Line {
    /// Tries that count against `parallelism`.
    Workers,
    /// Tries followed by a watch (pods), held back only by pools and `max_active_tasks`.
    WorkerFree,
}

impl Line {
    /// The label value.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Workers => "workers",
            Self::WorkerFree => "worker_free",
        }
    }
}

/// The database calls the scheduler times.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DbCall {
    /// Committing a batch of task moves (`Store::apply_moves`).
    CommitMoves,
    /// The periodic poll: heartbeat, DAG claims, pause flags, pools.
    Poll,
}

impl DbCall {
    /// The label value.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CommitMoves => "commit_moves",
            Self::Poll => "poll",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct LineLabel {
    line: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct CallLabel {
    call: &'static str,
}

/// No heartbeat recorded yet.
const NEVER: i64 = i64::MIN;

/// Histogram buckets for how long a task waits for its try to be handed over: 1 ms to ~4 min.
fn delay_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 19))
}

/// Histogram buckets for database calls: 0.25 ms to ~8 s.
fn db_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.000_25, 2.0, 16))
}

/// The scheduler's metrics (a cheap, cloneable handle).
#[derive(Clone)]
pub struct SchedulerMetrics(Arc<Inner>);

struct Inner {
    registry: Registry,
    tries_finished: Family<OutcomeLabel, Counter>,
    scheduling_delay: Histogram,
    queue_depth: Family<LineLabel, Gauge>,
    tries_followed: Gauge,
    db_calls: Family<CallLabel, Histogram, fn() -> Histogram>,
    heartbeat_age: Gauge<f64, std::sync::atomic::AtomicU64>,
    /// The loop's latest heartbeat, microseconds since the epoch ([`NEVER`] before the first).
    last_heartbeat: AtomicI64,
}

impl std::fmt::Debug for SchedulerMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchedulerMetrics")
            .field("last_heartbeat", &self.last_heartbeat())
            .finish_non_exhaustive()
    }
}

impl Default for SchedulerMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl SchedulerMetrics {
    /// A fresh set of metrics, all zero, with no heartbeat yet.
    #[must_use]
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let tries_finished = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "gust_scheduler_tries_finished",
            "Tries whose end the scheduler recorded, by outcome",
            tries_finished.clone(),
        );
        let scheduling_delay = delay_buckets();
        registry.register_with_unit(
            "gust_scheduler_scheduling_delay",
            "Time from a task instance becoming scheduled (runnable) to its try being queued and handed to a runtime",
            Unit::Seconds,
            scheduling_delay.clone(),
        );
        let queue_depth = Family::<LineLabel, Gauge>::default();
        registry.register(
            "gust_scheduler_queue_depth",
            "Task instances in state scheduled waiting for a slot, by line (workers: counted against parallelism; worker_free: pods)",
            queue_depth.clone(),
        );
        let tries_followed = Gauge::default();
        registry.register(
            "gust_scheduler_tries_followed",
            "Tries the runtimes run or follow now (local processes and pods)",
            tries_followed.clone(),
        );
        let db_calls =
            Family::<CallLabel, Histogram, fn() -> Histogram>::new_with_constructor(db_buckets);
        registry.register_with_unit(
            "gust_scheduler_db_call_duration",
            "How long the scheduler's calls to the metadata database take, by call",
            Unit::Seconds,
            db_calls.clone(),
        );
        let heartbeat_age = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register_with_unit(
            "gust_scheduler_heartbeat_age",
            "Time since the scheduler loop's latest heartbeat (-1 before the first)",
            Unit::Seconds,
            heartbeat_age.clone(),
        );
        // Every series exists from the start, so a rate or an alert never sees a gap.
        for outcome in [
            TryResult::Success,
            TryResult::Failed,
            TryResult::Skipped,
            TryResult::NeverStarted,
            TryResult::Rescheduled,
            TryResult::Deferred,
        ] {
            let _ = tries_finished.get_or_create(&OutcomeLabel {
                outcome: outcome.as_str(),
            });
        }
        for line in [Line::Workers, Line::WorkerFree] {
            let _ = queue_depth.get_or_create(&LineLabel {
                line: line.as_str(),
            });
        }
        for call in [DbCall::CommitMoves, DbCall::Poll] {
            let _ = db_calls.get_or_create(&CallLabel {
                call: call.as_str(),
            });
        }
        heartbeat_age.set(-1.0);
        Self(Arc::new(Inner {
            registry,
            tries_finished,
            scheduling_delay,
            queue_depth,
            tries_followed,
            db_calls,
            heartbeat_age,
            last_heartbeat: AtomicI64::new(NEVER),
        }))
    }

    /// Counts a try that ended with `result`.
    pub fn try_finished(&self, result: TryResult) {
        self.0
            .tries_finished
            .get_or_create(&OutcomeLabel {
                outcome: result.as_str(),
            })
            .inc();
    }

    /// Records how long a task waited between `scheduled` and its try being handed over.
    pub fn scheduling_delay(&self, waited: chrono::Duration) {
        let seconds = waited.to_std().unwrap_or(Duration::ZERO).as_secs_f64();
        self.0.scheduling_delay.observe(seconds);
    }

    /// Sets how many tasks wait in `line`.
    pub fn queue_depth(&self, line: Line, waiting: usize) {
        self.0
            .queue_depth
            .get_or_create(&LineLabel {
                line: line.as_str(),
            })
            .set(i64::try_from(waiting).unwrap_or(i64::MAX));
    }

    /// Sets how many tries the runtimes follow.
    pub fn tries_followed(&self, running: usize) {
        self.0
            .tries_followed
            .set(i64::try_from(running).unwrap_or(i64::MAX));
    }

    /// Records that a database call took `took`.
    pub fn db_call(&self, call: DbCall, took: Duration) {
        self.0
            .db_calls
            .get_or_create(&CallLabel {
                call: call.as_str(),
            })
            .observe(took.as_secs_f64());
    }

    /// Records the loop's heartbeat at `at` (the scheduler calls it once its heartbeat is stored).
    pub fn heartbeat(&self, at: DateTime<Utc>) {
        self.0
            .last_heartbeat
            .store(at.timestamp_micros(), Ordering::Relaxed);
    }

    /// The loop's latest heartbeat, if it has beaten.
    #[must_use]
    pub fn last_heartbeat(&self) -> Option<DateTime<Utc>> {
        match self.0.last_heartbeat.load(Ordering::Relaxed) {
            NEVER => None,
            micros => DateTime::from_timestamp_micros(micros),
        }
    }

    /// Every metric in Prometheus' text format (version 0.0.4), the heartbeat's age taken at
    /// `now`.
    #[must_use]
    pub fn render(&self, now: DateTime<Utc>) -> String {
        let age = self
            .last_heartbeat()
            .map_or(-1.0, |at| (now - at).as_seconds_f64().max(0.0));
        self.0.heartbeat_age.set(age);
        let mut text = String::new();
        // Writing to a String cannot fail, and every name registered above is valid.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut text, &self.0.registry);
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(text: &str, series: &str) -> f64 {
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no series {series} in\n{text}"))
            .parse()
            .unwrap()
    }

    fn t(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(seconds, 0).unwrap()
    }

    #[test]
    fn every_family_is_rendered_with_zero_series_before_anything_happens() {
        let text = SchedulerMetrics::new().render(t(100));
        for family in [
            "# TYPE gust_scheduler_tries_finished_total counter",
            "# TYPE gust_scheduler_scheduling_delay_seconds histogram",
            "# TYPE gust_scheduler_queue_depth gauge",
            "# TYPE gust_scheduler_tries_followed gauge",
            "# TYPE gust_scheduler_db_call_duration_seconds histogram",
            "# TYPE gust_scheduler_heartbeat_age_seconds gauge",
        ] {
            assert!(text.contains(family), "{family} missing in\n{text}");
        }
        assert_eq!(
            value(
                &text,
                "gust_scheduler_tries_finished_total{outcome=\"never_started\"}"
            ),
            0.0
        );
        assert_eq!(
            value(&text, "gust_scheduler_queue_depth{line=\"worker_free\"}"),
            0.0
        );
        assert_eq!(
            value(
                &text,
                "gust_scheduler_db_call_duration_seconds_count{call=\"commit_moves\"}"
            ),
            0.0
        );
        assert_eq!(value(&text, "gust_scheduler_heartbeat_age_seconds"), -1.0);
    }

    #[test]
    fn recorded_values_show_in_their_series() {
        let metrics = SchedulerMetrics::new();
        let handle = metrics.clone();
        handle.try_finished(TryResult::Success);
        handle.try_finished(TryResult::Success);
        handle.try_finished(TryResult::Failed);
        handle.scheduling_delay(chrono::Duration::milliseconds(3));
        handle.scheduling_delay(chrono::Duration::seconds(2));
        handle.scheduling_delay(chrono::Duration::seconds(-1)); // clock went back: counted as 0
        handle.queue_depth(Line::Workers, 7);
        handle.tries_followed(4);
        handle.db_call(DbCall::Poll, Duration::from_millis(2));
        handle.heartbeat(t(100));
        let text = metrics.render(t(112));
        let v = |series| value(&text, series);
        assert_eq!(
            v("gust_scheduler_tries_finished_total{outcome=\"success\"}"),
            2.0
        );
        assert_eq!(
            v("gust_scheduler_tries_finished_total{outcome=\"failed\"}"),
            1.0
        );
        assert_eq!(v("gust_scheduler_scheduling_delay_seconds_count"), 3.0);
        assert!((v("gust_scheduler_scheduling_delay_seconds_sum") - 2.003).abs() < 1e-9);
        assert_eq!(
            v("gust_scheduler_scheduling_delay_seconds_bucket{le=\"0.004\"}"),
            2.0,
            "0 s and 3 ms are within 4 ms"
        );
        assert_eq!(v("gust_scheduler_queue_depth{line=\"workers\"}"), 7.0);
        assert_eq!(v("gust_scheduler_tries_followed"), 4.0);
        assert_eq!(
            v("gust_scheduler_db_call_duration_seconds_count{call=\"poll\"}"),
            1.0
        );
        assert_eq!(v("gust_scheduler_heartbeat_age_seconds"), 12.0);
        assert_eq!(metrics.last_heartbeat(), Some(t(100)));
    }

    #[test]
    fn a_heartbeat_from_the_future_is_zero_seconds_old() {
        let metrics = SchedulerMetrics::new();
        assert_eq!(metrics.last_heartbeat(), None);
        metrics.heartbeat(t(200));
        let text = metrics.render(t(150));
        assert_eq!(value(&text, "gust_scheduler_heartbeat_age_seconds"), 0.0);
    }
}
