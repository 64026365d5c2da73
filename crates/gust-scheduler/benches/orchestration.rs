//! Orchestration overhead of one in-process run: `cargo bench -p gust-scheduler`.
//!
//! chain_100: 100 bash tasks running `true`, each after the previous one. fanout_1000: one task,
//! then 1,000 `true` tasks side by side, then a join. Each is compared with its floor measured
//! in the same run: the same number of `bash -c true` processes spawned directly (one after
//! another for the chain; with the same parallelism for the fan-out). Also reports the
//! scheduler's own CPU time per task instance (children excluded) and peak RSS, the latter two
//! also for a 10,000-task DAG.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use gust_core::clock::SystemClock;
use gust_core::dag::{Dag, DagSettings};
use gust_core::ids::{DagId, RunId, TaskId};
use gust_core::schedule::DataInterval;
use gust_core::state::DagRunState;
use gust_core::task::{Task, TaskSettings};
use gust_exec_local::{LocalConfig, LocalExecutor};
use gust_scheduler::test_run::{TestRunSpec, run};
use indexmap::IndexMap;

mod common;

use common::{PARALLELISM, cpu_self, floor, ms, peak_rss_mib, ratio};

fn task(name: &str, upstream: &[String]) -> Task {
    let mut args = serde_json::Map::new();
    args.insert("bash_command".into(), "true".into());
    Task {
        id: TaskId::new(name).expect("id"),
        operator: "bash".into(),
        args,
        upstream: upstream
            .iter()
            .map(|u| TaskId::new(u.as_str()).expect("id"))
            .collect(),
        group: None,
        settings: TaskSettings {
            do_xcom_push: false,
            ..TaskSettings::default()
        },
        doc_md: None,
        mapping: None,
    }
}

fn dag(name: &str, tasks: Vec<Task>) -> Dag {
    let tasks: IndexMap<TaskId, Task> = tasks.into_iter().map(|t| (t.id.clone(), t)).collect();
    Dag::new(
        DagId::new(name).expect("id"),
        // Bounded by the runtime's parallelism alone, as the scheduler benchmark's DAGs are.
        DagSettings {
            max_active_tasks: u32::MAX,
            ..DagSettings::default()
        },
        tasks,
        IndexMap::new(),
        PathBuf::from("bench"),
    )
    .expect("dag")
}

fn chain(n: usize) -> Dag {
    let names: Vec<String> = (0..n).map(|i| format!("t{i}")).collect();
    dag(
        "chain",
        (0..n)
            .map(|i| task(&names[i], if i == 0 { &[] } else { &names[i - 1..i] }))
            .collect(),
    )
}

fn fanout(n: usize) -> Dag {
    let start = vec!["start".to_owned()];
    let mut tasks = vec![task("start", &[])];
    let middle: Vec<String> = (0..n).map(|i| format!("m{i}")).collect();
    tasks.extend(middle.iter().map(|m| task(m, &start)));
    tasks.push(task("join", &middle));
    dag("fanout", tasks)
}

/// 100 layers of 100 tasks; each task waits for one task of the layer before.
fn layered(layers: usize, width: usize) -> Dag {
    let name = |l: usize, w: usize| format!("l{l}_{w}");
    let mut tasks = Vec::with_capacity(layers * width);
    for l in 0..layers {
        for w in 0..width {
            let up: Vec<String> = if l == 0 { vec![] } else { vec![name(l - 1, w)] };
            tasks.push(task(&name(l, w), &up));
        }
    }
    dag("layered", tasks)
}

async fn run_dag(dag: &Dag, logs: &std::path::Path) -> (Duration, Duration) {
    let (tx, mut events) = gust_executor::event_channel();
    let config = LocalConfig {
        parallelism: PARALLELISM,
        ..LocalConfig::default()
    };
    let executor = LocalExecutor::new(config, tx, Arc::new(SystemClock));
    let start = Utc
        .with_ymd_and_hms(2024, 1, 1, 0, 0, 0)
        .single()
        .expect("date");
    let spec = TestRunSpec {
        run_id: RunId::new(format!("bench__{}", dag.id)).expect("id"),
        interval: DataInterval { start, end: start },
        conf: serde_json::Map::new(),
        logs_root: logs.to_path_buf(),
        variables: Default::default(),
        connections: Default::default(),
        callbacks: None,
        max_map_length: gust_core::mapping::DEFAULT_MAX_MAP_LENGTH,
        triggerer: None,
    };
    let cpu_before = cpu_self();
    let began = Instant::now();
    let report = run(dag, &spec, &executor, &mut events).await;
    let wall = began.elapsed();
    let cpu = cpu_self() - cpu_before;
    assert_eq!(report.state, DagRunState::Success);
    executor.shutdown().await;
    (wall, cpu)
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let logs = tempfile::tempdir().expect("tempdir");
    runtime.block_on(async {
        let chain_dag = chain(100);
        let chain_floor = floor(100, 1).await;
        let (chain_wall, chain_cpu) = run_dag(&chain_dag, logs.path()).await;
        println!("chain_100:   wall {:>8.1} ms   floor {:>8.1} ms   ratio {:.2}x   overhead/task {:.2} ms   scheduler CPU/task {:.3} ms",
            ms(chain_wall), ms(chain_floor), ratio(chain_wall, chain_floor),
            (ms(chain_wall) - ms(chain_floor)) / 100.0, ms(chain_cpu) / 100.0);

        let fan_dag = fanout(1000);
        let fan_floor = floor(1002, PARALLELISM).await;
        let (fan_wall, fan_cpu) = run_dag(&fan_dag, logs.path()).await;
        println!("fanout_1000: wall {:>8.1} ms   floor {:>8.1} ms   ratio {:.2}x   parallelism {PARALLELISM}   scheduler CPU/task {:.3} ms",
            ms(fan_wall), ms(fan_floor), ratio(fan_wall, fan_floor), ms(fan_cpu) / 1002.0);
        let big = layered(100, 100);
        let (big_wall, big_cpu) = run_dag(&big, logs.path()).await;
        println!("dag_10000:   wall {:>8.1} ms   scheduler CPU/task {:.3} ms   peak RSS {:.1} MiB",
            ms(big_wall), ms(big_cpu) / 10_000.0, peak_rss_mib());
    });
}
