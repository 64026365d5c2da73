//! The Job a `kubernetes_job` (or `kueue_job`) try creates: a pure function from the task's
//! arguments and the try to a `k8s_openapi` [`Job`], shared by dry-run, tests and the runtime.
//!
//! It follows KubernetesJobOperator's `build_job_request_obj`: the pod template is the pod
//! [`build_pod`] builds from the same arguments (laid over the Job template's pod template);
//! the operator's Job (name, namespace, labels, the Job spec arguments) is laid over
//! `full_job_spec`, laid over `job_template_file`; the name gets KJO's `job-` prefix.

use gust_operators::kubernetes_job::{JobArgs, KUEUE_QUEUE_LABEL};
use gust_operators::kubernetes_pod::to_manifest_form;
use k8s_openapi::api::batch::v1::Job;
use serde_json::{Map, Value, json};

use super::{BuildError, MANAGED_BY_LABEL, PodDefaults, PodRequest, TryLabels, build_pod, names};

/// KPO's label on pods and Jobs whose try is over, so that no later try re-attaches to them
/// and no sweep deletes them.
pub const CHECKED_LABEL: &str = "already_checked";

/// Everything one Job is built from.
#[derive(Debug, Clone, Copy)]
pub struct JobRequest<'a> {
    /// The task's rendered arguments.
    pub args: &'a JobArgs,
    /// The try.
    pub labels: TryLabels<'a>,
    /// The content of `pod_template_file`, read by the caller.
    pub pod_template_file: Option<&'a Value>,
    /// The content of `job_template_file`, read by the caller.
    pub job_template_file: Option<&'a Value>,
    /// Read the pods' XCom (adds the XCom sidecar; only when the try waits for the Job).
    pub do_xcom_push: bool,
    /// Random lowercase letters and digits for the name's suffix.
    pub unique: &'a str,
    /// Cluster-wide defaults.
    pub defaults: &'a PodDefaults,
}

/// Builds the Job for a try.
pub fn build_job(request: &JobRequest<'_>) -> Result<Job, BuildError> {
    let args = request.args;
    let base_name = &args.pod.base_container_name;
    let base_job = job_template(request)?;
    let job_pod = base_job
        .pointer("/spec/template")
        .filter(|t| t.is_object())
        .cloned();
    let pod_template =
        match (request.pod_template_file, &args.pod.pod_template_dict) {
            (Some(file), _) => Some(to_manifest_form(file, "", Some("V1Pod")).map_err(|err| {
                BuildError::Template {
                    argument: "pod_template_file",
                    message: err.to_string(),
                }
            })?),
            (None, Some(dict)) => Some(to_value(dict)?),
            (None, None) => None,
        };
    let combined = match (job_pod, pod_template) {
        (Some(job_pod), Some(pod)) => Some(super::merge::reconcile_pods(&job_pod, &pod, base_name)),
        (job_pod, pod) => job_pod.or(pod),
    };
    let mut pod_args = args.pod.clone();
    // The deadline is the Job's: a pod's own would only fail that pod, to be retried.
    pod_args.active_deadline_seconds = None;
    pod_args.pod_template_dict = None;
    pod_args.random_name_suffix = false;
    let pod = build_pod(&PodRequest {
        args: &pod_args,
        labels: request.labels,
        template_file: combined.as_ref(),
        do_xcom_push: request.do_xcom_push && args.wait_until_job_complete,
        unique: request.unique,
        defaults: request.defaults,
    })?;
    let mut pod_meta = pod.metadata.clone();
    let pod_namespace = pod_meta.namespace.take().unwrap_or_default();
    pod_meta.name = None;
    if let Some(labels) = &mut pod_meta.labels {
        // The Job is Gust's; its pods are the Job's (found by its `job-name` label), so the pod
        // runtime's watch and sweep leave them alone.
        labels.remove(MANAGED_BY_LABEL.0);
    }
    let template = json!({"metadata": to_value(&pod_meta)?, "spec": to_value(&pod.spec)?});

    let mut job = base_job;
    let name = job_name(&job, request)?;
    let namespace = args
        .pod
        .namespace
        .clone()
        .or_else(|| {
            job.pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .filter(|ns| !ns.is_empty())
                .map(str::to_owned)
        })
        .unwrap_or(pod_namespace);
    let meta = object_at(&mut job, "metadata");
    meta.insert("name".to_owned(), json!(name));
    meta.insert("namespace".to_owned(), json!(namespace));
    let labels = object_at_map(meta, "labels");
    for (key, value) in &args.pod.labels {
        labels.insert(key.clone(), json!(value));
    }
    for (key, value) in super::try_labels(request.labels) {
        labels.insert(key, json!(value));
    }
    if !args.wait_until_job_complete {
        // The try ends once the Job is created: the Job is the user's from then on.
        labels.insert(CHECKED_LABEL.to_owned(), json!("True"));
    }
    if let Some(queue) = &args.queue_name {
        labels.insert(KUEUE_QUEUE_LABEL.to_owned(), json!(queue));
    }
    let annotations = object_at_map(meta, "annotations");
    for (key, value) in &args.pod.annotations {
        annotations.insert(key.clone(), json!(value));
    }
    if let Some(queue) = &args.queue_name {
        annotations.insert(KUEUE_QUEUE_LABEL.to_owned(), json!(queue));
    }
    if annotations.is_empty() {
        meta.remove("annotations");
    }

    let spec = object_at(&mut job, "spec");
    let given = [
        ("backoffLimit", args.backoff_limit.map(Value::from)),
        (
            "completionMode",
            args.completion_mode.map(|m| Value::from(m.as_str())),
        ),
        ("completions", args.completions.map(Value::from)),
        ("parallelism", args.parallelism.map(Value::from)),
        (
            "selector",
            args.selector.as_ref().map(to_value).transpose()?,
        ),
        ("suspend", args.suspend.map(Value::from)),
        (
            "ttlSecondsAfterFinished",
            args.ttl_seconds_after_finished.map(Value::from),
        ),
        (
            "activeDeadlineSeconds",
            args.pod.active_deadline_seconds.map(Value::from),
        ),
        ("manualSelector", args.manual_selector.map(Value::from)),
    ];
    for (field, value) in given {
        if let Some(value) = value {
            spec.insert(field.to_owned(), value);
        }
    }
    spec.insert("template".to_owned(), template);
    job["apiVersion"] = json!("batch/v1");
    job["kind"] = json!("Job");
    serde_json::from_value(job).map_err(|err| BuildError::Invalid(format!("the Job: {err}")))
}

/// The Job to lay the operator's over: `full_job_spec` over `job_template_file`, merged as
/// KJO's `reconcile_jobs` merges them (labels and annotations key by key, the pod templates by
/// the pod rules, other fields the upper one's when it sets them).
fn job_template(request: &JobRequest<'_>) -> Result<Value, BuildError> {
    let args = request.args;
    let file = request
        .job_template_file
        .map(|file| {
            to_manifest_form(file, "", Some("V1Job")).map_err(|err| BuildError::Template {
                argument: "job_template_file",
                message: err.to_string(),
            })
        })
        .transpose()?;
    let full = args.full_job_spec.as_ref().map(to_value).transpose()?;
    Ok(match (file, full) {
        (Some(lower), Some(upper)) => reconcile_jobs(&lower, &upper, &args.pod.base_container_name),
        (Some(only), None) | (None, Some(only)) => only,
        (None, None) => json!({"metadata": {}}),
    })
}

fn reconcile_jobs(lower: &Value, upper: &Value, base: &str) -> Value {
    let mut merged = lower.clone();
    let Value::Object(upper_fields) = upper else {
        return merged;
    };
    for (key, value) in upper_fields {
        match key.as_str() {
            "metadata" => {
                let meta = object_at(&mut merged, "metadata");
                for (field, item) in value.as_object().into_iter().flatten() {
                    if matches!(field.as_str(), "labels" | "annotations") {
                        let map = object_at_map(meta, field);
                        for (k, v) in item.as_object().into_iter().flatten() {
                            map.insert(k.clone(), v.clone());
                        }
                    } else if !is_empty(item) {
                        meta.insert(field.clone(), item.clone());
                    }
                }
            }
            "spec" => {
                let lower_template = merged.pointer("/spec/template").cloned();
                let spec = object_at(&mut merged, "spec");
                for (field, item) in value.as_object().into_iter().flatten() {
                    if field == "template" {
                        let template = match &lower_template {
                            Some(lower) => super::merge::reconcile_pods(lower, item, base),
                            None => item.clone(),
                        };
                        spec.insert(field.clone(), template);
                    } else if !is_empty(item) {
                        spec.insert(field.clone(), item.clone());
                    }
                }
            }
            _ if !is_empty(value) => {
                if let Value::Object(fields) = &mut merged {
                    fields.insert(key.clone(), value.clone());
                }
            }
            _ => {}
        }
    }
    merged
}

/// KJO's naming: the `name` argument, else the template's, else the task id; a random suffix
/// unless turned off; then the `job-` prefix, all cut to 63 characters (a Job's name is a
/// label value on its pods).
fn job_name(job: &Value, request: &JobRequest<'_>) -> Result<String, BuildError> {
    let args = &request.args.pod;
    let given = match &args.name {
        Some(name) => Some(names::sanitize_name_argument(name)?),
        None => job
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .map(str::to_owned),
    };
    let base = given.unwrap_or_else(|| names::name_from_task_id(request.labels.task_id));
    let prefixed = format!("job-{base}");
    let name = if args.random_name_suffix {
        names::with_suffix(&prefixed, request.unique)
    } else {
        prefixed.chars().take(63).collect::<String>()
    };
    let name = name.trim_matches(['-', '.']).to_owned();
    names::check_pod_name(&name)?;
    Ok(name)
}

fn to_value<T: serde::Serialize>(value: &T) -> Result<Value, BuildError> {
    serde_json::to_value(value).map_err(|err| BuildError::Invalid(err.to_string()))
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(items) => items.is_empty(),
        Value::Object(map) => map.is_empty(),
    }
}

fn object_at<'v>(value: &'v mut Value, key: &str) -> &'v mut Map<String, Value> {
    if !value.is_object() {
        *value = Value::Object(Map::new());
    }
    match value {
        Value::Object(map) => object_at_map(map, key),
        _ => unreachable!("made an object above"),
    }
}

fn object_at_map<'m>(map: &'m mut Map<String, Value>, key: &str) -> &'m mut Map<String, Value> {
    let entry = map
        .entry(key.to_owned())
        .or_insert_with(|| Value::Object(Map::new()));
    if !entry.is_object() {
        *entry = Value::Object(Map::new());
    }
    match entry {
        Value::Object(map) => map,
        _ => unreachable!("made an object above"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn args(value: Value) -> JobArgs {
        JobArgs::read(value.as_object().unwrap()).unwrap()
    }

    fn build(args: &JobArgs, job_template: Option<&Value>) -> Job {
        build_job(&JobRequest {
            args,
            labels: TryLabels {
                dag_id: "pi",
                task_id: "job-task",
                run_id: "manual__2024-01-01",
                try_number: 1,
                map_index: gust_core::mapping::UNMAPPED,
            },
            pod_template_file: None,
            job_template_file: job_template,
            do_xcom_push: false,
            unique: "abcd1234",
            defaults: &PodDefaults::default(),
        })
        .unwrap()
    }

    #[test]
    fn the_seeds_pi_job_is_a_job_around_the_pod_kpo_would_build() {
        let args = args(json!({
            "namespace": "default",
            "image": "perl:5.34.0",
            "cmds": ["perl", "-Mbignum=bpi", "-wle", "print bpi(2000)"],
            "name": "pi",
            "backoff_limit": 2,
            "active_deadline_seconds": 600,
            "labels": {"team": "math"},
        }));
        let job = build(&args, None);
        let meta = &job.metadata;
        assert_eq!(meta.name.as_deref(), Some("job-pi-abcd1234"));
        assert_eq!(meta.namespace.as_deref(), Some("default"));
        let labels = meta.labels.as_ref().unwrap();
        assert_eq!(labels["team"], "math");
        assert_eq!(labels["dag_id"], "pi");
        assert_eq!(labels["app.kubernetes.io/managed-by"], "gust");
        assert_eq!(labels[CHECKED_LABEL], "True", "the try does not wait");
        let spec = job.spec.unwrap();
        assert_eq!(spec.backoff_limit, Some(2));
        assert_eq!(spec.active_deadline_seconds, Some(600));
        let template = spec.template;
        let pod_labels = template.metadata.unwrap().labels.unwrap();
        assert_eq!(pod_labels["task_id"], "job-task");
        assert!(!pod_labels.contains_key("app.kubernetes.io/managed-by"));
        let pod = template.spec.unwrap();
        assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
        assert_eq!(
            pod.active_deadline_seconds, None,
            "the deadline is the Job's"
        );
        assert_eq!(pod.containers[0].name, "base");
        assert_eq!(
            pod.containers[0].command.as_deref().unwrap()[3],
            "print bpi(2000)"
        );
    }

    #[test]
    fn arguments_win_over_full_job_spec_which_wins_over_the_template() {
        let file = json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "from-file", "labels": {"a": "file"}},
            "spec": {"backoffLimit": 5, "parallelism": 4, "template": {"spec": {
                "serviceAccountName": "runner",
                "containers": [{"name": "base", "image": "from-file",
                                "resources": {"limits": {"memory": "1Gi"}}}]}}},
        });
        let args = args(json!({
            "full_job_spec": {"metadata": {"labels": {"b": "full"}}, "spec": {"backoff_limit": 3}},
            "parallelism": 2,
            "random_name_suffix": false,
            "wait_until_job_complete": true,
        }));
        let job = build(&args, Some(&file));
        assert_eq!(job.metadata.name.as_deref(), Some("job-from-file"));
        let labels = job.metadata.labels.unwrap();
        assert_eq!(
            (labels["a"].as_str(), labels["b"].as_str()),
            ("file", "full")
        );
        assert!(!labels.contains_key(CHECKED_LABEL));
        let spec = job.spec.unwrap();
        assert_eq!((spec.backoff_limit, spec.parallelism), (Some(3), Some(2)));
        let pod = spec.template.spec.unwrap();
        assert_eq!(pod.service_account_name.as_deref(), Some("runner"));
        let base = &pod.containers[0];
        assert_eq!(base.image.as_deref(), Some("from-file"));
        assert!(base.resources.as_ref().unwrap().limits.is_some());
    }

    #[test]
    fn a_kueue_job_is_suspended_and_names_its_queue() {
        let args = JobArgs::read_kueue(
            json!({"queue_name": "user-queue", "image": "perl", "name": "test-pi"})
                .as_object()
                .unwrap(),
        )
        .unwrap();
        let job = build(&args, None);
        assert_eq!(job.spec.unwrap().suspend, Some(true));
        assert_eq!(
            job.metadata.labels.unwrap()[KUEUE_QUEUE_LABEL],
            "user-queue"
        );
        assert_eq!(
            job.metadata.annotations.unwrap()[KUEUE_QUEUE_LABEL],
            "user-queue"
        );
    }

    #[test]
    fn the_xcom_sidecar_is_added_only_when_the_try_waits() {
        let waiting = args(json!({"image": "x", "wait_until_job_complete": true}));
        let defaults = PodDefaults::default();
        let request = |args| JobRequest {
            args,
            labels: TryLabels {
                dag_id: "d",
                task_id: "t",
                run_id: "r",
                try_number: 1,
                map_index: gust_core::mapping::UNMAPPED,
            },
            pod_template_file: None,
            job_template_file: None,
            do_xcom_push: true,
            unique: "u",
            defaults: &defaults,
        };
        let containers = |job: Job| job.spec.unwrap().template.spec.unwrap().containers.len();
        assert_eq!(containers(build_job(&request(&waiting)).unwrap()), 2);
        let not_waiting = args(json!({"image": "x"}));
        assert_eq!(containers(build_job(&request(&not_waiting)).unwrap()), 1);
    }
}
