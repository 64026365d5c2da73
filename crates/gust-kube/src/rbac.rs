//! The Kubernetes permissions the pod runtime uses, as the manifests a cluster admin applies:
//! a ServiceAccount for Gust, a Role granting exactly what it calls, and their RoleBinding.

use std::collections::BTreeMap;

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

/// The three manifests for `service_account` running pods in `namespace`, as one YAML stream.
pub fn manifests(namespace: &str, service_account: &str) -> Result<String, serde_yaml_ng::Error> {
    let role_name = format!("{service_account}-pod-runner");
    let account = ServiceAccount {
        metadata: meta(service_account, namespace),
        ..ServiceAccount::default()
    };
    let role = Role {
        metadata: meta(&role_name, namespace),
        rules: Some(rules()),
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
    }
}
