//! Dates and timezones as DAG files write them: `2024-01-01`, RFC 3339, naive times in the DAG's
//! timezone, Python `datetime` keyword arguments, and dag-factory's relative start dates.

use chrono::{
    DateTime, Duration as TimeDelta, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, TimeZone,
    Utc,
};
use chrono_tz::Tz;

/// The forms a date may take, for error messages.
const FORMS: &str = "expected a date (2024-01-01), a time (2024-01-01 06:30 or 2024-01-01T06:30:00Z) or a relative start (\"2 days\")";

/// Why a text is not a date or timezone.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DateError {
    /// Not an IANA timezone name.
    #[error(
        "unknown timezone \"{name}\"; use an IANA name such as \"UTC\" or \"Europe/Amsterdam\""
    )]
    UnknownTimezone {
        /// The name.
        name: String,
    },
    /// None of the accepted forms.
    #[error("invalid date \"{text}\": {FORMS}")]
    Invalid {
        /// The text.
        text: String,
    },
    /// Fields that make no date, such as February 30th.
    #[error(
        "invalid date {year:04}-{month:02}-{day:02} {hour:02}:{minute:02}:{second:02}: no such day or time"
    )]
    NoSuchDate {
        /// Year.
        year: i32,
        /// Month.
        month: u32,
        /// Day.
        day: u32,
        /// Hour.
        hour: u32,
        /// Minute.
        minute: u32,
        /// Second.
        second: u32,
    },
    /// A relative start whose number is too large.
    #[error("relative start \"{text}\" reaches too far back")]
    TooFarBack {
        /// The text.
        text: String,
    },
}

/// A UTC time as Python's `datetime.isoformat()` writes an aware one, which is how Airflow
/// writes times into run ids and `AIRFLOW_CTX_LOGICAL_DATE`: microseconds only when there are
/// some (anything finer is cut), then `+00:00`.
#[must_use]
pub fn python_isoformat(at: DateTime<Utc>) -> String {
    use chrono::{SubsecRound, Timelike};
    let at = at.trunc_subsecs(6);
    if at.nanosecond() == 0 {
        at.format("%Y-%m-%dT%H:%M:%S+00:00").to_string()
    } else {
        at.format("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string()
    }
}

/// An IANA timezone by name.
pub fn parse_timezone(name: &str) -> Result<Tz, DateError> {
    name.trim().parse().map_err(|_| DateError::UnknownTimezone {
        name: name.to_owned(),
    })
}

/// A point in time. Texts without an offset are local times in `tz`: a time skipped by a DST
/// change means the first instant after the gap, a repeated one the earlier instant.
pub fn parse_datetime(text: &str, tz: Tz) -> Result<DateTime<Utc>, DateError> {
    let trimmed = text.trim();
    if let Ok(instant) = DateTime::parse_from_rfc3339(trimmed) {
        return Ok(instant.with_timezone(&Utc));
    }
    if let Ok(instant) = DateTime::parse_from_str(trimmed, "%Y-%m-%d %H:%M:%S%:z") {
        return Ok(instant.with_timezone(&Utc));
    }
    let naive = if let Ok(date) = NaiveDate::parse_from_str(trimmed, "%Y-%m-%d") {
        date.and_time(NaiveTime::MIN)
    } else {
        [
            "%Y-%m-%d %H:%M",
            "%Y-%m-%d %H:%M:%S",
            "%Y-%m-%dT%H:%M",
            "%Y-%m-%dT%H:%M:%S",
            "%Y-%m-%d %H:%M:%S%.f",
            "%Y-%m-%dT%H:%M:%S%.f",
        ]
        .iter()
        .find_map(|format| NaiveDateTime::parse_from_str(trimmed, format).ok())
        .ok_or_else(|| DateError::Invalid {
            text: text.to_owned(),
        })?
    };
    Ok(local_to_utc(naive, tz))
}

/// A local time in `tz` as an instant, resolving DST gaps forward and overlaps to the earlier.
#[must_use]
pub fn local_to_utc(naive: NaiveDateTime, tz: Tz) -> DateTime<Utc> {
    match tz.from_local_datetime(&naive) {
        LocalResult::Single(t) => t.with_timezone(&Utc),
        LocalResult::Ambiguous(earlier, _) => earlier.with_timezone(&Utc),
        LocalResult::None => {
            // In a gap: walk forward a minute at a time to the first local time that exists.
            let mut probe = naive;
            for _ in 0..(24 * 60) {
                probe += TimeDelta::minutes(1);
                if let Some(t) = tz.from_local_datetime(&probe).earliest() {
                    return t.with_timezone(&Utc);
                }
            }
            Utc.from_utc_datetime(&naive)
        }
    }
}

/// dag-factory's relative start dates: `"2 days"`, `"1 week"`, `"12 hours"`, `"30 minutes"`
/// mean that long before midnight of `now`'s day in `tz`, as dag-factory 1.1.0 counts them
/// (`12 hours` is noon of the day before). `Ok(None)` when the text is not of that shape.
pub fn parse_relative_start(
    text: &str,
    now: DateTime<Utc>,
    tz: Tz,
) -> Result<Option<DateTime<Utc>>, DateError> {
    let mut words = text.split_whitespace();
    let (Some(number), Some(unit), None) = (words.next(), words.next(), words.next()) else {
        return Ok(None);
    };
    let unit = unit.to_ascii_lowercase();
    let unit = unit.trim_end_matches('s');
    if !matches!(unit, "minute" | "hour" | "day" | "week") {
        return Ok(None);
    }
    let Ok(count) = number.parse::<i64>() else {
        return Err(DateError::Invalid {
            text: text.to_owned(),
        });
    };
    let too_far = || DateError::TooFarBack {
        text: text.to_owned(),
    };
    let back = match unit {
        "minute" => TimeDelta::try_minutes(count),
        "hour" => TimeDelta::try_hours(count),
        "day" => TimeDelta::try_days(count),
        _ => TimeDelta::try_weeks(count),
    }
    .ok_or_else(too_far)?;
    let today = now.with_timezone(&tz).date_naive();
    if matches!(unit, "day" | "week") {
        // Whole days move the calendar, so the start is a local midnight whatever DST does.
        let local_day = today.checked_sub_signed(back).ok_or_else(too_far)?;
        return Ok(Some(local_to_utc(local_day.and_time(NaiveTime::MIN), tz)));
    }
    let midnight = local_to_utc(today.and_time(NaiveTime::MIN), tz);
    midnight
        .checked_sub_signed(back)
        .map(Some)
        .ok_or_else(too_far)
}

/// Python's `datetime.datetime(...)` keyword arguments, as dag-factory files write them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DatetimeParts {
    /// Year.
    pub year: i32,
    /// Month, from 1.
    pub month: u32,
    /// Day, from 1.
    pub day: u32,
    /// Hour.
    pub hour: u32,
    /// Minute.
    pub minute: u32,
    /// Second.
    pub second: u32,
    /// Microsecond.
    pub microsecond: u32,
    /// A timezone name overriding the DAG's.
    pub tzinfo: Option<String>,
}

/// The instant a `datetime` with these arguments stands for, in `tz` unless it names its own.
pub fn datetime_from_parts(parts: &DatetimeParts, tz: Tz) -> Result<DateTime<Utc>, DateError> {
    let tz = match &parts.tzinfo {
        Some(name) => parse_timezone(name)?,
        None => tz,
    };
    let no_such = || DateError::NoSuchDate {
        year: parts.year,
        month: parts.month,
        day: parts.day,
        hour: parts.hour,
        minute: parts.minute,
        second: parts.second,
    };
    let date = NaiveDate::from_ymd_opt(parts.year, parts.month, parts.day).ok_or_else(no_such)?;
    let time =
        NaiveTime::from_hms_micro_opt(parts.hour, parts.minute, parts.second, parts.microsecond)
            .ok_or_else(no_such)?;
    Ok(local_to_utc(date.and_time(time), tz))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0)
            .single()
            .expect("a valid time")
    }

    #[test]
    fn dates_and_times_read_in_every_form() {
        let tz = chrono_tz::UTC;
        assert_eq!(
            parse_datetime("2024-01-01", tz).unwrap(),
            utc(2024, 1, 1, 0, 0)
        );
        assert_eq!(
            parse_datetime("2024-01-01 06:30", tz).unwrap(),
            utc(2024, 1, 1, 6, 30)
        );
        assert_eq!(
            parse_datetime("2024-01-01 06:30:00", tz).unwrap(),
            utc(2024, 1, 1, 6, 30)
        );
        assert_eq!(
            parse_datetime("2024-01-01T06:30:00", tz).unwrap(),
            utc(2024, 1, 1, 6, 30)
        );
        assert_eq!(
            parse_datetime("2024-01-01T06:30:00Z", tz).unwrap(),
            utc(2024, 1, 1, 6, 30)
        );
        assert_eq!(
            parse_datetime("2024-01-01T06:30:00+02:00", tz).unwrap(),
            utc(2024, 1, 1, 4, 30)
        );
        assert_eq!(
            parse_datetime("2024-01-01 06:30:00+02:00", tz).unwrap(),
            utc(2024, 1, 1, 4, 30)
        );
    }

    #[test]
    fn naive_times_are_local_to_the_timezone() {
        let ams = parse_timezone("Europe/Amsterdam").unwrap();
        assert_eq!(
            parse_datetime("2024-07-01", ams).unwrap(),
            utc(2024, 6, 30, 22, 0)
        );
        // 02:30 does not exist on 2024-03-31 in Amsterdam: the first instant after the gap.
        assert_eq!(
            parse_datetime("2024-03-31 02:30", ams).unwrap(),
            utc(2024, 3, 31, 1, 0)
        );
        // 02:30 happens twice on 2024-10-27: the earlier one.
        assert_eq!(
            parse_datetime("2024-10-27 02:30", ams).unwrap(),
            utc(2024, 10, 27, 0, 30)
        );
    }

    #[test]
    fn bad_dates_and_timezones_are_named() {
        assert_eq!(
            parse_datetime("yesterday-ish", chrono_tz::UTC)
                .unwrap_err()
                .to_string(),
            format!("invalid date \"yesterday-ish\": {FORMS}")
        );
        assert!(parse_datetime("2024-02-30", chrono_tz::UTC).is_err());
        assert_eq!(
            parse_timezone("Mars/Olympus").unwrap_err().to_string(),
            "unknown timezone \"Mars/Olympus\"; use an IANA name such as \"UTC\" or \"Europe/Amsterdam\""
        );
    }

    #[test]
    fn relative_starts_count_back_from_midnight_as_dag_factory_does() {
        let now = utc(2024, 3, 5, 14, 30);
        let tz = chrono_tz::UTC;
        assert_eq!(
            parse_relative_start("2 days", now, tz).unwrap(),
            Some(utc(2024, 3, 3, 0, 0))
        );
        assert_eq!(
            parse_relative_start("1 day", now, tz).unwrap(),
            Some(utc(2024, 3, 4, 0, 0))
        );
        assert_eq!(
            parse_relative_start("1 week", now, tz).unwrap(),
            Some(utc(2024, 2, 27, 0, 0))
        );
        // As dag-factory 1.1.0: back from today's midnight, not from now.
        assert_eq!(
            parse_relative_start("12 hours", now, tz).unwrap(),
            Some(utc(2024, 3, 4, 12, 0))
        );
        assert_eq!(
            parse_relative_start("30 minutes", now, tz).unwrap(),
            Some(utc(2024, 3, 4, 23, 30))
        );
        assert_eq!(parse_relative_start("2024-01-01", now, tz).unwrap(), None);
        assert!(parse_relative_start("many days", now, tz).is_err());
        assert!(parse_relative_start("999999999999 weeks", now, tz).is_err());
        let ams = parse_timezone("Europe/Amsterdam").unwrap();
        assert_eq!(
            parse_relative_start("1 day", now, ams).unwrap(),
            Some(utc(2024, 3, 3, 23, 0))
        );
    }

    #[test]
    fn python_datetimes_read_with_their_own_timezone() {
        let parts = DatetimeParts {
            year: 2024,
            month: 1,
            day: 2,
            hour: 3,
            ..DatetimeParts::default()
        };
        assert_eq!(
            datetime_from_parts(&parts, chrono_tz::UTC).unwrap(),
            utc(2024, 1, 2, 3, 0)
        );
        let tokyo = DatetimeParts {
            tzinfo: Some("Asia/Tokyo".into()),
            ..parts.clone()
        };
        assert_eq!(
            datetime_from_parts(&tokyo, chrono_tz::UTC).unwrap(),
            utc(2024, 1, 1, 18, 0)
        );
        let bad = DatetimeParts {
            month: 2,
            day: 30,
            ..parts
        };
        assert!(matches!(
            datetime_from_parts(&bad, chrono_tz::UTC),
            Err(DateError::NoSuchDate { .. })
        ));
    }

    proptest! {
        #[test]
        fn parsing_never_panics(text in "\\PC{0,40}") {
            let now = utc(2024, 3, 5, 14, 30);
            let _ = parse_datetime(&text, chrono_tz::UTC);
            let _ = parse_relative_start(&text, now, chrono_tz::UTC);
            let _ = parse_timezone(&text);
        }
    }
}
