//! A failed Kubernetes API call, as one line for a try's log and failure message.

/// The API server's own message with its code and reason, e.g. `namespaces "etl" not found
/// (404 NotFound)`. kube's text of an API error ends with the whole status debug-printed
/// (`... (Status { status: Some(Failure), code: 404, ... })`), which says nothing more; other
/// errors (connection, TLS, decoding) keep kube's text. A 403 from RBAC names the fix; a 403
/// from an admission plugin (a quota, a pod security level, or the plugin failing) is no
/// missing right, so it gets no such hint.
pub(crate) fn api_error(err: &kube::Error) -> String {
    match err {
        kube::Error::Api(status) if status.code == 403 && refused_by_rbac(&status.message) => {
            format!(
                "{} (403 Forbidden: grant it with `gust kubernetes rbac`)",
                status.message
            )
        }
        kube::Error::Api(status) if status.reason.is_empty() => {
            format!("{} ({})", status.message, status.code)
        }
        kube::Error::Api(status) => {
            format!("{} ({} {})", status.message, status.code, status.reason)
        }
        other => other.to_string(),
    }
}

/// Whether a 403's message is RBAC's (`User "..." cannot create resource "pods" ...`).
fn refused_by_rbac(message: &str) -> bool {
    message.contains(" cannot ") && message.contains(" resource ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::Status;

    fn api(message: &str, reason: &str, code: u16) -> kube::Error {
        kube::Error::Api(Box::new(Status::failure(message, reason).with_code(code)))
    }

    #[test]
    fn an_api_error_is_the_servers_message_code_and_reason_on_one_line() {
        let text = api_error(&api(r#"namespaces "etl" not found"#, "NotFound", 404));
        assert_eq!(text, r#"namespaces "etl" not found (404 NotFound)"#);
        let text = api_error(&api(
            r#"Pod "p" is invalid: spec.containers[0].volumeMounts[0].name: Not found: "data""#,
            "Invalid",
            422,
        ));
        assert!(!text.contains("Status {"), "{text}");
        assert!(text.ends_with("(422 Invalid)"), "{text}");
    }

    #[test]
    fn a_forbidden_call_names_the_fix() {
        let text = api_error(&api(
            r#"pods is forbidden: User "system:serviceaccount:etl:gust" cannot create resource "pods" in API group "" in the namespace "etl""#,
            "Forbidden",
            403,
        ));
        assert!(text.contains(r#"cannot create resource "pods""#), "{text}");
        assert!(
            text.ends_with("(403 Forbidden: grant it with `gust kubernetes rbac`)"),
            "{text}"
        );
    }

    #[test]
    fn an_admission_plugins_refusal_is_no_missing_right() {
        // As a loaded kube-apiserver answered a pod create in the 10,000-pod benchmark.
        let text = api_error(&api(
            r#"pods "p-1" is forbidden: Get "https://127.0.0.1:6443/api/v1/namespaces/etl/limitranges": net/http: TLS handshake timeout"#,
            "Forbidden",
            403,
        ));
        assert!(
            text.ends_with("TLS handshake timeout (403 Forbidden)"),
            "{text}"
        );
        let text = api_error(&api(
            r#"pods "p-1" is forbidden: exceeded quota: compute, requested: cpu=2, used: cpu=8, limited: cpu=8"#,
            "Forbidden",
            403,
        ));
        assert!(!text.contains("gust kubernetes rbac"), "{text}");
    }
}
