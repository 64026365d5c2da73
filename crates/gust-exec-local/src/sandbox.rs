//! Where bubblewrap (`bwrap`) works, the local pod runtime runs each container in a sandbox
//! whose file system is the host's, read-only, with the pod's volumes bound at their mount
//! paths, a fresh `/tmp`, `/dev` and `/proc`: commands see `/airflow/xcom` and
//! `/opt/ml/processing/input` as a container would, without paths being rewritten.
//!
//! The sandbox root is a tmpfs. Host directories are bound read-only one by one; a directory
//! holding a mount path is recreated as a tmpfs and its other entries bound one level down, so
//! that the mount point can be made without touching the host.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Top-level host entries the sandbox provides itself.
const OWN: &[&str] = &["proc", "dev", "sys", "tmp"];

/// One volume of a container: the host folder (or file) and where the container sees it.
#[derive(Debug, Clone)]
pub struct Mount {
    /// The host path.
    pub source: PathBuf,
    /// The container path.
    pub target: PathBuf,
}

/// Whether `bwrap` runs here (installed, and allowed to make namespaces). Probed once.
pub fn available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        #[allow(
            clippy::disallowed_methods,
            reason = "the local runtime spawns processes; this probe is one, run once"
        )]
        let status = std::process::Command::new("bwrap")
            .args(["--ro-bind", "/", "/", "--", "true"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
        status.is_ok_and(|s| s.success())
    })
}

/// The `bwrap` arguments (before `--` and the command) for a container with `mounts`, working
/// in `cwd`. The error names a mount the sandbox cannot make.
pub fn arguments(mounts: &[Mount], cwd: &str) -> Result<Vec<String>, String> {
    for mount in mounts {
        let first = mount.target.components().nth(1);
        let under_own = first.is_some_and(|c| {
            let name = c.as_os_str().to_string_lossy();
            matches!(name.as_ref(), "proc" | "sys")
        });
        if !mount.target.is_absolute() || under_own {
            return Err(format!(
                "mount path {} cannot be provided by the sandbox",
                mount.target.display()
            ));
        }
    }
    let mut args: Vec<String> = [
        "--die-with-parent",
        "--unshare-pid",
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--tmpfs",
        "/tmp",
    ]
    .map(str::to_owned)
    .to_vec();
    let targets: Vec<&Path> = mounts.iter().map(|m| m.target.as_path()).collect();
    bind_tree(Path::new("/"), &targets, true, &mut args);
    for mount in mounts {
        args.extend([
            "--bind".to_owned(),
            mount.source.display().to_string(),
            mount.target.display().to_string(),
        ]);
    }
    args.extend(["--chdir".to_owned(), cwd.to_owned()]);
    Ok(args)
}

/// Binds `dir`'s host entries read-only, recreating as tmpfs the ones that hold a target.
fn bind_tree(dir: &Path, targets: &[&Path], top: bool, args: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    entries.sort();
    for path in entries {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        if top && name.as_deref().is_some_and(|n| OWN.contains(&n)) {
            continue;
        }
        if targets.iter().any(|t| *t == path) {
            continue; // Bound to its volume afterwards.
        }
        let holds_target = targets.iter().any(|t| t.starts_with(&path));
        let link = std::fs::read_link(&path).ok();
        match (holds_target, link) {
            (_, Some(link)) => args.extend([
                "--symlink".to_owned(),
                link.display().to_string(),
                path.display().to_string(),
            ]),
            (true, None) if path.is_dir() => {
                args.extend(["--tmpfs".to_owned(), path.display().to_string()]);
                bind_tree(&path, targets, false, args);
            }
            _ => args.extend([
                "--ro-bind".to_owned(),
                path.display().to_string(),
                path.display().to_string(),
            ]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_holding_mount_paths_become_tmpfs_and_the_rest_is_read_only() {
        let mounts = [Mount {
            source: PathBuf::from("/var/lib/gust/x"),
            target: PathBuf::from("/usr/lib/gust-test-mount"),
        }];
        let args = arguments(&mounts, "/").unwrap();
        let joined = args.join(" ");
        assert!(joined.contains("--tmpfs /usr "), "{joined}");
        assert!(joined.contains("--ro-bind /etc /etc"), "{joined}");
        assert!(
            joined.contains("--bind /var/lib/gust/x /usr/lib/gust-test-mount"),
            "{joined}"
        );
        assert!(!joined.contains("--ro-bind /proc"), "{joined}");
    }

    #[test]
    fn mounts_under_proc_are_refused() {
        let mounts = [Mount {
            source: PathBuf::from("/x"),
            target: PathBuf::from("/proc/x"),
        }];
        assert!(arguments(&mounts, "/").is_err());
    }
}
