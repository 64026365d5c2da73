//! Untrusted input: whatever a DAG file holds, loading returns DAGs or problems, never a panic
//! or a hang.

mod support;

use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Arbitrary text, mostly not YAML at all.
    #[test]
    fn loading_arbitrary_text_never_panics(text in "\\PC{0,400}") {
        let _ = support::load_one(&text);
    }

    /// YAML-shaped text built from the format's own keys and punctuation, which reaches deep
    /// into the DAG reader rather than stopping at the YAML parser.
    #[test]
    fn loading_yaml_shaped_text_never_panics(parts in proptest::collection::vec(prop_oneof![
        Just("d:\n"), Just("  tasks:\n"), Just("    a:\n"), Just("      operator: bash\n"),
        Just("      bash_command: '{{ ds }}'\n"), Just("      dependencies: [a, b]\n"),
        Just("  chains: ['a >> [b'] \n"), Just("  task_groups: {g: {parent_group_name: g}}\n"),
        Just("      task_group_name: g\n"), Just("  schedule: '*/5 * * * *'\n"), Just("  start_date: 2 days\n"),
        Just("      retry_delay: {__type__: datetime.timedelta, hours: -1}\n"), Just("default:\n"),
        Just("  default_args: {retries: -1}\n"), Just("- x\n"), Just("&a [*a]\n"), Just("<<: 3\n"),
        Just(": \n"), Just("    b: {operator: empty, dependencies: a}\n"), Just("\t"),
    ], 0..24)) {
        let text: String = parts.concat();
        let _ = support::load_one(&text);
    }
}

#[test]
fn a_self_referencing_alias_is_an_error_not_a_hang() {
    let (_f, load) = support::load_one("a: &x [*x]\n");
    assert!(load.dags.is_empty());
    assert!(!load.problems.is_empty());
}

#[test]
fn deeply_nested_values_are_refused_with_a_position() {
    let text = format!("d:\n  params: {}{}\n", "{a: ".repeat(200), "}".repeat(200));
    let (folder, _) = support::load_one(&text);
    let problems = folder.problems();
    assert_eq!(problems.len(), 1);
    assert!(
        problems[0].contains("nest more than 64 levels"),
        "{problems:?}"
    );
}

#[test]
fn non_utf8_files_are_refused() {
    let folder = support::Folder::new(&[]);
    std::fs::write(folder.path().join("bin.yaml"), [0xff, 0xfe, 0x00, 0x41]).expect("write");
    let problems = folder.problems();
    assert!(problems[0].contains("not UTF-8"), "{problems:?}");
}

#[test]
fn absurdly_nested_task_groups_are_refused() {
    let mut text = String::from("d:\n  task_groups:\n    g0: {}\n");
    for i in 1..100 {
        text.push_str(&format!("    g{i}: {{parent_group_name: g{}}}\n", i - 1));
    }
    text.push_str("  tasks:\n    t: {operator: empty, task_group_name: g99}\n");
    let (folder, load) = support::load_one(&text);
    assert!(load.dags.is_empty());
    let problems = folder.problems();
    assert_eq!(
        problems
            .iter()
            .filter(|p| p.contains("nested more than 32 groups deep"))
            .count(),
        1,
        "{problems:?}"
    );
}
