//! `kubernetes_pod`: runs a task as its own pod (Airflow's `KubernetesPodOperator`, KPO).
//!
//! The arguments keep KPO's names and defaults so that dag-factory files carry over. Kubernetes
//! objects (volumes, affinity, resources...) are `k8s_openapi` types, written in manifest form
//! or in the Python client's snake_case form (`manifest_form.rs`). This module only says what
//! the operator accepts; `gust-kube` builds the pod from it.

mod manifest_form;

use std::collections::BTreeMap;

use indexmap::IndexMap;
use k8s_openapi::api::core::v1 as core;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

pub use manifest_form::{manifest_name, read_object, to_manifest_form};

use crate::spec::{ArgumentError, OperatorSpec, read_args};

/// The base container's name when `base_container_name` is not given (KPO's).
pub const DEFAULT_BASE_CONTAINER: &str = "base";
/// The connection a pod task uses when `kubernetes_conn_id` is not given (KPO's).
pub const DEFAULT_CONNECTION: &str = "kubernetes_default";
/// How long a pod may take to start, in seconds, when `startup_timeout_seconds` is not given.
pub const DEFAULT_STARTUP_TIMEOUT_SECONDS: u64 = 120;

/// The arguments that hold Kubernetes objects, each with the Python client class it stands for.
const OBJECT_ARGUMENTS: &[(&str, &str)] = &[
    ("ports", "V1ContainerPort"),
    ("env_vars", "V1EnvVar"),
    ("env_from", "V1EnvFromSource"),
    ("volumes", "V1Volume"),
    ("volume_mounts", "V1VolumeMount"),
    ("container_resources", "V1ResourceRequirements"),
    ("affinity", "V1Affinity"),
    ("tolerations", "V1Toleration"),
    ("image_pull_secrets", "V1LocalObjectReference"),
    ("host_aliases", "V1HostAlias"),
    ("dns_config", "V1PodDNSConfig"),
    ("security_context", "V1PodSecurityContext"),
    ("container_security_context", "V1SecurityContext"),
    (
        "xcom_sidecar_container_security_context",
        "V1SecurityContext",
    ),
    ("init_containers", "V1Container"),
    ("full_pod_spec", "V1Pod"),
    ("pod_template_dict", "V1Pod"),
];

/// The arguments of a pod task, after rendering.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PodArgs {
    /// The base container's image (may come from a template instead).
    #[serde(default)]
    pub image: Option<String>,
    /// The pod's name (default: the task id), made a valid DNS-1123 name.
    #[serde(default)]
    pub name: Option<String>,
    /// Add a random suffix to the name.
    #[serde(default = "yes")]
    pub random_name_suffix: bool,
    /// The namespace (default: the connection's, the scheduler's own, then `default`).
    #[serde(default)]
    pub namespace: Option<String>,
    /// The container's entrypoint (`command`).
    #[serde(default)]
    pub cmds: Vec<String>,
    /// The entrypoint's arguments (`args`).
    #[serde(default)]
    pub arguments: Vec<String>,
    /// The container's ports.
    #[serde(default)]
    pub ports: Vec<core::ContainerPort>,
    /// Environment variables: a map of names to values, or a list of EnvVar.
    #[serde(default, deserialize_with = "env_vars")]
    pub env_vars: Vec<core::EnvVar>,
    /// Sources of environment variables.
    #[serde(default)]
    pub env_from: Vec<core::EnvFromSource>,
    /// Kubernetes secrets exposed as environment variables or files.
    #[serde(default)]
    pub secrets: Vec<SecretMount>,
    /// ConfigMaps whose data become environment variables (appended to `env_from`).
    #[serde(default)]
    pub configmaps: Vec<String>,
    /// The pod's volumes.
    #[serde(default)]
    pub volumes: Vec<core::Volume>,
    /// The base container's volume mounts.
    #[serde(default)]
    pub volume_mounts: Vec<core::VolumeMount>,
    /// Labels of the pod.
    #[serde(default, deserialize_with = "text_map")]
    pub labels: IndexMap<String, String>,
    /// Annotations of the pod.
    #[serde(default, deserialize_with = "text_map")]
    pub annotations: IndexMap<String, String>,
    /// The base container's resource requests and limits (old name: `resources`).
    #[serde(default)]
    pub container_resources: Option<core::ResourceRequirements>,
    /// Affinity rules.
    #[serde(default)]
    pub affinity: Option<core::Affinity>,
    /// Node labels the pod must be scheduled on.
    #[serde(default, deserialize_with = "text_btree")]
    pub node_selector: BTreeMap<String, String>,
    /// Tolerations.
    #[serde(default)]
    pub tolerations: Vec<core::Toleration>,
    /// `Always`, `IfNotPresent` or `Never`.
    #[serde(default)]
    pub image_pull_policy: Option<String>,
    /// Secrets to pull images with: a comma-separated string or a list.
    #[serde(default, deserialize_with = "pull_secrets")]
    pub image_pull_secrets: Vec<core::LocalObjectReference>,
    /// The service account the pod runs as.
    #[serde(default)]
    pub service_account_name: Option<String>,
    /// Whether the service account's token is mounted.
    #[serde(default)]
    pub automount_service_account_token: Option<bool>,
    /// Use the node's network.
    #[serde(default)]
    pub hostnetwork: bool,
    /// Extra /etc/hosts entries.
    #[serde(default)]
    pub host_aliases: Option<Vec<core::HostAlias>>,
    /// The pod's DNS policy.
    #[serde(default)]
    pub dnspolicy: Option<String>,
    /// The pod's DNS configuration.
    #[serde(default)]
    pub dns_config: Option<core::PodDNSConfig>,
    /// The pod's hostname.
    #[serde(default)]
    pub hostname: Option<String>,
    /// The pod's subdomain.
    #[serde(default)]
    pub subdomain: Option<String>,
    /// The scheduler that places the pod.
    #[serde(default)]
    pub schedulername: Option<String>,
    /// The pod's security context.
    #[serde(default)]
    pub security_context: Option<core::PodSecurityContext>,
    /// The base container's security context.
    #[serde(default)]
    pub container_security_context: Option<core::SecurityContext>,
    /// The XCom sidecar's security context (KPO's; default: the connection's, else none).
    #[serde(default)]
    pub xcom_sidecar_container_security_context: Option<core::SecurityContext>,
    /// The RuntimeClass every container of the pod runs with (`runtimeClassName`).
    #[serde(default)]
    pub runtime_class_name: Option<String>,
    /// Variables from the pod's own fields, appended to `env_vars` (KPO's
    /// `pod_runtime_info_envs`): EnvVar objects, or Airflow 1's `{name, field_path}`.
    #[serde(default, deserialize_with = "runtime_info_envs")]
    pub pod_runtime_info_envs: Vec<core::EnvVar>,
    /// The pod's priority class.
    #[serde(default)]
    pub priority_class_name: Option<String>,
    /// `terminationGracePeriodSeconds`, also the grace period when a killed try's pod is deleted.
    #[serde(default)]
    pub termination_grace_period: Option<i64>,
    /// `activeDeadlineSeconds`.
    #[serde(default)]
    pub active_deadline_seconds: Option<i64>,
    /// Init containers, run before the base container.
    #[serde(default)]
    pub init_containers: Vec<core::Container>,
    /// A pod manifest file the pod starts from (a path; relative to the DAGs folder).
    #[serde(default)]
    pub pod_template_file: Option<String>,
    /// A pod manifest the pod starts from.
    #[serde(default)]
    pub pod_template_dict: Option<core::Pod>,
    /// A complete pod, taking precedence over a template.
    #[serde(default)]
    pub full_pod_spec: Option<core::Pod>,
    /// The name of the container whose exit decides the try (default `base`).
    #[serde(default = "base_container")]
    pub base_container_name: String,
    /// Stream the containers' logs into the try's log.
    #[serde(default = "yes")]
    pub get_logs: bool,
    /// Which containers' logs to stream (default: the base container).
    #[serde(default)]
    pub container_logs: Option<ContainerChoice>,
    /// Which init containers' logs to stream (default: none).
    #[serde(default)]
    pub init_container_logs: Option<ContainerChoice>,
    /// Accepted for compatibility; logs are always streamed as they are produced.
    #[serde(default)]
    pub logging_interval: Option<u64>,
    /// Add the pod's events to the failure message.
    #[serde(default)]
    pub log_events_on_failure: bool,
    /// Write the failed pod (spec and status) to the try's log.
    #[serde(default = "yes")]
    pub log_pod_spec_on_failure: bool,
    /// How long the pod may take to start once scheduled, in seconds.
    #[serde(default = "startup_timeout")]
    pub startup_timeout_seconds: u64,
    /// How long the pod may wait to be scheduled, in seconds (default: the startup timeout).
    #[serde(default)]
    pub schedule_timeout_seconds: Option<u64>,
    /// What happens to the pod when the try ends.
    #[serde(default)]
    pub on_finish_action: Option<OnFinishAction>,
    /// The old spelling of `on_finish_action`: true is `delete_pod`, false `keep_pod`.
    #[serde(default)]
    pub is_delete_operator_pod: Option<bool>,
    /// After a scheduler restart, follow the try's pod instead of starting another.
    #[serde(default = "yes")]
    pub reattach_on_restart: bool,
    /// Exit codes of the base container that skip the task instead of failing it.
    #[serde(default, deserialize_with = "crate::bash::exit_codes")]
    pub skip_on_exit_code: Vec<i32>,
    /// The base container's `terminationMessagePolicy` (default `File`).
    #[serde(default = "file_policy")]
    pub termination_message_policy: String,
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
    /// Accepted for compatibility: Gust always follows pods without holding a worker.
    #[serde(default)]
    pub deferrable: Option<bool>,
}

/// A Kubernetes secret given to the pod, in KPO's `Secret` form.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SecretMount {
    /// `env` or `volume`.
    pub deploy_type: SecretDeployType,
    /// The variable name (`env`) or the mount path (`volume`).
    #[serde(default)]
    pub deploy_target: Option<String>,
    /// The secret's name.
    pub secret: String,
    /// One key of the secret (`env`); without it every key becomes a variable.
    #[serde(default)]
    pub key: Option<String>,
    /// Which keys to project to which paths (`volume`).
    #[serde(default)]
    pub items: Vec<core::KeyToPath>,
    /// The Python class, when a dag-factory file names it.
    #[serde(default, rename = "__type__", skip_serializing)]
    pub python_type: Option<String>,
}

/// How a [`SecretMount`] reaches the container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SecretDeployType {
    /// As environment variables.
    Env,
    /// As files in a volume.
    Volume,
}

/// What happens to a pod when its try ends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnFinishAction {
    /// Delete it, whatever happened (KPO's default).
    #[default]
    DeletePod,
    /// Delete it only when it succeeded, keeping failed pods to inspect.
    DeleteSucceededPod,
    /// Keep it.
    KeepPod,
}

/// Which containers' logs to stream: every one, or those named.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum ContainerChoice {
    /// Every container.
    All,
    /// The containers named.
    Named(Vec<String>),
}

impl ContainerChoice {
    /// Whether the container named `name` is chosen.
    #[must_use]
    pub fn includes(&self, name: &str) -> bool {
        match self {
            Self::All => true,
            Self::Named(names) => names.iter().any(|n| n == name),
        }
    }
}

impl<'de> Deserialize<'de> for ContainerChoice {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(
            untagged,
            expecting = "expected true, a container name or a list of container names"
        )]
        enum Given {
            Flag(bool),
            One(String),
            Many(Vec<String>),
        }
        Ok(match Given::deserialize(de)? {
            Given::Flag(true) => Self::All,
            Given::Flag(false) => Self::Named(Vec::new()),
            Given::One(name) => Self::Named(vec![name]),
            Given::Many(names) => Self::Named(names),
        })
    }
}

impl PodArgs {
    /// Reads rendered arguments, reporting the path of the first value that does not fit.
    pub fn read(args: &Map<String, Value>) -> Result<Self, ArgumentError> {
        let mut normalized = args.clone();
        for (name, class) in OBJECT_ARGUMENTS {
            let Some(value) = args.get(*name) else {
                continue;
            };
            // A map of environment variables has the user's names as keys.
            if *name == "env_vars" && value.is_object() {
                continue;
            }
            normalized.insert(
                (*name).to_owned(),
                to_manifest_form(value, name, Some(class))?,
            );
        }
        let parsed: Self = read_args(&normalized)?;
        let echoed = serde_json::to_value(&parsed).map_err(|err| ArgumentError {
            path: String::new(),
            message: err.to_string(),
        })?;
        for (name, class) in OBJECT_ARGUMENTS {
            if let (Some(given), Some(back)) = (normalized.get(*name), echoed.get(*name))
                && let Some(path) = manifest_form::first_unknown_field(given, back, name)
            {
                return Err(ArgumentError {
                    path,
                    message: format!(
                        "{class} has no such field; write Kubernetes objects as in a manifest \
                         (camelCase) or with the Python client's snake_case names"
                    ),
                });
            }
        }
        for (i, secret) in parsed.secrets.iter().enumerate() {
            secret.check(&format!("secrets[{i}]"))?;
        }
        Ok(parsed)
    }

    /// What to do with the pod at the end, from `on_finish_action` or its old spelling.
    #[must_use]
    pub fn on_finish(&self) -> OnFinishAction {
        match (self.on_finish_action, self.is_delete_operator_pod) {
            (Some(action), _) => action,
            (None, Some(true)) | (None, None) => OnFinishAction::DeletePod,
            (None, Some(false)) => OnFinishAction::KeepPod,
        }
    }

    /// How long the pod may wait to be scheduled.
    #[must_use]
    pub fn schedule_timeout(&self) -> u64 {
        self.schedule_timeout_seconds
            .unwrap_or(self.startup_timeout_seconds)
    }

    /// The containers whose logs go to the try's log.
    #[must_use]
    pub fn logged_containers(&self) -> ContainerChoice {
        if !self.get_logs {
            return ContainerChoice::Named(Vec::new());
        }
        self.container_logs
            .clone()
            .unwrap_or_else(|| ContainerChoice::Named(vec![self.base_container_name.clone()]))
    }
}

impl SecretMount {
    /// KPO's rules: a volume needs a path; a key needs a target.
    fn check(&self, path: &str) -> Result<(), ArgumentError> {
        let fail = |field: &str, message: &str| ArgumentError {
            path: format!("{path}.{field}"),
            message: message.to_owned(),
        };
        if let Some(given) = &self.python_type
            && !given.ends_with("Secret")
        {
            return Err(fail(
                "__type__",
                "a secret is airflow.providers.cncf.kubernetes.secret.Secret",
            ));
        }
        match self.deploy_type {
            SecretDeployType::Volume if self.deploy_target.is_none() => Err(fail(
                "deploy_target",
                "a secret deployed as a volume needs the path to mount it at",
            )),
            SecretDeployType::Env if self.key.is_some() && self.deploy_target.is_none() => {
                Err(fail(
                    "deploy_target",
                    "a secret key needs the variable to put it in",
                ))
            }
            _ => Ok(()),
        }
    }
}

fn yes() -> bool {
    true
}

fn base_container() -> String {
    DEFAULT_BASE_CONTAINER.to_owned()
}

fn startup_timeout() -> u64 {
    DEFAULT_STARTUP_TIMEOUT_SECONDS
}

fn file_policy() -> String {
    "File".to_owned()
}

fn default_connection() -> String {
    DEFAULT_CONNECTION.to_owned()
}

/// The text of a scalar, as YAML writers expect of labels and variables.
fn scalar_text(value: Value) -> Result<String, String> {
    match value {
        Value::String(text) => Ok(text),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(if b { "True" } else { "False" }.to_owned()),
        Value::Null => Ok(String::new()),
        _ => Err("must be text, not a list or map".to_owned()),
    }
}

fn text_map<'de, D: Deserializer<'de>>(de: D) -> Result<IndexMap<String, String>, D::Error> {
    use serde::de::Error;
    Option::<IndexMap<String, Value>>::deserialize(de)?
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| {
            scalar_text(v)
                .map(|v| (k.clone(), v))
                .map_err(|e| D::Error::custom(format!("\"{k}\" {e}")))
        })
        .collect()
}

fn text_btree<'de, D: Deserializer<'de>>(de: D) -> Result<BTreeMap<String, String>, D::Error> {
    text_map(de).map(|m| m.into_iter().collect())
}

/// `env_vars`: a map of names to values, or a list of EnvVar (KPO's `convert_env_vars`).
fn env_vars<'de, D: Deserializer<'de>>(de: D) -> Result<Vec<core::EnvVar>, D::Error> {
    use serde::de::Error;
    match Option::<Value>::deserialize(de)? {
        None => Ok(Vec::new()),
        Some(Value::Object(map)) => map
            .into_iter()
            .map(|(name, value)| {
                let value = scalar_text(value)
                    .map_err(|e| D::Error::custom(format!("variable \"{name}\" {e}")))?;
                Ok(core::EnvVar {
                    name,
                    value: Some(value),
                    value_from: None,
                })
            })
            .collect(),
        Some(list @ Value::Array(_)) => {
            let vars: Vec<core::EnvVar> = serde_json::from_value(list).map_err(D::Error::custom)?;
            if let Some(bad) = vars
                .iter()
                .find(|v| v.name.is_empty() || (v.value.is_none() && v.value_from.is_none()))
            {
                return Err(D::Error::custom(format!(
                    "variable \"{}\" needs a non-empty name and a value or valueFrom",
                    bad.name
                )));
            }
            Ok(vars)
        }
        Some(_) => Err(D::Error::custom(
            "expected a map of names to values or a list of EnvVar",
        )),
    }
}

/// `pod_runtime_info_envs`: EnvVar objects (KPO's `convert_pod_runtime_info_env`), or Airflow
/// 1's `PodRuntimeInfoEnv` form `{name, field_path}`, which is a variable from a field
/// (`valueFrom.fieldRef.fieldPath`). A DAG file that names the class (`__type__`) must name
/// one of the two.
fn runtime_info_envs<'de, D: Deserializer<'de>>(de: D) -> Result<Vec<core::EnvVar>, D::Error> {
    use serde::de::Error;
    let Some(given) = Option::<Vec<Value>>::deserialize(de)? else {
        return Ok(Vec::new());
    };
    given
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            let fail = |message: String| D::Error::custom(format!("[{i}]: {message}"));
            let Value::Object(mut fields) = item else {
                return Err(fail("expected an EnvVar or {name, field_path}".to_owned()));
            };
            if fields.contains_key("field_path") || fields.contains_key("fieldPath") {
                let type_ok = fields
                    .remove("__type__")
                    .is_none_or(|t| t.as_str().is_some_and(|t| t.ends_with("PodRuntimeInfoEnv")));
                let name = fields
                    .remove("name")
                    .and_then(|n| n.as_str().map(str::to_owned));
                let path = fields
                    .remove("field_path")
                    .or_else(|| fields.remove("fieldPath"))
                    .and_then(|p| p.as_str().map(str::to_owned));
                let (Some(name), Some(path), true, true) = (name, path, fields.is_empty(), type_ok)
                else {
                    return Err(fail(
                        "a PodRuntimeInfoEnv has exactly a `name` and a `field_path` (text)"
                            .to_owned(),
                    ));
                };
                return Ok(core::EnvVar {
                    name,
                    value: None,
                    value_from: Some(core::EnvVarSource {
                        field_ref: Some(core::ObjectFieldSelector {
                            api_version: None,
                            field_path: path,
                        }),
                        ..core::EnvVarSource::default()
                    }),
                });
            }
            read_object::<core::EnvVar>("", &Value::Object(fields), "V1EnvVar").map_err(|err| {
                let at = err.path.trim_start_matches('.');
                fail(if at.is_empty() {
                    err.message
                } else {
                    format!("{at}: {}", err.message)
                })
            })
        })
        .collect()
}

/// `image_pull_secrets`: `"a,b"` or a list of references (KPO's `convert_image_pull_secrets`).
fn pull_secrets<'de, D: Deserializer<'de>>(
    de: D,
) -> Result<Vec<core::LocalObjectReference>, D::Error> {
    use serde::de::Error;
    match Option::<Value>::deserialize(de)? {
        None => Ok(Vec::new()),
        Some(Value::String(names)) => Ok(names
            .split(',')
            .map(|name| core::LocalObjectReference {
                name: name.to_owned(),
            })
            .collect()),
        Some(list) => serde_json::from_value(list).map_err(D::Error::custom),
    }
}

/// The pod operator.
pub static SPEC: OperatorSpec = OperatorSpec {
    name: "kubernetes_pod",
    aliases: &[
        "KubernetesPodOperator",
        "airflow.providers.cncf.kubernetes.operators.pod.KubernetesPodOperator",
        "airflow.providers.cncf.kubernetes.operators.kubernetes_pod.KubernetesPodOperator",
        "airflow.contrib.operators.kubernetes_pod_operator.KubernetesPodOperator",
    ],
    arguments: &[
        "image",
        "name",
        "random_name_suffix",
        "namespace",
        "cmds",
        "arguments",
        "ports",
        "env_vars",
        "env_from",
        "secrets",
        "configmaps",
        "volumes",
        "volume_mounts",
        "labels",
        "annotations",
        "container_resources",
        "affinity",
        "node_selector",
        "tolerations",
        "image_pull_policy",
        "image_pull_secrets",
        "service_account_name",
        "automount_service_account_token",
        "hostnetwork",
        "host_aliases",
        "dnspolicy",
        "dns_config",
        "hostname",
        "subdomain",
        "schedulername",
        "security_context",
        "container_security_context",
        "priority_class_name",
        "runtime_class_name",
        "pod_runtime_info_envs",
        "xcom_sidecar_container_security_context",
        "termination_grace_period",
        "active_deadline_seconds",
        "init_containers",
        "pod_template_file",
        "pod_template_dict",
        "full_pod_spec",
        "base_container_name",
        "get_logs",
        "container_logs",
        "init_container_logs",
        "logging_interval",
        "log_events_on_failure",
        "log_pod_spec_on_failure",
        "startup_timeout_seconds",
        "schedule_timeout_seconds",
        "on_finish_action",
        "is_delete_operator_pod",
        "reattach_on_restart",
        "skip_on_exit_code",
        "termination_message_policy",
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
    check: |args| PodArgs::read(args).map(drop),
};

#[cfg(test)]
mod tests;
