//! The artifact layer against a real S3 protocol server (moto, started by
//! tests/s3/start-moto.sh): object and prefix downloads, nested paths, multipart uploads,
//! retries after dropped and cut connections, missing inputs, refused credentials, and that no
//! credential shows in any error or log line.

use std::sync::atomic::Ordering;
use std::time::Duration;

use gust_artifacts::testing::{
    Fault, LOGIN, SECRET, bucket_for, credentials, faulty_proxy, pattern,
};
use gust_artifacts::{ArtifactError, Artifacts, MIB, TransferOptions, Transferred};

fn fast() -> TransferOptions {
    TransferOptions {
        initial_backoff: Duration::from_millis(20),
        ..TransferOptions::default()
    }
}

/// A bucket of the test's own on the open server, and artifacts for it; `None` when skipped.
async fn setup(test: &str) -> Option<(String, String, Artifacts)> {
    let (endpoint, bucket) = bucket_for(test).await?;
    let artifacts = Artifacts::new(credentials(&endpoint)).with_options(fast());
    Some((endpoint, bucket, artifacts))
}

/// Uploads `source` to `destination`, which must work.
async fn put(artifacts: &Artifacts, source: &std::path::Path, destination: &str) -> Transferred {
    artifacts
        .upload(source, destination)
        .await
        .expect("the upload")
}

fn assert_no_credentials(text: &str) {
    assert!(!text.contains(SECRET), "the secret key leaked: {text}");
    assert!(!text.contains(LOGIN), "the access key leaked: {text}");
}

#[tokio::test]
async fn an_object_downloads_to_a_file_and_a_prefix_to_a_folder_keeping_nested_paths() {
    let Some((_, bucket, artifacts)) = setup("prefix").await else {
        return;
    };
    let src = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(src.path().join("model/nested/deeper")).unwrap();
    std::fs::write(src.path().join("model/a.txt"), "alpha").unwrap();
    std::fs::write(src.path().join("model/nested/b.bin"), pattern(70_000, 1)).unwrap();
    std::fs::write(src.path().join("model/nested/deeper/c.json"), "{}").unwrap();
    std::fs::write(src.path().join("other.txt"), "not under the prefix").unwrap();

    let up = put(
        &artifacts,
        &src.path().join("model"),
        &format!("s3://{bucket}/runs/r1/model"),
    )
    .await;
    assert_eq!((up.objects, up.bytes), (3, 5 + 70_000 + 2));
    // A sibling whose name starts like the prefix is not under it.
    put(
        &artifacts,
        &src.path().join("other.txt"),
        &format!("s3://{bucket}/runs/r1/model-old"),
    )
    .await;

    let listed = artifacts
        .list(&format!("s3://{bucket}/runs/r1/model/"))
        .await
        .unwrap();
    let uris: Vec<&str> = listed.iter().map(|e| e.uri.as_str()).collect();
    assert_eq!(
        uris,
        [
            format!("s3://{bucket}/runs/r1/model/a.txt"),
            format!("s3://{bucket}/runs/r1/model/nested/b.bin"),
            format!("s3://{bucket}/runs/r1/model/nested/deeper/c.json"),
        ]
    );

    let out = tempfile::tempdir().unwrap();
    let prefix = artifacts
        .download(
            &format!("s3://{bucket}/runs/r1/model"),
            &out.path().join("in"),
        )
        .await
        .unwrap();
    assert_eq!(prefix.objects, 3);
    assert_eq!(
        std::fs::read(out.path().join("in/a.txt")).unwrap(),
        b"alpha"
    );
    assert_eq!(
        std::fs::read(out.path().join("in/nested/b.bin")).unwrap(),
        pattern(70_000, 1)
    );
    assert_eq!(
        std::fs::read(out.path().join("in/nested/deeper/c.json")).unwrap(),
        b"{}"
    );
    assert!(!out.path().join("in/model-old").exists());

    // An object: to the named file, or into a folder.
    let object = format!("s3://{bucket}/runs/r1/model/nested/b.bin");
    let one = artifacts
        .download(&object, &out.path().join("x/file.bin"))
        .await
        .unwrap();
    assert_eq!((one.objects, one.bytes), (1, 70_000));
    assert_eq!(
        std::fs::read(out.path().join("x/file.bin")).unwrap(),
        pattern(70_000, 1)
    );
    artifacts
        .download(&object, &out.path().join("into/"))
        .await
        .unwrap();
    assert_eq!(
        std::fs::read(out.path().join("into/b.bin")).unwrap(),
        pattern(70_000, 1)
    );
    // No temporary file is left beside the results.
    let names: Vec<String> = std::fs::read_dir(out.path().join("x"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["file.bin"]);
}

#[tokio::test]
async fn a_large_file_is_uploaded_in_parts_and_downloads_whole() {
    let Some((endpoint, bucket)) = bucket_for("multipart").await else {
        return;
    };
    let artifacts = Artifacts::new(credentials(&endpoint)).with_options(TransferOptions {
        multipart_threshold: 6 * MIB,
        part_size: 5 * MIB as usize,
        ..fast()
    });
    let dir = tempfile::tempdir().unwrap();
    let data = pattern(12 * MIB as usize + 123, 7);
    std::fs::write(dir.path().join("big.bin"), &data).unwrap();
    let uri = format!("s3://{bucket}/big/big.bin");
    let up = put(&artifacts, &dir.path().join("big.bin"), &uri).await;
    assert_eq!(up.bytes, data.len() as u64);
    let listed = artifacts.list(&uri).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].size, data.len() as u64);
    get_same(&artifacts, &uri, &dir.path().join("copy.bin"), &data).await;
}

#[tokio::test]
async fn transfers_retry_when_the_server_drops_connections() {
    let Some((endpoint, bucket)) = bucket_for("drops").await else {
        return;
    };
    let (proxy, accepted) = faulty_proxy(&endpoint, Fault::DropFirst(3)).await;
    let artifacts = Artifacts::new(credentials(&proxy)).with_options(fast());
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("f.txt"), "survives").unwrap();
    put(
        &artifacts,
        &dir.path().join("f.txt"),
        &format!("s3://{bucket}/f.txt"),
    )
    .await;
    assert!(
        accepted.load(Ordering::SeqCst) > 3,
        "the dropped connections were not retried"
    );
    artifacts
        .download(
            &format!("s3://{bucket}/f.txt"),
            &dir.path().join("back.txt"),
        )
        .await
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(dir.path().join("back.txt")).unwrap(),
        "survives"
    );
}

/// Downloads `uri` to `destination` and checks that `data` arrived (into a folder when
/// `destination` ends with `/`).
async fn get_same(artifacts: &Artifacts, uri: &str, destination: &std::path::Path, data: &[u8]) {
    let got = artifacts
        .download(uri, destination)
        .await
        .expect("the download");
    assert_eq!(got.bytes, data.len() as u64);
    let file = if destination.as_os_str().to_string_lossy().ends_with('/') {
        destination.join(uri.rsplit('/').next().unwrap_or_default())
    } else {
        destination.to_path_buf()
    };
    assert!(
        std::fs::read(file).expect("the copy") == data,
        "the copy differs"
    );
}

/// Artifacts reaching `endpoint` through a proxy that cuts each of the first `cuts` connections
/// after 100 KB of answers; and how many connections it accepted.
async fn through_cuts(
    endpoint: &str,
    cuts: usize,
    options: TransferOptions,
) -> (Artifacts, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let (proxy, accepted) = faulty_proxy(endpoint, Fault::CutFirst(cuts, 100_000)).await;
    (
        Artifacts::new(credentials(&proxy)).with_options(options),
        accepted,
    )
}

/// No request retries (object_store's resuming of a cut body), `attempts` whole-object tries.
fn whole_object_retries(attempts: u32) -> TransferOptions {
    TransferOptions {
        request_retries: 0,
        download_attempts: attempts,
        ..fast()
    }
}

#[tokio::test]
async fn a_download_cut_mid_body_is_fetched_again_and_verified() {
    let Some((endpoint, bucket, direct)) = setup("cut").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = pattern(600_000, 3);
    std::fs::write(dir.path().join("data.bin"), &data).unwrap();
    put(
        &direct,
        &dir.path().join("data.bin"),
        &format!("s3://{bucket}/data.bin"),
    )
    .await;
    let uri = format!("s3://{bucket}/data.bin");
    // Every one of the first 4 connections passes only 100 KB of answers, then is cut:
    // object_store resumes the body with range requests...
    let (resumed, accepted) = through_cuts(&endpoint, 4, fast()).await;
    get_same(&resumed, &uri, &dir.path().join("copy.bin"), &data).await;
    assert!(accepted.load(Ordering::SeqCst) > 1, "no connection was cut");
    // ...and without request retries, the whole object is fetched again.
    let (refetched, accepted) = through_cuts(&endpoint, 3, whole_object_retries(6)).await;
    get_same(&refetched, &uri, &dir.path().join("again/"), &data).await;
    assert!(
        accepted.load(Ordering::SeqCst) > 3,
        "the cut transfers were not tried again"
    );
    let left: Vec<_> = std::fs::read_dir(dir.path().join("again"))
        .unwrap()
        .collect();
    assert_eq!(left.len(), 1, "a partial file was left behind");
    // With too few tries, it fails as a transient error and leaves nothing.
    let (gives_up, _) = through_cuts(&endpoint, 10, whole_object_retries(2)).await;
    let err = gives_up
        .download(&uri, &dir.path().join("never/"))
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    assert!(err.one_line().contains(&uri), "{}", err.one_line());
    let left: Vec<_> = std::fs::read_dir(dir.path().join("never"))
        .unwrap()
        .collect();
    assert!(left.is_empty(), "a partial file was left behind: {left:?}");
}

#[tokio::test]
async fn a_missing_input_names_its_uri() {
    let Some((_, bucket, artifacts)) = setup("missing").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let uri = format!("s3://{bucket}/runs/never/written");
    let err = artifacts.download(&uri, dir.path()).await.unwrap_err();
    assert!(matches!(err, ArtifactError::NotFound { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!("nothing at {uri}; check the path, or that the step that writes it ran")
    );
    assert!(matches!(
        artifacts.list(&uri).await,
        Err(ArtifactError::NotFound { .. })
    ));
    // A bucket that does not exist is as missing.
    let err = artifacts
        .download(&format!("s3://{bucket}-nope/k"), dir.path())
        .await
        .unwrap_err();
    assert!(
        err.one_line().contains(&format!("s3://{bucket}-nope/k")),
        "{}",
        err.one_line()
    );
}

#[tokio::test]
async fn refused_credentials_are_permission_denied_and_never_shown() {
    let Some(endpoint) = gust_artifacts::testing::endpoint_from("GUST_TEST_S3_AUTH_ENDPOINT")
    else {
        return;
    };
    let artifacts = Artifacts::new(credentials(&endpoint)).with_options(fast());
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("f.txt"), "x").unwrap();
    let read = artifacts
        .download("s3://guarded/in/data.csv", dir.path())
        .await
        .unwrap_err();
    let write = artifacts
        .upload(&dir.path().join("f.txt"), "s3://guarded/out/f.txt")
        .await
        .unwrap_err();
    let list = artifacts.list("s3://guarded/in/").await.unwrap_err();
    for (err, uri) in [
        (&read, "s3://guarded/in/data.csv"),
        (&write, "s3://guarded/out/f.txt"),
        (&list, "s3://guarded/in/"),
    ] {
        assert!(
            matches!(err, ArtifactError::PermissionDenied { .. }),
            "{err:?}"
        );
        let text = err.one_line();
        assert!(
            text.starts_with(&format!(
                "permission denied at {uri}; check that the credentials"
            )),
            "{text}"
        );
        assert_no_credentials(&text);
        assert_no_credentials(&format!("{err:?}"));
        assert!(!err.is_transient());
    }
    assert_no_credentials(&format!("{artifacts:?}"));
}

#[tokio::test]
async fn no_credential_appears_in_errors_logs_or_debug_output() {
    let Some((endpoint, bucket)) = bucket_for("leaks").await else {
        return;
    };
    // Every log line of the transfers below, down to debug, is kept to be searched.
    let logs = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
    let sink = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_writer(move || Writer(sink.clone()))
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let (proxy, _) = faulty_proxy(&endpoint, Fault::DropFirst(2)).await;
    let artifacts = Artifacts::new(credentials(&proxy)).with_options(TransferOptions {
        request_retries: 1,
        ..fast()
    });
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("f.txt"), "x").unwrap();
    let mut texts = vec![format!("{artifacts:?}")];
    // A retried failure, a success after retries, a missing object, an unreachable store.
    let uri = format!("s3://{bucket}/f.txt");
    if let Err(err) = artifacts.upload(&dir.path().join("f.txt"), &uri).await {
        texts.push(err.one_line());
    }
    put(&artifacts, &dir.path().join("f.txt"), &uri).await;
    let missing = artifacts
        .download(&format!("s3://{bucket}/nope"), dir.path())
        .await
        .unwrap_err();
    texts.push(missing.one_line());
    texts.push(format!("{missing:?}"));
    let unreachable =
        Artifacts::new(credentials("http://127.0.0.1:9")).with_options(TransferOptions {
            request_retries: 1,
            ..fast()
        });
    let err = unreachable
        .download("s3://b/k", dir.path())
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    texts.push(err.one_line());
    texts.push(format!("{err:?}"));
    drop(_guard);
    texts.push(String::from_utf8_lossy(&logs.lock().unwrap()).into_owned());
    for text in &texts {
        assert_no_credentials(text);
    }
}

/// A log writer into a shared buffer.
struct Writer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Writer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
