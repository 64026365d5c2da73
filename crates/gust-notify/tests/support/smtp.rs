//! A tiny SMTP server: it answers the commands lettre sends, keeps each message it accepts,
//! and refuses the first `refuse` messages with a temporary error (451), to test retries.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// One accepted message.
#[derive(Debug, Clone, Default)]
pub struct Received {
    /// `MAIL FROM`.
    pub from: String,
    /// Each `RCPT TO`.
    pub to: Vec<String>,
    /// The message as sent (headers and body).
    pub data: String,
}

/// A running sink.
pub struct Sink {
    pub port: u16,
    pub received: Arc<Mutex<Vec<Received>>>,
}

impl Sink {
    /// A sink on a free loopback port that refuses the first `refuse` messages.
    pub async fn start(refuse: usize) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a port");
        let port = listener.local_addr().expect("an address").port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let refused = Arc::new(Mutex::new(0usize));
        let kept = received.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (kept, refused) = (kept.clone(), refused.clone());
                tokio::spawn(async move {
                    let (read, mut write) = stream.into_split();
                    let mut lines = BufReader::new(read).lines();
                    let mut current = Received::default();
                    let _ = write.write_all(b"220 sink ESMTP\r\n").await;
                    while let Ok(Some(line)) = lines.next_line().await {
                        let upper = line.to_ascii_uppercase();
                        let answer: &[u8] =
                            if upper.starts_with("EHLO") || upper.starts_with("HELO") {
                                b"250-sink\r\n250 8BITMIME\r\n"
                            } else if upper.starts_with("MAIL FROM") {
                                let mut n = refused.lock().expect("a lock");
                                if *n < refuse {
                                    *n += 1;
                                    b"451 try again later\r\n"
                                } else {
                                    current.from = line[10..].trim().to_owned();
                                    b"250 OK\r\n"
                                }
                            } else if upper.starts_with("RCPT TO") {
                                current.to.push(line[8..].trim().to_owned());
                                b"250 OK\r\n"
                            } else if upper == "DATA" {
                                let _ = write.write_all(b"354 go on\r\n").await;
                                let mut data = String::new();
                                while let Ok(Some(line)) = lines.next_line().await {
                                    if line == "." {
                                        break;
                                    }
                                    data.push_str(&line);
                                    data.push('\n');
                                }
                                current.data = data;
                                kept.lock()
                                    .expect("a lock")
                                    .push(std::mem::take(&mut current));
                                b"250 accepted\r\n"
                            } else if upper == "QUIT" {
                                let _ = write.write_all(b"221 bye\r\n").await;
                                break;
                            } else if upper == "RSET" || upper == "NOOP" {
                                b"250 OK\r\n"
                            } else {
                                // SMTP's own answer to a command a server does not offer
                                // (RFC 5321 4.2.4): the sink speaks only what lettre sends.
                                b"502 not implemented\r\n"
                            };
                        if write.write_all(answer).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        Self { port, received }
    }

    /// The messages accepted so far.
    pub fn messages(&self) -> Vec<Received> {
        self.received.lock().expect("a lock").clone()
    }
}
