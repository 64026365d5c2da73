//! Test helpers (feature `testing`) for suites against a real S3 server (moto, started by
//! tests/s3/start-moto.sh): the endpoint or a loud skip, bucket creation, credentials, and a TCP
//! proxy that drops or cuts connections. Not for production code.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers fail the test"
)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::StoreCredentials;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The access key the tests sign with (moto's open server accepts any).
pub const LOGIN: &str = "AKIAGUSTTESTLOGIN0001";
/// The secret key the tests sign with: no error or log may show it.
pub const SECRET: &str = "gust-secret-Value/xyzzy+42";

/// The S3 endpoint named by `variable`, or `None` after saying loudly that the suite is skipped
/// (a failure instead when GUST_REQUIRE_S3=1, as in CI).
pub fn endpoint_from(variable: &str) -> Option<String> {
    match std::env::var(variable) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var("GUST_REQUIRE_S3").as_deref() != Ok("1"),
                "GUST_REQUIRE_S3=1 but {variable} is unset: start the S3 server with tests/s3/start-moto.sh"
            );
            eprintln!(
                "\n!!!!!! S3 suite SKIPPED: set {variable} (tests/s3/start-moto.sh) !!!!!!\n"
            );
            None
        }
    }
}

/// The open S3 server, or `None` (skipped).
pub fn endpoint() -> Option<String> {
    endpoint_from("GUST_TEST_S3_ENDPOINT")
}

/// The open S3 server and a new bucket on it for `test`, or `None` (skipped, see [`endpoint`]).
pub async fn bucket_for(test: &str) -> Option<(String, String)> {
    let endpoint = endpoint()?;
    let bucket = create_bucket(&endpoint, &unique_bucket(test)).await;
    Some((endpoint, bucket))
}

/// Credentials for `endpoint`, as a connection's fields.
pub fn credentials(endpoint: &str) -> StoreCredentials {
    StoreCredentials::from_fields(BTreeMap::from([
        ("login".to_owned(), LOGIN.to_owned()),
        ("password".to_owned(), SECRET.to_owned()),
        ("endpoint_url".to_owned(), endpoint.to_owned()),
        ("region_name".to_owned(), "us-east-1".to_owned()),
    ]))
}

/// A bucket name no other test (or earlier run against the same server) uses.
pub fn unique_bucket(test: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    #[allow(clippy::disallowed_methods, reason = "a test's unique name, not logic")]
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!(
        "{}-{}-{nanos}-{n}",
        test.replace('_', "-"),
        std::process::id()
    )
    .chars()
    .take(63)
    .collect()
}

/// Creates `bucket` with a plain HTTP PUT (moto's open server needs no signature); returns it.
pub async fn create_bucket(endpoint: &str, bucket: &str) -> String {
    let host = endpoint.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = TcpStream::connect(host)
        .await
        .expect("connect to the S3 server");
    let request = format!(
        "PUT /{bucket} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.expect("read");
    assert!(
        answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.0 200"),
        "creating bucket {bucket}: {answer}"
    );
    bucket.to_owned()
}

/// How the proxy misbehaves on its first connections.
#[derive(Clone, Copy, Debug)]
pub enum Fault {
    /// Close the first N connections at once, before reading anything.
    DropFirst(usize),
    /// On the first N connections, pass only this many response bytes, then close.
    CutFirst(usize, usize),
}

/// A TCP proxy on loopback in front of `upstream` that misbehaves as `fault` says; returns its
/// URL and the number of connections accepted so far. It ends with the test's runtime.
pub async fn faulty_proxy(upstream: &str, fault: Fault) -> (String, Arc<AtomicUsize>) {
    let upstream = upstream
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let n = count.fetch_add(1, Ordering::SeqCst);
            let upstream = upstream.clone();
            tokio::spawn(async move {
                match fault {
                    Fault::DropFirst(first) if n < first => drop(client),
                    Fault::CutFirst(first, bytes) if n < first => {
                        relay(client, &upstream, Some(bytes)).await;
                    }
                    _ => relay(client, &upstream, None).await,
                }
            });
        }
    });
    (url, accepted)
}

async fn relay(client: TcpStream, upstream: &str, limit: Option<usize>) {
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let up = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
    });
    let mut passed = 0usize;
    let mut buf = vec![0u8; 16 * 1024];
    while let Ok(n) = server_read.read(&mut buf).await {
        if n == 0 {
            break;
        }
        let take = match limit {
            Some(limit) => n.min(limit - passed),
            None => n,
        };
        if client_write.write_all(&buf[..take]).await.is_err() {
            break;
        }
        passed += take;
        if limit.is_some_and(|limit| passed >= limit) {
            break; // cut mid-response: the client sees the connection end early
        }
    }
    up.abort();
}

/// `len` bytes of a repeating, position-dependent pattern (so a misplaced part is noticed).
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ ((i >> 12) as u8))
        .collect()
}
