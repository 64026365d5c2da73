//! Creating runs on request (`gust dags trigger`, the API, backfills): run ids in Airflow's form,
//! and `conf` checked against the DAG's params before anything is stored.

use chrono::{DateTime, SecondsFormat, Utc};
use gust_core::dag::Dag;
use gust_core::ids::RunId;
use gust_store::{NewRun, RunType, Store, StoreError};

/// Why a run could not be created.
#[derive(Debug, thiserror::Error)]
pub enum TriggerError {
    /// `conf` does not fit the DAG's params.
    #[error(
        "conf key \"{key}\" must be {expected} like the DAG's param default ({default}), not {given}"
    )]
    ConfType {
        /// The key.
        key: String,
        /// The JSON type the param's default has.
        expected: &'static str,
        /// The default.
        default: String,
        /// What was given instead.
        given: String,
    },
    /// The run id is not acceptable.
    #[error("invalid run id: {0}")]
    RunId(#[from] gust_core::ids::IdError),
    /// A run with this id exists.
    #[error("DAG {dag_id} already has a run with id {run_id}; pass another --run-id")]
    Exists {
        /// The DAG.
        dag_id: String,
        /// The run id.
        run_id: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Airflow's run id for a run of `kind` at `logical_date`: `manual__2024-01-01T00:00:00+00:00`.
#[must_use]
pub fn run_id_for(kind: RunType, logical_date: DateTime<Utc>) -> String {
    let prefix = match kind {
        RunType::Scheduled => "scheduled",
        RunType::Manual => "manual",
        RunType::Backfill => "backfill",
    };
    format!(
        "{prefix}__{}",
        logical_date.to_rfc3339_opts(SecondsFormat::AutoSi, false)
    )
}

fn json_type(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "a list",
        serde_json::Value::Object(_) => "an object",
    }
}

/// Checks `conf` against the DAG's params: a key naming a param must have its default's JSON
/// type (a `null` default accepts anything). Keys that name no param are allowed, as in Airflow.
pub fn check_conf(
    dag: &Dag,
    conf: &serde_json::Map<String, serde_json::Value>,
) -> Result<(), TriggerError> {
    for (key, given) in conf {
        let Some(default) = dag.settings.params.get(key) else {
            continue;
        };
        if default.is_null() || json_type(default) == json_type(given) {
            continue;
        }
        return Err(TriggerError::ConfType {
            key: key.clone(),
            expected: json_type(default),
            default: default.to_string(),
            given: json_type(given).to_owned(),
        });
    }
    Ok(())
}

/// A manual run of `dag` at `logical_date` (default: now), as `gust dags trigger` and the API
/// create it: it covers its logical date alone, and the scheduler picks it up.
pub async fn trigger(
    store: &Store,
    dag: &Dag,
    conf: serde_json::Map<String, serde_json::Value>,
    run_id: Option<String>,
    logical_date: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<String, TriggerError> {
    check_conf(dag, &conf)?;
    // The store keeps microseconds; the run id must name the same instant.
    let logical_date = chrono::SubsecRound::trunc_subsecs(logical_date, 6);
    let run_id = RunId::new(run_id.unwrap_or_else(|| run_id_for(RunType::Manual, logical_date)))?;
    let run = NewRun {
        dag_id: dag.id.to_string(),
        run_id: run_id.to_string(),
        run_type: RunType::Manual,
        logical_date,
        data_interval: (logical_date, logical_date),
        conf,
        queued_at: now,
    };
    if !store.create_run(&run).await? {
        return Err(TriggerError::Exists {
            dag_id: run.dag_id,
            run_id: run.run_id,
        });
    }
    Ok(run.run_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn run_ids_follow_airflow() {
        let at = Utc.with_ymd_and_hms(2024, 1, 2, 3, 0, 0).unwrap();
        assert_eq!(
            run_id_for(RunType::Manual, at),
            "manual__2024-01-02T03:00:00+00:00"
        );
        assert_eq!(
            run_id_for(RunType::Scheduled, at),
            "scheduled__2024-01-02T03:00:00+00:00"
        );
    }

    #[test]
    fn conf_must_keep_the_type_of_param_defaults() {
        let mut dag = Dag::new(
            gust_core::ids::DagId::new("d").unwrap(),
            gust_core::dag::DagSettings::default(),
            indexmap::IndexMap::new(),
            indexmap::IndexMap::new(),
            "d.yaml".into(),
        )
        .unwrap();
        dag.settings.params = serde_json::json!({"limit": 10, "anything": null})
            .as_object()
            .cloned()
            .unwrap();
        let conf = |v: serde_json::Value| v.as_object().cloned().unwrap();
        assert!(check_conf(&dag, &conf(serde_json::json!({"limit": 3, "other": "x"}))).is_ok());
        assert!(check_conf(&dag, &conf(serde_json::json!({"anything": [1]}))).is_ok());
        let err = check_conf(&dag, &conf(serde_json::json!({"limit": "ten"})))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "conf key \"limit\" must be a number like the DAG's param default (10), not a string"
        );
    }
}
