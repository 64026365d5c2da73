//! Schedules: when a DAG's runs are due, and the data interval each run covers.
//!
//! Cron expressions are evaluated in the DAG's local wall-clock time (croner), DST-aware: a fixed
//! time inside a spring-forward gap fires at the end of the gap, and a wall-clock time that a
//! fall-back repeats fires once, at its first occurrence. So an hourly job skips the repeated
//! hour: its data interval across the change is two real hours long, and no data is missed.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Timelike, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::duration::{format_duration, parse_duration};
use crate::timetable_objects::{
    CronTrigger, DeltaTrigger, Events, Restriction, continuous_next, python_timedelta,
};

/// When a DAG runs.
#[derive(Debug, Clone, PartialEq)]
pub enum Schedule {
    /// Only when triggered.
    Manual,
    /// One run, for the interval starting at `start_date`.
    Once,
    /// On a cron expression (boxed: a parsed expression is large beside the other variants).
    Cron(Box<CronSchedule>),
    /// Every fixed interval from `start_date`.
    Interval(Duration),
    /// Airflow's `CronTriggerTimetable` or `MultipleCronTriggerTimetable`: a run at each fire
    /// time, its logical date the fire time less the timetable's `interval`.
    CronTrigger(Box<CronTrigger>),
    /// Airflow's `DeltaTriggerTimetable`: a run every `delta`.
    DeltaTrigger(DeltaTrigger),
    /// Airflow's `EventsTimetable`: a run at each listed time.
    Events(Box<Events>),
    /// `@continuous`: one run at a time, the next as soon as the last ends.
    Continuous,
}

/// What a cron string or a timedelta written as a DAG's schedule means: Airflow's `[scheduler]
/// create_cron_data_intervals` and `create_delta_data_intervals`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScheduleDefaults {
    /// A cron string is a `CronDataIntervalTimetable` (else a `CronTriggerTimetable`).
    pub cron_data_intervals: bool,
    /// A timedelta is a `DeltaDataIntervalTimetable` (else a `DeltaTriggerTimetable`).
    pub delta_data_intervals: bool,
}

impl Default for ScheduleDefaults {
    /// Both `true`: data intervals, as Gust has always read schedules (Airflow 3's defaults
    /// are `false`).
    fn default() -> Self {
        Self {
            cron_data_intervals: true,
            delta_data_intervals: true,
        }
    }
}

impl Schedule {
    /// A schedule string's or timedelta's meaning under `defaults`, its cron read in the DAG's
    /// `tz`; timetable objects and the rest are kept.
    #[must_use]
    pub fn with_defaults(self, defaults: ScheduleDefaults, tz: Tz) -> Schedule {
        match self {
            Schedule::Cron(cron) if !defaults.cron_data_intervals && cron.timezone.is_none() => {
                Schedule::CronTrigger(Box::new(CronTrigger {
                    crons: vec![*cron],
                    timezone: tz,
                    interval: Duration::ZERO,
                    run_immediately: crate::timetable_objects::RunImmediately::Nearby,
                    multiple: false,
                }))
            }
            Schedule::Interval(delta) if !defaults.delta_data_intervals => {
                Schedule::DeltaTrigger(DeltaTrigger {
                    delta,
                    interval: Duration::ZERO,
                })
            }
            other => other,
        }
    }
}

/// A parsed five-field cron expression and the text it was written as.
#[derive(Clone)]
pub struct CronSchedule {
    /// As written: a preset (`@daily`) or the expression.
    text: String,
    cron: Cron,
    /// The zone of a `CronDataIntervalTimetable` written with its own; `None` reads the cron in
    /// the DAG's zone, as a schedule string is.
    timezone: Option<Tz>,
}

impl CronSchedule {
    /// A preset or five-field cron expression.
    pub fn parse(text: &str) -> Result<Self, ScheduleError> {
        let trimmed = text.trim();
        let expr = if trimmed.starts_with('@') {
            PRESETS
                .iter()
                .find(|(name, _)| *name == trimmed)
                .map(|(_, expr)| *expr)
                .ok_or_else(|| ScheduleError::Preset {
                    text: trimmed.to_owned(),
                })?
        } else {
            let fields = trimmed.split_whitespace().count();
            if fields > 5 {
                return Err(ScheduleError::FieldCount {
                    text: trimmed.to_owned(),
                    fields,
                });
            }
            trimmed
        };
        Ok(CronSchedule {
            text: trimmed.to_owned(),
            cron: compile(expr)?,
            timezone: None,
        })
    }

    /// The same cron read in `timezone` rather than the DAG's.
    #[must_use]
    pub fn in_timezone(mut self, timezone: Tz) -> Self {
        self.timezone = Some(timezone);
        self
    }

    /// The zone this cron was written with, if not the DAG's.
    #[must_use]
    pub fn timezone(&self) -> Option<Tz> {
        self.timezone
    }

    /// The schedule as written.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The expression, a preset spelled out (Airflow's summary of a cron timetable).
    #[must_use]
    pub fn expression(&self) -> String {
        PRESETS
            .iter()
            .find(|(name, _)| *name == self.text)
            .map_or_else(|| self.text.clone(), |(_, expr)| (*expr).to_owned())
    }

    /// The first fire time strictly after `t`.
    pub(crate) fn after(&self, t: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        next(&self.cron, whole_seconds(t), tz, false)
    }

    /// The first fire time at or after `t`.
    pub(crate) fn at_or_after(&self, t: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        // A time between seconds is no fire time: search from its second, exclusively.
        next(&self.cron, whole_seconds(t), tz, t.nanosecond() == 0)
    }

    /// The latest fire time at or before `t`.
    pub(crate) fn at_or_before(&self, t: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        prev(&self.cron, whole_seconds(t), tz, true)
    }
}

impl fmt::Debug for CronSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("CronSchedule").field(&self.text).finish()
    }
}

impl PartialEq for CronSchedule {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text && self.timezone == other.timezone
    }
}

/// Why a text is not a schedule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// A cron expression croner refuses.
    #[error("invalid cron expression \"{text}\": {reason}")]
    Cron {
        /// The expression.
        text: String,
        /// Why.
        reason: String,
    },
    /// Six or seven fields: seconds and years are not part of Airflow's cron.
    #[error(
        "cron expression \"{text}\" has {fields} fields; use five (minute hour day month weekday)"
    )]
    FieldCount {
        /// The expression.
        text: String,
        /// How many fields it has.
        fields: usize,
    },
    /// An unknown `@` preset.
    #[error("unknown preset \"{text}\"; use @once, @hourly, @daily, @weekly, @monthly or @yearly")]
    Preset {
        /// The preset.
        text: String,
    },
    /// A zero-length interval.
    #[error("interval \"{text}\" is zero; an interval schedule must be longer")]
    ZeroInterval {
        /// The interval as written.
        text: String,
    },
    /// A `MultipleCronTriggerTimetable` without crons.
    #[error("a MultipleCronTriggerTimetable needs at least one cron expression")]
    NoCron,
    /// None of the accepted forms.
    #[error(
        "invalid schedule \"{text}\": expected a cron expression (\"0 3 * * *\"), a preset (@daily), a duration (1h) or null"
    )]
    Invalid {
        /// The text.
        text: String,
    },
}

/// Airflow's presets and the cron expressions they stand for.
const PRESETS: &[(&str, &str)] = &[
    ("@hourly", "0 * * * *"),
    ("@daily", "0 0 * * *"),
    ("@midnight", "0 0 * * *"),
    ("@weekly", "0 0 * * 0"),
    ("@monthly", "0 0 1 * *"),
    ("@yearly", "0 0 1 1 *"),
    ("@annually", "0 0 1 1 *"),
];

impl Schedule {
    /// Reads a schedule: a preset, `@once`, `null`/`None`, five-field cron, or a duration.
    pub fn parse(text: &str) -> Result<Schedule, ScheduleError> {
        let trimmed = text.trim();
        match trimmed {
            "" | "null" | "None" | "none" => return Ok(Schedule::Manual),
            "@once" => return Ok(Schedule::Once),
            _ => {}
        }
        if trimmed == "@continuous" {
            return Ok(Schedule::Continuous);
        }
        if trimmed.starts_with('@') || trimmed.split_whitespace().count() >= 5 {
            return Ok(Schedule::Cron(Box::new(CronSchedule::parse(trimmed)?)));
        }
        match parse_duration(trimmed) {
            Ok(d) if d.is_zero() => Err(ScheduleError::ZeroInterval {
                text: trimmed.to_owned(),
            }),
            Ok(d) => Ok(Schedule::Interval(d)),
            Err(_) => Err(ScheduleError::Invalid {
                text: text.to_owned(),
            }),
        }
    }

    /// A schedule every `every` from `start_date` (Airflow's `timedelta` schedule).
    pub fn interval(every: Duration) -> Result<Schedule, ScheduleError> {
        if every.is_zero() {
            return Err(ScheduleError::ZeroInterval {
                text: format_duration(every),
            });
        }
        Ok(Schedule::Interval(every))
    }

    /// The schedule as shown to users: the preset or expression, `@once`, `None` or the interval.
    #[must_use]
    pub fn as_text(&self) -> String {
        match self {
            Schedule::Manual => "None".to_owned(),
            Schedule::Once => "@once".to_owned(),
            Schedule::Cron(cron) => cron.text.clone(),
            Schedule::Interval(d) => format_duration(*d),
            Schedule::CronTrigger(t) => t.summary(),
            Schedule::DeltaTrigger(t) => python_timedelta(t.delta),
            Schedule::Events(e) => e.summary(),
            Schedule::Continuous => "@continuous".to_owned(),
        }
    }

    /// For cron schedules, the first fire time strictly after `after`, evaluated in `tz`.
    #[must_use]
    pub fn next_fire_after(&self, after: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        match self {
            Schedule::Cron(cron) => cron.after(after, cron.timezone.unwrap_or(tz)),
            _ => None,
        }
    }

    /// For cron schedules, the latest fire time at or before `at`, evaluated in `tz`.
    #[must_use]
    pub fn prev_fire_at_or_before(&self, at: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        match self {
            Schedule::Cron(cron) => cron.at_or_before(at, cron.timezone.unwrap_or(tz)),
            _ => None,
        }
    }

    /// Whether a run of this schedule would have `at` as its logical date: a cron fire time, a
    /// whole number of intervals from `start_date`, or `start_date` itself for `@once`. A manual
    /// schedule has no such dates.
    #[must_use]
    pub fn fires_at(&self, at: DateTime<Utc>, start_date: DateTime<Utc>, tz: Tz) -> bool {
        match self {
            Schedule::Manual => false,
            Schedule::Once => at == start_date,
            Schedule::Cron(_) => self.prev_fire_at_or_before(at, tz) == Some(at),
            Schedule::Interval(every) => whole_steps(*every, start_date, at),
            Schedule::CronTrigger(t) => chrono::Duration::from_std(t.interval)
                .ok()
                .and_then(|interval| at.checked_add_signed(interval))
                .is_some_and(|fire| {
                    t.crons
                        .iter()
                        .any(|c| c.at_or_before(fire, t.timezone) == Some(fire))
                }),
            Schedule::DeltaTrigger(t) => chrono::Duration::from_std(t.interval)
                .ok()
                .and_then(|interval| at.checked_add_signed(interval))
                .is_some_and(|fire| whole_steps(t.delta, start_date, fire)),
            Schedule::Events(e) => e.dates.contains(&at),
            // A continuous run's logical date is whenever the one before it ended.
            Schedule::Continuous => false,
        }
    }

    /// Airflow's `next_dagrun_info` for the timetable objects: the run after `last` within `r`,
    /// as of `now` (the data-interval schedules and `@once` take `r.earliest` as their start and
    /// ignore `now`; `@continuous` has no next run without `now`).
    #[must_use]
    pub fn next_dagrun_info(
        &self,
        last: Option<&DataInterval>,
        r: &Restriction,
        now: DateTime<Utc>,
        tz: Tz,
    ) -> Option<DataInterval> {
        match self {
            Schedule::CronTrigger(t) => t.next_dagrun_info(last, r, now),
            Schedule::DeltaTrigger(t) => t.next_dagrun_info(last, r, now),
            Schedule::Events(e) => e.next_dagrun_info(last, r, now),
            Schedule::Continuous => continuous_next(last, r, now),
            Schedule::Manual | Schedule::Once | Schedule::Cron(_) | Schedule::Interval(_) => self
                .next_data_interval(last, r.earliest.unwrap_or(now), tz)
                .filter(|i| r.latest.is_none_or(|end| i.start <= end)),
        }
    }

    /// The data interval of the run after `last` (or the first run, from `start_date`), with
    /// Airflow's semantics. Catchup, `end_date` and "has it ended yet" are the caller's to decide.
    #[must_use]
    pub fn next_data_interval(
        &self,
        last: Option<&DataInterval>,
        start_date: DateTime<Utc>,
        tz: Tz,
    ) -> Option<DataInterval> {
        match self {
            Schedule::Manual => None,
            Schedule::Once => last.is_none().then_some(DataInterval {
                start: start_date,
                end: start_date,
            }),
            Schedule::Interval(d) => {
                let start = last.map_or(start_date, |l| l.end);
                let step = chrono::Duration::from_std(*d).ok()?;
                Some(DataInterval {
                    start,
                    end: start.checked_add_signed(step)?,
                })
            }
            Schedule::Cron(cron) => {
                let tz = cron.timezone.unwrap_or(tz);
                let start = match last {
                    Some(l) => l.end,
                    None => cron.at_or_after(start_date, tz)?,
                };
                let end = cron.after(start, tz)?;
                Some(DataInterval { start, end })
            }
            // The timetable objects' next run as a catchup DAG from `start_date` has it.
            Schedule::CronTrigger(_) | Schedule::DeltaTrigger(_) | Schedule::Events(_) => {
                let r = Restriction {
                    earliest: Some(start_date),
                    latest: None,
                    catchup: true,
                };
                self.next_dagrun_info(last, &r, start_date, tz)
            }
            Schedule::Continuous => None,
        }
    }

    /// Whether runs of this schedule follow one another without gaps, each covering the time
    /// since the last (Airflow's `periodic`).
    #[must_use]
    pub fn is_periodic(&self) -> bool {
        !matches!(
            self,
            Schedule::Manual | Schedule::Once | Schedule::Continuous
        )
    }
}

/// Whether `at` is a whole number of `every` from `start`.
fn whole_steps(every: Duration, start: DateTime<Utc>, at: DateTime<Utc>) -> bool {
    let every = i64::try_from(every.as_millis()).unwrap_or(i64::MAX);
    let since = (at - start).num_milliseconds();
    every > 0 && since >= 0 && since % every == 0
}

mod form;
use form::TimetableForm;

/// Each cron field's name and range, for messages that name the field at fault.
const FIELDS: [(&str, u32, u32); 5] = [
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day of month", 1, 31),
    ("month", 1, 12),
    ("day of week", 0, 7),
];

/// Finds a number outside its field's range, which croner reports without naming the field.
fn check_ranges(expr: &str) -> Result<(), ScheduleError> {
    for (field, (name, low, high)) in expr.split_whitespace().zip(FIELDS) {
        for part in field.split(',') {
            // A step (`*/15`) is a count, not a value of the field.
            let values = part.split('/').next().unwrap_or_default();
            for value in values.split('-').filter_map(|v| v.parse::<u32>().ok()) {
                if !(low..=high).contains(&value) {
                    return Err(ScheduleError::Cron {
                        text: expr.to_owned(),
                        reason: format!("{name} {value} is outside {low}-{high}"),
                    });
                }
            }
        }
    }
    Ok(())
}

fn compile(expr: &str) -> Result<Cron, ScheduleError> {
    check_ranges(expr)?;
    CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .build()
        .parse(expr)
        .map_err(|err| ScheduleError::Cron {
            text: expr.to_owned(),
            reason: err.to_string().trim_end_matches('.').to_lowercase(),
        })
}

fn next(cron: &Cron, from: DateTime<Utc>, tz: Tz, inclusive: bool) -> Option<DateTime<Utc>> {
    cron.find_next_occurrence(&from.with_timezone(&tz), inclusive)
        .ok()
        .map(|t| whole_seconds(t.with_timezone(&Utc)))
}

fn prev(cron: &Cron, from: DateTime<Utc>, tz: Tz, inclusive: bool) -> Option<DateTime<Utc>> {
    cron.find_previous_occurrence(&from.with_timezone(&tz), inclusive)
        .ok()
        .map(|t| whole_seconds(t.with_timezone(&Utc)))
}

/// A fire time on its whole second: croner keeps the sub-second part of the time it searched
/// from, which would leak the clock's nanoseconds into logical dates and run ids.
fn whole_seconds(t: DateTime<Utc>) -> DateTime<Utc> {
    t.with_nanosecond(0).unwrap_or(t)
}

impl FromStr for Schedule {
    type Err = ScheduleError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Schedule::parse(text)
    }
}

impl Serialize for Schedule {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match TimetableForm::of(self) {
            Some(form) => form.serialize(serializer),
            None => serializer.serialize_str(&self.as_text()),
        }
    }
}

impl<'de> Deserialize<'de> for Schedule {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Stored {
            Text(String),
            Timetable(TimetableForm),
        }
        match Stored::deserialize(deserializer)? {
            Stored::Text(text) => Schedule::parse(&text).map_err(serde::de::Error::custom),
            Stored::Timetable(form) => form.into_schedule().map_err(serde::de::Error::custom),
        }
    }
}

/// The span of data a run covers: `[start, end)`; a run's logical date is its start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataInterval {
    /// Inclusive start: the run's logical date.
    pub start: DateTime<Utc>,
    /// Exclusive end: the run is due once this has passed.
    pub end: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0)
            .single()
            .expect("a valid time")
    }

    fn tz(name: &str) -> Tz {
        name.parse().expect("a timezone")
    }

    #[test]
    fn a_schedule_fires_at_its_own_dates_only() {
        let start = utc(2026, 1, 1, 0, 0);
        let daily = Schedule::parse("@daily").unwrap();
        assert!(daily.fires_at(utc(2026, 1, 3, 0, 0), start, chrono_tz::UTC));
        assert!(!daily.fires_at(utc(2026, 1, 3, 0, 1), start, chrono_tz::UTC));
        let hourly = Schedule::interval(std::time::Duration::from_secs(3600)).unwrap();
        assert!(hourly.fires_at(utc(2026, 1, 1, 5, 0), start, chrono_tz::UTC));
        assert!(!hourly.fires_at(utc(2026, 1, 1, 5, 30), start, chrono_tz::UTC));
        assert!(!hourly.fires_at(utc(2025, 12, 31, 23, 0), start, chrono_tz::UTC));
        assert!(Schedule::Once.fires_at(start, start, chrono_tz::UTC));
        assert!(!Schedule::Manual.fires_at(start, start, chrono_tz::UTC));
    }

    #[test]
    fn fire_times_are_whole_seconds_whatever_the_clock_reads() {
        let cron = Schedule::parse("0 2 * * *").unwrap();
        let now = utc(2026, 11, 26, 2, 47) + chrono::TimeDelta::nanoseconds(982_375_472);
        assert_eq!(
            cron.prev_fire_at_or_before(now, chrono_tz::UTC),
            Some(utc(2026, 11, 26, 2, 0))
        );
        assert_eq!(
            cron.next_fire_after(now, chrono_tz::UTC),
            Some(utc(2026, 11, 27, 2, 0))
        );
    }

    #[test]
    fn presets_none_once_and_durations_parse() {
        assert_eq!(Schedule::parse("@daily").unwrap().as_text(), "@daily");
        assert_eq!(Schedule::parse("None").unwrap(), Schedule::Manual);
        assert_eq!(Schedule::parse("@once").unwrap(), Schedule::Once);
        assert_eq!(
            Schedule::parse("1h").unwrap(),
            Schedule::Interval(Duration::from_secs(3600))
        );
        assert_eq!(Schedule::parse("PT30M").unwrap().as_text(), "30m");
        let daily = Schedule::parse("@daily").unwrap();
        assert_eq!(
            daily.next_fire_after(utc(2024, 1, 1, 0, 0), chrono_tz::UTC),
            Some(utc(2024, 1, 2, 0, 0))
        );
    }

    #[test]
    fn cron_ranges_steps_and_names_parse() {
        let s = Schedule::parse("*/15 9-17 * JAN-MAR MON-FRI").unwrap();
        // Monday 2024-01-01 09:50 -> 10:00.
        assert_eq!(
            s.next_fire_after(utc(2024, 1, 1, 9, 50), chrono_tz::UTC),
            Some(utc(2024, 1, 1, 10, 0))
        );
        // Friday 17:45 -> Monday 09:00.
        assert_eq!(
            s.next_fire_after(utc(2024, 1, 5, 17, 45), chrono_tz::UTC),
            Some(utc(2024, 1, 8, 9, 0))
        );
    }

    #[test]
    fn invalid_schedules_say_what_is_accepted() {
        assert_eq!(
            Schedule::parse("61 * * * *").unwrap_err().to_string(),
            "invalid cron expression \"61 * * * *\": minute 61 is outside 0-59"
        );
        assert!(matches!(
            Schedule::parse("0 0 * * FOO"),
            Err(ScheduleError::Cron { .. })
        ));
        assert_eq!(
            Schedule::parse("0 0 * * * *").unwrap_err().to_string(),
            "cron expression \"0 0 * * * *\" has 6 fields; use five (minute hour day month weekday)"
        );
        assert_eq!(
            Schedule::parse("@fortnightly").unwrap_err().to_string(),
            "unknown preset \"@fortnightly\"; use @once, @hourly, @daily, @weekly, @monthly or @yearly"
        );
        assert_eq!(
            Schedule::parse("every tuesday").unwrap_err().to_string(),
            "invalid schedule \"every tuesday\": expected a cron expression (\"0 3 * * *\"), a preset (@daily), a duration (1h) or null"
        );
        assert!(matches!(
            Schedule::parse("0s"),
            Err(ScheduleError::ZeroInterval { .. })
        ));
    }

    #[test]
    fn cron_follows_the_timezone_across_dst() {
        let ams = tz("Europe/Amsterdam");
        let daily_3am = Schedule::parse("0 3 * * *").unwrap();
        // 03:00 CET is 02:00 UTC in winter, 03:00 CEST is 01:00 UTC in summer.
        assert_eq!(
            daily_3am.next_fire_after(utc(2024, 3, 30, 12, 0), ams),
            Some(utc(2024, 3, 31, 1, 0))
        );
        assert_eq!(
            daily_3am.next_fire_after(utc(2024, 3, 29, 12, 0), ams),
            Some(utc(2024, 3, 30, 2, 0))
        );
        // 02:30 does not exist on 2024-03-31: the job runs at the end of the gap (03:00 CEST).
        let gap = Schedule::parse("30 2 * * *").unwrap();
        assert_eq!(
            gap.next_fire_after(utc(2024, 3, 30, 12, 0), ams),
            Some(utc(2024, 3, 31, 1, 0))
        );
        // 02:30 happens twice on 2024-10-27: the job runs once.
        let fires: Vec<_> =
            std::iter::successors(gap.next_fire_after(utc(2024, 10, 26, 12, 0), ams), |t| {
                gap.next_fire_after(*t, ams)
            })
            .take(2)
            .collect();
        assert_eq!(fires, [utc(2024, 10, 27, 0, 30), utc(2024, 10, 28, 1, 30)]);
    }

    #[test]
    fn hourly_cron_fires_once_per_wall_clock_hour_across_fall_back() {
        let ny = tz("America/New_York");
        let hourly = Schedule::parse("0 * * * *").unwrap();
        let fires: Vec<_> =
            std::iter::successors(hourly.next_fire_after(utc(2024, 11, 3, 4, 30), ny), |t| {
                hourly.next_fire_after(*t, ny)
            })
            .take(3)
            .collect();
        // 01:00 EDT (05:00Z), then 02:00 EST (07:00Z): the repeated 01:00 (EST) does not fire again.
        assert_eq!(
            fires,
            [
                utc(2024, 11, 3, 5, 0),
                utc(2024, 11, 3, 7, 0),
                utc(2024, 11, 3, 8, 0)
            ]
        );
    }

    #[test]
    fn data_intervals_chain_from_the_start_date() {
        let daily = Schedule::parse("@daily").unwrap();
        let first = daily
            .next_data_interval(None, utc(2024, 1, 1, 6, 0), chrono_tz::UTC)
            .unwrap();
        assert_eq!(
            first,
            DataInterval {
                start: utc(2024, 1, 2, 0, 0),
                end: utc(2024, 1, 3, 0, 0)
            }
        );
        let second = daily
            .next_data_interval(Some(&first), utc(2024, 1, 1, 6, 0), chrono_tz::UTC)
            .unwrap();
        assert_eq!(second.start, first.end);
        let aligned = daily
            .next_data_interval(None, utc(2024, 1, 1, 0, 0), chrono_tz::UTC)
            .unwrap();
        assert_eq!(aligned.start, utc(2024, 1, 1, 0, 0));

        let every_6h = Schedule::parse("6h").unwrap();
        let first = every_6h
            .next_data_interval(None, utc(2024, 1, 1, 1, 0), chrono_tz::UTC)
            .unwrap();
        assert_eq!(
            first,
            DataInterval {
                start: utc(2024, 1, 1, 1, 0),
                end: utc(2024, 1, 1, 7, 0)
            }
        );
        assert_eq!(
            every_6h
                .next_data_interval(Some(&first), utc(2024, 1, 1, 1, 0), chrono_tz::UTC)
                .unwrap()
                .start,
            first.end
        );

        let once = Schedule::Once;
        let only = once
            .next_data_interval(None, utc(2024, 1, 1, 0, 0), chrono_tz::UTC)
            .unwrap();
        assert_eq!(
            once.next_data_interval(Some(&only), utc(2024, 1, 1, 0, 0), chrono_tz::UTC),
            None
        );
        assert_eq!(
            Schedule::Manual.next_data_interval(None, utc(2024, 1, 1, 0, 0), chrono_tz::UTC),
            None
        );
    }

    #[test]
    fn schedules_serialize_as_their_text_and_read_back() {
        for text in ["@daily", "0 3 * * MON", "None", "@once", "30m"] {
            let s = Schedule::parse(text).unwrap();
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(
                serde_json::from_str::<Schedule>(&json).unwrap(),
                s,
                "{text}"
            );
        }
    }

    proptest! {
        #[test]
        fn parsing_never_panics(text in "\\PC{0,40}") {
            if let Ok(s) = Schedule::parse(&text) {
                let _ = s.next_fire_after(utc(2024, 1, 1, 0, 0), chrono_tz::UTC);
            }
        }

        #[test]
        fn cron_like_text_never_panics(parts in proptest::collection::vec("[0-9*/,\\-LW#?A-Z]{1,6}", 5)) {
            if let Ok(s) = Schedule::parse(&parts.join(" ")) {
                let _ = s.next_fire_after(utc(2024, 1, 1, 0, 0), chrono_tz::UTC);
            }
        }
    }
}
