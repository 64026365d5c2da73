//! What a processing try does, decided before anything is done: the `kubernetes_pod` arguments
//! of its pod, the local files to upload before the pod starts, where each input comes from and
//! where each output goes.
//!
//! The pod follows the contract with `gust artifacts fetch|run`: an init container `gust-fetch`
//! (the Gust image) installs the `gust` binary into the emptyDir `gust-bin` and downloads every
//! input into the emptyDir `gust-processing` at `/opt/ml/processing`; the base container's
//! command runs under `/opt/gust/bin/gust artifacts run ... --`, which uploads the outputs after
//! the command exits 0 and writes their URIs to the XCom file. Credentials reach both containers
//! only as a Secret's keys (`envFrom` with the prefix `GUST_ARTIFACTS_`), never in arguments.
//!
//! Local files are staged: `code`, a `config` that is no URI, and inputs whose `source` is a
//! path relative to the DAG file's folder are uploaded under `<root>/<dag>/<run>/<task>/`
//! (`code/`, `config/`, `inputs/<name>/`) and fetched from there, so pods on a cluster read
//! them as they read any input.
//!
//! Pure but for looking at those local paths (is each a file or a folder; does a code folder
//! have its entry file): nothing is read, uploaded or started here.

use std::path::{Path, PathBuf};

use gust_artifacts::uri;
use gust_operators::ArgumentError;
use gust_operators::processing::{
    CODE_DIR, CONFIG_DIR, FOLDER_ENTRY_FILE, PROCESSING_DIR, PYTHON, ProcessingArgs,
    input_variable, is_uri, output_variable,
};
use indexmap::IndexMap;
use k8s_openapi::api::core::v1::{
    Container, EmptyDirVolumeSource, EnvFromSource, EnvVar, HostPathVolumeSource, SecretEnvSource,
    Volume, VolumeMount,
};
use serde_json::{Map, Value};

/// The init container that installs `gust` and downloads the inputs.
pub const FETCH_CONTAINER: &str = "gust-fetch";
/// The emptyDir holding `/opt/ml/processing`.
pub const PROCESSING_VOLUME: &str = "gust-processing";
/// The emptyDir the init container installs the `gust` binary into.
pub const BIN_VOLUME: &str = "gust-bin";
/// Where [`BIN_VOLUME`] is mounted.
pub const BIN_DIR: &str = "/opt/gust/bin";
/// The `gust` binary the base container's wrapper runs.
pub const RUN_BINARY: &str = "/opt/gust/bin/gust";
/// The hostPath volume of a local artifact store (the local pod runtime).
pub const STORE_VOLUME: &str = "gust-artifact-store";
/// The start of the names of the hostPath volumes of `file://` inputs and outputs outside the
/// store (the local pod runtime): `gust-local-0`, `gust-local-1`...
pub const LOCAL_VOLUME_PREFIX: &str = "gust-local-";
/// The XCom file the wrapper writes the outputs' URIs to (KPO's sidecar reads it).
pub const XCOM_FILE: &str = "/airflow/xcom/return.json";

/// The variable holding [`XCOM_FILE`]'s path in the step's container.
pub const XCOM_VARIABLE: &str = "GUST_XCOM_FILE";
/// The variable holding the code's folder in the pod, when `code` is given.
pub const CODE_VARIABLE: &str = "GUST_CODE_DIR";

/// The try a plan is for.
#[derive(Debug, Clone, Copy)]
pub struct Step<'a> {
    /// The DAG.
    pub dag_id: &'a str,
    /// The run.
    pub run_id: &'a str,
    /// The task.
    pub task_id: &'a str,
    /// Which instance of a mapped task (`-1`: not mapped): each instance's artifacts go under
    /// a `map_index=N` folder of the task's.
    pub map_index: i32,
    /// The DAG's file: relative `code` and `config` paths are relative to its folder.
    pub dag_file: &'a Path,
    /// Write the outputs' URIs as the try's XCom.
    pub do_xcom_push: bool,
}

/// Where the init container finds the `gust` binary it runs (and copies for the wrapper).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GustBinary {
    /// `gust` on the PATH of `[artifacts] gust_image`: pods on a cluster.
    InImage,
    /// This host's binary at this path (the local pod runtime). Its folder is mounted read-only
    /// into the init container at [`HOST_BIN_DIR`], so that a sandboxed container sees it
    /// wherever it lives (the sandbox's fresh `/tmp` would hide a binary built under `/tmp`).
    Host(std::path::PathBuf),
}

/// Where Kubernetes reads a container's termination message from (its default path).
const TERMINATION_LOG: &str = "/dev/termination-log";

/// The hostPath volume holding this host's `gust` binary ([`GustBinary::Host`]).
pub const HOST_BIN_VOLUME: &str = "gust-host-bin";
/// Where [`HOST_BIN_VOLUME`] is mounted in the init container.
pub const HOST_BIN_DIR: &str = "/opt/gust/host";

/// Where artifacts go and what the pod runs `gust` from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepSettings {
    /// The artifact root URI (`[artifacts] root`): code, config and default outputs go under
    /// `<root>/<dag_id>/<run_id>/<task_id>/`.
    pub root: String,
    /// The init container's image, which holds the `gust` binary (`[artifacts] gust_image`).
    pub gust_image: String,
    /// The `gust` binary the init container runs.
    pub gust: GustBinary,
    /// The Secret whose keys are the store's credentials, given to both containers as
    /// `GUST_ARTIFACTS_<key>` variables (none: the pod's own environment and instance
    /// credentials).
    pub credentials_secret: Option<String>,
}

/// A local file or folder to upload before the pod starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    /// The file or folder on this host.
    pub local: PathBuf,
    /// The URI it goes to (a folder's files under it, keeping relative paths).
    pub uri: String,
}

/// Everything a processing try does.
#[derive(Debug, Clone, PartialEq)]
pub struct StepPlan {
    /// The `kubernetes_pod` arguments of its pod.
    pub pod_args: Map<String, Value>,
    /// What to upload before the pod starts: `code`, a local `config` and inputs given as
    /// paths relative to the DAG.
    pub uploads: Vec<Upload>,
    /// Each input's name and the URI the pod reads it from.
    pub inputs: Vec<(String, String)>,
    /// Each output's name and the URI it is uploaded to (the try's XCom).
    pub outputs: IndexMap<String, String>,
}

/// Why a processing try cannot be planned.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// The arguments do not fit the operator.
    #[error(transparent)]
    Arguments(#[from] ArgumentError),
    /// `code`, `config` or an input's relative `source` names nothing readable on this host.
    #[error("`{argument}` {}: cannot be read", path.display())]
    Unreadable {
        /// `code`, `config` or `inputs[N].source`.
        argument: String,
        /// The path, resolved against the DAG file's folder.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A code folder without its entry file, and no `command` to run instead.
    #[error(
        "`code` {} is a folder without {FOLDER_ENTRY_FILE}: add it, or give a `command`",
        .0.display()
    )]
    NoEntryFile(PathBuf),
    /// The arguments use a name Gust gives to a part of the processing pod.
    #[error("{0} is Gust's own in a processing pod; give yours another name")]
    Reserved(String),
}

impl StepError {
    /// The error and its causes on one line, for a try's failure.
    #[must_use]
    pub fn one_line(&self) -> String {
        gust_artifacts::one_line(self)
    }
}

/// Plans a processing try from its rendered arguments.
pub fn plan(
    args: &Map<String, Value>,
    step: &Step<'_>,
    settings: &StepSettings,
) -> Result<StepPlan, StepError> {
    let parsed = ProcessingArgs::read(args)?;
    check_reserved(&parsed)?;
    let mut prefix = uri::join(&settings.root, &[step.dag_id, step.run_id, step.task_id]);
    if step.map_index >= 0 {
        prefix = uri::join(&prefix, &[&format!("map_index={}", step.map_index)]);
    }
    let mut uploads = Vec::new();
    // Every download of the init container: (container path, URI).
    let mut fetches: Vec<(String, String)> = Vec::new();

    let mut command = parsed.command.clone();
    if let Some(code) = &parsed.code {
        let staged = uri::join(&prefix, &["code"]);
        let local = local_file(code, step.dag_file);
        let (upload, kind) = stage("code", local, &staged)?;
        let entry = match kind {
            Kind::File => file_name(&upload.local),
            Kind::Folder => {
                if command.is_empty() && !upload.local.join(FOLDER_ENTRY_FILE).is_file() {
                    return Err(StepError::NoEntryFile(upload.local));
                }
                FOLDER_ENTRY_FILE.to_owned()
            }
        };
        uploads.push(upload);
        fetches.push((CODE_DIR.to_owned(), staged));
        if command.is_empty() {
            command = vec![PYTHON.to_owned(), format!("{CODE_DIR}/{entry}")];
        }
    }
    if let Some(config) = &parsed.config {
        if is_uri(config) {
            // Into the folder: an object keeps its name, a prefix its relative paths.
            fetches.push((format!("{CONFIG_DIR}/"), config.clone()));
        } else {
            let staged = uri::join(&prefix, &["config"]);
            let (upload, _) = stage("config", local_file(config, step.dag_file), &staged)?;
            uploads.push(upload);
            fetches.push((CONFIG_DIR.to_owned(), staged));
        }
    }
    let mut inputs: Vec<(String, String)> = Vec::new();
    for (i, input) in parsed.inputs.iter().enumerate() {
        // A relative path is a file or folder next to the DAG, staged like `code`; URIs and
        // absolute paths (a local store's objects) are read where they are.
        let source = if is_uri(&input.source) || Path::new(&input.source).is_absolute() {
            input.source.clone()
        } else {
            let staged = uri::join(&prefix, &["inputs", &input.name]);
            let local = local_file(&input.source, step.dag_file);
            let (upload, _) = stage(&format!("inputs[{i}].source"), local, &staged)?;
            let source = upload.uri.clone();
            uploads.push(upload);
            source
        };
        fetches.push((input.destination(), source.clone()));
        inputs.push((input.name.clone(), source));
    }
    let outputs: IndexMap<String, String> = parsed
        .outputs
        .iter()
        .map(|output| {
            let uri = output
                .destination
                .clone()
                .unwrap_or_else(|| uri::join(&prefix, &[&output.name]));
            (output.name.clone(), uri)
        })
        .collect();

    let mut pod = Pod::new(settings);
    if matches!(settings.gust, GustBinary::Host(_)) {
        let fetched = fetches.iter().map(|(_, uri)| uri);
        pod.bind_local_folders(settings, fetched, outputs.values());
    }
    let mut run = vec![RUN_BINARY.to_owned(), "artifacts".into(), "run".into()];
    if step.do_xcom_push {
        run.extend(["--xcom".to_owned(), XCOM_FILE.to_owned()]);
    }
    for output in &parsed.outputs {
        let uri = &outputs[&output.name];
        run.extend([
            "--output".to_owned(),
            format!("{}={}={uri}", output.name, output.source()),
        ]);
    }
    run.push("--".to_owned());
    run.extend(command);
    run.extend(parsed.pod.arguments.iter().cloned());

    let gust = match &settings.gust {
        GustBinary::InImage => "gust".to_owned(),
        GustBinary::Host(path) => format!(
            "{HOST_BIN_DIR}/{}",
            path.file_name()
                .map_or_else(|| "gust".into(), |n| n.to_string_lossy())
        ),
    };
    let mut fetch = vec![
        gust,
        "artifacts".into(),
        "fetch".into(),
        "--install".into(),
        BIN_DIR.into(),
        // The failure's reason (the URI it could not fetch) as the container's end.
        "--termination-log".into(),
        TERMINATION_LOG.into(),
    ];
    for (destination, uri) in &fetches {
        fetch.extend(["--input".to_owned(), format!("{destination}={uri}")]);
    }

    let mut env_vars = parsed.pod.env_vars.clone();
    if parsed.code.is_some() {
        env_vars.push(env(CODE_VARIABLE, CODE_DIR));
    }
    if parsed.config.is_some() {
        env_vars.push(env(&input_variable("config"), CONFIG_DIR));
    }
    env_vars.extend(
        parsed
            .inputs
            .iter()
            .map(|i| env(&input_variable(&i.name), &i.destination())),
    );
    env_vars.extend(
        parsed
            .outputs
            .iter()
            .map(|o| env(&output_variable(&o.name), &o.source())),
    );
    if step.do_xcom_push {
        // Where the step may write values of its own (a JSON object) for the XCom, beside its
        // outputs' URIs (the wrapper keeps the keys it finds there).
        env_vars.push(env(XCOM_VARIABLE, XCOM_FILE));
    }
    let mut env_from = parsed.pod.env_from.clone();
    env_from.extend(pod.credentials.iter().flatten().cloned());
    let mut volume_mounts = parsed.pod.volume_mounts.clone();
    volume_mounts.extend(pod.mounts.clone());
    let mut volumes = parsed.pod.volumes.clone();
    volumes.extend(pod.volumes);
    let fetcher = Container {
        name: FETCH_CONTAINER.to_owned(),
        image: Some(settings.gust_image.clone()),
        command: Some(fetch),
        volume_mounts: Some(pod.mounts),
        env_from: pod.credentials,
        // `fetch` writes its error (the URI it could not fetch) to the termination log, which
        // the try's failure quotes; should it die before writing, its log's tail stands in.
        termination_message_policy: Some("FallbackToLogsOnError".to_owned()),
        ..Container::default()
    };
    let mut fetcher = fetcher;
    if let GustBinary::Host(path) = &settings.gust
        && let Some(folder) = path.parent()
    {
        volumes.push(Volume {
            name: HOST_BIN_VOLUME.to_owned(),
            host_path: Some(HostPathVolumeSource {
                path: folder.display().to_string(),
                type_: Some("Directory".to_owned()),
            }),
            ..Volume::default()
        });
        fetcher
            .volume_mounts
            .get_or_insert_default()
            .push(VolumeMount {
                name: HOST_BIN_VOLUME.to_owned(),
                mount_path: HOST_BIN_DIR.to_owned(),
                read_only: Some(true),
                ..VolumeMount::default()
            });
    }
    let mut init_containers = vec![fetcher];
    init_containers.extend(parsed.pod.init_containers.iter().cloned());

    let mut pod_args = args.clone();
    for name in [
        "code",
        "command",
        "inputs",
        "outputs",
        "config",
        "arguments",
    ] {
        pod_args.remove(name);
    }
    pod_args.insert("cmds".to_owned(), json(&run));
    pod_args.insert("init_containers".to_owned(), json(&init_containers));
    pod_args.insert("volumes".to_owned(), json(&volumes));
    pod_args.insert("volume_mounts".to_owned(), json(&volume_mounts));
    pod_args.insert("env_vars".to_owned(), json(&env_vars));
    pod_args.insert("env_from".to_owned(), json(&env_from));
    // What the downloads did (and why one failed) belongs in the try's log.
    pod_args
        .entry("init_container_logs")
        .or_insert_with(|| Value::String(FETCH_CONTAINER.to_owned()));
    Ok(StepPlan {
        pod_args,
        uploads,
        inputs,
        outputs,
    })
}

/// What both containers share: the volumes, their mounts, the credentials.
struct Pod {
    volumes: Vec<Volume>,
    mounts: Vec<VolumeMount>,
    credentials: Option<Vec<EnvFromSource>>,
}

impl Pod {
    fn new(settings: &StepSettings) -> Self {
        let empty = |name: &str| Volume {
            name: name.to_owned(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        };
        let mount = |name: &str, path: &str| VolumeMount {
            name: name.to_owned(),
            mount_path: path.to_owned(),
            ..VolumeMount::default()
        };
        let mut volumes = vec![empty(PROCESSING_VOLUME), empty(BIN_VOLUME)];
        let mut mounts = vec![
            mount(PROCESSING_VOLUME, PROCESSING_DIR),
            mount(BIN_VOLUME, BIN_DIR),
        ];
        // A local store is a folder of this host: the local pod runtime's containers write to
        // it through a hostPath at the same path.
        if let Some(folder) = uri::local_path(&settings.root) {
            let folder = folder.display().to_string();
            volumes.push(Volume {
                name: STORE_VOLUME.to_owned(),
                host_path: Some(HostPathVolumeSource {
                    path: folder.clone(),
                    type_: Some("DirectoryOrCreate".to_owned()),
                }),
                ..Volume::default()
            });
            mounts.push(mount(STORE_VOLUME, &folder));
        }
        let credentials = settings.credentials_secret.as_ref().map(|name| {
            vec![EnvFromSource {
                prefix: Some(gust_artifacts::ENV_PREFIX.to_owned()),
                secret_ref: Some(SecretEnvSource {
                    name: name.clone(),
                    optional: None,
                }),
                ..EnvFromSource::default()
            }]
        });
        Self {
            volumes,
            mounts,
            credentials,
        }
    }
}

impl Pod {
    /// Binds, at the same paths, the folders of this host that `file://` (or absolute-path)
    /// inputs are read from and outputs written to, when the store does not hold them: the
    /// local pod runtime's sandbox shows containers only their volumes and a fresh `/tmp`.
    /// An input binds its folder (or, for an object or a prefix, the folder holding it) when
    /// it exists; one that does not is left for the fetch to report. An output binds its
    /// destination folder, made when missing.
    fn bind_local_folders<'u>(
        &mut self,
        settings: &StepSettings,
        inputs: impl Iterator<Item = &'u String>,
        outputs: impl Iterator<Item = &'u String>,
    ) {
        let mut bound: Vec<PathBuf> = uri::local_path(&settings.root).into_iter().collect();
        let mut folders: Vec<(PathBuf, &str)> = Vec::new();
        for input in inputs {
            let Some(path) = uri::local_path(input).filter(|p| p.is_absolute()) else {
                continue;
            };
            let folder = if path.is_dir() {
                Some(path)
            } else {
                path.parent().filter(|p| p.is_dir()).map(Path::to_path_buf)
            };
            folders.extend(folder.map(|f| (f, "Directory")));
        }
        for output in outputs {
            if let Some(path) = uri::local_path(output).filter(|p| p.is_absolute()) {
                folders.push((path, "DirectoryOrCreate"));
            }
        }
        // Outer folders first, so that a folder inside one already bound is skipped.
        folders.sort_by_key(|(path, _)| path.components().count());
        for (folder, kind) in folders {
            if folder.parent().is_none() || bound.iter().any(|b| folder.starts_with(b)) {
                continue; // `/` itself is never bound over the sandbox.
            }
            let name = format!("{LOCAL_VOLUME_PREFIX}{}", bound.len());
            let path = folder.display().to_string();
            self.volumes.push(Volume {
                name: name.clone(),
                host_path: Some(HostPathVolumeSource {
                    path: path.clone(),
                    type_: Some(kind.to_owned()),
                }),
                ..Volume::default()
            });
            self.mounts.push(VolumeMount {
                name,
                mount_path: path,
                ..VolumeMount::default()
            });
            bound.push(folder);
        }
    }
}

/// Names of the processing pod's own parts that the arguments must leave alone.
fn check_reserved(args: &ProcessingArgs) -> Result<(), StepError> {
    let own_volumes = [PROCESSING_VOLUME, BIN_VOLUME, STORE_VOLUME, HOST_BIN_VOLUME];
    if let Some(volume) = args
        .pod
        .volumes
        .iter()
        .find(|v| own_volumes.contains(&v.name.as_str()))
    {
        return Err(StepError::Reserved(format!("volume \"{}\"", volume.name)));
    }
    if let Some(volume) = args
        .pod
        .volumes
        .iter()
        .find(|v| v.name.starts_with(LOCAL_VOLUME_PREFIX))
    {
        return Err(StepError::Reserved(format!("volume \"{}\"", volume.name)));
    }
    if args
        .pod
        .init_containers
        .iter()
        .any(|c| c.name == FETCH_CONTAINER)
    {
        return Err(StepError::Reserved(format!(
            "init container \"{FETCH_CONTAINER}\""
        )));
    }
    if let Some(mount) = args
        .pod
        .volume_mounts
        .iter()
        .find(|m| m.mount_path.trim_end_matches('/') == BIN_DIR)
    {
        return Err(StepError::Reserved(format!(
            "mount path {}",
            mount.mount_path
        )));
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    File,
    Folder,
}

/// The upload of the local `path` under `staged`: a file to `<staged>/<its name>`, a folder's
/// files under `<staged>/`.
fn stage(argument: &str, path: PathBuf, staged: &str) -> Result<(Upload, Kind), StepError> {
    let kind = kind(argument, &path)?;
    let uri = match kind {
        Kind::File => uri::join(staged, &[&file_name(&path)]),
        Kind::Folder => staged.to_owned(),
    };
    Ok((Upload { local: path, uri }, kind))
}

fn kind(argument: &str, path: &Path) -> Result<Kind, StepError> {
    let unreadable = |source| StepError::Unreadable {
        argument: argument.to_owned(),
        path: path.to_owned(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(unreadable)?;
    if meta.is_dir() {
        Ok(Kind::Folder)
    } else if meta.is_file() {
        Ok(Kind::File)
    } else {
        Err(unreadable(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "neither a file nor a folder",
        )))
    }
}

/// `path` relative to the DAG file's folder, unless absolute.
fn local_file(path: &str, dag_file: &Path) -> PathBuf {
    let given = Path::new(path);
    if given.is_absolute() {
        return given.to_owned();
    }
    dag_file.parent().unwrap_or(Path::new(".")).join(given)
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn env(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: Some(value.to_owned()),
        value_from: None,
    }
}

/// A typed value as its manifest-form JSON (serializing `k8s_openapi` values cannot fail).
fn json<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests;
