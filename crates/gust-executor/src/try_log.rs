//! A try's log file, written the same way by every runtime: one line per output line, each
//! prefixed with its time and its source (`stdout`, `stderr`, a container's name, `gust`).

use std::path::Path;

use chrono::{DateTime, Utc};
use gust_core::clock::Clock;
use tokio::io::{AsyncWriteExt, BufWriter};

/// A try's log file: every line prefixed with its time and its source.
pub struct LogWriter<'c> {
    file: BufWriter<tokio::fs::File>,
    clock: &'c dyn Clock,
}

impl<'c> LogWriter<'c> {
    /// Opens (appending) the log at `path`, creating its folders.
    pub async fn open(path: &Path, clock: &'c dyn Clock) -> std::io::Result<Self> {
        if let Some(dir) = path.parent() {
            tokio::fs::create_dir_all(dir).await?;
        }
        let file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .await?;
        Ok(Self {
            file: BufWriter::new(file),
            clock,
        })
    }

    /// Writes one line from `source` (`stdout`, `stderr`, `gust`).
    pub async fn line(&mut self, source: &str, text: &str) -> std::io::Result<()> {
        let stamp = self.clock.now().format("%Y-%m-%dT%H:%M:%S%.3fZ");
        let line = format!("[{stamp}] {source}: {text}\n");
        self.file.write_all(line.as_bytes()).await
    }

    /// Writes one line stamped with the time it was produced (a container's own timestamp).
    pub async fn line_at(
        &mut self,
        at: DateTime<Utc>,
        source: &str,
        text: &str,
    ) -> std::io::Result<()> {
        let stamp = at.format("%Y-%m-%dT%H:%M:%S%.3fZ");
        let line = format!("[{stamp}] {source}: {text}\n");
        self.file.write_all(line.as_bytes()).await
    }

    /// Makes everything written so far visible to readers (a live tail).
    pub async fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush().await
    }
}
