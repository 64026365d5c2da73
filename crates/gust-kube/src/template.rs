//! Reading `pod_template_file`: a pod manifest in YAML (or JSON), relative paths resolved
//! against the DAG file's folder.
//!
//! Read as Airflow reads it (`yaml.safe_load`, then the Kubernetes Python client's
//! deserializer): YAML 1.1 scalars (`yes`, `on` are booleans), and a scalar where the pod has
//! text (an annotation, a label, a variable's value) becomes Python's `str()` of it, so that
//! `sidecar.istio.io/inject: yes` is the annotation `"True"`, as under Airflow.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use gust_operators::kubernetes_pod::PodArgs;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// The largest template file read: a pod manifest is a few kilobytes.
const MAX_TEMPLATE_BYTES: u64 = 1024 * 1024;

/// Why a template file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// It cannot be read.
    #[error("pod_template_file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// It is larger than a pod manifest can be.
    #[error("pod_template_file {0}: larger than 1 MiB; is it the right file?")]
    TooLarge(PathBuf),
    /// It is not YAML.
    #[error("pod_template_file {path}: not valid YAML: {message}")]
    Yaml {
        /// The file.
        path: PathBuf,
        /// The parser's message, with its line.
        message: String,
    },
}

/// Where `file` is, relative paths being relative to the DAG file's folder.
#[must_use]
pub fn resolve(file: &str, dag_file: &Path) -> PathBuf {
    let path = Path::new(file);
    if path.is_absolute() {
        return path.to_owned();
    }
    dag_file.parent().unwrap_or(Path::new(".")).join(path)
}

/// The task's template file as JSON, or `None` when it names none.
pub fn load(args: &PodArgs, dag_file: &Path) -> Result<Option<Value>, TemplateError> {
    let Some(file) = &args.pod_template_file else {
        return Ok(None);
    };
    load_file(&resolve(file, dag_file)).map(Some)
}

/// The pod template at `path` as JSON, read as Airflow reads a `pod_template_file`.
pub fn load_file(path: &Path) -> Result<Value, TemplateError> {
    let path = path.to_owned();
    let read = |source| TemplateError::Read {
        path: path.clone(),
        source,
    };
    let size = std::fs::metadata(&path).map_err(read)?.len();
    if size > MAX_TEMPLATE_BYTES {
        return Err(TemplateError::TooLarge(path));
    }
    let text = std::fs::read_to_string(&path).map_err(read)?;
    let value = read_yaml(&path, &text).map_err(|message| TemplateError::Yaml {
        path: path.clone(),
        message,
    })?;
    Ok(text_where_text_is_expected::<Pod>(value))
}

/// `text` as PyYAML's `safe_load` reads it (YAML 1.1 scalars), as JSON; the error says where.
fn read_yaml(path: &Path, text: &str) -> Result<Value, String> {
    let file: Arc<Path> = Arc::from(path);
    gust_dagfile::yaml::load(&file, text)
        .map(|node| node.to_json())
        .map_err(|err| match err.location() {
            Some(at) => format!("{err} at line {}, column {}", at.line, at.col),
            None => err.to_string(),
        })
}

/// The most scalars turned into text in one manifest (each is one more parse).
const MAX_TEXT_FIXES: usize = 256;

/// `value` with every boolean or number that `T` has as text replaced by Python's `str()` of
/// it, as the Kubernetes Python client's deserializer does (`"True"`, `"5"`). Found by reading
/// `value` as `T` and fixing the value each type error points at; anything else is left for
/// the pod builder to report.
fn text_where_text_is_expected<T: DeserializeOwned>(mut value: Value) -> Value {
    for _ in 0..MAX_TEXT_FIXES {
        let Err(err) = serde_path_to_error::deserialize::<_, T>(value.clone()) else {
            break;
        };
        if !err.inner().to_string().contains("expected a string") {
            break;
        }
        let Some(at) = pointer_to(err.path()).and_then(|p| value.pointer_mut(&p)) else {
            break;
        };
        let Some(text) = python_str(at) else {
            break;
        };
        *at = Value::String(text);
    }
    value
}

/// The JSON pointer of a deserializer's path, when it has one.
fn pointer_to(path: &serde_path_to_error::Path) -> Option<String> {
    use serde_path_to_error::Segment;
    let mut pointer = String::new();
    for segment in path.iter() {
        pointer.push('/');
        match segment {
            Segment::Seq { index } => pointer.push_str(&index.to_string()),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                pointer.push_str(&key.replace('~', "~0").replace('/', "~1"));
            }
            Segment::Unknown => return None,
        }
    }
    Some(pointer)
}

/// Python's `str()` of a scalar.
fn python_str(value: &Value) -> Option<String> {
    match value {
        Value::Bool(true) => Some("True".to_owned()),
        Value::Bool(false) => Some("False".to_owned()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Reads `job_template_file` (a Job manifest in YAML or JSON, relative paths next to the DAG
/// file), or `None` when the task names none. The error names the file and says what is wrong.
pub fn load_job_template(file: Option<&str>, dag_file: &Path) -> Result<Option<Value>, String> {
    let Some(file) = file else {
        return Ok(None);
    };
    let path = resolve(file, dag_file);
    let fail = |why: String| format!("job_template_file {}: {why}", path.display());
    let size = std::fs::metadata(&path)
        .map_err(|err| fail(err.to_string()))?
        .len();
    if size > MAX_TEMPLATE_BYTES {
        return Err(fail("larger than 1 MiB; is it the right file?".to_owned()));
    }
    let text = std::fs::read_to_string(&path).map_err(|err| fail(err.to_string()))?;
    read_yaml(&path, &text)
        .map(|value| Some(text_where_text_is_expected::<Job>(value)))
        .map_err(|err| fail(format!("not valid YAML: {err}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_1_1_booleans_in_text_fields_read_as_airflow_reads_them() {
        // What Airflow 3.3.2's KPO (cncf.kubernetes 10.25.0) builds from this template:
        // annotations "True", "True", "True", "5", "yes"; hostNetwork true.
        let text = "metadata:\n  annotations:\n    sidecar.istio.io/inject: yes\n    other: on\n    \
                    third: true\n    num: 5\n    quoted: \"yes\"\nspec:\n  hostNetwork: yes\n  \
                    containers: [{name: base, image: x, env: [{name: A, value: off}]}]\n";
        let value = read_yaml(Path::new("pod.yaml"), text).unwrap();
        let value = text_where_text_is_expected::<Pod>(value);
        assert_eq!(
            value["metadata"]["annotations"],
            serde_json::json!({"sidecar.istio.io/inject": "True", "other": "True",
                               "third": "True", "num": "5", "quoted": "yes"})
        );
        assert_eq!(value["spec"]["hostNetwork"], true);
        assert_eq!(value["spec"]["containers"][0]["env"][0]["value"], "False");
        let _: Pod = serde_json::from_value(value).expect("a pod");
    }

    #[test]
    fn relative_templates_are_next_to_the_dag_file() {
        let dag = Path::new("/dags/team/pipeline.yaml");
        assert_eq!(
            resolve("pod.yaml", dag),
            PathBuf::from("/dags/team/pod.yaml")
        );
        assert_eq!(
            resolve("/etc/pod.yaml", dag),
            PathBuf::from("/etc/pod.yaml")
        );
    }
}
