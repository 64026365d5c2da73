//! The cluster pod runtime: [`KubeExecutor`] runs each `kubernetes_pod` try as a pod and
//! follows it with the namespace's watch (`watch.rs`), one tokio task per try and no thread
//! (`follow.rs`), its logs streamed (`logs.rs`) and its XCom read by exec (`exec.rs`). Beside
//! it, sharing its clusters: [`ResourceExecutor`] applies and deletes manifests
//! (`resource.rs`) and [`SparkExecutor`] follows SparkApplications (`spark.rs`).

mod api_error;
mod cleanup;
mod cluster;
mod exec;
mod follow;
mod job;
mod logs;
mod object;
mod resource;
mod spark;
mod sweep;
mod watch;
mod worker_secret;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use gust_core::clock::Clock;
use gust_executor::running::RunningTries;
use gust_executor::{
    Executor, FailureReason, LaunchError, LaunchSpec, TryEvent, TryKey, TryOutcome,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use cluster::{Cluster, ClusterChoice, Clusters, ConnectionSettings, NoCluster};
pub use follow::managed_selector;
pub use job::{JOB_OPERATORS, JobExecutor, JobState, job_state};
pub use logs::{LogLine, parse_line};
pub use object::{Found, ObjectReader, ReadError};
pub use resource::{FIELD_MANAGER, RESOURCE_OPERATORS, ResourceExecutor, manifests};
pub use spark::{SPARK_OPERATOR, SparkExecutor};

use crate::build::PodDefaults;

/// How the cluster runtime behaves.
#[derive(Debug, Clone, Default)]
pub struct KubeConfig {
    /// The cluster when a task names none (`[kubernetes]` in_cluster, config_file, context).
    pub cluster: ClusterChoice,
    /// What every pod gets: the default namespace, the XCom sidecar's image.
    pub pod_defaults: PodDefaults,
    /// The `kubernetes` connections tasks name with `kubernetes_conn_id`; a task naming one
    /// that is not here (such as the default `kubernetes_default`) uses the settings above.
    /// The binary replaces them as connections change: a try resolves its connection when it
    /// starts and keeps that cluster; clients are cached by the settings (`Clusters`), so a
    /// changed connection gets a new client and an unchanged one keeps its client and watches.
    pub connections: gust_executor::Current<HashMap<String, ConnectionSettings>>,
    /// Where `kueue_install` finds release manifests, `kueue-<version>.yaml` (`[kubernetes]
    /// kueue_manifests_folder`); `None` until configured.
    pub kueue_manifests_folder: Option<std::path::PathBuf>,
}

impl KubeConfig {
    /// The settings of connection `conn_id` in force now, if it exists.
    #[must_use]
    pub fn connection(&self, conn_id: &str) -> Option<ConnectionSettings> {
        self.connections.get().get(conn_id).cloned()
    }
}

/// Runs `kubernetes_pod` tries as pods on a cluster.
#[derive(Clone)]
pub struct KubeExecutor {
    inner: Arc<Inner>,
}

struct Inner {
    config: KubeConfig,
    clusters: Clusters,
    watches: watch::Watches,
    clock: Arc<dyn Clock>,
    running: Arc<RunningTries>,
    /// Finished tries' pods, cleaned up once their outcome is recorded.
    leftovers: Mutex<HashMap<TryKey, cleanup::Leftover>>,
    /// Pod creates in flight at once, over every cluster: a burst of thousands of ready tries
    /// would otherwise open thousands of connections to the API server together (as client-go
    /// bounds its clients' requests).
    creates: tokio::sync::Semaphore,
    tasks: TaskTracker,
    shutdown: CancellationToken,
}

/// How many pod creates may be in flight at once ([`Inner::creates`]).
const CREATES_IN_FLIGHT: usize = 64;

impl Inner {
    fn leftovers(&self) -> MutexGuard<'_, HashMap<TryKey, cleanup::Leftover>> {
        // Single inserts and removes only: a poisoned map is still whole.
        self.leftovers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl KubeExecutor {
    /// A runtime reporting on `events`.
    #[must_use]
    pub fn new(config: KubeConfig, events: mpsc::Sender<TryEvent>, clock: Arc<dyn Clock>) -> Self {
        let tasks = TaskTracker::new();
        let shutdown = CancellationToken::new();
        Self {
            inner: Arc::new(Inner {
                config,
                clusters: Clusters::default(),
                watches: watch::Watches::new(shutdown.clone(), tasks.clone()),
                clock,
                running: Arc::new(RunningTries::new(shutdown.clone(), tasks.clone(), events)),
                leftovers: Mutex::new(HashMap::new()),
                creates: tokio::sync::Semaphore::new(CREATES_IN_FLIGHT),
                tasks,
                shutdown,
            }),
        }
    }

    /// Uses `cluster` for tries whose cluster choice is `choice` (tests and embedders).
    pub async fn use_cluster(&self, choice: ClusterChoice, cluster: Cluster) {
        self.inner.clusters.insert(choice, cluster).await;
    }

    /// Stops following every pod (they keep running, to be re-attached) and waits.
    pub async fn shutdown(&self) {
        self.inner.shutdown.cancel();
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
    }

    fn spawn(&self, spec: LaunchSpec, start: follow::Start) -> Result<(), LaunchError> {
        let handle = self.inner.running.register(&spec.key)?;
        let inner = Arc::clone(&self.inner);
        let key = spec.key.clone();
        self.inner
            .running
            .spawn(key, follow::run(inner, spec, handle, start));
        Ok(())
    }
}

impl Executor for KubeExecutor {
    fn start(&self, spec: LaunchSpec) -> Result<(), LaunchError> {
        if spec.operator != "kubernetes_pod" {
            return Err(LaunchError::UnknownOperator(spec.operator));
        }
        self.spawn(spec, follow::Start::Create)
    }

    fn kill(&self, key: &TryKey, reason: &str) {
        self.inner.running.kill(key, reason);
    }

    fn running(&self) -> usize {
        self.inner.running.len()
    }

    fn adopt(&self, spec: LaunchSpec) {
        let key = spec.key.clone();
        if let Err(err) = self.spawn(spec, follow::Start::Adopt) {
            self.inner.running.spawn(key, async move {
                TryOutcome::Failed(FailureReason::Lost(err.to_string()))
            });
        }
    }

    fn sweep(&self, scope: gust_executor::SweepScope) {
        let inner = Arc::clone(&self.inner);
        self.inner.tasks.spawn(sweep::sweep(inner, scope));
    }

    fn release(&self, key: &TryKey) {
        let Some(leftover) = self.inner.leftovers().remove(key) else {
            return;
        };
        let inner = Arc::clone(&self.inner);
        self.inner
            .tasks
            .spawn(async move { cleanup::clean(leftover, inner.clock.as_ref()).await });
    }
}
