//! `S3KeySensor` against a real S3 server (moto, tests/s3/start-moto.sh): a try pokes,
//! reschedules while the key is missing, succeeds once it is there, and times out (failed, or
//! skipped with `soft_fail`). The connection's secret never reaches the log or an outcome.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::TimeZone;
use gust_artifacts::testing::{LOGIN, SECRET, bucket_for};
use gust_core::clock::FixedClock;
use gust_core::ids::{DagId, RunId, TaskId, TryNumber};
use gust_executor::{
    Executor, LaunchSpec, Reschedules, SharedLookup, TryContext, TryEventKind, TryKey, TryOutcome,
};
use gust_sensors::SensorExecutor;
use gust_template::{MapLookup, TemplateConnection};

fn at() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc
        .with_ymd_and_hms(2024, 1, 1, 0, 0, 0)
        .single()
        .expect("a date")
}

fn lookup(endpoint: &str) -> SharedLookup {
    let conn = TemplateConnection {
        conn_id: "minio".into(),
        conn_type: "aws".into(),
        host: None,
        login: Some(LOGIN.into()),
        password: Some(SECRET.into()),
        schema: None,
        port: None,
        extra: Some(
            serde_json::json!({"endpoint_url": endpoint, "region_name": "us-east-1"}).to_string(),
        ),
        description: None,
    };
    SharedLookup(Some(Arc::new(MapLookup {
        connections: HashMap::from([("minio".to_owned(), conn)]),
        ..MapLookup::default()
    })))
}

async fn poke(
    endpoint: &str,
    dir: &std::path::Path,
    args: serde_json::Value,
    reschedules: Reschedules,
) -> TryOutcome {
    let (tx, mut events) = gust_executor::event_channel();
    let runtime = SensorExecutor::new(tx, Arc::new(FixedClock(at())), None);
    let spec = LaunchSpec {
        key: TryKey {
            dag_id: DagId::new("d").expect("id"),
            run_id: RunId::new("r").expect("id"),
            task_id: TaskId::new("wait").expect("id"),
            map_index: gust_core::mapping::UNMAPPED,
            try_number: TryNumber(1),
        },
        operator: "s3_key_sensor".into(),
        args: args.as_object().cloned().expect("an object"),
        do_xcom_push: true,
        execution_timeout: None,
        log_path: dir.join("wait.log"),
        dag_file: dir.join("d.yaml"),
        context: TryContext {
            lookup: lookup(endpoint),
            reschedules,
            ..TryContext::default()
        },
    };
    runtime.start(spec).expect("started");
    loop {
        let event = tokio::time::timeout(Duration::from_secs(30), events.recv())
            .await
            .expect("an event")
            .expect("the channel");
        if let TryEventKind::Finished(outcome) = event.kind {
            return outcome;
        }
    }
}

async fn put(endpoint: &str, bucket: &str, key: &str) {
    let artifacts = gust_artifacts::Artifacts::new(gust_artifacts::testing::credentials(endpoint));
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("f");
    std::fs::write(&file, "x").expect("file");
    artifacts
        .upload(&file, &format!("s3://{bucket}/{key}"))
        .await
        .expect("uploaded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_keys_are_waited_for_matched_and_timed_out() {
    let Some((endpoint, bucket)) = bucket_for("s3-key-sensor").await else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let exact = serde_json::json!({
        "bucket_key": format!("s3://{bucket}/in/2024-01-01/data.csv"),
        "aws_conn_id": "minio",
        "poke_interval": 30,
        "timeout": 600,
    });
    let not_yet = poke(&endpoint, dir.path(), exact.clone(), Reschedules::default()).await;
    assert_eq!(
        not_yet,
        TryOutcome::Rescheduled {
            at: at() + chrono::Duration::seconds(30)
        }
    );
    // A key under the one waited for is not it.
    put(&endpoint, &bucket, "in/2024-01-01/data.csv/part-0").await;
    assert!(matches!(
        poke(&endpoint, dir.path(), exact.clone(), Reschedules::default()).await,
        TryOutcome::Rescheduled { .. }
    ));
    put(&endpoint, &bucket, "in/2024-01-01/data.csv").await;
    assert_eq!(
        poke(&endpoint, dir.path(), exact, Reschedules::default()).await,
        TryOutcome::Succeeded { xcom: None }
    );

    let wildcard = serde_json::json!({
        "bucket_key": ["in/*/data.csv", "in/2024-01-0?/*.csv"],
        "bucket_name": bucket,
        "wildcard_match": true,
        "aws_conn_id": "minio",
    });
    assert_eq!(
        poke(&endpoint, dir.path(), wildcard, Reschedules::default()).await,
        TryOutcome::Succeeded { xcom: None }
    );
    let regex = serde_json::json!({
        "bucket_key": r"in/\d{4}-\d{2}-\d{2}/data\.json",
        "bucket_name": bucket,
        "use_regex": true,
        "aws_conn_id": "minio",
        "timeout": 60,
    });
    // Waiting since well past its timeout: failed, or skipped with soft_fail.
    let long_ago = Reschedules {
        count: 3,
        first_start: Some(at() - chrono::Duration::seconds(61)),
    };
    let TryOutcome::Failed(reason) = poke(&endpoint, dir.path(), regex.clone(), long_ago).await
    else {
        panic!("times out");
    };
    assert!(
        reason.to_string().contains("Sensor has timed out"),
        "{reason}"
    );
    let mut soft = regex.clone();
    soft["soft_fail"] = true.into();
    assert!(matches!(
        poke(&endpoint, dir.path(), soft, long_ago).await,
        TryOutcome::SkippedItself { .. }
    ));
    put(&endpoint, &bucket, "in/2024-01-01/data.json").await;
    assert_eq!(
        poke(&endpoint, dir.path(), regex, long_ago).await,
        TryOutcome::Succeeded { xcom: None }
    );

    // A bucket that does not exist is not there yet, as Airflow's `head_object` answers.
    let missing =
        serde_json::json!({"bucket_key": "s3://no-such-bucket-gust/k", "aws_conn_id": "minio"});
    let outcome = poke(&endpoint, dir.path(), missing, Reschedules::default()).await;
    assert!(
        matches!(outcome, TryOutcome::Rescheduled { .. }),
        "{outcome:?}"
    );
    let log = std::fs::read_to_string(dir.path().join("wait.log")).expect("the log");
    assert!(log.contains("Poking for key : s3://"), "{log}");
    assert!(!log.contains(SECRET));
    let unknown = serde_json::json!({"bucket_key": "s3://b/k", "aws_conn_id": "nope"});
    let TryOutcome::Failed(reason) =
        poke(&endpoint, dir.path(), unknown, Reschedules::default()).await
    else {
        panic!("fails");
    };
    assert!(
        reason
            .to_string()
            .contains("connection \"nope\" (aws_conn_id) does not exist"),
        "{reason}"
    );
}
