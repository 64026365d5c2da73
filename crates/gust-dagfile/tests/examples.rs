//! Every example DAG shipped in examples/dags loads without a problem, and without a warning:
//! Airflow (dag-factory 1.1.0) reads each as the same DAG.

use std::path::Path;

use chrono::{TimeZone, Utc};

#[test]
fn every_example_dag_validates() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/dags");
    let load = gust_dagfile::load_folder(&root, Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap())
        .expect("examples/dags exists");
    assert!(
        load.problems.is_empty(),
        "{}",
        load.problems
            .iter()
            .map(|p| format!("{p}\n"))
            .collect::<String>()
    );
    assert!(
        load.warnings.is_empty(),
        "the examples mean the same DAGs in Airflow:\n{}",
        load.warnings
            .iter()
            .map(|w| format!("{w}\n"))
            .collect::<String>()
    );
    assert!(
        load.dags.len() >= 5,
        "expected the example DAGs, got {}",
        load.dags.len()
    );
    assert!(
        load.dags
            .iter()
            .any(|d| d.id.as_str() == "kube_operator_diamond")
    );
}
