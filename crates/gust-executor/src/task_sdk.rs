//! What the runtimes that run Airflow's Task SDK share: how its structured log lines read in a
//! try's log, and what a Python try run as a pod carries to the pod runtime.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, OnceLock};

/// The pod form of a Python try: its per-try Secret, which holds the ExecuteTask workload (with
/// the try's token) and the DAG bundle the worker loads. The pod runtime creates the Secret
/// once the pod exists (owned by it, so the cluster deletes it with the pod) and deletes it
/// when it cleans the pod up; the pod's output is the Task SDK's structured log.
#[derive(Clone, PartialEq, Eq)]
pub struct WorkerPod {
    /// The Secret's name, as the pod's volume names it.
    pub secret_name: String,
    /// Its keys and values; `None` for an adopted try, whose Secret exists already.
    pub secret_data: Option<BTreeMap<String, String>>,
    /// Set by the pod runtime once the pod's containers run: from then on its worker can be
    /// heard of, so its silence counts towards the heartbeat timeout (a pending pod's does not).
    pub running: RunningSince,
}

/// When a worker pod's containers started running, as its pod runtime saw it; shared between
/// the runtime that sees the pod and the one that watches its worker's heartbeats.
#[derive(Clone, Default)]
pub struct RunningSince(Arc<OnceLock<tokio::time::Instant>>);

impl RunningSince {
    /// Records that the pod runs now (the first call counts).
    pub fn mark(&self) {
        let _ = self.0.set(tokio::time::Instant::now());
    }

    /// When the pod started running, once it has.
    #[must_use]
    pub fn get(&self) -> Option<tokio::time::Instant> {
        self.0.get().copied()
    }
}

impl PartialEq for RunningSince {
    /// The same signal, not the same instant: two specs of one try share it.
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for RunningSince {}

impl fmt::Debug for RunningSince {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RunningSince").field(&self.get()).finish()
    }
}

impl fmt::Debug for WorkerPod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The data holds the try's token.
        f.debug_struct("WorkerPod")
            .field("secret_name", &self.secret_name)
            .finish_non_exhaustive()
    }
}

/// One line of a Task SDK worker's output as the try's log shows it: a structured (JSON) line
/// as `LEVEL logger: event key=value...`, anything else as it is.
#[must_use]
pub fn log_line(text: String) -> String {
    let Ok(serde_json::Value::Object(mut fields)) =
        serde_json::from_str::<serde_json::Value>(&text)
    else {
        return text;
    };
    let Some(event) = fields.remove("event") else {
        return text;
    };
    fields.remove("timestamp");
    // What the try's log already says (it is one try's), or where in Python the line came from.
    for said in [
        "dag_id",
        "run_id",
        "task_id",
        "ti_id",
        "try_number",
        "map_index",
        "filename",
        "lineno",
        "loc",
    ] {
        fields.remove(said);
    }
    let level = fields
        .remove("level")
        .and_then(|l| l.as_str().map(str::to_uppercase))
        .unwrap_or_else(|| "INFO".to_owned());
    let logger = fields
        .remove("logger")
        .and_then(|l| l.as_str().map(str::to_owned));
    let event = match event {
        serde_json::Value::String(text) => text,
        other => other.to_string(),
    };
    let mut line = match logger {
        Some(logger) => format!("{level} {logger}: {event}"),
        None => format!("{level} {event}"),
    };
    for (name, value) in fields {
        let value = match value {
            serde_json::Value::String(text) => text,
            other => other.to_string(),
        };
        line.push_str(&format!(" {name}={value}"));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn structured_lines_read_as_text_and_others_stay() {
        let line = r#"{"timestamp":"2026-01-01T00:00:00Z","level":"info","event":"Done. Returned value was: 3","logger":"airflow.task.operators","ti":"x","dag_id":"d","lineno":3}"#;
        assert_eq!(
            log_line(line.to_owned()),
            "INFO airflow.task.operators: Done. Returned value was: 3 ti=x"
        );
        assert_eq!(log_line("plain text".to_owned()), "plain text");
        assert_eq!(log_line("[1, 2]".to_owned()), "[1, 2]");
    }

    #[test]
    fn a_worker_pod_never_shows_its_data() {
        let pod = WorkerPod {
            secret_name: "gust-worker-1".into(),
            secret_data: Some(BTreeMap::from([("workload.json".into(), "token".into())])),
            running: RunningSince::default(),
        };
        assert!(!format!("{pod:?}").contains("token"));
    }
}
