//! Identifier newtypes: a DAG id, a task id, a run id, a try number.
//!
//! Ids follow Airflow's rule for keys (letters, digits, `_`, `-`, `.`; at most 250 characters) so
//! that ids from existing Airflow deployments stay valid and land unchanged in URLs, log paths and
//! Kubernetes labels (after sanitising).

use std::fmt;

use serde::{Deserialize, Serialize};

/// The longest id Airflow accepts, and so the longest Gust accepts.
pub const MAX_ID_LEN: usize = 250;

/// Why a text is not a valid id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The id is empty.
    #[error("{kind} is empty")]
    Empty {
        /// Which kind of id ("dag_id", "task_id", ...).
        kind: &'static str,
    },
    /// The id is longer than [`MAX_ID_LEN`].
    #[error("{kind} \"{id}\" is {len} characters long; the limit is {MAX_ID_LEN}")]
    TooLong {
        /// Which kind of id.
        kind: &'static str,
        /// The first characters of the id.
        id: String,
        /// Its length.
        len: usize,
    },
    /// The id holds a character outside letters, digits, `_`, `-` and `.`.
    #[error("{kind} \"{id}\" contains {found:?}; use only letters, digits, '_', '-' and '.'")]
    BadCharacter {
        /// Which kind of id.
        kind: &'static str,
        /// The id.
        id: String,
        /// The first offending character.
        found: char,
    },
}

fn check_key(kind: &'static str, id: &str) -> Result<(), IdError> {
    if id.is_empty() {
        return Err(IdError::Empty { kind });
    }
    let len = id.chars().count();
    if len > MAX_ID_LEN {
        return Err(IdError::TooLong {
            kind,
            id: id.chars().take(40).collect(),
            len,
        });
    }
    match id
        .chars()
        .find(|c| !(c.is_alphanumeric() || matches!(c, '_' | '-' | '.')))
    {
        Some(found) => Err(IdError::BadCharacter {
            kind,
            id: id.to_owned(),
            found,
        }),
        None => Ok(()),
    }
}

macro_rules! key_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Checks `id` against Airflow's key rule and wraps it.
            pub fn new(id: impl Into<String>) -> Result<Self, IdError> {
                let id = id.into();
                check_key($kind, &id)?;
                Ok(Self(id))
            }

            /// The id as text.
            #[must_use]
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(id: String) -> Result<Self, IdError> {
                Self::new(id)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

key_id!(
    /// A DAG's id: the top-level key of its DAG file.
    DagId,
    "dag_id"
);
key_id!(
    /// A task's id within its DAG; tasks in a task group carry the group's id as a prefix
    /// (`group.task`), as in Airflow.
    TaskId,
    "task_id"
);
key_id!(
    /// A task group's id (nested groups: `outer.inner`).
    GroupId,
    "group_id"
);

/// A DAG run's id (`scheduled__<ts>`, `manual__<ts>` or a user's own). Airflow allows more
/// characters in run ids than in keys (`:` and `+` of timestamps), so only emptiness and length
/// are checked.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RunId(String);

impl RunId {
    /// Wraps `id` after checking it is neither empty nor too long.
    pub fn new(id: impl Into<String>) -> Result<Self, IdError> {
        let id = id.into();
        if id.is_empty() {
            return Err(IdError::Empty { kind: "run_id" });
        }
        let len = id.chars().count();
        if len > MAX_ID_LEN {
            return Err(IdError::TooLong {
                kind: "run_id",
                id: id.chars().take(40).collect(),
                len,
            });
        }
        Ok(Self(id))
    }

    /// The id as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for RunId {
    type Error = IdError;
    fn try_from(id: String) -> Result<Self, IdError> {
        Self::new(id)
    }
}

impl From<RunId> for String {
    fn from(id: RunId) -> String {
        id.0
    }
}

/// The number of a try of a task instance, starting at 1 as in Airflow 3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TryNumber(pub u32);

impl fmt::Display for TryNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// One instance of a task in a run: the task, and which of its instances when it is mapped
/// ([`crate::mapping::UNMAPPED`] when it is not), as Airflow keys a task instance.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct InstanceId {
    /// The task.
    pub task_id: TaskId,
    /// Which of its instances.
    pub map_index: i32,
}

impl InstanceId {
    /// The one instance of a task that is not mapped (or not expanded yet).
    #[must_use]
    pub fn unmapped(task_id: TaskId) -> Self {
        Self {
            task_id,
            map_index: crate::mapping::UNMAPPED,
        }
    }

    /// Instance `map_index` of a mapped task.
    #[must_use]
    pub fn mapped(task_id: TaskId, map_index: i32) -> Self {
        Self { task_id, map_index }
    }

    /// Whether it is one of a mapped task's instances.
    #[must_use]
    pub fn is_mapped(&self) -> bool {
        self.map_index >= 0
    }
}

/// `task`, or `task[3]` for instance 3 of a mapped task.
impl fmt::Display for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_mapped() {
            write!(f, "{}[{}]", self.task_id, self.map_index)
        } else {
            write!(f, "{}", self.task_id)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn airflow_style_keys_are_accepted() {
        for id in ["etl", "etl_daily-v2", "group.task", "ÄÖ_1"] {
            assert!(DagId::new(id).is_ok(), "{id}");
        }
    }

    #[test]
    fn spaces_and_slashes_are_refused_with_the_character_named() {
        let err = TaskId::new("load data").unwrap_err();
        assert_eq!(
            err.to_string(),
            "task_id \"load data\" contains ' '; use only letters, digits, '_', '-' and '.'"
        );
        assert!(DagId::new("a/b").is_err());
    }

    #[test]
    fn empty_and_overlong_ids_are_refused() {
        assert_eq!(
            DagId::new("").unwrap_err(),
            IdError::Empty { kind: "dag_id" }
        );
        assert!(matches!(
            DagId::new("x".repeat(251)),
            Err(IdError::TooLong { len: 251, .. })
        ));
        assert!(DagId::new("x".repeat(250)).is_ok());
    }

    #[test]
    fn run_ids_may_hold_timestamps() {
        assert!(RunId::new("manual__2024-01-01T00:00:00+00:00").is_ok());
    }
}
