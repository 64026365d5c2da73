//! Gust's Kubernetes pod runtime: every `kubernetes_pod` try is its own pod.
//!
//! [`build`] turns a task's arguments into the pod KubernetesPodOperator would create, as a pure
//! function shared by `gust tasks dry-run`, the tests and the runtime. This crate never writes
//! task-instance state: like every runtime it reports what happened to the scheduler.

pub mod build;
pub mod diagnose;
pub mod manifest;
pub mod rbac;
pub mod runtime;
pub mod template;
pub mod xcom;
