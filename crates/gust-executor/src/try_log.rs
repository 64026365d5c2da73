//! A try's log file, written the same way by every runtime: one line per output line, each
//! prefixed with its time and its source (`stdout`, `stderr`, a container's name, `gust`), and
//! every secret the process knows masked (`gust_secrets`) before it reaches the file, so neither
//! the file nor its remote copy ever holds one.
//!
//! The file work (folders, opening, appending) runs on tokio's blocking pool, a few pieces at
//! once across the process: ten thousand tries starting or poking together (a mapped task's
//! pods, waiting sensors) would otherwise grow the pool towards its 512 threads, each keeping
//! its stack and its allocator arena, for a few microseconds of writing each.

use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use gust_core::clock::Clock;
use tokio::sync::Semaphore;

/// How many pieces of try-log file work run on the blocking pool at once, process-wide.
const FILE_WORK_AT_ONCE: usize = 4;
static FILE_WORK: Semaphore = Semaphore::const_new(FILE_WORK_AT_ONCE);

/// Lines are written once this much is buffered (or on [`LogWriter::flush`]).
const BUFFERED: usize = 8 * 1024;

/// Runs `work` on the blocking pool once a [`FILE_WORK`] permit is free.
async fn file_work<T: Send + 'static>(
    work: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    let _permit = FILE_WORK.acquire().await.map_err(std::io::Error::other)?;
    tokio::task::spawn_blocking(work)
        .await
        .map_err(std::io::Error::other)?
}

/// A try's log file: every line prefixed with its time and its source.
pub struct LogWriter<'c> {
    /// Shared with a write under way, so that a flush dropped half-way loses no file.
    file: Arc<std::fs::File>,
    /// Lines not yet written.
    pending: Vec<u8>,
    clock: &'c dyn Clock,
}

impl<'c> LogWriter<'c> {
    /// Opens (appending) the log at `path`, creating its folders.
    pub async fn open(path: &Path, clock: &'c dyn Clock) -> std::io::Result<Self> {
        let path = path.to_owned();
        // One trip to the blocking pool for the folders and the file, not one for each.
        let (file, _new) = file_work(move || Self::create(&path)).await?;
        Ok(Self::from_file(file, clock))
    }

    /// Opens (appending) the log at `path`, creating its folders, without waiting on the
    /// runtime: for callers already off it. Also says whether the file is new.
    ///
    /// A log may hold what a task printed about its data, so new folders are its owner's alone
    /// (0700) and a new file is too (0600), as the key files in `GUST_HOME` are.
    pub fn create(path: &Path) -> std::io::Result<(std::fs::File, bool)> {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        if let Some(dir) = path.parent() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)?;
        }
        let mut options = std::fs::OpenOptions::new();
        options.append(true).mode(0o600);
        match options.clone().create_new(true).open(path) {
            Ok(file) => Ok((file, true)),
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
                Ok((options.open(path)?, false))
            }
            Err(err) => Err(err),
        }
    }

    /// A writer on `file`, opened with [`LogWriter::create`].
    pub fn from_file(file: std::fs::File, clock: &'c dyn Clock) -> Self {
        Self {
            file: Arc::new(file),
            pending: Vec::new(),
            clock,
        }
    }

    /// Writes one line from `source` (`stdout`, `stderr`, `gust`), secrets masked.
    pub async fn line(&mut self, source: &str, text: &str) -> std::io::Result<()> {
        let at = self.clock.now();
        self.line_at(at, source, text).await
    }

    /// Writes one line stamped with the time it was produced (a container's own timestamp),
    /// secrets masked.
    pub async fn line_at(
        &mut self,
        at: DateTime<Utc>,
        source: &str,
        text: &str,
    ) -> std::io::Result<()> {
        let stamp = at.format("%Y-%m-%dT%H:%M:%S%.3fZ");
        let masker = gust_secrets::current();
        let text = masker.mask(text);
        writeln!(self.pending, "[{stamp}] {source}: {text}")?;
        if self.pending.len() >= BUFFERED {
            self.flush().await?;
        }
        Ok(())
    }

    /// Makes everything written so far visible to readers (a live tail).
    pub async fn flush(&mut self) -> std::io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let lines = std::mem::take(&mut self.pending);
        let file = Arc::clone(&self.file);
        file_work(move || (&*file).write_all(&lines)).await
    }
}

/// Writes the log of a try that ended before any runtime had it (its templates did not render,
/// its pool does not exist): one `gust` line with the reason, so that every try that counted has
/// a log saying why it ended.
pub async fn write_failure(path: &Path, clock: &dyn Clock, why: &str) -> std::io::Result<()> {
    let mut log = LogWriter::open(path, clock).await?;
    for line in why.lines() {
        log.line("gust", line).await?;
    }
    log.flush().await
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn new_logs_and_their_folders_are_their_owners_alone() {
        let root = std::env::temp_dir().join(format!("gust-try-log-{}", std::process::id()));
        let path = root.join("dag_id=d/run_id=r/task_id=t/attempt=1.log");
        let (_, new) = LogWriter::create(&path).unwrap();
        assert!(new);
        assert_eq!(mode(&path), 0o600);
        for folder in [
            "",
            "dag_id=d",
            "dag_id=d/run_id=r",
            "dag_id=d/run_id=r/task_id=t",
        ] {
            assert_eq!(mode(&root.join(folder)), 0o700, "{folder}");
        }
        let (_, new) = LogWriter::create(&path).unwrap();
        assert!(!new, "an existing log is appended to");
        std::fs::remove_dir_all(&root).unwrap();
    }
}
