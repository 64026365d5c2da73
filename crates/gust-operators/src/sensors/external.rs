//! `ExternalTaskSensor` (waits for tasks, a task group or a whole run of another DAG at the same
//! logical date, or one `execution_delta` earlier) and `ExternalTaskMarker` (an empty task that
//! names the task depending on it in another DAG).

use std::time::Duration;

use serde::{Deserialize, Deserializer};

use super::SensorSettings;
use crate::spec::{ArgumentError, OperatorSpec, read_args};

/// Airflow's task-instance states, as `allowed_states` and friends may name them when the
/// sensor waits for tasks.
pub const TASK_STATES: [&str; 13] = [
    "removed",
    "scheduled",
    "queued",
    "running",
    "success",
    "restarting",
    "failed",
    "up_for_retry",
    "up_for_reschedule",
    "upstream_failed",
    "skipped",
    "deferred",
    "none",
];

/// Airflow's DAG-run states, as the state lists may name them when the sensor waits for a run.
pub const DAG_RUN_STATES: [&str; 4] = ["queued", "running", "success", "failed"];

/// `ExternalTaskSensor`'s arguments.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ExternalTaskArgs {
    /// The DAG waited for (templated).
    pub external_dag_id: String,
    /// One task waited for (templated).
    #[serde(default)]
    pub external_task_id: Option<String>,
    /// Several tasks waited for (templated).
    #[serde(default)]
    pub external_task_ids: Option<Vec<String>>,
    /// A task group waited for (templated).
    #[serde(default)]
    pub external_task_group_id: Option<String>,
    /// The states that end the wait with success (default `[success]`).
    #[serde(default)]
    pub allowed_states: Option<Vec<String>>,
    /// The states that skip the sensor.
    #[serde(default)]
    pub skipped_states: Option<Vec<String>>,
    /// The states that fail the sensor.
    #[serde(default)]
    pub failed_states: Option<Vec<String>>,
    /// How much earlier the run waited for is than this one's logical date.
    #[serde(default, deserialize_with = "optional_duration")]
    pub execution_delta: Option<Duration>,
    /// A Python callable: refused (see [`SENSOR_SPEC`]).
    #[serde(default)]
    pub execution_date_fn: Option<serde_json::Value>,
    /// Accepted; Airflow 3 ignores it too (a run or task that does not exist is waited for).
    #[serde(default)]
    pub check_existence: bool,
    /// How it waits.
    #[serde(flatten)]
    pub settings: SensorSettings,
}

fn optional_duration<'de, D: Deserializer<'de>>(de: D) -> Result<Option<Duration>, D::Error> {
    let value = serde_json::Value::deserialize(de)?;
    if value.is_null() {
        return Ok(None);
    }
    super::duration(&value, 1.0)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

/// What an [`ExternalTaskArgs`] waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// These tasks (no duplicates).
    Tasks(Vec<String>),
    /// The tasks of this group.
    Group(String),
    /// The whole run.
    Run,
}

impl ExternalTaskArgs {
    /// What it waits for, refusing what Airflow refuses when the sensor is built.
    pub fn target(&self) -> Result<Target, ArgumentError> {
        let error = |path: &str, message: String| ArgumentError {
            path: path.to_owned(),
            message,
        };
        let ids = self.external_task_ids.clone().filter(|ids| !ids.is_empty());
        let tasks = match (&self.external_task_id, ids) {
            (Some(_), Some(_)) => {
                return Err(error(
                    "external_task_ids",
                    "give only one of external_task_id or external_task_ids".to_owned(),
                ));
            }
            (Some(one), None) => Some(vec![one.clone()]),
            (None, many) => many,
        };
        match (tasks, &self.external_task_group_id) {
            (Some(_), Some(_)) => Err(error(
                "external_task_group_id",
                "give only one of external_task_id(s) or external_task_group_id".to_owned(),
            )),
            (Some(tasks), None) => {
                let mut unique = tasks.clone();
                unique.sort_unstable();
                unique.dedup();
                if unique.len() != tasks.len() {
                    return Err(error(
                        "external_task_ids",
                        "a task is named twice".to_owned(),
                    ));
                }
                Ok(Target::Tasks(tasks))
            }
            (None, Some(group)) => Ok(Target::Group(group.clone())),
            (None, None) => Ok(Target::Run),
        }
    }

    /// The states that succeed (default `[success]`), skip and fail the sensor, checked as
    /// Airflow checks them: no state twice, each a task state (or a run state when it waits
    /// for the whole run).
    pub fn states(&self) -> Result<States, ArgumentError> {
        let target = self.target()?;
        let states = States {
            allowed: self
                .allowed_states
                .clone()
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| vec!["success".to_owned()]),
            skipped: self.skipped_states.clone().unwrap_or_default(),
            failed: self.failed_states.clone().unwrap_or_default(),
        };
        let all: Vec<&String> = states
            .allowed
            .iter()
            .chain(&states.skipped)
            .chain(&states.failed)
            .collect();
        let mut unique = all.clone();
        unique.sort_unstable();
        unique.dedup();
        if unique.len() != all.len() {
            return Err(ArgumentError {
                path: "allowed_states".to_owned(),
                message:
                    "a state is named twice across allowed_states, skipped_states and failed_states"
                        .to_owned(),
            });
        }
        let valid: &[&str] = if target == Target::Run {
            &DAG_RUN_STATES
        } else {
            &TASK_STATES
        };
        if let Some(bad) = all.iter().find(|s| !valid.contains(&s.as_str())) {
            return Err(ArgumentError {
                path: "allowed_states".to_owned(),
                message: format!(
                    "\"{bad}\" is not a {} state; use one of {}",
                    if target == Target::Run {
                        "DAG run"
                    } else {
                        "task"
                    },
                    valid.join(", ")
                ),
            });
        }
        Ok(states)
    }
}

/// The states an [`ExternalTaskArgs`] reacts to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct States {
    /// Success.
    pub allowed: Vec<String>,
    /// Skip.
    pub skipped: Vec<String>,
    /// Failure.
    pub failed: Vec<String>,
}

/// Why `execution_date_fn` is refused.
pub const NO_EXECUTION_DATE_FN: &str = "execution_date_fn takes a Python callable, which Gust's \
    native ExternalTaskSensor does not run: give execution_delta (how much earlier the run waited \
    for is) instead";

fn check_sensor(args: &serde_json::Map<String, serde_json::Value>) -> Result<(), ArgumentError> {
    let args: ExternalTaskArgs = read_args(args)?;
    if args.execution_date_fn.is_some() {
        return Err(ArgumentError {
            path: "execution_date_fn".to_owned(),
            message: NO_EXECUTION_DATE_FN.to_owned(),
        });
    }
    args.states()?;
    args.settings.check()
}

/// `ExternalTaskMarker`'s arguments.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExternalTaskMarkerArgs {
    /// The DAG holding the task that depends on this one (templated).
    pub external_dag_id: String,
    /// That task (templated).
    pub external_task_id: String,
    /// The logical date of its run (templated; default this run's).
    #[serde(default)]
    pub logical_date: Option<String>,
    /// How deep Airflow's clear follows markers (default 10); must be positive.
    #[serde(default = "default_recursion_depth")]
    pub recursion_depth: u32,
}

fn default_recursion_depth() -> u32 {
    10
}

fn check_marker(args: &serde_json::Map<String, serde_json::Value>) -> Result<(), ArgumentError> {
    let args: ExternalTaskMarkerArgs = read_args(args)?;
    if args.recursion_depth == 0 {
        return Err(ArgumentError {
            path: "recursion_depth".to_owned(),
            message: "must be a positive number".to_owned(),
        });
    }
    Ok(())
}

/// `ExternalTaskSensor`.
pub static SENSOR_SPEC: OperatorSpec = OperatorSpec {
    name: "external_task_sensor",
    aliases: &[
        "ExternalTaskSensor",
        "airflow.sensors.external_task.ExternalTaskSensor",
        "airflow.sensors.external_task_sensor.ExternalTaskSensor",
        "airflow.providers.standard.sensors.external_task.ExternalTaskSensor",
    ],
    arguments: sensor_arguments!(
        "external_dag_id",
        "external_task_id",
        "external_task_ids",
        "external_task_group_id",
        "allowed_states",
        "skipped_states",
        "failed_states",
        "execution_delta",
        "execution_date_fn",
        "check_existence"
    ),
    renamed_arguments: &[("poll_interval", "poke_interval")],
    required: &["external_dag_id"],
    pushes_xcom_by_default: true,
    holds_worker: false,
    open_arguments: false,
    check: check_sensor,
};

/// `ExternalTaskMarker`.
pub static MARKER_SPEC: OperatorSpec = OperatorSpec {
    name: "external_task_marker",
    aliases: &[
        "ExternalTaskMarker",
        "airflow.sensors.external_task.ExternalTaskMarker",
        "airflow.sensors.external_task_sensor.ExternalTaskMarker",
        "airflow.providers.standard.sensors.external_task.ExternalTaskMarker",
    ],
    arguments: &[
        "external_dag_id",
        "external_task_id",
        "logical_date",
        "recursion_depth",
    ],
    renamed_arguments: &[("execution_date", "logical_date")],
    required: &["external_dag_id", "external_task_id"],
    pushes_xcom_by_default: true,
    holds_worker: false,
    open_arguments: false,
    check: check_marker,
};

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn read(value: serde_json::Value) -> ExternalTaskArgs {
        read_args(value.as_object().expect("an object")).expect("valid")
    }

    fn check(value: serde_json::Value) -> Result<(), ArgumentError> {
        (SENSOR_SPEC.check)(value.as_object().expect("an object"))
    }

    #[test]
    fn the_target_is_tasks_a_group_or_the_run() {
        let one = read(json!({"external_dag_id": "d", "external_task_id": "t"}));
        assert_eq!(one.target().unwrap(), Target::Tasks(vec!["t".into()]));
        let group = read(json!({"external_dag_id": "d", "external_task_group_id": "g"}));
        assert_eq!(group.target().unwrap(), Target::Group("g".into()));
        let run = read(json!({"external_dag_id": "d", "external_task_ids": []}));
        assert_eq!(run.target().unwrap(), Target::Run);
        assert!(
            check(
                json!({"external_dag_id": "d", "external_task_id": "t", "external_task_ids": ["u"]})
            )
            .is_err()
        );
        assert!(check(json!({"external_dag_id": "d", "external_task_ids": ["u", "u"]})).is_err());
    }

    #[test]
    fn states_default_to_success_and_are_checked_as_airflow_does() {
        let args = read(
            json!({"external_dag_id": "d", "external_task_id": "t", "failed_states": ["failed"]}),
        );
        let states = args.states().unwrap();
        assert_eq!(states.allowed, ["success"]);
        assert_eq!(states.failed, ["failed"]);
        let twice = check(
            json!({"external_dag_id": "d", "allowed_states": ["success"], "failed_states": ["success"]}),
        );
        assert!(twice.unwrap_err().message.contains("named twice"));
        // A whole run has no `skipped` state.
        let err =
            check(json!({"external_dag_id": "d", "allowed_states": ["skipped"]})).unwrap_err();
        assert!(err.message.contains("not a DAG run state"), "{err}");
        assert!(check(json!({"external_dag_id": "d", "external_task_id": "t", "allowed_states": ["skipped"]})).is_ok());
    }

    #[test]
    fn execution_date_fn_is_refused_naming_execution_delta() {
        let err = check(json!({"external_dag_id": "d", "execution_date_fn": "my.fn"})).unwrap_err();
        assert_eq!(err.path, "execution_date_fn");
        assert!(err.message.contains("execution_delta"));
    }

    #[test]
    fn markers_need_a_positive_recursion_depth() {
        let check = |v: serde_json::Value| (MARKER_SPEC.check)(v.as_object().expect("object"));
        assert!(check(json!({"external_dag_id": "d", "external_task_id": "t"})).is_ok());
        assert!(
            check(json!({"external_dag_id": "d", "external_task_id": "t", "recursion_depth": 0}))
                .is_err()
        );
    }
}
