//! Pod statuses as the API reports them, and what each means for the try.

use super::*;
use serde_json::json;

fn pod(status: serde_json::Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "base", "image": "x"}]},
        "status": status,
    }))
    .expect("a pod")
}

fn scheduled() -> serde_json::Value {
    json!([{"type": "PodScheduled", "status": "True"}])
}

fn waiting(reason: &str, message: &str) -> serde_json::Value {
    json!({"phase": "Pending", "conditions": scheduled(), "containerStatuses": [
        {"name": "base", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
         "state": {"waiting": {"reason": reason, "message": message}}}]})
}

#[test]
fn a_pod_without_status_or_node_is_unscheduled() {
    assert_eq!(
        diagnose(&pod(json!({"phase": "Pending"})), "base"),
        PodView::Unscheduled {
            unschedulable: None
        }
    );
    let view = diagnose(
        &pod(
            json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False",
            "reason": "Unschedulable", "message": "0/3 nodes are available: 3 Insufficient cpu."}]}),
        ),
        "base",
    );
    assert_eq!(
        view,
        PodView::Unscheduled {
            unschedulable: Some("0/3 nodes are available: 3 Insufficient cpu.".into())
        }
    );
}

#[test]
fn missing_images_are_permanent_and_rate_limits_are_not() {
    let PodView::Starting { waiting: Some(w) } = diagnose(
        &pod(waiting(
            "ErrImagePull",
            "rpc error: code = NotFound desc = failed to pull and unpack image \"docker.io/library/nope:1\": not found",
        )),
        "base",
    ) else {
        panic!("starting")
    };
    assert!(w.permanent);
    assert!(
        w.describe().contains("check the image name"),
        "{}",
        w.describe()
    );
    let PodView::Starting { waiting: Some(w) } = diagnose(
        &pod(waiting(
            "ErrImagePull",
            "failed to pull: 429 Too Many Requests - toomanyrequests: You have reached your pull rate limit",
        )),
        "base",
    ) else {
        panic!("starting")
    };
    assert!(!w.permanent);
    for reason in ["InvalidImageName", "CreateContainerConfigError"] {
        let PodView::Starting { waiting: Some(w) } = diagnose(&pod(waiting(reason, "m")), "base")
        else {
            panic!("starting")
        };
        assert!(w.permanent, "{reason}");
    }
    let PodView::Starting { waiting: Some(w) } =
        diagnose(&pod(waiting("ContainerCreating", "")), "base")
    else {
        panic!("starting")
    };
    assert!(!w.permanent);
}

#[test]
fn the_base_container_decides_even_when_others_still_run() {
    let view = diagnose(
        &pod(
            json!({"phase": "Running", "conditions": scheduled(), "containerStatuses": [
            {"name": "airflow-xcom-sidecar", "image": "alpine", "imageID": "", "ready": true, "restartCount": 0,
             "state": {"running": {"startedAt": "2024-01-01T00:00:00Z"}}},
            {"name": "base", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
             "state": {"terminated": {"exitCode": 3, "reason": "Error", "message": "bad input"}}}]}),
        ),
        "base",
    );
    assert_eq!(
        view,
        PodView::Ended(Ending {
            exit_code: 3,
            reason: "Error".into(),
            message: "bad input".into()
        })
    );
}

#[test]
fn evicted_before_start_is_lost_and_after_start_is_a_failure() {
    let evicted = |base_state: serde_json::Value| {
        pod(
            json!({"phase": "Failed", "reason": "Evicted", "message": "The node was low on resource: memory.",
            "conditions": scheduled(), "containerStatuses": [
            {"name": "base", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
             "state": base_state}]}),
        )
    };
    assert!(matches!(
        diagnose(
            &evicted(json!({"waiting": {"reason": "ContainerCreating"}})),
            "base"
        ),
        PodView::LostBeforeStart(_)
    ));
    assert!(matches!(
        diagnose(&evicted(json!({"running": {}})), "base"),
        PodView::Failed(m) if m.contains("Evicted")
    ));
}

#[test]
fn a_failed_init_container_fails_the_try_by_name() {
    let view = diagnose(
        &pod(
            json!({"phase": "Failed", "conditions": scheduled(), "initContainerStatuses": [
            {"name": "fetch", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
             "state": {"terminated": {"exitCode": 2, "message": "no such bucket"}}}]}),
        ),
        "base",
    );
    assert_eq!(
        view,
        PodView::Failed("init container \"fetch\" exited with code 2: no such bucket".into())
    );
}

#[test]
fn out_of_memory_names_the_limit() {
    let ending = Ending {
        exit_code: 137,
        reason: "OOMKilled".into(),
        message: String::new(),
    };
    let text = ending_message("base", &ending, Some("512Mi"));
    assert!(
        text.contains("OOMKilled") && text.contains("512Mi"),
        "{text}"
    );
}

#[test]
fn the_termination_message_follows_the_exit_code() {
    assert_eq!(
        exit_message("base", 3, "bad input\n"),
        "container \"base\" exited with code 3: bad input"
    );
    assert_eq!(
        exit_message("base", 1, ""),
        "container \"base\" exited with code 1"
    );
}

/// A kubelet reports `lastState: {}` for a container that never ended (Go's empty struct is
/// not omitted): that is no sign the container started. Found against a real API server, where
/// a pod backing off its image pull was taken as running and waited on for ever.
#[test]
fn an_empty_last_state_is_not_a_start() {
    let status = json!({"phase": "Pending", "conditions": scheduled(), "containerStatuses": [
        {"name": "base", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
         "lastState": {},
         "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image \"x\""}}}]});
    let PodView::Starting { waiting: Some(w) } = diagnose(&pod(status), "base") else {
        panic!("a container waiting for its image has not started")
    };
    assert_eq!(w.reason, "ImagePullBackOff");
    // A container that ended before (and is restarting) has started.
    let status = json!({"phase": "Running", "conditions": scheduled(), "containerStatuses": [
        {"name": "base", "image": "x", "imageID": "", "ready": false, "restartCount": 1,
         "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}},
         "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 10s"}}}]});
    assert_eq!(diagnose(&pod(status), "base"), PodView::Running);
}
