//! Dynamic task mapping in DAG files: dag-factory's `partial:`/`expand:` is read and checked;
//! until the scheduler expands tasks, a well-formed mapped task is refused with that one reason.

mod support;

use support::load_one;

/// The messages of every problem loading `text` reports.
fn messages(text: &str) -> Vec<String> {
    let (_folder, load) = load_one(text);
    load.problems.iter().map(|p| p.message.clone()).collect()
}

#[test]
fn dag_factorys_mapping_of_a_bash_task_is_read_and_only_its_running_is_refused() {
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
    assert_eq!(
        messages(text),
        [
            "task \"process\" is mapped, and mapped tasks cannot run yet",
            "task \"literal\" is mapped, and mapped tasks cannot run yet",
        ]
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
