//! Warnings: keys Gust applies that Airflow, reading the same file through dag-factory 1.1.0,
//! ignores or refuses. The DAG still loads; each warning names the place, the DAG (and task)
//! and what to write instead.

mod support;

use gust_dagfile::{DagBag, Difference};
use support::{Folder, load_one};

fn lines(folder: &Folder, load: &gust_dagfile::FolderLoad) -> Vec<String> {
    let root = format!("{}/", folder.path().display());
    load.warnings
        .iter()
        .map(|w| w.to_string().replace(&root, ""))
        .collect()
}

#[test]
fn chains_and_gust_only_keys_load_and_are_each_warned_about_at_their_place() {
    let (folder, load) = load_one(
        "etl:
  owner: data
  dagrun_timeout_sec: 3600
  default_args:
    retry_delay_sec: 30
  tasks:
    a: {operator: bash, bash_command: echo a}
    b:
      operator: bash
      bash_command: echo b
      execution_timeout_sec: 600
  chains:
    - a >> b
",
    );
    assert!(load.problems.is_empty(), "{:?}", load.problems);
    assert_eq!(load.dags.len(), 1, "the DAG loads as Gust reads it");
    let dag = &load.dags[0];
    assert_eq!(
        dag.tasks()
            .find(|t| t.id.as_str() == "b")
            .map(|t| t.upstream.len()),
        Some(1),
        "Gust applies the chain"
    );
    assert_eq!(
        lines(&folder, &load),
        [
            "dag.yaml:2:3: etl: warning: dag-factory 1.1.0 ignores a DAG-level `owner`: in \
             Airflow the tasks' owner is \"airflow\"; move it into `default_args: {owner: ...}`",
            "dag.yaml:3:3: etl: warning: dag-factory 1.1.0 ignores `dagrun_timeout_sec`: in \
             Airflow the DAG's runs have no timeout; write `dagrun_timeout: {__type__: \
             datetime.timedelta, seconds: 3600}` instead",
            "dag.yaml:5:5: etl: warning: Airflow ignores `retry_delay_sec` in default_args \
             (dag-factory 1.1.0 passes it on unchanged): there the tasks keep Airflow's default \
             retry_delay; write `retry_delay: 30` (seconds) instead",
            "dag.yaml:11:7: etl.b: warning: Airflow refuses `execution_timeout_sec` on a task \
             (dag-factory 1.1.0 passes it on unchanged, and no operator takes it); write \
             `execution_timeout: {__type__: datetime.timedelta, seconds: 600}` instead",
            "dag.yaml:12:3: etl: warning: dag-factory 1.1.0 ignores `chains`: in Airflow these \
             dependencies do not exist and the tasks run without them; write the edges as \
             `dependencies:` of the downstream tasks, which both read",
        ]
    );
}

#[test]
fn a_file_airflow_reads_the_same_way_has_no_warnings() {
    let (_folder, load) = load_one(
        "etl:
  dagrun_timeout: {__type__: datetime.timedelta, hours: 1}
  default_args: {owner: data, retry_delay: 30, max_retry_delay: 600}
  task_groups:
    g: {default_args: {retries: 2}}
  tasks:
    - {task_id: a, operator: bash, bash_command: echo a}
    - {task_id: b, operator: bash, bash_command: echo b, dependencies: [a], task_group_name: g}
",
    );
    assert!(load.problems.is_empty(), "{:?}", load.problems);
    assert!(load.warnings.is_empty(), "{:?}", load.warnings);
}

#[test]
fn a_dag_level_owner_is_not_warned_about_when_default_args_name_one() {
    let (_folder, load) = load_one(
        "etl:\n  owner: ignored_by_both\n  default_args: {owner: data}\n  tasks: {a: {operator: empty}}\n",
    );
    assert!(load.warnings.is_empty(), "{:?}", load.warnings);
}

#[test]
fn a_key_inherited_from_a_defaults_file_is_warned_about_once_where_that_file_sets_it() {
    let folder = Folder::new(&[
        (
            "defaults.yml",
            "default_args:\n  max_retry_delay_sec: 900\n",
        ),
        ("one.yaml", "one:\n  tasks: {a: {operator: empty}}\n"),
        ("two.yaml", "two:\n  tasks: {a: {operator: empty}}\n"),
    ]);
    let load = folder.load();
    assert_eq!(load.dags.len(), 2);
    assert_eq!(load.warnings.len(), 1, "{:?}", load.warnings);
    let warning = &load.warnings[0];
    assert!(warning.location.file.ends_with("defaults.yml"));
    assert_eq!(warning.location.line, 2);
    assert!(matches!(
        warning.difference,
        Difference::SecondsSetting {
            key: "max_retry_delay_sec",
            in_task: false,
            seconds: Some(900)
        }
    ));
}

#[test]
fn a_task_group_default_args_seconds_setting_is_warned_about() {
    let (folder, load) = load_one(
        "etl:\n  task_groups:\n    g:\n      default_args: {retry_delay_sec: 5}\n  tasks:\n    a: {operator: empty, task_group_name: g}\n",
    );
    assert!(load.problems.is_empty(), "{:?}", load.problems);
    assert_eq!(
        lines(&folder, &load),
        [
            "dag.yaml:4:22: etl: warning: Airflow ignores `retry_delay_sec` in default_args \
          (dag-factory 1.1.0 passes it on unchanged): there the tasks keep Airflow's default \
          retry_delay; write `retry_delay: 5` (seconds) instead"
        ]
    );
}

#[test]
fn a_dag_that_fails_to_load_has_problems_and_no_warnings() {
    let (_folder, load) = load_one("etl:\n  tasks: {a: {operator: nope}}\n  chains: ['a >> a']\n");
    assert!(!load.problems.is_empty());
    assert!(load.warnings.is_empty(), "{:?}", load.warnings);
}

#[test]
fn the_bag_carries_the_warnings_of_its_latest_load() {
    let folder = Folder::new(&[(
        "d.yaml",
        "d:\n  tasks: {a: {operator: empty}, b: {operator: empty}}\n  chains: ['a >> b']\n",
    )]);
    let mut bag = DagBag::default();
    bag.update(folder.load());
    assert_eq!(bag.warnings.len(), 1);
    assert_eq!(bag.warnings[0].difference, Difference::Chains);
    std::fs::write(
        folder.path().join("d.yaml"),
        "d:\n  tasks: {a: {operator: empty}, b: {operator: empty, dependencies: [a]}}\n",
    )
    .expect("write");
    bag.update(folder.load());
    assert!(bag.warnings.is_empty());
}
