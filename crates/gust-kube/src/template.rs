//! Reading `pod_template_file`: a pod manifest in YAML (or JSON), relative paths resolved
//! against the DAG file's folder.

use std::path::{Path, PathBuf};

use gust_operators::kubernetes_pod::PodArgs;
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
    let path = resolve(file, dag_file);
    let read = |source| TemplateError::Read {
        path: path.clone(),
        source,
    };
    let size = std::fs::metadata(&path).map_err(read)?.len();
    if size > MAX_TEMPLATE_BYTES {
        return Err(TemplateError::TooLarge(path));
    }
    let text = std::fs::read_to_string(&path).map_err(read)?;
    let value: Value = serde_yaml_ng::from_str(&text).map_err(|err| TemplateError::Yaml {
        path: path.clone(),
        message: err.to_string(),
    })?;
    Ok(Some(value))
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
    serde_yaml_ng::from_str(&text)
        .map(Some)
        .map_err(|err| fail(format!("not valid YAML: {err}")))
}

#[cfg(test)]
mod tests {
    use super::*;

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
