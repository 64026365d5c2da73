//! Downloads with prefix semantics: a source naming an object fetches it, a source naming a
//! prefix fetches everything under it keeping relative paths. Each object is streamed into a
//! temporary file beside its destination, checked (size, and MD5 when the ETag is one), then
//! renamed into place, so nothing half-written ever carries the final name. A cut or corrupt
//! body is fetched again from the start, with backoff.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use futures::StreamExt;
use md5::{Digest, Md5};
use object_store::{ObjectMeta, ObjectStoreExt};
use tokio::io::AsyncWriteExt;

use crate::error::ArtifactError;
use crate::store::Stores;
use crate::target::{Found, Target, store_error};
use crate::{Transferred, uri};

/// Downloads `source` to `destination` (see the module docs).
pub(crate) async fn download(
    stores: &Stores,
    source: &str,
    destination: &Path,
) -> Result<Transferred, ArtifactError> {
    let target = Target::open(stores, source)?;
    let into_folder = destination.as_os_str().to_string_lossy().ends_with('/')
        || tokio::fs::metadata(destination)
            .await
            .is_ok_and(|m| m.is_dir());
    let destination = uri::absolute(destination).map_err(|source| ArtifactError::Local {
        path: destination.to_path_buf(),
        action: "read",
        source,
    })?;
    let jobs = match target.find(stores, source).await? {
        Found::Object(meta) => {
            let file = if into_folder {
                destination.join(target.key.filename().unwrap_or("object"))
            } else {
                destination
            };
            let bytes = fetch(stores, &target, &meta, &file).await?;
            return Ok(Transferred { objects: 1, bytes });
        }
        Found::Prefix(objects) => objects
            .into_iter()
            .map(|(meta, relative)| (destination.join(relative), meta))
            .collect(),
    };
    let target = &target;
    Transferred::all(stores, jobs, |(file, meta)| async move {
        fetch(stores, target, &meta, &file).await
    })
    .await
}

/// Fetches one object to `file`, trying again from the start when a try fails transiently.
async fn fetch(
    stores: &Stores,
    target: &Target,
    meta: &ObjectMeta,
    file: &Path,
) -> Result<u64, ArtifactError> {
    let options = stores.options();
    let attempts = options.download_attempts.max(1);
    let mut attempt = 1;
    loop {
        match fetch_once(stores, target, meta, file, attempt).await {
            Ok(bytes) => return Ok(bytes),
            Err(err) if err.is_transient() && attempt < attempts => {
                tracing::warn!(
                    uri = %target.uri_of(&meta.location),
                    attempt,
                    "download failed, fetching the object again: {err}"
                );
                tokio::time::sleep(options.backoff(attempt)).await;
                attempt += 1;
            }
            Err(err) => return Err(err),
        }
    }
}

/// One try: stream into a temporary file beside `file`, check, rename.
async fn fetch_once(
    stores: &Stores,
    target: &Target,
    meta: &ObjectMeta,
    file: &Path,
    attempt: u32,
) -> Result<u64, ArtifactError> {
    let uri = target.uri_of(&meta.location);
    let folder = file.parent().unwrap_or(Path::new("/"));
    tokio::fs::create_dir_all(folder)
        .await
        .map_err(|source| ArtifactError::local(folder, "create", source))?;
    let temp = temp_name(file);
    let result = async {
        let got = target
            .store
            .get(&meta.location)
            .await
            .map_err(|err| store_error(stores, &uri, "read", &err))?;
        let expected = got.meta.size;
        // Only a plain ETag is an MD5 to check against; hashing is skipped otherwise.
        let want_md5 = got.meta.e_tag.as_deref().and_then(plain_md5);
        let mut out = tokio::fs::File::create(&temp)
            .await
            .map_err(|source| ArtifactError::local(&temp, "write", source))?;
        let mut md5 = want_md5.as_ref().map(|_| Md5::new());
        let mut written = 0u64;
        let mut body = got.into_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|err| store_error(stores, &uri, "read", &err))?;
            if let Some(md5) = md5.as_mut() {
                md5.update(&chunk);
            }
            out.write_all(&chunk)
                .await
                .map_err(|source| ArtifactError::local(&temp, "write", source))?;
            written += chunk.len() as u64;
        }
        out.sync_all()
            .await
            .map_err(|source| ArtifactError::local(&temp, "write", source))?;
        if written != expected {
            return Err(ArtifactError::Corrupt {
                uri: uri.clone(),
                what: format!("got {written} bytes where the store announced {expected}"),
                attempts: attempt,
            });
        }
        if let (Some(want), Some(md5)) = (want_md5, md5) {
            let have = hex(&md5.finalize());
            if have != want {
                return Err(ArtifactError::Corrupt {
                    uri: uri.clone(),
                    what: format!("its MD5 {have} differs from its ETag {want}"),
                    attempts: attempt,
                });
            }
        }
        tokio::fs::rename(&temp, file)
            .await
            .map_err(|source| ArtifactError::local(file, "write", source))?;
        Ok(written)
    }
    .await;
    if result.is_err() {
        let _ = tokio::fs::remove_file(&temp).await;
    }
    result
}

/// A name beside `file` no other download uses: `.<name>.gust-partial-<pid>-<n>`.
fn temp_name(file: &Path) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    file.with_file_name(format!(".{name}.gust-partial-{}-{n}", std::process::id()))
}

/// The MD5 an ETag holds when it is a plain one (32 hex digits, quotes allowed); multipart and
/// encrypted objects' ETags are not.
fn plain_md5(etag: &str) -> Option<String> {
    let tag = etag.trim_matches('"').to_ascii_lowercase();
    (tag.len() == 32 && tag.bytes().all(|b| b.is_ascii_hexdigit())).then_some(tag)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_etags_are_md5s() {
        assert_eq!(
            plain_md5("\"9E107D9D372BB6826BD81D3542A419D6\"").as_deref(),
            Some("9e107d9d372bb6826bd81d3542a419d6")
        );
        assert_eq!(plain_md5("\"9e107d9d372bb6826bd81d3542a419d6-3\""), None);
        assert_eq!(plain_md5("1a2b-3c-4d"), None);
    }
}
