//! The values a template sees: Airflow's context names for one task try.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use minijinja::Value;

use crate::connections::Connections;
use crate::inlets::{Inlet, InletEvents};
use crate::lookup::RuntimeLookup;
use crate::macros::Macros;
use crate::objects::{DateTimeValue, TaskInstance, Variables};

/// Everything about a try that templates may use.
#[derive(Debug, Clone, PartialEq)]
pub struct TemplateContext {
    /// The DAG's id.
    pub dag_id: String,
    /// The task's id.
    pub task_id: String,
    /// The run's id.
    pub run_id: String,
    /// The try's number, from 1.
    pub try_number: u32,
    /// The run's logical date (its data interval's start).
    pub logical_date: DateTime<Utc>,
    /// The start of the run's data interval.
    pub data_interval_start: DateTime<Utc>,
    /// The end of the run's data interval.
    pub data_interval_end: DateTime<Utc>,
    /// The DAG's params with their defaults.
    pub params: serde_json::Map<String, serde_json::Value>,
    /// The conf the run was triggered with; it overrides params of the same name, as in Airflow.
    pub conf: serde_json::Map<String, serde_json::Value>,
    /// The asset events an asset-triggered run consumed, as lists by asset URI (Airflow's
    /// `triggering_asset_events`, keyed by the asset); empty for other runs.
    pub triggering_asset_events: serde_json::Map<String, serde_json::Value>,
    /// The task's inlets, whose events templates read as `inlet_events` (from
    /// [`RuntimeLookup::asset_events`]).
    pub inlets: Vec<Inlet>,
    /// Which instance of a mapped task (`ti.map_index`; -1 for a task that is not mapped).
    pub map_index: i32,
    /// The task's arguments as the try runs with them (a mapped instance's own items among
    /// them), seen as `task.<argument>` (as Airflow's operator attributes): what a
    /// `map_index_template` names an instance by. Empty while the arguments themselves render.
    pub task_args: serde_json::Map<String, serde_json::Value>,
    /// More names, for what only some renderings have (a callback's `exception` and
    /// `reason`); the names above win over these.
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl TemplateContext {
    /// A context for `dag_id.task_id` in a run whose interval is `[start, end)`, first try,
    /// no params; adjust the public fields for more.
    #[must_use]
    pub fn new(
        dag_id: &str,
        task_id: &str,
        run_id: &str,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Self {
        Self {
            dag_id: dag_id.to_owned(),
            task_id: task_id.to_owned(),
            run_id: run_id.to_owned(),
            try_number: 1,
            logical_date: start,
            data_interval_start: start,
            data_interval_end: end,
            params: serde_json::Map::new(),
            conf: serde_json::Map::new(),
            triggering_asset_events: serde_json::Map::new(),
            inlets: Vec::new(),
            map_index: -1,
            task_args: serde_json::Map::new(),
            extra: serde_json::Map::new(),
        }
    }

    /// The params templates see: the DAG's defaults overridden by the run's conf.
    #[must_use]
    pub fn effective_params(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut params = self.params.clone();
        params.extend(self.conf.iter().map(|(k, v)| (k.clone(), v.clone())));
        params
    }

    /// The minijinja value holding every context name.
    pub(crate) fn to_value(&self, lookup: Arc<dyn RuntimeLookup>) -> Value {
        let logical = self.logical_date;
        let ti = Value::from_object(TaskInstance {
            dag_id: self.dag_id.clone(),
            task_id: self.task_id.clone(),
            run_id: self.run_id.clone(),
            try_number: self.try_number,
            map_index: self.map_index,
            lookup: Arc::clone(&lookup),
        });
        let inlet_events = Value::from_object(InletEvents {
            task_id: self.task_id.clone(),
            inlets: self.inlets.clone(),
            lookup: Arc::clone(&lookup),
        });
        let mut task = self.task_args.clone();
        task.insert(
            "task_id".to_owned(),
            serde_json::Value::String(self.task_id.clone()),
        );
        let dag_run = minijinja::context! {
            run_id => self.run_id,
            dag_id => self.dag_id,
            conf => Value::from_serialize(&self.conf),
            logical_date => DateTimeValue::value(logical),
            data_interval_start => DateTimeValue::value(self.data_interval_start),
            data_interval_end => DateTimeValue::value(self.data_interval_end),
        };
        minijinja::context! {
            ds => logical.format("%Y-%m-%d").to_string(),
            ds_nodash => logical.format("%Y%m%d").to_string(),
            ts => crate::objects::iso(logical),
            ts_nodash => logical.format("%Y%m%dT%H%M%S").to_string(),
            ts_nodash_with_tz => logical.format("%Y%m%dT%H%M%S%z").to_string(),
            logical_date => DateTimeValue::value(logical),
            data_interval_start => DateTimeValue::value(self.data_interval_start),
            data_interval_end => DateTimeValue::value(self.data_interval_end),
            run_id => self.run_id,
            try_number => self.try_number,
            task_instance_key_str => format!("{}__{}__{}", self.dag_id, self.task_id, logical.format("%Y%m%d")),
            dag => minijinja::context! { dag_id => self.dag_id },
            task => Value::from_serialize(&task),
            dag_run => dag_run,
            ti => ti.clone(),
            task_instance => ti,
            params => Value::from_serialize(self.effective_params()),
            macros => Value::from_object(Macros),
            var => Value::from_object(Variables { lookup: Arc::clone(&lookup) }),
            conn => Value::from_object(Connections { lookup }),
            triggering_asset_events => Value::from_serialize(&self.triggering_asset_events),
            inlet_events => inlet_events,
            ..Value::from_serialize(&self.extra)
        }
    }
}
