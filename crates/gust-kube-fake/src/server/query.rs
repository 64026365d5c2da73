//! Query parameters as the API server reads them, with 400s for malformed values.
//!
//! Parsed by hand (not with `axum::extract::Query`) because exec repeats `command`, and
//! because a malformed value must answer a `Status`, not axum's plain-text rejection.

use std::convert::Infallible;
use std::str::FromStr;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use k8s_openapi::jiff::Timestamp;

use crate::selector::{FieldSelector, LabelSelector};
use crate::status::ApiError;

/// The decoded query string of a request.
#[derive(Clone, Debug, Default)]
pub(crate) struct Query {
    pairs: Vec<(String, String)>,
}

impl<S: Send + Sync> FromRequestParts<S> for Query {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Query::parse(parts.uri.query().unwrap_or_default()))
    }
}

impl Query {
    /// Decodes `a=b&c=d`.
    pub(crate) fn parse(raw: &str) -> Self {
        let pairs = url::form_urlencoded::parse(raw.as_bytes())
            .map(|(key, value)| (key.into_owned(), value.into_owned()))
            .collect();
        Query { pairs }
    }

    /// The first value of `key`.
    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `key`, in order.
    pub(crate) fn all(&self, key: &str) -> Vec<String> {
        self.pairs
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// A boolean parameter; absent is false.
    pub(crate) fn flag(&self, key: &str) -> Result<bool, ApiError> {
        match self.get(key) {
            None | Some("" | "false" | "0" | "False") => Ok(false),
            Some("true" | "1" | "True") => Ok(true),
            Some(other) => Err(ApiError::bad_request(format!(
                "invalid value {other:?} for boolean parameter {key}"
            ))),
        }
    }

    /// A numeric parameter.
    pub(crate) fn number<T: FromStr>(&self, key: &str) -> Result<Option<T>, ApiError> {
        self.get(key)
            .filter(|value| !value.is_empty())
            .map(|value| {
                value.parse().map_err(|_| {
                    ApiError::bad_request(format!("invalid value {value:?} for parameter {key}"))
                })
            })
            .transpose()
    }

    /// An RFC 3339 time parameter.
    pub(crate) fn time(&self, key: &str) -> Result<Option<Timestamp>, ApiError> {
        self.get(key)
            .filter(|value| !value.is_empty())
            .map(|value| {
                value.parse().map_err(|_| {
                    ApiError::bad_request(format!(
                        "{key}: invalid value {value:?}: not an RFC 3339 time"
                    ))
                })
            })
            .transpose()
    }

    /// The `labelSelector`, everything when absent.
    pub(crate) fn label_selector(&self) -> Result<LabelSelector, ApiError> {
        LabelSelector::parse(self.get("labelSelector").unwrap_or_default())
            .map_err(|error| ApiError::bad_request(error.to_string()))
    }

    /// The `fieldSelector` for pods, everything when absent.
    pub(crate) fn pod_field_selector(&self) -> Result<FieldSelector, ApiError> {
        FieldSelector::for_pods(self.get("fieldSelector").unwrap_or_default())
            .map_err(|error| ApiError::bad_request(error.to_string()))
    }

    /// The `fieldSelector` for events, everything when absent.
    pub(crate) fn event_field_selector(&self) -> Result<FieldSelector, ApiError> {
        FieldSelector::for_events(self.get("fieldSelector").unwrap_or_default())
            .map_err(|error| ApiError::bad_request(error.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_parameters_keep_their_order() {
        let query = Query::parse("command=sh&command=-c&command=cat%20%2Fx&stdout=true");
        assert_eq!(query.all("command"), ["sh", "-c", "cat /x"]);
        assert!(query.flag("stdout").unwrap());
    }

    #[test]
    fn malformed_values_are_bad_requests() {
        let query = Query::parse("tailLines=ten&follow=maybe&sinceTime=yesterday");
        assert!(query.number::<i64>("tailLines").is_err());
        assert!(query.flag("follow").is_err());
        assert!(query.time("sinceTime").is_err());
    }
}
