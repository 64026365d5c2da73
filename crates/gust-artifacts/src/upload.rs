//! Uploads: a file becomes one object, a folder every file under it at the same relative path.
//! Small files are one PUT; larger ones a multipart upload, completed only when every part is
//! stored and aborted on any failure, so an object appears whole or not at all.

use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use object_store::path::Path as Key;
use object_store::{ObjectStoreExt, PutPayload};
use tokio::io::AsyncReadExt;

use crate::error::ArtifactError;
use crate::store::Stores;
use crate::target::{Target, store_error};
use crate::{Transferred, uri};

/// Parts of one object in flight at once (memory: this many parts).
const PARTS_IN_FLIGHT: usize = 2;

/// Uploads `source` (a file or folder) to `destination`.
pub(crate) async fn upload(
    stores: &Stores,
    source: &Path,
    destination: &str,
) -> Result<Transferred, ArtifactError> {
    let target = Target::open(stores, destination)?;
    let source = uri::absolute(source).map_err(|e| ArtifactError::local(source, "read", e))?;
    let meta = match tokio::fs::metadata(&source).await {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ArtifactError::MissingSource { path: source });
        }
        Err(e) => return Err(ArtifactError::local(&source, "read", e)),
    };
    if meta.is_file() {
        let mut key = target.key.clone();
        if destination.ends_with('/') || key.parts().next().is_none() {
            let name = source.file_name().map(|n| n.to_string_lossy().into_owned());
            key = key.join(name.unwrap_or_default().as_str());
        }
        let bytes = put_file(stores, &target, &source, &key).await?;
        return Ok(Transferred { objects: 1, bytes });
    }
    let files = list_files(source.clone()).await?;
    let target = &target;
    Transferred::all(stores, files, |(file, relative)| async move {
        let key = relative
            .iter()
            .fold(target.key.clone(), |key, part| key.join(part.as_str()));
        put_file(stores, target, &file, &key).await
    })
    .await
}

/// Every file under `folder` (following links) with its path relative to it, in name order.
async fn list_files(folder: PathBuf) -> Result<Vec<(PathBuf, Vec<String>)>, ArtifactError> {
    tokio::task::spawn_blocking(move || {
        let mut files = Vec::new();
        for entry in walkdir::WalkDir::new(&folder)
            .follow_links(true)
            .sort_by_file_name()
        {
            let entry = entry.map_err(|e| {
                let path = e.path().unwrap_or(&folder).to_path_buf();
                ArtifactError::local(&path, "read", e.into())
            })?;
            if !entry.file_type().is_file() {
                continue;
            }
            let relative = entry
                .path()
                .strip_prefix(&folder)
                .unwrap_or(entry.path())
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            files.push((entry.into_path(), relative));
        }
        Ok(files)
    })
    .await
    .unwrap_or_else(|join| {
        Err(ArtifactError::Local {
            path: PathBuf::new(),
            action: "read",
            source: std::io::Error::other(join.to_string()),
        })
    })
}

/// Uploads one file to `key`; returns its size.
async fn put_file(
    stores: &Stores,
    target: &Target,
    file: &Path,
    key: &Key,
) -> Result<u64, ArtifactError> {
    let uri = target.uri_of(key);
    let size = tokio::fs::metadata(file)
        .await
        .map_err(|e| ArtifactError::local(file, "read", e))?
        .len();
    let options = stores.options();
    if size <= options.multipart_threshold {
        let data = tokio::fs::read(file)
            .await
            .map_err(|e| ArtifactError::local(file, "read", e))?;
        let len = data.len() as u64;
        target
            .store
            .put(key, PutPayload::from(data))
            .await
            .map_err(|err| store_error(stores, &uri, "write", &err))?;
        return Ok(len);
    }
    let mut upload = target
        .store
        .put_multipart(key)
        .await
        .map_err(|err| store_error(stores, &uri, "write", &err))?;
    let sent = async {
        let mut reader = tokio::fs::File::open(file)
            .await
            .map_err(|e| ArtifactError::local(file, "read", e))?;
        let mut in_flight: FuturesUnordered<object_store::UploadPart> = FuturesUnordered::new();
        let mut total = 0u64;
        loop {
            let part = read_part(&mut reader, options.part_size.max(1))
                .await
                .map_err(|e| ArtifactError::local(file, "read", e))?;
            if part.is_empty() {
                break;
            }
            total += part.len() as u64;
            while in_flight.len() >= PARTS_IN_FLIGHT {
                if let Some(done) = in_flight.next().await {
                    done.map_err(|err| store_error(stores, &uri, "write", &err))?;
                }
            }
            in_flight.push(upload.put_part(PutPayload::from(part)));
        }
        while let Some(done) = in_flight.next().await {
            done.map_err(|err| store_error(stores, &uri, "write", &err))?;
        }
        upload
            .complete()
            .await
            .map_err(|err| store_error(stores, &uri, "write", &err))?;
        Ok(total)
    }
    .await;
    if sent.is_err()
        && let Err(abort) = upload.abort().await
    {
        tracing::warn!(%uri, "could not abort the failed multipart upload: {}", store_error(stores, &uri, "write", &abort));
    }
    sent
}

/// Up to `size` bytes from `reader` (fewer only at its end).
async fn read_part(reader: &mut tokio::fs::File, size: usize) -> std::io::Result<Bytes> {
    let mut buf = BytesMut::zeroed(size);
    let mut filled = 0;
    while filled < size {
        let n = reader.read(&mut buf[filled..]).await?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    buf.truncate(filled);
    Ok(buf.freeze())
}
