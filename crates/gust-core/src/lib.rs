//! Gust's domain model: the ids, the DAG and its tasks, trigger rules, schedules, durations and
//! dates, as plain values.
//!
//! This crate must stay pure: no async runtime, no database, no Kubernetes client, no HTTP, and no
//! reading of the clock (the current time is always passed in). Everything else in Gust depends on
//! it; it depends on nothing of Gust's. Start reading at [`dag::Dag`].

pub mod asset;
pub mod clock;
pub mod dag;
pub mod date;
pub mod deadline;
pub mod duration;
pub mod ids;
pub mod mapping;
pub mod notify;
pub mod readiness;
pub mod retry;
pub mod schedule;
mod setup_teardown;
pub mod state;
pub mod task;
pub mod timetable;
pub mod timetable_objects;
pub mod trigger_rule;
