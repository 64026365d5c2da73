//! batch/v1 Jobs: admission (validation and the API server's defaults) and a Job controller.
//!
//! Jobs are stored and served by the generic object handlers (`server/resources.rs`: create,
//! get, list, watch, merge patch, server-side apply, delete with garbage collection of the
//! Job's pods). What makes them Jobs lives here: [`admit`] checks and defaults a Job before it
//! is stored, and [`created`] starts the Job's controller task, which plays what kube's Job
//! controller does: it creates pods from the template (respecting `parallelism`,
//! `completions`, `completionMode` and `suspend`), owned by the Job and labelled with its name
//! and uid; counts succeeded and failed pods into `.status`; and ends the Job with a `Complete`
//! condition, or `Failed` with reason `BackoffLimitExceeded` (more failed pods than
//! `backoffLimit`) or `DeadlineExceeded` (`activeDeadlineSeconds` since it started), deleting
//! its pods still running. Suspending a Job deletes its running pods (condition `Suspended`);
//! resuming it starts them again. The controller waits on the pod and object change channels
//! and one timer (the deadline), never polling.
//!
//! Deleting a Job deletes its pods (gracefully), whatever `propagationPolicy` says: the fake
//! removes the Job at once, as `Background` does.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;

use crate::clock;
use crate::cluster::ClusterState;
use crate::kubelet::Kubelet;
use crate::resources::ObjectKey;
use crate::status::ApiError;
use crate::store::PodKey;

/// The API group of Jobs.
pub(crate) const GROUP: &str = "batch";
/// The resource name of Jobs.
pub(crate) const PLURAL: &str = "jobs";
/// The label (old and new spelling) naming a Job's pods' Job.
const JOB_NAME_LABELS: [&str; 2] = ["job-name", "batch.kubernetes.io/job-name"];
/// The label (old and new spelling) carrying the Job's uid on its pods.
const CONTROLLER_UID_LABELS: [&str; 2] = ["controller-uid", "batch.kubernetes.io/controller-uid"];
/// The annotation (and label) giving an Indexed Job's pod its index.
const INDEX_KEY: &str = "batch.kubernetes.io/job-completion-index";
/// Kubernetes' default `backoffLimit`.
const DEFAULT_BACKOFF_LIMIT: i32 = 6;

/// Whether `key` names a Job.
pub(crate) fn is_job(group: &str, plural: &str) -> bool {
    group == GROUP && plural == PLURAL
}

/// Checks a Job about to be stored and fills in the defaults the API server sets that do not
/// need its uid (those are set by [`created`]).
pub(crate) fn admit(object: &mut Value, name: &str) -> Result<(), ApiError> {
    let invalid =
        |field: &str, message: &str| ApiError::object_invalid("Job", name, field, message);
    let Some(spec) = object.get_mut("spec").filter(|s| s.is_object()) else {
        return Err(invalid("spec.template", "Required value"));
    };
    let containers = spec
        .pointer("/template/spec/containers")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    if containers == 0 {
        return Err(invalid("spec.template.spec.containers", "Required value"));
    }
    let restart = spec
        .pointer("/template/spec/restartPolicy")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !matches!(restart, "Never" | "OnFailure") {
        return Err(invalid(
            "spec.template.spec.restartPolicy",
            &format!(
                "Unsupported value: \"{restart}\": supported values: \"OnFailure\", \"Never\""
            ),
        ));
    }
    for field in [
        "backoffLimit",
        "completions",
        "parallelism",
        "activeDeadlineSeconds",
    ] {
        if spec
            .get(field)
            .and_then(Value::as_i64)
            .is_some_and(|v| v < 0)
        {
            return Err(invalid(
                &format!("spec.{field}"),
                "Invalid value: must be greater than or equal to 0",
            ));
        }
    }
    let mode = spec
        .get("completionMode")
        .and_then(Value::as_str)
        .unwrap_or("NonIndexed")
        .to_owned();
    if !matches!(mode.as_str(), "NonIndexed" | "Indexed") {
        return Err(invalid(
            "spec.completionMode",
            &format!(
                "Unsupported value: \"{mode}\": supported values: \"NonIndexed\", \"Indexed\""
            ),
        ));
    }
    if mode == "Indexed" && spec.get("completions").is_none_or(Value::is_null) {
        return Err(invalid(
            "spec.completions",
            "Required value: when completion mode is Indexed",
        ));
    }
    let fields = spec
        .as_object_mut()
        .ok_or_else(|| invalid("spec", "must be an object"))?;
    fields
        .entry("backoffLimit")
        .or_insert(json!(DEFAULT_BACKOFF_LIMIT));
    fields.entry("completionMode").or_insert(json!(mode));
    fields.entry("suspend").or_insert(json!(false));
    let unset = |v: &Value| v.is_null();
    if fields.get("parallelism").is_none_or(unset) {
        fields.insert("parallelism".to_owned(), json!(1));
    }
    if fields.get("completions").is_none_or(unset) && fields.get("parallelism") == Some(&json!(1)) {
        fields.insert("completions".to_owned(), json!(1));
    }
    Ok(())
}

/// Labels the new Job's template and selector with its uid and starts its controller.
pub(crate) fn created(state: &Arc<ClusterState>, key: &ObjectKey, object: &Value) {
    if !is_job(&key.group, &key.plural) {
        return;
    }
    let uid = object
        .pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let manual = object.pointer("/spec/manualSelector") == Some(&json!(true));
    let labelled = state.resources().update(key, |job| {
        let mut labels = serde_json::Map::new();
        for label in CONTROLLER_UID_LABELS {
            labels.insert(label.to_owned(), json!(uid));
        }
        for label in JOB_NAME_LABELS {
            labels.insert(label.to_owned(), json!(key.name));
        }
        if !manual {
            job["spec"]["selector"] = json!({"matchLabels": {CONTROLLER_UID_LABELS[1]: uid}});
        }
        let template = &mut job["spec"]["template"];
        if !template["metadata"].is_object() {
            template["metadata"] = json!({});
        }
        let current = &mut template["metadata"]["labels"];
        if !current.is_object() {
            *current = json!({});
        }
        if let Value::Object(current) = current {
            current.extend(labels);
        }
    });
    if labelled.is_err() {
        return;
    }
    let state_for_task = Arc::clone(state);
    let key = key.clone();
    state.tasks.spawn(async move {
        tokio::select! {
            () = state_for_task.shutdown.cancelled() => {}
            () = control(&state_for_task, &key, &uid) => {}
        }
    });
}

/// The Job's controller: reconciles on every change of the Job or of any pod, and at its
/// deadline, until the Job is finished or gone.
async fn control(state: &Arc<ClusterState>, key: &ObjectKey, uid: &str) {
    // Subscribed before the first look, so no change between the two is missed.
    let pods = {
        let store = state.store();
        store.subscribe(store.resource_version()).ok()
    };
    let objects = {
        let resources = state.resources();
        resources.subscribe(resources.resource_version()).ok()
    };
    let (Some(pods), Some(objects)) = (pods, objects) else {
        return;
    };
    let (mut pods, mut objects) = (pods.live, objects.live);
    loop {
        let wake = match reconcile(state, key, uid) {
            Next::Done => return,
            Next::Wait(wake) => wake,
        };
        tokio::select! {
            changed = pods.recv() => if matches!(changed, Err(RecvError::Closed)) { return },
            changed = objects.recv() => if matches!(changed, Err(RecvError::Closed)) { return },
            () = sleep_for(wake) => {}
        }
    }
}

async fn sleep_for(wake: Option<Duration>) {
    match wake {
        Some(after) => tokio::time::sleep(after).await,
        None => std::future::pending().await,
    }
}

/// What the controller does after a reconcile.
enum Next {
    /// The Job is finished or gone.
    Done,
    /// Wait for a change, or at most this long (the deadline).
    Wait(Option<Duration>),
}

/// The Job's pods as the controller counts them.
#[derive(Default)]
struct Counted {
    /// Running or pending pods not being deleted, by name, with their index.
    active: Vec<(PodKey, Option<i64>)>,
    succeeded: i32,
    failed: i32,
    ready: i32,
    /// Indexes with a succeeded pod (Indexed Jobs).
    done_indexes: BTreeSet<i64>,
}

fn count(state: &ClusterState, uid: &str) -> Counted {
    let store = state.store();
    let mut counted = Counted::default();
    let owned = store.pods().filter(|(_, pod)| {
        pod.metadata
            .owner_references
            .iter()
            .flatten()
            .any(|r| r.uid == uid)
    });
    for (key, pod) in owned {
        let index = pod
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(INDEX_KEY))
            .and_then(|i| i.parse::<i64>().ok());
        match pod.status.as_ref().and_then(|s| s.phase.as_deref()) {
            Some("Succeeded") => {
                counted.succeeded += 1;
                counted.done_indexes.extend(index);
            }
            Some("Failed") => counted.failed += 1,
            _ if pod.metadata.deletion_timestamp.is_some() => {}
            _ => {
                let ready = pod
                    .status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
                counted.ready += i32::from(ready);
                counted.active.push((key.clone(), index));
            }
        }
    }
    counted
}

fn reconcile(state: &Arc<ClusterState>, key: &ObjectKey, uid: &str) -> Next {
    let Some(object) = state.resources().get(key) else {
        return Next::Done;
    };
    if object.pointer("/metadata/uid").and_then(Value::as_str) != Some(uid) {
        return Next::Done;
    }
    let Ok(job) = serde_json::from_value::<Job>(Value::clone(&object)) else {
        return Next::Done;
    };
    let spec = job.spec.clone().unwrap_or_default();
    let old = job.status.clone().unwrap_or_default();
    let now = clock::now();
    let counted = count(state, uid);
    let mut status = JobStatus {
        active: None,
        succeeded: Some(counted.succeeded).filter(|n| *n > 0),
        failed: Some(counted.failed).filter(|n| *n > 0),
        ready: Some(counted.ready),
        start_time: old.start_time.clone(),
        completion_time: old.completion_time.clone(),
        conditions: old.conditions.clone(),
        ..JobStatus::default()
    };
    let finished = |status: &JobStatus| {
        status
            .conditions
            .iter()
            .flatten()
            .any(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
    };
    if finished(&old) {
        return Next::Done;
    }
    let mut next = Next::Wait(None);
    if spec.suspend == Some(true) {
        delete_pods(state, &counted.active);
        status.start_time = None;
        set_condition(
            &mut status,
            "Suspended",
            "True",
            "JobSuspended",
            "Job suspended",
            now,
        );
    } else {
        if has_condition(&old, "Suspended", "True") {
            set_condition(
                &mut status,
                "Suspended",
                "False",
                "JobResumed",
                "Job resumed",
                now,
            );
        }
        let started = status.start_time.get_or_insert(Time(now)).0;
        let backoff_limit = spec.backoff_limit.unwrap_or(DEFAULT_BACKOFF_LIMIT);
        let deadline = spec
            .active_deadline_seconds
            .and_then(|seconds| started.checked_add(SignedDuration::from_secs(seconds)).ok());
        let failure = if counted.failed > backoff_limit {
            Some((
                "BackoffLimitExceeded",
                "Job has reached the specified backoff limit",
            ))
        } else if deadline.is_some_and(|at| now >= at) {
            Some((
                "DeadlineExceeded",
                "Job was active longer than specified deadline",
            ))
        } else {
            None
        };
        if let Some((reason, message)) = failure {
            delete_pods(state, &counted.active);
            set_condition(&mut status, "FailureTarget", "True", reason, message, now);
            set_condition(&mut status, "Failed", "True", reason, message, now);
            next = Next::Done;
        } else if is_complete(&spec, &counted) {
            set_condition(
                &mut status,
                "SuccessCriteriaMet",
                "True",
                "CompletionsReached",
                "Reached expected number of succeeded pods",
                now,
            );
            set_condition(
                &mut status,
                "Complete",
                "True",
                "CompletionsReached",
                "Reached expected number of succeeded pods",
                now,
            );
            status.completion_time = Some(Time(now));
            next = Next::Done;
        } else {
            let created = start_pods(state, key, &job, uid, &spec, &counted);
            status.active = Some(i32::try_from(counted.active.len() + created).unwrap_or(i32::MAX))
                .filter(|n| *n > 0);
            next = Next::Wait(deadline.map(|at| {
                let left = at.duration_since(now).as_secs_f64().max(0.0);
                Duration::from_secs_f64(left) + Duration::from_millis(1)
            }));
        }
    }
    if status != old {
        let value = serde_json::to_value(&status).unwrap_or_default();
        let _ = state.resources().update(key, |job| job["status"] = value);
    }
    next
}

fn is_complete(spec: &k8s_openapi::api::batch::v1::JobSpec, counted: &Counted) -> bool {
    match (spec.completion_mode.as_deref(), spec.completions) {
        (Some("Indexed"), Some(completions)) => {
            i64::try_from(counted.done_indexes.len()).unwrap_or(i64::MAX) >= i64::from(completions)
        }
        (_, Some(completions)) => counted.succeeded >= completions,
        // A work queue: done once a pod succeeded and none still runs.
        (_, None) => counted.succeeded > 0 && counted.active.is_empty(),
    }
}

/// Creates the pods the Job is missing; how many were created.
fn start_pods(
    state: &Arc<ClusterState>,
    key: &ObjectKey,
    job: &Job,
    uid: &str,
    spec: &k8s_openapi::api::batch::v1::JobSpec,
    counted: &Counted,
) -> usize {
    let parallelism = usize::try_from(spec.parallelism.unwrap_or(1)).unwrap_or(0);
    let active = counted.active.len();
    let indexes: Vec<Option<i64>> = match (spec.completion_mode.as_deref(), spec.completions) {
        (Some("Indexed"), Some(completions)) => {
            let running: BTreeSet<i64> = counted.active.iter().filter_map(|(_, i)| *i).collect();
            (0..i64::from(completions))
                .filter(|i| !counted.done_indexes.contains(i) && !running.contains(i))
                .map(Some)
                .take(parallelism.saturating_sub(active))
                .collect()
        }
        (_, Some(completions)) => {
            let remaining = usize::try_from(completions - counted.succeeded).unwrap_or(0);
            vec![None; parallelism.min(remaining).saturating_sub(active)]
        }
        (_, None) if counted.succeeded == 0 => vec![None; parallelism.saturating_sub(active)],
        (_, None) => Vec::new(),
    };
    let mut created = 0;
    for index in indexes {
        if create_pod(state, key, job, uid, index) {
            created += 1;
        }
    }
    created
}

fn create_pod(
    state: &Arc<ClusterState>,
    key: &ObjectKey,
    job: &Job,
    uid: &str,
    index: Option<i64>,
) -> bool {
    let template = job
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let mut meta: ObjectMeta = template.metadata.unwrap_or_default();
    let mut labels = meta.labels.take().unwrap_or_default();
    let mut annotations = meta.annotations.take().unwrap_or_default();
    if let Some(index) = index {
        labels.insert(INDEX_KEY.to_owned(), index.to_string());
        annotations.insert(INDEX_KEY.to_owned(), index.to_string());
    }
    let mut store = state.store();
    let seed = store.created_count() + store.resource_version();
    let name = match index {
        Some(index) => format!(
            "{}-{index}-{}",
            key.name,
            crate::admission::generated_suffix(seed)
        ),
        None => format!("{}-{}", key.name, crate::admission::generated_suffix(seed)),
    };
    let pod_key = PodKey::new(&key.namespace, &name);
    if store.contains(&pod_key) {
        return false;
    }
    let mut pod = Pod {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: Some(key.namespace.clone()),
            labels: Some(labels),
            annotations: Some(annotations).filter(|a: &BTreeMap<String, String>| !a.is_empty()),
            owner_references: Some(vec![OwnerReference {
                api_version: "batch/v1".to_owned(),
                kind: "Job".to_owned(),
                name: key.name.clone(),
                uid: uid.to_owned(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..ObjectMeta::default()
        },
        spec: template.spec,
        status: None,
    };
    crate::admission::default_pod(&mut pod);
    let pod = store.insert(pod_key.clone(), pod);
    Kubelet::start(state, pod_key, pod);
    true
}

fn delete_pods(state: &ClusterState, pods: &[(PodKey, Option<i64>)]) {
    for (pod, _) in pods {
        state.delete_pod(pod, None);
    }
}

fn has_condition(status: &JobStatus, type_: &str, value: &str) -> bool {
    status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == type_ && c.status == value)
}

/// Sets condition `type_`, keeping its transition time when its status does not change.
fn set_condition(
    status: &mut JobStatus,
    type_: &str,
    value: &str,
    reason: &str,
    message: &str,
    now: Timestamp,
) {
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    if let Some(known) = conditions.iter_mut().find(|c| c.type_ == type_) {
        if known.status != value {
            known.last_transition_time = Some(Time(now));
        }
        known.status = value.to_owned();
        known.reason = Some(reason.to_owned());
        known.message = Some(message.to_owned());
        return;
    }
    conditions.push(JobCondition {
        type_: type_.to_owned(),
        status: value.to_owned(),
        reason: Some(reason.to_owned()),
        message: Some(message.to_owned()),
        last_probe_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admission_defaults_a_job_and_refuses_a_bad_restart_policy() {
        let mut job = json!({"spec": {"template": {"spec": {
            "restartPolicy": "Never", "containers": [{"name": "c", "image": "i"}]}}}});
        admit(&mut job, "j").unwrap();
        assert_eq!(job["spec"]["backoffLimit"], 6);
        assert_eq!(
            (&job["spec"]["completions"], &job["spec"]["parallelism"]),
            (&json!(1), &json!(1))
        );
        let mut bad = json!({"spec": {"template": {"spec": {
            "restartPolicy": "Always", "containers": [{"name": "c", "image": "i"}]}}}});
        let err = admit(&mut bad, "j").unwrap_err();
        assert!(err.to_status().message.unwrap().contains("restartPolicy"));
        let mut indexed = json!({"spec": {"completionMode": "Indexed", "parallelism": 2,
            "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c"}]}}}});
        assert!(admit(&mut indexed, "j").is_err());
    }
}
