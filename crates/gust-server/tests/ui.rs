//! The web UI in-process: who may see which page, the login form and its cookie, the grid and
//! graph JSON, a task instance with masked arguments and its log, and the event streams.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use common::{HELLO, TestServer, t0};
use gust_core::state::TaskState;
use gust_store::{NewRun, Role, RunType, TaskMove, TryChange};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

/// A page or endpoint as a browser with `cookie` would get it: status, headers, body.
async fn browse(
    server: &TestServer,
    uri: &str,
    cookie: Option<&str>,
) -> (StatusCode, header::HeaderMap, String) {
    let mut request = Request::get(uri);
    if let Some(cookie) = cookie {
        request = request.header(header::COOKIE, cookie);
    }
    let response = server
        .app
        .clone()
        .oneshot(request.body(Body::empty()).expect("the harness works"))
        .await
        .expect("the harness works");
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.expect("the harness works").to_bytes();
    (
        parts.status,
        parts.headers,
        String::from_utf8_lossy(&bytes).into_owned(),
    )
}

/// Logs in through the form; the session cookie (`_token=...`).
async fn log_in(server: &TestServer, role: Role) -> String {
    let request = Request::post("/login")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(format!(
            "username={}&password=password&next=%2Fdags%2Fhello",
            role.as_str()
        )))
        .expect("the harness works");
    let response = server
        .app
        .clone()
        .oneshot(request)
        .await
        .expect("the harness works");
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()[header::LOCATION], "/dags/hello");
    let cookie = response.headers()[header::SET_COOKIE]
        .to_str()
        .expect("the harness works");
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Strict"), "{cookie}");
    cookie
        .split(';')
        .next()
        .expect("the harness works")
        .to_owned()
}

/// A run of `hello` whose `say` succeeded (rendered with a password among its arguments, with
/// a log and an XCom) and whose `after` is running.
async fn run_hello(server: &TestServer) -> String {
    let store = &server.db.store;
    let run_id = "manual__2026-01-01T00:00:00+00:00".to_owned();
    store
        .create_run(&NewRun {
            dag_id: "hello".into(),
            run_id: run_id.clone(),
            run_type: RunType::Manual,
            logical_date: t0(),
            data_interval: (t0(), t0()),
            conf: serde_json::Map::new(),
            queued_at: t0(),
        })
        .await
        .expect("the harness works");
    store
        .create_task_instances("hello", &run_id, &["say", "after"])
        .await
        .expect("the harness works");
    let log = server.logs_dir.path().join("say.log");
    std::fs::write(&log, "[2026-01-01T00:00:00.000Z] stdout: hello world\n")
        .expect("the harness works");
    let step = |task: &str, from, version, to, change| TaskMove {
        dag_id: "hello".into(),
        run_id: run_id.clone(),
        task_id: task.into(),
        map_index: gust_store::UNMAPPED,
        from,
        version,
        to,
        next_retry_at: None,
        try_change: Some(change),
    };
    let moves = vec![
        step(
            "say",
            TaskState::NoStatus,
            0,
            TaskState::Queued,
            TryChange::Queued {
                try_number: 1,
                rendered_args: json!({"bash_command": "echo hello world", "env": {"DB_PASSWORD": "hunter2"}}),
                xcoms: Vec::new(),
                log_location: log.display().to_string(),
                at: t0(),
            },
        ),
        step(
            "say",
            TaskState::Queued,
            1,
            TaskState::Running,
            TryChange::Started {
                try_number: 1,
                at: t0(),
            },
        ),
        step(
            "say",
            TaskState::Running,
            2,
            TaskState::Success,
            TryChange::Ended {
                try_number: 1,
                at: t0(),
                failure: None,
                xcoms: vec![("return_value".to_owned(), json!("hello world"))],
                outlets: Vec::new(),
            },
        ),
        step(
            "after",
            TaskState::NoStatus,
            0,
            TaskState::Queued,
            TryChange::Queued {
                try_number: 1,
                rendered_args: json!({"bash_command": "echo done"}),
                xcoms: Vec::new(),
                log_location: server
                    .logs_dir
                    .path()
                    .join("after.log")
                    .display()
                    .to_string(),
                at: t0(),
            },
        ),
        step(
            "after",
            TaskState::Queued,
            1,
            TaskState::Running,
            TryChange::Started {
                try_number: 1,
                at: t0(),
            },
        ),
    ];
    let done = store.apply_moves(&moves).await.expect("the harness works");
    assert!(done.iter().all(|d| *d), "{done:?}");
    run_id
}

#[tokio::test]
async fn pages_send_strangers_to_login_and_data_answers_401() {
    let server = TestServer::sqlite().await;
    server.load_dags(&[("hello.yaml", HELLO)]).await;
    for page in [
        "/dags",
        "/dags/hello?tab=graph",
        "/variables",
        "/connections",
        "/pools",
    ] {
        let (status, headers, _) = browse(&server, page, None).await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{page}");
        let location = headers[header::LOCATION].to_str().unwrap();
        assert!(location.starts_with("/login?next=/"), "{location}");
    }
    for data in [
        "/ui/api/dags",
        "/ui/api/dags/hello/grid",
        "/ui/api/dags/hello/graph",
        "/ui/events/dags",
        "/ui/events/dags/hello/grid",
    ] {
        let (status, _, _) = browse(&server, data, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{data}");
    }
    let (status, _, body) = browse(&server, "/login?next=/dags", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("name=\"password\""));
    let (status, _, _) = browse(&server, "/ui/static/app.js", None).await;
    assert_eq!(status, StatusCode::OK);
    server.finish().await;
}

#[tokio::test]
async fn a_wrong_password_shows_the_form_again_with_one_line() {
    let server = TestServer::sqlite().await;
    let request = Request::post("/login")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(
            "username=viewer&password=nope&next=%2F%2Fevil.example",
        ))
        .unwrap();
    let answer = server.send(request).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert!(answer.text.contains("Wrong user name or password."));
    assert!(!answer.text.contains("evil.example"));
    server.finish().await;
}

#[tokio::test]
async fn viewers_see_no_change_buttons_and_ops_do() {
    let server = TestServer::sqlite().await;
    server.load_dags(&[("hello.yaml", HELLO)]).await;
    let viewer = log_in(&server, Role::Viewer).await;
    let (status, _, page) = browse(&server, "/dags/hello", Some(&viewer)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("data-can-edit=\"false\""));
    assert!(!page.contains("id=\"trigger-open\""));
    let op = log_in(&server, Role::Op).await;
    let (_, _, page) = browse(&server, "/dags/hello", Some(&op)).await;
    assert!(page.contains("id=\"trigger-open\""));
    // The params' defaults prefill the trigger form, and the CSRF token is in the page.
    assert!(
        page.contains("&quot;name&quot;: &quot;world&quot;"),
        "{page}"
    );
    let token = op.trim_start_matches("_token=");
    assert!(page.contains(&gust_server::auth::csrf_token(token)));
    // The server refuses a viewer's change anyway (the API's middleware).
    let request = Request::patch("/api/v2/dags/hello")
        .header(header::COOKIE, &viewer)
        .header(
            "x-csrf-token",
            gust_server::auth::csrf_token(viewer.trim_start_matches("_token=")),
        )
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(r#"{"is_paused": true}"#))
        .unwrap();
    assert_eq!(server.send(request).await.status, StatusCode::FORBIDDEN);
    // And an op's change without the CSRF token.
    let request = Request::patch("/api/v2/dags/hello")
        .header(header::COOKIE, &op)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(r#"{"is_paused": true}"#))
        .unwrap();
    assert_eq!(server.send(request).await.status, StatusCode::FORBIDDEN);
    server.finish().await;
}

#[tokio::test]
async fn the_grid_is_one_string_of_state_codes_per_run() {
    let server = TestServer::sqlite().await;
    server.load_dags(&[("hello.yaml", HELLO)]).await;
    let run_id = run_hello(&server).await;
    let cookie = log_in(&server, Role::Viewer).await;
    let (status, _, body) =
        browse(&server, "/ui/api/dags/hello/grid?runs=100", Some(&cookie)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let grid: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(grid["tasks"][0]["id"], "say");
    assert_eq!(grid["tasks"][1]["id"], "after");
    assert_eq!(grid["runs"][0]["run_id"], run_id.as_str());
    assert_eq!(grid["runs"][0]["state"], "queued");
    assert_eq!(grid["cells"], json!(["sr"]));

    let (_, _, body) = browse(&server, "/ui/api/dags/hello/graph", Some(&cookie)).await;
    let graph: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(graph["edges"], json!([[0, 1]]));
    assert!(graph["positions"][1][0].as_f64() > graph["positions"][0][0].as_f64());

    let (_, _, body) = browse(&server, "/ui/api/dags", Some(&cookie)).await;
    let dags: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(dags["dags"][0]["dag_id"], "hello");
    assert_eq!(dags["dags"][0]["tags"], json!(["example"]));
    assert_eq!(dags["dags"][0]["recent_runs"][0]["run_id"], run_id.as_str());
    server.finish().await;
}

#[tokio::test]
async fn a_task_instance_shows_masked_arguments_its_xcom_and_its_log() {
    let server = TestServer::sqlite().await;
    server.load_dags(&[("hello.yaml", HELLO)]).await;
    let run_id = run_hello(&server).await;
    let cookie = log_in(&server, Role::Viewer).await;
    let base = format!("/dags/hello/runs/{run_id}/tasks/say");
    let (status, _, page) = browse(&server, &base, Some(&cookie)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!page.contains("id=\"mark-success\""));
    let (_, _, body) = browse(&server, &format!("/ui/api{base}"), Some(&cookie)).await;
    assert!(!body.contains("hunter2"), "{body}");
    let ti: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(ti["state"], "success");
    assert_eq!(ti["tries"][0]["rendered_args"]["env"]["DB_PASSWORD"], "***");
    assert_eq!(
        ti["xcoms"][0],
        json!({"key": "return_value", "value": "hello world"})
    );
    let (_, _, body) = browse(
        &server,
        &format!("/ui/api{base}/logs/1?offset=0"),
        Some(&cookie),
    )
    .await;
    let log: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        log["text"],
        "[2026-01-01T00:00:00.000Z] stdout: hello world\n"
    );
    assert_eq!(log["offset"], log["size"]);
    let (_, _, body) = browse(&server, &format!("/ui/api{base}/logs/7"), Some(&cookie)).await;
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["exists"],
        false
    );
    server.finish().await;
}

#[tokio::test]
async fn event_streams_open_for_signed_in_users() {
    let server = TestServer::sqlite().await;
    server.load_dags(&[("hello.yaml", HELLO)]).await;
    run_hello(&server).await;
    let cookie = log_in(&server, Role::Viewer).await;
    for uri in ["/ui/events/dags", "/ui/events/dags/hello/grid?runs=5"] {
        let request = Request::get(uri)
            .header(header::COOKIE, &cookie)
            .body(Body::empty())
            .unwrap();
        let response = server.app.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{uri}");
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "text/event-stream"
        );
    }
    let (status, _, _) = browse(&server, "/ui/events/dags/nope/grid", Some(&cookie)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    server.finish().await;
}

#[tokio::test]
async fn the_connections_page_never_shows_a_password() {
    let server = TestServer::sqlite().await;
    let key = gust_store::SecretKey::parse("cw_0x689RpI-jtRR7oE8h_eQsKImvJapLeSbXpwF4e4=").unwrap();
    let conn = gust_store::Connection {
        conn_id: "db".into(),
        conn_type: "postgres".into(),
        host: Some("db.example".into()),
        login: Some("me".into()),
        schema: None,
        port: Some(5432),
        password: Some(gust_store::Secret::new("hunter2")),
        extra: Some(gust_store::Secret::new(r#"{"token": "hunter3"}"#)),
        description: None,
    };
    server.db.store.put_connection(&conn, &key).await.unwrap();
    // Only ops see connections at all (Airflow's role table).
    let cookie = log_in(&server, Role::Op).await;
    let (status, _, page) = browse(&server, "/connections", Some(&cookie)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("db.example"));
    assert!(!page.contains("hunter2") && !page.contains("hunter3"));
    server.finish().await;
}

#[tokio::test]
async fn import_errors_reach_the_dag_list_and_secret_variables_stay_hidden() {
    let server = TestServer::sqlite().await;
    let store = &server.db.store;
    store
        .replace_import_errors(
            &[gust_store::ImportError {
                file: "/dags/broken.yaml".into(),
                problems: vec!["/dags/broken.yaml:3:5: broken: unknown key \"shedule\"".into()],
            }],
            t0(),
        )
        .await
        .unwrap();
    store
        .set_variable("api_token", "s3cr3t", None, server.fernet())
        .await
        .unwrap();
    store
        .set_variable("region", "eu-west-1", None, server.fernet())
        .await
        .unwrap();
    let cookie = log_in(&server, Role::Viewer).await;
    let (_, _, body) = browse(&server, "/ui/api/dags", Some(&cookie)).await;
    let dags: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(dags["import_errors"][0]["file"], "/dags/broken.yaml");
    assert!(
        dags["import_errors"][0]["problems"][0]
            .as_str()
            .unwrap()
            .contains(":3:5:")
    );
    let (status, _, _) = browse(&server, "/variables", Some(&cookie)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "viewers read no variables");
    let op = log_in(&server, Role::Op).await;
    let (status, _, page) = browse(&server, "/variables", Some(&op)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("eu-west-1"));
    assert!(!page.contains("s3cr3t"));
    // The edit form of a masked value starts blank: the row carries no value to fill it with.
    assert!(
        page.contains(r#"data-key="api_token" data-masked="true" data-value="""#),
        "{page}"
    );
    assert!(page.contains(r#"data-key="region" data-masked="false" data-value="eu-west-1""#));
    assert!(page.contains(r#"id="add""#), "an op adds variables");
    // The pools page draws the API's pools (with their slots) in the browser; only an op may
    // change them.
    let (status, _, page) = browse(&server, "/pools", Some(&cookie)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains(r#"id="pool-rows""#) && !page.contains(r#"id="add""#));
    let (_, _, page) = browse(&server, "/pools", Some(&op)).await;
    assert!(page.contains(r#"id="add""#) && page.contains(r#"id="edit-dialog""#));
    server.finish().await;
}

#[tokio::test]
async fn logging_out_needs_the_csrf_token_and_drops_the_cookie() {
    let server = TestServer::sqlite().await;
    let cookie = log_in(&server, Role::Viewer).await;
    let forged = Request::post("/logout")
        .header(header::COOKIE, &cookie)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from("csrf=wrong"))
        .unwrap();
    assert_eq!(server.send(forged).await.status, StatusCode::FORBIDDEN);
    let csrf = gust_server::auth::csrf_token(cookie.trim_start_matches("_token="));
    let request = Request::post("/logout")
        .header(header::COOKIE, &cookie)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(format!("csrf={csrf}")))
        .unwrap();
    let response = server.app.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let cleared = response.headers()[header::SET_COOKIE].to_str().unwrap();
    assert!(cleared.starts_with("_token=;"), "{cleared}");
    server.finish().await;
}

/// The next server-sent event's name and data from `body`, waiting at most five seconds.
async fn next_event(body: &mut Body) -> (String, Value) {
    let mut text = String::new();
    loop {
        let frame = tokio::time::timeout(std::time::Duration::from_secs(5), body.frame())
            .await
            .expect("an event within 5 s")
            .expect("the stream goes on")
            .expect("a frame");
        if let Ok(data) = frame.into_data() {
            text.push_str(&String::from_utf8_lossy(&data));
        }
        if let Some(end) = text.find("\n\n") {
            let event = &text[..end];
            if event.starts_with(':') {
                text.drain(..end + 2);
                continue;
            }
            let field = |name: &str| {
                event
                    .lines()
                    .find_map(|l| l.strip_prefix(name))
                    .unwrap_or_default()
                    .trim()
                    .to_owned()
            };
            return (
                field("event:"),
                serde_json::from_str(&field("data:")).unwrap_or(Value::Null),
            );
        }
    }
}

#[tokio::test]
async fn the_grid_stream_sends_only_the_column_that_changed() {
    let server = TestServer::sqlite().await;
    server.load_dags(&[("hello.yaml", HELLO)]).await;
    let run_id = run_hello(&server).await;
    let cookie = log_in(&server, Role::Viewer).await;
    let request = Request::get("/ui/events/dags/hello/grid?runs=10")
        .header(header::COOKIE, &cookie)
        .body(Body::empty())
        .unwrap();
    let mut body = server
        .app
        .clone()
        .oneshot(request)
        .await
        .unwrap()
        .into_body();
    // `after` finishes: the stream says so, with that run's column and no run list (the runs'
    // rows did not change).
    let finish = TaskMove {
        dag_id: "hello".into(),
        run_id: run_id.clone(),
        task_id: "after".into(),
        map_index: gust_store::UNMAPPED,
        from: TaskState::Running,
        version: 2,
        to: TaskState::Failed,
        next_retry_at: None,
        try_change: Some(TryChange::Ended {
            try_number: 1,
            at: t0(),
            failure: Some("exit code 1".into()),
            xcoms: Vec::new(),
            outlets: Vec::new(),
        }),
    };
    assert_eq!(
        server.db.store.apply_moves(&[finish]).await.unwrap(),
        vec![true]
    );
    let (name, update) = next_event(&mut body).await;
    assert_eq!(name, "grid");
    assert_eq!(update["cells"], json!({ run_id.as_str(): "sf" }));
    assert_eq!(update["runs"], Value::Null);
    server.finish().await;
}

#[tokio::test]
async fn the_views_read_the_same_on_postgres() {
    let Some(db) = gust_store::testing::TestDb::postgres().await else {
        return;
    };
    let server = TestServer::on(db).await;
    server.load_dags(&[("hello.yaml", HELLO)]).await;
    let run_id = run_hello(&server).await;
    let cookie = log_in(&server, Role::Viewer).await;
    let (status, _, body) = browse(&server, "/ui/api/dags/hello/grid", Some(&cookie)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let grid: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(grid["cells"], json!(["sr"]));
    let (_, _, body) = browse(&server, "/ui/api/dags", Some(&cookie)).await;
    let dags: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(dags["dags"][0]["recent_runs"][0]["run_id"], run_id.as_str());
    let base = format!("/ui/api/dags/hello/runs/{run_id}/tasks/say");
    let (_, _, body) = browse(&server, &base, Some(&cookie)).await;
    let ti: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(ti["tries"][0]["rendered_args"]["env"]["DB_PASSWORD"], "***");
    let key = gust_store::SecretKey::parse("cw_0x689RpI-jtRR7oE8h_eQsKImvJapLeSbXpwF4e4=").unwrap();
    let conn = gust_store::Connection {
        conn_id: "db".into(),
        conn_type: "postgres".into(),
        host: Some("db.example".into()),
        login: None,
        schema: None,
        port: None,
        password: Some(gust_store::Secret::new("hunter2")),
        extra: None,
        description: None,
    };
    server.db.store.put_connection(&conn, &key).await.unwrap();
    // Connections are an op's to read (Airflow's roles).
    let op = log_in(&server, Role::Op).await;
    let (status, _, page) = browse(&server, "/connections", Some(&op)).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(
        page.contains("db.example") && !page.contains("hunter2"),
        "{page}"
    );
    server.finish().await;
}

/// Posts the login form with `extra` headers; the answer's status and headers.
async fn post_login(
    server: &TestServer,
    form: &str,
    extra: &[(&str, &str)],
) -> (StatusCode, header::HeaderMap, String) {
    let mut request =
        Request::post("/login").header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    for (name, value) in extra {
        request = request.header(*name, *value);
    }
    let response = server
        .app
        .clone()
        .oneshot(
            request
                .body(Body::from(form.to_owned()))
                .expect("the harness works"),
        )
        .await
        .expect("the harness works");
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.expect("the harness works").to_bytes();
    (
        parts.status,
        parts.headers,
        String::from_utf8_lossy(&bytes).into_owned(),
    )
}

#[tokio::test]
async fn next_never_sends_the_browser_to_another_site() {
    let server = TestServer::sqlite().await;
    for next in [
        "%2F%2Fevil.example",
        "/%5Cevil.example",
        "https://evil.example",
    ] {
        let (status, headers, _) = post_login(
            &server,
            &format!("username=viewer&password=password&next={next}"),
            &[],
        )
        .await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{next}");
        let location = headers[header::LOCATION].to_str().unwrap();
        assert!(!location.contains("evil"), "{next} went to {location}");
        assert_eq!(location, "/dags");
    }
    // A line break cannot be put in a header, and browsers drop tabs and line breaks from a
    // URL (`/<tab>/evil.example` is `//evil.example`): a 400, not a redirect or a failure.
    for next in [
        "/dags%0D%0ASet-Cookie:%20x=y",
        "/%09/evil.example",
        "/%0A/evil.example",
    ] {
        let (status, headers, _) = post_login(
            &server,
            &format!("username=viewer&password=password&next={next}"),
            &[],
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{next}");
        assert!(!headers.contains_key(header::LOCATION), "{next}");
    }
    let (status, _, body) = browse(&server, "/login?next=/%0A/evil.example", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, _, body) = browse(&server, "/login?next=/%09/evil.example", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    server.finish().await;
}

#[tokio::test]
async fn a_sign_in_whose_referer_is_another_site_is_refused() {
    let server = TestServer::sqlite().await;
    let form = "username=viewer&password=password&next=/dags";
    let (status, headers, _) = post_login(
        &server,
        form,
        &[
            ("host", "gust.example"),
            ("referer", "https://evil.example/page"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(!headers.contains_key(header::SET_COOKIE));
    let (status, _, _) = post_login(
        &server,
        form,
        &[
            ("host", "gust.example"),
            ("referer", "http://gust.example/login"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    server.finish().await;
}

#[tokio::test]
async fn the_session_cookie_is_secure_behind_an_https_proxy_when_trusted() {
    let form = "username=viewer&password=password&next=/dags";
    let https = [("x-forwarded-proto", "https")];
    let cookie =
        |headers: &header::HeaderMap| headers[header::SET_COOKIE].to_str().unwrap().to_owned();
    // Not trusted by default: any client could send the header.
    let server = TestServer::sqlite().await;
    let (status, headers, _) = post_login(&server, form, &https).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(!cookie(&headers).contains("Secure"), "{}", cookie(&headers));
    server.finish().await;

    let mut server = TestServer::sqlite().await;
    let state = server
        .state
        .clone()
        .with_security(gust_server::SecuritySettings {
            proxy_fix: true,
            ..Default::default()
        });
    server.app = gust_server::router(state);
    let (_, headers, _) = post_login(&server, form, &https).await;
    assert!(cookie(&headers).contains("Secure"), "{}", cookie(&headers));
    let (_, headers, _) = post_login(&server, form, &[]).await;
    assert!(
        !cookie(&headers).contains("Secure"),
        "plain http: {}",
        cookie(&headers)
    );
    server.finish().await;
}

#[tokio::test]
async fn the_login_form_is_throttled_with_retry_after() {
    let server = TestServer::sqlite().await;
    let mut last = None;
    for _ in 0..15 {
        last = Some(post_login(&server, "username=op&password=guess&next=/dags", &[]).await);
    }
    let (status, headers, body) = last.unwrap();
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!(headers.contains_key(header::RETRY_AFTER));
    assert!(body.contains("Too many sign-in attempts"), "{body}");
    server.finish().await;
}

#[tokio::test]
async fn every_page_carries_the_security_headers_and_no_inline_script() {
    let server = TestServer::sqlite().await;
    server.load_dags(&[("hello.yaml", HELLO)]).await;
    let run_id = run_hello(&server).await;
    let cookie = log_in(&server, Role::Op).await;
    let task = format!("/dags/hello/runs/{run_id}/tasks/say");
    let run = format!("/dags/hello/runs/{run_id}");
    for page in [
        "/login",
        "/dags",
        "/dags/hello",
        run.as_str(),
        task.as_str(),
        "/variables",
        "/connections",
        "/pools",
        "/assets",
        "/ui/api/dags",
        "/ui/static/app.js",
        "/dags/missing",
    ] {
        let (status, headers, body) = browse(&server, page, Some(&cookie)).await;
        assert!(
            status.is_success() || status == StatusCode::NOT_FOUND,
            "{page}: {status}"
        );
        let csp = headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(csp.contains("script-src 'self'"), "{page}: {csp}");
        assert!(!csp.contains("unsafe-inline"), "{page}: {csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{page}: {csp}");
        assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff", "{page}");
        assert_eq!(headers[header::X_FRAME_OPTIONS], "DENY", "{page}");
        assert!(headers.contains_key(header::REFERRER_POLICY), "{page}");
        // Every script is a file of this server's: none written into the page.
        for script in body.split("<script").skip(1) {
            let tag = script.split('>').next().unwrap_or_default();
            assert!(tag.contains("src=\"/ui/static/"), "{page}: <script{tag}>");
            assert!(
                script[tag.len() + 1..].starts_with("</script>"),
                "{page}: inline script"
            );
        }
        assert!(!body.contains(" style=\""), "{page}: an inline style");
        assert!(!body.contains(" onclick="), "{page}: an inline handler");
    }
    server.finish().await;
}

#[tokio::test]
async fn variables_and_connections_pages_are_for_ops() {
    let server = TestServer::sqlite().await;
    server.load_dags(&[("hello.yaml", HELLO)]).await;
    for role in [Role::Viewer, Role::User] {
        let cookie = log_in(&server, role).await;
        for page in ["/variables", "/connections"] {
            let (status, _, _) = browse(&server, page, Some(&cookie)).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{role:?} {page}");
        }
        let (_, _, page) = browse(&server, "/dags", Some(&cookie)).await;
        assert!(
            !page.contains("href=\"/variables\""),
            "{role:?} sees the link"
        );
    }
    let user = log_in(&server, Role::User).await;
    let (_, _, page) = browse(&server, "/dags/hello", Some(&user)).await;
    assert!(
        page.contains("data-can-edit=\"true\""),
        "users trigger and pause"
    );
    let op = log_in(&server, Role::Op).await;
    let (status, _, page) = browse(&server, "/variables", Some(&op)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("href=\"/variables\""));
    server.finish().await;
}

const ASSETS: &str = r#"
producer:
  schedule: null
  tasks:
    make:
      operator: BashOperator
      bash_command: echo made
      outlets: [{__type__: airflow.sdk.Asset, name: orders, uri: "s3://bucket/orders"}]
consumer:
  schedule: [{__type__: airflow.sdk.Asset, name: orders, uri: "s3://bucket/orders"}]
  tasks:
    use: {operator: BashOperator, bash_command: 'true', inlets: ['s3://bucket/<raw>']}
"#;

#[tokio::test]
async fn the_assets_page_lists_each_asset_with_its_producers_and_consumers() {
    let server = TestServer::sqlite().await;
    server
        .load_dags(&[("hello.yaml", HELLO), ("assets.yaml", ASSETS)])
        .await;
    let cookie = log_in(&server, Role::Viewer).await;
    let (status, _, page) = browse(&server, "/assets", Some(&cookie)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("<strong>orders</strong>"), "{page}");
    // Auto-escaping writes `/` as `&#x2f;`.
    assert!(page.contains("s3:&#x2f;&#x2f;bucket&#x2f;orders"), "{page}");
    assert!(
        page.contains(r#"<a href="/dags/producer">producer</a>.make"#),
        "{page}"
    );
    assert!(
        page.contains(r#"<a href="/dags/consumer">consumer</a>"#),
        "{page}"
    );
    assert!(
        page.contains(r#"<a href="/dags/consumer">consumer</a>.use"#),
        "{page}"
    );
    // Names are escaped as any text of a page.
    assert!(page.contains("bucket&#x2f;&lt;raw&gt;"), "{page}");
    assert!(page.contains("never"), "no event yet");
    server.finish().await;
}

/// A DAG with a task mapped over three commands and a task group.
const FAN: &str = r#"
fan:
  schedule: null
  start_date: 2024-01-01
  task_groups:
    grp:
      tooltip: grouped
  tasks:
    first:
      operator: bash
      bash_command: echo first
    m:
      operator: bash
      expand:
        bash_command: [echo a, echo b, echo c]
      dependencies: [first]
    inner:
      operator: bash
      bash_command: echo inner
      task_group_name: grp
      dependencies: [first]
"#;

/// The `fan` DAG's grid JSON.
async fn fan_grid(server: &TestServer, cookie: &str) -> Value {
    let (status, _, body) = browse(server, "/ui/api/dags/fan/grid", Some(cookie)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    serde_json::from_str(&body).expect("the grid is JSON")
}

#[tokio::test]
async fn a_mapped_task_is_one_cell_counting_its_instances_each_with_its_details_and_log() {
    let server = TestServer::sqlite().await;
    server.load_dags(&[("fan.yaml", FAN)]).await;
    let store = &server.db.store;
    let run_id = "manual__2026-01-01T00:00:00+00:00".to_owned();
    store
        .create_run(&NewRun {
            dag_id: "fan".into(),
            run_id: run_id.clone(),
            run_type: RunType::Manual,
            logical_date: t0(),
            data_interval: (t0(), t0()),
            conf: serde_json::Map::new(),
            queued_at: t0(),
        })
        .await
        .unwrap();
    store
        .create_task_instances("fan", &run_id, &["first", "m", "grp.inner"])
        .await
        .unwrap();
    let cookie = log_in(&server, Role::Viewer).await;
    // Before it is expanded, the mapped task is one instance with no count.
    let before = fan_grid(&server, &cookie).await;
    assert_eq!(before["tasks"][1]["mapped"], true);
    assert_eq!(before["cells"], json!(["nnn"]));
    assert_eq!(before["mapped"], json!([{}]));

    let unexpanded = store
        .task_instances("fan", &run_id)
        .await
        .unwrap()
        .into_iter()
        .find(|ti| ti.task_id == "m")
        .unwrap();
    assert!(store.expand_task_instance(&unexpanded, 3).await.unwrap());
    let log = server.logs_dir.path().join("m-2.log");
    std::fs::write(&log, "[2026-01-01T00:00:00.000Z] stdout: c\n").unwrap();
    let step = |index: i32, from, version, to, change| TaskMove {
        dag_id: "fan".into(),
        run_id: run_id.clone(),
        task_id: "m".into(),
        map_index: index,
        from,
        version,
        to,
        next_retry_at: None,
        try_change: Some(change),
    };
    let queued = |at: &std::path::Path| TryChange::Queued {
        try_number: 1,
        rendered_args: json!({"bash_command": "echo c"}),
        xcoms: Vec::new(),
        log_location: at.display().to_string(),
        at: t0(),
    };
    let moves = vec![
        step(2, TaskState::NoStatus, 0, TaskState::Queued, queued(&log)),
        step(
            2,
            TaskState::Queued,
            1,
            TaskState::Running,
            TryChange::Started {
                try_number: 1,
                at: t0(),
            },
        ),
        step(
            2,
            TaskState::Running,
            2,
            TaskState::Failed,
            TryChange::Ended {
                try_number: 1,
                at: t0(),
                failure: Some("exit code 1".into()),
                xcoms: Vec::new(),
                outlets: Vec::new(),
            },
        ),
    ];
    let done = store.apply_moves(&moves).await.unwrap();
    assert!(done.iter().all(|d| *d), "{done:?}");

    // One cell in the most pressing state (failed before none, as Airflow ranks them).
    let after = fan_grid(&server, &cookie).await;
    assert_eq!(after["cells"], json!(["nfn"]));
    assert_eq!(after["mapped"], json!([{"1": {"none": 2, "failed": 1}}]));

    // Instance 2's details and log, named by its map index.
    let base = format!("/ui/api/dags/fan/runs/{run_id}/tasks/m");
    let (status, _, body) = browse(&server, &format!("{base}?map_index=2"), Some(&cookie)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let ti: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(ti["map_index"], 2);
    assert_eq!(ti["state"], "failed");
    assert_eq!(ti["task"]["operator"], "bash");
    assert_eq!(ti["task"]["mapped"], true);
    assert_eq!(ti["tries"][0]["rendered_args"]["bash_command"], "echo c");
    let (_, _, body) = browse(
        &server,
        &format!("{base}/logs/1?map_index=2"),
        Some(&cookie),
    )
    .await;
    let chunk: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(chunk["text"], "[2026-01-01T00:00:00.000Z] stdout: c\n");
    let (status, _, _) = browse(&server, &format!("{base}?map_index=7"), Some(&cookie)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // The run's details list every instance (the mapped list and the Gantt chart read them).
    let (_, _, body) = browse(
        &server,
        &format!("/ui/api/dags/fan/runs/{run_id}/details"),
        Some(&cookie),
    )
    .await;
    let details: Value = serde_json::from_str(&body).unwrap();
    let instances: Vec<(String, i64, String)> = details["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|ti| {
            (
                ti["task_id"].as_str().unwrap().to_owned(),
                ti["map_index"].as_i64().unwrap(),
                ti["state"].as_str().unwrap_or("none").to_owned(),
            )
        })
        .filter(|(task, _, _)| task == "m")
        .collect();
    assert_eq!(
        instances,
        vec![
            ("m".into(), 0, "none".into()),
            ("m".into(), 1, "none".into()),
            ("m".into(), 2, "failed".into())
        ]
    );
    assert_eq!(details["run"]["run_type"], "manual");
    assert_eq!(details["run"]["conf"], json!({}));

    // The task instance page of one instance.
    let (status, _, page) = browse(
        &server,
        &format!("/dags/fan/runs/{run_id}/tasks/m?map_index=2"),
        Some(&cookie),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("data-map-index=\"2\""), "{page}");
    server.finish().await;
}

#[tokio::test]
async fn a_folded_group_is_one_node_of_the_graph_and_the_dag_page_has_every_tab() {
    let server = TestServer::sqlite().await;
    server.load_dags(&[("fan.yaml", FAN)]).await;
    let cookie = log_in(&server, Role::Viewer).await;
    let nodes = |graph: &Value| -> Vec<(String, String)> {
        graph["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| {
                (
                    n["kind"].as_str().unwrap().into(),
                    n["id"].as_str().unwrap().into(),
                )
            })
            .collect()
    };
    let (_, _, body) = browse(&server, "/ui/api/dags/fan/graph", Some(&cookie)).await;
    let open: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        nodes(&open),
        vec![
            ("task".into(), "first".into()),
            ("task".into(), "m".into()),
            ("task".into(), "grp.inner".into())
        ]
    );
    assert_eq!(open["nodes"][2]["group"], "grp");
    assert_eq!(open["nodes"][1]["mapped"], true);
    let (_, _, body) = browse(
        &server,
        "/ui/api/dags/fan/graph?collapsed=grp,unknown",
        Some(&cookie),
    )
    .await;
    let folded: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        nodes(&folded),
        vec![
            ("task".into(), "first".into()),
            ("task".into(), "m".into()),
            ("group".into(), "grp".into())
        ]
    );
    assert_eq!(folded["nodes"][2]["members"], json!([2]));
    assert_eq!(folded["edges"], json!([[0, 1], [0, 2]]));

    for (tab, marker) in [
        ("grid", "id=\"panel\""),
        ("graph", "id=\"graph\""),
        ("gantt", "id=\"gantt\""),
        ("runs", "id=\"runs-table\""),
        ("code", "id=\"code\""),
        ("details", "id=\"details-max-active-runs\">16<"),
    ] {
        let (status, _, page) =
            browse(&server, &format!("/dags/fan?tab={tab}"), Some(&cookie)).await;
        assert_eq!(status, StatusCode::OK, "{tab}");
        assert!(page.contains(marker), "{tab}: {page}");
        assert!(
            page.contains(&format!("class=\"on\" id=\"tab-{tab}\"")),
            "{tab}"
        );
    }
    server.finish().await;
}
