//! A parsed location bound to its opened store: the store, the key inside it, and how to name
//! the objects found under it. Also turns the store's errors into [`ArtifactError`]s.

use std::path::PathBuf;
use std::sync::Arc;

use futures::TryStreamExt;

use object_store::path::Path as Key;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};

use crate::error::{ArtifactError, StoreCause};
use crate::store::Stores;
use crate::uri::Location;

/// A location in an opened store.
pub(crate) struct Target {
    /// The store.
    pub store: Arc<dyn ObjectStore>,
    /// The object or prefix inside it (the root when empty).
    pub key: Key,
    /// How objects in this store are named for users: `s3://bucket/` or `file://` or ``.
    base: String,
    /// Whether the store is the local file system (object keys are absolute paths).
    local: bool,
}

impl Target {
    /// Opens the store `uri` lives in.
    pub fn open(stores: &Stores, uri: &str) -> Result<Self, ArtifactError> {
        match Location::parse(uri)? {
            Location::Local { path, as_uri } => {
                let parts: Option<Vec<&str>> = path
                    .components()
                    .filter_map(|c| match c {
                        std::path::Component::Normal(part) => Some(part.to_str()),
                        _ => None,
                    })
                    .collect();
                let Some(parts) = parts else {
                    return Err(ArtifactError::InvalidUri {
                        uri: uri.to_owned(),
                        reason: "the path is not UTF-8".to_owned(),
                    });
                };
                Ok(Self {
                    store: stores.local(),
                    key: Key::from_iter(parts),
                    base: if as_uri { "file:///" } else { "/" }.to_owned(),
                    local: true,
                })
            }
            Location::Remote(remote) => Ok(Self {
                store: stores.remote(&remote, uri)?,
                key: Key::from_iter(remote.key.split('/').filter(|s| !s.is_empty())),
                base: remote.base,
                local: false,
            }),
        }
    }

    /// The user-facing name of the object at `key`.
    pub fn uri_of(&self, key: &Key) -> String {
        format!("{}{}", self.base, key.as_ref())
    }

    /// Whether an object is at this location's key (`uri`, for errors); a prefix with objects
    /// under it is not one.
    pub async fn exists(&self, stores: &Stores, uri: &str) -> Result<bool, ArtifactError> {
        match self.store.head(&self.key).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(err) => Err(store_error(stores, uri, "read", &err)),
        }
    }

    /// What this location names (`uri`, for errors): the object at its key, else every object
    /// under it as a prefix, in key order; nothing is [`ArtifactError::NotFound`].
    pub async fn find(&self, stores: &Stores, uri: &str) -> Result<Found, ArtifactError> {
        if self.key.parts().next().is_some() {
            match self.store.head(&self.key).await {
                Ok(meta) => return Ok(Found::Object(meta)),
                Err(object_store::Error::NotFound { .. }) => {}
                Err(err) => return Err(store_error(stores, uri, "read", &err)),
            }
        }
        let listed: Vec<ObjectMeta> = match self.store.list(Some(&self.key)).try_collect().await {
            Ok(listed) => listed,
            // A local folder that does not exist lists as an error, a missing prefix as nothing.
            Err(object_store::Error::NotFound { .. }) if self.local => Vec::new(),
            Err(err) => return Err(store_error(stores, uri, "list", &err)),
        };
        let mut found: Vec<(ObjectMeta, PathBuf)> = listed
            .into_iter()
            .filter_map(|meta| {
                // Skips folder markers (`prefix/`) and anything outside the prefix.
                let relative = relative(&meta.location, &self.key)?;
                Some((meta, relative))
            })
            .collect();
        if found.is_empty() {
            return Err(ArtifactError::NotFound {
                uri: uri.to_owned(),
            });
        }
        found.sort_by(|a, b| a.0.location.cmp(&b.0.location));
        Ok(Found::Prefix(found))
    }
}

/// What a location names.
pub(crate) enum Found {
    /// One object.
    Object(ObjectMeta),
    /// The objects under a prefix, each with its path relative to it.
    Prefix(Vec<(ObjectMeta, PathBuf)>),
}

/// `location` relative to `prefix`, as a path of plain segments; `None` for the prefix itself or
/// a segment that could climb out of the destination.
fn relative(location: &Key, prefix: &Key) -> Option<PathBuf> {
    let parts: Vec<String> = location
        .prefix_match(prefix)?
        .map(|part| part.as_ref().to_owned())
        .collect();
    if parts.is_empty()
        || parts
            .iter()
            .any(|p| p.is_empty() || p == "." || p == ".." || p.contains('/'))
    {
        return None;
    }
    Some(parts.iter().collect())
}

/// `err` from the store while doing `action` at `uri`, as an [`ArtifactError`] whose text holds
/// no credential.
pub(crate) fn store_error(
    stores: &Stores,
    uri: &str,
    action: &'static str,
    err: &object_store::Error,
) -> ArtifactError {
    let source = StoreCause::redacted(err, &stores.secrets());
    match err {
        object_store::Error::NotFound { .. } => ArtifactError::NotFound {
            uri: uri.to_owned(),
        },
        object_store::Error::PermissionDenied { .. }
        | object_store::Error::Unauthenticated { .. } => ArtifactError::PermissionDenied {
            uri: uri.to_owned(),
            action,
            source,
        },
        _ if caused_by_permission(err) => ArtifactError::PermissionDenied {
            uri: uri.to_owned(),
            action,
            source,
        },
        _ => ArtifactError::Store {
            uri: uri.to_owned(),
            action,
            source,
        },
    }
}

/// Whether a local `EACCES` (or a 403 the store did not classify) is somewhere in `err`'s causes.
fn caused_by_permission(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(err);
    while let Some(e) = cause {
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::PermissionDenied
        {
            return true;
        }
        cause = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_stay_inside_the_destination() {
        let prefix = Key::from("runs/r1");
        assert_eq!(
            relative(&Key::from("runs/r1/a/b.txt"), &prefix),
            Some(PathBuf::from("a/b.txt"))
        );
        assert_eq!(relative(&Key::from("runs/r1"), &prefix), None);
        assert_eq!(relative(&Key::from("runs/r10/x"), &prefix), None);
    }
}
