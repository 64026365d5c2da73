//! A pod task's page shows the pod its try ran as, secrets masked; a processing step's page
//! lists its artifacts.

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

/// A run of `dag_id` whose task `train` has its first try queued with `rendered` arguments.
async fn queue_try(server: &TestServer, dag_id: &str, rendered: serde_json::Value) -> &'static str {
    let store = &server.db.store;
    let run_id = "manual__2026-01-01T00:00:00+00:00";
    store
        .create_run(&NewRun {
            dag_id: dag_id.into(),
            run_id: run_id.into(),
            run_type: RunType::Manual,
            logical_date: t0(),
            data_interval: (t0(), t0()),
            conf: serde_json::Map::new(),
            queued_at: t0(),
        })
        .await
        .expect("the run is created");
    store
        .create_task_instances(dag_id, run_id, &["train"])
        .await
        .expect("its task instance is created");
    let queued = TaskMove {
        dag_id: dag_id.into(),
        run_id: run_id.into(),
        task_id: "train".into(),
        map_index: gust_store::UNMAPPED,
        from: TaskState::NoStatus,
        version: 0,
        to: TaskState::Queued,
        next_retry_at: None,
        try_change: Some(TryChange::Queued {
            try_number: 1,
            rendered_args: rendered,
            xcoms: Vec::new(),
            log_location: server
                .logs_dir
                .path()
                .join("train.log")
                .display()
                .to_string(),
            at: t0(),
        }),
    };
    let applied = store.apply_moves(&[queued]).await;
    assert_eq!(applied.expect("the move is stored"), vec![true]);
    run_id
}

#[tokio::test]
async fn a_pod_tasks_try_shows_its_manifest_with_secrets_masked() {
    let server = TestServer::sqlite().await;
    server.load_dags(&[("pods.yaml", PODS)]).await;
    let rendered = json!({
        "image": "python:3.12",
        "cmds": ["python", "-c", "print('hi')"],
        "env_vars": [{"name": "API_TOKEN", "value": "hunter2"}, {"name": "MODE", "value": "fast"}],
    });
    let run_id = queue_try(&server, "pods", rendered).await;

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

const STEPS: &str = r#"
steps:
  schedule: null
  start_date: 2025-12-30
  tasks:
    - task_id: train
      operator: processing
      image: python:3.12
      command: [python3, train.py]
      inputs:
        - {name: train, source: "s3://bucket/prep/train"}
      outputs:
        - {name: model}
"#;

#[tokio::test]
async fn a_processing_tries_page_lists_its_input_and_output_uris() {
    let server = TestServer::sqlite().await;
    server.load_dags(&[("steps.yaml", STEPS)]).await;
    let rendered = json!({
        "image": "python:3.12",
        "command": ["python3", "train.py"],
        "inputs": [{"name": "train", "source": "s3://bucket/prep/train"}],
        "outputs": [{"name": "model"}],
    });
    let run_id = queue_try(&server, "steps", rendered).await;

    let ti = server
        .get(&format!("/ui/api/dags/steps/runs/{run_id}/tasks/train"))
        .await;
    assert_eq!(ti.status, 200, "{}", ti.text);
    assert_eq!(
        ti.json["tries"][0]["artifacts"],
        json!({"inputs": [{"name": "train", "uri": "s3://bucket/prep/train"}],
               "outputs": [{"name": "model", "uri": null}]})
    );
    assert!(ti.json["tries"][0]["pod_manifest"].is_null());
    let page = server
        .get(&format!("/dags/steps/runs/{run_id}/tasks/train"))
        .await;
    assert!(page.text.contains("id=\"artifacts-card\""), "{}", page.text);
    server.finish().await;
}
