use super::*;
use serde_json::json;

fn read(value: Value) -> Result<ProcessingArgs, ArgumentError> {
    ProcessingArgs::read(value.as_object().expect("an object"))
}

fn error(value: Value) -> ArgumentError {
    read(value).expect_err("refused")
}

#[test]
fn a_code_file_alone_is_a_step_with_defaults() {
    let args = read(json!({"image": "python:3.12", "code": "steps/train.py"})).unwrap();
    assert_eq!(args.code.as_deref(), Some("steps/train.py"));
    assert!(args.command.is_empty());
    assert!(args.inputs.is_empty() && args.outputs.is_empty());
    assert_eq!(args.pod.image.as_deref(), Some("python:3.12"));
    assert!(args.pod.cmds.is_empty());
}

#[test]
fn command_is_words_or_one_shell_line_and_cmds_is_its_kpo_name() {
    let words = read(json!({"command": ["python3", "x.py"]})).unwrap();
    assert_eq!(words.command, ["python3", "x.py"]);
    let line = read(json!({"command": "echo hi > /opt/ml/processing/output/a/x"})).unwrap();
    assert_eq!(
        line.command,
        ["sh", "-c", "echo hi > /opt/ml/processing/output/a/x"]
    );
    let kpo = read(json!({"cmds": ["true"], "arguments": ["a"]})).unwrap();
    assert_eq!(kpo.command, ["true"]);
    assert_eq!(kpo.pod.arguments, ["a"]);
    assert!(kpo.pod.cmds.is_empty());
    let both = error(json!({"cmds": ["true"], "command": ["true"]}));
    assert_eq!(both.path, "cmds");
    let empty = error(json!({"command": []}));
    assert_eq!(empty.path, "command");
}

#[test]
fn neither_code_nor_command_is_refused() {
    let err = error(json!({"image": "x"}));
    assert_eq!(
        err.to_string(),
        "argument \"code\": give `code` (its entry file runs with python3) or `command`"
    );
}

#[test]
fn inputs_and_outputs_default_to_the_processing_folders() {
    let args = read(json!({
        "command": ["true"],
        "inputs": [{"name": "train", "source": "s3://b/train/"},
                   {"name": "raw", "source": "s3://b/raw.csv", "destination": "/opt/ml/processing/data/raw.csv"}],
        "outputs": [{"name": "model"},
                    {"name": "report", "source": "/opt/ml/processing/report", "destination": "s3://b/r"}],
    }))
    .unwrap();
    assert_eq!(
        args.inputs[0].destination(),
        "/opt/ml/processing/input/train"
    );
    assert_eq!(
        args.inputs[1].destination(),
        "/opt/ml/processing/data/raw.csv"
    );
    assert_eq!(args.outputs[0].source(), "/opt/ml/processing/output/model");
    assert_eq!(args.outputs[1].source(), "/opt/ml/processing/report");
    assert_eq!(args.outputs[1].destination.as_deref(), Some("s3://b/r"));
}

#[test]
fn names_are_letters_digits_underscores_and_dashes() {
    let err =
        error(json!({"command": ["true"], "inputs": [{"name": "a b", "source": "s3://b/x"}]}));
    assert_eq!(err.path, "inputs[0].name");
    assert!(err.message.contains("\"a b\" is not a name"), "{err}");
    let err = error(json!({"command": ["true"], "outputs": [{"name": ""}]}));
    assert_eq!(err.path, "outputs[0].name");
}

#[test]
fn names_are_unique_including_their_variables() {
    let err = error(json!({"command": ["true"], "outputs": [{"name": "m"}, {"name": "m"}]}));
    assert_eq!(err.path, "outputs[1].name");
    assert!(
        err.message.contains("outputs[0] already has this name"),
        "{err}"
    );
    let err = error(json!({"command": ["true"], "inputs": [
        {"name": "a-b", "source": "s3://b/1"}, {"name": "A_B", "source": "s3://b/2"}]}));
    assert_eq!(err.path, "inputs[1].name");
    assert!(err.message.contains("$GUST_INPUT_A_B"), "{err}");
    let err = error(json!({"command": ["true"], "config": "c.json", "inputs": [
        {"name": "config", "source": "s3://b/c", "destination": "/opt/ml/processing/c"}]}));
    assert_eq!(err.path, "inputs[0].name");
    assert!(
        err.message.contains("config already has this name"),
        "{err}"
    );
    // An input and an output may share a name: their variables differ.
    read(
        json!({"command": ["true"], "inputs": [{"name": "m", "source": "s3://b/m"}],
                "outputs": [{"name": "m"}]}),
    )
    .unwrap();
}

#[test]
fn container_paths_must_be_plainly_under_the_processing_folder() {
    for (path, says) in [
        ("/data/x", "is not under /opt/ml/processing/"),
        ("opt/ml/processing/x", "is not under"),
        ("/opt/ml/processing", "is not under"),
        ("/opt/ml/processing/", "is not under"),
        ("/opt/ml/processingx/y", "is not under"),
        ("/opt/ml/processing/a=b", "contains '='"),
        ("/opt/ml/processing/../../etc", "'..'"),
    ] {
        let err = error(json!({"command": ["true"],
            "inputs": [{"name": "i", "source": "s3://b/x", "destination": path}]}));
        assert_eq!(err.path, "inputs[0].destination", "{path}");
        assert!(err.message.contains(says), "{path}: {err}");
        let err = error(json!({"command": ["true"], "outputs": [{"name": "o", "source": path}]}));
        assert_eq!(err.path, "outputs[0].source", "{path}");
    }
}

#[test]
fn two_things_fetched_to_one_place_are_refused() {
    let err = error(json!({"code": "x.py", "inputs": [{"name": "code", "source": "s3://b/c"}]}));
    assert_eq!(err.path, "inputs[0].destination");
    assert!(err.message.contains("already where code goes"), "{err}");
    let err = error(json!({"command": ["true"], "inputs": [
        {"name": "a", "source": "s3://b/1", "destination": "/opt/ml/processing/x/"},
        {"name": "b", "source": "s3://b/2", "destination": "/opt/ml/processing/x"}]}));
    assert_eq!(err.path, "inputs[1].destination");
}

#[test]
fn empty_sources_and_destinations_are_refused() {
    let err = error(json!({"command": ["true"], "inputs": [{"name": "i", "source": " "}]}));
    assert_eq!(err.path, "inputs[0].source");
    let err = error(json!({"command": ["true"], "outputs": [{"name": "o", "destination": ""}]}));
    assert_eq!(err.path, "outputs[0].destination");
    let err = error(json!({"code": "", "command": ["true"]}));
    assert_eq!(err.path, "code");
}

#[test]
fn code_from_object_storage_is_pointed_to_inputs() {
    let err = error(json!({"code": "s3://bucket/train.py"}));
    assert_eq!(err.path, "code");
    assert!(err.message.contains("give it as one of `inputs`"), "{err}");
}

#[test]
fn unknown_fields_of_inputs_are_named() {
    let err = error(json!({"command": ["true"], "inputs": [{"name": "i", "sauce": "s3://b"}]}));
    assert!(err.path.starts_with("inputs[0]"), "{err:?}");
    let err = error(json!({"command": ["true"], "outputs": "model"}));
    assert_eq!(err.path, "outputs");
}

#[test]
fn pod_arguments_are_read_as_kubernetes_pod_reads_them() {
    let args = read(json!({"command": ["true"], "env_vars": {"A": 1},
                           "volume_mounts": [{"name": "d", "mount_path": "/d"}]}))
    .unwrap();
    assert_eq!(args.pod.env_vars[0].value.as_deref(), Some("1"));
    assert_eq!(args.pod.volume_mounts[0].mount_path, "/d");
    let err = error(
        json!({"command": ["true"], "volume_mounts": [{"name": "d", "mountPath": "/d", "readonly": true}]}),
    );
    assert_eq!(err.path, "volume_mounts[0].readonly");
}

#[test]
fn templates_are_checked_once_rendered() {
    let loaded = json!({"command": ["true"], "inputs": [
        {"name": "train", "source": "{{ ti.xcom_pull(task_ids='prep')['train'] }}",
         "destination": "{{ params.where }}"}]});
    ProcessingArgs::check(loaded.as_object().unwrap()).unwrap();
    let err = error(loaded);
    assert_eq!(err.path, "inputs[0].destination");
}

#[test]
fn uris_are_told_from_paths() {
    assert!(is_uri("s3://bucket/x"));
    assert!(is_uri("file:///tmp/x"));
    assert!(!is_uri("config/params.yaml"));
    assert!(!is_uri("/abs/path"));
    assert!(!is_uri("://x"));
}

#[test]
fn variables_are_upper_case_with_underscores() {
    assert_eq!(input_variable("train-set"), "GUST_INPUT_TRAIN_SET");
    assert_eq!(output_variable("model"), "GUST_OUTPUT_MODEL");
}

#[test]
fn the_spec_takes_every_pod_argument_but_cmds_which_is_command() {
    for name in kubernetes_pod::SPEC.arguments {
        assert_eq!(SPEC.accepts(name), *name != "cmds", "{name}");
    }
    for name in OWN_ARGUMENTS {
        assert!(SPEC.accepts(name), "{name}");
    }
    assert_eq!(SPEC.canonical_argument("cmds"), Some("command"));
    assert_eq!(
        SPEC.canonical_argument("resources"),
        Some("container_resources")
    );
    assert!(SPEC.pushes_xcom_by_default);
    assert!(!SPEC.holds_worker);
}
