//! The DAGs folder is watched: additions, edits (good and broken) and deletions are in force
//! within about a second, without a restart.

use std::sync::Arc;
use std::time::{Duration, Instant};

use gust_core::clock::SystemClock;
use gust_dagfile::DagBag;
use gust_scheduler::dag_watch::{WatchConfig, watch_folder};
use tokio::sync::watch::Receiver;
use tokio_util::sync::CancellationToken;

/// Waits (at most 5 s) for a bag satisfying `ok`, returning how long it took.
async fn until(bags: &mut Receiver<Arc<DagBag>>, ok: impl Fn(&DagBag) -> bool) -> Duration {
    let start = Instant::now();
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if ok(&bags.borrow_and_update()) {
                return;
            }
            bags.changed().await.expect("the watcher is alive");
        }
    })
    .await
    .expect("the change was picked up");
    start.elapsed()
}

fn has(bag: &DagBag, id: &str, tasks: usize) -> bool {
    bag.dags()
        .any(|e| e.dag.id.as_str() == id && e.dag.tasks().len() == tasks)
}

#[tokio::test]
async fn dag_folder_changes_are_picked_up_within_a_second() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cancel = CancellationToken::new();
    let (mut bags, task) = watch_folder(
        dir.path().to_path_buf(),
        WatchConfig::default(),
        Arc::new(SystemClock),
        cancel.clone(),
    )
    .await;
    assert_eq!(bags.borrow().dags().count(), 0);

    let file = dir.path().join("team/d.yaml");
    std::fs::create_dir_all(file.parent().expect("parent")).expect("mkdir");
    std::fs::write(&file, "d:\n  tasks: {a: {operator: empty}}\n").expect("write");
    let took = until(&mut bags, |b| has(b, "d", 1)).await;
    assert!(took < Duration::from_secs(2), "added after {took:?}");

    std::fs::write(
        &file,
        "d:\n  tasks: {a: {operator: empty}, b: {operator: empty}}\n",
    )
    .expect("write");
    until(&mut bags, |b| has(b, "d", 2)).await;

    // A broken edit: the last good version stays in force, with an import error beside it.
    std::fs::write(&file, "d:\n  tasks: {a: {operator: nope}}\n").expect("write");
    until(&mut bags, |b| !b.problems.is_empty()).await;
    let bag = bags.borrow().clone();
    assert!(has(&bag, "d", 2));
    assert!(bag.dags().all(|e| e.stale));

    std::fs::remove_file(&file).expect("remove");
    until(&mut bags, |b| {
        b.dags().count() == 0 && b.problems.is_empty()
    })
    .await;

    cancel.cancel();
    task.await.expect("the watcher stops cleanly");
}

#[tokio::test]
async fn the_periodic_rescan_works_without_notifications() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cancel = CancellationToken::new();
    let config = WatchConfig {
        settle: Duration::from_millis(10),
        rescan: Duration::from_millis(100),
        notifications: false,
        python: None,
        ..WatchConfig::default()
    };
    let (mut bags, task) = watch_folder(
        dir.path().to_path_buf(),
        config,
        Arc::new(SystemClock),
        cancel.clone(),
    )
    .await;
    std::fs::write(
        dir.path().join("d.yaml"),
        "d:\n  tasks: {a: {operator: empty}}\n",
    )
    .expect("write");
    until(&mut bags, |b| has(b, "d", 1)).await;
    cancel.cancel();
    task.await.expect("stops");
}

/// Counts the parses of the folder's Python files; parses nothing.
#[derive(Default)]
struct CountingParser(std::sync::atomic::AtomicUsize);

impl gust_dagfile::PythonParser for CountingParser {
    fn parse(
        &self,
        files: &[std::path::PathBuf],
        _bundle: &std::path::Path,
    ) -> Vec<gust_dagfile::ParsedFile> {
        self.0
            .fetch_add(files.len(), std::sync::atomic::Ordering::SeqCst);
        Vec::new()
    }
}

#[tokio::test]
async fn an_unchanged_folder_is_not_read_again_until_the_rescan() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("d.py"), "from airflow import DAG\n").expect("write");
    std::fs::write(
        dir.path().join("e.yaml"),
        "e:\n  tasks: {a: {operator: empty}}\n",
    )
    .expect("write");
    let parser = Arc::new(CountingParser::default());
    let cancel = CancellationToken::new();
    let config = WatchConfig {
        python: Some(parser.clone()),
        ..WatchConfig::default()
    };
    let (_bags, task) = watch_folder(
        dir.path().to_path_buf(),
        config,
        Arc::new(SystemClock),
        cancel.clone(),
    )
    .await;
    // Reading the files for a load is not a change to them: no load follows the first.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(parser.0.load(std::sync::atomic::Ordering::SeqCst), 1);

    // An edit is one.
    std::fs::write(
        dir.path().join("d.py"),
        "from airflow import DAG  # edited\n",
    )
    .expect("write");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(parser.0.load(std::sync::atomic::Ordering::SeqCst), 2);

    cancel.cancel();
    task.await.expect("the watcher stops cleanly");
}
