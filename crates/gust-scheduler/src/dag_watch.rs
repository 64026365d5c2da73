//! Keeping the DAGs in force current while the scheduler runs.
//!
//! File notifications (inotify) trigger a reload once changes settle for a moment, so an edited
//! file is in force within about a second; a periodic rescan catches what notifications miss
//! (network filesystems, git-sync's swap of a symlinked checkout). Each reload is merged into the
//! previous [`DagBag`], so a DAG whose new version is invalid keeps its last good version and
//! shows an import error. The latest bag is published on a watch channel.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use gust_core::clock::Clock;
use gust_dagfile::{DagBag, Diagnostic, Location, PythonParser};
use notify::{RecursiveMode, Watcher};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How the folder is watched.
#[derive(Clone)]
pub struct WatchConfig {
    /// How long changes must settle before a reload (default 200 ms): an editor's save or a
    /// git checkout touches many files at once.
    pub settle: Duration,
    /// How often the folder is re-read regardless of notifications (default 30 s).
    pub rescan: Duration,
    /// Use file notifications (default true); without them only the rescan sees changes, which
    /// suits filesystems that send none.
    pub notifications: bool,
    /// What parses Python DAG files (`[python] interpreter`; default none: `.py` files are not
    /// DAG files).
    pub python: Option<Arc<dyn PythonParser>>,
    /// What cron strings and timedelta schedules mean (`[scheduler] create_cron_data_intervals`
    /// and `create_delta_data_intervals`; default: data intervals).
    pub schedules: gust_core::schedule::ScheduleDefaults,
}

impl std::fmt::Debug for WatchConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchConfig")
            .field("settle", &self.settle)
            .field("rescan", &self.rescan)
            .field("notifications", &self.notifications)
            .field("python", &self.python.is_some())
            .field("schedules", &self.schedules)
            .finish()
    }
}

impl Default for WatchConfig {
    fn default() -> Self {
        Self {
            settle: Duration::from_millis(200),
            rescan: Duration::from_secs(30),
            notifications: true,
            python: None,
            schedules: gust_core::schedule::ScheduleDefaults::default(),
        }
    }
}

/// Loads `root` now, then keeps reloading it until `cancel`. Returns the channel of bags (already
/// holding the first load) and the watching task.
pub async fn watch_folder(
    root: PathBuf,
    config: WatchConfig,
    clock: Arc<dyn Clock>,
    cancel: CancellationToken,
) -> (watch::Receiver<Arc<DagBag>>, JoinHandle<()>) {
    let mut bag = DagBag::default();
    let python = config.python.clone();
    reload(
        &root,
        clock.as_ref(),
        python.clone(),
        config.schedules,
        &mut bag,
    )
    .await;
    let (publish, bags) = watch::channel(Arc::new(bag.clone()));
    // Capacity 1: a pending "something changed" is all the watcher needs to know.
    let (dirty_tx, mut dirty) = mpsc::channel::<()>(1);
    let watcher = config.notifications.then(|| {
        notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            // Reads (opening and closing a file unchanged) are not changes: the reload's own
            // reads would otherwise start the next reload, re-parsing the folder forever.
            if event.is_ok_and(|e| !matches!(e.kind, notify::EventKind::Access(_))) {
                let _ = dirty_tx.try_send(());
            }
        })
        .and_then(|mut w| w.watch(&root, RecursiveMode::Recursive).map(|()| w))
    });
    let task = tokio::spawn(async move {
        // Without notifications (an unsupported filesystem) the periodic rescan still works.
        let _watcher = watcher.and_then(Result::ok);
        let mut rescan = tokio::time::interval(config.rescan);
        rescan.tick().await;
        loop {
            tokio::select! {
                () = cancel.cancelled() => break,
                Some(()) = dirty.recv() => {
                    // Let a burst of changes settle, then reload once.
                    tokio::time::sleep(config.settle).await;
                    while dirty.try_recv().is_ok() {}
                }
                _ = rescan.tick() => {}
            }
            if reload(
                &root,
                clock.as_ref(),
                python.clone(),
                config.schedules,
                &mut bag,
            )
            .await
            {
                publish.send_replace(Arc::new(bag.clone()));
            }
        }
    });
    (bags, task)
}

/// Re-reads the folder into `bag`; `true` when anything a reader would see changed.
async fn reload(
    root: &Path,
    clock: &dyn Clock,
    python: Option<Arc<dyn PythonParser>>,
    schedules: gust_core::schedule::ScheduleDefaults,
    bag: &mut DagBag,
) -> bool {
    let now = clock.now();
    let dir = root.to_path_buf();
    let loaded = tokio::task::spawn_blocking(move || {
        let with = gust_dagfile::LoadWith {
            python: python.as_deref(),
            schedules,
        };
        gust_dagfile::load_folder_with(&dir, now, with)
    })
    .await;
    match loaded {
        Ok(Ok(load)) => {
            let problems_before = bag.problems.clone();
            let changes = bag.update(load);
            !changes.is_empty() || bag.problems != problems_before
        }
        Ok(Err(err)) => {
            // The folder is gone (perhaps mid-swap): keep the DAGs in force and say why.
            bag.problems = vec![Diagnostic::new(
                Location::start_of(root.into()),
                err.to_string(),
            )];
            true
        }
        Err(join) => {
            bag.problems = vec![Diagnostic::new(
                Location::start_of(root.into()),
                format!("loading DAGs crashed: {join}"),
            )];
            true
        }
    }
}
