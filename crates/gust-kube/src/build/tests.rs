//! Golden manifests: for each set of arguments, the pod KubernetesPodOperator (cncf.kubernetes
//! provider, `build_pod_request_obj`) builds, apart from Airflow's own bookkeeping labels
//! (`airflow_version`, `airflow_kpo_in_cluster`) and random name parts.

use super::*;
use gust_operators::kubernetes_pod::PodArgs;
use serde_json::json;

const TRY: TryLabels<'static> = TryLabels {
    dag_id: "seed_dag",
    task_id: "passing-task",
    run_id: "manual__2024-01-01T00:00:00+00:00",
    try_number: 1,
    map_index: gust_core::mapping::UNMAPPED,
};

fn args(value: Value) -> PodArgs {
    PodArgs::read(value.as_object().expect("an object")).expect("valid arguments")
}

fn build(args: &PodArgs, xcom: bool, template: Option<&Value>) -> Result<Value, BuildError> {
    let defaults = PodDefaults::default();
    let pod = build_pod(&PodRequest {
        args,
        labels: TRY,
        template_file: template,
        do_xcom_push: xcom,
        unique: "abcd1234",
        defaults: &defaults,
    })?;
    Ok(serde_json::to_value(pod).expect("serializable"))
}

fn try_labels_with(extra: Value) -> Value {
    let mut labels = json!({
        "dag_id": "seed_dag",
        "task_id": "passing-task",
        "run_id": names::safe_label_value("manual__2024-01-01T00:00:00+00:00"),
        "kubernetes_pod_operator": "True",
        "try_number": "1",
        "app.kubernetes.io/managed-by": "gust",
    });
    if let (Value::Object(labels), Value::Object(extra)) = (&mut labels, extra) {
        labels.extend(extra);
    }
    labels
}

#[test]
fn the_seed_passing_pod_is_kpos_pod() {
    // KubernetesPodOperator(namespace='default', image="python:3.6", cmds=["python","-c"],
    //   arguments=["print('hello world')"], labels={"foo": "bar"}, name="passing-test",
    //   task_id="passing-task", get_logs=True)
    let given = args(json!({
        "namespace": "default",
        "image": "python:3.6",
        "cmds": ["python", "-c"],
        "arguments": ["print('hello world')"],
        "labels": {"foo": "bar"},
        "name": "passing-test",
        "get_logs": true,
    }));
    let pod = build(&given, false, None).unwrap();
    assert_eq!(
        pod,
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": "passing-test-abcd1234",
                "namespace": "default",
                "labels": try_labels_with(json!({"foo": "bar"})),
            },
            "spec": {
                "containers": [{
                    "name": "base",
                    "image": "python:3.6",
                    "command": ["python", "-c"],
                    "args": ["print('hello world')"],
                    "terminationMessagePolicy": "File",
                }],
                "restartPolicy": "Never",
            },
        })
    );
}

#[test]
fn every_argument_reaches_the_manifest_in_kpos_order() {
    let given = json!({
        "image": "registry.example/app:1",
        "name": "All_Args",
        "namespace": "ml",
        "cmds": ["run"],
        "arguments": ["--fast"],
        "ports": [{"name": "http", "container_port": 8080}],
        "env_vars": {"MODE": "train", "EPOCHS": 3},
        "env_from": [{"config_map_ref": {"name": "shared-env"}}],
        "secrets": [
            {"deploy_type": "env", "deploy_target": "sql_conn", "secret": "airflow-secrets", "key": "sql_alchemy_conn"},
            {"deploy_type": "env", "secret": "all-keys"},
            {"deploy_type": "volume", "deploy_target": "/etc/sql_conn", "secret": "airflow-secrets",
             "items": [{"key": "sql_alchemy_conn", "path": "conn"}]},
        ],
        "configmaps": ["cm-a", "cm-b"],
        "volumes": [{"name": "data", "persistent_volume_claim": {"claim_name": "data-pvc"}}],
        "volume_mounts": [{"name": "data", "mount_path": "/data", "read_only": true}],
        "labels": {"team": "ml"},
        "annotations": {"owner": "ml-team"},
        "container_resources": {"limits": {"memory": "2Gi", "cpu": 1}, "requests": {"cpu": "500m"}},
        "affinity": {"node_affinity": {"required_during_scheduling_ignored_during_execution": {
            "node_selector_terms": [{"match_expressions": [
                {"key": "disk", "operator": "In", "values": ["ssd"]}]}]}}},
        "node_selector": {"pool": "gpu"},
        "tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "image_pull_policy": "Always",
        "image_pull_secrets": "regcred,other",
        "service_account_name": "runner",
        "automount_service_account_token": false,
        "hostnetwork": true,
        "host_aliases": [{"ip": "10.0.0.1", "hostnames": ["db"]}],
        "dnspolicy": "ClusterFirstWithHostNet",
        "dns_config": {"nameservers": ["1.1.1.1"]},
        "hostname": "trainer",
        "subdomain": "jobs",
        "schedulername": "volcano",
        "security_context": {"run_as_user": 1000, "fs_group": 2000},
        "container_security_context": {"allow_privilege_escalation": false},
        "priority_class_name": "high",
        "termination_grace_period": 10,
        "active_deadline_seconds": 3600,
        "init_containers": [{"name": "fetch", "image": "busybox", "command": ["true"]}],
        "termination_message_policy": "FallbackToLogsOnError",
        "random_name_suffix": false,
    });
    let more = json!({
        "runtime_class_name": "gvisor",
        "pod_runtime_info_envs": [
            {"name": "POD_IP", "field_path": "status.podIP"},
            {"__type__": "kubernetes.client.models.V1EnvVar", "name": "NODE",
             "value_from": {"field_ref": {"field_path": "spec.nodeName"}}},
        ],
        "xcom_sidecar_container_security_context": {"run_as_user": 65534},
    });
    let mut given = given;
    if let (Value::Object(given), Value::Object(more)) = (&mut given, more) {
        given.extend(more);
    }
    let given = args(given);
    let pod = build(&given, true, None).unwrap();
    // KPO: `secretvol` + a UUID.
    let secret_volume = format!("secretvol{}", names::uuid_from("abcd1234", 2));
    let expected = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "all-args",
            "namespace": "ml",
            "labels": try_labels_with(json!({"team": "ml"})),
            "annotations": {"owner": "ml-team"},
        },
        "spec": {
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [
                    {"key": "disk", "operator": "In", "values": ["ssd"]}]}]}}},
            "automountServiceAccountToken": false,
            "activeDeadlineSeconds": 3600,
            "containers": [
                {
                    "name": "base",
                    "image": "registry.example/app:1",
                    "command": ["run"],
                    "args": ["--fast"],
                    "ports": [{"name": "http", "containerPort": 8080}],
                    "imagePullPolicy": "Always",
                    "resources": {"limits": {"cpu": "1", "memory": "2Gi"}, "requests": {"cpu": "500m"}},
                    "volumeMounts": [
                        {"name": "xcom", "mountPath": "/airflow/xcom"},
                        {"name": "data", "mountPath": "/data", "readOnly": true},
                        {"name": secret_volume, "mountPath": "/etc/sql_conn", "readOnly": true},
                    ],
                    "env": [
                        {"name": "MODE", "value": "train"},
                        {"name": "EPOCHS", "value": "3"},
                        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                        {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                        {"name": "SQL_CONN", "valueFrom": {"secretKeyRef": {"name": "airflow-secrets", "key": "sql_alchemy_conn"}}},
                    ],
                    "envFrom": [
                        {"configMapRef": {"name": "shared-env"}},
                        {"configMapRef": {"name": "cm-a"}},
                        {"configMapRef": {"name": "cm-b"}},
                        {"secretRef": {"name": "all-keys"}},
                    ],
                    "securityContext": {"allowPrivilegeEscalation": false},
                    "terminationMessagePolicy": "FallbackToLogsOnError",
                },
                {
                    "name": "airflow-xcom-sidecar",
                    "image": "alpine",
                    "command": ["sh", "-c", "trap \"exit 0\" INT; while true; do sleep 1; done;"],
                    "volumeMounts": [{"name": "xcom", "mountPath": "/airflow/xcom"}],
                    "resources": {"requests": {"cpu": "1m", "memory": "10Mi"}},
                    "securityContext": {"runAsUser": 65534},
                },
            ],
            "dnsConfig": {"nameservers": ["1.1.1.1"]},
            "dnsPolicy": "ClusterFirstWithHostNet",
            "hostAliases": [{"ip": "10.0.0.1", "hostnames": ["db"]}],
            "hostNetwork": true,
            "hostname": "trainer",
            "imagePullSecrets": [{"name": "regcred"}, {"name": "other"}],
            "initContainers": [{"name": "fetch", "image": "busybox", "command": ["true"]}],
            "nodeSelector": {"pool": "gpu"},
            "priorityClassName": "high",
            "restartPolicy": "Never",
            "runtimeClassName": "gvisor",
            "schedulerName": "volcano",
            "securityContext": {"runAsUser": 1000, "fsGroup": 2000},
            "serviceAccountName": "runner",
            "subdomain": "jobs",
            "terminationGracePeriodSeconds": 10,
            "tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}],
            "volumes": [
                {"name": "xcom", "emptyDir": {}},
                {"name": "data", "persistentVolumeClaim": {"claimName": "data-pvc"}},
                {"name": secret_volume, "secret": {"secretName": "airflow-secrets",
                    "items": [{"key": "sql_alchemy_conn", "path": "conn"}]}},
            ],
        },
    });
    assert_eq!(pod, expected);
}

#[test]
fn arguments_override_full_pod_spec_which_overrides_the_template() {
    let template = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "from-template", "namespace": "tmpl-ns", "labels": {"a": "t", "b": "t"}},
        "spec": {
            "containers": [
                {"name": "base", "image": "tmpl:1", "env": [{"name": "FROM_T", "value": "1"}],
                 "resources": {"limits": {"memory": "1Gi"}}},
                {"name": "proxy", "image": "envoy"},
            ],
            "volumes": [{"name": "tmpl-vol", "emptyDir": {}}],
            "serviceAccountName": "tmpl-sa",
            "nodeSelector": {"from": "template"},
        },
    });
    let given = args(json!({
        "image": "args:1",
        "env_vars": {"FROM_ARGS": "1"},
        "labels": {"b": "args"},
        "volumes": [{"name": "args-vol", "emptyDir": {}}],
        "full_pod_spec": {
            "metadata": {"labels": {"c": "full"}},
            "spec": {"containers": [{"name": "base", "image": "full:1", "args": ["from-full"]}],
                     "serviceAccountName": "full-sa"},
        },
    }));
    let pod = build(&given, false, Some(&template)).unwrap();
    assert_eq!(pod["metadata"]["name"], "from-template-abcd1234");
    assert_eq!(pod["metadata"]["namespace"], "tmpl-ns");
    let labels = &pod["metadata"]["labels"];
    assert_eq!(
        (&labels["a"], &labels["b"], &labels["c"]),
        (&json!("t"), &json!("args"), &json!("full"))
    );
    let base = &pod["spec"]["containers"][0];
    assert_eq!(base["image"], "args:1");
    assert_eq!(base["args"], json!(["from-full"]));
    assert_eq!(base["resources"], json!({"limits": {"memory": "1Gi"}}));
    assert_eq!(
        base["env"],
        json!([{"name": "FROM_T", "value": "1"}, {"name": "FROM_ARGS", "value": "1"}])
    );
    assert_eq!(pod["spec"]["containers"][1]["name"], "proxy");
    assert_eq!(pod["spec"]["serviceAccountName"], "full-sa");
    assert_eq!(pod["spec"]["nodeSelector"], json!({"from": "template"}));
    assert_eq!(
        pod["spec"]["volumes"],
        json!([{"name": "tmpl-vol", "emptyDir": {}}, {"name": "args-vol", "emptyDir": {}}])
    );
}

#[test]
fn a_template_in_python_client_form_is_read() {
    let template = json!({"spec": {"containers": [{"name": "base", "image": "t:1",
        "image_pull_policy": "Never"}], "service_account_name": "sa"}});
    let pod = build(&args(json!({})), false, Some(&template)).unwrap();
    assert_eq!(pod["spec"]["containers"][0]["imagePullPolicy"], "Never");
    assert_eq!(pod["spec"]["serviceAccountName"], "sa");
}

#[test]
fn names_come_from_the_task_id_without_a_name() {
    let pod = build(&args(json!({"image": "x"})), false, None).unwrap();
    assert_eq!(pod["metadata"]["name"], "passing-task-abcd1234");
    let plain = build(
        &args(json!({"image": "x", "random_name_suffix": false})),
        false,
        None,
    )
    .unwrap();
    assert_eq!(plain["metadata"]["name"], "passing-task");
}

#[test]
fn namespace_falls_back_to_the_connection_then_the_scheduler_then_default() {
    let given = args(json!({"image": "x"}));
    let with = |namespace: Option<&str>, own: Option<&str>| {
        let defaults = PodDefaults {
            namespace: namespace.map(str::to_owned),
            own_namespace: own.map(str::to_owned),
            ..PodDefaults::default()
        };
        let pod = build_pod(&PodRequest {
            args: &given,
            labels: TRY,
            template_file: None,
            do_xcom_push: false,
            unique: "abcd1234",
            defaults: &defaults,
        })
        .unwrap();
        pod.metadata.namespace.unwrap()
    };
    assert_eq!(with(Some("conn-ns"), Some("own")), "conn-ns");
    assert_eq!(with(None, Some("own")), "own");
    assert_eq!(with(None, None), "default");
}

#[test]
fn missing_image_and_bad_names_are_clear_errors() {
    let err = build(&args(json!({})), false, None).unwrap_err();
    assert!(
        matches!(err, BuildError::NoImage(ref c) if c == "base"),
        "{err}"
    );
    let err = build(
        &args(json!({"image": "x", "name": "trailing_", "random_name_suffix": false})),
        false,
        None,
    )
    .unwrap_err();
    assert!(err.to_string().contains("\"trailing-\""), "{err}");
}

#[test]
fn the_xcom_sidecar_image_and_resources_are_configurable() {
    let given = args(json!({"image": "x"}));
    let defaults = PodDefaults {
        xcom_sidecar_image: "registry.local/alpine:3".into(),
        ..PodDefaults::default()
    };
    let pod = build_pod(&PodRequest {
        args: &given,
        labels: TRY,
        template_file: None,
        do_xcom_push: true,
        unique: "abcd1234",
        defaults: &defaults,
    })
    .unwrap();
    let containers = pod.spec.unwrap().containers;
    assert_eq!(
        containers[1].image.as_deref(),
        Some("registry.local/alpine:3")
    );
}
