//! `/api/v2/assets`: assets with the DAGs and tasks that name them, events posted by users (and
//! queued for the DAGs scheduled on the asset), queued events, and the events a run consumed,
//! in Airflow 3.3's shapes; on SQLite and PostgreSQL.

mod common;

use axum::http::{Method, StatusCode};
use common::TestServer;
use gust_store::Role;
use gust_store::testing::TestDb;
use serde_json::json;

const DAGS: &str = r#"
producer:
  schedule: null
  tasks:
    make:
      operator: BashOperator
      bash_command: echo made
      inlets: ['s3://bucket/source']
      outlets: ['s3://bucket/data']
consumer:
  schedule: {datasets: "s3://bucket/data | s3://bucket/other"}
  tasks:
    use: {operator: BashOperator, bash_command: 'true'}
"#;

#[tokio::test]
async fn assets_events_and_queues_on_sqlite() {
    assets_events_and_queues(TestServer::sqlite().await).await;
}

#[tokio::test]
async fn assets_events_and_queues_on_postgres() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    assets_events_and_queues(TestServer::on(db).await).await;
}

async fn assets_events_and_queues(server: TestServer) {
    server.load_dags(&[("assets.yaml", DAGS)]).await;
    let list = server.get("/api/v2/assets?order_by=uri").await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.text);
    assert_eq!(list.json["total_entries"], 3, "{}", list.json);
    let data = &list.json["assets"][0];
    assert_eq!(data["uri"], "s3://bucket/data");
    assert_eq!(data["name"], "s3://bucket/data");
    assert_eq!(data["group"], "asset");
    assert_eq!(data["scheduled_dags"][0]["dag_id"], "consumer");
    assert_eq!(data["producing_tasks"][0]["task_id"], "make");
    assert_eq!(data["consuming_tasks"], json!([]));
    assert_eq!(data["aliases"], json!([]));
    assert_eq!(
        data["last_asset_event"],
        json!({"id": null, "timestamp": null})
    );
    let id = data["id"].as_i64().expect("an id");
    let source = &list.json["assets"][2];
    assert_eq!(source["consuming_tasks"][0]["dag_id"], "producer");

    let one = server.get(&format!("/api/v2/assets/{id}")).await;
    assert_eq!(one.json, *data);
    let missing = server.get("/api/v2/assets/999").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(
        missing.json["detail"],
        "The Asset with ID: `999` was not found"
    );

    // A viewer may not create events; a user may.
    let body = json!({"asset_id": id, "extra": {"rows": 3}});
    let refused = server
        .call(
            Method::POST,
            "/api/v2/assets/events",
            Some(Role::Viewer),
            Some(body.clone()),
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let created = server
        .call(
            Method::POST,
            "/api/v2/assets/events",
            Some(Role::User),
            Some(body),
        )
        .await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.text);
    assert_eq!(created.json["asset_id"], id);
    assert_eq!(
        created.json["extra"],
        json!({"rows": 3, "from_rest_api": true})
    );
    assert_eq!(created.json["source_dag_id"], serde_json::Value::Null);
    assert_eq!(created.json["source_map_index"], -1);
    assert_eq!(created.json["created_dagruns"], json!([]));
    let unknown = server
        .call(
            Method::POST,
            "/api/v2/assets/events",
            Some(Role::User),
            Some(json!({"asset_id": 999})),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(unknown.json["detail"], "Asset with ID: `999` was not found");

    let events = server
        .get(&format!("/api/v2/assets/events?asset_id={id}"))
        .await;
    assert_eq!(events.json["total_entries"], 1, "{}", events.text);
    assert_eq!(events.json["asset_events"][0]["uri"], "s3://bucket/data");

    // The event waits for the consumer until a scheduler makes its run.
    let queued = server
        .get(&format!("/api/v2/assets/{id}/queuedEvents"))
        .await;
    assert_eq!(queued.json["total_entries"], 1, "{}", queued.text);
    assert_eq!(queued.json["queued_events"][0]["dag_id"], "consumer");
    let for_dag = server
        .get(&format!("/api/v2/dags/consumer/assets/{id}/queuedEvents"))
        .await;
    assert_eq!(for_dag.status, StatusCode::OK, "{}", for_dag.text);
    assert_eq!(for_dag.json["asset_id"], id);
    let deleted = server
        .call(
            Method::DELETE,
            "/api/v2/dags/consumer/assets/queuedEvents",
            Some(Role::User),
            None,
        )
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.text);
    let gone = server
        .get("/api/v2/dags/consumer/assets/queuedEvents")
        .await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    assert_eq!(
        gone.json["detail"],
        "Queue event with dag_id: `consumer` was not found"
    );

    let details = server.get("/api/v2/dags/consumer/details").await;
    assert!(
        details.json["last_parse_duration"]
            .as_f64()
            .is_some_and(|s| s >= 0.0),
        "how long the file took to parse, in seconds: {}",
        details.json["last_parse_duration"]
    );
    assert_eq!(details.json["timetable_summary"], "Asset");
    assert_eq!(details.json["timetable_description"], "Triggered by assets");
    assert_eq!(
        details.json["asset_expression"]["any"][0]["asset"]["id"], id,
        "{}",
        details.json["asset_expression"]
    );

    let upstream = server
        .get("/api/v2/dags/consumer/dagRuns/nope/upstreamAssetEvents")
        .await;
    assert_eq!(upstream.status, StatusCode::NOT_FOUND);
    server.finish().await;
}
