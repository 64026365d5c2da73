//! Airflow's timetable objects beyond the schedule strings: `CronTriggerTimetable`,
//! `MultipleCronTriggerTimetable`, `DeltaTriggerTimetable`, `EventsTimetable` and
//! `ContinuousTimetable`, each with Airflow 3.3's `next_dagrun_info` as a pure function.
//!
//! Every run is still a [`DataInterval`]: Airflow's logical date is the interval's start and its
//! `run_after` the interval's end, for these timetables as for the data-interval ones. A trigger
//! timetable's run at fire time `t` covers `[t - interval, t]` (one instant with the default
//! zero interval); an event's run covers `[event, event]`. This module decides nothing about
//! catchup limits or the clock: [`next_dagrun_info`] is given `now`.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;

use crate::schedule::{CronSchedule, DataInterval, ScheduleError};

/// The bounds Airflow's `TimeRestriction` puts on a DAG's scheduled runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Restriction {
    /// The DAG's `start_date`.
    pub earliest: Option<DateTime<Utc>>,
    /// The DAG's `end_date`.
    pub latest: Option<DateTime<Utc>>,
    /// The DAG's `catchup`.
    pub catchup: bool,
}

/// When a trigger timetable without a `start_date` makes its first run (Airflow's
/// `run_immediately`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunImmediately {
    /// `True`: the latest fire time at or before now.
    Always,
    /// `False` or `None` (Airflow 3.3 treats them alike): the latest fire time if it is no further
    /// back than a tenth of the gap between fire times (at least five minutes), else the next one.
    Nearby,
    /// A `timedelta`: the latest fire time if it is no further back than this, else the next.
    Within(Duration),
}

/// `CronTriggerTimetable(cron, timezone, interval, run_immediately)`, or with several crons
/// `MultipleCronTriggerTimetable(*crons, ...)`: a run at every fire time of any of the crons.
#[derive(Debug, Clone, PartialEq)]
pub struct CronTrigger {
    /// The crons (one for `CronTriggerTimetable`).
    pub crons: Vec<CronSchedule>,
    /// The zone the crons are read in.
    pub timezone: Tz,
    /// How far before each fire time the run's data interval starts.
    pub interval: Duration,
    /// When the first run is, without a `start_date`.
    pub run_immediately: RunImmediately,
    /// Written as `MultipleCronTriggerTimetable` (which a single cron may be too).
    pub multiple: bool,
}

/// `DeltaTriggerTimetable(delta, interval)`: a run every `delta`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeltaTrigger {
    /// The time between runs.
    pub delta: Duration,
    /// How far before each run's time its data interval starts.
    pub interval: Duration,
}

/// `EventsTimetable(event_dates, restrict_to_events, presorted, description)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Events {
    /// The events, ascending unless written `presorted` (then as written, as Airflow keeps them).
    pub dates: Vec<DateTime<Utc>>,
    /// Whether a manual run covers the latest event rather than the time it is triggered.
    pub restrict_to_events: bool,
    /// Whether `dates` were taken as already sorted.
    pub presorted: bool,
    /// The name shown in the UI instead of "N events".
    pub description: Option<String>,
}

impl CronTrigger {
    /// A trigger timetable over `crons` (each a preset or five-field cron).
    pub fn new(
        crons: &[String],
        timezone: Tz,
        interval: Duration,
        run_immediately: RunImmediately,
        multiple: bool,
    ) -> Result<Self, ScheduleError> {
        if crons.is_empty() {
            return Err(ScheduleError::NoCron);
        }
        let crons = crons
            .iter()
            .map(|text| CronSchedule::parse(text))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            crons,
            timezone,
            interval,
            run_immediately,
            multiple,
        })
    }

    /// Airflow's summary: the expressions (presets spelled out), joined by ", ".
    #[must_use]
    pub fn summary(&self) -> String {
        self.crons
            .iter()
            .map(CronSchedule::expression)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl Events {
    /// The events, sorted unless `presorted`.
    #[must_use]
    pub fn new(
        mut dates: Vec<DateTime<Utc>>,
        restrict_to_events: bool,
        presorted: bool,
        description: Option<String>,
    ) -> Self {
        if !presorted {
            dates.sort();
        }
        Self {
            dates,
            restrict_to_events,
            presorted,
            description,
        }
    }

    /// Airflow's summary: the description, else "N events".
    #[must_use]
    pub fn summary(&self) -> String {
        self.description
            .clone()
            .unwrap_or_else(|| format!("{} events", self.dates.len()))
    }

    /// Airflow's description: the description, else "N events between FIRST and LAST".
    #[must_use]
    pub fn describe(&self) -> String {
        if let Some(description) = &self.description {
            return description.clone();
        }
        match (self.dates.first(), self.dates.last()) {
            (Some(first), Some(last)) => format!(
                "{} events between {} and {}",
                self.dates.len(),
                python_isoformat(*first),
                python_isoformat(*last)
            ),
            _ => "No events".to_owned(),
        }
    }
}

/// A UTC time as Python's `isoformat()` writes it: microseconds only when there are any.
fn python_isoformat(t: DateTime<Utc>) -> String {
    if t.timestamp_subsec_micros() == 0 {
        t.format("%Y-%m-%dT%H:%M:%S+00:00").to_string()
    } else {
        t.format("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string()
    }
}

/// A duration as Python's `str(timedelta)` writes it (`1 day, 2:00:00`, `0:30:00`), which is
/// Airflow's summary of a delta timetable.
#[must_use]
pub fn python_timedelta(d: Duration) -> String {
    let secs = d.as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let clock = format!("{}:{:02}:{:02}", rest / 3600, rest % 3600 / 60, rest % 60);
    let micros = d.subsec_micros();
    let clock = if micros == 0 {
        clock
    } else {
        format!("{clock}.{micros:06}")
    };
    match days {
        0 => clock,
        1 => format!("1 day, {clock}"),
        n => format!("{n} days, {clock}"),
    }
}

fn delta(d: Duration) -> Option<TimeDelta> {
    TimeDelta::from_std(d).ok()
}

/// The fire-time arithmetic a trigger timetable needs (Airflow's `_get_next`, `_align_to_next`,
/// `_align_to_prev`).
trait Steps {
    fn get_next(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>>;
    fn align_next(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>>;
    fn align_prev(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>>;
}

/// One cron of a trigger timetable, in its zone.
struct CronSteps<'a>(&'a CronSchedule, Tz);

impl Steps for CronSteps<'_> {
    fn get_next(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.0.after(t, self.1)
    }
    fn align_next(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.0.at_or_after(t, self.1)
    }
    fn align_prev(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.0.at_or_before(t, self.1)
    }
}

/// A delta's steps: any time is aligned.
struct DeltaSteps(TimeDelta);

impl Steps for DeltaSteps {
    fn get_next(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        t.checked_add_signed(self.0)
    }
    fn align_next(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        Some(t)
    }
    fn align_prev(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        Some(t)
    }
}

/// Airflow's `_TriggerTimetable.next_dagrun_info`; `first_run` is `_calc_first_run`.
fn trigger_next(
    steps: &dyn Steps,
    interval: TimeDelta,
    first_run: impl Fn() -> Option<DateTime<Utc>>,
    last: Option<&DataInterval>,
    r: &Restriction,
    now: DateTime<Utc>,
) -> Option<DataInterval> {
    let at = if r.catchup {
        match (last, r.earliest) {
            (Some(last), _) => steps.get_next(last.end)?,
            (None, None) => first_run()?,
            (None, Some(earliest)) => steps.align_next(earliest)?,
        }
    } else {
        let mut candidates = vec![steps.align_prev(now)];
        match last {
            Some(last) => candidates.push(steps.get_next(last.end)),
            // run_immediately counts only without a start_date.
            None if r.earliest.is_none() => candidates.push(first_run()),
            None => {}
        }
        if let Some(earliest) = r.earliest {
            candidates.push(steps.align_next(earliest));
        }
        candidates.into_iter().flatten().max()?
    };
    if r.latest.is_some_and(|latest| latest < at) {
        return None;
    }
    Some(DataInterval {
        start: at.checked_sub_signed(interval)?,
        end: at,
    })
}

/// `CronTriggerTimetable._calc_first_run`.
fn cron_first_run(
    steps: &CronSteps<'_>,
    run_immediately: RunImmediately,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let past = steps.align_prev(now)?;
    let next = steps.align_next(now)?;
    let buffer = match run_immediately {
        RunImmediately::Always => return Some(past),
        RunImmediately::Within(d) => delta(d)?,
        RunImmediately::Nearby => ((next - past) / 10).max(TimeDelta::minutes(5)),
    };
    Some(if now - past <= buffer { past } else { next })
}

impl CronTrigger {
    /// Airflow's `next_dagrun_info`: for several crons, each one's next run, the earliest with
    /// catchup; without, the latest one due by `now`, else the earliest to come.
    #[must_use]
    pub fn next_dagrun_info(
        &self,
        last: Option<&DataInterval>,
        r: &Restriction,
        now: DateTime<Utc>,
    ) -> Option<DataInterval> {
        let interval = delta(self.interval)?;
        let infos = self.crons.iter().filter_map(|cron| {
            let steps = CronSteps(cron, self.timezone);
            trigger_next(
                &steps,
                interval,
                || cron_first_run(&steps, self.run_immediately, now),
                last,
                r,
                now,
            )
        });
        if r.catchup {
            infos.min_by_key(|i| i.start)
        } else {
            // Past ones sort by their negated time (the latest first), future ones after them.
            infos.min_by_key(|i| {
                if i.start <= now {
                    (0, -i.start.timestamp_micros())
                } else {
                    (1, i.start.timestamp_micros())
                }
            })
        }
    }
}

impl DeltaTrigger {
    /// Airflow's `next_dagrun_info`; the first run without a `start_date` is now.
    #[must_use]
    pub fn next_dagrun_info(
        &self,
        last: Option<&DataInterval>,
        r: &Restriction,
        now: DateTime<Utc>,
    ) -> Option<DataInterval> {
        let steps = DeltaSteps(delta(self.delta)?);
        trigger_next(&steps, delta(self.interval)?, || Some(now), last, r, now)
    }
}

impl Events {
    /// Airflow's `next_dagrun_info`: the first event after the last run's, not before
    /// `start_date` and, without catchup, not before `now`.
    #[must_use]
    pub fn next_dagrun_info(
        &self,
        last: Option<&DataInterval>,
        r: &Restriction,
        now: DateTime<Utc>,
    ) -> Option<DataInterval> {
        let mut earliest = r.earliest;
        if !r.catchup && earliest.is_none_or(|e| now > e) {
            earliest = Some(now);
        }
        let event = self.dates.iter().copied().find(|event| {
            earliest.is_none_or(|e| *event >= e) && last.is_none_or(|l| *event > l.end)
        })?;
        if r.latest.is_some_and(|latest| event > latest) {
            return None;
        }
        Some(DataInterval {
            start: event,
            end: event,
        })
    }

    /// The latest event at or before `now` after the last run's and not before `start_date`:
    /// what Airflow, which works its next event out ahead of time, runs without catchup when
    /// its scheduler is on time.
    #[must_use]
    pub fn latest_due(
        &self,
        last: Option<&DataInterval>,
        r: &Restriction,
        now: DateTime<Utc>,
    ) -> Option<DataInterval> {
        let event = self.dates.iter().copied().rfind(|event| {
            *event <= now
                && r.earliest.is_none_or(|e| *event >= e)
                && r.latest.is_none_or(|l| *event <= l)
                && last.is_none_or(|l| *event > l.end)
        })?;
        Some(DataInterval {
            start: event,
            end: event,
        })
    }
}

/// `ContinuousTimetable.next_dagrun_info`: from the last run's end to now, one run at a time.
#[must_use]
pub fn continuous_next(
    last: Option<&DataInterval>,
    r: &Restriction,
    now: DateTime<Utc>,
) -> Option<DataInterval> {
    let start_date = r.earliest.unwrap_or(now);
    let (start, end) = match last {
        Some(last) if last.end > now => (start_date, start_date + (last.end - last.start)),
        Some(last) => (last.end, now),
        None => (start_date, start_date.max(now)),
    };
    if r.latest.is_some_and(|latest| end > latest) {
        return None;
    }
    Some(DataInterval { start, end })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn utc(d: u32, h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 1, d, h, m, 0).unwrap()
    }

    fn trigger(cron: &str, interval_h: u64, run_immediately: RunImmediately) -> CronTrigger {
        CronTrigger::new(
            &[cron.to_owned()],
            chrono_tz::UTC,
            Duration::from_secs(interval_h * 3600),
            run_immediately,
            false,
        )
        .unwrap()
    }

    fn restriction(earliest: Option<DateTime<Utc>>, catchup: bool) -> Restriction {
        Restriction {
            earliest,
            latest: None,
            catchup,
        }
    }

    #[test]
    fn a_cron_trigger_runs_at_its_fire_time_over_the_interval_before_it() {
        let t = trigger("0 1 * * *", 3, RunImmediately::Nearby);
        let first = t.next_dagrun_info(None, &restriction(Some(utc(1, 0, 0)), true), utc(5, 0, 0));
        assert_eq!(
            first,
            Some(DataInterval {
                start: utc(1, 1, 0) - TimeDelta::hours(3),
                end: utc(1, 1, 0)
            })
        );
        let second = t.next_dagrun_info(
            first.as_ref(),
            &restriction(Some(utc(1, 0, 0)), true),
            utc(5, 0, 0),
        );
        assert_eq!(second.map(|i| i.end), Some(utc(2, 1, 0)));
    }

    #[test]
    fn without_catchup_a_cron_trigger_skips_to_the_latest_fire_time() {
        let t = trigger("0 * * * *", 0, RunImmediately::Nearby);
        let r = restriction(Some(utc(1, 0, 0)), false);
        let next = t.next_dagrun_info(None, &r, utc(3, 5, 30));
        assert_eq!(next.map(|i| i.start), Some(utc(3, 5, 0)));
    }

    #[test]
    fn run_immediately_decides_the_first_run_without_a_start_date() {
        let r = restriction(None, true);
        let now = utc(3, 5, 20);
        let hourly = |ri| {
            trigger("0 * * * *", 0, ri)
                .next_dagrun_info(None, &r, now)
                .unwrap()
                .end
        };
        assert_eq!(hourly(RunImmediately::Always), utc(3, 5, 0));
        // Twenty minutes past is more than a tenth of the hour (and five minutes).
        assert_eq!(hourly(RunImmediately::Nearby), utc(3, 6, 0));
        assert_eq!(
            hourly(RunImmediately::Within(Duration::from_secs(1800))),
            utc(3, 5, 0)
        );
    }

    #[test]
    fn several_crons_run_at_each_ones_times_once() {
        let t = CronTrigger::new(
            &["0 1 * * *".to_owned(), "0 1,13 * * *".to_owned()],
            chrono_tz::UTC,
            Duration::ZERO,
            RunImmediately::Nearby,
            true,
        )
        .unwrap();
        let r = restriction(Some(utc(1, 0, 0)), true);
        let a = t.next_dagrun_info(None, &r, utc(9, 0, 0)).unwrap();
        let b = t.next_dagrun_info(Some(&a), &r, utc(9, 0, 0)).unwrap();
        let c = t.next_dagrun_info(Some(&b), &r, utc(9, 0, 0)).unwrap();
        assert_eq!(
            [a.end, b.end, c.end],
            [utc(1, 1, 0), utc(1, 13, 0), utc(2, 1, 0)]
        );
        assert_eq!(t.summary(), "0 1 * * *, 0 1,13 * * *");
    }

    #[test]
    fn events_run_once_each_in_order() {
        let e = Events::new(vec![utc(3, 0, 0), utc(1, 0, 0)], false, false, None);
        let r = restriction(None, true);
        let a = e.next_dagrun_info(None, &r, utc(9, 0, 0)).unwrap();
        let b = e.next_dagrun_info(Some(&a), &r, utc(9, 0, 0)).unwrap();
        assert_eq!(
            (a.start, a.end, b.start),
            (utc(1, 0, 0), utc(1, 0, 0), utc(3, 0, 0))
        );
        assert_eq!(e.next_dagrun_info(Some(&b), &r, utc(9, 0, 0)), None);
        assert_eq!(
            e.describe(),
            "2 events between 2024-01-01T00:00:00+00:00 and 2024-01-03T00:00:00+00:00"
        );
    }

    #[test]
    fn python_timedelta_text_matches_str_timedelta() {
        assert_eq!(python_timedelta(Duration::from_secs(3600)), "1:00:00");
        assert_eq!(
            python_timedelta(Duration::from_secs(93_600)),
            "1 day, 2:00:00"
        );
        assert_eq!(
            python_timedelta(Duration::from_secs(2 * 86_400 + 5)),
            "2 days, 0:00:05"
        );
        assert_eq!(python_timedelta(Duration::ZERO), "0:00:00");
    }
}
