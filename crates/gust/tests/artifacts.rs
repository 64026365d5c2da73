//! `gust artifacts` as processing pods and users run it: `fetch` installs the binary and
//! downloads inputs, `run` wraps a command (exit codes, signals, outputs, XCom, a clean
//! environment), and `ls`/`get`/`put` use the `[artifacts]` connection. Against the local folder
//! store always, and against a real S3 server (moto, tests/s3/start-moto.sh) when one is set.

mod common;

use std::path::Path;

use gust_artifacts::testing::{LOGIN, SECRET, create_bucket, endpoint, unique_bucket};
use predicates::prelude::*;

fn file_uri(path: &Path) -> String {
    format!("file://{}", path.display())
}

fn read_json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).expect("the XCom file");
    serde_json::from_str(&text).expect("JSON")
}

#[test]
fn fetch_installs_the_binary_and_downloads_objects_and_prefixes() {
    let home = tempfile::tempdir().unwrap();
    let store = tempfile::tempdir().unwrap();
    let pod = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(store.path().join("data/train/part")).unwrap();
    std::fs::write(store.path().join("data/train/a.csv"), "x,y\n1,2\n").unwrap();
    std::fs::write(store.path().join("data/train/part/b.csv"), "3,4\n").unwrap();
    std::fs::write(store.path().join("data/config.json"), "{}").unwrap();
    let bin = pod.path().join("bin");
    common::gust(home.path())
        .args(["artifacts", "fetch", "--install"])
        .arg(&bin)
        .arg("--input")
        .arg(format!(
            "{}={}",
            pod.path().join("input/train").display(),
            file_uri(&store.path().join("data/train"))
        ))
        .arg("--input")
        .arg(format!(
            "{}/={}",
            pod.path().join("input/config").display(),
            file_uri(&store.path().join("data/config.json"))
        ))
        .arg("--input")
        .arg(format!(
            "{}={}",
            pod.path().join("input/one.csv").display(),
            store.path().join("data/train/a.csv").display()
        ))
        .assert()
        .success()
        .stdout(predicate::str::contains("fetched input"));
    let installed = bin.join("gust");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&installed).unwrap().permissions().mode() & 0o777,
        0o755
    );
    assert_eq!(
        std::fs::read_to_string(pod.path().join("input/train/a.csv")).unwrap(),
        "x,y\n1,2\n"
    );
    assert_eq!(
        std::fs::read_to_string(pod.path().join("input/train/part/b.csv")).unwrap(),
        "3,4\n"
    );
    assert_eq!(
        std::fs::read_to_string(pod.path().join("input/config/config.json")).unwrap(),
        "{}"
    );
    assert_eq!(
        std::fs::read_to_string(pod.path().join("input/one.csv")).unwrap(),
        "x,y\n1,2\n"
    );
}

#[test]
fn fetch_of_a_missing_input_fails_naming_the_uri() {
    let home = tempfile::tempdir().unwrap();
    let store = tempfile::tempdir().unwrap();
    let missing = file_uri(&store.path().join("never/written"));
    common::gust(home.path())
        .args(["artifacts", "fetch", "--input"])
        .arg(format!("{}={missing}", store.path().join("in").display()))
        .assert()
        .code(1)
        .stderr(predicate::str::contains(format!(
            "nothing at {missing}; check the path"
        )));
}

/// A processing step's folders: where the command runs, writes its output and the XCom.
struct Step {
    dir: tempfile::TempDir,
    store: tempfile::TempDir,
}

impl Step {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("a temporary folder"),
            store: tempfile::tempdir().expect("a temporary folder"),
        }
    }
    fn path(&self, p: &str) -> std::path::PathBuf {
        self.dir.path().join(p)
    }
    fn dest(&self, p: &str) -> String {
        file_uri(&self.store.path().join(p))
    }
    /// `--output NAME=PATH=URI` for `path` in the step's folder.
    fn output(&self, name: &str, path: &str, uri: &str) -> String {
        format!("{name}={}={uri}", self.path(path).display())
    }
    fn run(&self, outputs: &[String], script: &str) -> assert_cmd::Command {
        let mut cmd = common::gust(self.dir.path());
        cmd.current_dir(self.dir.path())
            .args(["artifacts", "run", "--xcom"])
            .arg(self.path("xcom/return.json"));
        for output in outputs {
            cmd.arg("--output").arg(output);
        }
        cmd.args(["--", "sh", "-c", script]);
        cmd
    }
}

#[test]
fn run_uploads_outputs_after_exit_0_and_merges_them_into_the_xcom() {
    let step = Step::new();
    let model = step.output("model", "out/model", &step.dest("runs/r1/train/model"));
    let report = step.output(
        "report",
        "out/report.txt",
        &step.dest("runs/r1/train/report.txt"),
    );
    let script = r#"mkdir -p out/model/sub xcom && printf abc > out/model/weights && printf de > out/model/sub/meta && printf ok > out/report.txt && printf '{"accuracy": 0.9}' > xcom/return.json"#;
    step.run(&[model, report], script)
        .assert()
        .success()
        .stdout(predicate::str::contains(format!(
            "uploaded output model: 2 objects, 5 B -> {}",
            step.dest("runs/r1/train/model")
        )))
        .stdout(predicate::str::contains(
            "uploaded output report: 1 object, 2 B",
        ));
    let stored = step.store.path().join("runs/r1/train");
    assert_eq!(
        std::fs::read_to_string(stored.join("model/weights")).unwrap(),
        "abc"
    );
    assert_eq!(
        std::fs::read_to_string(stored.join("model/sub/meta")).unwrap(),
        "de"
    );
    assert_eq!(
        std::fs::read_to_string(stored.join("report.txt")).unwrap(),
        "ok"
    );
    assert_eq!(
        read_json(&step.path("xcom/return.json")),
        serde_json::json!({
            "accuracy": 0.9,
            "model": step.dest("runs/r1/train/model"),
            "report": step.dest("runs/r1/train/report.txt"),
        })
    );
}

#[test]
fn run_uploads_nothing_when_the_command_fails_and_exits_with_its_code() {
    let step = Step::new();
    let model = step.output("model", "out", &step.dest("model"));
    step.run(&[model], "mkdir out && echo partial > out/f && exit 3")
        .assert()
        .code(3)
        .stdout(predicate::str::contains("uploaded").not());
    assert!(!step.store.path().join("model").exists());
    assert!(!step.path("xcom/return.json").exists());
}

#[test]
fn run_fails_with_1_when_an_output_is_missing_or_cannot_be_uploaded() {
    let step = Step::new();
    let missing = step.output("model", "out/model", &step.dest("model"));
    step.run(&[missing], "true")
        .assert()
        .code(1)
        .stderr(predicate::str::contains("output model: nothing at"))
        .stderr(predicate::str::contains("out/model"));
    // The destination's parent is a file: the upload cannot create it.
    std::fs::write(step.store.path().join("blocker"), "").unwrap();
    let blocked = step.output("model", "f", &step.dest("blocker/model"));
    step.run(&[blocked], "echo x > f")
        .assert()
        .code(1)
        .stderr(predicate::str::starts_with("error: output model:"));
    assert!(!step.path("xcom/return.json").exists());
}

#[test]
fn the_command_never_sees_gust_artifacts_variables() {
    let step = Step::new();
    step.run(&[], "env > env.txt")
        .env("GUST_ARTIFACTS_password", "hunter2-secret")
        .env("GUST_ARTIFACTS_login", "someone")
        .env("KEEP_ME", "yes")
        .assert()
        .success();
    let env = std::fs::read_to_string(step.path("env.txt")).unwrap();
    assert!(env.contains("KEEP_ME=yes"), "{env}");
    assert!(!env.contains("GUST_ARTIFACTS_"), "{env}");
    assert!(!env.contains("hunter2-secret"), "{env}");
}

#[test]
fn run_forwards_sigterm_to_the_command_and_exits_with_its_code() {
    use std::time::{Duration, Instant};
    let step = Step::new();
    let script = "trap 'exit 42' TERM; touch ready; while true; do sleep 0.05; done";
    #[allow(
        clippy::disallowed_methods,
        reason = "the test runs gust in the background to signal it"
    )]
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("gust"))
        .current_dir(step.dir.path())
        .env("GUST_HOME", step.dir.path())
        .args(["artifacts", "run", "--", "sh", "-c", script])
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !step.path("ready").exists() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the command never started"
        );
        std::thread::yield_now();
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap()),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(42));
}

#[test]
fn a_command_killed_by_a_signal_exits_128_plus_its_number() {
    let step = Step::new();
    step.run(&[], "kill -KILL $$").assert().code(128 + 9);
}

/// GUST_ARTIFACTS_* for the S3 server, as a processing pod's Secret provides them.
fn s3_env(cmd: &mut assert_cmd::Command, endpoint: &str) {
    cmd.env("GUST_ARTIFACTS_login", LOGIN)
        .env("GUST_ARTIFACTS_password", SECRET)
        .env("GUST_ARTIFACTS_endpoint_url", endpoint)
        .env("GUST_ARTIFACTS_region_name", "us-east-1");
}

#[test]
fn a_step_round_trips_through_s3_and_no_credential_is_printed_or_written() {
    let Some(endpoint) = endpoint() else { return };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let bucket = rt.block_on(create_bucket(&endpoint, &unique_bucket("cli-step")));
    let step = Step::new();
    let uri = format!("s3://{bucket}/runs/r1/prepare/train");
    let output = step.output("train", "out/train", &uri);
    let mut run = step.run(&[output], "mkdir -p out/train/parts && echo 1,2 > out/train/a.csv && echo 3 > out/train/parts/b.csv && env > env.txt");
    s3_env(&mut run, &endpoint);
    let done = run.assert().success();
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&done.get_output().stdout),
        String::from_utf8_lossy(&done.get_output().stderr)
    );
    assert!(
        printed.contains(&format!("uploaded output train: 2 objects, 6 B -> {uri}")),
        "{printed}"
    );
    let xcom = std::fs::read_to_string(step.path("xcom/return.json")).unwrap();
    for text in [
        &printed,
        &xcom,
        &std::fs::read_to_string(step.path("env.txt")).unwrap(),
    ] {
        assert!(
            !text.contains(SECRET) && !text.contains(LOGIN),
            "a credential leaked: {text}"
        );
    }

    // The next step's init container fetches it.
    let next = tempfile::tempdir().unwrap();
    let mut fetch = common::gust(next.path());
    fetch.args(["artifacts", "fetch", "--input"]).arg(format!(
        "{}={uri}",
        next.path().join("input/train").display()
    ));
    s3_env(&mut fetch, &endpoint);
    fetch.assert().success();
    assert_eq!(
        std::fs::read_to_string(next.path().join("input/train/parts/b.csv")).unwrap(),
        "3\n"
    );

    // A missing input on S3 fails naming it, without the credentials.
    let mut missing = common::gust(next.path());
    missing.args(["artifacts", "fetch", "--input"]).arg(format!(
        "{}=s3://{bucket}/runs/r1/nope",
        next.path().join("x").display()
    ));
    s3_env(&mut missing, &endpoint);
    let failed = missing.assert().code(1);
    let stderr = String::from_utf8_lossy(&failed.get_output().stderr).into_owned();
    assert!(
        stderr.contains(&format!("nothing at s3://{bucket}/runs/r1/nope")),
        "{stderr}"
    );
    assert!(
        !stderr.contains(SECRET) && !stderr.contains(LOGIN),
        "{stderr}"
    );
}

#[test]
fn ls_get_and_put_use_the_artifacts_connection() {
    let Some(endpoint) = endpoint() else { return };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let bucket = rt.block_on(create_bucket(&endpoint, &unique_bucket("cli-conn")));
    let home = tempfile::tempdir().unwrap();
    common::add_artifacts_connection(home.path(), &endpoint, LOGIN, SECRET);
    let work = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(work.path().join("model/sub")).unwrap();
    std::fs::write(work.path().join("model/w.bin"), vec![7u8; 2048]).unwrap();
    std::fs::write(work.path().join("model/sub/m.txt"), "m").unwrap();
    let prefix = format!("s3://{bucket}/manual/model");
    common::gust(home.path())
        .current_dir(work.path())
        .args(["artifacts", "put", "model", &prefix])
        .assert()
        .success()
        .stdout(predicate::str::contains(format!(
            "uploaded 2 objects, 2.0 KiB: model -> {prefix}"
        )));
    let listed = common::gust(home.path())
        .args(["artifacts", "ls", &prefix])
        .assert()
        .success();
    let table = String::from_utf8_lossy(&listed.get_output().stdout).into_owned();
    assert!(
        table.contains("size") && table.contains("modified") && table.contains("uri"),
        "{table}"
    );
    assert!(table.contains(&format!("{prefix}/sub/m.txt")), "{table}");
    assert!(table.contains("2.0 KiB"), "{table}");
    common::gust(home.path())
        .current_dir(work.path())
        .args(["artifacts", "get", &format!("{prefix}/w.bin"), "copy.bin"])
        .assert()
        .success();
    assert_eq!(
        std::fs::read(work.path().join("copy.bin")).unwrap(),
        vec![7u8; 2048]
    );
    // A URI without a scheme is a local path, relative to the current directory.
    let local = common::gust(home.path())
        .current_dir(work.path())
        .args(["artifacts", "ls", "model"])
        .assert()
        .success();
    assert!(String::from_utf8_lossy(&local.get_output().stdout).contains("sub/m.txt"));
}
