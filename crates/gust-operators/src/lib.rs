//! The operators Gust runs: each is one module with its names (the short name and the Airflow
//! class paths users already have in dag-factory files) and a typed argument struct.
//!
//! This crate is pure data: it says what an operator accepts, so that DAG files can be checked
//! when they are loaded and runtimes can read rendered arguments into typed values. It does not
//! run anything. Start at [`registry`]; to add an operator, add a module with a [`OperatorSpec`]
//! and list it in [`registry::OPERATORS`].

pub mod apply;
pub mod bash;
pub mod empty;
pub mod kubernetes_job;
pub mod kubernetes_pod;
pub mod processing;
pub mod python;
pub mod refused;
pub mod registry;
pub mod sensors;
pub mod spark_kubernetes;
mod spec;

pub use registry::{OPERATORS, resolve};
pub use spec::{ArgumentError, OperatorSpec, read_args};
