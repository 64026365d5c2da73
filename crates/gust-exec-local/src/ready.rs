//! What a local try needs before its process is spawned, made in one go on the blocking pool:
//! the log file, a bash try's plan with its scratch folder, and the try's record (record.rs).
//!
//! When the scheduler says a try is about to be committed ([`gust_executor::Executor::prepare`]),
//! this is made while the commit is under way, so that once it is committed only the spawn
//! is left. Nothing made here shows the try as started: the log stays empty until the process
//! runs, and a record whose lock names no process group reads as a try that never started.
//! [`Ready::undo`] takes it all back when the commit does not go through.

use gust_operators::python::runs_in_task_sdk;
use std::fs::File;
use std::path::PathBuf;

use gust_executor::try_log::LogWriter;
use gust_executor::{FailureReason, LaunchSpec, TryOutcome};

use crate::LocalConfig;
use crate::process::Plan;
use crate::record::TryRecord;
use crate::reuse::Reuse;

/// A try readied to be spawned.
pub struct Ready {
    /// Its log, opened for appending.
    pub log: File,
    log_path: PathBuf,
    /// Whether the log was created here (and so is removed on undo).
    log_is_new: bool,
    /// The rest, or why the try cannot start, for its log.
    pub readied: Result<Readied, TryOutcome>,
}

/// The parts of a readied try beyond its log.
pub struct Readied {
    /// A bash try's plan; a pod try is planned once it starts, as planning it writes to its log.
    pub plan: Option<Plan>,
    /// Its record, when the runtime keeps records.
    pub record: Option<Recording>,
}

/// A try's record with its lock taken.
pub struct Recording {
    /// Where it is.
    pub record: TryRecord,
    /// The lock, to be handed to the process as its stdin.
    pub lock: File,
    /// A second handle on the lock's file, to write the process group through.
    pub pid_writer: File,
}

impl Ready {
    /// Readies `spec`'s try. An `Err` means not even its log could be opened.
    pub fn make(
        spec: &LaunchSpec,
        config: &LocalConfig,
        reuse: &Reuse,
    ) -> Result<Self, TryOutcome> {
        let (log, log_is_new) = LogWriter::create(&spec.log_path).map_err(|err| {
            TryOutcome::Failed(FailureReason::Log(format!(
                "{}: {err}",
                spec.log_path.display()
            )))
        })?;
        Ok(Self {
            log,
            log_path: spec.log_path.clone(),
            log_is_new,
            readied: Readied::make(spec, config, reuse),
        })
    }

    /// Takes back everything [`Ready::make`] made: the record, the scratch folder, and the log
    /// when it was made here and nothing was written to it.
    pub fn undo(self, reuse: &Reuse) {
        if let Ok(readied) = self.readied {
            if let Some(recording) = readied.record {
                recording.record.remove(reuse.spares.as_ref());
            }
            // Dropping the plan removes its scratch folder.
            drop(readied.plan);
        }
        let empty = self.log.metadata().is_ok_and(|m| m.len() == 0);
        if self.log_is_new && empty {
            let _ = std::fs::remove_file(&self.log_path);
        }
    }
}

impl Readied {
    fn make(spec: &LaunchSpec, config: &LocalConfig, reuse: &Reuse) -> Result<Self, TryOutcome> {
        let plan = match spec.operator.as_str() {
            "bash" => Some(crate::bash::plan(spec, &reuse.scratch)?),
            operator if runs_in_task_sdk(operator) => match &config.python {
                Some(python) => Some(crate::python::plan(spec, python)?),
                None => {
                    return Err(TryOutcome::Failed(FailureReason::Spawn(
                        crate::python::NO_PYTHON_RUNTIME.to_owned(),
                    )));
                }
            },
            _ => None,
        };
        let record = match &config.state_dir {
            None => None,
            Some(dir) => {
                let record = TryRecord::of(dir, &spec.key);
                let (lock, pid_writer) = record.prepare(reuse.spares.as_ref()).map_err(|err| {
                    TryOutcome::Failed(FailureReason::Spawn(format!(
                        "cannot record the try under {}: {err}",
                        dir.display()
                    )))
                })?;
                Some(Recording {
                    record,
                    lock,
                    pid_writer,
                })
            }
        };
        Ok(Self { plan, record })
    }
}
