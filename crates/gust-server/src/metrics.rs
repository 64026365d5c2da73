//! Prometheus metrics and the scheduler's health over HTTP.
//!
//! - `GET /metrics` on the API server: DAG runs and task instances by state, counted in the
//!   database at scrape time (one `GROUP BY` each), the age of the latest heartbeat of any
//!   scheduler, and, when a scheduler runs in the same process (`gust standalone`), that
//!   scheduler's own metrics. It needs no credentials, as Airflow's metrics endpoints: it shows
//!   counts, never a DAG's name or anything a task produced.
//! - [`scheduler_router`]: the small server `gust scheduler` runs beside its loop (Airflow's
//!   `scheduler_health_check_server_port`, 8974): `GET /health`, 200 while the loop's heartbeat is
//!   recent and the database answers, 503 otherwise; and `GET /metrics` with the scheduler's own
//!   metrics. [`health_route`] is the same `/health` for `gust standalone`'s API port.
//!
//! Everything is in Prometheus' text format (version 0.0.4), rendered by `prometheus-client`.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, Utc};
use gust_core::clock::Clock;
use gust_core::state::{DagRunState, TaskState};
use gust_scheduler::metrics::SchedulerMetrics;
use gust_store::Store;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::prometheus_text::{CONTENT_TYPE, encode};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};
use serde_json::json;

use crate::api::time::Timestamp;
use crate::error::ApiResult;
use crate::state::AppState;

/// How long `/health` waits for the database before calling it down.
pub const DATABASE_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct StateLabel {
    state: &'static str,
}

/// Every run state, so that a state no run is in shows as 0 rather than as no series.
const RUN_STATES: [DagRunState; 4] = [
    DagRunState::Queued,
    DagRunState::Running,
    DagRunState::Success,
    DagRunState::Failed,
];

/// The database's numbers, in Prometheus' text format.
pub async fn render_store_metrics(store: &Store, now: DateTime<Utc>) -> ApiResult<String> {
    let runs = store.count_runs_by_state().await?;
    let instances = store.count_task_instances_by_state().await?;
    let heartbeat = store.latest_scheduler_heartbeat().await?;

    let mut registry = Registry::default();
    let run_gauges = Family::<StateLabel, Gauge>::default();
    for state in RUN_STATES {
        let count = runs
            .iter()
            .find(|(s, _)| *s == state)
            .map_or(0, |(_, n)| *n);
        run_gauges
            .get_or_create(&StateLabel {
                state: state.as_str(),
            })
            .set(count);
    }
    registry.register(
        "gust_dag_runs",
        "DAG runs in the metadata database, by state",
        run_gauges,
    );
    let instance_gauges = Family::<StateLabel, Gauge>::default();
    for state in TaskState::ALL {
        let count = instances
            .iter()
            .find(|(s, _)| *s == state)
            .map_or(0, |(_, n)| *n);
        instance_gauges
            .get_or_create(&StateLabel {
                state: state.as_str(),
            })
            .set(count);
    }
    registry.register(
        "gust_task_instances",
        "Task instances in the metadata database, by state (none: not yet scheduled)",
        instance_gauges,
    );
    let age = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
    age.set(heartbeat.map_or(-1.0, |at| (now - at).as_seconds_f64().max(0.0)));
    registry.register_with_unit(
        "gust_schedulers_latest_heartbeat_age",
        "Time since the latest heartbeat of any scheduler, as stored (-1 when none ever beat)",
        Unit::Seconds,
        age,
    );
    let mut text = String::new();
    // Writing to a String cannot fail.
    let _ = encode(&mut text, &registry);
    Ok(text)
}

fn metrics_response(text: String) -> Response {
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response()
}

/// `GET /metrics` on the API server.
async fn api_metrics(State(state): State<AppState>) -> ApiResult<Response> {
    let now = state.now();
    let mut text = render_store_metrics(state.store(), now).await?;
    if let Some(scheduler) = state.scheduler() {
        text.push_str(&scheduler.metrics.render(now));
    }
    Ok(metrics_response(text))
}

/// The API server's `/metrics` route.
pub fn api_routes() -> Router<AppState> {
    Router::new().route("/metrics", get(api_metrics))
}

/// What the scheduler's `/health` looks at.
#[derive(Clone)]
pub struct SchedulerHealth {
    /// The metadata database, which must answer.
    pub store: Store,
    /// The clock the heartbeat's age is measured with.
    pub clock: Arc<dyn Clock>,
    /// The scheduler's metrics, which hold its loop's latest heartbeat.
    pub metrics: SchedulerMetrics,
    /// The oldest a heartbeat may be for the scheduler to be healthy (Airflow's
    /// `scheduler_health_check_threshold`, 30 s).
    pub threshold: Duration,
}

impl std::fmt::Debug for SchedulerHealth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchedulerHealth")
            .field("threshold", &self.threshold)
            .finish_non_exhaustive()
    }
}

/// `GET /health`: 200 `{"status": "healthy", ...}` while the scheduler loop's heartbeat is
/// younger than the threshold and the database answers, else 503 with `"unhealthy"` and why.
async fn check_health(State(health): State<SchedulerHealth>) -> Response {
    let now = health.clock.now();
    let last = health.metrics.last_heartbeat();
    let database_ok = match tokio::time::timeout(DATABASE_TIMEOUT, health.store.ping()).await {
        Ok(Ok(())) => true,
        Ok(Err(err)) => {
            tracing::warn!(error = %err, "health check: the metadata database failed");
            false
        }
        Err(_) => {
            tracing::warn!(
                "health check: the metadata database did not answer within {DATABASE_TIMEOUT:?}"
            );
            false
        }
    };
    let threshold = chrono::Duration::from_std(health.threshold).unwrap_or(chrono::Duration::MAX);
    let problem = match last {
        None => Some("the scheduler loop has not beaten yet".to_owned()),
        Some(at) if now - at > threshold => Some(format!(
            "the scheduler loop's latest heartbeat is {} s old (more than {} s)",
            (now - at).num_seconds(),
            health.threshold.as_secs()
        )),
        Some(_) if !database_ok => Some("the metadata database does not answer".to_owned()),
        Some(_) => None,
    };
    let status = if problem.is_none() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut body = json!({
        "status": if problem.is_none() { "healthy" } else { "unhealthy" },
        "last_heartbeat": last.map(Timestamp),
        "metadatabase": if database_ok { "healthy" } else { "unhealthy" },
    });
    if let Some(problem) = problem {
        body["reason"] = json!(problem);
    }
    (status, axum::Json(body)).into_response()
}

/// `GET /metrics` on the scheduler's server: its own metrics.
async fn scheduler_metrics(State(health): State<SchedulerHealth>) -> Response {
    metrics_response(health.metrics.render(health.clock.now()))
}

/// `/health` alone, to merge into `gust standalone`'s API router (whose `/metrics` already
/// holds the scheduler's metrics).
pub fn health_route(health: SchedulerHealth) -> Router {
    Router::new()
        .route("/health", get(check_health))
        .with_state(health)
}

/// The scheduler's own server: `/health` and `/metrics`.
pub fn scheduler_router(health: SchedulerHealth) -> Router {
    Router::new()
        .route("/health", get(check_health))
        .route("/metrics", get(scheduler_metrics))
        .with_state(health)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use axum::body::Body;
    use axum::http::Request;
    use gust_store::testing::TestDb;
    use gust_store::{NewRun, RunType};
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::*;

    /// A clock the test moves.
    struct Hands(Mutex<DateTime<Utc>>);

    impl Clock for Hands {
        fn now(&self) -> DateTime<Utc> {
            *self.0.lock().unwrap()
        }
    }

    fn t(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_767_225_600 + seconds, 0).unwrap()
    }

    async fn get(app: &Router, path: &str) -> (StatusCode, String) {
        let answer = app
            .clone()
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = answer.status();
        let body = answer.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    fn value(text: &str, series: &str) -> f64 {
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no series {series} in\n{text}"))
            .parse()
            .unwrap()
    }

    #[tokio::test]
    async fn health_follows_the_heartbeat_and_the_database() {
        let db = TestDb::sqlite().await;
        let clock = Arc::new(Hands(Mutex::new(t(0))));
        let metrics = SchedulerMetrics::new();
        let app = scheduler_router(SchedulerHealth {
            store: db.store.clone(),
            clock: clock.clone(),
            metrics: metrics.clone(),
            threshold: Duration::from_secs(30),
        });
        let (status, body) = get(&app, "/health").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert!(body.contains("has not beaten yet"), "{body}");

        metrics.heartbeat(t(0));
        *clock.0.lock().unwrap() = t(30);
        let (status, body) = get(&app, "/health").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json["status"], "healthy");
        assert_eq!(json["metadatabase"], "healthy");
        assert_eq!(json["last_heartbeat"], "2026-01-01T00:00:00Z");

        *clock.0.lock().unwrap() = t(31);
        let (status, body) = get(&app, "/health").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert!(body.contains("31 s old"), "{body}");

        metrics.heartbeat(t(31));
        assert_eq!(get(&app, "/health").await.0, StatusCode::OK);
        db.store.close().await;
        let (status, body) = get(&app, "/health").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert!(body.contains("\"metadatabase\":\"unhealthy\""), "{body}");

        let (status, text) = get(&app, "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(value(&text, "gust_scheduler_heartbeat_age_seconds"), 0.0);
        db.finish().await;
    }

    #[tokio::test]
    async fn store_metrics_count_every_state_and_the_latest_heartbeat() {
        let db = TestDb::sqlite().await;
        let empty = render_store_metrics(&db.store, t(0)).await.unwrap();
        assert_eq!(value(&empty, "gust_dag_runs{state=\"queued\"}"), 0.0);
        assert_eq!(
            value(&empty, "gust_task_instances{state=\"up_for_retry\"}"),
            0.0
        );
        assert_eq!(
            value(&empty, "gust_schedulers_latest_heartbeat_age_seconds"),
            -1.0
        );
        for run_id in ["a", "b"] {
            let run = NewRun {
                dag_id: "d".into(),
                run_id: run_id.into(),
                run_type: RunType::Manual,
                logical_date: t(0),
                data_interval: (t(0), t(0)),
                conf: serde_json::Map::new(),
                queued_at: t(0),
            };
            db.store.create_run(&run).await.unwrap();
            db.store
                .create_task_instances("d", run_id, &["x", "y", "z"])
                .await
                .unwrap();
        }
        db.store.scheduler_heartbeat("s", t(5)).await.unwrap();
        let text = render_store_metrics(&db.store, t(12)).await.unwrap();
        assert_eq!(value(&text, "gust_dag_runs{state=\"queued\"}"), 2.0);
        assert_eq!(value(&text, "gust_dag_runs{state=\"success\"}"), 0.0);
        assert_eq!(value(&text, "gust_task_instances{state=\"none\"}"), 6.0);
        assert_eq!(
            value(&text, "gust_schedulers_latest_heartbeat_age_seconds"),
            7.0
        );
        db.finish().await;
    }
}
