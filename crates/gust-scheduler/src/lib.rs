//! The scheduler: decides what runs next and hands tries to a runtime.
//!
//! Decisions come from gust-core's pure rules (trigger rules, the task lifecycle, retry delays);
//! this crate loads state, asks the core, records the answer, and only then acts. It knows only
//! the [`gust_executor::Executor`] trait, never which runtimes exist (`cargo tree -p
//! gust-scheduler` lists neither kube nor axum). Today it holds the in-process single-run driver
//! behind `gust dags test` ([`test_run`]); the database-backed scheduler loop builds on the same
//! decisions.

pub mod dag_watch;
pub mod launch;
pub mod log_path;
pub mod mapped;
pub mod metrics;
pub mod native_triggers;
pub mod scheduler;
pub mod sync;
pub mod template_values;
pub mod test_run;
pub mod trigger;
pub mod xcom;
