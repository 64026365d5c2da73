//! `spark_kubernetes`: a Spark application run by the Spark operator, as Airflow's
//! `SparkKubernetesOperator` runs it: a `sparkoperator.k8s.io/v1beta2` SparkApplication built
//! from `application_file` or `template_spec` (the two-section `spark:` / `kubernetes:`
//! template, or a plain SparkApplication manifest), overlaid with the task's `image`,
//! `code_path`, `namespace` and resources, then followed to its end with the driver's log.
//!
//! This module only says what the operator accepts; `gust-kube` builds the application
//! (`spark.rs`) and follows it (`runtime/spark.rs`).

use k8s_openapi::api::core::v1 as core;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::apply::ClusterArgs;
use crate::kubernetes_pod::{DEFAULT_CONNECTION, to_manifest_form};
use crate::spec::{ArgumentError, OperatorSpec, read_args};

/// How long the driver may take to start, in seconds, unless `startup_timeout_seconds` says
/// otherwise (Airflow's default for Spark).
pub const DEFAULT_SPARK_STARTUP_TIMEOUT_SECONDS: u64 = 600;
/// The driver container, whose log is the try's (Airflow's `BASE_CONTAINER_NAME`).
pub const DRIVER_CONTAINER: &str = "spark-kubernetes-driver";

/// The arguments of a Spark task, after rendering.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SparkArgs {
    /// The image of the driver and executors (`spec.image`).
    #[serde(default)]
    pub image: Option<String>,
    /// The application's code in the image (`spec.mainApplicationFile`), e.g.
    /// `local:///opt/spark/app.py`.
    #[serde(default)]
    pub code_path: Option<String>,
    /// The namespace (default: the template's, the connection's, the configuration's, the
    /// cluster's, then `default`).
    #[serde(default)]
    pub namespace: Option<String>,
    /// The application's name (default: the template's `metadata.name`, then the task id).
    #[serde(default)]
    pub name: Option<String>,
    /// Add `-` and 8 random characters to the name.
    #[serde(default = "yes")]
    pub random_name_suffix: bool,
    /// A template file (YAML or JSON), relative to the DAG file's folder.
    #[serde(default)]
    pub application_file: Option<String>,
    /// The template, inline.
    #[serde(default)]
    pub template_spec: Option<Map<String, Value>>,
    /// Requests and limits of the driver and executors (`cores`, `coreLimit`, `memory`, `gpu`).
    #[serde(default)]
    pub container_resources: Option<core::ResourceRequirements>,
    /// Stream the driver's log into the try's log.
    #[serde(default = "yes")]
    pub get_logs: bool,
    /// `spec.successfulRunHistoryLimit`.
    #[serde(default)]
    pub success_run_history_limit: Option<i64>,
    /// How long the application may take to start running, in seconds.
    #[serde(default = "startup_timeout")]
    pub startup_timeout_seconds: u64,
    /// Add the driver pod's events to the failure message.
    #[serde(default)]
    pub log_events_on_failure: bool,
    /// After a scheduler restart, follow the try's application instead of starting another.
    #[serde(default = "yes")]
    pub reattach_on_restart: bool,
    /// Delete the application (and so its pods) when the try ends.
    #[serde(default = "yes")]
    pub delete_on_termination: bool,
    /// The connection naming the cluster.
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
    /// Accepted for compatibility: applications are always followed without holding a worker.
    #[serde(default)]
    pub deferrable: Option<bool>,
}

impl SparkArgs {
    /// Reads rendered arguments; one of `application_file` and `template_spec` is needed.
    pub fn read(args: &Map<String, Value>) -> Result<Self, ArgumentError> {
        let mut normalized = args.clone();
        if let Some(value) = args.get("container_resources") {
            normalized.insert(
                "container_resources".to_owned(),
                to_manifest_form(value, "container_resources", Some("V1ResourceRequirements"))?,
            );
        }
        let parsed: Self = read_args(&normalized)?;
        let has_file = parsed
            .application_file
            .as_deref()
            .is_some_and(|f| !f.trim().is_empty());
        match (has_file, parsed.template_spec.is_some()) {
            (true, false) | (false, true) => Ok(parsed),
            (false, false) => Err(ArgumentError {
                path: "application_file".to_owned(),
                message: "give the SparkApplication template as a file (`application_file`) or \
                          inline (`template_spec`)"
                    .to_owned(),
            }),
            (true, true) => Err(ArgumentError {
                path: "template_spec".to_owned(),
                message: "give either `application_file` or `template_spec`, not both".to_owned(),
            }),
        }
    }

    /// Which cluster (the template's `kubernetes:` section may name one too).
    #[must_use]
    pub fn cluster(&self) -> ClusterArgs {
        ClusterArgs {
            kubernetes_conn_id: self.kubernetes_conn_id.clone(),
            in_cluster: self.in_cluster,
            config_file: self.config_file.clone(),
            cluster_context: self.cluster_context.clone(),
        }
    }
}

fn yes() -> bool {
    true
}

fn startup_timeout() -> u64 {
    DEFAULT_SPARK_STARTUP_TIMEOUT_SECONDS
}

fn default_connection() -> String {
    DEFAULT_CONNECTION.to_owned()
}

/// The Spark operator.
pub static SPEC: OperatorSpec = OperatorSpec {
    name: "spark_kubernetes",
    aliases: &[
        "SparkKubernetesOperator",
        "airflow.providers.cncf.kubernetes.operators.spark_kubernetes.SparkKubernetesOperator",
    ],
    arguments: &[
        "image",
        "code_path",
        "namespace",
        "name",
        "random_name_suffix",
        "application_file",
        "template_spec",
        "container_resources",
        "get_logs",
        "success_run_history_limit",
        "startup_timeout_seconds",
        "log_events_on_failure",
        "reattach_on_restart",
        "delete_on_termination",
        "kubernetes_conn_id",
        "in_cluster",
        "config_file",
        "cluster_context",
        "deferrable",
    ],
    renamed_arguments: &[("resources", "container_resources")],
    required: &[],
    pushes_xcom_by_default: false,
    holds_worker: false,
    open_arguments: false,
    check: |args| SparkArgs::read(args).map(drop),
};

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn read(value: Value) -> Result<SparkArgs, ArgumentError> {
        SparkArgs::read(value.as_object().expect("a map"))
    }

    #[test]
    fn airflow_defaults_apply() {
        let args = read(json!({"application_file": "spark.yaml"})).expect("valid");
        assert!(args.delete_on_termination && args.reattach_on_restart && args.get_logs);
        assert_eq!(args.startup_timeout_seconds, 600);
        assert_eq!(args.kubernetes_conn_id, "kubernetes_default");
    }

    #[test]
    fn resources_read_in_either_spelling() {
        let args = read(json!({
            "template_spec": {"spark": {}},
            "container_resources": {"__type__": "V1ResourceRequirements", "limits": {"memory": "2Gi", "cpu": 2}},
        }))
        .expect("valid");
        let limits = args
            .container_resources
            .and_then(|r| r.limits)
            .expect("limits");
        assert_eq!(limits["cpu"].0, "2");
    }

    #[test]
    fn one_template_is_needed() {
        assert_eq!(read(json!({})).expect_err("none").path, "application_file");
        let both =
            read(json!({"application_file": "a.yaml", "template_spec": {}})).expect_err("both");
        assert_eq!(both.path, "template_spec");
    }
}
