//! What templates of one run can look up: the run's XComs, shared between the driver (which
//! records them) and rendering (`ti.xcom_pull`), and the variables and connections as last read
//! (see [`TemplateValues`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};

use gust_core::ids::TaskId;
use gust_core::mapping::{ExpandError, Lists, Mapping};
use gust_template::{AssetQuery, RuntimeLookup, TemplateConnection, XComRows};

use crate::template_values::TemplateValues;

/// A try's return value as it is recorded and passed on to downstream tasks: every secret the
/// process knows masked (`gust_secrets`), as the try's log shows it. The scheduler and `gust
/// dags test` both record XComs through it, so a test run passes on what a scheduled run would.
#[must_use]
pub fn masked(value: &serde_json::Value) -> serde_json::Value {
    gust_secrets::current().redact(value, None)
}

/// What a successful try pushed: its return value (when it is kept) and its other keys.
#[derive(Debug)]
pub(crate) struct Pushed {
    /// The return value.
    pub xcom: Option<serde_json::Value>,
    /// The XComs under other keys.
    pub keyed_xcoms: Vec<(String, serde_json::Value)>,
}

impl Pushed {
    /// What a try pushed, by key (its return value under `return_value`).
    pub(crate) fn by_key(mut xcoms: std::collections::BTreeMap<String, serde_json::Value>) -> Self {
        Self {
            xcom: xcoms.remove(RETURN_VALUE),
            keyed_xcoms: xcoms.into_iter().collect(),
        }
    }

    /// A try that pushed its return value alone (or nothing).
    pub(crate) fn returned(xcom: Option<serde_json::Value>) -> Self {
        Self {
            xcom,
            keyed_xcoms: Vec::new(),
        }
    }
}

/// Every XCom a successful try records, by key: its return value (already masked) as
/// `return_value`, then the keys it pushed otherwise (`ti.xcom_push(key=...)`), masked. A
/// pushed `return_value` is the return value, already in `xcom` when it is kept.
#[must_use]
pub fn recorded(
    xcom: Option<serde_json::Value>,
    keyed: &[(String, serde_json::Value)],
) -> Vec<(String, serde_json::Value)> {
    xcom.map(|value| (RETURN_VALUE.to_owned(), value))
        .into_iter()
        .chain(
            keyed
                .iter()
                .filter(|(key, _)| key != RETURN_VALUE)
                .map(|(key, value)| (key.clone(), masked(value))),
        )
        .collect()
}

/// The run's XComs by (task_id, key), each mapped instance's by its map index, and the
/// variables and connections templates read.
#[derive(Debug)]
pub struct RunXComs {
    values: RwLock<HashMap<(String, String), serde_json::Value>>,
    /// Shared with the Execution API's readers ([`RuntimeLookup::xcom_rows`]); a push copies
    /// them only while a reader still holds the previous rows.
    mapped: RwLock<HashMap<(String, String), XComRows>>,
    /// Mapped tasks' lists as resolved from these XComs, by task, kept until a value they were
    /// resolved from changes: resolving copies every item, so it is done once per expansion
    /// rather than once per instance launched.
    lists: Mutex<HashMap<TaskId, Arc<Lists>>>,
    /// How many instances each expanded task has, where no store answers it (`gust dags test`).
    expanded: RwLock<HashMap<String, usize>>,
    template_values: Arc<TemplateValues>,
}

impl Default for RunXComs {
    fn default() -> Self {
        Self::with_variables(HashMap::new())
    }
}

impl RunXComs {
    /// A lookup with no XComs yet, reading variables and connections from `template_values`.
    #[must_use]
    pub fn new(template_values: Arc<TemplateValues>) -> Self {
        Self {
            values: RwLock::default(),
            mapped: RwLock::default(),
            lists: Mutex::default(),
            expanded: RwLock::default(),
            template_values,
        }
    }

    /// A lookup with no XComs yet, these variables and no connections.
    #[must_use]
    pub fn with_variables(variables: HashMap<String, String>) -> Self {
        Self::new(Arc::new(TemplateValues::fixed(variables, HashMap::new())))
    }

    /// Records `value` as the XCom `key` of `task_id`'s instance `map_index`
    /// ([`gust_core::mapping::UNMAPPED`] for a task that is not mapped).
    pub fn push(&self, task_id: &str, map_index: i32, key: &str, value: serde_json::Value) {
        let entry = (task_id.to_owned(), key.to_owned());
        if map_index < 0 {
            self.values
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(entry, value);
        } else {
            let mut mapped = self
                .mapped
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            Arc::make_mut(mapped.entry(entry).or_default()).insert(map_index, value);
        }
        // Any key may be what a list was resolved from (a keyed source reads a field of the
        // return value, see `xcom`), so every new value of the task makes its lists stale.
        self.lists
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|_, lists| !lists.depends_on(task_id));
    }

    /// Notes that `task_id` was expanded to `count` instances (see
    /// [`RuntimeLookup::instance_count`]).
    pub fn expanded(&self, task_id: &str, count: usize) {
        self.expanded
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(task_id.to_owned(), count);
    }

    /// Forgets the XComs of `task_id`'s instance `map_index`: a new try of it starts, and the
    /// store drops what the last one pushed (a retried instance that pushes nothing this time
    /// is not in its task's list).
    pub fn forget(&self, task_id: &str, map_index: i32) {
        if map_index < 0 {
            self.values
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .retain(|(task, _), _| task != task_id);
        } else {
            let mut mapped = self
                .mapped
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for ((task, _), instances) in mapped.iter_mut() {
                if task == task_id && instances.contains_key(&map_index) {
                    Arc::make_mut(instances).remove(&map_index);
                }
            }
            mapped.retain(|_, instances| !instances.is_empty());
        }
        self.lists
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|_, lists| !lists.depends_on(task_id));
    }

    /// `task`'s lists resolved against the run's XComs (see [`Mapping::resolve`]), resolved
    /// once and kept until a value they come from is pushed again.
    pub fn mapped_lists(
        &self,
        task: &TaskId,
        mapping: &Mapping,
    ) -> Result<Arc<Lists>, ExpandError> {
        let cached = self
            .lists
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(task)
            .cloned();
        if let Some(lists) = cached {
            return Ok(lists);
        }
        let lookup =
            |t: &TaskId, key: Option<&str>| self.xcom(t.as_str(), key.unwrap_or(RETURN_VALUE));
        let lists = Arc::new(mapping.resolve(&lookup)?);
        self.lists
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(task.clone(), lists.clone());
        Ok(lists)
    }

    /// A task's return value: a mapped task's is the list of its instances' values, in
    /// map-index order (Airflow's lazy sequence of a mapped task's XComs).
    #[must_use]
    pub fn return_value(&self, task_id: &str) -> Option<serde_json::Value> {
        self.xcom(task_id, RETURN_VALUE)
    }
}

impl RuntimeLookup for RunXComs {
    fn instance_count(&self, task_id: &str) -> Option<usize> {
        self.expanded
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(task_id)
            .copied()
    }

    fn variable(&self, key: &str) -> Option<String> {
        self.template_values.snapshot().variables.get(key).cloned()
    }

    fn asset_events(&self, asset: &AssetQuery) -> Vec<serde_json::Value> {
        self.template_values
            .snapshot()
            .asset_events
            .get(asset)
            .cloned()
            .unwrap_or_default()
    }

    fn connection(&self, conn_id: &str) -> Option<TemplateConnection> {
        self.template_values
            .snapshot()
            .connections
            .get(conn_id)
            .cloned()
    }

    /// The XCom `key` of `task_id`. A task keeps one value (its return value); when that is a
    /// JSON object, its fields also answer as keys, so that Airflow's
    /// `ti.xcom_pull(task_ids='job', key='job_name')` reads the `job_name` a Job task returned
    /// (Airflow's operators push such fields as XComs of their own).
    fn xcom(&self, task_id: &str, key: &str) -> Option<serde_json::Value> {
        let values = self
            .values
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let entry = (task_id.to_owned(), key.to_owned());
        if let Some(value) = values.get(&entry) {
            return Some(value.clone());
        }
        if let Some(instances) = self
            .mapped
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&entry)
        {
            return Some(serde_json::Value::Array(
                instances.values().cloned().collect(),
            ));
        }
        if key == RETURN_VALUE {
            return None;
        }
        values
            .get(&(task_id.to_owned(), RETURN_VALUE.to_owned()))
            .and_then(|value| value.get(key))
            .cloned()
    }

    /// A mapped task's values by map index; any other task's value under -1.
    fn xcom_rows(&self, task_id: &str, key: &str) -> XComRows {
        let entry = (task_id.to_owned(), key.to_owned());
        if let Some(instances) = self
            .mapped
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&entry)
        {
            return instances.clone();
        }
        Arc::new(
            self.xcom(task_id, key)
                .map(|value| BTreeMap::from([(gust_core::mapping::UNMAPPED, value)]))
                .unwrap_or_default(),
        )
    }
}

/// The key of a task's return value.
const RETURN_VALUE: &str = "return_value";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_returned_objects_fields_answer_as_keys() {
        let xcoms = RunXComs::default();
        xcoms.push(
            "job",
            -1,
            "return_value",
            serde_json::json!({"job_name": "job-pi-x1", "job_namespace": "batch"}),
        );
        xcoms.push("job", -1, "custom", serde_json::json!(7));
        assert_eq!(
            xcoms.xcom("job", "job_name"),
            Some(serde_json::json!("job-pi-x1"))
        );
        assert_eq!(xcoms.xcom("job", "custom"), Some(serde_json::json!(7)));
        assert_eq!(xcoms.xcom("job", "missing"), None);
        assert_eq!(xcoms.xcom("other", "job_name"), None);
        xcoms.push("list", -1, "return_value", serde_json::json!([1, 2]));
        assert_eq!(xcoms.xcom("list", "job_name"), None);
    }

    #[test]
    fn a_mapped_tasks_value_is_the_list_of_its_instances_in_map_index_order() {
        let xcoms = RunXComs::default();
        xcoms.push("train", 2, "return_value", serde_json::json!(0.7));
        xcoms.push("train", 0, "return_value", serde_json::json!(0.9));
        xcoms.push("train", 1, "return_value", serde_json::json!(0.8));
        assert_eq!(
            xcoms.return_value("train"),
            Some(serde_json::json!([0.9, 0.8, 0.7]))
        );
        assert_eq!(xcoms.return_value("other"), None);
        let rows = xcoms.xcom_rows("train", "return_value");
        assert_eq!(rows.keys().copied().collect::<Vec<_>>(), [0, 1, 2]);
        xcoms.push("list", -1, "return_value", serde_json::json!([1, 2]));
        let rows = xcoms.xcom_rows("list", "return_value");
        assert_eq!(rows.get(&-1), Some(&serde_json::json!([1, 2])));
    }
}
