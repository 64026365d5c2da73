//! Python DAG files parsed by Airflow itself (`dag_parse.py`), as Airflow 3's DAG processor
//! parses them: one Python process imports Airflow once, then forks children (at most
//! `parallelism` at once), each parsing a batch of files one after another with Airflow's
//! `BundleDagBag` and serializing their DAGs with Airflow's `DagSerialization`; a child still on
//! one file past `timeout` (`[dag_processor] dag_file_processor_timeout`) is killed, that file
//! gets an import error and the rest of its batch goes to another child. Each file's result is
//! one JSON line, which the caller reads (gust-dagfile's `ParsedFile`).
//!
//! This module runs the parser and nothing else: it neither caches nor reads the results.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;

/// The script that parses the files.
const PARSER: &str = include_str!("dag_parse.py");

/// The most one file's result may weigh once read (bytes); a file past it gets an import error.
pub const MAX_RESULT_BYTES: usize = 16 * 1024 * 1024;

/// How long the parser may take to import Airflow before the first file (Airflow's import is a
/// few seconds; a cold disk or a slow provider's import more).
const STARTUP_ALLOWANCE: Duration = Duration::from_secs(120);

/// How Python DAG files are parsed.
#[derive(Debug, Clone)]
pub struct DagParser {
    /// The Python environment (`[python] interpreter`).
    pub interpreter: PathBuf,
    /// Airflow's home for the parser (its configuration and logs; no database is used).
    pub airflow_home: PathBuf,
    /// How long one file may take (default 50 s, Airflow's `[dag_processor]
    /// dag_file_processor_timeout`).
    pub timeout: Duration,
    /// How many files are parsed at once (default 2, Airflow's `[dag_processor] parsing_processes`).
    pub parallelism: usize,
}

impl DagParser {
    /// A parser with Airflow's defaults.
    #[must_use]
    pub fn new(interpreter: PathBuf, airflow_home: PathBuf) -> Self {
        Self {
            interpreter,
            airflow_home,
            timeout: Duration::from_secs(50),
            parallelism: 2,
        }
    }
}

/// Why the parser could not run.
#[derive(Debug, thiserror::Error)]
pub enum DagParseError {
    /// The interpreter could not be started.
    #[error("cannot start {}", interpreter.display())]
    Spawn {
        /// The interpreter.
        interpreter: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Reading or writing the parser's pipes failed.
    #[error("cannot talk to the Python DAG parser")]
    Pipe(#[source] std::io::Error),
    /// The parser ended before answering every file.
    #[error("the Python DAG parser ({}) ended early: {stderr}", interpreter.display())]
    EndedEarly {
        /// The interpreter.
        interpreter: PathBuf,
        /// The last lines it wrote on stderr (Python's traceback: Airflow missing...).
        stderr: String,
    },
    /// The parser was silent for longer than a file may take.
    #[error("the Python DAG parser answered nothing for {}s", waited.as_secs())]
    Silent {
        /// How long.
        waited: Duration,
    },
}

impl DagParser {
    /// Parses `files` with `bundle` (the DAGs folder) on `sys.path`; answers each file's result
    /// as the parser wrote it, in the order they ended. Results for files the parser answered
    /// before failing are lost with the error: the caller reports the error for every file.
    pub async fn parse(
        &self,
        files: &[PathBuf],
        bundle: &Path,
    ) -> Result<Vec<serde_json::Value>, DagParseError> {
        std::fs::create_dir_all(&self.airflow_home).map_err(DagParseError::Pipe)?;
        let request = serde_json::json!({
            "files": files,
            "bundle_path": bundle,
            "timeout": self.timeout.as_secs_f64(),
            "parallelism": self.parallelism.max(1),
            "max_bytes": MAX_RESULT_BYTES,
        });
        let mut child = Command::new(&self.interpreter)
            .arg("-c")
            .arg(PARSER)
            .env("AIRFLOW_HOME", &self.airflow_home)
            .env("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
            .env("AIRFLOW__CORE__DAGS_FOLDER", bundle)
            .env("AIRFLOW__DAG_FACTORY__ENABLE_TELEMETRY", "False")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| DagParseError::Spawn {
                interpreter: self.interpreter.clone(),
                source,
            })?;
        let (Some(mut stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(DagParseError::Pipe(std::io::Error::other(
                "the parser's pipes are missing",
            )));
        };
        stdin
            .write_all(request.to_string().as_bytes())
            .await
            .map_err(DagParseError::Pipe)?;
        drop(stdin);
        // The DAG files' own output goes to stderr: only its end is kept, for an early exit.
        let tail = tokio::spawn(keep_tail(stderr));
        let mut lines = BufReader::new(stdout).lines();
        let mut results = Vec::with_capacity(files.len());
        let mut ready = false;
        while results.len() < files.len() {
            let wait = if ready {
                self.timeout + Duration::from_secs(30)
            } else {
                STARTUP_ALLOWANCE
            };
            let line = match tokio::time::timeout(wait, lines.next_line()).await {
                Ok(line) => line.map_err(DagParseError::Pipe)?,
                Err(_) => {
                    let _ = child.kill().await;
                    return Err(DagParseError::Silent { waited: wait });
                }
            };
            let Some(line) = line else {
                let _ = child.wait().await;
                let stderr = tail.await.unwrap_or_default();
                return Err(DagParseError::EndedEarly {
                    interpreter: self.interpreter.clone(),
                    stderr,
                });
            };
            let Ok(value) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            if value.get("ready").is_some() {
                ready = true;
            } else {
                results.push(value);
            }
        }
        let _ = child.wait().await;
        tail.abort();
        Ok(results)
    }
}

/// The last lines of `stderr` (at most 2 KiB of them), once it closes.
async fn keep_tail(mut stderr: tokio::process::ChildStderr) -> String {
    const KEEP: usize = 2048;
    let mut kept: Vec<u8> = Vec::new();
    let mut buffer = [0u8; 8192];
    while let Ok(n) = stderr.read(&mut buffer).await {
        if n == 0 {
            break;
        }
        kept.extend_from_slice(&buffer[..n]);
        if kept.len() > 2 * KEEP {
            kept.drain(..kept.len() - KEEP);
        }
    }
    let start = kept.len().saturating_sub(KEEP);
    let text = String::from_utf8_lossy(&kept[start..]);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(5)..].join(" | ")
}
