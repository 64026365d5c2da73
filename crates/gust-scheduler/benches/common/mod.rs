//! What both benchmarks measure with: the floor (bare `bash -c true` processes), the process's
//! own CPU time and peak RSS.

use std::time::{Duration, Instant};

use nix::sys::resource::{UsageWho, getrusage};

/// The parallelism both benchmarks run at (Airflow's default).
pub const PARALLELISM: usize = 32;

/// This process's CPU time so far (user + system, children excluded).
pub fn cpu_self() -> Duration {
    let usage = getrusage(UsageWho::RUSAGE_SELF).expect("getrusage");
    let t =
        |tv: nix::sys::time::TimeVal| Duration::new(tv.tv_sec() as u64, tv.tv_usec() as u32 * 1000);
    t(usage.user_time()) + t(usage.system_time())
}

/// This process's peak resident memory.
pub fn peak_rss_mib() -> f64 {
    getrusage(UsageWho::RUSAGE_SELF)
        .expect("getrusage")
        .max_rss() as f64
        / 1024.0
}

/// `n` `bash -c true` processes, at most `parallel` at once.
pub async fn floor(n: usize, parallel: usize) -> Duration {
    let began = Instant::now();
    let mut pending = tokio::task::JoinSet::new();
    for _ in 0..n {
        if pending.len() >= parallel {
            pending.join_next().await;
        }
        pending.spawn(async {
            let status = tokio::process::Command::new("bash")
                .args(["-c", "true"])
                .status()
                .await
                .expect("bash");
            assert!(status.success());
        });
    }
    while pending.join_next().await.is_some() {}
    began.elapsed()
}

/// Milliseconds.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// `a / b`.
pub fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64()
}
