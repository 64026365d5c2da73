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

/// A `kubernetes` connection's settings (`kubernetes_conn_id`), from its extras as Airflow's
/// Kubernetes connection stores them: `in_cluster`, `kube_config_path`, `cluster_context`,
/// `namespace`, `xcom_sidecar_container_image` (each also accepted with Airflow's older
/// `extra__kubernetes__` prefix).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectionSettings {
    /// The cluster it names.
    pub cluster: ClusterChoice,
    /// Its namespace for pods.
    pub namespace: Option<String>,
    /// Its XCom sidecar image.
    pub xcom_sidecar_image: Option<String>,
}

impl ConnectionSettings {
    /// Reads a connection's extras (a JSON object); the error names the bad key.
    pub fn from_extra(extra: Option<&str>) -> Result<Self, String> {
        let extra: serde_json::Map<String, serde_json::Value> = match extra {
            None => return Ok(Self::default()),
            Some(text) if text.trim().is_empty() => return Ok(Self::default()),
            Some(text) => serde_json::from_str(text)
                .map_err(|err| format!("its extra is not a JSON object: {err}"))?,
        };
        let get = |key: &str| {
            extra
                .get(key)
                .or_else(|| extra.get(&format!("extra__kubernetes__{key}")))
                .filter(|v| !v.is_null() && v.as_str() != Some(""))
        };
        let text = |key: &str| -> Result<Option<String>, String> {
            match get(key) {
                None => Ok(None),
                Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
                Some(other) => Err(format!("extra \"{key}\" must be text, not {other}")),
            }
        };
        let in_cluster = match get("in_cluster") {
            None => None,
            Some(serde_json::Value::Bool(b)) => Some(*b),
            Some(serde_json::Value::String(s)) => {
                Some(matches!(s.to_lowercase().as_str(), "true" | "1" | "yes"))
            }
            Some(other) => {
                return Err(format!(
                    "extra \"in_cluster\" must be true or false, not {other}"
                ));
            }
        };
        if get("kube_config").is_some() {
            return Err(
                "extra \"kube_config\" (an inline kubeconfig) is not supported; save it to a file \
                 and set \"kube_config_path\""
                    .to_owned(),
            );
        }
        Ok(Self {
            cluster: ClusterChoice {
                in_cluster,
                config_file: text("kube_config_path")?.map(PathBuf::from),
                context: text("cluster_context")?,
            },
            namespace: text("namespace")?,
            xcom_sidecar_image: text("xcom_sidecar_container_image")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn airflow_kubernetes_connection_extras_are_read() {
        let settings = ConnectionSettings::from_extra(Some(
            r#"{"kube_config_path": "/etc/kube/config", "cluster_context": "prod",
                "extra__kubernetes__namespace": "ml", "in_cluster": "false"}"#,
        ))
        .unwrap();
        assert_eq!(
            settings.cluster.config_file,
            Some(PathBuf::from("/etc/kube/config"))
        );
        assert_eq!(settings.cluster.context.as_deref(), Some("prod"));
        assert_eq!(settings.cluster.in_cluster, Some(false));
        assert_eq!(settings.namespace.as_deref(), Some("ml"));
        assert!(ConnectionSettings::from_extra(Some(r#"{"in_cluster": 3}"#)).is_err());
        assert!(
            ConnectionSettings::from_extra(Some(r#"{"kube_config": "{}"}"#))
                .unwrap_err()
                .contains("kube_config_path")
        );
        assert_eq!(
            ConnectionSettings::from_extra(None).unwrap(),
            ConnectionSettings::default()
        );
    }

    #[test]
    fn task_arguments_override_the_connection() {
        let args: PodArgs = PodArgs::read(
            serde_json::json!({"cluster_context": "staging"})
                .as_object()
                .unwrap(),
        )
        .unwrap();
        let base = ClusterChoice {
            in_cluster: None,
            config_file: Some(PathBuf::from("/k")),
            context: Some("prod".into()),
        };
        let choice = ClusterChoice::for_task(&args, &base);
        assert_eq!(choice.context.as_deref(), Some("staging"));
        assert_eq!(choice.config_file, Some(PathBuf::from("/k")));
    }
}
