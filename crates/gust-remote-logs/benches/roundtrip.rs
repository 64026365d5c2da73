//! A 10 MB log to the store and back: `cargo bench -p gust-remote-logs --bench roundtrip`, with
//! GUST_TEST_S3_ENDPOINT naming an S3 server (`eval "$(tests/s3/start-moto.sh)"`).
//!
//! Each round writes a try's log of 10 MB (time-stamped lines, as runtimes write them), sends
//! its `Finished` event through the relay and times until the relay forwards it (the upload,
//! which is what a try's end waits for), then reads the log back in 1 MiB ranged reads, as the
//! API pages through it, and checks it is whole. Median of 5 rounds; the S3 server is moto, a
//! Python server on the same cores, so these bound the client's cost from above.

use std::io::SeekFrom;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gust_artifacts::{Artifacts, testing};
use gust_core::clock::SystemClock;
use gust_core::ids::{DagId, RunId, TaskId, TryNumber};
use gust_executor::{LaunchSpec, TryEvent, TryEventKind, TryKey, TryOutcome};
use gust_remote_logs::{RemoteLogs, layout};

const ROUNDS: u32 = 5;
const LOG_BYTES: usize = 10 * 1000 * 1000;
const PAGE: u64 = 1024 * 1024;

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn log_text() -> Vec<u8> {
    let mut text = Vec::with_capacity(LOG_BYTES + 200);
    let mut i = 0u64;
    while text.len() < LOG_BYTES {
        i += 1;
        text.extend_from_slice(
            format!("[2026-11-26T05:00:00.000Z] stdout: line {i} of a chatty task's output\n")
                .as_bytes(),
        );
    }
    text
}

fn main() {
    let Some(endpoint) = testing::endpoint() else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let bucket = testing::create_bucket(&endpoint, &testing::unique_bucket("bench-logs")).await;
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("logs");
        let artifacts = Artifacts::new(testing::credentials(&endpoint));
        let logs = RemoteLogs::new(
            Arc::new(artifacts),
            format!("s3://{bucket}/logs"),
            root.clone(),
            Arc::new(SystemClock),
        );
        let (to_scheduler, mut scheduler) = gust_executor::event_channel();
        let relay = logs.relay(to_scheduler);
        let executor = logs.executor(Arc::new(NoRuntime));
        let text = log_text();
        let (mut ups, mut reads) = (Vec::new(), Vec::new());
        for round in 1..=ROUNDS {
            let key = TryKey {
                dag_id: DagId::new("bench").expect("id"),
                run_id: RunId::new("manual__1").expect("id"),
                task_id: TaskId::new("chatty").expect("id"),
                map_index: gust_core::mapping::UNMAPPED,
                try_number: TryNumber(round),
            };
            let path = root.join(layout::relative(&key));
            std::fs::create_dir_all(path.parent().expect("folder")).expect("folder");
            std::fs::write(&path, &text).expect("log");
            executor
                .start(LaunchSpec {
                    key: key.clone(),
                    operator: "bash".into(),
                    args: serde_json::Map::new(),
                    do_xcom_push: false,
                    execution_timeout: None,
                    log_path: path,
                    dag_file: "/dags/bench.yaml".into(),
                    context: Default::default(),
                })
                .expect("start");
            let started = Instant::now();
            relay
                .sender()
                .send(TryEvent {
                    key: key.clone(),
                    kind: TryEventKind::Finished(TryOutcome::Succeeded { xcom: None }),
                })
                .await
                .expect("send");
            let forwarded = scheduler.recv().await.expect("forwarded");
            assert_eq!(forwarded.key, key);
            ups.push(started.elapsed());
            let started = Instant::now();
            let mut back = Vec::with_capacity(text.len());
            loop {
                let slice = logs
                    .read(&key, SeekFrom::Start(back.len() as u64), PAGE)
                    .await
                    .expect("read")
                    .expect("the log is there");
                back.extend_from_slice(&slice.bytes);
                if back.len() as u64 >= slice.size {
                    break;
                }
            }
            reads.push(started.elapsed());
            assert!(back == text, "the log came back whole");
        }
        relay.stop().await;
        let (up, read) = (median(ups), median(reads));
        println!(
            "10 MB log on S3 (moto): upload before the end is forwarded {:.0} ms, read back in {} ranged reads of 1 MiB {:.0} ms, both {:.0} ms",
            up.as_secs_f64() * 1000.0,
            (text.len() as u64).div_ceil(PAGE),
            read.as_secs_f64() * 1000.0,
            (up + read).as_secs_f64() * 1000.0
        );
    });
}

/// Runtimes that run nothing: the bench sends the events itself.
struct NoRuntime;

impl gust_executor::Executor for NoRuntime {
    fn start(&self, _spec: LaunchSpec) -> Result<(), gust_executor::LaunchError> {
        Ok(())
    }
    fn kill(&self, _key: &TryKey, _reason: &str) {}
    fn running(&self) -> usize {
        0
    }
    fn adopt(&self, _spec: LaunchSpec) {}
    fn release(&self, _key: &TryKey) {}
}
