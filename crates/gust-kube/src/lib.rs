//! Gust's Kubernetes pod runtime: every `kubernetes_pod` try is its own pod.
//!
//! [`build`] turns a task's arguments into the pod KubernetesPodOperator would create, as a pure
//! function shared by `gust tasks dry-run`, the tests and the runtime; [`spark`] does the same
//! for a Spark task's SparkApplication, and [`documents`] reads the manifests `kubernetes_apply`
//! and its kin send. This crate never writes task-instance state: like every runtime it
//! reports what happened to the scheduler.

pub mod build;
pub mod diagnose;
pub mod documents;
pub mod kube_yaml;
pub mod manifest;
pub mod rbac;
pub mod runtime;
pub mod spark;
pub mod template;
pub mod xcom;
