//! Recording the DAGs in force in the metadata store: definitions and fingerprints, which DAGs
//! are active, and the import errors, so that the API, the UI and other schedulers see what this
//! one loaded.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use gust_dagfile::DagBag;
use gust_store::{AliasRef, AssetRef, AssetRefKind, ImportError, Store, StoreError, StoredDag};

/// Records `bag` in `store`. A DAG seen for the first time starts paused when its file says so
/// (`is_paused_upon_creation`), else when `paused_by_default` (`[core]
/// dags_are_paused_at_creation`); users' pause choices are kept across reloads.
pub async fn sync_bag(
    store: &Store,
    bag: &DagBag,
    now: DateTime<Utc>,
    paused_by_default: bool,
) -> Result<(), StoreError> {
    let active = record_dags(store, bag, now, paused_by_default).await?;
    let active: Vec<&str> = active.iter().map(String::as_str).collect();
    store.set_active_dags(&active).await?;
    let mut by_file: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for problem in &bag.problems {
        by_file
            .entry(problem.location.file.display().to_string())
            .or_default()
            // A Python DAG file's problem carries Airflow's traceback, which the API's
            // `stack_trace` and the UI show under it.
            .push(match bag.tracebacks.get(&problem.location) {
                Some(traceback) => format!("{problem}\n{traceback}"),
                None => problem.to_string(),
            });
    }
    let errors: Vec<ImportError> = by_file
        .into_iter()
        .map(|(file, problems)| ImportError { file, problems })
        .collect();
    store.replace_import_errors(&errors, now).await
}

/// Records the definitions of `bag`'s DAGs (new ones paused as [`sync_bag`] says) and answers
/// their ids, leaving every other DAG's record and the import errors alone: what a command does
/// for a DAG the scheduler has not recorded yet, without deactivating the DAGs of the folder the
/// scheduler reads.
pub async fn record_dags(
    store: &Store,
    bag: &DagBag,
    now: DateTime<Utc>,
    paused_by_default: bool,
) -> Result<Vec<String>, StoreError> {
    let mut recorded = Vec::new();
    for entry in bag.dags() {
        let dag = &entry.dag;
        let definition = serde_json::to_string(dag.as_ref()).map_err(|e| StoreError::Corrupt {
            what: "DAG definition",
            detail: e.to_string(),
        })?;
        let record = StoredDag {
            dag_id: dag.id.to_string(),
            fileloc: dag.fileloc.display().to_string(),
            definition,
            fingerprint: entry.fingerprint.clone(),
            is_paused: false,
            is_stale: entry.stale,
            last_parsed: now,
            last_parse_duration: bag.parse_durations.get(&dag.fileloc).copied(),
        };
        store
            .upsert_dag(
                &record,
                dag.settings
                    .is_paused_upon_creation
                    .unwrap_or(paused_by_default),
            )
            .await?;
        store
            .record_dag_assets(dag.id.as_str(), &asset_refs(dag), now)
            .await?;
        store
            .record_dag_aliases(dag.id.as_str(), &alias_refs(dag), now)
            .await?;
        recorded.push(dag.id.to_string());
    }
    Ok(recorded)
}

/// The asset aliases `dag` names: in its schedule, and in each task's outlets.
fn alias_refs(dag: &gust_core::dag::Dag) -> BTreeSet<AliasRef> {
    let mut refs = BTreeSet::new();
    if let Some(condition) = &dag.settings.assets {
        refs.extend(condition.aliases().into_iter().map(|alias| AliasRef {
            alias: alias.clone(),
            task_id: String::new(),
            kind: AssetRefKind::Schedule,
        }));
    }
    for task in dag.tasks() {
        refs.extend(task.settings.outlet_aliases.iter().map(|alias| AliasRef {
            alias: alias.clone(),
            task_id: task.id.to_string(),
            kind: AssetRefKind::Outlet,
        }));
    }
    refs
}

/// What `dag` says about assets: those its schedule names, and each task's outlets and inlets.
fn asset_refs(dag: &gust_core::dag::Dag) -> BTreeSet<AssetRef> {
    let mut refs = BTreeSet::new();
    if let Some(condition) = &dag.settings.assets {
        for asset in condition.assets() {
            refs.insert(AssetRef {
                asset: asset.clone(),
                task_id: String::new(),
                kind: AssetRefKind::Schedule,
            });
        }
    }
    for task in dag.tasks() {
        let kinds = [
            (&task.settings.outlets, AssetRefKind::Outlet),
            (&task.settings.inlets, AssetRefKind::Inlet),
        ];
        for (assets, kind) in kinds {
            refs.extend(assets.iter().map(|asset| AssetRef {
                asset: asset.clone(),
                task_id: task.id.to_string(),
                kind,
            }));
        }
    }
    refs
}
