//! The DAGs in force: each reload of the folder is merged into the previous set, so that a DAG
//! whose file became invalid keeps running its last good version (and shows an import error)
//! instead of vanishing mid-run.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

use gust_core::dag::Dag;
use gust_core::ids::DagId;

use crate::diagnostic::Diagnostic;
use crate::folder::FolderLoad;
use crate::warning::Warning;

/// The DAGs in force and the current import errors.
#[derive(Debug, Clone, Default)]
pub struct DagBag {
    dags: BTreeMap<DagId, BagEntry>,
    /// The problems of the latest load.
    pub problems: Vec<Diagnostic>,
    /// The warnings of the latest load: keys Airflow would read differently.
    pub warnings: Vec<Warning>,
    /// The Python tracebacks of the latest load's problems in Python DAG files, by place.
    pub tracebacks: BTreeMap<crate::Location, String>,
    /// How long each DAG file took to parse when it was last parsed (Airflow's
    /// `last_parse_duration` of its DAGs).
    pub parse_durations: BTreeMap<PathBuf, std::time::Duration>,
}

/// One DAG in force.
#[derive(Debug, Clone)]
pub struct BagEntry {
    /// The DAG.
    pub dag: Arc<Dag>,
    /// Its fingerprint, to tell real changes from re-parses.
    pub fingerprint: String,
    /// Whether this is an older version kept because its file now has errors.
    pub stale: bool,
}

/// What a reload changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BagChanges {
    /// DAGs seen for the first time.
    pub added: Vec<DagId>,
    /// DAGs whose definition changed.
    pub updated: Vec<DagId>,
    /// DAGs gone from the folder.
    pub removed: Vec<DagId>,
    /// DAGs whose file has errors now, kept at their last good version.
    pub kept: Vec<DagId>,
}

impl BagChanges {
    /// Whether nothing changed.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.added.is_empty()
            && self.updated.is_empty()
            && self.removed.is_empty()
            && self.kept.is_empty()
    }
}

impl DagBag {
    /// The DAGs in force, by id.
    pub fn dags(&self) -> impl Iterator<Item = &BagEntry> {
        self.dags.values()
    }

    /// One DAG in force.
    #[must_use]
    pub fn get(&self, id: &DagId) -> Option<&BagEntry> {
        self.dags.get(id)
    }

    /// Merges a fresh load of the folder and says what changed. A DAG missing from the load is
    /// kept (marked stale) when its file still exists but has errors, and removed otherwise.
    pub fn update(&mut self, load: FolderLoad) -> BagChanges {
        let mut changes = BagChanges::default();
        let broken_files: BTreeSet<PathBuf> = load
            .problems
            .iter()
            .map(|p| p.location.file.to_path_buf())
            .collect();
        let existing_files: BTreeSet<&PathBuf> = load.files.iter().collect();
        let mut next: BTreeMap<DagId, BagEntry> = BTreeMap::new();
        for dag in load.dags {
            let fingerprint = dag.fingerprint();
            match self.dags.get(&dag.id) {
                None => changes.added.push(dag.id.clone()),
                Some(old) if old.fingerprint != fingerprint || old.stale => {
                    changes.updated.push(dag.id.clone())
                }
                Some(_) => {}
            }
            next.insert(
                dag.id.clone(),
                BagEntry {
                    dag: Arc::new(dag),
                    fingerprint,
                    stale: false,
                },
            );
        }
        for (id, old) in std::mem::take(&mut self.dags) {
            if next.contains_key(&id) {
                continue;
            }
            let file = &old.dag.fileloc;
            if existing_files.contains(file) && broken_files.contains(file) {
                if !old.stale {
                    changes.kept.push(id.clone());
                }
                next.insert(id, BagEntry { stale: true, ..old });
            } else {
                changes.removed.push(id);
            }
        }
        self.dags = next;
        // A file not parsed again this time keeps its last parse's duration.
        self.parse_durations.extend(load.parse_durations);
        self.parse_durations
            .retain(|file, _| existing_files.contains(&file));
        self.problems = load.problems;
        self.warnings = load.warnings;
        self.tracebacks = load.tracebacks;
        changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn load(dir: &std::path::Path) -> FolderLoad {
        crate::load_folder(
            dir,
            chrono::Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap(),
        )
        .unwrap()
    }

    fn ids(list: &[DagId]) -> Vec<&str> {
        list.iter().map(DagId::as_str).collect()
    }

    #[test]
    fn a_broken_edit_keeps_the_last_good_version_until_fixed() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("d.yaml");
        std::fs::write(&file, "d:\n  tasks: {a: {operator: empty}}\n").unwrap();
        let mut bag = DagBag::default();
        assert_eq!(ids(&bag.update(load(dir.path())).added), ["d"]);

        std::fs::write(&file, "d:\n  tasks: {a: {operator: nope}}\n").unwrap();
        let changes = bag.update(load(dir.path()));
        assert_eq!(ids(&changes.kept), ["d"]);
        let entry = bag.get(&DagId::new("d").unwrap()).unwrap();
        assert!(entry.stale);
        assert_eq!(entry.dag.tasks().next().unwrap().operator, "empty");
        assert_eq!(bag.problems.len(), 1);

        std::fs::write(
            &file,
            "d:\n  tasks: {a: {operator: empty}, b: {operator: empty}}\n",
        )
        .unwrap();
        let changes = bag.update(load(dir.path()));
        assert_eq!(ids(&changes.updated), ["d"]);
        assert!(!bag.get(&DagId::new("d").unwrap()).unwrap().stale);
        assert!(bag.problems.is_empty());
    }

    #[test]
    fn an_unchanged_reload_changes_nothing_and_a_deleted_file_removes_its_dags() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("d.yaml");
        std::fs::write(
            &file,
            "d:\n  tasks: {a: {operator: empty}}\ne:\n  tasks: {a: {operator: empty}}\n",
        )
        .unwrap();
        let mut bag = DagBag::default();
        bag.update(load(dir.path()));
        assert!(bag.update(load(dir.path())).is_empty());
        assert!(
            bag.parse_durations.contains_key(&file),
            "each file's parse is timed: {:?}",
            bag.parse_durations
        );
        std::fs::remove_file(&file).unwrap();
        assert_eq!(ids(&bag.update(load(dir.path())).removed), ["d", "e"]);
        assert_eq!(bag.dags().count(), 0);
        assert!(bag.parse_durations.is_empty(), "a deleted file's time goes");
    }
}
