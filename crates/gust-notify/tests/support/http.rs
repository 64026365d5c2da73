//! An HTTP server that keeps every request it gets and answers the first `fail` of them with
//! 500, to test retries.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, Uri};

/// One request as received.
#[derive(Debug, Clone)]
pub struct Caught {
    pub path: String,
    pub headers: HeaderMap,
    pub body: String,
}

/// A running catcher.
pub struct Catcher {
    pub base: String,
    pub caught: Arc<Mutex<Vec<Caught>>>,
}

impl Catcher {
    /// A catcher on a free loopback port that fails the first `fail` requests, then answers
    /// `answer`.
    pub async fn start(fail: usize, answer: &'static str) -> Self {
        let caught = Arc::new(Mutex::new(Vec::new()));
        let kept = caught.clone();
        let app = Router::new().fallback(move |uri: Uri, headers: HeaderMap, body: Bytes| {
            let kept = kept.clone();
            async move {
                let mut all = kept.lock().expect("a lock");
                all.push(Caught {
                    path: uri.path().to_owned(),
                    headers,
                    body: String::from_utf8_lossy(&body).into_owned(),
                });
                if all.len() <= fail {
                    (StatusCode::INTERNAL_SERVER_ERROR, "down")
                } else {
                    (StatusCode::OK, answer)
                }
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a port");
        let base = format!("http://{}", listener.local_addr().expect("an address"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { base, caught }
    }

    /// The requests so far.
    pub fn requests(&self) -> Vec<Caught> {
        self.caught.lock().expect("a lock").clone()
    }
}
