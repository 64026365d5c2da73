//! Gust against a real Kubernetes control plane: kube-apiserver, kube-controller-manager and
//! kube-scheduler, with nodesim playing the kubelets (`tests/cluster/up.sh`). What a real API
//! server decides (admission, validation, scheduling, RBAC, the Job controller) is checked here;
//! containers do not run, so logs and XCom by exec stay on the fake cluster's tests.
//!
//! The tests read the cluster's admin kubeconfig from `GUST_TEST_KUBECONFIG` (`. target/cluster/env`
//! after `tests/cluster/up.sh`). Without it they say so and pass, unless
//! `GUST_TEST_REQUIRE_CLUSTER=1` (as `.ci/run` sets), when they fail.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{examples, gust, test_run_id};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde::Deserialize as _;

/// How long one `gust dags test` may take before the test fails: the DAGs here take seconds,
/// so reaching this means Gust did not exit.
const DAG_TIMEOUT: Duration = Duration::from_secs(180);

/// The real cluster's admin kubeconfig, or `None` (after saying so) when there is none and
/// none is required.
fn cluster(test: &str) -> Option<PathBuf> {
    match std::env::var_os("GUST_TEST_KUBECONFIG") {
        Some(path) if !path.is_empty() => Some(PathBuf::from(path)),
        _ => {
            assert!(
                std::env::var("GUST_TEST_REQUIRE_CLUSTER").as_deref() != Ok("1"),
                "GUST_TEST_REQUIRE_CLUSTER=1 but GUST_TEST_KUBECONFIG is not set: start the \
                 control plane with tests/cluster/up.sh and `. target/cluster/env`"
            );
            eprintln!(
                "{test}: no real cluster (GUST_TEST_KUBECONFIG is not set; see tests/cluster/up.sh): not run"
            );
            None
        }
    }
}

/// A kube client from `kubeconfig`, as a user of the cluster has one.
async fn client(kubeconfig: &Path) -> kube::Client {
    let config = Kubeconfig::read_from(kubeconfig).expect("the kubeconfig reads");
    let config = kube::Config::from_custom_kubeconfig(config, &KubeConfigOptions::default())
        .await
        .expect("the kubeconfig is valid");
    kube::Client::try_from(config).expect("a client")
}

/// Creates the namespace `name` unless it exists.
async fn namespace(client: &kube::Client, name: &str) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    if namespaces
        .get_opt(name)
        .await
        .expect("reading namespaces")
        .is_some()
    {
        return;
    }
    let namespace: Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": name}}))
            .expect("a namespace");
    match namespaces.create(&PostParams::default(), &namespace).await {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 409 => {}
        Err(err) => panic!("creating namespace {name}: {err}"),
    }
}

/// What one `gust dags test` run printed, and its try logs.
struct Ran {
    success: bool,
    stdout: String,
    stderr: String,
    logs: PathBuf,
    _home: tempfile::TempDir,
}

impl Ran {
    fn log(&self, task: &str) -> String {
        std::fs::read_to_string(self.logs.join(format!("task_id={task}/attempt=1.log")))
            .unwrap_or_else(|err| panic!("the log of {task}: {err}\n{}", self.stdout))
    }

    /// The pods the task's log says were created.
    fn created_pods(&self, task: &str) -> Vec<String> {
        self.log(task)
            .split("created pod ")
            .skip(1)
            .filter_map(|rest| rest.split_whitespace().next())
            .map(str::to_owned)
            .collect()
    }
}

/// Runs `gust dags test DAG` on the cluster of `kubeconfig`, failing the test when it does not
/// exit within [`DAG_TIMEOUT`].
async fn dags_test(kubeconfig: &Path, dags: &Path, dag: &str) -> Ran {
    let home = tempfile::tempdir().expect("tempdir");
    let mut command = gust(home.path());
    command
        .env("GUST__KUBERNETES__CONFIG_FILE", kubeconfig)
        .args([
            "dags",
            "test",
            dag,
            "--logical-date",
            "2024-01-01",
            "--dags-folder",
        ])
        .arg(dags)
        .timeout(DAG_TIMEOUT);
    let started = std::time::Instant::now();
    let output = tokio::task::spawn_blocking(move || command.output().expect("gust ran"))
        .await
        .expect("joined");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        started.elapsed() < DAG_TIMEOUT,
        "gust dags test {dag} did not exit within {DAG_TIMEOUT:?}\n{stdout}\n{stderr}"
    );
    let logs = home
        .path()
        .join(format!("logs/dag_id={dag}/run_id={}", test_run_id(&stdout)));
    Ran {
        success: output.status.success(),
        stdout,
        stderr,
        logs,
        _home: home,
    }
}

/// Waits until the pod `name` is gone from `namespace` (a deleted pod lingers while its
/// kubelet stops it), failing after 30 s.
async fn gone(client: &kube::Client, namespace: &str, name: &str) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    for _ in 0..300 {
        if pods.get_opt(name).await.expect("reading pods").is_none() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pod = pods.get_opt(name).await.expect("reading pods");
    panic!("pod {namespace}/{name} is still there: {pod:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_seed_pod_dag_runs_every_pod_to_its_end_and_deletes_it() {
    let Some(kubeconfig) = cluster("the_seed_pod_dag_runs_every_pod_to_its_end_and_deletes_it")
    else {
        return;
    };
    let client = client(&kubeconfig).await;
    namespace(&client, "airflow").await;
    let ran = dags_test(&kubeconfig, &examples(), "kube-operator").await;
    assert!(ran.success, "{}\n{}", ran.stdout, ran.stderr);
    assert!(ran.stdout.contains("success"), "{}", ran.stdout);
    for task in ["pod1", "pod2", "pod3", "pod4"] {
        let log = ran.log(task);
        let pods = ran.created_pods(task);
        assert_eq!(pods.len(), 1, "{task} created one pod: {log}");
        assert!(
            log.contains(&format!("deleted pod {}", pods[0])),
            "{task}'s pod is deleted (is_delete_operator_pod): {log}"
        );
        gone(&client, "airflow", &pods[0]).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_sample_pod_dag_runs_both_pods_to_their_end_and_exits() {
    let Some(kubeconfig) = cluster("the_sample_pod_dag_runs_both_pods_to_their_end_and_exits")
    else {
        return;
    };
    let client = client(&kubeconfig).await;
    let ran = dags_test(&kubeconfig, &examples(), "kubernetes_sample").await;
    // No container runs: nodesim ends every pod with exit code 0, the failing one too.
    assert!(ran.success, "{}\n{}", ran.stdout, ran.stderr);
    for task in ["passing-task", "failing-task"] {
        let log = ran.log(task);
        let pods = ran.created_pods(task);
        assert_eq!(pods.len(), 1, "{task} created one pod: {log}");
        assert!(log.contains(&format!("deleted pod {}", pods[0])), "{log}");
        gone(&client, "default", &pods[0]).await;
    }
}

/// One DAG whose pods each fail in a way only a real control plane decides.
const FAILURES: &str = r#"
real_cluster_failures:
  start_date: 2024-01-01
  default_args:
    operator: KubernetesPodOperator
    retries: 0
    namespace: default
    image: busybox:1.36
    cmds: ["true"]
    get_logs: false
  tasks:
    missing_namespace:
      namespace: gust-no-such-namespace
    invalid_manifest:
      volume_mounts: [{name: not-a-volume, mount_path: /data}]
    unschedulable:
      container_resources: {requests: {cpu: "1000"}}
      schedule_timeout_seconds: 5
    exit_code:
      annotations: {sim.gust.dev/exit-code: "3"}
    image_pull:
      annotations: {sim.gust.dev/stage: image-pull-backoff}
      log_events_on_failure: true
"#;

/// The line of `log` holding `needle`, which must be the whole failure on one line.
fn line_with<'a>(log: &'a str, needle: &str) -> &'a str {
    log.lines()
        .find(|line| line.contains(needle))
        .unwrap_or_else(|| panic!("no line with {needle:?} in:\n{log}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn failures_decided_by_the_real_server_fail_the_try_in_one_line() {
    let Some(kubeconfig) = cluster("failures_decided_by_the_real_server_fail_the_try_in_one_line")
    else {
        return;
    };
    let dags = tempfile::tempdir().expect("tempdir");
    std::fs::write(dags.path().join("failures.yaml"), FAILURES).expect("write");
    let ran = dags_test(&kubeconfig, dags.path(), "real_cluster_failures").await;
    assert!(!ran.success, "the run fails: {}", ran.stdout);

    // The server's own message, code and reason, without kube's debug print of the status.
    let log = ran.log("missing_namespace");
    let line = line_with(&log, "gust-no-such-namespace");
    assert!(line.contains("not found (404 NotFound)"), "{line}");
    assert!(!line.contains("Status {"), "{line}");

    let log = ran.log("invalid_manifest");
    let line = line_with(&log, "not-a-volume");
    assert!(
        line.contains("spec.containers[0].volumeMounts[0].name"),
        "{line}"
    );
    assert!(line.contains("(422 Invalid)"), "{line}");
    assert!(!line.contains("Status {"), "{line}");

    let log = ran.log("unschedulable");
    let line = line_with(&log, "Insufficient cpu");
    assert!(line.contains("0/2 nodes are available"), "{line}");

    let log = ran.log("exit_code");
    line_with(&log, "exited with code 3");

    // Failed at once from the kubelet's event, not after startup_timeout_seconds.
    let log = ran.log("image_pull");
    let line = line_with(&log, "cannot start: ImagePullBackOff");
    assert!(
        line.contains("busybox:1.36") && line.contains("not found"),
        "{line}"
    );
    assert!(line.contains("check the image name"), "{line}");
}

/// A Job run through the real Job controller, to its completion.
const JOB: &str = r#"
real_cluster_job:
  start_date: 2024-01-01
  tasks:
    job:
      operator: KubernetesJobOperator
      namespace: default
      image: perl:5.34.0
      cmds: ["perl", "-e", "print 1"]
      completions: 2
      parallelism: 2
      wait_until_job_complete: true
      get_logs: false
    failing_job:
      operator: KubernetesJobOperator
      namespace: default
      image: perl:5.34.0
      cmds: ["perl", "-e", "exit 4"]
      annotations: {sim.gust.dev/exit-code: "4"}
      backoff_limit: 1
      wait_until_job_complete: true
      get_logs: false
      retries: 0
"#;

#[tokio::test(flavor = "multi_thread")]
async fn jobs_complete_and_fail_through_the_real_job_controller() {
    let Some(kubeconfig) = cluster("jobs_complete_and_fail_through_the_real_job_controller") else {
        return;
    };
    let client = client(&kubeconfig).await;
    let dags = tempfile::tempdir().expect("tempdir");
    std::fs::write(dags.path().join("job.yaml"), JOB).expect("write");
    let ran = dags_test(&kubeconfig, dags.path(), "real_cluster_job").await;
    assert!(!ran.success, "failing_job fails the run: {}", ran.stdout);

    let log = ran.log("job");
    let name = log
        .split("created job ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("the job's name in the log: {log}"))
        .to_owned();
    assert!(log.contains(&format!("deleted job {name}")), "{log}");
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    for _ in 0..300 {
        if jobs.get_opt(&name).await.expect("reading jobs").is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        jobs.get_opt(&name).await.expect("reading jobs").is_none(),
        "the job was deleted"
    );

    let log = ran.log("failing_job");
    let line = line_with(&log, "BackoffLimitExceeded");
    assert!(line.contains("exited with code 4"), "{line}");
}

/// A pod DAG in the namespace `gust-rbac`, as the ServiceAccount `gust rbac` prints may run it.
const RBAC_DAG: &str = r#"
real_cluster_rbac:
  start_date: 2024-01-01
  tasks:
    pod:
      operator: KubernetesPodOperator
      namespace: gust-rbac
      image: busybox:1.36
      cmds: ["true"]
      retries: 0
"#;

/// A kubeconfig for the cluster of `admin` that authenticates with `token` instead of the
/// admin's client certificate.
fn token_kubeconfig(admin: &Path, token: &str, path: &Path) {
    let mut config = Kubeconfig::read_from(admin).expect("the kubeconfig reads");
    for user in &mut config.auth_infos {
        let auth = user.auth_info.get_or_insert_with(Default::default);
        auth.client_certificate_data = None;
        auth.client_key_data = None;
        auth.token = Some(token.to_owned().into());
    }
    let text = serde_yaml_ng::to_string(&config).expect("a kubeconfig");
    std::fs::write(path, text).expect("write the kubeconfig");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_service_account_gust_rbac_prints_is_enough_and_a_missing_verb_is_one_line() {
    use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
    use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
    use kube::api::{Patch, PatchParams};

    let Some(kubeconfig) =
        cluster("the_service_account_gust_rbac_prints_is_enough_and_a_missing_verb_is_one_line")
    else {
        return;
    };
    let client = client(&kubeconfig).await;
    let ns = "gust-rbac";
    namespace(&client, ns).await;
    let home = tempfile::tempdir().expect("tempdir");
    let out = gust(home.path())
        .args([
            "kubernetes",
            "rbac",
            "--namespace",
            ns,
            "--service-account",
            "gust",
        ])
        .output()
        .expect("gust ran");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("utf-8");
    // Applied as `kubectl apply --server-side` would: each object by its kind.
    let apply = PatchParams::apply("gust-test").force();
    let mut role_name = String::new();
    for document in serde_yaml_ng::Deserializer::from_str(&text) {
        let value = serde_json::Value::deserialize(document).expect("a YAML document");
        let name = value["metadata"]["name"]
            .as_str()
            .expect("a name")
            .to_owned();
        match value["kind"].as_str() {
            Some("ServiceAccount") => {
                let api: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
                api.patch(&name, &apply, &Patch::Apply(&value))
                    .await
                    .expect("apply");
            }
            Some("Role") => {
                let api: Api<Role> = Api::namespaced(client.clone(), ns);
                api.patch(&name, &apply, &Patch::Apply(&value))
                    .await
                    .expect("apply");
                role_name = name;
            }
            Some("RoleBinding") => {
                let api: Api<RoleBinding> = Api::namespaced(client.clone(), ns);
                api.patch(&name, &apply, &Patch::Apply(&value))
                    .await
                    .expect("apply");
            }
            other => panic!("gust kubernetes rbac printed an unexpected {other:?}"),
        }
    }
    // The service account's token, from the Secret the token controller made for it.
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    let mut secret_name = None;
    for _ in 0..300 {
        let account = accounts.get("gust").await.expect("the service account");
        secret_name = account
            .secrets
            .unwrap_or_default()
            .into_iter()
            .find_map(|reference| reference.name);
        if secret_name.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let secret = secrets
        .get(&secret_name.expect("the token controller made the account's token"))
        .await
        .expect("the token secret");
    let token = secret.data.expect("data")["token"].0.clone();
    let token = String::from_utf8(token).expect("a token");
    let account_kubeconfig = home.path().join("gust.kubeconfig");
    token_kubeconfig(&kubeconfig, &token, &account_kubeconfig);

    let dags = tempfile::tempdir().expect("tempdir");
    std::fs::write(dags.path().join("rbac.yaml"), RBAC_DAG).expect("write");
    let ran = dags_test(&account_kubeconfig, dags.path(), "real_cluster_rbac").await;
    assert!(ran.success, "{}\n{}", ran.stdout, ran.stderr);
    let pods = ran.created_pods("pod");
    assert_eq!(pods.len(), 1, "{}", ran.log("pod"));
    assert!(
        ran.log("pod").contains(&format!("deleted pod {}", pods[0])),
        "{}",
        ran.log("pod")
    );
    gone(&client, ns, &pods[0]).await;

    // Without `create` on pods, the try fails with the server's 403 on one line.
    let roles: Api<Role> = Api::namespaced(client.clone(), ns);
    let mut role = roles.get(&role_name).await.expect("the role");
    for rule in role.rules.iter_mut().flatten() {
        rule.verbs.retain(|verb| verb != "create");
    }
    role.metadata.managed_fields = None;
    roles
        .replace(&role_name, &PostParams::default(), &role)
        .await
        .expect("the role without create");
    let ran = dags_test(&account_kubeconfig, dags.path(), "real_cluster_rbac").await;
    assert!(!ran.success, "{}", ran.stdout);
    let log = ran.log("pod");
    let line = line_with(&log, "forbidden");
    assert!(
        line.contains("create") && line.contains("pods"),
        "the line names the verb and the resource: {line}"
    );
}

/// A pod that runs for a minute unless someone deletes it.
const DELETED_DAG: &str = r#"
real_cluster_deleted:
  start_date: 2024-01-01
  tasks:
    pod:
      operator: KubernetesPodOperator
      namespace: default
      image: busybox:1.36
      cmds: ["sleep", "60"]
      annotations: {sim.gust.dev/run-seconds: "60"}
      retries: 0
"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_pod_deleted_by_someone_else_fails_the_try_saying_so() {
    use kube::api::{DeleteParams, ListParams};

    let Some(kubeconfig) = cluster("a_pod_deleted_by_someone_else_fails_the_try_saying_so") else {
        return;
    };
    let client = client(&kubeconfig).await;
    let dags = tempfile::tempdir().expect("tempdir");
    std::fs::write(dags.path().join("deleted.yaml"), DELETED_DAG).expect("write");
    let run = tokio::spawn({
        let kubeconfig = kubeconfig.clone();
        let dags = dags.path().to_owned();
        async move { dags_test(&kubeconfig, &dags, "real_cluster_deleted").await }
    });
    // Someone deletes the pod once it runs.
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let running = ListParams::default().labels("dag_id=real_cluster_deleted");
    let mut deleted = None;
    for _ in 0..600 {
        let list = pods.list(&running).await.expect("listing pods");
        if let Some(pod) = list.items.into_iter().find(|pod| {
            pod.status
                .as_ref()
                .and_then(|status| status.phase.as_deref())
                == Some("Running")
        }) {
            let name = pod.metadata.name.expect("a name");
            pods.delete(&name, &DeleteParams::default())
                .await
                .expect("deleting the pod");
            deleted = Some(name);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let deleted = deleted.expect("the pod ran within 60 s");
    let ran = run.await.expect("joined");
    assert!(!ran.success, "{}", ran.stdout);
    let log = ran.log("pod");
    line_with(&log, "try failed: the pod was deleted while it ran");
    // on_finish_action finds nothing to delete, and that is no error.
    line_with(&log, &format!("pod {deleted} was already gone"));
    assert!(!log.contains("could not delete"), "{log}");
}

/// A CRD (whose schema bounds `spec.size`), a ConfigMap and a custom object of the CRD.
const RESOURCES: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.test.gust.dev}
spec:
  group: test.gust.dev
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              properties:
                size: {type: integer, maximum: 10}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
data: {MODE: full}
---
apiVersion: test.gust.dev/v1
kind: Widget
metadata: {name: small}
spec: {size: 3}
"#;

const MANIFESTS_DAG: &str = r#"
real_cluster_manifests:
  start_date: 2024-01-01
  default_args: {namespace: gust-manifests, retries: 0}
  tasks:
    apply:
      operator: KubernetesCreateResourceOperator
      yaml_conf_file: resources.yaml
    too_big:
      operator: kubernetes_apply
      yaml_conf: |
        apiVersion: test.gust.dev/v1
        kind: Widget
        metadata: {name: big}
        spec: {size: 99}
      dependencies: [apply]
    delete:
      operator: KubernetesDeleteResourceOperator
      yaml_conf_file: resources.yaml
      dependencies: [too_big]
      trigger_rule: all_done
"#;

#[tokio::test(flavor = "multi_thread")]
async fn manifests_apply_server_side_the_crd_schema_refuses_in_one_line_and_delete_cleans_up() {
    use k8s_openapi::api::core::v1::ConfigMap;
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;

    let Some(kubeconfig) = cluster(
        "manifests_apply_server_side_the_crd_schema_refuses_in_one_line_and_delete_cleans_up",
    ) else {
        return;
    };
    let client = client(&kubeconfig).await;
    namespace(&client, "gust-manifests").await;
    let dags = tempfile::tempdir().expect("tempdir");
    std::fs::write(dags.path().join("resources.yaml"), RESOURCES).expect("write");
    std::fs::write(dags.path().join("manifests.yaml"), MANIFESTS_DAG).expect("write");
    // Twice: server-side apply converges where a create would say "already exists".
    for _ in 0..2 {
        let ran = dags_test(&kubeconfig, dags.path(), "real_cluster_manifests").await;
        // The run's only leaf is an all_done cleanup, so it succeeds (as in Airflow) although
        // too_big fails.
        assert!(ran.success, "{}\n{}", ran.stdout, ran.stderr);
        assert!(ran.stdout.contains("too_big: failed"), "{}", ran.stdout);
        let apply = ran.log("apply");
        assert!(apply.contains("try succeeded"), "{apply}");
        let log = ran.log("too_big");
        let line = line_with(&log, "Widget big");
        assert!(
            line.contains("spec.size"),
            "the CRD's schema refused it: {line}"
        );
        assert!(!line.contains("Status {"), "{line}");
        let delete = ran.log("delete");
        assert!(delete.contains("try succeeded"), "{delete}");
    }
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), "gust-manifests");
    assert!(
        config_maps
            .get_opt("settings")
            .await
            .expect("reading")
            .is_none(),
        "the ConfigMap was deleted"
    );
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for _ in 0..300 {
        if crds
            .get_opt("widgets.test.gust.dev")
            .await
            .expect("reading")
            .is_none()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the CRD was not deleted");
}
