//! `python`: calls a Python function (Airflow's `PythonOperator`), run by Airflow's own Task SDK
//! in the Python environment `[python] interpreter` names, never in Gust's process.
//!
//! The callable is named as dag-factory names it: `python_callable_name` and
//! `python_callable_file` (an absolute path, or one starting with an environment variable
//! dag-factory expands), or `python_callable` as a dotted path (`package.module.function`).
//! Templates in its arguments are rendered by the Task SDK (Airflow's Jinja), not by Gust.
//!
//! Python tasks are known only once the binary has said a Python environment is configured
//! ([`enable`]); until then DAG files that use them are refused with a message naming the
//! setting, as before.

use std::sync::atomic::{AtomicBool, Ordering};

use serde::Deserialize;

use crate::spec::{ArgumentError, OperatorSpec, read_args};

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Makes Python tasks known to this process's DAG loading (`[python] interpreter` is set).
pub fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

/// Whether Python tasks are known (see [`enable`]).
#[must_use]
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// What the refusals of Python operators and arguments say while Python tasks are off.
pub const NOT_CONFIGURED: &str = "Python tasks run in Airflow's own Task SDK: set [python] \
    interpreter (GUST__PYTHON__INTERPRETER) to the python of a virtualenv with \
    `pip install apache-airflow==3.3.2 dag-factory==1.1.0` (see docs/python.md); or run the code \
    as a script with the `bash` operator or in a container with `kubernetes_pod`";

/// The arguments of a Python task, as written.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PythonArgs {
    /// The callable as a dotted path (`package.module.function`).
    #[serde(default)]
    pub python_callable: Option<String>,
    /// The callable's name in `python_callable_file` (dag-factory's form).
    #[serde(default)]
    pub python_callable_name: Option<String>,
    /// The file that defines `python_callable_name`.
    #[serde(default)]
    pub python_callable_file: Option<String>,
    /// Positional arguments.
    #[serde(default)]
    pub op_args: Option<Vec<serde_json::Value>>,
    /// Keyword arguments.
    #[serde(default)]
    pub op_kwargs: Option<serde_json::Map<String, serde_json::Value>>,
    /// Templated values passed as `templates_dict`.
    #[serde(default)]
    pub templates_dict: Option<serde_json::Map<String, serde_json::Value>>,
    /// Extensions of files whose contents are rendered as templates.
    #[serde(default)]
    pub templates_exts: Option<Vec<String>>,
    /// Log the return value (Airflow's default: yes).
    #[serde(default)]
    pub show_return_value_in_logs: Option<bool>,
    /// Push each key of a returned dict as its own XCom.
    #[serde(default)]
    pub multiple_outputs: Option<bool>,
}

fn check(args: &serde_json::Map<String, serde_json::Value>) -> Result<(), ArgumentError> {
    let read: PythonArgs = read_args(args)?;
    let problem = |path: &str, message: &str| ArgumentError {
        path: path.to_owned(),
        message: message.to_owned(),
    };
    match (
        &read.python_callable,
        &read.python_callable_name,
        &read.python_callable_file,
    ) {
        (Some(_), None, None) => Ok(()),
        (None, Some(_), Some(file)) => {
            if file.starts_with('/') || file.starts_with('$') {
                Ok(())
            } else {
                Err(problem(
                    "python_callable_file",
                    "must be an absolute path (dag-factory's rule), or start with an \
                     environment variable such as $CONFIG_ROOT_DIR",
                ))
            }
        }
        (None, Some(_), None) => Err(problem(
            "python_callable_file",
            "python_callable_name needs python_callable_file, the file that defines it",
        )),
        (None, None, Some(_)) => Err(problem(
            "python_callable_name",
            "python_callable_file needs python_callable_name, the function to call",
        )),
        (None, None, None) => Err(problem(
            "python_callable",
            "a Python task needs python_callable (package.module.function), or \
             python_callable_name and python_callable_file",
        )),
        (Some(_), _, _) => Err(problem(
            "python_callable",
            "give either python_callable or python_callable_name and python_callable_file, \
             not both",
        )),
    }
}

/// The Python operator.
pub static SPEC: OperatorSpec = OperatorSpec {
    name: "python",
    aliases: &[
        "PythonOperator",
        "airflow.operators.python.PythonOperator",
        "airflow.operators.python_operator.PythonOperator",
        "airflow.providers.standard.operators.python.PythonOperator",
    ],
    arguments: &[
        "python_callable",
        "python_callable_name",
        "python_callable_file",
        "op_args",
        "op_kwargs",
        "templates_dict",
        "templates_exts",
        "show_return_value_in_logs",
        "multiple_outputs",
    ],
    renamed_arguments: &[],
    required: &[],
    pushes_xcom_by_default: true,
    holds_worker: true,
    check,
};

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn checked(value: serde_json::Value) -> Result<(), ArgumentError> {
        check(value.as_object().expect("an object"))
    }

    #[test]
    fn a_callable_is_named_one_way_or_the_other() {
        assert!(checked(json!({"python_callable": "pkg.mod.fn"})).is_ok());
        assert!(
            checked(json!({"python_callable_name": "fn", "python_callable_file": "/d/f.py"}))
                .is_ok()
        );
        assert!(
            checked(json!({"python_callable_name": "fn", "python_callable_file": "$ROOT/f.py"}))
                .is_ok()
        );
        let relative =
            checked(json!({"python_callable_name": "fn", "python_callable_file": "f.py"}));
        assert_eq!(relative.expect_err("relative").path, "python_callable_file");
        assert_eq!(
            checked(json!({"op_args": [1]}))
                .expect_err("no callable")
                .path,
            "python_callable"
        );
        assert_eq!(
            checked(json!({"python_callable_name": "fn"}))
                .expect_err("no file")
                .path,
            "python_callable_file"
        );
        assert!(checked(json!({"python_callable": "a.b", "bash_command": "x"})).is_err());
    }
}
