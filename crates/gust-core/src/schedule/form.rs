//! How a timetable object is stored with its DAG: the dag-factory shape (`__type__` naming
//! Airflow's class), with durations in seconds as Airflow serializes them. Schedule strings
//! are stored as their text, as before timetable objects existed.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{CronSchedule, Schedule, ScheduleError};
use crate::timetable_objects::{CronTrigger, DeltaTrigger, Events, RunImmediately};

/// A timetable object as stored.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "__type__", deny_unknown_fields)]
pub(super) enum TimetableForm {
    #[serde(rename = "airflow.timetables.trigger.CronTriggerTimetable")]
    CronTrigger {
        cron: String,
        timezone: String,
        interval: f64,
        run_immediately: RunImmediatelyForm,
    },
    #[serde(rename = "airflow.timetables.trigger.MultipleCronTriggerTimetable")]
    MultipleCronTrigger {
        crons: Vec<String>,
        timezone: String,
        interval: f64,
        run_immediately: RunImmediatelyForm,
    },
    #[serde(rename = "airflow.timetables.trigger.DeltaTriggerTimetable")]
    DeltaTrigger { delta: f64, interval: f64 },
    #[serde(rename = "airflow.timetables.interval.CronDataIntervalTimetable")]
    CronDataInterval { cron: String, timezone: String },
    #[serde(rename = "airflow.timetables.events.EventsTimetable")]
    Events {
        event_dates: Vec<DateTime<Utc>>,
        restrict_to_events: bool,
        presorted: bool,
        description: Option<String>,
    },
}

/// `run_immediately` as Airflow serializes it: a flag, or a number of seconds.
#[derive(Debug, Serialize, Deserialize)]
#[serde(untagged)]
pub(super) enum RunImmediatelyForm {
    Flag(bool),
    Seconds(f64),
}

impl From<RunImmediately> for RunImmediatelyForm {
    fn from(value: RunImmediately) -> Self {
        match value {
            RunImmediately::Always => Self::Flag(true),
            RunImmediately::Nearby => Self::Flag(false),
            RunImmediately::Within(d) => Self::Seconds(d.as_secs_f64()),
        }
    }
}

fn seconds(value: f64) -> Result<Duration, ScheduleError> {
    Duration::try_from_secs_f64(value).map_err(|_| ScheduleError::Invalid {
        text: value.to_string(),
    })
}

fn timezone(name: &str) -> Result<chrono_tz::Tz, ScheduleError> {
    crate::date::parse_timezone(name).map_err(|_| ScheduleError::Invalid {
        text: name.to_owned(),
    })
}

impl RunImmediatelyForm {
    fn into_value(self) -> Result<RunImmediately, ScheduleError> {
        Ok(match self {
            Self::Flag(true) => RunImmediately::Always,
            Self::Flag(false) => RunImmediately::Nearby,
            Self::Seconds(s) => RunImmediately::Within(seconds(s)?),
        })
    }
}

impl TimetableForm {
    /// The stored form of a timetable object; `None` for a schedule stored as its text.
    pub(super) fn of(schedule: &Schedule) -> Option<Self> {
        Some(match schedule {
            Schedule::Manual | Schedule::Once | Schedule::Interval(_) | Schedule::Continuous => {
                return None;
            }
            Schedule::Cron(cron) => Self::CronDataInterval {
                cron: cron.as_str().to_owned(),
                timezone: cron.timezone()?.name().to_owned(),
            },
            Schedule::CronTrigger(t) if t.multiple => Self::MultipleCronTrigger {
                crons: t.crons.iter().map(|c| c.as_str().to_owned()).collect(),
                timezone: t.timezone.name().to_owned(),
                interval: t.interval.as_secs_f64(),
                run_immediately: t.run_immediately.into(),
            },
            Schedule::CronTrigger(t) => Self::CronTrigger {
                cron: t.crons.first()?.as_str().to_owned(),
                timezone: t.timezone.name().to_owned(),
                interval: t.interval.as_secs_f64(),
                run_immediately: t.run_immediately.into(),
            },
            Schedule::DeltaTrigger(t) => Self::DeltaTrigger {
                delta: t.delta.as_secs_f64(),
                interval: t.interval.as_secs_f64(),
            },
            Schedule::Events(e) => Self::Events {
                event_dates: e.dates.clone(),
                restrict_to_events: e.restrict_to_events,
                presorted: e.presorted,
                description: e.description.clone(),
            },
        })
    }

    /// The schedule stored in this form.
    pub(super) fn into_schedule(self) -> Result<Schedule, ScheduleError> {
        Ok(match self {
            Self::CronTrigger {
                cron,
                timezone: tz,
                interval,
                run_immediately,
            } => Schedule::CronTrigger(Box::new(CronTrigger::new(
                &[cron],
                timezone(&tz)?,
                seconds(interval)?,
                run_immediately.into_value()?,
                false,
            )?)),
            Self::MultipleCronTrigger {
                crons,
                timezone: tz,
                interval,
                run_immediately,
            } => Schedule::CronTrigger(Box::new(CronTrigger::new(
                &crons,
                timezone(&tz)?,
                seconds(interval)?,
                run_immediately.into_value()?,
                true,
            )?)),
            Self::DeltaTrigger { delta, interval } => Schedule::DeltaTrigger(DeltaTrigger {
                delta: seconds(delta)?,
                interval: seconds(interval)?,
            }),
            Self::CronDataInterval { cron, timezone: tz } => Schedule::Cron(Box::new(
                CronSchedule::parse(&cron)?.in_timezone(timezone(&tz)?),
            )),
            Self::Events {
                event_dates,
                restrict_to_events,
                presorted,
                description,
            } => Schedule::Events(Box::new(Events::new(
                event_dates,
                restrict_to_events,
                presorted,
                description,
            ))),
        })
    }
}
