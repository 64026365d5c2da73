//! Differential test against Airflow: the DAG files in tests/airflow/kpo, read by Gust and
//! built by Gust's pod builder, give the pods Airflow's KubernetesPodOperator builds for them
//! (`build_pod_request_obj`, after dag-factory loads the same files), recorded in
//! tests/airflow/kpo_pods.golden.json by tests/airflow/kpo_pods.py.
//!
//! With `GUST_AIRFLOW_PYTHON` naming the Python of a virtualenv holding Airflow, dag-factory
//! and the cncf-kubernetes provider, the golden file is written anew from Airflow first;
//! without it the checked-in file is compared, so CI needs no Airflow.
//!
//! What is set aside, as Gust documents: Airflow's bookkeeping label (`airflow_version`) and
//! Gust's try labels (a dry run has no try), the random UUID in secret volumes' names (the
//! form `secretvol` + UUID is checked), fields Airflow writes empty (`[]`, `{}`, null) and
//! `hostNetwork: false` (the API's default), which Gust leaves out.

use std::path::{Path, PathBuf};

use chrono::{TimeZone, Utc};
use gust_kube::build::{PodDefaults, PodRequest, TRY_LABEL_NAMES, TryLabels, build_pod};
use gust_operators::kubernetes_pod::PodArgs;
use serde_json::{Map, Value};

fn airflow_folder() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/airflow")
}

/// Writes the golden file anew from Airflow, when the environment names its Python.
#[allow(
    clippy::disallowed_methods,
    reason = "the test runs Airflow's Python to record its pods"
)]
fn regenerate_with_airflow() {
    let Some(python) = std::env::var_os("GUST_AIRFLOW_PYTHON") else {
        eprintln!("GUST_AIRFLOW_PYTHON is not set: comparing with the recorded Airflow pods");
        return;
    };
    let status = std::process::Command::new(python)
        .arg(airflow_folder().join("kpo_pods.py"))
        .status()
        .expect("run tests/airflow/kpo_pods.py");
    assert!(status.success(), "tests/airflow/kpo_pods.py failed");
}

/// The pods Gust builds for every `kubernetes_pod` task of the folder, by DAG and task.
fn gust_pods(defaults: &PodDefaults) -> Map<String, Value> {
    // `now` only anchors relative start dates, which these files do not use.
    let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    let load =
        gust_dagfile::load_folder(&airflow_folder().join("kpo"), now).expect("the DAG folder");
    assert!(load.problems.is_empty(), "{:?}", load.problems);
    let mut out = Map::new();
    for dag in &load.dags {
        let mut pods = Map::new();
        for task in dag.tasks().filter(|t| t.operator == "kubernetes_pod") {
            let args = PodArgs::read(&task.args).expect("valid arguments");
            let template =
                gust_kube::template::load(&args, &dag.fileloc).expect("the pod template");
            let pod = build_pod(&PodRequest {
                args: &args,
                labels: TryLabels {
                    dag_id: dag.id.as_str(),
                    task_id: task.id.as_str(),
                    run_id: "manual__2024-01-01T00:00:00+00:00",
                    try_number: 1,
                    map_index: gust_core::mapping::UNMAPPED,
                },
                template_file: template.as_ref(),
                do_xcom_push: task.settings.do_xcom_push,
                unique: "abcd1234",
                defaults,
            })
            .unwrap_or_else(|err| panic!("{}.{}: {err}", dag.id, task.id));
            pods.insert(
                task.id.to_string(),
                serde_json::to_value(pod).expect("JSON"),
            );
        }
        out.insert(dag.id.to_string(), Value::Object(pods));
    }
    out
}

/// Whether `name` is `secretvol` followed by a UUID (8-4-4-4-12 hex digits), as KPO names it.
fn is_kpo_secret_volume(name: &str) -> bool {
    let Some(uuid) = name.strip_prefix("secretvol") else {
        return false;
    };
    let groups: Vec<&str> = uuid.split('-').collect();
    groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12])
        && groups
            .iter()
            .all(|g| g.chars().all(|c| c.is_ascii_hexdigit()))
}

/// `pod` with what is set aside (see the module's comment) removed, and secret volumes named
/// `secretvol#0`, `secretvol#1`... in the order they appear.
fn comparable(mut pod: Value, side: &str) -> Value {
    if let Some(Value::Object(labels)) = pod.pointer_mut("/metadata/labels") {
        labels.remove("airflow_version");
        for name in TRY_LABEL_NAMES {
            labels.remove(name);
        }
    }
    if let Some(Value::Object(spec)) = pod.get_mut("spec")
        && spec.get("hostNetwork") == Some(&Value::Bool(false))
    {
        spec.remove("hostNetwork");
    }
    let mut secret_volumes: Vec<String> = Vec::new();
    rename_secret_volumes(&mut pod, &mut secret_volumes, side);
    prune(&mut pod);
    pod
}

fn rename_secret_volumes(value: &mut Value, seen: &mut Vec<String>, side: &str) {
    match value {
        Value::String(text) if text.starts_with("secretvol") => {
            assert!(is_kpo_secret_volume(text), "{side}: volume name {text}");
            let at = seen.iter().position(|s| s == text).unwrap_or_else(|| {
                seen.push(text.clone());
                seen.len() - 1
            });
            *text = format!("secretvol#{at}");
        }
        Value::Array(items) => items
            .iter_mut()
            .for_each(|v| rename_secret_volumes(v, seen, side)),
        Value::Object(map) => map
            .values_mut()
            .for_each(|v| rename_secret_volumes(v, seen, side)),
        _ => {}
    }
}

/// Drops nulls, empty lists and empty maps, at every depth.
fn prune(value: &mut Value) {
    match value {
        Value::Array(items) => items.iter_mut().for_each(prune),
        Value::Object(map) => {
            map.values_mut().for_each(prune);
            map.retain(|_, v| match v {
                Value::Null => false,
                Value::Array(items) => !items.is_empty(),
                Value::Object(fields) => !fields.is_empty(),
                _ => true,
            });
        }
        _ => {}
    }
}

#[test]
fn gust_builds_the_pods_airflows_kubernetes_pod_operator_builds() {
    regenerate_with_airflow();
    let golden: Value = serde_json::from_str(
        &std::fs::read_to_string(airflow_folder().join("kpo_pods.golden.json"))
            .expect("tests/airflow/kpo_pods.golden.json"),
    )
    .expect("JSON");
    let airflow = golden["pods"].as_object().expect("pods by DAG").clone();
    // The XCom sidecar's image is configuration (`[kubernetes] xcom_sidecar_image`); the
    // provider's default is the one it was recorded with.
    let sidecar_image = airflow
        .values()
        .flat_map(|pods| pods.as_object().into_iter().flat_map(|p| p.values()))
        .filter_map(|pod| pod.pointer("/spec/containers")?.as_array())
        .flatten()
        .find(|c| c["name"] == "airflow-xcom-sidecar")
        .and_then(|c| c["image"].as_str())
        .unwrap_or("alpine")
        .to_owned();
    let defaults = PodDefaults {
        xcom_sidecar_image: sidecar_image,
        ..PodDefaults::default()
    };
    let gust = gust_pods(&defaults);
    assert_eq!(
        gust.keys().collect::<Vec<_>>(),
        airflow.keys().collect::<Vec<_>>(),
        "the same DAGs"
    );
    for (dag_id, pods) in &airflow {
        let pods = pods.as_object().expect("pods by task");
        let ours = gust[dag_id].as_object().expect("pods by task");
        assert_eq!(
            ours.keys().collect::<Vec<_>>(),
            pods.keys().collect::<Vec<_>>(),
            "{dag_id}: the same pod tasks"
        );
        for (task_id, pod) in pods {
            let expected = comparable(pod.clone(), "Airflow");
            let got = comparable(ours[task_id].clone(), "Gust");
            assert_eq!(
                got,
                expected,
                "{dag_id}.{task_id}: Gust's pod (left) differs from Airflow's (right):\n{}\n{}",
                serde_json::to_string_pretty(&got).unwrap_or_default(),
                serde_json::to_string_pretty(&expected).unwrap_or_default()
            );
        }
    }
}
