//! Where something is in a DAG file.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

/// A position in a file: 1-based line and column, as editors count them.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Location {
    /// The file (shared by every node read from it).
    pub file: Arc<Path>,
    /// The line, from 1.
    pub line: u32,
    /// The column, from 1.
    pub col: u32,
}

impl Location {
    /// The start of `file`, for problems with the file as a whole.
    #[must_use]
    pub fn start_of(file: Arc<Path>) -> Self {
        Self {
            file,
            line: 1,
            col: 1,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.col)
    }
}
