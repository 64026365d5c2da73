//! Date arithmetic as Airflow's templates write it without operators: pendulum's `add`,
//! `subtract`, `start_of` and `end_of` on the context's dates (Airflow's are pendulum
//! `DateTime`s), and Python's `replace` on every datetime.
//!
//! minijinja has no `+`/`-` between objects (mitsuhiko/minijinja#721), so
//! `logical_date - macros.timedelta(days=1)` cannot work; `logical_date.subtract(days=1)` is
//! the same thing in Airflow's own syntax and renders the same there. These are also the
//! dateutil-free forms of `macros.dateutil.relativedelta`: `.add(months=1)`, `.replace(day=1)`,
//! `.start_of('month')`. Pendulum's rules are followed: months and years move the calendar and
//! clamp the day to the month's end (January 31 + 1 month is February 29 or 28), the rest is
//! a fixed duration.

use chrono::{Datelike, Duration, NaiveDate, NaiveDateTime, NaiveTime, Timelike};
use minijinja::Error;
use minijinja::value::Value;

use crate::macros::python_args;
use crate::objects::invalid;

/// pendulum's `add`/`subtract` arguments, in its positional order.
const ADD_NAMES: [&str; 8] = [
    "years",
    "months",
    "weeks",
    "days",
    "hours",
    "minutes",
    "seconds",
    "microseconds",
];

/// `add(...)` (`sign` 1) or `subtract(...)` (`sign` -1), pendulum's.
pub(crate) fn shift(
    at: NaiveDateTime,
    method: &str,
    sign: i64,
    args: &[Value],
) -> Result<NaiveDateTime, Error> {
    let what = format!("{method}()");
    let values = python_args(&what, args, &ADD_NAMES)?;
    let whole = |i: usize| -> Result<i64, Error> {
        values[i].as_ref().map_or(Ok(0), |v| {
            i64::try_from(v.clone()).map_err(|_| {
                invalid(format!(
                    "{what}: {} must be an integer, not {v}",
                    ADD_NAMES[i]
                ))
            })
        })
    };
    let (years, months) = (whole(0)?, whole(1)?);
    let months = years
        .checked_mul(12)
        .and_then(|m| m.checked_add(months))
        .and_then(|m| m.checked_mul(sign));
    // The fixed part, in microseconds, as Python's timedelta takes fractions.
    const MICROS: [f64; 6] = [7.0 * 86_400e6, 86_400e6, 3_600e6, 60e6, 1e6, 1.0];
    let mut micros = 0.0;
    for (i, unit) in (2..ADD_NAMES.len()).zip(MICROS) {
        if let Some(v) = &values[i] {
            let n = f64::try_from(v.clone()).map_err(|_| {
                invalid(format!(
                    "{what}: {} must be a number, not {v}",
                    ADD_NAMES[i]
                ))
            })?;
            micros += n * unit;
        }
    }
    let out_of_range = || invalid(format!("{what} is out of range"));
    let micros = micros * sign as f64;
    if !micros.is_finite() || micros.abs() > 1e17 {
        return Err(out_of_range());
    }
    let moved = add_months(at, months.ok_or_else(out_of_range)?).ok_or_else(out_of_range)?;
    moved
        .checked_add_signed(Duration::microseconds(micros.round() as i64))
        .ok_or_else(out_of_range)
}

/// Moves the calendar by `months`, the day clamped to the target month's length.
fn add_months(at: NaiveDateTime, months: i64) -> Option<NaiveDateTime> {
    if months == 0 {
        return Some(at);
    }
    let index = i64::from(at.year()) * 12 + i64::from(at.month0()) + months;
    let year = i32::try_from(index.div_euclid(12)).ok()?;
    let month = u32::try_from(index.rem_euclid(12)).ok()? + 1;
    let last = last_day_of_month(year, month)?;
    NaiveDate::from_ymd_opt(year, month, at.day().min(last)).map(|d| d.and_time(at.time()))
}

fn last_day_of_month(year: i32, month: u32) -> Option<u32> {
    let next = if month == 12 {
        NaiveDate::from_ymd_opt(year.checked_add(1)?, 1, 1)
    } else {
        NaiveDate::from_ymd_opt(year, month + 1, 1)
    }?;
    next.pred_opt().map(|d| d.day())
}

/// Python's `datetime.replace(year=..., month=..., ...)`: the fields given, the others kept.
pub(crate) fn replace(at: NaiveDateTime, args: &[Value]) -> Result<NaiveDateTime, Error> {
    const NAMES: [&str; 7] = [
        "year",
        "month",
        "day",
        "hour",
        "minute",
        "second",
        "microsecond",
    ];
    let values = python_args("replace()", args, &NAMES)?;
    let mut fields = [
        i64::from(at.year()),
        i64::from(at.month()),
        i64::from(at.day()),
        i64::from(at.hour()),
        i64::from(at.minute()),
        i64::from(at.second()),
        i64::from(at.nanosecond() / 1_000),
    ];
    for ((field, value), name) in fields.iter_mut().zip(&values).zip(NAMES) {
        if let Some(v) = value {
            *field = i64::try_from(v.clone())
                .map_err(|_| invalid(format!("replace(): {name} must be an integer, not {v}")))?;
        }
    }
    let [year, month, day, hour, minute, second, micro] = fields;
    let bad = |what: &str| invalid(format!("replace(): {what} is out of range"));
    let date = NaiveDate::from_ymd_opt(
        i32::try_from(year).map_err(|_| bad("year"))?,
        u32::try_from(month).map_err(|_| bad("month"))?,
        u32::try_from(day).map_err(|_| bad("day"))?,
    )
    .ok_or_else(|| invalid("replace(): day is out of range for month"))?;
    let time = NaiveTime::from_hms_micro_opt(
        u32::try_from(hour).map_err(|_| bad("hour"))?,
        u32::try_from(minute).map_err(|_| bad("minute"))?,
        u32::try_from(second).map_err(|_| bad("second"))?,
        u32::try_from(micro).map_err(|_| bad("microsecond"))?,
    )
    .ok_or_else(|| bad("a time field"))?;
    Ok(date.and_time(time))
}

/// pendulum's `start_of(unit)` (`end` false) and `end_of(unit)` (`end` true), for `second`,
/// `minute`, `hour`, `day`, `week` (from Monday), `month` and `year`.
pub(crate) fn boundary(
    at: NaiveDateTime,
    end: bool,
    args: &[Value],
) -> Result<NaiveDateTime, Error> {
    let what = if end { "end_of()" } else { "start_of()" };
    let values = python_args(what, args, &["unit"])?;
    let unit = values[0]
        .as_ref()
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(format!("{what} needs a unit such as 'day'")))?
        .to_owned();
    let date = at.date();
    let (first, span): (NaiveDateTime, Duration) = match unit.as_str() {
        "second" => (at.with_nanosecond(0).unwrap_or(at), Duration::seconds(1)),
        "minute" => (
            date.and_hms_opt(at.hour(), at.minute(), 0).unwrap_or(at),
            Duration::minutes(1),
        ),
        "hour" => (
            date.and_hms_opt(at.hour(), 0, 0).unwrap_or(at),
            Duration::hours(1),
        ),
        "day" => (date.and_time(NaiveTime::MIN), Duration::days(1)),
        "week" => {
            let monday = date - Duration::days(i64::from(date.weekday().num_days_from_monday()));
            (monday.and_time(NaiveTime::MIN), Duration::weeks(1))
        }
        "month" | "year" => {
            let month = if unit == "year" { 1 } else { date.month() };
            let first = NaiveDate::from_ymd_opt(date.year(), month, 1)
                .map(|d| d.and_time(NaiveTime::MIN))
                .ok_or_else(|| invalid(format!("{what} is out of range")))?;
            let next = add_months(first, if unit == "year" { 12 } else { 1 })
                .ok_or_else(|| invalid(format!("{what} is out of range")))?;
            (first, next - first)
        }
        other => {
            return Err(invalid(format!(
                "{what}: unknown unit \"{other}\"; use second, minute, hour, day, week, month or year"
            )));
        }
    };
    if !end {
        return Ok(first);
    }
    first
        .checked_add_signed(span - Duration::microseconds(1))
        .ok_or_else(|| invalid(format!("{what} is out of range")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S").unwrap()
    }

    fn kw(pairs: &[(&str, Value)]) -> Vec<Value> {
        vec![minijinja::value::Kwargs::from_iter(pairs.iter().map(|(k, v)| (*k, v.clone()))).into()]
    }

    #[test]
    fn months_clamp_the_day_to_the_end_of_the_month_as_pendulum_does() {
        let jan31 = at("2024-01-31 10:00:00");
        let out = shift(jan31, "add", 1, &kw(&[("months", Value::from(1))])).unwrap();
        assert_eq!(out, at("2024-02-29 10:00:00"));
        let out = shift(jan31, "subtract", -1, &kw(&[("months", Value::from(2))])).unwrap();
        assert_eq!(out, at("2023-11-30 10:00:00"));
        let out = shift(
            jan31,
            "add",
            1,
            &kw(&[("years", Value::from(1)), ("days", Value::from(1))]),
        )
        .unwrap();
        assert_eq!(out, at("2025-02-01 10:00:00"));
    }

    #[test]
    fn fixed_units_add_as_a_duration_and_may_be_fractional() {
        let t = at("2024-03-05 06:07:08");
        let out = shift(t, "subtract", -1, &kw(&[("hours", Value::from(1.5))])).unwrap();
        assert_eq!(out, at("2024-03-05 04:37:08"));
        let out = shift(
            t,
            "add",
            1,
            &[Value::from(0), Value::from(0), Value::from(1)],
        )
        .unwrap();
        assert_eq!(
            out,
            at("2024-03-12 06:07:08"),
            "positional: years, months, weeks"
        );
    }

    #[test]
    fn start_and_end_of_a_unit() {
        let t = at("2024-03-06 06:07:08");
        let unit = |u: &str| vec![Value::from(u)];
        assert_eq!(
            boundary(t, false, &unit("month")).unwrap(),
            at("2024-03-01 00:00:00")
        );
        assert_eq!(
            boundary(t, true, &unit("month")).unwrap(),
            at("2024-03-31 23:59:59") + Duration::microseconds(999_999)
        );
        assert_eq!(
            boundary(t, false, &unit("week")).unwrap(),
            at("2024-03-04 00:00:00")
        );
        assert_eq!(
            boundary(t, false, &unit("year")).unwrap(),
            at("2024-01-01 00:00:00")
        );
        assert!(boundary(t, false, &unit("fortnight")).is_err());
    }

    #[test]
    fn replace_keeps_the_fields_not_given_and_refuses_impossible_dates() {
        let t = at("2024-03-31 06:07:08");
        assert_eq!(
            replace(t, &kw(&[("day", Value::from(1))])).unwrap(),
            at("2024-03-01 06:07:08")
        );
        assert!(replace(t, &kw(&[("month", Value::from(2))])).is_err());
    }
}
