//! The secrets masker (Airflow's `SecretsMasker`): which names are sensitive ([`SensitiveNames`]),
//! and a [`Masker`] that replaces every known secret value by `***` wherever it appears, in its
//! common encodings too, longest first. The process's masker ([`current`]) is fed by the binary
//! (connections and variables as they change, each try's own sensitive values at launch) and
//! read by everything that writes what a user sees: try logs, the REST API and UI, XComs, the
//! CLI and error messages.
//!
//! Pure apart from the process's registry: it reads no database and no configuration itself.
//! Start with [`Masker::mask`] and [`Masker::redact`].

mod masker;
mod names;
mod registry;

pub use masker::{DEFAULT_MIN_LENGTH, MASK, Masker, REFERENCE_ARGS};
pub use names::{DEFAULT_SENSITIVE_FIELDS, SensitiveNames};
pub use registry::{TRY_SECRETS_KEPT, add, add_from, configure, current, set_stored};

/// `text` with every secret the process knows masked.
#[must_use]
pub fn mask(text: &str) -> String {
    current().mask(text).into_owned()
}
