//! Printing a pod as the YAML a user would `kubectl apply`, with secret values hidden.

use k8s_openapi::api::core::v1::Pod;

/// What replaces a hidden value.
pub use gust_secrets::MASK;

/// Whether a variable called `name` holds a secret: the process's sensitive names
/// (`gust_secrets`: Airflow's, `[core] sensitive_var_conn_names`, and none at all when `[core]
/// hide_sensitive_var_conn_fields` is off), so a manifest hides what the API and logs hide.
#[must_use]
pub fn is_sensitive(name: &str) -> bool {
    gust_secrets::current().is_sensitive(name)
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
    crate::kube_yaml::to_string(&masked(pod))
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
    crate::kube_yaml::to_string(&job)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{Container, EnvVar, EnvVarSource, PodSpec, SecretKeySelector};

    use super::*;

    fn var(name: &str, value: &str) -> EnvVar {
        EnvVar {
            name: name.to_owned(),
            value: Some(value.to_owned()),
            value_from: None,
        }
    }

    #[test]
    fn env_values_are_hidden_under_the_names_the_secrets_masker_hides() {
        let reference = EnvVar {
            name: "DB_PASSWORD".to_owned(),
            value: None,
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: "db-creds".to_owned(),
                    key: "pw".to_owned(),
                    optional: None,
                }),
                ..EnvVarSource::default()
            }),
        };
        let pod = Pod {
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "base".to_owned(),
                    env: Some(vec![
                        var("AWS_ACCESS_KEY_ID", "AKIAEXAMPLEKEY"),
                        var("SLACK_WEBHOOK_URL", "https://hooks.example/T0/B0"),
                        var("API_TOKEN", "token-value"),
                        var("PRIVATE_REGISTRY", "registry.example"),
                        reference,
                    ]),
                    ..Container::default()
                }],
                ..PodSpec::default()
            }),
            ..Pod::default()
        };
        let yaml = to_yaml(&pod).expect("yaml");
        for secret in ["AKIAEXAMPLEKEY", "hooks.example", "token-value"] {
            assert!(!yaml.contains(secret), "{secret} shown: {yaml}");
        }
        assert!(yaml.contains("registry.example"), "not a secret: {yaml}");
        assert!(yaml.contains("db-creds"), "a reference is kept: {yaml}");
    }
}
