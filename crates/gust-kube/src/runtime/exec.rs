//! Running a command in a pod's container (`kubectl exec`), its output bounded.

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::AttachParams;
use tokio::io::AsyncReadExt;

/// What an exec printed and whether it exited 0.
#[derive(Debug, Clone, Default)]
pub struct ExecOutput {
    /// Its standard output (at most the limit asked for).
    pub stdout: String,
    /// Its standard error (at most 64 KiB).
    pub stderr: String,
    /// Whether the command succeeded.
    pub success: bool,
}

/// Runs `command` in `container` of pod `name`, reading at most `limit` bytes of its output.
pub async fn run(
    api: &Api<Pod>,
    name: &str,
    container: &str,
    command: &[&str],
    limit: u64,
) -> Result<ExecOutput, kube::Error> {
    let params = AttachParams::default()
        .container(container)
        .stdin(false)
        .stdout(true)
        .stderr(true);
    let mut process = api
        .exec(name, command.iter().map(|s| (*s).to_owned()), &params)
        .await?;
    let status = process.take_status();
    let (out, err) = (process.stdout(), process.stderr());
    // Both read at once, so a full stderr pipe cannot stall stdout.
    let (stdout, stderr) = tokio::join!(read_bounded(out, limit), read_bounded(err, 64 * 1024));
    let success = match status {
        Some(status) => status
            .await
            .is_some_and(|s| s.status.as_deref() == Some("Success")),
        None => false,
    };
    let _ = process.join().await;
    Ok(ExecOutput {
        stdout,
        stderr,
        success,
    })
}

async fn read_bounded(half: Option<impl tokio::io::AsyncRead + Unpin>, limit: u64) -> String {
    let mut text = String::new();
    if let Some(half) = half {
        let _ = half.take(limit + 1).read_to_string(&mut text).await;
    }
    text
}
