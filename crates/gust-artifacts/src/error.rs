//! What can go wrong moving artifacts, one variant per failure, each naming the URI or path and
//! what would fix it. Causes from the store are kept only as redacted text
//! ([`StoreCause`]): an object store's error can quote a request URL, and a URL can carry a SAS
//! token, so no credential value may reach an error message.

use std::path::PathBuf;

/// The URI forms [`crate::Artifacts`] accepts, for error messages.
pub const ACCEPTED: &str = "s3://bucket/key, oss://bucket/key, gs://bucket/key, az://container/path, \
abfss://container@account.dfs.core.windows.net/path, file:///absolute/path or a plain path";

/// An artifact transfer or listing failed.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    /// The text is not a URI or path the artifact layer understands.
    #[error("\"{uri}\" is not an artifact location ({reason}); use {ACCEPTED}")]
    InvalidUri {
        /// The text given.
        uri: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No object is at the URI and none is under it.
    #[error("nothing at {uri}; check the path, or that the step that writes it ran")]
    NotFound {
        /// The URI looked up.
        uri: String,
    },
    /// The store refused the credentials, or the local file system refused access.
    #[error(
        "permission denied at {uri}; check that the credentials (the `[artifacts] conn_id` connection, \
         GUST_ARTIFACTS_* or the standard AWS_*/GOOGLE_*/AZURE_* variables) may {action} it"
    )]
    PermissionDenied {
        /// The URI or path refused.
        uri: String,
        /// What was refused: `read`, `write` or `list`.
        action: &'static str,
        /// The store's or the system's answer (credentials redacted).
        #[source]
        source: StoreCause,
    },
    /// The store for the URI could not be set up from the credentials.
    #[error(
        "cannot set up the object store for {uri}; check the connection's fields or the environment"
    )]
    Setup {
        /// The URI whose store failed.
        uri: String,
        /// Why (credentials redacted).
        #[source]
        source: StoreCause,
    },
    /// A request to the store failed after its retries.
    #[error("cannot {action} {uri}; check the URI and that the store is reachable")]
    Store {
        /// The URI.
        uri: String,
        /// What was tried: `read`, `write`, `list`.
        action: &'static str,
        /// The store's answer (credentials redacted).
        #[source]
        source: StoreCause,
    },
    /// A download ended with a different size or checksum than the store announced, on every try.
    #[error(
        "downloaded {uri} but {what} (after {attempts} tries); the object changed while read, or the \
         connection keeps being cut"
    )]
    Corrupt {
        /// The object.
        uri: String,
        /// What did not match.
        what: String,
        /// How many times it was fetched.
        attempts: u32,
    },
    /// A local file or folder could not be read or written.
    #[error("cannot {action} {}; check that it exists and this user may {action} it", path.display())]
    Local {
        /// The path.
        path: PathBuf,
        /// What was tried: `read`, `write`, `create`.
        action: &'static str,
        /// The system's answer.
        #[source]
        source: std::io::Error,
    },
    /// An upload's source does not exist.
    #[error("nothing to upload at {}; check the path, or that the command wrote it", path.display())]
    MissingSource {
        /// The path.
        path: PathBuf,
    },
}

impl ArtifactError {
    /// A local file-system failure at `path`; access refused becomes [`Self::PermissionDenied`].
    pub(crate) fn local(
        path: &std::path::Path,
        action: &'static str,
        source: std::io::Error,
    ) -> Self {
        if source.kind() == std::io::ErrorKind::PermissionDenied {
            return Self::PermissionDenied {
                uri: path.display().to_string(),
                action,
                source: StoreCause::plain(source.to_string()),
            };
        }
        Self::Local {
            path: path.to_path_buf(),
            action,
            source,
        }
    }

    /// The error and its causes on one line (`message: cause: cause`), as a step's failure is
    /// reported.
    #[must_use]
    pub fn one_line(&self) -> String {
        one_line(self)
    }

    /// Whether trying again later might succeed (a network failure or a cut transfer), as
    /// opposed to a wrong URI, missing object or refused credentials.
    #[must_use]
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Store { .. } | Self::Corrupt { .. })
    }
}

/// A store's error as text with every credential value replaced by `***`.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{text}")]
pub struct StoreCause {
    text: String,
}

impl StoreCause {
    /// `error`'s text (and its causes'), each of `secrets` masked.
    pub(crate) fn redacted(error: &(dyn std::error::Error + 'static), secrets: &[&str]) -> Self {
        let mut text = error.to_string();
        let mut cause = error.source();
        while let Some(inner) = cause {
            let more = inner.to_string();
            if !text.contains(&more) {
                text.push_str(": ");
                text.push_str(&more);
            }
            cause = inner.source();
        }
        Self {
            text: mask(&text, secrets),
        }
    }

    /// A cause with this text (already free of credentials).
    pub(crate) fn plain(text: impl Into<String>) -> Self {
        Self { text: text.into() }
    }
}

/// `text` with every occurrence of each secret (longest first, so a secret containing another is
/// masked whole) replaced by `***`.
pub(crate) fn mask(text: &str, secrets: &[&str]) -> String {
    let mut sorted: Vec<&str> = secrets.iter().copied().filter(|s| !s.is_empty()).collect();
    sorted.sort_by_key(|s| std::cmp::Reverse(s.len()));
    let mut text = text.to_owned();
    for secret in sorted {
        text = text.replace(secret, "***");
    }
    text
}

/// An error and its causes on one line (`message: cause: cause`), as tries' failures and the
/// command line report them.
#[must_use]
pub fn one_line(error: &dyn std::error::Error) -> String {
    let mut line = error.to_string();
    let mut cause = error.source();
    while let Some(err) = cause {
        line.push_str(": ");
        line.push_str(&err.to_string());
        cause = err.source();
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masking_hides_every_secret_even_nested_ones() {
        let text = mask("key=abc secret=abcdef token=abc", &["abc", "abcdef", ""]);
        assert_eq!(text, "key=*** secret=*** token=***");
    }

    #[test]
    fn not_found_names_the_uri_and_the_fix() {
        let err = ArtifactError::NotFound {
            uri: "s3://b/k".into(),
        };
        assert_eq!(
            err.to_string(),
            "nothing at s3://b/k; check the path, or that the step that writes it ran"
        );
    }
}
