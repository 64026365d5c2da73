//! The runtimes tries run on, wired from the configuration: local processes for bash tasks,
//! and for `kubernetes_pod` tasks either a cluster (`[kubernetes] runtime = "cluster"`, the
//! default) or the local pod runtime. `processing` tries are staged by the processing runtime
//! (`[artifacts]`) and then run as pods on whichever pod runtime that is.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use gust_core::clock::Clock;
use gust_exec_local::python_pod::{PythonPods, WorkerSettings};
use gust_exec_local::{LocalConfig, LocalExecutor, Secrets};
use gust_executor::{Current, Executor, Routed, TryEvent};
use gust_kube::build::PodDefaults;
use gust_kube::runtime::JobExecutor;
use gust_kube::runtime::{ClusterChoice, ConnectionSettings, KubeConfig, KubeExecutor};
use gust_kube::runtime::{ResourceExecutor, SPARK_OPERATOR, SparkExecutor};
use gust_processing::{GustBinary, PodRuntimeKind, ProcessingExecutor, StepSettings};
use gust_sensors::SensorExecutor;
use gust_store::Connection;
use tokio::sync::mpsc;

use crate::config::{Config, PodRuntime};
use crate::connections_watch::ConnectionsReader;

/// The runtimes of one process, and how to stop them.
pub struct Runtimes {
    /// What the scheduler starts tries on.
    pub executor: Arc<dyn Executor>,
    local: LocalExecutor,
    kube: Option<KubeExecutor>,
    processing: ProcessingExecutor,
    users: ConnectionUsers,
    /// The pod runtime of Python tries run as pods (`[kubernetes] worker_image`).
    worker_pods: Option<WorkerPodRuntime>,
    /// Native sensors' pokes.
    sensors: SensorExecutor,
}

/// The pod runtime [`PythonPods`] wraps, to stop with the others.
enum WorkerPodRuntime {
    Local(LocalExecutor),
    Cluster(KubeExecutor),
}

/// The runtimes' settings that come from connections and follow them while Gust runs: the
/// local pod runtime's Secrets, the cluster runtime's `kubernetes_conn_id`s and the processing
/// runtime's `[artifacts] conn_id` credentials. Each try reads them when it starts.
#[derive(Clone)]
pub struct ConnectionUsers {
    secrets: Option<Current<Secrets>>,
    kubernetes: Option<Current<HashMap<String, ConnectionSettings>>>,
    processing: ProcessingStore,
}

impl ConnectionUsers {
    /// Puts `connections` in force for the tries that start from now on.
    pub fn update(&self, connections: &[Connection]) {
        let secrets = local_secrets(connections);
        self.processing.update(&secrets);
        if let Some(current) = &self.secrets {
            current.set(secrets);
        }
        if let Some(kubernetes) = &self.kubernetes {
            kubernetes.set(kubernetes_connections(connections));
        }
    }
}

/// The processing runtime's store credentials, from the `[artifacts] conn_id` connection.
#[derive(Clone)]
struct ProcessingStore {
    executor: ProcessingExecutor,
    kind: PodRuntimeKind,
    config: Arc<Config>,
    /// The connection's fields in force (`None`: it does not exist); they hold secrets.
    fields: Arc<Mutex<Option<BTreeMap<String, String>>>>,
}

impl ProcessingStore {
    /// Opens the store anew only when the connection changed: its clients are kept otherwise.
    fn update(&self, secrets: &Secrets) {
        let fields = secrets.get(&self.config.artifacts.conn_id).cloned();
        let mut current = self.fields.lock().unwrap_or_else(PoisonError::into_inner);
        if *current != fields {
            let (artifacts, settings) = processing_store(&self.config, fields.clone(), self.kind);
            self.executor.set_store(artifacts, settings);
            *current = fields;
        }
    }
}

impl Runtimes {
    /// Runtimes reporting on `events`; `state_dir` keeps local tries' records (none for
    /// one-off runs); `local_pods` forces the local pod runtime; `python` runs Python tasks
    /// (`[python] interpreter`, see [`crate::python_tasks`]); `store` is what native
    /// `ExternalTaskSensor`s read (none: they fail, saying so).
    #[must_use]
    #[allow(clippy::too_many_arguments, reason = "each is one part of the wiring")]
    pub fn new(
        config: &Config,
        state_dir: Option<PathBuf>,
        local_pods: bool,
        connections: &[Connection],
        events: mpsc::Sender<TryEvent>,
        clock: Arc<dyn Clock>,
        python: Option<gust_exec_local::PythonRuntime>,
        store: Option<gust_store::Store>,
    ) -> Self {
        let sensors = SensorExecutor::new(events.clone(), clock.clone(), store);
        let run_pods = local_pods || config.kubernetes.runtime == PodRuntime::Local;
        let worker_python = python
            .clone()
            .filter(|_| config.kubernetes.worker_image.is_some());
        let secrets = Current::new(if run_pods {
            local_secrets(connections)
        } else {
            Secrets::default()
        });
        let local_config = LocalConfig {
            parallelism: config.core.parallelism,
            state_dir,
            run_pods,
            secrets: secrets.clone(),
            python,
            ..LocalConfig::default()
        };
        let local = LocalExecutor::new(local_config.clone(), events.clone(), clock.clone());
        if run_pods {
            let pods: Arc<dyn Executor> = Arc::new(local.clone());
            let processing = processing(
                config,
                connections,
                if local.sandboxed() {
                    PodRuntimeKind::Local
                } else {
                    PodRuntimeKind::LocalUnsandboxed
                },
                pods,
                events.clone(),
                clock.clone(),
            );
            let mut executor = sensors.route(
                Routed::new(Arc::new(local.clone()))
                    .route("processing", Arc::new(processing.executor.clone())),
            );
            for operator in CLUSTER_ONLY {
                executor = executor.route(
                    operator,
                    Arc::new(Refusing {
                        events: events.clone(),
                        why: Arc::new(NEEDS_CLUSTER),
                    }),
                );
            }
            let mut worker_pods = None;
            if let Some(python) = &worker_python {
                let (pod_events, from_pods) = gust_executor::event_channel();
                let pods = LocalExecutor::new(
                    LocalConfig {
                        python: None,
                        ..local_config.clone()
                    },
                    pod_events,
                    clock.clone(),
                );
                // The local pod runtime's workers are processes of this host.
                let url = config.kubernetes.execution_api_url.clone();
                let settings = worker_settings(
                    python,
                    config,
                    url.unwrap_or_else(|| python.api_url.clone()),
                );
                let runtime: Arc<dyn Executor> = match settings {
                    Ok(settings) => Arc::new(PythonPods::new(
                        python,
                        settings,
                        Arc::new(pods.clone()),
                        from_pods,
                        events.clone(),
                    )),
                    Err(why) => refusing(&events, why),
                };
                executor = route_python(executor, &runtime);
                worker_pods = Some(WorkerPodRuntime::Local(pods));
            }
            return Self {
                executor: Arc::new(executor),
                local,
                worker_pods,
                sensors,
                kube: None,
                processing: processing.executor.clone(),
                users: ConnectionUsers {
                    secrets: Some(secrets),
                    kubernetes: None,
                    processing,
                },
            };
        }
        let kube_config = kube_config(config, kubernetes_connections(connections));
        let kubernetes = kube_config.connections.clone();
        let kube = KubeExecutor::new(kube_config.clone(), events.clone(), clock.clone());
        // The Kubernetes sensors read objects on the same clusters, through the same clients.
        sensors.use_kubernetes(kube.objects());
        let pods: Arc<dyn Executor> = Arc::new(kube.clone());
        let manifest_runtimes = ResourceExecutor::routes(&kube, &events);
        let spark: Arc<dyn Executor> = Arc::new(SparkExecutor::new(&kube, &events));
        let job_runtimes = JobExecutor::routes(&kube, &events);
        let (events_for_pods, clock_for_pods) = (events.clone(), clock.clone());
        let processing = processing(
            config,
            connections,
            PodRuntimeKind::Cluster,
            pods.clone(),
            events,
            clock,
        );
        let mut executor = sensors.route(
            Routed::new(Arc::new(local.clone()))
                .route("kubernetes_pod", pods)
                .route("processing", Arc::new(processing.executor.clone())),
        );
        for (operator, runtime) in manifest_runtimes {
            executor = executor.route(operator, runtime);
        }
        executor = executor.route(SPARK_OPERATOR, spark);
        // kubernetes_job, kueue_job, kubernetes_delete_job and kubernetes_patch_job.
        for (operator, runtime) in job_runtimes {
            executor = executor.route(operator, runtime);
        }
        let mut worker_pods = None;
        if let Some(python) = &worker_python {
            let runtime: Arc<dyn Executor> = match &config.kubernetes.execution_api_url {
                Some(url) => match worker_settings(python, config, url.clone()) {
                    Ok(settings) => {
                        let (pod_events, from_pods) = gust_executor::event_channel();
                        // Its own runtime (sharing the connections) whose outcomes PythonPods
                        // reads.
                        let pods =
                            KubeExecutor::new(kube_config, pod_events, clock_for_pods.clone());
                        let runtime = Arc::new(PythonPods::new(
                            python,
                            settings,
                            Arc::new(pods.clone()),
                            from_pods,
                            events_for_pods.clone(),
                        ));
                        worker_pods = Some(WorkerPodRuntime::Cluster(pods));
                        runtime
                    }
                    Err(why) => refusing(&events_for_pods, why),
                },
                None => Arc::new(Refusing {
                    events: events_for_pods.clone(),
                    why: Arc::new(NO_EXECUTION_API_URL),
                }),
            };
            executor = route_python(executor, &runtime);
        }
        Self {
            executor: Arc::new(executor),
            local,
            worker_pods,
            sensors,
            kube: Some(kube),
            processing: processing.executor.clone(),
            users: ConnectionUsers {
                secrets: None,
                kubernetes: Some(kubernetes),
                processing,
            },
        }
    }

    /// What follows the connections as they change (see [`crate::connections_watch`]).
    #[must_use]
    pub fn connection_users(&self) -> ConnectionUsers {
        self.users.clone()
    }

    /// Stops every runtime: local tries are killed; pods are left to be re-attached.
    pub async fn shutdown(&self) {
        // Tries still staging are stopped first: none is handed to a pod runtime shutting down.
        self.processing.shutdown().await;
        self.local.shutdown().await;
        self.sensors.shutdown().await;
        if let Some(kube) = &self.kube {
            kube.shutdown().await;
        }
        match &self.worker_pods {
            Some(WorkerPodRuntime::Local(pods)) => pods.shutdown().await,
            Some(WorkerPodRuntime::Cluster(pods)) => pods.shutdown().await,
            None => {}
        }
    }
}

/// The operators that act on a cluster's API (Jobs, Spark applications, manifests): the local
/// pod runtime runs containers, not an API server, so it has nothing to run them on.
const CLUSTER_ONLY: [&str; 8] = [
    "kubernetes_job",
    "kueue_job",
    "kubernetes_delete_job",
    "kubernetes_patch_job",
    "spark_kubernetes",
    "kubernetes_apply",
    "kubernetes_delete_resource",
    "kueue_install",
];

/// Why a Python try cannot run as a pod on a cluster without `[kubernetes] execution_api_url`.
const NO_EXECUTION_API_URL: fn(&str) -> String = |_| {
    "Python tasks run as pods ([kubernetes] worker_image) on a cluster need [kubernetes] \
     execution_api_url, the address pods reach this scheduler's Execution API at (e.g. \
     http://10.0.3.17:8794/execution/; docs/python.md)"
        .to_owned()
};

/// Why a [`CLUSTER_ONLY`] try cannot run under the local pod runtime.
const NEEDS_CLUSTER: fn(&str) -> String = |operator| {
    format!(
        "{operator} tasks act on a Kubernetes cluster's API, which the local pod runtime has not; set [kubernetes] runtime = \"cluster\" with a cluster configured (docs/kubernetes.md)"
    )
};

/// Where tries go that the configuration cannot run: each is refused with what to configure
/// instead (`why`, given the operator).
struct Refusing {
    events: mpsc::Sender<TryEvent>,
    why: Arc<dyn Fn(&str) -> String + Send + Sync>,
}

impl Executor for Refusing {
    fn start(&self, spec: gust_executor::LaunchSpec) -> Result<(), gust_executor::LaunchError> {
        Err(gust_executor::LaunchError::Unconfigured((self.why)(
            &spec.operator,
        )))
    }

    fn kill(&self, _key: &gust_executor::TryKey, _reason: &str) {}

    fn running(&self) -> usize {
        0
    }

    fn adopt(&self, spec: gust_executor::LaunchSpec) {
        // A try a runtime ran before the configuration changed: nothing here can follow it.
        let event = TryEvent {
            kind: gust_executor::TryEventKind::Finished(gust_executor::TryOutcome::Failed(
                gust_executor::FailureReason::Lost((self.why)(&spec.operator)),
            )),
            key: spec.key,
        };
        let events = self.events.clone();
        tokio::spawn(async move {
            let _ = events.send(event).await;
        });
    }

    fn release(&self, _key: &gust_executor::TryKey) {}
}

/// Sends every Python operator's tries to `runtime`.
fn route_python(mut executor: Routed, runtime: &Arc<dyn Executor>) -> Routed {
    for spec in gust_operators::python::TASK_SDK_SPECS {
        executor = executor.route(spec.name, runtime.clone());
    }
    executor
}

/// How Python tries run as pods, their workers reaching the Execution API at `api_url`.
/// Fails when `[kubernetes] worker_pod_template_file` cannot be read (checked already when the
/// Execution API started, so only when it changed since).
fn worker_settings(
    python: &gust_exec_local::PythonRuntime,
    config: &Config,
    api_url: String,
) -> Result<WorkerSettings, String> {
    Ok(WorkerSettings {
        image: config.kubernetes.worker_image.clone().unwrap_or_default(),
        api_url,
        heartbeat_timeout: python.heartbeat_timeout,
        pod_template: crate::python_tasks::worker_pod_template(config)
            .map_err(|err| format!("{err:#}"))?,
    })
}

/// Python tries refused for `why`: worker pods cannot be built.
fn refusing(events: &mpsc::Sender<TryEvent>, why: String) -> Arc<dyn Executor> {
    Arc::new(Refusing {
        events: events.clone(),
        why: Arc::new(move |_: &str| why.clone()),
    })
}

/// The processing runtime over `pods`, from `[artifacts]`: the store's credentials are the
/// `conn_id` connection's fields when it exists, else the `GUST_ARTIFACTS_*` variables (and the
/// standard environment's credentials).
fn processing(
    config: &Config,
    connections: &[Connection],
    kind: PodRuntimeKind,
    pods: Arc<dyn Executor>,
    events: mpsc::Sender<TryEvent>,
    clock: Arc<dyn Clock>,
) -> ProcessingStore {
    let fields = local_secrets(connections).remove(&config.artifacts.conn_id);
    let (artifacts, settings) = processing_store(config, fields.clone(), kind);
    ProcessingStore {
        executor: ProcessingExecutor::new(pods, kind, artifacts, settings, events, clock),
        kind,
        config: Arc::new(config.clone()),
        fields: Arc::new(Mutex::new(fields)),
    }
}

/// The processing runtime's store and step settings, given the `[artifacts] conn_id`
/// connection's `fields` (`None`: it does not exist).
fn processing_store(
    config: &Config,
    fields: Option<BTreeMap<String, String>>,
    kind: PodRuntimeKind,
) -> (gust_artifacts::Artifacts, StepSettings) {
    let settings = step_settings(config, kind, fields.is_some());
    let credentials = fields.map_or_else(
        gust_artifacts::StoreCredentials::from_env,
        gust_artifacts::StoreCredentials::from_fields,
    );
    (gust_artifacts::Artifacts::new(credentials), settings)
}

/// What processing pods are planned with on a pod runtime of `kind`. Pods on a cluster run the
/// image's `gust` and read the `pod_secret` Secret; the local pod runtime runs this binary and
/// serves the `conn_id` connection, when it exists (`has_connection`), as the Secret of that
/// name.
#[must_use]
pub fn step_settings(config: &Config, kind: PodRuntimeKind, has_connection: bool) -> StepSettings {
    let a = &config.artifacts;
    let (gust, credentials_secret) = match kind {
        PodRuntimeKind::Cluster => (GustBinary::InImage, a.pod_secret.clone()),
        PodRuntimeKind::Local | PodRuntimeKind::LocalUnsandboxed => (
            std::env::current_exe().map_or(GustBinary::InImage, GustBinary::Host),
            has_connection.then(|| a.conn_id.clone()),
        ),
    };
    StepSettings {
        root: a.root.clone(),
        gust_image: a.gust_image.clone(),
        gust,
        credentials_secret,
    }
}

fn kube_config(config: &Config, connections: HashMap<String, ConnectionSettings>) -> KubeConfig {
    let k = &config.kubernetes;
    KubeConfig {
        cluster: ClusterChoice {
            in_cluster: k.in_cluster,
            config_file: k.config_file.clone(),
            context: k.cluster_context.clone(),
        },
        pod_defaults: PodDefaults {
            namespace: k.namespace.clone(),
            xcom_sidecar_image: k.xcom_sidecar_image.clone(),
            ..PodDefaults::default()
        },
        connections: Current::new(connections),
        kueue_manifests_folder: k.kueue_manifests_folder.clone(),
    }
}

/// The connections in the metadata database, secrets decrypted, when there is one (a one-off
/// run works without it). Problems are warnings: tasks that need a connection then say so.
pub async fn connections(config: &Config, home: &Path) -> Vec<Connection> {
    let url = &config.database.url;
    if url
        .strip_prefix("sqlite://")
        .is_some_and(|path| !Path::new(path).exists())
    {
        return Vec::new();
    }
    let Ok(store) = gust_store::Store::connect(url).await else {
        return Vec::new();
    };
    let mut found = Vec::new();
    if store.check().await.is_ok() {
        let mut reader = ConnectionsReader::new(store.clone(), config, home.to_owned());
        match reader.read().await {
            Ok(connections) => found = connections,
            Err(err) => eprintln!("warning: connections are not used: {err:#}"),
        }
    }
    store.close().await;
    found
}

/// The `kubernetes` connections, for `kubernetes_conn_id`. One whose extras cannot be read is
/// reported and left out (its tasks then use `[kubernetes]`).
#[must_use]
pub fn kubernetes_connections(connections: &[Connection]) -> HashMap<String, ConnectionSettings> {
    let mut found = HashMap::new();
    for conn in connections.iter().filter(|c| c.conn_type == "kubernetes") {
        let extra = conn.extra.as_ref().map(|e| e.expose().to_owned());
        match ConnectionSettings::from_extra(extra.as_deref()) {
            Ok(settings) => {
                found.insert(conn.conn_id.clone(), settings);
            }
            Err(why) => eprintln!(
                "warning: connection \"{}\" is not used: {why}",
                conn.conn_id
            ),
        }
    }
    found
}

/// Connections as the Kubernetes Secrets the local pod runtime provides: each a Secret named by
/// its id, whose keys are its fields (`login`, `password`, `host`, `port`, `schema`) and the
/// keys of its extra.
#[must_use]
pub fn local_secrets(connections: &[Connection]) -> Secrets {
    connections
        .iter()
        .map(|conn| {
            let mut keys = std::collections::BTreeMap::new();
            let fields = [
                ("login", conn.login.clone()),
                (
                    "password",
                    conn.password.as_ref().map(|p| p.expose().to_owned()),
                ),
                ("host", conn.host.clone()),
                ("port", conn.port.map(|p| p.to_string())),
                ("schema", conn.schema.clone()),
            ];
            for (name, value) in fields {
                if let Some(value) = value {
                    keys.insert(name.to_owned(), value);
                }
            }
            let extra = conn
                .extra
                .as_ref()
                .and_then(|e| {
                    serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(e.expose())
                        .ok()
                })
                .unwrap_or_default();
            for (key, value) in extra {
                let text = match value {
                    serde_json::Value::String(text) => text,
                    serde_json::Value::Null => continue,
                    other => other.to_string(),
                };
                keys.insert(key, text);
            }
            (conn.conn_id.clone(), keys)
        })
        .collect()
}
