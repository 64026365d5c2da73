//! What happens to a try's pod once the scheduler has recorded the try's outcome: the XCom
//! sidecar is stopped and the pod deleted or kept, as `on_finish_action` says.
//!
//! Waiting for the record (`Executor::release`) is what makes a pod try happen exactly once:
//! if the scheduler dies after the pod ended but before its outcome was stored, the pod and its
//! XCom are still there for the restarted scheduler to read, instead of the try running again.

use std::path::PathBuf;

use gust_core::clock::Clock;
use gust_executor::try_log::LogWriter;
use gust_operators::kubernetes_pod::OnFinishAction;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams};

use super::api_error::api_error;
use crate::build::XCOM_SIDECAR_NAME;

/// KPO's label on pods whose try is over, so that they are never re-attached.
pub const CHECKED_LABEL: &str = "already_checked";

/// A finished try's pod, waiting for its outcome to be recorded.
#[derive(Clone)]
pub struct Leftover {
    /// The pod's namespace.
    pub api: Api<Pod>,
    /// The pod.
    pub name: String,
    /// Whether the XCom sidecar still runs and must be stopped.
    pub has_sidecar: bool,
    /// Whether to delete the pod (else it is kept and marked).
    pub delete: bool,
    /// The try's log, which gets a line saying what was done.
    pub log_path: PathBuf,
    /// A Python try's Secret (`worker_secret.rs`), deleted whether the pod is or not.
    pub secret: Option<(Api<Secret>, String)>,
}

/// Whether `on_finish_action` deletes a pod whose try `succeeded` (or not).
#[must_use]
pub fn deletes(action: OnFinishAction, succeeded: bool) -> bool {
    match action {
        OnFinishAction::DeletePod => true,
        OnFinishAction::DeleteSucceededPod => succeeded,
        OnFinishAction::KeepPod => false,
    }
}

/// Stops the sidecar, then deletes or marks the pod; says so in the try's log.
pub async fn clean(leftover: Leftover, clock: &dyn Clock) {
    let Leftover {
        api,
        name,
        has_sidecar,
        delete,
        log_path,
        secret,
    } = leftover;
    if has_sidecar && !delete {
        let _ = super::exec::run(
            &api,
            &name,
            XCOM_SIDECAR_NAME,
            &["sh", "-c", "kill -2 1"],
            4096,
        )
        .await;
    }
    let line = if delete {
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => format!("deleted pod {name}"),
            // Someone else deleted it (which failed the try): nothing is left to do.
            Err(kube::Error::Api(status)) if status.code == 404 => {
                format!("pod {name} was already gone")
            }
            Err(err) => format!("could not delete pod {name}: {}", api_error(&err)),
        }
    } else {
        // Marked, as KPO marks it, so that no later try re-attaches to it.
        let patch = serde_json::json!({"metadata": {"labels": {CHECKED_LABEL: "True"}}});
        match api
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => format!("kept pod {name} (on_finish_action)"),
            Err(err) => format!("could not mark kept pod {name}: {}", api_error(&err)),
        }
    };
    let secret_line = match &secret {
        Some((secrets, name)) => super::worker_secret::delete(secrets, name).await,
        None => None,
    };
    if let Ok(mut log) = LogWriter::open(&log_path, clock).await {
        let _ = log.line("gust", &line).await;
        if let Some(secret_line) = secret_line {
            let _ = log.line("gust", &secret_line).await;
        }
        let _ = log.flush().await;
    }
}
