//! Errors as the API answers them: Airflow's bodies (`{"detail": ...}`, and FastAPI's list of
//! `{type, loc, msg}` for a request that does not validate), with Airflow's status codes.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// An error answer.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request is understood but cannot be done as asked.
    #[error("{0}")]
    BadRequest(String),
    /// 401: no valid credentials.
    #[error("{0}")]
    Unauthorized(String),
    /// 403: the caller's role does not allow it.
    #[error("Forbidden")]
    Forbidden,
    /// 403 with the reason: the server is set up not to answer this to anyone (the
    /// configuration when `[api] expose_config` is off).
    #[error("{0}")]
    Refused(String),
    /// 404: something named by the path does not exist.
    #[error("{0}")]
    NotFound(String),
    /// 406: the answer cannot be given in any form the `Accept` header allows.
    #[error("{0}")]
    NotAcceptable(String),
    /// 409: it already exists.
    #[error("{0}")]
    Conflict(String),
    /// 422 with one message (Airflow's `RequestValidationError(str)`): the request is
    /// well-formed but asks for what cannot be done (a backfill of future dates).
    #[error("{0}")]
    Unprocessable(String),
    /// 422: the request does not match the endpoint's parameters or body.
    #[error("{msg}")]
    Invalid {
        /// Where: `["query", "limit"]`, `["body", "conf"]`, ...
        loc: Vec<String>,
        /// What is wrong and what would fix it.
        msg: String,
    },
    /// 500: the metadata database failed; the details go to the server's log, not the caller.
    #[error(transparent)]
    Store(#[from] gust_store::StoreError),
}

impl ApiError {
    /// A 404 in Airflow's words: "The Dag with ID: `x` was not found".
    pub fn not_found(what: &str, id: impl std::fmt::Display) -> Self {
        ApiError::NotFound(format!("The {what} with ID: `{id}` was not found"))
    }

    /// A 422 about one request field.
    pub fn invalid(place: &str, field: &str, msg: impl Into<String>) -> Self {
        ApiError::Invalid {
            loc: vec![place.to_owned(), field.to_owned()],
            msg: msg.into(),
        }
    }

    /// The status code this error is answered with.
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden | ApiError::Refused(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::NotAcceptable(_) => StatusCode::NOT_ACCEPTABLE,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Invalid { .. } | ApiError::Unprocessable(_) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            ApiError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn body(&self) -> Value {
        match self {
            ApiError::Invalid { loc, msg } => json!({
                "detail": [{"type": "value_error", "loc": loc, "msg": msg}]
            }),
            ApiError::Store(err) => {
                tracing::error!(error = %err, source = ?std::error::Error::source(err), "a request failed in the metadata database");
                json!({"detail": "The metadata database failed; the server's log says why."})
            }
            other => json!({"detail": other.to_string()}),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut response = (status, Json(self.body())).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

/// What handlers return.
pub type ApiResult<T> = Result<T, ApiError>;
