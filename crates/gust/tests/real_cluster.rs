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
        pods_created(&self.log(task))
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
    err_image_pull:
      annotations: {sim.gust.dev/stage: err-image-pull}
      startup_timeout_seconds: 60
    pull_rate_limited:
      annotations:
        sim.gust.dev/stage: err-image-pull
        sim.gust.dev/pull-error: "unexpected status from GET request: 429 Too Many Requests"
      startup_timeout_seconds: 5
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

    // As a kubelet says it: ErrImagePull with the registry's "not found", failed at once
    // (long before its startup_timeout_seconds of 60, which the run would otherwise wait).
    let log = ran.log("err_image_pull");
    let line = line_with(&log, "cannot start: ErrImagePull");
    assert!(
        line.contains("busybox:1.36") && line.contains("not found"),
        "{line}"
    );
    assert!(line.contains("check the image name"), "{line}");
    assert!(!log.contains("startup_timeout_seconds"), "{log}");

    // A pull error that passes (a registry's rate limit) is waited out, through ErrImagePull
    // and ImagePullBackOff, until startup_timeout_seconds; the failure names the image and why.
    let log = ran.log("pull_rate_limited");
    let line = line_with(&log, "did not start within startup_timeout_seconds (5s)");
    assert!(line.contains("ImagePullBackOff"), "{line}");
    assert!(
        line.contains("busybox:1.36") && line.contains("429 Too Many Requests"),
        "{line}"
    );
    assert!(!line.contains("check the image name"), "{line}");
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

/// `kubernetes_resource_sensor` waiting for Jobs the test creates: one after the run starts,
/// which completes, one before, which fails; and one that never exists.
const RESOURCE_SENSOR: &str = r#"
real_cluster_resource_sensor:
  start_date: 2024-01-01
  default_args: {retries: 0}
  tasks:
    job_complete:
      operator: KubernetesResourceSensor
      api_version: batch/v1
      kind: Job
      name: sensed-complete
      namespace: gust-sensors
      silent_fail: true            # the Job is created after the first poke
      poke_interval: 1
      timeout: 90
    job_failed:
      operator: KubernetesResourceSensor
      api_version: batch/v1
      kind: Job
      name: sensed-failed
      namespace: gust-sensors      # created before the run (silent_fail would wait on failure)
      poke_interval: 1
      timeout: 90
    job_missing:
      operator: KubernetesResourceSensor
      api_version: batch/v1
      kind: Job
      name: never-created
      namespace: gust-sensors
      poke_interval: 1
"#;

/// A Job of one pod in `ns` whose containers exit with `exit_code` (nodesim's annotation),
/// tried once.
fn sensed_job(name: &str, exit_code: u8) -> Job {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": {"annotations": {"sim.gust.dev/exit-code": exit_code.to_string()}},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "work", "image": "busybox:1.36", "command": ["true"]}],
                },
            },
        },
    }))
    .expect("a Job")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_resource_sensor_waits_for_a_real_job_to_complete_and_fails_on_a_failed_one() {
    let Some(kubeconfig) =
        cluster("the_resource_sensor_waits_for_a_real_job_to_complete_and_fails_on_a_failed_one")
    else {
        return;
    };
    let client = client(&kubeconfig).await;
    namespace(&client, "gust-sensors").await;
    let jobs: Api<Job> = Api::namespaced(client.clone(), "gust-sensors");
    // Left by an earlier run of this test on the same cluster.
    let background = kube::api::DeleteParams::background();
    for name in ["sensed-complete", "sensed-failed"] {
        let _ = jobs.delete(name, &background).await;
        for _ in 0..300 {
            if jobs.get_opt(name).await.expect("reading jobs").is_none() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    jobs.create(&PostParams::default(), &sensed_job("sensed-failed", 3))
        .await
        .expect("creating Job sensed-failed");
    let dags = tempfile::tempdir().expect("tempdir");
    std::fs::write(dags.path().join("sensor.yaml"), RESOURCE_SENSOR).expect("write");
    let dags_path = dags.path().to_path_buf();
    let config = kubeconfig.clone();
    let run = tokio::spawn(async move {
        dags_test(&config, &dags_path, "real_cluster_resource_sensor").await
    });
    // The sensor pokes a few times before its Job exists.
    tokio::time::sleep(Duration::from_secs(3)).await;
    jobs.create(&PostParams::default(), &sensed_job("sensed-complete", 0))
        .await
        .expect("creating Job sensed-complete");
    let ran = run.await.expect("joined");
    let states = common::final_states(&ran.stdout);
    let state = |task: &str| states.get(task).map(String::as_str);
    assert_eq!(state("job_complete"), Some("success"), "{}", ran.stdout);
    assert_eq!(state("job_failed"), Some("failed"), "{}", ran.stdout);
    assert_eq!(state("job_missing"), Some("failed"), "{}", ran.stdout);
    assert!(!ran.success, "failed sensors fail the run");
    // It waited: the Job did not exist, then did not complete, at its first pokes.
    assert!(
        ran.stdout.contains("job_complete: up_for_reschedule"),
        "{}",
        ran.stdout
    );
    let log = ran.log("job_complete");
    assert!(
        log.contains("Poking: Job gust-sensors/sensed-complete on cluster"),
        "{log}"
    );
    let log = ran.log("job_failed");
    let line = line_with(&log, "Sensor poke failed");
    assert!(
        line.contains("Job gust-sensors/sensed-failed failed")
            && line.contains("BackoffLimitExceeded"),
        "{line}"
    );
    let log = ran.log("job_missing");
    let line = line_with(&log, "Sensor poke failed");
    assert!(
        line.contains("gust-sensors/never-created does not exist"),
        "{line}"
    );
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

/// The token of the ServiceAccount `account` in `ns`, from the Secret the token controller
/// makes for it (as clusters before 1.24 do), waiting for it at most 30 s.
async fn account_token(client: &kube::Client, ns: &str, account: &str) -> String {
    use k8s_openapi::api::core::v1::{Secret, ServiceAccount};

    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    let mut secret_name = None;
    for _ in 0..300 {
        let found = accounts.get(account).await.expect("the service account");
        secret_name = found
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
    String::from_utf8(token).expect("a token")
}

/// Applies what `gust kubernetes rbac` printed (`text`) to `ns`, as `kubectl apply
/// --server-side` would: each object by its kind. Answers the Role's name.
async fn apply_rbac(client: &kube::Client, ns: &str, text: &str) -> String {
    use k8s_openapi::api::core::v1::ServiceAccount;
    use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
    use kube::api::{Patch, PatchParams};

    let apply = PatchParams::apply("gust-test").force();
    let mut role_name = String::new();
    for document in serde_yaml_ng::Deserializer::from_str(text) {
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
    role_name
}

#[tokio::test(flavor = "multi_thread")]
async fn the_service_account_gust_rbac_prints_is_enough_and_a_missing_verb_is_one_line() {
    use k8s_openapi::api::rbac::v1::Role;

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
    let role_name = apply_rbac(&client, ns, &text).await;
    let token = account_token(&client, ns, "gust").await;
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
    let running = ListParams::default().labels("dag_id=real_cluster_deleted");
    let deleted = running_pod(&client, "default", &running).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.delete(&deleted, &DeleteParams::default())
        .await
        .expect("deleting the pod");
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

/// `gust scheduler` as a process of its own on the database at a URL, with `home/dags` as its
/// DAGs folder, DAGs unpaused at creation and the cluster of a kubeconfig; killed with SIGKILL
/// when dropped, as a crash would.
struct Scheduler {
    child: Option<std::process::Child>,
    /// The port of its health server (`/health`).
    health_port: u16,
    /// The file its stderr (warnings and errors) goes to.
    stderr: PathBuf,
}

impl Scheduler {
    /// Starts it and reads its banner up to the line naming its health server.
    fn start(home: &Path, url: &str, kubeconfig: &Path, name: &str) -> Self {
        use std::io::BufRead as _;

        let stderr = home.join(format!("{name}.stderr.log"));
        let mut child = common::gust_process(home, url)
            .env("GUST__KUBERNETES__CONFIG_FILE", kubeconfig)
            .env("GUST__CORE__DAGS_ARE_PAUSED_AT_CREATION", "false")
            .env(
                "GUST__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_HOST",
                "127.0.0.1",
            )
            .arg("scheduler")
            .stdout(std::process::Stdio::piped())
            .stderr(std::fs::File::create(&stderr).expect("a file for stderr"))
            .spawn()
            .expect("the scheduler starts");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = std::io::BufReader::new(stdout).lines();
        let health_port = loop {
            let Some(Ok(line)) = lines.next() else {
                let said = std::fs::read_to_string(&stderr).unwrap_or_default();
                panic!("gust scheduler ended before naming its health server: {said}");
            };
            if let Some(address) = line
                .strip_prefix("  health:")
                .and_then(|rest| rest.split("http://127.0.0.1:").nth(1))
            {
                let digits: String = address.chars().take_while(char::is_ascii_digit).collect();
                break digits.parse::<u16>().expect("a port");
            }
        };
        // Keep reading, so the process never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        Self {
            child: Some(child),
            health_port,
            stderr,
        }
    }

    /// Fails the test unless the process still runs and its `/health` says healthy.
    fn assert_healthy(&mut self) {
        let child = self.child.as_mut().expect("running");
        let exited = child.try_wait().expect("the scheduler's status");
        let said = std::fs::read_to_string(&self.stderr).unwrap_or_default();
        assert!(
            exited.is_none(),
            "the scheduler exited ({exited:?}): {said}"
        );
        let (status, body) = common::http(self.health_port, "GET", "/health", &[], "");
        assert_eq!(status, 200, "{body}\n{said}");
        assert!(body.contains("\"healthy\""), "{body}");
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            common::kill9(child);
        }
    }
}

/// Waits (at most `within`) until the run `run_id` of `dag` has ended; answers its state.
async fn run_end(
    db: &gust_store::testing::TestDb,
    dag: &str,
    run_id: &str,
    within: Duration,
) -> gust_core::state::DagRunState {
    use gust_core::state::DagRunState;

    let deadline = std::time::Instant::now() + within;
    loop {
        let run = db.store.run(dag, run_id).await.expect("reading the run");
        match run.map(|run| run.state) {
            Some(state @ (DagRunState::Success | DagRunState::Failed)) => return state,
            state if std::time::Instant::now() > deadline => {
                let tries = db.store.tries_of_run(dag, run_id).await.expect("tries");
                panic!(
                    "run {run_id} of {dag} did not end within {within:?} ({state:?}): {tries:#?}"
                )
            }
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// `gust dags trigger DAG --run-id RUN_ID` on the database at `url`.
fn trigger(home: &Path, url: &str, kubeconfig: &Path, dag: &str, run_id: &str) {
    let out = common::gust_process(home, url)
        .env("GUST__KUBERNETES__CONFIG_FILE", kubeconfig)
        .env("GUST__CORE__DAGS_ARE_PAUSED_AT_CREATION", "false")
        .args(["dags", "trigger", dag, "--run-id", run_id])
        .output()
        .expect("gust dags trigger ran");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The try log of `task` (try `attempt`) in run `run_id` of `dag`, under `home`'s logs.
fn try_log(home: &Path, dag: &str, run_id: &str, task: &str, attempt: i32) -> String {
    let path = home.join(format!(
        "logs/dag_id={dag}/run_id={run_id}/task_id={task}/attempt={attempt}.log"
    ));
    std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

/// The names of the pods a try log says were created.
fn pods_created(log: &str) -> Vec<String> {
    log.split("created pod ")
        .skip(1)
        .filter_map(|rest| rest.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_seed_pod_dag_runs_under_the_scheduler_and_the_scheduler_stays_healthy() {
    use gust_core::state::{DagRunState, TaskState};

    let Some(kubeconfig) =
        cluster("the_seed_pod_dag_runs_under_the_scheduler_and_the_scheduler_stays_healthy")
    else {
        return;
    };
    let client = client(&kubeconfig).await;
    namespace(&client, "airflow").await;
    let db = gust_store::testing::TestDb::sqlite().await;
    let home = tempfile::tempdir().expect("home");
    let dags = home.path().join("dags");
    std::fs::create_dir_all(&dags).expect("dags");
    std::fs::copy(
        examples().join("kubernetes/kube_operator.yaml"),
        dags.join("kube_operator.yaml"),
    )
    .expect("the example DAG");
    trigger(
        home.path(),
        &db.url,
        &kubeconfig,
        "kube-operator",
        "on-the-cluster",
    );
    let mut scheduler = Scheduler::start(home.path(), &db.url, &kubeconfig, "scheduler");
    let state = run_end(
        &db,
        "kube-operator",
        "on-the-cluster",
        Duration::from_secs(90),
    )
    .await;
    scheduler.assert_healthy();
    // Unpaused, the DAG (daily, catchup off) also gets its latest scheduled run: every run's
    // pods are checked once the runs have ended.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let runs = loop {
        let runs = db
            .store
            .runs_of_dag("kube-operator", 10)
            .await
            .expect("runs");
        if runs
            .iter()
            .all(|run| matches!(run.state, DagRunState::Success | DagRunState::Failed))
            || std::time::Instant::now() > deadline
        {
            break runs;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(state, DagRunState::Success, "{runs:#?}");
    for run in &runs {
        assert_eq!(run.state, DagRunState::Success, "{runs:#?}");
        let tries = db
            .store
            .tries_of_run("kube-operator", &run.run_id)
            .await
            .expect("tries");
        assert_eq!(tries.len(), 4, "one try per task: {tries:#?}");
        for attempt in &tries {
            assert_eq!(attempt.state, TaskState::Success, "{tries:#?}");
            let log = try_log(
                home.path(),
                "kube-operator",
                &run.run_id,
                &attempt.task_id,
                1,
            );
            let pods = pods_created(&log);
            assert_eq!(pods.len(), 1, "{} created one pod: {log}", attempt.task_id);
            assert!(
                log.contains(&format!("deleted pod {}", pods[0])),
                "the pod is deleted (is_delete_operator_pod): {log}"
            );
            gone(&client, "airflow", &pods[0]).await;
        }
    }
    scheduler.assert_healthy();
    db.finish().await;
}

/// A pod that runs for a while, and one after it.
const RESTART_DAG: &str = r#"
real_cluster_restart:
  schedule: null
  start_date: 2024-01-01
  default_args:
    operator: KubernetesPodOperator
    namespace: default
    image: busybox:1.36
    cmds: ["true"]
    get_logs: false
    retries: 0
  tasks:
    long:
      annotations: {sim.gust.dev/run-seconds: "10"}
    after:
      dependencies: [long]
"#;

/// The name of the first pod `selector` (labels or fields) picks in `namespace` that runs,
/// waiting at most 60 s.
async fn running_pod(
    client: &kube::Client,
    namespace: &str,
    selector: &kube::api::ListParams,
) -> String {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    for _ in 0..600 {
        let list = pods.list(selector).await.expect("listing pods");
        if let Some(pod) = list.items.into_iter().find(|pod| {
            pod.status
                .as_ref()
                .and_then(|status| status.phase.as_deref())
                == Some("Running")
        }) {
            return pod.metadata.name.expect("a name");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no pod of {namespace} that {selector:?} picks ran within 60 s");
}

/// Picks the pods of `task` of `dag`.
fn task_pods(dag: &str, task: &str) -> kube::api::ListParams {
    kube::api::ListParams::default().labels(&format!("dag_id={dag},task_id={task}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scheduler_killed_while_a_pod_runs_is_replaced_by_one_that_re_attaches_to_it() {
    use gust_core::state::{DagRunState, TaskState};

    let Some(kubeconfig) =
        cluster("a_scheduler_killed_while_a_pod_runs_is_replaced_by_one_that_re_attaches_to_it")
    else {
        return;
    };
    let client = client(&kubeconfig).await;
    let db = gust_store::testing::TestDb::sqlite().await;
    let home = tempfile::tempdir().expect("home");
    std::fs::create_dir_all(home.path().join("dags")).expect("dags");
    std::fs::write(home.path().join("dags/restart.yaml"), RESTART_DAG).expect("the DAG");
    let (dag, run_id) = ("real_cluster_restart", "killed-mid-run");
    trigger(home.path(), &db.url, &kubeconfig, dag, run_id);
    let first = Scheduler::start(home.path(), &db.url, &kubeconfig, "first");
    let pod = running_pod(&client, "default", &task_pods(dag, "long")).await;
    drop(first); // SIGKILL while the pod runs.

    let mut second = Scheduler::start(home.path(), &db.url, &kubeconfig, "second");
    let state = run_end(&db, dag, run_id, Duration::from_secs(60)).await;
    second.assert_healthy();
    let tries = db.store.tries_of_run(dag, run_id).await.expect("tries");
    assert_eq!(state, DagRunState::Success, "{tries:#?}");
    assert_eq!(tries.len(), 2, "no try was retried or doubled: {tries:#?}");
    assert!(
        tries.iter().all(|t| t.state == TaskState::Success),
        "{tries:#?}"
    );
    let log = try_log(home.path(), dag, run_id, "long", 1);
    assert_eq!(
        pods_created(&log),
        std::slice::from_ref(&pod),
        "the pod was created once: {log}"
    );
    assert!(
        log.contains(&format!("re-attached to pod {pod}")),
        "the second scheduler followed the running pod: {log}"
    );
    assert!(log.contains(&format!("deleted pod {pod}")), "{log}");
    gone(&client, "default", &pod).await;
    let log = try_log(home.path(), dag, run_id, "after", 1);
    let after = pods_created(&log);
    assert_eq!(after.len(), 1, "{log}");
    gone(&client, "default", &after[0]).await;
    db.finish().await;
}

/// Another kube-apiserver on the cluster's etcd, started by the test from the arguments
/// `up.sh` recorded, on a port of its own, without a watch cache (watches are then served by
/// etcd itself, so a watch resumed from a revision etcd has compacted away gets 410 Gone, as it
/// does from any API server whose watch cache no longer holds that revision) and with `extra`
/// arguments. The test can stop and restart it without disturbing the other tests, which use
/// the cluster's own API server.
struct OtherApiServer {
    /// A cluster-admin kubeconfig that reaches this API server.
    kubeconfig: PathBuf,
    program: PathBuf,
    args: Vec<String>,
    log: PathBuf,
    child: Option<std::process::Child>,
}

impl OtherApiServer {
    /// Its arguments from `$GUST_TEST_CLUSTER_DIR/kube-apiserver.args` and `extra`, on a free
    /// port; its log and its kubeconfig (the `admin` one, pointing at it) in `folder`, named
    /// after `name`.
    fn new(folder: &Path, admin: &Path, name: &str, extra: &[&str]) -> Self {
        let cluster = PathBuf::from(
            std::env::var_os("GUST_TEST_CLUSTER_DIR")
                .expect("GUST_TEST_CLUSTER_DIR (target/cluster/env)"),
        );
        let program = PathBuf::from(
            std::env::var_os("GUST_TEST_KUBE_BIN")
                .expect("GUST_TEST_KUBE_BIN (target/cluster/env)"),
        )
        .join("kube-apiserver");
        let recorded = std::fs::read_to_string(cluster.join("kube-apiserver.args"))
            .expect("up.sh records the API server's arguments");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let mut args: Vec<String> = recorded.lines().map(str::to_owned).collect();
        let at = args
            .iter()
            .position(|arg| arg == "--secure-port")
            .expect("--secure-port");
        args[at + 1] = port.to_string();
        args.push("--watch-cache=false".to_owned());
        args.extend(extra.iter().map(|arg| (*arg).to_owned()));
        let kubeconfig = folder.join(format!("{name}.kubeconfig"));
        let mut config = Kubeconfig::read_from(admin).expect("the kubeconfig reads");
        for named in &mut config.clusters {
            if let Some(cluster) = named.cluster.as_mut() {
                cluster.server = Some(format!("https://127.0.0.1:{port}"));
            }
        }
        let text = serde_yaml_ng::to_string(&config).expect("a kubeconfig");
        std::fs::write(&kubeconfig, text).expect("write the kubeconfig");
        Self {
            kubeconfig,
            program,
            args,
            log: folder.join(format!("{name}-kube-apiserver.log")),
            child: None,
        }
    }

    /// Starts it and waits (at most 60 s) until it answers.
    async fn start(&mut self) {
        #[allow(
            clippy::disallowed_methods,
            reason = "the test runs an API server of its own"
        )]
        let child = std::process::Command::new(&self.program)
            .args(&self.args)
            .stdout(std::process::Stdio::null())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.log)
                    .expect("the API server's log"),
            )
            .spawn()
            .expect("kube-apiserver starts");
        self.child = Some(child);
        let client = client(&self.kubeconfig).await;
        let namespaces: Api<Namespace> = Api::all(client.clone());
        // Answering a read is not yet taking writes (a pod created too early failed to be sent
        // once under CI's load): ready is when a ConfigMap can be created through it too.
        let probes: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(client, "default");
        let probe: k8s_openapi::api::core::v1::ConfigMap =
            serde_json::from_value(serde_json::json!({
                "metadata": {"generateName": "gust-ready-probe-"}
            }))
            .expect("a ConfigMap");
        for _ in 0..600 {
            if namespaces
                .get_opt("default")
                .await
                .is_ok_and(|ns| ns.is_some())
                && let Ok(created) = probes.create(&PostParams::default(), &probe).await
            {
                let name = created.metadata.name.unwrap_or_default();
                let _ = probes
                    .delete(&name, &kube::api::DeleteParams::default())
                    .await;
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(20).collect();
        panic!("the test's API server did not answer within 60 s: {tail:#?}");
    }

    /// Kills it (SIGKILL), as a crashed API server ends.
    fn kill(&mut self) {
        if let Some(child) = self.child.take() {
            common::kill9(child);
        }
    }

    /// Waits (at most 60 s) until etcd's history before `revision` is compacted away: a watch
    /// from it through this API server gets 410 Gone.
    async fn wait_compacted(&self, revision: &str) {
        use futures::StreamExt as _;
        use kube::api::{WatchEvent, WatchParams};

        let pods: Api<Pod> = Api::namespaced(client(&self.kubeconfig).await, "default");
        for _ in 0..120 {
            if let Ok(events) = pods
                .watch(&WatchParams::default().timeout(1), revision)
                .await
            {
                let mut events = events.boxed();
                while let Some(event) = events.next().await {
                    if let Ok(WatchEvent::Error(status)) = event
                        && status.code == 410
                    {
                        return;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        panic!("etcd did not compact its history before revision {revision} within 60 s");
    }
}

impl Drop for OtherApiServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A pod that runs long enough for its API server to be restarted, and one started after.
const COMPACTION_DAG: &str = r#"
real_cluster_compaction:
  schedule: null
  start_date: 2024-01-01
  default_args:
    operator: KubernetesPodOperator
    namespace: default
    image: busybox:1.36
    cmds: ["true"]
    get_logs: false
    retries: 0
  tasks:
    across:
      annotations: {sim.gust.dev/run-seconds: "15"}
    after:
      dependencies: [across]
"#;

#[tokio::test(flavor = "multi_thread")]
async fn pods_are_followed_to_their_end_across_an_api_server_restart_and_a_410_gone() {
    use gust_core::state::{DagRunState, TaskState};
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::DeleteParams;

    let Some(admin) =
        cluster("pods_are_followed_to_their_end_across_an_api_server_restart_and_a_410_gone")
    else {
        return;
    };
    let client = client(&admin).await;
    let db = gust_store::testing::TestDb::sqlite().await;
    let home = tempfile::tempdir().expect("home");
    let mut second = OtherApiServer::new(home.path(), &admin, "second", &[]);
    second.start().await;
    let kubeconfig = second.kubeconfig.clone();
    std::fs::create_dir_all(home.path().join("dags")).expect("dags");
    std::fs::write(home.path().join("dags/compaction.yaml"), COMPACTION_DAG).expect("the DAG");
    let (dag, run_id) = ("real_cluster_compaction", "across-a-410");
    trigger(home.path(), &db.url, &kubeconfig, dag, run_id);
    let mut scheduler = Scheduler::start(home.path(), &db.url, &kubeconfig, "scheduler");
    let pod = running_pod(&client, "default", &task_pods(dag, "across")).await;

    // The API server the scheduler watches through goes down; meanwhile etcd moves on and
    // forgets its history (compacted by a third API server, with kube-apiserver's own
    // compactor every second), so the watch's resourceVersion is gone when it comes back.
    second.kill();
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let marker: ConfigMap = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "gust-compaction-marker"}
    }))
    .expect("a ConfigMap");
    let _ = config_maps
        .delete("gust-compaction-marker", &DeleteParams::default())
        .await;
    let marker = config_maps
        .create(&PostParams::default(), &marker)
        .await
        .expect("a write that moves etcd's revision on");
    let revision = marker.metadata.resource_version.expect("a resourceVersion");
    let touch = serde_json::json!({"data": {"touched": "yes"}});
    config_maps
        .patch(
            "gust-compaction-marker",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&touch),
        )
        .await
        .expect("another write");
    let mut compactor = OtherApiServer::new(
        home.path(),
        &admin,
        "compactor",
        &["--etcd-compaction-interval=1s"],
    );
    compactor.start().await;
    compactor.wait_compacted(&revision).await;
    compactor.kill();
    second.start().await;

    let state = run_end(&db, dag, run_id, Duration::from_secs(90)).await;
    scheduler.assert_healthy();
    let tries = db.store.tries_of_run(dag, run_id).await.expect("tries");
    assert_eq!(state, DagRunState::Success, "{tries:#?}");
    assert_eq!(tries.len(), 2, "no try was lost or doubled: {tries:#?}");
    assert!(
        tries.iter().all(|t| t.state == TaskState::Success),
        "{tries:#?}"
    );
    let said = std::fs::read_to_string(&scheduler.stderr).expect("the scheduler's stderr");
    assert!(
        said.lines()
            .any(|line| line.contains("pod watch interrupted") && line.contains("too old")),
        "the watch resumed into a 410 Gone and listed again: {said}"
    );
    let log = try_log(home.path(), dag, run_id, "across", 1);
    assert_eq!(pods_created(&log), std::slice::from_ref(&pod), "{log}");
    assert!(log.contains(&format!("deleted pod {pod}")), "{log}");
    gone(&client, "default", &pod).await;
    let log = try_log(home.path(), dag, run_id, "after", 1);
    let after = pods_created(&log);
    assert_eq!(after.len(), 1, "{log}");
    gone(&client, "default", &after[0]).await;
    config_maps
        .delete("gust-compaction-marker", &DeleteParams::default())
        .await
        .expect("the marker deleted");
    drop(scheduler);
    db.finish().await;
}

/// The repository's root.
fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The Python that renders the Helm chart (`deploy/render_helm.py`): `GUST_TEST_HELM_PYTHON`,
/// else the venv `deploy/check.sh` makes, `target/helm-venv` (`.ci/run` runs that script before
/// this tier). `None`, after saying so, when there is none and none is required.
fn helm_python(test: &str) -> Option<PathBuf> {
    let path = std::env::var_os("GUST_TEST_HELM_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repository().join("target/helm-venv/bin/python"));
    if path.exists() {
        return Some(path);
    }
    assert!(
        std::env::var("GUST_TEST_REQUIRE_CLUSTER").as_deref() != Ok("1"),
        "no Helm renderer at {}: run deploy/check.sh once (it makes target/helm-venv), or set \
         GUST_TEST_HELM_PYTHON",
        path.display()
    );
    eprintln!(
        "{test}: no Helm renderer at {} (deploy/check.sh makes it): not run",
        path.display()
    );
    None
}

/// The cluster's kubectl (`GUST_TEST_KUBECTL`, built beside the control plane) on `kubeconfig`.
fn kubectl(kubeconfig: &Path) -> assert_cmd::Command {
    let program =
        std::env::var_os("GUST_TEST_KUBECTL").expect("GUST_TEST_KUBECTL (target/cluster/env)");
    let mut command = assert_cmd::Command::new(program);
    command.arg("--kubeconfig").arg(kubeconfig);
    command.timeout(Duration::from_secs(60));
    command
}

/// Runs `command`, failing the test (with what it printed) unless it succeeds; answers stdout.
fn succeeds(command: &mut assert_cmd::Command, what: &str) -> String {
    let out = command
        .output()
        .unwrap_or_else(|err| panic!("{what}: {err}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Writes to `path` the kubeconfig `admin` with `namespace` as its context's namespace: objects
/// that name none go there, those that name one keep it (as `helm install -n` places them).
fn kubeconfig_in(admin: &Path, namespace: &str, path: &Path) {
    let mut config = Kubeconfig::read_from(admin).expect("the kubeconfig reads");
    for named in &mut config.contexts {
        if let Some(context) = named.context.as_mut() {
            context.namespace = Some(namespace.to_owned());
        }
    }
    let text = serde_yaml_ng::to_string(&config).expect("a kubeconfig");
    std::fs::write(path, text).expect("write the kubeconfig");
}

/// Renders the Helm chart with `deploy/helm/gust/ci/VALUES-values.yaml` into `namespace`.
fn render_chart(python: &Path, values: &str, namespace: &str, out: &Path) {
    let chart = repository().join("deploy/helm/gust");
    let mut command = assert_cmd::Command::new(python);
    command
        .arg(repository().join("deploy/render_helm.py"))
        .arg(&chart)
        .arg(chart.join(format!("ci/{values}-values.yaml")))
        .arg(namespace)
        .arg(out)
        .timeout(Duration::from_secs(60));
    succeeds(&mut command, &format!("rendering the chart with {values}"));
}

/// A pod DAG in the namespace the chart is installed in.
const CHART_DAG: &str = r#"
real_cluster_chart:
  start_date: 2024-01-01
  tasks:
    pod:
      operator: KubernetesPodOperator
      namespace: gust-chart
      image: busybox:1.36
      cmds: ["true"]
      retries: 0
"#;

#[tokio::test(flavor = "multi_thread")]
async fn the_deployment_manifests_pass_server_side_dry_run_and_the_charts_account_runs_pods() {
    let test = "the_deployment_manifests_pass_server_side_dry_run_and_the_charts_account_runs_pods";
    let Some(admin) = cluster(test) else {
        return;
    };
    let Some(python) = helm_python(test) else {
        return;
    };
    let client = client(&admin).await;
    let out = tempfile::tempdir().expect("tempdir");
    // What deploy/check.sh renders: each overlay, and the chart with each ci/ values file, in
    // the namespace each is meant for.
    let mut rendered = Vec::new();
    for overlay in ["demo-sqlite", "production"] {
        let file = out.path().join(format!("kustomize-{overlay}.yaml"));
        let text = succeeds(
            kubectl(&admin)
                .arg("kustomize")
                .arg(repository().join("deploy/kustomize/overlays").join(overlay)),
            &format!("kubectl kustomize {overlay}"),
        );
        std::fs::write(&file, text).expect("write");
        rendered.push((file, "default"));
    }
    for (values, namespace) in [
        ("demo", "gust-demo"),
        ("more", "gust"),
        ("production", "gust"),
    ] {
        let file = out.path().join(format!("helm-{values}.yaml"));
        render_chart(&python, values, namespace, &file);
        rendered.push((file, namespace));
    }
    for namespace_name in ["gust", "gust-demo", "pipelines", "gust-chart"] {
        namespace(&client, namespace_name).await;
    }
    // Every object is accepted by the API server's admission and validation.
    for (file, namespace) in &rendered {
        let kubeconfig = out.path().join(format!("{namespace}.kubeconfig"));
        kubeconfig_in(&admin, namespace, &kubeconfig);
        let what = format!("kubectl apply --dry-run=server -f {}", file.display());
        let said = succeeds(
            kubectl(&kubeconfig)
                .args(["apply", "--dry-run=server", "-f"])
                .arg(file),
            &what,
        );
        let objects = std::fs::read_to_string(file)
            .expect("read")
            .lines()
            .filter(|line| line.starts_with("kind:"))
            .count();
        let accepted = said
            .lines()
            .filter(|l| l.ends_with("(server dry run)"))
            .count();
        assert!(objects > 0, "{what}: nothing rendered");
        assert_eq!(accepted, objects, "{what}: every object accepted:\n{said}");
    }

    // The chart installed for real into a namespace of its own; its ServiceAccount's token
    // runs a pod DAG there.
    let file = out.path().join("helm-chart.yaml");
    render_chart(&python, "production", "gust-chart", &file);
    let kubeconfig = out.path().join("gust-chart.kubeconfig");
    kubeconfig_in(&admin, "gust-chart", &kubeconfig);
    succeeds(
        kubectl(&kubeconfig).args(["apply", "-f"]).arg(&file),
        "kubectl apply of the chart",
    );
    let token = account_token(&client, "gust-chart", "gust").await;
    let home = tempfile::tempdir().expect("tempdir");
    let account_kubeconfig = home.path().join("gust.kubeconfig");
    token_kubeconfig(&admin, &token, &account_kubeconfig);
    let dags = tempfile::tempdir().expect("tempdir");
    std::fs::write(dags.path().join("chart.yaml"), CHART_DAG).expect("write");
    let ran = dags_test(&account_kubeconfig, dags.path(), "real_cluster_chart").await;
    assert!(ran.success, "{}\n{}", ran.stdout, ran.stderr);
    let pods = ran.created_pods("pod");
    assert_eq!(pods.len(), 1, "{}", ran.log("pod"));
    assert!(
        ran.log("pod").contains(&format!("deleted pod {}", pods[0])),
        "{}",
        ran.log("pod")
    );
    gone(&client, "gust-chart", &pods[0]).await;
}

/// What `examples/dags/kubernetes/pod_features.yaml` expects to find in `default`: its Secrets
/// and ConfigMaps, and its PersistentVolumeClaim bound to a volume (marked bound as the volume
/// controller would, which this control plane does not run).
const POD_FEATURES_OBJECTS: &str = r#"
apiVersion: v1
kind: Secret
metadata: {name: airflow-secrets}
stringData: {sql_alchemy_conn: "postgresql://airflow@postgres/airflow"}
---
apiVersion: v1
kind: Secret
metadata: {name: airflow-secrets-2}
stringData: {EXTRA: "two"}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: test-configmap-1}
data: {ONE: "1"}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: test-configmap-2}
data: {TWO: "2"}
---
apiVersion: v1
kind: PersistentVolume
metadata: {name: gust-test-volume}
spec:
  capacity: {storage: 1Gi}
  accessModes: [ReadOnlyMany]
  hostPath: {path: /tmp/gust-test-volume}
  claimRef: {namespace: default, name: test-volume}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: test-volume
  annotations: {pv.kubernetes.io/bind-completed: "yes"}
spec:
  accessModes: [ReadOnlyMany]
  resources: {requests: {storage: 1Gi}}
  volumeName: gust-test-volume
---
apiVersion: v1
kind: Pod
metadata:
  name: gust-affinity-target
  labels: {security: S1}
  annotations: {sim.gust.dev/run-seconds: "120"}
spec:
  containers: [{name: main, image: busybox:1.36}]
"#;

#[tokio::test(flavor = "multi_thread")]
async fn the_pod_features_example_runs_on_the_real_server() {
    use k8s_openapi::api::core::v1::Node;
    use kube::api::{DeleteParams, Patch, PatchParams};

    let Some(admin) = cluster("the_pod_features_example_runs_on_the_real_server") else {
        return;
    };
    let client = client(&admin).await;
    let out = tempfile::tempdir().expect("tempdir");
    // The pod's required pod affinity (topology.kubernetes.io/zone) needs zones on the nodes
    // and a running pod labelled security=S1.
    let nodes: Api<Node> = Api::all(client.clone());
    let zone =
        serde_json::json!({"metadata": {"labels": {"topology.kubernetes.io/zone": "zone-a"}}});
    for node in nodes.list(&Default::default()).await.expect("nodes") {
        let name = node.metadata.name.expect("a name");
        nodes
            .patch(&name, &PatchParams::default(), &Patch::Merge(&zone))
            .await
            .expect("a zone on the node");
    }
    // A fresh affinity target: one left by an earlier run may have ended.
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let _ = pods
        .delete("gust-affinity-target", &DeleteParams::default())
        .await;
    gone(&client, "default", "gust-affinity-target").await;
    let objects = out.path().join("objects.yaml");
    std::fs::write(&objects, POD_FEATURES_OBJECTS).expect("write");
    let kubeconfig = out.path().join("default.kubeconfig");
    kubeconfig_in(&admin, "default", &kubeconfig);
    succeeds(
        kubectl(&kubeconfig).args(["apply", "-f"]).arg(&objects),
        "kubectl apply of pod_features' objects",
    );
    let affinity_target =
        kube::api::ListParams::default().fields("metadata.name=gust-affinity-target");
    running_pod(&client, "default", &affinity_target).await;

    // The example as shipped, but reaching the cluster through GUST__KUBERNETES__CONFIG_FILE:
    // `in_cluster: true` needs a pod's service-account files, which a test process has not.
    let text = std::fs::read_to_string(examples().join("kubernetes/pod_features.yaml"))
        .expect("the example");
    assert!(text.contains("      in_cluster: true\n"), "{text}");
    let dags = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dags.path().join("pod_features.yaml"),
        text.replace("      in_cluster: true\n", ""),
    )
    .expect("write");
    let ran = dags_test(&admin, dags.path(), "pod_features").await;
    let _ = pods
        .delete("gust-affinity-target", &DeleteParams::default())
        .await;
    assert!(
        ran.success,
        "{}\n{}\n{}",
        ran.stdout,
        ran.stderr,
        ran.log("task")
    );
    let created = ran.created_pods("task");
    assert_eq!(created.len(), 1, "{}", ran.log("task"));
    assert!(created[0].starts_with("airflow-test-pod"), "{created:?}");
    assert!(
        ran.log("task")
            .contains(&format!("deleted pod {}", created[0])),
        "{}",
        ran.log("task")
    );
    gone(&client, "default", &created[0]).await;
}

/// Two Python tasks run as worker pods: one whose pod nodesim runs to its end (its worker
/// never reports: no container runs), one held running by its `pod_override`'s annotation,
/// whose worker is never heard of (a zombie).
const WORKER_PODS_DAG: &str = r#"
real_cluster_worker_pods:
  start_date: 2024-01-01
  default_args:
    operator: airflow.providers.standard.operators.python.PythonOperator
    python_callable: builtins.print
    retries: 0
  tasks:
    silent: {}
    zombie:
      executor_config:
        pod_override:
          metadata:
            annotations: {sim.gust.dev/run-seconds: "120"}
"#;

/// One Python task whose worker pod runs for two minutes.
const ORPHAN_DAG: &str = r#"
real_cluster_worker_orphan:
  start_date: 2024-01-01
  tasks:
    held:
      operator: airflow.providers.standard.operators.python.PythonOperator
      python_callable: builtins.print
      retries: 0
      executor_config:
        pod_override:
          metadata:
            annotations: {sim.gust.dev/run-seconds: "120"}
"#;

/// A port nothing listens on now, for the Execution API.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    listener.local_addr().expect("an address").port()
}

/// The environment that runs Python tasks as worker pods in `ns` on the cluster of
/// `kubeconfig`, workers unheard of for `heartbeat_timeout` being zombies. The pods never
/// call the Execution API (nodesim runs no container), so its address only has to be valid.
fn worker_pods_env(kubeconfig: &Path, ns: &str, heartbeat_timeout: &str) -> Vec<(String, String)> {
    let port = free_port();
    [
        (
            "GUST__KUBERNETES__CONFIG_FILE",
            kubeconfig.display().to_string(),
        ),
        ("GUST__KUBERNETES__NAMESPACE", ns.to_owned()),
        (
            "GUST__KUBERNETES__WORKER_IMAGE",
            "apache/airflow:3.3.2".to_owned(),
        ),
        (
            "GUST__KUBERNETES__EXECUTION_API_URL",
            format!("http://127.0.0.1:{port}/execution/"),
        ),
        // Not run: worker pods run the Task SDK, not this interpreter.
        ("GUST__PYTHON__INTERPRETER", "python3".to_owned()),
        (
            "GUST__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT",
            heartbeat_timeout.to_owned(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// Applies what `gust kubernetes rbac` prints for `dags` (Python tasks as worker pods) to
/// `ns`, and answers a kubeconfig that authenticates as its ServiceAccount.
async fn worker_pods_account(
    client: &kube::Client,
    admin: &Path,
    ns: &str,
    home: &Path,
    dags: &Path,
) -> PathBuf {
    let out = gust(home)
        .envs(worker_pods_env(admin, ns, "300s"))
        .args([
            "kubernetes",
            "rbac",
            "--namespace",
            ns,
            "--service-account",
            "gust",
        ])
        .arg("--dags-folder")
        .arg(dags)
        .output()
        .expect("gust ran");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("utf-8");
    assert!(
        text.contains("secrets"),
        "worker pods' Secrets are granted: {text}"
    );
    apply_rbac(client, ns, &text).await;
    let token = account_token(client, ns, "gust").await;
    let path = home.join("gust.kubeconfig");
    token_kubeconfig(admin, &token, &path);
    path
}

/// The worker pod Secrets in `ns`, with the pod each names as its owner (name, uid).
async fn worker_secrets(
    client: &kube::Client,
    ns: &str,
) -> Vec<(String, Option<(String, String)>)> {
    use k8s_openapi::api::core::v1::Secret;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let list = secrets
        .list(&kube::api::ListParams::default())
        .await
        .expect("listing secrets");
    list.items
        .into_iter()
        .filter_map(|secret| {
            let name = secret.metadata.name.clone()?;
            name.starts_with("gust-worker-").then(|| {
                let owner = (secret.metadata.owner_references.into_iter().flatten())
                    .find(|o| o.kind == "Pod")
                    .map(|o| (o.name, o.uid));
                (name, owner)
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn python_worker_pods_run_with_the_rbac_account_fail_unreported_and_die_as_zombies() {
    use k8s_openapi::api::core::v1::Secret;

    let Some(admin) =
        cluster("python_worker_pods_run_with_the_rbac_account_fail_unreported_and_die_as_zombies")
    else {
        return;
    };
    let began = std::time::Instant::now();
    let client = client(&admin).await;
    let ns = "gust-wpods";
    namespace(&client, ns).await;
    let home = tempfile::tempdir().expect("home");
    let dags = home.path().join("dags");
    std::fs::create_dir_all(&dags).expect("dags");
    std::fs::write(dags.join("worker_pods.yaml"), WORKER_PODS_DAG).expect("the DAG");
    std::fs::write(dags.join("orphan.yaml"), ORPHAN_DAG).expect("the DAG");
    let account = worker_pods_account(&client, &admin, ns, home.path(), &dags).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);

    // 1. A pod run to its end without a report, and a zombie, both as the RBAC account.
    let run_home = tempfile::tempdir().expect("home");
    let mut command = gust(run_home.path());
    command
        .envs(worker_pods_env(&account, ns, "4s"))
        .args([
            "dags",
            "test",
            "real_cluster_worker_pods",
            "--logical-date",
            "2024-01-01",
        ])
        .arg("--dags-folder")
        .arg(&dags)
        .timeout(DAG_TIMEOUT);
    let run = tokio::task::spawn_blocking(move || command.output().expect("gust ran"));
    // While it runs: each try's Secret names its pod as owner, as the real server stored it.
    let mut owned = Vec::new();
    for _ in 0..300 {
        for (secret, owner) in worker_secrets(&client, ns).await {
            let Some((pod, uid)) = owner else {
                panic!("Secret {secret} has no pod as its owner");
            };
            if let Some(found) = pods.get_opt(&pod).await.expect("reading pods") {
                assert_eq!(
                    found.metadata.uid.as_deref(),
                    Some(uid.as_str()),
                    "{secret}"
                );
                if !owned.contains(&secret) {
                    owned.push(secret);
                }
            }
        }
        if owned.len() == 2 || run.is_finished() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let output = run.await.expect("joined");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        !output.status.success(),
        "both tries fail: {stdout}\n{stderr}"
    );
    assert_eq!(
        owned.len(),
        2,
        "both Secrets were seen with their pods: {stdout}\n{stderr}"
    );
    let logs = run_home.path().join(format!(
        "logs/dag_id=real_cluster_worker_pods/run_id={}",
        test_run_id(&stdout)
    ));
    let log = |task: &str| {
        std::fs::read_to_string(logs.join(format!("task_id={task}/attempt=1.log")))
            .unwrap_or_else(|err| panic!("the log of {task}: {err}\n{stdout}\n{stderr}"))
    };
    assert!(
        stdout.contains(
            "silent: failed (try 1): the Task SDK exited without reporting the task's state"
        ),
        "the try fails saying its worker never reported: {stdout}\n{}",
        log("silent")
    );
    assert!(
        stdout.contains("zombie: failed (try 1): its worker was not heard of for 4s"),
        "the try fails as a zombie: {stdout}"
    );
    let zombie = log("zombie");
    let killed = line_with(&zombie, "killing the try");
    assert!(
        killed.contains("its worker was not heard of for 4s")
            && killed.contains("task_instance_heartbeat_timeout (4s): a zombie")
            && killed.contains("deleting pod"),
        "{zombie}"
    );
    for task in ["silent", "zombie"] {
        for pod in pods_created(&log(task)) {
            gone(&client, ns, &pod).await;
        }
    }
    let mut left = worker_secrets(&client, ns).await;
    for _ in 0..100 {
        if left.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        left = worker_secrets(&client, ns).await;
    }
    assert!(
        left.is_empty(),
        "the Secrets went with their pods: {left:?}"
    );

    // 2. Gust dies while a worker pod runs: the real garbage collector deletes its Secret
    // once the pod is deleted, through the owner reference alone.
    let orphan_home = tempfile::tempdir().expect("home");
    let child = common::gust_process(orphan_home.path(), "")
        .env_remove("GUST__DATABASE__URL")
        .envs(worker_pods_env(&account, ns, "300s"))
        .args([
            "dags",
            "test",
            "real_cluster_worker_orphan",
            "--logical-date",
            "2024-01-01",
        ])
        .arg("--dags-folder")
        .arg(&dags)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("gust starts");
    let pod = running_pod(
        &client,
        ns,
        &task_pods("real_cluster_worker_orphan", "held"),
    )
    .await;
    let mut secret = None;
    for _ in 0..100 {
        secret = worker_secrets(&client, ns)
            .await
            .into_iter()
            .find(|(_, owner)| owner.as_ref().is_some_and(|(name, _)| *name == pod));
        if secret.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (secret, _) = secret.expect("the held pod's Secret, owned by it");
    common::kill9(child);
    pods.delete(&pod, &kube::api::DeleteParams::default())
        .await
        .expect("deleting the pod");
    gone(&client, ns, &pod).await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let mut collected = false;
    for _ in 0..300 {
        if secrets
            .get_opt(&secret)
            .await
            .expect("reading secrets")
            .is_none()
        {
            collected = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        collected,
        "the garbage collector deleted Secret {secret} with its pod"
    );
    assert!(
        began.elapsed() < Duration::from_secs(60),
        "the test took {:?}",
        began.elapsed()
    );
}

/// A `kueue_job` and a `kubernetes_job` created suspended, on an API server without Jobs'
/// `spec.suspend` (Kubernetes 1.20 drops it).
const SUSPENDED_JOBS: &str = r#"
real_cluster_suspended_jobs:
  start_date: 2024-01-01
  default_args:
    namespace: default
    image: perl:5.34.0
    cmds: ["perl", "-e", "print 1"]
    annotations: {sim.gust.dev/run-seconds: "30"}
    wait_until_job_complete: true
    get_logs: false
    retries: 0
  tasks:
    queued:
      operator: KubernetesStartKueueJobOperator
      queue_name: user-queue
    held:
      operator: KubernetesJobOperator
      suspend: true
"#;

/// The job a failure line names (`... from job NAME in namespace ...`).
fn job_named_in(line: &str) -> String {
    line.split("from job ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no job named in {line}"))
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_suspended_job_the_server_cannot_hold_is_deleted_and_fails_the_try_in_one_line() {
    let Some(kubeconfig) =
        cluster("a_suspended_job_the_server_cannot_hold_is_deleted_and_fails_the_try_in_one_line")
    else {
        return;
    };
    let client = client(&kubeconfig).await;
    let dags = tempfile::tempdir().expect("tempdir");
    std::fs::write(dags.path().join("suspended.yaml"), SUSPENDED_JOBS).expect("write");
    let ran = dags_test(&kubeconfig, dags.path(), "real_cluster_suspended_jobs").await;
    assert!(!ran.success, "both tries fail: {}", ran.stdout);

    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    for (task, why) in [
        ("queued", "Kueue could not hold it for admission"),
        ("held", "it would have started at once"),
    ] {
        let log = ran.log(task);
        let line = line_with(&log, "the API server dropped spec.suspend");
        assert!(line.contains(why), "{line}");
        assert!(line.contains("before 1.21"), "{line}");
        assert!(line.contains("deleted it"), "{line}");
        let name = job_named_in(line);
        // Deleted at once: its pods (run-seconds 30) never get to finish.
        for _ in 0..300 {
            if jobs.get_opt(&name).await.expect("reading jobs").is_none() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(
            jobs.get_opt(&name).await.expect("reading jobs").is_none(),
            "job {name} was deleted"
        );
        assert!(!log.contains("succeeded"), "{log}");
    }
}

/// The Spark operator's CRD as these tests install it (tests/cluster/crds: a hand-written
/// subset of upstream's, see the file).
fn spark_crd() -> PathBuf {
    repository().join("tests/cluster/crds/sparkapplications.sparkoperator.k8s.io.yaml")
}

/// A two-section Spark template with every pod setting Gust lays onto the driver and the
/// executors; `DRIVER_CPU` is the driver's CPU request.
const SPARK_TEMPLATE: &str = r#"
spark:
  apiVersion: sparkoperator.k8s.io/v1beta2
  kind: SparkApplication
  spec:
    type: Python
    pythonVersion: "3"
    mode: cluster
    sparkVersion: 3.4.0
    restartPolicy: {type: Never}
    imagePullPolicy: IfNotPresent
    sparkConf: {spark.ui.enabled: "false"}
    dynamicAllocation: {enabled: false}
    driver:
      serviceAccount: default
      container_resources:
        cpu: {request: DRIVER_CPU, limit: 1200m}
        memory: {limit: 2Gi}
    executor:
      instances: 2
      container_resources:
        cpu: {request: 2}
        memory: {limit: 4Gi}
        gpu: {name: nvidia.com/gpu, quantity: 1}
kubernetes:
  env_vars: {MODE: test}
  env_from: [{configMapRef: {name: spark-settings}}]
  node_selector: {type: sim}
  tolerations: [{key: dedicated, operator: Equal, value: spark, effect: NoSchedule}]
  config_map_mounts: {spark-files: /etc/spark-files}
  from_env_secret: [spark-secret]
  affinity:
    nodeAffinity:
      preferredDuringSchedulingIgnoredDuringExecution:
      - weight: 1
        preference:
          matchExpressions: [{key: type, operator: In, values: [sim]}]
"#;

const SPARK_DAG: &str = r#"
real_cluster_spark:
  start_date: 2024-01-01
  default_args:
    operator: SparkKubernetesOperator
    namespace: gust-spark
    image: apache/spark-py:v3.4.0
    code_path: local:///opt/spark/examples/src/main/python/pi.py
    application_file: spark.yaml
    retries: 0
  tasks:
    completes: {}
    fails:
      get_logs: false
    refused:
      application_file: refused.yaml
"#;

/// Every path (`/spec/driver/env/0/name`) of `value`'s objects and arrays, values aside.
fn json_paths(value: &serde_json::Value, at: &str, paths: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, inner) in map {
                let path = format!("{at}/{key}");
                json_paths(inner, &path, paths);
                paths.push(path);
            }
        }
        serde_json::Value::Array(items) => {
            for (i, inner) in items.iter().enumerate() {
                let path = format!("{at}/{i}");
                json_paths(inner, &path, paths);
                paths.push(path);
            }
        }
        _ => {}
    }
}

/// Plays the Spark operator for one application, as its controller moves it on: SUBMITTED with
/// its driver pod (which nodesim runs), RUNNING, then COMPLETED once the driver pod succeeded
/// (task `completes`) or FAILED with the operator's message (any other task). Answers the
/// application's spec as the API server stored it.
async fn play_spark_application(
    client: kube::Client,
    apps: Api<kube::api::DynamicObject>,
    app: kube::api::DynamicObject,
) -> serde_json::Value {
    use kube::ResourceExt as _;
    use kube::api::{Patch, PatchParams};

    let name = app.name_any();
    let namespace = app.namespace().expect("a namespaced application");
    let task = app.labels().get("task_id").cloned().unwrap_or_default();
    let driver = format!("{name}-driver");
    let set = |status: serde_json::Value| {
        let apps = apps.clone();
        let name = name.clone();
        async move {
            apps.patch_status(
                &name,
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({ "status": status })),
            )
            .await
            .unwrap_or_else(|err| panic!("setting {name}'s status: {err}"));
        }
    };
    set(serde_json::json!({
        "applicationState": {"state": "SUBMITTED"},
        "driverInfo": {"podName": driver},
        "submissionAttempts": 1,
    }))
    .await;
    if task != "completes" {
        set(serde_json::json!({"applicationState": {"state": "RUNNING"}})).await;
        set(serde_json::json!({"applicationState": {
            "state": "FAILED",
            "errorMessage": "driver container failed with ExitCode: 1, Reason: Error",
        }}))
        .await;
        return app.data["spec"].clone();
    }
    // The driver pod, owned by the application as the operator's is (deleting the application
    // deletes it).
    let pods: Api<Pod> = Api::namespaced(client, &namespace);
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {
            "name": driver,
            "labels": {"spark-role": "driver", "sparkoperator.k8s.io/app-name": name},
            "ownerReferences": [{
                "apiVersion": "sparkoperator.k8s.io/v1beta2", "kind": "SparkApplication",
                "name": name, "uid": app.uid().expect("a uid"), "controller": true,
            }],
        },
        "spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "spark-kubernetes-driver", "image": app.data["spec"]["image"]}],
        },
    }))
    .expect("a pod");
    // The namespace's default service account may still be on its way.
    let mut attempts = 0;
    while let Err(err) = pods.create(&PostParams::default(), &pod).await {
        attempts += 1;
        assert!(attempts < 100, "creating the driver pod {driver}: {err}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    set(serde_json::json!({"applicationState": {"state": "RUNNING"}})).await;
    for _ in 0..300 {
        let phase = pods
            .get(&driver)
            .await
            .expect("reading the driver pod")
            .status
            .and_then(|s| s.phase);
        if phase.as_deref() == Some("Succeeded") {
            set(serde_json::json!({"applicationState": {"state": "COMPLETED"}})).await;
            return app.data["spec"].clone();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the driver pod {driver} did not succeed within 30 s");
}

#[tokio::test(flavor = "multi_thread")]
async fn spark_applications_pass_the_crds_validation_and_end_as_the_operator_says() {
    use futures::StreamExt as _;
    use kube::ResourceExt as _;
    use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
    use kube::runtime::watcher;

    let Some(kubeconfig) =
        cluster("spark_applications_pass_the_crds_validation_and_end_as_the_operator_says")
    else {
        return;
    };
    let client = client(&kubeconfig).await;
    succeeds(
        kubectl(&kubeconfig).arg("apply").arg("-f").arg(spark_crd()),
        "installing the SparkApplication CRD",
    );
    succeeds(
        kubectl(&kubeconfig).args([
            "wait",
            "--for",
            "condition=established",
            "--timeout",
            "30s",
            "crd/sparkapplications.sparkoperator.k8s.io",
        ]),
        "waiting for the CRD",
    );
    namespace(&client, "gust-spark").await;
    let dags = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dags.path().join("spark.yaml"),
        SPARK_TEMPLATE.replace("DRIVER_CPU", "1"),
    )
    .expect("write");
    // Half a core: Gust (as Airflow) makes whole cores of it, 0, which the CRD refuses.
    std::fs::write(
        dags.path().join("refused.yaml"),
        SPARK_TEMPLATE.replace("DRIVER_CPU", "0.5"),
    )
    .expect("write");
    std::fs::write(dags.path().join("dag.yaml"), SPARK_DAG).expect("write");

    // The Spark operator, played: each new application is moved on by a task of its own.
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(
        "sparkoperator.k8s.io",
        "v1beta2",
        "SparkApplication",
    ));
    let apps: Api<DynamicObject> = Api::namespaced_with(client.clone(), "gust-spark", &resource);
    let operator = {
        let (client, apps) = (client.clone(), apps.clone());
        tokio::spawn(async move {
            let mut events = watcher(apps.clone(), watcher::Config::default()).boxed();
            let mut played = std::collections::HashMap::new();
            while let Some(event) = events.next().await {
                let Ok(watcher::Event::Apply(app) | watcher::Event::InitApply(app)) = event else {
                    continue;
                };
                let task = app.labels().get("task_id").cloned().unwrap_or_default();
                if app.data["status"].is_null() && !played.contains_key(&task) {
                    let playing = play_spark_application(client.clone(), apps.clone(), app);
                    played.insert(task, tokio::spawn(playing));
                }
                if played.len() == 2 {
                    break;
                }
            }
            played
        })
    };
    let ran = dags_test(&kubeconfig, dags.path(), "real_cluster_spark").await;
    assert!(
        !ran.success,
        "fails and refused fail the run: {}",
        ran.stdout
    );
    let mut played = tokio::time::timeout(Duration::from_secs(10), operator)
        .await
        .expect("the operator saw both applications")
        .expect("the operator ran");

    let log = ran.log("completes");
    assert!(log.contains("is RUNNING"), "{log}");
    assert!(log.contains("is COMPLETED"), "{log}");
    // The driver's log, through the API server from the node's kubelet (nodesim's line).
    assert!(
        log.contains("nodesim: no container ran for gust-spark/")
            && log.contains("spark-kubernetes-driver"),
        "{log}"
    );
    assert!(log.contains("try succeeded"), "{log}");
    let name = line_with(&log, "created SparkApplication")
        .split("created SparkApplication ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the application's name")
        .to_owned();

    // Nothing Gust sent was pruned by the CRD's schema: every path of the application
    // `gust tasks dry-run` prints is in the one the API server stored.
    let stored = played
        .remove("completes")
        .expect("the operator played completes")
        .await
        .expect("playing completes");
    let home = tempfile::tempdir().expect("tempdir");
    let printed = succeeds(
        gust(home.path())
            .args([
                "tasks",
                "dry-run",
                "real_cluster_spark",
                "completes",
                "--dags-folder",
            ])
            .arg(dags.path()),
        "dry-run",
    );
    let printed: serde_json::Value = serde_yaml_ng::from_str(&printed).expect("YAML");
    let (mut sent, mut kept) = (Vec::new(), Vec::new());
    json_paths(&printed["spec"], "/spec", &mut sent);
    json_paths(&stored, "/spec", &mut kept);
    let pruned: Vec<&String> = sent.iter().filter(|path| !kept.contains(path)).collect();
    assert!(pruned.is_empty(), "pruned by the CRD's schema: {pruned:?}");
    assert_eq!(stored["driver"]["cores"], 1, "{stored}");
    assert_eq!(stored["executor"]["gpu"]["quantity"], 1, "{stored}");

    let log = ran.log("fails");
    let line = line_with(&log, "ended FAILED");
    assert!(
        line.contains("driver container failed with ExitCode: 1"),
        "{line}"
    );
    played
        .remove("fails")
        .expect("the operator played fails")
        .await
        .expect("playing fails");

    // The CRD's own validation, in one line: the driver's cores must be at least 1.
    let log = ran.log("refused");
    let line = line_with(&log, "cannot create SparkApplication");
    assert!(line.contains("spec.driver.cores"), "{line}");
    assert!(line.contains("(422 Invalid)"), "{line}");
    assert!(!line.contains("Status {"), "{line}");

    // Deleted once its outcome was recorded, and its driver pod with it (garbage collector).
    let pods: Api<Pod> = Api::namespaced(client.clone(), "gust-spark");
    for _ in 0..300 {
        let app = apps.get_opt(&name).await.expect("reading applications");
        let pod = pods
            .get_opt(&format!("{name}-driver"))
            .await
            .expect("reading pods");
        if app.is_none() && pod.is_none() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("SparkApplication {name} or its driver pod is still there");
}
