//! The DAGs the metadata database records: the ones a scheduler last loaded, from whatever folder
//! it reads. Commands that act on runs (`dags trigger | backfill | pause | unpause`, `tasks
//! clear`) work from these, as Airflow's CLI works from the serialized DAGs, so they need no
//! `--dags-folder` matching the scheduler's. A DAG no scheduler has recorded yet is read from the
//! DAGs folder instead. This module only reads DAGs; it creates no runs and changes no state.

use std::path::Path;

use anyhow::Context;
use gust_core::dag::Dag;
use gust_dagfile::FolderLoad;
use gust_store::{DagSummary, Store};

use crate::cli::DagsFolder;
use crate::config::Config;

/// Where a command found its DAG.
pub enum Found {
    /// The database records it, active: the version the scheduler runs.
    Recorded(Dag),
    /// Only the DAGs folder has it; `load` is the whole folder, for a command that records it.
    InFolder {
        /// The DAG.
        dag: Dag,
        /// The folder it was found in.
        load: FolderLoad,
    },
}

impl Found {
    /// The DAG, wherever it was found.
    pub fn dag(&self) -> &Dag {
        match self {
            Found::Recorded(dag) | Found::InFolder { dag, .. } => dag,
        }
    }
}

/// The DAG `dag_id`: the database's record when it is active, else the DAGs folder's (`folder`'s
/// flag, else `[core] dags_folder`), or an error saying where it was looked for.
pub async fn find(store: &Store, dag_id: &str, folder: &DagsFolder) -> anyhow::Result<Found> {
    let summary = store.dag_summary(dag_id).await?;
    if let Some(summary) = summary.as_ref().filter(|s| s.is_active) {
        return Ok(Found::Recorded(definition(store, summary).await?));
    }
    let root = super::dags::dags_folder(folder)?;
    // The configured folder may not exist (the scheduler reads another): then it has no DAGs.
    let load = if folder.dags_folder.is_none() && !root.is_dir() {
        FolderLoad::default()
    } else {
        super::dags::load(folder)?.1
    };
    if let Some(dag) = load.dags.iter().find(|d| d.id.as_str() == dag_id).cloned() {
        return Ok(Found::InFolder { dag, load });
    }
    if load
        .problems
        .iter()
        .any(|p| p.dag.as_deref() == Some(dag_id))
    {
        anyhow::bail!(
            "DAG \"{dag_id}\" has errors in {}; run `gust dags validate` to see them",
            root.display()
        );
    }
    match summary {
        Some(summary) => anyhow::bail!(
            "DAG \"{dag_id}\" is no longer defined: the database's record comes from {}, which \
             no longer defines it (and {} does not either)",
            summary.fileloc,
            root.display()
        ),
        None => anyhow::bail!(
            "no DAG \"{dag_id}\" in the database or in {}; a running scheduler records the DAGs \
             of its folder (`gust dags list --dags-folder DIR` lists a folder's DAGs)",
            root.display()
        ),
    }
}

/// Whether the database knows `dag_id` at all: recorded (active or not, its history is kept).
pub async fn is_known(store: &Store, dag_id: &str) -> anyhow::Result<bool> {
    Ok(store.dag_summary(dag_id).await?.is_some())
}

/// The recorded definition of the DAG `summary` describes.
async fn definition(store: &Store, summary: &DagSummary) -> anyhow::Result<Dag> {
    let (_, text) = store
        .dag_definition(&summary.dag_id)
        .await?
        .with_context(|| format!("DAG \"{}\" was deleted meanwhile", summary.dag_id))?;
    serde_json::from_str(&text).with_context(|| {
        format!(
            "the database's definition of DAG \"{}\" cannot be read; restart the scheduler (same \
             version as this command) to record it again",
            summary.dag_id
        )
    })
}

/// The configured metadata database when it exists and is migrated: commands that read files
/// use it only for hints and flags, and work without one.
pub async fn open_if_any(config: &Config) -> Option<Store> {
    let url = &config.database.url;
    if url
        .strip_prefix("sqlite://")
        .is_some_and(|path| !Path::new(path).exists())
    {
        return None;
    }
    let store = Store::connect(url).await.ok()?;
    if store.check().await.is_err() {
        store.close().await;
        return None;
    }
    Some(store)
}

/// Where the database records `dag_id` from, when there is a database that records it: the
/// hint for a user who read another folder than the scheduler's.
pub async fn recorded_file(config: &Config, dag_id: &str) -> Option<String> {
    let store = open_if_any(config).await?;
    let summary = store.dag_summary(dag_id).await.ok().flatten();
    store.close().await;
    summary.filter(|s| s.is_active).map(|s| s.fileloc)
}

/// The files the database records active DAGs from, when there is a database: the hint for a
/// user whose folder holds none.
pub async fn recorded_files(config: &Config) -> Vec<String> {
    let Some(store) = open_if_any(config).await else {
        return Vec::new();
    };
    let summaries = store.dag_summaries().await.unwrap_or_default();
    store.close().await;
    let mut files: Vec<String> = summaries
        .into_iter()
        .filter(|s| s.is_active)
        .map(|s| s.fileloc)
        .collect();
    files.sort();
    files.dedup();
    files
}
