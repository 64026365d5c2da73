//! 10,000 native sensors waiting in one scheduler: what each costs in memory and CPU.
//! `benches/sensors_waiting.sh` runs it (`cargo bench -p gust-sensors --bench waiting`);
//! PostgreSQL too when `GUST_TEST_POSTGRES_URL` names a server. Results go in
//! docs/benchmarks.md.
//!
//! One DAG of `SENSORS` `DateTimeSensor`s that are never met (`poke_interval` 30 s) is
//! triggered; once every sensor has poked and waits in `up_for_reschedule`, the process's RSS
//! is compared with the RSS before the trigger (the DAG already loaded), and its CPU is read
//! over the first round of pokes and over one more `poke_interval` of waiting (a second round).

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gust_core::clock::{Clock, SystemClock};
use gust_exec_local::{LocalConfig, LocalExecutor};
use gust_executor::{Executor, Routed};
use gust_scheduler::dag_watch::{WatchConfig, watch_folder};
use gust_scheduler::scheduler::{Scheduler, SchedulerConfig};
use gust_sensors::SensorExecutor;
use gust_store::Store;
use gust_store::testing::TestDb;
use tokio_util::sync::CancellationToken;

/// How many sensors wait, unless `GUST_BENCH_SENSORS` says (a smaller run for profiling).
const SENSORS: usize = 10_000;
const POKE_INTERVAL: u64 = 30;

fn sensor_count() -> usize {
    std::env::var("GUST_BENCH_SENSORS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(SENSORS)
}

/// The process's CPU time so far (user and system), from `/proc/self/stat`.
fn cpu_self() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    // Fields after the command's closing parenthesis, from the state (field 3): utime and stime
    // are fields 14 and 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| {
        fields
            .get(n - 3)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let ticks = field(14) + field(15);
    // The kernel's USER_HZ is 100 on Linux.
    Duration::from_millis(ticks * 10)
}

/// A number field of `/proc/self/status` (`VmRSS:` in KiB, `Threads:`).
fn status_field(name: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix(name))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// The process's resident memory now and at its peak, in KiB.
fn rss_kib() -> (u64, u64) {
    (status_field("VmRSS:"), status_field("VmHWM:"))
}

fn dag_file() -> String {
    let mut text = "waiting:\n  schedule: null\n  max_active_tasks: 100000\n  is_paused_upon_creation: false\n  tasks:\n".to_owned();
    for i in 0..sensor_count() {
        let _ = write!(
            text,
            "    s{i}:\n      operator: DateTimeSensor\n      target_time: '2999-01-01'\n      poke_interval: {POKE_INTERVAL}\n"
        );
    }
    text
}

/// How many sensors have poked at least once.
async fn sensors_poked(store: &Store, run_id: &str) -> i64 {
    let reschedules = store
        .reschedules_of_run("waiting", run_id)
        .await
        .expect("reschedules");
    i64::try_from(reschedules.len()).expect("fits")
}

async fn pokes(store: &Store, run_id: &str) -> i64 {
    let reschedules = store
        .reschedules_of_run("waiting", run_id)
        .await
        .expect("reschedules");
    reschedules.iter().map(|(_, r)| i64::from(r.count)).sum()
}

async fn bench(engine: &str, store: Store, dir: &Path) {
    let dags = dir.join("dags");
    std::fs::create_dir_all(&dags).expect("dags");
    std::fs::write(dags.join("waiting.yaml"), dag_file()).expect("dag file");
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let stop = CancellationToken::new();
    // The folder's periodic re-read (every 30 s by default) parses the 10,000-task file again:
    // the DAG processor's cost, measured by the parse benchmarks, not a waiting sensor's.
    let watch = WatchConfig {
        rescan: Duration::from_secs(3600),
        ..WatchConfig::default()
    };
    let (bags, _watch) = watch_folder(dags.clone(), watch, clock.clone(), stop.clone()).await;
    let (tx, events) = gust_executor::event_channel();
    let local = LocalExecutor::new(LocalConfig::default(), tx.clone(), clock.clone());
    let sensors = SensorExecutor::new(tx, clock.clone(), Some(store.clone()));
    let routed = sensors.route(Routed::new(Arc::new(local)));
    let executor: Arc<dyn Executor> = Arc::new(routed);
    let mut config = SchedulerConfig::new(dir.join("logs"));
    config.paused_by_default = false;
    config.worker_free_operators = gust_operators::OPERATORS
        .iter()
        .filter(|spec| !spec.holds_worker)
        .map(|spec| spec.name.to_owned())
        .collect();
    let scheduler = Scheduler::new(store.clone(), executor, events, bags, clock, config);
    let token = stop.clone();
    let handle = tokio::spawn(async move { scheduler.run(token).await.expect("runs") });

    let load = gust_dagfile::load_folder(&dags, SystemClock.now()).expect("load");
    let dag = load.dags.first().expect("the DAG").clone();
    // Let the scheduler take the DAG in and settle.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (rss_before, _) = rss_kib();
    let cpu_before = cpu_self();
    let started = Instant::now();
    let run = gust_scheduler::trigger::trigger(
        &store,
        &dag,
        serde_json::Map::new(),
        None,
        SystemClock.now(),
        SystemClock.now(),
    )
    .await
    .expect("triggered");
    let sensors_total = i64::try_from(sensor_count()).expect("fits");
    // The first round ends when every sensor has poked once. Not "when all wait at once": a
    // round longer than `poke_interval` (a debug build) has the first sensors poking again.
    loop {
        if sensors_poked(&store, &run).await == sensors_total {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "the sensors never all poked"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let first_round = started.elapsed();
    let cpu_first = cpu_self() - cpu_before;
    let (rss_waiting, _) = rss_kib();
    let pokes_first = pokes(&store, &run).await;
    println!(
        "  threads after the first round: {}",
        status_field("Threads:")
    );
    if std::env::var_os("GUST_BENCH_EXIT_WAITING").is_some() {
        // For a heap profiler: what is still allocated at exit is what the waiting sensors hold
        // (with the DAG and the process's own).
        println!("all {sensors_total} sensors waiting; exiting as GUST_BENCH_EXIT_WAITING asks");
        std::process::exit(0);
    }
    // One more poke interval: every sensor pokes once more, then waits again.
    let window = Instant::now();
    let cpu_window_start = cpu_self();
    tokio::time::sleep(Duration::from_secs(POKE_INTERVAL + 10)).await;
    let cpu_window = cpu_self() - cpu_window_start;
    let window = window.elapsed();
    let pokes_window = pokes(&store, &run).await - pokes_first;
    let (rss_after, rss_peak) = rss_kib();
    stop.cancel();
    let _ = handle.await;
    sensors.shutdown().await;

    #[allow(clippy::cast_precision_loss)]
    let per = |kib: u64| kib as f64 * 1024.0 / sensor_count() as f64;
    #[allow(clippy::cast_precision_loss)]
    let per_poke = |cpu: Duration, pokes: i64| cpu.as_secs_f64() * 1e3 / pokes.max(1) as f64;
    println!(
        "{engine}: {} sensors, poke_interval {POKE_INTERVAL} s",
        sensor_count()
    );
    println!(
        "  first round: all waiting after {:.1} s; {pokes_first} pokes; CPU {:.2} s ({:.3} ms per poke)",
        first_round.as_secs_f64(),
        cpu_first.as_secs_f64(),
        per_poke(cpu_first, pokes_first)
    );
    println!(
        "  waiting {:.0} s: {pokes_window} more pokes; CPU {:.2} s ({:.3} ms per poke, {:.1}% of a core)",
        window.as_secs_f64(),
        cpu_window.as_secs_f64(),
        per_poke(cpu_window, pokes_window),
        cpu_window.as_secs_f64() * 100.0 / window.as_secs_f64()
    );
    println!(
        "  RSS: {} MiB before the trigger, {} MiB with every sensor waiting ({:.0} bytes per waiting sensor), {} MiB after the second round ({:.0} bytes per sensor), peak {} MiB",
        rss_before / 1024,
        rss_waiting / 1024,
        per(rss_waiting.saturating_sub(rss_before)),
        rss_after / 1024,
        per(rss_after.saturating_sub(rss_before)),
        rss_peak / 1024
    );
}

fn main() {
    // `RUST_LOG` shows the scheduler's own account (what it re-reads, when), for profiling.
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    // `cargo bench` adds `--bench` to the arguments given after `--`.
    let engine = std::env::args()
        .find(|arg| arg == "postgres")
        .unwrap_or_else(|| "sqlite".to_owned());
    runtime.block_on(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = match engine.as_str() {
            "postgres" => match TestDb::postgres().await {
                Some(db) => db,
                None => return,
            },
            _ => TestDb::sqlite().await,
        };
        bench(&engine, db.store.clone(), dir.path()).await;
        db.finish().await;
    });
}
