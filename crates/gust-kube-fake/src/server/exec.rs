//! Exec: `GET/POST .../pods/{name}/exec` upgraded to a websocket speaking the
//! `v5.channel.k8s.io` or `v4.channel.k8s.io` subprotocol.
//!
//! Frames are binary with a leading channel byte: 1 stdout, 2 stderr, 3 the closing `Status`.
//! The commands a pod runtime sends are understood: `cat /airflow/xcom/return.json` prints the
//! pod's XCom (or fails with exit code 1), and `kill` into the `airflow-xcom-sidecar` stops it.
//! Anything else succeeds silently.

use axum::extract::State;
use axum::extract::ws::{
    Message, WebSocket, WebSocketUpgrade, rejection::WebSocketUpgradeRejection,
};
use axum::response::Response;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Status;

use super::query::Query;
use super::{Shared, existing_pod, target_container};
use crate::kubelet::{PodCommand, pod_status};
use crate::status::{self, ApiError};
use crate::store::PodKey;

/// The subprotocols spoken, in order of preference.
const SUBPROTOCOLS: [&str; 2] = ["v5.channel.k8s.io", "v4.channel.k8s.io"];

/// The sidecar Airflow's KubernetesPodOperator reads XComs through.
pub(crate) const XCOM_SIDECAR: &str = "airflow-xcom-sidecar";

/// The file the XCom sidecar serves.
const XCOM_FILE: &str = "/airflow/xcom/return.json";

const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const STATUS: u8 = 3;

/// What running the command produces.
#[derive(Debug)]
struct Outcome {
    stdout: Option<String>,
    stderr: Option<String>,
    status: Status,
}

/// `GET|POST /api/v1/namespaces/{ns}/pods/{name}/exec`.
pub(crate) async fn exec(
    State(state): Shared,
    key: PodKey,
    query: Query,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let pod = existing_pod(&state, &key)?;
    let container = target_container(&pod, query.get("container"))?;
    let command = query.all("command");
    if command.is_empty() {
        return Err(ApiError::bad_request("you must specify at least 1 command"));
    }
    let running = pod
        .status
        .as_ref()
        .and_then(|status| pod_status::container(status, &container))
        .is_some_and(|c| pod_status::classify(c) == pod_status::Run::Running);
    if !running {
        return Err(ApiError::bad_request(format!(
            "unable to upgrade connection: container not found (\"{container}\")"
        )));
    }
    let upgrade = upgrade
        .map_err(|rejection| {
            ApiError::bad_request(format!("exec needs a websocket upgrade: {rejection}"))
        })?
        .protocols(SUBPROTOCOLS);
    if upgrade.selected_protocol().is_none() {
        return Err(ApiError::bad_request(format!(
            "exec needs one of the websocket subprotocols {SUBPROTOCOLS:?}"
        )));
    }
    let stdout = query.flag("stdout")?;
    let stderr = query.flag("stderr")?;
    let joined = command.join(" ");
    let outcome = if joined.contains(&format!("cat {XCOM_FILE}")) {
        match state.store().xcom(&key) {
            Some(content) => Outcome {
                stdout: Some(content),
                stderr: None,
                status: status::exec_success(),
            },
            None => Outcome {
                stdout: None,
                stderr: Some(format!(
                    "cat: can't open '{XCOM_FILE}': No such file or directory\n"
                )),
                status: status::exec_exit_code(&command, 1),
            },
        }
    } else {
        if joined.contains("kill") && container == XCOM_SIDECAR {
            state.kubelet.send(
                &key,
                PodCommand::Signal {
                    container: container.clone(),
                    exit_code: 0,
                },
            );
        }
        Outcome {
            stdout: None,
            stderr: None,
            status: status::exec_success(),
        }
    };
    let outcome = Outcome {
        stdout: outcome.stdout.filter(|_| stdout),
        stderr: outcome.stderr.filter(|_| stderr),
        status: outcome.status,
    };
    Ok(upgrade.on_upgrade(move |socket| answer(socket, outcome)))
}

/// Sends the command's output and closing status, then closes the socket.
async fn answer(mut socket: WebSocket, outcome: Outcome) {
    let frames = [
        outcome.stdout.map(|text| frame(STDOUT, text.as_bytes())),
        outcome.stderr.map(|text| frame(STDERR, text.as_bytes())),
        Some(frame(
            STATUS,
            &serde_json::to_vec(&outcome.status).unwrap_or_default(),
        )),
    ];
    for frame in frames.into_iter().flatten() {
        if socket.send(frame).await.is_err() {
            return;
        }
    }
    // The client may already have gone once it has its status; a failed close is fine.
    let _ = socket.send(Message::Close(None)).await;
}

fn frame(channel: u8, data: &[u8]) -> Message {
    let mut bytes = Vec::with_capacity(data.len() + 1);
    bytes.push(channel);
    bytes.extend_from_slice(data);
    Message::Binary(bytes.into())
}
