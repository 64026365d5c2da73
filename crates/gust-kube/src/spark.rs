//! The SparkApplication a `spark_kubernetes` try creates: a pure function from the task's
//! arguments, its template and the try to a `sparkoperator.k8s.io/v1beta2` object, shared by
//! dry-run, the tests and the runtime (`runtime/spark.rs`).
//!
//! It follows Airflow's `SparkKubernetesOperator`: the template is the two-section form
//! (`spark:` is the application, `kubernetes:` the pod settings laid onto its driver and
//! executors) or a plain SparkApplication; the seed's `container_resources` (cpu, memory, gpu
//! with request and limit) become the operator's `cores`, `coreLimit`, `memory` and `gpu` as
//! Airflow converts them; then the task's `image`, `code_path`, `namespace`, resources and name
//! are laid over, and the labels that identify the try are added.

use std::path::Path;

use gust_operators::kubernetes_pod::to_manifest_form;
use gust_operators::spark_kubernetes::SparkArgs;
use serde_json::{Map, Value, json};

use crate::build::names;
use crate::build::{MANAGED_BY_LABEL, TryLabels};
use crate::documents::{self, DocumentError};

/// The Spark operator's API group.
pub const SPARK_GROUP: &str = "sparkoperator.k8s.io";
/// The API version Gust creates.
pub const SPARK_VERSION: &str = "v1beta2";
/// The kind.
pub const SPARK_KIND: &str = "SparkApplication";
/// The label marking an application a Spark task created (Airflow's).
pub const SPARK_OPERATOR_LABEL: (&str, &str) = ("spark_kubernetes_operator", "True");

/// Why an application cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum SparkError {
    /// The template file cannot be read.
    #[error("application_file {0}")]
    File(#[source] DocumentError),
    /// The template is not a SparkApplication template.
    #[error("{argument}: {message}")]
    Template {
        /// `application_file` or `template_spec`.
        argument: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The name cannot be made valid.
    #[error(transparent)]
    Name(#[from] names::NameError),
}

/// Everything one application is built from.
#[derive(Debug, Clone, Copy)]
pub struct SparkRequest<'a> {
    /// The task's rendered arguments.
    pub args: &'a SparkArgs,
    /// The template, as [`load_template`] read it.
    pub template: &'a Value,
    /// The try.
    pub labels: TryLabels<'a>,
    /// Random lowercase letters and digits for the name's suffix.
    pub unique: &'a str,
    /// The namespace when neither the task nor the template names one (the connection's,
    /// the configuration's or the cluster's).
    pub default_namespace: Option<&'a str>,
}

/// The task's template: `template_spec`, or `application_file` read (YAML or JSON, relative
/// to the DAG file's folder).
pub fn load_template(args: &SparkArgs, dag_file: &Path) -> Result<Value, SparkError> {
    if let Some(spec) = &args.template_spec {
        return Ok(Value::Object(spec.clone()));
    }
    let file = args.application_file.as_deref().unwrap_or_default();
    let path = crate::template::resolve(file.trim(), dag_file);
    documents::read_value(&path).map_err(SparkError::File)
}

/// The names of the labels [`application_labels`] gives, in its order.
pub const APPLICATION_LABEL_NAMES: [&str; 6] = [
    "dag_id",
    "task_id",
    "run_id",
    "try_number",
    SPARK_OPERATOR_LABEL.0,
    MANAGED_BY_LABEL.0,
];

/// The try's labels on the application (by which a restarted scheduler finds it).
#[must_use]
pub fn application_labels(labels: TryLabels<'_>) -> Vec<(String, String)> {
    let mut all = driver_labels(TryLabels {
        map_index: gust_core::mapping::UNMAPPED,
        ..labels
    });
    all.push((
        SPARK_OPERATOR_LABEL.0.to_owned(),
        SPARK_OPERATOR_LABEL.1.to_owned(),
    ));
    all.push((MANAGED_BY_LABEL.0.to_owned(), MANAGED_BY_LABEL.1.to_owned()));
    all.extend(map_index_label(labels));
    all
}

/// The try an application's labels name, as [`application_labels`] gives them.
#[must_use]
pub fn application_key(
    labels: &std::collections::BTreeMap<String, String>,
) -> Option<Vec<(String, String)>> {
    let mut key: Vec<(String, String)> = APPLICATION_LABEL_NAMES
        .iter()
        .map(|name| labels.get(*name).map(|v| ((*name).to_owned(), v.clone())))
        .collect::<Option<_>>()?;
    if let Some(index) = labels.get(crate::build::MAP_INDEX_LABEL) {
        key.push((crate::build::MAP_INDEX_LABEL.to_owned(), index.clone()));
    }
    Some(key)
}

fn map_index_label(labels: TryLabels<'_>) -> Option<(String, String)> {
    (labels.map_index >= 0).then(|| {
        (
            crate::build::MAP_INDEX_LABEL.to_owned(),
            labels.map_index.to_string(),
        )
    })
}

/// The try's labels on the driver and executor pods (without Gust's managed-by label, so the
/// pod runtime's sweep leaves pods the Spark operator owns alone).
fn driver_labels(labels: TryLabels<'_>) -> Vec<(String, String)> {
    vec![
        ("dag_id".to_owned(), names::safe_label_value(labels.dag_id)),
        (
            "task_id".to_owned(),
            names::safe_label_value(labels.task_id),
        ),
        ("run_id".to_owned(), names::safe_label_value(labels.run_id)),
        ("try_number".to_owned(), labels.try_number.to_string()),
    ]
    .into_iter()
    .chain(map_index_label(labels))
    .collect()
}

/// The template's `kubernetes:` section settings that name a cluster, which the task's own
/// arguments override: `conn_id`, `kube_config_file`, `cluster_context`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TemplateCluster {
    /// `conn_id`.
    pub conn_id: Option<String>,
    /// `kube_config_file`.
    pub config_file: Option<String>,
    /// `cluster_context`.
    pub cluster_context: Option<String>,
}

/// What the template's `kubernetes:` section says about the cluster.
#[must_use]
pub fn template_cluster(template: &Value) -> TemplateCluster {
    let text = |key: &str| {
        template
            .pointer(&format!("/kubernetes/{key}"))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    TemplateCluster {
        conn_id: text("conn_id"),
        config_file: text("kube_config_file"),
        cluster_context: text("cluster_context"),
    }
}

/// Builds the application for a try.
pub fn build_application(request: &SparkRequest<'_>) -> Result<Value, SparkError> {
    let args = request.args;
    let argument = if args.template_spec.is_some() {
        "template_spec"
    } else {
        "application_file"
    };
    let fail = |message: String| SparkError::Template { argument, message };
    let Value::Object(body) = request.template else {
        return Err(fail("not a map: write a SparkApplication template (`spark:` and `kubernetes:` sections) or a SparkApplication manifest".to_owned()));
    };
    let (spark, kubernetes) = match body.get("spark") {
        Some(Value::Object(spark)) => (spark.clone(), body.get("kubernetes").cloned()),
        Some(_) => {
            return Err(fail(
                "`spark:` must be a map holding the SparkApplication".to_owned(),
            ));
        }
        None => (body.clone(), None),
    };
    let mut app = Value::Object(spark);
    check_kind(&app).map_err(&fail)?;
    if let Value::Object(map) = &mut app {
        // Airflow's template keys that are not part of the object.
        map.remove("apiGroup");
        map.remove("version");
        map.insert(
            "apiVersion".to_owned(),
            json!(format!("{SPARK_GROUP}/{SPARK_VERSION}")),
        );
        map.insert("kind".to_owned(), json!(SPARK_KIND));
    }
    let spec = match app.get_mut("spec") {
        Some(Value::Object(spec)) => spec,
        _ => return Err(fail("the SparkApplication has no `spec` map".to_owned())),
    };
    check_dynamic_allocation(spec).map_err(&fail)?;
    for role in ["driver", "executor"] {
        convert_template_resources(spec, role).map_err(&fail)?;
    }
    if let Some(kubernetes) = &kubernetes {
        lay_kubernetes_section(spec, kubernetes).map_err(&fail)?;
    }
    if let Some(image) = args.image.as_deref().filter(|i| !i.is_empty()) {
        spec.insert("image".to_owned(), json!(image));
    }
    if let Some(code) = args.code_path.as_deref().filter(|c| !c.is_empty()) {
        spec.insert("mainApplicationFile".to_owned(), json!(code));
    }
    if let Some(resources) = &args.container_resources {
        let resources = serde_json::to_value(resources).unwrap_or_default();
        for role in ["driver", "executor"] {
            lay_resources(role_map(spec, role), &resources);
        }
    }
    let try_labels = driver_labels(request.labels);
    for role in ["driver", "executor"] {
        let labels = object_at_map(role_map(spec, role), "labels");
        for (k, v) in &try_labels {
            labels.insert(k.clone(), json!(v));
        }
    }

    let template_name = app
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .map(str::to_owned);
    let base = match args.name.clone().or(template_name) {
        Some(name) => names::sanitize_name_argument(&name)?,
        None => names::name_from_task_id(request.labels.task_id),
    };
    let name = if args.random_name_suffix {
        names::with_suffix(&base, request.unique)
    } else {
        base.chars().take(names::POD_NAME_MAX_LENGTH).collect()
    };
    names::check_pod_name(&name)?;
    let namespace = args
        .namespace
        .clone()
        .filter(|n| !n.is_empty())
        .or_else(|| {
            app.pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
                .map(str::to_owned)
        })
        .or_else(|| request.default_namespace.map(str::to_owned))
        .unwrap_or_else(|| "default".to_owned());
    let meta = object_at(&mut app, "metadata");
    meta.insert("name".to_owned(), json!(name));
    meta.insert("namespace".to_owned(), json!(namespace));
    let labels = object_at_map(meta, "labels");
    for (k, v) in application_labels(request.labels) {
        labels.insert(k, json!(v));
    }
    Ok(app)
}

fn check_kind(app: &Value) -> Result<(), String> {
    let kind = app
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or(SPARK_KIND);
    if kind != SPARK_KIND {
        return Err(format!(
            "the template's kind is {kind}; a Spark task creates a {SPARK_KIND}"
        ));
    }
    let version = app
        .get("apiVersion")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .or_else(|| {
            let group = app.get("apiGroup").and_then(Value::as_str)?;
            let version = app.get("version").and_then(Value::as_str)?;
            Some(format!("{group}/{version}"))
        });
    match version {
        Some(v) if v != format!("{SPARK_GROUP}/{SPARK_VERSION}") => Err(format!(
            "the template's apiVersion is {v}; Gust creates {SPARK_GROUP}/{SPARK_VERSION} SparkApplications"
        )),
        _ => Ok(()),
    }
}

fn check_dynamic_allocation(spec: &Map<String, Value>) -> Result<(), String> {
    let Some(dynamic) = spec.get("dynamicAllocation") else {
        return Ok(());
    };
    let enabled = dynamic.get("enabled").and_then(Value::as_bool) == Some(true);
    let set = |k: &str| {
        dynamic
            .get(k)
            .is_some_and(|v| v.as_i64().is_some_and(|n| n != 0))
    };
    if enabled && !(set("minExecutors") && set("maxExecutors")) {
        return Err(
            "spec.dynamicAllocation is enabled: give it minExecutors and maxExecutors".to_owned(),
        );
    }
    Ok(())
}

fn role_map<'a>(spec: &'a mut Map<String, Value>, role: &str) -> &'a mut Map<String, Value> {
    object_at_map(spec, role)
}

fn object_at<'a>(value: &'a mut Value, key: &str) -> &'a mut Map<String, Value> {
    if !value.is_object() {
        *value = json!({});
    }
    let Value::Object(map) = value else {
        unreachable!("made an object above")
    };
    object_at_map(map, key)
}

fn object_at_map<'a>(map: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    let entry = map.entry(key.to_owned()).or_insert_with(|| json!({}));
    if !entry.is_object() {
        *entry = json!({});
    }
    match entry {
        Value::Object(inner) => inner,
        _ => unreachable!("made an object above"),
    }
}

/// The seed's `container_resources` under `driver` / `executor`, converted as Airflow's
/// `SparkResources` converts them: cpu request → `cores` (whole cores), cpu limit →
/// `coreLimit`, memory limit → `memory` in MiB less the 40% the Spark operator adds for
/// overhead, a named GPU with a quantity → `gpu`.
fn convert_template_resources(spec: &mut Map<String, Value>, role: &str) -> Result<(), String> {
    let Some(Value::Object(role_spec)) = spec.get_mut(role) else {
        return Ok(());
    };
    let Some(resources) = role_spec.remove("container_resources") else {
        return Ok(());
    };
    let get = |section: &str, key: &str| {
        resources
            .pointer(&format!("/{section}/{key}"))
            .filter(|v| !v.is_null())
    };
    if let Some(request) = get("cpu", "request") {
        let cores = number(request).ok_or_else(|| {
            format!("spec.{role}.container_resources.cpu.request must be a number, not {request}")
        })?;
        #[allow(
            clippy::cast_possible_truncation,
            reason = "whole cores, as Airflow's int()"
        )]
        role_spec.insert("cores".to_owned(), json!(cores.trunc() as i64));
    }
    if let Some(limit) = get("cpu", "limit") {
        role_spec.insert("coreLimit".to_owned(), json!(text(limit)));
    }
    if let Some(limit) = get("memory", "limit") {
        role_spec.insert("memory".to_owned(), json!(spark_memory(limit).ok_or_else(|| {
            format!("spec.{role}.container_resources.memory.limit must be like 2G, 2Gi or 512m, not {limit}")
        })?));
    }
    let gpu_name = get("gpu", "name").map(text);
    let gpu_quantity = get("gpu", "quantity").and_then(number).filter(|q| *q > 0.0);
    if let (Some(name), Some(quantity)) = (gpu_name, gpu_quantity) {
        #[allow(
            clippy::cast_possible_truncation,
            reason = "whole GPUs, as Airflow's int()"
        )]
        role_spec.insert(
            "gpu".to_owned(),
            json!({"name": name, "quantity": quantity.trunc() as i64}),
        );
    }
    Ok(())
}

fn number(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Airflow's memory conversion: `2G`/`2Gi` → MiB, `512m` → 512, then less 40% overhead.
fn spark_memory(limit: &Value) -> Option<String> {
    let mebibytes = match limit {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) => {
            let s = s.trim();
            if s.contains('G') {
                s.trim_end_matches(['G', 'i', ' ']).parse::<f64>().ok()? * 1024.0
            } else {
                s.trim_end_matches('m').parse::<f64>().ok()?
            }
        }
        _ => return None,
    };
    #[allow(
        clippy::cast_possible_truncation,
        reason = "whole MiB, as Airflow's int()"
    )]
    let adjusted = (mebibytes / 1.4).trunc() as i64;
    Some(format!("{adjusted}m"))
}

/// The task's `container_resources` (a ResourceRequirements) on a driver or executor.
fn lay_resources(role: &mut Map<String, Value>, resources: &Value) {
    let get = |section: &str, key: &str| {
        resources
            .pointer(&format!("/{section}/{key}"))
            .and_then(Value::as_str)
    };
    if let Some(cpu) = get("requests", "cpu") {
        role.insert("coreRequest".to_owned(), json!(cpu));
        if let Ok(cores) = cpu.parse::<i64>() {
            role.insert("cores".to_owned(), json!(cores));
        }
    }
    if let Some(cpu) = get("limits", "cpu") {
        role.insert("coreLimit".to_owned(), json!(cpu));
    }
    if let Some(memory) = get("limits", "memory").or_else(|| get("requests", "memory")) {
        role.insert("memory".to_owned(), json!(spark_quantity(memory)));
    }
    if let Some(gpus) = get("limits", "nvidia.com/gpu").and_then(|q| q.parse::<i64>().ok()) {
        role.insert(
            "gpu".to_owned(),
            json!({"name": "nvidia.com/gpu", "quantity": gpus}),
        );
    }
}

/// A Kubernetes memory quantity as Spark writes it (`2Gi` → `2g`, `512Mi` → `512m`).
fn spark_quantity(quantity: &str) -> String {
    for (suffix, spark) in [("Gi", "g"), ("Mi", "m"), ("Ki", "k"), ("Ti", "t")] {
        if let Some(number) = quantity.strip_suffix(suffix) {
            return format!("{number}{spark}");
        }
    }
    quantity.to_owned()
}

/// The `kubernetes:` section on the application: variables, volumes and scheduling settings
/// on the driver and the executors, as Airflow's `KubernetesSpec` lays them.
fn lay_kubernetes_section(spec: &mut Map<String, Value>, kubernetes: &Value) -> Result<(), String> {
    let Value::Object(section) = kubernetes else {
        return Err("`kubernetes:` must be a map".to_owned());
    };
    let get = |key: &str| section.get(key).filter(|v| !v.is_null()).cloned();
    let manifest = |key: &str, value: Value| {
        to_manifest_form(&value, &format!("kubernetes.{key}"), None).map_err(|e| e.to_string())
    };
    let list = |key: &str| -> Result<Vec<Value>, String> {
        match get(key) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => Ok(items),
            Some(other) => Err(format!("kubernetes.{key} must be a list, not {other}")),
        }
    };
    let names = |key: &str| -> Result<Vec<String>, String> {
        list(key)?
            .into_iter()
            .map(|v| match v {
                Value::String(s) => Ok(s),
                other => Err(format!("kubernetes.{key} must list names, not {other}")),
            })
            .collect()
    };

    let env: Vec<Value> = match get("env_vars") {
        None => Vec::new(),
        Some(Value::Object(map)) => map
            .into_iter()
            .map(|(name, value)| json!({"name": name, "value": text(&value)}))
            .collect(),
        Some(Value::Array(items)) => match manifest("env_vars", Value::Array(items))? {
            Value::Array(items) => items,
            _ => Vec::new(),
        },
        Some(other) => {
            return Err(format!(
                "kubernetes.env_vars must be a map or a list, not {other}"
            ));
        }
    };
    let mut env_from = match manifest("env_from", Value::Array(list("env_from")?))? {
        Value::Array(items) => items,
        _ => Vec::new(),
    };
    env_from.extend(
        names("from_env_config_map")?
            .into_iter()
            .map(|n| json!({"configMapRef": {"name": n}})),
    );
    env_from.extend(
        names("from_env_secret")?
            .into_iter()
            .map(|n| json!({"secretRef": {"name": n}})),
    );
    let mut volumes = match manifest("volumes", Value::Array(list("volumes")?))? {
        Value::Array(items) => items,
        _ => Vec::new(),
    };
    let mut mounts = match manifest("volume_mounts", Value::Array(list("volume_mounts")?))? {
        Value::Array(items) => items,
        _ => Vec::new(),
    };
    match get("config_map_mounts") {
        None => {}
        Some(Value::Object(map)) => {
            for (name, path) in map {
                volumes.push(json!({"name": name, "configMap": {"name": name}}));
                mounts.push(json!({"name": name, "mountPath": text(&path)}));
            }
        }
        Some(other) => {
            return Err(format!(
                "kubernetes.config_map_mounts must map ConfigMap names to paths, not {other}"
            ));
        }
    }
    let affinity = get("affinity")
        .map(|a| manifest("affinity", a))
        .transpose()?
        .map(prune_empty);
    let tolerations = manifest("tolerations", Value::Array(list("tolerations")?))?;
    let node_selector = get("node_selector").unwrap_or_else(|| json!({}));
    let pull_secrets: Vec<Value> = match get("image_pull_secrets") {
        None => Vec::new(),
        Some(Value::String(names)) => names.split(',').map(|n| json!(n.trim())).collect(),
        Some(Value::Array(items)) => items
            .into_iter()
            .map(|i| i.get("name").cloned().unwrap_or(i))
            .collect(),
        Some(other) => {
            return Err(format!(
                "kubernetes.image_pull_secrets must be names, not {other}"
            ));
        }
    };

    if !volumes.is_empty() {
        spec.insert("volumes".to_owned(), Value::Array(volumes));
    }
    if !pull_secrets.is_empty() {
        spec.insert("imagePullSecrets".to_owned(), Value::Array(pull_secrets));
    }
    let pod_labels = spec
        .get("labels")
        .cloned()
        .filter(|l| l.as_object().is_some_and(|m| !m.is_empty()));
    for role in ["driver", "executor"] {
        let role = role_map(spec, role);
        let mut set = |key: &str, value: &Value| {
            if !is_empty(value) {
                role.insert(key.to_owned(), value.clone());
            }
        };
        set("env", &Value::Array(env.clone()));
        set("envFrom", &Value::Array(env_from.clone()));
        set("volumeMounts", &Value::Array(mounts.clone()));
        if let Some(affinity) = &affinity {
            set("affinity", affinity);
        }
        set("tolerations", &tolerations);
        set("nodeSelector", &node_selector);
        if let Some(labels) = &pod_labels {
            set("labels", labels);
        }
    }
    Ok(())
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Array(items) => items.is_empty(),
        Value::Object(map) => map.is_empty(),
        _ => false,
    }
}

/// Drops empty maps and lists (`nodeAffinity: {}` in the seed's template means none).
fn prune_empty(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (k, prune_empty(v)))
                .filter(|(_, v)| !is_empty(v))
                .collect(),
        ),
        other => other,
    }
}

#[cfg(test)]
mod tests;
