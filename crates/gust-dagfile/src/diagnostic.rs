//! Diagnostics: one problem in a DAG file, where it is, and how to fix it.
//!
//! Loading never stops at the first problem: every check records a [`Diagnostic`] and goes on,
//! so a user sees all of a file's mistakes at once.

use std::fmt;

use serde::Serialize;

use crate::location::Location;

/// One problem found in a DAG file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Where the problem is.
    pub location: Location,
    /// The DAG it is in, when known.
    pub dag: Option<String>,
    /// The task it is in, when known.
    pub task: Option<String>,
    /// What is wrong, one lowercase sentence naming the object.
    pub message: String,
    /// What would fix it, when there is something to say.
    pub hint: Option<String>,
}

impl Diagnostic {
    /// A problem at `location` with the file as a whole (no DAG known yet).
    #[must_use]
    pub fn new(location: Location, message: impl Into<String>) -> Self {
        Self {
            location,
            dag: None,
            task: None,
            message: message.into(),
            hint: None,
        }
    }

    /// Adds what would fix it.
    #[must_use]
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Names the DAG (and task) the problem is in.
    #[must_use]
    pub fn in_dag(mut self, dag: &str, task: Option<&str>) -> Self {
        self.dag = Some(dag.to_owned());
        self.task = task.map(str::to_owned);
        self
    }

    /// The DAG and task as `DAG` or `DAG.TASK`, when known.
    #[must_use]
    pub fn subject(&self) -> Option<String> {
        match (&self.dag, &self.task) {
            (Some(dag), Some(task)) => Some(format!("{dag}.{task}")),
            (Some(dag), None) => Some(dag.clone()),
            (None, _) => None,
        }
    }
}

/// `FILE:LINE:COL: DAG[.TASK]: message; hint`, on one line.
impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.location)?;
        if let Some(subject) = self.subject() {
            write!(f, "{subject}: ")?;
        }
        f.write_str(&self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "; {hint}")?;
        }
        Ok(())
    }
}

/// The JSON form used by `--output json` and, later, the REST API's import errors.
impl Serialize for Diagnostic {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut s = serializer.serialize_struct("Diagnostic", 7)?;
        s.serialize_field("file", &self.location.file.display().to_string())?;
        s.serialize_field("line", &self.location.line)?;
        s.serialize_field("col", &self.location.col)?;
        s.serialize_field("dag_id", &self.dag)?;
        s.serialize_field("task_id", &self.task)?;
        s.serialize_field("message", &self.message)?;
        s.serialize_field("hint", &self.hint)?;
        s.end()
    }
}

/// "Did you mean" for a misspelt name: the closest candidate, if it is close enough.
pub fn closest<'a>(given: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|candidate| (strsim::jaro_winkler(given, candidate), candidate))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, candidate)| candidate)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn a_diagnostic_reads_file_line_col_dag_task_message_hint() {
        let at = Location {
            file: Path::new("dags/etl.yaml").into(),
            line: 12,
            col: 7,
        };
        let d = Diagnostic::new(at, "unknown argument \"bash_comand\"")
            .with_hint("did you mean \"bash_command\"?")
            .in_dag("etl", Some("load"));
        assert_eq!(
            d.to_string(),
            "dags/etl.yaml:12:7: etl.load: unknown argument \"bash_comand\"; did you mean \"bash_command\"?"
        );
    }

    #[test]
    fn closest_suggests_near_names_only() {
        let names = ["bash_command", "env", "cwd"];
        assert_eq!(closest("bash_comand", names), Some("bash_command"));
        assert_eq!(closest("zzzz", names), None);
    }
}
