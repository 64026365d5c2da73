//! One `spark_kubernetes` try: create its SparkApplication (or find it again after a restart),
//! follow `.status.applicationState.state` with a watch until COMPLETED, FAILED or
//! SUBMISSION_FAILED, stream the driver pod's log into the try's log meanwhile, and leave the
//! application to be deleted once the outcome is recorded (unless `delete_on_termination` is
//! off). Nothing polls: the application's changes come from a watch, the timeouts are timers.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures::StreamExt;
use gust_executor::running::{RunningTries, TryHandle};
use gust_executor::try_log::LogWriter;
use gust_executor::{
    Executor, FailureReason, LaunchError, LaunchSpec, SweepScope, TryEvent, TryKey, TryOutcome,
};
use gust_operators::apply::ClusterArgs;
use gust_operators::spark_kubernetes::{DRIVER_CONTAINER, SparkArgs};
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::Api;
use kube::api::{
    DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams, PostParams,
};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::api_error::api_error;
use super::cleanup::CHECKED_LABEL;
use super::follow::Start;
use super::logs::{self, LogLine};
use super::resource::{self, Connected, Undiscovered};
use super::{Inner, KubeExecutor};
use crate::build::names::safe_label_value;
use crate::build::{MANAGED_BY_LABEL, TryLabels};
use crate::spark::{self, SPARK_GROUP, SPARK_KIND, SPARK_VERSION, SparkRequest};

/// How long the driver's log stream gets to deliver its last lines once the application ended.
const LOG_DRAIN: Duration = Duration::from_secs(5);
/// The capacity of the driver log's line channel.
const LOG_LINES: usize = 1024;

/// The operator this runtime runs.
pub const SPARK_OPERATOR: &str = "spark_kubernetes";

/// What runs once a try's outcome is recorded (deleting its application).
type Cleanup = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Runs `spark_kubernetes` tries on a cluster, beside the pod runtime it shares clusters and
/// configuration with.
#[derive(Clone)]
pub struct SparkExecutor {
    shared: Arc<Shared>,
}

struct Shared {
    inner: Arc<Inner>,
    running: Arc<RunningTries>,
    /// Finished tries' applications, deleted once their outcome is recorded.
    cleanups: Mutex<HashMap<TryKey, Cleanup>>,
}

impl Shared {
    fn cleanups(&self) -> MutexGuard<'_, HashMap<TryKey, Cleanup>> {
        // Single inserts and removes only: a poisoned map is still whole.
        self.cleanups.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl SparkExecutor {
    /// The Spark runtime beside `pods`, reporting on `events`.
    #[must_use]
    pub fn new(pods: &KubeExecutor, events: &mpsc::Sender<TryEvent>) -> Self {
        let inner = Arc::clone(&pods.inner);
        let running = Arc::new(RunningTries::new(
            inner.shutdown.clone(),
            inner.tasks.clone(),
            events.clone(),
        ));
        Self {
            shared: Arc::new(Shared {
                inner,
                running,
                cleanups: Mutex::new(HashMap::new()),
            }),
        }
    }

    fn spawn(&self, spec: LaunchSpec, start: Start) -> Result<(), LaunchError> {
        if spec.operator != SPARK_OPERATOR {
            return Err(LaunchError::UnknownOperator(spec.operator));
        }
        let handle = self.shared.running.register(&spec.key)?;
        let key = spec.key.clone();
        let shared = Arc::clone(&self.shared);
        self.shared
            .running
            .spawn(key, run(shared, spec, handle, start));
        Ok(())
    }
}

impl Executor for SparkExecutor {
    fn start(&self, spec: LaunchSpec) -> Result<(), LaunchError> {
        self.spawn(spec, Start::Create)
    }

    fn kill(&self, key: &TryKey, reason: &str) {
        self.shared.running.kill(key, reason);
    }

    fn running(&self) -> usize {
        self.shared.running.len()
    }

    fn adopt(&self, spec: LaunchSpec) {
        let key = spec.key.clone();
        if let Err(err) = self.spawn(spec, Start::Adopt) {
            self.shared.running.spawn(key, async move {
                TryOutcome::Failed(FailureReason::Lost(err.to_string()))
            });
        }
    }

    fn release(&self, key: &TryKey) {
        let Some(cleanup) = self.shared.cleanups().remove(key) else {
            return;
        };
        self.shared.inner.tasks.spawn(cleanup);
    }

    fn sweep(&self, scope: SweepScope) {
        let inner = Arc::clone(&self.shared.inner);
        self.shared.inner.tasks.spawn(sweep(inner, scope));
    }
}

/// Deletes the SparkApplications of `scope`'s DAGs, in the namespaces tries use, whose try is
/// no longer live (a crash cut their clean-up short). Applications kept on purpose
/// (`delete_on_termination: false`) carry `already_checked=True` and are left alone.
async fn sweep(inner: Arc<Inner>, scope: SweepScope) {
    let label_key = |key: &TryKey| {
        spark::application_labels(TryLabels {
            dag_id: key.dag_id.as_str(),
            task_id: key.task_id.as_str(),
            run_id: key.run_id.as_str(),
            try_number: key.try_number.0,
            map_index: key.map_index,
        })
    };
    let live: HashSet<Vec<(String, String)>> = scope.live.iter().map(label_key).collect();
    let dags: HashSet<String> = scope
        .dags
        .iter()
        .map(|dag| safe_label_value(dag.as_str()))
        .collect();
    let mut places = vec![(
        inner.config.cluster.clone(),
        inner.config.pod_defaults.namespace.clone(),
    )];
    for connection in inner.config.connections.get().values() {
        places.push((connection.cluster.clone(), connection.namespace.clone()));
    }
    let gvk = GroupVersionKind::gvk(SPARK_GROUP, SPARK_VERSION, SPARK_KIND);
    let selector = format!(
        "{}={},{}={},{CHECKED_LABEL}!=True",
        MANAGED_BY_LABEL.0,
        MANAGED_BY_LABEL.1,
        spark::SPARK_OPERATOR_LABEL.0,
        spark::SPARK_OPERATOR_LABEL.1
    );
    let mut seen = HashSet::new();
    for (choice, namespace) in places {
        let Ok(cluster) = inner.clusters.get(&choice).await else {
            continue;
        };
        let namespace = namespace.unwrap_or_else(|| cluster.namespace.clone());
        if !seen.insert((choice, namespace.clone())) {
            continue;
        }
        // Without the Spark operator there is nothing to sweep.
        let Ok((resource, _)) = kube::discovery::pinned_kind(&cluster.client, &gvk).await else {
            continue;
        };
        let api: Api<DynamicObject> =
            Api::namespaced_with(cluster.client.clone(), &namespace, &resource);
        let Ok(apps) = api.list(&ListParams::default().labels(&selector)).await else {
            continue;
        };
        for app in apps.items {
            let labels = app.metadata.labels.clone().unwrap_or_default();
            let in_scope = labels.get("dag_id").is_some_and(|dag| dags.contains(dag));
            let key = spark::application_key(&labels);
            if !in_scope || key.is_none_or(|key| live.contains(&key)) {
                continue;
            }
            let name = app.metadata.name.clone().unwrap_or_default();
            tracing::info!(application = %name, namespace = %namespace, "deleting a SparkApplication left by a try that is over");
            let _ = api.delete(&name, &DeleteParams::background()).await;
        }
    }
}

/// Runs one Spark try to its end.
async fn run(shared: Arc<Shared>, spec: LaunchSpec, handle: TryHandle, start: Start) -> TryOutcome {
    let inner = &shared.inner;
    let mut log = match LogWriter::open(&spec.log_path, inner.clock.as_ref()).await {
        Ok(log) => log,
        Err(err) => {
            return TryOutcome::Failed(FailureReason::Log(format!(
                "{}: {err}",
                spec.log_path.display()
            )));
        }
    };
    let outcome = follow(&shared, &spec, &handle, start, &mut log).await;
    let _ = log.line("gust", &outcome.summary()).await;
    let _ = log.flush().await;
    outcome
}

fn labels(spec: &LaunchSpec) -> TryLabels<'_> {
    TryLabels {
        dag_id: spec.key.dag_id.as_str(),
        task_id: spec.key.task_id.as_str(),
        run_id: spec.key.run_id.as_str(),
        try_number: spec.key.try_number.0,
        map_index: spec.key.map_index,
    }
}

/// The cluster arguments: the task's, then the template's `kubernetes:` section's.
fn cluster_args(spec: &LaunchSpec, args: &SparkArgs, template: &Value) -> ClusterArgs {
    let from_template = spark::template_cluster(template);
    let mut cluster = args.cluster();
    if !spec.args.contains_key("kubernetes_conn_id")
        && let Some(conn) = from_template.conn_id
    {
        cluster.kubernetes_conn_id = conn;
    }
    cluster.config_file = cluster.config_file.or(from_template.config_file);
    cluster.cluster_context = cluster.cluster_context.or(from_template.cluster_context);
    cluster
}

async fn follow(
    shared: &Arc<Shared>,
    spec: &LaunchSpec,
    handle: &TryHandle,
    start: Start,
    log: &mut LogWriter<'_>,
) -> TryOutcome {
    let inner: &Inner = &shared.inner;
    let invalid = |message: String| TryOutcome::Failed(FailureReason::InvalidArguments(message));
    let args = match SparkArgs::read(&spec.args) {
        Ok(args) => args,
        Err(err) => return invalid(err.to_string()),
    };
    let template = match spark::load_template(&args, &spec.dag_file) {
        Ok(template) => template,
        Err(err) => return invalid(err.to_string()),
    };
    let connected =
        match resource::connect(inner, &cluster_args(spec, &args, &template), None).await {
            Ok(connected) => connected,
            Err(outcome) => return outcome,
        };
    let app = match spark::build_application(&SparkRequest {
        args: &args,
        template: &template,
        labels: labels(spec),
        unique: &crate::build::names::random_suffix(),
        default_namespace: Some(&connected.namespace),
    }) {
        Ok(app) => app,
        Err(err) => return invalid(err.to_string()),
    };
    let namespace = app["metadata"]["namespace"]
        .as_str()
        .unwrap_or("default")
        .to_owned();
    let gvk = GroupVersionKind::gvk(SPARK_GROUP, SPARK_VERSION, SPARK_KIND);
    let resource = match resource::discover(&connected.cluster.client, &gvk, &connected.label).await
    {
        Ok((resource, _)) => resource,
        Err(Undiscovered::Missing(_)) => {
            return TryOutcome::Failed(FailureReason::Spawn(format!(
                "the SparkApplication CRD ({SPARK_GROUP}/{SPARK_VERSION}) is not installed in \
                 cluster {}; install the Spark operator (kubeflow/spark-operator)",
                connected.label
            )));
        }
        Err(Undiscovered::Failed(why)) => return TryOutcome::Failed(FailureReason::Spawn(why)),
    };
    let api: Api<DynamicObject> =
        Api::namespaced_with(connected.cluster.client.clone(), &namespace, &resource);
    let name = match start {
        Start::Create => match create(&api, &app, &namespace, log).await {
            Ok(name) => name,
            Err(outcome) => return outcome,
        },
        Start::Adopt => match find(&api, spec, &args, log).await {
            Ok(Some(name)) => name,
            Ok(None) => return TryOutcome::NeverStarted,
            Err(outcome) => return outcome,
        },
    };
    shared.running.started(&spec.key).await;
    let follower = Follower {
        shared,
        spec,
        handle,
        args: &args,
        connected: &connected,
        api,
        namespace,
        name,
    };
    follower.watch(log).await
}

async fn create(
    api: &Api<DynamicObject>,
    app: &Value,
    namespace: &str,
    log: &mut LogWriter<'_>,
) -> Result<String, TryOutcome> {
    let name = app["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let object: DynamicObject = serde_json::from_value(app.clone()).map_err(|err| {
        TryOutcome::Failed(FailureReason::InvalidArguments(format!(
            "the SparkApplication is not a Kubernetes object: {err}"
        )))
    })?;
    let mut wait = Duration::from_millis(200);
    let mut attempts = 0;
    loop {
        match api.create(&PostParams::default(), &object).await {
            Ok(_) => {
                let _ = log
                    .line(
                        "gust",
                        &format!("created SparkApplication {name} in namespace {namespace}"),
                    )
                    .await;
                let _ = log.flush().await;
                return Ok(name);
            }
            Err(kube::Error::Api(status))
                if matches!(status.code, 429 | 500 | 502 | 503 | 504) && attempts < 5 =>
            {
                attempts += 1;
                tokio::time::sleep(wait).await;
                wait *= 2;
            }
            Err(kube::Error::Api(status)) if status.code == 403 => {
                return Err(TryOutcome::Failed(FailureReason::Spawn(format!(
                    "cannot create SparkApplication {name} in namespace {namespace}: forbidden ({}); \
                     grant Gust's service account the right with `gust kubernetes rbac --dags-folder ...`",
                    status.message
                ))));
            }
            Err(err) => {
                return Err(TryOutcome::Failed(FailureReason::Spawn(format!(
                    "cannot create SparkApplication {name} in namespace {namespace}: {}",
                    api_error(&err)
                ))));
            }
        }
    }
}

/// The try's application, found by the labels it was created with.
async fn find(
    api: &Api<DynamicObject>,
    spec: &LaunchSpec,
    args: &SparkArgs,
    log: &mut LogWriter<'_>,
) -> Result<Option<String>, TryOutcome> {
    let mut selector: Vec<String> = spark::application_labels(labels(spec))
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    selector.push(format!("{CHECKED_LABEL}!=True"));
    let found = api
        .list(&ListParams::default().labels(&selector.join(",")))
        .await
        .map_err(|err| {
            TryOutcome::Failed(FailureReason::Lost(format!(
                "cannot list SparkApplications: {err}"
            )))
        })?;
    let Some(app) = found.items.into_iter().next() else {
        return Ok(None);
    };
    let name = app.metadata.name.clone().unwrap_or_default();
    if !args.reattach_on_restart {
        let _ = api.delete(&name, &DeleteParams::background()).await;
        return Err(TryOutcome::Failed(FailureReason::Lost(format!(
            "the scheduler restarted and reattach_on_restart is off; deleted SparkApplication {name}"
        ))));
    }
    let _ = log
        .line(
            "gust",
            &format!("the scheduler restarted; re-attached to SparkApplication {name}"),
        )
        .await;
    Ok(Some(name))
}

struct Follower<'a> {
    shared: &'a Arc<Shared>,
    spec: &'a LaunchSpec,
    handle: &'a TryHandle,
    args: &'a SparkArgs,
    connected: &'a Connected,
    api: Api<DynamicObject>,
    namespace: String,
    name: String,
}

/// The application's state and message, from its status.
fn application_state(app: &DynamicObject) -> (String, Option<String>, Option<String>) {
    let status = &app.data["status"];
    let state = status["applicationState"]["state"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let message = status["applicationState"]["errorMessage"]
        .as_str()
        .filter(|m| !m.is_empty())
        .map(str::to_owned);
    let driver = status["driverInfo"]["podName"]
        .as_str()
        .filter(|p| !p.is_empty())
        .map(str::to_owned);
    (state, message, driver)
}

impl Follower<'_> {
    async fn watch(self, log: &mut LogWriter<'_>) -> TryOutcome {
        let config = watcher::Config::default().fields(&format!("metadata.name={}", self.name));
        let mut changes = watcher(self.api.clone(), config).default_backoff().boxed();
        let pods: Api<Pod> =
            Api::namespaced(self.connected.cluster.client.clone(), &self.namespace);
        let (line_tx, mut line_rx) = mpsc::channel::<LogLine>(LOG_LINES);
        let mut line_tx = Some(line_tx);
        let ended = Arc::new(AtomicBool::new(false));
        let start_deadline =
            Instant::now() + Duration::from_secs(self.args.startup_timeout_seconds);
        let deadline = self.spec.execution_timeout.map(|t| Instant::now() + t);
        let mut last_state = String::new();
        let mut running = false;
        let mut driver: Option<String> = None;
        loop {
            let wake = if running {
                deadline
            } else {
                Some(deadline.map_or(start_deadline, |d| d.min(start_deadline)))
            };
            tokio::select! {
                change = changes.next() => {
                    let app = match change {
                        None => return TryOutcome::Failed(FailureReason::Killed("the runtime is shutting down".into())),
                        Some(Err(err)) => {
                            tracing::warn!(error = %err, application = %self.name, "SparkApplication watch interrupted; resuming");
                            continue;
                        }
                        Some(Ok(watcher::Event::Apply(app) | watcher::Event::InitApply(app))) => app,
                        Some(Ok(watcher::Event::Delete(_))) => {
                            return TryOutcome::Failed(FailureReason::Pod(format!(
                                "SparkApplication {} was deleted before it finished", self.name
                            )));
                        }
                        Some(Ok(watcher::Event::Init | watcher::Event::InitDone)) => continue,
                    };
                    let (state, message, pod) = application_state(&app);
                    if state != last_state && !state.is_empty() {
                        let _ = log.line("gust", &format!("SparkApplication {} is {state}", self.name)).await;
                        let _ = log.flush().await;
                        last_state.clone_from(&state);
                    }
                    if pod.is_some() {
                        driver.clone_from(&pod);
                    }
                    let started = !matches!(state.as_str(), "" | "NEW" | "SUBMITTED" | "SUBMISSION_FAILED");
                    running |= started;
                    if started
                        && self.args.get_logs
                        && let (Some(pod), Some(lines)) = (&driver, line_tx.take())
                    {
                        let ended = Arc::clone(&ended);
                        self.shared.inner.tasks.spawn(logs::follow(
                            pods.clone(),
                            pod.clone(),
                            DRIVER_CONTAINER.to_owned(),
                            lines,
                            move || ended.load(Ordering::Relaxed),
                        ));
                    }
                    match state.as_str() {
                        "COMPLETED" => {
                            ended.store(true, Ordering::Relaxed);
                            drop(line_tx.take());
                            drain(&mut line_rx, log).await;
                            self.leave(log).await;
                            return TryOutcome::Succeeded { xcom: None };
                        }
                        "FAILED" | "SUBMISSION_FAILED" => {
                            ended.store(true, Ordering::Relaxed);
                            drop(line_tx.take());
                            drain(&mut line_rx, log).await;
                            let events = self.report_events(driver.as_deref(), log).await;
                            self.leave(log).await;
                            let mut text = format!(
                                "SparkApplication {} in namespace {} ended {state}: {}",
                                self.name,
                                self.namespace,
                                message.unwrap_or_else(|| "the Spark operator gave no errorMessage".to_owned())
                            );
                            if let Some(events) = events {
                                text.push_str(&format!("; driver pod events: {events}"));
                            }
                            return TryOutcome::Failed(FailureReason::Pod(text));
                        }
                        _ => {}
                    }
                }
                Some(line) = line_rx.recv() => {
                    write_line(log, &line).await;
                    while let Ok(line) = line_rx.try_recv() {
                        write_line(log, &line).await;
                    }
                    let _ = log.flush().await;
                }
                () = sleep_until(wake) => {
                    ended.store(true, Ordering::Relaxed);
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        let limit = self.spec.execution_timeout.unwrap_or_default();
                        let _ = log.line("gust", &format!("execution_timeout of {}s reached: deleting SparkApplication {}", limit.as_secs_f64(), self.name)).await;
                        self.delete_now().await;
                        return TryOutcome::Failed(FailureReason::TimedOut(limit));
                    }
                    self.delete_now().await;
                    let state = if last_state.is_empty() { "no state yet".to_owned() } else { last_state.clone() };
                    return TryOutcome::Failed(FailureReason::Pod(format!(
                        "SparkApplication {} did not start running within startup_timeout_seconds ({}s): {state}; deleted it",
                        self.name, self.args.startup_timeout_seconds
                    )));
                }
                () = self.handle.cancel.cancelled() => {
                    ended.store(true, Ordering::Relaxed);
                    return match self.handle.kill_reason() {
                        Some(reason) => {
                            let _ = log.line("gust", &format!("killing the try: {reason}; deleting SparkApplication {}", self.name)).await;
                            self.delete_now().await;
                            TryOutcome::Failed(FailureReason::Killed(reason))
                        }
                        None => TryOutcome::Failed(FailureReason::Killed(
                            "the runtime is shutting down; the SparkApplication is left to be re-attached".into(),
                        )),
                    };
                }
            }
        }
    }

    async fn delete_now(&self) {
        let _ = self
            .api
            .delete(&self.name, &DeleteParams::background())
            .await;
    }

    /// Leaves the application to be deleted once the scheduler has recorded the outcome (so a
    /// restarted scheduler can still read how it ended), or says it is kept.
    async fn leave(&self, log: &mut LogWriter<'_>) {
        if !self.args.delete_on_termination {
            // Marked, as kept pods are, so that no later try re-attaches to it and no sweep
            // deletes it.
            let patch = serde_json::json!({"metadata": {"labels": {CHECKED_LABEL: "True"}}});
            let line = match self
                .api
                .patch(&self.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => format!(
                    "keeping SparkApplication {} (delete_on_termination is off)",
                    self.name
                ),
                Err(err) => format!("could not mark kept SparkApplication {}: {err}", self.name),
            };
            let _ = log.line("gust", &line).await;
            return;
        }
        let api = self.api.clone();
        let name = self.name.clone();
        let log_path = self.spec.log_path.clone();
        let inner = Arc::clone(&self.shared.inner);
        let cleanup = async move {
            let line = match api.delete(&name, &DeleteParams::background()).await {
                Ok(_) => format!("deleted SparkApplication {name}"),
                Err(kube::Error::Api(status)) if status.code == 404 => {
                    format!("SparkApplication {name} is already gone")
                }
                Err(err) => format!("could not delete SparkApplication {name}: {err}"),
            };
            if let Ok(mut log) = LogWriter::open(&log_path, inner.clock.as_ref()).await {
                let _ = log.line("gust", &line).await;
                let _ = log.flush().await;
            }
        };
        self.shared
            .cleanups()
            .insert(self.spec.key.clone(), Box::pin(cleanup));
    }

    /// The driver pod's events, written to the log when `log_events_on_failure`; their summary.
    async fn report_events(&self, driver: Option<&str>, log: &mut LogWriter<'_>) -> Option<String> {
        if !self.args.log_events_on_failure {
            return None;
        }
        let driver = driver?;
        let events: Api<Event> =
            Api::namespaced(self.connected.cluster.client.clone(), &self.namespace);
        let params = ListParams::default().fields(&format!("involvedObject.name={driver}"));
        let list = events.list(&params).await.ok()?;
        let mut summary = Vec::new();
        for event in list.items {
            let reason = event.reason.unwrap_or_default();
            let message = event.message.unwrap_or_default();
            let _ = log
                .line("gust", &format!("driver pod event: {reason}: {message}"))
                .await;
            summary.push(format!("{reason}: {message}"));
        }
        (!summary.is_empty()).then(|| summary.join("; "))
    }
}

/// Writes the lines still coming from the driver's log, for at most [`LOG_DRAIN`].
async fn drain(lines: &mut mpsc::Receiver<LogLine>, log: &mut LogWriter<'_>) {
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

async fn write_line(log: &mut LogWriter<'_>, line: &LogLine) {
    let at = chrono::DateTime::from_timestamp(
        line.at.as_second(),
        u32::try_from(line.at.subsec_nanosecond()).unwrap_or(0),
    )
    .unwrap_or_default();
    let _ = log.line_at(at, "stdout", &line.text).await;
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
