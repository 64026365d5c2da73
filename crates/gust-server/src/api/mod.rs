//! Airflow 3's public REST API (`/api/v2`), endpoint group by endpoint group, each module
//! declaring its routes with their OpenAPI descriptions (the served document is generated from
//! these declarations).

pub mod assets;
pub mod backfills;
pub mod bulk;
pub mod config;
pub mod connection_test;
pub mod connections;
pub mod dag_run_wait;
pub mod dag_runs;
pub mod dag_stats;
pub mod dag_tags;
pub mod dag_versions;
pub mod dag_warnings;
pub mod dags;
pub mod deadlines;
pub mod event_logs;
pub mod extract;
pub mod fields;
pub mod import_errors;
pub mod jobs;
pub mod logs;
pub mod mark_scope;
pub mod monitor;
pub mod notifications;
pub mod page;
pub mod pools;
pub mod providers;
pub mod python_repr;
pub mod redact;
pub mod search;
pub mod task_instances;
pub mod task_instances_batch;
pub mod tasks;
pub mod ti_dependencies;
pub mod time;
pub mod variables;
pub mod xcoms;

use utoipa_axum::router::OpenApiRouter;

use crate::state::AppState;

/// The endpoints anyone may call.
pub fn public_routes() -> OpenApiRouter<AppState> {
    monitor::routes()
}

/// The endpoints that need credentials.
pub fn protected_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(dags::routes())
        .merge(dag_runs::routes())
        .merge(dag_run_wait::routes())
        .merge(dag_tags::routes())
        .merge(dag_versions::routes())
        .merge(dag_stats::routes())
        .merge(dag_warnings::routes())
        .merge(config::routes())
        .merge(providers::routes())
        .merge(logs::routes())
        .merge(task_instances::routes())
        .merge(task_instances_batch::routes())
        .merge(ti_dependencies::routes())
        .merge(tasks::routes())
        .merge(xcoms::routes())
        .merge(variables::routes())
        .merge(connections::routes())
        .merge(connection_test::routes())
        .merge(pools::routes())
        .merge(import_errors::routes())
        .merge(event_logs::routes())
        .merge(jobs::routes())
        .merge(backfills::routes())
        .merge(assets::routes())
        .merge(notifications::routes())
        .merge(deadlines::routes())
}
