//! TaskFlow tasks, dag-factory's `decorator:` form of `@task`, read with Python tasks on (as
//! `[python] interpreter` turns them on): any argument is the function's, and `+task_id`
//! arguments make upstreams.

mod support;

use support::Folder;

const FLOW: &str = "\
flow:
  tasks:
    numbers:
      decorator: airflow.sdk.task
      python_callable: sample.numbers
      n: 4
    total:
      decorator: airflow.decorators.task
      python_callable: sample.total
      values: +numbers
      label: sum
      retries: 2
    report:
      decorator: airflow.sdk.task
      python_callable: sample.report
      total: +total['sum']
      dependencies: [total]
";

#[test]
fn xcom_arguments_are_upstreams_and_every_other_argument_is_the_functions() {
    gust_operators::python::enable();
    let folder = Folder::new(&[("flow.yaml", FLOW)]);
    let load = folder.load();
    assert!(load.problems.is_empty(), "{:#?}", load.problems);
    let dag = &load.dags[0];
    let task = |id: &str| {
        dag.task(&gust_core::ids::TaskId::new(id).expect("an id"))
            .expect("the task")
    };
    let total = task("total");
    assert_eq!(total.operator, "taskflow");
    let upstream: Vec<String> = total.upstream.iter().map(ToString::to_string).collect();
    assert_eq!(upstream, ["numbers"]);
    assert_eq!(total.args["values"], "+numbers");
    assert_eq!(total.args["label"], "sum");
    assert!(
        !total.args.contains_key("retries"),
        "a setting, not an argument"
    );
    assert_eq!(total.settings.retries, 2);
    // Listed and taken as an XCom: one upstream.
    assert_eq!(task("report").upstream.len(), 1);
}

#[test]
fn a_missing_xcom_upstream_and_a_taskflow_operator_name_are_refused_where_written() {
    gust_operators::python::enable();
    let folder = Folder::new(&[(
        "flow.yaml",
        "\
flow:
  tasks:
    total:
      decorator: airflow.sdk.task
      python_callable: sample.total
      values: +nope
    named:
      operator: taskflow
      python_callable: sample.total
    no_path:
      decorator: task
      python_callable: sample.total
",
    )]);
    let problems = folder.problems().join("\n");
    assert!(problems.contains("flow.yaml:6:"), "{problems}");
    assert!(problems.contains("nope"), "{problems}");
    assert!(
        problems.contains("operator \"taskflow\" cannot be named"),
        "{problems}"
    );
    assert!(
        problems.contains("argument \"decorator\": must name the decorator"),
        "{problems}"
    );
}

#[test]
fn any_other_class_path_is_an_airflow_operator_taking_any_argument() {
    gust_operators::python::enable();
    let folder = Folder::new(&[(
        "custom.yaml",
        "\
custom:
  tasks:
    greet:
      operator: customized.operators.Greet
      name: gust
      retries: 1
    named:
      operator: airflow_operator
",
    )]);
    let load = folder.load();
    let problems: Vec<String> = load.problems.iter().map(ToString::to_string).collect();
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert!(
        problems[0].contains("operator \"airflow_operator\" cannot be named")
            && problems[0].contains("class path"),
        "{problems:#?}"
    );
}

#[test]
fn a_class_path_task_keeps_its_arguments() {
    gust_operators::python::enable();
    let folder = Folder::new(&[(
        "custom.yaml",
        "custom:\n  tasks:\n    greet:\n      operator: customized.operators.Greet\n      name: gust\n",
    )]);
    let load = folder.load();
    assert!(load.problems.is_empty(), "{:#?}", load.problems);
    let task = load.dags[0]
        .task(&gust_core::ids::TaskId::new("greet").expect("an id"))
        .expect("the task");
    assert_eq!(task.operator, "airflow_operator");
    assert_eq!(task.args["name"], "gust");
}
