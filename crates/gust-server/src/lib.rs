//! The HTTP server: Airflow 3's public REST API under `/api/v2` (so Airflow's clients and
//! scripts work unchanged), `POST /auth/token` for access tokens, and the web UI, all on axum in
//! one router.
//!
//! `auth` decides who is calling and what they may do, `api` holds one module per endpoint
//! group, `state` what handlers share. The OpenAPI document at `/api/v2/openapi.json` is built
//! from the handlers' own declarations (utoipa), so it cannot drift from what is served.

// The request and response types mirror Airflow's schemas field for field; Airflow's OpenAPI
// document describes each field, so they carry no doc comment of their own.
#[allow(
    missing_docs,
    reason = "response fields are Airflow's, described by its OpenAPI document"
)]
pub mod api;
pub mod audit;
pub mod auth;
pub mod error;
pub mod execution;
pub mod metrics;
pub mod state;
pub mod ui;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use tokio_util::sync::CancellationToken;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

pub use api::config::ExposedConfig;
pub use state::{AppState, SecuritySettings, ServerSettings};

/// The largest request body accepted (a trigger's conf, a variable's value...).
pub const MAX_BODY_BYTES: usize = 1 << 20;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Gust API",
        description = "Gust's REST API: the paths, parameters and JSON shapes of Apache Airflow 3's public API (v2)."
    ),
    modifiers(&BearerAuth)
)]
struct ApiDoc;

/// Declares the bearer token scheme and requires it everywhere (the public endpoints are
/// marked as needing nothing).
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "HTTPBearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
        openapi.security = Some(vec![utoipa::openapi::security::SecurityRequirement::new(
            "HTTPBearer",
            Vec::<String>::new(),
        )]);
    }
}

/// The whole application: API, login, OpenAPI document.
pub fn router(state: AppState) -> Router {
    let scheduler_health = state.scheduler().cloned().map(metrics::health_route);
    let operations = audit::Operations::of(&api::protected_routes().split_for_parts().1);
    // Layers run outermost last-added first: the caller is known before the call is recorded.
    let protected = api::protected_routes()
        .layer(axum::middleware::from_fn_with_state(
            (state.clone(), operations),
            audit::record,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ));
    let (router, openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(auth::login_routes())
        .merge(api::public_routes())
        .merge(protected)
        .split_for_parts();
    let document = Arc::new(openapi);
    let app = router
        .merge(ui::routes())
        .merge(metrics::api_routes())
        .route(
            "/api/v2/openapi.json",
            get(move || {
                let document = document.clone();
                async move { axum::Json(document.as_ref().clone()) }
            }),
        )
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state);
    let app = match scheduler_health {
        Some(health) => app.merge(health),
        None => app,
    };
    app.layer(axum::middleware::from_fn(ui::headers::security_headers))
}

/// How long requests in flight may take to finish once the server is asked to stop. The web
/// UI's live streams never finish on their own, so without a bound one open page would keep a
/// stopping server up.
pub const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(3);

/// Serves `app` on `listener` until `stop` is cancelled; requests in flight get
/// [`SHUTDOWN_GRACE`] to finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    stop: CancellationToken,
) -> std::io::Result<()> {
    // The peer's address is kept for login throttling (auth::throttle).
    let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
    let server = axum::serve(listener, app).with_graceful_shutdown(stop.clone().cancelled_owned());
    tokio::select! {
        result = server => result,
        () = async {
            stop.cancelled().await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } => Ok(()),
    }
}
