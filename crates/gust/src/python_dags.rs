//! Python DAG files (`[python] interpreter`): the local runtime's Airflow parser, with each
//! file's result kept while the file is unchanged and younger than `[dag_processor]
//! min_file_process_interval` (Airflow re-parses files on that interval, so DAGs that read
//! something else when parsed change as on Airflow), given to DAG loading as a
//! [`PythonParser`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use gust_dagfile::python::ImportError;
use gust_dagfile::{ParsedFile, PythonParser};
use gust_exec_local::DagParser;

use crate::config::Config;

/// Parses Python DAG files with Airflow, remembering results of unchanged files for a while.
pub struct PythonDags {
    parser: DagParser,
    /// How long a result is kept for an unchanged file.
    refresh: Duration,
    cache: Mutex<HashMap<PathBuf, Cached>>,
}

struct Cached {
    stamp: Stamp,
    at: Instant,
    result: ParsedFile,
}

/// What tells a changed file: its modification time and size.
#[derive(PartialEq, Eq, Clone, Copy)]
struct Stamp(Option<SystemTime>, u64);

fn stamp(path: &Path) -> Stamp {
    std::fs::metadata(path).map_or(Stamp(None, 0), |m| Stamp(m.modified().ok(), m.len()))
}

impl PythonDags {
    /// The parser of `config`'s Python environment, if one is configured; its Airflow home is
    /// under `work_dir`.
    #[must_use]
    pub fn from_config(config: &Config, work_dir: &Path) -> Option<Arc<Self>> {
        let interpreter = config.python.interpreter.clone()?;
        let mut parser = DagParser::new(interpreter, work_dir.join("airflow-home"));
        parser.timeout = config.dag_processor.dag_file_processor_timeout;
        parser.parallelism = config.dag_processor.parsing_processes;
        Some(Arc::new(Self {
            parser,
            refresh: config.dag_processor.min_file_process_interval,
            cache: Mutex::new(HashMap::new()),
        }))
    }

    fn run(&self, files: &[PathBuf], bundle: &Path) -> Vec<ParsedFile> {
        let parser = self.parser.clone();
        let (files_owned, bundle) = (files.to_vec(), bundle.to_path_buf());
        // Folder loads are blocking code (on a blocking thread, or the CLI's): the parser is
        // driven by a small runtime of its own on a thread of its own.
        let answered = std::thread::scope(|scope| {
            scope
                .spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(|err| err.to_string())?;
                    runtime
                        .block_on(parser.parse(&files_owned, &bundle))
                        .map_err(|err| error_chain(&err))
                })
                .join()
                .unwrap_or_else(|_| Err("the Python DAG parser's thread panicked".to_owned()))
        });
        match answered {
            Ok(values) => {
                let mut results: Vec<ParsedFile> = values
                    .into_iter()
                    .filter_map(|value| {
                        let file = value.get("file").cloned();
                        serde_json::from_value::<ParsedFile>(value).map_or_else(
                            |err| {
                                file.and_then(|f| serde_json::from_value::<PathBuf>(f).ok())
                                    .map(|file| failed(file, &format!("Gust could not read what Airflow made of the file: {err}")))
                            },
                            Some,
                        )
                    })
                    .collect();
                // A file the parser did not answer for (it should not happen) says so.
                for file in files {
                    if !results.iter().any(|r| &r.file == file) {
                        results.push(failed(
                            file.clone(),
                            "the Python DAG parser gave no answer for the file",
                        ));
                    }
                }
                results
            }
            Err(why) => files
                .iter()
                .map(|file| {
                    failed(
                        file.clone(),
                        &format!("{why}; check the environment with `gust python check`"),
                    )
                })
                .collect(),
        }
    }
}

fn failed(file: PathBuf, message: &str) -> ParsedFile {
    ParsedFile {
        file,
        dags: Vec::new(),
        errors: vec![ImportError {
            message: message.to_owned(),
        }],
        seconds: 0.0,
    }
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

impl PythonParser for PythonDags {
    fn parse(&self, files: &[PathBuf], bundle: &Path) -> Vec<ParsedFile> {
        let now = Instant::now();
        let mut kept = Vec::new();
        let mut stale = Vec::new();
        {
            let cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
            for file in files {
                match cache.get(file) {
                    Some(c)
                        if c.stamp == stamp(file) && now.duration_since(c.at) < self.refresh =>
                    {
                        kept.push(c.result.clone());
                    }
                    _ => stale.push(file.clone()),
                }
            }
        }
        if !stale.is_empty() {
            let stamps: Vec<Stamp> = stale.iter().map(|f| stamp(f)).collect();
            let fresh = self.run(&stale, bundle);
            let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
            cache.retain(|file, _| files.contains(file));
            for (file, stamp) in stale.iter().zip(stamps) {
                if let Some(result) = fresh.iter().find(|r| &r.file == file) {
                    cache.insert(
                        file.clone(),
                        Cached {
                            stamp,
                            at: now,
                            result: result.clone(),
                        },
                    );
                }
            }
            kept.extend(fresh);
        }
        kept
    }
}
