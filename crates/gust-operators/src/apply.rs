//! `kubernetes_apply`, `kubernetes_delete_resource` and `kueue_install`: arbitrary Kubernetes
//! manifests applied to (or deleted from) a cluster, as Airflow's
//! `KubernetesCreateResourceOperator`, `KubernetesDeleteResourceOperator` and
//! `KubernetesInstallKueueOperator` do.
//!
//! The manifests come inline (`yaml_conf`, templated like every argument) or from a file
//! (`yaml_conf_file`, relative to the DAG file's folder); each may hold several documents.
//! This module only says what the operators accept; `gust-kube` parses the manifests, maps each
//! kind to its resource by discovery and applies it with server-side apply.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use crate::kubernetes_pod::DEFAULT_CONNECTION;
use crate::spec::{ArgumentError, OperatorSpec, read_args};

/// Manifests given inline: YAML text (one or more documents), or the objects themselves.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum InlineManifests {
    /// YAML (or JSON) text, possibly several `---`-separated documents.
    Text(String),
    /// One object, or a list of objects, written as YAML in the DAG file.
    Objects(Vec<Map<String, Value>>),
}

impl<'de> Deserialize<'de> for InlineManifests {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        match Value::deserialize(de)? {
            Value::String(text) => Ok(Self::Text(text)),
            Value::Object(object) => Ok(Self::Objects(vec![object])),
            Value::Array(items) => items
                .into_iter()
                .enumerate()
                .map(|(i, item)| match item {
                    Value::Object(object) => Ok(object),
                    _ => Err(D::Error::custom(format!(
                        "item {i} is not a Kubernetes object (a map with apiVersion and kind)"
                    ))),
                })
                .collect::<Result<_, _>>()
                .map(Self::Objects),
            _ => Err(D::Error::custom(
                "expected YAML text, a Kubernetes object or a list of them",
            )),
        }
    }
}

/// Which cluster a task talks to: KPO's arguments, the same meaning as for pods.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClusterArgs {
    /// The `kubernetes` connection (default `kubernetes_default`).
    pub kubernetes_conn_id: String,
    /// Use the in-cluster service account.
    pub in_cluster: Option<bool>,
    /// A kubeconfig file.
    pub config_file: Option<String>,
    /// The kubeconfig context.
    pub cluster_context: Option<String>,
}

/// The arguments of `kubernetes_apply` and `kubernetes_delete_resource`, after rendering.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceArgs {
    /// The manifests, inline.
    #[serde(default)]
    pub yaml_conf: Option<InlineManifests>,
    /// A manifest file (YAML or JSON, several documents allowed), relative to the DAG file.
    #[serde(default)]
    pub yaml_conf_file: Option<String>,
    /// The namespace of namespaced objects that name none (default: the connection's, the
    /// configuration's, the cluster's, then `default`).
    #[serde(default)]
    pub namespace: Option<String>,
    /// Accepted for compatibility: every kind, custom or not, is found by discovery.
    #[serde(default)]
    pub custom_resource_definition: bool,
    /// Accepted for compatibility: discovery says whether a kind is namespaced.
    #[serde(default)]
    pub namespaced: Option<bool>,
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
}

impl ResourceArgs {
    /// Reads rendered arguments; exactly one of `yaml_conf` and `yaml_conf_file` is needed.
    pub fn read(args: &Map<String, Value>) -> Result<Self, ArgumentError> {
        let parsed: Self = read_args(args)?;
        let empty_text =
            matches!(&parsed.yaml_conf, Some(InlineManifests::Text(t)) if t.trim().is_empty());
        let has_conf = parsed.yaml_conf.is_some() && !empty_text;
        let has_file = parsed
            .yaml_conf_file
            .as_deref()
            .is_some_and(|f| !f.trim().is_empty());
        match (has_conf, has_file) {
            (true, false) | (false, true) => Ok(parsed),
            (false, false) => Err(ArgumentError {
                path: "yaml_conf".to_owned(),
                message: "give the manifests inline (`yaml_conf`) or as a file (`yaml_conf_file`)"
                    .to_owned(),
            }),
            (true, true) => Err(ArgumentError {
                path: "yaml_conf_file".to_owned(),
                message: "give either `yaml_conf` or `yaml_conf_file`, not both".to_owned(),
            }),
        }
    }

    /// Which cluster.
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

/// The arguments of `kueue_install`, after rendering.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KueueInstallArgs {
    /// The Kueue release (`v0.9.1`): the file `kueue-<version>.yaml` in
    /// `[kubernetes] kueue_manifests_folder` is applied.
    pub kueue_version: String,
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
}

impl KueueInstallArgs {
    /// Reads rendered arguments; the version must be a plain release name.
    pub fn read(args: &Map<String, Value>) -> Result<Self, ArgumentError> {
        let parsed: Self = read_args(args)?;
        let version = parsed.kueue_version.trim();
        let plain = !version.is_empty()
            && version
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '+'))
            && !version.starts_with('.');
        if !plain {
            return Err(ArgumentError {
                path: "kueue_version".to_owned(),
                message: format!(
                    "\"{}\" is not a release name like v0.9.1 (letters, digits, '.', '-', '_')",
                    parsed.kueue_version
                ),
            });
        }
        Ok(parsed)
    }

    /// The manifest file's name in the Kueue folder: `kueue-<version>.yaml`.
    #[must_use]
    pub fn file_name(&self) -> String {
        format!("kueue-{}.yaml", self.kueue_version.trim())
    }

    /// Which cluster.
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

fn default_connection() -> String {
    DEFAULT_CONNECTION.to_owned()
}

const RESOURCE_ARGUMENTS: &[&str] = &[
    "yaml_conf",
    "yaml_conf_file",
    "namespace",
    "custom_resource_definition",
    "namespaced",
    "kubernetes_conn_id",
    "in_cluster",
    "config_file",
    "cluster_context",
];

/// `kubernetes_apply`: creates or updates the manifests' objects (server-side apply).
pub static APPLY_SPEC: OperatorSpec = OperatorSpec {
    name: "kubernetes_apply",
    aliases: &[
        "KubernetesCreateResourceOperator",
        "airflow.providers.cncf.kubernetes.operators.resource.KubernetesCreateResourceOperator",
    ],
    arguments: RESOURCE_ARGUMENTS,
    renamed_arguments: &[],
    required: &[],
    pushes_xcom_by_default: false,
    holds_worker: false,
    open_arguments: false,
    check: |args| ResourceArgs::read(args).map(drop),
};

/// `kubernetes_delete_resource`: deletes the manifests' objects.
pub static DELETE_SPEC: OperatorSpec = OperatorSpec {
    name: "kubernetes_delete_resource",
    aliases: &[
        "KubernetesDeleteResourceOperator",
        "airflow.providers.cncf.kubernetes.operators.resource.KubernetesDeleteResourceOperator",
    ],
    arguments: RESOURCE_ARGUMENTS,
    renamed_arguments: &[],
    required: &[],
    pushes_xcom_by_default: false,
    holds_worker: false,
    open_arguments: false,
    check: |args| ResourceArgs::read(args).map(drop),
};

/// `kueue_install`: applies a Kueue release's manifest file.
pub static KUEUE_INSTALL_SPEC: OperatorSpec = OperatorSpec {
    name: "kueue_install",
    aliases: &[
        "KubernetesInstallKueueOperator",
        "airflow.providers.cncf.kubernetes.operators.kueue.KubernetesInstallKueueOperator",
    ],
    arguments: &[
        "kueue_version",
        "kubernetes_conn_id",
        "in_cluster",
        "config_file",
        "cluster_context",
    ],
    renamed_arguments: &[],
    required: &["kueue_version"],
    pushes_xcom_by_default: false,
    holds_worker: false,
    open_arguments: false,
    check: |args| KueueInstallArgs::read(args).map(drop),
};

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn read(value: Value) -> Result<ResourceArgs, ArgumentError> {
        ResourceArgs::read(value.as_object().expect("a map"))
    }

    #[test]
    fn manifests_come_inline_as_text_or_objects_or_from_a_file() {
        let text = read(json!({"yaml_conf": "kind: ConfigMap\n"})).expect("text");
        assert!(matches!(text.yaml_conf, Some(InlineManifests::Text(_))));
        let one = read(json!({"yaml_conf": {"kind": "ConfigMap"}})).expect("an object");
        assert!(matches!(one.yaml_conf, Some(InlineManifests::Objects(ref o)) if o.len() == 1));
        let file = read(json!({"yaml_conf_file": "cm.yaml", "namespace": "ml"})).expect("file");
        assert_eq!(file.cluster().kubernetes_conn_id, "kubernetes_default");
        assert_eq!(file.namespace.as_deref(), Some("ml"));
    }

    #[test]
    fn exactly_one_source_of_manifests_is_needed() {
        let none = read(json!({"namespace": "ml"})).expect_err("nothing to apply");
        assert_eq!(none.path, "yaml_conf");
        let both = read(json!({"yaml_conf": "a: 1", "yaml_conf_file": "x.yaml"})).expect_err("two");
        assert_eq!(both.path, "yaml_conf_file");
        let bad = read(json!({"yaml_conf": [1]})).expect_err("not objects");
        assert!(bad.message.contains("item 0"), "{bad}");
        assert!(read(json!({"yaml_conf": "a: 1", "unknown": 1})).is_err());
    }

    #[test]
    fn a_kueue_version_names_a_file_and_nothing_else() {
        let args =
            KueueInstallArgs::read(json!({"kueue_version": "v0.9.1"}).as_object().expect("map"))
                .expect("valid");
        assert_eq!(args.file_name(), "kueue-v0.9.1.yaml");
        for bad in ["../secrets", "v1/../x", "", ".hidden"] {
            let err =
                KueueInstallArgs::read(json!({"kueue_version": bad}).as_object().expect("map"))
                    .expect_err(bad);
            assert_eq!(err.path, "kueue_version");
        }
    }
}
