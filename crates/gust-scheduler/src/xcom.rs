//! What templates of one run can look up: the run's XComs, shared between the driver (which
//! records them) and rendering (`ti.xcom_pull`), and the variables the run started with.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use gust_template::RuntimeLookup;

/// The run's XComs by (task_id, key), and its variables.
#[derive(Debug, Default)]
pub struct RunXComs {
    values: RwLock<HashMap<(String, String), serde_json::Value>>,
    variables: Arc<HashMap<String, String>>,
}

impl RunXComs {
    /// A lookup with no XComs yet and these variables.
    #[must_use]
    pub fn with_variables(variables: impl Into<Arc<HashMap<String, String>>>) -> Self {
        Self {
            values: RwLock::default(),
            variables: variables.into(),
        }
    }

    /// Records `value` as `task_id`'s XCom `key`.
    pub fn push(&self, task_id: &str, key: &str, value: serde_json::Value) {
        self.values
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert((task_id.to_owned(), key.to_owned()), value);
    }
}

impl RuntimeLookup for RunXComs {
    fn variable(&self, key: &str) -> Option<String> {
        self.variables.get(key).cloned()
    }

    fn xcom(&self, task_id: &str, key: &str) -> Option<serde_json::Value> {
        self.values
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&(task_id.to_owned(), key.to_owned()))
            .cloned()
    }
}
