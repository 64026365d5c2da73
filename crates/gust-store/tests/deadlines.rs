//! Deadlines on both engines: recorded once per run and alert, claimed by exactly one caller,
//! deleted while pending when their run finishes, and listed by DAG, run and missed.

use chrono::{DateTime, TimeZone, Utc};
use gust_core::notify::{Notifier, NotifierKind};
use gust_store::{NewDeadline, Store, both_engines};

both_engines!(
    a_deadline_is_recorded_once_and_claimed_by_one_caller,
    a_runs_pending_deadlines_are_deleted_and_missed_ones_kept,
);

fn at(minute: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 1, 1, 6, minute, 0)
        .single()
        .expect("a time")
}

fn deadline(run_id: &str, alert_index: i32, minute: u32) -> NewDeadline {
    NewDeadline {
        dag_id: "etl".to_owned(),
        run_id: run_id.to_owned(),
        alert_index,
        alert_name: Some(format!("alert {alert_index}")),
        reference_type: "DagRunQueuedAtDeadline".to_owned(),
        deadline_time: at(minute),
        notifiers: vec![Notifier {
            kind: NotifierKind::Webhook,
            args: serde_json::json!({"url": "http://localhost/x", "json": {"run": "{{ run_id }}"}})
                .as_object()
                .cloned()
                .expect("a map"),
        }],
        created_at: at(0),
    }
}

async fn a_deadline_is_recorded_once_and_claimed_by_one_caller(store: Store) {
    store
        .create_deadlines(&[deadline("r1", 0, 15), deadline("r1", 1, 5)])
        .await
        .expect("recorded");
    // A restarted scheduler computes them again: what was recorded first stays.
    store
        .create_deadlines(&[deadline("r1", 0, 45)])
        .await
        .expect("recorded again");
    let pending = store.pending_deadlines("etl", "r1").await.expect("read");
    assert_eq!(pending.len(), 2);
    assert_eq!(pending[0].deadline.deadline_time, at(5), "soonest first");
    assert_eq!(pending[1].deadline, deadline("r1", 0, 15));
    assert!(!pending[1].missed);
    let id = pending[0].id;
    let (first, second) = tokio::join!(
        store.claim_deadline(id, at(6)),
        store.claim_deadline(id, at(6))
    );
    let wins = [first.expect("claimed"), second.expect("claimed")];
    assert_eq!(wins.iter().filter(|w| **w).count(), 1, "{wins:?}");
    assert!(!store.claim_deadline(id, at(7)).await.expect("claimed"));
    let left = store.pending_deadlines("etl", "r1").await.expect("read");
    assert_eq!(left.len(), 1);
    let (missed, total) = store
        .deadlines(Some("etl"), Some("r1"), Some(true), 10, 0)
        .await
        .expect("listed");
    assert_eq!((missed.len(), total), (1, 1));
    assert_eq!(missed[0].id, id);
    assert_eq!(missed[0].updated_at, at(6));
}

async fn a_runs_pending_deadlines_are_deleted_and_missed_ones_kept(store: Store) {
    store
        .create_deadlines(&[
            deadline("r1", 0, 5),
            deadline("r1", 1, 50),
            deadline("r2", 0, 5),
        ])
        .await
        .expect("recorded");
    let first = store.pending_deadlines("etl", "r1").await.expect("read")[0].id;
    assert!(store.claim_deadline(first, at(6)).await.expect("claimed"));
    assert_eq!(
        store
            .delete_pending_deadlines("etl", "r1")
            .await
            .expect("deleted"),
        1
    );
    let (all, total) = store
        .deadlines(Some("etl"), None, None, 10, 0)
        .await
        .expect("listed");
    assert_eq!(total, 2);
    let kept: Vec<(&str, bool)> = all
        .iter()
        .map(|d| (d.deadline.run_id.as_str(), d.missed))
        .collect();
    assert_eq!(kept, [("r1", true), ("r2", false)]);
    let (page, total) = store
        .deadlines(None, None, Some(false), 1, 0)
        .await
        .expect("listed");
    assert_eq!((page.len(), total), (1, 1));
    assert_eq!(page[0].deadline.run_id, "r2");
}
