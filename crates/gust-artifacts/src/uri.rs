//! Artifact locations: parsing `s3://`, `oss://`, `gs://`, `az://`, `abfs[s]://`, `file://` URIs and
//! plain paths into where they point, and joining segments onto a root. Pure: no store is opened
//! here, and the only file-system fact used is the current directory (for relative paths).

use std::path::{Component, Path, PathBuf};

use crate::error::ArtifactError;

/// `root` with each of `segments` appended, separated by one `/` (empty segments and extra
/// slashes dropped): `join("s3://b/runs/", &["d", "r"])` is `s3://b/runs/d/r`.
#[must_use]
pub fn join(root: &str, segments: &[&str]) -> String {
    let parts: Vec<&str> = segments
        .iter()
        .map(|s| s.trim_matches('/'))
        .filter(|s| !s.is_empty())
        .collect();
    if parts.is_empty() {
        return root.to_owned();
    }
    let (scheme, rest) = match root.find("://") {
        Some(at) => root.split_at(at + 3),
        None => ("", root),
    };
    format!("{scheme}{}/{}", rest.trim_end_matches('/'), parts.join("/"))
}

/// The local folder or file a `file://` URI or plain path names (a relative path is taken from
/// the current directory); `None` for remote stores and for text that is no location.
#[must_use]
pub fn local_path(uri: &str) -> Option<PathBuf> {
    match Location::parse(uri).ok()? {
        Location::Local { path, .. } => Some(path),
        Location::Remote(_) => None,
    }
}

/// Which remote store a URI names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    /// Amazon S3 or an S3-compatible service.
    S3,
    /// Alibaba Cloud OSS, through its S3-compatible endpoint.
    Oss,
    /// Google Cloud Storage.
    Gcs,
    /// Azure Blob Storage (and Data Lake Gen2).
    Azure,
}

/// A remote location: a bucket (or container) and a key inside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Remote {
    /// The store.
    pub kind: Kind,
    /// The bucket or container.
    pub bucket: String,
    /// The storage account, when the URI names it (`abfss://container@account.dfs...`).
    pub account: Option<String>,
    /// The key or prefix, without leading or trailing `/`.
    pub key: String,
    /// The URI up to the key, as written (`s3://bucket/`), to name objects under it.
    pub base: String,
}

/// Where a URI or path points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Location {
    /// A local file or folder (absolute).
    Local {
        /// The absolute path.
        path: PathBuf,
        /// Whether it was written as a `file://` URI (objects under it are named the same way).
        as_uri: bool,
    },
    /// An object or prefix in a remote store.
    Remote(Remote),
}

impl Location {
    /// Parses `uri`: a URI with one of the accepted schemes, or a plain path (relative to the
    /// current directory).
    pub fn parse(uri: &str) -> Result<Self, ArtifactError> {
        let invalid = |reason: &str| ArtifactError::InvalidUri {
            uri: uri.to_owned(),
            reason: reason.to_owned(),
        };
        if uri.trim().is_empty() {
            return Err(invalid("it is empty"));
        }
        let Some((scheme, rest)) = uri.split_once("://") else {
            return Ok(Self::Local {
                path: absolute(Path::new(uri))
                    .map_err(|_| invalid("the current directory cannot be read"))?,
                as_uri: false,
            });
        };
        let kind = match scheme.to_ascii_lowercase().as_str() {
            "file" => {
                let url = url::Url::parse(uri).map_err(|e| invalid(&e.to_string()))?;
                let path = url.to_file_path().map_err(|()| {
                    invalid("a file URI needs an absolute path, file:///like/this")
                })?;
                return Ok(Self::Local { path, as_uri: true });
            }
            "s3" | "s3a" => Kind::S3,
            "oss" => Kind::Oss,
            "gs" | "gcs" => Kind::Gcs,
            "az" | "azure" | "abfs" | "abfss" => Kind::Azure,
            _ => return Err(invalid(&format!("unknown scheme \"{scheme}\""))),
        };
        let (authority, key) = rest.split_once('/').unwrap_or((rest, ""));
        if authority.is_empty() {
            return Err(invalid("no bucket or container after the scheme"));
        }
        let (bucket, account) = if scheme.starts_with("abfs") {
            let Some((container, host)) = authority.split_once('@') else {
                return Err(invalid(
                    "abfs URIs name container@account.dfs.core.windows.net",
                ));
            };
            let account = host.split('.').next().unwrap_or_default();
            if container.is_empty() || account.is_empty() {
                return Err(invalid(
                    "abfs URIs name container@account.dfs.core.windows.net",
                ));
            }
            (container.to_owned(), Some(account.to_owned()))
        } else {
            (authority.to_owned(), None)
        };
        let key = key
            .split('/')
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join("/");
        if key.split('/').any(|s| s == "." || s == "..") {
            return Err(invalid("\".\" and \"..\" are not allowed in object keys"));
        }
        Ok(Self::Remote(Remote {
            kind,
            bucket,
            account,
            key,
            base: format!("{scheme}://{authority}/"),
        }))
    }
}

/// `path` made absolute against the current directory, `.` and `..` resolved lexically (the
/// path need not exist).
pub(crate) fn absolute(path: &Path) -> std::io::Result<PathBuf> {
    let joined = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()?.join(path)
    };
    let mut out = PathBuf::new();
    for part in joined.components() {
        match part {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remote(uri: &str) -> Remote {
        match Location::parse(uri) {
            Ok(Location::Remote(r)) => r,
            other => panic!("{uri}: {other:?}"),
        }
    }

    #[test]
    fn join_puts_one_slash_between_segments() {
        assert_eq!(join("s3://b/runs/", &["d", "/r/", ""]), "s3://b/runs/d/r");
        assert_eq!(join("s3://b", &["k"]), "s3://b/k");
        assert_eq!(join("file:///", &["tmp", "x"]), "file:///tmp/x");
        assert_eq!(join("/srv/art", &["a/b"]), "/srv/art/a/b");
        assert_eq!(join("out", &[]), "out");
    }

    #[test]
    fn remote_uris_split_into_bucket_and_key() {
        let r = remote("s3://bucket/a//b/c/");
        assert_eq!(
            (r.kind, r.bucket.as_str(), r.key.as_str()),
            (Kind::S3, "bucket", "a/b/c")
        );
        assert_eq!(r.base, "s3://bucket/");
        assert_eq!(remote("oss://b").key, "");
        assert_eq!(remote("gs://b/k").kind, Kind::Gcs);
        let az = remote("abfss://data@acct.dfs.core.windows.net/x/y");
        assert_eq!(
            (az.bucket.as_str(), az.account.as_deref(), az.key.as_str()),
            ("data", Some("acct"), "x/y")
        );
        assert_eq!(remote("az://data/x").account, None);
    }

    #[test]
    fn local_paths_and_file_uris_are_absolute() {
        assert_eq!(
            local_path("file:///tmp/a%20b"),
            Some(PathBuf::from("/tmp/a b"))
        );
        assert_eq!(local_path("/tmp/x/../y"), Some(PathBuf::from("/tmp/y")));
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(local_path("rel/p"), Some(cwd.join("rel/p")));
        assert_eq!(local_path("s3://b/k"), None);
    }

    #[test]
    fn bad_uris_name_themselves_and_the_accepted_schemes() {
        for (uri, reason) in [
            ("http://x/y", "unknown scheme \"http\""),
            ("s3:///key", "no bucket"),
            ("abfss://acct.dfs.core.windows.net/x", "container@account"),
            ("s3://b/a/../c", "\"..\""),
            ("", "empty"),
        ] {
            let text = Location::parse(uri).unwrap_err().to_string();
            assert!(text.contains(&format!("\"{uri}\"")), "{text}");
            assert!(text.contains(reason), "{text}");
            assert!(text.contains("s3://bucket/key"), "{text}");
        }
    }
}
