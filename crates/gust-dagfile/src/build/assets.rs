//! Assets in DAG files, in every form dag-factory reads: a task's `outlets` and `inlets`, and a
//! `schedule` of assets (a list, a condition string, a YAML condition, names looked up in a
//! `file:` of datasets, and assets-or-time with a `timetable:`).
//!
//! dag-factory 1.1.0 on Airflow 3 refuses the `datasets:` forms of `schedule` (it builds them on
//! Airflow 2 only); Gust reads them as dag-factory documents them, the meaning they have on
//! Airflow 2, since they load nowhere else (docs/dag-format.md, "Assets").

use std::path::Path;

use gust_core::asset::{Asset, AssetAlias, AssetCondition, AssetError, parse_condition};
use gust_core::schedule::Schedule;

use super::values::{self, Read};
use crate::diagnostic::Diagnostic;
use crate::yaml::{Mapping, Node, Value};

/// The `__type__` tags that mean an asset: Airflow 3's and the older dataset classes.
const ASSET_TYPES: [&str; 6] = [
    "airflow.sdk.Asset",
    "airflow.sdk.definitions.asset.Asset",
    "airflow.sdk.Dataset",
    "airflow.datasets.Dataset",
    "airflow.Dataset",
    "airflow.assets.Asset",
];

/// The `__type__` tags that mean an asset alias.
const ALIAS_TYPES: [&str; 3] = [
    "airflow.sdk.AssetAlias",
    "airflow.sdk.definitions.asset.AssetAlias",
    "airflow.datasets.DatasetAlias",
];

/// The `__type__` of Airflow's assets-or-time schedule, under its names old and new.
const ASSET_OR_TIME_TYPES: [&str; 2] = [
    "airflow.timetables.assets.AssetOrTimeSchedule",
    "airflow.timetables.datasets.DatasetOrTimeSchedule",
];

/// The largest `file:` of datasets read (a list of names and URIs).
const MAX_DATASETS_FILE: u64 = 1024 * 1024;

/// A schedule holding assets: the time part (`Manual` when there is none) and the condition.
pub struct AssetSchedule {
    /// When runs are created by time, besides assets.
    pub time: Schedule,
    /// The asset updates that create runs.
    pub assets: AssetCondition,
}

/// Whether a map is one asset (`{__type__: airflow.sdk.Asset, uri: ...}`).
fn is_asset_map(map: &Mapping) -> bool {
    map.get("__type__")
        .and_then(Node::as_str)
        .is_some_and(|t| ASSET_TYPES.contains(&t))
}

/// Whether a map is one asset alias (`{__type__: airflow.sdk.AssetAlias, name: ...}`).
fn is_alias_map(map: &Mapping) -> bool {
    map.get("__type__")
        .and_then(Node::as_str)
        .is_some_and(|t| ALIAS_TYPES.contains(&t))
}

/// One asset alias map: its `name` and optional `group`.
fn read_alias(node: &Node, map: &Mapping, key: &str) -> Read<AssetAlias> {
    for (k, _) in map.iter() {
        if !matches!(k.name.as_str(), "__type__" | "name" | "group") {
            return Err(Diagnostic::new(
                k.at.clone(),
                format!("unknown asset alias field \"{}\" in \"{key}\"", k.name),
            )
            .with_hint("an asset alias has name and group"));
        }
    }
    let text = |field: &str| -> Read<Option<String>> {
        map.get(field)
            .map(|n| values::opt_string(n, &format!("{key}.{field}")))
            .transpose()
            .map(Option::flatten)
    };
    let Some(name) = text("name")? else {
        return Err(Diagnostic::new(
            node.at.clone(),
            format!("an asset alias in \"{key}\" has no name"),
        ));
    };
    AssetAlias::new(&name, text("group")?.as_deref()).map_err(|e| asset_problem(node, key, &e))
}

/// One item of a schedule's list: an asset, or an asset alias.
fn read_schedule_item(node: &Node, key: &str) -> Read<AssetCondition> {
    match &node.value {
        Value::Map(map) if is_alias_map(map) => {
            read_alias(node, map, key).map(AssetCondition::Alias)
        }
        _ => read_asset(node, key).map(AssetCondition::Asset),
    }
}

/// Whether a `schedule` node holds assets rather than a time schedule.
pub fn is_asset_schedule(node: &Node) -> bool {
    match &node.value {
        Value::Seq(_) => true,
        Value::Map(map) => {
            is_asset_map(map)
                || is_alias_map(map)
                || map.contains("datasets")
                || map.contains("assets")
                || map
                    .get("__type__")
                    .and_then(Node::as_str)
                    .is_some_and(|t| ASSET_OR_TIME_TYPES.contains(&t))
        }
        _ => false,
    }
}

fn asset_problem(node: &Node, key: &str, err: &AssetError) -> Diagnostic {
    Diagnostic::new(node.at.clone(), format!("\"{key}\": {err}"))
}

/// One asset: a URI (or name) string, or an asset map.
fn read_asset(node: &Node, key: &str) -> Read<Asset> {
    match &node.value {
        Value::Str(uri) => Asset::from_uri(uri.trim()).map_err(|e| asset_problem(node, key, &e)),
        Value::Map(map) if is_asset_map(map) || !map.contains("__type__") => {
            let text = |field: &str| -> Read<Option<String>> {
                map.get(field)
                    .map(|n| values::opt_string(n, &format!("{key}.{field}")))
                    .transpose()
                    .map(Option::flatten)
            };
            for (k, _) in map.iter() {
                if !matches!(
                    k.name.as_str(),
                    "__type__" | "uri" | "name" | "group" | "extra"
                ) {
                    return Err(Diagnostic::new(
                        k.at.clone(),
                        format!("unknown asset field \"{}\" in \"{key}\"", k.name),
                    )
                    .with_hint("an asset has uri, name, group and extra"));
                }
            }
            let extra = match map.get("extra") {
                Some(n) => match n.to_json() {
                    serde_json::Value::Object(m) => Some(m),
                    serde_json::Value::Null => None,
                    _ => {
                        return Err(Diagnostic::new(
                            n.at.clone(),
                            format!("\"{key}.extra\" must be a map, not {}", n.kind()),
                        ));
                    }
                },
                None => None,
            };
            let (name, uri, group) = (text("name")?, text("uri")?, text("group")?);
            Asset::new(
                name.as_deref(),
                uri.as_deref(),
                group.as_deref(),
                extra.as_ref(),
            )
            .map_err(|e| asset_problem(node, key, &e))
        }
        _ => Err(Diagnostic::new(
            node.at.clone(),
            format!(
                "\"{key}\" must list assets (URIs, or maps with __type__: airflow.sdk.Asset), not {}",
                node.kind()
            ),
        )),
    }
}

/// A task's `outlets` or `inlets`: a list of assets and asset aliases, one of them, or
/// dag-factory's `{file: ..., datasets: [names]}` (names looked up in the file, relative to
/// `dag_dir`).
pub fn read_task_assets(
    node: &Node,
    key: &str,
    dag_dir: &Path,
) -> Read<(Vec<Asset>, Vec<AssetAlias>)> {
    let mut assets = Vec::new();
    let mut aliases = Vec::new();
    let items: Vec<&Node> = match &node.value {
        Value::Seq(items) => items.iter().collect(),
        Value::Map(map) if map.contains("file") => {
            return Ok((read_datasets(map, key, dag_dir)?, aliases));
        }
        Value::Null => Vec::new(),
        _ => vec![node],
    };
    for item in items {
        match &item.value {
            Value::Map(map) if is_alias_map(map) => aliases.push(read_alias(item, map, key)?),
            _ => assets.push(read_asset(item, key)?),
        }
    }
    Ok((assets, aliases))
}

/// dag-factory's `{file: ..., datasets: [names]}` of a task.
fn read_datasets(map: &Mapping, key: &str, dag_dir: &Path) -> Read<Vec<Asset>> {
    let file = DatasetsFile::read(map, key, dag_dir)?;
    let names = map
        .get("datasets")
        .map(|n| values::string_list(n, &format!("{key}.datasets")))
        .transpose()?
        .unwrap_or_default();
    // dag-factory keeps the file's order and skips names it lacks; Gust says so.
    names
        .iter()
        .map(|name| file.resolve(name).map_err(|e| file.problem(map, key, &e)))
        .collect()
}

/// dag-factory's `file:` of datasets: `datasets: [{name, uri}]`.
struct DatasetsFile {
    path: String,
    entries: Vec<(String, String)>,
}

impl DatasetsFile {
    fn read(map: &Mapping, key: &str, dag_dir: &Path) -> Read<Self> {
        let Some(node) = map.get("file") else {
            return Ok(Self {
                path: String::new(),
                entries: Vec::new(),
            });
        };
        let written = values::string(node, &format!("{key}.file"))?;
        let path = dag_dir.join(&written);
        let fail = |why: String| {
            Diagnostic::new(node.at.clone(), format!("\"{key}.file\" {written}: {why}"))
                .with_hint("name a YAML file holding `datasets: [{name: ..., uri: ...}]`")
        };
        let size = std::fs::metadata(&path)
            .map_err(|e| fail(e.to_string()))?
            .len();
        if size > MAX_DATASETS_FILE {
            return Err(fail(format!("{size} bytes is more than the 1 MiB allowed")));
        }
        let text = std::fs::read_to_string(&path).map_err(|e| fail(e.to_string()))?;
        let file: std::sync::Arc<Path> = path.as_path().into();
        let root = crate::yaml::load(&file, &text).map_err(|e| fail(e.to_string()))?;
        let mut entries = Vec::new();
        let list = root.as_map().and_then(|m| m.get("datasets"));
        if let Some(Node {
            value: Value::Seq(items),
            ..
        }) = list
        {
            for item in items {
                let field = |f: &str| item.as_map().and_then(|m| m.get(f)).and_then(Node::as_str);
                if let (Some(name), Some(uri)) = (field("name"), field("uri")) {
                    entries.push((name.to_owned(), uri.to_owned()));
                }
            }
        } else {
            return Err(fail("it has no `datasets:` list".to_owned()));
        }
        Ok(Self {
            path: written,
            entries,
        })
    }

    /// The asset a name stands for: the file's URI for it (dag-factory's `Dataset(uri)`), or,
    /// with no file, the name itself as the URI.
    fn resolve(&self, name: &str) -> Result<Asset, FileLookup> {
        if self.path.is_empty() {
            return Asset::from_uri(name).map_err(FileLookup::Asset);
        }
        let uri = self
            .entries
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, uri)| uri)
            .ok_or_else(|| FileLookup::Missing(name.to_owned()))?;
        Asset::from_uri(uri).map_err(FileLookup::Asset)
    }

    fn problem(&self, map: &Mapping, key: &str, err: &FileLookup) -> Diagnostic {
        let at = map.get("datasets").map_or_else(
            || map.get("file").map(|n| n.at.clone()),
            |n| Some(n.at.clone()),
        );
        let at = at.unwrap_or_else(|| {
            crate::location::Location::start_of(std::sync::Arc::from(Path::new("")))
        });
        match err {
            FileLookup::Missing(name) => Diagnostic::new(
                at,
                format!("\"{key}\": dataset \"{name}\" is not in {}", self.path),
            )
            .with_hint(format!("add `- name: {name}` with its `uri:` to the file")),
            FileLookup::Asset(e) => Diagnostic::new(at, format!("\"{key}\": {e}")),
        }
    }
}

enum FileLookup {
    Missing(String),
    Asset(AssetError),
}

/// A `schedule` that [`is_asset_schedule`] says holds assets.
pub fn read_asset_schedule(
    node: &Node,
    key: &str,
    dag_dir: &Path,
    tz: chrono_tz::Tz,
    now: chrono::DateTime<chrono::Utc>,
) -> Read<AssetSchedule> {
    let map = match &node.value {
        Value::Seq(items) => {
            // `schedule: [a, b]` is Airflow's `AssetAll(a, b)`.
            let all = items
                .iter()
                .filter(|item| !matches!(&item.value, Value::Str(s) if s.trim().is_empty()))
                .map(|item| read_schedule_item(item, key))
                .collect::<Read<Vec<_>>>()?;
            if all.is_empty() {
                return Err(
                    Diagnostic::new(node.at.clone(), format!("\"{key}\" lists no assets"))
                        .with_hint(
                            "list asset URIs, or write null for a DAG run only when triggered",
                        ),
                );
            }
            return Ok(AssetSchedule {
                time: Schedule::Manual,
                assets: AssetCondition::All(all),
            });
        }
        Value::Map(map) => map,
        _ => {
            return Err(Diagnostic::new(
                node.at.clone(),
                format!("\"{key}\" holds no assets"),
            ));
        }
    };
    if is_asset_map(map) || is_alias_map(map) {
        return Ok(AssetSchedule {
            time: Schedule::Manual,
            assets: read_schedule_item(node, key)?,
        });
    }
    for (k, _) in map.iter() {
        if !matches!(
            k.name.as_str(),
            "__type__" | "datasets" | "assets" | "file" | "timetable"
        ) {
            return Err(Diagnostic::new(
                k.at.clone(),
                format!("unknown key \"{}\" in an asset schedule", k.name),
            )
            .with_hint(
                "an asset schedule has datasets (or assets), and may have file and timetable",
            ));
        }
    }
    let file = DatasetsFile::read(map, key, dag_dir)?;
    let (cond_key, cond_node) = match (map.get("datasets"), map.get("assets")) {
        (Some(n), None) => ("datasets", n),
        (None, Some(n)) => ("assets", n),
        _ => {
            return Err(Diagnostic::new(
                node.at.clone(),
                format!("\"{key}\" must have one of datasets and assets"),
            ));
        }
    };
    let assets = read_condition(cond_node, &format!("{key}.{cond_key}"), &file, 0)?;
    let time = match map.get("timetable") {
        Some(t) => read_timetable(t, &format!("{key}.timetable"), tz, now)?,
        None => Schedule::Manual,
    };
    Ok(AssetSchedule { time, assets })
}

/// A condition: dag-factory's string (`(a & b) | c`), a list (all of them), one asset map, or
/// a YAML condition (`{or: [...]}`, `{and: [...]}`, `!or`/`!and` lists, `__or__`/`__and__`).
fn read_condition(
    node: &Node,
    key: &str,
    file: &DatasetsFile,
    depth: usize,
) -> Read<AssetCondition> {
    if depth > gust_core::asset::MAX_DEPTH {
        return Err(Diagnostic::new(
            node.at.clone(),
            format!("\"{key}\" nests too deeply"),
        ));
    }
    let lookup = |name: &str| {
        file.resolve(name).map_err(|e| match e {
            FileLookup::Asset(e) => e,
            FileLookup::Missing(name) => AssetError::Identifier {
                field: "name",
                value: name,
            },
        })
    };
    match &node.value {
        Value::Str(text) => {
            if !file.path.is_empty() {
                // Report a name the file lacks by name, before parsing hides it.
                for word in text
                    .split(|c: char| "&|() \t".contains(c))
                    .filter(|w| !w.is_empty())
                {
                    if let Err(FileLookup::Missing(name)) = file.resolve(word) {
                        return Err(Diagnostic::new(
                            node.at.clone(),
                            format!("\"{key}\": dataset \"{name}\" is not in {}", file.path),
                        ));
                    }
                }
            }
            parse_condition(text, &lookup)
                .map_err(|e| Diagnostic::new(node.at.clone(), format!("\"{key}\": {e}")))
        }
        Value::Seq(items) => {
            let mut all: Option<AssetCondition> = None;
            for item in items {
                let next = read_condition(item, key, file, depth + 1)?;
                all = Some(match all {
                    None => next,
                    Some(left) => left.and(next),
                });
            }
            all.ok_or_else(|| {
                Diagnostic::new(node.at.clone(), format!("\"{key}\" lists no assets"))
            })
        }
        Value::Map(map) if is_asset_map(map) || is_alias_map(map) => read_schedule_item(node, key),
        Value::Map(map) if map.len() == 1 => {
            let Some((op, items)) = map.iter().next() else {
                return Err(Diagnostic::new(
                    node.at.clone(),
                    format!("\"{key}\" is empty"),
                ));
            };
            let Value::Seq(list) = &items.value else {
                return Err(Diagnostic::new(
                    items.at.clone(),
                    format!("\"{key}.{}\" must be a list, not {}", op.name, items.kind()),
                ));
            };
            let parts = list
                .iter()
                .map(|item| read_condition(item, key, file, depth + 1))
                .collect::<Read<Vec<_>>>()?;
            let combine: fn(AssetCondition, AssetCondition) -> AssetCondition =
                match op.name.as_str() {
                    "and" | "__and__" => AssetCondition::and,
                    "or" | "__or__" => AssetCondition::or,
                    other => {
                        return Err(Diagnostic::new(
                            op.at.clone(),
                            format!("unknown asset operator \"{other}\" in \"{key}\""),
                        )
                        .with_hint("use and or or (or the !and and !or tags)"));
                    }
                };
            parts.into_iter().reduce(combine).ok_or_else(|| {
                Diagnostic::new(items.at.clone(), format!("\"{key}\" lists no assets"))
            })
        }
        _ => Err(Diagnostic::new(
            node.at.clone(),
            format!(
                "\"{key}\" must be an asset condition (a string such as \"(a & b) | c\", a list, or and/or), not {}",
                node.kind()
            ),
        )),
    }
}

/// The time part of an assets-or-time schedule: a cron string or preset, or a timetable object
/// such as `{__type__: airflow.timetables.trigger.CronTriggerTimetable, cron: ..., timezone: ...}`
/// (the cron also as `__args__: [cron]`), which keeps its own zone.
fn read_timetable(
    node: &Node,
    key: &str,
    tz: chrono_tz::Tz,
    now: chrono::DateTime<chrono::Utc>,
) -> Read<Schedule> {
    match &node.value {
        Value::Str(text) => Schedule::parse(text)
            .map_err(|e| Diagnostic::new(node.at.clone(), format!("\"{key}\": {e}"))),
        Value::Map(map) if super::timetables::is_timetable(map) => {
            super::timetables::read(node, map, key, tz, now)
        }
        _ => Err(Diagnostic::new(
            node.at.clone(),
            format!(
                "\"{key}\": must be a cron expression or a timetable such as CronTriggerTimetable, not {}",
                node.kind()
            ),
        )),
    }
}
