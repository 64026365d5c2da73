//! What Gust cannot run, and what it offers instead.
//!
//! Gust runs no Python inside its own processes: Python tasks run in Airflow's Task SDK once a
//! Python environment is configured (`crate::python`). Until then, and for what that does not
//! cover yet, Python callables in DAG files are refused with a message naming the setting or the
//! alternative, never silently dropped. Callbacks are settings, not arguments: the notifiers
//! among them are sent natively, and the reader refuses only the Python callables they name
//! when no Python environment is configured (gust-dagfile's `build/notifiers.rs`).

/// Why an operator named in a DAG file cannot run here: a Python operator, or any other Airflow
/// class path, without `[python] interpreter` (with it, the Task SDK runs them all).
#[must_use]
pub fn refused_operator(name: &str) -> Option<&'static str> {
    let class = name.rsplit('.').next().unwrap_or(name);
    let python_class = matches!(
        class,
        "PythonOperator"
            | "BranchPythonOperator"
            | "ShortCircuitOperator"
            | "PythonVirtualenvOperator"
            | "ExternalPythonOperator"
            | "BranchExternalPythonOperator"
            | "PythonSensor"
    );
    let runs_in_sdk = python_class || crate::python::is_class_path(name);
    (runs_in_sdk && !crate::python::enabled()).then_some(crate::python::NOT_CONFIGURED)
}

/// The task callbacks Airflow's Task SDK runs in the worker as the task's state changes.
const TASK_CALLBACKS: [&str; 5] = [
    "on_execute_callback",
    "on_success_callback",
    "on_failure_callback",
    "on_retry_callback",
    "on_skipped_callback",
];

/// Whether `name` gives a task callback as dag-factory reads one: a dotted path or a
/// `{callback: path, ...}` notifier under the callback's name, or `<callback>_name` with
/// `<callback>_file`.
#[must_use]
pub fn is_task_callback(name: &str) -> bool {
    TASK_CALLBACKS.iter().any(|callback| {
        name.strip_prefix(callback)
            .is_some_and(|rest| matches!(rest, "" | "_name" | "_file"))
    })
}

/// Whether `name` gives a DAG callback as dag-factory reads one (see [`is_task_callback`]).
#[must_use]
pub fn is_dag_callback(name: &str) -> bool {
    ["on_success_callback", "on_failure_callback"]
        .iter()
        .any(|callback| {
            name.strip_prefix(callback)
                .is_some_and(|rest| matches!(rest, "" | "_name" | "_file"))
        })
}

/// Whether `name` gives a Python callable or its arguments, in any of dag-factory's forms.
#[must_use]
pub fn is_callable_argument(name: &str) -> bool {
    matches!(
        name,
        "python_callable"
            | "python_callable_name"
            | "python_callable_file"
            | "op_args"
            | "op_kwargs"
            | "templates_dict"
    )
}

/// Why a task argument cannot be honoured, if it needs Python.
#[must_use]
pub fn refused_argument(name: &str) -> Option<&'static str> {
    match name {
        "python_callable"
        | "python_callable_name"
        | "python_callable_file"
        | "op_args"
        | "op_kwargs"
        | "templates_dict"
            if !crate::python::enabled() =>
        {
            Some(crate::python::NOT_CONFIGURED)
        }
        "python_callable"
        | "python_callable_name"
        | "python_callable_file"
        | "op_args"
        | "op_kwargs"
        | "templates_dict" => Some(
            "Python callables are arguments of PythonOperator tasks (operator: \
             airflow.providers.standard.operators.python.PythonOperator)",
        ),
        "decorator" if !crate::python::enabled() => Some(crate::python::NOT_CONFIGURED),
        "decorator" => {
            Some("a TaskFlow task is written with `decorator:` in place of `operator:`, not both")
        }
        "executor_config" => Some(
            "executor_config (its pod_override) shapes the worker pod of a Python task run as a \
             pod ([kubernetes] worker_image); this operator runs in no worker pod: give a \
             kubernetes_pod task its pod's settings as its own arguments (container_resources, \
             node_selector, tolerations, full_pod_spec...)",
        ),
        _ if name.ends_with("_callback") || name.ends_with("_callbacks") => Some(
            "Gust runs the callbacks Airflow 3 runs: on_execute_callback, on_success_callback, \
             on_failure_callback, on_retry_callback and on_skipped_callback of tasks, \
             on_success_callback and on_failure_callback of DAGs",
        ),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_operators_are_refused_by_class_name_or_path() {
        assert!(refused_operator("PythonOperator").is_some());
        assert!(refused_operator("airflow.operators.python.PythonOperator").is_some());
        assert!(refused_operator("bash").is_none());
    }

    #[test]
    fn callables_and_callbacks_are_refused() {
        for arg in ["python_callable", "sla_miss_callback", "decorator"] {
            assert!(refused_argument(arg).is_some(), "{arg}");
        }
        assert!(refused_argument("bash_command").is_none());
    }

    #[test]
    fn dag_callbacks_are_success_and_failure_only() {
        assert!(is_dag_callback("on_failure_callback"));
        assert!(is_dag_callback("on_success_callback_file"));
        assert!(!is_dag_callback("on_retry_callback"));
        assert!(!is_dag_callback("sla_miss_callback"));
    }

    #[test]
    fn task_callbacks_are_named_three_ways() {
        for name in [
            "on_failure_callback",
            "on_success_callback_name",
            "on_retry_callback_file",
        ] {
            assert!(is_task_callback(name), "{name}");
        }
        for name in [
            "sla_miss_callback",
            "on_failure_callbacks",
            "on_failure_callback_x",
        ] {
            assert!(!is_task_callback(name), "{name}");
        }
    }
}
