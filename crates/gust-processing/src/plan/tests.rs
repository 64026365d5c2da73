//! The processing pod, built by the pod builder from the planned arguments.

use super::*;
use gust_kube::build::{PodDefaults, PodRequest, TryLabels, build_pod};
use gust_operators::kubernetes_pod::PodArgs;
use k8s_openapi::api::core::v1::Pod as K8sPod;
use serde_json::json;

const RUN: &str = "manual__2024-01-01T00:00:00+00:00";

/// A DAG folder with `train.py`, a `pkg/` folder holding `main.py`, `bare/` without it, and
/// `params.yaml`.
struct Folder {
    dir: tempfile::TempDir,
}

impl Folder {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("train.py"), "print('hi')\n").unwrap();
        std::fs::create_dir_all(dir.path().join("pkg/lib")).unwrap();
        std::fs::write(dir.path().join("pkg/main.py"), "").unwrap();
        std::fs::write(dir.path().join("pkg/lib/util.py"), "").unwrap();
        std::fs::create_dir_all(dir.path().join("bare")).unwrap();
        std::fs::write(dir.path().join("params.yaml"), "depth: 3\n").unwrap();
        Self { dir }
    }

    fn dag_file(&self) -> PathBuf {
        self.dir.path().join("ml.yaml")
    }
}

fn s3() -> StepSettings {
    StepSettings {
        root: "s3://bucket/runs".to_owned(),
        gust_image: "ghcr.io/example/gust:1.0".to_owned(),
        gust: GustBinary::InImage,
        credentials_secret: Some("artifacts-creds".to_owned()),
    }
}

fn planned(folder: &Folder, args: Value, settings: &StepSettings) -> Result<StepPlan, StepError> {
    planned_xcom(folder, args, settings, true)
}

fn planned_xcom(
    folder: &Folder,
    args: Value,
    settings: &StepSettings,
    do_xcom_push: bool,
) -> Result<StepPlan, StepError> {
    let dag_file = folder.dag_file();
    let step = Step {
        dag_id: "ml",
        run_id: RUN,
        task_id: "train",
        map_index: -1,
        dag_file: &dag_file,
        do_xcom_push,
    };
    plan(args.as_object().expect("a map"), &step, settings)
}

/// `args` planned with an S3 root and an XCom, and the pod it runs as.
fn planned_pod(folder: &Folder, args: Value) -> (StepPlan, K8sPod) {
    let plan = planned(folder, args, &s3()).unwrap();
    let pod = pod(&plan, true);
    (plan, pod)
}

/// The pod a planned try runs as, as both pod runtimes build it.
fn pod(plan: &StepPlan, do_xcom_push: bool) -> K8sPod {
    let args = PodArgs::read(&plan.pod_args).expect("the planned arguments are kubernetes_pod's");
    build_pod(&PodRequest {
        args: &args,
        labels: TryLabels {
            dag_id: "ml",
            task_id: "train",
            run_id: RUN,
            try_number: 1,
            map_index: gust_core::mapping::UNMAPPED,
        },
        template_file: None,
        do_xcom_push,
        unique: "abcd1234",
        defaults: &PodDefaults::default(),
    })
    .expect("the pod builds")
}

fn containers(pod: &K8sPod) -> (&Container, &Container) {
    let spec = pod.spec.as_ref().unwrap();
    let init = &spec.init_containers.as_ref().unwrap()[0];
    let base = spec.containers.iter().find(|c| c.name == "base").unwrap();
    (init, base)
}

fn mounts(container: &Container) -> Vec<(&str, &str)> {
    container
        .volume_mounts
        .iter()
        .flatten()
        .map(|m| (m.name.as_str(), m.mount_path.as_str()))
        .collect()
}

/// The step's own command: what the wrapper runs after `--`.
fn user_command(base: &Container) -> &[String] {
    let command = base.command.as_deref().unwrap();
    let after = command.iter().position(|w| w == "--").unwrap();
    &command[after + 1..]
}

fn env_of(container: &Container) -> Vec<(&str, &str)> {
    container
        .env
        .iter()
        .flatten()
        .map(|v| (v.name.as_str(), v.value.as_deref().unwrap_or_default()))
        .collect()
}

fn the_step() -> Value {
    json!({
        "image": "python:3.12-slim",
        "code": "train.py",
        "inputs": [{"name": "train", "source": "s3://bucket/runs/ml/prep/train"}],
        "outputs": [{"name": "model"}, {"name": "metrics", "source": "/opt/ml/processing/eval/metrics.json",
                     "destination": "s3://other/metrics.json"}],
        "config": "params.yaml",
    })
}

#[test]
fn the_processing_pod_matches_its_golden_manifest() {
    let folder = Folder::new();
    let plan = planned(&folder, the_step(), &s3()).unwrap();
    let yaml = gust_kube::manifest::to_yaml(&pod(&plan, true)).unwrap();
    insta::assert_snapshot!(yaml);
}

#[test]
fn the_init_container_installs_gust_and_fetches_code_config_and_inputs() {
    let folder = Folder::new();
    let (plan, pod) = planned_pod(&folder, the_step());
    let (init, _) = containers(&pod);
    assert_eq!(init.name, "gust-fetch");
    assert_eq!(init.image.as_deref(), Some("ghcr.io/example/gust:1.0"));
    assert_eq!(
        init.command.as_deref().unwrap(),
        [
            "gust",
            "artifacts",
            "fetch",
            "--install",
            "/opt/gust/bin",
            "--termination-log",
            "/dev/termination-log",
            "--input",
            &format!("/opt/ml/processing/input/code=s3://bucket/runs/ml/{RUN}/train/code"),
            "--input",
            &format!("/opt/ml/processing/input/config=s3://bucket/runs/ml/{RUN}/train/config"),
            "--input",
            "/opt/ml/processing/input/train=s3://bucket/runs/ml/prep/train",
        ]
    );
    assert_eq!(
        mounts(init),
        [
            ("gust-processing", "/opt/ml/processing"),
            ("gust-bin", "/opt/gust/bin")
        ]
    );
    assert_eq!(init.args, None);
    // The downloads' own log goes to the try's log.
    let args = PodArgs::read(&plan.pod_args).unwrap();
    assert!(args.init_container_logs.unwrap().includes("gust-fetch"));
}

#[test]
fn code_and_config_are_uploaded_under_the_tasks_folder_of_the_run() {
    let folder = Folder::new();
    let plan = planned(&folder, the_step(), &s3()).unwrap();
    let prefix = format!("s3://bucket/runs/ml/{RUN}/train");
    assert_eq!(
        plan.uploads,
        [
            Upload {
                local: folder.dir.path().join("train.py"),
                uri: format!("{prefix}/code/train.py"),
            },
            Upload {
                local: folder.dir.path().join("params.yaml"),
                uri: format!("{prefix}/config/params.yaml"),
            },
        ]
    );
    assert_eq!(
        plan.inputs,
        [(
            "train".to_owned(),
            "s3://bucket/runs/ml/prep/train".to_owned()
        )]
    );
    let outputs: Vec<(&str, &str)> = plan
        .outputs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        outputs,
        [
            ("model", format!("{prefix}/model").as_str()),
            ("metrics", "s3://other/metrics.json")
        ]
    );
}

#[test]
fn the_base_command_runs_under_the_wrapper_which_uploads_outputs_and_writes_the_xcom() {
    let folder = Folder::new();
    let (_, pod) = planned_pod(&folder, the_step());
    let (_, base) = containers(&pod);
    assert_eq!(base.image.as_deref(), Some("python:3.12-slim"));
    assert_eq!(
        base.command.as_deref().unwrap(),
        [
            "/opt/gust/bin/gust",
            "artifacts",
            "run",
            "--xcom",
            "/airflow/xcom/return.json",
            "--output",
            &format!("model=/opt/ml/processing/output/model=s3://bucket/runs/ml/{RUN}/train/model"),
            "--output",
            "metrics=/opt/ml/processing/eval/metrics.json=s3://other/metrics.json",
            "--",
            "python3",
            "/opt/ml/processing/input/code/train.py",
        ]
    );
    assert_eq!(base.args, None);
    assert_eq!(
        mounts(base),
        [
            ("xcom", "/airflow/xcom"),
            ("gust-processing", "/opt/ml/processing"),
            ("gust-bin", "/opt/gust/bin"),
        ]
    );
}

#[test]
fn without_xcom_the_wrapper_writes_none() {
    let folder = Folder::new();
    let plan = planned_xcom(&folder, the_step(), &s3(), false).unwrap();
    let pod = pod(&plan, false);
    let (_, base) = containers(&pod);
    let command = base.command.as_deref().unwrap();
    assert!(!command.iter().any(|w| w == "--xcom"), "{command:?}");
    assert_eq!(
        &command[..4],
        ["/opt/gust/bin/gust", "artifacts", "run", "--output"]
    );
}

#[test]
fn the_pod_has_the_processing_and_bin_volumes_as_empty_dirs() {
    let folder = Folder::new();
    let (_, pod) = planned_pod(&folder, the_step());
    let volumes: Vec<(&str, bool)> = pod
        .spec
        .as_ref()
        .unwrap()
        .volumes
        .iter()
        .flatten()
        .map(|v| (v.name.as_str(), v.empty_dir.is_some()))
        .collect();
    assert_eq!(
        volumes,
        [
            ("xcom", true),
            ("gust-processing", true),
            ("gust-bin", true)
        ]
    );
}

#[test]
fn the_step_sees_its_inputs_outputs_and_code_as_variables() {
    let folder = Folder::new();
    let mut args = the_step();
    args["env_vars"] = json!({"DEPTH": 3});
    let plan = planned(&folder, args, &s3()).unwrap();
    let pod = pod(&plan, true);
    let (init, base) = containers(&pod);
    assert_eq!(
        env_of(base),
        [
            ("DEPTH", "3"),
            ("GUST_CODE_DIR", "/opt/ml/processing/input/code"),
            ("GUST_INPUT_CONFIG", "/opt/ml/processing/input/config"),
            ("GUST_INPUT_TRAIN", "/opt/ml/processing/input/train"),
            ("GUST_OUTPUT_MODEL", "/opt/ml/processing/output/model"),
            (
                "GUST_OUTPUT_METRICS",
                "/opt/ml/processing/eval/metrics.json"
            ),
            ("GUST_XCOM_FILE", "/airflow/xcom/return.json"),
        ]
    );
    assert!(init.env.is_none());
}

#[test]
fn credentials_come_from_the_secret_in_both_containers_and_never_as_values() {
    let folder = Folder::new();
    let mut args = the_step();
    args["env_from"] = json!([{"configMapRef": {"name": "settings"}}]);
    let plan = planned(&folder, args, &s3()).unwrap();
    let pod = pod(&plan, true);
    let (init, base) = containers(&pod);
    let from = |c: &Container| {
        c.env_from
            .iter()
            .flatten()
            .map(|f| {
                (
                    f.secret_ref
                        .as_ref()
                        .map(|s| s.name.clone())
                        .or_else(|| f.config_map_ref.as_ref().map(|m| m.name.clone()))
                        .unwrap_or_default(),
                    f.prefix.clone(),
                )
            })
            .collect::<Vec<_>>()
    };
    let secret = (
        "artifacts-creds".to_owned(),
        Some("GUST_ARTIFACTS_".to_owned()),
    );
    assert_eq!(from(init), std::slice::from_ref(&secret));
    assert_eq!(from(base), [("settings".to_owned(), None), secret]);
    let manifest = serde_json::to_string(&pod).unwrap();
    assert!(!manifest.contains("\"GUST_ARTIFACTS_login"), "{manifest}");
    assert!(!manifest.contains("password"), "{manifest}");

    let none = StepSettings {
        credentials_secret: None,
        ..s3()
    };
    let plan = planned(&folder, the_step(), &none).unwrap();
    let pod = self::pod(&plan, true);
    let (init, base) = containers(&pod);
    assert!(init.env_from.is_none() && base.env_from.is_none());
}

#[test]
fn a_local_store_is_mounted_at_its_own_path_in_both_containers() {
    let folder = Folder::new();
    let store = folder.dir.path().join("store");
    let settings = StepSettings {
        root: store.display().to_string(),
        credentials_secret: None,
        ..s3()
    };
    let plan = planned(&folder, the_step(), &settings).unwrap();
    let pod = pod(&plan, true);
    let spec = pod.spec.as_ref().unwrap();
    let volume = spec
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == "gust-artifact-store")
        .expect("the store's volume");
    let path = store.display().to_string();
    assert_eq!(volume.host_path.as_ref().unwrap().path, path);
    let (init, base) = containers(&pod);
    for container in [init, base] {
        assert!(
            mounts(container).contains(&("gust-artifact-store", path.as_str())),
            "{}",
            container.name
        );
    }
    assert_eq!(
        plan.outputs["model"],
        format!("{path}/ml/{RUN}/train/model")
    );
    let file_root = StepSettings {
        root: format!("file://{path}"),
        ..settings
    };
    let plan = planned(&folder, the_step(), &file_root).unwrap();
    assert!(
        self::pod(&plan, true)
            .spec
            .unwrap()
            .volumes
            .unwrap()
            .iter()
            .any(|v| v.name == "gust-artifact-store")
    );
}

#[test]
fn a_code_folder_runs_its_main_py_and_is_uploaded_whole() {
    let folder = Folder::new();
    let (plan, pod) = planned_pod(
        &folder,
        json!({"image": "python", "code": "pkg", "arguments": ["--depth", "3"]}),
    );
    assert_eq!(
        plan.uploads,
        [Upload {
            local: folder.dir.path().join("pkg"),
            uri: format!("s3://bucket/runs/ml/{RUN}/train/code"),
        }]
    );
    let (_, base) = containers(&pod);
    assert_eq!(
        user_command(base),
        [
            "python3",
            "/opt/ml/processing/input/code/main.py",
            "--depth",
            "3"
        ]
    );
}

#[test]
fn a_code_folder_without_main_py_needs_a_command() {
    let folder = Folder::new();
    let err = planned(&folder, json!({"image": "python", "code": "bare"}), &s3()).unwrap_err();
    assert!(matches!(err, StepError::NoEntryFile(_)), "{err:?}");
    assert!(
        err.to_string()
            .ends_with("is a folder without main.py: add it, or give a `command`"),
        "{err}"
    );
    let (_, pod) = planned_pod(
        &folder,
        json!({"image": "python", "code": "bare", "command": "python3 $GUST_CODE_DIR/run.py"}),
    );
    let (_, base) = containers(&pod);
    assert_eq!(
        base.command.as_deref().unwrap().last().unwrap(),
        "python3 $GUST_CODE_DIR/run.py"
    );
}

#[test]
fn a_command_alone_needs_no_upload_and_runs_as_given() {
    let folder = Folder::new();
    let (plan, pod) = planned_pod(
        &folder,
        json!({"image": "alpine", "cmds": ["sh", "-c"], "arguments": ["echo 1 > $GUST_OUTPUT_N"],
               "outputs": [{"name": "n", "source": "/opt/ml/processing/output/n.txt"}]}),
    );
    assert!(plan.uploads.is_empty());
    let (init, base) = containers(&pod);
    assert_eq!(
        init.command.as_deref().unwrap(),
        [
            "gust",
            "artifacts",
            "fetch",
            "--install",
            "/opt/gust/bin",
            "--termination-log",
            "/dev/termination-log"
        ]
    );
    assert_eq!(user_command(base), ["sh", "-c", "echo 1 > $GUST_OUTPUT_N"]);
    assert!(!env_of(base).iter().any(|(n, _)| *n == "GUST_CODE_DIR"));
}

#[test]
fn a_config_uri_is_fetched_into_the_config_folder_without_upload() {
    let folder = Folder::new();
    let (plan, pod) = planned_pod(
        &folder,
        json!({"image": "alpine", "command": ["true"], "config": "s3://cfg/params.yaml"}),
    );
    assert!(plan.uploads.is_empty());
    let (init, _) = containers(&pod);
    assert_eq!(
        init.command.as_deref().unwrap().last().unwrap(),
        "/opt/ml/processing/input/config/=s3://cfg/params.yaml"
    );
}

#[test]
fn the_users_own_init_containers_volumes_and_mounts_are_kept() {
    let folder = Folder::new();
    let (_, pod) = planned_pod(
        &folder,
        json!({
            "image": "python", "code": "train.py",
            "init_containers": [{"name": "warm-up", "image": "busybox", "command": ["true"]}],
            "volumes": [{"name": "scratch", "empty_dir": {}}],
            "volume_mounts": [{"name": "scratch", "mount_path": "/scratch"}],
        }),
    );
    let spec = pod.spec.as_ref().unwrap();
    let inits: Vec<&str> = spec
        .init_containers
        .iter()
        .flatten()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(inits, ["gust-fetch", "warm-up"]);
    let volumes: Vec<&str> = spec
        .volumes
        .iter()
        .flatten()
        .map(|v| v.name.as_str())
        .collect();
    assert_eq!(volumes, ["xcom", "scratch", "gust-processing", "gust-bin"]);
    let (_, base) = containers(&pod);
    assert_eq!(mounts(base)[1], ("scratch", "/scratch"));
}

#[test]
fn inputs_given_as_paths_next_to_the_dag_are_staged_and_absolute_paths_read_in_place() {
    let folder = Folder::new();
    std::fs::create_dir_all(folder.dir.path().join("data")).unwrap();
    std::fs::write(folder.dir.path().join("data/customers.csv"), "a\n").unwrap();
    let plan = planned(
        &folder,
        json!({"image": "python", "command": ["true"], "inputs": [
            {"name": "raw", "source": "data/customers.csv", "destination": "/opt/ml/processing/input/raw/"},
            {"name": "all", "source": "data"},
            {"name": "kept", "source": "/srv/store/ml/prep/train"},
        ]}),
        &s3(),
    )
    .unwrap();
    let prefix = format!("s3://bucket/runs/ml/{RUN}/train/inputs");
    assert_eq!(
        plan.uploads,
        [
            Upload {
                local: folder.dir.path().join("data/customers.csv"),
                uri: format!("{prefix}/raw/customers.csv"),
            },
            Upload {
                local: folder.dir.path().join("data"),
                uri: format!("{prefix}/all"),
            },
        ]
    );
    let pod = pod(&plan, true);
    let (init, _) = containers(&pod);
    let command = init.command.as_deref().unwrap();
    assert_eq!(
        &command[7..],
        [
            "--input",
            &format!("/opt/ml/processing/input/raw/={prefix}/raw/customers.csv"),
            "--input",
            &format!("/opt/ml/processing/input/all={prefix}/all"),
            "--input",
            "/opt/ml/processing/input/kept=/srv/store/ml/prep/train",
        ]
    );
    assert_eq!(plan.inputs[0].1, format!("{prefix}/raw/customers.csv"));
    let err = planned(
        &folder,
        json!({"image": "python", "command": ["true"], "inputs": [{"name": "x", "source": "nope.csv"}]}),
        &s3(),
    )
    .unwrap_err();
    assert!(err.to_string().starts_with("`inputs[0].source` "), "{err}");
}

#[test]
fn code_paths_are_relative_to_the_dag_file_or_absolute() {
    let folder = Folder::new();
    let absolute = folder.dir.path().join("train.py").display().to_string();
    let plan = planned(&folder, json!({"image": "python", "code": absolute}), &s3()).unwrap();
    assert_eq!(plan.uploads[0].local, folder.dir.path().join("train.py"));
}

#[test]
fn every_problem_is_an_error_naming_what_is_wrong() {
    let folder = Folder::new();
    let cases = [
        (
            json!({"image": "x"}),
            "argument \"code\": give `code` (its entry file runs with python3) or `command`",
        ),
        (json!({"image": "x", "code": "missing.py"}), "`code` "),
        (
            json!({"image": "x", "command": ["true"], "config": "missing.yaml"}),
            "`config` ",
        ),
        (
            json!({"image": "x", "command": ["true"], "inputs": [{"name": "a b", "source": "s3://b/x"}]}),
            "argument \"inputs[0].name\"",
        ),
        (
            json!({"image": "x", "command": ["true"], "outputs": [{"name": "m", "source": "/tmp/m"}]}),
            "argument \"outputs[0].source\": /tmp/m is not under /opt/ml/processing/",
        ),
        (
            json!({"image": "x", "command": ["true"], "volumes": [{"name": "gust-bin", "emptyDir": {}}]}),
            "volume \"gust-bin\" is Gust's own in a processing pod; give yours another name",
        ),
        (
            json!({"image": "x", "command": ["true"],
                   "init_containers": [{"name": "gust-fetch", "image": "busybox"}]}),
            "init container \"gust-fetch\" is Gust's own",
        ),
        (
            json!({"image": "x", "command": ["true"], "volumes": [{"name": "v", "emptyDir": {}}],
                   "volume_mounts": [{"name": "v", "mountPath": "/opt/gust/bin"}]}),
            "mount path /opt/gust/bin is Gust's own",
        ),
    ];
    for (args, says) in cases {
        let err = planned(&folder, args.clone(), &s3()).unwrap_err();
        assert!(err.to_string().starts_with(says), "{args}: {err}");
    }
    let err = planned(&folder, json!({"image": "x", "code": "missing.py"}), &s3()).unwrap_err();
    assert!(
        err.one_line().contains("missing.py: cannot be read: "),
        "{}",
        err.one_line()
    );
}

#[test]
fn without_an_image_the_pod_builder_says_so() {
    let folder = Folder::new();
    let plan = planned(&folder, json!({"code": "train.py"}), &s3()).unwrap();
    let args = PodArgs::read(&plan.pod_args).unwrap();
    let err = build_pod(&PodRequest {
        args: &args,
        labels: TryLabels {
            dag_id: "ml",
            task_id: "train",
            run_id: RUN,
            try_number: 1,
            map_index: gust_core::mapping::UNMAPPED,
        },
        template_file: None,
        do_xcom_push: true,
        unique: "abcd1234",
        defaults: &PodDefaults::default(),
    })
    .unwrap_err();
    assert!(err.to_string().contains("has no image"), "{err}");
}

#[test]
fn the_local_runtime_runs_this_hosts_binary_from_its_folder_mounted_read_only() {
    let folder = Folder::new();
    let settings = StepSettings {
        gust: GustBinary::Host(PathBuf::from("/tmp/build/debug/gust")),
        ..s3()
    };
    let plan = planned(&folder, the_step(), &settings).unwrap();
    let pod = pod(&plan, true);
    let volume = pod
        .spec
        .as_ref()
        .unwrap()
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == "gust-host-bin")
        .expect("the binary's folder");
    assert_eq!(volume.host_path.as_ref().unwrap().path, "/tmp/build/debug");
    let (init, base) = containers(&pod);
    assert_eq!(init.command.as_ref().unwrap()[0], "/opt/gust/host/gust");
    assert!(mounts(init).contains(&("gust-host-bin", "/opt/gust/host")));
    assert!(
        !mounts(base)
            .iter()
            .any(|(name, _)| *name == "gust-host-bin")
    );
}

#[test]
fn on_the_local_runtime_file_inputs_and_outputs_outside_the_store_are_bound_at_their_paths() {
    let folder = Folder::new();
    let data = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(data.path().join("raw")).unwrap();
    std::fs::write(data.path().join("raw/a.csv"), "x\n").unwrap();
    std::fs::write(data.path().join("one.csv"), "x\n").unwrap();
    let d = data.path().display().to_string();
    let store = folder.dir.path().join("store").display().to_string();
    let settings = StepSettings {
        root: store.clone(),
        gust: GustBinary::Host(PathBuf::from("/usr/local/bin/gust")),
        credentials_secret: None,
        ..s3()
    };
    let args = json!({
        "image": "python:3.12",
        "command": ["true"],
        "inputs": [
            {"name": "raw", "source": format!("file://{d}/raw/")},
            {"name": "one", "source": format!("{d}/one.csv")},
            {"name": "missing", "source": "file:///nowhere/at/all/"},
            {"name": "stored", "source": format!("file://{store}/x/")},
        ],
        "outputs": [{"name": "out", "destination": format!("file://{d}/out")}],
    });
    let plan = planned(&folder, args, &settings).unwrap();
    let pod = pod(&plan, true);
    let bound: Vec<(String, String)> = pod
        .spec
        .as_ref()
        .unwrap()
        .volumes
        .iter()
        .flatten()
        .filter(|v| v.name.starts_with(LOCAL_VOLUME_PREFIX))
        .map(|v| {
            let host = v.host_path.as_ref().unwrap();
            (host.path.clone(), host.type_.clone().unwrap())
        })
        .collect();
    // The data folder (holding one.csv) covers raw/ and out/; the store is bound already, and
    // a source that does not exist is left for the fetch to report.
    assert_eq!(bound, [(d.clone(), "Directory".to_owned())]);
    let (init, base) = containers(&pod);
    for container in [init, base] {
        assert!(
            mounts(container).iter().any(|(_, path)| *path == d),
            "{}",
            container.name
        );
    }

    let on_cluster = planned(&folder, the_step(), &s3()).unwrap();
    assert!(
        !self::pod(&on_cluster, true)
            .spec
            .unwrap()
            .volumes
            .unwrap()
            .iter()
            .any(|v| v.name.starts_with(LOCAL_VOLUME_PREFIX))
    );
}
