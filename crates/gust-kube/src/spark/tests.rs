use super::*;
use serde_json::json;

/// The seed's two-section template (abridged: its commented examples filled in).
const SEED_TEMPLATE: &str = r#"
spark:
  apiVersion: sparkoperator.k8s.io/v1beta2
  version: v1beta2
  kind: SparkApplication
  apiGroup: sparkoperator.k8s.io
  metadata:
    namespace: ds
  spec:
    type: Python
    pythonVersion: "3"
    mode: cluster
    sparkVersion: 3.0.0
    restartPolicy:
      type: Never
    dynamicAllocation:
      enabled: false
    labels: {team: ds}
    driver:
      serviceAccount: default
      container_resources:
        gpu: {name: null, quantity: 0}
        cpu: {request: 2, limit: "2"}
        memory: {request: null, limit: 2Gi}
    executor:
      instances: 1
      container_resources:
        gpu: {name: nvidia.com/gpu, quantity: 1}
        cpu: {request: null, limit: null}
        memory: {request: null, limit: 700m}
kubernetes:
  env_vars: [{name: TEST_NAME, value: TEST_VALUE}]
  env_from: []
  node_selector: {karpenter.sh/provisioner-name: spark}
  affinity: {nodeAffinity: {}, podAffinity: {}, podAntiAffinity: {}}
  tolerations: [{key: key1, operator: Equal, value: value1, effect: NoSchedule}]
  config_map_mounts: {snowflake-default: /mnt/tmp}
  volume_mounts: [{name: config, mountPath: /airflow}]
  volumes: [{name: config, persistentVolumeClaim: {claimName: airflow}}]
  from_env_config_map: [configmap_1]
  from_env_secret: [secret_1]
  in_cluster: true
  conn_id: kubernetes_default
  kube_config_file: null
  cluster_context: null
"#;

fn args(value: Value) -> SparkArgs {
    SparkArgs::read(value.as_object().expect("a map")).expect("valid arguments")
}

fn labels() -> TryLabels<'static> {
    TryLabels {
        dag_id: "spark_pi",
        task_id: "spark_task",
        run_id: "manual__2024-01-01T00:00:00+00:00",
        try_number: 1,
        map_index: gust_core::mapping::UNMAPPED,
    }
}

fn build(args: &SparkArgs, template: &Value) -> Result<Value, SparkError> {
    build_application(&SparkRequest {
        args,
        template,
        labels: labels(),
        unique: "abcd1234",
        default_namespace: Some("pipelines"),
    })
}

#[test]
fn the_seed_template_becomes_a_spark_application() {
    let template: Value = serde_yaml_ng::from_str(SEED_TEMPLATE).expect("YAML");
    let args = args(json!({
        "application_file": "spark_job_template.yaml",
        "image": "gcr.io/spark-operator/spark-py:v3.1.1",
        "code_path": "local:///opt/spark/pi.py",
    }));
    let app = build(&args, &template).expect("built");
    assert_eq!(app["apiVersion"], "sparkoperator.k8s.io/v1beta2");
    assert_eq!(app["kind"], "SparkApplication");
    assert!(app.get("apiGroup").is_none() && app.get("version").is_none());
    assert_eq!(app["metadata"]["name"], "spark-task-abcd1234");
    assert_eq!(
        app["metadata"]["namespace"], "ds",
        "the template's namespace"
    );
    assert_eq!(app["metadata"]["labels"]["dag_id"], "spark_pi");
    assert_eq!(
        app["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "gust"
    );
    let spec = &app["spec"];
    assert_eq!(spec["image"], "gcr.io/spark-operator/spark-py:v3.1.1");
    assert_eq!(spec["mainApplicationFile"], "local:///opt/spark/pi.py");
    let driver = &spec["driver"];
    assert!(driver.get("container_resources").is_none());
    assert_eq!(driver["cores"], 2);
    assert_eq!(driver["coreLimit"], "2");
    assert_eq!(
        driver["memory"], "1462m",
        "2Gi in MiB less the operator's 40%"
    );
    assert!(driver.get("gpu").is_none(), "no GPU without a name");
    assert_eq!(
        spec["executor"]["gpu"],
        json!({"name": "nvidia.com/gpu", "quantity": 1})
    );
    assert_eq!(spec["executor"]["memory"], "500m");
    for role in ["driver", "executor"] {
        let pod = &spec[role];
        assert_eq!(
            pod["env"],
            json!([{"name": "TEST_NAME", "value": "TEST_VALUE"}])
        );
        assert_eq!(
            pod["envFrom"],
            json!([{"configMapRef": {"name": "configmap_1"}}, {"secretRef": {"name": "secret_1"}}])
        );
        assert_eq!(
            pod["volumeMounts"],
            json!([{"name": "config", "mountPath": "/airflow"}, {"name": "snowflake-default", "mountPath": "/mnt/tmp"}])
        );
        assert_eq!(
            pod["nodeSelector"]["karpenter.sh/provisioner-name"],
            "spark"
        );
        assert_eq!(pod["tolerations"][0]["key"], "key1");
        assert!(pod.get("affinity").is_none(), "empty affinities are none");
        assert_eq!(pod["labels"]["team"], "ds");
        assert_eq!(pod["labels"]["task_id"], "spark_task");
        assert!(pod["labels"].get("app.kubernetes.io/managed-by").is_none());
    }
    assert_eq!(
        spec["volumes"][1],
        json!({"name": "snowflake-default", "configMap": {"name": "snowflake-default"}})
    );
}

#[test]
fn a_plain_manifest_is_taken_as_the_spark_section_and_task_arguments_win() {
    let template = json!({
        "apiVersion": "sparkoperator.k8s.io/v1beta2",
        "kind": "SparkApplication",
        "metadata": {"name": "Pi_App"},
        "spec": {"image": "spark:old", "driver": {"env": [{"name": "KEEP", "value": "1"}]}, "executor": {}},
    });
    let args = args(json!({
        "template_spec": template,
        "image": "spark:new",
        "namespace": "analytics",
        "random_name_suffix": false,
        "container_resources": {"requests": {"cpu": "1"}, "limits": {"cpu": "1500m", "memory": "2Gi"}},
    }));
    let app = build(&args, &template).expect("built");
    assert_eq!(app["metadata"]["name"], "pi-app");
    assert_eq!(app["metadata"]["namespace"], "analytics");
    assert_eq!(app["spec"]["image"], "spark:new");
    let driver = &app["spec"]["driver"];
    assert_eq!(
        driver["env"][0]["name"], "KEEP",
        "no kubernetes section, nothing replaced"
    );
    assert_eq!(driver["cores"], 1);
    assert_eq!(driver["coreLimit"], "1500m");
    assert_eq!(driver["memory"], "2g");
}

#[test]
fn a_template_that_is_not_a_spark_application_is_refused_with_the_reason() {
    let args = args(json!({"template_spec": {}}));
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {}, "spec": {}});
    let err = build(&args, &pod).expect_err("not spark").to_string();
    assert!(
        err.starts_with("template_spec: the template's kind is Pod"),
        "{err}"
    );
    let no_spec = json!({"spark": {"kind": "SparkApplication"}});
    let err = build(&args, &no_spec).expect_err("no spec").to_string();
    assert!(err.contains("no `spec` map"), "{err}");
    let dynamic = json!({"spark": {"spec": {"dynamicAllocation": {"enabled": true}}}});
    let err = build(&args, &dynamic).expect_err("min/max").to_string();
    assert!(err.contains("minExecutors and maxExecutors"), "{err}");
    let default_ns = build(&args, &json!({"spark": {"spec": {}}})).expect("built");
    assert_eq!(default_ns["metadata"]["namespace"], "pipelines");
}

#[test]
fn the_kubernetes_section_names_a_cluster_when_the_task_does_not() {
    let template: Value = serde_yaml_ng::from_str(SEED_TEMPLATE).expect("YAML");
    let cluster = template_cluster(&template);
    assert_eq!(cluster.conn_id.as_deref(), Some("kubernetes_default"));
    assert_eq!(cluster.config_file, None);
}
