//! What the remote logs need from a store: put a file at a URI, read a range of an object. The
//! artifact layer ([`gust_artifacts::Artifacts`]) is the store in production; tests put a
//! scripted one in its place to control when an upload ends.

use std::io::SeekFrom;
use std::path::Path;

use futures::future::BoxFuture;
use gust_artifacts::{ArtifactError, Artifacts, ObjectSlice};

/// Why a store operation failed, already free of credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreFailure {
    /// The error and its causes on one line.
    pub message: String,
    /// Whether trying again might succeed (a network failure, not refused credentials).
    pub transient: bool,
}

impl From<ArtifactError> for StoreFailure {
    fn from(err: ArtifactError) -> Self {
        Self {
            transient: err.is_transient(),
            message: err.one_line(),
        }
    }
}

/// A store logs are uploaded to and read from.
pub trait LogStore: Send + Sync + 'static {
    /// Uploads the file `file` to the object `uri` (replacing it).
    fn put<'a>(&'a self, file: &'a Path, uri: &'a str) -> BoxFuture<'a, Result<(), StoreFailure>>;

    /// At most `max_len` bytes of the object `uri` from `from`, with its size; `None` when there
    /// is no such object.
    fn read<'a>(
        &'a self,
        uri: &'a str,
        from: SeekFrom,
        max_len: u64,
    ) -> BoxFuture<'a, Result<Option<ObjectSlice>, StoreFailure>>;
}

impl LogStore for Artifacts {
    fn put<'a>(&'a self, file: &'a Path, uri: &'a str) -> BoxFuture<'a, Result<(), StoreFailure>> {
        Box::pin(async move {
            self.upload(file, uri).await?;
            Ok(())
        })
    }

    fn read<'a>(
        &'a self,
        uri: &'a str,
        from: SeekFrom,
        max_len: u64,
    ) -> BoxFuture<'a, Result<Option<ObjectSlice>, StoreFailure>> {
        Box::pin(async move {
            match self.read_range(uri, from, max_len).await {
                Ok(slice) => Ok(Some(slice)),
                Err(ArtifactError::NotFound { .. }) => Ok(None),
                Err(err) => Err(err.into()),
            }
        })
    }
}
