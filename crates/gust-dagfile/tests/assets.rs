//! dag-factory's asset examples (tests/airflow/assets/) read as Airflow reads them: each DAG's
//! asset condition, whether time schedules it too, and each task's outlets and inlets are those
//! of tests/airflow/assets.golden.json, which tests/airflow/assets.py writes from Airflow 3.3.2
//! and dag-factory 1.1.0. The files dag-factory refuses are refused.

use std::collections::BTreeMap;
use std::path::Path;

use gust_core::asset::Asset;
use gust_core::schedule::Schedule;

fn asset_row(asset: &Asset) -> serde_json::Value {
    serde_json::json!([asset.name, asset.uri, asset.group])
}

#[test]
fn dag_factory_asset_examples_read_as_airflow_reads_them() {
    gust_operators::python::enable();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/airflow");
    let golden: BTreeMap<String, serde_json::Value> = serde_json::from_str(
        &std::fs::read_to_string(root.join("assets.golden.json")).expect("the golden file"),
    )
    .expect("golden JSON");
    let now = chrono::TimeZone::with_ymd_and_hms(&chrono::Utc, 2026, 1, 1, 0, 0, 0).unwrap();
    let folder = root.join("assets");
    for (file, expected) in &golden {
        // One file at a time: the examples reuse DAG ids across files.
        let load = gust_dagfile::load_paths(&[folder.join(file)], &folder, now);
        let problems: Vec<String> = load.problems.iter().map(ToString::to_string).collect();
        if let Some(refused) = expected.get("refused") {
            assert!(
                !problems.is_empty(),
                "{file}: dag-factory refuses it ({refused}), Gust did not"
            );
            continue;
        }
        assert!(problems.is_empty(), "{file}: {problems:#?}");
        let expected = expected.as_object().expect("DAGs by id");
        for (dag_id, want) in expected {
            let dag = load
                .dags
                .iter()
                .find(|d| d.id.as_str() == dag_id)
                .unwrap_or_else(|| panic!("{file}: DAG {dag_id} not loaded"));
            let settings = &dag.settings;
            let assets = settings
                .assets
                .as_ref()
                .map(|c| {
                    let mut expr = c.expression(&|_| None);
                    strip_ids(&mut expr);
                    expr
                })
                .unwrap_or(serde_json::Value::Null);
            assert_eq!(assets, want["assets"], "{file}: {dag_id}'s asset condition");
            let timetable = match (&settings.assets, &settings.schedule) {
                (Some(_), Schedule::Manual) => Some("AssetTriggeredTimetable"),
                (Some(_), _) => Some("AssetOrTimeSchedule"),
                (None, _) => None,
            };
            if let Some(timetable) = timetable {
                assert_eq!(want["timetable"], timetable, "{file}: {dag_id}'s timetable");
            }
            let mut tasks = serde_json::Map::new();
            for task in dag.tasks() {
                let (outlets, inlets) = (&task.settings.outlets, &task.settings.inlets);
                if outlets.is_empty() && inlets.is_empty() {
                    continue;
                }
                tasks.insert(
                    task.id.to_string(),
                    serde_json::json!({
                        "outlets": outlets.iter().map(asset_row).collect::<Vec<_>>(),
                        "inlets": inlets.iter().map(asset_row).collect::<Vec<_>>(),
                    }),
                );
            }
            assert_eq!(
                serde_json::Value::Object(tasks),
                want["tasks"],
                "{file}: {dag_id}'s outlets and inlets"
            );
        }
    }
}

/// Airflow's expression names each asset's id, which a DAG file does not know.
fn strip_ids(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            map.remove("id");
            map.values_mut().for_each(strip_ids);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(strip_ids),
        _ => {}
    }
}

#[test]
fn dag_factorys_file_of_datasets_in_the_dags_folder_is_no_dag_file() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/airflow/assets/datasets");
    let now = chrono::TimeZone::with_ymd_and_hms(&chrono::Utc, 2026, 1, 1, 0, 0, 0).unwrap();
    let load = gust_dagfile::load_folder(&root, now).expect("the folder");
    assert!(load.problems.is_empty(), "{:#?}", load.problems);
    assert!(load.dags.is_empty());
}
