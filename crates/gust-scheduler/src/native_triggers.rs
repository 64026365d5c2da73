//! Airflow's temporal triggers (`DateTimeTrigger`, and `TimeDeltaTrigger`, which serializes as
//! one), run by the scheduler as its own timers instead of in Python: a deferred
//! `DateTimeSensorAsync` or `TimeDeltaSensorAsync` costs one timer entry while it waits.
//!
//! Pure: from the trigger's class and kwargs (Airflow's serde form) to when it fires and what it
//! reports, the same event payload Airflow's triggerer would send (the moment, as serde writes a
//! pendulum date-time), or the task's success for `end_from_trigger`.

use chrono::{DateTime, Utc};
use gust_executor::deferral::{EndState, TriggerResult};

/// The class paths run natively (the provider's, and Airflow 2's core path).
const TEMPORAL: [&str; 4] = [
    "airflow.providers.standard.triggers.temporal.DateTimeTrigger",
    "airflow.providers.standard.triggers.temporal.TimeDeltaTrigger",
    "airflow.triggers.temporal.DateTimeTrigger",
    "airflow.triggers.temporal.TimeDeltaTrigger",
];

/// When a native trigger fires and what it reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NativeTrigger {
    /// When.
    pub at: DateTime<Utc>,
    /// What.
    pub result: TriggerResult,
}

/// The native form of the trigger `classpath` with `kwargs`, when it has one. Kwargs it cannot
/// read natively (a templated `target_time`) leave it to the Python triggerer.
#[must_use]
pub fn native(classpath: &str, kwargs: &serde_json::Value) -> Option<NativeTrigger> {
    if !TEMPORAL.contains(&classpath) {
        return None;
    }
    let (at, payload) = match (kwargs.get("moment"), kwargs.get("target_time")) {
        (Some(moment), None) if !moment.is_null() => (serde_moment(moment)?, moment.clone()),
        (None | Some(serde_json::Value::Null), Some(serde_json::Value::String(text))) => {
            let at = DateTime::parse_from_rfc3339(text).ok()?.to_utc();
            (at, pendulum_utc(at))
        }
        _ => return None,
    };
    let end_from_trigger = match kwargs.get("end_from_trigger") {
        None | Some(serde_json::Value::Null) => false,
        Some(serde_json::Value::Bool(b)) => *b,
        Some(_) => return None,
    };
    let result = if end_from_trigger {
        TriggerResult::EndTask(EndState::Success)
    } else {
        TriggerResult::Event(payload)
    };
    Some(NativeTrigger { at, result })
}

/// A date-time as Airflow's serde writes one: a pendulum or `datetime` object with its POSIX
/// `timestamp` (seconds, fractions to the microsecond).
fn serde_moment(value: &serde_json::Value) -> Option<DateTime<Utc>> {
    let class = value.get("__classname__")?.as_str()?;
    if !matches!(class, "pendulum.datetime.DateTime" | "datetime.datetime") {
        return None;
    }
    let seconds = value.get("__data__")?.get("timestamp")?.as_f64()?;
    if !seconds.is_finite() {
        return None;
    }
    // Microseconds, as Python keeps them: exact for any date a trigger names.
    #[allow(
        clippy::cast_possible_truncation,
        reason = "a finite timestamp in microseconds fits an i64 for any real date"
    )]
    let micros = (seconds * 1e6).round() as i64;
    DateTime::from_timestamp_micros(micros)
}

/// `at` as Airflow's serde writes a UTC pendulum date-time (what a `DateTimeTrigger` built from
/// a `target_time` yields).
fn pendulum_utc(at: DateTime<Utc>) -> serde_json::Value {
    #[allow(
        clippy::cast_precision_loss,
        reason = "Python's own timestamp is this float"
    )]
    let timestamp = at.timestamp_micros() as f64 / 1e6;
    serde_json::json!({
        "__classname__": "pendulum.datetime.DateTime",
        "__version__": 2,
        "__data__": {
            "timestamp": timestamp,
            "tz": {
                "__classname__": "builtins.tuple",
                "__version__": 1,
                "__data__": ["UTC", "pendulum.tz.timezone.Timezone", 1, true],
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the SDK sends for `TimeDeltaTrigger(timedelta(seconds=5))` (captured from Airflow
    /// 3.3.2's `serde.serialize`).
    const MOMENT: &str = r#"{"__classname__": "pendulum.datetime.DateTime", "__version__": 2, "__data__": {"timestamp": 1796617722.011897, "tz": {"__classname__": "builtins.tuple", "__version__": 1, "__data__": ["UTC", "pendulum.tz.timezone.Timezone", 1, true]}}}"#;

    #[test]
    fn a_serialized_moment_fires_then_and_reports_itself() {
        let moment: serde_json::Value = serde_json::from_str(MOMENT).expect("json");
        let kwargs = serde_json::json!({"moment": moment, "end_from_trigger": false});
        let trigger = native(TEMPORAL[0], &kwargs).expect("native");
        assert_eq!(trigger.at.timestamp_micros(), 1_796_617_722_011_897);
        assert_eq!(trigger.result, TriggerResult::Event(moment));
    }

    #[test]
    fn target_time_and_end_from_trigger_are_read() {
        let kwargs = serde_json::json!({"target_time": "2024-01-01T00:00:00+00:00", "end_from_trigger": true});
        let trigger = native(TEMPORAL[0], &kwargs).expect("native");
        assert_eq!(trigger.at.to_rfc3339(), "2024-01-01T00:00:00+00:00");
        assert_eq!(trigger.result, TriggerResult::EndTask(EndState::Success));
        let kwargs = serde_json::json!({"target_time": "2024-01-01T00:00:00+00:00"});
        let TriggerResult::Event(payload) = native(TEMPORAL[0], &kwargs).expect("native").result
        else {
            panic!("an event");
        };
        assert_eq!(payload["__data__"]["timestamp"], 1_704_067_200.0);
    }

    #[test]
    fn other_classes_and_unreadable_kwargs_go_to_python() {
        let kwargs = serde_json::json!({"target_time": "{{ data_interval_end }}"});
        assert_eq!(native(TEMPORAL[0], &kwargs), None);
        assert_eq!(native("my.Trigger", &serde_json::json!({})), None);
        assert_eq!(native(TEMPORAL[0], &serde_json::json!({})), None);
    }
}
