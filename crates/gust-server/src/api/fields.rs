//! `Fields<T>`: a JSON body read into `T` that also knows which fields it carried, for PATCH,
//! where an absent field is left as stored and a `null` one is cleared (as pydantic's
//! `model_fields_set` tells Airflow).

use std::collections::{BTreeSet, HashMap};

use axum::extract::{FromRequest, Request};
use serde::de::{DeserializeOwned, IgnoredAny};

use crate::api::extract::Body;
use crate::error::ApiError;

/// A body and the names of its fields.
#[derive(Debug, Clone)]
pub struct Fields<T> {
    /// The body.
    pub body: T,
    present: BTreeSet<String>,
}

impl<T> Fields<T> {
    /// Whether the body carried `field`.
    #[must_use]
    pub fn has(&self, field: &str) -> bool {
        self.present.contains(field)
    }

    /// Whether a PATCH changes `field`: the body carries it and the update mask, when given,
    /// names it.
    #[must_use]
    pub fn updates(&self, field: &str, update_mask: Option<&[String]>) -> bool {
        self.has(field)
            && update_mask
                .filter(|mask| !mask.is_empty())
                .is_none_or(|mask| mask.iter().any(|f| f.trim() == field))
    }
}

impl<T: DeserializeOwned> Fields<T> {
    /// `value` read into `T` (one entity of a bulk body), or the 422 naming what is wrong at
    /// `loc`.
    pub fn from_value(value: serde_json::Value, loc: &[String]) -> Result<Self, ApiError> {
        let present = value
            .as_object()
            .map(|fields| fields.keys().cloned().collect())
            .unwrap_or_default();
        let body = serde_path_to_error::deserialize(value).map_err(|err| {
            let path = err.path().to_string();
            let mut loc = loc.to_vec();
            loc.extend(
                path.split('.')
                    .filter(|p| !p.is_empty() && *p != "?")
                    .map(str::to_owned),
            );
            ApiError::Invalid {
                loc,
                msg: err.into_inner().to_string(),
            }
        })?;
        Ok(Fields { body, present })
    }
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Fields<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = axum::body::Bytes::from_request(request, state)
            .await
            .map_err(|e| ApiError::BadRequest(e.body_text()))?;
        let present = serde_json::from_slice::<HashMap<String, IgnoredAny>>(&bytes)
            .map(|fields| fields.into_keys().collect())
            .unwrap_or_default();
        let Body(body) =
            Body::<T>::from_request(Request::new(axum::body::Body::from(bytes)), state).await?;
        Ok(Fields { body, present })
    }
}
