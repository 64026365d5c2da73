//! Helpers for runtimes' tests (feature `testing`).

use std::time::Duration;

use tokio::sync::mpsc::Receiver;

use crate::{TryEvent, TryEventKind, TryKey, TryOutcome};

/// Waits, at most `within`, for `key`'s `Finished` event, skipping other events; panics (the
/// test fails) when none comes in time.
pub async fn finished(
    events: &mut Receiver<TryEvent>,
    key: &TryKey,
    within: Duration,
) -> TryOutcome {
    tokio::time::timeout(within, async {
        loop {
            let event = events.recv().await.expect("the runtime is alive");
            if let (true, TryEventKind::Finished(outcome)) = (&event.key == key, event.kind) {
                return outcome;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{key} did not finish within {within:?}"))
}
