//! Dynamic task mapping in DAG files: dag-factory's `partial:`/`expand:` is read and checked,
//! for Gust's own operators and for Python tasks alike (the Task SDK picks a Python instance's
//! item itself; Gust decides how many instances there are).

mod support;

use support::load_one;

/// The messages of every problem loading `text` reports.
fn messages(text: &str) -> Vec<String> {
    let (_folder, load) = load_one(text);
    load.problems.iter().map(|p| p.message.clone()).collect()
}

#[test]
fn dag_factorys_mapping_of_a_bash_task_is_read_into_the_model() {
    let text = "\
fan_out:
  tasks:
    request:
      operator: bash
      bash_command: \"echo '[\\\"a\\\", \\\"b\\\"]'\"
    process:
      operator: bash
      partial:
        env: {FIXED: test}
      expand:
        bash_command: request.output
      dependencies: [request]
    literal:
      operator: bash
      expand_kwargs:
        - {bash_command: echo 1}
        - {bash_command: echo 2}
";
    let (_folder, load) = load_one(text);
    assert!(load.problems.is_empty(), "{:?}", load.problems);
    let dag = &load.dags[0];
    let process = dag
        .tasks()
        .find(|t| t.id.as_str() == "process")
        .expect("process");
    let mapping = process.mapping.as_ref().expect("process is mapped");
    assert_eq!(
        mapping.xcom_tasks().map(|t| t.as_str()).collect::<Vec<_>>(),
        ["request"]
    );
    assert_eq!(
        process.args.get("env"),
        Some(&serde_json::json!({"FIXED": "test"}))
    );
    let literal = dag
        .tasks()
        .find(|t| t.id.as_str() == "literal")
        .expect("literal");
    assert!(literal.mapping.is_some());
}

#[test]
fn dag_factorys_mapped_python_tasks_are_read_into_the_model() {
    gust_operators::python::enable();
    // dag-factory's own example (dev/dags/example_dynamic_task_mapping.yml), and TaskFlow's.
    let text = "\
test_expand:
  tasks:
    request:
      operator: airflow.providers.standard.operators.python.PythonOperator
      python_callable_name: make_list
      python_callable_file: /tmp/expand_tasks.py
    process:
      operator: airflow.providers.standard.operators.python.PythonOperator
      python_callable_name: consume_value
      python_callable_file: /tmp/expand_tasks.py
      partial:
        op_kwargs:
          fixed_param: test
      expand:
        op_args: request.output
      dependencies: [request]
    double:
      decorator: airflow.sdk.task
      python_callable: sample.double
      expand:
        number: [1, 2, 3]
    again:
      decorator: airflow.sdk.task
      python_callable: sample.double
      expand:
        number: +double
";
    let (_folder, load) = load_one(text);
    assert!(load.problems.is_empty(), "{:?}", load.problems);
    let dag = &load.dags[0];
    let task = |id: &str| {
        dag.tasks()
            .find(|t| t.id.as_str() == id)
            .unwrap_or_else(|| panic!("task {id}"))
    };
    let process = task("process");
    let over = |t: &gust_core::task::Task| {
        t.mapping
            .as_ref()
            .expect("mapped")
            .xcom_tasks()
            .map(|t| t.as_str().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(over(process), ["request"]);
    assert_eq!(
        process.args.get("op_kwargs"),
        Some(&serde_json::json!({"fixed_param": "test"}))
    );
    assert!(over(task("double")).is_empty(), "a literal list");
    assert_eq!(over(task("again")), ["double"], "map over map");
    assert!(
        task("again")
            .upstream
            .iter()
            .any(|u| u.as_str() == "double"),
        "the upstream it maps over is a dependency"
    );
}

#[test]
fn a_mapped_task_is_checked_as_its_first_instance_would_run() {
    let text = "\
d:
  tasks:
    a:
      operator: bash
      expand:
        bash_command: [1]
";
    assert_eq!(
        messages(text),
        ["argument \"bash_command\": invalid type: integer `1`, expected a string"]
    );
}

#[test]
fn a_mapped_task_group_s_expand_and_partial_are_its_tasks_own() {
    let text = "\
grouped:
  task_groups:
    shard:
      expand:
        bash_command: names.output
      partial:
        env: {FIXED: test}
    inner:
      parent_group_name: shard
  tasks:
    names:
      operator: bash
      bash_command: echo
    first:
      operator: bash
      task_group_name: shard
    second:
      operator: bash
      task_group_name: inner
      dependencies: [first]
";
    let (_folder, load) = load_one(text);
    assert!(load.problems.is_empty(), "{:?}", load.problems);
    let dag = &load.dags[0];
    let task = |id: &str| dag.tasks().find(|t| t.id.as_str() == id).expect(id);
    for id in ["shard.first", "shard.inner.second"] {
        let mapping = task(id).mapping.as_ref().expect("mapped with its group");
        assert_eq!(mapping.group.as_ref().map(|g| g.as_str()), Some("shard"));
        assert_eq!(
            mapping.xcom_tasks().map(|t| t.as_str()).collect::<Vec<_>>(),
            ["names"]
        );
        assert_eq!(
            task(id).args.get("env"),
            Some(&serde_json::json!({"FIXED": "test"}))
        );
    }
    // What the group maps over is its root's upstream, not every task's.
    assert_eq!(
        task("shard.first")
            .upstream
            .iter()
            .map(|t| t.as_str())
            .collect::<Vec<_>>(),
        ["names"]
    );
    assert_eq!(
        task("shard.inner.second")
            .upstream
            .iter()
            .map(|t| t.as_str())
            .collect::<Vec<_>>(),
        ["shard.first"]
    );
}

#[test]
fn nested_mapping_in_a_mapped_task_group_is_refused_in_one_line() {
    let mapped_task = messages(
        "\
d:
  task_groups:
    g: {expand: {bash_command: [echo 1]}}
  tasks:
    t:
      operator: bash
      task_group_name: g
      expand: {env: [{A: '1'}]}
",
    );
    assert_eq!(
        mapped_task,
        ["the task is mapped inside mapped task group \"g\", which Gust cannot run yet"]
    );
    let mapped_groups = messages(
        "\
d:
  task_groups:
    g: {expand: {bash_command: [echo 1]}}
    h: {parent_group_name: g, expand: {env: [{A: '1'}]}}
  tasks:
    t:
      operator: bash
      task_group_name: h
",
    );
    assert!(
        mapped_groups.contains(
            &"task group \"g.h\" is mapped inside mapped task group \"g\", which Gust cannot run yet"
                .to_owned()
        ),
        "{mapped_groups:?}"
    );
    let unmapped_partial = messages(
        "\
d:
  task_groups:
    g: {partial: {env: {A: '1'}}}
  tasks:
    t:
      operator: bash
      bash_command: echo
      task_group_name: g
",
    );
    assert_eq!(
        unmapped_partial,
        ["task group \"g\" has `partial:` but is not mapped"]
    );
    let twice = messages(
        "\
d:
  task_groups:
    g: {expand: {bash_command: [echo 1]}, partial: {env: {A: '1'}}}
  tasks:
    t:
      operator: bash
      env: {A: '2'}
      task_group_name: g
",
    );
    assert_eq!(
        twice,
        ["\"env\" is given both by mapped task group \"g\"'s partial (line 3) and the task"]
    );
}
