//! One scheduler per SQLite database. SQLite has no row locks to share work with, so a second
//! scheduler on the same file would run every task a second time; it is refused at start. The
//! lock is an exclusive `flock` on a file beside the database, held for the process's life, so
//! it is released by the kernel however the scheduler ends (even `kill -9`) and never goes stale.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

/// Held while this process schedules on a SQLite database.
#[derive(Debug)]
pub struct SchedulerLock {
    _held: Flock<File>,
}

/// The lock file of the SQLite database at `url`, or `None` for other engines and in-memory
/// databases.
fn lock_path(url: &str) -> Option<PathBuf> {
    let path = url.strip_prefix("sqlite://")?;
    let path = path.split('?').next().unwrap_or(path);
    if path.is_empty() || path.starts_with(":memory:") {
        return None;
    }
    Some(PathBuf::from(format!("{path}.scheduler.lock")))
}

/// How long a start waits for a lock another process holds before refusing. A scheduler killed
/// with `kill -9` lets go of the lock at once, except in the copy of its file table that a
/// child it was starting holds until the child's `exec` closes it, a moment later (longer on a
/// loaded machine): a restart right after a kill must not be refused for that.
const GRACE: Duration = Duration::from_secs(3);

/// Takes the scheduler lock of `url`'s SQLite database, waiting up to [`GRACE`] for it; an
/// error names the process holding it. Other engines need no lock (`None`).
pub fn acquire(url: &str) -> anyhow::Result<Option<SchedulerLock>> {
    acquire_within(url, GRACE)
}

/// [`acquire`], waiting up to `grace`.
#[allow(
    clippy::disallowed_methods,
    reason = "runs on the main thread before the async runtime exists; the wait is bounded"
)]
fn acquire_within(url: &str, grace: Duration) -> anyhow::Result<Option<SchedulerLock>> {
    let Some(path) = lock_path(url) else {
        return Ok(None);
    };
    let deadline = Instant::now() + grace;
    loop {
        match attempt(&path)? {
            Attempt::Taken(lock) => return Ok(Some(lock)),
            Attempt::Held { holder } if Instant::now() >= deadline => anyhow::bail!(
                "another scheduler (pid {holder}) is running on this SQLite database; SQLite \
                 takes one scheduler: stop that one, or use PostgreSQL ([database] url) to run \
                 several"
            ),
            Attempt::Held { .. } => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// What one try at the lock found.
enum Attempt {
    /// It is ours.
    Taken(SchedulerLock),
    /// Another process holds it; `holder` is the pid it wrote.
    Held { holder: String },
}

fn attempt(path: &Path) -> anyhow::Result<Attempt> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)
        .with_context(|| format!("cannot open the scheduler lock {}", path.display()))?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(mut held) => {
            held.set_len(0)
                .and_then(|()| held.rewind())
                .and_then(|()| write!(held, "{}", std::process::id()))
                .with_context(|| format!("cannot write {}", path.display()))?;
            Ok(Attempt::Taken(SchedulerLock { _held: held }))
        }
        Err((mut file, Errno::EWOULDBLOCK)) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            Ok(Attempt::Held {
                holder: holder.trim().to_owned(),
            })
        }
        Err((_, errno)) => Err(anyhow::anyhow!("cannot lock {}: {errno}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_file_databases_have_a_lock() {
        assert_eq!(
            lock_path("sqlite:///home/u/gust/gust.db?mode=rwc"),
            Some(PathBuf::from("/home/u/gust/gust.db.scheduler.lock"))
        );
        assert_eq!(lock_path("sqlite::memory:"), None);
        assert_eq!(lock_path("postgres://u@h/db"), None);
    }

    #[test]
    fn a_second_lock_on_the_same_database_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("gust.db").display());
        let first = acquire(&url).unwrap();
        assert!(first.is_some());
        let refused = acquire_within(&url, Duration::ZERO)
            .unwrap_err()
            .to_string();
        assert!(
            refused.contains(&format!("pid {}", std::process::id())),
            "{refused}"
        );
        drop(first);
        assert!(acquire_within(&url, Duration::ZERO).unwrap().is_some());
    }

    #[test]
    fn a_lock_let_go_of_within_the_grace_is_taken() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("gust.db").display());
        let first = acquire(&url).unwrap();
        let letting_go = std::thread::spawn(move || {
            #[allow(
                clippy::disallowed_methods,
                reason = "holds the lock a while, as a child would"
            )]
            std::thread::sleep(Duration::from_millis(300));
            drop(first);
        });
        let started = Instant::now();
        assert!(
            acquire_within(&url, Duration::from_secs(5))
                .unwrap()
                .is_some()
        );
        assert!(started.elapsed() >= Duration::from_millis(250));
        letting_go.join().unwrap();
    }
}
