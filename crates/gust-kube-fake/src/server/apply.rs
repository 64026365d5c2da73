//! Server-side apply, simplified but real: each field manager owns the fields it applied
//! (recorded in `metadata.managedFields` in the `FieldsV1` form), a new apply by the same
//! manager sets what it gives and removes what it owned but no longer gives, and a field owned
//! by another manager with a different value is a conflict unless the apply forces it.
//!
//! The simplification: maps merge key by key, but every list is one field (atomic), as a list
//! without merge keys is on a real server.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

/// A field: the path of map keys to a leaf (a scalar, a list, or an empty map).
type FieldPath = Vec<String>;

/// Metadata the server owns, never a manager's field.
const SERVER_FIELDS: &[&str] = &[
    "uid",
    "resourceVersion",
    "creationTimestamp",
    "generation",
    "managedFields",
    "deletionTimestamp",
    "selfLink",
];

/// Fields another manager owns with a different value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Conflicts {
    /// `manager: .path.to.field` for each.
    pub(crate) fields: Vec<String>,
}

/// The leaves of `object`, server-owned metadata and `status` left out.
fn leaves(object: &Value) -> BTreeSet<FieldPath> {
    let mut found = BTreeSet::new();
    let mut stack: Vec<(FieldPath, &Value)> = vec![(Vec::new(), object)];
    while let Some((path, value)) = stack.pop() {
        match value {
            Value::Object(map) if !map.is_empty() || path.is_empty() => {
                for (key, child) in map {
                    let skip = (path.is_empty()
                        && matches!(key.as_str(), "status" | "apiVersion" | "kind"))
                        || (path.len() == 1
                            && path[0] == "metadata"
                            && SERVER_FIELDS.contains(&key.as_str()));
                    if skip {
                        continue;
                    }
                    let mut child_path = path.clone();
                    child_path.push(key.clone());
                    stack.push((child_path, child));
                }
            }
            _ => {
                found.insert(path);
            }
        }
    }
    found
}

/// `fields` in the `FieldsV1` form: `{"f:spec": {"f:replicas": {}}}`.
fn to_fields_v1(fields: &BTreeSet<FieldPath>) -> Value {
    let mut root = Map::new();
    for path in fields {
        let mut node = &mut root;
        for key in path {
            let entry = node
                .entry(format!("f:{key}"))
                .or_insert_with(|| Value::Object(Map::new()));
            if !entry.is_object() {
                *entry = Value::Object(Map::new());
            }
            let Value::Object(next) = entry else {
                unreachable!("made an object above")
            };
            node = next;
        }
    }
    Value::Object(root)
}

/// The leaves a `FieldsV1` value names.
fn from_fields_v1(value: &Value) -> BTreeSet<FieldPath> {
    let mut found = BTreeSet::new();
    let mut stack: Vec<(FieldPath, &Value)> = vec![(Vec::new(), value)];
    while let Some((path, value)) = stack.pop() {
        let children: Vec<(&String, &Value)> = value
            .as_object()
            .map(|m| m.iter().filter(|(k, _)| k.starts_with("f:")).collect())
            .unwrap_or_default();
        if children.is_empty() {
            if !path.is_empty() {
                found.insert(path);
            }
            continue;
        }
        for (key, child) in children {
            let mut child_path = path.clone();
            child_path.push(key.trim_start_matches("f:").to_owned());
            stack.push((child_path, child));
        }
    }
    found
}

fn at<'a>(object: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(object, |node, key| node.get(key))
}

fn remove_at(object: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut node = object;
    for key in parents {
        match node.get_mut(key) {
            Some(next) => node = next,
            None => return,
        }
    }
    if let Value::Object(map) = node {
        map.remove(last);
    }
}

fn set_at(object: &mut Value, path: &[String], value: Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut node = object;
    for key in parents {
        if !node.is_object() {
            *node = Value::Object(Map::new());
        }
        let Value::Object(map) = node else {
            unreachable!("made an object above")
        };
        node = map
            .entry(key.clone())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    if !node.is_object() {
        *node = Value::Object(Map::new());
    }
    if let Value::Object(map) = node {
        map.insert(last.clone(), value);
    }
}

/// Each manager's fields, from `metadata.managedFields`.
fn managers(object: &Value) -> Vec<(String, String, BTreeSet<FieldPath>)> {
    object
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .map(|entries| {
            entries
                .iter()
                .map(|entry| {
                    let text = |k: &str| {
                        entry
                            .get(k)
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_owned()
                    };
                    let fields = entry
                        .get("fieldsV1")
                        .map(from_fields_v1)
                        .unwrap_or_default();
                    (text("manager"), text("operation"), fields)
                })
                .collect()
        })
        .unwrap_or_default()
}

fn write_managers(
    object: &mut Value,
    managers: &[(String, String, BTreeSet<FieldPath>)],
    api_version: &str,
) {
    let entries: Vec<Value> = managers
        .iter()
        .filter(|(_, _, fields)| !fields.is_empty())
        .map(|(manager, operation, fields)| {
            json!({
                "manager": manager,
                "operation": operation,
                "apiVersion": api_version,
                "time": crate::clock::now_time(),
                "fieldsType": "FieldsV1",
                "fieldsV1": to_fields_v1(fields),
            })
        })
        .collect();
    crate::resources::metadata(object).insert("managedFields".to_owned(), Value::Array(entries));
}

/// A new object created by `manager` with `operation` (`Apply` or `Update`), owning every field.
pub(crate) fn created(mut object: Value, manager: &str, operation: &str) -> Value {
    let fields = leaves(&object);
    let api_version = object
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    write_managers(
        &mut object,
        &[(manager.to_owned(), operation.to_owned(), fields)],
        &api_version,
    );
    object
}

/// `applied` by `manager` over `current`: the merged object, or the fields in conflict.
pub(crate) fn apply(
    current: &Value,
    applied: &Value,
    manager: &str,
    force: bool,
) -> Result<Value, Conflicts> {
    let new_fields = leaves(applied);
    let mut owners = managers(current);
    let mut conflicts = Vec::new();
    for (owner, operation, fields) in &owners {
        if owner == manager && operation == "Apply" {
            continue;
        }
        for path in new_fields.intersection(fields) {
            if at(current, path) != at(applied, path) {
                conflicts.push(format!("{owner}: .{}", path.join(".")));
            }
        }
    }
    if !conflicts.is_empty() && !force {
        return Err(Conflicts { fields: conflicts });
    }
    let previous: BTreeSet<FieldPath> = owners
        .iter()
        .find(|(owner, operation, _)| owner == manager && operation == "Apply")
        .map(|(_, _, fields)| fields.clone())
        .unwrap_or_default();
    let others: BTreeSet<FieldPath> = owners
        .iter()
        .filter(|(owner, operation, _)| !(owner == manager && operation == "Apply"))
        .flat_map(|(_, _, fields)| fields.iter().cloned())
        .collect();
    let mut merged = current.clone();
    for dropped in previous.difference(&new_fields) {
        if !others.contains(dropped) {
            remove_at(&mut merged, dropped);
        }
    }
    for path in &new_fields {
        if let Some(value) = at(applied, path) {
            set_at(&mut merged, path, value.clone());
        }
    }
    if let Some(kind) = applied.get("apiVersion") {
        merged["apiVersion"] = kind.clone();
    }
    // Forced fields change hands; the manager's set is replaced by what it applied now.
    for (owner, operation, fields) in &mut owners {
        if !(owner == manager && operation == "Apply") {
            fields.retain(|path| !new_fields.contains(path));
        }
    }
    owners.retain(|(owner, operation, _)| !(owner == manager && operation == "Apply"));
    owners.push((manager.to_owned(), "Apply".to_owned(), new_fields));
    let api_version = merged
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    write_managers(&mut merged, &owners, &api_version);
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config_map(data: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "ns"}, "data": data})
    }

    #[test]
    fn a_manager_owns_what_it_applied_and_drops_what_it_no_longer_gives() {
        let first = created(config_map(json!({"a": "1", "b": "2"})), "gust", "Apply");
        let fields = first["metadata"]["managedFields"][0]["fieldsV1"].clone();
        assert_eq!(fields["f:data"]["f:a"], json!({}));
        let second = apply(&first, &config_map(json!({"a": "3"})), "gust", false).expect("applied");
        assert_eq!(second["data"], json!({"a": "3"}));
    }

    #[test]
    fn another_managers_field_conflicts_unless_forced() {
        let first = created(config_map(json!({"a": "1"})), "kubectl", "Update");
        let conflict =
            apply(&first, &config_map(json!({"a": "2"})), "gust", false).expect_err("a conflict");
        assert_eq!(conflict.fields, ["kubectl: .data.a"]);
        let same = apply(
            &first,
            &config_map(json!({"a": "1", "b": "x"})),
            "gust",
            false,
        )
        .expect("the same value is shared, not a conflict");
        assert_eq!(same["data"], json!({"a": "1", "b": "x"}));
        let forced = apply(
            &first,
            &config_map(json!({"b": "x", "a": "2"})),
            "gust",
            true,
        )
        .expect("forced");
        assert_eq!(forced["data"], json!({"a": "2", "b": "x"}));
        let owners = managers(&forced);
        let kubectl = owners.iter().find(|(m, _, _)| m == "kubectl");
        assert!(kubectl.is_none_or(|(_, _, f)| f.is_empty()), "{owners:?}");
    }

    #[test]
    fn fields_round_trip_through_fields_v1() {
        let object = json!({"metadata": {"name": "x", "uid": "u", "labels": {"a": "b"}}, "spec": {"list": [1, 2], "empty": {}}});
        let fields = leaves(&object);
        assert_eq!(from_fields_v1(&to_fields_v1(&fields)), fields);
        assert!(!fields.contains(&vec!["metadata".to_owned(), "uid".to_owned()]));
    }
}
