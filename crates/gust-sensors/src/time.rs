//! The time sensors' pokes: pure functions of the try's run and the time.

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use gust_executor::TryContext;
use gust_operators::sensors::time::{DateTimeArgs, TimeArgs, TimeDeltaArgs};

use crate::decide::Poke;

/// `TimeDeltaSensor`: met once `delta` has passed after the run's data interval end (its
/// `run_after` when it has no data interval), as Airflow 3.3's `_derive_base_time`.
#[must_use]
pub fn time_delta(
    args: &TimeDeltaArgs,
    context: &TryContext,
    now: DateTime<Utc>,
) -> (Poke, String) {
    let base = context
        .run
        .data_interval
        .map(|(_, end)| end)
        .or(context.run.run_after);
    let Some(base) = base else {
        return (
            Poke::Error(
                "the run has neither a data interval nor a run_after to count the delta from"
                    .to_owned(),
            ),
            String::new(),
        );
    };
    let delta = chrono::Duration::from_std(args.delta).unwrap_or(chrono::Duration::MAX);
    let target = base
        .checked_add_signed(delta)
        .unwrap_or(DateTime::<Utc>::MAX_UTC);
    (
        met(now > target),
        format!(
            "Checking if the delta has elapsed base_time={base}, delta={}s (until {target})",
            args.delta.as_secs_f64()
        ),
    )
}

/// `DateTimeSensor`: met once `target_time` has passed.
#[must_use]
pub fn date_time(args: &DateTimeArgs, now: DateTime<Utc>) -> (Poke, String) {
    let said = format!("Checking if the time ({}) has come", args.target_time);
    match parse_moment(&args.target_time) {
        Some(target) => (met(now > target), said),
        None => (
            Poke::Error(format!(
                "target_time \"{}\" is not a date and time: write ISO-8601 (\"2024-01-01T06:00:00+00:00\") or \"2024-01-01 06:00:00\"",
                args.target_time
            )),
            said,
        ),
    }
}

/// `TimeSensor`: met once today's `target_time` in the DAG's timezone has passed. "Today" is
/// the day of each poke, as Airflow builds the sensor anew for each.
#[must_use]
pub fn time_of_day(args: &TimeArgs, context: &TryContext, now: DateTime<Utc>) -> (Poke, String) {
    let tz = context.timezone.unwrap_or(chrono_tz::UTC);
    let local = now
        .with_timezone(&tz)
        .date_naive()
        .and_time(args.target_time);
    // A time skipped by a clock change is taken an hour later, one repeated at its first.
    let target = tz
        .from_local_datetime(&local)
        .earliest()
        .or_else(|| {
            tz.from_local_datetime(&(local + chrono::Duration::hours(1)))
                .earliest()
        })
        .map_or(now, |at| at.with_timezone(&Utc));
    (
        met(now > target),
        format!("Checking if the time ({target}) has come"),
    )
}

fn met(yes: bool) -> Poke {
    if yes { Poke::Met } else { Poke::NotYet }
}

/// A date and time as Airflow's `timezone.parse` reads it: ISO-8601 with or without an
/// offset (UTC without), a space or `T` between date and time, or a date alone (midnight).
#[must_use]
pub fn parse_moment(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Some(at.with_timezone(&Utc));
    }
    for format in [
        "%Y-%m-%d %H:%M:%S%.f%:z",
        "%Y-%m-%dT%H:%M:%S%.f%z",
        "%Y-%m-%d %H:%M:%S%.f%z",
    ] {
        if let Ok(at) = DateTime::parse_from_str(text, format) {
            return Some(at.with_timezone(&Utc));
        }
    }
    for format in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(at) = NaiveDateTime::parse_from_str(text, format) {
            return Some(at.and_utc());
        }
    }
    chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|day| day.and_hms_opt(0, 0, 0))
        .map(|at| at.and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(text: &str) -> DateTime<Utc> {
        parse_moment(text).expect("a date")
    }

    fn read<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> T {
        gust_operators::read_args(value.as_object().expect("an object")).expect("valid")
    }

    #[test]
    fn moments_parse_as_airflow_reads_them() {
        assert_eq!(at("2024-01-01T06:00:00+02:00"), at("2024-01-01T04:00:00Z"));
        assert_eq!(at("2024-01-01 06:00:00"), at("2024-01-01T06:00:00+00:00"));
        assert_eq!(at("2024-01-01"), at("2024-01-01T00:00:00Z"));
        assert_eq!(
            at("2024-01-01 06:00:00.5+00:00"),
            at("2024-01-01T06:00:00.5Z")
        );
        assert!(parse_moment("tomorrow").is_none());
    }

    #[test]
    fn the_delta_counts_from_the_data_interval_end_or_else_run_after() {
        let args: TimeDeltaArgs = read(serde_json::json!({"delta": {"seconds": 30}}));
        let mut context = TryContext::default();
        context.run.data_interval = Some((at("2024-01-01"), at("2024-01-02")));
        context.run.run_after = Some(at("2024-01-05"));
        assert_eq!(
            time_delta(&args, &context, at("2024-01-02T00:00:30Z")).0,
            Poke::NotYet
        );
        assert_eq!(
            time_delta(&args, &context, at("2024-01-02T00:00:31Z")).0,
            Poke::Met
        );
        context.run.data_interval = None;
        assert_eq!(
            time_delta(&args, &context, at("2024-01-02T00:00:31Z")).0,
            Poke::NotYet
        );
        assert_eq!(
            time_delta(&args, &context, at("2024-01-05T00:01:00Z")).0,
            Poke::Met
        );
        assert_eq!(args.delta, Duration::from_secs(30));
    }

    #[test]
    fn a_date_time_is_met_after_it_and_bad_text_is_an_error() {
        let args: DateTimeArgs =
            read(serde_json::json!({"target_time": "2024-01-01T06:00:00+00:00"}));
        assert_eq!(date_time(&args, at("2024-01-01T06:00:00Z")).0, Poke::NotYet);
        assert_eq!(date_time(&args, at("2024-01-01T06:00:01Z")).0, Poke::Met);
        let bad: DateTimeArgs = read(serde_json::json!({"target_time": "soon"}));
        assert!(
            matches!(date_time(&bad, at("2024-01-01")).0, Poke::Error(why) if why.contains("\"soon\""))
        );
    }

    #[test]
    fn a_time_of_day_is_read_in_the_dag_timezone() {
        let args: TimeArgs = read(serde_json::json!({"target_time": "09:00"}));
        let context = TryContext {
            timezone: Some(chrono_tz::Europe::Paris),
            ..TryContext::default()
        };
        // 09:00 in Paris in winter is 08:00 UTC.
        assert_eq!(
            time_of_day(&args, &context, at("2024-01-10T07:59:00Z")).0,
            Poke::NotYet
        );
        assert_eq!(
            time_of_day(&args, &context, at("2024-01-10T08:00:01Z")).0,
            Poke::Met
        );
        let utc = TryContext::default();
        assert_eq!(
            time_of_day(&args, &utc, at("2024-01-10T08:30:00Z")).0,
            Poke::NotYet
        );
    }
}
