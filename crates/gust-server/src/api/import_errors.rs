//! `/api/v2/importErrors`: the problems of DAG files that did not load.
//!
//! Gust keeps one record per file (its problems, as `file:line:col: DAG.TASK: message` lines)
//! with no numeric id, so a record's `import_error_id` is derived from its file name: the first
//! 31 bits of the name's SHA-256 (at least 1). It is stable for as long as the file has
//! problems, and the same after the file is fixed and breaks again.

use axum::Json;
use axum::extract::{Path, State};
use gust_store::ImportErrorRecord;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::extract::Params;
use crate::api::page::{OrderBy, Page, sort_by};
use crate::api::search::{matches_pattern, matches_prefix};
use crate::api::time::Timestamp;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// The bundle every DAG file belongs to (as `DagResponse.bundle_name` says).
pub const BUNDLE_NAME: &str = "dags-folder";

/// The import error endpoints.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_import_errors))
        .routes(routes!(get_import_error))
}

/// One file's problems (Airflow's `ImportErrorResponse`).
#[derive(Debug, Serialize, ToSchema)]
pub struct ImportErrorResponse {
    /// Derived from the file name (see the module's documentation).
    pub import_error_id: i64,
    pub timestamp: Timestamp,
    /// The file, as the scheduler read it.
    pub filename: String,
    pub bundle_name: Option<String>,
    /// The file's problems, one a line.
    pub stack_trace: String,
}

/// A page of import errors.
#[derive(Debug, Serialize, ToSchema)]
pub struct ImportErrorCollectionResponse {
    pub import_errors: Vec<ImportErrorResponse>,
    pub total_entries: usize,
}

/// `GET /importErrors` filters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ImportErrorsQuery {
    /// At most this many (default 50, at most 100).
    #[serde(default = "crate::api::page::default_limit")]
    pub limit: usize,
    /// Skip this many.
    #[serde(default)]
    pub offset: usize,
    /// Sort keys: `id`, `import_error_id`, `timestamp`, `filename`, `bundle_name`,
    /// `stacktrace`; `-` first for descending.
    #[serde(default)]
    pub order_by: Vec<String>,
    /// Case-insensitive `ILIKE` pattern of the file name.
    pub filename_pattern: Option<String>,
    /// Case-sensitive prefix of the file name.
    pub filename_prefix_pattern: Option<String>,
    /// Only this file.
    pub filename: Option<String>,
    /// Only this bundle.
    pub bundle_name: Option<String>,
}

/// The id of a file's import error: the first 31 bits of its name's SHA-256, at least 1.
#[must_use]
pub fn import_error_id(file: &str) -> i64 {
    let digest = Sha256::digest(file.as_bytes());
    let first = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]);
    i64::from(first >> 1).max(1)
}

fn response(record: ImportErrorRecord) -> ImportErrorResponse {
    ImportErrorResponse {
        import_error_id: import_error_id(&record.error.file),
        timestamp: record.timestamp.into(),
        stack_trace: record.error.problems.join("\n"),
        filename: record.error.file,
        bundle_name: Some(BUNDLE_NAME.to_owned()),
    }
}

/// Get all import errors.
#[utoipa::path(get, path = "/api/v2/importErrors", tag = "Import Error", params(ImportErrorsQuery),
    responses((status = 200, body = ImportErrorCollectionResponse), (status = 401), (status = 403), (status = 422)))]
async fn get_import_errors(
    State(state): State<AppState>,
    Params(query): Params<ImportErrorsQuery>,
) -> ApiResult<Json<ImportErrorCollectionResponse>> {
    let order = OrderBy::parse(
        &query.order_by,
        &[
            "id",
            "timestamp",
            "filename",
            "bundle_name",
            "stacktrace",
            "import_error_id",
        ],
    )?;
    let mut errors: Vec<ImportErrorResponse> = state
        .store()
        .import_error_records()
        .await?
        .into_iter()
        .map(response)
        .filter(|e| {
            matches_pattern(query.filename_pattern.as_deref(), &e.filename)
                && matches_prefix(query.filename_prefix_pattern.as_deref(), &e.filename)
                && query.filename.as_ref().is_none_or(|f| *f == e.filename)
                && query
                    .bundle_name
                    .as_ref()
                    .is_none_or(|b| Some(b) == e.bundle_name.as_ref())
        })
        .collect();
    // As Airflow: by id unless asked otherwise, ties by id.
    errors.sort_by_key(|e| e.import_error_id);
    sort_by(&mut errors, &order, |e, field| match field {
        "timestamp" => (e.timestamp.0.timestamp_micros(), String::new()),
        "filename" => (0, e.filename.clone()),
        "stacktrace" => (0, e.stack_trace.clone()),
        "id" | "import_error_id" => (e.import_error_id, String::new()),
        _ => (0, String::new()),
    });
    let total_entries = errors.len();
    let page = Page {
        limit: query.limit,
        offset: query.offset,
    };
    Ok(Json(ImportErrorCollectionResponse {
        import_errors: page.slice(errors),
        total_entries,
    }))
}

/// Get an import error.
#[utoipa::path(get, path = "/api/v2/importErrors/{import_error_id}", tag = "Import Error",
    params(("import_error_id" = i64, Path)),
    responses((status = 200, body = ImportErrorResponse), (status = 401), (status = 403), (status = 404), (status = 422)))]
async fn get_import_error(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<ImportErrorResponse>> {
    let Ok(id) = id.parse::<i64>() else {
        return Err(ApiError::invalid(
            "path",
            "import_error_id",
            "Input should be a valid integer, unable to parse string as an integer",
        ));
    };
    state
        .store()
        .import_error_records()
        .await?
        .into_iter()
        .find(|record| import_error_id(&record.error.file) == id)
        .map(|record| Json(response(record)))
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "The ImportError with import_error_id: `{id}` was not found"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::import_error_id;

    #[test]
    fn ids_are_stable_positive_and_differ_between_files() {
        let a = import_error_id("/dags/a.yaml");
        assert_eq!(a, import_error_id("/dags/a.yaml"));
        assert!((1..(1 << 31)).contains(&a));
        assert_ne!(a, import_error_id("/dags/b.yaml"));
    }
}
