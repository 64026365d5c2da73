//! Airflow's context environment variables (`AIRFLOW_CTX_*`): what a bash try's process is told
//! about itself, as Airflow's task runner exports them and its BashOperator passes them on
//! (`context_to_airflow_vars`). Pods get none: KubernetesPodOperator sets none in the pods it
//! builds, and a local pod stands for such a pod.

use gust_core::date::python_isoformat;
use gust_executor::LaunchSpec;

/// The variables of `spec`'s try. As in Airflow, a value that is empty (no e-mail address, an
/// empty owner) or missing (no logical date) is left out rather than set empty; lists are
/// joined with commas and the logical date written as Python's `isoformat()` does.
#[must_use]
pub fn airflow_context_vars(spec: &LaunchSpec) -> Vec<(String, String)> {
    let (key, context) = (&spec.key, &spec.context);
    let logical_date = context.logical_date.map(python_isoformat);
    let vars = [
        ("AIRFLOW_CTX_DAG_EMAIL", context.email.join(",")),
        ("AIRFLOW_CTX_DAG_OWNER", context.owner.clone()),
        ("AIRFLOW_CTX_DAG_ID", key.dag_id.to_string()),
        ("AIRFLOW_CTX_TASK_ID", key.task_id.to_string()),
        ("AIRFLOW_CTX_LOGICAL_DATE", logical_date.unwrap_or_default()),
        ("AIRFLOW_CTX_TRY_NUMBER", key.try_number.0.to_string()),
        ("AIRFLOW_CTX_DAG_RUN_ID", key.run_id.to_string()),
    ];
    vars.into_iter()
        .filter(|(_, value)| !value.is_empty())
        .map(|(name, value)| (name.to_owned(), value))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use gust_core::ids::{DagId, RunId, TaskId, TryNumber};
    use gust_executor::{TryContext, TryKey};

    fn spec(context: TryContext) -> LaunchSpec {
        LaunchSpec {
            key: TryKey {
                dag_id: DagId::new("d").unwrap(),
                run_id: RunId::new("manual__2024-01-01T00:00:00+00:00").unwrap(),
                task_id: TaskId::new("t").unwrap(),
                map_index: gust_core::mapping::UNMAPPED,
                try_number: TryNumber(2),
            },
            operator: "bash".into(),
            args: serde_json::Map::new(),
            do_xcom_push: true,
            execution_timeout: None,
            log_path: "/dev/null".into(),
            dag_file: "dag.yaml".into(),
            context,
        }
    }

    #[test]
    fn every_variable_is_set_as_airflow_writes_it() {
        let at = chrono::Utc.with_ymd_and_hms(2024, 1, 1, 6, 30, 0).unwrap()
            + chrono::Duration::microseconds(250);
        let vars = airflow_context_vars(&spec(TryContext {
            logical_date: Some(at),
            owner: "data".into(),
            email: vec!["a@example.com".into(), "b@example.com".into()],
            ..TryContext::default()
        }));
        let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            vars,
            [
                ("AIRFLOW_CTX_DAG_EMAIL", "a@example.com,b@example.com"),
                ("AIRFLOW_CTX_DAG_OWNER", "data"),
                ("AIRFLOW_CTX_DAG_ID", "d"),
                ("AIRFLOW_CTX_TASK_ID", "t"),
                (
                    "AIRFLOW_CTX_LOGICAL_DATE",
                    "2024-01-01T06:30:00.000250+00:00"
                ),
                ("AIRFLOW_CTX_TRY_NUMBER", "2"),
                (
                    "AIRFLOW_CTX_DAG_RUN_ID",
                    "manual__2024-01-01T00:00:00+00:00"
                ),
            ]
        );
    }

    #[test]
    fn empty_values_are_left_out_as_airflow_does() {
        let vars = airflow_context_vars(&spec(TryContext::default()));
        let names: Vec<&str> = vars.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "AIRFLOW_CTX_DAG_ID",
                "AIRFLOW_CTX_TASK_ID",
                "AIRFLOW_CTX_TRY_NUMBER",
                "AIRFLOW_CTX_DAG_RUN_ID"
            ]
        );
    }
}
