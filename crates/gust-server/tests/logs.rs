//! Try logs through the API: split into structured lines, as text or NDJSON when asked,
//! bounded per answer and continued with the token, and followed while the try runs.

mod common;

use std::path::PathBuf;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use common::{Answer, HELLO, TestServer, t0};
use gust_core::ids::{DagId, RunId, TaskId, TryNumber};
use gust_core::state::TaskState;
use gust_executor::TryKey;
use gust_store::{Role, TaskMove, TryChange};
use serde_json::json;

const LOGS: &str = "/api/v2/dags/hello/dagRuns/r/taskInstances/say/logs";

/// Triggers run `r` and starts try 1 of `say` (ended in `end` when given); returns the path
/// its log is at in the server's log folder.
async fn started_try(server: &TestServer, end: Option<TaskState>) -> PathBuf {
    let trigger = server
        .call(
            Method::POST,
            "/api/v2/dags/hello/dagRuns",
            Some(Role::Op),
            Some(json!({"dag_run_id": "r", "logical_date": null})),
        )
        .await;
    assert_eq!(trigger.status, StatusCode::OK);
    let store = &server.db.store;
    store
        .create_task_instances("hello", "r", &["say", "after"])
        .await
        .expect("the test setup works");
    let key = TryKey {
        dag_id: DagId::new("hello").expect("the test setup works"),
        run_id: RunId::new("r").expect("the test setup works"),
        task_id: TaskId::new("say").expect("the test setup works"),
        map_index: gust_core::mapping::UNMAPPED,
        try_number: TryNumber(1),
    };
    let path = gust_scheduler::log_path::log_path(server.logs_dir.path(), &key);
    let mut steps = vec![
        (
            TaskState::Queued,
            TryChange::Queued {
                try_number: 1,
                rendered_args: json!({}),
                xcoms: Vec::new(),
                log_location: path.display().to_string(),
                at: t0(),
            },
        ),
        (
            TaskState::Running,
            TryChange::Started {
                try_number: 1,
                at: t0(),
            },
        ),
    ];
    if let Some(end) = end {
        steps.push((
            end,
            TryChange::Ended {
                try_number: 1,
                at: t0(),
                failure: None,
                xcoms: Vec::new(),
                outlets: Vec::new(),
            },
        ));
    }
    for (version, (to, change)) in steps.into_iter().enumerate() {
        let from = match version {
            0 => TaskState::NoStatus,
            1 => TaskState::Queued,
            _ => TaskState::Running,
        };
        let mv = TaskMove {
            dag_id: "hello".into(),
            run_id: "r".into(),
            task_id: "say".into(),
            map_index: gust_store::UNMAPPED,
            from,
            version: i64::try_from(version).expect("the test setup works"),
            to,
            next_retry_at: None,
            try_change: Some(change),
        };
        assert_eq!(
            store
                .apply_moves(&[mv])
                .await
                .expect("the test setup works"),
            vec![true]
        );
    }
    std::fs::create_dir_all(path.parent().expect("the test setup works"))
        .expect("the test setup works");
    path
}

async fn get_as(server: &TestServer, uri: &str, accept: &str) -> Answer {
    let request = Request::get(uri)
        .header(
            "authorization",
            format!("Bearer {}", server.token(Role::Viewer)),
        )
        .header("accept", accept)
        .body(Body::empty())
        .expect("the test setup works");
    server.send(request).await
}

#[tokio::test]
async fn a_finished_log_is_answered_as_structured_lines_text_or_ndjson() {
    let server = TestServer::sqlite().await;
    server.load_dags(&[("hello.yaml", HELLO)]).await;
    let path = started_try(&server, Some(TaskState::Success)).await;
    std::fs::write(
        &path,
        "[2026-01-01T00:00:00.500Z] gust: try 1 of say\n[2026-01-01T00:00:01.000Z] stdout: hello world\nno newline at the end",
    )
    .unwrap();

    let json = server.get(&format!("{LOGS}/1")).await;
    assert_eq!(json.status, StatusCode::OK, "{}", json.text);
    let content = json.json["content"].as_array().unwrap();
    assert_eq!(content.len(), 3);
    assert_eq!(content[1]["event"], "hello world");
    assert_eq!(content[1]["timestamp"], "2026-01-01T00:00:01Z");
    assert_eq!(content[1]["logger"], "stdout");
    assert_eq!(content[2]["event"], "no newline at the end");
    assert_eq!(json.json["continuation_token"], serde_json::Value::Null);

    let text = get_as(&server, &format!("{LOGS}/1"), "text/plain").await;
    assert!(
        text.content_type.starts_with("text/plain"),
        "{}",
        text.content_type
    );
    assert!(
        text.text
            .starts_with("[2026-01-01T00:00:00.500Z] gust: try 1 of say\n")
    );
    let ndjson = get_as(&server, &format!("{LOGS}/1"), "application/x-ndjson").await;
    assert_eq!(ndjson.content_type, "application/x-ndjson");
    let lines: Vec<serde_json::Value> = ndjson
        .text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["event"], "try 1 of say");

    for uri in [
        format!("{LOGS}/2"),
        format!("{LOGS}/1?map_index=3"),
        "/api/v2/dags/hello/dagRuns/r/taskInstances/nope/logs/1".to_owned(),
    ] {
        assert_eq!(
            server.get(&uri).await.status,
            StatusCode::NOT_FOUND,
            "{uri}"
        );
    }
    let forged = server.get(&format!("{LOGS}/1?token=10.abc")).await;
    assert_eq!(forged.status, StatusCode::BAD_REQUEST);
    // A try number that is not a number is FastAPI's 422, naming the parameter, in JSON.
    let not_a_number = server.get(&format!("{LOGS}/abc")).await;
    assert_eq!(
        not_a_number.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        not_a_number.text
    );
    assert_eq!(
        not_a_number.json["detail"][0]["loc"],
        serde_json::json!(["path", "try_number"]),
        "{}",
        not_a_number.text
    );
    let history = server
        .get("/api/v2/dags/hello/dagRuns/r/taskInstances/say/tries/x")
        .await;
    assert_eq!(
        history.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        history.text
    );
    server.finish().await;
}

#[tokio::test]
async fn a_huge_log_comes_in_bounded_pieces_joined_by_the_token() {
    let server = TestServer::sqlite().await;
    server.load_dags(&[("hello.yaml", HELLO)]).await;
    let path = started_try(&server, Some(TaskState::Failed)).await;
    let line = format!("[2026-01-01T00:00:00.000Z] stdout: {}\n", "x".repeat(100));
    let lines = 25_000; // about 3.4 MiB
    std::fs::write(&path, line.repeat(lines)).unwrap();

    let mut seen = 0;
    let mut calls = 0;
    let mut uri = format!("{LOGS}/1");
    loop {
        let answer = server.get(&uri).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
        calls += 1;
        let content = answer.json["content"].as_array().unwrap();
        assert!(
            content.len() * line.len() <= 1024 * 1024,
            "one answer carries at most 1 MiB"
        );
        assert!(
            content
                .iter()
                .all(|l| l["event"].as_str().unwrap().len() == 100)
        );
        seen += content.len();
        match answer.json["continuation_token"].as_str() {
            Some(token) => uri = format!("{LOGS}/1?token={token}"),
            None => break,
        }
    }
    assert_eq!(seen, lines, "every line once, none cut in two");
    assert_eq!(calls, 4);
    let full = server
        .get(&format!("{LOGS}/1?full_content=true&token=ignored"))
        .await;
    assert_eq!(
        full.status,
        StatusCode::OK,
        "full_content reads from the start"
    );
    server.finish().await;
}

#[tokio::test]
async fn a_running_tries_log_is_followed_with_the_token() {
    let server = TestServer::sqlite().await;
    server.load_dags(&[("hello.yaml", HELLO)]).await;
    let path = started_try(&server, None).await;
    std::fs::write(&path, "[2026-01-01T00:00:00.000Z] stdout: one\npartial").unwrap();
    let first = server.get(&format!("{LOGS}/1")).await;
    let events: Vec<&str> = first.json["content"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["event"].as_str().unwrap())
        .collect();
    assert_eq!(events, vec!["one"], "a line still being written waits");
    let token = first.json["continuation_token"]
        .as_str()
        .expect("a running try's log goes on")
        .to_owned();
    std::fs::write(
        &path,
        "[2026-01-01T00:00:00.000Z] stdout: one\npartial line\n[2026-01-01T00:00:02.000Z] stdout: two\n",
    )
    .unwrap();
    let next = server.get(&format!("{LOGS}/1?token={token}")).await;
    let events: Vec<&str> = next.json["content"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["event"].as_str().unwrap())
        .collect();
    assert_eq!(events, vec!["partial line", "two"]);
    assert!(next.json["continuation_token"].is_string());
    server.finish().await;
}

#[tokio::test]
async fn a_log_outside_the_servers_folder_is_found_through_the_index() {
    let server = TestServer::sqlite().await;
    server.load_dags(&[("hello.yaml", HELLO)]).await;
    let in_folder = started_try(&server, Some(TaskState::Success)).await;
    let elsewhere = tempfile::tempdir().unwrap();
    let indexed = elsewhere.path().join("say.log");
    std::fs::write(
        &indexed,
        "[2026-01-01T00:00:00.000Z] stdout: from the index\n",
    )
    .unwrap();
    // Re-point the index, as a scheduler with another log folder would have written it.
    assert!(!in_folder.exists());
    let store = &server.db.store;
    let ti = store
        .task_instances("hello", "r")
        .await
        .unwrap()
        .into_iter()
        .find(|t| t.task_id == "say")
        .unwrap();
    store
        .clear_task_instances("hello", "r", &["say".to_owned()], t0())
        .await
        .unwrap();
    let mv = TaskMove {
        dag_id: "hello".into(),
        run_id: "r".into(),
        task_id: "say".into(),
        map_index: gust_store::UNMAPPED,
        from: TaskState::NoStatus,
        version: ti.version + 1,
        to: TaskState::Queued,
        next_retry_at: None,
        try_change: Some(TryChange::Queued {
            try_number: 2,
            rendered_args: json!({}),
            xcoms: Vec::new(),
            log_location: indexed.display().to_string(),
            at: t0(),
        }),
    };
    assert_eq!(store.apply_moves(&[mv]).await.unwrap(), vec![true]);
    let answer = server.get(&format!("{LOGS}/2")).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    assert_eq!(answer.json["content"][0]["event"], "from the index");
    assert!(
        answer.json["continuation_token"].is_string(),
        "try 2 is queued: its log may go on"
    );
    server.finish().await;
}
