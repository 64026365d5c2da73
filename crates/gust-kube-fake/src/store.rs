//! The object store: pods, events, the resourceVersion counter and the watch history.
//!
//! One global resourceVersion numbers every write, as etcd's revision does. Each pod change
//! becomes a [`WatchRecord`], kept in a bounded history (so a watch can resume from an older
//! resourceVersion) and sent on a broadcast channel (so live watches cost no polling). The store
//! is plain data behind one mutex; it never awaits and never talks to the kubelet.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::sync::Arc;

use axum::body::Bytes;
use k8s_openapi::api::core::v1::{Event, Pod};
use tokio::sync::broadcast;

use crate::clock;

/// How many pod changes the watch history keeps; a watch from before them gets 410 Gone.
pub(crate) const HISTORY_CAPACITY: usize = 10_000;

/// Capacity of the live watch channel; a watch that falls further behind replays from history.
const WATCH_CHANNEL_CAPACITY: usize = 1_024;

/// A pod's namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct PodKey {
    /// The namespace.
    pub(crate) namespace: String,
    /// The pod's name.
    pub(crate) name: String,
}

impl PodKey {
    /// The key of a namespaced name.
    pub(crate) fn new(namespace: &str, name: &str) -> Self {
        PodKey {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        }
    }
}

impl fmt::Display for PodKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// What happened to a pod, as a watch event type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Change {
    /// The pod was created.
    Added,
    /// The pod changed.
    Modified,
    /// The pod was removed.
    Deleted,
}

/// One pod change in the watch history.
#[derive(Debug)]
pub(crate) struct WatchRecord {
    /// The resourceVersion the change was written at.
    pub(crate) resource_version: u64,
    /// What happened.
    pub(crate) change: Change,
    /// The pod after the change (for `Deleted`, its last state).
    pub(crate) pod: Arc<Pod>,
    /// The pod before the change, so a selector watch sees objects enter and leave it.
    pub(crate) previous: Option<Arc<Pod>>,
    /// `pod` serialized once for every watcher.
    pub(crate) json: Bytes,
}

/// A watch asked to resume from a resourceVersion the history no longer holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Expired {
    /// The resourceVersion asked for.
    pub(crate) requested: u64,
    /// The oldest resourceVersion a watch can still resume from.
    pub(crate) oldest: u64,
}

/// A watch's starting point: changes after a resourceVersion, then live ones.
pub(crate) struct Subscription {
    /// Changes already in history after the requested resourceVersion.
    pub(crate) replay: Vec<Arc<WatchRecord>>,
    /// Changes from now on.
    pub(crate) live: broadcast::Receiver<Arc<WatchRecord>>,
    /// The current resourceVersion when subscribing.
    pub(crate) resource_version: u64,
}

/// Pods, events and the watch history.
pub(crate) struct Store {
    resource_version: u64,
    pods: BTreeMap<PodKey, Arc<Pod>>,
    events: Vec<Event>,
    history: VecDeque<Arc<WatchRecord>>,
    oldest_resumable: u64,
    created: u64,
    deleted: u64,
    xcoms: HashMap<PodKey, String>,
    watch_tx: broadcast::Sender<Arc<WatchRecord>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("resource_version", &self.resource_version())
            .finish_non_exhaustive()
    }
}

impl Store {
    /// An empty store at resourceVersion 1.
    pub(crate) fn new() -> Self {
        let (watch_tx, _) = broadcast::channel(WATCH_CHANNEL_CAPACITY);
        Store {
            resource_version: 1,
            pods: BTreeMap::new(),
            events: Vec::new(),
            history: VecDeque::new(),
            oldest_resumable: 1,
            created: 0,
            deleted: 0,
            xcoms: HashMap::new(),
            watch_tx,
        }
    }

    /// The latest resourceVersion written.
    pub(crate) fn resource_version(&self) -> u64 {
        self.resource_version
    }

    fn next_resource_version(&mut self) -> u64 {
        self.resource_version += 1;
        self.resource_version
    }

    /// The pod under `key`.
    pub(crate) fn pod(&self, key: &PodKey) -> Option<Arc<Pod>> {
        self.pods.get(key).cloned()
    }

    /// Every pod, ordered by namespace then name.
    pub(crate) fn pods(&self) -> impl Iterator<Item = (&PodKey, &Arc<Pod>)> {
        self.pods.iter()
    }

    /// Whether `key` is taken.
    pub(crate) fn contains(&self, key: &PodKey) -> bool {
        self.pods.contains_key(key)
    }

    /// How many pods were ever created.
    pub(crate) fn created_count(&self) -> u64 {
        self.created
    }

    /// How many pods were ever removed.
    pub(crate) fn deleted_count(&self) -> u64 {
        self.deleted
    }

    /// Stores a new pod, stamping uid, resourceVersion and creationTimestamp.
    pub(crate) fn insert(&mut self, key: PodKey, mut pod: Pod) -> Arc<Pod> {
        let resource_version = self.next_resource_version();
        self.created += 1;
        pod.metadata.uid = Some(format!("00000000-0000-4000-8000-{:012x}", self.created));
        pod.metadata.resource_version = Some(resource_version.to_string());
        pod.metadata.creation_timestamp = Some(clock::now_time());
        let pod = Arc::new(pod);
        self.pods.insert(key, Arc::clone(&pod));
        self.record(resource_version, Change::Added, Arc::clone(&pod), None);
        pod
    }

    /// Changes the pod under `key` (if it exists and has `uid`), as one new resourceVersion.
    pub(crate) fn update(
        &mut self,
        key: &PodKey,
        uid: Option<&str>,
        change: impl FnOnce(&mut Pod),
    ) -> Option<Arc<Pod>> {
        let previous = self.pods.get(key)?;
        if uid.is_some_and(|uid| previous.metadata.uid.as_deref() != Some(uid)) {
            return None;
        }
        let previous = Arc::clone(previous);
        let mut pod = Pod::clone(&previous);
        change(&mut pod);
        let resource_version = self.next_resource_version();
        pod.metadata.resource_version = Some(resource_version.to_string());
        let pod = Arc::new(pod);
        self.pods.insert(key.clone(), Arc::clone(&pod));
        self.record(
            resource_version,
            Change::Modified,
            Arc::clone(&pod),
            Some(previous),
        );
        Some(pod)
    }

    /// Removes the pod under `key` (if it has `uid`), with its XCom and events' subject.
    pub(crate) fn remove(&mut self, key: &PodKey, uid: Option<&str>) -> Option<Arc<Pod>> {
        let current = self.pods.get(key)?;
        if uid.is_some_and(|uid| current.metadata.uid.as_deref() != Some(uid)) {
            return None;
        }
        let mut pod = Pod::clone(current);
        self.pods.remove(key);
        self.xcoms.remove(key);
        self.deleted += 1;
        let resource_version = self.next_resource_version();
        pod.metadata.resource_version = Some(resource_version.to_string());
        let pod = Arc::new(pod);
        self.record(resource_version, Change::Deleted, Arc::clone(&pod), None);
        Some(pod)
    }

    fn record(
        &mut self,
        resource_version: u64,
        change: Change,
        pod: Arc<Pod>,
        previous: Option<Arc<Pod>>,
    ) {
        let json = Bytes::from(serde_json::to_vec(&*pod).unwrap_or_default());
        let record = Arc::new(WatchRecord {
            resource_version,
            change,
            pod,
            previous,
            json,
        });
        if self.history.len() == HISTORY_CAPACITY
            && let Some(dropped) = self.history.pop_front()
        {
            self.oldest_resumable = dropped.resource_version;
        }
        self.history.push_back(Arc::clone(&record));
        // No receiver is not an error: nobody is watching.
        let _ = self.watch_tx.send(record);
    }

    /// The changes after `after` and a receiver for the ones to come, or 410 Gone.
    pub(crate) fn subscribe(&self, after: u64) -> Result<Subscription, Expired> {
        if after < self.oldest_resumable {
            return Err(Expired {
                requested: after,
                oldest: self.oldest_resumable,
            });
        }
        let start = self
            .history
            .partition_point(|record| record.resource_version <= after);
        Ok(Subscription {
            replay: self.history.range(start..).cloned().collect(),
            live: self.watch_tx.subscribe(),
            resource_version: self.resource_version,
        })
    }

    /// Forgets the watch history, as an etcd compaction does: every resourceVersion issued so
    /// far becomes too old to watch from.
    pub(crate) fn compact(&mut self) {
        let resource_version = self.next_resource_version();
        self.history.clear();
        self.oldest_resumable = resource_version;
    }

    /// Stores an event, folding a repeat of the same reason and message into `count`.
    pub(crate) fn add_event(&mut self, mut event: Event) {
        let resource_version = self.next_resource_version();
        let repeat = self.events.iter_mut().find(|known| {
            known.involved_object.uid == event.involved_object.uid
                && known.involved_object.field_path == event.involved_object.field_path
                && known.reason == event.reason
                && known.message == event.message
        });
        match repeat {
            Some(known) => {
                known.count = Some(known.count.unwrap_or(1) + 1);
                known.last_timestamp = event.last_timestamp;
                known.metadata.resource_version = Some(resource_version.to_string());
            }
            None => {
                event.metadata.resource_version = Some(resource_version.to_string());
                self.events.push(event);
            }
        }
    }

    /// Every stored event, oldest first.
    pub(crate) fn events(&self) -> &[Event] {
        &self.events
    }

    /// Records the pod's `/airflow/xcom/return.json`.
    pub(crate) fn set_xcom(&mut self, key: &PodKey, content: String) {
        self.xcoms.insert(key.clone(), content);
    }

    /// The pod's `/airflow/xcom/return.json`, if written.
    pub(crate) fn xcom(&self, key: &PodKey) -> Option<String> {
        self.xcoms.get(key).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(name: &str) -> Pod {
        let mut pod = Pod::default();
        pod.metadata.name = Some(name.to_owned());
        pod
    }

    #[test]
    fn every_write_takes_the_next_resource_version() {
        let mut store = Store::new();
        let key = PodKey::new("ns", "a");
        let pod = store.insert(key.clone(), named("a"));
        assert_eq!(pod.metadata.resource_version.as_deref(), Some("2"));
        let pod = store.update(&key, None, |_| {}).unwrap();
        assert_eq!(pod.metadata.resource_version.as_deref(), Some("3"));
        let pod = store.remove(&key, None).unwrap();
        assert_eq!(pod.metadata.resource_version.as_deref(), Some("4"));
        assert_eq!((store.created_count(), store.deleted_count()), (1, 1));
    }

    #[test]
    fn subscribing_replays_only_later_changes() {
        let mut store = Store::new();
        store.insert(PodKey::new("ns", "a"), named("a"));
        store.insert(PodKey::new("ns", "b"), named("b"));
        let subscription = store.subscribe(2).unwrap();
        assert_eq!(subscription.replay.len(), 1);
        assert_eq!(subscription.replay[0].resource_version, 3);
    }

    #[test]
    fn compaction_expires_every_earlier_resource_version() {
        let mut store = Store::new();
        store.insert(PodKey::new("ns", "a"), named("a"));
        store.compact();
        let current = store.resource_version();
        assert_eq!(
            store.subscribe(2).err(),
            Some(Expired {
                requested: 2,
                oldest: current
            })
        );
        assert!(store.subscribe(current).is_ok());
    }

    #[test]
    fn an_update_for_another_uid_is_ignored() {
        let mut store = Store::new();
        let key = PodKey::new("ns", "a");
        store.insert(key.clone(), named("a"));
        assert!(store.update(&key, Some("other"), |_| {}).is_none());
    }
}
