//! Printing a pod as the YAML a user would `kubectl apply`, with secret values hidden.

use k8s_openapi::api::core::v1::Pod;

/// Words in an environment variable's name that mark its value as a secret (Airflow's
/// `sensitive_var_conn_names` defaults).
const SENSITIVE_WORDS: &[&str] = &[
    "ACCESS_TOKEN",
    "API_KEY",
    "APIKEY",
    "AUTHORIZATION",
    "PASSPHRASE",
    "PASSWD",
    "PASSWORD",
    "PRIVATE",
    "SECRET",
    "TOKEN",
    "KEYFILE_DICT",
    "SERVICE_ACCOUNT",
];

/// What replaces a hidden value.
pub const MASK: &str = "***";

/// Whether a variable called `name` holds a secret.
#[must_use]
pub fn is_sensitive(name: &str) -> bool {
    let upper = name.to_uppercase();
    SENSITIVE_WORDS.iter().any(|word| upper.contains(word))
}

/// `pod` with the literal values of sensitive environment variables replaced by `***`.
/// References to Kubernetes secrets (`valueFrom`) are kept: they name a secret, not its value.
#[must_use]
pub fn masked(pod: &Pod) -> Pod {
    let mut pod = pod.clone();
    if let Some(spec) = &mut pod.spec {
        let containers = spec
            .containers
            .iter_mut()
            .chain(spec.init_containers.iter_mut().flatten());
        for container in containers {
            for var in container.env.iter_mut().flatten() {
                if is_sensitive(&var.name) && var.value.is_some() {
                    var.value = Some(MASK.to_owned());
                }
            }
        }
    }
    pod
}

/// The pod as YAML, secrets masked.
pub fn to_yaml(pod: &Pod) -> Result<String, serde_yaml_ng::Error> {
    serde_yaml_ng::to_string(&masked(pod))
}

/// The Job as YAML, the secret values of its pod template masked as [`masked`] masks a pod's.
pub fn job_to_yaml(job: &k8s_openapi::api::batch::v1::Job) -> Result<String, serde_yaml_ng::Error> {
    let mut job = job.clone();
    if let Some(spec) = &mut job.spec {
        let pod = Pod {
            metadata: spec.template.metadata.clone().unwrap_or_default(),
            spec: spec.template.spec.clone(),
            status: None,
        };
        spec.template.spec = masked(&pod).spec;
    }
    serde_yaml_ng::to_string(&job)
}
