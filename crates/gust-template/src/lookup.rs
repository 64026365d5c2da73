//! Where templates get variables, connections and XComs from: the caller supplies them through
//! [`RuntimeLookup`], so rendering stays free of I/O.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// A connection as templates see it (`conn.ID.host`...): Airflow's `Connection` fields.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct TemplateConnection {
    /// Its id.
    pub conn_id: String,
    /// Its type (`postgres`, `aws`...).
    pub conn_type: String,
    /// Host.
    pub host: Option<String>,
    /// User name.
    pub login: Option<String>,
    /// Password.
    pub password: Option<String>,
    /// Schema or database.
    pub schema: Option<String>,
    /// Port.
    pub port: Option<i64>,
    /// Extra settings as JSON text (`extra_dejson` parses it).
    pub extra: Option<String>,
    /// What it is for.
    pub description: Option<String>,
}

/// Never prints the password or the extras: they are secrets.
impl std::fmt::Debug for TemplateConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TemplateConnection")
            .field("conn_id", &self.conn_id)
            .field("conn_type", &self.conn_type)
            .field("host", &self.host)
            .finish_non_exhaustive()
    }
}

impl TemplateConnection {
    /// The base URL of an HTTP connection as Airflow's HttpHook builds it: the host when it has
    /// a scheme, else `schema` (or `http`) `://host`, then `:port` when there is one.
    #[must_use]
    pub fn http_base(&self) -> String {
        let host = self.host.clone().unwrap_or_default();
        let mut base = if host.contains("://") {
            host
        } else {
            let scheme = self
                .schema
                .clone()
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "http".to_owned());
            format!("{scheme}://{host}")
        };
        if let Some(port) = self.port {
            base = format!("{base}:{port}");
        }
        base
    }

    /// [`TemplateConnection::http_base`] and `endpoint` joined by one slash.
    #[must_use]
    pub fn http_url(&self, endpoint: &str) -> String {
        join_url(&self.http_base(), endpoint)
    }
}

/// `base` and `endpoint` joined by one slash (`base` alone when `endpoint` is empty).
#[must_use]
pub fn join_url(base: &str, endpoint: &str) -> String {
    if endpoint.is_empty() {
        return base.to_owned();
    }
    format!(
        "{}/{}",
        base.trim_end_matches('/'),
        endpoint.trim_start_matches('/')
    )
}

/// Which asset's events to read: by name, by URI, or by both (as Airflow's
/// `GetAssetEventByAsset` asks).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AssetQuery {
    /// The asset's name, when asked by it.
    pub name: Option<String>,
    /// The asset's URI, when asked by it.
    pub uri: Option<String>,
}

/// A task's XCom rows of one key by map index (see [`RuntimeLookup::xcom_rows`]).
pub type XComRows = Arc<BTreeMap<i32, serde_json::Value>>;

/// Variables, connections and XComs as a rendering sees them.
pub trait RuntimeLookup: Send + Sync {
    /// A variable's value as stored (text), if it exists.
    fn variable(&self, key: &str) -> Option<String>;
    /// A connection, if it exists.
    fn connection(&self, conn_id: &str) -> Option<TemplateConnection>;
    /// The XCom `key` pushed by `task_id` in the current run, if any.
    fn xcom(&self, task_id: &str, key: &str) -> Option<serde_json::Value>;
    /// Keeps the XCom `key` that the template being rendered pushes (`{{ ti.xcom_push(key=...,
    /// value=...) }}`), which Airflow writes as it renders, for the try the rendering is for.
    /// By default the push is dropped: a rendering that records nothing (a dry run, the check
    /// when DAGs load) still renders.
    fn push_xcom(&self, key: &str, value: serde_json::Value) {
        let _ = (key, value);
    }
    /// The events of the assets with the name and URI given (one of them may be left out, as
    /// Airflow's `for_asset(uri=...)` asks by URI alone), oldest first, each with the fields of
    /// Airflow's `AssetEventResult` (`extra`, `timestamp`, `asset`, `source_dag_id`...): what
    /// `inlet_events` lists. By default there are none (a lookup without a store).
    fn asset_events(&self, asset: &AssetQuery) -> Vec<serde_json::Value> {
        let _ = asset;
        Vec::new()
    }
    /// The XCom `key` of each instance of `task_id` that pushed one, by map index, as Airflow
    /// keeps XCom rows: a mapped task's instances under their map indexes, a task that is not
    /// mapped under -1. What the Execution API's XCom sequence routes read, once per request
    /// of each of a mapped task's instances: shared, not copied, so that 10,000 instances
    /// reading their upstream's rows cost 10,000 reads, not 10,000 copies of 10,000 values. By
    /// default the task is taken as not mapped.
    fn xcom_rows(&self, task_id: &str, key: &str) -> XComRows {
        Arc::new(
            self.xcom(task_id, key)
                .map(|value| BTreeMap::from([(-1, value)]))
                .unwrap_or_default(),
        )
    }
    /// How many instances `task_id` was expanded to in the current run, when known here (the
    /// Task SDK asks it of a task in a mapped task group, to pick its upstreams' instance).
    /// By default it is not.
    fn instance_count(&self, task_id: &str) -> Option<usize> {
        let _ = task_id;
        None
    }
}

/// A lookup with nothing in it, for dry runs and tests.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoLookup;

impl RuntimeLookup for NoLookup {
    fn variable(&self, _key: &str) -> Option<String> {
        None
    }

    fn connection(&self, _conn_id: &str) -> Option<TemplateConnection> {
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
    /// Connections by id.
    pub connections: HashMap<String, TemplateConnection>,
    /// XComs by (task_id, key).
    pub xcoms: HashMap<(String, String), serde_json::Value>,
}

impl RuntimeLookup for MapLookup {
    fn variable(&self, key: &str) -> Option<String> {
        self.variables.get(key).cloned()
    }

    fn connection(&self, conn_id: &str) -> Option<TemplateConnection> {
        self.connections.get(conn_id).cloned()
    }

    fn xcom(&self, task_id: &str, key: &str) -> Option<serde_json::Value> {
        self.xcoms
            .get(&(task_id.to_owned(), key.to_owned()))
            .cloned()
    }
}
