//! Reading part of one object without downloading it: a byte range from a start offset or the
//! last bytes of it, as a log viewer pages through a log kept in a store. One `HEAD` for the
//! object's size, then one ranged `GET` (none when the range is empty), so a reader pays for the
//! bytes it shows, not for the whole object.

use std::io::SeekFrom;

use bytes::Bytes;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt};

use crate::error::ArtifactError;
use crate::store::Stores;
use crate::target::{Target, store_error};

/// A piece of one object, read by [`crate::Artifacts::read_range`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectSlice {
    /// The bytes read (at most the length asked for).
    pub bytes: Bytes,
    /// The offset of the first byte read.
    pub start: u64,
    /// The whole object's size.
    pub size: u64,
}

/// Reads at most `max_len` bytes of the object `uri` from `from` (`SeekFrom::Start(n)`, or
/// `SeekFrom::End(-n)` for its last `n` bytes; a start past the end reads nothing).
pub(crate) async fn read_range(
    stores: &Stores,
    uri: &str,
    from: SeekFrom,
    max_len: u64,
) -> Result<ObjectSlice, ArtifactError> {
    let target = Target::open(stores, uri)?;
    if target.key.parts().next().is_none() {
        return Err(ArtifactError::NotFound {
            uri: uri.to_owned(),
        });
    }
    let meta = target
        .store
        .head(&target.key)
        .await
        .map_err(|err| store_error(stores, uri, "read", &err))?;
    let size = meta.size;
    let start = start_of(from, size);
    let end = start.saturating_add(max_len).min(size);
    if start >= end {
        return Ok(ObjectSlice {
            bytes: Bytes::new(),
            start,
            size,
        });
    }
    let options = GetOptions::new().with_range(Some(GetRange::Bounded(start..end)));
    let bytes = get(target.store.as_ref(), &target.key, options)
        .await
        .map_err(|err| store_error(stores, uri, "read", &err))?;
    Ok(ObjectSlice { bytes, start, size })
}

/// Checks that `uri` is a location the artifact layer can open with its credentials (parsing,
/// the store's settings); nothing is sent to the store.
pub(crate) fn check(stores: &Stores, uri: &str) -> Result<(), ArtifactError> {
    Target::open(stores, uri).map(|_| ())
}

async fn get(
    store: &dyn ObjectStore,
    key: &object_store::path::Path,
    options: GetOptions,
) -> object_store::Result<Bytes> {
    store.get_opts(key, options).await?.bytes().await
}

/// Where a read `from` starts in an object of `size` bytes (never past its end).
fn start_of(from: SeekFrom, size: u64) -> u64 {
    match from {
        SeekFrom::Start(offset) => offset.min(size),
        SeekFrom::End(back) => size.saturating_sub(back.unsigned_abs()),
        SeekFrom::Current(offset) => u64::try_from(offset).unwrap_or(0).min(size),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Artifacts, StoreCredentials};

    #[test]
    fn reads_start_inside_the_object() {
        assert_eq!(start_of(SeekFrom::Start(5), 10), 5);
        assert_eq!(start_of(SeekFrom::Start(50), 10), 10);
        assert_eq!(start_of(SeekFrom::End(-3), 10), 7);
        assert_eq!(start_of(SeekFrom::End(-30), 10), 0);
    }

    #[tokio::test]
    async fn a_range_of_a_local_object_is_read_without_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.txt");
        std::fs::write(&path, "0123456789").unwrap();
        let uri = format!("file://{}", path.display());
        let artifacts = Artifacts::new(StoreCredentials::none());
        let slice = artifacts
            .read_range(&uri, SeekFrom::Start(2), 3)
            .await
            .unwrap();
        assert_eq!(
            (&slice.bytes[..], slice.start, slice.size),
            (&b"234"[..], 2, 10)
        );
        let tail = artifacts
            .read_range(&uri, SeekFrom::End(-4), 100)
            .await
            .unwrap();
        assert_eq!(&tail.bytes[..], b"6789");
        let past = artifacts
            .read_range(&uri, SeekFrom::Start(10), 5)
            .await
            .unwrap();
        assert!(past.bytes.is_empty());
        let missing = artifacts
            .read_range(&format!("{uri}.gone"), SeekFrom::Start(0), 5)
            .await
            .unwrap_err();
        assert!(
            matches!(missing, ArtifactError::NotFound { .. }),
            "{missing}"
        );
    }
}
