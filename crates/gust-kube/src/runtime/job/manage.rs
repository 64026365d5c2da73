//! `kubernetes_delete_job` and `kubernetes_patch_job` tries: one call on a Job by name, after
//! (for a delete with `wait_for_completion`) waiting on a watch of that one Job until it has
//! completed or failed.

use std::path::PathBuf;
use std::sync::Arc;

use futures::StreamExt;
use gust_executor::running::{RunningTries, TryHandle};
use gust_executor::try_log::LogWriter;
use gust_executor::{FailureReason, LaunchSpec, TryOutcome};
use gust_operators::kubernetes_job::{DeleteJobArgs, DeleteOnStatus, PatchJobArgs};
use k8s_openapi::api::batch::v1::Job;
use kube::Api;
use kube::api::{Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use tokio::time::Instant;

use super::{JobState, Jobs, background, job_state};
use crate::runtime::api_error::api_error;
use crate::runtime::cluster::ClusterChoice;

/// The namespace a task names, else its connection's or `[kubernetes]`'s, else the cluster's.
async fn job_api(
    jobs: &Jobs,
    conn_id: &str,
    task: ClusterChoice,
    namespace: Option<&str>,
) -> Result<(Api<Job>, String), TryOutcome> {
    let (_, cluster, defaults) = super::cluster_for(&jobs.inner, conn_id, task).await?;
    let namespace = namespace
        .map(str::to_owned)
        .or(defaults.namespace)
        .unwrap_or(cluster.namespace);
    Ok((
        Api::namespaced(cluster.client.clone(), &namespace),
        namespace,
    ))
}

fn invalid(message: String) -> TryOutcome {
    TryOutcome::Failed(FailureReason::InvalidArguments(message))
}

/// Deletes the Job (and its pods), when its state is the one `delete_on_status` asks for.
pub(super) async fn delete(
    jobs: &Arc<Jobs>,
    running: &RunningTries,
    spec: &LaunchSpec,
    handle: &TryHandle,
    log: &mut LogWriter<'_>,
) -> TryOutcome {
    let args = match DeleteJobArgs::read(&spec.args) {
        Ok(args) => args,
        Err(err) => return invalid(err.to_string()),
    };
    let task = ClusterChoice {
        in_cluster: args.in_cluster,
        config_file: args.config_file.as_ref().map(PathBuf::from),
        context: args.cluster_context.clone(),
    };
    let (api, namespace) = match job_api(
        jobs,
        &args.kubernetes_conn_id,
        task,
        args.namespace.as_deref(),
    )
    .await
    {
        Ok(found) => found,
        Err(outcome) => return outcome,
    };
    running.started(&spec.key).await;
    let name = args.name.trim();
    let job = if args.wait_for_completion {
        let _ = log
            .line(
                "gust",
                &format!("waiting for job {name} to complete or fail"),
            )
            .await;
        let _ = log.flush().await;
        let deadline = spec.execution_timeout.map(|t| Instant::now() + t);
        tokio::select! {
            job = finished(&api, name) => job,
            () = handle.cancel.cancelled() => {
                return TryOutcome::Failed(FailureReason::Killed(handle.reason()));
            }
            () = sleep_until(deadline) => {
                return TryOutcome::Failed(FailureReason::TimedOut(spec.execution_timeout.unwrap_or_default()));
            }
        }
    } else {
        match api.get_opt(name).await {
            Ok(job) => job,
            Err(err) => {
                return TryOutcome::Failed(FailureReason::Pod(format!(
                    "cannot read job {name} in namespace {namespace}: {}",
                    api_error(&err)
                )));
            }
        }
    };
    let Some(job) = job else {
        let _ = log
            .line(
                "gust",
                &format!("job {name} does not exist in namespace {namespace}; nothing to delete"),
            )
            .await;
        return TryOutcome::Succeeded { xcom: None };
    };
    let state = job_state(&job);
    let wanted = match args.delete_on_status {
        None => true,
        Some(DeleteOnStatus::Complete) => state == JobState::Complete,
        Some(DeleteOnStatus::Failed) => matches!(state, JobState::Failed { .. }),
    };
    if let (false, Some(wanted)) = (wanted, args.delete_on_status) {
        let _ = log
            .line(
                "gust",
                &format!(
                    "job {name} is {}, not {wanted:?}: not deleted (delete_on_status)",
                    describe(&state)
                ),
            )
            .await;
        return TryOutcome::Succeeded { xcom: None };
    }
    match api.delete(name, &background()).await {
        Ok(_) => {
            let _ = log
                .line(
                    "gust",
                    &format!("deleted job {name} in namespace {namespace} and its pods"),
                )
                .await;
            TryOutcome::Succeeded { xcom: None }
        }
        Err(kube::Error::Api(status)) if status.code == 404 => {
            let _ = log
                .line("gust", &format!("job {name} was already gone"))
                .await;
            TryOutcome::Succeeded { xcom: None }
        }
        Err(err) => TryOutcome::Failed(FailureReason::Pod(format!(
            "cannot delete job {name} in namespace {namespace}: {}",
            api_error(&err)
        ))),
    }
}

fn describe(state: &JobState) -> String {
    match state {
        JobState::Suspended => "suspended".to_owned(),
        JobState::Active => "still running".to_owned(),
        JobState::Complete => "complete".to_owned(),
        JobState::Failed { reason, .. } => format!("failed ({reason})"),
    }
}

/// The Job once it has completed or failed (`None` if it is or becomes gone), from a watch of
/// that one Job.
async fn finished(api: &Api<Job>, name: &str) -> Option<Job> {
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut events = watcher(api.clone(), config).default_backoff().boxed();
    let mut listed = false;
    while let Some(event) = events.next().await {
        match event {
            Ok(watcher::Event::Apply(job) | watcher::Event::InitApply(job)) => {
                listed = true;
                if matches!(
                    job_state(&job),
                    JobState::Complete | JobState::Failed { .. }
                ) {
                    return Some(job);
                }
            }
            Ok(watcher::Event::Delete(_)) => return None,
            Ok(watcher::Event::InitDone) if !listed => return None,
            Ok(watcher::Event::Init | watcher::Event::InitDone) => {}
            Err(err) => {
                tracing::warn!(error = %err, job = %name, "job watch interrupted; resuming")
            }
        }
    }
    None
}

/// Applies the task's merge patch to the Job; its XCom is the patched Job.
pub(super) async fn patch(
    jobs: &Arc<Jobs>,
    running: &RunningTries,
    spec: &LaunchSpec,
    log: &mut LogWriter<'_>,
) -> TryOutcome {
    let args = match PatchJobArgs::read(&spec.args) {
        Ok(args) => args,
        Err(err) => return invalid(err.to_string()),
    };
    let task = ClusterChoice {
        in_cluster: args.in_cluster,
        config_file: args.config_file.as_ref().map(PathBuf::from),
        context: args.cluster_context.clone(),
    };
    let (api, namespace) = match job_api(
        jobs,
        &args.kubernetes_conn_id,
        task,
        args.namespace.as_deref(),
    )
    .await
    {
        Ok(found) => found,
        Err(outcome) => return outcome,
    };
    running.started(&spec.key).await;
    let name = args.name.trim();
    match api
        .patch(name, &PatchParams::default(), &Patch::Merge(&args.body))
        .await
    {
        Ok(job) => {
            let _ = log
                .line(
                    "gust",
                    &format!(
                        "patched job {name} in namespace {namespace} with {}",
                        args.body
                    ),
                )
                .await;
            let xcom = spec
                .do_xcom_push
                .then(|| serde_json::to_value(&job).ok())
                .flatten();
            TryOutcome::Succeeded { xcom }
        }
        Err(kube::Error::Api(status)) if status.code == 404 => {
            TryOutcome::Failed(FailureReason::Pod(format!(
                "job {name} does not exist in namespace {namespace}; check `name` and `namespace`"
            )))
        }
        Err(err) => TryOutcome::Failed(FailureReason::Pod(format!(
            "cannot patch job {name} in namespace {namespace}: {}",
            api_error(&err)
        ))),
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
