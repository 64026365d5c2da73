//! Timetable objects in YAML: what each class reads as, what a wrong argument says, and how the
//! schedule settings change what a cron string means.

mod support;

use std::time::Duration;

use gust_core::dag::Dag;
use gust_core::schedule::{Schedule, ScheduleDefaults};
use gust_core::timetable_objects::RunImmediately;
use support::{Folder, load_one};

fn only_dag(text: &str) -> Dag {
    let (_folder, load) = load_one(text);
    assert!(load.problems.is_empty(), "{:?}", load.problems);
    load.dags.into_iter().next().expect("one DAG")
}

fn problems(text: &str) -> Vec<String> {
    Folder::new(&[("dag.yaml", text)]).problems()
}

#[test]
fn a_cron_trigger_timetable_reads_every_argument() {
    let dag = only_dag(
        "nightly:\n  schedule:\n    __type__: airflow.timetables.trigger.CronTriggerTimetable\n    cron: \"@daily\"\n    timezone: Europe/Paris\n    interval: {__type__: datetime.timedelta, hours: 2}\n    run_immediately: {__type__: datetime.timedelta, minutes: 10}\n  tasks: {t: {operator: airflow.providers.standard.operators.empty.EmptyOperator}}\n",
    );
    let Schedule::CronTrigger(t) = &dag.settings.schedule else {
        panic!("a trigger timetable: {:?}", dag.settings.schedule);
    };
    assert_eq!(t.timezone, chrono_tz::Europe::Paris);
    assert_eq!(t.interval, Duration::from_secs(7200));
    assert_eq!(
        t.run_immediately,
        RunImmediately::Within(Duration::from_secs(600))
    );
    assert_eq!(dag.settings.schedule.as_text(), "0 0 * * *");
}

#[test]
fn positional_arguments_come_from_args() {
    let dag = only_dag(
        "multi:\n  schedule: {__type__: airflow.sdk.MultipleCronTriggerTimetable, __args__: [\"0 1 * * *\", \"30 2 * * 1\"], timezone: UTC}\n  tasks: {t: {operator: airflow.providers.standard.operators.empty.EmptyOperator}}\n",
    );
    assert_eq!(dag.settings.schedule.as_text(), "0 1 * * *, 30 2 * * 1");
    let dag = only_dag(
        "delta:\n  schedule: {__type__: airflow.timetables.trigger.DeltaTriggerTimetable, __args__: [{__type__: datetime.timedelta, hours: 6}]}\n  tasks: {t: {operator: airflow.providers.standard.operators.empty.EmptyOperator}}\n",
    );
    assert_eq!(dag.settings.schedule.as_text(), "6:00:00");
}

#[test]
fn a_timetable_survives_the_stored_dag() {
    let dag = only_dag(
        "events:\n  schedule:\n    __type__: airflow.timetables.events.EventsTimetable\n    event_dates: [\"2024-03-01T10:00:00+00:00\", 2024-02-01]\n    description: launches\n  tasks: {t: {operator: airflow.providers.standard.operators.empty.EmptyOperator}}\n",
    );
    let text = serde_json::to_string(&dag).unwrap();
    let back: Dag = serde_json::from_str(&text).unwrap();
    assert_eq!(back.settings.schedule, dag.settings.schedule);
    assert_eq!(back.settings.schedule.as_text(), "launches");
}

#[test]
fn a_wrong_argument_is_one_problem_naming_file_line_dag_class_and_argument() {
    let head = "bad:\n  schedule:\n    __type__: airflow.timetables.trigger.CronTriggerTimetable\n";
    let tail =
        "  tasks: {t: {operator: airflow.providers.standard.operators.empty.EmptyOperator}}\n";
    let cases = [
        (
            "    cron: \"0 1 * * *\"\n    timezone: Mars/Olympus\n",
            "dag.yaml:5:15: bad: \"schedule\": CronTriggerTimetable argument \"timezone\" is wrong: unknown timezone \"Mars/Olympus\"",
        ),
        (
            "    cron: \"0 25 * * *\"\n    timezone: UTC\n",
            "dag.yaml:4:11: bad: \"schedule\": CronTriggerTimetable argument \"cron\" is wrong: invalid cron expression \"0 25 * * *\": hour 25 is outside 0-23",
        ),
        (
            "    cron: \"0 1 * * *\"\n",
            "dag.yaml:3:5: bad: \"schedule\": CronTriggerTimetable needs its \"timezone\" argument",
        ),
        (
            "    cron: \"0 1 * * *\"\n    timezone: UTC\n    every: 3\n",
            "dag.yaml:6:12: bad: \"schedule\": CronTriggerTimetable argument \"every\" is not an argument of it; its arguments are cron, timezone, interval, run_immediately",
        ),
    ];
    for (args, want) in cases {
        let got = problems(&format!("{head}{args}{tail}"));
        assert_eq!(got.len(), 1, "{got:?}");
        let line = &got[0];
        assert!(!line.contains('\n'), "{line}");
        assert!(line.starts_with(want), "got:  {line}\nwant: {want}");
    }
}

#[test]
fn dag_factorys_timetable_key_is_refused_with_the_schedule_form() {
    let got = problems(
        "old:\n  timetable: {__type__: airflow.timetables.trigger.CronTriggerTimetable, cron: \"0 1 * * *\", timezone: UTC}\n  tasks: {t: {operator: airflow.providers.standard.operators.empty.EmptyOperator}}\n",
    );
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(
        got[0].contains("\"timetable\" cannot be used"),
        "{}",
        got[0]
    );
    assert!(got[0].contains("schedule: {__type__"), "{}", got[0]);
}

#[test]
fn a_continuous_schedule_needs_one_active_run() {
    let text = |runs: u32| {
        format!(
            "c:\n  schedule: \"@continuous\"\n  max_active_runs: {runs}\n  tasks: {{t: {{operator: airflow.providers.standard.operators.empty.EmptyOperator}}}}\n"
        )
    };
    assert_eq!(only_dag(&text(1)).settings.schedule, Schedule::Continuous);
    let got = problems(&text(16));
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(
        got[0].contains("requires max_active_runs <= 1, not 16"),
        "{}",
        got[0]
    );
}

#[test]
fn the_schedule_settings_make_strings_trigger_timetables() {
    let folder = Folder::new(&[(
        "dag.yaml",
        "s:\n  schedule: \"0 3 * * *\"\n  timezone: Asia/Tokyo\n  tasks: {t: {operator: airflow.providers.standard.operators.empty.EmptyOperator}}\nd:\n  schedule: 1h\n  tasks: {t: {operator: airflow.providers.standard.operators.empty.EmptyOperator}}\n",
    )]);
    let trigger = ScheduleDefaults {
        cron_data_intervals: false,
        delta_data_intervals: false,
    };
    let with = gust_dagfile::LoadWith {
        python: None,
        schedules: trigger,
    };
    let load = gust_dagfile::load_folder_with(folder.path(), support::now(), with).unwrap();
    let schedule = |id: &str| {
        load.dags
            .iter()
            .find(|d| d.id.as_str() == id)
            .map(|d| d.settings.schedule.clone())
            .unwrap()
    };
    let Schedule::CronTrigger(t) = schedule("s") else {
        panic!("a trigger timetable");
    };
    assert_eq!(t.timezone, chrono_tz::Asia::Tokyo);
    assert!(matches!(schedule("d"), Schedule::DeltaTrigger(_)));
    // By default they keep their data intervals.
    let load = folder.load();
    assert!(matches!(
        load.dags[0].settings.schedule,
        Schedule::Interval(_)
    ));
    assert!(matches!(load.dags[1].settings.schedule, Schedule::Cron(_)));
}
