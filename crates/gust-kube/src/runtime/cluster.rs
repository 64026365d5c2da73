//! Which cluster a try's pod goes to, and a client for it: the in-cluster service account or a
//! kubeconfig (file and context), chosen by the task's arguments over the `[kubernetes]`
//! configuration, one client per distinct choice.

use std::collections::HashMap;
use std::path::PathBuf;

use gust_operators::kubernetes_pod::PodArgs;
use kube::config::{KubeConfigOptions, Kubeconfig};
use tokio::sync::Mutex;

/// How to reach a cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct ClusterChoice {
    /// Use the pod's service account (`Some(true)`), never (`Some(false)`), or whatever is
    /// found (`None`: the kubeconfig, else the service account).
    pub in_cluster: Option<bool>,
    /// A kubeconfig file (default: `KUBECONFIG`, then `~/.kube/config`).
    pub config_file: Option<PathBuf>,
    /// The kubeconfig context (default: its current context).
    pub context: Option<String>,
}

impl ClusterChoice {
    /// The task's arguments over `defaults` (the `[kubernetes]` configuration).
    #[must_use]
    pub fn for_task(args: &PodArgs, defaults: &Self) -> Self {
        Self {
            in_cluster: args.in_cluster.or(defaults.in_cluster),
            config_file: args
                .config_file
                .as_ref()
                .map(PathBuf::from)
                .or_else(|| defaults.config_file.clone()),
            context: args
                .cluster_context
                .clone()
                .or_else(|| defaults.context.clone()),
        }
    }
}

/// A connected cluster.
#[derive(Clone)]
pub struct Cluster {
    /// The client.
    pub client: kube::Client,
    /// The namespace its configuration names (the kubeconfig context's, or the service
    /// account's), used when neither the task nor `[kubernetes]` names one.
    pub namespace: String,
}

/// Why no client could be made.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "no Kubernetes cluster to run pods on ({0}); set [kubernetes] config_file and \
     cluster_context (or the task's config_file / cluster_context), run Gust in a pod with \
     in_cluster, or use the local pod runtime ([kubernetes] runtime = \"local\")"
)]
pub struct NoCluster(pub String);

/// Clients made so far, by choice.
#[derive(Default)]
pub struct Clusters {
    known: Mutex<HashMap<ClusterChoice, Cluster>>,
}

impl Clusters {
    /// The client for `choice`, made on first use.
    pub async fn get(&self, choice: &ClusterChoice) -> Result<Cluster, NoCluster> {
        let mut known = self.known.lock().await;
        if let Some(cluster) = known.get(choice) {
            return Ok(cluster.clone());
        }
        let config = config_for(choice).await?;
        let namespace = config.default_namespace.clone();
        let client = kube::Client::try_from(config).map_err(|err| NoCluster(err.to_string()))?;
        let cluster = Cluster { client, namespace };
        known.insert(choice.clone(), cluster.clone());
        Ok(cluster)
    }

    /// Uses `cluster` for `choice` (tests, and callers that built their own client).
    pub async fn insert(&self, choice: ClusterChoice, cluster: Cluster) {
        self.known.lock().await.insert(choice, cluster);
    }
}

async fn config_for(choice: &ClusterChoice) -> Result<kube::Config, NoCluster> {
    let options = KubeConfigOptions {
        context: choice.context.clone(),
        ..KubeConfigOptions::default()
    };
    match (choice.in_cluster, &choice.config_file) {
        (Some(true), _) => kube::Config::incluster().map_err(|err| NoCluster(err.to_string())),
        (_, Some(file)) => {
            let kubeconfig = Kubeconfig::read_from(file)
                .map_err(|err| NoCluster(format!("{}: {err}", file.display())))?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &options)
                .await
                .map_err(|err| NoCluster(format!("{}: {err}", file.display())))
        }
        (Some(false), None) => kube::Config::from_kubeconfig(&options)
            .await
            .map_err(|err| NoCluster(err.to_string())),
        (None, None) if choice.context.is_some() => kube::Config::from_kubeconfig(&options)
            .await
            .map_err(|err| NoCluster(err.to_string())),
        (None, None) => kube::Config::infer()
            .await
            .map_err(|err| NoCluster(err.to_string())),
    }
}
