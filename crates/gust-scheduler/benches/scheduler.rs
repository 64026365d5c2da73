//! The database-backed scheduler's overhead, on SQLite and on PostgreSQL:
//! `cargo bench -p gust-scheduler --bench scheduler` (PostgreSQL when GUST_TEST_POSTGRES_URL
//! names a server).
//!
//! The same workloads as the in-process benchmark, but written as DAG files, triggered as a
//! manual run through the store and run by the real scheduler loop with the local runtime:
//! every state change committed before it is acted on, every try recorded. Wall time runs from
//! the trigger to the run's end, as a user sees it. Each workload runs in a process of its own.

mod common;

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{PARALLELISM, cpu_self, floor, ms, peak_rss_mib, ratio};
use gust_core::clock::{Clock, SystemClock};
use gust_core::state::DagRunState;
use gust_exec_local::{LocalConfig, LocalExecutor};
use gust_scheduler::dag_watch::{WatchConfig, watch_folder};
use gust_scheduler::scheduler::{Scheduler, SchedulerConfig};
use gust_store::Store;
use gust_store::testing::TestDb;
use tokio_util::sync::CancellationToken;

/// A DAG file: `tasks` as (id, upstream ids), each running `true`.
fn dag_file(dag_id: &str, tasks: &[(String, Vec<String>)]) -> String {
    let mut text = format!(
        "{dag_id}:\n  schedule: null\n  max_active_tasks: 100000\n  is_paused_upon_creation: false\n  default_args: {{do_xcom_push: false}}\n  tasks:\n"
    );
    for (id, upstream) in tasks {
        let _ = write!(
            text,
            "    {id}:\n      operator: BashOperator\n      bash_command: 'true'\n"
        );
        if !upstream.is_empty() {
            let _ = writeln!(text, "      dependencies: [{}]", upstream.join(", "));
        }
    }
    text
}

/// A DAG file with one task mapped over `n` items (each instance runs `true`), then a task
/// after all of them: the mapped workload of issue 21.
fn mapped_dag_file(dag_id: &str, n: usize) -> String {
    let items = vec!["'true'"; n].join(", ");
    format!(
        "{dag_id}:\n  schedule: null\n  max_active_tasks: 100000\n  is_paused_upon_creation: false\n  default_args: {{do_xcom_push: false}}\n  tasks:\n    each:\n      operator: BashOperator\n      expand:\n        bash_command: [{items}]\n    after:\n      operator: BashOperator\n      bash_command: 'true'\n      dependencies: [each]\n"
    )
}

fn chain(n: usize) -> Vec<(String, Vec<String>)> {
    (0..n)
        .map(|i| {
            let up = if i == 0 {
                vec![]
            } else {
                vec![format!("t{}", i - 1)]
            };
            (format!("t{i}"), up)
        })
        .collect()
}

fn fanout(n: usize) -> Vec<(String, Vec<String>)> {
    let mut tasks = vec![("start".to_owned(), vec![])];
    tasks.extend((0..n).map(|i| (format!("t{i}"), vec!["start".to_owned()])));
    tasks.push(("join".to_owned(), (0..n).map(|i| format!("t{i}")).collect()));
    tasks
}

fn layered(layers: usize, width: usize) -> Vec<(String, Vec<String>)> {
    let mut tasks = Vec::new();
    for l in 0..layers {
        for w in 0..width {
            let up = if l == 0 {
                vec![]
            } else {
                vec![format!("l{}_{w}", l - 1)]
            };
            tasks.push((format!("l{l}_{w}"), up));
        }
    }
    tasks
}

/// Runs `dag_id` once under a fresh scheduler; returns (wall, scheduler CPU).
async fn run_once(store: &Store, home: &Path, dag_id: &str) -> (Duration, Duration) {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let stop = CancellationToken::new();
    let (bags, _watch) = watch_folder(
        home.join("dags"),
        WatchConfig::default(),
        clock.clone(),
        stop.clone(),
    )
    .await;
    let dag = bags
        .borrow()
        .dags()
        .find(|e| e.dag.id.as_str() == dag_id)
        .expect("the DAG")
        .dag
        .clone();
    let (tx, events) = gust_executor::event_channel();
    let local = LocalConfig {
        parallelism: PARALLELISM,
        state_dir: Some(home.join("tries")),
        ..LocalConfig::default()
    };
    let executor = Arc::new(LocalExecutor::new(local, tx, clock.clone()));
    let mut config = SchedulerConfig::new(home.join("logs"));
    config.paused_by_default = false;
    config.parallelism = PARALLELISM;
    config.max_map_length = MAPPED;
    let scheduler = Scheduler::new(store.clone(), executor, events, bags, clock.clone(), config);
    let waker = scheduler.waker();
    let token = stop.clone();
    let handle = tokio::spawn(async move { scheduler.run(token).await });
    // Let the scheduler record the DAGs before the clock starts.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let cpu_before = cpu_self();
    let began = Instant::now();
    let run_id = gust_scheduler::trigger::trigger(
        store,
        &dag,
        serde_json::Map::new(),
        None,
        clock.now(),
        clock.now(),
    )
    .await
    .expect("trigger");
    waker.wake();
    loop {
        let state = store
            .run(dag_id, &run_id)
            .await
            .expect("read")
            .map(|r| r.state);
        if state == Some(DagRunState::Success) {
            break;
        }
        assert_ne!(state, Some(DagRunState::Failed));
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let wall = began.elapsed();
    let cpu = cpu_self() - cpu_before;
    stop.cancel();
    handle.await.expect("join").expect("scheduler");
    (wall, cpu)
}

/// How many times the short workloads run, each right after its floor: a shared machine's
/// speed drifts by half between seconds, so one sample says little.
const ROUNDS: usize = 5;

/// (wall, floor, scheduler CPU) of one round.
type Round = (Duration, Duration, Duration);

async fn repeat<F, Fut>(rounds: usize, mut round: F) -> Vec<Round>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Round>,
{
    let mut out = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        out.push(round().await);
    }
    out
}

/// The round whose wall-to-floor ratio is the median.
fn median(rounds: &[Round]) -> Round {
    let mut sorted = rounds.to_vec();
    sorted.sort_by(|a, b| ratio(a.0, a.1).total_cmp(&ratio(b.0, b.1)));
    sorted[sorted.len() / 2]
}

/// Every round's ratio, lowest first.
fn ratios(rounds: &[Round]) -> String {
    let mut all: Vec<f64> = rounds.iter().map(|r| ratio(r.0, r.1)).collect();
    all.sort_by(f64::total_cmp);
    all.iter()
        .map(|r| format!("{r:.2}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Which workloads there are, in the order they run.
const WORKLOADS: [&str; 4] = ["chain_100", "fanout_1000", "dag_10000", "mapped_10000"];

/// How many items the mapped workload's task is mapped over.
const MAPPED: usize = 10_000;

/// The environment variable that makes this executable run one workload (its value) and exit.
const WORKLOAD_VAR: &str = "GUST_BENCH_WORKLOAD";

/// Runs `workload` on `engine` in this process, which has done nothing else: its CPU time and
/// peak RSS are the scheduler's for this workload alone, as in a `gust scheduler` process over
/// the same DAGs folder.
async fn bench(engine: &str, workload: &str, db: TestDb) {
    let home = tempfile::tempdir().expect("home");
    let dags = home.path().join("dags");
    std::fs::create_dir_all(&dags).expect("dags");
    // Only the workload's own DAG is in the folder: loading the others would be measured too.
    let text = match workload {
        "chain_100" => dag_file("chain_100", &chain(100)),
        "fanout_1000" => dag_file("fanout_1000", &fanout(1000)),
        "mapped_10000" => mapped_dag_file("mapped_10000", MAPPED),
        _ => dag_file("dag_10000", &layered(100, 100)),
    };
    std::fs::write(dags.join(format!("{workload}.yaml")), text).expect("write");

    match workload {
        "chain_100" => {
            let runs = repeat(ROUNDS, || async {
                let floor = floor(100, 1).await;
                let (wall, cpu) = run_once(&db.store, home.path(), "chain_100").await;
                (wall, floor, cpu)
            })
            .await;
            let (wall, chain_floor, cpu) = median(&runs);
            println!(
                "{engine:<8} chain_100:   wall {:>8.1} ms   floor {:>8.1} ms   ratio {:.2}x ({})   overhead/task {:.2} ms   scheduler CPU/task {:.3} ms",
                ms(wall),
                ms(chain_floor),
                ratio(wall, chain_floor),
                ratios(&runs),
                (ms(wall) - ms(chain_floor)) / 100.0,
                ms(cpu) / 100.0
            );
        }
        "fanout_1000" => {
            let runs = repeat(ROUNDS, || async {
                let floor = floor(1002, PARALLELISM).await;
                let (wall, cpu) = run_once(&db.store, home.path(), "fanout_1000").await;
                (wall, floor, cpu)
            })
            .await;
            let (wall, fan_floor, cpu) = median(&runs);
            println!(
                "{engine:<8} fanout_1000: wall {:>8.1} ms   floor {:>8.1} ms   ratio {:.2}x ({})   parallelism {PARALLELISM}   scheduler CPU/task {:.3} ms",
                ms(wall),
                ms(fan_floor),
                ratio(wall, fan_floor),
                ratios(&runs),
                ms(cpu) / 1002.0
            );
        }
        "mapped_10000" => {
            let floor = floor(MAPPED + 1, PARALLELISM).await;
            let (wall, cpu) = run_once(&db.store, home.path(), "mapped_10000").await;
            println!(
                "{engine:<8} mapped_10000: wall {:>8.1} ms   floor {:>8.1} ms   ratio {:.2}x   scheduler CPU/instance {:.3} ms   peak RSS {:.1} MiB",
                ms(wall),
                ms(floor),
                ratio(wall, floor),
                ms(cpu) / (MAPPED + 1) as f64,
                peak_rss_mib()
            );
        }
        _ => {
            let (wall, cpu) = run_once(&db.store, home.path(), "dag_10000").await;
            println!(
                "{engine:<8} dag_10000:   wall {:>8.1} ms   scheduler CPU/task {:.3} ms   peak RSS {:.1} MiB",
                ms(wall),
                ms(cpu) / 10_000.0,
                peak_rss_mib()
            );
        }
    }
    db.finish().await;
}

/// Runs each workload in a child process of its own (this executable again).
#[allow(
    clippy::disallowed_methods,
    reason = "the benchmark runs each workload in its own process, so that peak RSS is that workload's"
)]
fn run_children(engine: &str) {
    for workload in WORKLOADS {
        let status = std::process::Command::new(std::env::current_exe().expect("own path"))
            .env(WORKLOAD_VAR, format!("{engine}:{workload}"))
            .status()
            .expect("the workload runs");
        assert!(status.success(), "{engine} {workload} failed");
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    if let Ok(which) = std::env::var(WORKLOAD_VAR) {
        let (engine, workload) = which.split_once(':').expect("ENGINE:WORKLOAD");
        runtime.block_on(async {
            let db = if engine == "sqlite" {
                TestDb::sqlite().await
            } else {
                TestDb::postgres().await.expect("a PostgreSQL server")
            };
            bench(engine, workload, db).await;
        });
        return;
    }
    run_children("sqlite");
    if std::env::var(gust_store::testing::POSTGRES_URL_VAR).is_ok() {
        run_children("postgres");
    } else {
        eprintln!(
            "SKIPPED: GUST_TEST_POSTGRES_URL is not set, so the PostgreSQL variant did not run"
        );
    }
}
