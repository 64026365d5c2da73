//! `FileSensor`: waits for a file, or a folder holding a file, to match a path or glob under
//! the base path of its `fs_conn_id` connection.

use serde::Deserialize;

use super::SensorSettings;
use crate::spec::{ArgumentError, OperatorSpec, read_args};

/// The connection `FileSensor` reads its base path from unless told otherwise.
pub const DEFAULT_CONN_ID: &str = "fs_default";

/// `FileSensor`'s arguments.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct FileArgs {
    /// A file or folder, or a glob, relative to the connection's `path` extra (templated).
    pub filepath: String,
    /// The connection whose `path` extra is the base path (default `fs_default`).
    #[serde(default = "default_conn_id")]
    pub fs_conn_id: String,
    /// Let `**` match any number of folders.
    #[serde(default)]
    pub recursive: bool,
    /// Accepted (a trigger option).
    #[serde(default)]
    pub start_from_trigger: bool,
    /// Accepted (a trigger option).
    #[serde(default)]
    pub trigger_kwargs: Option<serde_json::Value>,
    /// How it waits.
    #[serde(flatten)]
    pub settings: SensorSettings,
}

fn default_conn_id() -> String {
    DEFAULT_CONN_ID.to_owned()
}

fn check(args: &serde_json::Map<String, serde_json::Value>) -> Result<(), ArgumentError> {
    read_args::<FileArgs>(args)?.settings.check()
}

/// `FileSensor`.
pub static SPEC: OperatorSpec = OperatorSpec {
    name: "file_sensor",
    aliases: &[
        "FileSensor",
        "airflow.sensors.filesystem.FileSensor",
        "airflow.contrib.sensors.file_sensor.FileSensor",
        "airflow.providers.standard.sensors.filesystem.FileSensor",
    ],
    arguments: sensor_arguments!(
        "filepath",
        "fs_conn_id",
        "recursive",
        "start_from_trigger",
        "trigger_kwargs"
    ),
    renamed_arguments: &[],
    required: &["filepath"],
    pushes_xcom_by_default: true,
    holds_worker: false,
    open_arguments: false,
    check,
};
