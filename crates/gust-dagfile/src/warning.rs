//! Warnings: a DAG that loads in Gust but that Airflow, reading the same file through
//! dag-factory 1.1.0, would build differently without saying so.
//!
//! A warning never keeps a DAG from loading: Gust applies what the file says. It names where the
//! key is, the DAG (and task), what Airflow does instead, and what to write so that both read
//! the file the same way. Which keys differ was checked against dag-factory 1.1.0 on
//! Airflow 3.3.2 (see docs/dag-format.md, "Where Gust and Airflow differ").

use std::fmt;

use serde::Serialize;

use crate::location::Location;

/// What Airflow (through dag-factory 1.1.0) does differently with a key Gust applies.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Difference {
    /// `chains:`: dag-factory never reads it, so Airflow's DAG lacks the chains' edges.
    Chains,
    /// `dagrun_timeout_sec`: dag-factory reads only `dagrun_timeout`, so Airflow's runs have
    /// no timeout.
    DagrunTimeoutSeconds {
        /// The seconds written, when a whole number, for the hint.
        seconds: Option<i64>,
    },
    /// A DAG-level `owner` (with none in `default_args`): dag-factory passes it nowhere, so
    /// Airflow's tasks keep the owner `airflow`.
    DagOwner,
    /// A `*_sec` task setting (`retry_delay_sec`...), which is Gust's spelling only:
    /// dag-factory passes it to the operator unchanged, and Airflow drops it from
    /// `default_args` (keeping its own default) or refuses it on a task.
    SecondsSetting {
        /// The key written (`retry_delay_sec`).
        key: &'static str,
        /// Whether it is a task's own key rather than a `default_args` entry.
        in_task: bool,
        /// The seconds written, when a whole number, for the hint.
        seconds: Option<i64>,
    },
}

/// The `*_sec` task settings and the Airflow argument each stands for.
pub(crate) const SECONDS_SETTINGS: [(&str, &str); 3] = [
    ("retry_delay_sec", "retry_delay"),
    ("max_retry_delay_sec", "max_retry_delay"),
    ("execution_timeout_sec", "execution_timeout"),
];

impl Difference {
    /// What Airflow does instead, one lowercase sentence.
    #[must_use]
    pub fn message(&self) -> String {
        match self {
            Difference::Chains => "dag-factory 1.1.0 ignores `chains`: in Airflow these \
                                   dependencies do not exist and the tasks run without them"
                .to_owned(),
            Difference::DagrunTimeoutSeconds { .. } => {
                "dag-factory 1.1.0 ignores `dagrun_timeout_sec`: in Airflow the DAG's runs have \
                 no timeout"
                    .to_owned()
            }
            Difference::DagOwner => "dag-factory 1.1.0 ignores a DAG-level `owner`: in Airflow \
                                     the tasks' owner is \"airflow\""
                .to_owned(),
            Difference::SecondsSetting {
                key, in_task: true, ..
            } => format!(
                "Airflow refuses `{key}` on a task (dag-factory 1.1.0 passes it on unchanged, \
                 and no operator takes it)"
            ),
            Difference::SecondsSetting {
                key,
                in_task: false,
                ..
            } => format!(
                "Airflow ignores `{key}` in default_args (dag-factory 1.1.0 passes it on \
                 unchanged): there the tasks keep Airflow's default {}",
                airflow_name(key)
            ),
        }
    }

    /// What to write so that Gust and Airflow read the file the same way.
    #[must_use]
    pub fn hint(&self) -> String {
        match self {
            Difference::Chains => "write the edges as `dependencies:` of the downstream tasks, \
                                   which both read"
                .to_owned(),
            Difference::DagrunTimeoutSeconds { seconds } => format!(
                "write `dagrun_timeout: {{__type__: datetime.timedelta, seconds: {}}}` instead",
                seconds_text(*seconds)
            ),
            Difference::DagOwner => "move it into `default_args: {owner: ...}`".to_owned(),
            Difference::SecondsSetting { key, seconds, .. } => {
                let name = airflow_name(key);
                let value = seconds_text(*seconds);
                // Airflow's BaseOperator takes seconds as a number for the retry delays, but
                // only a timedelta for execution_timeout.
                if name == "execution_timeout" {
                    format!(
                        "write `{name}: {{__type__: datetime.timedelta, seconds: {value}}}` instead"
                    )
                } else {
                    format!("write `{name}: {value}` (seconds) instead")
                }
            }
        }
    }

    /// A short stable name for tools (`--output json`).
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Difference::Chains => "chains_ignored",
            Difference::DagrunTimeoutSeconds { .. } => "dagrun_timeout_sec_ignored",
            Difference::DagOwner => "dag_owner_ignored",
            Difference::SecondsSetting { in_task: true, .. } => "seconds_setting_refused",
            Difference::SecondsSetting { in_task: false, .. } => "seconds_setting_ignored",
        }
    }
}

fn airflow_name(key: &str) -> &'static str {
    SECONDS_SETTINGS
        .iter()
        .find(|(sec, _)| *sec == key)
        .map_or("", |(_, name)| name)
}

fn seconds_text(seconds: Option<i64>) -> String {
    seconds.map_or_else(|| "N".to_owned(), |s| s.to_string())
}

/// One place where a DAG file means something else to Airflow than to Gust.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Warning {
    /// Where the key is (in a defaults file when it was inherited from one).
    pub location: Location,
    /// The DAG it applies to.
    pub dag: String,
    /// The task, when the key is a task's own.
    pub task: Option<String>,
    /// What differs.
    pub difference: Difference,
}

impl Warning {
    /// The DAG and task as `DAG` or `DAG.TASK`.
    #[must_use]
    pub fn subject(&self) -> String {
        match &self.task {
            Some(task) => format!("{}.{task}", self.dag),
            None => self.dag.clone(),
        }
    }
}

/// `FILE:LINE:COL: DAG[.TASK]: warning: message; hint`, on one line.
impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}: warning: {}; {}",
            self.location,
            self.subject(),
            self.difference.message(),
            self.difference.hint()
        )
    }
}

/// The JSON form, beside [`crate::Diagnostic`]'s.
impl Serialize for Warning {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut s = serializer.serialize_struct("Warning", 8)?;
        s.serialize_field("file", &self.location.file.display().to_string())?;
        s.serialize_field("line", &self.location.line)?;
        s.serialize_field("col", &self.location.col)?;
        s.serialize_field("dag_id", &self.dag)?;
        s.serialize_field("task_id", &self.task)?;
        s.serialize_field("kind", self.difference.kind())?;
        s.serialize_field("message", &self.difference.message())?;
        s.serialize_field("hint", &self.difference.hint())?;
        s.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn at(line: u32) -> Location {
        Location {
            file: Path::new("dags/etl.yaml").into(),
            line,
            col: 3,
        }
    }

    #[test]
    fn a_warning_reads_file_line_col_dag_task_what_differs_and_what_to_write() {
        let w = Warning {
            location: at(7),
            dag: "etl".into(),
            task: Some("load".into()),
            difference: Difference::SecondsSetting {
                key: "retry_delay_sec",
                in_task: true,
                seconds: Some(30),
            },
        };
        assert_eq!(
            w.to_string(),
            "dags/etl.yaml:7:3: etl.load: warning: Airflow refuses `retry_delay_sec` on a task \
             (dag-factory 1.1.0 passes it on unchanged, and no operator takes it); write \
             `retry_delay: 30` (seconds) instead"
        );
    }

    #[test]
    fn execution_timeout_is_hinted_as_a_timedelta_since_airflow_takes_no_number_there() {
        let d = Difference::SecondsSetting {
            key: "execution_timeout_sec",
            in_task: false,
            seconds: Some(600),
        };
        assert_eq!(
            d.hint(),
            "write `execution_timeout: {__type__: datetime.timedelta, seconds: 600}` instead"
        );
        assert!(d.message().contains("default execution_timeout"));
    }
}
