//! Metrics and health with a real scheduler: a DAG runs through the database-backed scheduler
//! and real bash processes; the API server's `/metrics` and the scheduler's own `/metrics` and
//! `/health` then report it; a scheduler that stopped beating is reported unhealthy.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use chrono::{DateTime, Utc};
use gust_core::clock::{Clock, SystemClock};
use gust_core::state::DagRunState;
use gust_exec_local::{LocalConfig, LocalExecutor};
use gust_scheduler::dag_watch::{WatchConfig, watch_folder};
use gust_scheduler::scheduler::{Scheduler, SchedulerConfig};
use gust_server::metrics::{SchedulerHealth, scheduler_router};
use gust_store::{Store, both_engines};
use http_body_util::BodyExt;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// The wall clock, moved forward by the test to make a heartbeat old.
#[derive(Default)]
struct MovableClock(AtomicI64);

impl MovableClock {
    fn advance(&self, seconds: i64) {
        self.0.fetch_add(seconds, Ordering::SeqCst);
    }
}

impl Clock for MovableClock {
    fn now(&self) -> DateTime<Utc> {
        SystemClock.now() + chrono::Duration::seconds(self.0.load(Ordering::SeqCst))
    }
}

const DAG: &str = r"
observed:
  schedule: null
  tasks:
    first:
      operator: BashOperator
      bash_command: echo one
    second:
      operator: BashOperator
      bash_command: echo two
      dependencies: [first]
    third:
      operator: BashOperator
      bash_command: exit 4
      retries: 0
      dependencies: [first]
";

async fn get(app: &axum::Router, path: &str) -> (StatusCode, String, String) {
    let answer = app
        .clone()
        .oneshot(Request::get(path).body(Body::empty()).expect("request"))
        .await
        .expect("answer");
    let status = answer.status();
    let content_type = answer
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = answer.into_body().collect().await.expect("body").to_bytes();
    (
        status,
        String::from_utf8_lossy(&body).into_owned(),
        content_type,
    )
}

/// The value of one series (`name{labels}`) in a text exposition; panics when it is missing.
fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no series {series} in\n{text}"))
        .parse()
        .expect("a number")
}

/// Every line of a Prometheus text exposition is a comment or `series value`, and every series
/// belongs to a family declared with `# TYPE` before it.
fn assert_exposition(text: &str) {
    let mut families: Vec<&str> = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            families.push(rest.split(' ').next().expect("a name"));
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        let (series, number) = line.rsplit_once(' ').expect("series and value");
        number
            .parse::<f64>()
            .unwrap_or_else(|_| panic!("not a number: {line}"));
        let name = series.split('{').next().expect("a name");
        assert!(
            families.iter().any(|family| name == *family
                || ["_bucket", "_sum", "_count"]
                    .iter()
                    .any(|suffix| name.strip_suffix(suffix) == Some(*family))),
            "{name} has no # TYPE line before it"
        );
    }
    assert!(!families.is_empty(), "no metric family in\n{text}");
}

both_engines!(metrics_and_health_report_a_real_run_and_a_stale_heartbeat);

async fn metrics_and_health_report_a_real_run_and_a_stale_heartbeat(store: Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let dags = dir.path().join("dags");
    std::fs::create_dir_all(&dags).expect("dags folder");
    std::fs::write(dags.join("observed.yaml"), DAG).expect("dag file");
    let clock = Arc::new(MovableClock::default());
    let stop = CancellationToken::new();
    let (bags, _watch) = watch_folder(
        dags.clone(),
        WatchConfig::default(),
        clock.clone(),
        stop.clone(),
    )
    .await;
    let (tx, events) = gust_executor::event_channel();
    let local = LocalConfig {
        state_dir: Some(dir.path().join("tries")),
        ..LocalConfig::default()
    };
    let mut config = SchedulerConfig::new(dir.path().join("logs"));
    config.paused_by_default = false;
    config.poll_interval = Duration::from_millis(100);
    let metrics = config.metrics.clone();
    let executor = Arc::new(LocalExecutor::new(local, tx, clock.clone()));
    let scheduler = Scheduler::new(store.clone(), executor, events, bags, clock.clone(), config);
    let token = stop.clone();
    let running = tokio::spawn(async move { scheduler.run(token).await });

    let health = SchedulerHealth {
        store: store.clone(),
        clock: clock.clone(),
        metrics: metrics.clone(),
        threshold: Duration::from_secs(30),
    };
    let scheduler_app = scheduler_router(health.clone());
    let settings = gust_server::ServerSettings {
        secret: b"a test secret of some length".to_vec(),
        token_ttl: Duration::from_secs(3600),
        logs_root: dir.path().join("logs"),
        fernet_key: None,
        pod_defaults: gust_kube::build::PodDefaults::default(),
        run_id_pattern: gust_scheduler::trigger::RunIdPattern::default(),
    };
    let api = gust_server::router(gust_server::AppState::new(
        store.clone(),
        clock.clone(),
        settings.clone(),
        None,
    ));
    // In one process with the scheduler (`gust standalone`), the API port serves both.
    let standalone = gust_server::router(
        gust_server::AppState::new(store.clone(), clock.clone(), settings, None)
            .with_scheduler(health),
    );

    let load = gust_dagfile::load_folder(&dags, clock.now()).expect("load");
    let dag = load.dags.first().expect("the DAG").clone();
    let run_id = gust_scheduler::trigger::trigger(
        &store,
        &dag,
        serde_json::Map::new(),
        None,
        clock.now(),
        clock.now(),
    )
    .await
    .expect("triggered");
    let mut state = None;
    for _ in 0..300 {
        state = store
            .run("observed", &run_id)
            .await
            .expect("read")
            .map(|r| r.state);
        if matches!(state, Some(DagRunState::Success | DagRunState::Failed)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(state, Some(DagRunState::Failed), "third exits 4");

    let (status, text, content_type) = get(&api, "/metrics").await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert!(content_type.starts_with("text/plain; version=0.0.4"));
    assert_exposition(&text);
    assert_eq!(value(&text, "gust_dag_runs{state=\"failed\"}"), 1.0);
    assert_eq!(value(&text, "gust_dag_runs{state=\"running\"}"), 0.0);
    assert_eq!(value(&text, "gust_task_instances{state=\"success\"}"), 2.0);
    assert_eq!(value(&text, "gust_task_instances{state=\"failed\"}"), 1.0);
    let age = value(&text, "gust_schedulers_latest_heartbeat_age_seconds");
    assert!((0.0..30.0).contains(&age), "{age}");
    assert!(
        !text.contains("gust_scheduler_tries_finished"),
        "a lone API server has no scheduler metrics"
    );

    // The runtime's last events may still be on their way into the gauges: wait for the step.
    let mut text = String::new();
    for _ in 0..100 {
        text = get(&scheduler_app, "/metrics").await.1;
        if value(&text, "gust_scheduler_tries_followed") == 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_exposition(&text);
    let v = |series: &str| value(&text, series);
    assert_eq!(
        v("gust_scheduler_tries_finished_total{outcome=\"success\"}"),
        2.0
    );
    assert_eq!(
        v("gust_scheduler_tries_finished_total{outcome=\"failed\"}"),
        1.0
    );
    assert_eq!(v("gust_scheduler_scheduling_delay_seconds_count"), 3.0);
    assert!(v("gust_scheduler_scheduling_delay_seconds_sum") < 30.0);
    assert!(v("gust_scheduler_db_call_duration_seconds_count{call=\"commit_moves\"}") >= 3.0);
    assert!(v("gust_scheduler_db_call_duration_seconds_count{call=\"poll\"}") >= 1.0);
    assert!(v("gust_scheduler_db_call_duration_seconds_sum{call=\"commit_moves\"}") > 0.0);
    assert_eq!(v("gust_scheduler_queue_depth{line=\"workers\"}"), 0.0);
    assert_eq!(v("gust_scheduler_tries_followed"), 0.0);
    let age = v("gust_scheduler_heartbeat_age_seconds");
    assert!((0.0..30.0).contains(&age), "{age}");

    let (status, body, _) = get(&standalone, "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert_exposition(&body);
    assert_eq!(value(&body, "gust_dag_runs{state=\"failed\"}"), 1.0);
    assert_eq!(
        value(
            &body,
            "gust_scheduler_tries_finished_total{outcome=\"success\"}"
        ),
        2.0
    );

    for app in [&scheduler_app, &standalone] {
        let (status, body, _) = get(app, "/health").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let json: serde_json::Value = serde_json::from_str(&body).expect("json");
        assert_eq!(json["status"], "healthy", "{body}");
        assert!(json["last_heartbeat"].is_string(), "{body}");
    }
    assert_eq!(
        get(&api, "/health").await.0,
        StatusCode::NOT_FOUND,
        "a lone API server has no scheduler to report on"
    );

    // The scheduler stops; half a minute later its heartbeat is stale.
    stop.cancel();
    running
        .await
        .expect("joined")
        .expect("the scheduler stopped cleanly");
    clock.advance(31);
    for app in [&scheduler_app, &standalone] {
        let (status, body, _) = get(app, "/health").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        let json: serde_json::Value = serde_json::from_str(&body).expect("json");
        assert_eq!(json["status"], "unhealthy", "{body}");
        assert_eq!(json["metadatabase"], "healthy", "{body}");
        assert!(
            json["reason"]
                .as_str()
                .is_some_and(|r| r.contains("heartbeat")),
            "{body}"
        );
    }
    let text = get(&scheduler_app, "/metrics").await.1;
    assert!(value(&text, "gust_scheduler_heartbeat_age_seconds") >= 31.0);
}
