//! A stopping server does not wait forever for the web UI's live streams.

mod common;

use std::time::Duration;

use common::TestServer;
use gust_store::Role;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn an_open_event_stream_does_not_keep_a_stopping_server_up() {
    let server = TestServer::sqlite().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let serving = tokio::spawn(gust_server::serve(
        listener,
        server.app.clone(),
        stop.clone(),
    ));

    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let request = format!(
        "GET /ui/events/dags HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\r\n",
        server.token(Role::Viewer)
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = [0u8; 64];
    let read = stream.read(&mut head).await.unwrap();
    assert!(String::from_utf8_lossy(&head[..read]).starts_with("HTTP/1.1 200"));

    stop.cancel();
    tokio::time::timeout(
        gust_server::SHUTDOWN_GRACE + Duration::from_secs(5),
        serving,
    )
    .await
    .expect("the server stops within its grace period")
    .unwrap()
    .unwrap();
    drop(stream);
    server.finish().await;
}
