//! The DAG file format, rule by rule: what each key means once loaded.

mod support;

use std::time::Duration;

use chrono::{TimeZone, Utc};
use gust_core::dag::Dag;
use gust_core::trigger_rule::TriggerRule;
use serde_json::json;
use support::{Folder, load_one};

fn only_dag(text: &str) -> Dag {
    let (_folder, load) = load_one(text);
    assert!(load.problems.is_empty(), "{:#?}", load.problems);
    assert_eq!(load.dags.len(), 1);
    load.dags.into_iter().next().expect("one DAG")
}

fn upstream(dag: &Dag, task: &str) -> Vec<String> {
    let id = gust_core::ids::TaskId::new(task).expect("an id");
    dag.task(&id)
        .unwrap_or_else(|| panic!("no task {task}"))
        .upstream
        .iter()
        .map(ToString::to_string)
        .collect()
}

fn task_ids(dag: &Dag) -> Vec<String> {
    dag.tasks().map(|t| t.id.to_string()).collect()
}

#[test]
fn tasks_may_be_a_map_or_a_list() {
    let as_map = only_dag(
        "d:\n  tasks:\n    a: {operator: empty}\n    b: {operator: empty, dependencies: [a]}\n",
    );
    let as_list = only_dag(
        "d:\n  tasks:\n    - {task_id: a, operator: empty}\n    - {task_id: b, operator: empty, dependencies: [a]}\n",
    );
    assert_eq!(task_ids(&as_map), ["a", "b"]);
    assert_eq!(upstream(&as_map, "b"), ["a"]);
    assert_eq!(upstream(&as_list, "b"), ["a"]);
}

#[test]
fn dag_settings_are_read_with_airflow_defaults() {
    let dag = only_dag("d:\n  tasks:\n    a: {operator: empty}\n");
    let s = &dag.settings;
    assert!(!s.catchup);
    assert_eq!(s.max_active_runs, 16);
    assert_eq!(s.max_active_tasks, 16);
    assert_eq!(s.schedule.as_text(), "None");

    let dag = only_dag(
        "d:\n  description: hi\n  schedule_interval: '@hourly'\n  catchup: yes\n  max_active_runs: 2\n  concurrency: 3\n  dagrun_timeout_sec: 90\n  tags: [a, b]\n  params: {n: 1, name: x}\n  is_paused_upon_creation: false\n  doc_md: '# Doc'\n  tasks:\n    a: {operator: empty}\n",
    );
    let s = &dag.settings;
    assert_eq!(s.description.as_deref(), Some("hi"));
    assert_eq!(s.schedule.as_text(), "@hourly");
    assert!(s.catchup);
    assert_eq!((s.max_active_runs, s.max_active_tasks), (2, 3));
    assert_eq!(s.dagrun_timeout, Some(Duration::from_secs(90)));
    assert_eq!(s.tags, ["a", "b"]);
    assert_eq!(
        serde_json::Value::Object(s.params.clone()),
        json!({"n": 1, "name": "x"})
    );
    assert_eq!(s.is_paused_upon_creation, Some(false));
}

#[test]
fn default_args_reach_every_task_and_tasks_override_them() {
    let dag = only_dag(
        "d:\n  default_args:\n    owner: team\n    retries: 2\n    retry_delay: 1m\n    trigger_rule: all_done\n    bash_command: echo default\n  tasks:\n    a: {operator: bash}\n    b: {operator: bash, retries: 5, bash_command: echo own}\n    c: {operator: empty}\n",
    );
    let t = |id: &str| {
        dag.task(&gust_core::ids::TaskId::new(id).expect("id"))
            .expect("task")
            .clone()
    };
    assert_eq!(t("a").settings.owner, "team");
    assert_eq!(t("a").settings.retries, 2);
    assert_eq!(t("a").settings.retry_delay, Duration::from_secs(60));
    assert_eq!(t("a").settings.trigger_rule, TriggerRule::AllDone);
    assert_eq!(t("a").args["bash_command"], "echo default");
    assert_eq!(t("b").settings.retries, 5);
    assert_eq!(t("b").args["bash_command"], "echo own");
    // An operator argument in default_args applies only to operators that take it.
    assert!(t("c").args.is_empty());
}

#[test]
fn durations_accept_every_spelling() {
    for (text, secs) in [
        ("300", 300),
        ("'5m'", 300),
        ("1h30m", 5400),
        ("PT5M", 300),
        ("{__type__: datetime.timedelta, minutes: 5}", 300),
        ("{hours: 1, seconds: 30}", 3630),
    ] {
        let dag = only_dag(&format!(
            "d:\n  tasks:\n    a: {{operator: empty, retry_delay: {text}}}\n"
        ));
        assert_eq!(
            dag.tasks().next().expect("a").settings.retry_delay,
            Duration::from_secs(secs),
            "{text}"
        );
    }
    let dag = only_dag(
        "d:\n  tasks:\n    a: {operator: empty, execution_timeout_sec: 30, retry_delay_sec: 7}\n",
    );
    let settings = &dag.tasks().next().expect("a").settings;
    assert_eq!(settings.execution_timeout, Some(Duration::from_secs(30)));
    assert_eq!(settings.retry_delay, Duration::from_secs(7));
}

#[test]
fn dates_accept_yaml_dates_rfc3339_python_datetimes_and_relative_starts() {
    let start = |text: &str| {
        only_dag(&format!(
            "d:\n  start_date: {text}\n  tasks:\n    a: {{operator: empty}}\n"
        ))
        .settings
        .start_date
    };
    let midnight = Utc.with_ymd_and_hms(2024, 1, 2, 0, 0, 0).single();
    assert_eq!(start("2024-01-02"), midnight);
    assert_eq!(start("2024-01-02T00:00:00Z"), midnight);
    assert_eq!(
        start("{__type__: datetime.datetime, year: 2024, month: 1, day: 2}"),
        midnight
    );
    // Two days before the load time (2024-03-05 14:30), at midnight.
    assert_eq!(
        start("2 days"),
        Utc.with_ymd_and_hms(2024, 3, 3, 0, 0, 0).single()
    );
}

#[test]
fn start_date_may_come_from_default_args() {
    let dag = only_dag(
        "d:\n  default_args: {start_date: 2020-05-01, owner: x}\n  tasks:\n    a: {operator: empty}\n",
    );
    assert_eq!(
        dag.settings.start_date,
        Utc.with_ymd_and_hms(2020, 5, 1, 0, 0, 0).single()
    );
}

#[test]
fn dates_without_offset_are_in_the_dag_timezone() {
    let dag = only_dag(
        "d:\n  timezone: Europe/Amsterdam\n  start_date: 2024-07-01\n  tasks:\n    a: {operator: empty}\n",
    );
    assert_eq!(
        dag.settings.start_date,
        Utc.with_ymd_and_hms(2024, 6, 30, 22, 0, 0).single()
    );
}

#[test]
fn chains_add_edges_as_bitshift_operators_do() {
    let dag = only_dag(
        "d:\n  tasks:\n    t1: {operator: empty}\n    t2: {operator: empty}\n    t3: {operator: empty}\n    t4: {operator: empty}\n    t5: {operator: empty}\n  chains:\n    - t1 >> [t2, t3] >> t4\n    - t5 << t4\n",
    );
    assert_eq!(upstream(&dag, "t2"), ["t1"]);
    assert_eq!(upstream(&dag, "t4"), ["t2", "t3"]);
    assert_eq!(upstream(&dag, "t5"), ["t4"]);
}

#[test]
fn task_groups_prefix_ids_and_expand_to_boundary_tasks() {
    let dag = only_dag(
        "d:\n  task_groups:\n    outer: {dependencies: [start]}\n    inner: {parent_group_name: outer, default_args: {retries: 4}}\n  tasks:\n    start: {operator: empty}\n    a: {operator: empty, task_group_name: outer}\n    b: {operator: empty, task_group_name: inner, dependencies: [a]}\n    c: {operator: empty, task_group_name: inner, dependencies: [a]}\n    end: {operator: empty, dependencies: [outer]}\n",
    );
    assert_eq!(
        task_ids(&dag),
        ["start", "outer.a", "outer.inner.b", "outer.inner.c", "end"]
    );
    assert_eq!(upstream(&dag, "outer.a"), ["start"]);
    assert_eq!(upstream(&dag, "end"), ["outer.inner.b", "outer.inner.c"]);
    let b = dag
        .task(&gust_core::ids::TaskId::new("outer.inner.b").expect("id"))
        .expect("b");
    assert_eq!(b.settings.retries, 4);
    assert_eq!(
        b.group.as_ref().map(ToString::to_string).as_deref(),
        Some("outer.inner")
    );
    let groups: Vec<String> = dag.groups.keys().map(ToString::to_string).collect();
    assert_eq!(groups, ["outer", "outer.inner"]);
}

#[test]
fn task_groups_may_be_a_list_and_skip_their_prefix() {
    let dag = only_dag(
        "d:\n  task_groups:\n    - {group_name: g, prefix_group_id: false}\n  tasks:\n    a: {operator: empty, task_group_name: g}\n",
    );
    assert_eq!(task_ids(&dag), ["a"]);
}

#[test]
fn a_file_default_block_is_shared_by_its_dags_and_the_dag_wins() {
    let (_f, load) = load_one(
        "default:\n  default_args: {owner: a, retries: 1}\n  tags: [shared]\none:\n  tasks: {t: {operator: empty}}\ntwo:\n  default_args: {retries: 3}\n  tags: [own]\n  tasks: {t: {operator: empty}}\n",
    );
    assert!(load.problems.is_empty(), "{:#?}", load.problems);
    let settings: Vec<_> = load
        .dags
        .iter()
        .map(|d| {
            (
                d.id.to_string(),
                d.settings.tags.clone(),
                d.tasks().next().expect("t").settings.clone(),
            )
        })
        .collect();
    assert_eq!(settings[0].0, "one");
    assert_eq!(settings[0].1, ["shared"]);
    assert_eq!(
        (settings[0].2.owner.as_str(), settings[0].2.retries),
        ("a", 1)
    );
    assert_eq!(settings[1].1, ["own"]);
    assert_eq!(
        (settings[1].2.owner.as_str(), settings[1].2.retries),
        ("a", 3)
    );
}

#[test]
fn defaults_files_apply_below_their_folder_and_the_nearest_wins() {
    let folder = Folder::new(&[
        (
            "defaults.yml",
            "default_args: {owner: root, retries: 1}\ntags: [root]\n",
        ),
        ("team/defaults.yaml", "default_args: {owner: team}\n"),
        (
            "team/sub/d.yaml",
            "default:\n  tags: [file]\nd:\n  tasks: {t: {operator: empty}}\n",
        ),
        ("top.yaml", "top:\n  tasks: {t: {operator: empty}}\n"),
    ]);
    let load = folder.load();
    assert!(load.problems.is_empty(), "{:#?}", load.problems);
    let d = load.dags.iter().find(|d| d.id.as_str() == "d").expect("d");
    let t = d.tasks().next().expect("t");
    assert_eq!((t.settings.owner.as_str(), t.settings.retries), ("team", 1));
    assert_eq!(d.settings.tags, ["file"]);
    let top = load
        .dags
        .iter()
        .find(|d| d.id.as_str() == "top")
        .expect("top");
    assert_eq!(top.tasks().next().expect("t").settings.owner, "root");
    assert_eq!(load.files.len(), 2, "defaults files are not DAG files");
}

#[test]
fn config_root_dir_means_the_dags_folder() {
    let folder = Folder::new(&[(
        "d.yaml",
        "d:\n  tasks:\n    a: {operator: bash, bash_command: cat $CONFIG_ROOT_DIR/q.sql}\n",
    )]);
    let load = folder.load();
    let cmd = load.dags[0].tasks().next().expect("a").args["bash_command"].clone();
    assert_eq!(cmd, format!("cat {}/q.sql", folder.path().display()));
}

#[test]
fn gustignore_hidden_files_and_other_extensions_are_skipped() {
    let folder = Folder::new(&[
        (".gustignore", "scratch/\n*.draft.yaml\n"),
        ("scratch/broken.yaml", "not: [valid\n"),
        ("wip.draft.yaml", "not: [valid\n"),
        (".git/config.yaml", "not: [valid\n"),
        ("notes.txt", "not: [valid\n"),
        ("ok.yml", "ok:\n  tasks: {a: {operator: empty}}\n"),
    ]);
    let load = folder.load();
    assert!(load.problems.is_empty(), "{:#?}", load.problems);
    assert_eq!(load.dags.len(), 1);
}

#[test]
fn bash_arguments_and_operator_class_paths_resolve() {
    let dag = only_dag(
        "d:\n  tasks:\n    a:\n      operator: airflow.providers.standard.operators.bash.BashOperator\n      bash_command: echo {{ ds }}\n      env: {A: '1'}\n      append_env: true\n      cwd: /tmp\n      skip_on_exit_code: [99, 100]\n      output_encoding: utf-8\n      do_xcom_push: false\n",
    );
    let a = dag.tasks().next().expect("a");
    assert_eq!(a.operator, "bash");
    assert_eq!(a.args["skip_on_exit_code"], json!([99, 100]));
    assert!(!a.settings.do_xcom_push);
}

#[test]
fn yaml_anchors_and_merge_keys_work_in_dag_files() {
    let dag = only_dag(
        "d:\n  tasks:\n    a: &common {operator: bash, retries: 2, bash_command: echo a}\n    b:\n      <<: *common\n      bash_command: echo b\n",
    );
    let b = dag.tasks().nth(1).expect("b");
    assert_eq!(b.settings.retries, 2);
    assert_eq!(b.args["bash_command"], "echo b");
}

#[test]
fn a_dag_level_owner_is_the_tasks_default_owner() {
    let dag = only_dag(
        "d:\n  owner: team-a\n  tasks:\n    a: {operator: empty}\n    b: {operator: empty, owner: me}\n",
    );
    let owners: Vec<&str> = dag.tasks().map(|t| t.settings.owner.as_str()).collect();
    assert_eq!(owners, ["team-a", "me"]);
    let dag = only_dag(
        "d:\n  owner: team-a\n  default_args: {owner: team-b}\n  tasks:\n    a: {operator: empty}\n",
    );
    assert_eq!(dag.tasks().next().expect("a").settings.owner, "team-b");
}

#[test]
fn a_timedelta_schedule_as_dag_factory_writes_it_is_an_interval() {
    for (schedule, every) in [
        (
            "{__type__: datetime.timedelta, days: 1}",
            Duration::from_secs(86_400),
        ),
        (
            "{__type__: datetime.timedelta, minutes: 10}",
            Duration::from_secs(600),
        ),
        ("{hours: 2}", Duration::from_secs(7_200)),
    ] {
        for key in ["schedule", "schedule_interval"] {
            let dag = only_dag(&format!(
                "d:\n  start_date: 2024-01-01\n  {key}: {schedule}\n  tasks:\n    a: {{operator: empty}}\n"
            ));
            assert!(
                matches!(dag.settings.schedule, gust_core::schedule::Schedule::Interval(d) if d == every),
                "{key}: {schedule}"
            );
        }
    }
}

#[test]
fn a_zero_timedelta_schedule_is_refused_as_zero_not_as_assets() {
    let (_folder, load) = load_one(
        "d:\n  schedule: {__type__: datetime.timedelta, days: 0}\n  tasks:\n    a: {operator: empty}\n",
    );
    let text = format!("{:?}", load.problems);
    assert!(text.contains("is zero"), "{text}");
    assert!(!text.contains("assets"), "{text}");
}

#[test]
fn setups_and_teardowns_are_read_as_airflow_relates_them() {
    let dag = only_dag(
        "d:\n  default_args: {trigger_rule: all_success}\n  tasks:\n    create: {operator: empty}\n    work: {operator: empty, dependencies: [create]}\n    delete: {operator: empty, dependencies: [work], as_teardown: {setups: [create], on_failure_fail_dagrun: true}}\n    other_setup: {operator: empty, is_setup: true}\n    other_teardown: {operator: empty, is_teardown: true, dependencies: [other_setup]}\n",
    );
    let t = |id: &str| {
        dag.task(&gust_core::ids::TaskId::new(id).expect("id"))
            .expect("task")
            .settings
            .clone()
    };
    assert!(t("create").is_setup);
    assert!(t("delete").is_teardown && t("delete").on_failure_fail_dagrun);
    assert_eq!(t("delete").trigger_rule, TriggerRule::AllDoneSetupSuccess);
    assert_eq!(upstream(&dag, "delete"), ["create", "work"]);
    assert!(t("other_setup").is_setup);
    assert_eq!(
        t("other_teardown").trigger_rule,
        TriggerRule::AllDoneSetupSuccess
    );
    for rule in ["all_done_min_one_success", "all_done_setup_success"] {
        let dag = only_dag(&format!(
            "d:\n  tasks:\n    a: {{operator: empty}}\n    b: {{operator: empty, dependencies: [a], trigger_rule: {rule}}}\n"
        ));
        let b = dag
            .task(&gust_core::ids::TaskId::new("b").expect("id"))
            .expect("b");
        assert_eq!(b.settings.trigger_rule.as_str(), rule);
    }
}

#[test]
fn setup_and_teardown_mistakes_are_refused_as_airflow_refuses_them() {
    for (text, says) in [
        (
            "d:\n  tasks:\n    a: {operator: empty, on_failure_fail_dagrun: true}\n",
            "only for teardown tasks",
        ),
        (
            "d:\n  tasks:\n    s: {operator: empty, is_setup: true}\n    w: {operator: empty, dependencies: [s], trigger_rule: all_done}\n",
            "Airflow requires all_success right after a setup",
        ),
    ] {
        let (_folder, load) = load_one(text);
        let problems = format!("{:?}", load.problems);
        assert!(problems.contains(says), "{problems}");
    }
}
