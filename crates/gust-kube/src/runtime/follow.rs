//! One try's pod from creation to its end: create it (or find it again after a restart), wait
//! for it to be scheduled and to start within the timeouts, stream its logs, wait for the base
//! container to end, read its XCom, delete it as `on_finish_action` says, and report how it
//! went. Everything waits on the namespace's watch and on timers; nothing polls or holds a
//! thread.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use gust_executor::try_log::LogWriter;
use gust_executor::{FailureReason, LaunchSpec, TryOutcome};
use gust_operators::kubernetes_pod::PodArgs;
use k8s_openapi::api::core::v1::{Event, Pod, Secret};
use kube::Api;
use kube::api::{DeleteParams, ListParams, PostParams};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::Inner;
use super::api_error::api_error;
use super::cleanup::{self, CHECKED_LABEL};
use super::cluster::{Cluster, ClusterChoice, ConnectionSettings};
use super::logs::{self, LogLine};
use super::watch::{Seen, Subscription};
use crate::build::{self, MANAGED_BY_LABEL, PodRequest, TryLabels, XCOM_SIDECAR_NAME, names};
use crate::diagnose::{self, Ending, PodView};
use crate::xcom;
use gust_executor::running::TryHandle;

/// How many times a pod taken away before it started (evicted, preempted) is created again.
const MAX_RECREATIONS: u32 = 3;
/// How long the log streams get to deliver their last lines once the container has ended.
const LOG_DRAIN: Duration = Duration::from_secs(5);
/// The capacity of a try's log-line channel.
const LOG_LINES: usize = 1024;

/// Whether the try starts a pod or takes back one started before a restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Create a new pod.
    Create,
    /// Find the try's pod by its labels.
    Adopt,
}

/// Follows one try to its end.
pub async fn run(
    inner: Arc<Inner>,
    spec: LaunchSpec,
    handle: TryHandle,
    start: Start,
) -> TryOutcome {
    let mut log = match LogWriter::open(&spec.log_path, inner.clock.as_ref()).await {
        Ok(log) => log,
        Err(err) => {
            return TryOutcome::Failed(FailureReason::Log(format!(
                "{}: {err}",
                spec.log_path.display()
            )));
        }
    };
    let outcome = Follower::prepare(&inner, &spec, &handle)
        .await
        .map(|f| (f, &mut log));
    let outcome = match outcome {
        Ok((follower, log)) => follower.run(start, log).await,
        Err(outcome) => outcome,
    };
    let summary = outcome.summary();
    let _ = log.line("gust", &summary).await;
    let _ = log.flush().await;
    outcome
}

struct Follower<'a> {
    inner: &'a Arc<Inner>,
    spec: &'a LaunchSpec,
    handle: &'a TryHandle,
    args: PodArgs,
    template: Option<serde_json::Value>,
    /// The `kubernetes_conn_id` connection as it was when the try started.
    connection: Option<ConnectionSettings>,
    choice: ClusterChoice,
    cluster: Cluster,
}

/// How watching a pod ended.
enum Watched {
    /// Its base container ended.
    Ended(Ending, Arc<Pod>),
    /// It was taken away before it started: create it again.
    Lost(String),
    /// The try is over with this outcome.
    Over(TryOutcome),
    /// The runtime is shutting down: the pod is left running, to be re-attached.
    Abandoned,
}

impl<'a> Follower<'a> {
    async fn prepare(
        inner: &'a Arc<Inner>,
        spec: &'a LaunchSpec,
        handle: &'a TryHandle,
    ) -> Result<Self, TryOutcome> {
        let invalid =
            |message: String| TryOutcome::Failed(FailureReason::InvalidArguments(message));
        let args = PodArgs::read(&spec.args).map_err(|err| invalid(err.to_string()))?;
        let template =
            crate::template::load(&args, &spec.dag_file).map_err(|err| invalid(err.to_string()))?;
        let connection = inner.config.connection(&args.kubernetes_conn_id);
        let base = connection
            .as_ref()
            .map_or(&inner.config.cluster, |c| &c.cluster);
        let choice = ClusterChoice::for_task(&args, base);
        let cluster = inner
            .clusters
            .get(&choice)
            .await
            .map_err(|err| TryOutcome::Failed(FailureReason::Spawn(err.to_string())))?;
        Ok(Self {
            inner,
            spec,
            handle,
            args,
            template,
            connection,
            choice,
            cluster,
        })
    }

    fn labels(&self) -> TryLabels<'a> {
        let key = &self.spec.key;
        TryLabels {
            dag_id: key.dag_id.as_str(),
            task_id: key.task_id.as_str(),
            run_id: key.run_id.as_str(),
            try_number: key.try_number.0,
            map_index: key.map_index,
        }
    }

    fn build(&self) -> Result<Pod, TryOutcome> {
        let mut defaults = build::PodDefaults {
            own_namespace: Some(self.cluster.namespace.clone()),
            ..self.inner.config.pod_defaults.clone()
        };
        // The connection's namespace and sidecar image come before the configuration's.
        if let Some(connection) = &self.connection {
            if connection.namespace.is_some() {
                defaults.namespace.clone_from(&connection.namespace);
            }
            if let Some(image) = &connection.xcom_sidecar_image {
                defaults.xcom_sidecar_image.clone_from(image);
            }
        }
        build::build_pod(&PodRequest {
            args: &self.args,
            labels: self.labels(),
            template_file: self.template.as_ref(),
            do_xcom_push: self.spec.do_xcom_push,
            unique: &names::random_suffix(),
            defaults: &defaults,
        })
        .map_err(|err| TryOutcome::Failed(FailureReason::InvalidArguments(err.to_string())))
    }

    async fn run(self, start: Start, log: &mut LogWriter<'_>) -> TryOutcome {
        let pod = match self.build() {
            Ok(pod) => pod,
            Err(outcome) => return outcome,
        };
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.cluster.client.clone(), &namespace);
        let deadline = self.spec.execution_timeout.map(|t| Instant::now() + t);

        let mut name = match start {
            Start::Create => match self.create(&api, &pod, log).await {
                Ok(name) => name,
                Err(outcome) => return outcome,
            },
            Start::Adopt => match self.find(&api, log).await {
                Ok(Some(name)) => name,
                Ok(None) => return TryOutcome::NeverStarted,
                Err(outcome) => return outcome,
            },
        };
        self.inner.running.started(&self.spec.key).await;
        let mut recreations = 0;
        loop {
            let subscription =
                self.inner
                    .watches
                    .subscribe(&self.choice, &self.cluster, &namespace, &name);
            let watched = self.watch(&api, &name, subscription, deadline, log).await;
            match watched {
                Watched::Ended(ending, last) => {
                    return self.finish(&api, &name, &ending, &last, log).await;
                }
                Watched::Abandoned => {
                    return TryOutcome::Failed(FailureReason::Killed(
                        "the runtime is shutting down; the pod is left to be re-attached".into(),
                    ));
                }
                Watched::Over(outcome) => {
                    if let TryOutcome::Failed(FailureReason::Pod(_)) = &outcome {
                        self.report_events(&api, &name, log).await;
                        self.report_pod(&api, &name, log).await;
                    }
                    self.leave(&api, &name, false);
                    return outcome;
                }
                Watched::Lost(why) if recreations < MAX_RECREATIONS => {
                    recreations += 1;
                    let _ = log
                        .line("gust", &format!("pod {name} was taken away before it started ({why}); creating it again"))
                        .await;
                    let _ = api.delete(&name, &DeleteParams::default()).await;
                    let pod = match self.build() {
                        Ok(pod) => pod,
                        Err(outcome) => return outcome,
                    };
                    name = match self.create(&api, &pod, log).await {
                        Ok(name) => name,
                        Err(outcome) => return outcome,
                    };
                }
                Watched::Lost(why) => {
                    return TryOutcome::Failed(FailureReason::Pod(format!(
                        "the pod was taken away before it started {} times: {why}",
                        MAX_RECREATIONS + 1
                    )));
                }
            }
        }
    }

    async fn create(
        &self,
        api: &Api<Pod>,
        pod: &Pod,
        log: &mut LogWriter<'_>,
    ) -> Result<String, TryOutcome> {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let mut wait = Duration::from_millis(200);
        let mut attempts = 0;
        loop {
            // Never closed: the permit only bounds how many creates are in flight.
            let permit = self.inner.creates.acquire().await.ok();
            let answer = api.create(&PostParams::default(), pod).await;
            drop(permit);
            let answer = match answer {
                // A retried create whose first attempt reached the server after all (its answer
                // was lost): the pod is this try's, its name being unique to the try.
                Err(kube::Error::Api(status)) if status.code == 409 && attempts > 0 => {
                    match api.get(&name).await {
                        Ok(found) if same_labels(pod, &found) => Ok(found),
                        _ => Err(kube::Error::Api(status)),
                    }
                }
                answer => answer,
            };
            match answer {
                Ok(created) => {
                    self.create_worker_secret(api, &created).await?;
                    let _ = log
                        .line(
                            "gust",
                            &format!(
                                "created pod {name} in namespace {}",
                                pod.metadata.namespace.as_deref().unwrap_or_default()
                            ),
                        )
                        .await;
                    let _ = log.flush().await;
                    return Ok(name);
                }
                Err(err) if create_may_pass(&err) && attempts < 5 => {
                    attempts += 1;
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                }
                Err(err) => {
                    return Err(TryOutcome::Failed(FailureReason::Spawn(format!(
                        "cannot create pod {name} in namespace {}: {}",
                        pod.metadata.namespace.as_deref().unwrap_or_default(),
                        api_error(&err)
                    ))));
                }
            }
        }
    }

    /// A Python try's Secret (its workload and DAG bundle), created once its pod exists so
    /// that the pod owns it. Without it the pod never starts: it is deleted and the try fails.
    async fn create_worker_secret(&self, api: &Api<Pod>, created: &Pod) -> Result<(), TryOutcome> {
        let Some(worker) = &self.spec.context.worker_pod else {
            return Ok(());
        };
        if worker.secret_data.is_none() {
            return Ok(());
        }
        let secrets = self.secrets(api);
        if let Err(why) = super::worker_secret::create(&secrets, worker, created).await {
            let name = created.metadata.name.clone().unwrap_or_default();
            self.delete_now(api, &name).await;
            return Err(TryOutcome::Failed(FailureReason::Spawn(why)));
        }
        Ok(())
    }

    fn secrets(&self, api: &Api<Pod>) -> Api<Secret> {
        Api::namespaced(
            self.cluster.client.clone(),
            api.namespace().unwrap_or_default(),
        )
    }

    /// The try's pod, found by the labels it was created with.
    async fn find(
        &self,
        api: &Api<Pod>,
        log: &mut LogWriter<'_>,
    ) -> Result<Option<String>, TryOutcome> {
        let mut selector: Vec<String> = build::try_labels(self.labels())
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        selector.push(format!("{CHECKED_LABEL}!=True"));
        let found = api
            .list(&ListParams::default().labels(&selector.join(",")))
            .await
            .map_err(|err| {
                TryOutcome::Failed(FailureReason::Lost(format!("cannot list pods: {err}")))
            })?;
        let Some(pod) = found.items.into_iter().next() else {
            return Ok(None);
        };
        let name = pod.metadata.name.clone().unwrap_or_default();
        if !self.args.reattach_on_restart {
            let _ = api.delete(&name, &DeleteParams::default()).await;
            return Err(TryOutcome::Failed(FailureReason::Lost(format!(
                "the scheduler restarted and reattach_on_restart is off; deleted pod {name}"
            ))));
        }
        let _ = log
            .line(
                "gust",
                &format!("the scheduler restarted; re-attached to pod {name}"),
            )
            .await;
        Ok(Some(name))
    }

    /// Waits on the watch until the base container ends or the try is over.
    async fn watch(
        &self,
        api: &Api<Pod>,
        name: &str,
        mut subscription: Subscription,
        deadline: Option<Instant>,
        log: &mut LogWriter<'_>,
    ) -> Watched {
        let base = self.args.base_container_name.clone();
        let created = Instant::now();
        let schedule_deadline = created + Duration::from_secs(self.args.schedule_timeout());
        let mut start_deadline: Option<Instant> = None;
        let mut last_wait: Option<String> = None;
        let mut streams: BTreeMap<String, ()> = BTreeMap::new();
        let (line_tx, mut line_rx) = mpsc::channel::<LogLine>(LOG_LINES);
        let mut announced_start = false;
        let mut last_pod: Option<Arc<Pod>> = None;

        loop {
            let seen = subscription.seen.borrow_and_update().clone();
            match seen {
                Seen::NotYet => {}
                Seen::Gone => {
                    let when = if announced_start {
                        "while it ran"
                    } else {
                        "before it started"
                    };
                    return Watched::Over(TryOutcome::Failed(FailureReason::Pod(format!(
                        "pod {name} was deleted {when}"
                    ))));
                }
                Seen::Pod(pod) => {
                    self.start_log_streams(api, name, &pod, &mut streams, &line_tx, &subscription);
                    last_pod = Some(Arc::clone(&pod));
                    match diagnose::diagnose(&pod, &base) {
                        PodView::Unscheduled { unschedulable } => {
                            if let Some(why) = unschedulable {
                                last_wait = Some(format!("Unschedulable: {why}"));
                            }
                        }
                        PodView::Starting { waiting } => {
                            start_deadline.get_or_insert_with(|| {
                                Instant::now()
                                    + Duration::from_secs(self.args.startup_timeout_seconds)
                            });
                            if let Some(mut waiting) = waiting {
                                if waiting.reason == "ImagePullBackOff" && !waiting.permanent {
                                    self.explain_backoff(api, name, &mut waiting).await;
                                }
                                if waiting.permanent {
                                    return Watched::Over(TryOutcome::Failed(FailureReason::Pod(
                                        waiting.describe(),
                                    )));
                                }
                                last_wait = Some(waiting.describe());
                            }
                        }
                        PodView::Running => {
                            if !announced_start {
                                announced_start = true;
                                // A Python try's worker can be heard of from now on.
                                if let Some(worker) = &self.spec.context.worker_pod {
                                    worker.running.mark();
                                }
                                let node = pod
                                    .spec
                                    .as_ref()
                                    .and_then(|s| s.node_name.clone())
                                    .unwrap_or_default();
                                let _ = log
                                    .line("gust", &format!("pod {name} started on node {node}"))
                                    .await;
                                let _ = log.flush().await;
                            }
                        }
                        PodView::Ended(ending) => {
                            self.drain_logs(&mut line_rx, line_tx, log).await;
                            return Watched::Ended(ending, pod);
                        }
                        PodView::LostBeforeStart(why) => return Watched::Lost(why),
                        PodView::Failed(why) => {
                            self.drain_logs(&mut line_rx, line_tx, log).await;
                            return Watched::Over(TryOutcome::Failed(FailureReason::Pod(why)));
                        }
                    }
                }
            }
            let scheduling = last_pod.as_ref().is_none_or(|p| {
                matches!(diagnose::diagnose(p, &base), PodView::Unscheduled { .. })
            });
            let wait_until = match (scheduling, start_deadline, announced_start) {
                (_, _, true) => None,
                (true, _, false) => Some(schedule_deadline),
                (false, Some(at), false) => Some(at),
                (false, None, false) => None,
            };
            let wake = [wait_until, deadline].into_iter().flatten().min();
            tokio::select! {
                changed = subscription.seen.changed() => {
                    if changed.is_err() {
                        return Watched::Over(TryOutcome::Failed(FailureReason::Killed("the runtime is shutting down".into())));
                    }
                }
                Some(line) = line_rx.recv() => {
                    write_line(log, &line, &base, self.spec.context.worker_pod.is_some()).await;
                    // Keep draining lines without re-reading an unchanged pod.
                    while let Ok(line) = line_rx.try_recv() {
                        write_line(log, &line, &base, self.spec.context.worker_pod.is_some()).await;
                    }
                    let _ = log.flush().await;
                }
                () = sleep_until(wake) => {
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        let limit = self.spec.execution_timeout.unwrap_or_default();
                        let _ = log.line("gust", &format!("execution_timeout of {}s reached: deleting the pod", limit.as_secs_f64())).await;
                        self.delete_now(api, name).await;
                        return Watched::Over(TryOutcome::Failed(FailureReason::TimedOut(limit)));
                    }
                    let why = last_wait.clone().unwrap_or_else(|| "no reason given".to_owned());
                    let message = if scheduling {
                        format!("pod {name} was not scheduled within schedule_timeout_seconds ({}s): {why}", self.args.schedule_timeout())
                    } else {
                        format!("pod {name} did not start within startup_timeout_seconds ({}s): {why}", self.args.startup_timeout_seconds)
                    };
                    return Watched::Over(TryOutcome::Failed(FailureReason::Pod(message)));
                }
                () = self.handle.cancel.cancelled() => {
                    return match self.handle.kill_reason() {
                        Some(reason) => {
                            let _ = log.line("gust", &format!("killing the try: {reason}; deleting pod {name}")).await;
                            self.delete_now(api, name).await;
                            Watched::Over(TryOutcome::Failed(FailureReason::Killed(reason)))
                        }
                        // The runtime is shutting down: the pod keeps running, to be re-attached.
                        None => Watched::Abandoned,
                    };
                }
            }
        }
    }

    /// Reads why an image pull backs off from the pod's events (the status does not say),
    /// so that a missing image fails fast while a rate limit is waited out.
    async fn explain_backoff(&self, api: &Api<Pod>, name: &str, waiting: &mut diagnose::Waiting) {
        let Some(namespace) = api_namespace(api) else {
            return;
        };
        let events: Api<Event> = Api::namespaced(self.cluster.client.clone(), &namespace);
        let params = ListParams::default().fields(&format!("involvedObject.name={name}"));
        let Ok(list) = events.list(&params).await else {
            return;
        };
        let pull_error = list
            .items
            .into_iter()
            .filter(|e| e.reason.as_deref() == Some("Failed"))
            .filter_map(|e| e.message)
            .rfind(|m| m.contains("pull"));
        if let Some(message) = pull_error {
            waiting.permanent = diagnose::pull_error_is_permanent(&message);
            waiting.message = message;
        }
    }

    /// Starts a log stream for every chosen container that has started and has none yet.
    fn start_log_streams(
        &self,
        api: &Api<Pod>,
        name: &str,
        pod: &Pod,
        streams: &mut BTreeMap<String, ()>,
        lines: &mpsc::Sender<LogLine>,
        subscription: &Subscription,
    ) {
        let chosen = self.args.logged_containers();
        let init_chosen = self.args.init_container_logs.clone();
        let Some(status) = &pod.status else { return };
        let started = |s: &k8s_openapi::api::core::v1::ContainerStatus| {
            s.state
                .as_ref()
                .is_some_and(|st| st.running.is_some() || st.terminated.is_some())
        };
        let inits = status
            .init_container_statuses
            .iter()
            .flatten()
            .filter(|s| init_chosen.as_ref().is_some_and(|c| c.includes(&s.name)));
        let mains = status
            .container_statuses
            .iter()
            .flatten()
            .filter(|s| s.name != XCOM_SIDECAR_NAME && chosen.includes(&s.name));
        for container in inits.chain(mains) {
            if !started(container) || streams.contains_key(&container.name) {
                continue;
            }
            streams.insert(container.name.clone(), ());
            let seen = subscription.seen.clone();
            let container_name = container.name.clone();
            let ended = move || container_ended(&seen, &container_name);
            self.inner.tasks.spawn(logs::follow(
                api.clone(),
                name.to_owned(),
                container.name.clone(),
                lines.clone(),
                ended,
            ));
        }
    }

    /// Writes the lines still coming from the log streams, for at most [`LOG_DRAIN`].
    async fn drain_logs(
        &self,
        lines: &mut mpsc::Receiver<LogLine>,
        sender: mpsc::Sender<LogLine>,
        log: &mut LogWriter<'_>,
    ) {
        drop(sender);
        let base = &self.args.base_container_name;
        let until = Instant::now() + LOG_DRAIN;
        loop {
            tokio::select! {
                line = lines.recv() => match line {
                    Some(line) => write_line(log, &line, base, self.spec.context.worker_pod.is_some()).await,
                    None => break,
                },
                () = tokio::time::sleep_until(until) => break,
            }
        }
        let _ = log.flush().await;
    }

    /// How the try ended, once its base container has: XCom, skip codes, the failure message.
    async fn finish(
        &self,
        api: &Api<Pod>,
        name: &str,
        ending: &Ending,
        pod: &Pod,
        log: &mut LogWriter<'_>,
    ) -> TryOutcome {
        let base = &self.args.base_container_name;
        let _ = log
            .line(
                "gust",
                &format!(
                    "container \"{base}\" of pod {name} exited with code {}",
                    ending.exit_code
                ),
            )
            .await;
        let outcome = if ending.exit_code == 0 {
            let xcom = if self.spec.do_xcom_push {
                match self.read_xcom(api, name).await {
                    Ok(value) => value,
                    Err(message) => {
                        self.leave(api, name, false);
                        return TryOutcome::Failed(FailureReason::Pod(message));
                    }
                }
            } else {
                None
            };
            TryOutcome::Succeeded { xcom }
        } else if self.args.skip_on_exit_code.contains(&ending.exit_code) {
            TryOutcome::Skipped {
                exit_code: ending.exit_code,
            }
        } else {
            let limit = memory_limit(pod, base);
            let message = diagnose::ending_message(base, ending, limit.as_deref());
            let events = self.report_events(api, name, log).await;
            self.report_pod(api, name, log).await;
            TryOutcome::Failed(FailureReason::Pod(match events {
                Some(events) => format!("{message}; pod events: {events}"),
                None => message,
            }))
        };
        self.leave(api, name, matches!(outcome, TryOutcome::Succeeded { .. }));
        outcome
    }

    /// The return value the base container left, read through the XCom sidecar (stopped only
    /// once the outcome is recorded, so that a restarted scheduler can read it again).
    async fn read_xcom(
        &self,
        api: &Api<Pod>,
        name: &str,
    ) -> Result<Option<serde_json::Value>, String> {
        let read = super::exec::run(
            api,
            name,
            XCOM_SIDECAR_NAME,
            &["sh", "-c", "cat /airflow/xcom/return.json"],
            xcom::MAX_XCOM_BYTES,
        )
        .await;
        match read {
            Ok(output) if output.success => xcom::parse(&output.stdout).map_err(|e| e.to_string()),
            Ok(output) if output.stderr.contains("No such file") => Ok(None),
            Ok(output) => Err(format!(
                "cannot read the XCom file in the sidecar: {}",
                output.stderr.trim()
            )),
            Err(err) => Err(format!("cannot read the XCom file in the sidecar: {err}")),
        }
    }

    /// The failed pod as the API holds it (spec and status), written to the log when
    /// `log_pod_spec_on_failure` (KPO's default), secret values masked.
    async fn report_pod(&self, api: &Api<Pod>, name: &str, log: &mut LogWriter<'_>) {
        if !self.args.log_pod_spec_on_failure {
            return;
        }
        let Ok(pod) = api.get(name).await else { return };
        let Ok(yaml) = crate::manifest::to_yaml(&pod) else {
            return;
        };
        let _ = log.line("gust", &format!("pod {name} as it failed:")).await;
        for line in yaml.lines() {
            let _ = log.line("gust", &format!("  {line}")).await;
        }
    }

    /// The pod's events, written to the log when `log_events_on_failure`; their summary.
    async fn report_events(
        &self,
        api: &Api<Pod>,
        name: &str,
        log: &mut LogWriter<'_>,
    ) -> Option<String> {
        if !self.args.log_events_on_failure {
            return None;
        }
        let namespace = api_namespace(api)?;
        let events: Api<Event> = Api::namespaced(self.cluster.client.clone(), &namespace);
        let params = ListParams::default().fields(&format!("involvedObject.name={name}"));
        let list = events.list(&params).await.ok()?;
        let mut summary = Vec::new();
        for event in list.items {
            let reason = event.reason.unwrap_or_default();
            let message = event.message.unwrap_or_default();
            let _ = log
                .line(
                    "gust",
                    &format!(
                        "pod event: {} {reason}: {message}",
                        event.type_.unwrap_or_default()
                    ),
                )
                .await;
            summary.push(format!("{reason}: {message}"));
        }
        (!summary.is_empty()).then(|| summary.join("; "))
    }

    /// Leaves the pod to be stopped and deleted (or kept) once the scheduler has recorded the
    /// try's outcome (`Executor::release`).
    fn leave(&self, api: &Api<Pod>, name: &str, succeeded: bool) {
        let leftover = cleanup::Leftover {
            api: api.clone(),
            name: name.to_owned(),
            has_sidecar: self.spec.do_xcom_push,
            delete: cleanup::deletes(self.args.on_finish(), succeeded),
            log_path: self.spec.log_path.clone(),
            secret: (self.spec.context.worker_pod.as_ref())
                .map(|worker| (self.secrets(api), worker.secret_name.clone())),
        };
        self.inner
            .leftovers()
            .insert(self.spec.key.clone(), leftover);
    }

    async fn delete_now(&self, api: &Api<Pod>, name: &str) {
        let mut params = DeleteParams::default();
        if let Some(grace) = self.args.termination_grace_period {
            params.grace_period_seconds = u32::try_from(grace).ok();
        }
        let _ = api.delete(name, &params).await;
    }
}

fn api_namespace(api: &Api<Pod>) -> Option<String> {
    api.namespace().map(str::to_owned)
}

fn container_ended(seen: &tokio::sync::watch::Receiver<Seen>, container: &str) -> bool {
    match &*seen.borrow() {
        Seen::Gone => true,
        Seen::NotYet => false,
        Seen::Pod(pod) => pod.status.as_ref().is_some_and(|status| {
            status
                .container_statuses
                .iter()
                .flatten()
                .chain(status.init_container_statuses.iter().flatten())
                .find(|c| c.name == container)
                .is_none_or(|c| c.state.as_ref().is_some_and(|s| s.terminated.is_some()))
        }),
    }
}

fn memory_limit(pod: &Pod, base: &str) -> Option<String> {
    let container = pod
        .spec
        .as_ref()?
        .containers
        .iter()
        .find(|c| c.name == base)?;
    let limits = container.resources.as_ref()?.limits.as_ref()?;
    limits.get("memory").map(|q| q.0.clone())
}

async fn write_line(log: &mut LogWriter<'_>, line: &LogLine, base: &str, task_sdk: bool) {
    let at = chrono::DateTime::from_timestamp(
        line.at.as_second(),
        u32::try_from(line.at.subsec_nanosecond()).unwrap_or(0),
    )
    .unwrap_or_default();
    let source = if line.container == base {
        "stdout".to_owned()
    } else {
        line.container.clone()
    };
    if task_sdk && source == "stdout" {
        // A Python try's worker: its structured lines read as the local Python runtime's.
        let text = gust_executor::task_sdk::log_line(line.text.clone());
        let _ = log.line_at(at, &source, &text).await;
    } else {
        let _ = log.line_at(at, &source, &line.text).await;
    }
}

fn is_transient(code: u16) -> bool {
    matches!(code, 429 | 500 | 502 | 503 | 504)
}

/// Whether a failed pod create may pass when tried again: the server was busy or failing, or
/// the request never got an answer (no connection, or it broke), as when thousands of pods are
/// created at once. A create tried again after its answer was lost finds its pod there (409),
/// which `same_labels` tells from another's.
fn create_may_pass(err: &kube::Error) -> bool {
    match err {
        kube::Error::Api(status) => is_transient(status.code),
        kube::Error::Service(_) | kube::Error::HyperError(_) => true,
        _ => false,
    }
}

/// Whether `found` carries every label `sent` was created with (the try's labels).
fn same_labels(sent: &Pod, found: &Pod) -> bool {
    let labels = |pod: &Pod| pod.metadata.labels.clone().unwrap_or_default();
    let found = labels(found);
    labels(sent)
        .iter()
        .all(|(key, value)| found.get(key) == Some(value))
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The label selector of every pod Gust manages.
#[must_use]
pub fn managed_selector() -> String {
    format!("{}={}", MANAGED_BY_LABEL.0, MANAGED_BY_LABEL.1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::Status;

    fn pod(labels: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({"metadata": {"name": "p", "labels": labels}}))
            .expect("a pod")
    }

    #[test]
    fn a_pod_found_after_a_lost_answer_is_the_trys_when_it_has_the_trys_labels() {
        let sent = pod(serde_json::json!({"dag_id": "d", "task_id": "t", "try_number": "1"}));
        let ours = pod(
            serde_json::json!({"dag_id": "d", "task_id": "t", "try_number": "1",
                                          "added": "by a webhook"}),
        );
        let another = pod(serde_json::json!({"dag_id": "d", "task_id": "t", "try_number": "2"}));
        assert!(same_labels(&sent, &ours));
        assert!(!same_labels(&sent, &another));
    }

    #[test]
    fn a_create_is_tried_again_when_the_server_was_busy_or_never_answered() {
        let api = |code: u16| kube::Error::Api(Box::new(Status::failure("x", "y").with_code(code)));
        assert!(create_may_pass(&api(503)));
        assert!(create_may_pass(&api(429)));
        assert!(!create_may_pass(&api(422)));
        assert!(!create_may_pass(&api(403)));
        assert!(create_may_pass(&kube::Error::Service(
            "client error (Connect)".into()
        )));
    }
}
