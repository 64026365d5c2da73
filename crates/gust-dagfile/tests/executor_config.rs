//! `executor_config` with a `pod_override`: Airflow's KubernetesExecutor settings of a task's
//! worker pod, taken by Python tasks (in either the manifest form or dag-factory's `__type__`
//! form) and checked where written; refused on operators that run in no worker pod.

mod support;

use support::Folder;

#[test]
fn python_tasks_take_a_pod_override_in_either_form_from_default_args_too() {
    gust_operators::python::enable();
    let folder = Folder::new(&[(
        "etl.yaml",
        "\
etl:
  default_args:
    executor_config:
      pod_override:
        spec:
          containers:
            - name: base
              resources: {limits: {memory: 2Gi}}
  tasks:
    extract:
      operator: airflow.providers.standard.operators.python.PythonOperator
      python_callable: etl.extract
    load:
      operator: airflow.providers.standard.operators.python.PythonOperator
      python_callable: etl.load
      executor_config:
        pod_override:
          __type__: kubernetes.client.models.V1Pod
          spec:
            __type__: kubernetes.client.models.V1PodSpec
            node_selector: {pool: big}
            containers:
              - __type__: kubernetes.client.models.V1Container
                name: base
    notify:
      operator: bash
      bash_command: echo done
",
    )]);
    let load = folder.load();
    assert!(load.problems.is_empty(), "{:#?}", load.problems);
    let dag = &load.dags[0];
    let task = |id: &str| {
        dag.task(&gust_core::ids::TaskId::new(id).expect("an id"))
            .expect("the task")
    };
    assert!(task("extract").args.contains_key("executor_config"));
    assert_eq!(
        task("load").args["executor_config"]["pod_override"]["spec"]["node_selector"]["pool"],
        "big"
    );
    assert!(
        !task("notify").args.contains_key("executor_config"),
        "default_args apply to the operators that take them"
    );
}

#[test]
fn a_bad_pod_override_is_refused_naming_dag_task_and_field() {
    gust_operators::python::enable();
    let folder = Folder::new(&[(
        "etl.yaml",
        "\
etl:
  tasks:
    extract:
      operator: airflow.providers.standard.operators.python.PythonOperator
      python_callable: etl.extract
      executor_config:
        pod_override:
          spec:
            containers:
              - name: base
                resourcez: {limits: {memory: 2Gi}}
    notify:
      operator: bash
      bash_command: echo done
      executor_config: {pod_override: {}}
",
    )]);
    let problems = folder.problems();
    assert_eq!(problems.len(), 2, "{problems:#?}");
    let bad_field = &problems[0];
    assert!(
        bad_field.starts_with("etl.yaml:7:")
            && bad_field.contains("etl.extract")
            && bad_field
                .contains("argument \"executor_config.pod_override.spec.containers[0].resourcez\""),
        "{bad_field}"
    );
    assert!(!bad_field.contains('\n'), "one line: {bad_field}");
    let native = &problems[1];
    assert!(
        native.contains("etl.notify")
            && native.contains("argument \"executor_config\" cannot be used")
            && native.contains("worker pod"),
        "{native}"
    );
}
