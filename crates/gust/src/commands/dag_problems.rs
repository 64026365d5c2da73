//! The scheduler's terminal log of what is wrong with the DAGs folder: one line when a DAG file
//! fails to import (the file and its first problem; `gust dags list-import-errors` has them all),
//! one when it imports again, one when a file loads but Airflow would read it differently (its
//! first warning: a Gust-only key such as `chains`), and one when a DAG names pools that do not
//! exist (Airflow's "non-existent pool" DAG warning). It reads the bags the folder watch publishes and the pools
//! in the store; it changes neither.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;

use gust_dagfile::DagBag;
use gust_store::Store;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// One thing to say about the folder, worth a line of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// A file fails to import (newly, or with another first problem).
    Broken {
        /// How many problems the file has.
        count: usize,
        /// The first, as `FILE:LINE:COL: DAG[.TASK]: message`.
        first: String,
    },
    /// A file that failed to import loads again (or is gone).
    Fixed {
        /// The file.
        file: String,
    },
    /// A file loads, but Airflow with dag-factory would read it differently (Gust-only keys).
    Differs {
        /// How many warnings the file has.
        count: usize,
        /// The first, as `FILE:LINE:COL: DAG[.TASK]: warning: message; hint`.
        first: String,
    },
    /// A DAG's tasks name pools that do not exist.
    MissingPools {
        /// The DAG.
        dag_id: String,
        /// The pools, by name.
        pools: Vec<String>,
    },
}

impl std::fmt::Display for Notice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Notice::Broken { count: 1, first } => write!(f, "a DAG file failed to import: {first}"),
            Notice::Broken { count, first } => write!(
                f,
                "a DAG file failed to import ({count} problems, `gust dags list-import-errors` \
                 lists them): {first}"
            ),
            Notice::Fixed { file } => write!(f, "{file} imports again"),
            Notice::Differs { count: 1, first } => write!(f, "{first}"),
            Notice::Differs { count, first } => write!(
                f,
                "{first} ({count} warnings in the file, `gust dags validate` lists them)"
            ),
            Notice::MissingPools { dag_id, pools } => write!(
                f,
                "DAG \"{dag_id}\" uses pools that do not exist: {}; its tasks in them fail until \
                 `gust pools set NAME SLOTS` creates them",
                pools.join(", ")
            ),
        }
    }
}

/// What was last said, so each problem is said once, when it appears or changes.
#[derive(Debug, Default)]
pub struct ProblemLog {
    broken: BTreeMap<String, String>,
    differs: BTreeMap<String, String>,
    missing_pools: BTreeMap<String, Vec<String>>,
}

impl ProblemLog {
    /// What changed since the last bag: broken and fixed files, DAGs with missing pools.
    pub fn notices(&mut self, bag: &DagBag, pools: &HashSet<String>) -> Vec<Notice> {
        let mut notices = Vec::new();
        let broken = by_file(
            bag.problems
                .iter()
                .map(|p| (p.location.file.display().to_string(), p.to_string())),
        );
        for file in self.broken.keys() {
            if !broken.contains_key(file) {
                notices.push(Notice::Fixed { file: file.clone() });
            }
        }
        for (file, (count, first)) in &broken {
            if self.broken.get(file) != Some(first) {
                notices.push(Notice::Broken {
                    count: *count,
                    first: first.clone(),
                });
            }
        }
        self.broken = firsts(broken);

        let differs = by_file(
            bag.warnings
                .iter()
                .map(|w| (w.location.file.display().to_string(), w.to_string())),
        );
        for (file, (count, first)) in &differs {
            if self.differs.get(file) != Some(first) {
                notices.push(Notice::Differs {
                    count: *count,
                    first: first.clone(),
                });
            }
        }
        self.differs = firsts(differs);

        let mut missing_pools = BTreeMap::new();
        for entry in bag.dags() {
            let missing: BTreeSet<&str> = entry
                .dag
                .tasks()
                .map(|task| task.settings.pool.as_str())
                .filter(|pool| !pools.contains(*pool))
                .collect();
            if !missing.is_empty() {
                let missing: Vec<String> = missing.into_iter().map(str::to_owned).collect();
                missing_pools.insert(entry.dag.id.to_string(), missing);
            }
        }
        for (dag_id, pools) in &missing_pools {
            if self.missing_pools.get(dag_id) != Some(pools) {
                notices.push(Notice::MissingPools {
                    dag_id: dag_id.clone(),
                    pools: pools.clone(),
                });
            }
        }
        self.missing_pools = missing_pools;
        notices
    }
}

/// Lines grouped by file: how many each file has, and its first.
fn by_file(lines: impl Iterator<Item = (String, String)>) -> BTreeMap<String, (usize, String)> {
    let mut files: BTreeMap<String, (usize, String)> = BTreeMap::new();
    for (file, line) in lines {
        files
            .entry(file)
            .and_modify(|(count, _)| *count += 1)
            .or_insert((1, line));
    }
    files
}

/// Each file's first line, as remembered to say each change once.
fn firsts(files: BTreeMap<String, (usize, String)>) -> BTreeMap<String, String> {
    files
        .into_iter()
        .map(|(file, (_, first))| (file, first))
        .collect()
}

/// Logs the notices of the bag in force now and of every later one, until `stop`.
pub async fn follow(mut bags: watch::Receiver<Arc<DagBag>>, store: Store, stop: CancellationToken) {
    let mut log = ProblemLog::default();
    loop {
        let bag = bags.borrow_and_update().clone();
        let pools = match store.pools().await {
            Ok(pools) => pools.into_iter().map(|p| p.name).collect(),
            Err(err) => {
                // Without the pools the check would warn about every pool: skip it this time.
                tracing::debug!("cannot read the pools to check the DAGs' pools: {err}");
                bag.dags()
                    .flat_map(|e| e.dag.tasks().map(|t| t.settings.pool.clone()))
                    .collect()
            }
        };
        for notice in log.notices(&bag, &pools) {
            match notice {
                Notice::Fixed { .. } => tracing::info!("{notice}"),
                _ => tracing::warn!("{notice}"),
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            changed = bags.changed() => if changed.is_err() { return },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    fn bag_of(files: &[(&str, &str)]) -> (tempfile::TempDir, DagBag) {
        let dir = tempfile::tempdir().expect("tempdir");
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).expect("write");
        }
        let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let mut bag = DagBag::default();
        bag.update(gust_dagfile::load_folder(dir.path(), now).expect("load"));
        (dir, bag)
    }

    fn default_pool() -> HashSet<String> {
        ["default_pool".to_owned()].into()
    }

    #[test]
    fn a_broken_file_is_one_line_with_its_first_problem_said_once() {
        let (_dir, bag) = bag_of(&[(
            "bad.yaml",
            "bad:\n  tasks:\n    a: {operator: nope}\n    b: {operator: nope2}\n",
        )]);
        let mut log = ProblemLog::default();
        let notices = log.notices(&bag, &default_pool());
        assert_eq!(notices.len(), 1, "{notices:?}");
        let line = notices[0].to_string();
        assert!(
            line.starts_with("a DAG file failed to import (2 problems")
                && line.contains("bad.yaml:3:")
                && line.contains("unknown operator \"nope\"")
                && !line.contains('\n'),
            "{line}"
        );
        assert_eq!(log.notices(&bag, &default_pool()), [], "said once");
    }

    #[test]
    fn a_fixed_file_is_said_to_import_again() {
        let (_dir, bad) = bag_of(&[("f.yaml", "f:\n  tasks: {t: {operator: nope}}\n")]);
        let (_ok, good) = bag_of(&[("f.yaml", "f:\n  tasks: {t: {operator: empty}}\n")]);
        let mut log = ProblemLog::default();
        log.notices(&bad, &default_pool());
        let notices = log.notices(&good, &default_pool());
        assert!(
            matches!(&notices[..], [Notice::Fixed { file }] if file.ends_with("f.yaml")),
            "{notices:?}"
        );
    }

    #[test]
    fn a_file_airflow_would_read_differently_is_one_warning_line_said_once() {
        let (_dir, bag) = bag_of(&[(
            "c.yaml",
            "c:\n  tasks: {a: {operator: empty}, b: {operator: empty}}\n  chains: ['a >> b']\n  dagrun_timeout_sec: 60\n",
        )]);
        let mut log = ProblemLog::default();
        let notices = log.notices(&bag, &default_pool());
        assert_eq!(notices.len(), 1, "{notices:?}");
        let line = notices[0].to_string();
        assert!(
            line.contains("c.yaml:3:3: c: warning: dag-factory 1.1.0 ignores `chains`")
                && line.ends_with("(2 warnings in the file, `gust dags validate` lists them)")
                && !line.contains('\n'),
            "{line}"
        );
        assert_eq!(log.notices(&bag, &default_pool()), [], "said once");
    }

    #[test]
    fn a_dag_naming_a_missing_pool_is_said_until_the_pool_exists() {
        let (_dir, bag) = bag_of(&[(
            "p.yaml",
            "p:\n  default_args: {pool: ml}\n  tasks: {t: {operator: empty}}\n",
        )]);
        let mut log = ProblemLog::default();
        let notices = log.notices(&bag, &default_pool());
        assert_eq!(
            notices,
            [Notice::MissingPools {
                dag_id: "p".into(),
                pools: vec!["ml".into()]
            }]
        );
        assert!(
            notices[0]
                .to_string()
                .contains("`gust pools set NAME SLOTS`")
        );
        let with_ml: HashSet<String> = ["default_pool".to_owned(), "ml".to_owned()].into();
        assert_eq!(log.notices(&bag, &with_ml), []);
    }
}
