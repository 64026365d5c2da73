//! A pod task's page shows the pod its try ran as, secrets masked.

mod common;

use common::{TestServer, t0};
use gust_core::state::TaskState;
use gust_store::{NewRun, RunType, TaskMove, TryChange};
use serde_json::json;

const PODS: &str = r#"
pods:
  schedule: null
  start_date: 2025-12-30
  tasks:
    - task_id: train
      operator: kubernetes_pod
      image: python:3.12
      cmds: [python, -c, "print('hi')"]
      env_vars:
        - {name: API_TOKEN, value: "{{ var.value.token }}"}
        - {name: MODE, value: fast}
"#;

#[tokio::test]
async fn a_pod_tasks_try_shows_its_manifest_with_secrets_masked() {
    let server = TestServer::sqlite().await;
    server.load_dags(&[("pods.yaml", PODS)]).await;
    let store = &server.db.store;
    let run_id = "manual__2026-01-01T00:00:00+00:00";
    store
        .create_run(&NewRun {
            dag_id: "pods".into(),
            run_id: run_id.into(),
            run_type: RunType::Manual,
            logical_date: t0(),
            data_interval: (t0(), t0()),
            conf: serde_json::Map::new(),
            queued_at: t0(),
        })
        .await
        .unwrap();
    store
        .create_task_instances("pods", run_id, &["train"])
        .await
        .unwrap();
    let rendered = json!({
        "image": "python:3.12",
        "cmds": ["python", "-c", "print('hi')"],
        "env_vars": [{"name": "API_TOKEN", "value": "hunter2"}, {"name": "MODE", "value": "fast"}],
    });
    let queued = TaskMove {
        dag_id: "pods".into(),
        run_id: run_id.into(),
        task_id: "train".into(),
        from: TaskState::NoStatus,
        version: 0,
        to: TaskState::Queued,
        next_retry_at: None,
        try_change: Some(TryChange::Queued {
            try_number: 1,
            rendered_args: rendered,
            log_location: server
                .logs_dir
                .path()
                .join("train.log")
                .display()
                .to_string(),
            at: t0(),
        }),
    };
    assert_eq!(store.apply_moves(&[queued]).await.unwrap(), vec![true]);

    let ti = server
        .get(&format!("/ui/api/dags/pods/runs/{run_id}/tasks/train"))
        .await;
    assert_eq!(ti.status, 200, "{}", ti.text);
    let yaml = ti.json["tries"][0]["pod_manifest"]["yaml"]
        .as_str()
        .unwrap_or_else(|| panic!("a manifest: {}", ti.json["tries"][0]));
    assert!(
        yaml.contains("kind: Pod") && yaml.contains("image: python:3.12"),
        "{yaml}"
    );
    assert!(
        yaml.contains("dag_id: pods") && yaml.contains("task_id: train"),
        "{yaml}"
    );
    assert!(yaml.contains("value: fast"), "{yaml}");
    assert!(!yaml.contains("hunter2"), "secrets are masked: {yaml}");
    server.finish().await;
}
