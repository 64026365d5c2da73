//! Durations as DAG files write them: seconds, unit forms (`5m`, `1h30m`), ISO-8601 (`PT5M`)
//! and Python's `timedelta` keyword arguments.

use std::time::Duration;

/// The longest duration accepted anywhere (100 years): longer is always a mistake.
const MAX_SECONDS: f64 = 100.0 * 365.25 * 86_400.0;

/// The forms a duration may take, for error messages.
const FORMS: &str =
    "expected seconds (300), a unit form (\"5m\", \"1h30m\") or ISO-8601 (\"PT5M\")";

/// Why a text or number is not a duration.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DurationError {
    /// The text has none of the accepted forms.
    #[error("invalid duration \"{text}\": {FORMS}")]
    Invalid {
        /// The text.
        text: String,
    },
    /// ISO-8601 months and years have no fixed length.
    #[error("invalid duration \"{text}\": months and years vary in length; use days (\"P30D\")")]
    Calendar {
        /// The text.
        text: String,
    },
    /// Negative, not a number, or longer than a hundred years.
    #[error("invalid duration {value}: must be between 0 and 100 years")]
    OutOfRange {
        /// The value, as written or computed.
        value: String,
    },
}

/// Reads a duration from text: `"300"`, `"1.5"`, `"5m"`, `"1h30m"`, `"1h 30m"`, `"2 days"`,
/// `"500ms"`, `"PT5M"`, `"P1DT2H"`.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let trimmed = text.trim();
    let invalid = || DurationError::Invalid {
        text: text.to_owned(),
    };
    if trimmed.is_empty() || trimmed.starts_with('-') {
        return Err(invalid());
    }
    if let Ok(seconds) = trimmed.parse::<f64>() {
        return duration_from_seconds(seconds);
    }
    if let Some(iso) = trimmed
        .strip_prefix('P')
        .or_else(|| trimmed.strip_prefix('p'))
    {
        return parse_iso(iso, text);
    }
    humantime::parse_duration(trimmed).map_err(|_| invalid())
}

/// A duration of `seconds` (fractions allowed).
pub fn duration_from_seconds(seconds: f64) -> Result<Duration, DurationError> {
    if !seconds.is_finite() || !(0.0..=MAX_SECONDS).contains(&seconds) {
        return Err(DurationError::OutOfRange {
            value: format!("{seconds}s"),
        });
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// Python's `datetime.timedelta(...)` keyword arguments, as dag-factory files write them.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TimedeltaParts {
    /// Weeks.
    pub weeks: f64,
    /// Days.
    pub days: f64,
    /// Hours.
    pub hours: f64,
    /// Minutes.
    pub minutes: f64,
    /// Seconds.
    pub seconds: f64,
    /// Milliseconds.
    pub milliseconds: f64,
    /// Microseconds.
    pub microseconds: f64,
}

/// The duration a `timedelta` with these arguments stands for.
pub fn duration_from_timedelta(parts: &TimedeltaParts) -> Result<Duration, DurationError> {
    let seconds = parts.weeks * 604_800.0
        + parts.days * 86_400.0
        + parts.hours * 3_600.0
        + parts.minutes * 60.0
        + parts.seconds
        + parts.milliseconds / 1e3
        + parts.microseconds / 1e6;
    duration_from_seconds(seconds)
}

/// Reads the part of an ISO-8601 duration after `P`: `1DT2H30M`, `T0.5S`, `2W`.
fn parse_iso(body: &str, text: &str) -> Result<Duration, DurationError> {
    let invalid = || DurationError::Invalid {
        text: text.to_owned(),
    };
    let (date, time) = match body.split_once(['T', 't']) {
        Some((date, time)) if !time.is_empty() => (date, Some(time)),
        Some(_) => return Err(invalid()),
        None => (body, None),
    };
    if date.is_empty() && time.is_none() {
        return Err(invalid());
    }
    let mut seconds = 0.0;
    for (part, in_time) in [(date, false), (time.unwrap_or(""), true)] {
        let mut number = String::new();
        for c in part.chars() {
            if c.is_ascii_digit() || c == '.' || c == ',' {
                number.push(if c == ',' { '.' } else { c });
                continue;
            }
            let value: f64 = number.parse().map_err(|_| invalid())?;
            number.clear();
            seconds += value
                * match (c.to_ascii_uppercase(), in_time) {
                    ('W', false) => 604_800.0,
                    ('D', false) => 86_400.0,
                    ('H', true) => 3_600.0,
                    ('M', true) => 60.0,
                    ('S', true) => 1.0,
                    ('Y' | 'M', false) => {
                        return Err(DurationError::Calendar {
                            text: text.to_owned(),
                        });
                    }
                    _ => return Err(invalid()),
                };
        }
        if !number.is_empty() {
            return Err(invalid());
        }
    }
    duration_from_seconds(seconds)
}

/// A short human form for output: `5m`, `1h30m`, `1d`, `300ms`, `0s`.
#[must_use]
pub fn format_duration(duration: Duration) -> String {
    let mut secs = duration.as_secs();
    let millis = duration.subsec_millis();
    if secs == 0 {
        return if millis == 0 {
            "0s".to_owned()
        } else {
            format!("{millis}ms")
        };
    }
    let mut out = String::new();
    for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
        if secs >= size {
            out.push_str(&format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    if millis > 0 {
        out.push_str(&format!("{millis}ms"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn secs(text: &str) -> f64 {
        parse_duration(text)
            .unwrap_or_else(|e| panic!("{text}: {e}"))
            .as_secs_f64()
    }

    #[test]
    fn every_written_form_reads() {
        assert_eq!(secs("300"), 300.0);
        assert_eq!(secs(" 1.5 "), 1.5);
        assert_eq!(secs("5m"), 300.0);
        assert_eq!(secs("1h30m"), 5400.0);
        assert_eq!(secs("1h 30m"), 5400.0);
        assert_eq!(secs("2d"), 172_800.0);
        assert_eq!(secs("2 days"), 172_800.0);
        assert_eq!(secs("1 week"), 604_800.0);
        assert_eq!(secs("500ms"), 0.5);
        assert_eq!(secs("PT5M"), 300.0);
        assert_eq!(secs("PT1H30M"), 5400.0);
        assert_eq!(secs("P1D"), 86_400.0);
        assert_eq!(secs("P1DT2H"), 93_600.0);
        assert_eq!(secs("PT0.5S"), 0.5);
        assert_eq!(secs("P2W"), 1_209_600.0);
    }

    #[test]
    fn bad_durations_say_which_forms_are_accepted() {
        assert_eq!(
            parse_duration("5 parsecs").unwrap_err().to_string(),
            "invalid duration \"5 parsecs\": expected seconds (300), a unit form (\"5m\", \"1h30m\") or ISO-8601 (\"PT5M\")"
        );
        for bad in ["", "-5", "-5m", "P", "PT", "P1H", "PT1D", "P5", "soon"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
        assert!(matches!(
            parse_duration("P1M"),
            Err(DurationError::Calendar { .. })
        ));
        assert!(matches!(
            parse_duration("P1Y"),
            Err(DurationError::Calendar { .. })
        ));
    }

    #[test]
    fn numbers_outside_the_sane_range_are_refused() {
        assert!(duration_from_seconds(-1.0).is_err());
        assert!(duration_from_seconds(f64::NAN).is_err());
        assert!(duration_from_seconds(f64::INFINITY).is_err());
        assert!(duration_from_seconds(1e12).is_err());
    }

    #[test]
    fn timedeltas_add_their_parts() {
        let parts = TimedeltaParts {
            days: 1.0,
            hours: 1.0,
            seconds: 30.0,
            milliseconds: 500.0,
            ..TimedeltaParts::default()
        };
        assert_eq!(
            duration_from_timedelta(&parts).unwrap(),
            Duration::from_millis(90_030_500)
        );
        let negative = TimedeltaParts {
            hours: -1.0,
            ..TimedeltaParts::default()
        };
        assert!(duration_from_timedelta(&negative).is_err());
    }

    #[test]
    fn formatting_is_short_and_exact() {
        assert_eq!(format_duration(Duration::from_secs(300)), "5m");
        assert_eq!(format_duration(Duration::from_secs(5400)), "1h30m");
        assert_eq!(format_duration(Duration::from_secs(86_400)), "1d");
        assert_eq!(format_duration(Duration::from_millis(300)), "300ms");
        assert_eq!(format_duration(Duration::ZERO), "0s");
    }

    proptest! {
        #[test]
        fn parsing_never_panics(text in "\\PC{0,40}") {
            let _ = parse_duration(&text);
        }

        #[test]
        fn formatted_whole_seconds_read_back(secs in 0u64..10_000_000) {
            let d = Duration::from_secs(secs);
            prop_assert_eq!(parse_duration(&format_duration(d)).unwrap(), d);
        }
    }
}
