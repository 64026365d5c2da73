//! Where a try's log lives: Airflow's layout, so tools that read Airflow's log folders find them.

use std::path::{Path, PathBuf};

use gust_core::ids::{DagId, RunId};
use gust_executor::TryKey;

/// `ROOT/dag_id=D/run_id=R/task_id=T/attempt=N.log`, the run id escaped as
/// [`gust_executor::log_layout`] says, so two runs never share a log.
#[must_use]
pub fn log_path(root: &Path, key: &TryKey) -> PathBuf {
    root.join(gust_executor::log_layout::relative_path(key))
}

/// `ROOT/dag_id=D/run_id=R/dag_callbacks.log`: where a run's DAG callbacks write, beside its
/// tasks' logs.
#[must_use]
pub fn dag_callbacks_log_path(root: &Path, dag_id: &DagId, run_id: &RunId) -> PathBuf {
    root.join(format!("dag_id={dag_id}"))
        .join(gust_executor::log_layout::run_folder(run_id.as_str()))
        .join("dag_callbacks.log")
}

#[cfg(test)]
mod tests {
    use super::*;
    use gust_core::ids::{DagId, RunId, TaskId, TryNumber};

    #[test]
    fn logs_follow_airflows_layout() {
        let key = TryKey {
            dag_id: DagId::new("etl").unwrap(),
            run_id: RunId::new("manual__2024-01-01T00:00:00+00:00").unwrap(),
            task_id: TaskId::new("g.load").unwrap(),
            map_index: gust_core::mapping::UNMAPPED,
            try_number: TryNumber(2),
        };
        assert_eq!(
            log_path(Path::new("/logs"), &key),
            Path::new(
                "/logs/dag_id=etl/run_id=manual__2024-01-01T00:00:00+00:00/task_id=g.load/attempt=2.log"
            )
        );
    }

    #[test]
    fn runs_whose_ids_differ_never_share_a_log() {
        let key = |run: &str| TryKey {
            dag_id: DagId::new("etl").unwrap(),
            run_id: RunId::new(run).unwrap(),
            task_id: TaskId::new("load").unwrap(),
            map_index: gust_core::mapping::UNMAPPED,
            try_number: TryNumber(1),
        };
        let root = Path::new("/logs");
        assert_ne!(log_path(root, &key("x/y")), log_path(root, &key("x_y")));
        assert_ne!(log_path(root, &key("x\\y")), log_path(root, &key("x_y")));
        assert_eq!(
            log_path(root, &key("x/y")),
            Path::new("/logs/dag_id=etl/run_id=x%2Fy/task_id=load/attempt=1.log")
        );
    }
}
