//! XComs of one run, shared between the driver (which records them) and template rendering
//! (which reads them through `ti.xcom_pull`).

use std::collections::HashMap;
use std::sync::RwLock;

use gust_template::RuntimeLookup;

/// The run's XComs by (task_id, key); no variables.
#[derive(Debug, Default)]
pub struct RunXComs {
    values: RwLock<HashMap<(String, String), serde_json::Value>>,
}

impl RunXComs {
    /// Records `value` as `task_id`'s XCom `key`.
    pub fn push(&self, task_id: &str, key: &str, value: serde_json::Value) {
        self.values
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert((task_id.to_owned(), key.to_owned()), value);
    }
}

impl RuntimeLookup for RunXComs {
    fn variable(&self, _key: &str) -> Option<String> {
        None
    }

    fn xcom(&self, task_id: &str, key: &str) -> Option<serde_json::Value> {
        self.values
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&(task_id.to_owned(), key.to_owned()))
            .cloned()
    }
}
