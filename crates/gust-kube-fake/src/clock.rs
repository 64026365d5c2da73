//! The one place the fake reads the wall clock.
//!
//! Kubernetes objects carry wall-clock timestamps (creationTimestamp, startedAt, log line
//! prefixes), so the fake, standing at the edge where a real cluster would be, must read it.
//! Everything else takes `now` as a value; durations and sleeps use tokio's clock.

use std::time::{SystemTime, UNIX_EPOCH};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

/// The current wall-clock time.
#[allow(
    clippy::disallowed_methods,
    reason = "the fake cluster stands in for a real API server, whose objects carry wall-clock times"
)]
pub(crate) fn now() -> Timestamp {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let seconds = i64::try_from(since_epoch.as_secs()).unwrap_or_default();
    let nanos = i32::try_from(since_epoch.subsec_nanos()).unwrap_or_default();
    Timestamp::new(seconds, nanos).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// The current time as a Kubernetes `Time` (second precision on the wire).
pub(crate) fn now_time() -> Time {
    Time(now())
}
