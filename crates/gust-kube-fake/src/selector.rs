//! Label and field selectors, parsed once per request and matched against objects.
//!
//! Label selectors support the equality forms (`k=v`, `k==v`, `k!=v`), existence (`k`, `!k`)
//! and the set forms (`k in (a,b)`, `k notin (a,b)`), comma-joined. Field selectors support
//! `=`, `==` and `!=` over the fields the real API server indexes for pods and events.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Event, Pod};
use thiserror::Error;

/// A selector the API server cannot parse; answered as 400.
#[derive(Debug, Error, PartialEq, Eq)]
pub(crate) enum SelectorError {
    /// A label requirement is malformed.
    #[error("unable to parse requirement: {0:?}")]
    Label(String),
    /// A field selector term is malformed.
    #[error("invalid selector: {0:?}; can't understand it")]
    Field(String),
    /// The field cannot be selected on for this kind.
    #[error("field label not supported: {0}")]
    UnsupportedField(String),
}

/// A parsed label selector: every requirement must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct LabelSelector {
    requirements: Vec<LabelRequirement>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum LabelRequirement {
    Equals(String, String),
    NotEquals(String, String),
    Exists(String),
    Absent(String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
}

impl LabelSelector {
    /// Parses `labelSelector`; an empty string selects everything.
    pub(crate) fn parse(text: &str) -> Result<Self, SelectorError> {
        let requirements = split_outside_parentheses(text)
            .into_iter()
            .map(str::trim)
            .filter(|term| !term.is_empty())
            .map(parse_requirement)
            .collect::<Result<_, _>>()?;
        Ok(LabelSelector { requirements })
    }

    /// Whether the labels satisfy every requirement.
    pub(crate) fn matches(&self, labels: Option<&BTreeMap<String, String>>) -> bool {
        let get = |key: &str| labels.and_then(|labels| labels.get(key));
        self.requirements
            .iter()
            .all(|requirement| match requirement {
                LabelRequirement::Equals(key, value) => get(key) == Some(value),
                LabelRequirement::NotEquals(key, value) => get(key) != Some(value),
                LabelRequirement::Exists(key) => get(key).is_some(),
                LabelRequirement::Absent(key) => get(key).is_none(),
                LabelRequirement::In(key, values) => get(key).is_some_and(|v| values.contains(v)),
                LabelRequirement::NotIn(key, values) => {
                    !get(key).is_some_and(|v| values.contains(v))
                }
            })
    }
}

fn split_outside_parentheses(text: &str) -> Vec<&str> {
    let mut terms = Vec::new();
    let mut depth = 0_usize;
    let mut start = 0;
    for (index, ch) in text.char_indices() {
        match ch {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                terms.push(&text[start..index]);
                start = index + 1;
            }
            _ => {}
        }
    }
    terms.push(&text[start..]);
    terms
}

fn parse_requirement(term: &str) -> Result<LabelRequirement, SelectorError> {
    let invalid = || SelectorError::Label(term.to_owned());
    if let Some(key) = term.strip_prefix('!') {
        return Ok(LabelRequirement::Absent(
            valid_key(key.trim()).ok_or_else(invalid)?,
        ));
    }
    if let Some((key, value)) = term.split_once("!=") {
        return Ok(LabelRequirement::NotEquals(
            valid_key(key.trim()).ok_or_else(invalid)?,
            valid_value(value.trim()).ok_or_else(invalid)?,
        ));
    }
    if let Some((key, value)) = term.split_once("==").or_else(|| term.split_once('=')) {
        return Ok(LabelRequirement::Equals(
            valid_key(key.trim()).ok_or_else(invalid)?,
            valid_value(value.trim()).ok_or_else(invalid)?,
        ));
    }
    let mut words = term.splitn(2, char::is_whitespace);
    let key = words.next().unwrap_or_default();
    let rest = words.next().unwrap_or_default().trim();
    if rest.is_empty() {
        return Ok(LabelRequirement::Exists(
            valid_key(key).ok_or_else(invalid)?,
        ));
    }
    let key = valid_key(key).ok_or_else(invalid)?;
    let (negated, set) = if let Some(set) = rest.strip_prefix("notin") {
        (true, set)
    } else if let Some(set) = rest.strip_prefix("in") {
        (false, set)
    } else {
        return Err(invalid());
    };
    let values = set
        .trim()
        .strip_prefix('(')
        .and_then(|set| set.strip_suffix(')'))
        .ok_or_else(invalid)?
        .split(',')
        .map(|value| valid_value(value.trim()).ok_or_else(invalid))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(if negated {
        LabelRequirement::NotIn(key, values)
    } else {
        LabelRequirement::In(key, values)
    })
}

fn valid_key(key: &str) -> Option<String> {
    let name = key.rsplit('/').next().unwrap_or_default();
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
        && key
            .chars()
            .all(|c| !c.is_whitespace() && !matches!(c, '(' | ')' | '!' | '='));
    ok.then(|| key.to_owned())
}

fn valid_value(value: &str) -> Option<String> {
    let ok = value.len() <= 63
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    ok.then(|| value.to_owned())
}

/// A parsed field selector over one kind: every term must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct FieldSelector {
    terms: Vec<FieldTerm>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct FieldTerm {
    field: String,
    value: String,
    equal: bool,
}

/// Fields a pod can be selected on, as the real API server indexes them.
const POD_FIELDS: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "spec.nodeName",
    "spec.restartPolicy",
    "spec.schedulerName",
    "spec.serviceAccountName",
    "status.phase",
    "status.podIP",
];

/// Fields an event can be selected on.
const EVENT_FIELDS: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
];

impl FieldSelector {
    /// Parses a `fieldSelector` for pods.
    pub(crate) fn for_pods(text: &str) -> Result<Self, SelectorError> {
        Self::parse(text, POD_FIELDS)
    }

    /// Parses a `fieldSelector` for events.
    pub(crate) fn for_events(text: &str) -> Result<Self, SelectorError> {
        Self::parse(text, EVENT_FIELDS)
    }

    fn parse(text: &str, supported: &[&str]) -> Result<Self, SelectorError> {
        let mut terms = Vec::new();
        for term in text.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let (field, value, equal) = if let Some((field, value)) = term.split_once("!=") {
                (field, value, false)
            } else if let Some((field, value)) =
                term.split_once("==").or_else(|| term.split_once('='))
            {
                (field, value, true)
            } else {
                return Err(SelectorError::Field(term.to_owned()));
            };
            let field = field.trim();
            if !supported.contains(&field) {
                return Err(SelectorError::UnsupportedField(field.to_owned()));
            }
            terms.push(FieldTerm {
                field: field.to_owned(),
                value: value.trim().to_owned(),
                equal,
            });
        }
        Ok(FieldSelector { terms })
    }

    /// Whether the pod satisfies every term.
    pub(crate) fn matches_pod(&self, pod: &Pod) -> bool {
        self.matches(|field| pod_field(pod, field))
    }

    /// Whether the event satisfies every term.
    pub(crate) fn matches_event(&self, event: &Event) -> bool {
        self.matches(|field| event_field(event, field))
    }

    fn matches<'a>(&self, get: impl Fn(&str) -> Option<&'a str>) -> bool {
        self.terms
            .iter()
            .all(|term| (get(&term.field).unwrap_or_default() == term.value) == term.equal)
    }
}

fn pod_field<'a>(pod: &'a Pod, field: &str) -> Option<&'a str> {
    let spec = pod.spec.as_ref();
    let status = pod.status.as_ref();
    match field {
        "metadata.name" => pod.metadata.name.as_deref(),
        "metadata.namespace" => pod.metadata.namespace.as_deref(),
        "spec.nodeName" => spec.and_then(|s| s.node_name.as_deref()),
        "spec.restartPolicy" => spec.and_then(|s| s.restart_policy.as_deref()),
        "spec.schedulerName" => spec.and_then(|s| s.scheduler_name.as_deref()),
        "spec.serviceAccountName" => spec.and_then(|s| s.service_account_name.as_deref()),
        "status.phase" => status.and_then(|s| s.phase.as_deref()),
        "status.podIP" => status.and_then(|s| s.pod_ip.as_deref()),
        _ => None,
    }
}

fn event_field<'a>(event: &'a Event, field: &str) -> Option<&'a str> {
    let object = &event.involved_object;
    match field {
        "metadata.name" => event.metadata.name.as_deref(),
        "metadata.namespace" => event.metadata.namespace.as_deref(),
        "involvedObject.kind" => object.kind.as_deref(),
        "involvedObject.namespace" => object.namespace.as_deref(),
        "involvedObject.name" => object.name.as_deref(),
        "involvedObject.uid" => object.uid.as_deref(),
        "involvedObject.apiVersion" => object.api_version.as_deref(),
        "involvedObject.resourceVersion" => object.resource_version.as_deref(),
        "involvedObject.fieldPath" => object.field_path.as_deref(),
        "reason" => event.reason.as_deref(),
        "reportingComponent" => event.reporting_component.as_deref(),
        "source" => event.source.as_ref().and_then(|s| s.component.as_deref()),
        "type" => event.type_.as_deref(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn equality_inequality_and_existence_combine_with_commas() {
        let selector = LabelSelector::parse("app=gust,tier!=db,dag_id,!skip").unwrap();
        let matching = labels(&[("app", "gust"), ("tier", "web"), ("dag_id", "d")]);
        assert!(selector.matches(Some(&matching)));
        let skipped = labels(&[("app", "gust"), ("dag_id", "d"), ("skip", "1")]);
        assert!(!selector.matches(Some(&skipped)));
        assert!(!selector.matches(None));
    }

    #[test]
    fn not_equals_matches_a_missing_label() {
        let selector = LabelSelector::parse("tier!=db").unwrap();
        assert!(selector.matches(None));
    }

    #[test]
    fn set_based_requirements_keep_their_commas() {
        let selector = LabelSelector::parse("env in (prod, staging),team notin (x)").unwrap();
        assert!(selector.matches(Some(&labels(&[("env", "staging")]))));
        assert!(!selector.matches(Some(&labels(&[("env", "dev")]))));
        assert!(!selector.matches(Some(&labels(&[("env", "prod"), ("team", "x")]))));
    }

    #[test]
    fn an_empty_selector_selects_everything() {
        assert!(LabelSelector::parse("").unwrap().matches(None));
    }

    #[test]
    fn malformed_label_selectors_are_rejected() {
        assert!(LabelSelector::parse("a=b=c").is_err());
        assert!(LabelSelector::parse("env in prod").is_err());
        assert!(LabelSelector::parse("bad key").is_err());
    }

    #[test]
    fn field_selectors_reject_unindexed_fields() {
        assert_eq!(
            FieldSelector::for_pods("spec.image=x"),
            Err(SelectorError::UnsupportedField("spec.image".to_owned()))
        );
        assert!(FieldSelector::for_events("involvedObject.name=p,involvedObject.uid=u").is_ok());
    }

    #[test]
    fn field_selectors_match_pod_names() {
        let mut pod = Pod::default();
        pod.metadata.name = Some("a".to_owned());
        assert!(
            FieldSelector::for_pods("metadata.name=a")
                .unwrap()
                .matches_pod(&pod)
        );
        assert!(
            !FieldSelector::for_pods("metadata.name!=a")
                .unwrap()
                .matches_pod(&pod)
        );
    }
}
