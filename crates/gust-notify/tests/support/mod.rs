//! Local servers the notifications are sent to: an SMTP sink and an HTTP catcher, each on a
//! loopback port of its own, and a request to hand the runner.

#![allow(dead_code, reason = "each test file uses part of it")]

pub mod http;
pub mod smtp;

use std::path::Path;
use std::sync::Arc;

use gust_core::ids::{DagId, RunId, TaskId};
use gust_executor::callbacks::{CallbackKind, CallbackRequest, CallbackTask, Calls};
use gust_executor::{RunFacts, SharedLookup};
use gust_template::{MapLookup, TemplateConnection};

/// A task's failure in run `manual__1` of DAG `etl`, its log at `log`.
pub fn failure(calls: Calls, lookup: MapLookup, log: &Path) -> CallbackRequest {
    let at = chrono::DateTime::parse_from_rfc3339("2024-03-05T00:00:00Z")
        .expect("a date")
        .to_utc();
    CallbackRequest {
        kind: CallbackKind::TaskFailure,
        dag_id: DagId::new("etl").expect("an id"),
        dag_file: "/dags/etl.yaml".into(),
        run_id: RunId::new("manual__1").expect("an id"),
        logical_date: Some(at),
        run: RunFacts {
            data_interval: Some((at, at)),
            run_after: Some(at),
            start_date: Some(at),
            run_type: "manual".to_owned(),
            conf: serde_json::Map::new(),
        },
        run_state: "running",
        task: Some(CallbackTask {
            task_id: TaskId::new("load").expect("an id"),
            try_number: 2,
            state: "failed",
        }),
        reason: Some("exit code 3".to_owned()),
        log_path: log.to_path_buf(),
        calls,
        params: serde_json::Map::from_iter([("team".to_owned(), "data".into())]),
        max_tries: 2,
        lookup: SharedLookup(Some(Arc::new(lookup))),
    }
}

/// A connection with these fields.
pub fn connection(
    conn_id: &str,
    conn_type: &str,
    host: &str,
    password: &str,
) -> TemplateConnection {
    TemplateConnection {
        conn_id: conn_id.to_owned(),
        conn_type: conn_type.to_owned(),
        host: Some(host.to_owned()),
        password: Some(password.to_owned()),
        ..TemplateConnection::default()
    }
}

/// Quick retries, so tests of retries take milliseconds.
pub fn quick(smtp_port: u16) -> gust_notify::NotifyConfig {
    gust_notify::NotifyConfig {
        smtp: gust_notify::SmtpConfig {
            smtp_host: "127.0.0.1".to_owned(),
            smtp_port,
            smtp_starttls: false,
            smtp_mail_from: "gust@example.com".to_owned(),
            smtp_timeout: 5,
            smtp_retry_limit: 2,
            ..gust_notify::SmtpConfig::default()
        },
        backoff: std::time::Duration::from_millis(10),
        max_backoff: std::time::Duration::from_millis(50),
        ..gust_notify::NotifyConfig::default()
    }
}
