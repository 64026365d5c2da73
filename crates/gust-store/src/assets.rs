//! Assets (Airflow 3's data-aware scheduling): each asset once by (name, uri), which DAGs and
//! tasks refer to it, its events, the events waiting for each consuming DAG, and the events each
//! asset-triggered run consumed.
//!
//! An event and the queue rows of the DAGs it may trigger are written in one transaction, with
//! the task's success when a try emits it ([`crate::TryChange::Ended`]'s outlets): a crash
//! never keeps one without the other. An asset-triggered run is created in one transaction
//! that deletes the queue rows it consumes and fails if any is gone, so two schedulers never
//! make two runs for one set of events.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use gust_core::asset::{Asset, AssetAlias};
use sqlx::Row;

use crate::error::query;
use crate::time::{from_db, to_db};
use crate::{NewRun, Store, StoreError, with_pool};

/// How a DAG refers to an asset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AssetRefKind {
    /// The DAG's schedule names it.
    Schedule,
    /// A task's `outlets` name it.
    Outlet,
    /// A task's `inlets` name it.
    Inlet,
}

impl AssetRefKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Schedule => "schedule",
            Self::Outlet => "outlet",
            Self::Inlet => "inlet",
        }
    }

    fn parse(text: &str) -> Result<Self, StoreError> {
        match text {
            "schedule" => Ok(Self::Schedule),
            "outlet" => Ok(Self::Outlet),
            "inlet" => Ok(Self::Inlet),
            other => Err(StoreError::Corrupt {
                what: "asset reference kind",
                detail: other.to_owned(),
            }),
        }
    }
}

/// One reference of a DAG to an asset.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AssetRef {
    /// The asset.
    pub asset: Asset,
    /// The task (empty for the schedule).
    pub task_id: String,
    /// How.
    pub kind: AssetRefKind,
}

/// One reference of a DAG to an asset alias: its schedule names it, or a task's outlets do.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AliasRef {
    /// The alias.
    pub alias: AssetAlias,
    /// The task (empty for the schedule).
    pub task_id: String,
    /// How ([`AssetRefKind::Schedule`] or [`AssetRefKind::Outlet`]).
    pub kind: AssetRefKind,
}

/// An asset attached to an alias by an event emitted through it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AliasedAsset {
    /// The alias's name.
    pub alias: String,
    /// The asset's name.
    pub name: String,
    /// The asset's URI.
    pub uri: String,
    /// The asset's group.
    pub group: String,
}

/// A stored asset.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredAsset {
    /// Its id.
    pub id: i64,
    /// Its name.
    pub name: String,
    /// Its URI.
    pub uri: String,
    /// Its group.
    pub group: String,
    /// Its extra (a JSON object).
    pub extra: serde_json::Map<String, serde_json::Value>,
    /// When it was first seen.
    pub created_at: DateTime<Utc>,
    /// When a DAG last defined it.
    pub updated_at: DateTime<Utc>,
}

/// A stored reference of a DAG (or one of its tasks) to an asset.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredAssetRef {
    /// The asset.
    pub asset_id: i64,
    /// The DAG.
    pub dag_id: String,
    /// The task (empty for the schedule).
    pub task_id: String,
    /// How.
    pub kind: AssetRefKind,
    /// Since when.
    pub created_at: DateTime<Utc>,
}

/// An asset event to record.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAssetEvent {
    /// The asset updated.
    pub asset: Asset,
    /// The event's extra (a JSON object).
    pub extra: serde_json::Map<String, serde_json::Value>,
    /// The try that emitted it: DAG, run and task (none for an event posted to the API).
    pub source: Option<(String, String, String)>,
    /// The aliases it was emitted through (`outlet_events[AssetAlias(name)].add(asset)`): the
    /// asset is attached to each, and the DAGs scheduled on them are queued too.
    pub aliases: Vec<AssetAlias>,
    /// When.
    pub timestamp: DateTime<Utc>,
}

/// A recorded asset event.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredAssetEvent {
    /// Its id.
    pub id: i64,
    /// The asset.
    pub asset_id: i64,
    /// The asset's name, URI and group.
    pub name: String,
    /// The asset's URI.
    pub uri: String,
    /// The asset's group.
    pub group: String,
    /// Its extra.
    pub extra: serde_json::Map<String, serde_json::Value>,
    /// The DAG of the try that emitted it.
    pub source_dag_id: Option<String>,
    /// The run of that try.
    pub source_run_id: Option<String>,
    /// The task of that try.
    pub source_task_id: Option<String>,
    /// Its map index (-1).
    pub source_map_index: i32,
    /// When.
    pub timestamp: DateTime<Utc>,
}

/// Which asset events to list.
#[derive(Debug, Clone, Default)]
pub struct AssetEventFilter {
    /// Of this asset.
    pub asset_id: Option<i64>,
    /// Emitted by a try of this DAG.
    pub source_dag_id: Option<String>,
    /// ... of this task.
    pub source_task_id: Option<String>,
    /// ... of this run.
    pub source_run_id: Option<String>,
    /// ... at this map index.
    pub source_map_index: Option<i32>,
    /// At or after.
    pub timestamp_gte: Option<DateTime<Utc>>,
    /// At or before.
    pub timestamp_lte: Option<DateTime<Utc>>,
    /// Of the asset with this name.
    pub name: Option<String>,
    /// Of the asset with this URI.
    pub uri: Option<String>,
    /// Emitted through the alias of this name.
    pub alias: Option<String>,
}

/// An event waiting for a DAG scheduled on its asset.
#[derive(Debug, Clone, PartialEq)]
pub struct QueuedAssetEvent {
    /// The asset.
    pub asset_id: i64,
    /// Its name.
    pub name: String,
    /// Its URI.
    pub uri: String,
    /// The DAG waiting.
    pub dag_id: String,
    /// When the first event since the DAG's last asset-triggered run came.
    pub created_at: DateTime<Utc>,
}

/// A run that consumed an asset event.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsumingRun {
    /// The event.
    pub event_id: i64,
    /// The run's DAG.
    pub dag_id: String,
    /// The run.
    pub run_id: String,
    /// Whether the event triggered the run: it is the newest event the run consumed.
    pub triggering: bool,
}

const EVENT_COLUMNS: &str = "e.id, e.asset_id, a.name, a.uri, a.asset_group, e.extra, e.source_dag_id, \
     e.source_run_id, e.source_task_id, e.source_map_index, e.timestamp";

fn json_map(
    text: &str,
    what: &'static str,
) -> Result<serde_json::Map<String, serde_json::Value>, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt {
        what,
        detail: e.to_string(),
    })
}

/// Inserts one asset (or finds it) and answers its id, inside a transaction. Macros rather
/// than functions: the body is compiled once per engine, as `with_pool!`'s.
macro_rules! upsert_asset {
    ($store:expr, $tx:expr, $asset:expr, $now:expr) => {{
        let asset: &gust_core::asset::Asset = $asset;
        let extra = if asset.extra.is_empty() {
            "{}"
        } else {
            asset.extra.as_str()
        };
        let sql = $store.sql(
            "INSERT INTO assets (name, uri, asset_group, extra, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $5) \
             ON CONFLICT (name, uri) DO UPDATE SET asset_group = excluded.asset_group, \
             extra = excluded.extra, updated_at = excluded.updated_at RETURNING id",
        );
        sqlx::query_scalar::<_, i64>(&sql)
            .bind(&asset.name)
            .bind(&asset.uri)
            .bind(&asset.group)
            .bind(extra)
            .bind(to_db($now))
            .fetch_one(&mut *$tx)
            .await
            .map_err(query("recording an asset"))?
    }};
}

/// Records one asset event and queues it for the unpaused DAGs scheduled on its asset, inside
/// a transaction; answers the event's id.
macro_rules! insert_event {
    ($store:expr, $tx:expr, $asset_id:expr, $event:expr) => {{
        let event: &$crate::NewAssetEvent = $event;
        let sql = $store.sql(
            "INSERT INTO asset_events (asset_id, extra, source_dag_id, source_run_id, source_task_id, timestamp) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        );
        let (dag, run, task) = match &event.source {
            Some((d, r, t)) => (Some(d.as_str()), Some(r.as_str()), Some(t.as_str())),
            None => (None, None, None),
        };
        let id = sqlx::query_scalar::<_, i64>(&sql)
            .bind($asset_id)
            .bind(serde_json::Value::Object(event.extra.clone()).to_string())
            .bind(dag)
            .bind(run)
            .bind(task)
            .bind(to_db(event.timestamp))
            .fetch_one(&mut *$tx)
            .await
            .map_err(query("recording an asset event"))?;
        // Airflow queues an event only for DAGs that are not paused (nor gone).
        let queue = $store.sql(
            "INSERT INTO asset_queue (asset_id, target_dag_id, created_at) \
             SELECT r.asset_id, r.dag_id, $2 FROM asset_references r JOIN dags d ON d.dag_id = r.dag_id \
             WHERE r.asset_id = $1 AND r.kind = 'schedule' AND d.is_paused = 0 AND d.is_active = 1 \
             ON CONFLICT (asset_id, target_dag_id) DO NOTHING",
        );
        sqlx::query(&queue)
            .bind($asset_id)
            .bind(to_db(event.timestamp))
            .execute(&mut *$tx)
            .await
            .map_err(query("queueing an asset event"))?;
        for alias in &event.aliases {
            // As Airflow's `register_asset_change` with `source_alias_names`: the asset is
            // attached to the alias, the event recorded as the alias's, and the unpaused DAGs
            // scheduled on the alias queued for the asset.
            let upsert = $store.sql(
                "INSERT INTO asset_aliases (name, alias_group) VALUES ($1, $2) \
                 ON CONFLICT (name) DO UPDATE SET alias_group = excluded.alias_group RETURNING id",
            );
            let alias_id = sqlx::query_scalar::<_, i64>(&upsert)
                .bind(&alias.name)
                .bind(&alias.group)
                .fetch_one(&mut *$tx)
                .await
                .map_err(query("recording an asset alias"))?;
            let attach = $store.sql(
                "INSERT INTO asset_alias_assets (alias_id, asset_id) VALUES ($1, $2) \
                 ON CONFLICT (alias_id, asset_id) DO NOTHING",
            );
            sqlx::query(&attach)
                .bind(alias_id)
                .bind($asset_id)
                .execute(&mut *$tx)
                .await
                .map_err(query("attaching an asset to an alias"))?;
            let through = $store.sql(
                "INSERT INTO asset_alias_events (alias_id, event_id) VALUES ($1, $2) \
                 ON CONFLICT (alias_id, event_id) DO NOTHING",
            );
            sqlx::query(&through)
                .bind(alias_id)
                .bind(id)
                .execute(&mut *$tx)
                .await
                .map_err(query("recording an alias's asset event"))?;
            let queue = $store.sql(
                "INSERT INTO asset_queue (asset_id, target_dag_id, created_at) \
                 SELECT $1, r.dag_id, $2 FROM asset_alias_references r JOIN dags d ON d.dag_id = r.dag_id \
                 WHERE r.alias_id = $3 AND r.kind = 'schedule' AND d.is_paused = 0 AND d.is_active = 1 \
                 ON CONFLICT (asset_id, target_dag_id) DO NOTHING",
            );
            sqlx::query(&queue)
                .bind($asset_id)
                .bind(to_db(event.timestamp))
                .bind(alias_id)
                .execute(&mut *$tx)
                .await
                .map_err(query("queueing an alias's asset event"))?;
        }
        id
    }};
}
pub(crate) use {insert_event, upsert_asset};

/// The SQL of one table of what DAGs refer to (`asset_references`, `asset_alias_references`):
/// rows of (referred id, DAG, task, kind).
struct ReferenceSql {
    existing: &'static str,
    insert: &'static str,
    delete: &'static str,
}

const ASSET_REFERENCES: ReferenceSql = ReferenceSql {
    existing: "SELECT asset_id, task_id, kind FROM asset_references WHERE dag_id = $1",
    insert: "INSERT INTO asset_references (asset_id, dag_id, task_id, kind, created_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (asset_id, dag_id, task_id, kind) DO NOTHING",
    delete: "DELETE FROM asset_references WHERE asset_id = $1 AND dag_id = $2 AND task_id = $3 AND kind = $4",
};

const ALIAS_REFERENCES: ReferenceSql = ReferenceSql {
    existing: "SELECT alias_id, task_id, kind FROM asset_alias_references WHERE dag_id = $1",
    insert: "INSERT INTO asset_alias_references (alias_id, dag_id, task_id, kind, created_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (alias_id, dag_id, task_id, kind) DO NOTHING",
    delete: "DELETE FROM asset_alias_references WHERE alias_id = $1 AND dag_id = $2 AND task_id = $3 AND kind = $4",
};

/// Drops a DAG's queued events of assets its schedule no longer names, directly or through an
/// alias they are attached to.
const UNQUEUE_UNSCHEDULED: &str = "DELETE FROM asset_queue WHERE target_dag_id = $1 AND asset_id NOT IN \
     (SELECT asset_id FROM asset_references WHERE dag_id = $1 AND kind = 'schedule') \
     AND asset_id NOT IN (SELECT aa.asset_id FROM asset_alias_assets aa JOIN asset_alias_references ar \
     ON ar.alias_id = aa.alias_id WHERE ar.dag_id = $1 AND ar.kind = 'schedule')";

/// Replaces a DAG's rows in one reference table by `$refs`, in one transaction: `$id` (an
/// expression over the transaction `$tx` and the reference `$r`) gives the referred row's id,
/// created when missing, once per distinct `$key`. A DAG with no references, now or before,
/// costs one read.
macro_rules! record_references {
    ($store:expr, $table:expr, $dag_id:expr, $refs:expr, $now:expr, $what:literal,
     |$tx:ident, $r:ident| key: $key:expr, id: $id:expr) => {{
        let table: &ReferenceSql = &$table;
        let (existing, insert, delete) =
            ($store.sql(table.existing), $store.sql(table.insert), $store.sql(table.delete));
        let unqueue = $store.sql(UNQUEUE_UNSCHEDULED);
        let failed = query($what);
        with_pool!($store, pool => {
            let rows = sqlx::query(&existing).bind($dag_id).fetch_all(pool).await.map_err(failed)?;
            if rows.is_empty() && $refs.is_empty() {
                return Ok(());
            }
            let mut old: BTreeSet<(i64, String, String)> = BTreeSet::new();
            for row in &rows {
                old.insert((row.try_get(0).map_err(failed)?, row.try_get(1).map_err(failed)?, row.try_get(2).map_err(failed)?));
            }
            let mut $tx = pool.begin().await.map_err(failed)?;
            let mut ids = HashMap::new();
            let mut new: BTreeSet<(i64, String, String)> = BTreeSet::new();
            for $r in $refs {
                let id: i64 = match ids.get($key) {
                    Some(id) => *id,
                    None => {
                        let id = $id;
                        ids.insert($key, id);
                        id
                    }
                };
                new.insert((id, $r.task_id.clone(), $r.kind.as_str().to_owned()));
            }
            for (id, task, kind) in new.difference(&old) {
                sqlx::query(&insert).bind(id).bind($dag_id).bind(task).bind(kind).bind(to_db($now))
                    .execute(&mut *$tx).await.map_err(failed)?;
            }
            for (id, task, kind) in old.difference(&new) {
                sqlx::query(&delete).bind(id).bind($dag_id).bind(task).bind(kind)
                    .execute(&mut *$tx).await.map_err(failed)?;
            }
            sqlx::query(&unqueue).bind($dag_id).execute(&mut *$tx).await.map_err(failed)?;
            $tx.commit().await.map_err(failed)?;
            Ok(())
        })
    }};
}

impl Store {
    /// Records what `dag_id` refers to: its assets (created or updated) and its references,
    /// keeping the first-seen time of references it had before (the event window of a DAG
    /// without catchup starts there). Queued events of assets its schedule no longer names go.
    pub async fn record_dag_assets(
        &self,
        dag_id: &str,
        refs: &BTreeSet<AssetRef>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        record_references!(self, ASSET_REFERENCES, dag_id, refs, now, "recording a DAG's assets",
            |tx, r| key: &r.asset, id: upsert_asset!(self, tx, &r.asset, now))
    }

    /// Records which aliases `dag_id` refers to (its schedule's, its tasks' outlets'), creating
    /// the aliases it is the first to name, as Airflow's DAG processor does. Queued events of
    /// assets attached only to aliases its schedule no longer names go.
    pub async fn record_dag_aliases(
        &self,
        dag_id: &str,
        refs: &BTreeSet<AliasRef>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let upsert = self.sql(
            "INSERT INTO asset_aliases (name, alias_group) VALUES ($1, $2) \
             ON CONFLICT (name) DO UPDATE SET alias_group = excluded.alias_group RETURNING id",
        );
        record_references!(self, ALIAS_REFERENCES, dag_id, refs, now, "recording a DAG's asset aliases",
            |tx, r| key: &r.alias, id: sqlx::query_scalar(&upsert).bind(&r.alias.name).bind(&r.alias.group)
                .fetch_one(&mut *tx).await.map_err(query("recording an asset alias"))?)
    }

    /// The assets attached to each alias so far, by alias name.
    pub async fn aliased_assets(&self) -> Result<Vec<AliasedAsset>, StoreError> {
        let sql = self.sql(
            "SELECT al.name, a.name, a.uri, a.asset_group FROM asset_alias_assets aa \
             JOIN asset_aliases al ON al.id = aa.alias_id JOIN assets a ON a.id = aa.asset_id \
             ORDER BY al.name, a.id",
        );
        let failed = query("reading the assets of asset aliases");
        with_pool!(self, pool => {
            let rows = sqlx::query(&sql).fetch_all(pool).await.map_err(failed)?;
            rows.iter().map(|r| Ok(AliasedAsset {
                alias: r.try_get(0).map_err(failed)?,
                name: r.try_get(1).map_err(failed)?,
                uri: r.try_get(2).map_err(failed)?,
                group: r.try_get(3).map_err(failed)?,
            })).collect()
        })
    }

    /// Records asset events (an external system's, or a user's through the API) and queues them
    /// for the DAGs scheduled on their assets; answers the events' ids.
    pub async fn create_asset_events(
        &self,
        events: &[NewAssetEvent],
    ) -> Result<Vec<i64>, StoreError> {
        let failed = query("recording asset events");
        with_pool!(self, pool => {
            let mut tx = pool.begin().await.map_err(failed)?;
            let mut ids = Vec::with_capacity(events.len());
            for event in events {
                let asset_id = upsert_asset!(self, tx, &event.asset, event.timestamp);
                ids.push(insert_event!(self, tx, asset_id, event));
            }
            tx.commit().await.map_err(failed)?;
            Ok(ids)
        })
    }

    /// Records an event of the stored asset `asset_id` (the API's `POST /assets/events`);
    /// `None` when there is no such asset.
    pub async fn create_event_of_asset(
        &self,
        asset_id: i64,
        extra: serde_json::Map<String, serde_json::Value>,
        at: DateTime<Utc>,
    ) -> Result<Option<i64>, StoreError> {
        let Some(asset) = self.asset(asset_id).await? else {
            return Ok(None);
        };
        let event = NewAssetEvent {
            asset: Asset {
                name: asset.name,
                uri: asset.uri,
                group: asset.group,
                extra: serde_json::Value::Object(asset.extra).to_string(),
            },
            extra,
            source: None,
            aliases: Vec::new(),
            timestamp: at,
        };
        let failed = query("recording an asset event");
        with_pool!(self, pool => {
            let mut tx = pool.begin().await.map_err(failed)?;
            let id = insert_event!(self, tx, asset_id, &event);
            tx.commit().await.map_err(failed)?;
            Ok(Some(id))
        })
    }

    /// Every asset, by id.
    pub async fn assets(&self) -> Result<Vec<StoredAsset>, StoreError> {
        let sql = "SELECT id, name, uri, asset_group, extra, created_at, updated_at FROM assets ORDER BY id";
        self.read_assets(sql, None).await
    }

    /// One asset.
    pub async fn asset(&self, id: i64) -> Result<Option<StoredAsset>, StoreError> {
        let sql = "SELECT id, name, uri, asset_group, extra, created_at, updated_at FROM assets WHERE id = $1";
        Ok(self.read_assets(sql, Some(id)).await?.pop())
    }

    async fn read_assets(
        &self,
        sql: &'static str,
        id: Option<i64>,
    ) -> Result<Vec<StoredAsset>, StoreError> {
        let sql = self.sql(sql);
        let failed = query("reading assets");
        type Raw = (i64, String, String, String, String, i64, i64);
        let rows: Vec<Raw> = with_pool!(self, pool => {
            let mut q = sqlx::query(&sql);
            if let Some(id) = id {
                q = q.bind(id);
            }
            let rows = q.fetch_all(pool).await.map_err(failed)?;
            rows.iter()
                .map(|r| Ok::<Raw, sqlx::Error>((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?, r.try_get(4)?, r.try_get(5)?, r.try_get(6)?)))
                .collect::<Result<_, _>>()
                .map_err(failed)?
        });
        rows.into_iter()
            .map(|(id, name, uri, group, extra, created, updated)| {
                Ok(StoredAsset {
                    id,
                    name,
                    uri,
                    group,
                    extra: json_map(&extra, "asset extra")?,
                    created_at: from_db(created)?,
                    updated_at: from_db(updated)?,
                })
            })
            .collect()
    }

    /// Each asset's newest event: its id and time, by asset id.
    pub async fn last_asset_events(
        &self,
    ) -> Result<HashMap<i64, (i64, DateTime<Utc>)>, StoreError> {
        let sql = self.sql(
            "SELECT e.asset_id, MAX(e.id), MAX(e.timestamp) FROM asset_events e \
             JOIN (SELECT asset_id, MAX(timestamp) AS newest FROM asset_events GROUP BY asset_id) n \
             ON n.asset_id = e.asset_id AND n.newest = e.timestamp GROUP BY e.asset_id",
        );
        let failed = query("reading assets' newest events");
        let rows: Vec<(i64, i64, i64)> = with_pool!(self, pool => {
            let rows = sqlx::query(&sql).fetch_all(pool).await.map_err(failed)?;
            rows.iter().map(|r| Ok::<_, sqlx::Error>((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
                .collect::<Result<_, _>>().map_err(failed)?
        });
        rows.into_iter()
            .map(|(asset, id, at)| Ok((asset, (id, from_db(at)?))))
            .collect()
    }

    /// Every reference of a DAG or task to an asset, by asset.
    pub async fn asset_references(&self) -> Result<Vec<StoredAssetRef>, StoreError> {
        let sql = self.sql("SELECT asset_id, dag_id, task_id, kind, created_at FROM asset_references ORDER BY asset_id, dag_id, task_id");
        let failed = query("reading asset references");
        type Raw = (i64, String, String, String, i64);
        let rows: Vec<Raw> = with_pool!(self, pool => {
            let rows = sqlx::query(&sql).fetch_all(pool).await.map_err(failed)?;
            rows.iter()
                .map(|r| Ok::<Raw, sqlx::Error>((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?, r.try_get(4)?)))
                .collect::<Result<_, _>>()
                .map_err(failed)?
        });
        rows.into_iter()
            .map(|(asset_id, dag_id, task_id, kind, created)| {
                Ok(StoredAssetRef {
                    asset_id,
                    dag_id,
                    task_id,
                    kind: AssetRefKind::parse(&kind)?,
                    created_at: from_db(created)?,
                })
            })
            .collect()
    }

    /// Asset events matching `filter`, in `order` (a column of [`EVENT_ORDERS`], `-` first for
    /// descending), `limit` from `offset`, and how many match in all.
    pub async fn asset_events(
        &self,
        filter: &AssetEventFilter,
        order: &str,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<StoredAssetEvent>, i64), StoreError> {
        let (column, descending) = match order.strip_prefix('-') {
            Some(c) => (c, true),
            None => (order, false),
        };
        let column = EVENT_ORDERS
            .iter()
            .find(|(name, _)| *name == column)
            .map_or("e.timestamp", |(_, sql)| *sql);
        let direction = if descending { "DESC" } else { "ASC" };
        let mut conditions = vec!["1 = 1".to_owned()];
        let mut n = 0;
        let mut next = || {
            n += 1;
            format!("${n}")
        };
        if filter.asset_id.is_some() {
            conditions.push(format!("e.asset_id = {}", next()));
        }
        if filter.source_dag_id.is_some() {
            conditions.push(format!("e.source_dag_id = {}", next()));
        }
        if filter.source_task_id.is_some() {
            conditions.push(format!("e.source_task_id = {}", next()));
        }
        if filter.source_run_id.is_some() {
            conditions.push(format!("e.source_run_id = {}", next()));
        }
        if filter.source_map_index.is_some() {
            conditions.push(format!("e.source_map_index = {}", next()));
        }
        if filter.timestamp_gte.is_some() {
            conditions.push(format!("e.timestamp >= {}", next()));
        }
        if filter.timestamp_lte.is_some() {
            conditions.push(format!("e.timestamp <= {}", next()));
        }
        if filter.name.is_some() {
            conditions.push(format!("a.name = {}", next()));
        }
        if filter.uri.is_some() {
            conditions.push(format!("a.uri = {}", next()));
        }
        if filter.alias.is_some() {
            conditions.push(format!(
                "e.id IN (SELECT ae.event_id FROM asset_alias_events ae JOIN asset_aliases al \
                 ON al.id = ae.alias_id WHERE al.name = {})",
                next()
            ));
        }
        let (limit_at, offset_at) = (next(), next());
        let conditions = conditions.join(" AND ");
        let list = self.sql_owned(format!(
            "SELECT {EVENT_COLUMNS} FROM asset_events e JOIN assets a ON a.id = e.asset_id WHERE {conditions} \
             ORDER BY {column} {direction}, e.id {direction} LIMIT {limit_at} OFFSET {offset_at}"
        ));
        let count = self.sql_owned(format!(
            "SELECT COUNT(*) FROM asset_events e JOIN assets a ON a.id = e.asset_id WHERE {conditions}"
        ));
        let failed = query("reading asset events");
        macro_rules! bind_filter {
            ($q:expr) => {{
                let mut q = $q;
                if let Some(v) = filter.asset_id {
                    q = q.bind(v);
                }
                if let Some(v) = &filter.source_dag_id {
                    q = q.bind(v.clone());
                }
                if let Some(v) = &filter.source_task_id {
                    q = q.bind(v.clone());
                }
                if let Some(v) = &filter.source_run_id {
                    q = q.bind(v.clone());
                }
                if let Some(v) = filter.source_map_index {
                    q = q.bind(v);
                }
                if let Some(v) = filter.timestamp_gte {
                    q = q.bind(to_db(v));
                }
                if let Some(v) = filter.timestamp_lte {
                    q = q.bind(to_db(v));
                }
                if let Some(v) = &filter.name {
                    q = q.bind(v.clone());
                }
                if let Some(v) = &filter.uri {
                    q = q.bind(v.clone());
                }
                if let Some(v) = &filter.alias {
                    q = q.bind(v.clone());
                }
                q
            }};
        }
        let (rows, total) = with_pool!(self, pool => {
            let rows = bind_filter!(sqlx::query(&list)).bind(limit).bind(offset).fetch_all(pool).await.map_err(failed)?;
            let total: i64 = bind_filter!(sqlx::query_scalar(&count)).fetch_one(pool).await.map_err(failed)?;
            let rows = rows.iter().map(|r| Ok::<RawEvent, sqlx::Error>((
                (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?, r.try_get(4)?, r.try_get(5)?),
                (r.try_get(6)?, r.try_get(7)?, r.try_get(8)?, r.try_get(9)?, r.try_get(10)?),
            ))).collect::<Result<Vec<_>, _>>().map_err(failed)?;
            (rows, total)
        });
        let events = rows
            .into_iter()
            .map(event_from_raw)
            .collect::<Result<_, _>>()?;
        Ok((events, total))
    }

    /// The runs that consumed each of `event_ids`.
    pub async fn consuming_runs(&self, event_ids: &[i64]) -> Result<Vec<ConsumingRun>, StoreError> {
        if event_ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<String> = event_ids.iter().map(i64::to_string).collect();
        // Ids are numbers formatted here, never user text.
        let sql = format!(
            "SELECT c.event_id, c.dag_id, c.run_id, CASE WHEN c.event_id = (SELECT MAX(l.event_id) FROM run_asset_events l \
             WHERE l.dag_id = c.dag_id AND l.run_id = c.run_id) THEN 1 ELSE 0 END \
             FROM run_asset_events c WHERE c.event_id IN ({}) ORDER BY c.event_id, c.dag_id, c.run_id",
            ids.join(", ")
        );
        let failed = query("reading the runs asset events triggered");
        with_pool!(self, pool => {
            let rows = sqlx::query(&sql).fetch_all(pool).await.map_err(failed)?;
            rows.iter().map(|r| Ok(ConsumingRun {
                event_id: r.try_get(0).map_err(failed)?,
                dag_id: r.try_get(1).map_err(failed)?,
                run_id: r.try_get(2).map_err(failed)?,
                triggering: r.try_get::<i32, _>(3).map_err(failed)? == 1,
            })).collect()
        })
    }

    /// The events a run consumed (Airflow's `consumed_asset_events`), oldest first.
    pub async fn run_asset_events(
        &self,
        dag_id: &str,
        run_id: &str,
    ) -> Result<Vec<StoredAssetEvent>, StoreError> {
        let sql = self.sql_owned(format!(
            "SELECT {EVENT_COLUMNS} FROM run_asset_events c JOIN asset_events e ON e.id = c.event_id \
             JOIN assets a ON a.id = e.asset_id WHERE c.dag_id = $1 AND c.run_id = $2 ORDER BY e.timestamp, e.id"
        ));
        let failed = query("reading a run's asset events");
        let rows = with_pool!(self, pool => {
            let rows = sqlx::query(&sql).bind(dag_id).bind(run_id).fetch_all(pool).await.map_err(failed)?;
            rows.iter().map(|r| Ok::<RawEvent, sqlx::Error>((
                (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?, r.try_get(4)?, r.try_get(5)?),
                (r.try_get(6)?, r.try_get(7)?, r.try_get(8)?, r.try_get(9)?, r.try_get(10)?),
            ))).collect::<Result<Vec<_>, _>>().map_err(failed)?
        });
        rows.into_iter().map(event_from_raw).collect()
    }

    /// The queued events, of one DAG and/or one asset when given, by DAG then asset.
    pub async fn queued_asset_events(
        &self,
        dag_id: Option<&str>,
        asset_id: Option<i64>,
    ) -> Result<Vec<QueuedAssetEvent>, StoreError> {
        let sql = self.sql(
            "SELECT q.asset_id, a.name, a.uri, q.target_dag_id, q.created_at FROM asset_queue q JOIN assets a ON a.id = q.asset_id \
             WHERE ($1 = '' OR q.target_dag_id = $1) AND ($2 < 0 OR q.asset_id = $2) ORDER BY q.target_dag_id, q.asset_id",
        );
        let failed = query("reading queued asset events");
        let rows: Vec<(i64, String, String, String, i64)> = with_pool!(self, pool => {
            let rows = sqlx::query(&sql).bind(dag_id.unwrap_or("")).bind(asset_id.unwrap_or(-1)).fetch_all(pool).await.map_err(failed)?;
            rows.iter().map(|r| Ok::<_, sqlx::Error>((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?, r.try_get(4)?)))
                .collect::<Result<_, _>>().map_err(failed)?
        });
        rows.into_iter()
            .map(|(asset_id, name, uri, dag_id, created)| {
                Ok(QueuedAssetEvent {
                    asset_id,
                    name,
                    uri,
                    dag_id,
                    created_at: from_db(created)?,
                })
            })
            .collect()
    }

    /// Deletes queued events, of one DAG and/or one asset when given, created before `before`
    /// when given; answers how many went.
    pub async fn delete_queued_asset_events(
        &self,
        dag_id: Option<&str>,
        asset_id: Option<i64>,
        before: Option<DateTime<Utc>>,
    ) -> Result<u64, StoreError> {
        let sql = self.sql(
            "DELETE FROM asset_queue WHERE ($1 = '' OR target_dag_id = $1) AND ($2 < 0 OR asset_id = $2) AND created_at < $3",
        );
        let before = before.map_or(i64::MAX, to_db);
        with_pool!(self, pool => sqlx::query(&sql).bind(dag_id.unwrap_or("")).bind(asset_id.unwrap_or(-1)).bind(before)
            .execute(pool).await.map(|r| r.rows_affected()))
        .map_err(query("deleting queued asset events"))
    }

    /// Creates `run`, an asset-triggered run of its DAG, consuming the queue rows of
    /// `asset_ids`: in one transaction they are deleted (all of them, or nothing happens and
    /// `false` is answered: another scheduler consumed them), the run is created, and the
    /// events it consumes are recorded: those of the assets its DAG is scheduled on, after its
    /// previous asset-triggered run (or, without `catchup`, after the DAG was first scheduled on
    /// its assets) up to the run's time (`run.logical_date`, the newest queue row's).
    pub async fn create_asset_triggered_run(
        &self,
        run: &NewRun,
        asset_ids: &[i64],
        catchup: bool,
    ) -> Result<bool, StoreError> {
        let unqueue =
            self.sql("DELETE FROM asset_queue WHERE target_dag_id = $1 AND asset_id = $2");
        let create = self.sql(
            "INSERT INTO dag_runs (dag_id, run_id, run_type, state, logical_date, data_interval_start, data_interval_end, conf, queued_at) \
             VALUES ($1, $2, 'asset_triggered', 'queued', $3, $3, $3, $4, $5) ON CONFLICT DO NOTHING",
        );
        let consume = self.sql(
            "INSERT INTO run_asset_events (dag_id, run_id, event_id) \
             SELECT $1, $2, e.id FROM asset_events e \
             WHERE (e.asset_id IN (SELECT asset_id FROM asset_references WHERE dag_id = $1 AND kind = 'schedule') \
               OR e.id IN (SELECT ae.event_id FROM asset_alias_events ae JOIN asset_alias_references ar \
                 ON ar.alias_id = ae.alias_id WHERE ar.dag_id = $1 AND ar.kind = 'schedule')) \
             AND e.timestamp <= $3 AND e.timestamp > COALESCE( \
               (SELECT MAX(logical_date) FROM dag_runs WHERE dag_id = $1 AND run_type = 'asset_triggered' AND logical_date < $3), \
               CASE WHEN $4 = 1 THEN NULL ELSE (SELECT MIN(s.created_at) FROM ( \
                 SELECT created_at FROM asset_references WHERE dag_id = $1 AND kind = 'schedule' UNION ALL \
                 SELECT created_at FROM asset_alias_references WHERE dag_id = $1 AND kind = 'schedule') s) END, \
               $5) \
             ON CONFLICT DO NOTHING",
        );
        let failed = query("creating an asset-triggered run");
        let conf = serde_json::Value::Object(run.conf.clone()).to_string();
        with_pool!(self, pool => {
            let mut tx = pool.begin().await.map_err(failed)?;
            for id in asset_ids {
                let gone = sqlx::query(&unqueue).bind(&run.dag_id).bind(id).execute(&mut *tx).await.map_err(failed)?.rows_affected();
                if gone != 1 {
                    tx.rollback().await.map_err(failed)?;
                    return Ok(false);
                }
            }
            let created = sqlx::query(&create).bind(&run.dag_id).bind(&run.run_id).bind(to_db(run.logical_date)).bind(&conf).bind(to_db(run.queued_at))
                .execute(&mut *tx).await.map_err(failed)?.rows_affected();
            if created != 1 {
                tx.rollback().await.map_err(failed)?;
                return Ok(false);
            }
            sqlx::query(&consume).bind(&run.dag_id).bind(&run.run_id).bind(to_db(run.logical_date)).bind(i32::from(catchup)).bind(i64::MIN)
                .execute(&mut *tx).await.map_err(failed)?;
            tx.commit().await.map_err(failed)?;
            Ok(true)
        })
    }
}

/// The orders asset events may be listed in, and their columns.
pub const EVENT_ORDERS: [(&str, &str); 6] = [
    ("id", "e.id"),
    ("asset_id", "e.asset_id"),
    ("source_dag_id", "e.source_dag_id"),
    ("source_task_id", "e.source_task_id"),
    ("source_run_id", "e.source_run_id"),
    ("timestamp", "e.timestamp"),
];

type RawEvent = (
    (i64, i64, String, String, String, String),
    (Option<String>, Option<String>, Option<String>, i32, i64),
);

fn event_from_raw(raw: RawEvent) -> Result<StoredAssetEvent, StoreError> {
    let ((id, asset_id, name, uri, group, extra), (dag, run, task, map_index, timestamp)) = raw;
    Ok(StoredAssetEvent {
        id,
        asset_id,
        name,
        uri,
        group,
        extra: json_map(&extra, "asset event extra")?,
        source_dag_id: dag,
        source_run_id: run,
        source_task_id: task,
        source_map_index: map_index,
        timestamp: from_db(timestamp)?,
    })
}
