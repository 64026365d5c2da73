//! `processing`: an ML processing step (the shape of SageMaker's `ProcessingStep`) run as a pod.
//!
//! Its inputs are downloaded from object storage into the pod before the step's command runs,
//! and its outputs uploaded after it exits 0; the step's XCom is the map of output names to
//! their URIs. It takes every `kubernetes_pod` argument (it runs as a pod) plus `code`,
//! `command`, `inputs`, `outputs` and `config`. This module only says what the operator
//! accepts and checks it; `gust-processing` turns a try into the pod that does the work.

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::kubernetes_pod::{self, PodArgs};
use crate::spec::{ArgumentError, OperatorSpec, read_args};

/// The folder of a processing pod everything is exchanged through (SageMaker's).
pub const PROCESSING_DIR: &str = "/opt/ml/processing";
/// Where inputs go unless they name a destination: `<INPUT_DIR>/<name>`.
pub const INPUT_DIR: &str = "/opt/ml/processing/input";
/// Where outputs are taken from unless they name a source: `<OUTPUT_DIR>/<name>`.
pub const OUTPUT_DIR: &str = "/opt/ml/processing/output";
/// Where `code` is put in the pod.
pub const CODE_DIR: &str = "/opt/ml/processing/input/code";
/// Where `config` is put in the pod.
pub const CONFIG_DIR: &str = "/opt/ml/processing/input/config";
/// The entry file of a `code` folder when no `command` is given.
pub const FOLDER_ENTRY_FILE: &str = "main.py";
/// The interpreter `code` runs with when no `command` is given.
pub const PYTHON: &str = "python3";

/// What processing adds to `kubernetes_pod`'s arguments.
const OWN_ARGUMENTS: &[&str] = &["code", "command", "inputs", "outputs", "config"];
/// `kubernetes_pod`'s arguments; its `cmds` is processing's `command`.
const POD_ARGUMENTS: &[&str] = kubernetes_pod::SPEC.arguments;
const ARGUMENT_COUNT: usize = OWN_ARGUMENTS.len() + POD_ARGUMENTS.len() - 1;
static ARGUMENTS: [&str; ARGUMENT_COUNT] = arguments();

/// Processing's own arguments, then every pod argument but `cmds`.
const fn arguments() -> [&'static str; ARGUMENT_COUNT] {
    let mut all = [""; ARGUMENT_COUNT];
    let mut n = 0;
    let mut i = 0;
    while i < OWN_ARGUMENTS.len() {
        all[n] = OWN_ARGUMENTS[i];
        n += 1;
        i += 1;
    }
    i = 0;
    while i < POD_ARGUMENTS.len() {
        if !same(POD_ARGUMENTS[i], "cmds") {
            all[n] = POD_ARGUMENTS[i];
            n += 1;
        }
        i += 1;
    }
    assert!(n == ARGUMENT_COUNT, "kubernetes_pod has exactly one `cmds`");
    all
}

const fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// The arguments of a processing step, after rendering.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessingArgs {
    /// Every `kubernetes_pod` argument; `cmds` is always empty (it is [`Self::command`]).
    pub pod: PodArgs,
    /// A file or folder, relative to the DAG file's folder or absolute, put at [`CODE_DIR`].
    pub code: Option<String>,
    /// The step's command (`cmds` is KPO's name for it; one string runs with `sh -c`). Empty:
    /// run `code`'s entry file with [`PYTHON`].
    pub command: Vec<String>,
    /// What is downloaded into the pod before the command runs.
    pub inputs: Vec<Input>,
    /// What is uploaded after it exits 0.
    pub outputs: Vec<Output>,
    /// A file next to the DAG (relative to its folder, or absolute) or a URI, put at
    /// [`CONFIG_DIR`]; the step sees it as the input `config` (`$GUST_INPUT_CONFIG`).
    pub config: Option<String>,
}

/// One input of a step.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Input {
    /// Its name: letters, digits, `_` and `-`.
    pub name: String,
    /// The URI of an object (downloaded as a file) or a prefix (every object under it).
    pub source: String,
    /// Where it goes in the pod (default `/opt/ml/processing/input/<name>`).
    #[serde(default)]
    pub destination: Option<String>,
}

impl Input {
    /// The container path it is downloaded to.
    #[must_use]
    pub fn destination(&self) -> String {
        self.destination
            .clone()
            .unwrap_or_else(|| format!("{INPUT_DIR}/{}", self.name))
    }
}

/// One output of a step.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Output {
    /// Its name: letters, digits, `_` and `-`; also its key in the step's XCom.
    pub name: String,
    /// The container path (a file or a folder) uploaded (default
    /// `/opt/ml/processing/output/<name>`).
    #[serde(default)]
    pub source: Option<String>,
    /// The URI it is uploaded to (default `<artifact root>/<dag>/<run>/<task>/<name>`).
    #[serde(default)]
    pub destination: Option<String>,
}

impl Output {
    /// The container path it is uploaded from.
    #[must_use]
    pub fn source(&self) -> String {
        self.source
            .clone()
            .unwrap_or_else(|| format!("{OUTPUT_DIR}/{}", self.name))
    }
}

/// The variable holding an input's container path: `GUST_INPUT_<NAME>`, upper-cased, `-` as
/// `_`.
#[must_use]
pub fn input_variable(name: &str) -> String {
    variable("GUST_INPUT_", name)
}

/// The variable holding an output's container path: `GUST_OUTPUT_<NAME>`.
#[must_use]
pub fn output_variable(name: &str) -> String {
    variable("GUST_OUTPUT_", name)
}

fn variable(prefix: &str, name: &str) -> String {
    format!("{prefix}{}", name.to_uppercase().replace('-', "_"))
}

/// Whether `text` is a URI (`scheme://...`) rather than a local path.
#[must_use]
pub fn is_uri(text: &str) -> bool {
    text.split_once("://").is_some_and(|(scheme, _)| {
        scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
    })
}

/// `command`: a list of words, or one string run by `sh -c`.
#[derive(Deserialize)]
#[serde(untagged, expecting = "expected a list of strings or one string")]
enum Command {
    Shell(String),
    Words(Vec<String>),
}

/// Processing's own arguments, read apart from the pod's.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Own {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    command: Option<Command>,
    #[serde(default)]
    inputs: Vec<Input>,
    #[serde(default)]
    outputs: Vec<Output>,
    #[serde(default)]
    config: Option<String>,
}

/// Whether the values may still be templates (a DAG file being loaded).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stage {
    Loaded,
    Rendered,
}

impl Stage {
    /// Whether `value` can be checked now: a template is checked once rendered.
    fn checks(self, value: &str) -> bool {
        self == Self::Rendered || !(value.contains("{{") || value.contains("{%"))
    }
}

impl ProcessingArgs {
    /// Reads rendered arguments, reporting the path of the first value that does not fit.
    pub fn read(args: &Map<String, Value>) -> Result<Self, ArgumentError> {
        Self::read_at(args, Stage::Rendered)
    }

    /// Checks a DAG file's arguments; values that are templates are checked once rendered.
    pub fn check(args: &Map<String, Value>) -> Result<(), ArgumentError> {
        Self::read_at(args, Stage::Loaded).map(drop)
    }

    fn read_at(args: &Map<String, Value>, stage: Stage) -> Result<Self, ArgumentError> {
        let mut pod = args.clone();
        let mut own = Map::new();
        for name in OWN_ARGUMENTS {
            if let Some(value) = pod.remove(*name) {
                own.insert((*name).to_owned(), value);
            }
        }
        if let Some(cmds) = pod.remove("cmds") {
            if own.contains_key("command") {
                return Err(fail(
                    "cmds",
                    "give `command` or `cmds` (KPO's name for it), not both",
                ));
            }
            own.insert("command".to_owned(), cmds);
        }
        let own: Own = read_args(&own)?;
        let pod = PodArgs::read(&pod)?;
        let command = match own.command {
            None => Vec::new(),
            Some(Command::Shell(line)) => vec!["sh".to_owned(), "-c".to_owned(), line],
            Some(Command::Words(words)) if words.is_empty() => {
                return Err(fail(
                    "command",
                    "is empty; give the words of a command, or leave it out to run `code`",
                ));
            }
            Some(Command::Words(words)) => words,
        };
        let parsed = Self {
            pod,
            code: own.code,
            command,
            inputs: own.inputs,
            outputs: own.outputs,
            config: own.config,
        };
        parsed.validate(stage)?;
        Ok(parsed)
    }

    fn validate(&self, stage: Stage) -> Result<(), ArgumentError> {
        if self.code.is_none() && self.command.is_empty() {
            return Err(fail(
                "code",
                "give `code` (its entry file runs with python3) or `command`",
            ));
        }
        for (name, value) in [("code", &self.code), ("config", &self.config)] {
            if value.as_deref().is_some_and(str::is_empty) {
                return Err(fail(name, "is empty"));
            }
        }
        if let Some(code) = &self.code
            && is_uri(code)
        {
            return Err(fail(
                "code",
                "is a local file or folder next to the DAG (it is uploaded for the step); to \
                 run code from object storage, give it as one of `inputs` and name the \
                 `command`",
            ));
        }
        // Every folder the init container fills, with the argument that fills it.
        let mut fetched: Vec<(String, String)> = Vec::new();
        if self.code.is_some() {
            fetched.push((CODE_DIR.to_owned(), "code".to_owned()));
        }
        if self.config.is_some() {
            fetched.push((CONFIG_DIR.to_owned(), "config".to_owned()));
        }
        let mut variables: Vec<(String, String)> = Vec::new();
        if self.config.is_some() {
            // `config` is an input like the others, named `config`.
            variables.push((input_variable("config"), "config".to_owned()));
        }
        for (i, input) in self.inputs.iter().enumerate() {
            let at = format!("inputs[{i}]");
            check_name(&input.name, &format!("{at}.name"), stage)?;
            check_unique(&mut variables, input_variable(&input.name), &at)?;
            if input.source.trim().is_empty() {
                return Err(fail(&format!("{at}.source"), "is empty; give a URI"));
            }
            let destination = input.destination();
            let path = format!("{at}.destination");
            check_path(&destination, &path, stage)?;
            let trimmed = destination.trim_end_matches('/').to_owned();
            if let Some((_, other)) = fetched.iter().find(|(dir, _)| *dir == trimmed) {
                return Err(fail(
                    &path,
                    &format!("{destination} is already where {other} goes; give another path"),
                ));
            }
            fetched.push((trimmed, at));
        }
        for (i, output) in self.outputs.iter().enumerate() {
            let at = format!("outputs[{i}]");
            check_name(&output.name, &format!("{at}.name"), stage)?;
            check_unique(&mut variables, output_variable(&output.name), &at)?;
            check_path(&output.source(), &format!("{at}.source"), stage)?;
            if output
                .destination
                .as_deref()
                .is_some_and(|d| d.trim().is_empty())
            {
                return Err(fail(
                    &format!("{at}.destination"),
                    "is empty; give a URI, or leave it out for the run's artifact folder",
                ));
            }
        }
        Ok(())
    }
}

fn fail(path: &str, message: &str) -> ArgumentError {
    ArgumentError {
        path: path.to_owned(),
        message: message.to_owned(),
    }
}

fn check_name(name: &str, path: &str, stage: Stage) -> Result<(), ArgumentError> {
    if !stage.checks(name) {
        return Ok(());
    }
    let fits = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if fits {
        Ok(())
    } else {
        Err(fail(
            path,
            &format!("\"{name}\" is not a name: use letters, digits, '_' and '-'"),
        ))
    }
}

/// Two inputs (or two outputs) whose variables would be the same, such as `a-b` and `a_b`.
fn check_unique(
    seen: &mut Vec<(String, String)>,
    variable: String,
    at: &str,
) -> Result<(), ArgumentError> {
    if let Some((_, first)) = seen.iter().find(|(v, _)| *v == variable) {
        return Err(fail(
            &format!("{at}.name"),
            &format!("{first} already has this name (both would be ${variable}); names are unique"),
        ));
    }
    seen.push((variable, at.to_owned()));
    Ok(())
}

/// A container path inside the processing folder, which the command line can carry.
fn check_path(path: &str, at: &str, stage: Stage) -> Result<(), ArgumentError> {
    if !stage.checks(path) {
        return Ok(());
    }
    let inside = path
        .strip_prefix(PROCESSING_DIR)
        .and_then(|rest| rest.strip_prefix('/'))
        .is_some_and(|rest| !rest.trim_matches('/').is_empty());
    let message = if !inside {
        format!("{path} is not under {PROCESSING_DIR}/; inputs and outputs are exchanged there")
    } else if path.contains('=') {
        format!("{path} contains '=', which a container path here cannot")
    } else if path.split('/').any(|part| part == "." || part == "..") {
        format!("{path} has a '.' or '..' part; give the path plainly")
    } else {
        return Ok(());
    };
    Err(fail(at, &message))
}

/// The processing operator.
pub static SPEC: OperatorSpec = OperatorSpec {
    name: "processing",
    aliases: &["ProcessingStep"],
    arguments: &ARGUMENTS,
    renamed_arguments: &[("resources", "container_resources"), ("cmds", "command")],
    required: &[],
    pushes_xcom_by_default: true,
    holds_worker: false,
    open_arguments: false,
    check: ProcessingArgs::check,
};

#[cfg(test)]
mod tests;
