//! Kubernetes manifests as users write them: YAML (or JSON) text with any number of
//! `---`-separated documents, read into objects with bounds on size, count and nesting, and
//! every problem named by its file, line and document. `kind: List` documents are expanded
//! into their items, as kubectl does. Pure: reading a file is the only I/O.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

/// The largest manifest text read (a Kueue release with its CRDs is about 1 MiB).
pub const MAX_MANIFEST_BYTES: u64 = 8 * 1024 * 1024;
/// The most objects one task applies.
pub const MAX_OBJECTS: usize = 2_000;
/// The deepest nesting accepted (CRD schemas nest deeply, nothing legitimate goes further).
pub const MAX_DEPTH: usize = 128;

/// Where manifests came from, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A file.
    File(PathBuf),
    /// An argument's value (`yaml_conf`, `template_spec`).
    Argument(&'static str),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::File(path) => write!(f, "{}", path.display()),
            Self::Argument(name) => write!(f, "argument \"{name}\""),
        }
    }
}

/// Why manifests cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum DocumentError {
    /// The file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// It is larger than any manifest should be.
    #[error("{0}: larger than 8 MiB; is it the right file?")]
    TooLarge(Source),
    /// Not YAML.
    #[error("{source_name}:{line}:{column}: not valid YAML: {message}")]
    Yaml {
        /// Where.
        source_name: Source,
        /// The line (1-based).
        line: usize,
        /// The column (1-based).
        column: usize,
        /// The parser's message.
        message: String,
    },
    /// Too deep or too many objects.
    #[error("{0}: {1}")]
    Bounds(Source, String),
    /// A document is not a Kubernetes object.
    #[error("{source_name}: document {document} (line {line}): {message}")]
    NotAnObject {
        /// Where.
        source_name: Source,
        /// The document (1-based).
        document: usize,
        /// Its first line.
        line: usize,
        /// What is wrong.
        message: String,
    },
}

/// One object read from a manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    /// The object.
    pub object: Value,
    /// Its document's number (1-based) in the text.
    pub document: usize,
    /// Its document's first line (1-based).
    pub line: usize,
}

impl Document {
    /// `apiVersion`.
    #[must_use]
    pub fn api_version(&self) -> &str {
        self.object
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }

    /// `kind`.
    #[must_use]
    pub fn kind(&self) -> &str {
        self.object
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }

    /// `metadata.name`.
    #[must_use]
    pub fn name(&self) -> &str {
        self.object
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }

    /// `metadata.namespace`, when given.
    #[must_use]
    pub fn namespace(&self) -> Option<&str> {
        self.object
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .filter(|ns| !ns.is_empty())
    }
}

/// Reads a manifest file (relative paths against the DAG file's folder).
pub fn read_file(file: &str, dag_file: &Path) -> Result<Vec<Document>, DocumentError> {
    let path = crate::template::resolve(file, dag_file);
    let read = |source| DocumentError::Read {
        path: path.clone(),
        source,
    };
    let size = std::fs::metadata(&path).map_err(read)?.len();
    if size > MAX_MANIFEST_BYTES {
        return Err(DocumentError::TooLarge(Source::File(path)));
    }
    let text = std::fs::read_to_string(&path).map_err(read)?;
    parse(&text, &Source::File(path))
}

/// Reads one YAML (or JSON) value from a file that is not a list of Kubernetes objects (a
/// SparkApplication template), with the same bounds.
pub fn read_value(path: &Path) -> Result<Value, DocumentError> {
    let read = |source| DocumentError::Read {
        path: path.to_owned(),
        source,
    };
    let size = std::fs::metadata(path).map_err(read)?.len();
    if size > MAX_MANIFEST_BYTES {
        return Err(DocumentError::TooLarge(Source::File(path.to_owned())));
    }
    let text = std::fs::read_to_string(path).map_err(read)?;
    let value: Value = serde_yaml_ng::from_str(&text).map_err(|err| {
        let (line, column) = err.location().map_or((1, 1), |at| (at.line(), at.column()));
        DocumentError::Yaml {
            source_name: Source::File(path.to_owned()),
            line,
            column,
            message: err.to_string(),
        }
    })?;
    check_depth(&value)
        .map_err(|message| DocumentError::Bounds(Source::File(path.to_owned()), message))?;
    Ok(value)
}

/// Reads every object of `text`, skipping empty documents.
pub fn parse(text: &str, source: &Source) -> Result<Vec<Document>, DocumentError> {
    if text.len() as u64 > MAX_MANIFEST_BYTES {
        return Err(DocumentError::TooLarge(source.clone()));
    }
    let starts = document_lines(text);
    let mut documents = Vec::new();
    for (index, document) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let number = index + 1;
        let line = starts.get(index).copied().unwrap_or(1);
        let value = Value::deserialize(document).map_err(|err| {
            let (line, column) = err
                .location()
                .map_or((line, 1), |at| (at.line(), at.column()));
            DocumentError::Yaml {
                source_name: source.clone(),
                line,
                column,
                message: err.to_string(),
            }
        })?;
        if value.is_null() {
            continue;
        }
        check_depth(&value).map_err(|message| DocumentError::Bounds(source.clone(), message))?;
        push_objects(value, number, line, source, &mut documents)?;
        if documents.len() > MAX_OBJECTS {
            return Err(DocumentError::Bounds(
                source.clone(),
                format!("more than {MAX_OBJECTS} objects"),
            ));
        }
    }
    Ok(documents)
}

/// Objects given as values (an inline map or list in the DAG file).
pub fn from_values(values: Vec<Value>, source: &Source) -> Result<Vec<Document>, DocumentError> {
    let mut documents = Vec::new();
    for (index, value) in values.into_iter().enumerate() {
        check_depth(&value).map_err(|message| DocumentError::Bounds(source.clone(), message))?;
        push_objects(value, index + 1, 1, source, &mut documents)?;
    }
    if documents.len() > MAX_OBJECTS {
        return Err(DocumentError::Bounds(
            source.clone(),
            format!("more than {MAX_OBJECTS} objects"),
        ));
    }
    Ok(documents)
}

fn push_objects(
    value: Value,
    document: usize,
    line: usize,
    source: &Source,
    out: &mut Vec<Document>,
) -> Result<(), DocumentError> {
    let fail = |message: String| DocumentError::NotAnObject {
        source_name: source.clone(),
        document,
        line,
        message,
    };
    let Value::Object(map) = &value else {
        return Err(fail(
            "not a Kubernetes object (a map with apiVersion, kind and metadata.name)".to_owned(),
        ));
    };
    let kind = map.get("kind").and_then(Value::as_str).unwrap_or_default();
    if kind.ends_with("List") && map.get("items").is_some_and(Value::is_array) {
        let items = map
            .get("items")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for item in items {
            push_objects(item, document, line, source, out)?;
        }
        return Ok(());
    }
    let text = |key: &str| map.get(key).and_then(Value::as_str).unwrap_or_default();
    if text("apiVersion").is_empty() {
        return Err(fail("no apiVersion (e.g. `apiVersion: v1`)".to_owned()));
    }
    if kind.is_empty() {
        return Err(fail("no kind (e.g. `kind: ConfigMap`)".to_owned()));
    }
    let name = value
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if name.is_empty() {
        return Err(fail(format!("the {kind} has no metadata.name")));
    }
    out.push(Document {
        object: value,
        document,
        line,
    });
    Ok(())
}

/// The first line of each document: line 1, then the line after each `---` (a `---` before
/// any content and any other separator starts the first document instead).
fn document_lines(text: &str) -> Vec<usize> {
    let mut starts = vec![1];
    let mut started = false;
    for (index, line) in text.lines().enumerate() {
        let trimmed = line.trim_end();
        if trimmed == "---" || trimmed.starts_with("--- ") {
            if started {
                starts.push(index + 2);
            } else if let Some(first) = starts.last_mut() {
                *first = index + 2;
            }
            started = true;
        } else if !trimmed.is_empty() && !trimmed.starts_with('#') {
            started = true;
        }
    }
    starts
}

/// `object` with secret values hidden, for printing: a Secret's `data` and `stringData`
/// values, and the literal `value` of every environment variable (in any `env` list) whose
/// name looks secret (see [`crate::manifest::is_sensitive`]).
#[must_use]
pub fn masked(object: &Value) -> Value {
    let mut object = object.clone();
    let is_secret = object.get("kind").and_then(Value::as_str) == Some("Secret");
    if is_secret && let Value::Object(map) = &mut object {
        for key in ["data", "stringData"] {
            if let Some(Value::Object(values)) = map.get_mut(key) {
                for value in values.values_mut() {
                    *value = Value::String(crate::manifest::MASK.to_owned());
                }
            }
        }
    }
    let mut stack = vec![&mut object];
    while let Some(value) = stack.pop() {
        match value {
            Value::Object(map) => {
                if let Some(Value::Array(vars)) = map.get_mut("env") {
                    for var in vars.iter_mut() {
                        let sensitive = var
                            .get("name")
                            .and_then(Value::as_str)
                            .is_some_and(crate::manifest::is_sensitive);
                        if sensitive && var.get("value").is_some_and(Value::is_string) {
                            var["value"] = Value::String(crate::manifest::MASK.to_owned());
                        }
                    }
                }
                stack.extend(map.values_mut());
            }
            Value::Array(items) => stack.extend(items.iter_mut()),
            _ => {}
        }
    }
    object
}

fn check_depth(value: &Value) -> Result<(), String> {
    let mut stack = vec![(value, 1usize)];
    while let Some((value, depth)) = stack.pop() {
        if depth > MAX_DEPTH {
            return Err(format!("nested deeper than {MAX_DEPTH} levels"));
        }
        match value {
            Value::Array(items) => stack.extend(items.iter().map(|v| (v, depth + 1))),
            Value::Object(map) => stack.extend(map.values().map(|v| (v, depth + 1))),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SOURCE: Source = Source::Argument("yaml_conf");

    #[test]
    fn several_documents_and_lists_become_objects_with_their_lines() {
        let text = "# settings\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n\n---\napiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Secret, metadata: {name: b}}\n- {apiVersion: v1, kind: Service, metadata: {name: c}}\n";
        let docs = parse(text, &SOURCE).expect("valid");
        let kinds: Vec<&str> = docs.iter().map(Document::kind).collect();
        assert_eq!(kinds, ["ConfigMap", "Secret", "Service"]);
        assert_eq!((docs[0].document, docs[0].line), (1, 3));
        assert_eq!(docs[1].line, 9);
    }

    #[test]
    fn invalid_yaml_is_named_by_line_and_column() {
        let text = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n   bad: indent\n";
        let err = parse(text, &Source::File(PathBuf::from("cm.yaml"))).expect_err("invalid");
        let message = err.to_string();
        assert!(message.starts_with("cm.yaml:5:"), "{message}");
        assert!(message.contains("not valid YAML"), "{message}");
    }

    #[test]
    fn documents_that_are_not_objects_say_what_is_missing() {
        let err = parse("apiVersion: v1\nmetadata: {name: a}\n", &SOURCE).expect_err("no kind");
        assert_eq!(
            err.to_string(),
            "argument \"yaml_conf\": document 1 (line 1): no kind (e.g. `kind: ConfigMap`)"
        );
        let err = parse("---\n- 1\n", &SOURCE).expect_err("a list");
        assert!(err.to_string().contains("document 1 (line 2)"), "{err}");
        let err = parse("apiVersion: v1\nkind: ConfigMap\n", &SOURCE).expect_err("no name");
        assert!(
            err.to_string()
                .contains("the ConfigMap has no metadata.name")
        );
    }

    #[test]
    fn secrets_and_secret_looking_variables_are_masked() {
        let secret = serde_json::json!({"kind": "Secret", "data": {"token": "aGk="}, "stringData": {"pw": "x"}});
        let shown = masked(&secret);
        assert_eq!(shown["data"]["token"], "***");
        assert_eq!(shown["stringData"]["pw"], "***");
        let app = serde_json::json!({"spec": {"driver": {"env": [
            {"name": "DB_PASSWORD", "value": "hunter2"},
            {"name": "MODE", "value": "full"},
            {"name": "API_TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
        ]}}});
        let shown = masked(&app);
        let env = &shown["spec"]["driver"]["env"];
        assert_eq!(env[0]["value"], "***");
        assert_eq!(env[1]["value"], "full");
        assert_eq!(env[2]["valueFrom"]["secretKeyRef"]["name"], "s");
    }

    #[test]
    fn nesting_and_size_are_bounded() {
        let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
        assert!(parse(&deep, &SOURCE).is_err());
        let mut value = Value::from(1);
        for _ in 0..200 {
            value = Value::Array(vec![value]);
        }
        let err = from_values(vec![value], &SOURCE).expect_err("too deep");
        assert!(err.to_string().contains("nested deeper"), "{err}");
        let mut laughs = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for (name, previous) in ["b", "c", "d", "e", "f", "g", "h", "i"]
            .iter()
            .zip(["a", "b", "c", "d", "e", "f", "g", "h"])
        {
            laughs.push_str(&format!(
                "{name}: &{name} [{}]\n",
                vec![format!("*{previous}"); 10].join(", ")
            ));
        }
        let err = parse(&laughs, &SOURCE).expect_err("alias expansion is bounded");
        assert!(matches!(err, DocumentError::Yaml { .. }), "{err}");
        let huge = "a".repeat(usize::try_from(MAX_MANIFEST_BYTES).expect("fits") + 1);
        assert!(matches!(
            parse(&huge, &SOURCE),
            Err(DocumentError::TooLarge(_))
        ));
    }
}
