//! Where a try's log lives in the store: Airflow's layout, `dag_id=D/run_id=R/task_id=T/
//! attempt=N.log`, under the remote base folder, the same relative path as under the local
//! `base_log_folder`. Pure: no store, no file system.

use std::path::{Component, Path};

use gust_executor::TryKey;

/// `dag_id=D/run_id=R/task_id=T/attempt=N.log`, with `/` between segments (the run id escaped
/// as in the local layout, [`gust_executor::log_layout`]).
#[must_use]
pub fn relative(key: &TryKey) -> String {
    gust_executor::log_layout::relative_path(key)
}

/// The object a try's log goes to: `base` (a store URI) joined with `relative`.
#[must_use]
pub fn uri(base: &str, relative: &str) -> String {
    gust_artifacts::uri::join(base, &[relative])
}

/// `log_path` relative to `root`, as `/`-separated segments; `None` when it is not under `root`
/// or climbs out of it.
#[must_use]
pub fn relative_to(root: &Path, log_path: &Path) -> Option<String> {
    let rest = log_path.strip_prefix(root).ok()?;
    let parts: Option<Vec<&str>> = rest
        .components()
        .map(|c| match c {
            Component::Normal(part) => part.to_str(),
            _ => None,
        })
        .collect();
    let parts = parts?;
    (!parts.is_empty()).then(|| parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use gust_core::ids::{DagId, RunId, TaskId, TryNumber};

    fn key(run: &str, try_number: u32) -> TryKey {
        TryKey {
            dag_id: DagId::new("etl").unwrap(),
            run_id: RunId::new(run).unwrap(),
            task_id: TaskId::new("g.load").unwrap(),
            map_index: gust_core::mapping::UNMAPPED,
            try_number: TryNumber(try_number),
        }
    }

    #[test]
    fn the_remote_layout_is_the_local_one_under_another_root() {
        // The scheduler writes logs where gust_scheduler::log_path says; the store must hold
        // them at the same relative path, or a reader would look in the wrong place.
        for (run, n) in [
            ("manual__2024-01-01T00:00:00+00:00", 1),
            ("scheduled__2024/01/02", 3),
            ("odd\\run", 12),
        ] {
            let key = key(run, n);
            let root = Path::new("/var/lib/gust/logs");
            let local = gust_scheduler::log_path::log_path(root, &key);
            assert_eq!(relative_to(root, &local), Some(relative(&key)), "{run}");
        }
        assert_eq!(
            relative(&key("manual__2024-01-01T00:00:00+00:00", 2)),
            "dag_id=etl/run_id=manual__2024-01-01T00:00:00+00:00/task_id=g.load/attempt=2.log"
        );
    }

    #[test]
    fn remote_uris_join_the_base_and_the_relative_path() {
        let rel = relative(&key("r1", 1));
        assert_eq!(
            uri("s3://bucket/logs", &rel),
            "s3://bucket/logs/dag_id=etl/run_id=r1/task_id=g.load/attempt=1.log"
        );
        assert_eq!(
            uri("s3://bucket/logs/", &rel),
            "s3://bucket/logs/dag_id=etl/run_id=r1/task_id=g.load/attempt=1.log"
        );
        assert_eq!(
            uri("s3://bucket", &rel),
            "s3://bucket/dag_id=etl/run_id=r1/task_id=g.load/attempt=1.log"
        );
        assert_eq!(
            uri("file:///srv/logs", &rel),
            "file:///srv/logs/dag_id=etl/run_id=r1/task_id=g.load/attempt=1.log"
        );
    }

    #[test]
    fn only_paths_under_the_root_are_relative_to_it() {
        let root = Path::new("/logs");
        assert_eq!(
            relative_to(root, Path::new("/logs/a/b.log")).as_deref(),
            Some("a/b.log")
        );
        assert_eq!(relative_to(root, Path::new("/elsewhere/b.log")), None);
        assert_eq!(relative_to(root, Path::new("/logs")), None);
        assert_eq!(relative_to(root, Path::new("/logs/../x.log")), None);
    }
}
