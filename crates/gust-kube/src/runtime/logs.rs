//! Following a container's log into the try's log as it is produced, across API reconnects:
//! every line is read with its timestamp, a broken stream is resumed from the last timestamp
//! (`sinceTime`), and lines already written are skipped, so nothing is lost or written twice.

use std::time::Duration;

use futures::{AsyncBufReadExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::LogParams;
use tokio::sync::mpsc;

/// The longest line kept; longer lines are cut (a runaway container cannot exhaust memory).
const MAX_LINE_CHARS: usize = 64 * 1024;
/// How long to wait before asking again for a log that is not there yet.
const RETRY: Duration = Duration::from_millis(250);

/// One line of a container's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// The container.
    pub container: String,
    /// When the container wrote it.
    pub at: Timestamp,
    /// The text, without its newline.
    pub text: String,
}

/// Where a resumed stream continues: after `at`, skipping the `written` lines already written
/// with exactly that timestamp.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resume {
    at: Option<Timestamp>,
    written: usize,
}

impl Resume {
    /// Whether a line stamped `at` was written before; records it as written if not.
    pub fn is_new(&mut self, at: Timestamp, seen_at_same_time: &mut usize) -> bool {
        match self.at {
            Some(last) if at < last => false,
            Some(last) if at == last => {
                *seen_at_same_time += 1;
                if *seen_at_same_time <= self.written {
                    return false;
                }
                self.written += 1;
                true
            }
            _ => {
                self.at = Some(at);
                self.written = 1;
                *seen_at_same_time = 1;
                true
            }
        }
    }
}

/// Splits `2024-01-01T00:00:00.123456789Z text` into its time and text.
#[must_use]
pub fn parse_line(raw: &str) -> Option<(Timestamp, &str)> {
    let (stamp, text) = raw.split_once(' ').unwrap_or((raw, ""));
    let at = stamp.parse::<Timestamp>().ok()?;
    Some((at, text))
}

/// Follows `container` of pod `name` until it has ended (`ended` says so), sending each new
/// line on `lines`. Returns when the container's log is complete or `lines` is closed.
pub async fn follow(
    api: Api<Pod>,
    name: String,
    container: String,
    lines: mpsc::Sender<LogLine>,
    ended: impl Fn() -> bool,
) {
    let mut resume = Resume::default();
    loop {
        let params = LogParams {
            container: Some(container.clone()),
            follow: true,
            timestamps: true,
            // Whole seconds, rounded down: the client rounds to the nearest second, which
            // could skip lines written in the second before.
            since_time: resume
                .at
                .and_then(|at| Timestamp::from_second(at.as_second()).ok()),
            ..LogParams::default()
        };
        // Every wait on the API is also a wait on the try: once the follower has its outcome
        // and stops reading, nothing here may wait on a stream that the server need not close
        // (kwok's simulated kubelet never closes a followed log).
        let opened = tokio::select! {
            opened = api.log_stream(&name, &params) => opened,
            () = lines.closed() => return,
        };
        match opened {
            Ok(stream) => {
                let mut raw_lines = stream.lines();
                let mut same_time = 0;
                // The stream ending or breaking alike: done if the container has ended,
                // otherwise the connection was lost and is resumed below.
                loop {
                    let next = tokio::select! {
                        next = raw_lines.try_next() => next,
                        () = lines.closed() => return,
                    };
                    let Ok(Some(raw)) = next else { break };
                    let Some((at, text)) = parse_line(&raw) else {
                        continue;
                    };
                    if !resume.is_new(at, &mut same_time) {
                        continue;
                    }
                    let text: String = text.chars().take(MAX_LINE_CHARS).collect();
                    let line = LogLine {
                        container: container.clone(),
                        at,
                        text,
                    };
                    if lines.send(line).await.is_err() {
                        return;
                    }
                }
                if ended() {
                    return;
                }
            }
            Err(kube::Error::Api(status)) if status.code == 404 => return,
            // Not started yet, or the API is briefly unavailable: ask again.
            Err(_) if ended() => return,
            Err(_) => {}
        }
        if lines.is_closed() {
            return;
        }
        tokio::time::sleep(RETRY).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().expect("a timestamp")
    }

    #[test]
    fn lines_carry_their_timestamp() {
        let (when, text) = parse_line("2024-01-01T00:00:01.5Z hello world").expect("parsed");
        assert_eq!(when, at("2024-01-01T00:00:01.5Z"));
        assert_eq!(text, "hello world");
        assert_eq!(parse_line("garbage"), None);
    }

    #[test]
    fn a_resumed_stream_skips_exactly_what_was_written() {
        let mut resume = Resume::default();
        let mut same = 0;
        // First connection: three lines, two sharing a timestamp.
        assert!(resume.is_new(at("2024-01-01T00:00:01Z"), &mut same));
        assert!(resume.is_new(at("2024-01-01T00:00:02Z"), &mut same));
        assert!(resume.is_new(at("2024-01-01T00:00:02Z"), &mut same));
        // Reconnected from second 1: everything is replayed, then one new line at second 2.
        let mut same = 0;
        assert!(!resume.is_new(at("2024-01-01T00:00:01Z"), &mut same));
        assert!(!resume.is_new(at("2024-01-01T00:00:02Z"), &mut same));
        assert!(!resume.is_new(at("2024-01-01T00:00:02Z"), &mut same));
        assert!(resume.is_new(at("2024-01-01T00:00:02Z"), &mut same));
        assert!(resume.is_new(at("2024-01-01T00:00:03Z"), &mut same));
    }
}
