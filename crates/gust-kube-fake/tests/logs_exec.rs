//! Logs and exec with the real kube client: follow, timestamps, sinceTime, XCom and the sidecar.

mod common;

use std::time::Duration;

use common::{client, container_state, create, phase, pod, pods, wait_for, within};
use futures::{AsyncBufReadExt, StreamExt, TryStreamExt};
use gust_kube_fake::{FakeCluster, PodScript};
use k8s_openapi::jiff::Timestamp;
use kube::api::{AttachParams, LogParams};
use tokio::io::AsyncReadExt;

fn printing(lines: &[&str], interval_ms: u64, runs_for_ms: u64) -> PodScript {
    PodScript {
        lines: lines.iter().map(|line| (*line).to_owned()).collect(),
        line_interval: Duration::from_millis(interval_ms),
        runs_for: Duration::from_millis(runs_for_ms),
        ..PodScript::default()
    }
}

fn is_running(pod: &k8s_openapi::api::core::v1::Pod) -> bool {
    phase(pod) == "Running"
}

#[tokio::test]
async fn a_followed_log_streams_every_line_and_ends_with_the_container() {
    let cluster = FakeCluster::start().await;
    cluster.script("printer", printing(&["one", "two", "three"], 50, 100));
    let api = pods(&cluster, "default");
    create(&api, &pod("p", &[("base", "printer")])).await;
    wait_for(&api, "p", "running", is_running).await;
    let params = LogParams {
        follow: true,
        container: Some("base".to_owned()),
        ..LogParams::default()
    };
    let stream = within("log stream", api.log_stream("p", &params))
        .await
        .unwrap();
    let lines: Vec<String> = within("the stream to end", stream.lines().try_collect())
        .await
        .unwrap();
    assert_eq!(lines, ["one", "two", "three"]);
    let ended = wait_for(&api, "p", "success", |p| phase(p) == "Succeeded").await;
    assert!(
        container_state(&ended, "base")
            .unwrap()
            .terminated
            .is_some()
    );
}

#[tokio::test]
async fn timestamps_prefix_each_line_and_since_time_selects_later_lines() {
    let cluster = FakeCluster::start().await;
    cluster.script("printer", printing(&["early", "late"], 50, 0));
    let api = pods(&cluster, "default");
    create(&api, &pod("p", &[("base", "printer")])).await;
    wait_for(&api, "p", "success", |p| phase(p) == "Succeeded").await;
    let params = LogParams {
        timestamps: true,
        ..LogParams::default()
    };
    let text = within("logs", api.logs("p", &params)).await.unwrap();
    let stamped: Vec<(Timestamp, &str)> = text
        .lines()
        .map(|line| {
            let (stamp, rest) = line.split_once(' ').expect("a timestamp prefix");
            (stamp.parse().expect("an RFC 3339 timestamp"), rest)
        })
        .collect();
    assert_eq!(
        stamped.iter().map(|(_, text)| *text).collect::<Vec<_>>(),
        ["early", "late"]
    );
    let late = stamped[1].0;
    // kube's LogParams round sinceTime to seconds, so send the exact instant by hand.
    let path = format!(
        "/api/v1/namespaces/default/pods/p/log?sinceTime={}",
        late.to_string().replace(':', "%3A")
    );
    let request = axum::http::Request::get(path).body(Vec::new()).unwrap();
    let since = within("logs since", client(&cluster).request_text(request))
        .await
        .unwrap();
    assert_eq!(since, "late\n");
    let tail = LogParams {
        tail_lines: Some(1),
        ..LogParams::default()
    };
    assert_eq!(api.logs("p", &tail).await.unwrap(), "late\n");
}

#[tokio::test]
async fn logs_of_an_unstarted_or_unnamed_container_are_bad_requests() {
    let cluster = FakeCluster::start().await;
    cluster.script(
        "missing",
        PodScript {
            image_pull: gust_kube_fake::ImagePull::NotFound,
            ..PodScript::default()
        },
    );
    let api = pods(&cluster, "default");
    create(
        &api,
        &pod("p", &[("base", "missing"), ("sidecar", "busybox")]),
    )
    .await;
    wait_for(&api, "p", "the pull to fail", |p| {
        common::waiting_reason(p, "base").is_some_and(|r| r.contains("ImagePull"))
    })
    .await;
    let unnamed = api.logs("p", &LogParams::default()).await.unwrap_err();
    let kube::Error::Api(status) = unnamed else {
        panic!("{unnamed:?}")
    };
    assert_eq!(status.code, 400);
    assert_eq!(
        status.message,
        "a container name must be specified for pod p, choose one of: [base sidecar]"
    );
    let waiting = LogParams {
        container: Some("base".to_owned()),
        ..LogParams::default()
    };
    let kube::Error::Api(status) = api.logs("p", &waiting).await.unwrap_err() else {
        panic!("expected a status")
    };
    assert_eq!(
        status.message,
        "container \"base\" in pod \"p\" is waiting to start: trying and failing to pull image"
    );
}

#[tokio::test]
async fn a_broken_log_stream_errors_instead_of_ending_cleanly() {
    let cluster = FakeCluster::start().await;
    cluster.script(
        "forever",
        PodScript {
            lines: vec!["hello".to_owned()],
            runs_forever: true,
            ..PodScript::default()
        },
    );
    let api = pods(&cluster, "default");
    create(&api, &pod("p", &[("base", "forever")])).await;
    wait_for(&api, "p", "running", is_running).await;
    let params = LogParams {
        follow: true,
        ..LogParams::default()
    };
    let mut lines = api.log_stream("p", &params).await.unwrap().lines();
    assert_eq!(
        within("a line", lines.next()).await.unwrap().unwrap(),
        "hello"
    );
    cluster.break_connections();
    let after = within("the break", lines.next()).await;
    assert!(matches!(after, Some(Err(_))), "got {after:?}");
}

fn xcom_pod() -> k8s_openapi::api::core::v1::Pod {
    pod(
        "task",
        &[("base", "task"), ("airflow-xcom-sidecar", "alpine")],
    )
}

#[tokio::test]
async fn exec_reads_the_xcom_and_kill_ends_the_sidecar_so_the_pod_succeeds() {
    let cluster = FakeCluster::start().await;
    cluster.script(
        "task",
        PodScript {
            xcom: Some("{\"rows\": 42}".to_owned()),
            runs_for: Duration::from_millis(30),
            ..PodScript::default()
        },
    );
    cluster.script(
        "alpine",
        PodScript {
            runs_forever: true,
            ..PodScript::default()
        },
    );
    let api = pods(&cluster, "default");
    create(&api, &xcom_pod()).await;
    let waiting = wait_for(&api, "task", "the base container to end", |p| {
        container_state(p, "base").is_some_and(|s| s.terminated.is_some())
    })
    .await;
    assert_eq!(
        phase(&waiting),
        "Running",
        "the sidecar keeps the pod running"
    );
    let attach = sidecar();
    let (stdout, _, status) = cat_xcom(&api).await;
    assert_eq!(stdout, "{\"rows\": 42}");
    assert_eq!(status.status.as_deref(), Some("Success"));
    let mut kill = within(
        "exec kill",
        api.exec("task", ["sh", "-c", "kill -s SIGINT 1"], &attach),
    )
    .await
    .unwrap();
    // kube's `join` drops the status receiver first, so take the status before joining.
    let status = within("kill status", kill.take_status().unwrap())
        .await
        .unwrap();
    assert_eq!(status.status.as_deref(), Some("Success"));
    within("kill to finish", kill.join()).await.unwrap();
    let done = wait_for(&api, "task", "the pod to succeed", |p| {
        phase(p) == "Succeeded"
    })
    .await;
    let sidecar = container_state(&done, "airflow-xcom-sidecar").unwrap();
    assert_eq!(sidecar.terminated.unwrap().exit_code, 0);
}

#[tokio::test]
async fn exec_without_an_xcom_fails_with_exit_code_1() {
    let cluster = FakeCluster::start().await;
    cluster.script(
        "alpine",
        PodScript {
            runs_forever: true,
            ..PodScript::default()
        },
    );
    let api = pods(&cluster, "default");
    create(&api, &xcom_pod()).await;
    wait_for(&api, "task", "the sidecar to run", |p| {
        container_state(p, "airflow-xcom-sidecar").is_some_and(|s| s.running.is_some())
    })
    .await;
    let (_, stderr, status) = cat_xcom(&api).await;
    assert!(stderr.contains("No such file"), "stderr: {stderr}");
    assert_eq!(status.status.as_deref(), Some("Failure"));
    let cause = &status.details.unwrap().causes.unwrap()[0];
    assert_eq!(cause.reason.as_deref(), Some("ExitCode"));
    assert_eq!(cause.message.as_deref(), Some("1"));
}

/// Exec into the XCom sidecar of pod `task`, as the pod runtime attaches.
fn sidecar() -> AttachParams {
    AttachParams::default()
        .container("airflow-xcom-sidecar")
        .stdout(true)
        .stderr(true)
}

/// Reads the XCom file through the sidecar: its stdout, stderr and final status.
async fn cat_xcom(
    api: &kube::Api<k8s_openapi::api::core::v1::Pod>,
) -> (
    String,
    String,
    k8s_openapi::apimachinery::pkg::apis::meta::v1::Status,
) {
    let mut process = within(
        "exec cat",
        api.exec(
            "task",
            ["sh", "-c", "cat /airflow/xcom/return.json"],
            &sidecar(),
        ),
    )
    .await
    .expect("exec started");
    let (mut stdout, mut stderr) = (String::new(), String::new());
    process
        .stdout()
        .expect("stdout")
        .read_to_string(&mut stdout)
        .await
        .expect("stdout read");
    process
        .stderr()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .await
        .expect("stderr read");
    let status = within("exec status", process.take_status().expect("a status"))
        .await
        .expect("the status");
    (stdout, stderr, status)
}
