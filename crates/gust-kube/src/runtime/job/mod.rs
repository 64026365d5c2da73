//! The cluster Job runtime: [`JobExecutor`] runs `kubernetes_job` and `kueue_job` tries as
//! batch/v1 Jobs (`follow.rs`), and `kubernetes_delete_job` / `kubernetes_patch_job` tries as
//! calls on a Job (`manage.rs`). It shares the pod runtime's clusters, configuration, clock and
//! shutdown; Jobs and their pods are followed with one watch each per namespace (`fanout.rs`),
//! one tokio task per try and no thread. Like the pod runtime it reports outcomes and never
//! writes task state; a Job a try waited for is deleted or kept (`on_finish_action`) only once
//! the outcome is recorded, and the sweep at start-up deletes the followed Jobs of tries that
//! are over.

mod fanout;
mod follow;
mod manage;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use gust_executor::running::RunningTries;
use gust_executor::try_log::LogWriter;
use gust_executor::{
    Executor, FailureReason, LaunchError, LaunchSpec, SweepScope, TryEvent, TryKey, TryOutcome,
};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use tokio::sync::mpsc;

use super::{Inner, KubeExecutor};
use crate::build::job::CHECKED_LABEL;
use crate::build::names::safe_label_value;
use crate::build::{PodDefaults, TryLabels, try_key_labels, try_labels};
use crate::runtime::api_error::api_error;
use crate::runtime::cluster::{Cluster, ClusterChoice};

/// The operators this runtime runs.
pub const JOB_OPERATORS: [&str; 4] = [
    "kubernetes_job",
    "kueue_job",
    "kubernetes_delete_job",
    "kubernetes_patch_job",
];

/// The label the Job controller puts on a Job's pods, naming the Job.
const JOB_NAME_LABEL: &str = "job-name";
/// The selector of the Job watch: every Job Gust manages.
const JOB_SELECTOR: &str = "app.kubernetes.io/managed-by=gust";
/// The selector of the pod watch: every pod of a Job started by a pod-building operator.
const JOB_POD_SELECTOR: &str = "job-name,kubernetes_pod_operator=True";

/// Runs the tries of one of [`JOB_OPERATORS`] on a cluster, beside the pod runtime it shares
/// clusters with; [`JobExecutor::routes`] gives one per operator, sharing their watches.
#[derive(Clone)]
pub struct JobExecutor {
    jobs: Arc<Jobs>,
    running: Arc<RunningTries>,
    /// Whether this one sweeps (one of the operators' runtimes does, for all of them).
    sweeps: bool,
}

/// What every Job try shares.
struct Jobs {
    inner: Arc<Inner>,
    /// Each followed Job, by name.
    job_watch: fanout::Fanout<Job>,
    /// Each followed Job's pods, by the Job's name.
    pod_watch: fanout::Fanout<Pod>,
    /// Finished tries' Jobs, cleaned up once their outcome is recorded.
    leftovers: Mutex<HashMap<TryKey, Leftover>>,
}

/// A finished try's Job, waiting for its outcome to be recorded.
struct Leftover {
    api: Api<Job>,
    name: String,
    delete: bool,
    log_path: std::path::PathBuf,
}

impl Jobs {
    fn leftovers(&self) -> MutexGuard<'_, HashMap<TryKey, Leftover>> {
        // Single inserts and removes only: a poisoned map is still whole.
        self.leftovers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl JobExecutor {
    /// A runtime for each of [`JOB_OPERATORS`], sharing `pods`' clusters and one watch per
    /// namespace, reporting on `events`. Each counts and kills only its own tries, so that a
    /// router holding all four counts every try once.
    #[must_use]
    pub fn routes(
        pods: &KubeExecutor,
        events: &mpsc::Sender<TryEvent>,
    ) -> Vec<(&'static str, Arc<dyn Executor>)> {
        let inner = Arc::clone(&pods.inner);
        let job_watch = fanout::Fanout::new(
            JOB_SELECTOR,
            |job: &Job| job.metadata.name.clone(),
            inner.shutdown.clone(),
            inner.tasks.clone(),
        );
        let pod_watch = fanout::Fanout::new(
            JOB_POD_SELECTOR,
            |pod: &Pod| pod.metadata.labels.as_ref()?.get(JOB_NAME_LABEL).cloned(),
            inner.shutdown.clone(),
            inner.tasks.clone(),
        );
        let jobs = Arc::new(Jobs {
            inner: Arc::clone(&inner),
            job_watch,
            pod_watch,
            leftovers: Mutex::new(HashMap::new()),
        });
        JOB_OPERATORS
            .iter()
            .enumerate()
            .map(|(i, operator)| {
                let running = Arc::new(RunningTries::new(
                    inner.shutdown.clone(),
                    inner.tasks.clone(),
                    events.clone(),
                ));
                let runtime: Arc<dyn Executor> = Arc::new(Self {
                    jobs: Arc::clone(&jobs),
                    running,
                    sweeps: i == 0,
                });
                (*operator, runtime)
            })
            .collect()
    }

    fn spawn(&self, spec: LaunchSpec, adopt: bool) -> Result<(), LaunchError> {
        let handle = self.running.register(&spec.key)?;
        let jobs = Arc::clone(&self.jobs);
        let running = Arc::clone(&self.running);
        let key = spec.key.clone();
        let try_run = async move {
            let mut log = match LogWriter::open(&spec.log_path, jobs.inner.clock.as_ref()).await {
                Ok(log) => log,
                Err(err) => {
                    return TryOutcome::Failed(FailureReason::Log(format!(
                        "{}: {err}",
                        spec.log_path.display()
                    )));
                }
            };
            let outcome = match spec.operator.as_str() {
                "kubernetes_delete_job" => {
                    manage::delete(&jobs, &running, &spec, &handle, &mut log).await
                }
                "kubernetes_patch_job" => manage::patch(&jobs, &running, &spec, &mut log).await,
                _ => follow::run(&jobs, &running, &spec, &handle, adopt, &mut log).await,
            };
            let _ = log.line("gust", &outcome.summary()).await;
            let _ = log.flush().await;
            outcome
        };
        self.running.spawn(key, try_run);
        Ok(())
    }
}

impl Executor for JobExecutor {
    fn start(&self, spec: LaunchSpec) -> Result<(), LaunchError> {
        if !JOB_OPERATORS.contains(&spec.operator.as_str()) {
            return Err(LaunchError::UnknownOperator(spec.operator));
        }
        self.spawn(spec, false)
    }

    fn kill(&self, key: &TryKey, reason: &str) {
        self.running.kill(key, reason);
    }

    fn running(&self) -> usize {
        self.running.len()
    }

    fn adopt(&self, spec: LaunchSpec) {
        let key = spec.key.clone();
        if let Err(err) = self.spawn(spec, true) {
            self.running.spawn(key, async move {
                TryOutcome::Failed(FailureReason::Lost(err.to_string()))
            });
        }
    }

    fn release(&self, key: &TryKey) {
        let Some(leftover) = self.jobs.leftovers().remove(key) else {
            return;
        };
        let jobs = Arc::clone(&self.jobs);
        self.jobs.inner.tasks.spawn(async move {
            let Leftover {
                api,
                name,
                delete,
                log_path,
            } = leftover;
            let line = if delete {
                match api.delete(&name, &background()).await {
                    Ok(_) => format!("deleted job {name} and its pods"),
                    Err(err) => format!("could not delete job {name}: {}", api_error(&err)),
                }
            } else {
                let patch = serde_json::json!({"metadata": {"labels": {CHECKED_LABEL: "True"}}});
                match api
                    .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                {
                    Ok(_) => format!("kept job {name} (on_finish_action)"),
                    Err(err) => format!("could not mark kept job {name}: {}", api_error(&err)),
                }
            };
            if let Ok(mut log) = LogWriter::open(&log_path, jobs.inner.clock.as_ref()).await {
                let _ = log.line("gust", &line).await;
                let _ = log.flush().await;
            }
        });
    }

    fn sweep(&self, scope: SweepScope) {
        if !self.sweeps {
            return;
        }
        let jobs = Arc::clone(&self.jobs);
        self.jobs.inner.tasks.spawn(sweep(jobs, scope));
    }
}

/// Deletes the Jobs of `scope`'s DAGs a try followed whose try is no longer live (a crash cut
/// their clean-up short). Jobs whose try did not wait for them, and Jobs kept on purpose, carry
/// `already_checked=True` and are left alone; other DAGs' Jobs are other schedulers'.
async fn sweep(jobs: Arc<Jobs>, scope: SweepScope) {
    let live: HashSet<Vec<(String, String)>> = scope
        .live
        .iter()
        .map(|key| try_labels(labels_of(key)))
        .collect();
    let dags: HashSet<String> = scope
        .dags
        .iter()
        .map(|dag| safe_label_value(dag.as_str()))
        .collect();
    let inner = &jobs.inner;
    let mut places: Vec<(ClusterChoice, Option<String>)> = vec![(
        inner.config.cluster.clone(),
        inner.config.pod_defaults.namespace.clone(),
    )];
    for connection in inner.config.connections.get().values() {
        places.push((connection.cluster.clone(), connection.namespace.clone()));
    }
    let mut seen = HashSet::new();
    for (choice, namespace) in places {
        let Ok(cluster) = inner.clusters.get(&choice).await else {
            continue;
        };
        let namespace = namespace.unwrap_or_else(|| cluster.namespace.clone());
        if !seen.insert((choice, namespace.clone())) {
            continue;
        }
        let api: Api<Job> = Api::namespaced(cluster.client.clone(), &namespace);
        let selector = format!("{JOB_SELECTOR},{CHECKED_LABEL}!=True");
        let Ok(list) = api.list(&ListParams::default().labels(&selector)).await else {
            continue;
        };
        for job in list.items {
            let Some(labels) = &job.metadata.labels else {
                continue;
            };
            let key = try_key_labels(labels);
            let in_scope = labels.get("dag_id").is_some_and(|dag| dags.contains(dag));
            if !in_scope || key.is_none_or(|key| live.contains(&key)) {
                continue;
            }
            let name = job.metadata.name.clone().unwrap_or_default();
            tracing::info!(job = %name, namespace = %namespace, "deleting a job left by a try that is over");
            let _ = api.delete(&name, &background()).await;
        }
    }
}

fn labels_of(key: &TryKey) -> TryLabels<'_> {
    TryLabels {
        dag_id: key.dag_id.as_str(),
        task_id: key.task_id.as_str(),
        run_id: key.run_id.as_str(),
        try_number: key.try_number.0,
        map_index: key.map_index,
    }
}

/// Deletion taking the Job's pods with it (`kubectl delete job` does the same).
fn background() -> DeleteParams {
    DeleteParams::background()
}

/// The cluster a task names (its connection, or `[kubernetes]`), and the defaults its pods
/// get there: the connection's namespace and sidecar image before the configuration's.
async fn cluster_for(
    inner: &Inner,
    conn_id: &str,
    task: ClusterChoice,
) -> Result<(ClusterChoice, Cluster, PodDefaults), TryOutcome> {
    let connection = inner.config.connection(conn_id);
    let base = connection
        .as_ref()
        .map_or(&inner.config.cluster, |c| &c.cluster);
    let choice = ClusterChoice {
        in_cluster: task.in_cluster.or(base.in_cluster),
        config_file: task.config_file.or_else(|| base.config_file.clone()),
        context: task.context.or_else(|| base.context.clone()),
    };
    let cluster = inner
        .clusters
        .get(&choice)
        .await
        .map_err(|err| TryOutcome::Failed(FailureReason::Spawn(err.to_string())))?;
    let mut defaults = PodDefaults {
        own_namespace: Some(cluster.namespace.clone()),
        ..inner.config.pod_defaults.clone()
    };
    if let Some(connection) = connection {
        if connection.namespace.is_some() {
            defaults.namespace.clone_from(&connection.namespace);
        }
        if let Some(image) = &connection.xcom_sidecar_image {
            defaults.xcom_sidecar_image.clone_from(image);
        }
    }
    Ok((choice, cluster, defaults))
}

/// Where a Job stands, from its conditions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobState {
    /// Suspended: no pod runs until it is resumed (by a patch, or by Kueue admitting it).
    Suspended,
    /// Running (or about to).
    Active,
    /// Every completion succeeded.
    Complete,
    /// It failed, with the condition's reason and message.
    Failed {
        /// `BackoffLimitExceeded`, `DeadlineExceeded`...
        reason: String,
        /// The controller's message.
        message: String,
    },
}

/// Where `job` stands.
#[must_use]
pub fn job_state(job: &Job) -> JobState {
    let conditions = job
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or_default();
    let holds = |type_: &str| {
        conditions
            .iter()
            .find(|c| c.type_ == type_ && c.status == "True")
    };
    if let Some(failed) = holds("Failed") {
        return JobState::Failed {
            reason: failed.reason.clone().unwrap_or_default(),
            message: failed.message.clone().unwrap_or_default(),
        };
    }
    if holds("Complete").is_some() {
        return JobState::Complete;
    }
    let suspended = job.spec.as_ref().and_then(|s| s.suspend) == Some(true);
    if suspended || holds("Suspended").is_some() {
        return JobState::Suspended;
    }
    JobState::Active
}

/// Whether the API server dropped `spec.suspend` from a Job created suspended: `sent` asked for
/// it, `created` (the server's answer) lacks it. API servers before Kubernetes 1.21 (and 1.21
/// with the `SuspendJob` feature gate off) know no such field, drop it without a word, and the
/// Job starts at once.
#[must_use]
pub fn suspend_dropped(sent: &Job, created: &Job) -> bool {
    let suspend = |job: &Job| job.spec.as_ref().and_then(|s| s.suspend);
    suspend(sent) == Some(true) && suspend(created).is_none()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn job(status: serde_json::Value, suspend: bool) -> Job {
        serde_json::from_value(json!({
            "metadata": {"name": "j"},
            "spec": {"suspend": suspend, "template": {}},
            "status": status,
        }))
        .unwrap()
    }

    #[test]
    fn a_jobs_conditions_say_where_it_stands() {
        assert_eq!(job_state(&job(json!({}), false)), JobState::Active);
        assert_eq!(job_state(&job(json!({}), true)), JobState::Suspended);
        let complete = json!({"conditions": [{"type": "Complete", "status": "True"}]});
        assert_eq!(job_state(&job(complete, false)), JobState::Complete);
        let failed = json!({"conditions": [
            {"type": "Suspended", "status": "False"},
            {"type": "Failed", "status": "True", "reason": "DeadlineExceeded",
             "message": "Job was active longer than specified deadline"}]});
        assert_eq!(
            job_state(&job(failed, false)),
            JobState::Failed {
                reason: "DeadlineExceeded".into(),
                message: "Job was active longer than specified deadline".into()
            }
        );
        let resumed = json!({"conditions": [{"type": "Suspended", "status": "False"}]});
        assert_eq!(job_state(&job(resumed, false)), JobState::Active);
    }

    #[test]
    fn a_suspend_the_server_left_out_is_seen_as_dropped() {
        let unsuspended: Job = serde_json::from_value(json!({"spec": {"template": {}}})).unwrap();
        assert!(suspend_dropped(&job(json!({}), true), &unsuspended));
        assert!(!suspend_dropped(
            &job(json!({}), true),
            &job(json!({}), true)
        ));
        assert!(!suspend_dropped(&job(json!({}), false), &unsuspended));
        assert!(!suspend_dropped(&unsuspended, &unsuspended));
    }
}
