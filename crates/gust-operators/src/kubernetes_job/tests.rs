use super::*;
use crate::registry::resolve;
use serde_json::json;

fn read(value: Value) -> Result<JobArgs, ArgumentError> {
    JobArgs::read(value.as_object().expect("an object"))
}

#[test]
fn job_arguments_are_read_apart_from_the_pods() {
    let args = read(json!({
        "image": "perl:5.34.0",
        "cmds": ["perl", "-Mbignum=bpi", "-wle", "print bpi(2000)"],
        "backoff_limit": 2,
        "completions": 3,
        "parallelism": 2,
        "completion_mode": "Indexed",
        "suspend": true,
        "ttl_seconds_after_finished": 60,
        "active_deadline_seconds": 600,
        "wait_until_job_complete": true,
        "selector": {"match_labels": {"app": "pi"}},
        "full_job_spec": {"__type__": "kubernetes.client.models.V1Job",
                          "spec": {"backoff_limit": 1}},
    }))
    .unwrap();
    assert_eq!(args.pod.image.as_deref(), Some("perl:5.34.0"));
    assert_eq!(args.pod.active_deadline_seconds, Some(600));
    assert_eq!(
        (args.backoff_limit, args.completions, args.parallelism),
        (Some(2), Some(3), Some(2))
    );
    assert_eq!(args.completion_mode, Some(CompletionMode::Indexed));
    assert_eq!(args.suspend, Some(true));
    assert!(args.wait_until_job_complete);
    let selector = args.selector.unwrap().match_labels.unwrap();
    assert_eq!(selector["app"], "pi");
    let full = args.full_job_spec.unwrap().spec.unwrap();
    assert_eq!(full.backoff_limit, Some(1));
}

#[test]
fn defaults_match_kubernetes_job_operator() {
    let args = read(json!({"image": "x"})).unwrap();
    assert!(!args.wait_until_job_complete);
    assert!(args.pod.get_logs);
    assert!((args.job_poll_interval - 10.0).abs() < f64::EPSILON);
    assert_eq!(
        args.on_kill_propagation_policy,
        PropagationPolicy::Foreground
    );
    assert_eq!(args.suspend, None);
    assert!(!SPEC.pushes_xcom_by_default);
}

#[test]
fn bad_job_arguments_name_their_path() {
    let err = read(json!({"backoff_limit": -1})).unwrap_err();
    assert_eq!(err.path, "backoff_limit");
    let err = read(json!({"completion_mode": "Sometimes"})).unwrap_err();
    assert_eq!(err.path, "completion_mode");
    let err = read(json!({"full_job_spec": {"spec": {"backofLimit": 1}}})).unwrap_err();
    assert_eq!(err.path, "full_job_spec.spec.backofLimit", "{err}");
    let err = read(json!({"queue_name": "q"})).unwrap_err();
    assert!(err.message.contains("unknown field `queue_name`"), "{err}");
}

#[test]
fn a_kueue_job_needs_a_queue_and_starts_suspended() {
    let read_kueue = |value: Value| JobArgs::read_kueue(value.as_object().expect("an object"));
    let err = read_kueue(json!({"image": "x"})).unwrap_err();
    assert_eq!(err.path, "queue_name");
    assert!(err.message.contains("add `queue_name:`"), "{err}");
    let err = read_kueue(json!({"queue_name": "q", "suspend": false})).unwrap_err();
    assert_eq!(err.path, "suspend");
    let args = read_kueue(json!({"queue_name": " user-queue ", "image": "x"})).unwrap();
    assert_eq!(args.suspend, Some(true));
    assert_eq!(args.queue_name.as_deref(), Some("user-queue"));
    assert_eq!(KUEUE_SPEC.required, ["queue_name"]);
}

#[test]
fn delete_and_patch_read_their_arguments() {
    let delete = DeleteJobArgs::read(
        json!({"name": "job-pi-1", "namespace": "default", "wait_for_completion": true,
               "delete_on_status": "Complete", "poll_interval": 1.0})
        .as_object()
        .unwrap(),
    )
    .unwrap();
    assert_eq!(delete.delete_on_status, Some(DeleteOnStatus::Complete));
    let err = DeleteJobArgs::read(
        json!({"name": "j", "delete_on_status": "Succeeded"})
            .as_object()
            .unwrap(),
    )
    .unwrap_err();
    assert_eq!(err.path, "delete_on_status");
    let err = DeleteJobArgs::read(json!({"name": " "}).as_object().unwrap()).unwrap_err();
    assert_eq!(err.path, "name");
    let patch = PatchJobArgs::read(
        json!({"name": "j", "body": {"spec": {"suspend": false}}})
            .as_object()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(patch.body["spec"]["suspend"], false);
    let err =
        PatchJobArgs::read(json!({"name": "j", "body": "x"}).as_object().unwrap()).unwrap_err();
    assert_eq!(err.path, "body");
}

#[test]
fn the_job_operators_resolve_by_their_airflow_names() {
    for (given, canonical) in [
        ("KubernetesJobOperator", "kubernetes_job"),
        (
            "airflow.providers.cncf.kubernetes.operators.job.KubernetesJobOperator",
            "kubernetes_job",
        ),
        ("KubernetesDeleteJobOperator", "kubernetes_delete_job"),
        ("KubernetesPatchJobOperator", "kubernetes_patch_job"),
        ("KubernetesStartKueueJobOperator", "kueue_job"),
    ] {
        assert_eq!(resolve(given).map(|s| s.name), Some(canonical), "{given}");
    }
    assert!(SPEC.accepts("image") && SPEC.accepts("backoff_limit"));
    assert!(KUEUE_SPEC.accepts("queue_name") && !SPEC.accepts("queue_name"));
}
