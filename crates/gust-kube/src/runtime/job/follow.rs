//! One `kubernetes_job` (or `kueue_job`) try: build the Job, create it (or find it again after
//! a restart), and, when `wait_until_job_complete`, follow it to its end: its pods' logs
//! streamed into the try's log, their XComs read as they finish, and the try failed with the
//! Job's condition and its failed pods' termination messages when the Job fails. Everything
//! waits on the namespace's Job and pod watches and on timers; nothing polls or holds a
//! thread.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use gust_executor::running::{RunningTries, TryHandle};
use gust_executor::try_log::LogWriter;
use gust_executor::{FailureReason, LaunchSpec, TryOutcome};
use gust_operators::kubernetes_job::JobArgs;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{DeleteParams, ListParams, PostParams};
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::fanout::Objects;
use super::{JobState, Jobs, Leftover, job_state, labels_of, suspend_dropped};
use crate::build::job::{CHECKED_LABEL, JobRequest, build_job};
use crate::build::{XCOM_SIDECAR_NAME, names, try_labels};
use crate::diagnose::{self, PodView};
use crate::runtime::api_error::api_error;
use crate::runtime::cleanup;
use crate::runtime::cluster::ClusterChoice;
use crate::runtime::logs::{self, LogLine};
use crate::xcom;

/// How long the log streams get to deliver their last lines once the Job has ended.
const LOG_DRAIN: Duration = Duration::from_secs(5);
/// The capacity of a try's log-line channel.
const LOG_LINES: usize = 1024;
/// How many failed pods' messages a failure quotes.
const QUOTED_PODS: usize = 3;

/// Runs one try to its end.
pub(super) async fn run(
    jobs: &Arc<Jobs>,
    running: &RunningTries,
    spec: &LaunchSpec,
    handle: &TryHandle,
    adopt: bool,
    log: &mut LogWriter<'_>,
) -> TryOutcome {
    let invalid = |message: String| TryOutcome::Failed(FailureReason::InvalidArguments(message));
    let args = match JobArgs::read_for(&spec.operator, &spec.args) {
        Ok(args) => args,
        Err(err) => return invalid(err.to_string()),
    };
    let pod_template = match crate::template::load(&args.pod, &spec.dag_file) {
        Ok(template) => template,
        Err(err) => return invalid(err.to_string()),
    };
    let job_template =
        match crate::template::load_job_template(args.job_template_file.as_deref(), &spec.dag_file)
        {
            Ok(template) => template,
            Err(message) => return invalid(message),
        };
    let task = ClusterChoice {
        in_cluster: args.pod.in_cluster,
        config_file: args.pod.config_file.as_ref().map(PathBuf::from),
        context: args.pod.cluster_context.clone(),
    };
    let (choice, cluster, defaults) =
        match super::cluster_for(&jobs.inner, &args.pod.kubernetes_conn_id, task).await {
            Ok(found) => found,
            Err(outcome) => return outcome,
        };
    let job = build_job(&JobRequest {
        args: &args,
        labels: labels_of(&spec.key),
        pod_template_file: pod_template.as_ref(),
        job_template_file: job_template.as_ref(),
        do_xcom_push: spec.do_xcom_push,
        unique: &names::random_suffix(),
        defaults: &defaults,
    });
    let job = match job {
        Ok(job) => job,
        Err(err) => return invalid(err.to_string()),
    };
    let namespace = job.metadata.namespace.clone().unwrap_or_default();
    let api: Api<Job> = Api::namespaced(cluster.client.clone(), &namespace);
    let follower = Follower {
        jobs,
        spec,
        handle,
        args: &args,
        api,
        pods: Api::namespaced(cluster.client.clone(), &namespace),
        namespace: namespace.clone(),
    };
    let name = if adopt {
        match follower.find(log).await {
            Ok(Some(name)) => name,
            Ok(None) => return TryOutcome::NeverStarted,
            Err(outcome) => return outcome,
        }
    } else {
        job.metadata.name.clone().unwrap_or_default()
    };
    // Followed before the Job is created, so no change of it is missed.
    let following = args.wait_until_job_complete.then(|| {
        (
            jobs.job_watch.follow(&choice, &cluster, &namespace, &name),
            jobs.pod_watch.follow(&choice, &cluster, &namespace, &name),
        )
    });
    if !adopt && let Err(outcome) = follower.create(&job, log).await {
        return outcome;
    }
    running.started(&spec.key).await;
    let names = json!({"job_name": name, "job_namespace": namespace});
    let Some((job_following, pod_following)) = following else {
        let _ = log
            .line(
                "gust",
                &format!(
                    "not waiting for job {name} to finish (wait_until_job_complete is false); \
                     its pods' logs are not followed"
                ),
            )
            .await;
        return TryOutcome::Succeeded { xcom: Some(names) };
    };
    follower
        .follow(
            &name,
            job_following.seen.clone(),
            pod_following.seen.clone(),
            names,
            log,
        )
        .await
}

struct Follower<'a> {
    jobs: &'a Arc<Jobs>,
    spec: &'a LaunchSpec,
    handle: &'a TryHandle,
    args: &'a JobArgs,
    api: Api<Job>,
    pods: Api<Pod>,
    namespace: String,
}

/// What the follower knows of each pod of the Job.
#[derive(Default)]
struct PodsSeen {
    /// Containers whose log is streamed, as `pod/container`.
    streamed: BTreeSet<String>,
    /// The XCom of each pod whose base container succeeded, in the order read.
    xcoms: Vec<(String, Option<Value>)>,
    /// Pods whose XCom was read (or could not be).
    read: BTreeSet<String>,
}

impl Follower<'_> {
    async fn create(&self, job: &Job, log: &mut LogWriter<'_>) -> Result<(), TryOutcome> {
        let name = job.metadata.name.clone().unwrap_or_default();
        let mut wait = Duration::from_millis(200);
        let mut attempts = 0;
        loop {
            match self.api.create(&PostParams::default(), job).await {
                Ok(created) if suspend_dropped(job, &created) => {
                    return Err(self.refuse_unsuspendable(&name).await);
                }
                Ok(_) => {
                    let _ = log
                        .line(
                            "gust",
                            &format!("created job {name} in namespace {}", self.namespace),
                        )
                        .await;
                    let _ = log.flush().await;
                    return Ok(());
                }
                Err(kube::Error::Api(status)) if is_transient(status.code) && attempts < 5 => {
                    attempts += 1;
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                }
                Err(kube::Error::Api(status)) if status.code == 409 => {
                    return Err(TryOutcome::Failed(FailureReason::Spawn(format!(
                        "job {name} already exists in namespace {}; give the task another \
                         `name` or leave random_name_suffix on",
                        self.namespace
                    ))));
                }
                Err(err) => {
                    return Err(TryOutcome::Failed(FailureReason::Spawn(format!(
                        "cannot create job {name} in namespace {}: {}",
                        self.namespace,
                        api_error(&err)
                    ))));
                }
            }
        }
    }

    /// Deletes job `name`, created suspended but running because the API server dropped
    /// `spec.suspend`, and says so: a Job meant to wait (for Kueue, or for a resume) must not
    /// run unasked.
    async fn refuse_unsuspendable(&self, name: &str) -> TryOutcome {
        let deleted = match self.api.delete(name, &DeleteParams::background()).await {
            Ok(_) => "deleted it".to_owned(),
            Err(err) => format!("could not delete it: {}", api_error(&err)),
        };
        let waiting_for = if self.args.queue_name.is_some() {
            "Kueue could not hold it for admission"
        } else {
            "it would have started at once"
        };
        let message = format!(
            "the API server dropped spec.suspend from job {name} in namespace {} (Kubernetes \
             before 1.21, or the SuspendJob feature gate off), so {waiting_for}; {deleted}. \
             Suspended Jobs need a cluster that knows spec.suspend",
            self.namespace
        );
        TryOutcome::Failed(FailureReason::Spawn(message))
    }

    /// The try's Job, found by the labels it was created with.
    async fn find(&self, log: &mut LogWriter<'_>) -> Result<Option<String>, TryOutcome> {
        let mut selector: Vec<String> = try_labels(labels_of(&self.spec.key))
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        if self.args.wait_until_job_complete {
            selector.push(format!("{CHECKED_LABEL}!=True"));
        }
        let found = self
            .api
            .list(&ListParams::default().labels(&selector.join(",")))
            .await
            .map_err(|err| {
                TryOutcome::Failed(FailureReason::Lost(format!("cannot list jobs: {err}")))
            })?;
        let Some(job) = found.items.into_iter().next() else {
            return Ok(None);
        };
        let name = job.metadata.name.clone().unwrap_or_default();
        if self.args.wait_until_job_complete && !self.args.pod.reattach_on_restart {
            let _ = self.api.delete(&name, &self.kill_params()).await;
            return Err(TryOutcome::Failed(FailureReason::Lost(format!(
                "the scheduler restarted and reattach_on_restart is off; deleted job {name}"
            ))));
        }
        let _ = log
            .line(
                "gust",
                &format!("the scheduler restarted; re-attached to job {name}"),
            )
            .await;
        Ok(Some(name))
    }

    /// Waits on the watches until the Job ends or the try is over.
    async fn follow(
        &self,
        name: &str,
        mut job_seen: watch::Receiver<Objects<Job>>,
        mut pods_seen: watch::Receiver<Objects<Pod>>,
        names: Value,
        log: &mut LogWriter<'_>,
    ) -> TryOutcome {
        let deadline = self.spec.execution_timeout.map(|t| Instant::now() + t);
        let (line_tx, mut line_rx) = mpsc::channel::<LogLine>(LOG_LINES);
        let mut seen = PodsSeen::default();
        let mut was_seen = false;
        let mut said_suspended = false;
        let mut said_running = false;
        loop {
            let job = job_seen.borrow_and_update().get(name).cloned();
            let pods = pods_seen.borrow_and_update().clone();
            match job {
                None if was_seen => {
                    self.drain_logs(&mut line_rx, line_tx, log).await;
                    return TryOutcome::Failed(FailureReason::Pod(format!(
                        "job {name} was deleted before it finished"
                    )));
                }
                None => {}
                Some(job) => {
                    was_seen = true;
                    match job_state(&job) {
                        JobState::Suspended if !said_suspended => {
                            said_suspended = true;
                            let why = if self.args.queue_name.is_some() {
                                "waiting for Kueue to admit it"
                            } else {
                                "waiting for it to be resumed (spec.suspend: false)"
                            };
                            let _ = log
                                .line("gust", &format!("job {name} is suspended; {why}"))
                                .await;
                            let _ = log.flush().await;
                        }
                        JobState::Suspended => {}
                        JobState::Active if said_suspended && !said_running => {
                            said_running = true;
                            let _ = log.line("gust", &format!("job {name} resumed")).await;
                        }
                        JobState::Active => {}
                        JobState::Complete => {
                            // Read afresh: the pod watch may lag behind the Job's.
                            let current = self.current_pods(name).await.unwrap_or(pods);
                            let _ = self
                                .watch_pods(&current, &mut seen, &line_tx, &pods_seen)
                                .await;
                            self.drain_logs(&mut line_rx, line_tx, log).await;
                            return self.succeeded(name, names, &job, seen, log).await;
                        }
                        JobState::Failed { reason, message } => {
                            // Read afresh: the pod watch may lag behind the Job's.
                            let current = self.current_pods(name).await.unwrap_or(pods);
                            let _ = self
                                .watch_pods(&current, &mut seen, &line_tx, &pods_seen)
                                .await;
                            self.drain_logs(&mut line_rx, line_tx, log).await;
                            let quoted = failed_pods(&current, &self.args.pod.base_container_name);
                            let mut text = format!("job {name} failed: {reason}: {message}");
                            if !quoted.is_empty() {
                                text.push_str(&format!("; {quoted}"));
                            }
                            self.leave(name, false);
                            return TryOutcome::Failed(FailureReason::Pod(text));
                        }
                    }
                }
            }
            if let Err(why) = self
                .watch_pods(&pods, &mut seen, &line_tx, &pods_seen)
                .await
            {
                let _ = log
                    .line("gust", &format!("{why}; deleting job {name}"))
                    .await;
                self.delete_now(name).await;
                self.drain_logs(&mut line_rx, line_tx, log).await;
                return TryOutcome::Failed(FailureReason::Pod(why));
            }
            tokio::select! {
                changed = job_seen.changed() => if changed.is_err() {
                    return TryOutcome::Failed(FailureReason::Killed("the runtime is shutting down".into()));
                },
                changed = pods_seen.changed() => if changed.is_err() {
                    return TryOutcome::Failed(FailureReason::Killed("the runtime is shutting down".into()));
                },
                Some(line) = line_rx.recv() => {
                    write_line(log, &line).await;
                    while let Ok(line) = line_rx.try_recv() {
                        write_line(log, &line).await;
                    }
                    let _ = log.flush().await;
                }
                () = sleep_until(deadline) => {
                    let limit = self.spec.execution_timeout.unwrap_or_default();
                    let _ = log.line("gust", &format!("execution_timeout of {}s reached: deleting job {name}", limit.as_secs_f64())).await;
                    self.delete_now(name).await;
                    return TryOutcome::Failed(FailureReason::TimedOut(limit));
                }
                () = self.handle.cancel.cancelled() => {
                    return match self.handle.kill_reason() {
                        Some(reason) => {
                            let _ = log.line("gust", &format!("killing the try: {reason}; deleting job {name}")).await;
                            self.delete_now(name).await;
                            TryOutcome::Failed(FailureReason::Killed(reason))
                        }
                        None => TryOutcome::Failed(FailureReason::Killed(
                            "the runtime is shutting down; the job is left to be re-attached".into(),
                        )),
                    };
                }
            }
        }
    }

    /// Streams the logs of the Job's pods as their containers start, reads the XCom of each
    /// pod whose base container succeeded, and says when a pod cannot start at all.
    async fn watch_pods(
        &self,
        pods: &Objects<Pod>,
        seen: &mut PodsSeen,
        lines: &mpsc::Sender<LogLine>,
        pods_seen: &watch::Receiver<Objects<Pod>>,
    ) -> Result<(), String> {
        let base = &self.args.pod.base_container_name;
        let chosen = self.args.pod.logged_containers();
        for (pod_name, pod) in pods.iter() {
            if let PodView::Starting {
                waiting: Some(waiting),
            } = diagnose::diagnose(pod, base)
                && waiting.permanent
            {
                return Err(format!(
                    "pod {pod_name} of the job cannot start: {}",
                    waiting.describe()
                ));
            }
            let statuses = pod
                .status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref())
                .into_iter()
                .flatten();
            for status in statuses {
                let started = status
                    .state
                    .as_ref()
                    .is_some_and(|s| s.running.is_some() || s.terminated.is_some());
                let stream = format!("{pod_name}/{}", status.name);
                if !started
                    || status.name == XCOM_SIDECAR_NAME
                    || !chosen.includes(&status.name)
                    || seen.streamed.contains(&stream)
                {
                    continue;
                }
                seen.streamed.insert(stream.clone());
                self.stream_log(pod_name, &status.name, lines, pods_seen);
            }
            if self.spec.do_xcom_push
                && !seen.read.contains(pod_name)
                && let PodView::Ended(ending) = diagnose::diagnose(pod, base)
                && ending.exit_code == 0
            {
                seen.read.insert(pod_name.clone());
                let value = self.read_xcom(pod_name).await;
                seen.xcoms.push((pod_name.clone(), value));
            }
        }
        Ok(())
    }

    /// The Job's pods as the API holds them now.
    async fn current_pods(&self, name: &str) -> Option<Objects<Pod>> {
        let params = ListParams::default().labels(&format!("{}={name}", super::JOB_NAME_LABEL));
        let list = self.pods.list(&params).await.ok()?;
        Some(Arc::new(
            list.items
                .into_iter()
                .filter_map(|pod| Some((pod.metadata.name.clone()?, Arc::new(pod))))
                .collect(),
        ))
    }

    /// Follows one container's log, its lines labelled with the pod's name.
    fn stream_log(
        &self,
        pod: &str,
        container: &str,
        lines: &mpsc::Sender<LogLine>,
        pods_seen: &watch::Receiver<Objects<Pod>>,
    ) {
        let (tx, mut rx) = mpsc::channel::<LogLine>(LOG_LINES);
        let seen = pods_seen.clone();
        let (pod_name, container_name) = (pod.to_owned(), container.to_owned());
        let ended = move || container_ended(&seen, &pod_name, &container_name);
        let inner = &self.jobs.inner;
        inner.tasks.spawn(logs::follow(
            self.pods.clone(),
            pod.to_owned(),
            container.to_owned(),
            tx,
            ended,
        ));
        let lines = lines.clone();
        let base = self.args.pod.base_container_name.clone();
        let pod = pod.to_owned();
        // Ends when the stream does or the follower is gone; dropping `rx` then ends the stream.
        inner.tasks.spawn(async move {
            loop {
                let mut line = tokio::select! {
                    () = lines.closed() => return,
                    line = rx.recv() => match line {
                        Some(line) => line,
                        None => return,
                    },
                };
                line.container = if line.container == base {
                    pod.clone()
                } else {
                    format!("{pod}/{}", line.container)
                };
                if lines.send(line).await.is_err() {
                    return;
                }
            }
        });
    }

    /// The pod's return value, read through its XCom sidecar, which is then stopped so that
    /// the pod (and the Job) can complete. A pod whose file cannot be read pushes nothing.
    async fn read_xcom(&self, pod: &str) -> Option<Value> {
        let read = crate::runtime::exec::run(
            &self.pods,
            pod,
            XCOM_SIDECAR_NAME,
            &["sh", "-c", "cat /airflow/xcom/return.json"],
            xcom::MAX_XCOM_BYTES,
        )
        .await;
        let _ = crate::runtime::exec::run(
            &self.pods,
            pod,
            XCOM_SIDECAR_NAME,
            &["sh", "-c", "kill -2 1"],
            4096,
        )
        .await;
        match read {
            Ok(output) if output.success => xcom::parse(&output.stdout).ok().flatten(),
            _ => None,
        }
    }

    async fn succeeded(
        &self,
        name: &str,
        mut names: Value,
        job: &Job,
        seen: PodsSeen,
        log: &mut LogWriter<'_>,
    ) -> TryOutcome {
        let succeeded = job
            .status
            .as_ref()
            .and_then(|s| s.succeeded)
            .unwrap_or_default();
        let _ = log
            .line(
                "gust",
                &format!("job {name} completed ({succeeded} pod(s) succeeded)"),
            )
            .await;
        if self.spec.do_xcom_push {
            let mut values: Vec<Value> = seen
                .xcoms
                .into_iter()
                .map(|(_, value)| value.unwrap_or(Value::Null))
                .collect();
            let result = if values.len() == 1 {
                values.remove(0)
            } else {
                Value::Array(values)
            };
            names["result"] = result;
        }
        self.leave(name, true);
        TryOutcome::Succeeded { xcom: Some(names) }
    }

    /// Writes the lines still coming from the log streams, for at most [`LOG_DRAIN`].
    async fn drain_logs(
        &self,
        lines: &mut mpsc::Receiver<LogLine>,
        sender: mpsc::Sender<LogLine>,
        log: &mut LogWriter<'_>,
    ) {
        drop(sender);
        let until = Instant::now() + LOG_DRAIN;
        loop {
            tokio::select! {
                line = lines.recv() => match line {
                    Some(line) => write_line(log, &line).await,
                    None => break,
                },
                () = tokio::time::sleep_until(until) => break,
            }
        }
        let _ = log.flush().await;
    }

    /// Leaves the Job to be deleted (or kept) once the scheduler has recorded the outcome.
    fn leave(&self, name: &str, succeeded: bool) {
        let leftover = Leftover {
            api: self.api.clone(),
            name: name.to_owned(),
            delete: cleanup::deletes(self.args.pod.on_finish(), succeeded),
            log_path: self.spec.log_path.clone(),
        };
        self.jobs
            .leftovers()
            .insert(self.spec.key.clone(), leftover);
    }

    fn kill_params(&self) -> DeleteParams {
        let mut params = match self.args.on_kill_propagation_policy {
            gust_operators::kubernetes_job::PropagationPolicy::Foreground => {
                DeleteParams::foreground()
            }
            gust_operators::kubernetes_job::PropagationPolicy::Background => {
                DeleteParams::background()
            }
            gust_operators::kubernetes_job::PropagationPolicy::Orphan => DeleteParams::orphan(),
        };
        if let Some(grace) = self.args.pod.termination_grace_period {
            params.grace_period_seconds = u32::try_from(grace).ok();
        }
        params
    }

    async fn delete_now(&self, name: &str) {
        let _ = self.api.delete(name, &self.kill_params()).await;
    }
}

/// The failed pods' base container endings, for the failure message.
fn failed_pods(pods: &Objects<Pod>, base: &str) -> String {
    let mut quoted: Vec<String> = pods
        .iter()
        .filter_map(|(name, pod)| match diagnose::diagnose(pod, base) {
            PodView::Ended(ending) if ending.exit_code != 0 => Some(format!(
                "pod {name}: {}",
                diagnose::ending_message(base, &ending, None)
            )),
            PodView::Failed(why) => Some(format!("pod {name}: {why}")),
            _ => None,
        })
        .collect();
    let more = quoted.len().saturating_sub(QUOTED_PODS);
    quoted.truncate(QUOTED_PODS);
    if more > 0 {
        quoted.push(format!("and {more} more failed pod(s)"));
    }
    quoted.join("; ")
}

fn container_ended(seen: &watch::Receiver<Objects<Pod>>, pod: &str, container: &str) -> bool {
    // Nobody follows the Job any more: nothing will say otherwise.
    if seen.has_changed().is_err() {
        return true;
    }
    let pods = seen.borrow();
    let Some(pod) = pods.get(pod) else {
        return true;
    };
    pod.status.as_ref().is_some_and(|status| {
        status
            .container_statuses
            .iter()
            .flatten()
            .find(|c| c.name == container)
            .is_none_or(|c| c.state.as_ref().is_some_and(|s| s.terminated.is_some()))
    })
}

async fn write_line(log: &mut LogWriter<'_>, line: &LogLine) {
    let at = chrono::DateTime::from_timestamp(
        line.at.as_second(),
        u32::try_from(line.at.subsec_nanosecond()).unwrap_or(0),
    )
    .unwrap_or_default();
    let _ = log.line_at(at, &line.container, &line.text).await;
}

fn is_transient(code: u16) -> bool {
    matches!(code, 429 | 500 | 502 | 503 | 504)
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
