//! Image-pull outcomes, worded as containerd and the kubelet word them.

use crate::script::ImagePull;

/// Why a pull attempt failed: the container's waiting reason and the kubelet's message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PullFailure {
    /// `ErrImagePull` or `InvalidImageName`.
    pub(crate) reason: &'static str,
    /// The waiting message, also the `Failed` event's message.
    pub(crate) message: String,
    /// Whether retrying can help (`InvalidImageName` never does).
    pub(crate) retried: bool,
}

/// The reference containerd resolves a short image name to.
pub(crate) fn qualified(image: &str) -> String {
    let (path, _) = split_tag(image);
    let first = path.split('/').next().unwrap_or_default();
    let has_registry =
        path.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    let with_registry = if has_registry {
        image.to_owned()
    } else if path.contains('/') {
        format!("docker.io/{image}")
    } else {
        format!("docker.io/library/{image}")
    };
    if split_tag(&with_registry).1 {
        with_registry
    } else {
        format!("{with_registry}:latest")
    }
}

/// The image path and whether it carries a tag or digest.
fn split_tag(image: &str) -> (&str, bool) {
    if let Some((path, _)) = image.split_once('@') {
        return (path, true);
    }
    let last = image.rsplit('/').next().unwrap_or_default();
    match last.rsplit_once(':') {
        Some(_) => (image.rsplit_once(':').map_or(image, |(path, _)| path), true),
        None => (image, false),
    }
}

/// The failure of one pull attempt, or `None` when it succeeds; `failing` says whether a
/// transient failure is still going on.
pub(crate) fn attempt(image: &str, pull: &ImagePull, failing: bool) -> Option<PullFailure> {
    let reference = qualified(image);
    let rpc = |code: &str, cause: String| PullFailure {
        reason: "ErrImagePull",
        message: format!(
            "Failed to pull image \"{image}\": rpc error: code = {code} desc = failed to pull and unpack image \"{reference}\": {cause}"
        ),
        retried: true,
    };
    let registry_status = |status: &str, server: &str| {
        rpc(
            "Unknown",
            format!(
                "failed to copy: httpReadSeeker: failed open: unexpected status code https://{}/v2/manifests/{}: {status}{server}",
                reference.split('/').next().unwrap_or_default(),
                reference.rsplit(':').next().unwrap_or_default()
            ),
        )
    };
    match pull {
        ImagePull::Ok => None,
        ImagePull::NotFound => Some(rpc(
            "NotFound",
            format!("failed to resolve reference \"{reference}\": {reference}: not found"),
        )),
        ImagePull::Denied => Some(rpc(
            "Unknown",
            format!(
                "failed to resolve reference \"{reference}\": pull access denied, repository does not exist or may require authorization: server message: insufficient_scope: authorization failed"
            ),
        )),
        ImagePull::RateLimited { .. } => failing.then(|| {
            registry_status(
                "429 Too Many Requests",
                " - Server message: toomanyrequests: You have reached your pull rate limit. You may increase the limit by authenticating and upgrading: https://www.docker.com/increase-rate-limit",
            )
        }),
        ImagePull::Registry5xx { .. } => {
            failing.then(|| registry_status("503 Service Unavailable", ""))
        }
        ImagePull::InvalidName => Some(PullFailure {
            reason: "InvalidImageName",
            message: format!(
                "Failed to apply default image tag \"{image}\": couldn't parse image name \"{image}\": invalid reference format"
            ),
            retried: false,
        }),
    }
}

/// The waiting message while the kubelet backs off before the next pull.
pub(crate) fn back_off_message(image: &str) -> String {
    format!("Back-off pulling image \"{image}\"")
}

/// The fake digest-pinned image ID of a pulled image.
pub(crate) fn image_id(image: &str) -> String {
    let reference = qualified(image);
    let path = split_tag(&reference).0;
    let hash = reference
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
        });
    format!("{path}@sha256:{hash:016x}{hash:016x}{hash:016x}{hash:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_resolve_to_docker_hub_library() {
        assert_eq!(qualified("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(
            qualified("apache/airflow:2.9"),
            "docker.io/apache/airflow:2.9"
        );
        assert_eq!(qualified("ghcr.io/x/y:1"), "ghcr.io/x/y:1");
        assert_eq!(qualified("localhost:5000/y"), "localhost:5000/y:latest");
    }

    #[test]
    fn not_found_reads_like_containerd() {
        let failure = attempt("busybox:nope", &ImagePull::NotFound, true).unwrap();
        assert_eq!(failure.reason, "ErrImagePull");
        assert!(
            failure
                .message
                .starts_with("Failed to pull image \"busybox:nope\": rpc error: code = NotFound")
        );
        assert!(
            failure
                .message
                .ends_with("docker.io/library/busybox:nope: not found")
        );
    }

    #[test]
    fn a_rate_limit_ends() {
        let pull = ImagePull::RateLimited {
            lasting: std::time::Duration::ZERO,
        };
        assert!(
            attempt("busybox", &pull, true)
                .unwrap()
                .message
                .contains("429 Too Many Requests")
        );
        assert_eq!(attempt("busybox", &pull, false), None);
    }
}
