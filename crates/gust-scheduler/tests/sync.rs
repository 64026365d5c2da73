//! Recording the DAGs in force in a real (SQLite) store.

use chrono::{TimeZone, Utc};
use gust_dagfile::DagBag;
use gust_scheduler::sync::sync_bag;
use gust_store::Store;

#[tokio::test]
async fn dags_their_pause_flags_and_import_errors_reach_the_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let dags = dir.path().join("dags");
    std::fs::create_dir_all(&dags).expect("mkdir");
    std::fs::write(dags.join("a.yaml"), "a:\n  tasks: {t: {operator: empty}}\nb:\n  is_paused_upon_creation: false\n  tasks: {t: {operator: empty}}\n").expect("write");
    std::fs::write(
        dags.join("broken.yaml"),
        "c:\n  tasks: {t: {operator: nope}}\n",
    )
    .expect("write");
    let store = Store::connect(&format!(
        "sqlite://{}",
        dir.path().join("gust.db").display()
    ))
    .await
    .expect("store");
    store.migrate().await.expect("migrate");
    let now = Utc
        .with_ymd_and_hms(2024, 1, 1, 0, 0, 0)
        .single()
        .expect("time");

    let mut bag = DagBag::default();
    bag.update(gust_dagfile::load_folder(&dags, now).expect("load"));
    sync_bag(&store, &bag, now, true).await.expect("sync");
    assert_eq!(
        store.dag_pause_flags().await.expect("flags"),
        [("a".to_owned(), true), ("b".to_owned(), false)]
    );
    let errors = store.import_errors().await.expect("errors");
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].file.ends_with("broken.yaml")
            && errors[0].problems[0].contains("unknown operator \"nope\""),
        "{errors:?}"
    );
    let a = store.dag("a").await.expect("read").expect("a");
    assert_eq!(a.fingerprint, bag.dags().next().expect("a").fingerprint);

    // A user unpauses a; then b leaves the folder and broken.yaml is fixed.
    store.set_paused("a", false).await.expect("unpause");
    std::fs::write(dags.join("a.yaml"), "a:\n  tasks: {t: {operator: empty}}\n").expect("write");
    std::fs::write(
        dags.join("broken.yaml"),
        "c:\n  tasks: {t: {operator: empty}}\n",
    )
    .expect("write");
    bag.update(gust_dagfile::load_folder(&dags, now).expect("load"));
    sync_bag(&store, &bag, now, true).await.expect("sync");
    assert_eq!(
        store.dag_pause_flags().await.expect("flags"),
        [("a".to_owned(), false), ("c".to_owned(), true)]
    );
    assert!(store.import_errors().await.expect("errors").is_empty());
}
