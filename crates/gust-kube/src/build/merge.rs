//! KubernetesPodOperator's rules for laying one pod over another (its `reconcile_pods`), on
//! manifests in JSON form.
//!
//! The rules are KPO's, field by field, so that a template behaves as it does under Airflow:
//! a field the upper pod leaves empty (null, false, 0, "", [] or {}) comes from the lower one,
//! otherwise the upper pod's value wins whole; labels and annotations are merged key by key;
//! volumes are concatenated (lower first); containers are paired by position, init containers
//! by name (the lower pod's order, then the upper pod's unpaired ones), and, in each pair,
//! volume mounts, env, envFrom, ports and volume devices are concatenated.
//! One deliberate difference: the upper pod's base container pairs with the lower pod's
//! container of the same name when there is one, not blindly with the first (identical when
//! the base container comes first, as it does in KPO's own templates).
//!
//! [`reconcile_pods_by_name`] is the same merge with every container paired by name, as init
//! containers are: how a worker pod's template and a task's `pod_override` are laid together
//! (the KubernetesExecutor's `reconcile_pods` pairs by position, which merges an override's
//! lone sidecar into the base container).

use serde_json::{Map, Value};

/// The fields of a container that are concatenated rather than replaced.
const CONTAINER_LISTS: &[&str] = &["volumeMounts", "env", "envFrom", "ports", "volumeDevices"];
/// The fields of a pod spec that are concatenated rather than replaced.
const SPEC_LISTS: &[&str] = &["initContainers", "volumes"];
/// The fields of metadata that are concatenated rather than replaced.
const METADATA_LISTS: &[&str] = &["managedFields", "finalizers", "ownerReferences"];

/// How the containers of two pods are paired.
#[derive(Debug, Clone, Copy)]
enum Pairing<'a> {
    /// KPO's: by position, the base container (named so) by name.
    Kpo(&'a str),
    /// Every container by name.
    ByName,
}

/// `upper` laid over `lower`; `base_container` names the container the operator builds.
#[must_use]
pub fn reconcile_pods(lower: &Value, upper: &Value, base_container: &str) -> Value {
    reconcile(lower, upper, Pairing::Kpo(base_container))
}

/// `upper` laid over `lower` with every container paired by name (the lower pod's order,
/// then the upper pod's unpaired ones); otherwise as [`reconcile_pods`].
#[must_use]
pub fn reconcile_pods_by_name(lower: &Value, upper: &Value) -> Value {
    reconcile(lower, upper, Pairing::ByName)
}

fn reconcile(lower: &Value, upper: &Value, pairing: Pairing<'_>) -> Value {
    if is_empty(upper) {
        return lower.clone();
    }
    let mut merged = upper.clone();
    if let Value::Object(top) = &mut merged {
        let spec = reconcile_specs(lower.get("spec"), upper.get("spec"), pairing);
        let metadata = reconcile_metadata(lower.get("metadata"), upper.get("metadata"));
        set(top, "spec", spec);
        set(top, "metadata", metadata);
    }
    merge_fields(lower, &merged)
}

fn set(map: &mut Map<String, Value>, key: &str, value: Option<Value>) {
    match value {
        Some(value) => map.insert(key.to_owned(), value),
        None => map.remove(key),
    };
}

fn reconcile_metadata(lower: Option<&Value>, upper: Option<&Value>) -> Option<Value> {
    let (lower, upper) = match (lower, upper) {
        (Some(lower), None) => return Some(lower.clone()),
        (None, upper) => return upper.cloned(),
        (Some(lower), Some(upper)) => (lower, upper),
    };
    let mut merged = upper.clone();
    if let Value::Object(fields) = &mut merged {
        for key in ["labels", "annotations"] {
            let map = merge_maps(lower.get(key), upper.get(key));
            set(fields, key, map);
        }
    }
    let merged = extend_lists(lower, &merged, METADATA_LISTS);
    Some(merge_fields(lower, &merged))
}

fn reconcile_specs(
    lower: Option<&Value>,
    upper: Option<&Value>,
    pairing: Pairing<'_>,
) -> Option<Value> {
    let (lower, upper) = match (lower, upper) {
        (Some(lower), None) => return Some(lower.clone()),
        (None, upper) => return upper.cloned(),
        (Some(lower), Some(upper)) => (lower, upper),
    };
    let mut merged = upper.clone();
    if let Value::Object(fields) = &mut merged {
        let (below, above) = (list(lower.get("containers")), list(upper.get("containers")));
        let containers = match pairing {
            Pairing::Kpo(base_container) => reconcile_containers(below, above, base_container),
            Pairing::ByName => reconcile_init_containers(below, above),
        };
        fields.insert("containers".to_owned(), Value::Array(containers));
    }
    let mut merged = extend_lists(lower, &merged, SPEC_LISTS);
    let (below, above) = (
        list(lower.get("initContainers")),
        list(upper.get("initContainers")),
    );
    if let Value::Object(fields) = &mut merged
        && !below.is_empty()
        && !above.is_empty()
    {
        let paired = reconcile_init_containers(below, above);
        fields.insert("initContainers".to_owned(), Value::Array(paired));
    }
    Some(merge_fields(lower, &merged))
}

/// Pairs containers by position, except that the upper pod's first container (the operator's
/// base container) pairs with the lower container of the same name when there is one.
fn reconcile_containers(lower: &[Value], upper: &[Value], base_container: &str) -> Vec<Value> {
    if lower.is_empty() {
        return upper.to_vec();
    }
    if upper.is_empty() {
        return lower.to_vec();
    }
    let named = |c: &Value| c.get("name").and_then(Value::as_str) == Some(base_container);
    let upper_is_base = named(&upper[0]);
    match lower.iter().position(named) {
        Some(at) if upper_is_base && at > 0 => {
            let mut out = lower.to_vec();
            out[at] = reconcile_container(&lower[at], &upper[0]);
            out.extend(upper[1..].iter().cloned());
            out
        }
        _ => positional(lower, upper),
    }
}

/// KPO's `reconcile_init_containers`: a lower init container is merged with the upper one of
/// the same name, in the lower pod's order; the upper ones left over follow.
fn reconcile_init_containers(lower: &[Value], upper: &[Value]) -> Vec<Value> {
    let name = |c: &Value| c.get("name").and_then(Value::as_str).map(str::to_owned);
    let mut paired = std::collections::HashSet::new();
    let mut out: Vec<Value> = lower
        .iter()
        .map(|below| {
            // Python's dict of the upper ones by name: the last of a repeated name wins.
            let above = upper.iter().rev().find(|c| name(c) == name(below));
            match above {
                Some(above) => {
                    paired.insert(name(below));
                    reconcile_container(below, above)
                }
                None => below.clone(),
            }
        })
        .collect();
    out.extend(upper.iter().filter(|c| !paired.contains(&name(c))).cloned());
    out
}

fn positional(lower: &[Value], upper: &[Value]) -> Vec<Value> {
    let mut out = Vec::with_capacity(lower.len().max(upper.len()));
    for i in 0..lower.len().max(upper.len()) {
        match (lower.get(i), upper.get(i)) {
            (Some(l), Some(u)) => out.push(reconcile_container(l, u)),
            (Some(only), None) | (None, Some(only)) => out.push(only.clone()),
            (None, None) => {}
        }
    }
    out
}

fn reconcile_container(lower: &Value, upper: &Value) -> Value {
    let merged = extend_lists(lower, upper, CONTAINER_LISTS);
    merge_fields(lower, &merged)
}

/// KPO's `merge_objects` on model objects: every field `upper` leaves empty comes from `lower`.
fn merge_fields(lower: &Value, upper: &Value) -> Value {
    if is_empty(lower) {
        return upper.clone();
    }
    if is_empty(upper) {
        return lower.clone();
    }
    let (Value::Object(lower), Value::Object(upper)) = (lower, upper) else {
        return upper.clone();
    };
    let mut merged = upper.clone();
    for (key, value) in lower {
        let missing = upper.get(key).is_none_or(is_empty);
        if missing && !value.is_null() {
            merged.insert(key.clone(), value.clone());
        }
    }
    Value::Object(merged)
}

/// KPO's `merge_objects` on dicts (labels, annotations): `upper`'s keys replace `lower`'s.
fn merge_maps(lower: Option<&Value>, upper: Option<&Value>) -> Option<Value> {
    match (lower, upper) {
        (Some(l), Some(u)) if !is_empty(l) && !is_empty(u) => {
            let (Value::Object(l), Value::Object(u)) = (l, u) else {
                return Some(u.clone());
            };
            let mut merged = l.clone();
            merged.extend(u.iter().map(|(k, v)| (k.clone(), v.clone())));
            Some(Value::Object(merged))
        }
        (Some(l), u) if u.is_none_or(is_empty) => Some(l.clone()),
        (_, u) => u.cloned(),
    }
}

/// KPO's `extend_object_field` for each of `fields`: `lower`'s items, then `upper`'s.
fn extend_lists(lower: &Value, upper: &Value, fields: &[&str]) -> Value {
    let mut merged = upper.clone();
    let Value::Object(out) = &mut merged else {
        return merged;
    };
    for field in fields {
        let below = list(lower.get(*field));
        if below.is_empty() {
            continue;
        }
        let mut items = below.to_vec();
        items.extend(list(upper.get(*field)).iter().cloned());
        out.insert((*field).to_owned(), Value::Array(items));
    }
    merged
}

fn list(value: Option<&Value>) -> &[Value] {
    value.and_then(Value::as_array).map_or(&[], Vec::as_slice)
}

/// Python's falsiness, which KPO's merge rules turn on.
fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(items) => items.is_empty(),
        Value::Object(map) => map.is_empty(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn upper_fields_win_and_empty_ones_fall_through() {
        let lower = json!({"spec": {"containers": [], "hostNetwork": true, "dnsPolicy": "Default",
                                    "nodeSelector": {"a": "1", "b": "2"}}});
        let upper = json!({"spec": {"containers": [], "hostNetwork": false, "dnsPolicy": "ClusterFirst",
                                    "nodeSelector": {"a": "9"}}});
        let pod = reconcile_pods(&lower, &upper, "base");
        assert_eq!(
            pod["spec"]["hostNetwork"], true,
            "false is empty, as in Python"
        );
        assert_eq!(pod["spec"]["dnsPolicy"], "ClusterFirst");
        assert_eq!(
            pod["spec"]["nodeSelector"],
            json!({"a": "9"}),
            "replaced whole"
        );
    }

    #[test]
    fn labels_merge_by_key_and_volumes_concatenate() {
        let lower = json!({"metadata": {"labels": {"team": "a", "tier": "x"}},
                           "spec": {"volumes": [{"name": "t"}], "initContainers": [{"name": "i0"}]}});
        let upper = json!({"metadata": {"labels": {"tier": "y"}},
                           "spec": {"volumes": [{"name": "u"}]}});
        let pod = reconcile_pods(&lower, &upper, "base");
        assert_eq!(pod["metadata"]["labels"], json!({"team": "a", "tier": "y"}));
        assert_eq!(
            pod["spec"]["volumes"],
            json!([{"name": "t"}, {"name": "u"}])
        );
        assert_eq!(pod["spec"]["initContainers"], json!([{"name": "i0"}]));
    }

    #[test]
    fn containers_pair_and_their_lists_concatenate() {
        let lower = json!({"spec": {"containers": [
            {"name": "base", "image": "t", "env": [{"name": "A"}], "resources": {"limits": {"cpu": "1"}}},
            {"name": "side", "image": "s"}]}});
        let upper = json!({"spec": {"containers": [
            {"name": "base", "image": "u", "env": [{"name": "B"}], "command": []}]}});
        let pod = reconcile_pods(&lower, &upper, "base");
        let base = &pod["spec"]["containers"][0];
        assert_eq!(base["image"], "u");
        assert_eq!(base["env"], json!([{"name": "A"}, {"name": "B"}]));
        assert_eq!(base["resources"], json!({"limits": {"cpu": "1"}}));
        assert_eq!(pod["spec"]["containers"][1]["name"], "side");
    }

    #[test]
    fn by_name_every_container_pairs_with_its_namesake_and_lone_ones_are_kept() {
        let template = json!({"spec": {"containers": [
            {"name": "base", "resources": {"limits": {"cpu": "1"}}, "env": [{"name": "A"}]},
            {"name": "proxy", "image": "p"}]}});
        let override_ = json!({"spec": {"containers": [
            {"name": "sidecar", "image": "s"},
            {"name": "base", "resources": {"requests": {"memory": "1Gi"}}, "env": [{"name": "B"}]}]}});
        let pod = reconcile_pods_by_name(&template, &override_);
        let containers = pod["spec"]["containers"].as_array().expect("containers");
        let names: Vec<&str> = containers
            .iter()
            .filter_map(|c| c["name"].as_str())
            .collect();
        assert_eq!(
            names,
            ["base", "proxy", "sidecar"],
            "by name, not by position"
        );
        assert_eq!(
            containers[0]["resources"],
            json!({"requests": {"memory": "1Gi"}}),
            "replaced whole, as Airflow's merge_objects does"
        );
        assert_eq!(containers[0]["env"], json!([{"name": "A"}, {"name": "B"}]));
        assert_eq!(
            reconcile_pods_by_name(&json!({}), &override_)["spec"]["containers"][0]["name"],
            "sidecar"
        );
    }

    #[test]
    fn init_containers_pair_by_name_in_the_lower_pods_order() {
        // PodGenerator.reconcile_init_containers (cncf.kubernetes 10.x).
        let lower = json!({"spec": {"containers": [], "initContainers": [
            {"name": "prep", "image": "busybox", "env": [{"name": "A", "value": "1"}]},
            {"name": "other", "image": "alpine"}]}});
        let upper = json!({"spec": {"containers": [], "initContainers": [
            {"name": "new", "image": "n"},
            {"name": "prep", "image": "x", "env": [{"name": "B", "value": "2"}]}]}});
        let pod = reconcile_pods(&lower, &upper, "base");
        assert_eq!(
            pod["spec"]["initContainers"],
            json!([
                {"name": "prep", "image": "x",
                 "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]},
                {"name": "other", "image": "alpine"},
                {"name": "new", "image": "n"},
            ])
        );
    }

    #[test]
    fn the_base_container_pairs_by_name() {
        let lower = json!({"spec": {"containers": [
            {"name": "istio", "image": "proxy"}, {"name": "base", "image": "t", "args": ["x"]}]}});
        let upper = json!({"spec": {"containers": [{"name": "base", "image": "u"}]}});
        let pod = reconcile_pods(&lower, &upper, "base");
        let containers = pod["spec"]["containers"].as_array().unwrap();
        assert_eq!(containers.len(), 2);
        assert_eq!(containers[0]["image"], "proxy");
        assert_eq!(containers[1]["image"], "u");
        assert_eq!(containers[1]["args"], json!(["x"]));
    }
}
