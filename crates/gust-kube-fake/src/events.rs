//! core/v1 Events as the scheduler and kubelet emit them about a pod.
//!
//! Pure construction only: the store keeps and folds them, the kubelet decides when to emit.

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

/// The node every pod is bound to.
pub(crate) const NODE_NAME: &str = "fake-node";

/// Who reports an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reporter {
    /// The scheduler (`Scheduled`, `FailedScheduling`).
    Scheduler,
    /// The kubelet on the fake node (everything else).
    Kubelet,
}

/// Whether an event is routine or a problem.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Severity {
    /// `type: Normal`.
    Normal,
    /// `type: Warning`.
    Warning,
}

/// An event about `pod` (and one of its containers, if given).
pub(crate) fn pod_event(
    pod: &Pod,
    container: Option<&str>,
    reporter: Reporter,
    severity: Severity,
    reason: &str,
    message: String,
    now: Timestamp,
) -> Event {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let (component, host) = match reporter {
        Reporter::Scheduler => ("default-scheduler", None),
        Reporter::Kubelet => ("kubelet", Some(NODE_NAME.to_owned())),
    };
    let field_path = container.map(|container| {
        let init = pod
            .spec
            .as_ref()
            .and_then(|spec| spec.init_containers.as_ref())
            .is_some_and(|init| init.iter().any(|c| c.name == container));
        if init {
            format!("spec.initContainers{{{container}}}")
        } else {
            format!("spec.containers{{{container}}}")
        }
    });
    Event {
        metadata: ObjectMeta {
            name: Some(format!("{name}.{:x}", now.as_nanosecond())),
            namespace: pod.metadata.namespace.clone(),
            ..ObjectMeta::default()
        },
        involved_object: ObjectReference {
            api_version: Some("v1".to_owned()),
            kind: Some("Pod".to_owned()),
            name: Some(name),
            namespace: pod.metadata.namespace.clone(),
            uid: pod.metadata.uid.clone(),
            resource_version: pod.metadata.resource_version.clone(),
            field_path,
        },
        reason: Some(reason.to_owned()),
        message: Some(message),
        type_: Some(
            match severity {
                Severity::Normal => "Normal",
                Severity::Warning => "Warning",
            }
            .to_owned(),
        ),
        source: Some(EventSource {
            component: Some(component.to_owned()),
            host: host.clone(),
        }),
        reporting_component: Some(component.to_owned()),
        reporting_instance: Some(host.unwrap_or_else(|| component.to_owned())),
        first_timestamp: Some(Time(now)),
        last_timestamp: Some(Time(now)),
        count: Some(1),
        ..Event::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, PodSpec};

    #[test]
    fn container_events_point_at_the_container_field() {
        let mut pod = Pod {
            spec: Some(PodSpec {
                init_containers: Some(vec![Container {
                    name: "init".to_owned(),
                    ..Container::default()
                }]),
                ..PodSpec::default()
            }),
            ..Pod::default()
        };
        pod.metadata.name = Some("p".to_owned());
        let event = pod_event(
            &pod,
            Some("init"),
            Reporter::Kubelet,
            Severity::Warning,
            "Failed",
            "boom".to_owned(),
            Timestamp::UNIX_EPOCH,
        );
        assert_eq!(
            event.involved_object.field_path.as_deref(),
            Some("spec.initContainers{init}")
        );
        assert_eq!(event.type_.as_deref(), Some("Warning"));
    }
}
