//! Asset-triggered runs: a DAG scheduled on assets gets a run once the events queued for it
//! meet its condition, as Airflow 3's scheduler creates them (`asset_triggered`, named after
//! the newest queued event's arrival, consuming the events since its previous such run). An
//! asset alias in a condition stands for the assets attached to it so far, read when the
//! condition is evaluated, as Airflow's `AssetEvaluator` resolves it.

use std::collections::HashMap;

use gust_core::asset::{Asset, AssetAlias};
use gust_store::{NewRun, QueuedAssetEvent, RunType};

use super::{Scheduler, SchedulerError};
use crate::trigger::run_id_for;

impl Scheduler {
    /// Creates the asset-triggered runs due for the unpaused DAGs this scheduler holds. The
    /// store creates each in one transaction with the consumption of its queue rows, so a run
    /// another scheduler made for the same events first is not made again.
    pub(super) async fn create_asset_triggered_runs(&mut self) -> Result<(), SchedulerError> {
        let dags: Vec<_> = self
            .bag
            .dags()
            .filter(|e| e.dag.settings.assets.is_some())
            .filter(|e| self.owned.contains(e.dag.id.as_str()))
            .filter(|e| !self.paused.get(e.dag.id.as_str()).copied().unwrap_or(true))
            .map(|e| e.dag.clone())
            .collect();
        if dags.is_empty() {
            return Ok(());
        }
        let mut queued: HashMap<String, Vec<QueuedAssetEvent>> = HashMap::new();
        for row in self.store.queued_asset_events(None, None).await? {
            queued.entry(row.dag_id.clone()).or_default().push(row);
        }
        let any_alias = dags.iter().any(|dag| {
            dag.settings
                .assets
                .as_ref()
                .is_some_and(|c| !c.aliases().is_empty())
        });
        let mut aliased: HashMap<String, Vec<Asset>> = HashMap::new();
        if any_alias && !queued.is_empty() {
            for row in self.store.aliased_assets().await? {
                aliased.entry(row.alias).or_default().push(Asset {
                    name: row.name,
                    uri: row.uri,
                    group: row.group,
                    extra: String::new(),
                });
            }
        }
        let attached = |alias: &AssetAlias| aliased.get(&alias.name).cloned().unwrap_or_default();
        let now = self.clock.now();
        for dag in dags {
            let (Some(rows), Some(condition)) =
                (queued.get(dag.id.as_str()), dag.settings.assets.as_ref())
            else {
                continue;
            };
            let updated = |asset: &Asset| {
                rows.iter()
                    .any(|r| r.name == asset.name && r.uri == asset.uri)
            };
            let Some(triggered) = rows.iter().map(|r| r.created_at).max() else {
                continue;
            };
            if !condition.is_met(&updated, &attached) {
                continue;
            }
            let run = NewRun {
                dag_id: dag.id.to_string(),
                run_id: run_id_for(RunType::AssetTriggered, triggered),
                run_type: RunType::AssetTriggered,
                // Airflow's asset-triggered runs have no logical date; Gust's runs all have
                // one, so it is the run's `run_after`, the time it was triggered.
                logical_date: triggered,
                data_interval: (triggered, triggered),
                conf: serde_json::Map::new(),
                queued_at: now,
            };
            let assets: Vec<i64> = rows.iter().map(|r| r.asset_id).collect();
            let catchup = dag.settings.catchup;
            if self
                .store
                .create_asset_triggered_run(&run, &assets, catchup)
                .await?
            {
                tracing::info!(dag_id = %dag.id, run_id = %run.run_id, "created an asset-triggered run");
                self.runs_due = true;
            }
        }
        Ok(())
    }
}
