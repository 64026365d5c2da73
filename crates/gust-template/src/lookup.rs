//! Where templates get variables and XComs from: the caller supplies them through
//! [`RuntimeLookup`], so rendering stays free of I/O.

use std::collections::HashMap;

/// Variables and XComs as a rendering sees them.
pub trait RuntimeLookup: Send + Sync {
    /// A variable's value as stored (text), if it exists.
    fn variable(&self, key: &str) -> Option<String>;
    /// The XCom `key` pushed by `task_id` in the current run, if any.
    fn xcom(&self, task_id: &str, key: &str) -> Option<serde_json::Value>;
}

/// A lookup with nothing in it, for dry runs and tests.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoLookup;

impl RuntimeLookup for NoLookup {
    fn variable(&self, _key: &str) -> Option<String> {
        None
    }

    fn xcom(&self, _task_id: &str, _key: &str) -> Option<serde_json::Value> {
        None
    }
}

/// A lookup over in-memory maps, for tests and `gust tasks test`.
#[derive(Debug, Clone, Default)]
pub struct MapLookup {
    /// Variables by key.
    pub variables: HashMap<String, String>,
    /// XComs by (task_id, key).
    pub xcoms: HashMap<(String, String), serde_json::Value>,
}

impl RuntimeLookup for MapLookup {
    fn variable(&self, key: &str) -> Option<String> {
        self.variables.get(key).cloned()
    }

    fn xcom(&self, task_id: &str, key: &str) -> Option<serde_json::Value> {
        self.xcoms
            .get(&(task_id.to_owned(), key.to_owned()))
            .cloned()
    }
}
