//! How transfers are sized, retried and parallelised.

use std::time::Duration;

/// Transfer settings; [`Default`] suits real stores, tests shrink them.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct TransferOptions {
    /// Files larger than this are uploaded in parts (default 16 MiB).
    pub multipart_threshold: u64,
    /// The size of each part of a multipart upload (default 8 MiB; S3 needs at least 5 MiB for
    /// every part but the last).
    pub part_size: usize,
    /// How many times one request is retried on a transient failure, with exponential backoff
    /// (default 10, as object_store; each request's retries end after 3 minutes).
    pub request_retries: usize,
    /// How many times a whole object is fetched before a download gives up, when its body is
    /// cut or does not match its size or checksum (default 3).
    pub download_attempts: u32,
    /// The first wait between retries, doubled each time up to 15 s (default 100 ms).
    pub initial_backoff: Duration,
    /// How many objects move at once (default 8).
    pub concurrency: usize,
}

impl Default for TransferOptions {
    fn default() -> Self {
        Self {
            multipart_threshold: 16 * MIB,
            part_size: 8 * MIB as usize,
            request_retries: 10,
            download_attempts: 3,
            initial_backoff: Duration::from_millis(100),
            concurrency: 8,
        }
    }
}

/// One mebibyte.
pub const MIB: u64 = 1024 * 1024;

impl TransferOptions {
    /// The wait before retry number `attempt` (1-based) of a whole object.
    pub(crate) fn backoff(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1));
        self.initial_backoff
            .saturating_mul(factor)
            .min(Duration::from_secs(15))
    }

    /// object_store's per-request retry policy for these options.
    pub(crate) fn retry_config(&self) -> object_store::RetryConfig {
        object_store::RetryConfig {
            backoff: object_store::BackoffConfig {
                init_backoff: self.initial_backoff,
                max_backoff: Duration::from_secs(15),
                base: 2.0,
            },
            max_retries: self.request_retries,
            retry_timeout: Duration::from_secs(180),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let o = TransferOptions::default();
        assert_eq!(o.backoff(1), Duration::from_millis(100));
        assert_eq!(o.backoff(3), Duration::from_millis(400));
        assert_eq!(o.backoff(40), Duration::from_secs(15));
    }
}
