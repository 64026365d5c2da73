//! Whole runs in-process with real processes: ordering, XCom between tasks, failures,
//! retries, timeouts, skips and templates.

use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use gust_core::clock::SystemClock;
use gust_core::dag::Dag;
use gust_core::ids::RunId;
use gust_core::schedule::DataInterval;
use gust_core::state::{DagRunState, TaskState};
use gust_exec_local::{LocalConfig, LocalExecutor};
use gust_executor::event_channel;
use gust_scheduler::test_run::{RunReport, TestRunSpec, run};

/// The sensitive variable `api_key`: only the secrets test makes it a known secret.
const SECRET: &str = "test-run-secret-value";

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    /// Loads the one DAG in `yaml`; `{dir}` stands for a scratch folder.
    fn dag(&self, yaml: &str) -> Dag {
        let dags = self.dir.path().join("dags");
        std::fs::create_dir_all(&dags).expect("mkdir");
        std::fs::write(
            dags.join("d.yaml"),
            yaml.replace("{dir}", &self.dir.path().display().to_string()),
        )
        .expect("write");
        let load = gust_dagfile::load_folder(
            &dags,
            Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0)
                .single()
                .expect("a date"),
        )
        .expect("folder");
        assert!(load.problems.is_empty(), "{:?}", load.problems);
        load.dags.into_iter().next().expect("one DAG")
    }

    async fn run(&self, dag: &Dag, conf: serde_json::Value) -> RunReport {
        let (tx, mut events) = event_channel();
        let config = LocalConfig {
            kill_grace: Duration::from_millis(200),
            ..LocalConfig::default()
        };
        let executor = LocalExecutor::new(config, tx, Arc::new(SystemClock));
        let start = Utc
            .with_ymd_and_hms(2024, 3, 5, 0, 0, 0)
            .single()
            .expect("a date");
        let spec = TestRunSpec {
            run_id: RunId::new("manual__2024-03-05T00:00:00+00:00").expect("a run id"),
            interval: DataInterval {
                start,
                end: start + chrono::Duration::days(1),
            },
            conf: conf.as_object().cloned().unwrap_or_default(),
            logs_root: self.dir.path().join("logs"),
            variables: [
                ("env".to_owned(), "prod".to_owned()),
                ("api_key".to_owned(), SECRET.to_owned()),
            ]
            .into_iter()
            .collect(),
            connections: Default::default(),
            callbacks: None,
            max_map_length: gust_core::mapping::DEFAULT_MAX_MAP_LENGTH,
            triggerer: None,
        };
        let report = tokio::time::timeout(
            Duration::from_secs(30),
            run(dag, &spec, &executor, &mut events),
        )
        .await
        .expect("the run ends");
        executor.shutdown().await;
        report
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default()
    }
}

fn state_of(report: &RunReport, task: &str) -> TaskState {
    report
        .tasks
        .iter()
        .find(|t| t.task_id.as_str() == task)
        .unwrap_or_else(|| panic!("no {task}"))
        .state
}

#[tokio::test]
async fn the_seed_diamond_runs_in_dependency_order() {
    let f = Fixture::new();
    let dag = f.dag(
        "diamond:\n  tasks:\n    t1: {operator: bash, bash_command: 'echo t1 >> {dir}/trace'}\n    t2: {operator: bash, bash_command: 'sleep 0.1; echo t2 >> {dir}/trace'}\n    t3: {operator: bash, bash_command: 'sleep 0.1; echo t3 >> {dir}/trace'}\n    t4: {operator: bash, bash_command: 'echo t4 >> {dir}/trace'}\n  chains: ['t1 >> [t2, t3] >> t4']\n",
    );
    let report = f.run(&dag, serde_json::json!({})).await;
    assert_eq!(report.state, DagRunState::Success);
    let trace = f.read("trace");
    let lines: Vec<&str> = trace.lines().collect();
    assert_eq!(lines.first(), Some(&"t1"));
    assert_eq!(lines.last(), Some(&"t4"));
    assert_eq!(lines.len(), 4);
    assert!(
        report
            .tasks
            .iter()
            .all(|t| t.tries == 1 && t.duration.is_some())
    );
}

#[tokio::test]
async fn xcoms_params_and_conf_reach_downstream_templates() {
    let f = Fixture::new();
    let dag = f.dag(
        "x:\n  params: {table: orders, limit: 5}\n  tasks:\n    count: {operator: bash, bash_command: 'echo 42'}\n    report:\n      operator: bash\n      bash_command: \"echo {{ params.table }}-{{ params.limit }}-{{ ti.xcom_pull(task_ids='count') }}-{{ ds }} > {dir}/out\"\n      dependencies: [count]\n",
    );
    let report = f.run(&dag, serde_json::json!({"limit": 9})).await;
    assert_eq!(report.state, DagRunState::Success);
    assert_eq!(f.read("out"), "orders-9-42-2024-03-05\n");
}

#[tokio::test]
async fn a_failure_fails_the_run_and_all_done_tasks_still_run() {
    let f = Fixture::new();
    let dag = f.dag(
        "x:\n  tasks:\n    a: {operator: bash, bash_command: 'exit 4'}\n    b: {operator: bash, bash_command: 'true', dependencies: [a]}\n    cleanup: {operator: bash, bash_command: 'echo cleaned > {dir}/c', dependencies: [b], trigger_rule: all_done}\n",
    );
    let report = f.run(&dag, serde_json::json!({})).await;
    assert_eq!(state_of(&report, "a"), TaskState::Failed);
    assert_eq!(state_of(&report, "b"), TaskState::UpstreamFailed);
    assert_eq!(state_of(&report, "cleanup"), TaskState::Success);
    assert_eq!(f.read("c"), "cleaned\n");
    // The leaf succeeded, so by Airflow's leaf rule the run succeeds.
    assert_eq!(report.state, DagRunState::Success);
    let a = report
        .tasks
        .iter()
        .find(|t| t.task_id.as_str() == "a")
        .expect("a");
    assert_eq!(a.failure.as_deref(), Some("exited with code 4"));
}

#[tokio::test]
async fn a_failed_try_is_retried_after_its_delay() {
    let f = Fixture::new();
    let dag = f.dag(
        "x:\n  tasks:\n    flaky:\n      operator: bash\n      bash_command: 'echo try >> {dir}/tries; test $(wc -l < {dir}/tries) -ge 2'\n      retries: 2\n      retry_delay: 0.3\n",
    );
    let started = std::time::Instant::now();
    let report = f.run(&dag, serde_json::json!({})).await;
    assert_eq!(report.state, DagRunState::Success);
    assert_eq!(report.tasks[0].tries, 2);
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "the retry waited for retry_delay"
    );
}

#[tokio::test]
async fn out_of_retries_the_task_fails() {
    let f = Fixture::new();
    let dag = f.dag("x:\n  tasks:\n    bad: {operator: bash, bash_command: 'exit 1', retries: 1, retry_delay: 0}\n");
    let report = f.run(&dag, serde_json::json!({})).await;
    assert_eq!(report.state, DagRunState::Failed);
    assert_eq!(
        (report.tasks[0].state, report.tasks[0].tries),
        (TaskState::Failed, 2)
    );
}

#[tokio::test]
async fn execution_timeout_fails_the_try() {
    let f = Fixture::new();
    let dag = f.dag("x:\n  tasks:\n    slow: {operator: bash, bash_command: 'sleep 20', execution_timeout: 0.3}\n");
    let report = f.run(&dag, serde_json::json!({})).await;
    assert_eq!(report.tasks[0].state, TaskState::Failed);
    assert!(
        report.tasks[0]
            .failure
            .as_deref()
            .is_some_and(|f| f.contains("timed out")),
        "{:?}",
        report.tasks[0].failure
    );
}

#[tokio::test]
async fn a_skip_exit_code_skips_the_task_and_its_all_success_downstream() {
    let f = Fixture::new();
    let dag = f.dag(
        "x:\n  tasks:\n    gate: {operator: bash, bash_command: 'exit 99'}\n    after: {operator: bash, bash_command: 'true', dependencies: [gate]}\n    join: {operator: empty, dependencies: [after], trigger_rule: none_failed}\n",
    );
    let report = f.run(&dag, serde_json::json!({})).await;
    assert_eq!(state_of(&report, "gate"), TaskState::Skipped);
    assert_eq!(state_of(&report, "after"), TaskState::Skipped);
    assert_eq!(state_of(&report, "join"), TaskState::Success);
    assert_eq!(report.state, DagRunState::Success);
}

#[tokio::test]
async fn an_undefined_template_name_fails_the_try_naming_it() {
    let f = Fixture::new();
    let dag =
        f.dag("x:\n  tasks:\n    t: {operator: bash, bash_command: 'echo {{ params.nope }}'}\n");
    let report = f.run(&dag, serde_json::json!({})).await;
    assert_eq!(report.tasks[0].state, TaskState::Failed);
    assert_eq!(
        report.tasks[0].failure.as_deref(),
        Some(
            "task \"t\", argument \"bash_command\": undefined name \"params.nope\" in template (line 1)"
        )
    );
}

#[tokio::test]
async fn dagrun_timeout_stops_the_run() {
    let f = Fixture::new();
    let dag = f.dag("x:\n  dagrun_timeout: 0.3\n  tasks:\n    long: {operator: bash, bash_command: 'sleep 20'}\n    after: {operator: empty, dependencies: [long]}\n");
    let report = f.run(&dag, serde_json::json!({})).await;
    assert_eq!(report.state, DagRunState::Failed);
    assert!(
        report
            .stopped
            .as_deref()
            .is_some_and(|s| s.contains("dagrun_timeout"))
    );
    assert_eq!(state_of(&report, "long"), TaskState::Failed);
    assert_eq!(state_of(&report, "after"), TaskState::Skipped);
}

#[tokio::test]
async fn variables_the_run_started_with_reach_templates() {
    let f = Fixture::new();
    let dag = f.dag("x:\n  tasks:\n    t: {operator: bash, bash_command: 'echo {{ var.value.env }} > {dir}/env'}\n");
    let report = f.run(&dag, serde_json::json!({})).await;
    assert_eq!(report.state, DagRunState::Success);
    assert_eq!(f.read("env"), "prod\n");
}

#[tokio::test]
async fn a_template_that_fails_to_render_fails_its_task_and_the_run_goes_on() {
    let f = Fixture::new();
    let dag = f.dag(
        "x:\n  tasks:\n    bad: {operator: bash, bash_command: 'echo [{{ params.nope }}]'}\n    cleanup: {operator: bash, bash_command: 'echo done > {dir}/cleanup', dependencies: [bad], trigger_rule: all_done}\n    report: {operator: bash, bash_command: 'echo x', dependencies: [bad]}\n",
    );
    let report = f.run(&dag, serde_json::json!({})).await;
    assert_eq!(state_of(&report, "bad"), TaskState::Failed);
    assert_eq!(report.tasks[0].tries, 1);
    assert_eq!(state_of(&report, "cleanup"), TaskState::Success);
    assert_eq!(state_of(&report, "report"), TaskState::UpstreamFailed);
    assert_eq!(report.state, DagRunState::Failed);
    assert_eq!(f.read("cleanup"), "done\n");
    // The failed try has a log saying why.
    let log =
        f.read("logs/dag_id=x/run_id=manual__2024-03-05T00:00:00+00:00/task_id=bad/attempt=1.log");
    assert!(
        log.contains("gust: task \"bad\", argument \"bash_command\""),
        "{log}"
    );
}

#[tokio::test]
async fn a_processing_step_whose_inputs_fail_to_render_fails_once_and_the_run_goes_on() {
    // Issue 18: an undefined name in a processing step's `inputs` hung `gust dags test`. The
    // step fails on its one try (it never reaches a runtime), with a try log saying why, and
    // the run goes on to its `all_done` cleanup and ends.
    let f = Fixture::new();
    let dag = f.dag(
        "x:\n  tasks:\n    step:\n      operator: processing\n      image: python:3.11-slim\n      command: [python3, -c, 'print(1)']\n      inputs:\n        - {name: raw, source: '{{ params.nope }}', destination: /opt/ml/processing/input/raw/}\n    cleanup: {operator: bash, bash_command: 'echo done > {dir}/cleanup', dependencies: [step], trigger_rule: all_done}\n    after: {operator: bash, bash_command: 'echo x', dependencies: [step]}\n",
    );
    let report = f.run(&dag, serde_json::json!({})).await;
    assert_eq!(state_of(&report, "step"), TaskState::Failed);
    let step = report
        .tasks
        .iter()
        .find(|t| t.task_id.as_str() == "step")
        .expect("the step");
    assert_eq!(step.tries, 1);
    assert_eq!(state_of(&report, "cleanup"), TaskState::Success);
    assert_eq!(state_of(&report, "after"), TaskState::UpstreamFailed);
    assert_eq!(report.state, DagRunState::Failed);
    assert_eq!(f.read("cleanup"), "done\n");
    let log =
        f.read("logs/dag_id=x/run_id=manual__2024-03-05T00:00:00+00:00/task_id=step/attempt=1.log");
    assert!(
        log.contains("task \"step\", argument \"inputs[0].source\"") && log.contains("params.nope"),
        "{log}"
    );
}

#[tokio::test]
async fn every_move_of_a_task_is_told_as_it_happens() {
    let f = Fixture::new();
    let dag = f.dag("x:\n  tasks:\n    a: {operator: bash, bash_command: 'exit 3'}\n");
    let (tx, mut events) = event_channel();
    let executor = LocalExecutor::new(LocalConfig::default(), tx, Arc::new(SystemClock));
    let start = Utc
        .with_ymd_and_hms(2024, 3, 5, 0, 0, 0)
        .single()
        .expect("a date");
    let spec = TestRunSpec {
        run_id: RunId::new("manual__x").expect("a run id"),
        interval: DataInterval { start, end: start },
        conf: serde_json::Map::new(),
        logs_root: f.dir.path().join("logs"),
        variables: std::collections::HashMap::new(),
        connections: Default::default(),
        callbacks: None,
        max_map_length: gust_core::mapping::DEFAULT_MAX_MAP_LENGTH,
        triggerer: None,
    };
    let mut seen = Vec::new();
    let report = tokio::time::timeout(
        Duration::from_secs(30),
        gust_scheduler::test_run::run_with_progress(
            &dag,
            &spec,
            &executor,
            &mut events,
            &mut |c| {
                seen.push((c.state, c.try_number, c.failure));
            },
        ),
    )
    .await
    .expect("the run ends");
    executor.shutdown().await;
    assert_eq!(report.state, DagRunState::Failed);
    let states: Vec<TaskState> = seen.iter().map(|s| s.0).collect();
    assert_eq!(
        states,
        [
            TaskState::Scheduled,
            TaskState::Queued,
            TaskState::Running,
            TaskState::Failed
        ]
    );
    assert_eq!(seen[3].1, 1);
    assert!(
        seen[3].2.as_deref().is_some_and(|f| f.contains('3')),
        "{seen:?}"
    );
}

#[tokio::test]
async fn xcoms_passed_on_and_failures_reported_are_masked_as_the_scheduler_masks_them() {
    // What `gust dags test` feeds the masker from the stored variables.
    gust_secrets::add([SECRET.to_owned()]);
    let f = Fixture::new();
    let dag = f.dag(
        r#"x:
  tasks:
    leak: {operator: bash, bash_command: 'echo {{ var.value.api_key }}'}
    pull:
      operator: bash
      bash_command: "echo '{{ ti.xcom_pull(task_ids=\"leak\") }}' > {dir}/pulled"
      dependencies: [leak]
    bad: {operator: bash, bash_command: '{{ macros.ds_add(var.value.api_key, 1) }}'}
"#,
    );
    let report = f.run(&dag, serde_json::json!({})).await;
    assert_eq!(state_of(&report, "pull"), TaskState::Success);
    assert_eq!(f.read("pulled"), "***\n", "the XCom passed on is masked");
    let bad = report
        .tasks
        .iter()
        .find(|t| t.task_id.as_str() == "bad")
        .expect("bad");
    let failure = bad.failure.as_deref().unwrap_or_default();
    assert!(
        failure.contains(r#"ds_add: "***" is not a date"#),
        "{failure}"
    );
}

fn instances_of(report: &RunReport, task: &str) -> usize {
    report
        .tasks
        .iter()
        .find(|t| t.task_id.as_str() == task)
        .unwrap_or_else(|| panic!("no {task}"))
        .instances
}

#[tokio::test]
async fn a_mapped_task_runs_once_per_item_and_downstream_tasks_count_its_instances() {
    let f = Fixture::new();
    let dag = f.dag(
        r#"
m:
  tasks:
    each:
      operator: bash
      partial: {env: {OUT: "{dir}"}, append_env: true}
      expand:
        bash_command:
          - 'echo a > $OUT/a; echo echo x'
          - 'echo b > $OUT/b; echo echo y'
          - 'echo c > $OUT/c; echo echo z'
    again:
      operator: bash
      expand: {bash_command: each.output}
    pulled:
      operator: bash
      bash_command: "echo '{{ ti.xcom_pull(task_ids=\"again\") | list | join(\",\") }}' > {dir}/pulled"
      dependencies: [again]
    nothing:
      operator: bash
      expand: {bash_command: []}
    after_nothing:
      operator: bash
      bash_command: 'true'
      dependencies: [nothing]
"#,
    );
    let report = f.run(&dag, serde_json::json!({})).await;
    assert_eq!(report.state, DagRunState::Success, "{report:?}");
    assert_eq!(instances_of(&report, "each"), 3);
    for name in ["a", "b", "c"] {
        assert_eq!(f.read(name).trim(), name, "instance {name} ran");
    }
    assert_eq!(
        instances_of(&report, "again"),
        3,
        "mapped over the mapped task's values"
    );
    assert_eq!(
        f.read("pulled").trim(),
        "x,y,z",
        "a mapped task's XCom is its instances' values in map-index order"
    );
    assert_eq!(
        state_of(&report, "nothing"),
        TaskState::Skipped,
        "an empty list skips"
    );
    assert_eq!(state_of(&report, "after_nothing"), TaskState::Skipped);
    let log = f.read(
        "logs/dag_id=m/run_id=manual__2024-03-05T00:00:00+00:00/task_id=each/map_index=2/attempt=1.log",
    );
    assert!(
        log.contains("echo z"),
        "each instance has its own log: {log}"
    );
}

#[tokio::test]
async fn trigger_rules_count_every_instance_and_a_failed_one_fails_the_run() {
    let f = Fixture::new();
    let dag = f.dag(
        r#"
m:
  default_args: {retries: 0}
  tasks:
    each:
      operator: bash
      expand: {bash_command: ['true', 'exit 1', 'true']}
    all_ok:
      operator: bash
      bash_command: 'true'
      dependencies: [each]
    any_ok:
      operator: bash
      bash_command: 'true'
      trigger_rule: one_success
      dependencies: [each]
    unmappable:
      operator: bash
      bash_command: echo not-a-list
    over_text:
      operator: bash
      expand: {bash_command: unmappable.output}
"#,
    );
    let report = f.run(&dag, serde_json::json!({})).await;
    assert_eq!(report.state, DagRunState::Failed);
    assert_eq!(state_of(&report, "each"), TaskState::Failed);
    assert_eq!(state_of(&report, "all_ok"), TaskState::UpstreamFailed);
    assert_eq!(state_of(&report, "any_ok"), TaskState::Success);
    let unmappable = report
        .tasks
        .iter()
        .find(|t| t.task_id.as_str() == "unmappable")
        .expect("the task");
    assert_eq!(
        unmappable.state,
        TaskState::Failed,
        "as Airflow's task runner fails it"
    );
    assert_eq!(
        unmappable.failure.as_deref(),
        Some("unmappable return type 'str'")
    );
    assert_eq!(state_of(&report, "over_text"), TaskState::UpstreamFailed);
}

/// The most tries that ran at once, from a trace where each try wrote `+` when it started and
/// `-` when it ended.
fn most_at_once(trace: &str) -> i32 {
    let mut now = 0;
    let mut most = 0;
    for line in trace.lines() {
        now += if line == "+" { 1 } else { -1 };
        most = most.max(now);
    }
    most
}

#[tokio::test]
async fn the_dags_and_the_tasks_concurrency_limits_hold_as_under_the_scheduler() {
    let f = Fixture::new();
    let dag = f.dag(
        r#"
limits:
  max_active_tasks: 3
  tasks:
    each:
      operator: bash
      max_active_tis_per_dagrun: 2
      partial: {env: {OUT: "{dir}"}, append_env: true}
      expand:
        bash_command: ['echo + | tee -a $OUT/each >> $OUT/all; sleep 0.3; echo - | tee -a $OUT/each >> $OUT/all', 'echo + | tee -a $OUT/each >> $OUT/all; sleep 0.3; echo - | tee -a $OUT/each >> $OUT/all', 'echo + | tee -a $OUT/each >> $OUT/all; sleep 0.3; echo - | tee -a $OUT/each >> $OUT/all', 'echo + | tee -a $OUT/each >> $OUT/all; sleep 0.3; echo - | tee -a $OUT/each >> $OUT/all', 'echo + | tee -a $OUT/each >> $OUT/all; sleep 0.3; echo - | tee -a $OUT/each >> $OUT/all']
    a: {operator: bash, bash_command: 'echo + >> {dir}/all; sleep 0.3; echo - >> {dir}/all'}
    b: {operator: bash, bash_command: 'echo + >> {dir}/all; sleep 0.3; echo - >> {dir}/all'}
    c: {operator: bash, bash_command: 'echo + >> {dir}/all; sleep 0.3; echo - >> {dir}/all'}
    d: {operator: bash, bash_command: 'echo + >> {dir}/all; sleep 0.3; echo - >> {dir}/all'}
    e: {operator: bash, bash_command: 'echo + >> {dir}/all; sleep 0.3; echo - >> {dir}/all'}
"#,
    );
    let report = f.run(&dag, serde_json::json!({})).await;
    assert_eq!(report.state, DagRunState::Success, "{report:?}");
    assert_eq!(instances_of(&report, "each"), 5);
    let each = f.read("each");
    assert_eq!(each.lines().count(), 10, "every instance ran once: {each}");
    assert!(
        most_at_once(&each) <= 2,
        "max_active_tis_per_dagrun 2 held: {each}"
    );
    let all = f.read("all");
    assert_eq!(all.lines().count(), 20, "every try ran once: {all}");
    let most = most_at_once(&all);
    assert!(most <= 3, "max_active_tasks 3 held across the DAG: {all}");
    assert!(most >= 2, "tries still ran side by side: {all}");
}
