//! What every operator declares about itself.

use serde::de::DeserializeOwned;

/// An operator's names and the arguments it accepts.
#[derive(Debug)]
pub struct OperatorSpec {
    /// The canonical short name (`bash`), stored with each task.
    pub name: &'static str,
    /// Other names that resolve to it: Airflow class names and paths.
    pub aliases: &'static [&'static str],
    /// Every argument the operator accepts, by canonical name.
    pub arguments: &'static [&'static str],
    /// Old argument names still accepted, each with the name it now goes by.
    pub renamed_arguments: &'static [(&'static str, &'static str)],
    /// The arguments that must be given.
    pub required: &'static [&'static str],
    /// Whether `do_xcom_push` is on unless the task says otherwise (Airflow's default is on;
    /// KubernetesPodOperator turns it off).
    pub pushes_xcom_by_default: bool,
    /// Whether a running try holds a worker of this host (a process), counting against
    /// `[core] parallelism`; a pod, followed by a watch, does not.
    pub holds_worker: bool,
    /// Whether any argument name is accepted besides `arguments`: those of a TaskFlow task are
    /// its Python function's parameters and its decorator's, which only Python knows (the
    /// worker checks them as it builds the DAG).
    pub open_arguments: bool,
    /// Checks the arguments' types by reading them into the operator's argument struct.
    pub check: fn(&serde_json::Map<String, serde_json::Value>) -> Result<(), ArgumentError>,
}

impl OperatorSpec {
    /// Whether `name` is one of the operator's arguments (canonical names only).
    #[must_use]
    pub fn accepts(&self, name: &str) -> bool {
        self.arguments.contains(&name)
    }

    /// Whether `name` is taken as an argument: one of `arguments`, or any name but one Gust
    /// refuses (see [`crate::refused::refused_argument`]) when the operator's are open, or a
    /// task callback of an operator the Task SDK runs.
    #[must_use]
    pub fn takes(&self, name: &str) -> bool {
        // The Task SDK runs a task's callbacks in the worker, for every operator it runs.
        if crate::python::runs_in_task_sdk(self.name) && crate::refused::is_task_callback(name) {
            return true;
        }
        // An operator Gust does not know (a `PythonSensor`, your own) may take a callable as
        // PythonOperator does; dag-factory reads the callable's forms for any operator.
        if self.open_arguments
            && crate::python::enabled()
            && crate::refused::is_callable_argument(name)
        {
            return true;
        }
        self.accepts(name)
            || (self.open_arguments && crate::refused::refused_argument(name).is_none())
    }

    /// The canonical name of an argument given under an old name.
    #[must_use]
    pub fn canonical_argument(&self, name: &str) -> Option<&'static str> {
        self.renamed_arguments
            .iter()
            .find(|(old, _)| *old == name)
            .map(|(_, new)| *new)
    }
}

/// An argument that does not fit its operator's argument struct.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("argument \"{path}\": {message}")]
pub struct ArgumentError {
    /// The path to the bad value, e.g. `env.HOME` or `skip_on_exit_code[1]`.
    pub path: String,
    /// What was wrong.
    pub message: String,
}

/// Reads `args` into `T`, reporting the path of the first value that does not fit.
pub fn read_args<T: DeserializeOwned>(
    args: &serde_json::Map<String, serde_json::Value>,
) -> Result<T, ArgumentError> {
    let value = serde_json::Value::Object(args.clone());
    serde_path_to_error::deserialize(value).map_err(|err| ArgumentError {
        path: err.path().to_string(),
        message: err.inner().to_string(),
    })
}

/// Checks `args` against `T` (the `check` of an [`OperatorSpec`]).
pub fn check_args<T: DeserializeOwned>(
    args: &serde_json::Map<String, serde_json::Value>,
) -> Result<(), ArgumentError> {
    read_args::<T>(args).map(drop)
}
