//! The local pod runtime: a `kubernetes_pod` try run on this machine, without a cluster.
//!
//! The pod is built exactly as for a cluster (`gust_kube::build`), then its init containers run
//! one after the other and its containers side by side, each as a host process with the
//! container's command, arguments, environment and working folder. `emptyDir` volumes are
//! folders of the try, `hostPath` volumes the host's own; mount paths (and
//! `/dev/termination-log`) in commands, arguments and environment values are rewritten to
//! those folders. The XCom sidecar is not run: its file is read directly. Images are not
//! pulled and nothing is isolated: this is for developing pod DAGs on a laptop or in CI.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use gust_executor::{FailureReason, LaunchSpec, TryOutcome};
use gust_kube::build::{PodDefaults, PodRequest, TryLabels, XCOM_SIDECAR_NAME, build_pod};
use gust_operators::kubernetes_pod::PodArgs;
use k8s_openapi::api::core::v1::{Container, Pod};

use crate::output::{Decoder, LogWriter};
use crate::process::Plan;
use crate::sandbox;

/// Where Kubernetes lets a container leave a message about how it ended.
const TERMINATION_LOG: &str = "/dev/termination-log";
/// Written by the script when an init container fails, naming it and its exit code.
const INIT_FAILED_FILE: &str = "init-failed";

/// Why a pod cannot run locally.
fn refuse(message: String) -> TryOutcome {
    TryOutcome::Failed(FailureReason::Pod(message))
}

/// The plan of a pod try: the pod's containers as one script.
pub async fn plan(
    spec: &LaunchSpec,
    secrets: &gust_executor::Current<Secrets>,
    sandbox: bool,
    log: &mut LogWriter<'_>,
) -> Result<Plan, TryOutcome> {
    // The Secrets in force now, kept for the whole try (connections changed later reach the
    // next try, as a cluster reads a Secret when it starts a container).
    let current = secrets.get();
    let mut secrets = std::borrow::Cow::Borrowed(&*current);
    // A Python try's own Secret (its workload and DAG bundle), for this try alone.
    let worker = spec.context.worker_pod.as_deref();
    if let Some(worker) = worker
        && let Some(data) = &worker.secret_data
    {
        secrets
            .to_mut()
            .insert(worker.secret_name.clone(), data.clone());
    }
    let secrets = &*secrets;
    let args = PodArgs::read(&spec.args)
        .map_err(|err| TryOutcome::Failed(FailureReason::InvalidArguments(err.to_string())))?;
    let template = gust_kube::template::load(&args, &spec.dag_file)
        .map_err(|err| TryOutcome::Failed(FailureReason::InvalidArguments(err.to_string())))?;
    let unique = gust_kube::build::names::random_suffix();
    let defaults = PodDefaults::default();
    let pod = build_pod(&PodRequest {
        args: &args,
        labels: TryLabels {
            dag_id: spec.key.dag_id.as_str(),
            task_id: spec.key.task_id.as_str(),
            run_id: spec.key.run_id.as_str(),
            try_number: spec.key.try_number.0,
            map_index: spec.key.map_index,
        },
        template_file: template.as_ref(),
        do_xcom_push: spec.do_xcom_push,
        unique: &unique,
        defaults: &defaults,
    })
    .map_err(|err| TryOutcome::Failed(FailureReason::InvalidArguments(err.to_string())))?;
    let name = pod.metadata.name.clone().unwrap_or_default();
    let _ = log
        .line(
            "gust",
            &format!(
                "local pod runtime: running pod {name}'s containers as processes on this host \
                 (images are not pulled, containers are not isolated)"
            ),
        )
        .await;

    let root = tempfile::Builder::new()
        .prefix("gust-pod-")
        .tempdir()
        .map_err(|err| refuse(format!("no temporary folder for the pod: {err}")))?;
    let sandboxed = sandbox && sandbox::available();
    let _ = log
        .line(
            "gust",
            if sandboxed {
                "each container runs in a bwrap sandbox: the host's files read-only, the pod's volumes at their mount paths"
            } else {
                "without a bwrap sandbox, mount paths in commands, arguments and variables are rewritten to the pod's folders on this host"
            },
        )
        .await;
    let layout = Layout::new(root.path(), &pod, secrets, sandboxed)?;
    let mut values = Values::default();
    let script = script(&pod, &args, &layout, secrets, &mut values)?;
    let finish_layout = layout.clone();
    let do_xcom_push = spec.do_xcom_push;
    // Nothing is pulled or scheduled here: a worker's containers start right after this, so
    // it can be heard of from now on.
    if let Some(worker) = worker {
        worker.running.mark();
    }
    Ok(Plan {
        script,
        env: Some(values.0),
        clear_env: false,
        cwd: layout.root.clone(),
        decoder: Decoder::utf8(),
        render: if worker.is_some() {
            gust_executor::task_sdk::log_line
        } else {
            std::convert::identity
        },
        what: format!("local pod {name}"),
        folders: vec![root],
        scratch: None,
        finish: Box::new(move |code, _| finish(code, &args, do_xcom_push, &finish_layout)),
        watchdog: None,
    })
}

/// The try's folders: one per volume, one per container's termination log.
#[derive(Debug, Clone)]
struct Layout {
    root: PathBuf,
    volumes: BTreeMap<String, PathBuf>,
    /// Containers run in a bwrap sandbox with volumes at their mount paths (else paths in
    /// commands are rewritten to the host folders).
    sandboxed: bool,
}

impl Layout {
    fn new(root: &Path, pod: &Pod, secrets: &Secrets, sandboxed: bool) -> Result<Self, TryOutcome> {
        let mut volumes = BTreeMap::new();
        let spec = pod.spec.as_ref();
        for volume in spec.and_then(|s| s.volumes.as_ref()).into_iter().flatten() {
            let path = if volume.empty_dir.is_some() {
                root.join("volumes").join(&volume.name)
            } else if let Some(host) = &volume.host_path {
                PathBuf::from(&host.path)
            } else if let Some(source) = &volume.secret {
                let dir = root.join("volumes").join(&volume.name);
                let name = source.secret_name.clone().unwrap_or_default();
                write_secret(&dir, secrets, &name, source.items.as_deref())?;
                dir
            } else {
                return Err(refuse(format!(
                    "the local pod runtime cannot provide volume \"{}\": it provides emptyDir, \
                     hostPath and Secret volumes only; run this task on a cluster",
                    volume.name
                )));
            };
            std::fs::create_dir_all(&path)
                .map_err(|err| refuse(format!("cannot make {}: {err}", path.display())))?;
            volumes.insert(volume.name.clone(), path);
        }
        for dir in ["termination", "work"] {
            std::fs::create_dir_all(root.join(dir))
                .map_err(|err| refuse(format!("cannot make the pod's folders: {err}")))?;
        }
        Ok(Self {
            root: root.to_owned(),
            volumes,
            sandboxed,
        })
    }

    fn xcom_file(&self) -> Option<PathBuf> {
        self.volumes.get("xcom").map(|dir| dir.join("return.json"))
    }

    fn termination_log(&self, container: &str) -> PathBuf {
        self.root.join("termination").join(container)
    }

    /// Mount paths of `container` and the folders they stand for, longest first.
    fn rewrites(&self, container: &Container) -> Result<Vec<(String, String)>, TryOutcome> {
        let mut rewrites = Vec::new();
        for mount in container.volume_mounts.iter().flatten() {
            let Some(dir) = self.volumes.get(&mount.name) else {
                return Err(refuse(format!(
                    "container \"{}\" mounts volume \"{}\", which the pod does not have",
                    container.name, mount.name
                )));
            };
            let dir = match &mount.sub_path {
                Some(sub) if !sub.is_empty() => dir.join(sub),
                _ => dir.clone(),
            };
            rewrites.push((mount.mount_path.clone(), dir.display().to_string()));
        }
        let termination = container
            .termination_message_path
            .clone()
            .unwrap_or_else(|| TERMINATION_LOG.to_owned());
        rewrites.push((
            termination,
            self.termination_log(&container.name).display().to_string(),
        ));
        rewrites.sort_by_key(|(from, _)| std::cmp::Reverse(from.len()));
        Ok(rewrites)
    }
}

/// A Secret volume: one file per key (or per `items` entry), readable by its owner only.
fn write_secret(
    dir: &Path,
    secrets: &Secrets,
    name: &str,
    items: Option<&[k8s_openapi::api::core::v1::KeyToPath]>,
) -> Result<(), TryOutcome> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let keys = secret_of(secrets, name, "(a volume)")?;
    let files: Vec<(&str, &str)> = match items {
        Some(items) if !items.is_empty() => items
            .iter()
            .map(|item| (item.key.as_str(), item.path.as_str()))
            .collect(),
        _ => keys.keys().map(|k| (k.as_str(), k.as_str())).collect(),
    };
    for (key, path) in files {
        let value = keys.get(key).ok_or_else(|| {
            refuse(format!(
                "Secret \"{name}\" (the connection of that id) has no key \"{key}\""
            ))
        })?;
        let file = dir.join(path);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|err| refuse(format!("cannot make {}: {err}", parent.display())))?;
        }
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(0o600)
            .open(&file)
            .and_then(|mut f| f.write_all(value.as_bytes()))
            .map_err(|err| {
                refuse(format!(
                    "cannot write Secret \"{name}\" key \"{key}\": {err}"
                ))
            })?;
    }
    Ok(())
}

fn rewrite(text: &str, rewrites: &[(String, String)]) -> String {
    rewrites
        .iter()
        .fold(text.to_owned(), |text, (from, to)| text.replace(from, to))
}

/// Quotes a word for bash.
fn quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// Values handed to the script through its environment rather than its text, so that no
/// variable's value (a secret, say) shows in the process list.
#[derive(Default)]
struct Values(Vec<(String, String)>);

impl Values {
    /// The shell expression that reads `value` back.
    fn pass(&mut self, value: String) -> String {
        let name = format!("GUST_POD_VALUE_{}", self.0.len());
        self.0.push((name.clone(), value));
        format!("\"${name}\"")
    }
}

/// Kubernetes Secrets as the local pod runtime provides them: by name, each a map of keys to
/// values (see [`crate::LocalConfig::secrets`]).
pub type Secrets = std::collections::HashMap<String, BTreeMap<String, String>>;

/// One container as a subshell: its environment (nothing inherited but PATH), its working
/// folder, its command and arguments, paths rewritten.
fn command_line(
    container: &Container,
    pod: &Pod,
    layout: &Layout,
    secrets: &Secrets,
    values: &mut Values,
) -> Result<String, TryOutcome> {
    let mounts = layout.rewrites(container)?;
    // In the sandbox the volumes are at their mount paths: nothing to rewrite.
    let rewrites: &[(String, String)] = if layout.sandboxed { &[] } else { &mounts };
    if container.command.as_ref().is_none_or(Vec::is_empty) {
        return Err(refuse(format!(
            "container \"{}\" has no command: the local pod runtime runs commands, not images' \
             entrypoints; give the task `cmds` (or the container a `command`)",
            container.name
        )));
    }
    let home = if layout.sandboxed {
        "/tmp".to_owned()
    } else {
        layout.root.join("work").display().to_string()
    };
    let mut env: Vec<(String, String)> = vec![("HOME".to_owned(), home)];
    for from in container.env_from.iter().flatten() {
        let Some(secret) = &from.secret_ref else {
            return Err(refuse(format!(
                "container \"{}\" takes variables from a ConfigMap (envFrom), which only a \
                 cluster has; run this task on a cluster",
                container.name
            )));
        };
        let keys = secret_of(secrets, &secret.name, &container.name)?;
        let prefix = from.prefix.clone().unwrap_or_default();
        env.extend(
            keys.iter()
                .map(|(k, v)| (format!("{prefix}{k}"), v.clone())),
        );
    }
    for var in container.env.iter().flatten() {
        let value = env_value(var, pod, &container.name, secrets)?;
        env.push((var.name.clone(), rewrite(&value, rewrites)));
    }
    let mut copies = Vec::with_capacity(env.len());
    let mut exports = Vec::with_capacity(env.len());
    for (i, (name, value)) in env.into_iter().enumerate() {
        if !is_shell_name(&name) {
            return Err(refuse(format!(
                "variable \"{name}\" of container \"{}\" is not a name the local pod runtime can \
                 set (letters, digits and '_')",
                container.name
            )));
        }
        copies.push(format!("gust_v{i}={}", values.pass(value)));
        exports.push(format!("{name}=\"$gust_v{i}\""));
    }
    let work = layout.root.join("work").display().to_string();
    let cwd = match (&container.working_dir, layout.sandboxed) {
        (Some(dir), _) => rewrite(dir, rewrites),
        (None, true) => "/".to_owned(),
        (None, false) => work.clone(),
    };
    let mut command: Vec<String> = container
        .command
        .iter()
        .flatten()
        .chain(container.args.iter().flatten())
        .map(|word| quote(&rewrite(word, rewrites)))
        .collect();
    let host_cwd = if layout.sandboxed {
        let _ = std::fs::File::create(layout.termination_log(&container.name));
        let mounts: Vec<sandbox::Mount> = mounts
            .iter()
            .map(|(target, source)| sandbox::Mount {
                source: PathBuf::from(source),
                target: PathBuf::from(target),
            })
            .collect();
        let args = sandbox::arguments(&mounts, &cwd)
            .map_err(|why| refuse(format!("container \"{}\": {why}", container.name)))?;
        let mut wrapped = vec!["bwrap".to_owned()];
        wrapped.extend(args.iter().map(|a| quote(a)));
        wrapped.push("--".to_owned());
        wrapped.append(&mut command);
        command = wrapped;
        work
    } else {
        cwd
    };
    // The values are copied out of the inherited environment before it is emptied.
    Ok(format!(
        "cd {} || exit 127; {}; for gust_name in $(compgen -e); do [ \"$gust_name\" = PATH ] || unset \"$gust_name\" 2>/dev/null; done; export {}; exec {}",
        quote(&host_cwd),
        copies.join("; "),
        exports.join(" "),
        command.join(" ")
    ))
}

fn is_shell_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn secret_of<'s>(
    secrets: &'s Secrets,
    name: &str,
    container: &str,
) -> Result<&'s BTreeMap<String, String>, TryOutcome> {
    secrets.get(name).ok_or_else(|| {
        refuse(format!(
            "container \"{container}\" uses Secret \"{name}\", which the local pod runtime \
             provides from the connection of that id; add it with `gust connections add {name} \
             --conn-type generic --conn-extra '{{\"KEY\": \"VALUE\"}}'`"
        ))
    })
}

fn env_value(
    var: &k8s_openapi::api::core::v1::EnvVar,
    pod: &Pod,
    container: &str,
    secrets: &Secrets,
) -> Result<String, TryOutcome> {
    if let Some(value) = &var.value {
        return Ok(value.clone());
    }
    let Some(from) = &var.value_from else {
        return Ok(String::new());
    };
    if let Some(key_ref) = &from.secret_key_ref {
        let keys = secret_of(secrets, &key_ref.name, container)?;
        return keys.get(&key_ref.key).cloned().ok_or_else(|| {
            refuse(format!(
                "Secret \"{}\" (the connection of that id) has no key \"{}\" for variable \"{}\"",
                key_ref.name, key_ref.key, var.name
            ))
        });
    }
    match from.field_ref.as_ref().map(|f| f.field_path.as_str()) {
        Some("metadata.name") => Ok(pod.metadata.name.clone().unwrap_or_default()),
        Some("metadata.namespace") => Ok(pod.metadata.namespace.clone().unwrap_or_default()),
        _ => Err(refuse(format!(
            "variable \"{}\" of container \"{container}\" comes from the cluster (a ConfigMap or \
             a field), which the local pod runtime does not have; run this task on a cluster",
            var.name
        ))),
    }
}

/// The pod as one bash script: init containers in order (stopping at the first that fails),
/// then every container in the background but the base container, which the script waits for.
fn script(
    pod: &Pod,
    args: &PodArgs,
    layout: &Layout,
    secrets: &Secrets,
    values: &mut Values,
) -> Result<String, TryOutcome> {
    let spec = pod
        .spec
        .as_ref()
        .ok_or_else(|| refuse("the pod has no spec".to_owned()))?;
    let base = &args.base_container_name;
    let init_logged = args.init_container_logs.clone().unwrap_or(
        gust_operators::kubernetes_pod::ContainerChoice::Named(Vec::new()),
    );
    let logged = args.logged_containers();
    let silence = |logged: bool| if logged { "" } else { " >/dev/null 2>&1" };
    let mut lines = vec!["set -u".to_owned()];
    for init in spec.init_containers.iter().flatten() {
        let marker = layout.root.join(INIT_FAILED_FILE).display().to_string();
        lines.push(format!(
            "( {} ){} || {{ code=$?; printf '%s %s' {} \"$code\" > {}; exit \"$code\"; }}",
            command_line(init, pod, layout, secrets, values)?,
            silence(init_logged.includes(&init.name)),
            quote(&init.name),
            quote(&marker),
        ));
    }
    let mut base_line = None;
    for container in &spec.containers {
        if container.name == XCOM_SIDECAR_NAME {
            continue;
        }
        let line = format!(
            "( {} ){}",
            command_line(container, pod, layout, secrets, values)?,
            silence(logged.includes(&container.name))
        );
        if &container.name == base {
            base_line = Some(line);
        } else {
            lines.push(format!("{line} &"));
        }
    }
    let Some(base_line) = base_line else {
        return Err(refuse(format!("the pod has no container named \"{base}\"")));
    };
    lines.push(base_line);
    Ok(lines.join("\n"))
}

/// How the try ended, from the base container's exit code and the files the pod left.
fn finish(code: i32, args: &PodArgs, do_xcom_push: bool, layout: &Layout) -> TryOutcome {
    if let Ok(marker) = std::fs::read_to_string(layout.root.join(INIT_FAILED_FILE)) {
        let (name, code) = marker.rsplit_once(' ').unwrap_or((marker.as_str(), "?"));
        // As a cluster reports it: the exit code, then the container's termination message.
        let mut message = format!("init container \"{name}\" exited with code {code}");
        if let Ok(said) = std::fs::read_to_string(layout.termination_log(name))
            && !said.trim().is_empty()
        {
            message.push_str(": ");
            message.push_str(said.trim());
        }
        return TryOutcome::Failed(FailureReason::Pod(message));
    }
    let base = &args.base_container_name;
    let message = std::fs::read_to_string(layout.termination_log(base))
        .map(|m| m.trim().to_owned())
        .unwrap_or_default();
    match code {
        0 => {
            let xcom = if do_xcom_push {
                match layout
                    .xcom_file()
                    .map(|file| gust_kube::xcom::read_file(&file))
                {
                    Some(Ok(value)) => value,
                    Some(Err(err)) => {
                        return TryOutcome::Failed(FailureReason::Pod(err.to_string()));
                    }
                    None => None,
                }
            } else {
                None
            };
            TryOutcome::Succeeded { xcom }
        }
        code if args.skip_on_exit_code.contains(&code) => TryOutcome::Skipped { exit_code: code },
        code => TryOutcome::Failed(FailureReason::Pod(gust_kube::diagnose::exit_message(
            base, code, &message,
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_quoted_for_bash() {
        assert_eq!(quote("it's"), r"'it'\''s'");
    }

    #[test]
    fn longer_mount_paths_are_rewritten_first() {
        let rewrites = vec![
            ("/data/in".to_owned(), "/tmp/a".to_owned()),
            ("/data".to_owned(), "/tmp/b".to_owned()),
        ];
        assert_eq!(
            rewrite("cat /data/in/x /data/y", &rewrites),
            "cat /tmp/a/x /tmp/b/y"
        );
    }
}
