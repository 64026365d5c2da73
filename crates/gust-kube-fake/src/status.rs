//! `Status` bodies, the error shape every Kubernetes API error takes.
//!
//! Every failed request, injected fault and watch `ERROR` event is one of these, built by the
//! constructors below with the reason, message and details the real API server uses, so a client
//! sees exactly what it would see from a cluster.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Status, StatusCause, StatusDetails};

/// An API error answered as a `Status` body with its HTTP code.
#[derive(Clone, Debug)]
pub(crate) struct ApiError {
    code: StatusCode,
    reason: &'static str,
    message: String,
    /// Boxed: most errors have none, and it keeps `Result<_, ApiError>` small.
    details: Option<Box<StatusDetails>>,
}

impl ApiError {
    fn new(code: StatusCode, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    fn with_details(mut self, details: StatusDetails) -> Self {
        self.details = Some(Box::new(details));
        self
    }

    /// 400 BadRequest, for malformed requests and unusable log or exec targets.
    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "BadRequest", message)
    }

    /// 404 for a pod that does not exist.
    pub(crate) fn pod_not_found(name: &str) -> Self {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("pods \"{name}\" not found"),
        )
        .with_details(object_details(name))
    }

    /// 404 for a path the server does not serve.
    pub(crate) fn unknown_path() -> Self {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            "the server could not find the requested resource",
        )
        .with_details(StatusDetails::default())
    }

    /// 405 for a method the resource does not support.
    pub(crate) fn method_not_allowed() -> Self {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        )
        .with_details(StatusDetails::default())
    }

    /// 409 AlreadyExists for a create with a taken name.
    pub(crate) fn already_exists(name: &str) -> Self {
        ApiError::new(
            StatusCode::CONFLICT,
            "AlreadyExists",
            format!("pods \"{name}\" already exists"),
        )
        .with_details(object_details(name))
    }

    /// 409 Conflict for a failed delete precondition.
    pub(crate) fn conflict(name: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        ApiError::new(
            StatusCode::CONFLICT,
            "Conflict",
            format!("Operation cannot be fulfilled on pods \"{name}\": {message}"),
        )
        .with_details(object_details(name))
    }

    /// 415 for a patch type the fake does not implement.
    pub(crate) fn unsupported_media_type(content_type: &str) -> Self {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json (got {content_type:?})"
            ),
        )
    }

    /// 404 for an object of any kind (`resource` as `configmaps` or `widgets.example.com`).
    pub(crate) fn object_not_found(resource: &str, name: &str) -> Self {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("{resource} \"{name}\" not found"),
        )
        .with_details(StatusDetails {
            name: Some(name.to_owned()),
            kind: Some(resource.to_owned()),
            ..StatusDetails::default()
        })
    }

    /// 409 AlreadyExists for an object of any kind.
    pub(crate) fn object_exists(resource: &str, name: &str) -> Self {
        ApiError::new(
            StatusCode::CONFLICT,
            "AlreadyExists",
            format!("{resource} \"{name}\" already exists"),
        )
        .with_details(StatusDetails {
            name: Some(name.to_owned()),
            kind: Some(resource.to_owned()),
            ..StatusDetails::default()
        })
    }

    /// 409 Conflict for a server-side apply that would take other managers' fields.
    pub(crate) fn apply_conflict(resource: &str, name: &str, fields: &[String]) -> Self {
        ApiError::new(
            StatusCode::CONFLICT,
            "Conflict",
            format!(
                "Apply failed with {} conflict{}: conflict with {}",
                fields.len(),
                if fields.len() == 1 { "" } else { "s" },
                fields.join(", ")
            ),
        )
        .with_details(StatusDetails {
            name: Some(name.to_owned()),
            kind: Some(resource.to_owned()),
            ..StatusDetails::default()
        })
    }

    /// 422 Invalid for an object of any kind, with one message.
    pub(crate) fn object_invalid(kind: &str, name: &str, field: &str, message: &str) -> Self {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            format!("{kind} \"{name}\" is invalid: {field}: {message}"),
        )
        .with_details(StatusDetails {
            name: Some(name.to_owned()),
            kind: Some(kind.to_owned()),
            causes: Some(vec![StatusCause {
                field: Some(field.to_owned()),
                message: Some(message.to_owned()),
                reason: Some("FieldValueInvalid".to_owned()),
            }]),
            ..StatusDetails::default()
        })
    }

    /// 422 Invalid, one cause per invalid field, worded as the real API words it.
    pub(crate) fn invalid(name: &str, causes: Vec<StatusCause>) -> Self {
        let summary = causes
            .iter()
            .map(|cause| {
                format!(
                    "{}: {}",
                    cause.field.as_deref().unwrap_or_default(),
                    cause.message.as_deref().unwrap_or_default()
                )
            })
            .collect::<Vec<_>>();
        let summary = if summary.len() == 1 {
            summary.concat()
        } else {
            format!("[{}]", summary.join(", "))
        };
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            format!("Pod \"{name}\" is invalid: {summary}"),
        )
        .with_details(StatusDetails {
            causes: Some(causes),
            ..object_details(name)
        })
    }

    /// An injected failure with the given HTTP status, as the real API server words it.
    pub(crate) fn injected(code: StatusCode) -> Self {
        match code.as_u16() {
            429 => ApiError::new(
                code,
                "TooManyRequests",
                "the server has received too many requests and has asked us to try again later",
            )
            .with_details(StatusDetails {
                retry_after_seconds: Some(1),
                ..StatusDetails::default()
            }),
            500 => ApiError::new(
                code,
                "InternalError",
                "an error on the server (\"injected fault\") has prevented the request from succeeding",
            ),
            503 => ApiError::new(
                code,
                "ServiceUnavailable",
                "the server is currently unable to handle the request",
            ),
            504 => ApiError::new(
                code,
                "Timeout",
                "the server was unable to return a response in the time allotted, but may still be processing the request",
            ),
            401 => ApiError::new(code, "Unauthorized", "Unauthorized"),
            403 => ApiError::new(code, "Forbidden", "forbidden: injected fault"),
            _ => ApiError::new(
                code,
                "InternalError",
                format!(
                    "an error on the server (\"injected fault {}\") has prevented the request from succeeding",
                    code.as_u16()
                ),
            ),
        }
    }

    /// The `Status` object this error answers with.
    pub(crate) fn to_status(&self) -> Status {
        failure(
            i32::from(self.code.as_u16()),
            self.reason,
            &self.message,
            self.details.as_deref().cloned(),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self.to_status()).unwrap_or_default();
        let mut response = (self.code, body).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if self.code == StatusCode::TOO_MANY_REQUESTS {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

/// The 410 Gone `Status` a watch from a compacted resourceVersion receives as an `ERROR` event.
pub(crate) fn expired(requested: u64, oldest: u64) -> Status {
    failure(
        410,
        "Expired",
        &format!("too old resource version: {requested} ({oldest})"),
        None,
    )
}

/// The `Success` status that ends an exec stream.
pub(crate) fn exec_success() -> Status {
    Status {
        status: Some("Success".to_owned()),
        ..Status::default()
    }
}

/// The `Failure` status that ends an exec whose command exited non-zero, as the kubelet sends it.
pub(crate) fn exec_exit_code(command: &[String], exit_code: i32) -> Status {
    Status {
        status: Some("Failure".to_owned()),
        message: Some(format!(
            "command terminated with non-zero exit code: error executing command [{}], exit code {exit_code}",
            command.join(" ")
        )),
        reason: Some("NonZeroExitCode".to_owned()),
        details: Some(StatusDetails {
            causes: Some(vec![StatusCause {
                reason: Some("ExitCode".to_owned()),
                message: Some(exit_code.to_string()),
                field: None,
            }]),
            ..StatusDetails::default()
        }),
        ..Status::default()
    }
}

fn failure(code: i32, reason: &str, message: &str, details: Option<StatusDetails>) -> Status {
    Status {
        code: Some(code),
        details,
        message: Some(message.to_owned()),
        reason: Some(reason.to_owned()),
        status: Some("Failure".to_owned()),
        ..Status::default()
    }
}

fn object_details(name: &str) -> StatusDetails {
    StatusDetails {
        name: Some(name.to_owned()),
        kind: Some("pods".to_owned()),
        ..StatusDetails::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_reads_as_the_real_api_server_words_it() {
        let status = ApiError::pod_not_found("p").to_status();
        let json = serde_json::to_value(&status).unwrap();
        assert_eq!(json["kind"], "Status");
        assert_eq!(json["apiVersion"], "v1");
        assert_eq!(json["code"], 404);
        assert_eq!(json["reason"], "NotFound");
        assert_eq!(json["message"], "pods \"p\" not found");
        assert_eq!(json["details"]["kind"], "pods");
    }

    #[test]
    fn exec_failure_carries_the_exit_code_as_a_cause() {
        let json = serde_json::to_value(exec_exit_code(&["sh".to_owned()], 1)).unwrap();
        assert_eq!(json["status"], "Failure");
        assert_eq!(json["details"]["causes"][0]["reason"], "ExitCode");
        assert_eq!(json["details"]["causes"][0]["message"], "1");
    }
}
