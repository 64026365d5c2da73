//! One watch per cluster and namespace over every pod Gust manages, fanned out by pod name to
//! the tries that follow them: a thousand running pods cost one watch connection, no thread
//! and no polling. Built on kube-runtime's `watcher`, which re-lists after a 410 Gone and
//! backs off on errors; after a re-list, a followed pod the list no longer holds is reported
//! gone (its deletion happened while the watch was down). The watch keeps the latest state of
//! every managed pod it has seen, so a try that starts following a pod the watch already knows
//! (re-attaching to a pod another scheduler created) starts from that state rather than
//! waiting for a change that may never come.

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

/// The pods of one namespace: those tries follow, by name, and the latest state of every
/// managed pod the watch has seen.
#[derive(Default)]
struct Followed {
    pods: Mutex<Pods>,
}

#[derive(Default)]
struct Pods {
    followers: HashMap<String, watch::Sender<Seen>>,
    latest: HashMap<String, Arc<Pod>>,
}

impl Followed {
    fn pods(&self) -> std::sync::MutexGuard<'_, Pods> {
        // Only single inserts, removes and sends happen under the lock: a poisoned map is whole.
        self.pods
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn tell(&self, name: &str, seen: Seen) {
        let mut pods = self.pods();
        match &seen {
            Seen::Pod(pod) => {
                pods.latest.insert(name.to_owned(), Arc::clone(pod));
            }
            Seen::Gone | Seen::NotYet => {
                pods.latest.remove(name);
            }
        }
        if let Some(sender) = pods.followers.get(name) {
            sender.send_replace(seen);
        }
    }
}

/// A pod as kept: without its field-management records, which nothing here reads.
fn kept(mut pod: Pod) -> Arc<Pod> {
    pod.metadata.managed_fields = None;
    Arc::new(pod)
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
        self.followed.pods().followers.remove(&self.name);
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
        let mut pods = followed.pods();
        let known = pods
            .latest
            .get(name)
            .map_or(Seen::NotYet, |pod| Seen::Pod(Arc::clone(pod)));
        let (sender, seen) = watch::channel(known);
        pods.followers.insert(name.to_owned(), sender);
        drop(pods);
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
                    followed.tell(&name, Seen::Pod(kept(pod)));
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
                    followed.tell(&name, Seen::Pod(kept(pod)));
                }
            }
            Some(Ok(watcher::Event::InitDone)) => {
                // Followed pods the fresh list lacks were deleted while the watch was down.
                let mut pods = followed.pods();
                pods.latest.retain(|name, _| listed.contains(name));
                for (name, sender) in &pods.followers {
                    let was_seen = matches!(*sender.borrow(), Seen::Pod(_));
                    if was_seen && !listed.contains(name) {
                        sender.send_replace(Seen::Gone);
                    }
                }
            }
        }
    }
}
