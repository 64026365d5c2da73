//! The web UI's JSON on a big DAG: `cargo bench -p gust-server --bench ui`.
//!
//! Fills a SQLite store with one DAG of 5,000 tasks (in 50 task groups, each a chain fanning
//! out of one root), 2,000 runs, the newest 200 of them with all 5,000 task instances
//! (1,000,000 rows) in mixed states, plus 20 small DAGs; then times, through the real router,
//! the DAG list, the grid of the last 100 runs (500,000 cells), the graph (first call: laid
//! out; then: cached), and a Prometheus scrape of `/metrics` (runs and task instances counted
//! by state over all of it). Set `GUST_UI_BENCH_HOME=DIR` to keep the database at `DIR/gust.db` (the
//! browser test can then serve it with `gust api-server` and time the drawing).

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use chrono::{DateTime, TimeDelta, Utc};
use gust_core::clock::{Clock, SystemClock};
use gust_dagfile::DagBag;
use gust_server::auth::password::hash_password;
use gust_server::{AppState, ServerSettings};
use gust_store::{NewRun, Role, RunType, Store, User};
use http_body_util::BodyExt;
use tower::ServiceExt;

const TASKS: usize = 5000;
const GROUPS: usize = 50;
const RUNS: usize = 2000;
const FULL_RUNS: usize = 200;
const SMALL_DAGS: usize = 20;
const REPEATS: usize = 7;

fn t0() -> DateTime<Utc> {
    DateTime::from_timestamp(1_704_067_200, 0).expect("2024-01-01")
}

/// The big DAG's YAML: `GROUPS` groups of `TASKS / GROUPS` tasks, each group a root and a
/// fan of chains, every group after the first depending on the previous one.
fn big_dag() -> String {
    let per = TASKS / GROUPS;
    let mut yaml = String::from(
        "big:\n  schedule: \"@hourly\"\n  start_date: 2024-01-01\n  tags: [bench]\n  task_groups:\n",
    );
    for g in 0..GROUPS {
        let _ = writeln!(yaml, "    g{g}:\n      tooltip: group {g}");
        if g > 0 {
            let _ = writeln!(yaml, "      dependencies: [g{}]", g - 1);
        }
    }
    yaml.push_str("  tasks:\n");
    for g in 0..GROUPS {
        for i in 0..per {
            let _ = writeln!(
                yaml,
                "    t{g}_{i}:\n      operator: bash\n      bash_command: echo {i}\n      task_group_name: g{g}"
            );
            if i > 0 {
                let upstream = if i < 10 { 0 } else { i - 9 };
                let _ = writeln!(yaml, "      dependencies: [t{g}_{upstream}]");
            }
        }
    }
    yaml
}

fn small_dag(n: usize) -> String {
    format!(
        "small_{n:02}:\n  schedule: \"@daily\"\n  start_date: 2024-01-01\n  tags: [team{}]\n  tasks:\n    a: {{operator: bash, bash_command: echo a}}\n    b: {{operator: bash, bash_command: echo b, dependencies: [a]}}\n",
        n % 3
    )
}

async fn fill(store: &Store, dags_dir: &std::path::Path) {
    std::fs::write(dags_dir.join("big.yaml"), big_dag()).expect("write DAG");
    for n in 0..SMALL_DAGS {
        std::fs::write(dags_dir.join(format!("small_{n:02}.yaml")), small_dag(n)).expect("write");
    }
    let load = gust_dagfile::load_folder(dags_dir, t0()).expect("load");
    assert!(load.problems.is_empty(), "{:?}", load.problems);
    let mut bag = DagBag::default();
    bag.update(load);
    gust_scheduler::sync::sync_bag(store, &bag, t0(), false)
        .await
        .expect("sync");
    let task_ids: Vec<String> = (0..GROUPS)
        .flat_map(|g| (0..TASKS / GROUPS).map(move |i| format!("g{g}.t{g}_{i}")))
        .collect();
    for r in 0..RUNS {
        let start = t0() + TimeDelta::hours(r as i64);
        let run_id = format!("scheduled__{}", start.to_rfc3339());
        store
            .create_run(&NewRun {
                dag_id: "big".into(),
                run_id,
                run_type: RunType::Scheduled,
                logical_date: start,
                data_interval: (start, start + TimeDelta::hours(1)),
                conf: serde_json::Map::new(),
                queued_at: start,
            })
            .await
            .expect("run");
    }
    // The newest FULL_RUNS runs get every task instance: the first one through the store, the
    // rest copied from it in one statement, then states spread over the runs.
    let first = format!(
        "scheduled__{}",
        (t0() + TimeDelta::hours((RUNS - FULL_RUNS) as i64)).to_rfc3339()
    );
    let ids: Vec<&str> = task_ids.iter().map(String::as_str).collect();
    store
        .create_task_instances("big", &first, &ids)
        .await
        .expect("task instances");
    let cutoff = (t0() + TimeDelta::hours((RUNS - FULL_RUNS) as i64)).timestamp_micros();
    store
        .execute_admin(&format!(
            "INSERT INTO task_instances (dag_id, run_id, task_id, state) \
             SELECT r.dag_id, r.run_id, t.task_id, 'success' FROM dag_runs r \
             JOIN task_instances t ON t.dag_id = r.dag_id AND t.run_id = '{first}' \
             WHERE r.dag_id = 'big' AND r.logical_date > {cutoff}"
        ))
        .await
        .expect("copy task instances");
    store
        .execute_admin(
            "UPDATE task_instances SET state = CASE abs(random()) % 20 WHEN 0 THEN 'failed' WHEN 1 THEN 'upstream_failed' \
             WHEN 2 THEN 'skipped' WHEN 3 THEN 'up_for_retry' ELSE 'success' END WHERE dag_id = 'big'",
        )
        .await
        .expect("states");
    store
        .execute_admin(
            "UPDATE dag_runs SET state = 'success', start_date = logical_date + 60000000, end_date = logical_date + 900000000",
        )
        .await
        .expect("run states");
}

async fn time(app: &axum::Router, token: &str, uri: &str) -> (Duration, usize) {
    let start = Instant::now();
    let response = app
        .clone()
        .oneshot(
            Request::get(uri)
                .header("authorization", format!("Bearer {token}"))
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("response");
    assert_eq!(response.status(), StatusCode::OK, "{uri}");
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (start.elapsed(), bytes.len())
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    format!("{cpu}, {cores} cores available")
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let keep = std::env::var_os("GUST_UI_BENCH_HOME").map(std::path::PathBuf::from);
        let scratch = tempfile::tempdir().expect("temp dir");
        let home = keep.clone().unwrap_or_else(|| scratch.path().to_path_buf());
        std::fs::create_dir_all(home.join("dags")).expect("home");
        let db = home.join("gust.db");
        let _ = std::fs::remove_file(&db);
        let store = Store::connect(&format!("sqlite://{}", db.display()))
            .await
            .expect("store");
        store.migrate().await.expect("migrate");
        let filling = Instant::now();
        fill(&store, &home.join("dags")).await;
        println!(
            "filled in {:.1} s ({})",
            filling.elapsed().as_secs_f64(),
            machine()
        );
        let user = User::new(
            "bench".into(),
            hash_password("bench-password").expect("hash"),
            Role::Admin,
            t0(),
        );
        store.create_user(&user).await.expect("user");
        let settings = ServerSettings {
            secret: b"bench secret".to_vec(),
            token_ttl: Duration::from_secs(3600),
            logs_root: home.join("logs"),
            fernet_key: None,
            pod_defaults: gust_kube::build::PodDefaults::default(),
            run_id_pattern: gust_scheduler::trigger::RunIdPattern::default(),
        };
        let state = AppState::new(store.clone(), Arc::new(SystemClock), settings, None);
        let token = state
            .tokens()
            .issue(&user.username, &user.id, SystemClock.now());
        let app = gust_server::router(state);
        let (graph_first, size) = time(&app, &token, "/ui/api/dags/big/graph").await;
        println!(
            "{:<44} {:>8.1} ms  {:>9} bytes (layout computed)",
            "graph, first call",
            graph_first.as_secs_f64() * 1e3,
            size
        );
        for (name, uri) in [
            ("DAG list (/ui/api/dags, 21 DAGs)", "/ui/api/dags"),
            (
                "grid, 100 runs x 5,000 tasks",
                "/ui/api/dags/big/grid?runs=100",
            ),
            (
                "grid, 25 runs x 5,000 tasks",
                "/ui/api/dags/big/grid?runs=25",
            ),
            ("graph, cached layout", "/ui/api/dags/big/graph"),
            ("REST API /api/v2/dags", "/api/v2/dags"),
            ("Prometheus /metrics (counts by state)", "/metrics"),
        ] {
            let mut times = Vec::with_capacity(REPEATS);
            let mut size = 0;
            for _ in 0..REPEATS {
                let (elapsed, bytes) = time(&app, &token, uri).await;
                times.push(elapsed);
                size = bytes;
            }
            times.sort();
            println!(
                "{name:<44} {:>8.1} ms  {:>9} bytes (median of {REPEATS}; min {:.1} ms)",
                times[REPEATS / 2].as_secs_f64() * 1e3,
                size,
                times[0].as_secs_f64() * 1e3
            );
        }
        store.close().await;
        if let Some(dir) = keep {
            println!("database kept at {}", dir.join("gust.db").display());
        }
    });
}
