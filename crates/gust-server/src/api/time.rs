//! Times as the API writes them: RFC 3339 in UTC with a `Z` (`2026-01-01T00:00:00Z`), which
//! the Python client's date parser reads; and as requests write them, in Airflow's forms.

use chrono::{DateTime, NaiveDate, NaiveDateTime, SecondsFormat, Utc};
use serde::{Serialize, Serializer};
use utoipa::ToSchema;

/// A time in a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ToSchema)]
#[schema(value_type = String, format = DateTime)]
pub struct Timestamp(pub DateTime<Utc>);

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0.to_rfc3339_opts(SecondsFormat::AutoSi, true))
    }
}

impl From<DateTime<Utc>> for Timestamp {
    fn from(t: DateTime<Utc>) -> Self {
        Timestamp(t)
    }
}

/// A time from a request, in every form Airflow's API (pydantic) accepts: RFC 3339 with `T`,
/// `t` or a space, an offset as `Z`, `+00:00` or `+0000` (what `apache-airflow-client` sends),
/// seconds and fractions optional; a naive time or a bare date, read as UTC (Airflow's default
/// time zone); or a Unix timestamp in seconds (in milliseconds past 2e10, as pydantic reads it).
pub fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return unix_time(text);
    }
    // One spelling for the separators pydantic accepts in either case.
    let text: String = text
        .chars()
        .enumerate()
        .map(|(i, c)| match c {
            ' ' | 't' if i == 10 => 'T',
            'z' => 'Z',
            c => c,
        })
        .collect();
    const ZONED: &[&str] = &["%Y-%m-%dT%H:%M:%S%.f%#z", "%Y-%m-%dT%H:%M%#z"];
    const NAIVE: &[&str] = &["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M"];
    if let Ok(t) = DateTime::parse_from_rfc3339(&text) {
        return Some(t.with_timezone(&Utc));
    }
    let zoned = text
        .strip_suffix('Z')
        .map_or(text.clone(), |t| format!("{t}+00:00"));
    ZONED
        .iter()
        .find_map(|format| DateTime::parse_from_str(&zoned, format).ok())
        .map(|t| t.with_timezone(&Utc))
        .or_else(|| {
            NAIVE
                .iter()
                .find_map(|format| NaiveDateTime::parse_from_str(&text, format).ok())
                .or_else(|| {
                    NaiveDate::parse_from_str(&text, "%Y-%m-%d")
                        .ok()
                        .and_then(|d| d.and_hms_opt(0, 0, 0))
                })
                .map(|t| t.and_utc())
        })
}

/// A Unix timestamp of digits: seconds, or milliseconds when too large for seconds (pydantic's
/// rule: past 2×10¹⁰).
fn unix_time(digits: &str) -> Option<DateTime<Utc>> {
    let value: i64 = digits.parse().ok()?;
    if value > 20_000_000_000 {
        DateTime::from_timestamp_millis(value)
    } else {
        DateTime::from_timestamp(value, 0)
    }
}

#[cfg(test)]
mod tests {
    use super::parse_time;

    #[test]
    fn every_form_pydantic_accepts_is_read() {
        let midnight = "2020-01-01T00:00:00Z";
        for text in [
            "2020-01-01T00:00:00.000000+0000",
            "2020-01-01T00:00:00Z",
            "2020-01-01t00:00:00z",
            "2020-01-01T00:00:00+00:00",
            "2020-01-01T02:00:00+02:00",
            "2020-01-01T02:00:00+0200",
            "2020-01-01T00:00:00",
            "2020-01-01 00:00:00",
            "2020-01-01T00:00Z",
            "2020-01-01",
            "1577836800",
            "1577836800000",
        ] {
            let parsed = parse_time(text).unwrap_or_else(|| panic!("{text:?} was refused"));
            assert_eq!(
                parsed.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                midnight,
                "{text}"
            );
        }
        let fraction =
            parse_time("2020-01-01T00:00:00.123456Z").map(|t| t.timestamp_subsec_micros());
        assert_eq!(fraction, Some(123_456));
    }

    #[test]
    fn what_pydantic_refuses_is_refused() {
        for text in ["", "yesterday", "2020-13-01", "2020-01-01T25:00:00Z"] {
            assert_eq!(parse_time(text), None, "{text:?} was accepted");
        }
    }
}
