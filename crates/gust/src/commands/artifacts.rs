//! `gust artifacts ls | get | put | fetch | run`. `ls`, `get` and `put` are for users and open
//! stores with the `[artifacts] conn_id` connection when it exists; `fetch` and `run` are the
//! two halves of a processing pod (the init container and the wrapper of the user's command, as
//! /work/notes/contract.md fixes them) and read credentials from the environment only.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use gust_artifacts::{Artifacts, ENV_PREFIX, StoreCredentials, Transferred};

use crate::cli::ArtifactsCommand;
use crate::config::{self, Config};

/// Runs a `gust artifacts` command.
pub fn run(command: ArtifactsCommand) -> anyhow::Result<ExitCode> {
    let runtime = super::runtime()?;
    match command {
        ArtifactsCommand::Ls { uri } => runtime.block_on(async {
            let entries = user_artifacts().await?.list(&uri).await?;
            let mut table = comfy_table::Table::new();
            table
                .load_preset(comfy_table::presets::NOTHING)
                .set_header(vec!["size", "modified", "uri"]);
            for entry in entries {
                table.add_row(vec![
                    human(entry.size),
                    entry
                        .last_modified
                        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    entry.uri,
                ]);
            }
            println!("{table}");
            Ok(ExitCode::SUCCESS)
        }),
        ArtifactsCommand::Get { uri, dest } => runtime.block_on(async {
            let moved = user_artifacts().await?.download(&uri, &dest).await?;
            println!("downloaded {}: {uri} -> {}", summary(moved), dest.display());
            Ok(ExitCode::SUCCESS)
        }),
        ArtifactsCommand::Put { src, uri } => runtime.block_on(async {
            let moved = user_artifacts().await?.upload(&src, &uri).await?;
            println!("uploaded {}: {} -> {uri}", summary(moved), src.display());
            Ok(ExitCode::SUCCESS)
        }),
        ArtifactsCommand::Fetch {
            install,
            inputs,
            termination_log,
        } => {
            let fetched = runtime.block_on(fetch(install, inputs));
            if let (Err(err), Some(file)) = (&fetched, termination_log) {
                // Best effort: the error is on stderr (the try's log) either way.
                let _ = std::fs::write(file, format!("{err:#}"));
            }
            fetched
        }
        ArtifactsCommand::Run {
            xcom,
            outputs,
            command,
        } => runtime.block_on(run_step(xcom, outputs, command)),
    }
}

/// The store credentials for users' commands: the `[artifacts] conn_id` connection when the
/// metadata database has it, else the environment.
async fn user_artifacts() -> anyhow::Result<Artifacts> {
    let home = config::home()?;
    let config = Config::load(&home)?;
    let connections = crate::runtimes::connections(&config, &home).await;
    let credentials = crate::runtimes::local_secrets(&connections)
        .remove(&config.artifacts.conn_id)
        .map_or_else(StoreCredentials::from_env, StoreCredentials::from_fields);
    Ok(Artifacts::new(credentials))
}

/// `gust artifacts fetch`: installs this binary, then downloads every input.
async fn fetch(install: Option<PathBuf>, inputs: Vec<String>) -> anyhow::Result<ExitCode> {
    let inputs: Vec<(PathBuf, String)> = inputs
        .iter()
        .map(|input| {
            let (dest, uri) = input
                .split_once('=')
                .with_context(|| format!("--input \"{input}\" is not DEST=URI"))?;
            anyhow::ensure!(
                !dest.is_empty() && !uri.is_empty(),
                "--input \"{input}\" is not DEST=URI"
            );
            Ok((PathBuf::from(dest), uri.to_owned()))
        })
        .collect::<anyhow::Result<_>>()?;
    if let Some(dir) = install {
        install_self(&dir)?;
    }
    let artifacts = Artifacts::new(StoreCredentials::from_env());
    for (dest, uri) in inputs {
        let moved = artifacts
            .download(&uri, &dest)
            .await
            .with_context(|| format!("input {}", dest.display()))?;
        println!(
            "fetched input {}: {} <- {uri}",
            dest.display(),
            summary(moved)
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Copies the running executable to `dir/gust`, mode 0755, through a temporary name.
fn install_self(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let me = std::env::current_exe().context("cannot find this executable to install it")?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let temp = dir.join(format!(".gust.{}.tmp", std::process::id()));
    let target = dir.join("gust");
    std::fs::copy(&me, &temp)
        .and_then(|_| std::fs::set_permissions(&temp, std::fs::Permissions::from_mode(0o755)))
        .and_then(|()| std::fs::rename(&temp, &target))
        .with_context(|| format!("cannot install {} as {}", me.display(), target.display()))
}

/// One `--output NAME=PATH=URI`.
struct Output {
    name: String,
    path: PathBuf,
    uri: String,
}

fn parse_output(text: &str) -> anyhow::Result<Output> {
    let bad = || {
        format!("--output \"{text}\" is not NAME=PATH=URI (NAME of letters, digits, '_' and '-')")
    };
    let (name, rest) = text.split_once('=').with_context(bad)?;
    let (path, uri) = rest.split_once('=').with_context(bad)?;
    let name_ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    anyhow::ensure!(name_ok && !path.is_empty() && !uri.is_empty(), bad());
    Ok(Output {
        name: name.to_owned(),
        path: PathBuf::from(path),
        uri: uri.to_owned(),
    })
}

/// `gust artifacts run`: the user's command, then its outputs' upload and the XCom.
async fn run_step(
    xcom: Option<PathBuf>,
    outputs: Vec<String>,
    command: Vec<String>,
) -> anyhow::Result<ExitCode> {
    let outputs: Vec<Output> = outputs
        .iter()
        .map(|o| parse_output(o))
        .collect::<anyhow::Result<_>>()?;
    let code = run_command(&command).await?;
    if code != 0 {
        return Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)));
    }
    let artifacts = Artifacts::new(StoreCredentials::from_env());
    for output in &outputs {
        if !output.path.exists() {
            anyhow::bail!(
                "output {}: nothing at {}; the command did not write it",
                output.name,
                output.path.display()
            );
        }
        let moved = artifacts
            .upload(&output.path, &output.uri)
            .await
            .with_context(|| format!("output {}", output.name))?;
        println!(
            "uploaded output {}: {} -> {}",
            output.name,
            summary(moved),
            output.uri
        );
    }
    if let Some(file) = xcom {
        write_xcom(&file, &outputs)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `command` without the GUST_ARTIFACTS_* variables, forwarding SIGTERM and SIGINT; its exit
/// code, or 128+N when signal N killed it, or 127 when it cannot start.
async fn run_command(command: &[String]) -> anyhow::Result<i32> {
    use std::os::unix::process::ExitStatusExt;
    use tokio::signal::unix::{SignalKind, signal};
    let (program, args) = command
        .split_first()
        .context("no command to run after --")?;
    // The wrapper of a processing pod's command is a process-spawning edge, like the local runtime.
    let mut child_command = tokio::process::Command::new(program);
    child_command.args(args);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with(ENV_PREFIX) {
            child_command.env_remove(key);
        }
    }
    // Watched before the command starts: a SIGTERM that comes as soon as it runs (its pod being
    // deleted) is forwarded, rather than ending this wrapper by the default action.
    let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    let mut child = match child_command.spawn() {
        Ok(child) => child,
        Err(err) => {
            eprintln!("error: cannot run \"{program}\": {err}");
            return Ok(127);
        }
    };
    let status = loop {
        let forward = tokio::select! {
            status = child.wait() => break status.context("cannot wait for the command")?,
            _ = term.recv() => nix::sys::signal::Signal::SIGTERM,
            _ = int.recv() => nix::sys::signal::Signal::SIGINT,
        };
        if let Some(pid) = child.id().and_then(|id| i32::try_from(id).ok()) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), forward);
        }
    };
    Ok(match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(signal)) => 128 + signal,
        (None, None) => 1,
    })
}

/// Sets each output's name to its URI in the JSON object at `file` (keeping the keys the
/// command wrote), written through a temporary file.
fn write_xcom(file: &Path, outputs: &[Output]) -> anyhow::Result<()> {
    let mut object = match std::fs::read_to_string(file) {
        Ok(text) => match serde_json::from_str::<serde_json::Value>(&text) {
            Ok(serde_json::Value::Object(map)) => map,
            _ => serde_json::Map::new(),
        },
        Err(_) => serde_json::Map::new(),
    };
    for output in outputs {
        object.insert(
            output.name.clone(),
            serde_json::Value::String(output.uri.clone()),
        );
    }
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let temp = file.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&temp, serde_json::Value::Object(object).to_string())
        .and_then(|()| std::fs::rename(&temp, file))
        .with_context(|| format!("cannot write the XCom file {}", file.display()))
}

/// "3 objects, 12.4 KiB".
fn summary(moved: Transferred) -> String {
    let noun = if moved.objects == 1 {
        "object"
    } else {
        "objects"
    };
    format!("{} {noun}, {}", moved.objects, human(moved.bytes))
}

/// A size in bytes for people: `512 B`, `12.4 KiB`, `3.0 MiB`.
fn human(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    #[allow(clippy::cast_precision_loss, reason = "a size shown to one decimal")]
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_split_at_the_first_two_equals_signs() {
        let o = parse_output("model=/opt/ml/processing/output/model=s3://b/k?x=1").unwrap();
        assert_eq!((o.name.as_str(), o.uri.as_str()), ("model", "s3://b/k?x=1"));
        assert_eq!(o.path, PathBuf::from("/opt/ml/processing/output/model"));
        assert!(parse_output("bad name=/p=s3://b").is_err());
        assert!(parse_output("model=/p").is_err());
    }

    #[test]
    fn sizes_read_like_people_write_them() {
        assert_eq!(human(512), "512 B");
        assert_eq!(human(12_698), "12.4 KiB");
        assert_eq!(human(3 * 1024 * 1024), "3.0 MiB");
    }
}
