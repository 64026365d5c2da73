//! Pod admission on create: validation, worded as the real API server words its 422 `Invalid`
//! causes, and the defaults it fills in.
//!
//! Only what a pod runtime can get wrong is checked: names, generated names, containers.

use std::collections::{HashMap, HashSet};

use k8s_openapi::api::core::v1::{Container, Pod, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::StatusCause;

const DNS1123_SUBDOMAIN_MAX: usize = 253;
const DNS1123_LABEL_MAX: usize = 63;
const SUBDOMAIN_HINT: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const LABEL_HINT: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";

/// Every reason the pod cannot be created, empty when it is valid.
pub(crate) fn validate_pod(pod: &Pod) -> Vec<StatusCause> {
    let mut causes = Vec::new();
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    if name.is_empty() {
        causes.push(cause(
            "FieldValueRequired",
            "metadata.name",
            "Required value: name or generateName is required",
        ));
    } else if !is_dns1123_subdomain(name) {
        causes.push(cause(
            "FieldValueInvalid",
            "metadata.name",
            &format!("Invalid value: \"{name}\": {SUBDOMAIN_HINT}"),
        ));
    }
    let containers = pod.spec.as_ref().map(|spec| spec.containers.as_slice());
    match containers {
        None | Some([]) => causes.push(cause(
            "FieldValueRequired",
            "spec.containers",
            "Required value",
        )),
        Some(containers) => {
            let init = pod
                .spec
                .as_ref()
                .and_then(|spec| spec.init_containers.as_deref())
                .unwrap_or_default();
            let mut seen = HashSet::new();
            let all = init
                .iter()
                .map(|c| ("spec.initContainers", c))
                .chain(containers.iter().map(|c| ("spec.containers", c)));
            let mut index_of = HashMap::<&str, usize>::new();
            for (list, container) in all {
                let index = index_of.entry(list).or_default();
                let field = format!("{list}[{index}]");
                *index += 1;
                if container.name.is_empty() {
                    causes.push(cause(
                        "FieldValueRequired",
                        &format!("{field}.name"),
                        "Required value",
                    ));
                } else if !is_dns1123_label(&container.name) {
                    causes.push(cause(
                        "FieldValueInvalid",
                        &format!("{field}.name"),
                        &format!("Invalid value: \"{}\": {LABEL_HINT}", container.name),
                    ));
                } else if !seen.insert(container.name.as_str()) {
                    causes.push(cause(
                        "FieldValueDuplicate",
                        &format!("{field}.name"),
                        &format!("Duplicate value: \"{}\"", container.name),
                    ));
                }
                if container.image.as_deref().unwrap_or_default().is_empty() {
                    causes.push(cause(
                        "FieldValueRequired",
                        &format!("{field}.image"),
                        "Required value",
                    ));
                }
            }
        }
    }
    causes
}

/// Fills in the defaults the API server sets on a new pod, and its first status.
pub(crate) fn default_pod(pod: &mut Pod) {
    let spec = pod.spec.get_or_insert_with(Default::default);
    spec.restart_policy
        .get_or_insert_with(|| "Always".to_owned());
    spec.termination_grace_period_seconds.get_or_insert(30);
    spec.dns_policy
        .get_or_insert_with(|| "ClusterFirst".to_owned());
    spec.scheduler_name
        .get_or_insert_with(|| "default-scheduler".to_owned());
    spec.service_account_name
        .get_or_insert_with(|| "default".to_owned());
    spec.enable_service_links.get_or_insert(true);
    spec.priority.get_or_insert(0);
    let containers = spec
        .init_containers
        .iter_mut()
        .flatten()
        .chain(spec.containers.iter_mut());
    let mut any_resources = false;
    for container in containers {
        default_container(container);
        any_resources |= container.resources.is_some();
    }
    pod.status = Some(PodStatus {
        phase: Some("Pending".to_owned()),
        qos_class: Some(
            if any_resources {
                "Burstable"
            } else {
                "BestEffort"
            }
            .to_owned(),
        ),
        ..PodStatus::default()
    });
}

fn default_container(container: &mut Container) {
    container
        .termination_message_path
        .get_or_insert_with(|| "/dev/termination-log".to_owned());
    container
        .termination_message_policy
        .get_or_insert_with(|| "File".to_owned());
    let image = container.image.as_deref().unwrap_or_default();
    let tagged = image.contains('@')
        || image
            .rsplit('/')
            .next()
            .is_some_and(|last| last.contains(':') && !last.ends_with(":latest"));
    container
        .image_pull_policy
        .get_or_insert_with(|| if tagged { "IfNotPresent" } else { "Always" }.to_owned());
}

/// Whether `name` is a DNS-1123 subdomain, the rule for pod names.
pub(crate) fn is_dns1123_subdomain(name: &str) -> bool {
    name.len() <= DNS1123_SUBDOMAIN_MAX && name.split('.').all(is_dns1123_label)
}

/// Whether `name` is a DNS-1123 label, the rule for container names.
pub(crate) fn is_dns1123_label(name: &str) -> bool {
    let bytes = name.as_bytes();
    let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            bytes.len() <= DNS1123_LABEL_MAX
                && alnum(first)
                && alnum(last)
                && bytes.iter().all(|b| alnum(b) || *b == b'-')
        }
        _ => false,
    }
}

/// The five-character suffix appended to a `generateName`, from the alphabet the API server uses.
pub(crate) fn generated_suffix(seed: u64) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    // A multiplicative hash spreads consecutive seeds, so suffixes do not look sequential.
    let mut value = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 16;
    let mut suffix = String::with_capacity(5);
    for _ in 0..5 {
        let index = usize::try_from(value % ALPHABET.len() as u64).unwrap_or_default();
        suffix.push(char::from(ALPHABET[index]));
        value /= ALPHABET.len() as u64;
    }
    suffix
}

fn cause(reason: &str, field: &str, message: &str) -> StatusCause {
    StatusCause {
        reason: Some(reason.to_owned()),
        field: Some(field.to_owned()),
        message: Some(message.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subdomains_allow_dots_but_not_capitals_or_underscores() {
        assert!(is_dns1123_subdomain("airflow-task.try-1"));
        assert!(!is_dns1123_subdomain("Bad_Name"));
        assert!(!is_dns1123_subdomain("-leading"));
        assert!(!is_dns1123_subdomain("trailing."));
        assert!(!is_dns1123_subdomain(&"a".repeat(254)));
    }

    #[test]
    fn labels_reject_dots() {
        assert!(is_dns1123_label("base"));
        assert!(!is_dns1123_label("a.b"));
        assert!(!is_dns1123_label(""));
    }

    #[test]
    fn generated_suffixes_differ_for_consecutive_seeds() {
        assert_ne!(generated_suffix(1), generated_suffix(2));
        assert_eq!(generated_suffix(7).len(), 5);
    }

    #[test]
    fn a_pod_without_containers_is_invalid() {
        let pod = Pod {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some("p".to_owned()),
                ..Default::default()
            },
            ..Pod::default()
        };
        let causes = validate_pod(&pod);
        assert_eq!(causes.len(), 1);
        assert_eq!(causes[0].field.as_deref(), Some("spec.containers"));
    }
}
