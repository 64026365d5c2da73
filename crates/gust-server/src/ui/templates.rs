//! The page templates, embedded in the binary and compiled once; auto-escaping is on for every
//! one (they all end in `.html`), so nothing a DAG file or a user wrote can become markup.

use std::sync::OnceLock;

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use minijinja::Environment;

use crate::error::ApiError;

/// Every template, by name.
const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("../../templates/base.html")),
    ("login.html", include_str!("../../templates/login.html")),
    ("dags.html", include_str!("../../templates/dags.html")),
    ("dag.html", include_str!("../../templates/dag.html")),
    ("run.html", include_str!("../../templates/run.html")),
    ("task.html", include_str!("../../templates/task.html")),
    (
        "variables.html",
        include_str!("../../templates/variables.html"),
    ),
    (
        "connections.html",
        include_str!("../../templates/connections.html"),
    ),
    ("pools.html", include_str!("../../templates/pools.html")),
    ("assets.html", include_str!("../../templates/assets.html")),
    ("delete.html", include_str!("../../templates/delete.html")),
    ("error.html", include_str!("../../templates/error.html")),
];

fn environment() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        for (name, source) in TEMPLATES {
            // The templates are part of the binary and tested; one that does not compile is a
            // bug caught by `every_template_compiles`.
            if let Err(err) = env.add_template(name, source) {
                tracing::error!(template = name, error = %err, "a UI template does not compile");
            }
        }
        env
    })
}

/// Renders `name` with `context`.
pub fn render(name: &str, context: minijinja::Value) -> Result<Html<String>, ApiError> {
    environment()
        .get_template(name)
        .and_then(|t| t.render(context))
        .map(Html)
        .map_err(|err| {
            tracing::error!(template = name, error = %err, "a UI template failed to render");
            ApiError::BadRequest(format!("the page {name} could not be drawn"))
        })
}

/// A page that could not be shown: the error page, with the error's status and one line.
#[derive(Debug)]
pub struct PageError(pub ApiError);

impl From<ApiError> for PageError {
    fn from(err: ApiError) -> Self {
        PageError(err)
    }
}

impl From<gust_store::StoreError> for PageError {
    fn from(err: gust_store::StoreError) -> Self {
        PageError(ApiError::Store(err))
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let (status, message) = match &self.0 {
            ApiError::NotFound(msg) => (StatusCode::NOT_FOUND, msg.clone()),
            ApiError::Forbidden => (StatusCode::FORBIDDEN, "Forbidden".to_owned()),
            ApiError::Store(err) => {
                tracing::error!(error = %err, "a UI page failed in the metadata database");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "The metadata database failed; the server's log says why.".to_owned(),
                )
            }
            other => (StatusCode::BAD_REQUEST, other.to_string()),
        };
        match render(
            "error.html",
            minijinja::context! { status => status.as_u16(), message => message },
        ) {
            Ok(page) => (status, page).into_response(),
            Err(_) => (status, message).into_response(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_compiles() {
        let mut env = Environment::new();
        for (name, source) in TEMPLATES {
            env.add_template(name, source)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }

    #[test]
    fn templates_escape_what_they_show() {
        let page = render(
            "error.html",
            minijinja::context! { status => 404, message => "<script>alert(1)</script>" },
        )
        .unwrap();
        assert!(!page.0.contains("<script>alert"));
        assert!(page.0.contains("&lt;script&gt;"));
    }
}
