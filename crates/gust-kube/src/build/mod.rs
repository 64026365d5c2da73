//! The pod a `kubernetes_pod` try runs in: a pure function from the task's arguments and the
//! try to a `k8s_openapi` [`Pod`], shared by dry-run, tests and the runtime.
//!
//! It follows KubernetesPodOperator's `build_pod_request_obj` step by step: the operator's own
//! pod is laid over `full_pod_spec`, which is laid over the template (`merge.rs`); then the name,
//! the namespace, the secrets, the XCom sidecar and the labels that identify the try.

pub mod job;
mod merge;
pub mod names;

use gust_operators::kubernetes_pod::{PodArgs, SecretDeployType, to_manifest_form};
use k8s_openapi::api::core::v1::{Pod, ResourceRequirements};
use serde_json::{Map, Value, json};

pub use merge::reconcile_pods_by_name;
pub use names::NameError;

/// Where the XCom sidecar and the base container share the return value.
pub const XCOM_MOUNT_PATH: &str = "/airflow/xcom";
/// The XCom sidecar's container name (KPO's).
pub const XCOM_SIDECAR_NAME: &str = "airflow-xcom-sidecar";
/// The command that keeps the XCom sidecar alive until it is interrupted (KPO's).
const XCOM_SIDECAR_COMMAND: &str = "trap \"exit 0\" INT; while true; do sleep 1; done;";
/// The label every pod Gust starts carries, so it can find its own pods again.
pub const MANAGED_BY_LABEL: (&str, &str) = ("app.kubernetes.io/managed-by", "gust");
/// KPO's label marking a pod started by the pod operator.
pub const POD_OPERATOR_LABEL: (&str, &str) = ("kubernetes_pod_operator", "True");

/// The try a pod is for, as its labels name it.
#[derive(Debug, Clone, Copy)]
pub struct TryLabels<'a> {
    /// The DAG.
    pub dag_id: &'a str,
    /// The task.
    pub task_id: &'a str,
    /// The run.
    pub run_id: &'a str,
    /// The try.
    pub try_number: u32,
    /// Which instance of a mapped task (`-1`: not mapped, and no label, as KPO labels them).
    pub map_index: i32,
}

/// What the cluster and configuration contribute to every pod.
#[derive(Debug, Clone)]
pub struct PodDefaults {
    /// The connection's (or `[kubernetes]` config's) namespace.
    pub namespace: Option<String>,
    /// The namespace the scheduler itself runs in, when it runs in a cluster.
    pub own_namespace: Option<String>,
    /// The XCom sidecar's image (KPO's default: `alpine`).
    pub xcom_sidecar_image: String,
    /// The XCom sidecar's resources (KPO's default: requests of 1m CPU and 10Mi memory).
    pub xcom_sidecar_resources: Option<ResourceRequirements>,
}

impl Default for PodDefaults {
    fn default() -> Self {
        Self {
            namespace: None,
            own_namespace: None,
            xcom_sidecar_image: "alpine".to_owned(),
            xcom_sidecar_resources: None,
        }
    }
}

/// Everything one pod is built from.
#[derive(Debug, Clone, Copy)]
pub struct PodRequest<'a> {
    /// The task's rendered arguments.
    pub args: &'a PodArgs,
    /// The try; `None` builds the pod without the try's labels.
    pub labels: TryLabels<'a>,
    /// The content of `pod_template_file`, read by the caller.
    pub template_file: Option<&'a Value>,
    /// Add the XCom sidecar.
    pub do_xcom_push: bool,
    /// Random lowercase letters and digits for the name's suffix and secret volumes' names.
    pub unique: &'a str,
    /// Cluster-wide defaults.
    pub defaults: &'a PodDefaults,
}

/// Why a pod cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    /// The pod's name cannot be made valid.
    #[error(transparent)]
    Name(#[from] NameError),
    /// A template (`pod_template_file`, `pod_template_dict`, `full_pod_spec`) is not a pod.
    #[error("argument \"{argument}\": {message}")]
    Template {
        /// The argument holding the template.
        argument: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// No image for the base container, from the arguments or a template.
    #[error(
        "the base container \"{0}\" has no image; give the task an `image` (or a template whose \
         container \"{0}\" has one)"
    )]
    NoImage(String),
    /// The finished manifest is not a valid pod.
    #[error("the pod built from the arguments is not valid: {0}")]
    Invalid(String),
}

/// Builds the pod for a try.
pub fn build_pod(request: &PodRequest<'_>) -> Result<Pod, BuildError> {
    let args = request.args;
    let base = &args.base_container_name;
    let template = template(request)?;
    let mut pod = merge::reconcile_pods(&template, &operator_pod(args)?, base);

    name_pod(&mut pod, args, request)?;
    let namespace = pod.pointer("/metadata/namespace").and_then(Value::as_str);
    if namespace.is_none_or(str::is_empty) {
        let namespace = args
            .namespace
            .clone()
            .or_else(|| request.defaults.namespace.clone())
            .or_else(|| request.defaults.own_namespace.clone())
            .unwrap_or_else(|| "default".to_owned());
        metadata(&mut pod).insert("namespace".to_owned(), Value::String(namespace));
    }
    attach_secrets(&mut pod, args, request.unique)?;
    if request.do_xcom_push {
        add_xcom_sidecar(&mut pod, args, request.defaults)?;
    }
    add_try_labels(&mut pod, request.labels);

    let pod: Pod = serde_path_to_pod(pod)?;
    let has_image = pod
        .spec
        .as_ref()
        .and_then(|spec| spec.containers.iter().find(|c| &c.name == base))
        .is_some_and(|c| c.image.as_deref().is_some_and(|i| !i.is_empty()));
    if !has_image {
        return Err(BuildError::NoImage(base.clone()));
    }
    Ok(pod)
}

/// The pod to lay the operator's pod over: the template, with `full_pod_spec` laid over it.
fn template(request: &PodRequest<'_>) -> Result<Value, BuildError> {
    let args = request.args;
    let full = args.full_pod_spec.as_ref().map(to_json).transpose()?;
    let template =
        match (request.template_file, &args.pod_template_dict) {
            (Some(file), _) => Some(to_manifest_form(file, "", Some("V1Pod")).map_err(|err| {
                BuildError::Template {
                    argument: "pod_template_file",
                    message: err.to_string(),
                }
            })?),
            (None, Some(dict)) => Some(to_json(dict)?),
            (None, None) => None,
        };
    Ok(match (template, full) {
        (Some(template), Some(full)) => {
            merge::reconcile_pods(&template, &full, &args.base_container_name)
        }
        (Some(only), None) | (None, Some(only)) => only,
        (None, None) => json!({"metadata": {}}),
    })
}

fn to_json(pod: &Pod) -> Result<Value, BuildError> {
    serde_json::to_value(pod).map_err(|err| BuildError::Invalid(err.to_string()))
}

fn serde_path_to_pod(pod: Value) -> Result<Pod, BuildError> {
    serde_json::from_value(pod).map_err(|err| BuildError::Invalid(err.to_string()))
}

/// The pod KPO builds from the operator's own arguments, before templates.
fn operator_pod(args: &PodArgs) -> Result<Value, BuildError> {
    let mut env_from = to(&args.env_from);
    if let Value::Array(items) = &mut env_from {
        items.extend(
            args.configmaps
                .iter()
                .map(|name| json!({"configMapRef": {"name": name}})),
        );
    }
    let name = args
        .name
        .as_deref()
        .map(names::sanitize_name_argument)
        .transpose()?;
    // KPO appends the pod's own fields (`pod_runtime_info_envs`) to `env_vars`.
    let env: Vec<_> = args
        .env_vars
        .iter()
        .chain(&args.pod_runtime_info_envs)
        .collect();
    Ok(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "namespace": args.namespace,
            "labels": to(&args.labels),
            "name": name,
            "annotations": to(&args.annotations),
        },
        "spec": {
            "runtimeClassName": args.runtime_class_name,
            "nodeSelector": to(&args.node_selector),
            "affinity": to(&args.affinity),
            "tolerations": to(&args.tolerations),
            "initContainers": to(&args.init_containers),
            "hostAliases": to(&args.host_aliases),
            "containers": [{
                "image": args.image,
                "name": args.base_container_name,
                "command": args.cmds,
                "ports": to(&args.ports),
                "imagePullPolicy": args.image_pull_policy,
                "resources": to(&args.container_resources),
                "volumeMounts": to(&args.volume_mounts),
                "args": args.arguments,
                "env": to(&env),
                "envFrom": env_from,
                "securityContext": to(&args.container_security_context),
                "terminationMessagePolicy": args.termination_message_policy,
            }],
            "imagePullSecrets": to(&args.image_pull_secrets),
            "serviceAccountName": args.service_account_name,
            "automountServiceAccountToken": args.automount_service_account_token,
            "hostNetwork": args.hostnetwork.then_some(true),
            "hostname": args.hostname,
            "subdomain": args.subdomain,
            "securityContext": to(&args.security_context),
            "dnsPolicy": args.dnspolicy,
            "dnsConfig": to(&args.dns_config),
            "schedulerName": args.schedulername,
            "restartPolicy": "Never",
            "priorityClassName": args.priority_class_name,
            "volumes": to(&args.volumes),
            "activeDeadlineSeconds": args.active_deadline_seconds,
            "terminationGracePeriodSeconds": args.termination_grace_period,
        },
    }))
    .map(prune_fields)
}

/// A typed argument as JSON (serializing `k8s_openapi` values and plain maps cannot fail).
fn to<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// Removes the operator pod's unset fields (null, empty lists and maps), which the API treats
/// as absent and the merge rules treat as empty, so manifests show only what was given. Only
/// the operator's own fields are pruned, never inside the objects users gave (an `emptyDir: {}`
/// means something).
fn prune_fields(mut pod: Value) -> Value {
    for pointer in ["/metadata", "/spec", "/spec/containers/0"] {
        if let Some(Value::Object(fields)) = pod.pointer_mut(pointer) {
            fields.retain(|_, v| !is_unset(v));
        }
    }
    pod
}

fn is_unset(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Array(items) => items.is_empty(),
        Value::Object(map) => map.is_empty(),
        _ => false,
    }
}

fn metadata(pod: &mut Value) -> &mut Map<String, Value> {
    if !pod.is_object() {
        *pod = Value::Object(Map::new());
    }
    let top = pod.as_object_mut().expect("made an object above");
    object_at(top, "metadata")
}

/// The map under `key`, made one if it is missing or not a map.
fn object_at<'m>(map: &'m mut Map<String, Value>, key: &str) -> &'m mut Map<String, Value> {
    let entry = map
        .entry(key.to_owned())
        .or_insert_with(|| Value::Object(Map::new()));
    if !entry.is_object() {
        *entry = Value::Object(Map::new());
    }
    entry.as_object_mut().expect("made an object above")
}

/// KPO's naming: a name from the arguments or a template gets a random suffix (unless turned
/// off); without one the task id is slugified.
fn name_pod(pod: &mut Value, args: &PodArgs, request: &PodRequest<'_>) -> Result<(), BuildError> {
    let given = pod
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .map(str::to_owned);
    let name = match given {
        None => {
            let base = names::name_from_task_id(request.labels.task_id);
            if args.random_name_suffix {
                names::with_suffix(&base, request.unique)
            } else {
                base
            }
        }
        Some(name) if args.random_name_suffix => names::with_suffix(&name, request.unique),
        Some(name) => name,
    };
    names::check_pod_name(&name)?;
    metadata(pod).insert("name".to_owned(), Value::String(name));
    Ok(())
}

/// The index of the base container (KPO attaches to the first container; Gust to the base
/// container, which is the first unless a template put another before it).
fn base_index(pod: &Value, base: &str) -> usize {
    pod.pointer("/spec/containers")
        .and_then(Value::as_array)
        .and_then(|cs| {
            cs.iter()
                .position(|c| c.get("name").and_then(Value::as_str) == Some(base))
        })
        .unwrap_or(0)
}

fn base_container<'p>(pod: &'p mut Value, base: &str) -> Result<&'p mut Value, BuildError> {
    let at = base_index(pod, base);
    pod.pointer_mut(&format!("/spec/containers/{at}"))
        .ok_or_else(|| BuildError::Invalid("the pod has no containers".to_owned()))
}

fn push(list_owner: &mut Value, field: &str, item: Value, front: bool) {
    let Value::Object(map) = list_owner else {
        return;
    };
    let entry = map
        .entry(field.to_owned())
        .or_insert_with(|| Value::Array(Vec::new()));
    if !entry.is_array() {
        *entry = Value::Array(Vec::new());
    }
    if let Value::Array(items) = entry {
        if front {
            items.insert(0, item);
        } else {
            items.push(item);
        }
    }
}

/// KPO's `Secret.attach_to_pod`, for each secret in order.
fn attach_secrets(pod: &mut Value, args: &PodArgs, unique: &str) -> Result<(), BuildError> {
    for (i, secret) in args.secrets.iter().enumerate() {
        match (secret.deploy_type, &secret.key) {
            (SecretDeployType::Volume, _) => {
                // KPO's `secretvol` + a UUID; derived from the pod's randomness so that
                // building stays a pure function.
                let name = format!("secretvol{}", names::uuid_from(unique, i));
                let mut source = json!({"secretName": secret.secret});
                if !secret.items.is_empty() {
                    source["items"] = serde_json::to_value(&secret.items)
                        .map_err(|err| BuildError::Invalid(err.to_string()))?;
                }
                let spec = pod
                    .get_mut("spec")
                    .ok_or_else(|| BuildError::Invalid("the pod has no spec".to_owned()))?;
                push(
                    spec,
                    "volumes",
                    json!({"name": name, "secret": source}),
                    false,
                );
                let mount = json!({
                    "mountPath": secret.deploy_target,
                    "name": name,
                    "readOnly": true,
                });
                push(
                    base_container(pod, &args.base_container_name)?,
                    "volumeMounts",
                    mount,
                    false,
                );
            }
            (SecretDeployType::Env, Some(key)) => {
                let target = secret.deploy_target.as_deref().unwrap_or_default();
                let env = json!({
                    "name": target.to_uppercase(),
                    "valueFrom": {"secretKeyRef": {"name": secret.secret, "key": key}},
                });
                push(
                    base_container(pod, &args.base_container_name)?,
                    "env",
                    env,
                    false,
                );
            }
            (SecretDeployType::Env, None) => {
                let from = json!({"secretRef": {"name": secret.secret}});
                push(
                    base_container(pod, &args.base_container_name)?,
                    "envFrom",
                    from,
                    false,
                );
            }
        }
    }
    Ok(())
}

/// KPO's `add_xcom_sidecar`: the shared volume first, its mount first in the base container,
/// and the sidecar last.
fn add_xcom_sidecar(
    pod: &mut Value,
    args: &PodArgs,
    defaults: &PodDefaults,
) -> Result<(), BuildError> {
    let base = args.base_container_name.as_str();
    let volume = json!({"name": "xcom", "emptyDir": {}});
    let mount = json!({"name": "xcom", "mountPath": XCOM_MOUNT_PATH});
    let resources = match &defaults.xcom_sidecar_resources {
        Some(resources) => {
            serde_json::to_value(resources).map_err(|err| BuildError::Invalid(err.to_string()))?
        }
        None => json!({"requests": {"cpu": "1m", "memory": "10Mi"}}),
    };
    let mut sidecar = json!({
        "name": XCOM_SIDECAR_NAME,
        "command": ["sh", "-c", XCOM_SIDECAR_COMMAND],
        "image": defaults.xcom_sidecar_image,
        "volumeMounts": [mount.clone()],
        "resources": resources,
    });
    if let Some(context) = &args.xcom_sidecar_container_security_context {
        sidecar["securityContext"] = to(context);
    }
    let spec = pod
        .get_mut("spec")
        .ok_or_else(|| BuildError::Invalid("the pod has no spec".to_owned()))?;
    push(spec, "volumes", volume, true);
    push(spec, "containers", sidecar, false);
    push(base_container(pod, base)?, "volumeMounts", mount, true);
    Ok(())
}

/// The labels that identify the try (made label-safe as KPO makes them), over the user's.
fn add_try_labels(pod: &mut Value, labels: TryLabels<'_>) {
    let map = object_at(metadata(pod), "labels");
    for (key, value) in try_labels(labels) {
        map.insert(key, Value::String(value));
    }
}

/// The names of the labels [`try_labels`] gives, in its order.
pub const TRY_LABEL_NAMES: [&str; 6] = [
    "dag_id",
    "task_id",
    "run_id",
    POD_OPERATOR_LABEL.0,
    "try_number",
    MANAGED_BY_LABEL.0,
];

/// The labels a try's pod carries, by which a restarted scheduler finds it again: those of
/// [`TRY_LABEL_NAMES`], and `map_index` for an instance of a mapped task.
#[must_use]
pub fn try_labels(labels: TryLabels<'_>) -> Vec<(String, String)> {
    let mut all = fixed_try_labels(labels);
    if labels.map_index >= 0 {
        all.push((MAP_INDEX_LABEL.to_owned(), labels.map_index.to_string()));
    }
    all
}

/// The label of a mapped instance's index (Airflow's KubernetesPodOperator's name).
pub const MAP_INDEX_LABEL: &str = "map_index";

/// The try a pod's or Job's labels name, as [`try_labels`] gives them; `None` when one of
/// [`TRY_LABEL_NAMES`] is missing.
#[must_use]
pub fn try_key_labels(
    labels: &std::collections::BTreeMap<String, String>,
) -> Option<Vec<(String, String)>> {
    let mut key: Vec<(String, String)> = TRY_LABEL_NAMES
        .iter()
        .map(|name| labels.get(*name).map(|v| ((*name).to_owned(), v.clone())))
        .collect::<Option<_>>()?;
    if let Some(index) = labels.get(MAP_INDEX_LABEL) {
        key.push((MAP_INDEX_LABEL.to_owned(), index.clone()));
    }
    Some(key)
}

fn fixed_try_labels(labels: TryLabels<'_>) -> Vec<(String, String)> {
    let values = [
        names::safe_label_value(labels.dag_id),
        names::safe_label_value(labels.task_id),
        names::safe_label_value(labels.run_id),
        POD_OPERATOR_LABEL.1.to_owned(),
        labels.try_number.to_string(),
        MANAGED_BY_LABEL.1.to_owned(),
    ];
    TRY_LABEL_NAMES
        .iter()
        .map(|name| (*name).to_owned())
        .zip(values)
        .collect()
}

#[cfg(test)]
mod tests;
