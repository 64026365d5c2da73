//! Airflow's timetable objects written as dag-factory writes any object:
//! `schedule: {__type__: airflow.timetables.trigger.CronTriggerTimetable, cron: "0 1 * * *",
//! timezone: UTC}`, with `__args__: [...]` for positional arguments. Each argument is checked
//! as Airflow's constructor would take it, and a wrong one is named in the problem.

use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use gust_core::schedule::{CronSchedule, Schedule};
use gust_core::timetable_objects::{CronTrigger, DeltaTrigger, Events, RunImmediately};

use super::values::{self, Read};
use crate::diagnostic::Diagnostic;
use crate::yaml::{Mapping, Node, Value};

/// The timetable classes Gust reads, with their arguments in positional order (a `*` marks
/// Python's `*args`, taking every positional argument).
const CLASSES: &[(&str, &[&str])] = &[
    (
        "CronTriggerTimetable",
        &["cron", "timezone", "interval", "run_immediately"],
    ),
    (
        "MultipleCronTriggerTimetable",
        &["*crons", "timezone", "interval", "run_immediately"],
    ),
    ("CronDataIntervalTimetable", &["cron", "timezone"]),
    ("DeltaTriggerTimetable", &["delta", "interval"]),
    ("DeltaDataIntervalTimetable", &["delta"]),
    (
        "EventsTimetable",
        &[
            "event_dates",
            "restrict_to_events",
            "presorted",
            "description",
        ],
    ),
    ("ContinuousTimetable", &[]),
    ("OnceTimetable", &[]),
    ("NullTimetable", &[]),
];

/// Whether a schedule map names a timetable class (`__type__: airflow....Timetable`).
pub fn is_timetable(map: &Mapping) -> bool {
    map.get("__type__")
        .and_then(Node::as_str)
        .is_some_and(|t| t.starts_with("airflow.") && t.ends_with("Timetable"))
}

/// The arguments of one timetable, by name, each with its node.
struct Args<'a> {
    class: &'a str,
    key: &'a str,
    given: Vec<(&'a str, &'a Node)>,
    /// What `*args` took.
    rest: Vec<&'a Node>,
}

impl<'a> Args<'a> {
    fn read(node: &'a Node, map: &'a Mapping, key: &'a str) -> Read<Self> {
        let tag = map
            .get("__type__")
            .and_then(Node::as_str)
            .unwrap_or_default();
        let class = tag.rsplit('.').next().unwrap_or(tag);
        let Some((class, params)) = CLASSES.iter().find(|(name, _)| *name == class) else {
            return Err(Diagnostic::new(
                node.at.clone(),
                format!("\"{key}\": Gust cannot read the timetable {tag}"),
            )
            .with_hint(format!(
                "use one of {}",
                CLASSES
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        };
        let mut args = Args {
            class,
            key,
            given: Vec::new(),
            rest: Vec::new(),
        };
        if let Some(list) = map.get("__args__") {
            let Value::Seq(items) = &list.value else {
                return Err(args.fail(
                    list,
                    "__args__",
                    format!("must be a list, not {}", list.kind()),
                ));
            };
            let mut names = params.iter();
            for item in items {
                match names.next() {
                    Some(star) if star.starts_with('*') => {
                        args.rest = items.iter().collect();
                        break;
                    }
                    Some(name) => args.given.push((name, item)),
                    None => {
                        return Err(args.fail(
                            item,
                            "__args__",
                            format!("{class} takes {} positional arguments", params.len()),
                        ));
                    }
                }
            }
        }
        for (k, value) in map.iter() {
            let name = k.name.as_str();
            if name == "__type__" || name == "__args__" {
                continue;
            }
            if !params.contains(&name) {
                let known = params
                    .iter()
                    .map(|p| p.trim_start_matches('*'))
                    .collect::<Vec<_>>();
                return Err(args
                    .fail(value, name, "is not an argument of it".to_owned())
                    .with_hint(if known.is_empty() {
                        format!("{class} takes no arguments")
                    } else {
                        format!("its arguments are {}", known.join(", "))
                    }));
            }
            if args.given.iter().any(|(n, _)| *n == name) {
                return Err(args.fail(value, name, "is given twice (in __args__ too)".to_owned()));
            }
            args.given.push((name, value));
        }
        Ok(args)
    }

    fn fail(&self, at: &Node, arg: &str, what: String) -> Diagnostic {
        Diagnostic::new(
            at.at.clone(),
            format!("\"{}\": {} argument \"{arg}\" {what}", self.key, self.class),
        )
    }

    fn get(&self, name: &str) -> Option<&'a Node> {
        self.given.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
    }

    fn required(&self, node: &Node, name: &str) -> Read<&'a Node> {
        self.get(name).ok_or_else(|| {
            Diagnostic::new(
                node.at.clone(),
                format!(
                    "\"{}\": {} needs its \"{name}\" argument",
                    self.key, self.class
                ),
            )
        })
    }

    /// A value read by `read`, its problem restated as this argument's.
    fn value<T>(&self, at: &Node, name: &str, read: impl FnOnce(&Node) -> Read<T>) -> Read<T> {
        read(at).map_err(|p| {
            let what = p
                .message
                .split_once(": ")
                .map_or(p.message.as_str(), |(_, m)| m)
                .to_owned();
            let problem = self.fail(at, name, format!("is wrong: {what}"));
            match p.hint {
                Some(hint) => problem.with_hint(hint),
                None => problem,
            }
        })
    }

    fn cron(&self, at: &Node, name: &str) -> Read<CronSchedule> {
        let text = self.value(at, name, |n| values::string(n, name))?;
        CronSchedule::parse(&text).map_err(|e| self.fail(at, name, format!("is wrong: {e}")))
    }

    fn timezone(&self, node: &Node) -> Read<Tz> {
        let at = self.required(node, "timezone")?;
        let name = self.value(at, "timezone", |n| values::string(n, "timezone"))?;
        gust_core::date::parse_timezone(&name)
            .map_err(|e| self.fail(at, "timezone", format!("is wrong: {e}")))
    }

    fn duration(&self, name: &str, positive: bool) -> Read<Option<Duration>> {
        let Some(at) = self.get(name) else {
            return Ok(None);
        };
        if let Value::Map(map) = &at.value
            && map.get("__type__").and_then(Node::as_str)
                == Some("dateutil.relativedelta.relativedelta")
        {
            return Err(self
                .fail(
                    at,
                    name,
                    "is a relativedelta, which Gust cannot read".to_owned(),
                )
                .with_hint("use {__type__: datetime.timedelta, ...}"));
        }
        let d = self.value(at, name, |n| values::duration(n, name))?;
        if positive && d.is_zero() {
            return Err(self.fail(at, name, "must be longer than zero".to_owned()));
        }
        Ok(Some(d))
    }

    fn flag(&self, name: &str) -> Read<bool> {
        self.get(name).map_or(Ok(false), |at| {
            self.value(at, name, |n| values::boolean(n, name))
        })
    }

    fn run_immediately(&self) -> Read<RunImmediately> {
        Ok(match self.get("run_immediately").map(|n| &n.value) {
            None | Some(Value::Null | Value::Bool(false)) => RunImmediately::Nearby,
            Some(Value::Bool(true)) => RunImmediately::Always,
            Some(_) => {
                RunImmediately::Within(self.duration("run_immediately", false)?.unwrap_or_default())
            }
        })
    }

    fn crons(&self, node: &Node) -> Read<Vec<String>> {
        let nodes: Vec<&Node> = if self.rest.is_empty() {
            vec![self.required(node, "cron")?]
        } else {
            self.rest.clone()
        };
        nodes
            .into_iter()
            .map(|at| self.cron(at, "cron").map(|c| c.as_str().to_owned()))
            .collect()
    }
}

/// Reads the timetable object `node` (a map tagged with its class) of the schedule `key`.
/// Dates without an offset are read in the DAG's `tz`.
pub fn read(node: &Node, map: &Mapping, key: &str, tz: Tz, now: DateTime<Utc>) -> Read<Schedule> {
    let args = Args::read(node, map, key)?;
    Ok(match args.class {
        "CronTriggerTimetable" | "MultipleCronTriggerTimetable" => {
            let multiple = args.class == "MultipleCronTriggerTimetable";
            if multiple && args.rest.is_empty() {
                return Err(Diagnostic::new(
                    node.at.clone(),
                    format!("\"{key}\": MultipleCronTriggerTimetable needs its crons in __args__"),
                ));
            }
            let crons = args.crons(node)?;
            let trigger = CronTrigger::new(
                &crons,
                args.timezone(node)?,
                args.duration("interval", false)?.unwrap_or_default(),
                args.run_immediately()?,
                multiple,
            )
            .map_err(|e| Diagnostic::new(node.at.clone(), format!("\"{key}\": {e}")))?;
            Schedule::CronTrigger(Box::new(trigger))
        }
        "CronDataIntervalTimetable" => {
            let at = args.required(node, "cron")?;
            Schedule::Cron(Box::new(
                args.cron(at, "cron")?.in_timezone(args.timezone(node)?),
            ))
        }
        "DeltaTriggerTimetable" => {
            args.required(node, "delta")?;
            Schedule::DeltaTrigger(DeltaTrigger {
                delta: args.duration("delta", true)?.unwrap_or_default(),
                interval: args.duration("interval", false)?.unwrap_or_default(),
            })
        }
        "DeltaDataIntervalTimetable" => {
            args.required(node, "delta")?;
            Schedule::Interval(args.duration("delta", true)?.unwrap_or_default())
        }
        "EventsTimetable" => {
            let at = args.required(node, "event_dates")?;
            let Value::Seq(items) = &at.value else {
                return Err(args.fail(
                    at,
                    "event_dates",
                    format!("must be a list of dates, not {}", at.kind()),
                ));
            };
            let dates = items
                .iter()
                .map(|item| {
                    args.value(item, "event_dates", |n| {
                        values::datetime(n, "event_dates", tz, now)
                    })
                })
                .collect::<Read<Vec<_>>>()?;
            let description = match args.get("description") {
                Some(d) => {
                    args.value(d, "description", |n| values::opt_string(n, "description"))?
                }
                None => None,
            };
            Schedule::Events(Box::new(Events::new(
                dates,
                args.flag("restrict_to_events")?,
                args.flag("presorted")?,
                description,
            )))
        }
        "ContinuousTimetable" => Schedule::Continuous,
        "OnceTimetable" => Schedule::Once,
        _ => Schedule::Manual,
    })
}
