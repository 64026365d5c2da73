//! Staging: uploads, the hand-over to the pod runtime, failures, kills and adoption, against a
//! fake pod runtime; and one real step on the local pod runtime with a stand-in `gust`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use gust_artifacts::StoreCredentials;
use gust_core::clock::SystemClock;
use gust_core::ids::{DagId, RunId, TaskId, TryNumber};
use gust_executor::testing::finished;
use serde_json::{Value, json};

use super::*;
use crate::plan::GustBinary;

const WITHIN: Duration = Duration::from_secs(30);

fn key() -> TryKey {
    TryKey {
        dag_id: DagId::new("ml").unwrap(),
        run_id: RunId::new("manual__1").unwrap(),
        task_id: TaskId::new("train").unwrap(),
        map_index: gust_core::mapping::UNMAPPED,
        try_number: TryNumber(1),
    }
}

/// A pod runtime that records what it is asked.
#[derive(Default)]
struct FakePods {
    started: Mutex<Vec<LaunchSpec>>,
    adopted: Mutex<Vec<LaunchSpec>>,
    killed: Mutex<Vec<TryKey>>,
}

impl Executor for FakePods {
    fn start(&self, spec: LaunchSpec) -> Result<(), LaunchError> {
        self.started.lock().unwrap().push(spec);
        Ok(())
    }
    fn kill(&self, key: &TryKey, _: &str) {
        self.killed.lock().unwrap().push(key.clone());
    }
    fn running(&self) -> usize {
        0
    }
    fn adopt(&self, spec: LaunchSpec) {
        self.adopted.lock().unwrap().push(spec);
    }
    fn release(&self, _: &TryKey) {}
}

/// A DAG folder with `train.py`, and a local artifact store beside it.
struct Harness {
    dir: tempfile::TempDir,
    pods: Arc<FakePods>,
    events: mpsc::Receiver<TryEvent>,
    executor: ProcessingExecutor,
}

impl Harness {
    fn new(kind: PodRuntimeKind, root: Option<String>, credentials: StoreCredentials) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("train.py"), "print('trained')\n").unwrap();
        let pods = Arc::new(FakePods::default());
        let (tx, events) = gust_executor::event_channel();
        let settings = StepSettings {
            root: root.unwrap_or_else(|| dir.path().join("store").display().to_string()),
            gust_image: "gust:test".to_owned(),
            gust: GustBinary::InImage,
            credentials_secret: None,
        };
        let executor = ProcessingExecutor::new(
            pods.clone(),
            kind,
            Artifacts::new(credentials),
            settings,
            tx,
            Arc::new(SystemClock),
        );
        Self {
            dir,
            pods,
            events,
            executor,
        }
    }

    fn local() -> Self {
        Self::new(PodRuntimeKind::Local, None, StoreCredentials::none())
    }

    fn store(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("logs/train.log")
    }

    fn spec(&self, args: Value) -> LaunchSpec {
        LaunchSpec {
            key: key(),
            operator: "processing".to_owned(),
            args: args.as_object().unwrap().clone(),
            do_xcom_push: true,
            execution_timeout: None,
            log_path: self.log(),
            dag_file: self.dir.path().join("ml.yaml"),
            context: Default::default(),
        }
    }

    /// Waits until the fake pod runtime was handed the try.
    async fn handed_over(&self) -> LaunchSpec {
        tokio::time::timeout(WITHIN, async {
            loop {
                if let Some(spec) = self.pods.started.lock().unwrap().first().cloned() {
                    return spec;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("handed over in time")
    }
}

fn step() -> Value {
    json!({"image": "python:3.12", "code": "train.py", "outputs": [{"name": "model"}]})
}

#[tokio::test]
async fn code_is_uploaded_then_the_pod_is_handed_to_the_pod_runtime() {
    let h = Harness::local();
    h.executor.start(h.spec(step())).unwrap();
    let pod = h.handed_over().await;
    assert_eq!(pod.operator, "kubernetes_pod");
    assert_eq!(pod.key, key());
    assert_eq!(pod.log_path, h.log());
    assert_eq!(pod.args["cmds"][0], "/opt/gust/bin/gust");
    let staged = h.store().join("ml/manual__1/train/code/train.py");
    assert_eq!(
        std::fs::read_to_string(&staged).unwrap(),
        "print('trained')\n"
    );
    assert_eq!(h.executor.running(), 0);
    let log = std::fs::read_to_string(h.log()).unwrap();
    let uri = staged.display().to_string();
    assert!(
        log.contains(&format!(
            "gust: processing step: uploading {}",
            h.dir.path().join("train.py").display()
        )),
        "{log}"
    );
    assert!(
        log.contains(&format!("uploaded 1 file(s), 17 bytes, to {uri}")),
        "{log}"
    );
    let model = h
        .store()
        .join("ml/manual__1/train/model")
        .display()
        .to_string();
    assert!(
        log.contains(&format!("output model goes to {model}")),
        "{log}"
    );
}

#[tokio::test]
async fn arguments_that_cannot_be_planned_fail_the_try() {
    let mut h = Harness::local();
    h.executor
        .start(h.spec(json!({"image": "python:3.12"})))
        .unwrap();
    let outcome = finished(&mut h.events, &key(), WITHIN).await;
    assert_eq!(
        outcome,
        TryOutcome::Failed(FailureReason::InvalidArguments(
            "argument \"code\": give `code` (its entry file runs with python3) or `command`"
                .to_owned()
        ))
    );
    let missing = json!({"image": "python:3.12", "code": "gone.py"});
    h.executor.start(h.spec(missing)).unwrap();
    let TryOutcome::Failed(FailureReason::InvalidArguments(why)) =
        finished(&mut h.events, &key(), WITHIN).await
    else {
        panic!("not refused")
    };
    assert!(why.contains("gone.py: cannot be read: "), "{why}");
    assert!(h.pods.started.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_failed_upload_fails_the_try_and_says_so_in_its_log() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("a-file");
    std::fs::write(&blocker, "").unwrap();
    let root = blocker.join("store").display().to_string();
    let mut h = Harness::new(PodRuntimeKind::Local, Some(root), StoreCredentials::none());
    h.executor.start(h.spec(step())).unwrap();
    let TryOutcome::Failed(FailureReason::Spawn(why)) =
        finished(&mut h.events, &key(), WITHIN).await
    else {
        panic!("not failed to start")
    };
    assert!(why.starts_with("could not upload "), "{why}");
    let log = std::fs::read_to_string(h.log()).unwrap();
    assert!(log.contains("processing step: could not upload"), "{log}");
    assert!(h.pods.started.lock().unwrap().is_empty());
}

#[tokio::test]
async fn without_the_sandbox_a_local_step_is_refused_saying_to_install_bubblewrap() {
    let mut h = Harness::new(
        PodRuntimeKind::LocalUnsandboxed,
        None,
        StoreCredentials::none(),
    );
    h.executor.start(h.spec(step())).unwrap();
    let TryOutcome::Failed(FailureReason::Spawn(why)) =
        finished(&mut h.events, &key(), WITHIN).await
    else {
        panic!("not refused")
    };
    assert_eq!(why, NEEDS_SANDBOX);
    assert!(!why.contains('\n') && why.contains("install"), "{why}");
    let log = std::fs::read_to_string(h.log()).unwrap();
    assert!(log.contains("need bubblewrap"), "{log}");
    assert!(h.pods.started.lock().unwrap().is_empty());
    assert!(!h.store().exists(), "nothing staged");
}

#[tokio::test]
async fn a_cluster_cannot_use_a_local_artifact_root() {
    let h = Harness::new(PodRuntimeKind::Cluster, None, StoreCredentials::none());
    let err = h.executor.start(h.spec(step())).unwrap_err();
    assert_eq!(
        err,
        LaunchError::Unconfigured(LOCAL_ROOT_ON_CLUSTER.to_owned())
    );
    assert!(err.to_string().contains("set `[artifacts] root`"));
    let file = Harness::new(
        PodRuntimeKind::Cluster,
        Some("file:///tmp/gust-store".to_owned()),
        StoreCredentials::none(),
    );
    assert!(file.executor.start(file.spec(step())).is_err());
}

#[tokio::test]
async fn other_operators_are_not_taken() {
    let h = Harness::local();
    let mut spec = h.spec(step());
    spec.operator = "bash".to_owned();
    assert_eq!(
        h.executor.start(spec),
        Err(LaunchError::UnknownOperator("bash".to_owned()))
    );
}

/// An S3 endpoint that accepts connections and never answers: uploads hang.
async fn silent_endpoint() -> (tokio::task::JoinHandle<()>, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    (task, format!("http://{address}"))
}

fn hanging(endpoint: String) -> Harness {
    let credentials = StoreCredentials::from_fields(
        [
            ("login", "AKIDEXAMPLE"),
            ("password", "not-a-real-secret"),
            ("region_name", "us-east-1"),
            ("endpoint_url", endpoint.as_str()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect(),
    );
    Harness::new(
        PodRuntimeKind::Cluster,
        Some("s3://bucket/runs".to_owned()),
        credentials,
    )
}

#[tokio::test]
async fn killing_a_try_while_it_stages_reports_it_killed() {
    let (server, endpoint) = silent_endpoint().await;
    let mut h = hanging(endpoint);
    h.executor.start(h.spec(step())).unwrap();
    // Staging: counted as running, and a second start of the same try is refused.
    assert_eq!(h.executor.running(), 1);
    assert_eq!(
        h.executor.start(h.spec(step())),
        Err(LaunchError::AlreadyRunning(key()))
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    h.executor.kill(&key(), "marked failed");
    let outcome = finished(&mut h.events, &key(), Duration::from_secs(5)).await;
    assert_eq!(
        outcome,
        TryOutcome::Failed(FailureReason::Killed("marked failed".to_owned()))
    );
    assert_eq!(h.executor.running(), 0);
    assert!(h.pods.started.lock().unwrap().is_empty());
    assert!(h.pods.killed.lock().unwrap().is_empty());
    // Once handed over (or never staged), a kill goes to the pod runtime.
    h.executor.kill(&key(), "again");
    assert_eq!(*h.pods.killed.lock().unwrap(), [key()]);
    let log = std::fs::read_to_string(h.log()).unwrap();
    assert!(
        !log.contains("not-a-real-secret") && !log.contains("AKIDEXAMPLE"),
        "{log}"
    );
    server.abort();
}

#[tokio::test]
async fn shutting_down_stops_staging_and_waits_for_it() {
    let (server, endpoint) = silent_endpoint().await;
    let mut h = hanging(endpoint);
    h.executor.start(h.spec(step())).unwrap();
    tokio::time::timeout(Duration::from_secs(5), h.executor.shutdown())
        .await
        .expect("shut down in time");
    let outcome = finished(&mut h.events, &key(), Duration::from_secs(1)).await;
    assert_eq!(
        outcome,
        TryOutcome::Failed(FailureReason::Killed(
            "the runtime is shutting down".to_owned()
        ))
    );
    assert_eq!(
        h.executor.start(h.spec(step())),
        Err(LaunchError::ShuttingDown)
    );
    server.abort();
}

#[tokio::test]
async fn an_adopted_try_is_planned_again_without_uploading() {
    let mut h = Harness::local();
    h.executor.adopt(h.spec(step()));
    let adopted = h.pods.adopted.lock().unwrap().clone();
    assert_eq!(adopted.len(), 1);
    assert_eq!(adopted[0].operator, "kubernetes_pod");
    assert_eq!(adopted[0].args["cmds"][0], "/opt/gust/bin/gust");
    assert!(!h.store().exists(), "nothing uploaded");

    // Arguments that no longer plan: the try is lost, not left hanging.
    h.executor.adopt(h.spec(json!({"image": "x"})));
    let TryOutcome::Failed(FailureReason::Lost(why)) =
        finished(&mut h.events, &key(), WITHIN).await
    else {
        panic!("not lost")
    };
    assert!(
        why.starts_with("its pod's arguments cannot be planned again"),
        "{why}"
    );
}

/// A stand-in for `gust artifacts fetch|run` following the contract, for local folders only.
const FAKE_GUST: &str = r#"#!/bin/bash
set -eu
[ "$1" = artifacts ] || exit 2
command=$2; shift 2
case "$command" in
fetch)
  [ "$1" = --install ] || exit 2
  mkdir -p "$2"; cp "$0" "$2/.gust.tmp"; chmod 755 "$2/.gust.tmp"; mv "$2/.gust.tmp" "$2/gust"; shift 2
  while [ $# -gt 0 ]; do
    if [ "$1" = --termination-log ]; then shift 2; continue; fi
    spec=$2; dest=${spec%%=*}; uri=${spec#*=}; src=${uri#file://}
    if [ -d "$src" ]; then mkdir -p "$dest"; cp -r "$src/." "$dest/"
    elif [ -f "$src" ]; then mkdir -p "$(dirname "$dest")"; cp "$src" "$dest"
    else echo "nothing at $uri" >&2; exit 1; fi
    shift 2
  done;;
run)
  xcom=; outputs=()
  while [ "$1" != -- ]; do
    case "$1" in --xcom) xcom=$2;; --output) outputs+=("$2");; esac; shift 2
  done
  shift
  "$@"
  json=
  for output in "${outputs[@]}"; do
    name=${output%%=*}; rest=${output#*=}; path=${rest%%=*}; uri=${rest#*=}; dest=${uri#file://}
    mkdir -p "$(dirname "$dest")"; cp -r "$path" "$dest"
    json="$json${json:+,}\"$name\":\"$uri\""
  done
  [ -z "$xcom" ] || echo "{$json}" > "$xcom";;
esac
"#;

fn fake_gust(dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("fake-gust");
    std::fs::write(&path, FAKE_GUST).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[tokio::test]
async fn a_step_runs_end_to_end_on_the_local_pod_runtime_with_a_local_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    std::fs::create_dir_all(store.join("data")).unwrap();
    std::fs::write(store.join("data/in.csv"), "a,b\n1,2\n").unwrap();
    std::fs::create_dir_all(dir.path().join("step")).unwrap();
    std::fs::write(
        dir.path().join("step/run.sh"),
        "mkdir -p \"$GUST_OUTPUT_OUT\"\nwc -l < \"$GUST_INPUT_DATA\" > \"$GUST_OUTPUT_OUT/lines\"\n",
    )
    .unwrap();
    let (tx, mut events) = gust_executor::event_channel();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let local = gust_exec_local::LocalExecutor::new(
        gust_exec_local::LocalConfig {
            run_pods: true,
            ..gust_exec_local::LocalConfig::default()
        },
        tx.clone(),
        clock.clone(),
    );
    let executor = ProcessingExecutor::new(
        Arc::new(local.clone()),
        PodRuntimeKind::Local,
        Artifacts::new(StoreCredentials::none()),
        StepSettings {
            root: format!("file://{}", store.display()),
            gust_image: "gust:test".to_owned(),
            gust: GustBinary::Host(fake_gust(dir.path())),
            credentials_secret: None,
        },
        tx,
        clock,
    );
    let args = json!({
        "image": "busybox",
        "code": "step",
        "command": "sh \"$GUST_CODE_DIR/run.sh\"",
        "inputs": [{"name": "data", "source": store.join("data/in.csv").display().to_string()}],
        "outputs": [{"name": "out"}],
    });
    let spec = LaunchSpec {
        key: key(),
        operator: "processing".to_owned(),
        args: args.as_object().unwrap().clone(),
        do_xcom_push: true,
        execution_timeout: Some(Duration::from_secs(60)),
        log_path: dir.path().join("train.log"),
        dag_file: dir.path().join("ml.yaml"),
        context: Default::default(),
    };
    executor.start(spec).unwrap();
    let outcome = finished(&mut events, &key(), Duration::from_secs(60)).await;
    let log = std::fs::read_to_string(dir.path().join("train.log")).unwrap_or_default();
    let out = format!("file://{}/ml/manual__1/train/out", store.display());
    assert_eq!(
        outcome,
        TryOutcome::Succeeded {
            xcom: Some(json!({"out": out}))
        },
        "{log}"
    );
    let lines = std::fs::read_to_string(store.join("ml/manual__1/train/out/lines")).unwrap();
    assert_eq!(lines.trim(), "2");
    executor.shutdown().await;
    local.shutdown().await;
}

#[tokio::test]
async fn a_store_set_while_running_reaches_the_next_try_and_not_the_one_before() {
    let h = Harness::local();
    h.executor.start(h.spec(step())).unwrap();
    let before = h.handed_over().await;
    // The `[artifacts]` connection was added: another root, and its Secret for the pods.
    let root = h.dir.path().join("other-store");
    h.executor.set_store(
        Artifacts::new(StoreCredentials::none()),
        StepSettings {
            root: root.display().to_string(),
            gust_image: "gust:test".to_owned(),
            gust: GustBinary::InImage,
            credentials_secret: Some("artifacts_default".to_owned()),
        },
    );
    h.executor.start(h.spec(step())).unwrap();
    let after = tokio::time::timeout(WITHIN, async {
        loop {
            if let Some(spec) = h.pods.started.lock().unwrap().get(1).cloned() {
                return spec;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the second try is handed over");
    let secret = |spec: &LaunchSpec| {
        spec.args["env_from"]
            .to_string()
            .contains("artifacts_default")
    };
    assert!(!secret(&before), "{}", before.args["env_from"]);
    assert!(secret(&after), "{}", after.args["env_from"]);
    assert!(root.join("ml/manual__1/train/code/train.py").exists());
    assert!(h.store().join("ml/manual__1/train/code/train.py").exists());
}
