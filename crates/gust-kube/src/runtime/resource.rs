//! `kubernetes_apply`, `kubernetes_delete_resource` and `kueue_install` tries: manifests applied
//! to a cluster with server-side apply (field manager `gust`), or deleted, each kind mapped to
//! its resource by discovery so that any kind works, custom ones included. Applying is
//! idempotent, so a try adopted after a restart simply applies again.
//!
//! Also the connection handling every non-pod Kubernetes try shares ([`connect`]): the task's
//! cluster arguments over its connection over `[kubernetes]`, as for pods.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use gust_executor::running::{RunningTries, TryHandle};
use gust_executor::try_log::LogWriter;
use gust_executor::{
    Executor, FailureReason, LaunchError, LaunchSpec, TryEvent, TryKey, TryOutcome,
};
use gust_operators::apply::{ClusterArgs, InlineManifests, KueueInstallArgs, ResourceArgs};
use kube::Api;
use kube::api::{ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::discovery::{self, Scope};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::cluster::{Cluster, ClusterChoice};
use super::{Inner, KubeExecutor};
use crate::documents::{self, Document, Source};

/// The operators this runtime runs.
pub const RESOURCE_OPERATORS: [&str; 3] = [
    "kubernetes_apply",
    "kubernetes_delete_resource",
    "kueue_install",
];

/// Runs the tries of one of [`RESOURCE_OPERATORS`] on a cluster, beside the pod runtime it
/// shares clusters and configuration with.
#[derive(Clone)]
pub struct ResourceExecutor {
    inner: Arc<Inner>,
    running: Arc<RunningTries>,
}

impl ResourceExecutor {
    /// A runtime for each of [`RESOURCE_OPERATORS`], sharing `pods`' clusters, reporting on
    /// `events`; each counts and kills only its own tries.
    #[must_use]
    pub fn routes(
        pods: &KubeExecutor,
        events: &mpsc::Sender<TryEvent>,
    ) -> Vec<(&'static str, Arc<dyn Executor>)> {
        RESOURCE_OPERATORS
            .iter()
            .map(|operator| {
                let inner = Arc::clone(&pods.inner);
                let running = Arc::new(RunningTries::new(
                    inner.shutdown.clone(),
                    inner.tasks.clone(),
                    events.clone(),
                ));
                let runtime: Arc<dyn Executor> = Arc::new(Self { inner, running });
                (*operator, runtime)
            })
            .collect()
    }
}

impl Executor for ResourceExecutor {
    fn start(&self, spec: LaunchSpec) -> Result<(), LaunchError> {
        if !RESOURCE_OPERATORS.contains(&spec.operator.as_str()) {
            return Err(LaunchError::UnknownOperator(spec.operator));
        }
        let handle = self.running.register(&spec.key)?;
        let key = spec.key.clone();
        let try_run = run(
            Arc::clone(&self.inner),
            Arc::clone(&self.running),
            spec,
            handle,
        );
        self.running.spawn(key, try_run);
        Ok(())
    }

    fn kill(&self, key: &TryKey, reason: &str) {
        self.running.kill(key, reason);
    }

    fn running(&self) -> usize {
        self.running.len()
    }

    /// Applying and deleting are idempotent: an adopted try does its work again.
    fn adopt(&self, spec: LaunchSpec) {
        let key = spec.key.clone();
        if let Err(err) = self.start(spec) {
            self.running.spawn(key, async move {
                TryOutcome::Failed(FailureReason::Lost(err.to_string()))
            });
        }
    }

    fn release(&self, _key: &TryKey) {}
}

/// The field manager Gust applies as.
pub const FIELD_MANAGER: &str = "gust";
/// How long a kind that a CRD applied earlier in the same try defines may take to be served.
const CRD_ESTABLISH_WAIT: Duration = Duration::from_secs(10);
/// How many times a transient API error (429, 5xx) is retried.
const TRANSIENT_RETRIES: u32 = 5;

/// A connected cluster and what a try needs to address it.
pub(super) struct Connected {
    /// The client.
    pub(super) cluster: Cluster,
    /// The namespace for namespaced objects that name none.
    pub(super) namespace: String,
    /// How messages name the cluster.
    pub(super) label: String,
}

/// The cluster a non-pod try uses: its arguments over its connection over `[kubernetes]`.
pub(super) async fn connect(
    inner: &Inner,
    args: &ClusterArgs,
    namespace: Option<&str>,
) -> Result<Connected, TryOutcome> {
    reach(inner, args, namespace)
        .await
        .map_err(|err| TryOutcome::Failed(FailureReason::Spawn(err.to_string())))
}

/// [`connect`], saying why there is no cluster.
pub(super) async fn reach(
    inner: &Inner,
    args: &ClusterArgs,
    namespace: Option<&str>,
) -> Result<Connected, super::NoCluster> {
    let connection = inner.config.connection(&args.kubernetes_conn_id);
    let base = connection
        .as_ref()
        .map_or(&inner.config.cluster, |c| &c.cluster);
    let choice = ClusterChoice {
        in_cluster: args.in_cluster.or(base.in_cluster),
        config_file: args
            .config_file
            .as_ref()
            .map(std::path::PathBuf::from)
            .or_else(|| base.config_file.clone()),
        context: args
            .cluster_context
            .clone()
            .or_else(|| base.context.clone()),
    };
    let cluster = inner.clusters.get(&choice).await?;
    let namespace = namespace
        .filter(|ns| !ns.is_empty())
        .map(str::to_owned)
        .or_else(|| connection.and_then(|c| c.namespace))
        .or_else(|| inner.config.pod_defaults.namespace.clone())
        .unwrap_or_else(|| cluster.namespace.clone());
    let label = match (&choice.context, &choice.config_file, choice.in_cluster) {
        (Some(context), _, _) => format!("\"{context}\""),
        (None, _, Some(true)) => "(in-cluster)".to_owned(),
        (None, Some(file), _) => format!("of {}", file.display()),
        (None, None, _) => "(the kubeconfig's current context)".to_owned(),
    };
    Ok(Connected {
        cluster,
        namespace,
        label,
    })
}

/// What a try does with its manifests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Apply,
    Delete,
}

/// Runs one `kubernetes_apply`, `kubernetes_delete_resource` or `kueue_install` try.
async fn run(
    inner: Arc<Inner>,
    running: Arc<RunningTries>,
    spec: LaunchSpec,
    handle: TryHandle,
) -> TryOutcome {
    let mut log = match LogWriter::open(&spec.log_path, inner.clock.as_ref()).await {
        Ok(log) => log,
        Err(err) => {
            return TryOutcome::Failed(FailureReason::Log(format!(
                "{}: {err}",
                spec.log_path.display()
            )));
        }
    };
    let work = work(&inner, &running, &spec, &mut log);
    let deadline = spec.execution_timeout;
    let outcome = tokio::select! {
        outcome = work => outcome,
        () = handle.cancel.cancelled() => TryOutcome::Failed(FailureReason::Killed(handle.reason())),
        () = sleep_for(deadline) => TryOutcome::Failed(FailureReason::TimedOut(deadline.unwrap_or_default())),
    };
    let _ = log.line("gust", &outcome.summary()).await;
    let _ = log.flush().await;
    outcome
}

async fn sleep_for(limit: Option<Duration>) {
    match limit {
        Some(limit) => tokio::time::sleep(limit).await,
        None => std::future::pending().await,
    }
}

async fn work(
    inner: &Arc<Inner>,
    running: &RunningTries,
    spec: &LaunchSpec,
    log: &mut LogWriter<'_>,
) -> TryOutcome {
    let invalid = |message: String| TryOutcome::Failed(FailureReason::InvalidArguments(message));
    let (action, documents, cluster_args, namespace, origin) = match spec.operator.as_str() {
        "kueue_install" => {
            let args = match KueueInstallArgs::read(&spec.args) {
                Ok(args) => args,
                Err(err) => return invalid(err.to_string()),
            };
            let documents = match kueue_manifests(inner, &args) {
                Ok(documents) => documents,
                Err(message) => return invalid(message),
            };
            let origin = format!("kueue_version {}", args.kueue_version);
            (Action::Apply, documents, args.cluster(), None, origin)
        }
        operator => {
            let args = match ResourceArgs::read(&spec.args) {
                Ok(args) => args,
                Err(err) => return invalid(err.to_string()),
            };
            let documents = match manifests(&args, &spec.dag_file) {
                Ok(documents) => documents,
                Err(err) => return invalid(err.to_string()),
            };
            let action = if operator == "kubernetes_delete_resource" {
                Action::Delete
            } else {
                Action::Apply
            };
            let origin = match &args.yaml_conf_file {
                Some(file) if args.yaml_conf.is_none() => format!("yaml_conf_file {}", file.trim()),
                _ => "yaml_conf".to_owned(),
            };
            (
                action,
                documents,
                args.cluster(),
                args.namespace.clone(),
                origin,
            )
        }
    };
    let connected = match connect(inner, &cluster_args, namespace.as_deref()).await {
        Ok(connected) => connected,
        Err(outcome) => return outcome,
    };
    running.started(&spec.key).await;
    let result = match action {
        Action::Apply => apply_all(&connected, &documents, log).await,
        Action::Delete => delete_all(&connected, &documents, log).await,
    };
    match result {
        Ok(()) => TryOutcome::Succeeded { xcom: None },
        Err(message) => TryOutcome::Failed(FailureReason::Pod(format!("{origin}: {message}"))),
    }
}

/// The task's manifests: `yaml_conf` (text or objects) or `yaml_conf_file`.
pub fn manifests(
    args: &ResourceArgs,
    dag_file: &Path,
) -> Result<Vec<Document>, documents::DocumentError> {
    match (&args.yaml_conf, &args.yaml_conf_file) {
        (Some(InlineManifests::Text(text)), _) => {
            documents::parse(text, &Source::Argument("yaml_conf"))
        }
        (Some(InlineManifests::Objects(objects)), _) => documents::from_values(
            objects
                .iter()
                .cloned()
                .map(serde_json::Value::Object)
                .collect(),
            &Source::Argument("yaml_conf"),
        ),
        (None, Some(file)) => documents::read_file(file.trim(), dag_file),
        (None, None) => Ok(Vec::new()),
    }
}

/// The Kueue release's manifests: `kueue-<version>.yaml` in `[kubernetes] kueue_manifests_folder`.
fn kueue_manifests(inner: &Inner, args: &KueueInstallArgs) -> Result<Vec<Document>, String> {
    let Some(folder) = &inner.config.kueue_manifests_folder else {
        return Err(format!(
            "kueue_version {}: no Kueue manifests folder; download the release's manifests.yaml \
             as {} into a folder and set [kubernetes] kueue_manifests_folder to it (Gust never \
             downloads at run time)",
            args.kueue_version,
            args.file_name()
        ));
    };
    let path = folder.join(args.file_name());
    if !path.is_file() {
        let mut known: Vec<String> = std::fs::read_dir(folder)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .filter_map(|e| e.file_name().to_str().map(str::to_owned))
                    .filter_map(|n| {
                        n.strip_prefix("kueue-")?
                            .strip_suffix(".yaml")
                            .map(str::to_owned)
                    })
                    .collect()
            })
            .unwrap_or_default();
        known.sort();
        return Err(format!(
            "kueue_version {}: {} does not exist (versions in {}: {}); download the release's \
             manifests.yaml under that name",
            args.kueue_version,
            path.display(),
            folder.display(),
            if known.is_empty() {
                "none".to_owned()
            } else {
                known.join(", ")
            }
        ));
    }
    documents::read_file(&path.to_string_lossy(), Path::new("/")).map_err(|err| err.to_string())
}

/// Where a document came from, for messages.
fn place(document: &Document) -> String {
    format!(
        "document {} (line {}) {} {}",
        document.document,
        document.line,
        document.kind(),
        document.name()
    )
}

/// Why a kind cannot be used on this cluster.
pub(super) enum Undiscovered {
    /// The cluster does not serve it.
    Missing(String),
    /// Discovery itself failed.
    Failed(String),
}

/// Maps kinds to resources by discovery, remembering what it found.
struct Kinds<'a> {
    connected: &'a Connected,
    known: HashMap<(String, String), (ApiResource, Scope)>,
    /// Whether this try applied a CRD, whose kinds may take a moment to be served.
    applied_crd: bool,
}

impl<'a> Kinds<'a> {
    fn new(connected: &'a Connected) -> Self {
        Self {
            connected,
            known: HashMap::new(),
            applied_crd: false,
        }
    }

    async fn resource(
        &mut self,
        document: &Document,
    ) -> Result<(ApiResource, Scope), Undiscovered> {
        let key = (
            document.api_version().to_owned(),
            document.kind().to_owned(),
        );
        if let Some(found) = self.known.get(&key) {
            return Ok(found.clone());
        }
        let (group, version) = match document.api_version().split_once('/') {
            Some((group, version)) => (group, version),
            None => ("", document.api_version()),
        };
        let gvk = GroupVersionKind::gvk(group, version, document.kind());
        let give_up = Instant::now() + CRD_ESTABLISH_WAIT;
        let mut wait = Duration::from_millis(100);
        loop {
            let found = discover(&self.connected.cluster.client, &gvk, &self.connected.label).await;
            match found {
                Ok(found) => {
                    self.known.insert(key, found.clone());
                    return Ok(found);
                }
                Err(Undiscovered::Missing(_)) if self.applied_crd && Instant::now() < give_up => {
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(1));
                }
                Err(other) => return Err(other),
            }
        }
    }
}

/// The resource serving `gvk`, or why there is none.
pub(super) async fn discover(
    client: &kube::Client,
    gvk: &GroupVersionKind,
    cluster: &str,
) -> Result<(ApiResource, Scope), Undiscovered> {
    let api_version = gvk.api_version();
    match discovery::pinned_kind(client, gvk).await {
        Ok((resource, caps)) => Ok((resource, caps.scope)),
        Err(kube::Error::Api(status)) if status.code == 404 => {
            Err(Undiscovered::Missing(if gvk.group.is_empty() {
                format!("cluster {cluster} does not serve apiVersion {api_version}")
            } else {
                format!(
                    "cluster {cluster} does not serve {api_version}: the CRD defining {} is not \
                     installed (apply it first, in an earlier document or task)",
                    gvk.kind
                )
            }))
        }
        Err(kube::Error::Discovery(_)) => Err(Undiscovered::Missing(format!(
            "cluster {cluster} has no kind {} in {api_version}; check `kind` and `apiVersion`{}",
            gvk.kind,
            if gvk.group.is_empty() {
                String::new()
            } else {
                " (or install the CRD that defines it)".to_owned()
            }
        ))),
        Err(kube::Error::Api(status)) if status.code == 403 => Err(Undiscovered::Failed(format!(
            "forbidden to read the API's kinds on cluster {cluster}: {}",
            status.message
        ))),
        Err(err) => Err(Undiscovered::Failed(format!(
            "cannot reach cluster {cluster}: {err}"
        ))),
    }
}

fn api_for(
    connected: &Connected,
    resource: &ApiResource,
    scope: &Scope,
    namespace: &str,
) -> Api<DynamicObject> {
    match scope {
        Scope::Namespaced => {
            Api::namespaced_with(connected.cluster.client.clone(), namespace, resource)
        }
        Scope::Cluster => Api::all_with(connected.cluster.client.clone(), resource),
    }
}

/// One line for a failed API call: what, where, and how to fix it.
fn api_failure(document: &Document, verb: &str, namespace: &str, err: &kube::Error) -> String {
    let what = format!("cannot {verb} {} {}", document.kind(), document.name());
    match err {
        kube::Error::Api(status) if status.code == 403 => format!(
            "{what} in namespace {namespace}: forbidden ({}); grant Gust's service account the \
             right with `gust kubernetes rbac --dags-folder ...`",
            status.message
        ),
        kube::Error::Api(status) if status.code == 422 => {
            format!("{what}: the cluster says it is invalid: {}", status.message)
        }
        kube::Error::Api(status) => format!("{what}: {} ({})", status.message, status.code),
        other => format!("{what}: {other}"),
    }
}

fn is_transient(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(status) if matches!(status.code, 429 | 500 | 502 | 503 | 504))
}

/// Applies every document in order; the first failure ends the try.
pub(super) async fn apply_all(
    connected: &Connected,
    documents: &[Document],
    log: &mut LogWriter<'_>,
) -> Result<(), String> {
    let mut kinds = Kinds::new(connected);
    for document in documents {
        let (resource, scope) = kinds.resource(document).await.map_err(|why| match why {
            Undiscovered::Missing(why) | Undiscovered::Failed(why) => {
                format!("{}: {why}", place(document))
            }
        })?;
        let namespace = document
            .namespace()
            .unwrap_or(&connected.namespace)
            .to_owned();
        let mut object = document.object.clone();
        if matches!(scope, Scope::Namespaced) {
            object["metadata"]["namespace"] = serde_json::json!(namespace);
        }
        let object: DynamicObject = serde_json::from_value(object)
            .map_err(|err| format!("{}: not a Kubernetes object: {err}", place(document)))?;
        let api = api_for(connected, &resource, &scope, &namespace);
        let params = PatchParams::apply(FIELD_MANAGER).force();
        let mut attempts = 0;
        let applied = loop {
            match api
                .patch(document.name(), &params, &Patch::Apply(&object))
                .await
            {
                Err(err) if is_transient(&err) && attempts < TRANSIENT_RETRIES => {
                    attempts += 1;
                    tokio::time::sleep(Duration::from_millis(200) * 2u32.pow(attempts)).await;
                }
                other => break other,
            }
        };
        let applied = applied.map_err(|err| {
            format!(
                "{}: {}",
                place(document),
                api_failure(document, "apply", &namespace, &err)
            )
        })?;
        let place_name = match scope {
            Scope::Namespaced => format!("{namespace}/{}", document.name()),
            Scope::Cluster => document.name().to_owned(),
        };
        let generation = applied.metadata.generation.unwrap_or(1);
        let _ = log
            .line(
                "gust",
                &format!(
                    "applied {} {place_name} (server-side, field manager {FIELD_MANAGER}, generation {generation})",
                    document.kind()
                ),
            )
            .await;
        if resource.group == "apiextensions.k8s.io" && resource.kind == "CustomResourceDefinition" {
            kinds.applied_crd = true;
        }
    }
    let _ = log.flush().await;
    Ok(())
}

/// Deletes every document's object, last first (objects before the CRDs defining them); an
/// object already gone, or whose kind the cluster does not serve, is not an error.
pub(super) async fn delete_all(
    connected: &Connected,
    documents: &[Document],
    log: &mut LogWriter<'_>,
) -> Result<(), String> {
    let mut kinds = Kinds::new(connected);
    for document in documents.iter().rev() {
        let (resource, scope) = match kinds.resource(document).await {
            Ok(found) => found,
            Err(Undiscovered::Missing(why)) => {
                let _ = log
                    .line(
                        "gust",
                        &format!("{}: nothing to delete: {why}", place(document)),
                    )
                    .await;
                continue;
            }
            Err(Undiscovered::Failed(why)) => return Err(format!("{}: {why}", place(document))),
        };
        let namespace = document
            .namespace()
            .unwrap_or(&connected.namespace)
            .to_owned();
        let api = api_for(connected, &resource, &scope, &namespace);
        match api
            .delete(document.name(), &DeleteParams::background())
            .await
        {
            Ok(_) => {
                let _ = log
                    .line(
                        "gust",
                        &format!("deleted {} {}", document.kind(), document.name()),
                    )
                    .await;
            }
            Err(kube::Error::Api(status)) if status.code == 404 => {
                let _ = log
                    .line(
                        "gust",
                        &format!("{} {} is already gone", document.kind(), document.name()),
                    )
                    .await;
            }
            Err(err) => {
                return Err(format!(
                    "{}: {}",
                    place(document),
                    api_failure(document, "delete", &namespace, &err)
                ));
            }
        }
    }
    let _ = log.flush().await;
    Ok(())
}
