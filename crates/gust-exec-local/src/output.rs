//! Reading a process's output as bounded lines and writing them, time-stamped, to the try's log.

use tokio::io::{AsyncRead, AsyncReadExt};

/// The longest line kept whole; longer lines are cut into pieces of this size, so a process
/// that prints without newlines cannot grow the scheduler's memory.
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// Splits a byte stream into lines of at most [`MAX_LINE_BYTES`].
pub struct Lines<R> {
    reader: R,
    buffer: Vec<u8>,
    done: bool,
}

impl<R: AsyncRead + Unpin> Lines<R> {
    /// Lines read from `reader`.
    pub fn new(reader: R) -> Self {
        Self {
            reader,
            buffer: Vec::with_capacity(8 * 1024),
            done: false,
        }
    }

    /// The next line without its newline, or `None` at the end of the stream.
    pub async fn next_line(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        loop {
            if let Some(end) = self.buffer.iter().position(|b| *b == b'\n') {
                let mut line: Vec<u8> = self.buffer.drain(..=end).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Ok(Some(line));
            }
            if self.buffer.len() >= MAX_LINE_BYTES {
                return Ok(Some(self.buffer.drain(..MAX_LINE_BYTES).collect()));
            }
            if self.done {
                return Ok((!self.buffer.is_empty()).then(|| std::mem::take(&mut self.buffer)));
            }
            let mut chunk = [0u8; 8 * 1024];
            let n = self.reader.read(&mut chunk).await?;
            if n == 0 {
                self.done = true;
            } else {
                self.buffer.extend_from_slice(&chunk[..n]);
            }
        }
    }
}

/// Decodes process output with the task's `output_encoding`.
pub struct Decoder {
    encoding: &'static encoding_rs::Encoding,
}

impl Decoder {
    /// A decoder for `label` (`utf-8`, `latin-1`, `cp1252`...), or `None` for an unknown label.
    pub fn for_label(label: &str) -> Option<Self> {
        // Python spells encodings its own way (`latin_1`, `utf_8`); WHATWG labels are close.
        let label = label.trim().to_ascii_lowercase().replace('_', "-");
        let label = match label.as_str() {
            "latin-1" | "l1" => "latin1",
            other => other,
        };
        encoding_rs::Encoding::for_label(label.as_bytes()).map(|encoding| Self { encoding })
    }

    /// UTF-8, what containers write.
    #[must_use]
    pub fn utf8() -> Self {
        Self {
            encoding: encoding_rs::UTF_8,
        }
    }

    /// The text of `bytes`; undecodable bytes become U+FFFD.
    pub fn decode(&self, bytes: &[u8]) -> String {
        self.encoding
            .decode_without_bom_handling(bytes)
            .0
            .into_owned()
    }
}

pub use gust_executor::try_log::LogWriter;

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_split_on_newlines_and_long_lines_are_cut() {
        let mut input = b"one\r\ntwo\n".to_vec();
        input.extend(std::iter::repeat_n(b'x', MAX_LINE_BYTES + 10));
        let mut lines = Lines::new(&input[..]);
        assert_eq!(lines.next_line().await.unwrap(), Some(b"one".to_vec()));
        assert_eq!(lines.next_line().await.unwrap(), Some(b"two".to_vec()));
        assert_eq!(
            lines.next_line().await.unwrap().map(|l| l.len()),
            Some(MAX_LINE_BYTES)
        );
        assert_eq!(lines.next_line().await.unwrap().map(|l| l.len()), Some(10));
        assert_eq!(lines.next_line().await.unwrap(), None);
    }

    #[test]
    fn output_is_decoded_with_the_tasks_encoding() {
        assert_eq!(
            Decoder::for_label("latin-1")
                .unwrap()
                .decode(&[0x63, 0x61, 0x66, 0xe9]),
            "café"
        );
        assert_eq!(
            Decoder::for_label("utf-8")
                .unwrap()
                .decode("café".as_bytes()),
            "café"
        );
        assert!(Decoder::for_label("klingon").is_none());
    }
}
