//! Request extractors whose rejections are Airflow's 422 bodies: `Params<T>` for the query string
//! (repeated keys such as `tags=a&tags=b` read as lists, as FastAPI reads them), `PathParams<T>`
//! for the path's parameters (`/logs/abc` where a number belongs) and `Body<T>` for JSON bodies. A query string may repeat one parameter at most [`MAX_REPEATED_PARAM`] times,
//! so a request cannot turn into thousands of filter or sort terms.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// The most nesting a JSON body may have (a run's conf, a variable's value): deeper is refused
/// before it reaches anything that recurses.
pub const MAX_JSON_DEPTH: usize = 64;

/// The most values one query parameter may have (`order_by=a&order_by=b...`): more is a 400.
/// No list endpoint has a use for more than a page's worth (SQLite refuses an `ORDER BY` of
/// 2,000 terms, and every filter value costs a bind parameter).
pub const MAX_REPEATED_PARAM: usize = 100;

/// The query string, read into `T`.
#[derive(Debug, Clone)]
pub struct Params<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        if let Some(query) = parts.uri.query() {
            check_repetitions(query)?;
        }
        axum_extra::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Params(q.0))
            .map_err(|e| ApiError::Invalid {
                loc: vec!["query".into()],
                msg: e.body_text(),
            })
    }
}

/// The path's parameters, read into `T`; a parameter of the wrong type (`logs/abc` for a try
/// number) is a 422 naming it, as FastAPI answers, not axum's plain-text 400.
#[derive(Debug, Clone)]
pub struct PathParams<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for PathParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        use axum::extract::path::ErrorKind;
        use axum::extract::rejection::PathRejection;
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(path) => Ok(PathParams(path.0)),
            Err(PathRejection::FailedToDeserializePathParams(err)) => {
                // A tuple of parameters is read by position: name the one at that position.
                let key_at = |index: usize| {
                    parts
                        .extensions
                        .get::<axum::extract::MatchedPath>()
                        .and_then(|route| route_params(route.as_str()).nth(index))
                };
                let (key, expected_type) = match err.kind() {
                    ErrorKind::ParseErrorAtKey {
                        key, expected_type, ..
                    } => (Some(key.clone()), Some(*expected_type)),
                    ErrorKind::ParseErrorAtIndex {
                        index,
                        expected_type,
                        ..
                    } => (key_at(*index), Some(*expected_type)),
                    _ => (None, None),
                };
                let msg = match expected_type {
                    Some(rust) => format!("Input should be a valid {}", type_name(rust)),
                    None => err.body_text(),
                };
                let loc = std::iter::once("path".to_owned()).chain(key).collect();
                Err(ApiError::Invalid { loc, msg })
            }
            Err(other) => Err(ApiError::BadRequest(other.body_text())),
        }
    }
}

/// The parameter names of a route (`/logs/{try_number}` has `try_number`), in order.
fn route_params(route: &str) -> impl Iterator<Item = String> + '_ {
    route.split('/').filter_map(|segment| {
        segment
            .strip_prefix('{')
            .and_then(|s| s.strip_suffix('}'))
            .map(|name| name.trim_start_matches('*').to_owned())
    })
}

/// A Rust type's name as pydantic words it in a 422 (`u32` is an integer).
fn type_name(rust: &str) -> &'static str {
    if rust.starts_with('u') || rust.starts_with('i') {
        "integer, unable to parse string as an integer"
    } else if rust.starts_with('f') {
        "number, unable to parse string as a number"
    } else {
        "value"
    }
}

/// Refuses a query string in which one parameter has more than [`MAX_REPEATED_PARAM`] values.
fn check_repetitions(query: &str) -> Result<(), ApiError> {
    // Unreadable text is left to the extractor, which says what is wrong with it.
    let Ok(pairs) = serde_urlencoded::from_str::<Vec<(String, String)>>(query) else {
        return Ok(());
    };
    let mut counts: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for (name, _) in &pairs {
        let count = counts.entry(name).or_default();
        *count += 1;
        if *count > MAX_REPEATED_PARAM {
            let shown: String = name.chars().take(64).collect();
            return Err(ApiError::BadRequest(format!(
                "the query parameter `{shown}` is given more than {MAX_REPEATED_PARAM} times; pass at most {MAX_REPEATED_PARAM} values"
            )));
        }
    }
    Ok(())
}

/// A JSON body, read into `T`.
#[derive(Debug, Clone)]
pub struct Body<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = axum::body::Bytes::from_request(request, state)
            .await
            .map_err(|e| ApiError::BadRequest(e.body_text()))?;
        if json_depth(&bytes) > MAX_JSON_DEPTH {
            return Err(ApiError::invalid(
                "body",
                "",
                format!("the JSON body nests deeper than {MAX_JSON_DEPTH} levels"),
            ));
        }
        let mut deserializer = serde_json::Deserializer::from_slice(&bytes);
        serde_path_to_error::deserialize(&mut deserializer)
            .map(Body)
            .map_err(|e| ApiError::Invalid {
                loc: std::iter::once("body".to_owned())
                    .chain(e.path().iter().map(|seg| seg.to_string()))
                    .filter(|s| s != ".")
                    .collect(),
                msg: e.inner().to_string(),
            })
    }
}

/// How deeply brackets nest in `json` (strings skipped), without parsing it.
fn json_depth(json: &[u8]) -> usize {
    let (mut depth, mut deepest, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for &byte in json {
        if in_string {
            match (escaped, byte) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

#[cfg(test)]
mod tests {
    use super::{MAX_REPEATED_PARAM, check_repetitions, json_depth};

    #[test]
    fn depth_counts_brackets_outside_strings() {
        assert_eq!(json_depth(br#"{"a": [1, {"b": "[[[["}]}"#), 3);
        assert_eq!(json_depth(b"1"), 0);
        assert_eq!(json_depth(&b"[".repeat(100)), 100);
    }

    #[test]
    fn a_parameter_may_repeat_up_to_the_limit() {
        let query = |n: usize| vec!["order_by=dag_id"; n].join("&");
        assert!(check_repetitions(&query(MAX_REPEATED_PARAM)).is_ok());
        assert!(
            check_repetitions(&format!("{}&state=a&state=b", query(MAX_REPEATED_PARAM))).is_ok()
        );
        let err = check_repetitions(&query(MAX_REPEATED_PARAM + 1)).unwrap_err();
        assert!(err.to_string().contains("`order_by`"), "{err}");
    }
}
