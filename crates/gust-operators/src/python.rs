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

/// Airflow's `executor_config` argument (every operator's): the KubernetesExecutor's settings
/// of the task's worker pod. Gust reads its `pod_override`, used when Python tasks run as pods.
pub const EXECUTOR_CONFIG: &str = "executor_config";

/// The key of [`EXECUTOR_CONFIG`] that Gust reads: a pod laid over the worker pod.
pub const POD_OVERRIDE: &str = "pod_override";

/// The `pod_override` of a task's `executor_config`, in manifest form (camelCase, no
/// `__type__` keys), checked; `None` when the task has none.
pub fn pod_override(
    args: &serde_json::Map<String, serde_json::Value>,
) -> Result<Option<serde_json::Value>, ArgumentError> {
    let Some(config) = args.get(EXECUTOR_CONFIG) else {
        return Ok(None);
    };
    let problem = |path: String, message: &str| ArgumentError {
        path,
        message: message.to_owned(),
    };
    let serde_json::Value::Object(config) = config else {
        return Err(problem(
            EXECUTOR_CONFIG.to_owned(),
            "must be a map, e.g. {pod_override: {spec: {containers: [{name: base, resources: ...}]}}}",
        ));
    };
    for key in config.keys() {
        let path = format!("{EXECUTOR_CONFIG}.{key}");
        match key.as_str() {
            POD_OVERRIDE => {}
            "KubernetesExecutor" => {
                return Err(problem(
                    path,
                    "the Airflow 1 form is not read (nor by Airflow 3); give the pod as \
                     pod_override",
                ));
            }
            _ => {
                return Err(problem(
                    path,
                    "Gust reads only pod_override (the KubernetesExecutor's worker pod \
                     settings)",
                ));
            }
        }
    }
    let Some(value) = config.get(POD_OVERRIDE).filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let path = format!("{EXECUTOR_CONFIG}.{POD_OVERRIDE}");
    let pod: k8s_openapi::api::core::v1::Pod =
        crate::kubernetes_pod::read_object(&path, value, "V1Pod")?;
    let manifest = crate::kubernetes_pod::to_manifest_form(value, &path, Some("V1Pod"))?;
    // A container is merged with the worker pod's by its name: one without is no container.
    let containers = pod.spec.iter().flat_map(|s| {
        s.containers
            .iter()
            .chain(s.init_containers.iter().flatten())
    });
    for container in containers {
        if container.name.is_empty() {
            return Err(problem(
                format!("{path}.spec.containers"),
                "every container needs a name (the worker's own is `base`)",
            ));
        }
    }
    Ok(Some(manifest))
}

fn check(args: &serde_json::Map<String, serde_json::Value>) -> Result<(), ArgumentError> {
    pod_override(args)?;
    // Callbacks are the worker's to read (dag-factory's forms), not PythonOperator's arguments.
    let args: serde_json::Map<String, serde_json::Value> = args
        .iter()
        .filter(|(name, _)| {
            !crate::refused::is_task_callback(name) && name.as_str() != EXECUTOR_CONFIG
        })
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect();
    let read: PythonArgs = read_args(&args)?;
    check_callable(
        read.python_callable.as_deref(),
        read.python_callable_name.as_deref(),
        read.python_callable_file.as_deref(),
    )
}

/// The callable is named one way or the other, as dag-factory reads it.
fn check_callable(
    python_callable: Option<&str>,
    python_callable_name: Option<&str>,
    python_callable_file: Option<&str>,
) -> Result<(), ArgumentError> {
    let problem = |path: &str, message: &str| ArgumentError {
        path: path.to_owned(),
        message: message.to_owned(),
    };
    match (python_callable, python_callable_name, python_callable_file) {
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

/// The arguments every Python operator takes (PythonOperator's), and `$extra` ones.
macro_rules! python_arguments {
    ($($extra:literal),*) => {
        &[
            "python_callable",
            "python_callable_name",
            "python_callable_file",
            "op_args",
            "op_kwargs",
            "templates_dict",
            "templates_exts",
            "show_return_value_in_logs",
            "multiple_outputs",
            "executor_config",
            $($extra),*
        ]
    };
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
    arguments: python_arguments!(),
    renamed_arguments: &[],
    required: &[],
    pushes_xcom_by_default: true,
    holds_worker: true,
    open_arguments: false,
    check,
};

/// `BranchPythonOperator`: the callable returns the task id(s) to follow; the Task SDK asks
/// Gust to skip the other tasks directly downstream (`skip-downstream`).
pub static BRANCH_SPEC: OperatorSpec = OperatorSpec {
    name: "python_branch",
    aliases: &[
        "BranchPythonOperator",
        "airflow.operators.python.BranchPythonOperator",
        "airflow.operators.python_operator.BranchPythonOperator",
        "airflow.providers.standard.operators.python.BranchPythonOperator",
    ],
    arguments: python_arguments!(),
    renamed_arguments: &[],
    required: &[],
    pushes_xcom_by_default: true,
    holds_worker: true,
    open_arguments: false,
    check,
};

/// `ShortCircuitOperator`: a falsy return value skips the tasks downstream (all of them, or
/// with `ignore_downstream_trigger_rules: false` the direct ones, leaving the rest to their
/// trigger rules).
pub static SHORT_CIRCUIT_SPEC: OperatorSpec = OperatorSpec {
    name: "short_circuit",
    aliases: &[
        "ShortCircuitOperator",
        "airflow.operators.python.ShortCircuitOperator",
        "airflow.operators.python_operator.ShortCircuitOperator",
        "airflow.providers.standard.operators.python.ShortCircuitOperator",
    ],
    arguments: python_arguments!("ignore_downstream_trigger_rules"),
    renamed_arguments: &[],
    required: &[],
    pushes_xcom_by_default: true,
    holds_worker: true,
    open_arguments: false,
    check: check_short_circuit,
};

/// A TaskFlow task, dag-factory's `decorator:` form of `@task`: `decorator` names the
/// decorator (`airflow.sdk.task`...), the callable is named as for `python`, and every other
/// argument is the function's parameter or the decorator's. A parameter written `+task_id`
/// (dag-factory's XComArg) is that task's return value, and makes that task an upstream.
/// Written with `decorator:` in place of `operator:`.
pub static TASKFLOW_SPEC: OperatorSpec = OperatorSpec {
    name: "taskflow",
    // As Airflow's API names the operator of a `@task` (never written in a DAG file).
    aliases: &[
        "_PythonDecoratedOperator",
        "airflow.providers.standard.decorators.python._PythonDecoratedOperator",
    ],
    arguments: &[
        "decorator",
        "python_callable",
        "python_callable_name",
        "python_callable_file",
        "multiple_outputs",
        "executor_config",
    ],
    renamed_arguments: &[],
    required: &["decorator"],
    pushes_xcom_by_default: true,
    holds_worker: true,
    open_arguments: true,
    check: check_taskflow,
};

/// Any other Airflow operator, named by its class path (`package.module.Class`: a provider's
/// operator or sensor, a custom one): dag-factory builds it in the worker and the Task SDK runs
/// it. Gust does not know its arguments, so any is taken; a wrong class path or argument fails
/// the try with Python's own error.
pub static CLASS_PATH_SPEC: OperatorSpec = OperatorSpec {
    name: "airflow_operator",
    aliases: &[],
    arguments: &[],
    renamed_arguments: &[],
    required: &[],
    pushes_xcom_by_default: true,
    holds_worker: true,
    open_arguments: true,
    // Its arguments are Python's to judge; the worker pod's settings are Gust's.
    check: |args| pod_override(args).map(drop),
};

/// Every operator whose tries the Task SDK runs, by canonical name.
pub static TASK_SDK_SPECS: [&OperatorSpec; 5] = [
    &SPEC,
    &BRANCH_SPEC,
    &SHORT_CIRCUIT_SPEC,
    &TASKFLOW_SPEC,
    &CLASS_PATH_SPEC,
];

/// Whether `name` is a Python class path (`package.module.Class`), as dag-factory imports an
/// operator by.
#[must_use]
pub fn is_class_path(name: &str) -> bool {
    let mut parts = name.split('.');
    let identifier = |part: &str| {
        part.chars()
            .next()
            .is_some_and(|c| c.is_alphabetic() || c == '_')
            && part.chars().all(|c| c.is_alphanumeric() || c == '_')
    };
    name.contains('.') && parts.all(identifier)
}

/// The upstream task a TaskFlow argument's value names, in dag-factory's XComArg form:
/// `+task_id`, or `+task_id["key"]` for one key of its return value.
#[must_use]
pub fn xcom_arg_task(value: &serde_json::Value) -> Option<&str> {
    let rest = value.as_str()?.strip_prefix('+')?;
    let (task, key) = match rest.split_once('[') {
        Some((task, key)) => (task, Some(key)),
        None => (rest, None),
    };
    let is_id = !task.is_empty() && task.chars().all(|c| c.is_alphanumeric() || c == '_');
    // What follows `[` is a quoted key and `]`, either quote on either side (as dag-factory's
    // pattern takes it).
    let key_is_quoted = key.is_none_or(|key| {
        key.len() >= 3
            && key.starts_with(['"', '\''])
            && (key.ends_with("\"]") || key.ends_with("']"))
    });
    (is_id && key_is_quoted).then_some(task)
}

fn check_taskflow(args: &serde_json::Map<String, serde_json::Value>) -> Result<(), ArgumentError> {
    pod_override(args)?;
    let text = |name: &str| -> Result<Option<String>, ArgumentError> {
        match args.get(name) {
            None => Ok(None),
            Some(serde_json::Value::String(text)) => Ok(Some(text.clone())),
            Some(other) => Err(ArgumentError {
                path: name.to_owned(),
                message: format!("must be a string, not {other}"),
            }),
        }
    };
    match text("decorator")? {
        Some(path) if path.contains('.') => {}
        _ => {
            return Err(ArgumentError {
                path: "decorator".to_owned(),
                message: "must name the decorator by its Python path, e.g. airflow.sdk.task"
                    .to_owned(),
            });
        }
    }
    check_callable(
        text("python_callable")?.as_deref(),
        text("python_callable_name")?.as_deref(),
        text("python_callable_file")?.as_deref(),
    )
}

/// Whether tries of `operator` (a canonical name) run in Airflow's Task SDK.
#[must_use]
pub fn runs_in_task_sdk(operator: &str) -> bool {
    TASK_SDK_SPECS.iter().any(|spec| spec.name == operator)
}

fn check_short_circuit(
    args: &serde_json::Map<String, serde_json::Value>,
) -> Result<(), ArgumentError> {
    let mut args = args.clone();
    if let Some(value) = args.remove("ignore_downstream_trigger_rules")
        && !value.is_boolean()
    {
        return Err(ArgumentError {
            path: "ignore_downstream_trigger_rules".to_owned(),
            message: format!("must be true or false, not {value}"),
        });
    }
    check(&args)
}

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

    #[test]
    fn a_short_circuit_takes_a_flag_the_others_refuse() {
        let with = |flag: serde_json::Value| json!({"python_callable": "pkg.mod.fn", "ignore_downstream_trigger_rules": flag});
        let args = |value: serde_json::Value| value.as_object().expect("an object").clone();
        assert!(check_short_circuit(&args(with(json!(false)))).is_ok());
        assert_eq!(
            check_short_circuit(&args(with(json!("no"))))
                .expect_err("not a bool")
                .path,
            "ignore_downstream_trigger_rules"
        );
        assert!(checked(with(json!(false))).is_err());
        assert!(runs_in_task_sdk("python_branch") && !runs_in_task_sdk("bash"));
    }

    #[test]
    fn executor_config_takes_a_pod_override_in_either_form_and_names_a_bad_field() {
        let args = |value: serde_json::Value| value.as_object().expect("an object").clone();
        let manifest = json!({"python_callable": "m.f", "executor_config": {"pod_override": {
            "spec": {"containers": [{"name": "base", "resources": {"limits": {"memory": "1Gi"}}}]}
        }}});
        assert!(checked(manifest.clone()).is_ok());
        let read = pod_override(&args(manifest))
            .expect("valid")
            .expect("an override");
        assert_eq!(
            read.pointer("/spec/containers/0/resources/limits/memory"),
            Some(&json!("1Gi"))
        );
        // dag-factory's form of a Python object: snake_case fields and __type__ keys.
        let python = json!({"python_callable": "m.f", "executor_config": {"pod_override": {
            "__type__": "kubernetes.client.models.V1Pod",
            "spec": {
                "__type__": "kubernetes.client.models.V1PodSpec",
                "node_selector": {"pool": "big"},
                "service_account_name": "etl",
                "containers": [{
                    "__type__": "kubernetes.client.models.V1Container",
                    "name": "base",
                    "resources": {"__type__": "kubernetes.client.models.V1ResourceRequirements",
                                  "requests": {"cpu": 2}},
                }],
            },
        }}});
        let read = pod_override(&args(python))
            .expect("valid")
            .expect("an override");
        assert_eq!(read.pointer("/spec/nodeSelector/pool"), Some(&json!("big")));
        assert_eq!(
            read.pointer("/spec/serviceAccountName"),
            Some(&json!("etl"))
        );
        assert_eq!(
            read.pointer("/spec/containers/0/resources/requests/cpu"),
            Some(&json!("2"))
        );
        assert!(check_taskflow(&args(json!({"decorator": "airflow.sdk.task", "python_callable": "m.f",
            "executor_config": {"pod_override": {"spec": {"containers": [{"name": "base", "imagee": "x"}]}}}}))).is_err());
        assert!((CLASS_PATH_SPEC.check)(&args(json!({"executor_config": 3}))).is_err());

        let bad = |config: serde_json::Value| {
            checked(json!({"python_callable": "m.f", "executor_config": config}))
                .expect_err("refused")
        };
        let typo = bad(
            json!({"pod_override": {"spec": {"containers": [{"name": "base", "resourcez": {"limits": {"cpu": "1"}}}]}}}),
        );
        assert_eq!(
            typo.path, "executor_config.pod_override.spec.containers[0].resourcez",
            "{}",
            typo.message
        );
        assert_eq!(bad(json!("big")).path, "executor_config");
        assert_eq!(
            bad(json!({"KubernetesExecutor": {"request_memory": "1Gi"}})).path,
            "executor_config.KubernetesExecutor"
        );
        let wrong_type =
            bad(json!({"pod_override": {"__type__": "kubernetes.client.models.V1Container"}}));
        assert!(
            wrong_type.path.starts_with("executor_config.pod_override"),
            "{wrong_type:?}"
        );
    }

    #[test]
    fn class_paths_are_dotted_identifiers() {
        assert!(is_class_path("customized.operators.Greet"));
        assert!(is_class_path(
            "airflow.providers.http.operators.http.HttpOperator"
        ));
        for not_one in ["Greet", "a..b", "a.1b", "a.b-c", ".a", "a."] {
            assert!(!is_class_path(not_one), "{not_one}");
        }
    }

    #[test]
    fn a_taskflow_task_names_its_decorator_and_callable() {
        let args = |value: serde_json::Value| value.as_object().expect("an object").clone();
        let good = json!({"decorator": "airflow.sdk.task", "python_callable": "m.f", "n": 2});
        assert!(check_taskflow(&args(good)).is_ok());
        let no_path = json!({"decorator": "task", "python_callable": "m.f"});
        assert_eq!(
            check_taskflow(&args(no_path))
                .expect_err("a bare name")
                .path,
            "decorator"
        );
        let no_callable = json!({"decorator": "airflow.sdk.task"});
        assert_eq!(
            check_taskflow(&args(no_callable))
                .expect_err("no callable")
                .path,
            "python_callable"
        );
    }

    #[test]
    fn xcom_args_name_their_task() {
        assert_eq!(xcom_arg_task(&json!("+numbers")), Some("numbers"));
        assert_eq!(xcom_arg_task(&json!("+numbers['total']")), Some("numbers"));
        assert_eq!(
            xcom_arg_task(&json!("+numbers[\"total\"]")),
            Some("numbers")
        );
        for not_one in [
            json!("numbers"),
            json!("+a b"),
            json!("+n[total]"),
            json!(3),
        ] {
            assert_eq!(xcom_arg_task(&not_one), None, "{not_one}");
        }
    }
}
