//! A fake Kubernetes API server with a scripted kubelet, for Gust's tests and benchmarks only.
//!
//! [`FakeCluster::start`] serves the core/v1 pod API (create, get, list, watch, patch, delete),
//! pod logs, exec over websocket and events on a local port, speaking the same JSON and wire
//! protocols as a real API server so that the real `kube` client can talk to it. Instead of
//! running containers, a scripted kubelet plays each container's life as a [`PodScript`]
//! registered for its image says: scheduling, image pulls, output, exit codes, OOM kills,
//! evictions. Faults ([`FakeCluster::break_connections`], [`FakeCluster::set_fail_next`], ...)
//! let tests exercise a client's recovery paths. Every other kind (ConfigMaps, CRDs and the
//! kinds they define...) is stored generically (`resources`), with discovery, server-side apply
//! and watches, and a scripted Spark operator ([`spark`]) runs SparkApplications.
//!
//! It must never be used outside tests: everything lives in memory, there is no auth, and only
//! what a pod runtime needs is implemented. Start reading at [`cluster`], then `server` for
//! the HTTP surface and `kubelet` for the pod lifecycle.

pub mod cluster;
pub mod script;

mod admission;
mod clock;
mod events;
mod jobs;
mod kubelet;
mod logs;
mod resources;
mod selector;
mod server;
pub mod spark;
mod status;
mod store;

pub use axum::http::{Method, StatusCode};
pub use cluster::FakeCluster;
pub use script::{ImagePull, PodScript, Scheduling};
pub use spark::{SparkScript, spark_application_crd};

/// Locks a mutex, ignoring poisoning: a panicking test thread must not wedge the fake.
pub(crate) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
