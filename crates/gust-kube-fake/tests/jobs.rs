//! batch/v1 Jobs through the real kube client: the Job controller creates pods from the
//! template, counts completions and failures, honours suspend, deadlines and backoff limits,
//! and a deleted Job takes its pods with it.

mod common;

use std::time::Duration;

use common::{client, within};
use futures::{StreamExt, TryStreamExt};
use gust_kube_fake::{FakeCluster, PodScript};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams, PropagationPolicy};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;

fn job(name: &str, image: &str, spec: serde_json::Value) -> Job {
    let mut manifest = json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "labels": {"team": "data"}},
        "spec": {"template": {
            "metadata": {"labels": {"app": "pi"}},
            "spec": {"restartPolicy": "Never", "containers": [{"name": "base", "image": image}]},
        }},
    });
    if let (Some(target), Some(extra)) = (manifest["spec"].as_object_mut(), spec.as_object()) {
        target.extend(extra.clone());
    }
    serde_json::from_value(manifest).expect("a Job")
}

async fn start(cluster: &FakeCluster, job: &Job) -> Api<Job> {
    let jobs: Api<Job> = Api::namespaced(client(cluster), "default");
    within("create the job", jobs.create(&PostParams::default(), job))
        .await
        .expect("the job is created");
    jobs
}

/// Waits (on a watch) until the Job has a condition of `type_` with status True.
async fn until_condition(jobs: &Api<Job>, name: &str, type_: &str) -> Job {
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut stream = watcher(jobs.clone(), config).applied_objects().boxed();
    within(type_, async {
        while let Some(job) = stream.try_next().await.expect("the watch runs") {
            if condition(&job, type_).is_some() {
                return job;
            }
        }
        panic!("the watch ended");
    })
    .await
}

fn condition(job: &Job, type_: &str) -> Option<(String, String)> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_ && c.status == "True")
        .map(|c| {
            (
                c.reason.clone().unwrap_or_default(),
                c.message.clone().unwrap_or_default(),
            )
        })
}

async fn job_pods(cluster: &FakeCluster, name: &str) -> Vec<Pod> {
    let pods: Api<Pod> = Api::namespaced(client(cluster), "default");
    pods.list(&ListParams::default().labels(&format!("job-name={name}")))
        .await
        .expect("pods are listed")
        .items
}

#[tokio::test]
async fn a_job_runs_its_completions_in_parallel_and_completes() {
    let cluster = FakeCluster::start().await;
    cluster.script(
        "perl",
        PodScript {
            lines: vec!["3.14159".into()],
            runs_for: Duration::from_millis(50),
            ..PodScript::default()
        },
    );
    let jobs = start(
        &cluster,
        &job("pi", "perl", json!({"completions": 3, "parallelism": 2})),
    )
    .await;
    let done = until_condition(&jobs, "pi", "Complete").await;
    let status = done.status.expect("a status");
    assert_eq!(status.succeeded, Some(3));
    assert!(status.start_time.is_some() && status.completion_time.is_some());
    let spec = done.spec.expect("a spec");
    let uid = done.metadata.uid.expect("a uid");
    let selector = spec
        .selector
        .and_then(|s| s.match_labels)
        .expect("a selector");
    assert_eq!(selector["batch.kubernetes.io/controller-uid"], uid);
    let pods = job_pods(&cluster, "pi").await;
    assert_eq!(pods.len(), 3);
    for pod in &pods {
        let labels = pod.metadata.labels.as_ref().expect("labels");
        assert_eq!(labels["app"], "pi", "the template's labels");
        assert_eq!(labels["batch.kubernetes.io/job-name"], "pi");
        let owner = &pod.metadata.owner_references.as_ref().expect("an owner")[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str()),
            ("Job", uid.as_str())
        );
        assert!(
            pod.metadata
                .name
                .as_deref()
                .expect("a name")
                .starts_with("pi-")
        );
    }
}

#[tokio::test]
async fn failed_pods_beyond_the_backoff_limit_fail_the_job() {
    let cluster = FakeCluster::start().await;
    cluster.script(
        "broken",
        PodScript {
            exit_code: 1,
            termination_message: Some("no such table".into()),
            ..PodScript::default()
        },
    );
    let jobs = start(&cluster, &job("etl", "broken", json!({"backoffLimit": 1}))).await;
    let failed = until_condition(&jobs, "etl", "Failed").await;
    assert_eq!(
        condition(&failed, "Failed")
            .map(|(reason, _)| reason)
            .as_deref(),
        Some("BackoffLimitExceeded")
    );
    assert_eq!(failed.status.expect("a status").failed, Some(2));
    assert_eq!(job_pods(&cluster, "etl").await.len(), 2);
}

#[tokio::test]
async fn a_job_past_its_deadline_fails_and_its_pods_are_stopped() {
    let cluster = FakeCluster::start().await;
    cluster.script(
        "slow",
        PodScript {
            runs_forever: true,
            ..PodScript::default()
        },
    );
    let jobs = start(
        &cluster,
        &job("slow", "slow", json!({"activeDeadlineSeconds": 1})),
    )
    .await;
    let failed = until_condition(&jobs, "slow", "Failed").await;
    let (reason, message) = condition(&failed, "Failed").expect("failed");
    assert_eq!(reason, "DeadlineExceeded");
    assert!(message.contains("deadline"), "{message}");
    let pods = job_pods(&cluster, "slow").await;
    assert!(
        pods.iter().all(|p| p.metadata.deletion_timestamp.is_some()),
        "the running pod is being deleted"
    );
}

#[tokio::test]
async fn a_suspended_job_starts_no_pod_until_a_merge_patch_resumes_it() {
    let cluster = FakeCluster::start().await;
    let jobs = start(
        &cluster,
        &job("later", "unscripted", json!({"suspend": true})),
    )
    .await;
    let suspended = until_condition(&jobs, "later", "Suspended").await;
    assert_eq!(
        condition(&suspended, "Suspended")
            .map(|(reason, _)| reason)
            .as_deref(),
        Some("JobSuspended")
    );
    assert!(job_pods(&cluster, "later").await.is_empty());
    within(
        "resume",
        jobs.patch(
            "later",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"suspend": false}})),
        ),
    )
    .await
    .expect("patched");
    let done = until_condition(&jobs, "later", "Complete").await;
    assert_eq!(done.status.expect("a status").succeeded, Some(1));
    assert_eq!(job_pods(&cluster, "later").await.len(), 1);
}

#[tokio::test]
async fn an_indexed_job_runs_one_pod_per_index() {
    let cluster = FakeCluster::start().await;
    let jobs = start(
        &cluster,
        &job(
            "shards",
            "unscripted",
            json!({"completions": 3, "parallelism": 3, "completionMode": "Indexed"}),
        ),
    )
    .await;
    until_condition(&jobs, "shards", "Complete").await;
    let mut indexes: Vec<String> = job_pods(&cluster, "shards")
        .await
        .iter()
        .filter_map(|p| {
            p.metadata
                .annotations
                .as_ref()?
                .get("batch.kubernetes.io/job-completion-index")
                .cloned()
        })
        .collect();
    indexes.sort();
    assert_eq!(indexes, ["0", "1", "2"]);
}

#[tokio::test]
async fn deleting_a_job_deletes_its_pods() {
    let cluster = FakeCluster::start().await;
    cluster.script(
        "forever",
        PodScript {
            runs_forever: true,
            ..PodScript::default()
        },
    );
    let jobs = start(&cluster, &job("gone", "forever", json!({}))).await;
    within("a pod", async {
        while job_pods(&cluster, "gone").await.is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let params = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        ..DeleteParams::default()
    };
    within("delete", jobs.delete("gone", &params))
        .await
        .expect("deleted");
    assert!(
        within("get", jobs.get_opt("gone"))
            .await
            .expect("get")
            .is_none()
    );
    let pods = job_pods(&cluster, "gone").await;
    assert!(pods.iter().all(|p| p.metadata.deletion_timestamp.is_some()));
}

#[tokio::test]
async fn an_invalid_job_is_refused_with_the_field_named() {
    let cluster = FakeCluster::start().await;
    let jobs: Api<Job> = Api::namespaced(client(&cluster), "default");
    let mut bad = job("bad", "x", json!({}));
    if let Some(spec) = bad.spec.as_mut().and_then(|s| s.template.spec.as_mut()) {
        spec.restart_policy = Some("Always".into());
    }
    let err = within("create", jobs.create(&PostParams::default(), &bad))
        .await
        .expect_err("refused");
    assert!(err.to_string().contains("restartPolicy"), "{err}");
}
