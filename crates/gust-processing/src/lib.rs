//! Processing steps: a `processing` try becomes a `kubernetes_pod` try whose init container
//! downloads the step's inputs (and its staged code and config) from object storage into an
//! emptyDir, and whose base container runs the step's command under `gust artifacts run`, which
//! uploads the outputs once the command exits 0 and writes their URIs as the step's XCom.
//!
//! [`plan`] decides everything (the pod's arguments, what to upload first, where the inputs
//! come from and the outputs go) as a function of the arguments and settings; [`executor`]
//! stages the uploads and hands the pod to a pod runtime. This crate must not build pods
//! itself (that is `gust-kube`'s pod builder, fed the planned arguments) nor write task state.
//! The command lines of `gust artifacts fetch|run` are the contract with `gust-artifacts`'s
//! commands in the binary.

pub mod executor;
pub mod plan;

pub use executor::{PodRuntimeKind, ProcessingExecutor};
pub use plan::{GustBinary, Step, StepError, StepPlan, StepSettings, Upload, plan};
