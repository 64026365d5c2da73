//! Shared helpers for the DAG-file tests: DAG folders in temporary directories.

#![allow(missing_docs, dead_code)]

use std::path::Path;

use chrono::{DateTime, TimeZone, Utc};
use gust_dagfile::{FolderLoad, load_folder};

/// The load time every test uses, so relative start dates are reproducible.
pub fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 3, 5, 14, 30, 0)
        .single()
        .expect("a valid time")
}

/// A DAGs folder holding `files` (relative path, contents).
pub struct Folder {
    pub dir: tempfile::TempDir,
}

impl Folder {
    pub fn new(files: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        for (name, text) in files {
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().expect("a parent")).expect("folders");
            std::fs::write(path, text).expect("a file");
        }
        Self { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn load(&self) -> FolderLoad {
        load_folder(self.path(), now()).expect("the folder exists")
    }

    /// The problems as text, with the temporary path removed.
    pub fn problems(&self) -> Vec<String> {
        let root = format!("{}/", self.path().display());
        self.load()
            .problems
            .iter()
            .map(|p| p.to_string().replace(&root, ""))
            .collect()
    }
}

/// Loads one file named `dag.yaml` holding `text`.
pub fn load_one(text: &str) -> (Folder, FolderLoad) {
    let folder = Folder::new(&[("dag.yaml", text)]);
    let load = folder.load();
    (folder, load)
}
