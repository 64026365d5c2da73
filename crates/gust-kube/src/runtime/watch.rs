//! One watch per cluster and namespace over every pod Gust manages, fanned out by pod name to
//! the tries that follow them: a thousand running pods cost one watch connection, no thread
//! and no polling. Built on kube-runtime's `watcher`, which re-lists after a 410 Gone and
//! backs off on errors; after a re-list, a followed pod the list no longer holds is reported
//! gone (its deletion happened while the watch was down).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::cluster::{Cluster, ClusterChoice};
use crate::build::MANAGED_BY_LABEL;

/// What the watch has seen of one pod.
#[derive(Debug, Clone)]
pub enum Seen {
    /// Nothing yet (it was just created, or the watch is starting).
    NotYet,
    /// Its latest state.
    Pod(Arc<Pod>),
    /// It was deleted.
    Gone,
}

/// The runtime's watches, one per cluster and namespace, started on first use.
pub struct Watches {
    namespaces: Mutex<HashMap<(ClusterChoice, String), Arc<Followed>>>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

/// The pods of one namespace that tries follow, by name.
#[derive(Default)]
struct Followed {
    pods: Mutex<HashMap<String, watch::Sender<Seen>>>,
}

impl Followed {
    fn pods(&self) -> std::sync::MutexGuard<'_, HashMap<String, watch::Sender<Seen>>> {
        // Only single inserts, removes and sends happen under the lock: a poisoned map is whole.
        self.pods
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn tell(&self, name: &str, seen: Seen) {
        if let Some(sender) = self.pods().get(name) {
            sender.send_replace(seen);
        }
    }
}

/// A try's view of its pod; dropping it stops following.
pub struct Subscription {
    /// The pod's latest state.
    pub seen: watch::Receiver<Seen>,
    followed: Arc<Followed>,
    name: String,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.followed.pods().remove(&self.name);
    }
}

impl Watches {
    /// Watches stopping with `shutdown`, their tasks owned by `tasks`.
    #[must_use]
    pub fn new(shutdown: CancellationToken, tasks: TaskTracker) -> Self {
        Self {
            namespaces: Mutex::new(HashMap::new()),
            shutdown,
            tasks,
        }
    }

    /// Follows pod `name` in `namespace`, starting the namespace's watch if needed.
    pub fn subscribe(
        &self,
        choice: &ClusterChoice,
        cluster: &Cluster,
        namespace: &str,
        name: &str,
    ) -> Subscription {
        let followed = {
            let mut namespaces = self
                .namespaces
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let key = (choice.clone(), namespace.to_owned());
            if let Some(existing) = namespaces.get(&key) {
                Arc::clone(existing)
            } else {
                let followed = Arc::new(Followed::default());
                namespaces.insert(key, Arc::clone(&followed));
                let api: Api<Pod> = Api::namespaced(cluster.client.clone(), namespace);
                self.tasks
                    .spawn(run_watch(api, Arc::clone(&followed), self.shutdown.clone()));
                followed
            }
        };
        let (sender, seen) = watch::channel(Seen::NotYet);
        followed.pods().insert(name.to_owned(), sender);
        Subscription {
            seen,
            followed,
            name: name.to_owned(),
        }
    }
}

async fn run_watch(api: Api<Pod>, followed: Arc<Followed>, shutdown: CancellationToken) {
    let selector = format!("{}={}", MANAGED_BY_LABEL.0, MANAGED_BY_LABEL.1);
    let config = watcher::Config::default().labels(&selector);
    let mut events = watcher(api, config).default_backoff().boxed();
    let mut listed: HashSet<String> = HashSet::new();
    loop {
        let event = tokio::select! {
            () = shutdown.cancelled() => return,
            event = events.next() => event,
        };
        match event {
            None => return,
            Some(Err(err)) => tracing::warn!(error = %err, "pod watch interrupted; resuming"),
            Some(Ok(watcher::Event::Apply(pod))) => {
                if let Some(name) = pod.metadata.name.clone() {
                    followed.tell(&name, Seen::Pod(Arc::new(pod)));
                }
            }
            Some(Ok(watcher::Event::Delete(pod))) => {
                if let Some(name) = &pod.metadata.name {
                    followed.tell(name, Seen::Gone);
                }
            }
            Some(Ok(watcher::Event::Init)) => listed.clear(),
            Some(Ok(watcher::Event::InitApply(pod))) => {
                if let Some(name) = pod.metadata.name.clone() {
                    listed.insert(name.clone());
                    followed.tell(&name, Seen::Pod(Arc::new(pod)));
                }
            }
            Some(Ok(watcher::Event::InitDone)) => {
                // Followed pods the fresh list lacks were deleted while the watch was down.
                let pods = followed.pods();
                for (name, sender) in pods.iter() {
                    let was_seen = matches!(*sender.borrow(), Seen::Pod(_));
                    if was_seen && !listed.contains(name) {
                        sender.send_replace(Seen::Gone);
                    }
                }
            }
        }
    }
}
