//! `kubernetes_delete_job` and `kubernetes_patch_job`: act on a Job by name, usually one a
//! `kubernetes_job` task created (its name and namespace come from that task's XCom through a
//! template).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::fail;
use crate::kubernetes_pod::DEFAULT_CONNECTION;
use crate::spec::{ArgumentError, OperatorSpec, read_args};

/// How a deleted Job's pods go (`propagationPolicy`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
pub enum PropagationPolicy {
    /// The Job goes once its pods are gone.
    #[default]
    Foreground,
    /// The Job goes at once and its pods after it.
    Background,
    /// The pods are left running without their Job.
    Orphan,
}

/// Which finished Jobs `kubernetes_delete_job` deletes (`delete_on_status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum DeleteOnStatus {
    /// Only Jobs that completed.
    Complete,
    /// Only Jobs that failed.
    Failed,
}

/// The arguments of a `kubernetes_delete_job` task, after rendering.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteJobArgs {
    /// The Job.
    pub name: String,
    /// Its namespace (default: as for pods).
    #[serde(default)]
    pub namespace: Option<String>,
    /// Wait for the Job to complete or fail before deciding.
    #[serde(default)]
    pub wait_for_completion: bool,
    /// Accepted for compatibility: Gust waits with a watch, never by polling.
    #[serde(default)]
    pub poll_interval: Option<f64>,
    /// Delete only a Job in this state (default: whatever its state).
    #[serde(default)]
    pub delete_on_status: Option<DeleteOnStatus>,
    /// The connection naming the cluster (default `kubernetes_default`).
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
}

/// The arguments of a `kubernetes_patch_job` task, after rendering.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PatchJobArgs {
    /// The Job.
    pub name: String,
    /// Its namespace (default: as for pods).
    #[serde(default)]
    pub namespace: Option<String>,
    /// A JSON merge patch, such as `{"spec": {"suspend": false}}`.
    pub body: Value,
    /// The connection naming the cluster (default `kubernetes_default`).
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
}

fn default_connection() -> String {
    DEFAULT_CONNECTION.to_owned()
}

/// A Job name as given: trimmed, and not empty (a template that rendered to nothing).
fn check_name(name: &str) -> Result<(), ArgumentError> {
    if name.trim().is_empty() {
        return Err(fail(
            "name",
            "is empty; give the Job's name (from a kubernetes_job task: \
             \"{{ ti.xcom_pull(task_ids='TASK')['job_name'] }}\")",
        ));
    }
    Ok(())
}

impl DeleteJobArgs {
    /// Reads rendered arguments, reporting the path of the first value that does not fit.
    pub fn read(args: &Map<String, Value>) -> Result<Self, ArgumentError> {
        let parsed: Self = read_args(args)?;
        check_name(&parsed.name)?;
        Ok(parsed)
    }
}

impl PatchJobArgs {
    /// Reads rendered arguments, reporting the path of the first value that does not fit.
    pub fn read(args: &Map<String, Value>) -> Result<Self, ArgumentError> {
        let parsed: Self = read_args(args)?;
        check_name(&parsed.name)?;
        if !parsed.body.is_object() {
            return Err(fail(
                "body",
                "must be a map (a JSON merge patch of the Job), e.g. {spec: {suspend: false}}",
            ));
        }
        Ok(parsed)
    }
}

/// The Job deletion operator.
pub static DELETE_SPEC: OperatorSpec = OperatorSpec {
    name: "kubernetes_delete_job",
    aliases: &[
        "KubernetesDeleteJobOperator",
        "airflow.providers.cncf.kubernetes.operators.job.KubernetesDeleteJobOperator",
    ],
    arguments: &[
        "name",
        "namespace",
        "wait_for_completion",
        "poll_interval",
        "delete_on_status",
        "kubernetes_conn_id",
        "in_cluster",
        "config_file",
        "cluster_context",
    ],
    renamed_arguments: &[],
    required: &["name"],
    pushes_xcom_by_default: false,
    holds_worker: false,
    open_arguments: false,
    check: |args| DeleteJobArgs::read(args).map(drop),
};

/// The Job patch operator.
pub static PATCH_SPEC: OperatorSpec = OperatorSpec {
    name: "kubernetes_patch_job",
    aliases: &[
        "KubernetesPatchJobOperator",
        "airflow.providers.cncf.kubernetes.operators.job.KubernetesPatchJobOperator",
    ],
    arguments: &[
        "name",
        "namespace",
        "body",
        "kubernetes_conn_id",
        "in_cluster",
        "config_file",
        "cluster_context",
    ],
    renamed_arguments: &[],
    required: &["name", "body"],
    pushes_xcom_by_default: true,
    holds_worker: false,
    open_arguments: false,
    check: |args| PatchJobArgs::read(args).map(drop),
};
