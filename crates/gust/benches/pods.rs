//! The pod runtime under the real scheduler, against the fake API server:
//! `cargo bench -p gust --bench pods`.
//!
//! The fake server runs in a child process (this same executable, re-run in server mode), so
//! the figures are the scheduler's alone. Two workloads, on SQLite:
//! - `fanout_1000`: 1,000 pods running at once (each runs 8 s), all followed by one scheduler:
//!   its peak RSS and CPU per pod;
//! - `chain_30`: 30 pods in a chain: the delay from a pod's base container ending to its
//!   downstream pod's creation, both seen by one watch on the API server (median and p90);
//! - `mapped_10000`: one pod task mapped over 10,000 items at parallelism 32, in a process of
//!   its own (this executable again): CPU per instance and peak RSS.
//!
//! With `GUST_BENCH_KUBECONFIG` naming a real cluster's kubeconfig (the test control plane of
//! `tests/cluster/up.sh`: `. target/cluster/env` and
//! `GUST_BENCH_KUBECONFIG=$GUST_TEST_KUBECONFIG`), it runs against that API server instead:
//! `fanout_N` (`GUST_BENCH_REAL_PODS`, default 1,000 pods of one second each, in the namespace
//! `gust-bench`) and `chain_30`, with nodesim playing ten more nodes of 1,100 pods each
//! (`GUST_TEST_NODESIM` with the cluster's certificates, removed at the end).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use gust_core::clock::{Clock, SystemClock};
use gust_core::state::DagRunState;
use gust_kube::runtime::{Cluster, ClusterChoice, KubeConfig, KubeExecutor};
use gust_scheduler::dag_watch::{WatchConfig, watch_folder};
use gust_scheduler::scheduler::{Scheduler, SchedulerConfig};
use gust_store::Store;
use gust_store::testing::TestDb;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, ServiceAccount};
use kube::runtime::watcher;
use nix::sys::resource::{UsageWho, getrusage};
use tokio_util::sync::CancellationToken;

const SERVER_MODE: &str = "GUST_BENCH_FAKE_SERVER";
/// Set in the child process that runs the mapped workload alone.
const MAPPED_MODE: &str = "GUST_BENCH_PODS_MAPPED";
const MAPPED: usize = 10_000;
const MAPPED_PARALLELISM: usize = 32;
const FAN: usize = 1000;
const CHAIN: usize = 30;
/// The real cluster's kubeconfig, which switches the benchmark to it.
const REAL_MODE: &str = "GUST_BENCH_KUBECONFIG";
/// How many pods the real cluster's fan-out runs.
const REAL_PODS: &str = "GUST_BENCH_REAL_PODS";
/// The namespace of the real cluster's workloads.
const REAL_NAMESPACE: &str = "gust-bench";
/// The nodes nodesim adds for the real cluster's workloads: how many, and pods per node.
const REAL_NODES: usize = 10;
const REAL_NODE_PODS: usize = 1100;
const REAL_NODE_PREFIX: &str = "gust-bench-node-";

fn cpu_self() -> Duration {
    let usage = getrusage(UsageWho::RUSAGE_SELF).expect("getrusage");
    let t =
        |tv: nix::sys::time::TimeVal| Duration::new(tv.tv_sec() as u64, tv.tv_usec() as u32 * 1000);
    t(usage.user_time()) + t(usage.system_time())
}

fn peak_rss_mib() -> f64 {
    getrusage(UsageWho::RUSAGE_SELF)
        .expect("getrusage")
        .max_rss() as f64
        / 1024.0
}

/// Server mode: a fake API server whose `sleeper` pods run 8 s; prints its URL, serves until
/// stdin closes.
async fn serve() {
    let fake = gust_kube_fake::FakeCluster::start().await;
    fake.script(
        "blink",
        gust_kube_fake::PodScript {
            runs_for: Duration::from_millis(20),
            ..gust_kube_fake::PodScript::default()
        },
    );
    fake.script(
        "sleeper",
        gust_kube_fake::PodScript {
            runs_for: Duration::from_secs(8),
            ..gust_kube_fake::PodScript::default()
        },
    );
    println!("{}", fake.url());
    let _ = tokio::task::spawn_blocking(|| {
        let mut sink = String::new();
        let _ = std::io::stdin().read_line(&mut sink);
    })
    .await;
}

/// A DAG of pod tasks; `extra` is YAML laid into every task (indented six spaces).
fn dag_file(dag_id: &str, image: &str, tasks: &[(String, Vec<String>)], extra: &str) -> String {
    let mut text = format!(
        "{dag_id}:\n  schedule: null\n  max_active_tasks: 100000\n  is_paused_upon_creation: false\n  tasks:\n"
    );
    for (id, upstream) in tasks {
        let _ = write!(
            text,
            "    {id}:\n      operator: KubernetesPodOperator\n      image: {image}\n      get_logs: false\n{extra}"
        );
        if !upstream.is_empty() {
            let _ = writeln!(text, "      dependencies: [{}]", upstream.join(", "));
        }
    }
    text
}

/// Records when each pod was first seen and when its base container was first seen ended.
#[derive(Default)]
struct Seen {
    added: HashMap<String, Instant>,
    ended: HashMap<String, Instant>,
}

async fn observe(
    client: kube::Client,
    namespace: &str,
    seen: Arc<Mutex<Seen>>,
    stop: CancellationToken,
) {
    let api: kube::Api<Pod> = kube::Api::namespaced(client, namespace);
    let mut events = watcher(api, watcher::Config::default()).boxed();
    loop {
        let event = tokio::select! {
            () = stop.cancelled() => return,
            e = events.next() => e,
        };
        let Some(Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod))) = event else {
            continue;
        };
        let now = Instant::now();
        let labels = pod.metadata.labels.clone().unwrap_or_default();
        let Some(task) = labels.get("task_id").cloned() else {
            continue;
        };
        let ended = pod.status.as_ref().is_some_and(|s| {
            s.container_statuses.iter().flatten().any(|c| {
                c.name == "base" && c.state.as_ref().is_some_and(|st| st.terminated.is_some())
            })
        });
        let mut seen = seen.lock().expect("lock");
        seen.added.entry(task.clone()).or_insert(now);
        if ended {
            seen.ended.entry(task).or_insert(now);
        }
    }
}

/// Runs `dag_id` once under a fresh scheduler with the pod runtime, its pods in `namespace`;
/// returns (wall, CPU, when it was triggered).
async fn run_once(
    store: &Store,
    home: &Path,
    client: &kube::Client,
    namespace: &str,
    dag_id: &str,
    parallelism: usize,
) -> (Duration, Duration, chrono::DateTime<chrono::Utc>) {
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
    let kube = KubeExecutor::new(KubeConfig::default(), tx, clock.clone());
    kube.use_cluster(
        ClusterChoice::default(),
        Cluster {
            client: client.clone(),
            namespace: namespace.into(),
        },
    )
    .await;
    let mut config = SchedulerConfig::new(home.join("logs"));
    config.paused_by_default = false;
    config.parallelism = parallelism;
    config.max_map_length = MAPPED;
    let scheduler = Scheduler::new(
        store.clone(),
        Arc::new(kube.clone()),
        events,
        bags,
        clock.clone(),
        config,
    );
    let waker = scheduler.waker();
    let token = stop.clone();
    let handle = tokio::spawn(async move { scheduler.run(token).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let cpu_before = cpu_self();
    let began = Instant::now();
    let triggered = clock.now();
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
        assert_ne!(
            state,
            Some(DagRunState::Failed),
            "{dag_id} failed: {}",
            failures(&home.join(format!("logs/dag_id={dag_id}")))
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let wall = began.elapsed();
    let cpu = cpu_self() - cpu_before;
    stop.cancel();
    handle.await.expect("join").expect("scheduler");
    kube.shutdown().await;
    (wall, cpu, triggered)
}

/// Runs `chain_30` with its pods in `namespace`, watched: returns its wall time and, sorted,
/// the delays in milliseconds from each pod's base container seen ended to its downstream pod
/// seen created.
async fn run_chain(
    store: &Store,
    home: &Path,
    client: &kube::Client,
    namespace: &'static str,
) -> (Duration, Vec<f64>) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let stop = CancellationToken::new();
    let observer = tokio::spawn({
        let (client, seen, stop) = (client.clone(), Arc::clone(&seen), stop.clone());
        async move { observe(client, namespace, seen, stop).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (wall, _, _) = run_once(store, home, client, namespace, "chain_30", 4 * FAN).await;
    stop.cancel();
    let _ = observer.await;
    let mut delays: Vec<f64> = {
        let seen = seen.lock().expect("lock");
        (1..CHAIN)
            .filter_map(|i| {
                let ended = seen.ended.get(&format!("c{}", i - 1))?;
                let added = seen.added.get(&format!("c{i}"))?;
                Some(added.saturating_duration_since(*ended).as_secs_f64() * 1e3)
            })
            .collect()
    };
    delays.sort_by(f64::total_cmp);
    (wall, delays)
}

/// The chain's tasks: `c0` to `c29`, each after the one before.
fn chain_tasks() -> Vec<(String, Vec<String>)> {
    (0..CHAIN)
        .map(|i| {
            let upstream = if i == 0 {
                vec![]
            } else {
                vec![format!("c{}", i - 1)]
            };
            (format!("c{i}"), upstream)
        })
        .collect()
}

/// The first few failures the try logs under `logs` end with, one a line.
fn failures(logs: &Path) -> String {
    let failed: Vec<String> = walkdir::WalkDir::new(logs)
        .into_iter()
        .filter_map(Result::ok)
        .filter_map(|entry| std::fs::read_to_string(entry.path()).ok())
        .filter_map(|text| {
            text.lines()
                .find(|line| line.contains("try failed"))
                .map(str::to_owned)
        })
        .take(5)
        .collect();
    failed.join("\n")
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let at = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[at.min(sorted.len() - 1)]
}

#[allow(
    clippy::disallowed_methods,
    reason = "the benchmark runs the fake API server as its own child process, to measure the scheduler alone"
)]
fn spawn_server() -> (std::process::Child, String) {
    let mut child = std::process::Command::new(std::env::current_exe().expect("own path"))
        .env(SERVER_MODE, "1")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("the fake server starts");
    let mut url = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut url)
        .expect("its URL");
    (child, url.trim().to_owned())
}

async fn bench() {
    let (mut server, url) = spawn_server();
    let client =
        kube::Client::try_from(kube::Config::new(url.parse().expect("URL"))).expect("client");
    let db = TestDb::sqlite().await;
    db.store
        .set_pool(&gust_store::Pool {
            name: "default_pool".into(),
            slots: 100_000,
            description: None,
        })
        .await
        .expect("pool");
    let home = tempfile::tempdir().expect("home");
    let dags = home.path().join("dags");
    std::fs::create_dir_all(&dags).expect("dags");
    let fan: Vec<(String, Vec<String>)> = (0..FAN).map(|i| (format!("p{i}"), vec![])).collect();
    std::fs::write(
        dags.join("fan.yaml"),
        dag_file("fanout_1000", "sleeper", &fan, ""),
    )
    .expect("write");
    let chain = chain_tasks();
    std::fs::write(
        dags.join("chain.yaml"),
        dag_file("chain_30", "quick", &chain, ""),
    )
    .expect("write");

    let (wall, cpu, _) = run_once(
        &db.store,
        home.path(),
        &client,
        "default",
        "fanout_1000",
        4 * FAN,
    )
    .await;
    println!(
        "fanout_1000 pods: wall {:.1} s (each pod runs 8 s)   scheduler CPU/pod {:.2} ms   peak RSS {:.1} MiB",
        wall.as_secs_f64(),
        cpu.as_secs_f64() * 1e3 / FAN as f64,
        peak_rss_mib()
    );

    let (wall, delays) = run_chain(&db.store, home.path(), &client, "default").await;
    println!(
        "chain_30 pods:    wall {:.2} s   pod end -> downstream pod created: median {:.1} ms, p90 {:.1} ms ({} pairs)",
        wall.as_secs_f64(),
        percentile(&delays, 0.5),
        percentile(&delays, 0.9),
        delays.len()
    );
    drop(server.stdin.take());
    let _ = server.wait();
    db.finish().await;
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    if std::env::var_os(SERVER_MODE).is_some() {
        runtime.block_on(serve());
        return;
    }
    if std::env::var_os(MAPPED_MODE).is_some() {
        runtime.block_on(bench_mapped());
        return;
    }
    if let Some(kubeconfig) = std::env::var_os(REAL_MODE) {
        runtime.block_on(bench_real(Path::new(&kubeconfig)));
        return;
    }
    runtime.block_on(bench());
    run_mapped_child();
}

/// The mapped workload in a process of its own, so that its peak RSS is its own.
#[allow(
    clippy::disallowed_methods,
    reason = "the benchmark runs the mapped workload in its own process, so that peak RSS is its own"
)]
fn run_mapped_child() {
    let status = std::process::Command::new(std::env::current_exe().expect("own path"))
        .env(MAPPED_MODE, "1")
        .status()
        .expect("the mapped workload runs");
    assert!(status.success(), "the mapped workload failed");
}

/// `mapped_10000`: one pod task mapped over 10,000 items, 32 pods at a time.
async fn bench_mapped() {
    let (mut server, url) = spawn_server();
    let client =
        kube::Client::try_from(kube::Config::new(url.parse().expect("URL"))).expect("client");
    let db = TestDb::sqlite().await;
    let home = tempfile::tempdir().expect("home");
    let dags = home.path().join("dags");
    std::fs::create_dir_all(&dags).expect("dags");
    let items = vec!["[x]"; MAPPED].join(", ");
    std::fs::write(
        dags.join("mapped.yaml"),
        format!(
            "mapped_10000:\n  schedule: null\n  max_active_tasks: 100000\n  is_paused_upon_creation: false\n  tasks:\n    each:\n      operator: KubernetesPodOperator\n      partial: {{image: blink, get_logs: false}}\n      expand:\n        arguments: [{items}]\n"
        ),
    )
    .expect("write");
    let (wall, cpu, _) = run_once(
        &db.store,
        home.path(),
        &client,
        "default",
        "mapped_10000",
        MAPPED_PARALLELISM,
    )
    .await;
    println!(
        "mapped_10000 pods: wall {:.1} s (parallelism {MAPPED_PARALLELISM}, pods run 20 ms)   scheduler CPU/instance {:.3} ms   peak RSS {:.1} MiB",
        wall.as_secs_f64(),
        cpu.as_secs_f64() * 1e3 / MAPPED as f64,
        peak_rss_mib()
    );
    drop(server.stdin.take());
    let _ = server.wait();
    db.finish().await;
}

/// The nodes nodesim adds to the real cluster for its workloads, and the process playing them.
struct RealNodes {
    child: std::process::Child,
    client: kube::Client,
}

impl RealNodes {
    /// Starts nodesim with [`REAL_NODES`] nodes of [`REAL_NODE_PODS`] pods each, the program
    /// `GUST_TEST_NODESIM` with the certificates in `GUST_TEST_CLUSTER_DIR` (both from
    /// `target/cluster/env`), and waits until they are ready.
    #[allow(
        clippy::disallowed_methods,
        reason = "the benchmark plays more nodes with nodesim, a process of its own"
    )]
    async fn start(kubeconfig: &Path, client: &kube::Client, log: &Path) -> Self {
        let var = |name: &str| {
            std::env::var_os(name)
                .unwrap_or_else(|| panic!("{name} (from target/cluster/env) names the cluster"))
        };
        let bin = std::path::PathBuf::from(var("GUST_TEST_NODESIM"));
        let pki = Path::new(&var("GUST_TEST_CLUSTER_DIR")).join("pki");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = std::process::Command::new(&bin)
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(["--nodes", &REAL_NODES.to_string()])
            .args(["--node-pods", &REAL_NODE_PODS.to_string()])
            .args(["--node-prefix", REAL_NODE_PREFIX])
            .args(["--kubelet-port", &port.to_string()])
            .arg("--tls-cert-file")
            .arg(pki.join("apiserver.crt"))
            .arg("--tls-private-key-file")
            .arg(pki.join("apiserver.key"))
            .stdout(std::fs::File::create(log).expect("nodesim's log"))
            .stderr(std::fs::File::create(log.with_extension("err")).expect("nodesim's log"))
            .spawn()
            .unwrap_or_else(|err| panic!("starting {}: {err}", bin.display()));
        let nodes = Self {
            child,
            client: client.clone(),
        };
        let api: kube::Api<Node> = kube::Api::all(client.clone());
        for _ in 0..600 {
            let ready = api
                .list(&Default::default())
                .await
                .expect("listing nodes")
                .items
                .iter()
                .filter(|node| {
                    node.metadata
                        .name
                        .as_deref()
                        .is_some_and(|n| n.starts_with(REAL_NODE_PREFIX))
                        && node.spec.as_ref().is_none_or(|spec| {
                            spec.taints.as_deref().unwrap_or_default().is_empty()
                        })
                })
                .count();
            if ready == REAL_NODES {
                return nodes;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let said = std::fs::read_to_string(log.with_extension("err")).unwrap_or_default();
        panic!("nodesim's {REAL_NODES} nodes were not ready within 60 s: {said}");
    }

    /// Stops nodesim and removes its nodes.
    async fn stop(self) {
        let client = self.client.clone();
        drop(self);
        let api: kube::Api<Node> = kube::Api::all(client);
        for i in 0..REAL_NODES {
            let _ = api
                .delete(&format!("{REAL_NODE_PREFIX}{i}"), &Default::default())
                .await;
        }
    }
}

impl Drop for RealNodes {
    /// nodesim ends with the benchmark, a failed one too.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Creates [`REAL_NAMESPACE`] unless it exists, and waits for its default service account's
/// token (pods are refused until the controller-manager made it).
async fn real_namespace(client: &kube::Client) {
    let namespaces: kube::Api<Namespace> = kube::Api::all(client.clone());
    if namespaces
        .get_opt(REAL_NAMESPACE)
        .await
        .expect("reading namespaces")
        .is_none()
    {
        let namespace: Namespace =
            serde_json::from_value(serde_json::json!({"metadata": {"name": REAL_NAMESPACE}}))
                .expect("a namespace");
        namespaces
            .create(&Default::default(), &namespace)
            .await
            .expect("creating the namespace");
    }
    let accounts: kube::Api<ServiceAccount> = kube::Api::namespaced(client.clone(), REAL_NAMESPACE);
    for _ in 0..300 {
        let account = accounts.get_opt("default").await.expect("reading accounts");
        if account.is_some_and(|a| !a.secrets.unwrap_or_default().is_empty()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{REAL_NAMESPACE}'s default service account has no token after 30 s");
}

/// When each pod of the run under `logs` was created, as its try's log says (`created pod`).
fn pods_created_at(logs: &Path) -> Vec<chrono::DateTime<chrono::Utc>> {
    walkdir::WalkDir::new(logs)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|entry| entry.file_type().is_file())
        .filter_map(|entry| {
            let text = std::fs::read_to_string(entry.path()).ok()?;
            let line = text.lines().find(|l| l.contains("gust: created pod "))?;
            let stamp = line.strip_prefix('[')?.split(']').next()?;
            chrono::DateTime::parse_from_rfc3339(stamp)
                .ok()
                .map(|at| at.with_timezone(&chrono::Utc))
        })
        .collect()
}

/// The machine's load average over the last minute (the machine may be shared).
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "unknown".to_owned())
}

/// The workloads against the real cluster of `kubeconfig` (see the module's doc).
async fn bench_real(kubeconfig: &Path) {
    let config = kube::config::Kubeconfig::read_from(kubeconfig).expect("the kubeconfig reads");
    let config = kube::Config::from_custom_kubeconfig(config, &Default::default())
        .await
        .expect("the kubeconfig is valid");
    let client = kube::Client::try_from(config).expect("client");
    let count: usize = std::env::var(REAL_PODS)
        .map(|text| {
            text.parse()
                .expect("GUST_BENCH_REAL_PODS is a number of pods")
        })
        .unwrap_or(FAN);
    let home = tempfile::tempdir().expect("home");
    let nodes = RealNodes::start(kubeconfig, &client, &home.path().join("nodesim.log")).await;
    real_namespace(&client).await;
    // In a task of its own, so that the nodes are removed even when a workload fails.
    let ran = tokio::spawn(real_workloads(client, home.path().to_path_buf(), count)).await;
    nodes.stop().await;
    if let Err(failed) = ran {
        std::panic::resume_unwind(failed.into_panic());
    }
}

/// `fanout_N` and `chain_30` on the real cluster of `client`, in `home`.
async fn real_workloads(client: kube::Client, home: std::path::PathBuf, count: usize) {
    let home = home.as_path();
    let db = TestDb::sqlite().await;
    db.store
        .set_pool(&gust_store::Pool {
            name: "default_pool".into(),
            slots: 100_000,
            description: None,
        })
        .await
        .expect("pool");
    let dags = home.join("dags");
    std::fs::create_dir_all(&dags).expect("dags");
    let fan_id = format!("fanout_{count}");
    let fan: Vec<(String, Vec<String>)> = (0..count).map(|i| (format!("p{i}"), vec![])).collect();
    // The cluster's scheduler binds about 50 pods a second (its client's default rate), so the
    // last of 10,000 pods waits minutes for a node: not a failure here.
    let in_namespace = |seconds: &str| {
        format!(
            "      namespace: {REAL_NAMESPACE}\n      annotations: {{sim.gust.dev/run-seconds: \"{seconds}\"}}\n      startup_timeout_seconds: 3600\n      schedule_timeout_seconds: 3600\n"
        )
    };
    std::fs::write(
        dags.join("fan.yaml"),
        dag_file(&fan_id, "busybox:1.36", &fan, &in_namespace("1")),
    )
    .expect("write");
    std::fs::write(
        dags.join("chain.yaml"),
        dag_file(
            "chain_30",
            "busybox:1.36",
            &chain_tasks(),
            &in_namespace("0"),
        ),
    )
    .expect("write");

    let load = load_average();
    let (wall, cpu, triggered) =
        run_once(&db.store, home, &client, REAL_NAMESPACE, &fan_id, 4 * count).await;
    let mut delays: Vec<f64> = pods_created_at(&home.join(format!("logs/dag_id={fan_id}")))
        .iter()
        .map(|at| (*at - triggered).num_microseconds().unwrap_or_default() as f64 / 1e3)
        .collect();
    delays.sort_by(f64::total_cmp);
    assert_eq!(
        delays.len(),
        count,
        "every try's log says its pod was created"
    );
    let last = delays.last().copied().unwrap_or_default() / 1e3;
    println!(
        "real cluster {fan_id} (load {load}): wall {:.1} s (pods run 1 s)   created {:.0} pods/s   trigger -> pod created: median {:.0} ms, p90 {:.0} ms, last {:.1} s   scheduler CPU/pod {:.2} ms   peak RSS {:.1} MiB",
        wall.as_secs_f64(),
        count as f64 / last,
        percentile(&delays, 0.5),
        percentile(&delays, 0.9),
        last,
        cpu.as_secs_f64() * 1e3 / count as f64,
        peak_rss_mib()
    );
    let load = load_average();
    let (wall, delays) = run_chain(&db.store, home, &client, REAL_NAMESPACE).await;
    println!(
        "real cluster chain_30 (load {load}): wall {:.2} s   pod end -> downstream pod created: median {:.1} ms, p90 {:.1} ms ({} pairs)",
        wall.as_secs_f64(),
        percentile(&delays, 0.5),
        percentile(&delays, 0.9),
        delays.len()
    );
    db.finish().await;
}
