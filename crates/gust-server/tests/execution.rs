//! The Execution API against Airflow's own Task SDK client (`airflow.sdk.api.client.Client` of
//! apache-airflow-task-sdk, in the venv `.ci/run` makes): every request the SDK makes must be
//! answered in the shape it validates.
//!
//! The venv's Python is `GUST_TEST_AIRFLOW_PYTHON`, else `target/airflow-venv/bin/python`; when
//! neither exists the test says so and does nothing (and fails with GUST_REQUIRE_AIRFLOW=1, as
//! in CI).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use gust_core::clock::SystemClock;
use gust_core::ids::{DagId, RunId, TaskId, TryNumber};
use gust_core::state::TaskState;
use gust_executor::execution::{ExecutionBroker, Reported};
use gust_executor::{LaunchSpec, RunFacts, SharedLookup, TryContext, TryKey};
use gust_server::execution::{ExecutionState, TaskTokens};
use gust_template::{MapLookup, RuntimeLookup, TemplateConnection};

mod common;

fn airflow_python() -> Option<PathBuf> {
    let path = std::env::var_os("GUST_TEST_AIRFLOW_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/airflow-venv/bin/python")
        });
    if path.exists() {
        Some(path)
    } else {
        assert!(
            std::env::var("GUST_REQUIRE_AIRFLOW").as_deref() != Ok("1"),
            "GUST_REQUIRE_AIRFLOW=1 but there is no Airflow venv at {}",
            path.display()
        );
        eprintln!(
            "SKIPPED: no Airflow venv at {} (set GUST_TEST_AIRFLOW_PYTHON, or run .ci/run, which \
             makes target/airflow-venv)",
            path.display()
        );
        None
    }
}

/// Serves the Execution API of `state` on a free port while `python` runs `script` with the
/// arguments `args` makes of the API's URL.
async fn run_script(
    state: ExecutionState,
    python: &std::path::Path,
    script: &str,
    args: impl FnOnce(String) -> Vec<String>,
) -> std::process::Output {
    let app = axum::Router::new().nest("/execution", gust_server::execution::router(state));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let url = format!(
        "http://{}/execution/",
        listener.local_addr().expect("an address")
    );
    let stop = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(gust_server::serve(listener, app, stop.clone()));
    let output = tokio::process::Command::new(python)
        .arg("-c")
        .arg(script)
        .args(args(url))
        .output()
        .await
        .expect("python runs");
    stop.cancel();
    let _ = server.await;
    output
}

fn spec(task: &str, retries: u32, lookup: Arc<dyn RuntimeLookup>) -> LaunchSpec {
    let start = chrono::DateTime::parse_from_rfc3339("2024-01-01T00:00:00Z")
        .expect("a date")
        .to_utc();
    let end = start + chrono::Duration::days(1);
    LaunchSpec {
        key: TryKey {
            dag_id: DagId::new("etl").expect("an id"),
            run_id: RunId::new("scheduled__2024-01-01T00:00:00+00:00").expect("an id"),
            task_id: TaskId::new(task).expect("an id"),
            map_index: gust_core::mapping::UNMAPPED,
            try_number: TryNumber(1),
        },
        operator: "python".into(),
        args: serde_json::Map::new(),
        do_xcom_push: true,
        execution_timeout: None,
        log_path: PathBuf::from("/dev/null"),
        dag_file: PathBuf::from("etl.yaml"),
        context: TryContext {
            logical_date: Some(start),
            run: RunFacts {
                data_interval: Some((start, end)),
                run_after: Some(end),
                start_date: Some(end),
                run_type: "scheduled".into(),
                conf: serde_json::Map::from_iter([("limit".to_owned(), serde_json::json!(5))]),
            },
            retries,
            lookup: SharedLookup(Some(lookup)),
            ..TryContext::default()
        },
    }
}

const SCRIPT: &str = r#"
import json, os, sys, uuid, datetime
import httpx
from airflow.sdk.api.client import Client, ServerResponseError

url, token, other_token, ti_id = sys.argv[1:5]
ti_id = uuid.UUID(ti_id)
now = datetime.datetime.now(datetime.timezone.utc)
client = Client(base_url=url, token=token)
out = {}
ctx = client.task_instances.start(ti_id, os.getpid(), now)
out["dag_run"] = json.loads(ctx.dag_run.model_dump_json())
out["max_tries"] = ctx.max_tries
out["should_retry"] = ctx.should_retry
out["xcom_keys_to_clear"] = ctx.xcom_keys_to_clear
client.task_instances.heartbeat(ti_id, os.getpid())
out["pulled"] = client.xcoms.get("etl", ctx.dag_run.run_id, "extract", "return_value").value
out["missing"] = client.xcoms.get("etl", ctx.dag_run.run_id, "extract", "nothing").value
out["slice"] = client.xcoms.get_sequence_slice("etl", ctx.dag_run.run_id, "extract", "return_value", None, None, None, False).root
out["item"] = client.xcoms.get_sequence_item("etl", ctx.dag_run.run_id, "extract", "return_value", -1).root
out["count"] = client.xcoms.head("etl", ctx.dag_run.run_id, "extract", "return_value").len
client.xcoms.set("etl", ctx.dag_run.run_id, "load", "return_value", {"rows": 3, "password": "hunter2-secret"})
out["own"] = client.xcoms.get("etl", ctx.dag_run.run_id, "load", "return_value").value
try:
    client.xcoms.set("etl", ctx.dag_run.run_id, "extract", "return_value", 1)
    out["other_task_write"] = "allowed"
except ServerResponseError as e:
    out["other_task_write"] = e.response.status_code
out["variable"] = client.variables.get("greeting").value
client.variables.set("made_by_task", "yes")
out["made"] = client.variables.get("made_by_task").value
client.variables.delete("made_by_task")
missing_var = client.variables.get("made_by_task")
out["deleted"] = type(missing_var).__name__
conn = client.connections.get("db")
out["connection"] = [conn.conn_id, conn.conn_type, conn.host, conn.port, conn.schema_]
client.task_instances.set_rtif(ti_id, {"python_callable": "load"})
other = Client(base_url=url, token=other_token)
try:
    other.task_instances.heartbeat(ti_id, os.getpid())
    out["cross_token"] = "allowed"
except ServerResponseError as e:
    out["cross_token"] = e.response.status_code
raw = httpx.get(url + "health", headers={"airflow-api-version": "2025-04-28"})
out["old_version"] = raw.status_code
out["health"] = httpx.get(url + "health").json()
forged = Client(base_url=url, token=token[:-4] + "AAAA")
try:
    forged.task_instances.heartbeat(ti_id, os.getpid())
    out["forged"] = "allowed"
except ServerResponseError as e:
    out["forged"] = e.response.status_code
try:
    client.task_instances.get_count("etl", states=["success"])
    out["no_store"] = "answered"
except ServerResponseError as e:
    out["no_store"] = [e.response.status_code, e.detail["reason"]]
client.task_instances.succeed(ti_id, datetime.datetime.now(datetime.timezone.utc), [], [], None)
print(json.dumps(out))
"#;

#[tokio::test]
async fn the_task_sdk_client_runs_a_try_against_gusts_execution_api() {
    let Some(python) = airflow_python() else {
        return;
    };
    gust_secrets::add(["hunter2-secret".to_owned()]);
    let tokens = Arc::new(TaskTokens::new(
        b"test secret",
        std::time::Duration::from_secs(600),
    ));
    let broker = Arc::new(ExecutionBroker::new(tokens));
    let lookup = Arc::new(MapLookup {
        variables: HashMap::from([("greeting".to_owned(), "hello".to_owned())]),
        connections: HashMap::from([(
            "db".to_owned(),
            TemplateConnection {
                conn_id: "db".into(),
                conn_type: "postgres".into(),
                host: Some("db.internal".into()),
                port: Some(5432),
                schema: Some("sales".into()),
                ..TemplateConnection::default()
            },
        )]),
        xcoms: HashMap::from([(
            ("extract".to_owned(), "return_value".to_owned()),
            serde_json::json!({"n": 3}),
        )]),
    });
    let clock = Arc::new(SystemClock);
    let now = gust_core::clock::Clock::now(&SystemClock);
    let load = broker.admit(&spec("load", 2, lookup.clone()), now);
    let other = broker.admit(&spec("other", 0, lookup), now);
    let state = ExecutionState::new(broker.clone(), clock);
    let load_id = load.ti_id.to_string();
    let output = run_script(state, &python, SCRIPT, |url| {
        vec![url, load.token.clone(), other.token.clone(), load_id]
    })
    .await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the script failed: {stderr}");
    // The SDK logs to stdout too: the answer is the last line.
    let stdout = String::from_utf8_lossy(&output.stdout);
    let out: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap_or(""))
        .unwrap_or_else(|err| panic!("not JSON ({err}): {stdout}{stderr}"));

    let run = &out["dag_run"];
    assert_eq!(run["dag_id"], "etl");
    assert_eq!(run["run_id"], "scheduled__2024-01-01T00:00:00+00:00");
    assert_eq!(run["logical_date"], "2024-01-01T00:00:00Z");
    assert_eq!(run["data_interval_end"], "2024-01-02T00:00:00Z");
    assert_eq!(run["run_type"], "scheduled");
    assert_eq!(run["state"], "running");
    assert_eq!(run["conf"], serde_json::json!({"limit": 5}));
    assert_eq!(out["max_tries"], 2);
    assert_eq!(out["should_retry"], true, "try 1 of a task with 2 retries");
    assert_eq!(out["xcom_keys_to_clear"], serde_json::json!([]));
    assert_eq!(out["pulled"], serde_json::json!({"n": 3}));
    assert_eq!(
        out["missing"],
        serde_json::Value::Null,
        "a 404 the SDK reads as None"
    );
    assert_eq!(
        out["slice"],
        serde_json::json!([{"n": 3}]),
        "what xcom_pull asks for"
    );
    assert_eq!(out["item"], serde_json::json!({"n": 3}));
    assert_eq!(out["count"], 1);
    assert_eq!(
        out["own"],
        serde_json::json!({"rows": 3, "password": "***"}),
        "an XCom is kept masked"
    );
    assert_eq!(out["other_task_write"], 403);
    assert_eq!(out["variable"], "hello");
    assert_eq!(out["made"], "yes");
    assert_eq!(
        out["deleted"], "ErrorResponse",
        "a deleted variable is gone"
    );
    assert_eq!(
        out["connection"],
        serde_json::json!(["db", "postgres", "db.internal", 5432, "sales"])
    );
    assert_eq!(out["cross_token"], 403, "a token acts only for its own try");
    assert_eq!(out["forged"], 403);
    assert_eq!(
        out["old_version"], 400,
        "an API version Gust does not serve"
    );
    assert_eq!(out["health"], serde_json::json!({"status": "healthy"}));
    assert_eq!(
        out["no_store"],
        serde_json::json!([400, "no_store"]),
        "gust dags test keeps no runs to ask about"
    );

    let progress = broker.finish(load.ti_id).expect("the try was live");
    assert_eq!(progress.reported, Some(Reported::Success));
    assert_eq!(
        progress.xcoms.get("return_value"),
        Some(&serde_json::json!({"rows": 3, "password": "***"}))
    );
    let rendered = progress.rendered_fields.expect("rendered fields");
    assert_eq!(rendered["python_callable"], "load");
    assert!(progress.last_heartbeat.is_some());
    assert!(
        broker.finish(load.ti_id).is_none(),
        "a finished try's token no longer works"
    );
}

/// A run of dag-factory's mapping example: `request` (not mapped) returned a list of three, and
/// two of the three instances of `process`, mapped over it, have pushed their values.
struct MappedRun;

impl RuntimeLookup for MappedRun {
    fn variable(&self, _key: &str) -> Option<String> {
        None
    }

    fn connection(&self, _conn_id: &str) -> Option<TemplateConnection> {
        None
    }

    fn xcom(&self, task_id: &str, key: &str) -> Option<serde_json::Value> {
        self.xcom_rows(task_id, key).values().next().cloned()
    }

    fn xcom_rows(&self, task_id: &str, key: &str) -> gust_template::XComRows {
        std::sync::Arc::new(match (task_id, key) {
            ("request", "return_value") => {
                BTreeMap::from([(-1, serde_json::json!([[1], [2], [3]]))])
            }
            ("process", "return_value") => {
                BTreeMap::from([(0, serde_json::json!(["a"])), (2, serde_json::json!(["c"]))])
            }
            _ => BTreeMap::new(),
        })
    }
}

/// What the Task SDK asks, as instance 1 of `process`, to resolve its `expand` and push its
/// value; and what a reduce task asks of the mapped task.
const MAPPED: &str = r#"
import json, os, sys, uuid, datetime
from airflow.sdk.api.client import Client, ServerResponseError

url, token, ti_id = sys.argv[1:4]
ti_id = uuid.UUID(ti_id)
now = datetime.datetime.now(datetime.timezone.utc)
client = Client(base_url=url, token=token)
run = client.task_instances.start(ti_id, os.getpid(), now).dag_run.run_id
x = client.xcoms
out = {}
out["upstream"] = x.get("etl", run, "request", "return_value").value
out["upstream_count"] = x.head("etl", run, "request", "return_value").len
out["upstream_as_mapped"] = x.get("etl", run, "request", "return_value", map_index=0).value
out["count_before"] = x.head("etl", run, "process", "return_value").len
x.set("etl", run, "process", "return_value", ["b"], map_index=1)
out["count"] = x.head("etl", run, "process", "return_value").len
out["slice"] = x.get_sequence_slice("etl", run, "process", "return_value", None, None, None).root
out["reversed"] = x.get_sequence_slice("etl", run, "process", "return_value", None, None, -1).root
out["item"] = x.get_sequence_item("etl", run, "process", "return_value", 1).root
out["last"] = x.get_sequence_item("etl", run, "process", "return_value", -1).root
out["past_the_end"] = type(x.get_sequence_item("etl", run, "process", "return_value", 3)).__name__
out["own"] = x.get("etl", run, "process", "return_value", map_index=1).value
out["sibling"] = x.get("etl", run, "process", "return_value", map_index=2).value
out["unmapped_row"] = x.get("etl", run, "process", "return_value").value
try:
    x.set("etl", run, "process", "return_value", ["z"], map_index=2)
    out["sibling_write"] = "allowed"
except ServerResponseError as e:
    out["sibling_write"] = e.response.status_code
client.task_instances.succeed(ti_id, datetime.datetime.now(datetime.timezone.utc), [], [], None)
print(json.dumps(out))
"#;

#[tokio::test]
async fn a_mapped_instance_reads_its_upstreams_and_its_siblings_by_map_index_as_airflow_answers() {
    let Some(python) = airflow_python() else {
        return;
    };
    let tokens = Arc::new(TaskTokens::new(
        b"test secret",
        std::time::Duration::from_secs(600),
    ));
    let broker = Arc::new(ExecutionBroker::new(tokens));
    let mut process = spec("process", 0, Arc::new(MappedRun));
    process.key.map_index = 1;
    let now = gust_core::clock::Clock::now(&SystemClock);
    let admitted = broker.admit(&process, now);
    let state = ExecutionState::new(broker.clone(), Arc::new(SystemClock));
    let ti_id = admitted.ti_id.to_string();
    let output = run_script(state, &python, MAPPED, |url| {
        vec![url, admitted.token.clone(), ti_id]
    })
    .await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the script failed: {stderr}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let out: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap_or(""))
        .unwrap_or_else(|err| panic!("not JSON ({err}): {stdout}{stderr}"));
    use serde_json::json;
    assert_eq!(out["upstream"], json!([[1], [2], [3]]), "{out}");
    assert_eq!(out["upstream_count"], 1, "an unmapped task is one row");
    assert_eq!(
        out["upstream_as_mapped"],
        json!(null),
        "no row at map index 0"
    );
    assert_eq!(out["count_before"], 2, "the instances that pushed");
    assert_eq!(out["count"], 3);
    assert_eq!(
        out["slice"],
        json!([["a"], ["b"], ["c"]]),
        "in map-index order"
    );
    assert_eq!(out["reversed"], json!([["c"], ["b"], ["a"]]));
    assert_eq!(out["item"], json!(["b"]));
    assert_eq!(out["last"], json!(["c"]));
    assert_eq!(out["past_the_end"], "ErrorResponse");
    assert_eq!(out["own"], json!(["b"]));
    assert_eq!(out["sibling"], json!(["c"]));
    assert_eq!(
        out["unmapped_row"],
        json!(null),
        "a mapped task has no row at -1"
    );
    assert_eq!(
        out["sibling_write"], 403,
        "an instance writes its own XComs only"
    );
    let progress = broker.finish(admitted.ti_id).expect("the try was live");
    assert_eq!(progress.xcoms.get("return_value"), Some(&json!(["b"])));
}

/// Asks, through the Task SDK's client, for the previous successful run of the try `ti_id`.
const PREVIOUS_SUCCESS: &str = r#"
import json, sys, uuid
from airflow.sdk.api.client import Client
url, token, ti_id = sys.argv[1:4]
answer = Client(base_url=url, token=token).task_instances.get_previous_successful_dagrun(uuid.UUID(ti_id))
print(json.dumps(json.loads(answer.model_dump_json())))
"#;

#[tokio::test]
async fn the_previous_successful_run_is_the_latest_successful_one_before_the_trys_run() {
    let Some(python) = airflow_python() else {
        return;
    };
    let db = gust_store::testing::TestDb::sqlite().await;
    let store = db.store.clone();
    let day = |d: u32| {
        chrono::DateTime::parse_from_rfc3339(&format!("2023-12-{d:02}T00:00:00Z"))
            .expect("a date")
            .to_utc()
    };
    // Two earlier runs, of which the older succeeded; then the try's own run (2024-01-01).
    for (run_id, logical, succeeded) in [
        ("scheduled__2023-12-30", day(30), true),
        ("scheduled__2023-12-31", day(31), false),
        (
            "scheduled__2024-01-01T00:00:00+00:00",
            day(31) + chrono::Duration::days(1),
            false,
        ),
    ] {
        let run = gust_store::NewRun {
            dag_id: "etl".into(),
            run_id: run_id.into(),
            run_type: gust_store::RunType::Scheduled,
            logical_date: logical,
            data_interval: (logical, logical + chrono::Duration::days(1)),
            conf: serde_json::Map::new(),
            queued_at: logical,
        };
        assert!(store.create_run(&run).await.expect("created"));
        if succeeded {
            let stored = store
                .run("etl", run_id)
                .await
                .expect("read")
                .expect("a run");
            assert!(
                store
                    .transition_run(&stored, gust_core::state::DagRunState::Success, logical)
                    .await
                    .expect("finished")
            );
        }
    }
    let tokens = Arc::new(TaskTokens::new(
        b"test secret",
        std::time::Duration::from_secs(600),
    ));
    let broker = Arc::new(ExecutionBroker::new(tokens));
    let now = gust_core::clock::Clock::now(&SystemClock);
    let load = broker.admit(&spec("load", 0, Arc::new(MapLookup::default())), now);
    let fernet = gust_store::SecretKey::parse(&gust_store::SecretKey::generate()).expect("a key");
    let state = ExecutionState::new(broker.clone(), Arc::new(SystemClock))
        .with_variable_store(store, fernet);
    let output = run_script(state, &python, PREVIOUS_SUCCESS, |url| {
        vec![url, load.token.clone(), load.ti_id.to_string()]
    })
    .await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let answer: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap_or(""))
        .unwrap_or_else(|err| {
            panic!(
                "not JSON ({err}): {stdout}{}",
                String::from_utf8_lossy(&output.stderr)
            )
        });
    assert_eq!(
        answer["data_interval_start"], "2023-12-30T00:00:00Z",
        "{answer}"
    );
    assert_eq!(
        answer["data_interval_end"], "2023-12-31T00:00:00Z",
        "{answer}"
    );
    assert_eq!(answer["end_date"], "2023-12-30T00:00:00Z", "{answer}");
}

/// What a task waiting on another DAG asks, through the Task SDK's client: task-instance counts
/// and states (by task, group, date, run, state), the previous instance, breadcrumbs, a run's
/// detail, the previous run, and clearing a run (`reset_dag_run`).
const OTHER_DAGS: &str = r#"
import json, sys, uuid, datetime
from airflow.sdk.api.client import Client, ServerResponseError
url, token = sys.argv[1:3]
client = Client(base_url=url, token=token)
tis, runs = client.task_instances, client.dag_runs
day = lambda d: datetime.datetime(2024, 1, d, tzinfo=datetime.timezone.utc)
def status(call):
    try:
        call()
        return "ok"
    except ServerResponseError as e:
        return e.response.status_code
out = {}
out["extract_done"] = tis.get_count("up", task_ids=["extract"], logical_dates=[day(1)], states=["success"]).count
out["both_days"] = tis.get_count("up", task_ids=["extract"], logical_dates=[day(1), day(2)], states=["success"]).count
out["not_started"] = tis.get_count("up", logical_dates=[day(1)], states=["null"]).count
out["null_or_failed"] = tis.get_count("up", logical_dates=[day(1)], states=["null", "failed"]).count
out["group_done"] = tis.get_count("up", task_group_id="transform", logical_dates=[day(1)], states=["success", "failed"]).count
out["group_and_task"] = tis.get_count("up", task_ids=["publish"], task_group_id="transform", run_ids=["r1"]).count
out["mapped"] = tis.get_count("up", map_index=0, run_ids=["r1"]).count
out["unmapped"] = tis.get_count("up", map_index=-1, run_ids=["r1"]).count
out["all_r1"] = tis.get_count("up", run_ids=["r1"]).count
out["fan_states"] = tis.get_task_states("up", task_ids=["fan"], run_ids=["r1"]).task_states
out["fan_1_states"] = tis.get_task_states("up", map_index=1, run_ids=["r1"]).task_states
fan = tis.get_previous("up", "fan", map_index=1).task_instance
out["previous_fan"] = [fan.run_id, fan.map_index] if fan else None
out["previous_fan_unmapped"] = tis.get_previous("up", "fan", logical_date=day(2)).task_instance
out["unknown_state"] = tis.get_count("up", states=["bogus"]).count
out["group_states"] = tis.get_task_states("up", task_group_id="transform", run_ids=["r1"]).task_states
out["task_states"] = tis.get_task_states("up", task_ids=["extract"], logical_dates=[day(1), day(2)]).task_states
out["unknown_group"] = status(lambda: tis.get_task_states("up", task_group_id="nope"))
previous = tis.get_previous("up", "extract", logical_date=day(2)).task_instance
out["previous"] = json.loads(previous.model_dump_json()) if previous else None
out["previous_failed"] = tis.get_previous("up", "extract", logical_date=day(2), state="failed").task_instance
out["latest"] = tis.get_previous("up", "extract").task_instance.run_id
crumbs = tis.get_task_breakcrumbs("up", "r1").breadcrumbs
out["breadcrumbs"] = [dict(c) for c in crumbs]
out["detail"] = json.loads(runs.get_detail("up", "r1").model_dump_json())
out["missing_run"] = status(lambda: runs.get_detail("up", "nope"))
before = runs.get_previous("up", day(2)).dag_run
out["previous_run"] = before.run_id if before else None
out["previous_success"] = runs.get_previous("up", day(2), state="success").dag_run
out["runs_running"] = runs.get_count("up", logical_dates=[day(1), day(3)], states=["running"]).count
out["runs_by_id"] = runs.get_count("up", run_ids=["r1", "r2", "r9"]).count
out["clear_missing"] = status(lambda: runs.clear("up", "nope"))
out["clear_unknown_dag"] = status(lambda: runs.clear("nope", "r1"))
out["cleared"] = runs.clear("up", "r1").ok
out["after_clear"] = tis.get_count("up", run_ids=["r1"], states=["null"]).count
print(json.dumps(out, default=str))
"#;

/// A DAG with a nested task group, for the cross-DAG queries.
const UPSTREAM: &str = "
up:
  schedule: null
  start_date: 2024-01-01
  task_groups:
    transform: {tooltip: clean and aggregate}
    aggregate: {parent_group_name: transform}
  tasks:
    extract: {operator: bash, bash_command: echo}
    clean: {operator: bash, bash_command: echo, task_group_name: transform, dependencies: [extract]}
    by_day: {operator: bash, bash_command: echo, task_group_name: aggregate, dependencies: [clean]}
    publish: {operator: bash, bash_command: echo, dependencies: [transform]}
    fan: {operator: bash, expand: {bash_command: [echo, echo, echo]}}
";

#[tokio::test]
async fn a_task_asks_about_another_dags_task_instances_and_runs_as_airflow_answers() {
    let Some(python) = airflow_python() else {
        return;
    };
    let server = common::TestServer::sqlite().await;
    server.load_dags(&[("up.yaml", UPSTREAM)]).await;
    let store = server.db.store.clone();
    let tasks = [
        "extract",
        "transform.clean",
        "transform.aggregate.by_day",
        "publish",
        "fan",
    ];
    let now = gust_core::clock::Clock::now(&SystemClock);
    // Run r1 (2024-01-01): extract and clean succeeded, by_day failed, publish has not run.
    // Run r2 (2024-01-02): extract succeeded.
    for (run_id, date, done) in [
        (
            "r1",
            "2024-01-01T00:00:00Z",
            &["extract", "transform.clean"][..],
        ),
        ("r2", "2024-01-02T00:00:00Z", &["extract"][..]),
    ] {
        server.trigger("up", run_id, Some(date)).await;
        server.start_run("up", run_id, &tasks).await;
        let done: Vec<String> = done.iter().map(|t| (*t).to_owned()).collect();
        store
            .mark_task_instances("up", run_id, &done, TaskState::Success, &[], now)
            .await
            .expect("marked");
    }
    store
        .mark_task_instances(
            "up",
            "r1",
            &["transform.aggregate.by_day".to_owned()],
            TaskState::Failed,
            &[],
            now,
        )
        .await
        .expect("marked");
    // In r1, fan is expanded into three instances, none run yet.
    let fan = store
        .task_instances("up", "r1")
        .await
        .expect("read")
        .into_iter()
        .find(|ti| ti.task_id == "fan")
        .expect("fan's instance");
    assert!(store.expand_task_instance(&fan, 3).await.expect("expanded"));

    let tokens = Arc::new(TaskTokens::new(
        b"test secret",
        std::time::Duration::from_secs(600),
    ));
    let broker = Arc::new(ExecutionBroker::new(tokens));
    let sensor = broker.admit(&spec("wait", 0, Arc::new(MapLookup::default())), now);
    let state = ExecutionState::new(broker.clone(), Arc::new(SystemClock))
        .with_variable_store(store.clone(), server.fernet().clone());
    let output = run_script(state, &python, OTHER_DAGS, |url| {
        vec![url, sensor.token.clone()]
    })
    .await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the script failed: {stderr}");
    let out: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap_or(""))
        .unwrap_or_else(|err| panic!("not JSON ({err}): {stdout}{stderr}"));

    assert_eq!(out["extract_done"], 1, "{out}");
    assert_eq!(out["both_days"], 2, "{out}");
    assert_eq!(
        out["not_started"], 4,
        "publish and fan's three instances have no state: Airflow's null"
    );
    assert_eq!(out["null_or_failed"], 5, "{out}");
    assert_eq!(out["group_done"], 2, "the group's tasks, nested ones too");
    assert_eq!(out["group_and_task"], 0, "publish is not in the group");
    assert_eq!(out["mapped"], 1, "fan's instance 0: {out}");
    // The SDK's client sends a map index only when it is 0 or more: -1 asks about every row.
    assert_eq!(out["unmapped"], 7, "map_index=-1 is not sent: {out}");
    assert_eq!(out["all_r1"], 7, "each mapped instance counts: {out}");
    assert_eq!(
        out["fan_states"],
        serde_json::json!({"r1": {"fan_0": null, "fan_1": null, "fan_2": null}}),
        "a mapped task's instances are named as Airflow names them"
    );
    assert_eq!(
        out["fan_1_states"],
        serde_json::json!({"r1": {"fan_1": null}})
    );
    assert_eq!(out["previous_fan"], serde_json::json!(["r1", 1]), "{out}");
    assert_eq!(
        out["previous_fan_unmapped"],
        serde_json::Value::Null,
        "fan has no instance at map index -1 in r1 (and r2 is not before day 2)"
    );
    assert_eq!(out["unknown_state"], 0, "{out}");
    assert_eq!(
        out["group_states"],
        serde_json::json!({"r1": {
            "transform.clean": "success",
            "transform.aggregate.by_day": "failed",
        }})
    );
    assert_eq!(
        out["task_states"],
        serde_json::json!({"r1": {"extract": "success"}, "r2": {"extract": "success"}})
    );
    assert_eq!(out["unknown_group"], 404);
    let previous = &out["previous"];
    assert_eq!(previous["run_id"], "r1", "{out}");
    assert_eq!(previous["state"], "success", "{out}");
    assert_eq!(previous["map_index"], -1, "{out}");
    assert_eq!(previous["logical_date"], "2024-01-01T00:00:00Z", "{out}");
    assert_eq!(out["previous_failed"], serde_json::Value::Null);
    assert_eq!(out["latest"], "r2");
    let crumbs: Vec<&str> = out["breadcrumbs"]
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|c| c["task_id"].as_str())
        .collect();
    assert_eq!(
        crumbs,
        ["extract", "transform.aggregate.by_day", "transform.clean"],
        "the finished ones: {out}"
    );
    assert_eq!(out["breadcrumbs"][0]["operator"], "BashOperator", "{out}");
    let detail = &out["detail"];
    assert_eq!(detail["run_id"], "r1", "{out}");
    assert_eq!(detail["state"], "running", "{out}");
    assert_eq!(detail["run_type"], "manual", "{out}");
    assert_eq!(detail["logical_date"], "2024-01-01T00:00:00Z", "{out}");
    assert_eq!(out["missing_run"], 404);
    assert_eq!(out["previous_run"], "r1");
    assert_eq!(out["previous_success"], serde_json::Value::Null, "r1 runs");
    assert_eq!(out["runs_running"], 1, "{out}");
    assert_eq!(out["runs_by_id"], 2, "{out}");
    assert_eq!(out["clear_missing"], 404);
    assert_eq!(out["clear_unknown_dag"], 404);
    assert_eq!(out["cleared"], true);
    assert_eq!(out["after_clear"], 7, "every instance of r1 is cleared");
    let instances = store.task_instances("up", "r1").await.expect("read");
    assert!(instances.iter().all(|ti| ti.state == TaskState::NoStatus));
    server.finish().await;
}

/// What a Python task reads of assets through the Task SDK's client: an asset by name and by
/// URI, a missing one, and an asset's events (newest first, limited).
const ASSETS: &str = r#"
import json, sys
from airflow.sdk.api.client import Client
url, token = sys.argv[1:3]
client = Client(base_url=url, token=token)
out = {}
out["by_name"] = json.loads(client.assets.get(name="orders").model_dump_json())
out["by_uri"] = client.assets.get(uri="s3://bucket/orders").name
out["missing"] = client.assets.get(name="nope").error.value
events = client.asset_events.get(name="orders", uri="s3://bucket/orders", ascending=False, limit=1)
out["events"] = [json.loads(e.model_dump_json()) for e in events.asset_events]
out["all"] = len(client.asset_events.get(uri="s3://bucket/orders").asset_events)
out["by_alias"] = len(client.assets.get_by_alias("none").assets)
print(json.dumps(out, default=str))
"#;

#[tokio::test]
async fn a_task_reads_assets_and_their_events_as_airflow_answers() {
    let Some(python) = airflow_python() else {
        return;
    };
    let db = gust_store::testing::TestDb::sqlite().await;
    let store = db.store.clone();
    let orders =
        gust_core::asset::Asset::new(Some("orders"), Some("s3://bucket/orders"), None, None)
            .expect("an asset");
    let at = |m: i64| {
        chrono::DateTime::parse_from_rfc3339("2024-01-01T00:00:00Z")
            .expect("a date")
            .to_utc()
            + chrono::Duration::minutes(m)
    };
    for minute in [1, 2] {
        let event = gust_store::NewAssetEvent {
            asset: orders.clone(),
            extra: serde_json::json!({"n": minute})
                .as_object()
                .cloned()
                .unwrap_or_default(),
            source: Some(("etl".into(), "r".into(), "load".into())),
            aliases: Vec::new(),
            timestamp: at(minute),
        };
        store.create_asset_events(&[event]).await.expect("events");
    }
    let tokens = Arc::new(TaskTokens::new(
        b"test secret",
        std::time::Duration::from_secs(600),
    ));
    let broker = Arc::new(ExecutionBroker::new(tokens));
    let now = gust_core::clock::Clock::now(&SystemClock);
    let load = broker.admit(&spec("load", 0, Arc::new(MapLookup::default())), now);
    let fernet = gust_store::SecretKey::parse(&gust_store::SecretKey::generate()).expect("a key");
    let state = ExecutionState::new(broker.clone(), Arc::new(SystemClock))
        .with_variable_store(store, fernet);
    let output = run_script(state, &python, ASSETS, |url| vec![url, load.token.clone()]).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let answer: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap_or(""))
        .unwrap_or_else(|err| {
            panic!(
                "not JSON ({err}): {stdout}{}",
                String::from_utf8_lossy(&output.stderr)
            )
        });
    assert_eq!(
        answer["by_name"],
        serde_json::json!({"name": "orders", "uri": "s3://bucket/orders", "group": "asset", "extra": {}}),
        "{answer}"
    );
    assert_eq!(answer["by_uri"], "orders");
    assert_eq!(answer["missing"], "ASSET_NOT_FOUND");
    let event = &answer["events"][0];
    assert_eq!(event["extra"], serde_json::json!({"n": 2}), "{answer}");
    assert_eq!(event["source_task_id"], "load");
    assert_eq!(event["asset"]["uri"], "s3://bucket/orders");
    assert_eq!(answer["events"].as_array().map(Vec::len), Some(1));
    assert_eq!(answer["all"], 2);
    assert_eq!(answer["by_alias"], 0);
}
