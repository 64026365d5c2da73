//! Kubernetes objects as users write them in DAG files, read into `k8s_openapi` types.
//!
//! Two spellings arrive: the manifest form (camelCase, as in kubectl YAML) and the form
//! dag-factory files carry over from Python, the Kubernetes client's snake_case attributes with
//! an optional `__type__: kubernetes.client.models.V1...` key. Both are turned into the manifest
//! form here, `__type__` is checked against the type the argument expects, and a field the
//! Kubernetes type does not have is an error naming its path rather than being dropped silently.

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::spec::ArgumentError;

/// Maps whose keys are the user's (label names, resource names...), never converted.
const FREE_FORM_MAPS: &[&str] = &[
    "labels",
    "annotations",
    "nodeSelector",
    "limits",
    "requests",
    "matchLabels",
    "volumeAttributes",
    "options",
    "overhead",
    "data",
    "stringData",
];

/// Python client attributes whose manifest name is not their plain camelCase.
const IRREGULAR_NAMES: &[(&str, &str)] = &[
    ("_exec", "exec"),
    ("host_ip", "hostIP"),
    ("host_ips", "hostIPs"),
    ("pod_ip", "podIP"),
    ("pod_ips", "podIPs"),
    ("host_pid", "hostPID"),
    ("host_ipc", "hostIPC"),
    ("set_hostname_as_fqdn", "setHostnameAsFQDN"),
    ("target_ww_ns", "targetWWNs"),
    ("scale_io", "scaleIO"),
];

/// The key naming a Python client object's class.
const TYPE_KEY: &str = "__type__";

/// Reads a Kubernetes object (or a list of them) given under argument `argument` into `T`.
/// `expected` is the Python client class each object stands for (`V1Volume`), checked against
/// any `__type__` key.
pub fn read_object<T: DeserializeOwned + serde::Serialize>(
    argument: &str,
    value: &Value,
    expected: &str,
) -> Result<T, ArgumentError> {
    let manifest = to_manifest_form(value, argument, Some(expected))?;
    let typed: T =
        serde_path_to_error::deserialize(manifest.clone()).map_err(|err| ArgumentError {
            path: join(argument, &err.path().to_string()),
            message: err.inner().to_string(),
        })?;
    let echoed = serde_json::to_value(&typed).map_err(|err| ArgumentError {
        path: argument.to_owned(),
        message: err.to_string(),
    })?;
    if let Some(path) = first_unknown_field(&manifest, &echoed, argument) {
        return Err(ArgumentError {
            path,
            message: format!(
                "{expected} has no such field; write its fields as in a Kubernetes manifest \
                 (camelCase) or as the Python client names them (snake_case)"
            ),
        });
    }
    Ok(typed)
}

/// The manifest form of `value`: snake_case keys become camelCase (except inside free-form
/// maps), nulls are dropped, `__type__` keys are checked and removed, and numbers given as
/// resource quantities become text.
pub fn to_manifest_form(
    value: &Value,
    path: &str,
    expected: Option<&str>,
) -> Result<Value, ArgumentError> {
    match value {
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| to_manifest_form(item, &format!("{path}[{i}]"), expected))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        Value::Object(map) => {
            check_type_key(map, path, expected)?;
            let mut out = Map::with_capacity(map.len());
            for (key, item) in map {
                if key == TYPE_KEY || item.is_null() {
                    continue;
                }
                let name = manifest_name(key);
                let child_path = join(path, &name);
                let converted = if FREE_FORM_MAPS.contains(&name.as_str()) {
                    free_form(item, &name)
                } else {
                    to_manifest_form(item, &child_path, None)?
                };
                out.insert(name, converted);
            }
            Ok(Value::Object(out))
        }
        other => Ok(other.clone()),
    }
}

/// A free-form map is kept as given, except that quantities (`cpu: 1`) become text as the API
/// expects, and nulls are dropped.
fn free_form(value: &Value, name: &str) -> Value {
    let Value::Object(map) = value else {
        return value.clone();
    };
    let quantities = matches!(name, "limits" | "requests" | "overhead");
    Value::Object(
        map.iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| {
                let v = match v {
                    Value::Number(n) if quantities => Value::String(n.to_string()),
                    other => other.clone(),
                };
                (k.clone(), v)
            })
            .collect(),
    )
}

fn check_type_key(
    map: &Map<String, Value>,
    path: &str,
    expected: Option<&str>,
) -> Result<(), ArgumentError> {
    let Some(given) = map.get(TYPE_KEY) else {
        return Ok(());
    };
    let given = given.as_str().unwrap_or_default();
    let class = given.rsplit('.').next().unwrap_or(given);
    let known_prefix =
        given.is_empty() || given.starts_with("kubernetes.client.models.") || !given.contains('.');
    let fits = match expected {
        Some(expected) => class == expected,
        None => known_prefix && class.starts_with('V'),
    };
    if fits && known_prefix {
        return Ok(());
    }
    Err(ArgumentError {
        path: join(path, TYPE_KEY),
        message: match expected {
            Some(expected) => {
                format!("\"{given}\" given where a kubernetes.client.models.{expected} is expected")
            }
            None => format!("\"{given}\" is not a kubernetes.client.models class"),
        },
    })
}

/// The manifest name of a field given in either spelling.
#[must_use]
pub fn manifest_name(key: &str) -> String {
    if let Some((_, name)) = IRREGULAR_NAMES.iter().find(|(py, _)| *py == key) {
        return (*name).to_owned();
    }
    if !key.contains('_') {
        return key.to_owned();
    }
    let mut out = String::with_capacity(key.len());
    let mut upper = false;
    for c in key.chars() {
        if c == '_' {
            upper = !out.is_empty();
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// The path of the first field in `given` that did not survive being read into its type.
pub(super) fn first_unknown_field(given: &Value, echoed: &Value, path: &str) -> Option<String> {
    match (given, echoed) {
        (Value::Object(given), Value::Object(echoed)) => given.iter().find_map(|(key, value)| {
            let child = join(path, key);
            match echoed.get(key) {
                None if is_empty(value) => None,
                None => Some(child),
                Some(back) => first_unknown_field(value, back, &child),
            }
        }),
        (Value::Array(given), Value::Array(echoed)) => given
            .iter()
            .zip(echoed)
            .enumerate()
            .find_map(|(i, (g, e))| first_unknown_field(g, e, &format!("{path}[{i}]"))),
        _ => None,
    }
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Array(items) => items.is_empty(),
        Value::Object(map) => map.is_empty(),
        _ => false,
    }
}

fn join(path: &str, child: &str) -> String {
    match (path.is_empty(), child.is_empty()) {
        (_, true) => path.to_owned(),
        (true, false) => child.to_owned(),
        (false, false) if child.starts_with('[') => format!("{path}{child}"),
        (false, false) => format!("{path}.{child}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ResourceRequirements, Volume};
    use serde_json::json;

    #[test]
    fn snake_case_fields_become_manifest_names() {
        assert_eq!(manifest_name("mount_path"), "mountPath");
        assert_eq!(manifest_name("mountPath"), "mountPath");
        assert_eq!(manifest_name("host_ip"), "hostIP");
        assert_eq!(manifest_name("_exec"), "exec");
        assert_eq!(
            manifest_name("aws_elastic_block_store"),
            "awsElasticBlockStore"
        );
    }

    #[test]
    fn python_client_objects_read_like_manifests() {
        let python = json!([{
            "__type__": "kubernetes.client.models.V1Volume",
            "name": "data",
            "persistent_volume_claim": {"claim_name": "shared", "read_only": null},
        }]);
        let manifest = json!([{"name": "data", "persistentVolumeClaim": {"claimName": "shared"}}]);
        let a: Vec<Volume> = read_object("volumes", &python, "V1Volume").unwrap();
        let b: Vec<Volume> = read_object("volumes", &manifest, "V1Volume").unwrap();
        assert_eq!(a, b);
        assert_eq!(
            a[0].persistent_volume_claim.as_ref().unwrap().claim_name,
            "shared"
        );
    }

    #[test]
    fn free_form_keys_are_kept_and_quantities_become_text() {
        let value =
            json!({"limits": {"nvidia.com/gpu": 1, "memory": "1Gi"}, "requests": {"cpu_x": 0.5}});
        let r: ResourceRequirements =
            read_object("container_resources", &value, "V1ResourceRequirements").unwrap();
        let limits = r.limits.unwrap();
        assert_eq!(limits["nvidia.com/gpu"].0, "1");
        assert_eq!(r.requests.unwrap()["cpu_x"].0, "0.5");
    }

    #[test]
    fn a_wrong_type_key_is_refused_with_its_path() {
        let value = json!([{"__type__": "kubernetes.client.models.V1VolumeMount", "name": "x"}]);
        let err = read_object::<Vec<Volume>>("volumes", &value, "V1Volume").unwrap_err();
        assert_eq!(err.path, "volumes[0].__type__");
        assert!(err.message.contains("V1Volume is expected"), "{err}");
    }

    #[test]
    fn an_unknown_field_is_named_not_dropped() {
        let value =
            json!([{"name": "x", "emptyDir": {}, "persistentVolumeClam": {"claimName": "c"}}]);
        let err = read_object::<Vec<Volume>>("volumes", &value, "V1Volume").unwrap_err();
        assert_eq!(err.path, "volumes[0].persistentVolumeClam");
    }

    #[test]
    fn a_wrong_value_type_names_its_path() {
        let value = json!([{"name": "x", "hostPath": {"path": ["not", "text"]}}]);
        let err = read_object::<Vec<Volume>>("volumes", &value, "V1Volume").unwrap_err();
        assert_eq!(err.path, "volumes[0].hostPath.path");
    }
}
