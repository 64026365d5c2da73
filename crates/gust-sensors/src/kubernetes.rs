//! The Kubernetes sensors' poke (`kubernetes_resource_sensor`, `SparkKubernetesSensor`): one
//! GET of the object through the cluster runtime's [`ObjectReader`], then [`judge`], a pure
//! function of the object: `failure` first (the poke fails), then `success` (met), else not yet.
//!
//! An object that does not exist fails the poke, as Airflow's SparkKubernetesSensor fails when
//! its GET answers 404; `silent_fail: true` makes that "not yet" instead.

use gust_kube::runtime::ObjectReader;
use gust_operators::sensors::kubernetes::{ObjectCheck, ObjectWait};
use jsonpath_rust::JsonPath;
use serde_json::Value;

use crate::decide::Poke;

/// Why a Kubernetes sensor cannot poke without the cluster runtime.
const NEEDS_CLUSTER: &str = "Kubernetes sensors read objects through a cluster's API, which the \
    local pod runtime has not; set [kubernetes] runtime = \"cluster\" with a cluster configured \
    (docs/kubernetes.md)";

/// What an object shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A success check passes; what it saw.
    Met(String),
    /// A failure check passes; what it saw.
    Failed(String),
    /// Neither.
    NotYet,
}

/// One poke: reads the object `wait` names with `objects` and judges it.
pub async fn poke(wait: &ObjectWait, objects: Option<&ObjectReader>) -> (Poke, String) {
    let said = format!("Poking: {} {}", wait.kind, wait.name);
    let Some(objects) = objects else {
        return (Poke::Error(NEEDS_CLUSTER.to_owned()), said);
    };
    let found = match objects
        .get(
            &wait.cluster,
            &wait.api_version,
            &wait.kind,
            wait.namespace.as_deref(),
            &wait.name,
        )
        .await
    {
        Ok(found) => found,
        Err(err) => return (Poke::Error(err.to_string()), said),
    };
    let what = format!("{} {}", wait.kind, found.place);
    let said = format!("Poking: {what} on cluster {}", found.cluster);
    let Some(object) = found.object else {
        return (
            Poke::Error(format!(
                "{what} does not exist on cluster {} (check its name and namespace; with silent_fail: true the sensor waits for it)",
                found.cluster
            )),
            said,
        );
    };
    match judge(wait, &object) {
        Ok(Verdict::Met(saw)) => (Poke::Met, format!("{said}: {saw}")),
        Ok(Verdict::Failed(saw)) => (Poke::Error(format!("{what} failed: {saw}")), said),
        Ok(Verdict::NotYet) => (Poke::NotYet, format!("{said}: not yet")),
        Err(why) => (Poke::Error(format!("{what}: {why}")), said),
    }
}

/// What `object` shows: `wait.failure` is checked first, as Airflow checks failure states
/// first.
pub fn judge(wait: &ObjectWait, object: &Value) -> Result<Verdict, String> {
    for check in &wait.failure {
        if let Some(saw) = shows(check, object, "failure")? {
            return Ok(Verdict::Failed(saw));
        }
    }
    for check in &wait.success {
        if let Some(saw) = shows(check, object, "success")? {
            return Ok(Verdict::Met(saw));
        }
    }
    Ok(Verdict::NotYet)
}

/// What `object` shows of `check`, if it does.
fn shows(check: &ObjectCheck, object: &Value, name: &str) -> Result<Option<String>, String> {
    if let Some(wanted) = &check.condition {
        let conditions = object
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let found = conditions.iter().find(|c| {
            c.get("type").and_then(Value::as_str) == Some(wanted.as_str())
                && c.get("status").and_then(Value::as_str) == Some("True")
        });
        return Ok(found.map(|condition| {
            let text = |key: &str| condition.get(key).and_then(Value::as_str).unwrap_or("");
            match (text("reason"), text("message")) {
                ("", "") => format!("condition {wanted} is True"),
                (reason, "") | ("", reason) => format!("condition {wanted} is True ({reason})"),
                (reason, message) => format!("condition {wanted} is True ({reason}: {message})"),
            }
        }));
    }
    let Some(path) = &check.jsonpath else {
        return Ok(None);
    };
    let matches = object
        .query(path)
        .map_err(|err| format!("{name}.jsonpath: {err}"))?;
    let Some(first) = matches.first() else {
        return Ok(None);
    };
    let passes = match (&check.value, &check.one_of) {
        (None, None) => true,
        (value, one_of) => value
            .iter()
            .chain(one_of.iter().flatten())
            .any(|wanted| crate::http::same(first, wanted)),
    };
    Ok(passes.then(|| format!("{path} is {first}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use gust_operators::apply::ClusterArgs;
    use serde_json::json;

    fn job_wait() -> ObjectWait {
        let condition = |c: &str| ObjectCheck {
            condition: Some(c.to_owned()),
            ..ObjectCheck::default()
        };
        ObjectWait {
            cluster: ClusterArgs::default(),
            api_version: "batch/v1".into(),
            kind: "Job".into(),
            name: "etl".into(),
            namespace: None,
            success: vec![condition("Complete")],
            failure: vec![condition("Failed")],
        }
    }

    #[test]
    fn a_job_is_met_when_complete_and_failed_when_failed() {
        let running = json!({"status": {"active": 1}});
        assert_eq!(judge(&job_wait(), &running), Ok(Verdict::NotYet));
        let complete = json!({"status": {"conditions": [
            {"type": "SuccessCriteriaMet", "status": "True"},
            {"type": "Complete", "status": "True"}]}});
        assert_eq!(
            judge(&job_wait(), &complete),
            Ok(Verdict::Met("condition Complete is True".into()))
        );
        let failed = json!({"status": {"conditions": [
            {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
             "message": "Job has reached the specified backoff limit"}]}});
        assert_eq!(
            judge(&job_wait(), &failed),
            Ok(Verdict::Failed(
                "condition Failed is True (BackoffLimitExceeded: Job has reached the specified backoff limit)".into()
            ))
        );
        let not_true = json!({"status": {"conditions": [{"type": "Complete", "status": "False"}]}});
        assert_eq!(judge(&job_wait(), &not_true), Ok(Verdict::NotYet));
    }

    #[test]
    fn a_field_is_compared_with_a_value_or_several() {
        let wait = ObjectWait {
            success: vec![ObjectCheck {
                jsonpath: Some("$.status.phase".into()),
                value: Some(json!("Ready")),
                ..ObjectCheck::default()
            }],
            failure: vec![ObjectCheck {
                jsonpath: Some("$.status.phase".into()),
                one_of: Some(vec![json!("Lost"), json!("Broken")]),
                ..ObjectCheck::default()
            }],
            ..job_wait()
        };
        assert_eq!(judge(&wait, &json!({})), Ok(Verdict::NotYet));
        assert_eq!(
            judge(&wait, &json!({"status": {"phase": "Pending"}})),
            Ok(Verdict::NotYet)
        );
        assert!(matches!(
            judge(&wait, &json!({"status": {"phase": "Ready"}})),
            Ok(Verdict::Met(_))
        ));
        assert!(matches!(
            judge(&wait, &json!({"status": {"phase": "Broken"}})),
            Ok(Verdict::Failed(_))
        ));
    }
}
