//! The runtimes tries run on, wired from the configuration: local processes for bash tasks,
//! and for `kubernetes_pod` tasks either a cluster (`[kubernetes] runtime = "cluster"`, the
//! default) or the local pod runtime.

use std::path::PathBuf;
use std::sync::Arc;

use gust_core::clock::Clock;
use gust_exec_local::{LocalConfig, LocalExecutor};
use gust_executor::{Executor, Routed, TryEvent};
use gust_kube::build::PodDefaults;
use gust_kube::runtime::{ClusterChoice, KubeConfig, KubeExecutor};
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
        let kube = KubeExecutor::new(kube_config(config), events, clock);
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

fn kube_config(config: &Config) -> KubeConfig {
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
    }
}
