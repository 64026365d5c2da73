//! Dynamic task mapping in DAG files: dag-factory's `partial:`/`expand:` is read and checked;
//! a mapped Python task is refused with that one reason (the Task SDK expands its arguments
//! through routes Gust does not serve yet).

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
fn a_mapped_python_task_is_refused_naming_what_can_be_mapped() {
    gust_operators::python::enable();
    let text = "\
d:
  tasks:
    p:
      operator: airflow.providers.standard.operators.python.PythonOperator
      python_callable_name: f
      python_callable_file: /tmp/f.py
      expand:
        op_args: [[1], [2]]
";
    assert_eq!(messages(text), ["Python task \"p\" cannot be mapped"]);
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
