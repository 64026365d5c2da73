//! Pods left behind: when a scheduler takes charge of DAGs (at start-up, or from a scheduler
//! that died), every pod Gust manages for those DAGs in the namespaces it uses whose try is no
//! longer live (its outcome was recorded but a crash cut its clean-up short, or it was
//! marked failed while no scheduler ran) is deleted. Pods kept on purpose carry
//! `already_checked=True` and are left alone.

use std::collections::HashSet;
use std::sync::Arc;

use gust_executor::{SweepScope, TryKey};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{DeleteParams, ListParams};

use super::Inner;
use super::cleanup::CHECKED_LABEL;
use super::cluster::ClusterChoice;
use crate::build::names::safe_label_value;
use crate::build::{MANAGED_BY_LABEL, TryLabels, try_key_labels, try_labels};

/// A try as its pod's labels name it (label-safe values).
type LabelKey = Vec<(String, String)>;

fn label_key(key: &TryKey) -> LabelKey {
    try_labels(TryLabels {
        dag_id: key.dag_id.as_str(),
        task_id: key.task_id.as_str(),
        run_id: key.run_id.as_str(),
        try_number: key.try_number.0,
        map_index: key.map_index,
    })
}

fn pod_key(pod: &Pod) -> Option<LabelKey> {
    try_key_labels(pod.metadata.labels.as_ref()?)
}

/// Deletes the managed pods of `scope`'s DAGs in the cluster and namespaces tries use whose try
/// is not live. Pods of other DAGs belong to other schedulers.
pub async fn sweep(inner: Arc<Inner>, scope: SweepScope) {
    let live: HashSet<LabelKey> = scope.live.iter().map(label_key).collect();
    let dags: HashSet<String> = scope
        .dags
        .iter()
        .map(|dag| safe_label_value(dag.as_str()))
        .collect();
    let mut places: Vec<(ClusterChoice, Option<String>)> = vec![(
        inner.config.cluster.clone(),
        inner.config.pod_defaults.namespace.clone(),
    )];
    for connection in inner.config.connections.get().values() {
        places.push((connection.cluster.clone(), connection.namespace.clone()));
    }
    let mut seen = HashSet::new();
    for (choice, namespace) in places {
        // No cluster configured means no pods to sweep.
        let Ok(cluster) = inner.clusters.get(&choice).await else {
            continue;
        };
        let namespace = namespace.unwrap_or_else(|| cluster.namespace.clone());
        if !seen.insert((choice, namespace.clone())) {
            continue;
        }
        let api: Api<Pod> = Api::namespaced(cluster.client.clone(), &namespace);
        let selector = format!(
            "{}={},{CHECKED_LABEL}!=True",
            MANAGED_BY_LABEL.0, MANAGED_BY_LABEL.1
        );
        let Ok(pods) = api.list(&ListParams::default().labels(&selector)).await else {
            continue;
        };
        for pod in pods.items {
            let Some(key) = pod_key(&pod) else { continue };
            let in_scope = key
                .iter()
                .any(|(name, value)| name == "dag_id" && dags.contains(value));
            if !in_scope || live.contains(&key) {
                continue;
            }
            let name = pod.metadata.name.clone().unwrap_or_default();
            tracing::info!(pod = %name, namespace = %namespace, "deleting a pod left by a try that is over");
            let _ = api.delete(&name, &DeleteParams::default()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pods_labels_name_its_try() {
        let key = TryKey {
            dag_id: gust_core::ids::DagId::new("etl").unwrap(),
            run_id: gust_core::ids::RunId::new("scheduled__2024-01-01T00:00:00+00:00").unwrap(),
            task_id: gust_core::ids::TaskId::new("load").unwrap(),
            map_index: gust_core::mapping::UNMAPPED,
            try_number: gust_core::ids::TryNumber(2),
        };
        let labels: std::collections::BTreeMap<String, String> =
            label_key(&key).into_iter().collect();
        let pod = Pod {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                labels: Some(labels),
                ..Default::default()
            },
            ..Default::default()
        };
        assert_eq!(pod_key(&pod), Some(label_key(&key)));
        assert_eq!(
            label_key(&key)[2].1,
            safe_label_value("scheduled__2024-01-01T00:00:00+00:00")
        );
    }
}
