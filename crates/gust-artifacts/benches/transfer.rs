//! Transfer throughput: `cargo bench -p gust-artifacts --bench transfer`.
//!
//! Uploads then downloads one 64 MiB file (multipart: 8 parts of 8 MiB) and a folder of 1,000
//! files of 4 KiB (many small objects, 8 at a time), against the local folder store and, when
//! GUST_TEST_S3_ENDPOINT names one (tests/s3/start-moto.sh), an S3 server on loopback. Each
//! figure is the median of 5 rounds. The S3 server is moto, a Python server: its figures bound
//! what the client costs from above, not what a real S3 endpoint would give.

use std::path::Path;
use std::time::{Duration, Instant};

use gust_artifacts::{Artifacts, StoreCredentials, testing};

const ROUNDS: usize = 5;
const BIG: usize = 64 * 1024 * 1024;
const SMALL_FILES: usize = 1000;
const SMALL: usize = 4096;

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

async fn time_round_trips(artifacts: &Artifacts, source: &Path, root: &str, what: &str) {
    let bytes: u64 = walkdir::WalkDir::new(source)
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file())
        .map(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
        .sum();
    let (mut ups, mut downs) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let uri = gust_artifacts::uri::join(root, &[what, &round.to_string()]);
        let started = Instant::now();
        artifacts.upload(source, &uri).await.expect("upload");
        ups.push(started.elapsed());
        let into = tempfile::tempdir().expect("tempdir");
        let started = Instant::now();
        artifacts
            .download(&uri, &into.path().join("copy"))
            .await
            .expect("download");
        downs.push(started.elapsed());
    }
    let mib = bytes as f64 / (1024.0 * 1024.0);
    for (direction, time) in [("upload", median(ups)), ("download", median(downs))] {
        println!(
            "{root:<40} {what:<22} {direction:<8} {:>9.1} ms {:>8.1} MiB/s",
            time.as_secs_f64() * 1000.0,
            mib / time.as_secs_f64()
        );
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let data = tempfile::tempdir().expect("tempdir");
        let big = data.path().join("big.bin");
        std::fs::write(&big, testing::pattern(BIG, 7)).expect("write");
        let many = data.path().join("many");
        for i in 0..SMALL_FILES {
            let file = many.join(format!("part-{:02}/file-{i:04}.bin", i % 10));
            std::fs::create_dir_all(file.parent().expect("parent")).expect("mkdir");
            std::fs::write(&file, testing::pattern(SMALL, (i % 251) as u8)).expect("write");
        }

        let local = tempfile::tempdir().expect("tempdir");
        let local_root = local.path().display().to_string();
        let artifacts = Artifacts::new(StoreCredentials::none());
        time_round_trips(&artifacts, &big, &local_root, "64 MiB file").await;
        time_round_trips(&artifacts, &many, &local_root, "1,000 files of 4 KiB").await;

        if let Some((endpoint, bucket)) = testing::bucket_for("bench").await {
            let artifacts = Artifacts::new(testing::credentials(&endpoint));
            let root = format!("s3://{bucket}");
            time_round_trips(&artifacts, &big, &root, "64 MiB file").await;
            time_round_trips(&artifacts, &many, &root, "1,000 files of 4 KiB").await;
        }
    });
}
