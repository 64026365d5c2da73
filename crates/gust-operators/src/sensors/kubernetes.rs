//! Sensors that wait for a Kubernetes object: Airflow's `SparkKubernetesSensor` (a
//! SparkApplication's `status.applicationState.state`), and Gust's own
//! `kubernetes_resource_sensor` (`KubernetesResourceSensor`) for any kind, custom ones included:
//! a Job's `Complete` condition, a custom resource's field equal to a value. Each poke reads the
//! object once; both are one [`ObjectWait`], which `gust-sensors` pokes.

use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

use super::SensorSettings;
use crate::apply::ClusterArgs;
use crate::kubernetes_pod::DEFAULT_CONNECTION;
use crate::spec::{ArgumentError, OperatorSpec, read_args};

/// One thing an object may show, checked without Python.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectCheck {
    /// A condition in `status.conditions` whose `status` is `"True"` (`Complete`, `Ready`).
    #[serde(default)]
    pub condition: Option<String>,
    /// A JSONPath (`$.status.phase`) that must select something in the object.
    #[serde(default)]
    pub jsonpath: Option<String>,
    /// What the JSONPath's first match must equal (a string also matches the text of a number
    /// or a boolean).
    #[serde(default)]
    pub value: Option<Value>,
    /// Values the JSONPath's first match may equal.
    #[serde(default)]
    pub one_of: Option<Vec<Value>>,
}

/// One check or several; the object shows them when it shows any of them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Checks(pub Vec<ObjectCheck>);

impl<'de> Deserialize<'de> for Checks {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            One(ObjectCheck),
            Many(Vec<ObjectCheck>),
        }
        match Value::deserialize(de)? {
            Value::String(_) => Err(serde::de::Error::custom(NOT_A_CALLABLE)),
            other => match serde_json::from_value::<Form>(other) {
                Ok(Form::One(check)) => Ok(Self(vec![check])),
                Ok(Form::Many(checks)) => Ok(Self(checks)),
                Err(_) => Err(serde::de::Error::custom(format!(
                    "expected a check or a list of checks, each with `condition`, or `jsonpath` \
                     with `value` or `one_of`: {NOT_A_CALLABLE}"
                ))),
            },
        }
    }
}

const NOT_A_CALLABLE: &str = "give a map such as {condition: Complete} or \
    {jsonpath: $.status.phase, value: Succeeded} (docs/dag-format.md#sensors)";

/// What a poke reads and how it judges the object.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectWait {
    /// Which cluster.
    pub cluster: ClusterArgs,
    /// The object's `apiVersion` (`batch/v1`, `sparkoperator.k8s.io/v1beta2`).
    pub api_version: String,
    /// Its `kind`.
    pub kind: String,
    /// Its name.
    pub name: String,
    /// Its namespace, for namespaced kinds (default: the connection's, `[kubernetes]
    /// namespace`, the cluster's).
    pub namespace: Option<String>,
    /// Met when the object shows any of these.
    pub success: Vec<ObjectCheck>,
    /// The poke fails when the object shows any of these (checked first).
    pub failure: Vec<ObjectCheck>,
}

/// `kubernetes_resource_sensor`'s arguments.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ResourceSensorArgs {
    /// The object's `apiVersion` (`batch/v1`; `v1` for core kinds).
    pub api_version: String,
    /// Its `kind` (`Job`).
    pub kind: String,
    /// Its name (templated).
    pub name: String,
    /// Its namespace.
    #[serde(default)]
    pub namespace: Option<String>,
    /// What it must show (default for a `batch/v1` Job: its `Complete` condition).
    #[serde(default)]
    pub success: Option<Checks>,
    /// What fails the sensor (default for a `batch/v1` Job: its `Failed` condition).
    #[serde(default)]
    pub failure: Option<Checks>,
    /// The `kubernetes` connection (default `kubernetes_default`).
    #[serde(default = "default_connection")]
    pub kubernetes_conn_id: String,
    /// Use the in-cluster service account.
    #[serde(default)]
    pub in_cluster: Option<bool>,
    /// A kubeconfig file.
    #[serde(default)]
    pub config_file: Option<String>,
    /// The kubeconfig context.
    #[serde(default)]
    pub cluster_context: Option<String>,
    /// How it waits.
    #[serde(flatten)]
    pub settings: SensorSettings,
}

impl ResourceSensorArgs {
    fn is_job(&self) -> bool {
        self.api_version.trim() == "batch/v1" && self.kind.trim() == "Job"
    }

    /// What a poke does.
    #[must_use]
    pub fn wait(&self) -> ObjectWait {
        let job = |condition: &str| {
            vec![ObjectCheck {
                condition: Some(condition.to_owned()),
                ..ObjectCheck::default()
            }]
        };
        let success = match &self.success {
            Some(checks) => checks.0.clone(),
            None if self.is_job() => job("Complete"),
            None => Vec::new(),
        };
        let failure = match &self.failure {
            Some(checks) => checks.0.clone(),
            None if self.is_job() => job("Failed"),
            None => Vec::new(),
        };
        ObjectWait {
            cluster: ClusterArgs {
                kubernetes_conn_id: self.kubernetes_conn_id.clone(),
                in_cluster: self.in_cluster,
                config_file: self.config_file.clone(),
                cluster_context: self.cluster_context.clone(),
            },
            api_version: self.api_version.trim().to_owned(),
            kind: self.kind.trim().to_owned(),
            name: self.name.trim().to_owned(),
            namespace: self.namespace.clone().filter(|ns| !ns.trim().is_empty()),
            success,
            failure,
        }
    }
}

/// `SparkKubernetesSensor`'s arguments (Airflow's cncf.kubernetes provider).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct SparkSensorArgs {
    /// The SparkApplication's name (templated).
    pub application_name: String,
    /// Its namespace.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Accepted: the driver's log is the driver pod's (see docs).
    #[serde(default)]
    pub attach_log: bool,
    /// Accepted with `attach_log`.
    #[serde(default)]
    pub container_name: Option<String>,
    /// The `kubernetes` connection (default `kubernetes_default`).
    #[serde(default = "default_connection")]
    pub kubernetes_conn_id: String,
    /// The API group (default `sparkoperator.k8s.io`).
    #[serde(default = "spark_group")]
    pub api_group: String,
    /// The API version (default `v1beta2`).
    #[serde(default = "spark_version")]
    pub api_version: String,
    /// How it waits.
    #[serde(flatten)]
    pub settings: SensorSettings,
}

/// The SparkApplication states Airflow's sensor takes as success and as failure.
const SPARK_SUCCESS: [&str; 1] = ["COMPLETED"];
const SPARK_FAILURE: [&str; 2] = ["FAILED", "UNKNOWN"];

impl SparkSensorArgs {
    /// What a poke does: met at `COMPLETED`, failed at `FAILED` or `UNKNOWN`, as Airflow's.
    #[must_use]
    pub fn wait(&self) -> ObjectWait {
        let state = |states: &[&str]| {
            vec![ObjectCheck {
                jsonpath: Some("$.status.applicationState.state".to_owned()),
                one_of: Some(states.iter().map(|s| Value::from(*s)).collect()),
                ..ObjectCheck::default()
            }]
        };
        ObjectWait {
            cluster: ClusterArgs {
                kubernetes_conn_id: self.kubernetes_conn_id.clone(),
                ..ClusterArgs::default()
            },
            api_version: format!("{}/{}", self.api_group.trim(), self.api_version.trim()),
            kind: "SparkApplication".to_owned(),
            name: self.application_name.trim().to_owned(),
            namespace: self.namespace.clone().filter(|ns| !ns.trim().is_empty()),
            success: state(&SPARK_SUCCESS),
            failure: state(&SPARK_FAILURE),
        }
    }
}

fn default_connection() -> String {
    DEFAULT_CONNECTION.to_owned()
}

fn spark_group() -> String {
    "sparkoperator.k8s.io".to_owned()
}

fn spark_version() -> String {
    "v1beta2".to_owned()
}

/// The checks' own mistakes: a check that says nothing, a bad JSONPath, `value` without one.
fn check_checks(path: &str, checks: &[ObjectCheck]) -> Result<(), ArgumentError> {
    let error = |at: usize, message: String| ArgumentError {
        path: if checks.len() > 1 {
            format!("{path}[{at}]")
        } else {
            path.to_owned()
        },
        message,
    };
    for (at, check) in checks.iter().enumerate() {
        if check.condition.is_none() && check.jsonpath.is_none() {
            return Err(error(
                at,
                format!("says nothing to check: {NOT_A_CALLABLE}"),
            ));
        }
        if check.condition.is_some() && check.jsonpath.is_some() {
            return Err(error(
                at,
                "give `condition` or `jsonpath` in one check, not both (a list of checks \
                 passes when any does)"
                    .to_owned(),
            ));
        }
        if (check.value.is_some() || check.one_of.is_some()) && check.jsonpath.is_none() {
            return Err(error(
                at,
                "`value` and `one_of` need a `jsonpath` whose match they are compared with"
                    .to_owned(),
            ));
        }
        if let Some(jsonpath) = &check.jsonpath
            && !jsonpath.contains("{{")
        {
            use jsonpath_rust::JsonPath;
            Value::Null
                .query(jsonpath)
                .map_err(|err| error(at, format!("not a JSONPath: {err}")))?;
        }
    }
    Ok(())
}

fn check_resource(args: &Map<String, Value>) -> Result<(), ArgumentError> {
    let read = read_args::<ResourceSensorArgs>(args)?;
    for (name, text) in [
        ("api_version", &read.api_version),
        ("kind", &read.kind),
        ("name", &read.name),
    ] {
        if text.trim().is_empty() {
            return Err(ArgumentError {
                path: name.to_owned(),
                message: "is empty".to_owned(),
            });
        }
    }
    let wait = read.wait();
    if wait.success.is_empty() {
        return Err(ArgumentError {
            path: "success".to_owned(),
            message: format!(
                "is needed for a {} {}: say what it must show, e.g. {{condition: Ready}} or \
                 {{jsonpath: $.status.phase, value: Succeeded}} (a batch/v1 Job waits for \
                 Complete by default)",
                wait.api_version, wait.kind
            ),
        });
    }
    check_checks("success", &wait.success)?;
    check_checks("failure", &wait.failure)?;
    read.settings.check()
}

fn check_spark(args: &Map<String, Value>) -> Result<(), ArgumentError> {
    read_args::<SparkSensorArgs>(args)?.settings.check()
}

/// `kubernetes_resource_sensor`: any object's condition or field.
pub static RESOURCE_SPEC: OperatorSpec = OperatorSpec {
    name: "kubernetes_resource_sensor",
    aliases: &["KubernetesResourceSensor"],
    arguments: sensor_arguments!(
        "api_version",
        "kind",
        "name",
        "namespace",
        "success",
        "failure",
        "kubernetes_conn_id",
        "in_cluster",
        "config_file",
        "cluster_context"
    ),
    renamed_arguments: &[],
    required: &["api_version", "kind", "name"],
    pushes_xcom_by_default: true,
    holds_worker: false,
    open_arguments: false,
    check: check_resource,
};

/// `SparkKubernetesSensor`.
pub static SPARK_SPEC: OperatorSpec = OperatorSpec {
    name: "spark_kubernetes_sensor",
    aliases: &[
        "SparkKubernetesSensor",
        "airflow.providers.cncf.kubernetes.sensors.spark_kubernetes.SparkKubernetesSensor",
    ],
    arguments: sensor_arguments!(
        "application_name",
        "namespace",
        "attach_log",
        "container_name",
        "kubernetes_conn_id",
        "api_group",
        "api_version"
    ),
    renamed_arguments: &[],
    required: &["application_name"],
    pushes_xcom_by_default: true,
    holds_worker: false,
    open_arguments: false,
    check: check_spark,
};

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn a_job_waits_for_complete_and_fails_on_failed_by_default() {
        let args: ResourceSensorArgs = read_args(&map(
            json!({"api_version": "batch/v1", "kind": "Job", "name": "etl"}),
        ))
        .unwrap();
        let wait = args.wait();
        assert_eq!(wait.success[0].condition.as_deref(), Some("Complete"));
        assert_eq!(wait.failure[0].condition.as_deref(), Some("Failed"));
        assert_eq!(wait.cluster.kubernetes_conn_id, "kubernetes_default");
    }

    #[test]
    fn other_kinds_need_a_success_check_that_says_something() {
        let base = json!({"api_version": "example.com/v1", "kind": "Widget", "name": "w"});
        let with = |extra: Value| {
            let mut args = map(base.clone());
            args.extend(map(extra));
            check_resource(&args)
        };
        assert_eq!(with(json!({})).unwrap_err().path, "success");
        assert!(with(json!({"success": {}})).is_err());
        assert!(with(json!({"success": "checks.ready"})).is_err());
        assert!(with(json!({"success": {"value": 1}})).is_err());
        assert!(with(json!({"success": {"jsonpath": "$[?"}})).is_err());
        assert!(with(json!({"success": {"condition": "Ready", "jsonpath": "$.x"}})).is_err());
        let many = with(json!({"success": [{"condition": "Ready"}, {"jsonpath": "$[?"}]}));
        assert_eq!(many.unwrap_err().path, "success[1]");
        assert!(
            with(json!({"success": {"jsonpath": "$.status.phase", "value": "Done"},
                        "failure": [{"condition": "Failed"}, {"jsonpath": "$.status.phase", "one_of": ["Lost"]}]}))
            .is_ok()
        );
    }

    #[test]
    fn the_spark_sensor_reads_the_application_state_as_airflow() {
        let args: SparkSensorArgs = read_args(&map(
            json!({"application_name": "pi", "namespace": "spark"}),
        ))
        .unwrap();
        let wait = args.wait();
        assert_eq!(wait.api_version, "sparkoperator.k8s.io/v1beta2");
        assert_eq!(wait.kind, "SparkApplication");
        assert_eq!(wait.failure[0].one_of.as_ref().unwrap().len(), 2);
        assert!(check_spark(&map(json!({"application_name": "pi"}))).is_ok());
    }
}
