//! Reading one object of any kind, for the Kubernetes sensors that `gust-sensors` pokes: the
//! cluster a task names (its arguments over its connection over `[kubernetes]`, as every non-pod
//! try resolves it, sharing this runtime's clients), the kind mapped to its resource by
//! discovery, then one GET. A poke is one read, so there is no watch to keep between pokes.
//! What discovery found is remembered per cluster and kind while Gust runs (a kind that is not
//! served is asked about again), so a poke is one request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use gust_operators::apply::ClusterArgs;
use kube::Api;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use kube::discovery::Scope;

use super::api_error::api_error;
use super::resource::{Undiscovered, discover, reach};
use super::{Inner, KubeExecutor};

/// Reads single objects on the clusters of a [`KubeExecutor`].
#[derive(Clone)]
pub struct ObjectReader {
    inner: Arc<Inner>,
    /// Discovery's answers, by cluster (as messages name it), connection and kind.
    kinds: Arc<Mutex<HashMap<KindKey, (ApiResource, Scope)>>>,
}

/// A cluster's label, the task's connection id, and the kind's group, version and kind.
type KindKey = (String, String, String, String, String);

/// What a read found.
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    /// The object, `None` when it does not exist.
    pub object: Option<serde_json::Value>,
    /// Where it was looked for: `namespace/name`, or `name` for a cluster-wide kind.
    pub place: String,
    /// How messages name the cluster.
    pub cluster: String,
}

/// Why an object could not be read; each message is one line saying how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// No cluster is configured or reachable for the task.
    #[error("{0}")]
    NoCluster(String),
    /// `api_version` is not of the form `group/version` or `version`.
    #[error("apiVersion \"{0}\" is not `group/version` (batch/v1) or `version` (v1)")]
    ApiVersion(String),
    /// The cluster does not serve the kind, or discovery failed.
    #[error("{0}")]
    Unserved(String),
    /// The GET failed (403 included: the message names `gust kubernetes rbac`).
    #[error("cannot get {kind} {place} on cluster {cluster}: {message}")]
    Get {
        /// The kind.
        kind: String,
        /// `namespace/name` or `name`.
        place: String,
        /// How messages name the cluster.
        cluster: String,
        /// The API server's message, code and reason.
        message: String,
    },
}

impl KubeExecutor {
    /// A reader of objects on this runtime's clusters.
    #[must_use]
    pub fn objects(&self) -> ObjectReader {
        ObjectReader {
            inner: Arc::clone(&self.inner),
            kinds: Arc::default(),
        }
    }
}

impl ObjectReader {
    fn known_kinds(&self) -> std::sync::MutexGuard<'_, HashMap<KindKey, (ApiResource, Scope)>> {
        // Single inserts and reads: a poisoned map is still whole.
        self.kinds.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The object `name` of `api_version`/`kind` on the cluster `cluster` names, in `namespace`
    /// (default: the connection's, `[kubernetes] namespace`, the cluster's) when the kind is
    /// namespaced.
    pub async fn get(
        &self,
        cluster: &ClusterArgs,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Found, ReadError> {
        let (group, version) = match api_version.split_once('/') {
            Some((group, version)) => (group, version),
            None => ("", api_version),
        };
        if version.is_empty()
            || version.contains('/')
            || (api_version.contains('/') && group.is_empty())
        {
            return Err(ReadError::ApiVersion(api_version.to_owned()));
        }
        let connected = reach(&self.inner, cluster, namespace)
            .await
            .map_err(|err| ReadError::NoCluster(err.to_string()))?;
        let gvk = GroupVersionKind::gvk(group, version, kind);
        let key = (
            connected.label.clone(),
            cluster.kubernetes_conn_id.clone(),
            group.to_owned(),
            version.to_owned(),
            kind.to_owned(),
        );
        let known = self.known_kinds().get(&key).cloned();
        let (resource, scope) = match known {
            Some(found) => found,
            None => {
                let found = discover(&connected.cluster.client, &gvk, &connected.label)
                    .await
                    .map_err(|err| match err {
                        Undiscovered::Missing(why) | Undiscovered::Failed(why) => {
                            ReadError::Unserved(why)
                        }
                    })?;
                self.known_kinds().insert(key, found.clone());
                found
            }
        };
        let client = connected.cluster.client.clone();
        let (api, place): (Api<DynamicObject>, String) = match scope {
            Scope::Namespaced => (
                Api::namespaced_with(client, &connected.namespace, &resource),
                format!("{}/{name}", connected.namespace),
            ),
            Scope::Cluster => (Api::all_with(client, &resource), name.to_owned()),
        };
        let object = api.get_opt(name).await.map_err(|err| ReadError::Get {
            kind: kind.to_owned(),
            place: place.clone(),
            cluster: connected.label.clone(),
            message: api_error(&err),
        })?;
        let object = object
            .map(serde_json::to_value)
            .transpose()
            .map_err(|err| ReadError::Get {
                kind: kind.to_owned(),
                place: place.clone(),
                cluster: connected.label.clone(),
                message: format!("the object cannot be read: {err}"),
            })?;
        Ok(Found {
            object,
            place,
            cluster: connected.label,
        })
    }
}
