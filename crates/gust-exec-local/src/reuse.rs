//! The files and folders of ended tries, kept for the next tries instead of deleted.
//!
//! Every try makes two record files (`record.rs`) and, for a bash try, a scratch folder to run
//! in; deleting them as the try is released and making new ones for the next try costs more
//! than anything else the runtime does per try. Most of that is the file system's: on ext4
//! without a journal, each new inode is searched for past every inode freed in the last few
//! seconds (minutes while their blocks are dirty), so a steady stream of tries, each freeing
//! three inodes, makes every later creation slower. A released record's files are renamed into
//! a spare folder and renamed into place for a later try; an emptied scratch folder is handed
//! to the next bash try. Nothing of one try shows in the next: a record file is truncated once
//! its lock is taken, and a scratch folder is reused only when the try left it empty (Airflow
//! runs each bash command in a fresh, empty temporary folder).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};

/// What a runtime keeps of its ended tries.
#[derive(Debug)]
pub struct Reuse {
    /// Record files, when the runtime keeps records.
    pub spares: Option<SpareFiles>,
    /// Scratch folders.
    pub scratch: Arc<ScratchFolders>,
}

impl Reuse {
    /// For a runtime running up to `parallelism` tries at once, keeping its records under
    /// `state_dir`: enough is kept for as many tries again to start.
    #[must_use]
    pub fn new(state_dir: Option<&Path>, parallelism: usize) -> Self {
        Self {
            spares: state_dir.map(|dir| SpareFiles::open(dir, 2 * parallelism + 16)),
            scratch: ScratchFolders::new(parallelism + 8),
        }
    }
}

/// Files of released records, in `<state folder>/.spare`, each to become a later record's file.
#[derive(Debug)]
pub struct SpareFiles {
    dir: PathBuf,
    free: Mutex<Vec<PathBuf>>,
    /// Names new spares: this process's id and a count, so that two processes sharing a state
    /// folder never pick the same name.
    next: AtomicU64,
    /// At most this many are kept; beyond, released files are deleted.
    cap: usize,
}

impl SpareFiles {
    /// The spares under `state_dir`, with those an earlier process left there.
    #[must_use]
    pub fn open(state_dir: &Path, cap: usize) -> Self {
        let dir = state_dir.join(".spare");
        let _ = fs::create_dir_all(&dir);
        let free = fs::read_dir(&dir)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .map(|e| e.path())
                    .take(cap)
                    .collect()
            })
            .unwrap_or_default();
        Self {
            dir,
            free: Mutex::new(free),
            next: AtomicU64::new(0),
            cap,
        }
    }

    /// Puts a spare file at `path` when one is free and nothing is at `path`; whether it did.
    /// A hard link, not a rename, so that a file already there (an earlier process's record
    /// of the same try) is never replaced.
    pub fn place(&self, path: &Path) -> bool {
        let Some(spare) = self.lock().pop() else {
            return false;
        };
        match fs::hard_link(&spare, path) {
            Ok(()) => {
                let _ = fs::remove_file(&spare);
                true
            }
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {
                self.lock().push(spare);
                false
            }
            // Gone (another process sharing the folder took it) or unusable: forgotten.
            Err(_) => false,
        }
    }

    /// Takes the file at `path` as a spare (deletes it when enough are kept). Whether there
    /// was a file.
    pub fn keep(&self, path: &Path) -> bool {
        if self.lock().len() >= self.cap {
            return fs::remove_file(path).is_ok();
        }
        let name = self.dir.join(format!(
            "{}-{}",
            std::process::id(),
            self.next.fetch_add(1, Ordering::Relaxed)
        ));
        match fs::rename(path, &name) {
            Ok(()) => {
                self.lock().push(name);
                true
            }
            Err(err) if err.kind() == io::ErrorKind::NotFound => false,
            Err(_) => fs::remove_file(path).is_ok(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<PathBuf>> {
        self.free.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Empty scratch folders, for bash tries to run in.
#[derive(Debug)]
pub struct ScratchFolders {
    free: Mutex<Vec<tempfile::TempDir>>,
    cap: usize,
}

impl ScratchFolders {
    /// A pool keeping at most `cap` folders.
    #[must_use]
    pub fn new(cap: usize) -> Arc<Self> {
        Arc::new(Self {
            free: Mutex::new(Vec::new()),
            cap,
        })
    }

    /// An empty folder: one an ended try left empty, or a new temporary one.
    pub fn take(self: &Arc<Self>) -> io::Result<Scratch> {
        let kept = self
            .free
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let dir = match kept {
            Some(dir) => dir,
            None => tempfile::Builder::new().prefix("gust-try-").tempdir()?,
        };
        Ok(Scratch {
            dir: Some(dir),
            home: Arc::downgrade(self),
        })
    }
}

impl ScratchFolders {
    /// Deletes the folders kept.
    pub fn clear(&self) {
        let kept = std::mem::take(&mut *self.free.lock().unwrap_or_else(PoisonError::into_inner));
        drop(kept);
    }
}

/// A try's scratch folder. Dropped, it goes back to its pool when the try left it empty, and
/// is deleted otherwise.
#[derive(Debug)]
pub struct Scratch {
    dir: Option<tempfile::TempDir>,
    home: Weak<ScratchFolders>,
}

impl Scratch {
    /// Where it is.
    #[must_use]
    pub fn path(&self) -> &Path {
        self.dir.as_ref().map_or(Path::new(""), |d| d.path())
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let (Some(dir), Some(home)) = (self.dir.take(), self.home.upgrade()) else {
            return;
        };
        let empty = fs::read_dir(dir.path()).is_ok_and(|mut entries| entries.next().is_none());
        let mut free = home.free.lock().unwrap_or_else(PoisonError::into_inner);
        if empty && free.len() < home.cap {
            free.push(dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_file_is_placed_again_but_never_over_an_existing_one() {
        let state = tempfile::tempdir().unwrap();
        let spares = SpareFiles::open(state.path(), 2);
        let first = state.path().join("a.lock");
        fs::write(&first, "old").unwrap();
        assert!(spares.keep(&first));
        assert!(!first.exists());
        assert!(!spares.keep(&first), "nothing to keep");
        let taken = state.path().join("b.lock");
        fs::write(&taken, "mine").unwrap();
        assert!(!spares.place(&taken));
        assert_eq!(fs::read_to_string(&taken).unwrap(), "mine", "not replaced");
        let free = state.path().join("c.lock");
        assert!(spares.place(&free));
        assert_eq!(
            fs::read_to_string(&free).unwrap(),
            "old",
            "the spare, reused"
        );
        assert_eq!(
            fs::read_dir(state.path().join(".spare")).unwrap().count(),
            0
        );
        // A later process finds what an earlier one kept.
        assert!(spares.keep(&free));
        let again = SpareFiles::open(state.path(), 2);
        let next = state.path().join("d.lock");
        assert!(again.place(&next));
    }

    #[test]
    fn only_folders_left_empty_are_reused() {
        let pool = ScratchFolders::new(4);
        let scratch = pool.take().unwrap();
        let first = scratch.path().to_owned();
        drop(scratch);
        let scratch = pool.take().unwrap();
        assert_eq!(scratch.path(), first, "an empty folder is reused");
        fs::write(scratch.path().join("left"), "x").unwrap();
        drop(scratch);
        assert!(!first.exists(), "a folder the try wrote in is deleted");
        let scratch = pool.take().unwrap();
        assert_ne!(scratch.path(), first);
        let path = scratch.path().to_owned();
        drop(scratch);
        drop(pool);
        assert!(!path.exists(), "the pool's folders go with it");
    }
}
