//! The cluster pod runtime: [`KubeExecutor`] runs each `kubernetes_pod` try as a pod and
//! follows it with the namespace's watch (`watch.rs`), one tokio task per try and no thread
//! (`follow.rs`), its logs streamed (`logs.rs`) and its XCom read by exec (`exec.rs`).

mod cluster;
mod exec;
mod follow;
mod logs;
mod watch;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};

use gust_core::clock::Clock;
use gust_executor::{
    Executor, FailureReason, LaunchError, LaunchSpec, TryEvent, TryEventKind, TryKey, TryOutcome,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use cluster::{Cluster, ClusterChoice, Clusters, ConnectionSettings, NoCluster};
pub use follow::managed_selector;
pub use logs::{LogLine, parse_line};

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
    pub connections: HashMap<String, ConnectionSettings>,
}

/// Runs `kubernetes_pod` tries as pods on a cluster.
#[derive(Clone)]
pub struct KubeExecutor {
    inner: Arc<Inner>,
}

/// Reports that a try's pod exists (the try is running).
type Started = Box<dyn Fn(&TryKey) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

struct Inner {
    config: KubeConfig,
    clusters: Clusters,
    watches: watch::Watches,
    clock: Arc<dyn Clock>,
    events: mpsc::Sender<TryEvent>,
    started: Started,
    running: Mutex<HashMap<TryKey, Running>>,
    tasks: TaskTracker,
    shutdown: CancellationToken,
}

/// A try being followed: how to stop it, and why.
#[derive(Clone, Default)]
struct Running {
    cancel: CancellationToken,
    /// Set by a kill request; unset when the runtime shuts down.
    reason: Arc<OnceLock<String>>,
}

impl KubeExecutor {
    /// A runtime reporting on `events`.
    #[must_use]
    pub fn new(config: KubeConfig, events: mpsc::Sender<TryEvent>, clock: Arc<dyn Clock>) -> Self {
        let tasks = TaskTracker::new();
        let shutdown = CancellationToken::new();
        let started_events = events.clone();
        let started: Started = Box::new(move |key: &TryKey| {
            let events = started_events.clone();
            let key = key.clone();
            Box::pin(async move {
                let _ = events
                    .send(TryEvent {
                        key,
                        kind: TryEventKind::Started,
                    })
                    .await;
            })
        });
        Self {
            inner: Arc::new(Inner {
                config,
                clusters: Clusters::default(),
                watches: watch::Watches::new(shutdown.clone(), tasks.clone()),
                clock,
                events,
                started,
                running: Mutex::new(HashMap::new()),
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

    fn running_map(&self) -> std::sync::MutexGuard<'_, HashMap<TryKey, Running>> {
        // Single inserts and removes only: a poisoned map is still whole.
        self.inner
            .running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn spawn(&self, spec: LaunchSpec, start: follow::Start) -> Result<(), LaunchError> {
        if self.inner.shutdown.is_cancelled() {
            return Err(LaunchError::ShuttingDown);
        }
        let handle = Running {
            cancel: self.inner.shutdown.child_token(),
            reason: Arc::default(),
        };
        {
            let mut running = self.running_map();
            if running.contains_key(&spec.key) {
                return Err(LaunchError::AlreadyRunning(spec.key));
            }
            running.insert(spec.key.clone(), handle.clone());
        }
        let this = self.clone();
        self.inner.tasks.spawn(async move {
            let key = spec.key.clone();
            let outcome = follow::run(Arc::clone(&this.inner), spec, handle, start).await;
            this.running_map().remove(&key);
            let _ = this
                .inner
                .events
                .send(TryEvent {
                    key,
                    kind: TryEventKind::Finished(outcome),
                })
                .await;
        });
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
        if let Some(handle) = self.running_map().get(key) {
            let _ = handle.reason.set(reason.to_owned());
            handle.cancel.cancel();
        }
    }

    fn running(&self) -> usize {
        self.running_map().len()
    }

    fn adopt(&self, spec: LaunchSpec) {
        let key = spec.key.clone();
        if let Err(err) = self.spawn(spec, follow::Start::Adopt) {
            let events = self.inner.events.clone();
            self.inner.tasks.spawn(async move {
                let _ = events
                    .send(TryEvent {
                        key,
                        kind: TryEventKind::Finished(TryOutcome::Failed(FailureReason::Lost(
                            err.to_string(),
                        ))),
                    })
                    .await;
            });
        }
    }

    fn release(&self, _key: &TryKey) {
        // Pods are deleted (or marked checked) as each try ends; nothing else is kept.
    }
}
