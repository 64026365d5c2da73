//! An in-process fake Kubernetes API server (placeholder while it is being written).
