//! Object storage for processing steps' inputs and outputs: download a URI (an object, or every
//! object under a prefix) to a local path, upload a file or folder to a URI, list what is under
//! a URI. One layer over [`object_store`] for `s3://` (AWS and S3-compatible services), `oss://`
//! (Alibaba OSS through its S3-compatible endpoint), `gs://`, `az://` and `abfs[s]://`,
//! `file://` and plain local paths.
//!
//! It must not know about DAGs, tasks or pods: callers pass URIs, paths and
//! [`StoreCredentials`]. No credential value ever appears in its errors, logs or `Debug` output.
//! Start reading at [`Artifacts`]; [`uri`] parses locations, `store` opens stores, `download`
//! and `upload` move data, `range` reads part of one object (remote task logs page through
//! them that way).
//!
//! # Credentials
//!
//! [`StoreCredentials`] hold a Gust connection's fields (`login`, `password`, `host`, `port`,
//! `schema`) and the keys of its extra; [`StoreCredentials::from_env`] reads the same keys from
//! `GUST_ARTIFACTS_<key>` variables. They mean, per store:
//!
//! | store | key | meaning |
//! | --- | --- | --- |
//! | `s3://`, `oss://` | `login` (or extra `aws_access_key_id`) | access key id |
//! | | `password` (or extra `aws_secret_access_key`) | secret access key |
//! | | extra `aws_session_token` | session token of temporary credentials |
//! | | extra `region_name` | region (`oss://`: also the variable `OSS_REGION`) |
//! | | extra `endpoint_url`, else `host` | an S3-compatible service's endpoint (path-style requests; `http://` allowed) |
//! | `gs://` | extra `keyfile_dict` | a service account key, as JSON text |
//! | | extra `key_path` | a service account key file |
//! | `az://`, `abfs[s]://` | `login` | storage account (an `abfs` URI's account wins) |
//! | | `password` | account key |
//! | | extra `sas_token` | a SAS token |
//! | | extra `endpoint_url` | another endpoint (Azurite) |
//!
//! Without these, each store uses its standard environment and instance credentials (`AWS_*`
//! and the instance role, `GOOGLE_APPLICATION_CREDENTIALS`, `AZURE_STORAGE_*`; for `oss://`
//! also `OSS_ACCESS_KEY_ID`/`OSS_ACCESS_KEY_SECRET`). `oss://bucket/key` goes to
//! `https://bucket.s3.oss-<region>.aliyuncs.com` (virtual-hosted, as OSS requires) unless an
//! endpoint is given.

mod credentials;
mod download;
mod error;
mod options;
mod range;
mod store;
mod target;
mod upload;
pub mod uri;

#[cfg(feature = "testing")]
pub mod testing;

use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};

pub use credentials::{ENV_PREFIX, StoreCredentials};
pub use error::{ACCEPTED, ArtifactError, StoreCause, one_line};
pub use options::{MIB, TransferOptions};
pub use range::ObjectSlice;

use store::Stores;
use target::{Found, Target};

/// What a transfer moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Transferred {
    /// How many objects (files).
    pub objects: usize,
    /// How many bytes in all.
    pub bytes: u64,
}

impl Transferred {
    /// Runs `transfer` on every job, [`TransferOptions::concurrency`] at once, each returning
    /// the bytes it moved; the first error ends them all.
    async fn all<J, F, Fut>(
        stores: &Stores,
        jobs: Vec<J>,
        transfer: F,
    ) -> Result<Self, ArtifactError>
    where
        F: Fn(J) -> Fut,
        Fut: std::future::Future<Output = Result<u64, ArtifactError>>,
    {
        let objects = jobs.len();
        let bytes: Vec<u64> = futures::stream::iter(jobs)
            .map(transfer)
            .buffer_unordered(stores.options().concurrency.max(1))
            .try_collect()
            .await?;
        Ok(Self {
            objects,
            bytes: bytes.iter().sum(),
        })
    }
}

/// One object found by [`Artifacts::list`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectEntry {
    /// Its full URI (or path, for a plain local path).
    pub uri: String,
    /// Its size in bytes.
    pub size: u64,
    /// When it was last written.
    pub last_modified: DateTime<Utc>,
}

/// Moves artifacts between local paths and object stores. Cheap to clone; stores are opened on
/// first use and kept per (scheme, bucket).
#[derive(Clone)]
pub struct Artifacts {
    stores: Arc<Stores>,
}

impl std::fmt::Debug for Artifacts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Artifacts")
            .field("credentials", self.stores.credentials())
            .field("options", self.stores.options())
            .finish()
    }
}

impl Artifacts {
    /// Artifacts opened with `credentials` and the default [`TransferOptions`].
    #[must_use]
    pub fn new(credentials: StoreCredentials) -> Self {
        Self {
            stores: Arc::new(Stores::new(credentials, TransferOptions::default())),
        }
    }

    /// The same credentials with other transfer options (stores are opened anew).
    #[must_use]
    pub fn with_options(self, options: TransferOptions) -> Self {
        Self {
            stores: Arc::new(Stores::new(self.stores.credentials().clone(), options)),
        }
    }

    /// Uploads a file to the object `destination` (or, when `destination` ends with `/`, to
    /// `destination<file name>`), or every file under a folder to `destination/<relative path>`.
    pub async fn upload(
        &self,
        source: &Path,
        destination: &str,
    ) -> Result<Transferred, ArtifactError> {
        upload::upload(&self.stores, source, destination).await
    }

    /// Downloads the object `source` to the file `destination` (into it when it ends with `/` or
    /// is a folder), or every object under the prefix `source` into the folder `destination`,
    /// keeping relative paths. Nothing at `source` is [`ArtifactError::NotFound`].
    pub async fn download(
        &self,
        source: &str,
        destination: &Path,
    ) -> Result<Transferred, ArtifactError> {
        download::download(&self.stores, source, destination).await
    }

    /// At most `max_len` bytes of the object `uri`, from `from` (`SeekFrom::Start(offset)`, or
    /// `SeekFrom::End(-n)` for its last `n` bytes), with the object's size: a ranged read, for
    /// paging through an object without downloading it. Nothing there is
    /// [`ArtifactError::NotFound`].
    pub async fn read_range(
        &self,
        uri: &str,
        from: std::io::SeekFrom,
        max_len: u64,
    ) -> Result<ObjectSlice, ArtifactError> {
        range::read_range(&self.stores, uri, from, max_len).await
    }

    /// Checks, without a request, that `uri` is a location these credentials can open: an
    /// accepted URI whose store can be set up (an `oss://` URI needs a region, for example).
    pub fn check_location(&self, uri: &str) -> Result<(), ArtifactError> {
        range::check(&self.stores, uri)
    }

    /// Whether the object `uri` names exists: one request, no listing (a missing bucket is
    /// `false`, as a missing object).
    pub async fn exists(&self, uri: &str) -> Result<bool, ArtifactError> {
        Target::open(&self.stores, uri)?
            .exists(&self.stores, uri)
            .await
    }

    /// The object `uri` names, or every object under it, sorted by URI. Nothing there is
    /// [`ArtifactError::NotFound`].
    pub async fn list(&self, uri: &str) -> Result<Vec<ObjectEntry>, ArtifactError> {
        let target = Target::open(&self.stores, uri)?;
        let entry = |meta: object_store::ObjectMeta| ObjectEntry {
            uri: target.uri_of(&meta.location),
            size: meta.size,
            last_modified: meta.last_modified,
        };
        Ok(match target.find(&self.stores, uri).await? {
            Found::Object(meta) => vec![entry(meta)],
            Found::Prefix(objects) => objects.into_iter().map(|(meta, _)| entry(meta)).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send_and_sync<T: Send + Sync>(_: &T) {}
    fn send<T: Send>(_: T) {}

    #[test]
    fn artifacts_and_their_transfers_can_move_between_tasks() {
        let artifacts = Artifacts::new(StoreCredentials::none());
        send_and_sync(&artifacts);
        send(artifacts.download("s3://b/k", Path::new("x")));
        send(artifacts.upload(Path::new("x"), "s3://b/k"));
        send(artifacts.list("s3://b/k"));
    }
}
