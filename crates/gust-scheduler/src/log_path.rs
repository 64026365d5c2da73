//! Where a try's log lives: Airflow's layout, so tools that read Airflow's log folders find them.

use std::path::{Path, PathBuf};

use gust_executor::TryKey;

/// `ROOT/dag_id=D/run_id=R/task_id=T/attempt=N.log`.
#[must_use]
pub fn log_path(root: &Path, key: &TryKey) -> PathBuf {
    root.join(format!("dag_id={}", key.dag_id))
        .join(format!(
            "run_id={}",
            key.run_id.as_str().replace(['/', '\\'], "_")
        ))
        .join(format!("task_id={}", key.task_id))
        .join(format!("attempt={}.log", key.try_number))
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
            try_number: TryNumber(2),
        };
        assert_eq!(
            log_path(Path::new("/logs"), &key),
            Path::new(
                "/logs/dag_id=etl/run_id=manual__2024-01-01T00:00:00+00:00/task_id=g.load/attempt=2.log"
            )
        );
    }
}
