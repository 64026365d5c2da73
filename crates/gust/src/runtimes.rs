//! The runtimes tries run on, wired from the configuration: local processes for bash tasks,
//! and for `kubernetes_pod` tasks either a cluster (`[kubernetes] runtime = "cluster"`, the
//! default) or the local pod runtime.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use gust_core::clock::Clock;
use gust_exec_local::{LocalConfig, LocalExecutor};
use gust_executor::{Executor, Routed, TryEvent};
use gust_kube::build::PodDefaults;
use gust_kube::runtime::{ClusterChoice, ConnectionSettings, KubeConfig, KubeExecutor};
use tokio::sync::mpsc;

use crate::config::{Config, PodRuntime};

/// The runtimes of one process, and how to stop them.
pub struct Runtimes {
    /// What the scheduler starts tries on.
    pub executor: Arc<dyn Executor>,
    local: LocalExecutor,
    kube: Option<KubeExecutor>,
}

impl Runtimes {
    /// Runtimes reporting on `events`; `state_dir` keeps local tries' records (none for
    /// one-off runs); `local_pods` forces the local pod runtime.
    #[must_use]
    pub fn new(
        config: &Config,
        state_dir: Option<PathBuf>,
        local_pods: bool,
        connections: HashMap<String, ConnectionSettings>,
        events: mpsc::Sender<TryEvent>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let run_pods = local_pods || config.kubernetes.runtime == PodRuntime::Local;
        let local = LocalExecutor::new(
            LocalConfig {
                parallelism: config.core.parallelism,
                state_dir,
                run_pods,
                ..LocalConfig::default()
            },
            events.clone(),
            clock.clone(),
        );
        if run_pods {
            return Self {
                executor: Arc::new(local.clone()),
                local,
                kube: None,
            };
        }
        let kube = KubeExecutor::new(kube_config(config, connections), events, clock);
        let executor =
            Routed::new(Arc::new(local.clone())).route("kubernetes_pod", Arc::new(kube.clone()));
        Self {
            executor: Arc::new(executor),
            local,
            kube: Some(kube),
        }
    }

    /// Stops every runtime: local tries are killed; pods are left to be re-attached.
    pub async fn shutdown(&self) {
        self.local.shutdown().await;
        if let Some(kube) = &self.kube {
            kube.shutdown().await;
        }
    }
}

fn kube_config(config: &Config, connections: HashMap<String, ConnectionSettings>) -> KubeConfig {
    let k = &config.kubernetes;
    KubeConfig {
        cluster: ClusterChoice {
            in_cluster: k.in_cluster,
            config_file: k.config_file.clone(),
            context: k.cluster_context.clone(),
        },
        pod_defaults: PodDefaults {
            namespace: k.namespace.clone(),
            xcom_sidecar_image: k.xcom_sidecar_image.clone(),
            ..PodDefaults::default()
        },
        connections,
    }
}

/// The `kubernetes` connections in the metadata database, when there is one. A connection whose
/// extras cannot be read is reported and left out (its tasks then use `[kubernetes]`).
pub async fn kubernetes_connections(
    config: &Config,
    home: &Path,
) -> HashMap<String, ConnectionSettings> {
    let url = &config.database.url;
    if url
        .strip_prefix("sqlite://")
        .is_some_and(|path| !Path::new(path).exists())
    {
        return HashMap::new();
    }
    let Ok(store) = gust_store::Store::connect(url).await else {
        return HashMap::new();
    };
    let mut found = HashMap::new();
    if store.check().await.is_ok()
        && let Ok(ids) = store.connection_ids().await
    {
        let kubernetes: Vec<String> = ids
            .into_iter()
            .filter(|(_, conn_type)| conn_type == "kubernetes")
            .map(|(id, _)| id)
            .collect();
        if !kubernetes.is_empty() {
            match crate::commands::secret_key(config, home) {
                Ok(key) => {
                    for id in kubernetes {
                        let Ok(Some(conn)) = store.connection(&id, &key).await else {
                            continue;
                        };
                        let extra = conn.extra.as_ref().map(|e| e.expose().to_owned());
                        match ConnectionSettings::from_extra(extra.as_deref()) {
                            Ok(settings) => {
                                found.insert(id, settings);
                            }
                            Err(why) => {
                                eprintln!("warning: connection \"{id}\" is not used: {why}")
                            }
                        }
                    }
                }
                Err(err) => eprintln!("warning: kubernetes connections are not used: {err:#}"),
            }
        }
    }
    store.close().await;
    found
}
