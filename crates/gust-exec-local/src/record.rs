//! What a try leaves behind that outlives the scheduler, so that a restarted scheduler learns
//! whether a try still runs, how it ended, or whether it never started.
//!
//! Per try, side by side in the runtime's state folder, named after the try
//! (`dag_id=D,run_id=R,task_id=T,attempt=N`, see [`TryRecord::of`]):
//! - `….lock`, locked (flock) before the process is spawned and handed to it as its
//!   stdin: the lock is held for as long as any process of the try keeps it open, and released
//!   by the kernel when the last one ends, however it ends. A lock we can take means nothing of
//!   the try is running.
//! - `….exit`, made empty with the lock; bash itself writes the exit code into it as it exits
//!   (an `EXIT` trap), or `signal NAME` when a signal kills it (a trap per signal), so it is
//!   there even when nobody was left to wait for the process.
//! - the process group, so that an adopted try can still be killed, written into the lock file
//!   itself right after the spawn, through a second handle on the same open file: the file's
//!   offset is shared with the process's stdin, which therefore still reads nothing (a file
//!   fewer per try; records of an earlier version keep it in `….pid`).
//!
//! The files are not put in per-run and per-task folders (Airflow's log layout, which records
//! used before): creating and deleting three folders around every try was most of the file
//! system's work per try, and on ext4 it slows every later inode allocation while the deleted
//! ones are recent. A record in that older layout is still found, for a try started by a
//! scheduler of an earlier version.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io;
use std::path::{Path, PathBuf};

use gust_executor::TryKey;

use crate::reuse::SpareFiles;

/// The environment variable naming the file bash writes its exit code to.
pub const EXIT_FILE_VAR: &str = "GUST_TRY_EXIT_FILE";

/// The signals that end bash after running its EXIT trap with the last command's status in
/// `$?`, so that the trap alone would record a try killed by one (SIGPIPE once the scheduler
/// that read its output is gone, SIGTERM from a user) as having exited with that status. Each
/// gets a trap of its own that records the signal instead, then ends bash with it as before.
/// Left out: SIGKILL and the signals bash ends on without its EXIT trap (nothing is recorded,
/// so the try is lost, as it should be), and the synchronous ones (SIGSEGV, SIGBUS, SIGILL,
/// SIGFPE, SIGTRAP, SIGSYS) that a trap would turn into an endless loop when bash itself
/// faults.
const RECORDED_SIGNALS: [&str; 11] = [
    "HUP", "INT", "PIPE", "ALRM", "TERM", "USR1", "USR2", "XCPU", "XFSZ", "VTALRM", "ABRT",
];

/// What the exit file holds after a signal ended the try: `signal` and the signal's name.
const SIGNAL_PREFIX: &str = "signal ";

/// The prefix that makes bash record how it ended, its exit code or the signal that ended it:
/// single-line, so that bash's own error messages keep the line numbers of the user's command.
pub static EXIT_TRAP: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    use std::fmt::Write as _;
    let mut trap = String::from("trap 'printf %s \"$?\" > \"$GUST_TRY_EXIT_FILE\"' EXIT; ");
    for name in RECORDED_SIGNALS {
        // The EXIT trap goes first (it would overwrite the signal), then the signal is sent
        // again with its trap gone, so bash still dies of it and its parent sees that.
        let _ = write!(
            trap,
            "trap 'printf %s \"{SIGNAL_PREFIX}{name}\" > \"$GUST_TRY_EXIT_FILE\"; trap - EXIT {name}; kill -s {name} $$' {name}; "
        );
    }
    trap
});

/// What the record says about a try.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordStatus {
    /// It exited with this code.
    Exited(i32),
    /// This signal (its number) killed it.
    Signaled(i32),
    /// A process of the try still holds its lock.
    Running,
    /// Its process was spawned but nothing holds its lock and it left no exit code: it died
    /// without a trace (killed with the scheduler's host, or by SIGKILL).
    Vanished,
    /// The try was never handed to a process: there is no record, or one readied for a
    /// process that was never spawned (its lock names no process group).
    Absent,
}

/// File names longer than this are replaced by a digest (most file systems allow 255 bytes).
const LONGEST_NAME: usize = 200;

/// The record of one try.
#[derive(Debug, Clone)]
pub struct TryRecord {
    lock: PathBuf,
    exit: PathBuf,
    pid: PathBuf,
    /// How many folders above the files are the try's own, to remove once empty (the older
    /// layout's dag, run and task folders).
    own_folders: usize,
}

impl TryRecord {
    /// The record of `key` under `state_dir`: `dag_id=D,run_id=R,task_id=T,attempt=N.lock` and
    /// so on. DAG and task ids cannot hold a comma, so the name is the try's alone; in the run
    /// id (free text) `%`, `/` and `\` are escaped. A name too long for a file system becomes
    /// `try-<SHA-256 of that name>`.
    #[must_use]
    pub fn of(state_dir: &Path, key: &TryKey) -> Self {
        let run_id = key
            .run_id
            .as_str()
            .replace('%', "%25")
            .replace('/', "%2F")
            .replace('\\', "%5C");
        // A mapped instance's tries have names of their own; an unmapped task's keep theirs.
        let instance = if key.map_index >= 0 {
            format!(",map_index={}", key.map_index)
        } else {
            String::new()
        };
        let mut stem = format!(
            "dag_id={},run_id={run_id},task_id={}{instance},attempt={}",
            key.dag_id, key.task_id, key.try_number
        );
        if stem.len() > LONGEST_NAME {
            use sha2::{Digest, Sha256};
            let digest = Sha256::digest(stem.as_bytes());
            stem = format!("try-{}", hex(&digest));
        }
        let lock = state_dir.join(format!("{stem}.lock"));
        Self {
            exit: state_dir.join(format!("{stem}.exit")),
            pid: lock.clone(),
            lock,
            own_folders: 0,
        }
    }

    /// The record of `key`, in the layout an earlier version may have left it in when this
    /// one has none: `dag_id=D/run_id=R/task_id=T/attempt=N.lock`.
    #[must_use]
    pub fn find(state_dir: &Path, key: &TryKey) -> Self {
        let record = Self::of(state_dir, key);
        if record.lock.exists() {
            return record;
        }
        let folder = state_dir
            .join(format!("dag_id={}", key.dag_id))
            .join(format!(
                "run_id={}",
                key.run_id.as_str().replace(['/', '\\'], "_")
            ))
            .join(format!("task_id={}", key.task_id));
        let stem = format!("attempt={}", key.try_number);
        let older = Self {
            lock: folder.join(format!("{stem}.lock")),
            exit: folder.join(format!("{stem}.exit")),
            pid: folder.join(format!("{stem}.pid")),
            own_folders: 3,
        };
        if older.lock.exists() { older } else { record }
    }

    /// Where bash writes the exit code.
    #[must_use]
    pub fn exit_path(&self) -> &Path {
        &self.exit
    }

    /// Creates the record and takes its lock. Returns the lock, which given to the process as
    /// its stdin keeps the lock for as long as the process (or any child of it) lives, and a
    /// second handle on the same open file for [`TryRecord::write_pid`]. The exit code's file
    /// is made here too, empty: bash then only fills it, and making a file (an inode) is no
    /// longer part of the try's exit.
    pub fn prepare(&self, spares: Option<&SpareFiles>) -> io::Result<(File, File)> {
        if let Some(folder) = self.lock.parent() {
            fs::create_dir_all(folder)?;
        }
        let placed = spares.is_some_and(|spares| spares.place(&self.lock));
        let open = || {
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&self.lock)
        };
        let mut file = open()?;
        let mut locked = file.try_lock();
        if placed && matches!(locked, Err(TryLockError::WouldBlock)) {
            // A spare still locked by a process an earlier try left behind (one that kept
            // its stdin open): that process keeps its file, this try gets a new one.
            fs::remove_file(&self.lock)?;
            file = open()?;
            locked = file.try_lock();
        }
        locked.map_err(|err| match err {
            TryLockError::WouldBlock => io::Error::new(
                io::ErrorKind::AlreadyExists,
                "another process holds this try's lock",
            ),
            TryLockError::Error(err) => err,
        })?;
        // Only once the lock is ours: what an earlier process (or a spare's last try) wrote
        // goes, and so does an exit code left by an earlier process.
        file.set_len(0)?;
        if let Some(spares) = spares {
            spares.place(&self.exit);
        }
        File::create(&self.exit)?;
        let ours = file.try_clone()?;
        Ok((file, ours))
    }

    /// Remembers the try's process group, through `lock`, the second handle
    /// [`TryRecord::prepare`] gave.
    pub fn write_pid(lock: &mut File, pgid: u32) -> io::Result<()> {
        use std::io::Write as _;
        writeln!(lock, "{pgid}")
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
        if let Some(ended) = self.ending() {
            return ended;
        }
        let Ok(file) = File::open(&self.lock) else {
            return RecordStatus::Absent;
        };
        match file.try_lock() {
            // The lock is ours now; dropping the file releases it.
            Ok(()) => {
                // The process may have written its exit code between the two reads.
                match self.ending() {
                    Some(ended) => ended,
                    // The process group is written right after the spawn: without it, the
                    // record was readied for a process that never came.
                    None if self.pid().is_none() => RecordStatus::Absent,
                    None => RecordStatus::Vanished,
                }
            }
            Err(TryLockError::WouldBlock) => RecordStatus::Running,
            Err(TryLockError::Error(_)) => RecordStatus::Vanished,
        }
    }

    /// How the try ended, when its exit file says: an exit code, or a signal by name.
    fn ending(&self) -> Option<RecordStatus> {
        let text = fs::read_to_string(&self.exit).ok()?;
        let text = text.trim();
        match text.strip_prefix(SIGNAL_PREFIX) {
            Some(name) => {
                let signal: nix::sys::signal::Signal = format!("SIG{name}").parse().ok()?;
                Some(RecordStatus::Signaled(signal as i32))
            }
            None => text.parse().ok().map(RecordStatus::Exited),
        }
    }

    /// Deletes the record (its outcome is committed), and the folders it leaves empty; with
    /// `spares`, its files are kept there for later tries instead (`reuse.rs`). Returns
    /// whether there was a record.
    pub fn remove(&self, spares: Option<&SpareFiles>) -> bool {
        let gone = |path: &Path| match spares {
            Some(spares) => spares.keep(path),
            None => fs::remove_file(path).is_ok(),
        };
        gone(&self.exit);
        if self.pid != self.lock {
            let _ = fs::remove_file(&self.pid);
        }
        let existed = gone(&self.lock);
        // Only empty folders go: `remove_dir` refuses the others.
        let mut folder = self.lock.parent();
        for _ in 0..self.own_folders {
            match folder {
                Some(dir) if fs::remove_dir(dir).is_ok() => folder = dir.parent(),
                _ => break,
            }
        }
        existed
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut text, b| {
        let _ = write!(text, "{b:02x}");
        text
    })
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
            map_index: gust_core::mapping::UNMAPPED,
            try_number: TryNumber(1),
        }
    }

    #[test]
    fn a_record_tells_absent_running_vanished_and_exited_apart() {
        let dir = tempfile::tempdir().unwrap();
        let record = TryRecord::of(dir.path(), &key());
        assert_eq!(record.status(), RecordStatus::Absent);
        let readied = record.prepare(None).unwrap();
        drop(readied);
        assert_eq!(
            record.status(),
            RecordStatus::Absent,
            "a record readied for a process never spawned is a try that never started"
        );
        let (held, mut ours) = record.prepare(None).unwrap();
        TryRecord::write_pid(&mut ours, 42).unwrap();
        drop(ours);
        assert_eq!(record.status(), RecordStatus::Running);
        assert_eq!(record.pid(), Some(42));
        drop(held);
        assert_eq!(record.status(), RecordStatus::Vanished);
        fs::write(record.exit_path(), "3").unwrap();
        assert_eq!(record.status(), RecordStatus::Exited(3));
        record.remove(None);
        assert_eq!(record.status(), RecordStatus::Absent);
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            0,
            "nothing is left behind"
        );
    }

    #[test]
    fn records_are_files_named_after_the_try_and_long_names_become_digests() {
        let dir = tempfile::tempdir().unwrap();
        let record = TryRecord::of(dir.path(), &key());
        let (stdin, mut ours) = record.prepare(None).unwrap();
        TryRecord::write_pid(&mut ours, 7).unwrap();
        let mut read = String::new();
        std::io::Read::read_to_string(&mut &stdin, &mut read).unwrap();
        assert_eq!(read, "", "the process's stdin reads nothing");
        drop((stdin, ours));
        let mut names: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "dag_id=d,run_id=manual__1,task_id=t,attempt=1.exit",
                "dag_id=d,run_id=manual__1,task_id=t,attempt=1.lock"
            ]
        );
        assert_eq!(
            record.status(),
            RecordStatus::Vanished,
            "an empty exit file is no exit code"
        );
        let mut long = key();
        long.run_id = RunId::new(format!("a/b%{}", "x".repeat(200))).unwrap();
        let record = TryRecord::of(dir.path(), &long);
        let name = record.exit_path().file_name().unwrap().to_string_lossy();
        assert!(name.starts_with("try-") && name.len() < 80, "{name}");
        let mut slash = key();
        slash.run_id = RunId::new("a/b").unwrap();
        let mut underscore = key();
        underscore.run_id = RunId::new("a_b").unwrap();
        assert_ne!(
            TryRecord::of(dir.path(), &slash).exit_path(),
            TryRecord::of(dir.path(), &underscore).exit_path(),
            "run ids that differ keep records apart"
        );
    }

    #[test]
    fn a_record_left_in_the_older_layout_is_found_and_removed_with_its_folders() {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("dag_id=d/run_id=manual__1/task_id=t");
        fs::create_dir_all(&folder).unwrap();
        fs::write(folder.join("attempt=1.lock"), "").unwrap();
        fs::write(folder.join("attempt=1.exit"), "0").unwrap();
        let record = TryRecord::find(dir.path(), &key());
        assert_eq!(record.status(), RecordStatus::Exited(0));
        record.remove(None);
        assert!(!dir.path().join("dag_id=d").exists(), "its folders go too");
        let fresh = TryRecord::find(dir.path(), &key());
        assert_eq!(
            fresh.exit_path(),
            TryRecord::of(dir.path(), &key()).exit_path()
        );
    }
}
