//! The time sensors: `TimeDeltaSensor` (a delta after the run's data interval end, or its
//! `run_after`), `DateTimeSensor` (a templated date and time) and `TimeSensor` (a time of day in
//! the DAG's timezone), with their `...Async` variants, all run natively.

use std::time::Duration;

use chrono::NaiveTime;
use serde::{Deserialize, Deserializer};

use super::SensorSettings;
use crate::spec::{ArgumentError, OperatorSpec, read_args};

/// `TimeDeltaSensor`'s arguments.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TimeDeltaArgs {
    /// How long after the data interval's end (or `run_after`) to wait; a bare number counts
    /// minutes, as Airflow casts a templated value.
    #[serde(deserialize_with = "minutes")]
    pub delta: Duration,
    /// Accepted (the trigger's own option); a native sensor ends where it pokes.
    #[serde(default)]
    pub end_from_trigger: bool,
    /// How it waits.
    #[serde(flatten)]
    pub settings: SensorSettings,
}

/// `DateTimeSensor`'s arguments.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct DateTimeArgs {
    /// The moment after which it succeeds: ISO-8601 or `YYYY-MM-DD HH:MM:SS` text, UTC unless
    /// it carries an offset (templated).
    pub target_time: String,
    /// Accepted (a trigger option); a native sensor needs no trigger.
    #[serde(default)]
    pub start_from_trigger: bool,
    /// Accepted (a trigger option).
    #[serde(default)]
    pub end_from_trigger: bool,
    /// Accepted (a trigger option).
    #[serde(default)]
    pub trigger_kwargs: Option<serde_json::Value>,
    /// How it waits.
    #[serde(flatten)]
    pub settings: SensorSettings,
}

/// `TimeSensor`'s arguments.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TimeArgs {
    /// The time of day, in the DAG's timezone, after which it succeeds: `"HH:MM[:SS]"` or
    /// dag-factory's `{__type__: datetime.time, hour: 9, minute: 30}`.
    #[serde(deserialize_with = "time_of_day")]
    pub target_time: NaiveTime,
    /// Accepted (a trigger option).
    #[serde(default)]
    pub start_from_trigger: bool,
    /// Accepted (a trigger option).
    #[serde(default)]
    pub end_from_trigger: bool,
    /// Accepted (a trigger option).
    #[serde(default)]
    pub trigger_kwargs: Option<serde_json::Value>,
    /// How it waits.
    #[serde(flatten)]
    pub settings: SensorSettings,
}

fn minutes<'de, D: Deserializer<'de>>(de: D) -> Result<Duration, D::Error> {
    let value = serde_json::Value::deserialize(de)?;
    super::duration(&value, 60.0).map_err(serde::de::Error::custom)
}

fn time_of_day<'de, D: Deserializer<'de>>(de: D) -> Result<NaiveTime, D::Error> {
    use serde::de::Error;
    let value = serde_json::Value::deserialize(de)?;
    match &value {
        serde_json::Value::String(text) => ["%H:%M:%S%.f", "%H:%M"]
            .iter()
            .find_map(|format| NaiveTime::parse_from_str(text.trim(), format).ok())
            .ok_or_else(|| {
                D::Error::custom(format!(
                    "\"{text}\" is not a time of day: write \"HH:MM\" or \"HH:MM:SS\""
                ))
            }),
        serde_json::Value::Object(map) => {
            let mut parts = [0_u32; 4];
            for (key, part) in map {
                if key == "__type__" {
                    if part.as_str() != Some("datetime.time") {
                        return Err(D::Error::custom(format!(
                            "expected __type__: datetime.time, not {part}"
                        )));
                    }
                    continue;
                }
                let index = ["hour", "minute", "second", "microsecond"]
                    .iter()
                    .position(|name| name == key)
                    .ok_or_else(|| {
                        D::Error::custom(format!("\"{key}\" is not a datetime.time argument"))
                    })?;
                parts[index] = part
                    .as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or_else(|| D::Error::custom(format!("\"{key}\" must be a whole number")))?;
            }
            NaiveTime::from_hms_micro_opt(parts[0], parts[1], parts[2], parts[3])
                .ok_or_else(|| D::Error::custom("not a valid time of day"))
        }
        other => Err(D::Error::custom(format!(
            "expected a time of day (\"09:30\"), not {other}"
        ))),
    }
}

fn check_time_delta(
    args: &serde_json::Map<String, serde_json::Value>,
) -> Result<(), ArgumentError> {
    read_args::<TimeDeltaArgs>(args)?.settings.check()
}

fn check_date_time(args: &serde_json::Map<String, serde_json::Value>) -> Result<(), ArgumentError> {
    read_args::<DateTimeArgs>(args)?.settings.check()
}

fn check_time(args: &serde_json::Map<String, serde_json::Value>) -> Result<(), ArgumentError> {
    read_args::<TimeArgs>(args)?.settings.check()
}

/// `TimeDeltaSensor` (and `TimeDeltaSensorAsync`).
pub static TIME_DELTA_SPEC: OperatorSpec = OperatorSpec {
    name: "time_delta_sensor",
    aliases: &[
        "TimeDeltaSensor",
        "TimeDeltaSensorAsync",
        "airflow.sensors.time_delta.TimeDeltaSensor",
        "airflow.sensors.time_delta.TimeDeltaSensorAsync",
        "airflow.sensors.time_delta_sensor.TimeDeltaSensor",
        "airflow.providers.standard.sensors.time_delta.TimeDeltaSensor",
        "airflow.providers.standard.sensors.time_delta.TimeDeltaSensorAsync",
    ],
    arguments: sensor_arguments!("delta", "end_from_trigger"),
    renamed_arguments: &[],
    required: &["delta"],
    pushes_xcom_by_default: true,
    holds_worker: false,
    open_arguments: false,
    check: check_time_delta,
};

/// `DateTimeSensor` (and `DateTimeSensorAsync`).
pub static DATE_TIME_SPEC: OperatorSpec = OperatorSpec {
    name: "date_time_sensor",
    aliases: &[
        "DateTimeSensor",
        "DateTimeSensorAsync",
        "airflow.sensors.date_time.DateTimeSensor",
        "airflow.sensors.date_time.DateTimeSensorAsync",
        "airflow.sensors.date_time_sensor.DateTimeSensor",
        "airflow.providers.standard.sensors.date_time.DateTimeSensor",
        "airflow.providers.standard.sensors.date_time.DateTimeSensorAsync",
    ],
    arguments: sensor_arguments!(
        "target_time",
        "start_from_trigger",
        "end_from_trigger",
        "trigger_kwargs"
    ),
    renamed_arguments: &[],
    required: &["target_time"],
    pushes_xcom_by_default: true,
    holds_worker: false,
    open_arguments: false,
    check: check_date_time,
};

/// `TimeSensor` (and `TimeSensorAsync`).
pub static TIME_SPEC: OperatorSpec = OperatorSpec {
    name: "time_sensor",
    aliases: &[
        "TimeSensor",
        "TimeSensorAsync",
        "airflow.sensors.time_sensor.TimeSensor",
        "airflow.sensors.time_sensor.TimeSensorAsync",
        "airflow.providers.standard.sensors.time.TimeSensor",
        "airflow.providers.standard.sensors.time.TimeSensorAsync",
    ],
    arguments: sensor_arguments!(
        "target_time",
        "start_from_trigger",
        "end_from_trigger",
        "trigger_kwargs"
    ),
    renamed_arguments: &[],
    required: &["target_time"],
    pushes_xcom_by_default: true,
    holds_worker: false,
    open_arguments: false,
    check: check_time,
};

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(value: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
        value.as_object().expect("an object").clone()
    }

    #[test]
    fn a_bare_delta_counts_minutes_as_airflow_casts_it() {
        let args: TimeDeltaArgs = read_args(&map(json!({"delta": 2}))).unwrap();
        assert_eq!(args.delta, Duration::from_secs(120));
        let args: TimeDeltaArgs = read_args(&map(json!({"delta": "3"}))).unwrap();
        assert_eq!(args.delta, Duration::from_secs(180));
        let args: TimeDeltaArgs = read_args(&map(
            json!({"delta": {"__type__": "datetime.timedelta", "seconds": 5}, "poke_interval": 1}),
        ))
        .unwrap();
        assert_eq!(args.delta, Duration::from_secs(5));
        assert_eq!(args.settings.poke_interval, Duration::from_secs(1));
    }

    #[test]
    fn times_of_day_take_text_and_datetime_time_maps() {
        let args: TimeArgs = read_args(&map(json!({"target_time": "09:30"}))).unwrap();
        assert_eq!(args.target_time, NaiveTime::from_hms_opt(9, 30, 0).unwrap());
        let args: TimeArgs = read_args(&map(
            json!({"target_time": {"__type__": "datetime.time", "hour": 23, "minute": 5}}),
        ))
        .unwrap();
        assert_eq!(args.target_time, NaiveTime::from_hms_opt(23, 5, 0).unwrap());
        let err = (TIME_SPEC.check)(&map(json!({"target_time": "noon"}))).unwrap_err();
        assert!(err.to_string().contains("not a time of day"), "{err}");
    }

    #[test]
    fn the_async_variants_are_the_same_operators() {
        for (name, canonical) in [
            ("TimeDeltaSensorAsync", "time_delta_sensor"),
            (
                "airflow.providers.standard.sensors.date_time.DateTimeSensorAsync",
                "date_time_sensor",
            ),
            ("airflow.sensors.time_sensor.TimeSensor", "time_sensor"),
        ] {
            assert_eq!(
                crate::resolve(name).map(|s| s.name),
                Some(canonical),
                "{name}"
            );
        }
    }
}
