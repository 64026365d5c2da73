//! The UI's stylesheet and scripts, embedded in the binary: nothing is fetched from a CDN.

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Every asset: name, content type, content.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("../../assets/style.css"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("../../assets/app.js"),
    ),
    (
        "grid.js",
        "text/javascript; charset=utf-8",
        include_str!("../../assets/grid.js"),
    ),
    (
        "favicon.svg",
        "image/svg+xml",
        include_str!("../../assets/favicon.svg"),
    ),
    (
        "graph.js",
        "text/javascript; charset=utf-8",
        include_str!("../../assets/graph.js"),
    ),
    (
        "panel.js",
        "text/javascript; charset=utf-8",
        include_str!("../../assets/panel.js"),
    ),
    (
        "gantt.js",
        "text/javascript; charset=utf-8",
        include_str!("../../assets/gantt.js"),
    ),
];

/// `GET /ui/static/{name}`: public (no secrets in it), cached for five minutes.
pub async fn asset(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, content_type, body)) => (
            [
                (header::CONTENT_TYPE, *content_type),
                (header::CACHE_CONTROL, "public, max-age=300"),
            ],
            *body,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such asset").into_response(),
    }
}
