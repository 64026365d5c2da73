//! Assets in the store, on both engines: references recorded per DAG, events emitted with a
//! task's success and queued for unpaused consumers, asset-triggered runs created once per set
//! of queued events with the events they consume.

use std::collections::BTreeSet;

use chrono::{DateTime, TimeZone, Utc};
use gust_core::asset::Asset;
use gust_core::state::TaskState;
use gust_store::{
    AssetEventFilter, AssetRef, AssetRefKind, NewAssetEvent, NewRun, RunType, Store, StoredDag,
    TaskMove, TryChange, both_engines,
};

both_engines!(
    references_are_recorded_per_dag_and_keep_their_first_time,
    a_successful_try_emits_its_outlets_and_queues_them_for_unpaused_consumers,
    an_asset_triggered_run_consumes_its_queue_once,
    events_are_listed_filtered_and_paged,
);

fn at(minute: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 1, 1, 0, minute, 0)
        .single()
        .expect("a time")
}

fn asset(uri: &str) -> Asset {
    Asset::from_uri(uri).expect("an asset")
}

async fn add_dag(store: &Store, id: &str, paused: bool) {
    let dag = StoredDag {
        dag_id: id.into(),
        fileloc: "/dags/d.yaml".into(),
        definition: "{}".into(),
        fingerprint: "f".into(),
        is_paused: false,
        is_stale: false,
        last_parsed: at(0),
        last_parse_duration: None,
    };
    store.upsert_dag(&dag, paused).await.expect("a DAG");
}

fn schedule_on(uris: &[&str]) -> BTreeSet<AssetRef> {
    uris.iter()
        .map(|uri| AssetRef {
            asset: asset(uri),
            task_id: String::new(),
            kind: AssetRefKind::Schedule,
        })
        .collect()
}

async fn references_are_recorded_per_dag_and_keep_their_first_time(store: Store) {
    add_dag(&store, "consumer", false).await;
    store
        .record_dag_assets(
            "consumer",
            &schedule_on(&["s3://bucket/a", "s3://bucket/b"]),
            at(1),
        )
        .await
        .expect("recorded");
    // Recorded again later with one asset less: the kept one keeps its first time.
    store
        .record_dag_assets("consumer", &schedule_on(&["s3://bucket/a"]), at(5))
        .await
        .expect("recorded again");
    let refs = store.asset_references().await.expect("read");
    assert_eq!(refs.len(), 1, "{refs:?}");
    assert_eq!(refs[0].created_at, at(1));
    assert_eq!(refs[0].kind, AssetRefKind::Schedule);
    let assets = store.assets().await.expect("assets");
    assert_eq!(
        assets.iter().map(|a| a.uri.as_str()).collect::<Vec<_>>(),
        ["s3://bucket/a", "s3://bucket/b"],
        "an asset stays once seen"
    );
}

fn ended(task: &str, outlets: Vec<NewAssetEvent>) -> TaskMove {
    TaskMove {
        dag_id: "producer".into(),
        run_id: "r".into(),
        task_id: task.into(),
        map_index: -1,
        from: TaskState::Running,
        version: 0,
        to: TaskState::Success,
        next_retry_at: None,
        try_change: Some(TryChange::Ended {
            try_number: 1,
            at: at(3),
            failure: None,
            xcoms: Vec::new(),
            outlets,
        }),
    }
}

fn emitted(uri: &str, minute: u32) -> NewAssetEvent {
    NewAssetEvent {
        asset: asset(uri),
        extra: serde_json::Map::new(),
        source: Some(("producer".into(), "r".into(), "t".into())),
        aliases: Vec::new(),
        timestamp: at(minute),
    }
}

async fn a_successful_try_emits_its_outlets_and_queues_them_for_unpaused_consumers(store: Store) {
    add_dag(&store, "consumer", false).await;
    add_dag(&store, "paused", true).await;
    for dag in ["consumer", "paused"] {
        store
            .record_dag_assets(dag, &schedule_on(&["s3://bucket/a"]), at(0))
            .await
            .expect("recorded");
    }
    store
        .create_task_instances("producer", "r", &["t"])
        .await
        .expect("instances");
    // The instance is not running: the move is refused, and nothing is emitted.
    let done = store
        .apply_moves(&[ended("t", vec![emitted("s3://bucket/a", 3)])])
        .await
        .expect("moves");
    assert_eq!(done, [false]);
    let (events, total) = store
        .asset_events(&AssetEventFilter::default(), "timestamp", 10, 0)
        .await
        .expect("events");
    assert!(events.is_empty() && total == 0);

    let to_running = |from, version, to| TaskMove {
        dag_id: "producer".into(),
        run_id: "r".into(),
        task_id: "t".into(),
        map_index: -1,
        from,
        version,
        to,
        next_retry_at: None,
        try_change: None,
    };
    let moves = [
        to_running(TaskState::NoStatus, 0, TaskState::Scheduled),
        to_running(TaskState::Scheduled, 1, TaskState::Queued),
        to_running(TaskState::Queued, 2, TaskState::Running),
    ];
    store.apply_moves(&moves).await.expect("to running");
    let mut success = ended(
        "t",
        vec![emitted("s3://bucket/a", 3), emitted("s3://bucket/new", 3)],
    );
    success.version = 3;
    assert_eq!(store.apply_moves(&[success]).await.expect("end"), [true]);
    let (events, total) = store
        .asset_events(&AssetEventFilter::default(), "timestamp", 10, 0)
        .await
        .expect("events");
    assert_eq!(total, 2);
    assert_eq!(events[0].source_task_id.as_deref(), Some("t"));
    assert_eq!(events[0].source_map_index, -1);
    let queued = store.queued_asset_events(None, None).await.expect("queued");
    assert_eq!(
        queued.iter().map(|q| q.dag_id.as_str()).collect::<Vec<_>>(),
        ["consumer"],
        "a paused DAG gets no queued event"
    );
}

async fn an_asset_triggered_run_consumes_its_queue_once(store: Store) {
    add_dag(&store, "consumer", false).await;
    store
        .record_dag_assets(
            "consumer",
            &schedule_on(&["s3://bucket/a", "s3://bucket/b"]),
            at(0),
        )
        .await
        .expect("recorded");
    for (uri, minute) in [
        ("s3://bucket/a", 1),
        ("s3://bucket/a", 2),
        ("s3://bucket/b", 3),
    ] {
        let mut event = emitted(uri, minute);
        event.source = None;
        store.create_asset_events(&[event]).await.expect("events");
    }
    let queued = store
        .queued_asset_events(Some("consumer"), None)
        .await
        .expect("queued");
    assert_eq!(queued.len(), 2);
    // The queue row keeps the first event's time.
    assert_eq!(queued[0].created_at, at(1));
    let ids: Vec<i64> = queued.iter().map(|q| q.asset_id).collect();
    let run = NewRun {
        dag_id: "consumer".into(),
        run_id: "asset_triggered__x".into(),
        run_type: RunType::AssetTriggered,
        logical_date: at(3),
        data_interval: (at(3), at(3)),
        conf: serde_json::Map::new(),
        queued_at: at(4),
    };
    assert!(
        store
            .create_asset_triggered_run(&run, &ids, false)
            .await
            .expect("created")
    );
    // A second scheduler acting on the same rows makes nothing.
    let again = NewRun {
        run_id: "asset_triggered__y".into(),
        ..run.clone()
    };
    assert!(
        !store
            .create_asset_triggered_run(&again, &ids, false)
            .await
            .expect("refused")
    );
    assert!(
        store
            .run("consumer", "asset_triggered__y")
            .await
            .expect("read")
            .is_none()
    );
    let consumed = store
        .run_asset_events("consumer", "asset_triggered__x")
        .await
        .expect("consumed");
    assert_eq!(
        consumed
            .iter()
            .map(|e| (e.uri.as_str(), e.timestamp))
            .collect::<Vec<_>>(),
        [
            ("s3://bucket/a", at(1)),
            ("s3://bucket/a", at(2)),
            ("s3://bucket/b", at(3))
        ]
    );
    let stored = store
        .run("consumer", "asset_triggered__x")
        .await
        .expect("read")
        .expect("the run");
    assert_eq!(stored.run_type, RunType::AssetTriggered);
    let runs = store
        .consuming_runs(&[consumed[0].id, consumed[2].id])
        .await
        .expect("consumers");
    assert_eq!(
        runs.iter().map(|r| r.triggering).collect::<Vec<_>>(),
        [false, true],
        "the newest consumed event triggered the run"
    );

    // A later event is consumed by the next run alone.
    let mut later = emitted("s3://bucket/b", 10);
    later.source = None;
    store.create_asset_events(&[later]).await.expect("event");
    let queued = store
        .queued_asset_events(Some("consumer"), None)
        .await
        .expect("queued");
    let next = NewRun {
        run_id: "asset_triggered__z".into(),
        logical_date: at(10),
        ..run
    };
    let ids: Vec<i64> = queued.iter().map(|q| q.asset_id).collect();
    assert!(
        store
            .create_asset_triggered_run(&next, &ids, false)
            .await
            .expect("created")
    );
    let consumed = store
        .run_asset_events("consumer", "asset_triggered__z")
        .await
        .expect("consumed");
    assert_eq!(consumed.len(), 1);
    assert_eq!(consumed[0].timestamp, at(10));
}

async fn events_are_listed_filtered_and_paged(store: Store) {
    let events: Vec<NewAssetEvent> = (1..=5)
        .map(|m| {
            emitted(
                if m % 2 == 0 {
                    "s3://bucket/even"
                } else {
                    "s3://bucket/odd"
                },
                m,
            )
        })
        .collect();
    store.create_asset_events(&events).await.expect("events");
    let odd = store.assets().await.expect("assets")[0].id;
    let filter = AssetEventFilter {
        asset_id: Some(odd),
        timestamp_gte: Some(at(2)),
        ..AssetEventFilter::default()
    };
    let (page, total) = store
        .asset_events(&filter, "-timestamp", 1, 0)
        .await
        .expect("events");
    assert_eq!(total, 2);
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].timestamp, at(5));
    let last = store.last_asset_events().await.expect("last");
    assert_eq!(last.get(&odd).map(|(_, t)| *t), Some(at(5)));
    assert_eq!(
        store
            .delete_queued_asset_events(None, Some(odd), None)
            .await
            .expect("deleted"),
        0,
        "no DAG is scheduled on it"
    );
}

both_engines!(two_schedulers_racing_for_one_queue_make_one_run);

/// Two schedulers that read the same queued events at once (as two PostgreSQL schedulers might
/// during a claim hand-over) try to create their runs together: exactly one run is made.
async fn two_schedulers_racing_for_one_queue_make_one_run(store: Store) {
    add_dag(&store, "consumer", false).await;
    store
        .record_dag_assets("consumer", &schedule_on(&["s3://bucket/a"]), at(0))
        .await
        .expect("recorded");
    let mut event = emitted("s3://bucket/a", 1);
    event.source = None;
    store.create_asset_events(&[event]).await.expect("event");
    let ids: Vec<i64> = store
        .queued_asset_events(Some("consumer"), None)
        .await
        .expect("queued")
        .iter()
        .map(|q| q.asset_id)
        .collect();
    let run = |id: &str| NewRun {
        dag_id: "consumer".into(),
        run_id: id.into(),
        run_type: RunType::AssetTriggered,
        logical_date: at(1),
        data_interval: (at(1), at(1)),
        conf: serde_json::Map::new(),
        queued_at: at(2),
    };
    let (first, second) = (run("asset_triggered__one"), run("asset_triggered__two"));
    let (a, b) = tokio::join!(
        store.create_asset_triggered_run(&first, &ids, false),
        store.create_asset_triggered_run(&second, &ids, false)
    );
    let made = [a.unwrap_or(false), b.unwrap_or(false)];
    assert_eq!(made.iter().filter(|m| **m).count(), 1, "{made:?}");
    let runs = store.runs_of_dag("consumer", 10).await.expect("runs");
    assert_eq!(runs.len(), 1, "{runs:?}");
}
