//! The variables and connections templates read (`var.value.X`, `conn.ID.host`), read from the
//! store when tries are about to render, so a variable created right before a trigger is seen by
//! that run's first tries, as an Airflow task reads its variables when it renders.
//!
//! The events of the assets templates read as `inlet_events` are read with them (only those of
//! the inlets of tasks whose templates name `inlet_events`, see [`TemplateValues::read_events_of`]).
//!
//! [`TemplateValues::refresh`] is called once per scheduler step that admits tries (not once per
//! try): one query for the connection ids and one for the variables (their keys only, until the
//! key that decrypts them is known), plus one that decrypts the connections when there are any. Rendering itself stays synchronous and reads the last
//! snapshot.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::{Arc, RwLock};

use gust_store::{SecretKey, Store, StoreError};
use gust_template::{AssetQuery, TemplateConnection};

/// Gives the key that decrypts connections and variables, when one is set up (asked only once a
/// connection or variable exists, so no key is made for nothing).
pub type KeySource = Arc<dyn Fn() -> Option<SecretKey> + Send + Sync>;

/// Variables and connections as templates see them.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Variables by key, as stored (text).
    pub variables: HashMap<String, String>,
    /// Connections by id.
    pub connections: HashMap<String, TemplateConnection>,
    /// The events of the assets whose events templates read, oldest first, as
    /// [`gust_template::RuntimeLookup::asset_events`] gives them.
    pub asset_events: HashMap<AssetQuery, Vec<serde_json::Value>>,
}

/// Where the values come from: a store, or fixed values (`gust dags test`, dry runs).
struct FromStore {
    store: Store,
    key: KeySource,
    /// The key once `key` gave one: it does not change while Gust runs.
    found_key: std::sync::OnceLock<SecretKey>,
}

impl FromStore {
    fn key(&self) -> Option<&SecretKey> {
        if let Some(key) = self.found_key.get() {
            return Some(key);
        }
        let key = (self.key)()?;
        Some(self.found_key.get_or_init(|| key))
    }
}

/// The current variables and connections, shared by the scheduler and every run's lookup.
pub struct TemplateValues {
    source: Option<FromStore>,
    /// The assets whose events are read at each refresh.
    inlets: RwLock<BTreeSet<AssetQuery>>,
    current: RwLock<Arc<Snapshot>>,
}

impl fmt::Debug for TemplateValues {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TemplateValues")
    }
}

impl TemplateValues {
    /// Fixed values that never change.
    #[must_use]
    pub fn fixed(
        variables: HashMap<String, String>,
        connections: HashMap<String, TemplateConnection>,
    ) -> Self {
        Self {
            source: None,
            inlets: RwLock::default(),
            current: RwLock::new(Arc::new(Snapshot {
                variables,
                connections,
                asset_events: HashMap::new(),
            })),
        }
    }

    /// Values read from `store` at each [`refresh`](Self::refresh); connections and variables
    /// are decrypted with the key `key` gives (none: templates see neither).
    #[must_use]
    pub fn from_store(store: Store, key: KeySource) -> Self {
        Self {
            source: Some(FromStore {
                store,
                key,
                found_key: std::sync::OnceLock::new(),
            }),
            inlets: RwLock::default(),
            current: RwLock::new(Arc::new(Snapshot::default())),
        }
    }

    /// Reads the store again (fixed values stay as they are). Variables and connections are
    /// encrypted at rest, so both are read only once the key is known; without a key
    /// templates see neither.
    pub async fn refresh(&self) -> Result<(), StoreError> {
        let Some(source) = &self.source else {
            return Ok(());
        };
        let connection_ids = source.store.connection_ids().await?;
        // The key is asked for once something needs it, so none is made for an empty store.
        let needs_key = source.found_key.get().is_some()
            || !connection_ids.is_empty()
            || !source.store.variable_keys().await?.is_empty();
        let key = if needs_key { source.key() } else { None };
        let variables = match key {
            Some(key) => source.store.all_variables(key).await?,
            None => HashMap::new(),
        };
        let connections = match key {
            Some(key) if !connection_ids.is_empty() => source
                .store
                .connections(key)
                .await?
                .into_iter()
                .map(|c| (c.conn_id.clone(), template_connection(c)))
                .collect(),
            _ => HashMap::new(),
        };
        let inlets = self
            .inlets
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let mut asset_events = HashMap::with_capacity(inlets.len());
        for asked in inlets {
            let filter = gust_store::AssetEventFilter {
                name: asked.name.clone(),
                uri: asked.uri.clone(),
                ..gust_store::AssetEventFilter::default()
            };
            let (events, _) = source
                .store
                .asset_events(&filter, "-timestamp", MAX_INLET_EVENTS, 0)
                .await?;
            asset_events.insert(asked, events.iter().rev().map(inlet_event).collect());
        }
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(Snapshot {
            variables,
            connections,
            asset_events,
        });
        Ok(())
    }

    /// Reads the events of `assets` at each refresh from now on: the inlets of a task whose
    /// templates read `inlet_events`.
    pub fn read_events_of(&self, assets: impl IntoIterator<Item = AssetQuery>) {
        self.inlets
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend(assets);
    }

    /// The values as last read.
    #[must_use]
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// A stored connection as templates see it.
#[must_use]
pub fn template_connection(c: gust_store::Connection) -> TemplateConnection {
    TemplateConnection {
        conn_id: c.conn_id,
        conn_type: c.conn_type,
        host: c.host,
        login: c.login,
        password: c.password.map(|p| p.expose().to_owned()),
        schema: c.schema,
        port: c.port.map(i64::from),
        extra: c.extra.map(|e| e.expose().to_owned()),
        description: c.description,
    }
}

/// The most events of one asset `inlet_events` lists: the newest, so that `[-1]` is the latest
/// event however many there are.
const MAX_INLET_EVENTS: i64 = 10_000;

/// An event as `inlet_events` lists it: Airflow's `AssetEventResult`.
fn inlet_event(e: &gust_store::StoredAssetEvent) -> serde_json::Value {
    let mut event = template_event(e);
    event["id"] = serde_json::json!(e.id);
    event["source_aliases"] = serde_json::json!([]);
    event["created_dagruns"] = serde_json::json!([]);
    event
}

/// An event with the fields of Airflow's `AssetEvent`.
fn template_event(e: &gust_store::StoredAssetEvent) -> serde_json::Value {
    serde_json::json!({
        "asset": {"uri": e.uri, "name": e.name, "group": e.group},
        "extra": e.extra,
        "timestamp": gust_core::date::python_isoformat(e.timestamp),
        "source_dag_id": e.source_dag_id,
        "source_task_id": e.source_task_id,
        "source_run_id": e.source_run_id,
        "source_map_index": e.source_map_index,
    })
}

/// A run's consumed asset events as templates see them (`triggering_asset_events`): by asset
/// URI, oldest first, each with the fields of Airflow's `AssetEvent`.
#[must_use]
pub fn triggering_asset_events(
    events: &[gust_store::StoredAssetEvent],
) -> serde_json::Map<String, serde_json::Value> {
    let mut by_uri = serde_json::Map::new();
    for e in events {
        let event = template_event(e);
        if let serde_json::Value::Array(list) = by_uri
            .entry(e.uri.clone())
            .or_insert_with(|| serde_json::Value::Array(Vec::new()))
        {
            list.push(event);
        }
    }
    by_uri
}
