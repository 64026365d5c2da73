//! Every object that is not a pod: ConfigMaps, Services, CustomResourceDefinitions and the
//! objects of any kind a CRD defines, stored as JSON.
//!
//! The kinds served are a fixed list of built-in ones plus those the stored CRDs define, so
//! that discovery (`/api`, `/apis`, `/apis/<group>/<version>`) and the generic handlers agree
//! on what exists: a kind whose CRD is not applied is a 404, as on a real cluster. Changes are
//! numbered by their own resourceVersion counter, kept in a bounded history and broadcast, so
//! generic watches work as pod watches do. Plain data behind one mutex; nothing here awaits.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use axum::body::Bytes;
use serde_json::{Value, json};
use tokio::sync::broadcast;

use crate::clock;
use crate::store::{Change, Expired};

/// How many changes the history keeps; a watch from before them gets 410 Gone.
const HISTORY_CAPACITY: usize = 10_000;
/// Capacity of the live channel; a watch further behind replays from history.
const CHANNEL_CAPACITY: usize = 1_024;

/// The group of CustomResourceDefinitions.
pub(crate) const CRD_GROUP: &str = "apiextensions.k8s.io";
/// The resource name of CustomResourceDefinitions.
pub(crate) const CRD_RESOURCE: &str = "customresourcedefinitions";

/// A kind the fake serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ResourceType {
    /// The API group (`""` for core).
    pub(crate) group: String,
    /// The versions served, preferred first.
    pub(crate) versions: Vec<String>,
    /// The plural resource name in paths (`configmaps`).
    pub(crate) plural: String,
    /// The singular name.
    pub(crate) singular: String,
    /// The kind (`ConfigMap`).
    pub(crate) kind: String,
    /// Whether objects live in a namespace.
    pub(crate) namespaced: bool,
    /// Whether it has a `/status` subresource.
    pub(crate) status: bool,
    /// Served by another module (pods): listed by discovery only.
    pub(crate) elsewhere: bool,
}

impl ResourceType {
    fn builtin(group: &str, version: &str, plural: &str, kind: &str, namespaced: bool) -> Self {
        ResourceType {
            group: group.to_owned(),
            versions: vec![version.to_owned()],
            plural: plural.to_owned(),
            singular: kind.to_lowercase(),
            kind: kind.to_owned(),
            namespaced,
            status: false,
            elsewhere: false,
        }
    }

    /// `group/version`, or `version` for the core group.
    pub(crate) fn api_version(&self, version: &str) -> String {
        if self.group.is_empty() {
            version.to_owned()
        } else {
            format!("{}/{version}", self.group)
        }
    }

    /// How error messages name the resource (`configmaps`, `sparkapplications.sparkoperator.k8s.io`).
    pub(crate) fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }
}

/// The built-in kinds: what pod tasks, manifests and a Kueue release use.
fn builtin_types() -> Vec<ResourceType> {
    let core = |plural: &str, kind: &str, namespaced: bool| {
        ResourceType::builtin("", "v1", plural, kind, namespaced)
    };
    let mut pods = core("pods", "Pod", true);
    pods.elsewhere = true;
    pods.status = true;
    let mut events = core("events", "Event", true);
    events.elsewhere = true;
    let rbac = "rbac.authorization.k8s.io";
    let admission = "admissionregistration.k8s.io";
    vec![
        pods,
        events,
        core("configmaps", "ConfigMap", true),
        core("secrets", "Secret", true),
        core("services", "Service", true),
        core("serviceaccounts", "ServiceAccount", true),
        core("persistentvolumeclaims", "PersistentVolumeClaim", true),
        core("namespaces", "Namespace", false),
        ResourceType::builtin("apps", "v1", "deployments", "Deployment", true),
        ResourceType::builtin("apps", "v1", "statefulsets", "StatefulSet", true),
        ResourceType::builtin("apps", "v1", "daemonsets", "DaemonSet", true),
        {
            // Served by the generic handlers; `crate::jobs` admits them and runs them.
            let mut jobs = ResourceType::builtin("batch", "v1", "jobs", "Job", true);
            jobs.status = true;
            jobs
        },
        ResourceType::builtin(rbac, "v1", "roles", "Role", true),
        ResourceType::builtin(rbac, "v1", "rolebindings", "RoleBinding", true),
        ResourceType::builtin(rbac, "v1", "clusterroles", "ClusterRole", false),
        ResourceType::builtin(
            rbac,
            "v1",
            "clusterrolebindings",
            "ClusterRoleBinding",
            false,
        ),
        ResourceType::builtin(
            admission,
            "v1",
            "mutatingwebhookconfigurations",
            "MutatingWebhookConfiguration",
            false,
        ),
        ResourceType::builtin(
            admission,
            "v1",
            "validatingwebhookconfigurations",
            "ValidatingWebhookConfiguration",
            false,
        ),
        ResourceType::builtin(
            "apiregistration.k8s.io",
            "v1",
            "apiservices",
            "APIService",
            false,
        ),
        ResourceType::builtin(
            "policy",
            "v1",
            "poddisruptionbudgets",
            "PodDisruptionBudget",
            true,
        ),
        ResourceType::builtin(
            CRD_GROUP,
            "v1",
            CRD_RESOURCE,
            "CustomResourceDefinition",
            false,
        ),
    ]
}

/// Where an object lives: its type's group and plural, its namespace (`""` when cluster-wide)
/// and its name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct ObjectKey {
    /// The API group.
    pub(crate) group: String,
    /// The plural resource name.
    pub(crate) plural: String,
    /// The namespace, `""` for cluster-scoped objects.
    pub(crate) namespace: String,
    /// The name.
    pub(crate) name: String,
}

/// One change of an object, for watches.
#[derive(Debug)]
pub(crate) struct ObjectRecord {
    /// The resourceVersion written.
    pub(crate) resource_version: u64,
    /// What happened.
    pub(crate) change: Change,
    /// The object's type.
    pub(crate) group: String,
    /// The object's plural.
    pub(crate) plural: String,
    /// The object after the change (before it, for deletions).
    pub(crate) object: Arc<Value>,
    /// The object before the change.
    pub(crate) previous: Option<Arc<Value>>,
    /// `object` serialized once.
    pub(crate) json: Bytes,
}

/// A watch's starting point.
pub(crate) struct ObjectSubscription {
    /// Changes after the requested resourceVersion.
    pub(crate) replay: Vec<Arc<ObjectRecord>>,
    /// Changes to come.
    pub(crate) live: broadcast::Receiver<Arc<ObjectRecord>>,
    /// The current resourceVersion.
    pub(crate) resource_version: u64,
}

/// Why a write was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum WriteError {
    /// No such object.
    NotFound,
    /// The name is taken.
    Exists,
}

/// The objects and the kinds served.
pub(crate) struct Resources {
    resource_version: u64,
    types: Vec<ResourceType>,
    objects: BTreeMap<ObjectKey, Arc<Value>>,
    history: VecDeque<Arc<ObjectRecord>>,
    oldest_resumable: u64,
    created: u64,
    tx: broadcast::Sender<Arc<ObjectRecord>>,
}

impl std::fmt::Debug for Resources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resources")
            .field("objects", &self.objects.len())
            .finish_non_exhaustive()
    }
}

impl Resources {
    /// The built-in kinds and no objects.
    pub(crate) fn new() -> Self {
        let (tx, _) = broadcast::channel(CHANNEL_CAPACITY);
        Resources {
            resource_version: 1,
            types: builtin_types(),
            objects: BTreeMap::new(),
            history: VecDeque::new(),
            oldest_resumable: 1,
            created: 0,
            tx,
        }
    }

    /// The latest resourceVersion.
    pub(crate) fn resource_version(&self) -> u64 {
        self.resource_version
    }

    /// Every kind served.
    pub(crate) fn types(&self) -> &[ResourceType] {
        &self.types
    }

    /// The kind served at `group/version` under `plural`.
    pub(crate) fn find_type(
        &self,
        group: &str,
        version: &str,
        plural: &str,
    ) -> Option<ResourceType> {
        self.types
            .iter()
            .find(|t| {
                t.group == group && t.plural == plural && t.versions.iter().any(|v| v == version)
            })
            .cloned()
    }

    /// The object under `key`.
    pub(crate) fn get(&self, key: &ObjectKey) -> Option<Arc<Value>> {
        self.objects.get(key).cloned()
    }

    /// The objects of one type (in `namespace`, or every one), ordered by namespace and name.
    pub(crate) fn list(
        &self,
        group: &str,
        plural: &str,
        namespace: Option<&str>,
    ) -> Vec<(ObjectKey, Arc<Value>)> {
        self.objects
            .iter()
            .filter(|(k, _)| k.group == group && k.plural == plural)
            .filter(|(k, _)| namespace.is_none_or(|ns| k.namespace == ns))
            .map(|(k, v)| (k.clone(), Arc::clone(v)))
            .collect()
    }

    /// Every object, for tests.
    pub(crate) fn all(&self) -> impl Iterator<Item = (&ObjectKey, &Arc<Value>)> {
        self.objects.iter()
    }

    fn next_resource_version(&mut self) -> u64 {
        self.resource_version += 1;
        self.resource_version
    }

    /// Stores a new object, stamping uid, resourceVersion, creationTimestamp and generation.
    pub(crate) fn create(
        &mut self,
        key: ObjectKey,
        mut object: Value,
    ) -> Result<Arc<Value>, WriteError> {
        if self.objects.contains_key(&key) {
            return Err(WriteError::Exists);
        }
        let resource_version = self.next_resource_version();
        self.created += 1;
        let meta = metadata(&mut object);
        meta.insert(
            "uid".to_owned(),
            json!(format!("10000000-0000-4000-8000-{:012x}", self.created)),
        );
        meta.insert(
            "resourceVersion".to_owned(),
            json!(resource_version.to_string()),
        );
        meta.insert("creationTimestamp".to_owned(), json!(clock::now_time()));
        meta.insert("generation".to_owned(), json!(1));
        let object = Arc::new(object);
        self.objects.insert(key.clone(), Arc::clone(&object));
        self.after_write(&key, Some(&object), None);
        self.record(
            resource_version,
            Change::Added,
            &key,
            Arc::clone(&object),
            None,
        );
        Ok(object)
    }

    /// Replaces the object under `key` with `change` applied to a copy, as one new version.
    /// Identity (uid, creationTimestamp) is kept; `generation` grows when `spec` changed.
    pub(crate) fn update(
        &mut self,
        key: &ObjectKey,
        change: impl FnOnce(&mut Value),
    ) -> Result<Arc<Value>, WriteError> {
        let previous = self.objects.get(key).cloned().ok_or(WriteError::NotFound)?;
        let mut object = Value::clone(&previous);
        change(&mut object);
        let keep = ["uid", "creationTimestamp", "name", "namespace"];
        let old_meta = previous.get("metadata").cloned().unwrap_or_default();
        let generation = old_meta
            .get("generation")
            .and_then(Value::as_i64)
            .unwrap_or(1);
        let spec_changed = object.get("spec") != previous.get("spec");
        let resource_version = self.next_resource_version();
        let meta = metadata(&mut object);
        for field in keep {
            if let Some(value) = old_meta.get(field) {
                meta.insert(field.to_owned(), value.clone());
            }
        }
        meta.insert(
            "resourceVersion".to_owned(),
            json!(resource_version.to_string()),
        );
        meta.insert(
            "generation".to_owned(),
            json!(if spec_changed {
                generation + 1
            } else {
                generation
            }),
        );
        let object = Arc::new(object);
        self.objects.insert(key.clone(), Arc::clone(&object));
        self.after_write(key, Some(&object), Some(&previous));
        self.record(
            resource_version,
            Change::Modified,
            key,
            Arc::clone(&object),
            Some(previous),
        );
        Ok(object)
    }

    /// Removes the object under `key`; a CRD takes its kind and objects with it.
    pub(crate) fn remove(&mut self, key: &ObjectKey) -> Result<Arc<Value>, WriteError> {
        let current = self.objects.remove(key).ok_or(WriteError::NotFound)?;
        let resource_version = self.next_resource_version();
        let mut object = Value::clone(&current);
        metadata(&mut object).insert(
            "resourceVersion".to_owned(),
            json!(resource_version.to_string()),
        );
        let object = Arc::new(object);
        self.record(
            resource_version,
            Change::Deleted,
            key,
            Arc::clone(&object),
            None,
        );
        self.after_write(key, None, Some(&current));
        Ok(object)
    }

    /// Keeps the served kinds in step with the stored CRDs.
    fn after_write(&mut self, key: &ObjectKey, now: Option<&Value>, before: Option<&Value>) {
        if key.group != CRD_GROUP || key.plural != CRD_RESOURCE {
            return;
        }
        if let Some(old) = before.and_then(crd_type) {
            self.types
                .retain(|t| !(t.group == old.group && t.plural == old.plural));
            if now.is_none() {
                let doomed: Vec<ObjectKey> = self
                    .objects
                    .keys()
                    .filter(|k| k.group == old.group && k.plural == old.plural)
                    .cloned()
                    .collect();
                for doomed in doomed {
                    let _ = self.remove(&doomed);
                }
            }
        }
        if let Some(new) = now.and_then(crd_type) {
            self.types
                .retain(|t| !(t.group == new.group && t.plural == new.plural));
            self.types.push(new);
        }
    }

    fn record(
        &mut self,
        resource_version: u64,
        change: Change,
        key: &ObjectKey,
        object: Arc<Value>,
        previous: Option<Arc<Value>>,
    ) {
        let json = Bytes::from(serde_json::to_vec(&*object).unwrap_or_default());
        let record = Arc::new(ObjectRecord {
            resource_version,
            change,
            group: key.group.clone(),
            plural: key.plural.clone(),
            object,
            previous,
            json,
        });
        if self.history.len() == HISTORY_CAPACITY
            && let Some(dropped) = self.history.pop_front()
        {
            self.oldest_resumable = dropped.resource_version;
        }
        self.history.push_back(Arc::clone(&record));
        // Nobody watching is not an error.
        let _ = self.tx.send(record);
    }

    /// The changes after `after` and a receiver for those to come, or 410 Gone.
    pub(crate) fn subscribe(&self, after: u64) -> Result<ObjectSubscription, Expired> {
        if after < self.oldest_resumable {
            return Err(Expired {
                requested: after,
                oldest: self.oldest_resumable,
            });
        }
        let start = self
            .history
            .partition_point(|record| record.resource_version <= after);
        Ok(ObjectSubscription {
            replay: self.history.range(start..).cloned().collect(),
            live: self.tx.subscribe(),
            resource_version: self.resource_version,
        })
    }
}

/// The object's `metadata` map, created when missing.
pub(crate) fn metadata(object: &mut Value) -> &mut serde_json::Map<String, Value> {
    if !object.is_object() {
        *object = json!({});
    }
    let Value::Object(map) = object else {
        unreachable!("made an object above")
    };
    let meta = map
        .entry("metadata")
        .or_insert_with(|| Value::Object(serde_json::Map::new()));
    if !meta.is_object() {
        *meta = Value::Object(serde_json::Map::new());
    }
    match meta {
        Value::Object(meta) => meta,
        _ => unreachable!("made an object above"),
    }
}

/// The kind a CRD defines, if it is well formed.
pub(crate) fn crd_type(crd: &Value) -> Option<ResourceType> {
    let spec = crd.get("spec")?;
    let names = spec.get("names")?;
    let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
    let group = text(spec.get("group"))?;
    let plural = text(names.get("plural"))?;
    let kind = text(names.get("kind"))?;
    let versions: Vec<&Value> = spec
        .get("versions")?
        .as_array()?
        .iter()
        .filter(|v| v.get("served").and_then(Value::as_bool).unwrap_or(true))
        .collect();
    let mut names_of: Vec<String> = versions
        .iter()
        .filter_map(|v| text(v.get("name")))
        .collect();
    // The storage version first: it is the one discovery prefers.
    if let Some(storage) = versions
        .iter()
        .find(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
        .and_then(|v| text(v.get("name")))
    {
        names_of.retain(|n| *n != storage);
        names_of.insert(0, storage);
    }
    if names_of.is_empty() {
        return None;
    }
    let status = versions
        .iter()
        .any(|v| v.pointer("/subresources/status").is_some());
    Some(ResourceType {
        group,
        singular: text(names.get("singular")).unwrap_or_else(|| kind.to_lowercase()),
        versions: names_of,
        plural,
        kind,
        namespaced: spec.get("scope").and_then(Value::as_str) != Some("Cluster"),
        status,
        elsewhere: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(group: &str, plural: &str, namespace: &str, name: &str) -> ObjectKey {
        ObjectKey {
            group: group.to_owned(),
            plural: plural.to_owned(),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        }
    }

    fn crd() -> Value {
        json!({
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": "widgets.example.com"},
            "spec": {
                "group": "example.com",
                "names": {"plural": "widgets", "kind": "Widget"},
                "scope": "Namespaced",
                "versions": [
                    {"name": "v1beta1", "served": true, "storage": false},
                    {"name": "v1", "served": true, "storage": true, "subresources": {"status": {}}},
                ],
            },
        })
    }

    #[test]
    fn a_crd_serves_its_kind_until_it_is_deleted_with_its_objects() {
        let mut resources = Resources::new();
        assert!(
            resources
                .find_type("example.com", "v1", "widgets")
                .is_none()
        );
        let crd_key = key(CRD_GROUP, CRD_RESOURCE, "", "widgets.example.com");
        resources.create(crd_key.clone(), crd()).expect("created");
        let widget = resources
            .find_type("example.com", "v1beta1", "widgets")
            .expect("served");
        assert_eq!(widget.versions, ["v1", "v1beta1"]);
        assert!(widget.namespaced && widget.status);
        let object_key = key("example.com", "widgets", "ns", "w");
        resources
            .create(object_key.clone(), json!({"metadata": {"name": "w"}}))
            .expect("created");
        resources.remove(&crd_key).expect("removed");
        assert!(
            resources
                .find_type("example.com", "v1", "widgets")
                .is_none()
        );
        assert!(resources.get(&object_key).is_none());
    }

    #[test]
    fn updates_keep_identity_and_count_generations() {
        let mut resources = Resources::new();
        let k = key("", "configmaps", "ns", "c");
        let created = resources
            .create(
                k.clone(),
                json!({"metadata": {"name": "c"}, "spec": {"a": 1}}),
            )
            .expect("created");
        let updated = resources
            .update(&k, |o| {
                o["spec"]["a"] = json!(2);
                o["metadata"]["uid"] = json!("forged");
            })
            .expect("updated");
        assert_eq!(updated["metadata"]["uid"], created["metadata"]["uid"]);
        assert_eq!(updated["metadata"]["generation"], 2);
        assert_eq!(
            resources.create(k, json!({})).err(),
            Some(WriteError::Exists)
        );
    }
}
