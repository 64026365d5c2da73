//! `limit` / `offset` / `order_by`, as Airflow's list endpoints take them.

use serde::Deserialize;

use crate::error::ApiError;

/// The most items one page holds (Airflow's `maximum_page_limit`).
pub const MAX_PAGE: usize = 100;
/// A page's size when the request does not say (Airflow's default).
pub const DEFAULT_PAGE: usize = 50;

/// Which slice of a list to answer.
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct Page {
    /// How many (at most [`MAX_PAGE`]).
    #[serde(default = "default_limit")]
    pub limit: usize,
    /// How many to skip.
    #[serde(default)]
    pub offset: usize,
}

/// The default `limit`, for query structs (`#[serde(default = "...")]`).
pub fn default_limit() -> usize {
    DEFAULT_PAGE
}

impl Page {
    /// The page of `items`, with the limit capped at [`MAX_PAGE`] as Airflow caps it.
    pub fn slice<T>(self, items: Vec<T>) -> Vec<T> {
        items
            .into_iter()
            .skip(self.offset)
            .take(self.limit.min(MAX_PAGE))
            .collect()
    }
}

/// One `order_by` key: a field name, `-` first for descending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderBy {
    /// The field.
    pub field: String,
    /// Descending.
    pub descending: bool,
}

impl OrderBy {
    /// Reads `order_by` values, each checked against the fields the endpoint sorts by.
    pub fn parse(values: &[String], allowed: &[&str]) -> Result<Vec<OrderBy>, ApiError> {
        values
            .iter()
            .filter(|v| !v.is_empty())
            .map(|value| {
                let (descending, field) = match value.strip_prefix('-') {
                    Some(field) => (true, field),
                    None => (false, value.as_str()),
                };
                if allowed.contains(&field) {
                    Ok(OrderBy {
                        field: field.to_owned(),
                        descending,
                    })
                } else {
                    Err(ApiError::BadRequest(format!(
                        "Ordering with '{field}' is disallowed or the attribute does not exist on the model; use one of: {}",
                        allowed.join(", ")
                    )))
                }
            })
            .collect()
    }
}

/// Sorts `items` by the `order_by` keys, `key(item, field)` giving each field's sort value.
pub fn sort_by<T, K: Ord>(items: &mut [T], order: &[OrderBy], key: impl Fn(&T, &str) -> K) {
    items.sort_by(|a, b| {
        order
            .iter()
            .map(|o| {
                let ord = key(a, &o.field).cmp(&key(b, &o.field));
                if o.descending { ord.reverse() } else { ord }
            })
            .find(|ord| ord.is_ne())
            .unwrap_or(std::cmp::Ordering::Equal)
    });
}
