//! Sensors Gust runs natively, without Python or a process: each poke is an async check the
//! sensor runtime (`gust-sensors`) makes, and a sensor whose condition is not met gives its slot
//! back and waits as `up_for_reschedule` (Airflow's `reschedule` mode), whatever `mode` or
//! `deferrable` says.
//!
//! This module holds what every sensor accepts ([`SensorSettings`], Airflow's
//! `BaseSensorOperator` arguments) and the typed arguments of each sensor; `time`, `external`,
//! `file`, `s3`, `http`, `sql` and `kubernetes` hold the operators.

/// The argument list of a sensor taking `own` besides the common ones.
macro_rules! sensor_arguments {
    ($($own:literal),* $(,)?) => {
        &[
            $($own,)*
            "poke_interval",
            "timeout",
            "soft_fail",
            "mode",
            "exponential_backoff",
            "max_wait",
            "silent_fail",
            "never_fail",
            "deferrable",
        ]
    };
}

pub mod external;
pub mod file;
pub mod http;
pub mod kubernetes;
pub mod s3;
pub mod sql;
pub mod time;

use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// Airflow's `[sensors] default_timeout`: seven days.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(7 * 24 * 3600);

/// Airflow's default `poke_interval`: a minute.
pub const DEFAULT_POKE_INTERVAL: Duration = Duration::from_secs(60);

/// How a sensor waits and gives up: Airflow's `BaseSensorOperator` arguments.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct SensorSettings {
    /// How long to wait between pokes (default 60 s).
    #[serde(default = "default_poke_interval", deserialize_with = "seconds")]
    pub poke_interval: Duration,
    /// How long after the first poke the sensor gives up (default 7 days).
    #[serde(default = "default_timeout", deserialize_with = "seconds")]
    pub timeout: Duration,
    /// Skip instead of failing when the sensor times out or its target failed.
    #[serde(default)]
    pub soft_fail: bool,
    /// `poke` or `reschedule`: both reschedule in Gust (a waiting sensor holds nothing).
    #[serde(default)]
    pub mode: Mode,
    /// Wait longer after each poke, as Airflow's exponential backoff computes it.
    #[serde(default)]
    pub exponential_backoff: bool,
    /// The longest wait between pokes with `exponential_backoff`.
    #[serde(default, deserialize_with = "optional_seconds")]
    pub max_wait: Option<Duration>,
    /// Take a poke that errs as "not yet" instead of failing.
    #[serde(default)]
    pub silent_fail: bool,
    /// Skip instead of failing when a poke errs.
    #[serde(default)]
    pub never_fail: bool,
    /// Accepted; a native sensor never holds a slot while it waits, deferred or not.
    #[serde(default)]
    pub deferrable: bool,
}

impl Default for SensorSettings {
    fn default() -> Self {
        Self {
            poke_interval: DEFAULT_POKE_INTERVAL,
            timeout: DEFAULT_TIMEOUT,
            soft_fail: false,
            mode: Mode::Poke,
            exponential_backoff: false,
            max_wait: None,
            silent_fail: false,
            never_fail: false,
            deferrable: false,
        }
    }
}

impl SensorSettings {
    /// What Airflow refuses when the sensor is built.
    pub fn check(&self) -> Result<(), crate::ArgumentError> {
        if self.soft_fail && self.never_fail {
            return Err(crate::ArgumentError {
                path: "never_fail".to_owned(),
                message: "soft_fail and never_fail are mutually exclusive: give one".to_owned(),
            });
        }
        Ok(())
    }
}

fn default_poke_interval() -> Duration {
    DEFAULT_POKE_INTERVAL
}

fn default_timeout() -> Duration {
    DEFAULT_TIMEOUT
}

/// A sensor's `mode`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Airflow's default: the sensor sleeps in its worker between pokes.
    #[default]
    Poke,
    /// The sensor frees its slot between pokes.
    Reschedule,
}

/// A duration given as seconds (`30`, `1.5`), text (`"5m"`, `"PT5M"`, `"300"`) or a
/// `timedelta` map (`{__type__: datetime.timedelta, minutes: 5}`, the `__type__` optional).
pub(crate) fn seconds<'de, D: Deserializer<'de>>(de: D) -> Result<Duration, D::Error> {
    let value = serde_json::Value::deserialize(de)?;
    duration(&value, 1.0).map_err(serde::de::Error::custom)
}

fn optional_seconds<'de, D: Deserializer<'de>>(de: D) -> Result<Option<Duration>, D::Error> {
    let value = serde_json::Value::deserialize(de)?;
    if value.is_null() {
        return Ok(None);
    }
    duration(&value, 1.0)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

/// Reads a duration; a bare number (or a numeric text) counts `unit` seconds each.
pub(crate) fn duration(value: &serde_json::Value, unit: f64) -> Result<Duration, String> {
    use gust_core::duration::{
        TimedeltaParts, duration_from_seconds, duration_from_timedelta, parse_duration,
    };
    match value {
        serde_json::Value::Number(n) => {
            let n = n.as_f64().unwrap_or(f64::NAN);
            duration_from_seconds(n * unit).map_err(|err| err.to_string())
        }
        serde_json::Value::String(text) => match text.trim().parse::<f64>() {
            Ok(n) => duration_from_seconds(n * unit).map_err(|err| err.to_string()),
            Err(_) => parse_duration(text).map_err(|err| err.to_string()),
        },
        serde_json::Value::Object(map) => {
            let mut parts = TimedeltaParts::default();
            for (key, part) in map {
                if key == "__type__" {
                    if part.as_str() != Some("datetime.timedelta") {
                        return Err(format!("expected __type__: datetime.timedelta, not {part}"));
                    }
                    continue;
                }
                let n = part
                    .as_f64()
                    .ok_or_else(|| format!("timedelta part \"{key}\" must be a number"))?;
                let slot = match key.as_str() {
                    "weeks" => &mut parts.weeks,
                    "days" => &mut parts.days,
                    "hours" => &mut parts.hours,
                    "minutes" => &mut parts.minutes,
                    "seconds" => &mut parts.seconds,
                    "milliseconds" => &mut parts.milliseconds,
                    "microseconds" => &mut parts.microseconds,
                    other => return Err(format!("\"{other}\" is not a timedelta argument")),
                };
                *slot = n;
            }
            duration_from_timedelta(&parts).map_err(|err| err.to_string())
        }
        other => Err(format!(
            "expected seconds, a duration (\"5m\") or a timedelta map, not {other}"
        )),
    }
}

/// Every native sensor's canonical name (and `external_task_marker` and `http_operator`, run
/// by the same runtime: each an async request, no process).
pub const NATIVE: [&str; 12] = [
    time::TIME_DELTA_SPEC.name,
    time::DATE_TIME_SPEC.name,
    time::TIME_SPEC.name,
    external::SENSOR_SPEC.name,
    external::MARKER_SPEC.name,
    file::SPEC.name,
    s3::SPEC.name,
    http::SENSOR_SPEC.name,
    http::OPERATOR_SPEC.name,
    sql::SPEC.name,
    kubernetes::RESOURCE_SPEC.name,
    kubernetes::SPARK_SPEC.name,
];

/// Whether the sensor runtime runs tries of `operator`.
#[must_use]
pub fn is_native(operator: &str) -> bool {
    NATIVE.contains(&operator)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn durations_take_seconds_text_and_timedelta_maps() {
        assert_eq!(duration(&json!(30), 1.0), Ok(Duration::from_secs(30)));
        assert_eq!(duration(&json!("5m"), 1.0), Ok(Duration::from_secs(300)));
        assert_eq!(duration(&json!("2"), 60.0), Ok(Duration::from_secs(120)));
        assert_eq!(
            duration(
                &json!({"__type__": "datetime.timedelta", "hours": 1, "minutes": 1}),
                1.0
            ),
            Ok(Duration::from_secs(3660))
        );
        assert!(duration(&json!({"fortnights": 1}), 1.0).is_err());
        assert!(duration(&json!(-1), 1.0).is_err());
    }

    #[test]
    fn settings_default_as_airflow_and_refuse_soft_and_never_fail_together() {
        let settings: SensorSettings = serde_json::from_value(json!({})).unwrap();
        assert_eq!(settings, SensorSettings::default());
        let both: SensorSettings =
            serde_json::from_value(json!({"soft_fail": true, "never_fail": true})).unwrap();
        assert!(both.check().is_err());
        let bad = serde_json::from_value::<SensorSettings>(json!({"mode": "sometimes"}));
        assert!(bad.is_err());
    }
}
