//! `inlet_events`: the asset events of a task's inlets, as Airflow's `InletEventsAccessors`
//! gives them to templates: `inlet_events[0]` (the first inlet), `inlet_events.for_asset(name=...,
//! uri=...)`, each a list of events oldest first with Airflow's `AssetEventResult` fields
//! (`.extra`, `.timestamp`, `.source_dag_id`...), so `[-1]` is the latest. Gust's templates
//! cannot build an `Asset`, so an inlet is also found by its name or URI as the key
//! (`inlet_events['s3://bucket/x']`). The events come from [`RuntimeLookup::asset_events`].

use std::fmt;
use std::sync::Arc;

use minijinja::value::{Kwargs, Object, Value, from_args};
use minijinja::{Error, ErrorKind, State};

use crate::lookup::{AssetQuery, RuntimeLookup};
use crate::objects::invalid;

/// An inlet of the task: an asset's name and URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inlet {
    /// The asset's name.
    pub name: String,
    /// The asset's URI.
    pub uri: String,
}

/// `inlet_events`.
pub(crate) struct InletEvents {
    pub task_id: String,
    pub inlets: Vec<Inlet>,
    pub lookup: Arc<dyn RuntimeLookup>,
}

impl fmt::Debug for InletEvents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.inlets.iter().map(|i| i.name.as_str()).collect();
        write!(f, "InletEventsAccessors({names:?})")
    }
}

impl InletEvents {
    /// The events `asked` finds, oldest first.
    fn events(&self, asked: &AssetQuery) -> Value {
        Value::from_serialize(self.lookup.asset_events(asked))
    }

    /// The inlet `pick` finds, or Airflow's `KeyError` as a template error naming what was
    /// asked.
    fn inlet(&self, asked: &str, pick: impl Fn(&Inlet) -> bool) -> Result<&Inlet, Error> {
        self.inlets.iter().find(|i| pick(i)).ok_or_else(|| {
            invalid(format!(
                "inlet_events: {asked} is not an inlet of task {}; its inlets: {}",
                self.task_id,
                self.inlets
                    .iter()
                    .map(|i| i.uri.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })
    }
}

impl Inlet {
    /// Its events asked for as Airflow asks for an `Asset`'s: by name and URI.
    #[must_use]
    pub fn query(&self) -> AssetQuery {
        AssetQuery {
            name: Some(self.name.clone()),
            uri: Some(self.uri.clone()),
        }
    }

    /// Every way a template may ask for its events: as an `Asset`, by name alone, by URI
    /// alone (see [`AssetQuery`]).
    #[must_use]
    pub fn queries(&self) -> [AssetQuery; 3] {
        [
            self.query(),
            AssetQuery {
                name: Some(self.name.clone()),
                uri: None,
            },
            AssetQuery {
                name: None,
                uri: Some(self.uri.clone()),
            },
        ]
    }
}

impl Object for InletEvents {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        if let Some(text) = key.as_str() {
            let inlet = self
                .inlets
                .iter()
                .find(|i| i.name == text)
                .or_else(|| self.inlets.iter().find(|i| i.uri == text))?;
            return Some(self.events(&inlet.query()));
        }
        // Python's list indexing, negative indexes from the end.
        let index = i64::try_from(key.clone()).ok()?;
        let len = i64::try_from(self.inlets.len()).ok()?;
        let at = if index < 0 { len + index } else { index };
        let inlet = self.inlets.get(usize::try_from(at).ok()?)?;
        Some(self.events(&inlet.query()))
    }

    fn call_method(
        self: &Arc<Self>,
        _state: &State<'_, '_>,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        match method {
            "for_asset" => {
                let (kwargs,): (Kwargs,) = from_args(args)?;
                let name: Option<String> = kwargs.get("name")?;
                let uri: Option<String> = kwargs.get("uri")?;
                kwargs.assert_all_used()?;
                // As Airflow's `for_asset`: an `Asset` asks by both, a reference by one.
                let asked = match (name, uri) {
                    (Some(name), Some(uri)) => {
                        let asked = format!("Asset(name={name:?}, uri={uri:?})");
                        self.inlet(&asked, |i| i.name == name && i.uri == uri)?
                            .query()
                    }
                    (Some(name), None) => {
                        let asked = format!("the asset named {name:?}");
                        let inlet = self.inlet(&asked, |i| i.name == name)?;
                        AssetQuery {
                            name: Some(inlet.name.clone()),
                            uri: None,
                        }
                    }
                    (None, Some(uri)) => {
                        let asked = format!("the asset with URI {uri:?}");
                        let inlet = self.inlet(&asked, |i| i.uri == uri)?;
                        AssetQuery {
                            name: None,
                            uri: Some(inlet.uri.clone()),
                        }
                    }
                    (None, None) => {
                        return Err(invalid(
                            "inlet_events.for_asset needs name=... or uri=...: name and uri cannot both be None",
                        ));
                    }
                };
                Ok(self.events(&asked))
            }
            "for_asset_alias" => Err(invalid(
                "inlet_events.for_asset_alias: Gust's templates read the events of inlets that \
                 are assets; read an alias's events in a Python task",
            )),
            _ => Err(Error::from(ErrorKind::UnknownMethod)),
        }
    }
}
