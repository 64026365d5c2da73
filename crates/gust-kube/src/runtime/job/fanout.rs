//! One watch per cluster and namespace over a kind of object, fanned out by a key taken from
//! each object (a Job's name, a pod's `job-name` label) to the tries that follow them: every
//! Job followed in a namespace costs one Job watch and one pod watch, no thread and no
//! polling. Each key's objects are kept (as kube-runtime's reflector keeps a store), so a try
//! subscribing late still sees what is already there; after a re-list (410 Gone), what the
//! fresh list lacks was deleted while the watch was down.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use futures::StreamExt;
use k8s_openapi::NamespaceResourceScope;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::runtime::cluster::{Cluster, ClusterChoice};

/// The objects of one key, by name.
pub type Objects<K> = Arc<BTreeMap<String, Arc<K>>>;

/// Each cluster's and namespace's followed objects.
type Namespaces<K> = HashMap<(ClusterChoice, String), Arc<Keyed<K>>>;

/// Watches of one kind, started on first use, stopping with the runtime.
pub struct Fanout<K> {
    namespaces: Mutex<Namespaces<K>>,
    /// The label selector every watch uses.
    selector: &'static str,
    /// The key an object is followed by.
    key_of: fn(&K) -> Option<String>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

/// One namespace's objects by key, and who follows which key.
struct Keyed<K> {
    state: Mutex<KeyedState<K>>,
}

struct KeyedState<K> {
    objects: HashMap<String, BTreeMap<String, Arc<K>>>,
    relisting: HashMap<String, BTreeMap<String, Arc<K>>>,
    followers: HashMap<String, watch::Sender<Objects<K>>>,
}

impl<K> Keyed<K> {
    fn state(&self) -> MutexGuard<'_, KeyedState<K>> {
        // Only single inserts, removes and sends happen under the lock: a poisoned map is whole.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<K> KeyedState<K> {
    fn tell(&self, key: &str) {
        if let Some(sender) = self.followers.get(key) {
            let objects = self.objects.get(key).cloned().unwrap_or_default();
            sender.send_replace(Arc::new(objects));
        }
    }
}

/// A try's view of one key's objects; dropping it stops following.
pub struct Following<K> {
    /// The key's objects, as last seen.
    pub seen: watch::Receiver<Objects<K>>,
    keyed: Arc<Keyed<K>>,
    key: String,
}

impl<K> Drop for Following<K> {
    fn drop(&mut self) {
        let mut state = self.keyed.state();
        // This receiver is still counted until it is dropped, after this.
        if state
            .followers
            .get(&self.key)
            .is_some_and(|s| s.receiver_count() <= 1)
        {
            state.followers.remove(&self.key);
        }
    }
}

impl<K> Fanout<K>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Debug
        + Send
        + Sync
        + 'static,
{
    /// Watches of objects matching `selector`, followed by `key_of`.
    #[must_use]
    pub fn new(
        selector: &'static str,
        key_of: fn(&K) -> Option<String>,
        shutdown: CancellationToken,
        tasks: TaskTracker,
    ) -> Self {
        Self {
            namespaces: Mutex::new(HashMap::new()),
            selector,
            key_of,
            shutdown,
            tasks,
        }
    }

    /// Follows the objects of `key` in `namespace`, starting the namespace's watch if needed.
    pub fn follow(
        &self,
        choice: &ClusterChoice,
        cluster: &Cluster,
        namespace: &str,
        key: &str,
    ) -> Following<K> {
        let keyed = {
            let mut namespaces = self
                .namespaces
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let at = (choice.clone(), namespace.to_owned());
            if let Some(existing) = namespaces.get(&at) {
                Arc::clone(existing)
            } else {
                let keyed = Arc::new(Keyed {
                    state: Mutex::new(KeyedState {
                        objects: HashMap::new(),
                        relisting: HashMap::new(),
                        followers: HashMap::new(),
                    }),
                });
                namespaces.insert(at, Arc::clone(&keyed));
                let api: Api<K> = Api::namespaced(cluster.client.clone(), namespace);
                self.tasks.spawn(run_watch(
                    api,
                    self.selector,
                    self.key_of,
                    Arc::clone(&keyed),
                    self.shutdown.clone(),
                ));
                keyed
            }
        };
        let seen = {
            let mut state = keyed.state();
            if let Some(sender) = state.followers.get(key) {
                sender.subscribe()
            } else {
                let objects = state.objects.get(key).cloned().unwrap_or_default();
                let (sender, seen) = watch::channel(Arc::new(objects));
                state.followers.insert(key.to_owned(), sender);
                seen
            }
        };
        Following {
            seen,
            keyed,
            key: key.to_owned(),
        }
    }
}

async fn run_watch<K>(
    api: Api<K>,
    selector: &'static str,
    key_of: fn(&K) -> Option<String>,
    keyed: Arc<Keyed<K>>,
    shutdown: CancellationToken,
) where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Debug
        + Send
        + Sync
        + 'static,
{
    let config = watcher::Config::default().labels(selector);
    let mut events = watcher(api, config).default_backoff().boxed();
    loop {
        let event = tokio::select! {
            () = shutdown.cancelled() => return,
            event = events.next() => event,
        };
        let name_key = |object: &K| {
            let name = object.meta().name.clone()?;
            key_of(object).map(|key| (key, name))
        };
        match event {
            None => return,
            Some(Err(err)) => tracing::warn!(error = %err, "watch interrupted; resuming"),
            Some(Ok(watcher::Event::Apply(object))) => {
                if let Some((key, name)) = name_key(&object) {
                    let mut state = keyed.state();
                    state
                        .objects
                        .entry(key.clone())
                        .or_default()
                        .insert(name, Arc::new(object));
                    state.tell(&key);
                }
            }
            Some(Ok(watcher::Event::Delete(object))) => {
                if let Some((key, name)) = name_key(&object) {
                    let mut state = keyed.state();
                    if let Some(objects) = state.objects.get_mut(&key) {
                        objects.remove(&name);
                        if objects.is_empty() {
                            state.objects.remove(&key);
                        }
                    }
                    state.tell(&key);
                }
            }
            Some(Ok(watcher::Event::Init)) => keyed.state().relisting.clear(),
            Some(Ok(watcher::Event::InitApply(object))) => {
                if let Some((key, name)) = name_key(&object) {
                    keyed
                        .state()
                        .relisting
                        .entry(key)
                        .or_default()
                        .insert(name, Arc::new(object));
                }
            }
            Some(Ok(watcher::Event::InitDone)) => {
                let mut state = keyed.state();
                state.objects = std::mem::take(&mut state.relisting);
                let keys: Vec<String> = state.followers.keys().cloned().collect();
                for key in keys {
                    state.tell(&key);
                }
            }
        }
    }
}
