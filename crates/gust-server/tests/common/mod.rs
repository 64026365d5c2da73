//! A server on a throwaway store, driven in-process: users of each role with their tokens, DAGs
//! loaded from YAML text, and one call helper.

#![allow(dead_code, reason = "each test binary uses part of the harness")]

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use chrono::{DateTime, Utc};
use gust_core::clock::{Clock, SystemClock};
use gust_dagfile::DagBag;
use gust_server::auth::password::hash_password;
use gust_server::{AppState, ServerSettings};
use gust_store::testing::TestDb;
use gust_store::{Role, User};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

/// The harness's start time.
pub fn t0() -> DateTime<Utc> {
    DateTime::from_timestamp(1_767_225_600, 0).expect("2026-01-01")
}

/// A server with one user per role (`admin`, `op`, `user`, `viewer`, password `password`).
pub struct TestServer {
    pub db: TestDb,
    pub state: AppState,
    pub app: axum::Router,
    pub dags_dir: tempfile::TempDir,
    pub logs_dir: tempfile::TempDir,
    /// The users made at the start, one per role.
    pub users: Vec<User>,
}

/// An answer: status and JSON body (`Value::Null` when the body is not JSON).
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub json: Value,
    pub text: String,
    pub content_type: String,
}

impl TestServer {
    pub async fn sqlite() -> Self {
        Self::on(TestDb::sqlite().await).await
    }

    pub async fn on(db: TestDb) -> Self {
        let logs_dir = tempfile::tempdir().expect("logs dir");
        let settings = ServerSettings {
            secret: b"test secret".to_vec(),
            token_ttl: Duration::from_secs(3600),
            logs_root: logs_dir.path().to_path_buf(),
            fernet_key: gust_store::SecretKey::parse(&gust_store::SecretKey::generate()),
            pod_defaults: gust_kube::build::PodDefaults::default(),
            run_id_pattern: gust_scheduler::trigger::RunIdPattern::default(),
        };
        // Tokens are checked against the real clock, so the server runs on it.
        let state = AppState::new(db.store.clone(), Arc::new(SystemClock), settings, None);
        let hash = hash_password("password").expect("hash");
        let mut users = Vec::new();
        for role in Role::ALL {
            let user = User::new(role.as_str().to_owned(), hash.clone(), role, t0());
            db.store.create_user(&user).await.expect("user");
            users.push(user);
        }
        let app = gust_server::router(state.clone());
        Self {
            db,
            state,
            app,
            dags_dir: tempfile::tempdir().expect("dags dir"),
            logs_dir,
            users,
        }
    }

    /// A valid token for the user named after `role`.
    pub fn token(&self, role: Role) -> String {
        let user = self
            .users
            .iter()
            .find(|u| u.role == role)
            .expect("a user per role");
        self.state
            .tokens()
            .issue(&user.username, &user.id, SystemClock.now())
    }

    /// Writes `files` (name, YAML) into the DAGs folder and records the DAGs in the store, as
    /// the scheduler does; DAGs start unpaused.
    pub async fn load_dags(&self, files: &[(&str, &str)]) {
        for (name, text) in files {
            std::fs::write(self.dags_dir.path().join(name), text).expect("write DAG file");
        }
        let load = gust_dagfile::load_folder(self.dags_dir.path(), t0()).expect("load");
        assert!(load.problems.is_empty(), "{:?}", load.problems);
        let mut bag = DagBag::default();
        bag.update(load);
        gust_scheduler::sync::sync_bag(&self.db.store, &bag, t0(), false)
            .await
            .expect("sync");
    }

    /// Calls the app as `role` (None: without credentials).
    pub async fn call(
        &self,
        method: Method,
        uri: &str,
        role: Option<Role>,
        body: Option<Value>,
    ) -> Answer {
        let mut request = Request::builder().method(method).uri(uri);
        if let Some(role) = role {
            request = request.header("authorization", format!("Bearer {}", self.token(role)));
        }
        let request = match body {
            Some(body) => request
                .header("content-type", "application/json")
                .body(Body::from(body.to_string())),
            None => request.body(Body::empty()),
        }
        .expect("request");
        self.send(request).await
    }

    /// Sends a prepared request.
    pub async fn send(&self, request: Request<Body>) -> Answer {
        let response = self.app.clone().oneshot(request).await.expect("response");
        let status = response.status();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        Answer {
            status,
            json: serde_json::from_str(&text).unwrap_or(Value::Null),
            text,
            content_type,
        }
    }

    /// Triggers a run of `dag_id` named `run_id` as a user (`logical_date` null: none), and
    /// checks it was created.
    pub async fn trigger(&self, dag_id: &str, run_id: &str, logical_date: Option<&str>) {
        let answer = self
            .call(
                Method::POST,
                &format!("/api/v2/dags/{dag_id}/dagRuns"),
                Some(Role::User),
                Some(serde_json::json!({"dag_run_id": run_id, "logical_date": logical_date})),
            )
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    }

    /// Starts run `run_id` of `dag_id` as the scheduler would: the run moves to `running` and
    /// gets an instance (with no state) of each of `tasks`.
    pub async fn start_run(&self, dag_id: &str, run_id: &str, tasks: &[&str]) {
        let store = &self.db.store;
        let run = store
            .run(dag_id, run_id)
            .await
            .expect("the run is readable")
            .expect("the run exists");
        let moved = store
            .transition_run(&run, gust_core::state::DagRunState::Running, t0())
            .await
            .expect("the run is writable");
        assert!(moved, "{dag_id}/{run_id} was queued");
        store
            .create_task_instances(dag_id, run_id, tasks)
            .await
            .expect("the instances are writable");
    }

    /// `GET uri` as the least role that may read it (a viewer, or an op for variables and
    /// connections).
    pub async fn get(&self, uri: &str) -> Answer {
        let path = uri.split('?').next().unwrap_or(uri);
        let role = gust_server::auth::permissions::required_role(&Method::GET, path);
        self.call(Method::GET, uri, Some(role), None).await
    }

    /// The key the server encrypts connections and variables with.
    pub fn fernet(&self) -> &gust_store::SecretKey {
        self.state
            .fernet_key()
            .expect("the harness has a Fernet key")
    }

    pub async fn finish(self) {
        self.db.finish().await;
    }
}

/// A two-task DAG `hello` (tags `example`), scheduled daily from 2025-12-30.
pub const HELLO: &str = r#"
hello:
  schedule: "@daily"
  start_date: 2025-12-30
  tags: [example]
  params:
    name: world
  tasks:
    - task_id: say
      operator: bash
      bash_command: echo hello {{ params.name }}
    - task_id: after
      operator: bash
      bash_command: echo done
      dependencies: [say]
"#;
