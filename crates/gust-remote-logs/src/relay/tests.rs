//! The relay's ordering and failure handling, against a scripted store whose uploads end when
//! the test says so.

use std::collections::HashMap;
use std::io::SeekFrom;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use gust_core::clock::SystemClock;
use gust_core::ids::{DagId, RunId, TaskId, TryNumber};
use gust_executor::{
    Executor, FailureReason, LaunchError, LaunchSpec, TryEvent, TryEventKind, TryKey, TryOutcome,
};
use tokio::sync::{Semaphore, mpsc};

use crate::{LogStore, ObjectSlice, RemoteLogOptions, RemoteLogs, StoreFailure};

/// A store that records what happened, in order, and can hold uploads until the test lets them
/// through or make them fail.
#[derive(Default)]
struct Scripted {
    journal: Mutex<Vec<String>>,
    objects: Mutex<HashMap<String, Vec<u8>>>,
    /// When set, each upload waits for a permit.
    gate: Option<Arc<Semaphore>>,
    /// When set, every upload fails this way.
    failure: Option<StoreFailure>,
}

impl Scripted {
    fn note(&self, line: String) {
        self.journal.lock().unwrap().push(line);
    }
    fn journal(&self) -> Vec<String> {
        self.journal.lock().unwrap().clone()
    }
    /// Waits (at most 10 s) until the journal has `n` lines.
    async fn wait_for(&self, n: usize) {
        for _ in 0..1000 {
            if self.journal().len() >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the journal never reached {n} lines: {:?}", self.journal());
    }
}

impl LogStore for Scripted {
    fn put<'a>(&'a self, file: &'a Path, uri: &'a str) -> BoxFuture<'a, Result<(), StoreFailure>> {
        Box::pin(async move {
            self.note(format!("put {uri}"));
            if let Some(gate) = &self.gate {
                gate.acquire().await.unwrap().forget();
            }
            if let Some(failure) = &self.failure {
                return Err(failure.clone());
            }
            let bytes = tokio::fs::read(file).await.unwrap();
            self.objects.lock().unwrap().insert(uri.to_owned(), bytes);
            self.note(format!("stored {uri}"));
            Ok(())
        })
    }

    fn read<'a>(
        &'a self,
        uri: &'a str,
        _from: SeekFrom,
        _max_len: u64,
    ) -> BoxFuture<'a, Result<Option<ObjectSlice>, StoreFailure>> {
        Box::pin(async move {
            Ok(self.objects.lock().unwrap().get(uri).map(|b| ObjectSlice {
                bytes: b.clone().into(),
                start: 0,
                size: b.len() as u64,
            }))
        })
    }
}

/// Runtimes that run nothing: the tests send their events themselves.
struct Idle;

impl Executor for Idle {
    fn start(&self, _spec: LaunchSpec) -> Result<(), LaunchError> {
        Ok(())
    }
    fn kill(&self, _key: &TryKey, _reason: &str) {}
    fn running(&self) -> usize {
        0
    }
    fn adopt(&self, _spec: LaunchSpec) {}
    fn release(&self, _key: &TryKey) {}
}

fn key(task: &str) -> TryKey {
    TryKey {
        dag_id: DagId::new("d").unwrap(),
        run_id: RunId::new("manual__1").unwrap(),
        task_id: TaskId::new(task).unwrap(),
        map_index: gust_core::mapping::UNMAPPED,
        try_number: TryNumber(1),
    }
}

fn spec(key: &TryKey, log_path: PathBuf) -> LaunchSpec {
    LaunchSpec {
        key: key.clone(),
        operator: "bash".into(),
        args: serde_json::Map::new(),
        do_xcom_push: false,
        execution_timeout: None,
        log_path,
        dag_file: PathBuf::from("/dags/d.yaml"),
        context: Default::default(),
    }
}

fn finished(key: &TryKey) -> TryEvent {
    TryEvent {
        key: key.clone(),
        kind: TryEventKind::Finished(TryOutcome::Succeeded { xcom: None }),
    }
}

fn started(key: &TryKey) -> TryEvent {
    TryEvent {
        key: key.clone(),
        kind: TryEventKind::Started,
    }
}

struct Harness {
    dir: tempfile::TempDir,
    store: Arc<Scripted>,
    logs: RemoteLogs,
    executor: Arc<dyn Executor>,
    to_relay: mpsc::Sender<TryEvent>,
    scheduler: mpsc::Receiver<TryEvent>,
    relay: crate::Relay,
}

impl Harness {
    fn new(store: Scripted, options: RemoteLogOptions) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(store);
        let logs = RemoteLogs::new(
            store.clone(),
            "s3://bucket/logs",
            dir.path().join("logs"),
            Arc::new(SystemClock),
        )
        .with_options(options);
        let (to_scheduler, scheduler) = gust_executor::event_channel();
        let relay = logs.relay(to_scheduler);
        let executor = logs.executor(Arc::new(Idle));
        Self {
            to_relay: relay.sender(),
            dir,
            store,
            logs,
            executor,
            scheduler,
            relay,
        }
    }

    /// Starts `key`'s try with a log holding `text`; answers the log's path.
    fn start(&self, key: &TryKey, text: &str) -> PathBuf {
        let path = self
            .dir
            .path()
            .join("logs")
            .join(crate::layout::relative(key));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        self.executor.start(spec(key, path.clone())).unwrap();
        path
    }

    async fn send(&self, event: TryEvent) {
        self.to_relay.send(event).await.unwrap();
    }

    async fn next(&mut self) -> TryEvent {
        tokio::time::timeout(Duration::from_secs(10), self.scheduler.recv())
            .await
            .expect("an event within 10 s")
            .expect("the relay is running")
    }
}

fn fast() -> RemoteLogOptions {
    RemoteLogOptions {
        initial_backoff: Duration::from_millis(1),
        ..RemoteLogOptions::default()
    }
}

#[tokio::test]
async fn a_finished_event_is_forwarded_only_after_its_log_is_stored_and_others_pass_meanwhile() {
    let gate = Arc::new(Semaphore::new(0));
    let store = Scripted {
        gate: Some(gate.clone()),
        ..Scripted::default()
    };
    let mut h = Harness::new(store, fast());
    let (a, b) = (key("a"), key("b"));
    h.start(&a, "line one\nline two\n");
    h.start(&b, "b's log\n");

    h.send(finished(&a)).await;
    h.send(started(&b)).await;
    // b's start passes while a's upload is held.
    assert_eq!(h.next().await, started(&b));
    h.store.wait_for(1).await;
    assert_eq!(h.store.journal(), [format!("put {}", h.logs.uri_of(&a))]);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        h.scheduler.try_recv().is_err(),
        "a's end was forwarded before its upload"
    );

    gate.add_permits(1);
    assert_eq!(h.next().await, finished(&a));
    let uri = h.logs.uri_of(&a);
    assert_eq!(
        h.store.journal(),
        [format!("put {uri}"), format!("stored {uri}")]
    );
    assert_eq!(
        h.store.objects.lock().unwrap()[&uri],
        b"line one\nline two\n"
    );
    assert_eq!(
        uri,
        "s3://bucket/logs/dag_id=d/run_id=manual__1/task_id=a/attempt=1.log"
    );
    h.relay.stop().await;
}

#[tokio::test]
async fn uploads_run_side_by_side_up_to_the_concurrency() {
    let gate = Arc::new(Semaphore::new(0));
    let store = Scripted {
        gate: Some(gate.clone()),
        ..Scripted::default()
    };
    let mut h = Harness::new(
        store,
        RemoteLogOptions {
            concurrency: 2,
            ..fast()
        },
    );
    let keys: Vec<TryKey> = ["a", "b", "c"].into_iter().map(key).collect();
    for k in &keys {
        h.start(k, "x\n");
        h.send(finished(k)).await;
    }
    // Two uploads start; the third waits for a slot.
    h.store.wait_for(2).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(h.store.journal().len(), 2, "{:?}", h.store.journal());
    gate.add_permits(3);
    let mut ended: Vec<String> = Vec::new();
    for _ in 0..3 {
        ended.push(h.next().await.key.task_id.to_string());
    }
    ended.sort();
    assert_eq!(ended, ["a", "b", "c"]);
    h.relay.stop().await;
}

#[tokio::test]
async fn a_failing_upload_is_retried_then_noted_in_the_log_and_the_end_still_forwarded() {
    let store = Scripted {
        failure: Some(StoreFailure {
            message: "cannot write s3://bucket/logs/...: connection refused\n<Error>\n</Error>"
                .into(),
            transient: true,
        }),
        ..Scripted::default()
    };
    let mut h = Harness::new(store, fast());
    let a = key("a");
    let path = h.start(&a, "the task's output\n");
    h.send(finished(&a)).await;
    assert_eq!(h.next().await, finished(&a));
    let puts = h.store.journal();
    assert_eq!(puts.len(), 3, "three tries: {puts:?}");
    let log = std::fs::read_to_string(&path).unwrap();
    let last = log.lines().last().unwrap();
    assert!(log.starts_with("the task's output\n"), "{log}");
    assert_eq!(log.lines().count(), 2, "the failure is one line: {log}");
    assert!(
        last.contains("gust: could not upload this log to s3://bucket/logs/dag_id=d/")
            && last.contains("after 3 tries: cannot write")
            && last.contains("kept only in this host's log folder"),
        "{last}"
    );
    h.relay.stop().await;
}

#[tokio::test]
async fn a_refused_upload_is_not_retried() {
    let store = Scripted {
        failure: Some(StoreFailure {
            message: "permission denied".into(),
            transient: false,
        }),
        ..Scripted::default()
    };
    let mut h = Harness::new(store, fast());
    let a = key("a");
    h.start(&a, "x\n");
    h.send(finished(&a)).await;
    assert_eq!(h.next().await, finished(&a));
    assert_eq!(h.store.journal().len(), 1);
    h.relay.stop().await;
}

#[tokio::test]
async fn local_logs_are_deleted_at_release_only_when_uploaded_and_asked_for() {
    let mut h = Harness::new(
        Scripted::default(),
        RemoteLogOptions {
            delete_local_logs: true,
            ..fast()
        },
    );
    let a = key("a");
    let path = h.start(&a, "x\n");
    h.send(finished(&a)).await;
    assert_eq!(h.next().await, finished(&a));
    // Forwarded, not yet recorded: the file stays until the scheduler releases the try.
    assert!(path.exists());
    h.executor.release(&a);
    h.logs.0.cleanup.close();
    h.logs.0.cleanup.wait().await;
    assert!(!path.exists());
    // The empty folders of the layout went with it; the root stays.
    assert!(!h.dir.path().join("logs/dag_id=d").exists());
    assert!(h.dir.path().join("logs").exists());

    // Not uploaded (a try that never started writes no log): nothing is deleted.
    let b = key("b");
    h.executor
        .start(spec(&b, h.dir.path().join("elsewhere.log")))
        .unwrap();
    std::fs::write(h.dir.path().join("elsewhere.log"), "kept").unwrap();
    h.send(TryEvent {
        key: b.clone(),
        kind: TryEventKind::Finished(TryOutcome::NeverStarted),
    })
    .await;
    assert_eq!(h.next().await.key, b);
    h.executor.release(&b);
    assert!(h.dir.path().join("elsewhere.log").exists());
    assert_eq!(h.store.journal().len(), 2, "{:?}", h.store.journal());
    h.relay.stop().await;
}

#[tokio::test]
async fn adopted_tries_are_uploaded_at_their_end_and_unknown_ones_by_the_layout() {
    let mut h = Harness::new(Scripted::default(), fast());
    // After a restart the scheduler adopts a try; the runtime reports its end.
    let a = key("a");
    let path = h.dir.path().join("logs").join(crate::layout::relative(&a));
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, "ran while the scheduler was down\n").unwrap();
    h.executor.adopt(spec(&a, path));
    h.send(TryEvent {
        key: a.clone(),
        kind: TryEventKind::Finished(TryOutcome::Failed(FailureReason::Lost("gone".into()))),
    })
    .await;
    assert_eq!(h.next().await.key, a);
    assert_eq!(
        h.store.objects.lock().unwrap()[&h.logs.uri_of(&a)],
        b"ran while the scheduler was down\n"
    );
    // An end for a try the relay never saw start: its log is where the layout puts it.
    let b = key("b");
    let path = h.dir.path().join("logs").join(crate::layout::relative(&b));
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, "b\n").unwrap();
    h.send(finished(&b)).await;
    assert_eq!(h.next().await.key, b);
    assert!(
        h.store
            .objects
            .lock()
            .unwrap()
            .contains_key(&h.logs.uri_of(&b))
    );
    // And a log read back comes from the store.
    let read = h
        .logs
        .read(&b, SeekFrom::Start(0), 100)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&read.bytes[..], b"b\n");
    h.relay.stop().await;
}

#[tokio::test]
async fn the_relay_ends_when_the_runtimes_are_gone_after_forwarding_what_it_holds() {
    let h = Harness::new(Scripted::default(), fast());
    let a = key("a");
    h.start(&a, "x\n");
    h.send(finished(&a)).await;
    let Harness {
        to_relay,
        relay,
        executor,
        scheduler: mut to_scheduler,
        dir: _dir,
        ..
    } = h;
    drop((to_relay, executor));
    let Relay { sender, task, .. } = relay;
    drop(sender);
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the relay ends")
        .unwrap();
    assert_eq!(to_scheduler.recv().await.unwrap(), finished(&a));
}

use crate::Relay;
