//! DAG files.
