//! The Kubernetes permissions the pod runtime uses, as the manifests a cluster admin applies:
//! a ServiceAccount for Gust, a Role granting exactly what it calls, and their RoleBinding.
//! Pods are always granted; what other operators call (Jobs...) only when DAGs use them
//! ([`manifests_for`] with the operators in use), so a cluster grants no more than it needs.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::build::MANAGED_BY_LABEL;

/// What the pod runtime does with each resource: create, follow, read logs and the XCom
/// (exec), mark kept pods, delete, and read events for failure messages.
fn rules() -> Vec<PolicyRule> {
    let rule = |resources: &[&str], verbs: &[&str]| PolicyRule {
        api_groups: Some(vec![String::new()]),
        resources: Some(resources.iter().map(|r| (*r).to_owned()).collect()),
        verbs: verbs.iter().map(|v| (*v).to_owned()).collect(),
        ..PolicyRule::default()
    };
    vec![
        rule(
            &["pods"],
            &["create", "get", "list", "watch", "patch", "delete"],
        ),
        rule(&["pods/log"], &["get"]),
        rule(&["pods/exec"], &["create", "get"]),
        rule(&["events"], &["get", "list", "watch"]),
    ]
}

fn meta(name: &str, namespace: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: Some(namespace.to_owned()),
        labels: Some(BTreeMap::from([(
            MANAGED_BY_LABEL.0.to_owned(),
            MANAGED_BY_LABEL.1.to_owned(),
        )])),
        ..ObjectMeta::default()
    }
}

/// What an operator other than the pod operator calls, beyond pods: (API group, resource,
/// verbs) for each resource.
fn operator_rules(
    operator: &str,
) -> &'static [(&'static str, &'static str, &'static [&'static str])] {
    match operator {
        // Create, follow (watch), mark kept (patch) and delete Jobs; their pods are pods.
        "kubernetes_job" | "kueue_job" => &[(
            "batch",
            "jobs",
            &["create", "get", "list", "watch", "patch", "delete"],
        )],
        "kubernetes_delete_job" => &[("batch", "jobs", &["get", "list", "watch", "delete"])],
        "kubernetes_patch_job" => &[("batch", "jobs", &["get", "patch"])],
        // Create, follow (watch), find again after a restart (list) and delete applications;
        // the driver's log is a pod's log.
        "spark_kubernetes" => &[(
            "sparkoperator.k8s.io",
            "sparkapplications",
            &["create", "get", "list", "watch", "delete"],
        )],
        // Each poke reads the application once.
        "spark_kubernetes_sensor" => &[("sparkoperator.k8s.io", "sparkapplications", &["get"])],
        // Python tasks as worker pods ([kubernetes] worker_image): each try's Secret (its
        // workload and DAG bundle) is created with its pod and deleted with it.
        operator if gust_operators::python::runs_in_task_sdk(operator) => {
            &[("", "secrets", &["create", "delete"])]
        }
        _ => &[],
    }
}

/// A kind a `kubernetes_resource_sensor` task reads (`get`): its API group and resource.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Read {
    /// The API group (`""` for core kinds).
    pub group: String,
    /// The resource, the kind's plural (`jobs`).
    pub resource: String,
}

impl Read {
    /// What reading `kind` of `api_version` needs; the resource is the kind's plural as
    /// kube-rs forms it (as the API server names CRDs' resources unless they say otherwise).
    #[must_use]
    pub fn of(api_version: &str, kind: &str) -> Self {
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        let gvk = kube::api::GroupVersionKind::gvk(group, version, kind);
        Self {
            group: group.to_owned(),
            resource: kube::api::ApiResource::from_gvk(&gvk).plural,
        }
    }
}

/// The pod rules, then one rule per (group, resource) the `operators` call and the sensors
/// read (`reads`), verbs merged.
fn rules_for(operators: &BTreeSet<String>, reads: &BTreeSet<Read>) -> Vec<PolicyRule> {
    fn grant<'a>(
        extra: &mut BTreeMap<(&'a str, &'a str), Vec<&'a str>>,
        (group, resource): (&'a str, &'a str),
        verb: &'a str,
    ) {
        let known = extra.entry((group, resource)).or_default();
        if !known.contains(&verb) {
            known.push(verb);
        }
    }
    let mut extra = BTreeMap::new();
    for operator in operators {
        for (group, resource, verbs) in operator_rules(operator) {
            for verb in *verbs {
                grant(&mut extra, (group, resource), verb);
            }
        }
    }
    for read in reads {
        grant(&mut extra, (&read.group, &read.resource), "get");
    }
    let mut rules = rules();
    for ((group, resource), verbs) in extra {
        rules.push(PolicyRule {
            api_groups: Some(vec![group.to_owned()]),
            resources: Some(vec![resource.to_owned()]),
            verbs: verbs.iter().map(|v| (*v).to_owned()).collect(),
            ..PolicyRule::default()
        });
    }
    rules
}

/// The three manifests for `service_account` running pods in `namespace`, as one YAML stream.
pub fn manifests(namespace: &str, service_account: &str) -> Result<String, serde_yaml_ng::Error> {
    manifests_for(namespace, service_account, &BTreeSet::new())
}

/// The three manifests for `service_account` running pods, and what `operators` (the
/// operators DAGs use, by canonical name) call, in `namespace`.
pub fn manifests_for(
    namespace: &str,
    service_account: &str,
    operators: &BTreeSet<String>,
) -> Result<String, serde_yaml_ng::Error> {
    manifests_with(namespace, service_account, operators, &BTreeSet::new())
}

/// [`manifests_for`], also granting `get` on the kinds Kubernetes sensors read (`reads`).
pub fn manifests_with(
    namespace: &str,
    service_account: &str,
    operators: &BTreeSet<String>,
    reads: &BTreeSet<Read>,
) -> Result<String, serde_yaml_ng::Error> {
    let role_name = format!("{service_account}-pod-runner");
    let account = ServiceAccount {
        metadata: meta(service_account, namespace),
        ..ServiceAccount::default()
    };
    let role = Role {
        metadata: meta(&role_name, namespace),
        rules: Some(rules_for(operators, reads)),
    };
    let binding = RoleBinding {
        metadata: meta(&role_name, namespace),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".to_owned(),
            kind: "Role".to_owned(),
            name: role_name.clone(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".to_owned(),
            name: service_account.to_owned(),
            namespace: Some(namespace.to_owned()),
            ..Subject::default()
        }]),
    };
    Ok(format!(
        "{}---\n{}---\n{}",
        serde_yaml_ng::to_string(&account)?,
        serde_yaml_ng::to_string(&role)?,
        serde_yaml_ng::to_string(&binding)?
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_manifests_are_kubernetes_objects_granting_what_the_runtime_uses() {
        let text = manifests("pipelines", "gust").unwrap();
        let docs: Vec<&str> = text.split("---\n").collect();
        assert_eq!(docs.len(), 3);
        let account: ServiceAccount = serde_yaml_ng::from_str(docs[0]).unwrap();
        assert_eq!(account.metadata.namespace.as_deref(), Some("pipelines"));
        let role: Role = serde_yaml_ng::from_str(docs[1]).unwrap();
        let rules = role.rules.unwrap();
        let verbs_of = |resource: &str| {
            rules
                .iter()
                .find(|r| r.resources.as_ref().unwrap().contains(&resource.to_owned()))
                .map(|r| r.verbs.clone())
                .unwrap()
        };
        assert!(verbs_of("pods").contains(&"watch".to_owned()));
        assert_eq!(verbs_of("pods/exec"), ["create", "get"]);
        let binding: RoleBinding = serde_yaml_ng::from_str(docs[2]).unwrap();
        assert_eq!(binding.role_ref.name, "gust-pod-runner");
        assert_eq!(binding.subjects.unwrap()[0].name, "gust");
        assert!(text.contains("apiVersion: rbac.authorization.k8s.io/v1"));
        assert!(!text.contains("jobs"), "no Job operator, no Job permission");
    }

    #[test]
    fn job_operators_add_the_job_verbs_they_call() {
        let used: BTreeSet<String> = ["bash", "kubernetes_patch_job", "kubernetes_delete_job"]
            .into_iter()
            .map(str::to_owned)
            .collect();
        let text = manifests_for("ml", "gust", &used).unwrap();
        let role: Role = serde_yaml_ng::from_str(text.split("---\n").nth(1).unwrap()).unwrap();
        let rules = role.rules.unwrap();
        let jobs: Vec<&PolicyRule> = rules
            .iter()
            .filter(|r| r.resources.as_deref() == Some(&["jobs".to_owned()][..]))
            .collect();
        assert_eq!(jobs.len(), 1, "one rule per resource");
        assert_eq!(
            jobs[0].api_groups.as_deref(),
            Some(&["batch".to_owned()][..])
        );
        assert_eq!(jobs[0].verbs, ["get", "list", "watch", "delete", "patch"]);
        let with_job: BTreeSet<String> = ["kubernetes_job".to_owned()].into();
        let text = manifests_for("ml", "gust", &with_job).unwrap();
        assert!(text.contains("- create"), "{text}");
    }

    #[test]
    fn sensors_add_get_on_what_they_read() {
        let used: BTreeSet<String> = ["spark_kubernetes_sensor".to_owned()].into();
        let reads: BTreeSet<Read> = [
            Read::of("batch/v1", "Job"),
            Read::of("example.com/v1", "Policy"),
            Read::of("v1", "ConfigMap"),
        ]
        .into();
        let text = manifests_with("ml", "gust", &used, &reads).unwrap();
        let role: Role = serde_yaml_ng::from_str(text.split("---\n").nth(1).unwrap()).unwrap();
        let rules = role.rules.unwrap();
        let verbs_of = |group: &str, resource: &str| {
            rules
                .iter()
                .find(|r| {
                    r.api_groups.as_deref() == Some(&[group.to_owned()][..])
                        && r.resources.as_deref() == Some(&[resource.to_owned()][..])
                })
                .map(|r| r.verbs.clone())
        };
        assert_eq!(verbs_of("batch", "jobs"), Some(vec!["get".to_owned()]));
        assert_eq!(
            verbs_of("example.com", "policies"),
            Some(vec!["get".to_owned()])
        );
        assert_eq!(verbs_of("", "configmaps"), Some(vec!["get".to_owned()]));
        assert_eq!(
            verbs_of("sparkoperator.k8s.io", "sparkapplications"),
            Some(vec!["get".to_owned()])
        );
    }

    #[test]
    fn python_tasks_add_their_worker_pods_secrets() {
        let used: BTreeSet<String> = ["python".to_owned()].into();
        let text = manifests_for("ml", "gust", &used).unwrap();
        let role: Role = serde_yaml_ng::from_str(text.split("---\n").nth(1).unwrap()).unwrap();
        let rules = role.rules.unwrap();
        let secrets = rules
            .iter()
            .find(|r| r.resources.as_deref() == Some(&["secrets".to_owned()][..]))
            .expect("a Secret rule");
        assert_eq!(secrets.verbs, ["create", "delete"]);
        let bash: BTreeSet<String> = ["bash".to_owned()].into();
        assert!(
            !manifests_for("ml", "gust", &bash)
                .unwrap()
                .contains("secrets")
        );
    }
}
