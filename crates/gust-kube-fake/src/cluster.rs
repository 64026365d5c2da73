//! [`FakeCluster`]: the handle a test holds, owning the server task and the shared state.
//!
//! The state (`ClusterState`) is what the HTTP handlers and the kubelet's pod tasks share: the
//! store, container logs, the kubelet, injected faults and the cancellation tokens that end
//! streams. Dropping the handle cancels everything it started.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::http::{Method, StatusCode};
use k8s_openapi::api::core::v1::{Event, Pod};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::kubelet::{Kubelet, PodCommand};
use crate::lock;
use crate::logs::Logs;
use crate::resources::{ObjectKey, Resources};
use crate::script::PodScript;
use crate::server;
use crate::spark::SparkScript;
use crate::store::{PodKey, Store};

/// The longest [`FakeCluster::shutdown`] waits for open connections and pod tasks.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// The grace period of a deletion that names none and a pod that sets none.
pub(crate) const DEFAULT_GRACE_SECONDS: i64 = 30;

/// A fake Kubernetes API server with a scripted kubelet, serving on a local port.
#[derive(Debug)]
pub struct FakeCluster {
    state: Arc<ClusterState>,
    address: SocketAddr,
    server: Option<JoinHandle<()>>,
}

impl FakeCluster {
    /// Starts a cluster on `127.0.0.1` and an ephemeral port.
    ///
    /// # Panics
    /// If no local port can be bound; use [`FakeCluster::try_start`] to handle that.
    pub async fn start() -> Self {
        match Self::try_start().await {
            Ok(cluster) => cluster,
            Err(error) => panic!("the fake cluster could not bind a local port: {error}"),
        }
    }

    /// Starts a cluster on `127.0.0.1` and an ephemeral port, or says why it could not.
    pub async fn try_start() -> std::io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let address = listener.local_addr()?;
        let state = Arc::new(ClusterState::new());
        let router = server::router(Arc::clone(&state));
        let shutdown = state.shutdown.clone();
        let server = tokio::spawn(async move {
            let serving =
                axum::serve(listener, router).with_graceful_shutdown(shutdown.cancelled_owned());
            if let Err(error) = serving.await {
                tracing::warn!(%error, "the fake cluster's server stopped");
            }
        });
        Ok(FakeCluster {
            state,
            address,
            server: Some(server),
        })
    }

    /// The server's base URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// A kubeconfig whose current context reaches this cluster without auth, namespace `default`.
    pub fn kubeconfig_yaml(&self) -> String {
        format!(
            "apiVersion: v1
kind: Config
clusters:
- name: gust-fake
  cluster:
    server: {url}
contexts:
- name: gust-fake
  context:
    cluster: gust-fake
    user: gust-fake
    namespace: default
current-context: gust-fake
users:
- name: gust-fake
  user: {{}}
preferences: {{}}
",
            url = self.url()
        )
    }

    /// Makes every container created from now on with `image` follow `script`.
    pub fn script(&self, image: &str, script: PodScript) {
        self.state.kubelet.script(image, script);
    }

    /// Makes every SparkApplication created from now on whose name is `name_or_image` (or
    /// starts with it and `-`), or whose image is `name_or_image`, follow `script`.
    pub fn script_spark(&self, name_or_image: &str, script: SparkScript) {
        lock(&self.state.spark_scripts).push((name_or_image.to_owned(), script));
    }

    /// The object of a kind other than Pod (`group` `""` for core, `plural` as in its path,
    /// `namespace` `""` for cluster-wide kinds), as stored.
    pub fn object(
        &self,
        group: &str,
        plural: &str,
        namespace: &str,
        name: &str,
    ) -> Option<serde_json::Value> {
        let key = ObjectKey {
            group: group.to_owned(),
            plural: plural.to_owned(),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        };
        self.state
            .resources()
            .get(&key)
            .map(|object| serde_json::Value::clone(&object))
    }

    /// Every stored object of a kind other than Pod, ordered by namespace then name.
    pub fn objects(&self, group: &str, plural: &str) -> Vec<serde_json::Value> {
        self.state
            .resources()
            .list(group, plural, None)
            .into_iter()
            .map(|(_, object)| serde_json::Value::clone(&object))
            .collect()
    }

    /// Every pod, ordered by namespace then name.
    pub fn pods(&self) -> Vec<Pod> {
        let store = self.state.store();
        store.pods().map(|(_, pod)| Pod::clone(pod)).collect()
    }

    /// The pod `namespace/name`, if it exists.
    pub fn pod(&self, namespace: &str, name: &str) -> Option<Pod> {
        let pod = self.state.store().pod(&PodKey::new(namespace, name));
        pod.map(|pod| Pod::clone(&pod))
    }

    /// How many pods were created since start.
    pub fn created_count(&self) -> u64 {
        self.state.store().created_count()
    }

    /// How many pods were removed since start.
    pub fn deleted_count(&self) -> u64 {
        self.state.store().deleted_count()
    }

    /// The events about pods called `pod_name` in `namespace`, oldest first.
    pub fn events(&self, namespace: &str, pod_name: &str) -> Vec<Event> {
        let store = self.state.store();
        store
            .events()
            .iter()
            .filter(|event| {
                let object = &event.involved_object;
                object.namespace.as_deref() == Some(namespace)
                    && object.name.as_deref() == Some(pod_name)
            })
            .cloned()
            .collect()
    }

    /// Method and path-with-query of every request received, in order.
    pub fn requests(&self) -> Vec<(Method, String)> {
        lock(&self.state.requests).clone()
    }

    /// Evicts the pod as the node's eviction manager would; false if there is no such pod.
    pub fn evict(&self, namespace: &str, name: &str) -> bool {
        self.state
            .kubelet
            .send(&PodKey::new(namespace, name), PodCommand::Evict)
    }

    /// Deletes the pod as another client would (default grace); false if there is no such pod.
    pub fn delete_externally(&self, namespace: &str, name: &str) -> bool {
        self.state
            .delete_pod(&PodKey::new(namespace, name), None)
            .is_some()
    }

    /// Ends every open watch and log stream abruptly, so clients must reconnect.
    pub fn break_connections(&self) {
        let mut breaker = lock(&self.state.breaker);
        breaker.cancel();
        *breaker = CancellationToken::new();
    }

    /// Keeps followed log streams open after their container has ended, as kwok's simulated
    /// kubelet does (a real kubelet closes them): clients must not wait for the stream to end.
    pub fn hold_log_streams_open(&self) {
        self.state.hold_log_streams.store(true, Ordering::Relaxed);
    }

    /// Answers the next `count` requests with `status` and a matching `Status` body.
    pub fn set_fail_next(&self, count: u32, status: StatusCode) {
        *lock(&self.state.faults) = Faults {
            fail_next: count,
            status,
        };
    }

    /// Forgets the watch history, as an etcd compaction does: a watch from any resourceVersion
    /// issued so far now gets 410 Gone (combine with [`FakeCluster::break_connections`] to make
    /// a running watcher re-list).
    pub fn compact_history(&self) {
        self.state.store().compact();
    }

    /// Stops the server and every pod task, waiting (briefly) for them to end.
    pub async fn shutdown(mut self) {
        self.state.shutdown.cancel();
        self.state.tasks.close();
        let server = self.server.take();
        let stopped = async {
            if let Some(server) = server {
                let _ = server.await;
            }
            self.state.tasks.wait().await;
        };
        if tokio::time::timeout(SHUTDOWN_GRACE, stopped).await.is_err() {
            tracing::warn!("the fake cluster did not stop within {SHUTDOWN_GRACE:?}");
        }
    }
}

impl Drop for FakeCluster {
    fn drop(&mut self) {
        self.state.shutdown.cancel();
    }
}

/// Requests still to fail, and how.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Faults {
    /// How many of the next requests fail.
    pub(crate) fail_next: u32,
    /// The status they fail with.
    pub(crate) status: StatusCode,
}

/// What the server's handlers and the kubelet's pod tasks share.
///
/// Lock order: the store before the resources and the kubelet's pod map; no lock is held
/// across an await.
#[derive(Debug)]
pub(crate) struct ClusterState {
    store: Mutex<Store>,
    /// Every object that is not a pod (ConfigMaps, CRDs, custom resources...).
    resources: Mutex<Resources>,
    /// How SparkApplications go, by name or image.
    pub(crate) spark_scripts: Mutex<Vec<(String, SparkScript)>>,
    /// What each container printed.
    pub(crate) logs: Logs,
    /// Scripts and pod tasks.
    pub(crate) kubelet: Kubelet,
    /// Injected failures.
    pub(crate) faults: Mutex<Faults>,
    /// Every request received.
    pub(crate) requests: Mutex<Vec<(Method, String)>>,
    breaker: Mutex<CancellationToken>,
    /// Whether followed log streams stay open after their container ended (as kwok's do).
    pub(crate) hold_log_streams: AtomicBool,
    /// Cancelled when the cluster stops.
    pub(crate) shutdown: CancellationToken,
    /// Every pod task and stream task.
    pub(crate) tasks: TaskTracker,
}

impl ClusterState {
    fn new() -> Self {
        ClusterState {
            store: Mutex::new(Store::new()),
            resources: Mutex::new(Resources::new()),
            spark_scripts: Mutex::new(Vec::new()),
            logs: Logs::default(),
            kubelet: Kubelet::default(),
            faults: Mutex::new(Faults {
                fail_next: 0,
                status: StatusCode::INTERNAL_SERVER_ERROR,
            }),
            requests: Mutex::new(Vec::new()),
            breaker: Mutex::new(CancellationToken::new()),
            hold_log_streams: AtomicBool::new(false),
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
        }
    }

    /// The store, locked; never hold it across an await.
    pub(crate) fn store(&self) -> MutexGuard<'_, Store> {
        lock(&self.store)
    }

    /// The objects that are not pods, locked; never hold it across an await, and take the
    /// store's lock first when both are needed.
    pub(crate) fn resources(&self) -> MutexGuard<'_, Resources> {
        lock(&self.resources)
    }

    /// A token cancelled by the next [`FakeCluster::break_connections`].
    pub(crate) fn breaker(&self) -> CancellationToken {
        lock(&self.breaker).clone()
    }

    /// Marks the pod deleted and has the kubelet stop it within the grace period (the pod's
    /// `terminationGracePeriodSeconds` unless `grace_seconds` says otherwise); the pod as
    /// marked, or `None` if there is no such pod.
    pub(crate) fn delete_pod(&self, key: &PodKey, grace_seconds: Option<i64>) -> Option<Pod> {
        let marked = self.store().update(key, None, |pod| {
            let grace = grace_seconds
                .or(pod.metadata.deletion_grace_period_seconds)
                .or_else(|| {
                    pod.spec
                        .as_ref()
                        .and_then(|spec| spec.termination_grace_period_seconds)
                })
                .unwrap_or(DEFAULT_GRACE_SECONDS)
                .max(0);
            if pod.metadata.deletion_timestamp.is_none() {
                pod.metadata.deletion_timestamp = Some(crate::clock::now_time());
            }
            pod.metadata.deletion_grace_period_seconds = Some(grace);
        })?;
        let grace = marked
            .metadata
            .deletion_grace_period_seconds
            .unwrap_or_default();
        let grace = Duration::from_secs(u64::try_from(grace).unwrap_or_default());
        if !self.kubelet.send(key, PodCommand::Terminate { grace }) {
            // No pod task holds it any more: nothing to stop, so remove it at once.
            self.logs.remove_pod(key);
            self.store().remove(key, marked.metadata.uid.as_deref());
        }
        Some(Pod::clone(&marked))
    }
}
