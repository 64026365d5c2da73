//! Remote task logs (Airflow's `remote_logging`): when a try ends, its log file is uploaded to
//! object storage, at the same relative path under `remote_base_log_folder` as under the local
//! `base_log_folder`, BEFORE the try's end reaches the scheduler, so that no finished try ever
//! lacks its remote log; an API server that lost (or never had) the local file reads it back
//! from the store.
//!
//! It sits between the runtimes and the scheduler and changes neither: [`RemoteLogs::executor`]
//! wraps the runtimes' [`Executor`] to learn each try's log file (at start and at adoption, so
//! tries adopted after a restart are uploaded too), and [`RemoteLogs::relay`] stands on the
//! event channel, forwarding `Started` at once and each `Finished` once its upload is done,
//! several uploads at a time. An upload that keeps failing is noted in the local log and the
//! event goes on: a try's end is never held back for good by a store. It must not know about
//! DAG files, the database or HTTP; stores are reached only through [`LogStore`] (the artifact
//! layer in production).
//!
//! Start reading at [`RemoteLogs`]; `relay` holds the event relay and the executor decorator,
//! [`layout`] the path mapping.

pub mod layout;
mod relay;
mod store;

use std::collections::HashMap;
use std::io::SeekFrom;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use gust_core::clock::Clock;
use gust_executor::{Executor, LaunchSpec, TryKey};
use tokio_util::task::TaskTracker;

pub use gust_artifacts::ObjectSlice;
pub use relay::Relay;
pub use store::{LogStore, StoreFailure};

/// How logs are uploaded.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct RemoteLogOptions {
    /// How many logs are uploaded at once (default 8): more tries ending together wait, their
    /// events held until their turn; other events pass.
    pub concurrency: usize,
    /// How many times an upload is tried before the try's end goes on without it (default 3;
    /// each try already retries its requests, see [`gust_artifacts::TransferOptions`]).
    pub attempts: u32,
    /// The wait before the second try, doubled for each further one (default 1 s).
    pub initial_backoff: Duration,
    /// Delete a try's local log once it is uploaded and the try's end is recorded (Airflow's
    /// `delete_local_logs`; default false).
    pub delete_local_logs: bool,
}

impl Default for RemoteLogOptions {
    fn default() -> Self {
        Self {
            concurrency: 8,
            attempts: 3,
            initial_backoff: Duration::from_secs(1),
            delete_local_logs: false,
        }
    }
}

/// Tries' logs in a store under one base URI: uploaded by the [`Relay`], read back by the API
/// server. Cheap to clone.
#[derive(Clone)]
pub struct RemoteLogs(Arc<Shared>);

struct Shared {
    store: Arc<dyn LogStore>,
    base_uri: String,
    local_root: PathBuf,
    options: RemoteLogOptions,
    clock: Arc<dyn Clock>,
    /// The log file of every try started or adopted and not yet released, and whether it was
    /// uploaded.
    tries: Mutex<HashMap<TryKey, TryLog>>,
    /// Deletions of uploaded local logs.
    cleanup: TaskTracker,
}

struct TryLog {
    path: PathBuf,
    uploaded: bool,
}

impl std::fmt::Debug for RemoteLogs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteLogs")
            .field("base_uri", &self.0.base_uri)
            .field("local_root", &self.0.local_root)
            .field("options", &self.0.options)
            .finish_non_exhaustive()
    }
}

impl RemoteLogs {
    /// Logs kept in `store` under `base_uri`, mirroring the local folder `local_root`
    /// (`[logging] base_log_folder`), with the default [`RemoteLogOptions`].
    #[must_use]
    pub fn new(
        store: Arc<dyn LogStore>,
        base_uri: impl Into<String>,
        local_root: impl Into<PathBuf>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self(Arc::new(Shared {
            store,
            base_uri: base_uri.into(),
            local_root: local_root.into(),
            options: RemoteLogOptions::default(),
            clock,
            tries: Mutex::new(HashMap::new()),
            cleanup: TaskTracker::new(),
        }))
    }

    /// The same logs with other options.
    #[must_use]
    pub fn with_options(self, options: RemoteLogOptions) -> Self {
        let shared = &self.0;
        Self(Arc::new(Shared {
            store: shared.store.clone(),
            base_uri: shared.base_uri.clone(),
            local_root: shared.local_root.clone(),
            options,
            clock: shared.clock.clone(),
            tries: Mutex::new(HashMap::new()),
            cleanup: TaskTracker::new(),
        }))
    }

    /// The base URI logs go under.
    #[must_use]
    pub fn base_uri(&self) -> &str {
        &self.0.base_uri
    }

    /// The object `key`'s log is (or will be) at.
    #[must_use]
    pub fn uri_of(&self, key: &TryKey) -> String {
        layout::uri(&self.0.base_uri, &layout::relative(key))
    }

    /// At most `max_len` bytes of `key`'s remote log from `from`, with its size; `None` when the
    /// store holds no log for it (yet).
    pub async fn read(
        &self,
        key: &TryKey,
        from: SeekFrom,
        max_len: u64,
    ) -> Result<Option<ObjectSlice>, StoreFailure> {
        self.0.store.read(&self.uri_of(key), from, max_len).await
    }

    /// `runtimes` with this store learning each try's log file as it is started or adopted,
    /// and deleting uploaded local logs once released (with `delete_local_logs`). The
    /// scheduler must be given this executor, and the runtimes must report to [`Self::relay`].
    #[must_use]
    pub fn executor(&self, runtimes: Arc<dyn Executor>) -> Arc<dyn Executor> {
        Arc::new(relay::Uploading::new(runtimes, self.clone()))
    }

    /// Starts the relay forwarding the runtimes' events to `to_scheduler`, each try's end after
    /// its log's upload. Runtimes report to [`Relay::sender`].
    #[must_use]
    pub fn relay(&self, to_scheduler: tokio::sync::mpsc::Sender<gust_executor::TryEvent>) -> Relay {
        Relay::start(self.clone(), to_scheduler)
    }

    fn tries(&self) -> MutexGuard<'_, HashMap<TryKey, TryLog>> {
        // Single inserts, updates and removes: a poisoned map is still whole.
        self.0.tries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Remembers where `spec`'s try writes its log.
    fn track(&self, spec: &LaunchSpec) {
        self.tries().insert(
            spec.key.clone(),
            TryLog {
                path: spec.log_path.clone(),
                uploaded: false,
            },
        );
    }

    /// The local log file of `key`: as it was started, else where the local layout puts it.
    fn local_path(&self, key: &TryKey) -> PathBuf {
        self.tries().get(key).map_or_else(
            || self.0.local_root.join(layout::relative(key)),
            |t| t.path.clone(),
        )
    }

    /// Where `path`, `key`'s local log, goes in the store: the same path relative to the base.
    fn uri_for(&self, key: &TryKey, path: &Path) -> String {
        let relative =
            layout::relative_to(&self.0.local_root, path).unwrap_or_else(|| layout::relative(key));
        layout::uri(&self.0.base_uri, &relative)
    }

    fn mark_uploaded(&self, key: &TryKey, path: &Path) {
        self.tries()
            .entry(key.clone())
            .and_modify(|t| t.uploaded = true)
            .or_insert_with(|| TryLog {
                path: path.to_path_buf(),
                uploaded: true,
            });
    }

    /// Forgets `key`; its local log is deleted when it was uploaded and `delete_local_logs`
    /// is set.
    fn release(&self, key: &TryKey) {
        let Some(log) = self.tries().remove(key) else {
            return;
        };
        if !(log.uploaded && self.0.options.delete_local_logs) {
            return;
        }
        let root = self.0.local_root.clone();
        let remove = async move {
            if let Err(err) = tokio::fs::remove_file(&log.path).await {
                tracing::warn!(path = %log.path.display(), %err, "could not delete an uploaded local log");
                return;
            }
            // Empty folders of the layout go too (a non-empty one stays).
            let mut folder = log.path.parent();
            while let Some(dir) = folder.filter(|d| d.starts_with(&root) && *d != root) {
                if tokio::fs::remove_dir(dir).await.is_err() {
                    break;
                }
                folder = dir.parent();
            }
        };
        if tokio::runtime::Handle::try_current().is_ok() {
            self.0.cleanup.spawn(remove);
        }
    }

    /// Waits for pending deletions of local logs.
    async fn cleaned_up(&self) {
        self.0.cleanup.close();
        self.0.cleanup.wait().await;
    }
}
