//! The store's behaviour, every test run on both engines: SQLite in a temporary file and a fresh
//! PostgreSQL database on the server named by GUST_TEST_POSTGRES_URL (skipped, loudly, when the
//! variable is unset; `.ci/run` always sets it).

use chrono::{DateTime, TimeZone, Utc};
use gust_core::state::{DagRunState, TaskState};
use gust_store::{
    Connection, EngineKind, InstanceFilter, InstanceOrder, InstanceTarget, NewRun, Pool, RunType,
    Secret, SecretKey, Store, StoredDag, StoredXCom, TaskMove, TryChange, UNMAPPED,
};

use gust_store::both_engines;

both_engines!(
    migrations_are_idempotent_and_checked,
    dags_keep_their_paused_flag_across_reparses,
    a_run_is_created_once_per_id_and_once_per_scheduled_interval,
    run_states_move_by_compare_and_set,
    task_instances_move_by_compare_and_set_and_count_tries,
    xcoms_round_trip_and_are_bounded,
    variables_and_pools_round_trip,
    connection_secrets_are_encrypted_at_rest,
    scheduling_moves_record_tries_xcoms_and_logs_atomically,
    clearing_sends_a_finished_run_back_to_the_queue,
    active_previous_and_latest_scheduled_runs_are_found,
);

fn at(hour: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 1, 1, hour, 0, 0)
        .single()
        .expect("a time")
}

async fn migrations_are_idempotent_and_checked(store: Store) {
    store
        .migrate()
        .await
        .expect("a second migration is a no-op");
    assert_eq!(store.check().await.expect("current"), 17);
    assert!(matches!(
        store.kind(),
        EngineKind::Sqlite | EngineKind::Postgres
    ));
}

fn dag(id: &str, fingerprint: &str) -> StoredDag {
    StoredDag {
        dag_id: id.into(),
        fileloc: "/dags/d.yaml".into(),
        definition: serde_json::json!({"id": id}).to_string(),
        fingerprint: fingerprint.into(),
        is_paused: false,
        is_stale: false,
        last_parsed: at(1),
        last_parse_duration: Some(std::time::Duration::from_millis(1500)),
    }
}

async fn dags_keep_their_paused_flag_across_reparses(store: Store) {
    store
        .upsert_dag(&dag("d", "v1"), true)
        .await
        .expect("insert");
    assert!(
        store
            .dag("d")
            .await
            .expect("read")
            .expect("present")
            .is_paused,
        "new DAGs start paused when asked"
    );
    assert!(store.set_paused("d", false).await.expect("unpause"));
    store
        .upsert_dag(&dag("d", "v2"), true)
        .await
        .expect("update");
    let stored = store.dag("d").await.expect("read").expect("present");
    assert!(!stored.is_paused, "a re-parse keeps the user's choice");
    assert_eq!(stored.fingerprint, "v2");
    assert_eq!(stored.last_parsed, at(1));
    assert_eq!(
        stored.last_parse_duration,
        Some(std::time::Duration::from_millis(1500)),
        "how long its file took to parse"
    );
    let summary = store
        .dag_summary("d")
        .await
        .expect("read")
        .expect("present");
    assert_eq!(
        summary.last_parse_duration,
        Some(std::time::Duration::from_millis(1500))
    );
    assert!(!store.set_paused("ghost", true).await.expect("no error"));
    assert_eq!(store.dag("ghost").await.expect("read"), None);
}

fn new_run(run_id: &str, run_type: RunType, hour: u32) -> NewRun {
    NewRun {
        dag_id: "d".into(),
        run_id: run_id.into(),
        run_type,
        logical_date: at(hour),
        data_interval: (at(hour), at(hour + 1)),
        conf: serde_json::json!({"k": 1})
            .as_object()
            .cloned()
            .expect("map"),
        queued_at: at(hour + 1),
    }
}

async fn a_run_is_created_once_per_id_and_once_per_scheduled_interval(store: Store) {
    assert!(
        store
            .create_run(&new_run("scheduled__1", RunType::Scheduled, 1))
            .await
            .expect("create")
    );
    assert!(
        !store
            .create_run(&new_run("scheduled__1", RunType::Scheduled, 1))
            .await
            .expect("same id")
    );
    assert!(
        !store
            .create_run(&new_run("scheduled__other", RunType::Scheduled, 1))
            .await
            .expect("same interval")
    );
    assert!(
        store
            .create_run(&new_run("manual__1", RunType::Manual, 1))
            .await
            .expect("manual runs may share it")
    );
    let run = store
        .run("d", "scheduled__1")
        .await
        .expect("read")
        .expect("present");
    assert_eq!(
        (run.state, run.run_type, run.logical_date),
        (DagRunState::Queued, RunType::Scheduled, at(1))
    );
    assert_eq!(run.conf["k"], 1);
}

async fn run_states_move_by_compare_and_set(store: Store) {
    store
        .create_run(&new_run("r", RunType::Manual, 2))
        .await
        .expect("create");
    let queued = store.run("d", "r").await.expect("read").expect("present");
    assert!(
        store
            .transition_run(&queued, DagRunState::Running, at(3))
            .await
            .expect("move")
    );
    assert!(
        !store
            .transition_run(&queued, DagRunState::Running, at(3))
            .await
            .expect("stale"),
        "a stale read cannot win"
    );
    let running = store.run("d", "r").await.expect("read").expect("present");
    assert_eq!(
        (running.state, running.start_date, running.version),
        (DagRunState::Running, Some(at(3)), 1)
    );
    assert!(
        store
            .transition_run(&running, DagRunState::Success, at(4))
            .await
            .expect("finish")
    );
    let done = store.run("d", "r").await.expect("read").expect("present");
    assert_eq!(
        (done.state, done.start_date, done.end_date),
        (DagRunState::Success, Some(at(3)), Some(at(4)))
    );
}

async fn task_instances_move_by_compare_and_set_and_count_tries(store: Store) {
    store
        .create_task_instances("d", "r", &["a", "b"])
        .await
        .expect("create");
    store
        .create_task_instances("d", "r", &["a"])
        .await
        .expect("creating again is harmless");
    let tis = store.task_instances("d", "r").await.expect("read");
    assert_eq!(
        tis.iter()
            .map(|t| (t.task_id.as_str(), t.state))
            .collect::<Vec<_>>(),
        [("a", TaskState::NoStatus), ("b", TaskState::NoStatus)]
    );
    let a = tis[0].clone();
    assert!(
        store
            .transition_task_instance(&a, TaskState::Scheduled)
            .await
            .expect("schedule")
    );
    assert!(
        !store
            .transition_task_instance(&a, TaskState::Scheduled)
            .await
            .expect("stale")
    );
    let a = store
        .task_instances("d", "r")
        .await
        .expect("read")
        .remove(0);
    assert!(
        store
            .transition_task_instance(&a, TaskState::Queued)
            .await
            .expect("queue")
    );
    let a = store
        .task_instances("d", "r")
        .await
        .expect("read")
        .remove(0);
    assert_eq!(
        (a.state, a.try_number, a.version),
        (TaskState::Queued, 1, 2)
    );
}

async fn xcoms_round_trip_and_are_bounded(store: Store) {
    let value = serde_json::json!({"train": "s3://b/train", "n": [1, 2]});
    store
        .put_xcom("d", "r", "t", UNMAPPED, "return_value", &value)
        .await
        .expect("put");
    assert_eq!(
        store
            .xcom("d", "r", "t", UNMAPPED, "return_value")
            .await
            .expect("get"),
        Some(value)
    );
    store
        .put_xcom(
            "d",
            "r",
            "t",
            UNMAPPED,
            "return_value",
            &serde_json::json!(2),
        )
        .await
        .expect("replace");
    assert_eq!(
        store
            .xcom("d", "r", "t", UNMAPPED, "return_value")
            .await
            .expect("get"),
        Some(serde_json::json!(2))
    );
    assert_eq!(
        store
            .xcom("d", "r", "t", UNMAPPED, "other")
            .await
            .expect("get"),
        None
    );
    let huge = serde_json::Value::String("x".repeat(2 * 1024 * 1024));
    assert!(
        store
            .put_xcom("d", "r", "t", UNMAPPED, "big", &huge)
            .await
            .is_err()
    );
}

async fn variables_and_pools_round_trip(store: Store) {
    let key = SecretKey::parse(&SecretKey::generate()).expect("a generated key is valid");
    store
        .set_variable("env", "prod", Some("where we are"), &key)
        .await
        .expect("set");
    store
        .set_variable("env", "staging", None, &key)
        .await
        .expect("replace");
    assert_eq!(
        store.variable("env", &key).await.expect("get").as_deref(),
        Some("staging")
    );
    assert_eq!(store.variable_keys().await.expect("list"), ["env"]);
    assert!(store.delete_variable("env").await.expect("delete"));
    assert!(!store.delete_variable("env").await.expect("delete again"));

    let pools = store.pools().await.expect("pools");
    assert_eq!(
        pools,
        [Pool {
            name: "default_pool".into(),
            slots: 128,
            description: Some("Default pool".into())
        }]
    );
    store
        .set_pool(&Pool {
            name: "ml".into(),
            slots: 4,
            description: None,
        })
        .await
        .expect("set");
    assert_eq!(store.pools().await.expect("pools").len(), 2);
}

async fn connection_secrets_are_encrypted_at_rest(store: Store) {
    let key = SecretKey::parse(&SecretKey::generate()).expect("a generated key is valid");
    let conn = Connection {
        conn_id: "warehouse".into(),
        conn_type: "postgres".into(),
        host: Some("db".into()),
        login: Some("etl".into()),
        schema: Some("dw".into()),
        port: Some(5432),
        password: Some(Secret::new("hunter2")),
        extra: Some(Secret::new(r#"{"sslmode": "require"}"#)),
        description: None,
    };
    store.put_connection(&conn, &key).await.expect("put");
    assert_eq!(
        store.connection("warehouse", &key).await.expect("get"),
        Some(conn.clone())
    );
    let raw = store
        .raw_connection_password("warehouse")
        .await
        .expect("raw")
        .expect("stored");
    assert!(!raw.contains("hunter2"), "the password is stored encrypted");
    assert!(
        !format!("{conn:?}").contains("hunter2"),
        "Debug never shows secrets"
    );
    let other = SecretKey::parse(&SecretKey::generate()).expect("key");
    let err = store
        .connection("warehouse", &other)
        .await
        .expect_err("a wrong key cannot decrypt");
    assert!(err.to_string().contains("fernet_key"), "{err}");
    assert_eq!(
        store.connection_ids().await.expect("list"),
        [("warehouse".to_owned(), "postgres".to_owned())]
    );
    assert!(store.delete_connection("warehouse").await.expect("delete"));
}

fn a_move(task: &str, from: TaskState, version: i64, to: TaskState) -> TaskMove {
    TaskMove {
        dag_id: "d".into(),
        run_id: "r".into(),
        task_id: task.into(),
        map_index: UNMAPPED,
        from,
        version,
        to,
        next_retry_at: None,
        try_change: None,
    }
}

async fn scheduling_moves_record_tries_xcoms_and_logs_atomically(store: Store) {
    store
        .create_task_instances("d", "r", &["a", "b"])
        .await
        .expect("create");
    let queue = |task: &str| TaskMove {
        try_change: Some(TryChange::Queued {
            try_number: 1,
            rendered_args: serde_json::json!({"bash_command": "echo 1"}),
            xcoms: Vec::new(),
            log_location: format!("logs/{task}/attempt=1.log"),
            at: at(1),
        }),
        ..a_move(task, TaskState::NoStatus, 0, TaskState::Queued)
    };
    // The second move of `a` is stale (version 0 again): it is refused, the others happen.
    let done = store
        .apply_moves(&[queue("a"), queue("b"), queue("a")])
        .await
        .expect("moves");
    assert_eq!(done, [true, true, false]);
    let started = TaskMove {
        try_change: Some(TryChange::Started {
            try_number: 1,
            at: at(2),
        }),
        ..a_move("a", TaskState::Queued, 1, TaskState::Running)
    };
    let ended = TaskMove {
        try_change: Some(TryChange::Ended {
            try_number: 1,
            at: at(3),
            failure: None,
            xcoms: vec![(
                "return_value".to_owned(),
                serde_json::json!("s3://bucket/out"),
            )],
            outlets: Vec::new(),
        }),
        ..a_move("a", TaskState::Running, 2, TaskState::Success)
    };
    let retry = TaskMove {
        next_retry_at: Some(at(5)),
        try_change: Some(TryChange::Ended {
            try_number: 1,
            at: at(3),
            failure: Some("exited with code 1".into()),
            xcoms: Vec::new(),
            outlets: Vec::new(),
        }),
        ..a_move("b", TaskState::Queued, 1, TaskState::UpForRetry)
    };
    assert_eq!(store.apply_moves(&[started]).await.expect("start"), [true]);
    assert_eq!(
        store.apply_moves(&[ended, retry]).await.expect("end"),
        [true, true]
    );

    let tis = store.task_instances("d", "r").await.expect("read");
    assert_eq!(
        tis.iter()
            .map(|t| (t.task_id.as_str(), t.state, t.try_number, t.next_retry_at))
            .collect::<Vec<_>>(),
        [
            ("a", TaskState::Success, 1, None),
            ("b", TaskState::UpForRetry, 1, Some(at(5)))
        ]
    );
    let tries = store.tries_of_run("d", "r").await.expect("tries");
    assert_eq!(tries.len(), 2);
    assert_eq!(
        (tries[0].state, tries[0].start_date, tries[0].end_date),
        (TaskState::Success, Some(at(2)), Some(at(3)))
    );
    assert_eq!(
        tries[0].rendered_args,
        Some(serde_json::json!({"bash_command": "echo 1"}))
    );
    assert_eq!(tries[1].failure.as_deref(), Some("exited with code 1"));
    assert_eq!(
        store.xcoms_of_run("d", "r").await.expect("xcoms"),
        [StoredXCom {
            task_id: "a".to_owned(),
            map_index: UNMAPPED,
            key: "return_value".to_owned(),
            value: serde_json::json!("s3://bucket/out"),
        }]
    );

    // A new try of `a` drops its earlier XCom.
    let requeue = TaskMove {
        try_change: Some(TryChange::Queued {
            try_number: 2,
            rendered_args: serde_json::json!({}),
            xcoms: Vec::new(),
            log_location: "logs/a/attempt=2.log".into(),
            at: at(6),
        }),
        ..a_move("a", TaskState::Success, 3, TaskState::Queued)
    };
    assert_eq!(
        store.apply_moves(&[requeue]).await.expect("requeue"),
        [true]
    );
    assert!(
        store
            .xcoms_of_run("d", "r")
            .await
            .expect("xcoms")
            .is_empty()
    );

    // An XCom over the limit is refused before anything is written.
    let huge = TaskMove {
        try_change: Some(TryChange::Ended {
            try_number: 2,
            at: at(7),
            failure: None,
            xcoms: vec![(
                "return_value".to_owned(),
                serde_json::json!("x".repeat(gust_store::MAX_XCOM_BYTES)),
            )],
            outlets: Vec::new(),
        }),
        ..a_move("a", TaskState::Queued, 4, TaskState::Success)
    };
    assert!(store.apply_moves(&[huge]).await.is_err());
    assert_eq!(
        store.task_instances("d", "r").await.expect("read")[0].state,
        TaskState::Queued
    );
}

async fn clearing_sends_a_finished_run_back_to_the_queue(store: Store) {
    store
        .create_run(&new_run("r", RunType::Manual, 1))
        .await
        .expect("run");
    store
        .create_task_instances("d", "r", &["a", "b"])
        .await
        .expect("tis");
    let run = store.run("d", "r").await.expect("read").expect("exists");
    assert!(
        store
            .transition_run(&run, DagRunState::Failed, at(2))
            .await
            .expect("fail")
    );
    let a = a_move("a", TaskState::NoStatus, 0, TaskState::Failed);
    store.apply_moves(&[a]).await.expect("fail a");
    let cleared = store
        .clear_task_instances("d", "r", &["a".to_owned()], at(3))
        .await
        .expect("clear");
    assert_eq!(cleared, 1);
    let run = store.run("d", "r").await.expect("read").expect("exists");
    assert_eq!((run.state, run.end_date), (DagRunState::Queued, None));
    let tis = store.task_instances("d", "r").await.expect("read");
    assert_eq!(tis[0].state, TaskState::NoStatus);
    assert_eq!(
        store
            .clear_task_instances("d", "nope", &["a".to_owned()], at(3))
            .await
            .expect("clear nothing"),
        0
    );
}

async fn active_previous_and_latest_scheduled_runs_are_found(store: Store) {
    for (id, kind, hour) in [
        ("s1", RunType::Scheduled, 1),
        ("m2", RunType::Manual, 2),
        ("s3", RunType::Scheduled, 3),
    ] {
        assert!(
            store
                .create_run(&new_run(id, kind, hour))
                .await
                .expect("create")
        );
    }
    let s1 = store.run("d", "s1").await.expect("read").expect("exists");
    assert_eq!(s1.data_interval, (at(1), at(2)));
    assert!(
        store
            .transition_run(&s1, DagRunState::Success, at(2))
            .await
            .expect("finish")
    );
    let active: Vec<String> = store
        .active_runs()
        .await
        .expect("active")
        .into_iter()
        .map(|r| r.run_id)
        .collect();
    assert_eq!(active, ["m2", "s3"]);
    assert_eq!(
        store
            .previous_run("d", at(3))
            .await
            .expect("previous")
            .map(|r| r.run_id),
        Some("m2".to_owned())
    );
    assert_eq!(store.previous_run("d", at(1)).await.expect("none"), None);
    // Only s1 succeeded: it is the previous successful run of every later one, not m2.
    let successful = |hour| {
        let store = store.clone();
        async move {
            store
                .previous_successful_run("d", at(hour))
                .await
                .expect("previous successful")
                .map(|r| r.run_id)
        }
    };
    assert_eq!(successful(3).await, Some("s1".to_owned()));
    assert_eq!(successful(1).await, None);
    assert_eq!(
        store.latest_scheduled_interval("d").await.expect("latest"),
        Some((at(3), at(4)))
    );
    let listed: Vec<String> = store
        .runs_of_dag("d", 2)
        .await
        .expect("list")
        .into_iter()
        .map(|r| r.run_id)
        .collect();
    assert_eq!(listed, ["s3", "m2"]);
}

both_engines!(one_instances_consecutive_moves_commit_together_and_fail_together);

/// Moves of one instance that follow each other in a batch (scheduled then queued, started then
/// ended) are written as one: the row ends at the last state and version, the try keeps its
/// start and end, and if the first is stale none of them happens.
async fn one_instances_consecutive_moves_commit_together_and_fail_together(store: Store) {
    store
        .create_task_instances("d", "r", &["a", "b"])
        .await
        .expect("create");
    let queue_a = TaskMove {
        try_change: Some(TryChange::Queued {
            try_number: 1,
            rendered_args: serde_json::json!({}),
            xcoms: Vec::new(),
            log_location: "logs/a/attempt=1.log".into(),
            at: at(1),
        }),
        ..a_move("a", TaskState::Scheduled, 1, TaskState::Queued)
    };
    let done = store
        .apply_moves(&[
            a_move("a", TaskState::NoStatus, 0, TaskState::Scheduled),
            queue_a,
            a_move("b", TaskState::NoStatus, 0, TaskState::Scheduled),
        ])
        .await
        .expect("moves");
    assert_eq!(done, [true, true, true]);
    let start = TaskMove {
        try_change: Some(TryChange::Started {
            try_number: 1,
            at: at(2),
        }),
        ..a_move("a", TaskState::Queued, 2, TaskState::Running)
    };
    let end = TaskMove {
        try_change: Some(TryChange::Ended {
            try_number: 1,
            at: at(3),
            failure: None,
            xcoms: vec![("return_value".to_owned(), serde_json::json!(7))],
            outlets: Vec::new(),
        }),
        ..a_move("a", TaskState::Running, 3, TaskState::Success)
    };
    // `b`'s first move is stale (it is at version 1): neither of its moves happens.
    let stale = [
        a_move("b", TaskState::Scheduled, 0, TaskState::Queued),
        a_move("b", TaskState::Queued, 1, TaskState::Running),
    ];
    let done = store
        .apply_moves(&[start, end, stale[0].clone(), stale[1].clone()])
        .await
        .expect("moves");
    assert_eq!(done, [true, true, false, false]);
    let tis = store.task_instances("d", "r").await.expect("read");
    assert_eq!(
        tis.iter()
            .map(|t| (t.task_id.as_str(), t.state, t.version, t.try_number))
            .collect::<Vec<_>>(),
        [
            ("a", TaskState::Success, 4, 1),
            ("b", TaskState::Scheduled, 1, 0)
        ]
    );
    let tries = store.tries_of_run("d", "r").await.expect("tries");
    assert_eq!(
        tries
            .iter()
            .map(|t| (t.task_id.as_str(), t.state, t.start_date, t.end_date))
            .collect::<Vec<_>>(),
        [("a", TaskState::Success, Some(at(2)), Some(at(3)))]
    );
    assert_eq!(
        store.xcoms_of_run("d", "r").await.expect("xcoms"),
        [StoredXCom {
            task_id: "a".to_owned(),
            map_index: UNMAPPED,
            key: "return_value".to_owned(),
            value: serde_json::json!(7),
        }]
    );
}

both_engines!(a_deferral_is_recorded_with_its_move_and_read_back_until_the_try_resumes);

/// A try that defers records its trigger with the move to `deferred` (kwargs as the SDK sent
/// them); the deferral is read back while the instance waits on that try, and queuing the same
/// try again (its resumption) removes it, keeps its number and its XComs.
async fn a_deferral_is_recorded_with_its_move_and_read_back_until_the_try_resumes(store: Store) {
    store
        .create_task_instances("d", "r", &["a"])
        .await
        .expect("create");
    let queue = TaskMove {
        try_change: Some(TryChange::Queued {
            try_number: 1,
            rendered_args: serde_json::json!({}),
            xcoms: Vec::new(),
            log_location: "logs/a/attempt=1.log".into(),
            at: at(1),
        }),
        ..a_move("a", TaskState::Scheduled, 1, TaskState::Queued)
    };
    let start = TaskMove {
        try_change: Some(TryChange::Started {
            try_number: 1,
            at: at(1),
        }),
        ..a_move("a", TaskState::Queued, 2, TaskState::Running)
    };
    let kwargs = serde_json::json!({"moment": {"__classname__": "pendulum.datetime.DateTime", "__version__": 2, "__data__": {"timestamp": 1.5}}});
    let deferral = gust_store::StoredDeferral {
        task_id: "a".into(),
        map_index: UNMAPPED,
        try_number: 1,
        classpath: "airflow.providers.standard.triggers.temporal.DateTimeTrigger".into(),
        trigger_kwargs: kwargs,
        timeout_at: Some(at(5)),
        next_method: "execute_complete".into(),
        next_kwargs: serde_json::json!({"note": "kept"}),
        deferred_at: at(2),
    };
    let defer = TaskMove {
        try_change: Some(TryChange::Deferred {
            try_number: 1,
            at: at(2),
            deferral: Box::new(deferral.clone()),
        }),
        ..a_move("a", TaskState::Running, 3, TaskState::Deferred)
    };
    let done = store
        .apply_moves(&[
            a_move("a", TaskState::NoStatus, 0, TaskState::Scheduled),
            queue,
            start,
            defer,
        ])
        .await
        .expect("moves");
    assert_eq!(done, [true; 4]);
    store
        .put_xcom("d", "r", "a", UNMAPPED, "before", &serde_json::json!(1))
        .await
        .expect("an XCom");
    assert_eq!(
        store.deferrals_of_run("d", "r").await.expect("read"),
        [deferral]
    );
    let tries = store.tries_of_run("d", "r").await.expect("tries");
    assert_eq!(tries[0].state, TaskState::Deferred);
    assert_eq!(tries[0].end_date, Some(at(2)));
    // Its trigger fired: the same try is queued again.
    let resume = TaskMove {
        try_change: Some(TryChange::Queued {
            try_number: 1,
            rendered_args: serde_json::json!({}),
            xcoms: Vec::new(),
            log_location: "logs/a/attempt=1.log".into(),
            at: at(3),
        }),
        ..a_move("a", TaskState::Deferred, 4, TaskState::Queued)
    };
    assert_eq!(store.apply_moves(&[resume]).await.expect("moves"), [true]);
    let ti = &store.task_instances("d", "r").await.expect("read")[0];
    assert_eq!((ti.state, ti.try_number), (TaskState::Queued, 1));
    assert!(
        store
            .deferrals_of_run("d", "r")
            .await
            .expect("read")
            .is_empty()
    );
    assert_eq!(store.xcoms_of_run("d", "r").await.expect("xcoms").len(), 1);
}

/// Version 5 moves each try's log location from the `log_index` table onto the try's row: a
/// database written by version 4 keeps every location.
/// The text of one SQLite migration.
fn sqlite_migration(name: &str) -> String {
    let migrations = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/sqlite");
    std::fs::read_to_string(format!("{migrations}/{name}")).expect("sql")
}

/// A SQLite database in `dir` with only the migrations `names` applied, in that order.
async fn sqlite_migrated_to(dir: &std::path::Path, names: &[&str]) -> sqlx::SqliteConnection {
    use sqlx::Connection as _;
    let url = format!("sqlite://{}?mode=rwc", dir.join("old.db").display());
    let mut db = sqlx::SqliteConnection::connect(&url).await.expect("sqlite");
    for name in names {
        sqlx::raw_sql(&sqlite_migration(name))
            .execute(&mut db)
            .await
            .expect(name);
    }
    db
}

/// The migrations before version 11, in order.
const BEFORE_VERSION_11: [&str; 9] = [
    "0001_initial.sql",
    "0002_tries.sql",
    "0003_api.sql",
    "0004_scheduler_claims.sql",
    "0005_try_log_location.sql",
    "0006_user_ids.sql",
    "0007_variables_encrypted.sql",
    "0008_api_history.sql",
    "0009_task_reschedules.sql",
];

#[tokio::test]
async fn upgrading_to_version_5_keeps_every_trys_log_location() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut db = sqlite_migrated_to(dir.path(), &BEFORE_VERSION_11[..4]).await;
    sqlx::raw_sql(
        "INSERT INTO task_tries (dag_id, run_id, task_id, try_number, state) VALUES ('d', 'r', 't', 1, 'success'); \
         INSERT INTO task_tries (dag_id, run_id, task_id, try_number, state) VALUES ('d', 'r', 't', 2, 'running'); \
         INSERT INTO log_index (dag_id, run_id, task_id, try_number, location) VALUES ('d', 'r', 't', 1, '/logs/one.log'); \
         INSERT INTO log_index (dag_id, run_id, task_id, try_number, location) VALUES ('d', 'r', 't', 2, 's3://b/two.log');",
    )
    .execute(&mut db)
    .await
    .expect("version 4 rows");
    sqlx::raw_sql(&sqlite_migration("0005_try_log_location.sql"))
        .execute(&mut db)
        .await
        .expect("version 5");
    let locations: Vec<(i64, Option<String>)> =
        sqlx::query_as("SELECT try_number, log_location FROM task_tries ORDER BY try_number")
            .fetch_all(&mut db)
            .await
            .expect("tries");
    assert_eq!(
        locations,
        [
            (1, Some("/logs/one.log".to_owned())),
            (2, Some("s3://b/two.log".to_owned()))
        ]
    );
}

#[tokio::test]
async fn upgrading_to_version_11_keys_every_instance_by_its_map_index() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut db = sqlite_migrated_to(dir.path(), &BEFORE_VERSION_11).await;
    sqlx::raw_sql(
        "INSERT INTO task_instances (dag_id, run_id, task_id, state, try_number, version, note) VALUES ('d', 'r', 't', 'success', 1, 4, 'kept'); \
         INSERT INTO task_tries (dag_id, run_id, task_id, try_number, state, log_location) VALUES ('d', 'r', 't', 1, 'success', '/logs/t.log'); \
         INSERT INTO xcoms (dag_id, run_id, task_id, key, value) VALUES ('d', 'r', 't', 'return_value', '7'); \
         INSERT INTO task_reschedules (dag_id, run_id, task_id, try_number, number, start_date, end_date, reschedule_date) VALUES ('d', 'r', 't', 1, 1, 1, 1, 2);",
    )
    .execute(&mut db)
    .await
    .expect("version 9 rows");
    sqlx::raw_sql(&sqlite_migration("0011_map_index.sql"))
        .execute(&mut db)
        .await
        .expect("version 11");
    let indices = |table: &str| format!("SELECT map_index FROM {table}");
    for table in ["task_instances", "task_tries", "xcoms", "task_reschedules"] {
        let found: Vec<i32> = sqlx::query_scalar(&indices(table))
            .fetch_all(&mut db)
            .await
            .expect(table);
        assert_eq!(found, [UNMAPPED], "{table}: an existing row is unmapped");
    }
    let kept: (String, i64, Option<String>) =
        sqlx::query_as("SELECT state, version, note FROM task_instances")
            .fetch_one(&mut db)
            .await
            .expect("instance");
    assert_eq!(kept, ("success".to_owned(), 4, Some("kept".to_owned())));
    // Instances of one task now differ by their index alone.
    sqlx::raw_sql(
        "INSERT INTO task_instances (dag_id, run_id, task_id, map_index, state) VALUES ('d', 'r', 't', 0, 'none'); \
         INSERT INTO xcoms (dag_id, run_id, task_id, map_index, key, value) VALUES ('d', 'r', 't', 0, 'return_value', '8');",
    )
    .execute(&mut db)
    .await
    .expect("a second instance of t");
}

async fn each_mapped_instance_moves_and_keeps_its_own_try_and_xcom(store: Store) {
    store
        .create_task_instances("d", "r", &["a"])
        .await
        .expect("create");
    // Two instances of a mapped task, as the scheduler expands it.
    store
        .execute_admin(
            "INSERT INTO task_instances (dag_id, run_id, task_id, map_index, state) VALUES ('d', 'r', 'm', 0, 'none'), ('d', 'r', 'm', 1, 'none')",
        )
        .await
        .expect("expand");
    let tis = store.task_instances("d", "r").await.expect("read");
    let keys: Vec<(&str, i32)> = tis
        .iter()
        .map(|t| (t.task_id.as_str(), t.map_index))
        .collect();
    assert_eq!(keys, [("a", UNMAPPED), ("m", 0), ("m", 1)]);
    let queue = |index: i32, value: i64| {
        [
            TaskMove {
                map_index: index,
                try_change: Some(TryChange::Queued {
                    try_number: 1,
                    rendered_args: serde_json::json!({"n": value}),
                    xcoms: Vec::new(),
                    log_location: format!("m/map_index={index}/attempt=1.log"),
                    at: at(1),
                }),
                ..a_move("m", TaskState::NoStatus, 0, TaskState::Queued)
            },
            TaskMove {
                map_index: index,
                try_change: Some(TryChange::Ended {
                    try_number: 1,
                    at: at(2),
                    failure: None,
                    xcoms: vec![("return_value".to_owned(), serde_json::json!(value))],
                    outlets: Vec::new(),
                }),
                ..a_move("m", TaskState::Queued, 1, TaskState::Success)
            },
        ]
    };
    let mut moves = queue(1, 10).to_vec();
    moves.extend(queue(0, 20));
    assert_eq!(store.apply_moves(&moves).await.expect("moves"), [true; 4]);
    let tis = store.task_instances("d", "r").await.expect("read");
    let states: Vec<(i32, TaskState, i32)> = tis
        .iter()
        .map(|t| (t.map_index, t.state, t.try_number))
        .collect();
    assert_eq!(
        states,
        [
            (UNMAPPED, TaskState::NoStatus, 0),
            (0, TaskState::Success, 1),
            (1, TaskState::Success, 1)
        ]
    );
    let xcoms: Vec<(i32, serde_json::Value)> = store
        .xcoms_of_run("d", "r")
        .await
        .expect("xcoms")
        .into_iter()
        .map(|x| (x.map_index, x.value))
        .collect();
    assert_eq!(
        xcoms,
        [(0, serde_json::json!(20)), (1, serde_json::json!(10))]
    );
    for index in [0, 1] {
        assert_eq!(
            store
                .log_location("d", "r", "m", index, 1)
                .await
                .expect("log"),
            Some(format!("m/map_index={index}/attempt=1.log"))
        );
    }
    assert_eq!(
        store
            .xcom("d", "r", "m", 1, "return_value")
            .await
            .expect("xcom"),
        Some(serde_json::json!(10))
    );
    assert_eq!(
        store
            .xcom("d", "r", "m", UNMAPPED, "return_value")
            .await
            .expect("xcom"),
        None,
        "the task as a whole pushed nothing"
    );
    // Marking the task marks every instance; clearing clears every instance.
    let changed = store
        .mark_task_instances("d", "r", &["m".to_owned()], TaskState::Failed, &[], at(3))
        .await
        .expect("mark");
    assert_eq!(changed, ["m".to_owned()]);
    let cleared = store
        .clear_task_instances("d", "r", &["m".to_owned()], at(4))
        .await
        .expect("clear");
    assert_eq!(cleared, 2);
}

both_engines!(each_mapped_instance_moves_and_keeps_its_own_try_and_xcom);

async fn one_mapped_instance_is_marked_cleared_and_named_on_its_own(store: Store) {
    // Listing joins the instances' run.
    assert!(
        store
            .create_run(&new_run("r", RunType::Manual, 1))
            .await
            .expect("run")
    );
    store
        .create_task_instances("d", "r", &["m"])
        .await
        .expect("create");
    let unexpanded = store
        .task_instances("d", "r")
        .await
        .expect("read")
        .remove(0);
    assert!(
        store
            .expand_task_instance(&unexpanded, 3)
            .await
            .expect("expand")
    );
    let state_of = |tis: &[gust_store::StoredTaskInstance]| -> Vec<(i32, TaskState)> {
        tis.iter().map(|t| (t.map_index, t.state)).collect()
    };

    // Instance 1 alone is marked failed; its siblings keep their state.
    let changed = store
        .mark_instances(
            "d",
            "r",
            &[InstanceTarget::one("m", 1)],
            TaskState::Failed,
            &[],
            at(1),
        )
        .await
        .expect("mark");
    assert_eq!(changed, ["m".to_owned()]);
    let tis = store.task_instances("d", "r").await.expect("read");
    assert_eq!(
        state_of(&tis),
        [
            (0, TaskState::NoStatus),
            (1, TaskState::Failed),
            (2, TaskState::NoStatus)
        ]
    );
    // Every instance of the task: the other two move.
    store
        .mark_instances(
            "d",
            "r",
            &[InstanceTarget::all("m")],
            TaskState::Success,
            &[],
            at(2),
        )
        .await
        .expect("mark all");
    // Clearing instance 2 leaves 0 and 1 as they are.
    let cleared = store
        .clear_instances("d", "r", &[InstanceTarget::one("m", 2)], at(3))
        .await
        .expect("clear");
    assert_eq!(cleared, 1);
    let tis = store.task_instances("d", "r").await.expect("read");
    assert_eq!(
        state_of(&tis),
        [
            (0, TaskState::Success),
            (1, TaskState::Success),
            (2, TaskState::NoStatus)
        ]
    );
    assert_eq!(
        store
            .clear_instances("d", "r", &[InstanceTarget::one("m", 7)], at(3))
            .await
            .expect("clear"),
        0,
        "no instance 7"
    );

    // Names: recorded per instance, read back by both readers, sorted by name then index.
    for (index, name) in [(0, "zeta"), (2, "alpha")] {
        assert!(
            store
                .set_rendered_map_index("d", "r", "m", index, Some(name))
                .await
                .expect("name")
        );
    }
    assert!(
        !store
            .set_rendered_map_index("d", "r", "m", 9, Some("x"))
            .await
            .expect("name"),
        "no instance 9"
    );
    let names: Vec<Option<String>> = store
        .task_instances("d", "r")
        .await
        .expect("read")
        .into_iter()
        .map(|t| t.rendered_map_index)
        .collect();
    assert_eq!(
        names,
        [Some("zeta".to_owned()), None, Some("alpha".to_owned())]
    );
    let filter = InstanceFilter {
        map_indexes: vec![0, 2],
        ..InstanceFilter::default()
    };
    let (page, total) = store
        .list_task_instances(&filter, &[(InstanceOrder::RenderedMapIndex, false)], 10, 0)
        .await
        .expect("list");
    let listed: Vec<(i32, Option<&str>)> = page
        .iter()
        .map(|t| (t.map_index, t.rendered_map_index.as_deref()))
        .collect();
    assert_eq!(
        (listed, total),
        (vec![(2, Some("alpha")), (0, Some("zeta"))], 2)
    );
    let (page, _) = store
        .list_task_instances(
            &InstanceFilter::default(),
            &[(InstanceOrder::MapIndex, true)],
            10,
            0,
        )
        .await
        .expect("list");
    let indexes: Vec<i32> = page.iter().map(|t| t.map_index).collect();
    assert_eq!(indexes, [2, 1, 0]);
}

both_engines!(one_mapped_instance_is_marked_cleared_and_named_on_its_own);
