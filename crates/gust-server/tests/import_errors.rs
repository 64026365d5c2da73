//! `/api/v2/importErrors`: the problems of files that did not load, with ids derived from
//! their file names.

mod common;

use axum::http::StatusCode;
use common::{HELLO, TestServer};

const BROKEN: &str = r#"
broken:
  schedule: "@daily"
  tasks:
    - task_id: a
      operator: no_such_operator
"#;

#[tokio::test]
async fn a_broken_file_is_listed_and_found_by_its_id() {
    let server = TestServer::sqlite().await;
    std::fs::write(server.dags_dir.path().join("broken.yaml"), BROKEN).unwrap();
    std::fs::write(server.dags_dir.path().join("hello.yaml"), HELLO).unwrap();
    let load = gust_dagfile::load_folder(server.dags_dir.path(), common::t0()).unwrap();
    assert!(!load.problems.is_empty());
    let mut bag = gust_dagfile::DagBag::default();
    bag.update(load);
    gust_scheduler::sync::sync_bag(&server.db.store, &bag, common::t0(), false)
        .await
        .unwrap();

    let list = server.get("/api/v2/importErrors").await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.text);
    assert_eq!(list.json["total_entries"], 1);
    let error = &list.json["import_errors"][0];
    let filename = error["filename"].as_str().unwrap();
    assert!(filename.ends_with("broken.yaml"), "{filename}");
    assert_eq!(error["bundle_name"], "dags-folder");
    assert_eq!(error["timestamp"], "2026-01-01T00:00:00Z");
    assert!(
        error["stack_trace"]
            .as_str()
            .unwrap()
            .contains("no_such_operator"),
        "{error}"
    );
    let id = error["import_error_id"].as_i64().unwrap();
    assert!(id > 0);

    let one = server.get(&format!("/api/v2/importErrors/{id}")).await;
    assert_eq!(one.status, StatusCode::OK);
    assert_eq!(&one.json, error);
    let missing = server.get("/api/v2/importErrors/1").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(
        missing.json["detail"],
        "The ImportError with import_error_id: `1` was not found"
    );
    let not_a_number = server.get("/api/v2/importErrors/abc").await;
    assert_eq!(not_a_number.status, StatusCode::UNPROCESSABLE_ENTITY);

    let filtered = server
        .get("/api/v2/importErrors?filename_pattern=hello")
        .await;
    assert_eq!(filtered.json["total_entries"], 0);
    let exact = server
        .get(&format!("/api/v2/importErrors?filename={filename}"))
        .await;
    assert_eq!(exact.json["total_entries"], 1);
    server.finish().await;
}
