use super::*;
use serde_json::json;

fn read(value: Value) -> Result<PodArgs, ArgumentError> {
    PodArgs::read(value.as_object().expect("an object"))
}

#[test]
fn defaults_match_kubernetes_pod_operator() {
    let args = read(json!({"image": "busybox"})).unwrap();
    assert!(args.random_name_suffix);
    assert!(args.get_logs);
    assert!(args.reattach_on_restart);
    assert!(args.log_pod_spec_on_failure);
    assert!(!args.log_events_on_failure);
    assert!(!args.hostnetwork);
    assert_eq!(args.base_container_name, "base");
    assert_eq!(args.startup_timeout_seconds, 120);
    assert_eq!(args.schedule_timeout(), 120);
    assert_eq!(args.on_finish(), OnFinishAction::DeletePod);
    assert_eq!(args.termination_message_policy, "File");
    assert_eq!(args.kubernetes_conn_id, "kubernetes_default");
    assert!(args.skip_on_exit_code.is_empty());
    assert_eq!(
        args.logged_containers(),
        ContainerChoice::Named(vec!["base".into()])
    );
}

#[test]
fn is_delete_operator_pod_maps_to_on_finish_action() {
    let keep = read(json!({"is_delete_operator_pod": false})).unwrap();
    assert_eq!(keep.on_finish(), OnFinishAction::KeepPod);
    let delete = read(json!({"is_delete_operator_pod": true})).unwrap();
    assert_eq!(delete.on_finish(), OnFinishAction::DeletePod);
    let explicit =
        read(json!({"on_finish_action": "delete_succeeded_pod", "is_delete_operator_pod": false}))
            .unwrap();
    assert_eq!(explicit.on_finish(), OnFinishAction::DeleteSucceededPod);
}

#[test]
fn env_vars_are_a_map_or_a_list_of_env_var() {
    let map = read(json!({"env_vars": {"MY_VAR": "x", "N": 3, "FLAG": true}})).unwrap();
    let names: Vec<_> = map.env_vars.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(names, ["MY_VAR", "N", "FLAG"]);
    assert_eq!(map.env_vars[1].value.as_deref(), Some("3"));
    let list = read(json!({"env_vars": [
        {"name": "A", "value": "1"},
        {"name": "B", "value_from": {"secret_key_ref": {"name": "s", "key": "k"}}},
    ]}))
    .unwrap();
    let from = list.env_vars[1].value_from.as_ref().unwrap();
    assert_eq!(from.secret_key_ref.as_ref().unwrap().key, "k");
    let err = read(json!({"env_vars": [{"name": "A"}]})).unwrap_err();
    assert_eq!(err.path, "env_vars");
}

#[test]
fn image_pull_secrets_accept_a_comma_string() {
    let args = read(json!({"image_pull_secrets": "a,b"})).unwrap();
    let names: Vec<_> = args
        .image_pull_secrets
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(names, ["a", "b"]);
    let list = read(json!({"image_pull_secrets": [{"name": "a"}]})).unwrap();
    assert_eq!(list.image_pull_secrets[0].name, "a");
}

#[test]
fn container_logs_take_true_a_name_or_names() {
    let all = read(json!({"container_logs": true})).unwrap();
    assert_eq!(all.logged_containers(), ContainerChoice::All);
    let one = read(json!({"container_logs": "side"})).unwrap();
    assert!(one.logged_containers().includes("side"));
    assert!(!one.logged_containers().includes("base"));
    let none = read(json!({"get_logs": false})).unwrap();
    assert!(!none.logged_containers().includes("base"));
}

#[test]
fn dag_factory_python_objects_are_read() {
    let args = read(json!({
        "container_resources": {
            "__type__": "kubernetes.client.models.V1ResourceRequirements",
            "limits": {"memory": "1Gi", "cpu": 2},
        },
        "tolerations": [{"__type__": "kubernetes.client.models.V1Toleration",
                         "key": "gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "affinity": {"node_affinity": {"required_during_scheduling_ignored_during_execution": {
            "node_selector_terms": [{"match_expressions": [
                {"key": "disk", "operator": "In", "values": ["ssd"]}]}]}}},
        "volume_mounts": [{"name": "data", "mount_path": "/data", "read_only": true}],
    }))
    .unwrap();
    let limits = args.container_resources.unwrap().limits.unwrap();
    assert_eq!(limits["cpu"].0, "2");
    assert_eq!(args.tolerations[0].key.as_deref(), Some("gpu"));
    assert_eq!(args.volume_mounts[0].mount_path, "/data");
    let terms = args
        .affinity
        .unwrap()
        .node_affinity
        .unwrap()
        .required_during_scheduling_ignored_during_execution
        .unwrap()
        .node_selector_terms;
    assert_eq!(terms[0].match_expressions.as_ref().unwrap()[0].key, "disk");
}

#[test]
fn a_misspelt_kubernetes_field_is_named() {
    let err = read(json!({"volume_mounts": [{"name": "d", "mountPath": "/d", "readonly": true}]}))
        .unwrap_err();
    assert_eq!(err.path, "volume_mounts[0].readonly");
    assert!(
        err.message.contains("V1VolumeMount has no such field"),
        "{err}"
    );
}

#[test]
fn a_wrong_class_is_refused() {
    let err = read(json!({"affinity": {"__type__": "kubernetes.client.models.V1Toleration"}}))
        .unwrap_err();
    assert_eq!(err.path, "affinity.__type__");
}

#[test]
fn secrets_follow_kpo_rules() {
    let args = read(json!({"secrets": [
        {"deploy_type": "env", "deploy_target": "sql_conn", "secret": "airflow-secrets", "key": "sql_alchemy_conn"},
        {"deploy_type": "volume", "deploy_target": "/etc/sql_conn", "secret": "airflow-secrets"},
        {"deploy_type": "env", "secret": "all-of-it"},
    ]}))
    .unwrap();
    assert_eq!(args.secrets.len(), 3);
    let err = read(json!({"secrets": [{"deploy_type": "volume", "secret": "s"}]})).unwrap_err();
    assert_eq!(err.path, "secrets[0].deploy_target");
    let err = read(json!({"secrets": [{"deploy_type": "file", "secret": "s"}]})).unwrap_err();
    assert!(err.path.starts_with("secrets[0]"), "{err:?}");
}

#[test]
fn an_unknown_argument_is_refused() {
    let err = read(json!({"imagee": "x"})).unwrap_err();
    assert!(err.message.contains("unknown field `imagee`"), "{err}");
}

#[test]
fn pod_runtime_info_envs_take_airflow_1_form_or_env_vars_and_name_a_bad_entry() {
    let args = read(json!({"pod_runtime_info_envs": [
        {"name": "POD_IP", "field_path": "status.podIP"},
        {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
    ]}))
    .unwrap();
    let paths: Vec<_> = args
        .pod_runtime_info_envs
        .iter()
        .map(|v| {
            let from = v.value_from.as_ref().and_then(|f| f.field_ref.as_ref());
            (v.name.as_str(), from.map(|f| f.field_path.as_str()))
        })
        .collect();
    assert_eq!(
        paths,
        [
            ("POD_IP", Some("status.podIP")),
            ("NODE", Some("spec.nodeName"))
        ]
    );
    let err = read(json!({"pod_runtime_info_envs": [{"name": "X", "field_path": 3}]})).unwrap_err();
    assert!(err.to_string().contains("pod_runtime_info_envs"), "{err}");
    assert!(err.to_string().contains("[0]"), "{err}");
}
