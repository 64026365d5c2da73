//! DAG files: dag-factory YAML read into validated [`gust_core::dag::Dag`]s, with every problem
//! reported as a [`Diagnostic`] naming file, line, column, DAG and task, and every key that
//! Airflow (through dag-factory) would read differently as a [`Warning`] beside the DAGs.
//!
//! This crate reads files and nothing else: no database, no clock (the load time is passed in),
//! no network. Start at [`folder::load_folder`]; the layers are [`yaml`] (a bounded, positioned
//! YAML tree), [`merge`] (defaults), [`file`] (one file's DAGs) and `build` (one DAG's
//! settings, tasks, groups and edges).

pub mod bag;
mod build;
pub mod diagnostic;
mod differences;
pub mod file;
pub mod folder;
pub mod location;
pub mod merge;
pub mod python;
pub mod warning;
pub mod yaml;

pub use bag::{BagChanges, BagEntry, DagBag};
pub use build::{ChainError, parse_chain};
pub use diagnostic::Diagnostic;
pub use folder::{
    FolderError, FolderLoad, LoadWith, load_folder, load_folder_with, load_paths, load_paths_with,
};
pub use location::Location;
pub use python::{ParsedFile, PythonParser};
pub use warning::{Difference, Warning};
