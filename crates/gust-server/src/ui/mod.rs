//! The web UI: server-rendered pages (minijinja, auto-escaped, templates embedded in the binary)
//! that draw their heavy parts in the browser from compact JSON, kept current by server-sent
//! events. Nothing is fetched from anywhere but this server.
//!
//! `session` logs users in and out and decides who may see a page (pages redirect to `/login`,
//! the UI's JSON and event endpoints answer 401); `pages` renders the HTML; `data` answers the
//! JSON the pages draw from (one query or two per view, however big the DAG); `live` streams
//! what changed; `layout` places a DAG's tasks for the graph view; `mask` hides secrets.
//! Changes (trigger, clear, mark, pause) go through the REST API under `/api/v2`, with the
//! session cookie and the CSRF token, so the UI can do nothing the API would refuse.
//! Start reading at [`routes`].

mod assets;
mod data;
pub mod headers;
pub mod layout;
mod live;
pub mod mask;
mod pages;
mod pod;
mod processing;
mod run_data;
mod session;
mod templates;

use axum::Router;
use axum::routing::{get, post};

use crate::state::AppState;

/// Which one-letter code stands for each task state in the grid's compact JSON.
pub use data::state_code;

/// Every UI route: pages, their JSON, their event streams, the embedded assets.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(pages::home))
        .route("/login", get(session::login_page).post(session::login))
        .route("/logout", post(session::logout))
        .route("/dags", get(pages::dags))
        .route("/dags/{dag_id}", get(pages::dag))
        .route("/dags/{dag_id}/runs/{run_id}", get(pages::run))
        .route(
            "/dags/{dag_id}/runs/{run_id}/tasks/{task_id}",
            get(pages::task_instance),
        )
        .route("/variables", get(pages::variables))
        .route("/connections", get(pages::connections))
        .route("/pools", get(pages::pools))
        .route("/assets", get(pages::assets))
        .route("/ui/api/dags", get(data::dags))
        .route("/ui/api/dags/{dag_id}/grid", get(data::grid))
        .route("/ui/api/dags/{dag_id}/graph", get(data::graph))
        .route(
            "/ui/api/dags/{dag_id}/runs/{run_id}/details",
            get(run_data::run_details),
        )
        .route(
            "/ui/api/dags/{dag_id}/runs/{run_id}/tasks/{task_id}",
            get(data::task_instance),
        )
        .route(
            "/ui/api/dags/{dag_id}/runs/{run_id}/tasks/{task_id}/logs/{try_number}",
            get(data::log),
        )
        .route("/ui/events/dags", get(live::dags))
        .route("/ui/events/dags/{dag_id}/grid", get(live::grid))
        .route(
            "/ui/events/dags/{dag_id}/runs/{run_id}/tasks/{task_id}",
            get(live::task_instance),
        )
        .route("/ui/static/{name}", get(assets::asset))
        .route(
            "/favicon.ico",
            get(|| async { axum::response::Redirect::permanent("/ui/static/favicon.svg") }),
        )
}
