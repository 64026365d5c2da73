//! What a try leaves behind that outlives the scheduler, so that a restarted scheduler learns
//! whether a try still runs, how it ended, or whether it never started.
//!
//! Per try, under the runtime's state folder:
//! - `attempt=N.lock`, locked (flock) before the process is spawned and handed to it as its
//!   stdin: the lock is held for as long as any process of the try keeps it open, and released
//!   by the kernel when the last one ends, however it ends. A lock we can take means nothing of
//!   the try is running.
//! - `attempt=N.exit`, the exit code, written by bash itself as it exits (an `EXIT` trap), so it
//!   exists even when nobody was left to wait for the process.
//! - `attempt=N.pid`, the process group, so that an adopted try can still be killed.
//!
//! Files use Airflow's log layout (`dag_id=D/run_id=R/task_id=T/`) so a person can find them.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io;
use std::path::{Path, PathBuf};

use gust_executor::TryKey;

/// The environment variable naming the file bash writes its exit code to.
pub const EXIT_FILE_VAR: &str = "GUST_TRY_EXIT_FILE";

/// The prefix that makes bash record its exit code: single-line, so that bash's own error
/// messages keep the line numbers of the user's command.
pub const EXIT_TRAP: &str = "trap 'printf %s \"$?\" > \"$GUST_TRY_EXIT_FILE\"' EXIT; ";

/// What the record says about a try.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordStatus {
    /// It exited with this code.
    Exited(i32),
    /// A process of the try still holds its lock.
    Running,
    /// It was prepared but nothing holds its lock and it left no exit code: it died without a
    /// trace (killed with the scheduler's host, or by SIGKILL).
    Vanished,
    /// There is no record: the try was never handed to a process.
    Absent,
}

/// The record of one try.
#[derive(Debug, Clone)]
pub struct TryRecord {
    lock: PathBuf,
    exit: PathBuf,
    pid: PathBuf,
}

impl TryRecord {
    /// The record of `key` under `state_dir`.
    #[must_use]
    pub fn of(state_dir: &Path, key: &TryKey) -> Self {
        let folder = state_dir
            .join(format!("dag_id={}", key.dag_id))
            // Run ids are free text: a slash must not become a folder (or climb out of one).
            .join(format!(
                "run_id={}",
                key.run_id.as_str().replace(['/', '\\'], "_")
            ))
            .join(format!("task_id={}", key.task_id));
        let stem = format!("attempt={}", key.try_number);
        Self {
            lock: folder.join(format!("{stem}.lock")),
            exit: folder.join(format!("{stem}.exit")),
            pid: folder.join(format!("{stem}.pid")),
        }
    }

    /// Where bash writes the exit code.
    #[must_use]
    pub fn exit_path(&self) -> &Path {
        &self.exit
    }

    /// Creates the record and takes its lock; the returned file, given to the process as its
    /// stdin, keeps the lock for as long as the process (or any child of it) lives.
    pub fn prepare(&self) -> io::Result<File> {
        if let Some(folder) = self.lock.parent() {
            fs::create_dir_all(folder)?;
        }
        match fs::remove_file(&self.exit) {
            Err(err) if err.kind() != io::ErrorKind::NotFound => return Err(err),
            _ => {}
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&self.lock)?;
        file.try_lock().map_err(|err| match err {
            TryLockError::WouldBlock => io::Error::new(
                io::ErrorKind::AlreadyExists,
                "another process holds this try's lock",
            ),
            TryLockError::Error(err) => err,
        })?;
        Ok(file)
    }

    /// Remembers the try's process group.
    pub fn write_pid(&self, pgid: u32) -> io::Result<()> {
        fs::write(&self.pid, pgid.to_string())
    }

    /// The try's process group, when it was recorded.
    #[must_use]
    pub fn pid(&self) -> Option<u32> {
        fs::read_to_string(&self.pid).ok()?.trim().parse().ok()
    }

    /// When the try's process started (its process group was recorded right after the spawn).
    #[must_use]
    pub fn started_at(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        let modified = fs::metadata(&self.pid).ok()?.modified().ok()?;
        Some(chrono::DateTime::<chrono::Utc>::from(modified))
    }

    /// What the record says now.
    #[must_use]
    pub fn status(&self) -> RecordStatus {
        if let Some(code) = self.exit_code() {
            return RecordStatus::Exited(code);
        }
        let Ok(file) = File::open(&self.lock) else {
            return RecordStatus::Absent;
        };
        match file.try_lock() {
            // The lock is ours now; dropping the file releases it.
            Ok(()) => {
                // The process may have written its exit code between the two reads.
                match self.exit_code() {
                    Some(code) => RecordStatus::Exited(code),
                    None => RecordStatus::Vanished,
                }
            }
            Err(TryLockError::WouldBlock) => RecordStatus::Running,
            Err(TryLockError::Error(_)) => RecordStatus::Vanished,
        }
    }

    fn exit_code(&self) -> Option<i32> {
        fs::read_to_string(&self.exit).ok()?.trim().parse().ok()
    }

    /// Deletes the record (its outcome is committed), and the folders it leaves empty.
    pub fn remove(&self) {
        for path in [&self.exit, &self.pid, &self.lock] {
            let _ = fs::remove_file(path);
        }
        // Only empty folders go: `remove_dir` refuses the others.
        let mut folder = self.lock.parent();
        for _ in 0..3 {
            match folder {
                Some(dir) if fs::remove_dir(dir).is_ok() => folder = dir.parent(),
                _ => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gust_core::ids::{DagId, RunId, TaskId, TryNumber};

    fn key() -> TryKey {
        TryKey {
            dag_id: DagId::new("d").unwrap(),
            run_id: RunId::new("manual__1").unwrap(),
            task_id: TaskId::new("t").unwrap(),
            try_number: TryNumber(1),
        }
    }

    #[test]
    fn a_record_tells_absent_running_vanished_and_exited_apart() {
        let dir = tempfile::tempdir().unwrap();
        let record = TryRecord::of(dir.path(), &key());
        assert_eq!(record.status(), RecordStatus::Absent);
        let held = record.prepare().unwrap();
        assert_eq!(record.status(), RecordStatus::Running);
        drop(held);
        assert_eq!(record.status(), RecordStatus::Vanished);
        fs::write(record.exit_path(), "3").unwrap();
        assert_eq!(record.status(), RecordStatus::Exited(3));
        record.remove();
        assert_eq!(record.status(), RecordStatus::Absent);
        assert!(
            !dir.path().join("dag_id=d").exists(),
            "empty folders go too"
        );
    }
}
