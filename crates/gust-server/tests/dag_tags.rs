//! `/api/v2/dagTags`: every tag of the loaded DAGs once, sorted, filtered and paged as Airflow's.

mod common;

use axum::http::StatusCode;
use common::TestServer;
use serde_json::json;

const TAGGED: &str = r#"
etl:
  schedule: "@daily"
  tags: [nightly, Finance]
  tasks:
    - task_id: a
      operator: bash
      bash_command: "true"
train:
  schedule: "@daily"
  tags: [nightly, ml]
  tasks:
    - task_id: a
      operator: bash
      bash_command: "true"
"#;

#[tokio::test]
async fn tags_are_listed_once_sorted_filtered_and_paged() {
    let server = TestServer::sqlite().await;
    server.load_dags(&[("tagged.yaml", TAGGED)]).await;

    let all = server.get("/api/v2/dagTags").await;
    assert_eq!(all.status, StatusCode::OK, "{}", all.text);
    assert_eq!(
        all.json,
        json!({"tags": ["Finance", "ml", "nightly"], "total_entries": 3})
    );

    let reversed = server.get("/api/v2/dagTags?order_by=-name&limit=2").await;
    assert_eq!(
        reversed.json,
        json!({"tags": ["nightly", "ml"], "total_entries": 3})
    );
    let pattern = server.get("/api/v2/dagTags?tag_name_pattern=FIN").await;
    assert_eq!(pattern.json["tags"], json!(["Finance"]));
    let prefix = server
        .get("/api/v2/dagTags?tag_name_prefix_pattern=m|n")
        .await;
    assert_eq!(prefix.json["tags"], json!(["ml", "nightly"]));
    let bad_order = server.get("/api/v2/dagTags?order_by=colour").await;
    assert_eq!(bad_order.status, StatusCode::BAD_REQUEST);
    server.finish().await;
}
