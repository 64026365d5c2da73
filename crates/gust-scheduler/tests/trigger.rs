//! Manual runs created through the store, on SQLite and on PostgreSQL: ids in Airflow 3.3's form,
//! never colliding.

use chrono::{TimeZone, Utc};
use gust_core::dag::{Dag, DagSettings};
use gust_core::ids::DagId;
use gust_scheduler::trigger::{TriggerError, trigger};
use gust_store::{Store, both_engines};

fn dag() -> Dag {
    Dag::new(
        DagId::new("d").expect("id"),
        DagSettings::default(),
        indexmap::IndexMap::new(),
        indexmap::IndexMap::new(),
        "d.yaml".into(),
    )
    .expect("a DAG")
}

async fn triggers_at_the_same_instant_get_distinct_ids_named_after_it(store: Store) {
    let now = Utc.with_ymd_and_hms(2026, 12, 5, 10, 0, 0).unwrap()
        + chrono::Duration::microseconds(123_456);
    let logical = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap();
    let conf = serde_json::Map::new;
    let first = trigger(&store, &dag(), conf(), None, logical, now)
        .await
        .expect("first");
    let second = trigger(&store, &dag(), conf(), None, logical, now)
        .await
        .expect("second");
    assert_eq!(first, "manual__2026-12-05T10:00:00.123456+00:00");
    assert_eq!(second, "manual__2026-12-05T10:00:00.123457+00:00");
    let run = store.run("d", &second).await.expect("read").expect("run");
    assert_eq!(
        run.logical_date, logical,
        "the logical date is the one asked for"
    );
    // A run id the user gives is theirs: taken is an error, not a different id.
    let given = trigger(
        &store,
        &dag(),
        conf(),
        Some(gust_core::ids::RunId::new(first.clone()).expect("id")),
        logical,
        now,
    )
    .await;
    assert!(
        matches!(given, Err(TriggerError::Exists { ref run_id, .. }) if *run_id == first),
        "{given:?}"
    );
}

both_engines!(triggers_at_the_same_instant_get_distinct_ids_named_after_it);
