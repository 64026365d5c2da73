//! Which scheduled runs are due: Airflow's data-interval rules as one pure function.
//!
//! A run covers `[start, end)` and is due once `end` has passed. With `catchup`, every interval
//! since the last run (or since `start_date`) is due, oldest first; without it, only the latest
//! complete interval is, and missed ones are skipped. No interval starts after `end_date`.
//! `@once` has one run, for the interval `[start_date, start_date]`. A DAG with a schedule but no
//! `start_date` behaves as without catchup from the first time it is seen.
//!
//! The timetable objects (trigger, events, continuous) follow Airflow's `next_dagrun_info`
//! exactly ([`crate::timetable_objects`]): their runs are due once their `run_after` (the
//! interval's end) has passed, one after another. One exception, because Gust decides at `now`
//! what Airflow decided ahead of time: an `EventsTimetable` without catchup runs the latest
//! event that has passed since the last run, where Airflow runs the event it had picked as next
//! before that time came.

use chrono::{DateTime, Utc};

use crate::dag::DagSettings;
use crate::schedule::{DataInterval, Schedule};
use crate::timetable_objects::Restriction;

/// The DAG's `start_date`, `end_date` and `catchup` as Airflow's `TimeRestriction`.
#[must_use]
pub fn restriction(settings: &DagSettings) -> Restriction {
    Restriction {
        earliest: settings.start_date,
        latest: settings.end_date,
        catchup: settings.catchup,
    }
}

/// The DAG's next scheduled run after `last` as of `now`, due or not (Airflow's `next_dagrun`
/// and `next_dagrun_create_after` are its start and end); `None` when it has no more.
#[must_use]
pub fn next_run(
    settings: &DagSettings,
    last: Option<&DataInterval>,
    now: DateTime<Utc>,
) -> Option<DataInterval> {
    let schedule = &settings.schedule;
    match schedule {
        Schedule::Manual => None,
        Schedule::Once | Schedule::Cron(_) | Schedule::Interval(_) => schedule
            .next_data_interval(last, settings.start_date.unwrap_or(now), settings.timezone)
            .filter(|next| settings.end_date.is_none_or(|end| next.start <= end)),
        Schedule::CronTrigger(_)
        | Schedule::DeltaTrigger(_)
        | Schedule::Events(_)
        | Schedule::Continuous => {
            schedule.next_dagrun_info(last, &restriction(settings), now, settings.timezone)
        }
    }
}

/// The scheduled runs due at `now`, oldest first, at most `limit` of them. `last` is the
/// interval of the DAG's latest scheduled run, if any.
#[must_use]
pub fn due_intervals(
    settings: &DagSettings,
    last: Option<&DataInterval>,
    now: DateTime<Utc>,
    limit: usize,
) -> Vec<DataInterval> {
    let schedule = &settings.schedule;
    let tz = settings.timezone;
    let in_range =
        |i: &DataInterval| i.end <= now && settings.end_date.is_none_or(|end| i.start <= end);
    let after_last = |i: &DataInterval| last.is_none_or(|l| i.start >= l.end);
    match schedule {
        Schedule::Manual => Vec::new(),
        Schedule::Once => {
            let Some(start) = settings.start_date else {
                return Vec::new();
            };
            let interval = DataInterval { start, end: start };
            if last.is_none() && in_range(&interval) && limit > 0 {
                vec![interval]
            } else {
                Vec::new()
            }
        }
        Schedule::Cron(_) | Schedule::Interval(_) => {
            if let (true, Some(start)) = (settings.catchup, settings.start_date) {
                let mut due = Vec::new();
                let mut next = schedule.next_data_interval(last, start, tz);
                while let Some(interval) = next {
                    if due.len() >= limit || !in_range(&interval) {
                        break;
                    }
                    due.push(interval);
                    next = schedule.next_data_interval(Some(&interval), start, tz);
                }
                return due;
            }
            latest_complete(schedule, settings, now)
                .filter(|i| in_range(i) && after_last(i) && limit > 0)
                .filter(|i| settings.start_date.is_none_or(|start| i.start >= start))
                .into_iter()
                .collect()
        }
        Schedule::Events(events) if !settings.catchup => events
            .latest_due(last, &restriction(settings), now)
            .filter(|_| limit > 0)
            .into_iter()
            .collect(),
        Schedule::CronTrigger(_)
        | Schedule::DeltaTrigger(_)
        | Schedule::Events(_)
        | Schedule::Continuous => {
            // Airflow runs a continuous DAG one run at a time.
            let limit = if matches!(schedule, Schedule::Continuous) {
                limit.min(1)
            } else {
                limit
            };
            let r = restriction(settings);
            let mut due = Vec::new();
            let mut last = last.copied();
            while due.len() < limit {
                let Some(next) = schedule.next_dagrun_info(last.as_ref(), &r, now, tz) else {
                    break;
                };
                if next.end > now || last.is_some_and(|l| next.end <= l.end) {
                    break;
                }
                due.push(next);
                last = Some(next);
            }
            due
        }
    }
}

/// The most recent interval that has ended by `now`.
fn latest_complete(
    schedule: &Schedule,
    settings: &DagSettings,
    now: DateTime<Utc>,
) -> Option<DataInterval> {
    let tz = settings.timezone;
    match schedule {
        Schedule::Cron(_) => {
            let end = schedule.prev_fire_at_or_before(now, tz)?;
            let start = schedule.prev_fire_at_or_before(end - chrono::Duration::seconds(1), tz)?;
            Some(DataInterval { start, end })
        }
        Schedule::Interval(step) => {
            let step = chrono::Duration::from_std(*step).ok()?;
            // Intervals are anchored at start_date; without one, at the epoch.
            let anchor = settings.start_date.unwrap_or(DateTime::UNIX_EPOCH);
            let elapsed = now.signed_duration_since(anchor);
            let steps = elapsed
                .num_microseconds()?
                .checked_div(step.num_microseconds()?)?;
            if steps < 1 {
                return None;
            }
            let end = anchor.checked_add_signed(step.checked_mul(i32::try_from(steps).ok()?)?)?;
            Some(DataInterval {
                start: end.checked_sub_signed(step)?,
                end,
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    fn utc(d: u32, h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 1, d, h, 0, 0)
            .single()
            .expect("a time")
    }

    fn settings(schedule: &str, start: Option<DateTime<Utc>>, catchup: bool) -> DagSettings {
        DagSettings {
            schedule: Schedule::parse(schedule).expect("schedule"),
            start_date: start,
            catchup,
            ..DagSettings::default()
        }
    }

    fn iv(start: DateTime<Utc>, end: DateTime<Utc>) -> DataInterval {
        DataInterval { start, end }
    }

    #[test]
    fn a_daily_run_is_due_once_its_day_has_passed() {
        let s = settings("@daily", Some(utc(1, 0)), false);
        assert_eq!(due_intervals(&s, None, utc(1, 23), 16), []);
        assert_eq!(
            due_intervals(&s, None, utc(2, 0), 16),
            [iv(utc(1, 0), utc(2, 0))]
        );
    }

    #[test]
    fn catchup_creates_every_missed_interval_in_order_up_to_the_limit() {
        let s = settings("@daily", Some(utc(1, 0)), true);
        let due = due_intervals(&s, None, utc(5, 6), 16);
        assert_eq!(
            due,
            [
                iv(utc(1, 0), utc(2, 0)),
                iv(utc(2, 0), utc(3, 0)),
                iv(utc(3, 0), utc(4, 0)),
                iv(utc(4, 0), utc(5, 0))
            ]
        );
        assert_eq!(due_intervals(&s, None, utc(5, 6), 2).len(), 2);
        let last = iv(utc(3, 0), utc(4, 0));
        assert_eq!(
            due_intervals(&s, Some(&last), utc(5, 6), 16),
            [iv(utc(4, 0), utc(5, 0))]
        );
    }

    #[test]
    fn without_catchup_only_the_latest_interval_runs() {
        let s = settings("@daily", Some(utc(1, 0)), false);
        assert_eq!(
            due_intervals(&s, None, utc(5, 6), 16),
            [iv(utc(4, 0), utc(5, 0))]
        );
        let last = iv(utc(4, 0), utc(5, 0));
        assert_eq!(due_intervals(&s, Some(&last), utc(5, 23), 16), []);
    }

    #[test]
    fn no_interval_starts_after_end_date() {
        let mut s = settings("@daily", Some(utc(1, 0)), true);
        s.end_date = Some(utc(2, 12));
        assert_eq!(
            due_intervals(&s, None, utc(9, 0), 16),
            [iv(utc(1, 0), utc(2, 0)), iv(utc(2, 0), utc(3, 0))]
        );
    }

    #[test]
    fn once_runs_once_and_manual_never() {
        let s = settings("@once", Some(utc(1, 0)), false);
        assert_eq!(
            due_intervals(&s, None, utc(1, 0), 16),
            [iv(utc(1, 0), utc(1, 0))]
        );
        assert_eq!(
            due_intervals(&s, Some(&iv(utc(1, 0), utc(1, 0))), utc(9, 0), 16),
            []
        );
        assert_eq!(
            due_intervals(
                &settings("None", Some(utc(1, 0)), true),
                None,
                utc(9, 0),
                16
            ),
            []
        );
    }

    #[test]
    fn fixed_intervals_are_anchored_at_the_start_date() {
        let s = settings("6h", Some(utc(1, 1)), false);
        assert_eq!(
            due_intervals(&s, None, utc(2, 0), 16),
            [iv(utc(1, 13), utc(1, 19))]
        );
        let s = settings("6h", Some(utc(1, 1)), true);
        assert_eq!(
            due_intervals(&s, None, utc(1, 14), 16),
            [iv(utc(1, 1), utc(1, 7)), iv(utc(1, 7), utc(1, 13))]
        );
    }

    #[test]
    fn a_schedule_without_start_date_runs_its_latest_interval() {
        let s = settings("0 * * * *", None, true);
        assert_eq!(
            due_intervals(
                &s,
                None,
                Utc.with_ymd_and_hms(2024, 1, 1, 5, 30, 0).unwrap(),
                16
            ),
            [iv(utc(1, 4), utc(1, 5))]
        );
    }

    proptest! {
        #[test]
        fn catchup_intervals_are_contiguous_ended_and_within_bounds(
            start_h in 0u32..48, now_h in 0u32..400, limit in 0usize..20, cron in prop_oneof![Just("@hourly"), Just("*/30 * * * *"), Just("0 */5 * * *"), Just("3h")]
        ) {
            let start = utc(1, 0) + chrono::Duration::hours(i64::from(start_h));
            let now = utc(1, 0) + chrono::Duration::hours(i64::from(now_h));
            let s = settings(cron, Some(start), true);
            let due = due_intervals(&s, None, now, limit);
            prop_assert!(due.len() <= limit);
            for pair in due.windows(2) {
                prop_assert_eq!(pair[0].end, pair[1].start);
            }
            for i in &due {
                prop_assert!(i.start < i.end && i.end <= now && i.start >= start);
            }
        }
    }
}
