//! Ending a try's whole process group: SIGTERM, a grace period, then SIGKILL.

use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// Sends `signal` to the group; `false` once no process of the group is left.
pub fn signal(pgid: u32, signal: Signal) -> bool {
    let Ok(raw) = i32::try_from(pgid) else {
        return false;
    };
    !matches!(killpg(Pid::from_raw(raw), signal), Err(Errno::ESRCH))
}

/// Asks the group to stop, and forces it after `grace`. Returns once the group is gone or
/// SIGKILL has been sent.
pub async fn terminate(pgid: u32, grace: Duration) {
    if !signal(pgid, Signal::SIGTERM) {
        return;
    }
    let step = Duration::from_millis(20);
    let mut waited = Duration::ZERO;
    while waited < grace {
        tokio::time::sleep(step).await;
        waited += step;
        // Signal 0 probes for survivors without disturbing them.
        if !alive(pgid) {
            return;
        }
    }
    signal(pgid, Signal::SIGKILL);
}

/// Whether any process of the group is still alive.
pub fn alive(pgid: u32) -> bool {
    let Ok(raw) = i32::try_from(pgid) else {
        return false;
    };
    !matches!(
        nix::sys::signal::killpg(Pid::from_raw(raw), None),
        Err(Errno::ESRCH)
    )
}
