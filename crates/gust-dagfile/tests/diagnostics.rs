//! Golden tests of the problems reported for broken DAG files: every message names the file,
//! line, column, DAG and task, and says how to fix it.

mod support;

use std::path::Path;

use gust_dagfile::load_folder;

/// Every problem in tests/fixtures/invalid, one per line, paths relative to the fixtures.
#[test]
fn every_mistake_in_the_invalid_fixtures_is_reported_once_with_its_place() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/invalid");
    let load = load_folder(&root, support::now()).expect("the fixtures folder");
    let prefix = format!("{}/", root.display());
    let text: String = load
        .problems
        .iter()
        .map(|p| format!("{}\n", p.to_string().replace(&prefix, "")))
        .collect();
    insta::assert_snapshot!(text);
    assert!(
        load.dags.is_empty(),
        "no broken DAG may load: {:?}",
        load.dags
            .iter()
            .map(|d| d.id.to_string())
            .collect::<Vec<_>>()
    );
}

#[test]
fn one_bad_file_never_hides_the_good_ones() {
    let folder = support::Folder::new(&[
        ("bad.yaml", "bad:\n  tasks:\n    a: {operator: nope}\n"),
        ("good.yaml", "good:\n  tasks:\n    a: {operator: empty}\n"),
        ("broken.yaml", ": : :\n"),
    ]);
    let load = folder.load();
    assert_eq!(
        load.dags.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
        ["good"]
    );
    assert_eq!(load.problems.len(), 2, "{:#?}", load.problems);
}

#[test]
fn a_dag_id_defined_twice_is_an_error_in_the_second_file() {
    let folder = support::Folder::new(&[
        ("a.yaml", "same:\n  tasks: {t: {operator: empty}}\n"),
        ("b.yaml", "same:\n  tasks: {t: {operator: empty}}\n"),
    ]);
    let problems = folder.problems();
    assert_eq!(problems, ["b.yaml:1:1: same: DAG \"same\" is also defined in {root}/a.yaml; DAG ids must be unique across the DAGs folder; rename one"
        .replace("{root}/", &format!("{}/", folder.path().display()))
        .replace(&format!("{}/", folder.path().display()), "")]);
}

#[test]
fn a_broken_defaults_file_keeps_the_files_below_it_from_loading() {
    let folder = support::Folder::new(&[
        ("defaults.yml", "default_args: [not, a, map\n"),
        ("d.yaml", "d:\n  tasks: {t: {operator: empty}}\n"),
    ]);
    let load = folder.load();
    assert!(load.dags.is_empty());
    let problems = folder.problems();
    assert_eq!(problems.len(), 2, "{problems:#?}");
    assert!(
        problems[0].starts_with("d.yaml:1:1: not loaded: its defaults file"),
        "{problems:#?}"
    );
}

#[test]
fn a_problem_in_an_inherited_default_points_at_the_defaults_file() {
    let folder = support::Folder::new(&[
        ("defaults.yml", "default_args:\n  retries: lots\n"),
        ("d.yaml", "d:\n  tasks: {t: {operator: empty}}\n"),
    ]);
    assert_eq!(
        folder.problems(),
        ["defaults.yml:2:12: d.t: \"retries\" must be a whole number, not a string"]
    );
}

#[test]
fn undefined_upstream_names_suggest_the_closest_task() {
    let (folder, _) = support::load_one(
        "d:\n  tasks:\n    extract: {operator: empty}\n    load: {operator: empty, dependencies: [extrat]}\n",
    );
    assert_eq!(
        folder.problems(),
        [
            "dag.yaml:4:44: d.load: \"extrat\" is neither a task nor a task group of the DAG; did you mean \"extract\"?"
        ]
    );
}

#[test]
fn a_template_name_no_run_defines_is_reported_but_params_and_conf_are_not() {
    let folder = support::Folder::new(&[(
        "t.yaml",
        "t:\n  params: {table: x}\n  tasks:\n    a: {operator: bash, bash_command: \"echo {{ nope }} {{ params.table }} {{ params.from_conf }} {{ dag_run.conf.get('k', 1) }}\"}\n",
    )]);
    let problems = folder.problems();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].contains(
            "t.a: \"nope\" in template (line 1) would be undefined when the task runs: no context name \"nope\""
        ),
        "{problems:?}"
    );
}
