//! Airflow 3.3's timetables against Gust's: each case is a DAG whose schedule is a timetable
//! object in dag-factory's YAML shape. Airflow builds the object from the same shape with
//! dag-factory's own `cast_with_type` and walks `next_dagrun_info` at a fixed `now` (its clock
//! patched); Gust loads the YAML file and asks `due_intervals` and `next_run`. The runs due at
//! `now` and the one after them must have the same logical date and data interval.
//!
//! The venv's Python is `GUST_TEST_AIRFLOW_PYTHON`, else `target/airflow-venv/bin/python`; when
//! neither exists the test says so and does nothing (and fails with GUST_REQUIRE_AIRFLOW=1, as
//! in CI).

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use gust_core::schedule::{DataInterval, ScheduleDefaults};
use gust_core::timetable::{due_intervals, next_run};
use serde_json::{Value, json};

fn airflow_python() -> Option<PathBuf> {
    let path = std::env::var_os("GUST_TEST_AIRFLOW_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/airflow-venv/bin/python")
        });
    if path.exists() {
        Some(path)
    } else {
        assert!(
            std::env::var("GUST_REQUIRE_AIRFLOW").as_deref() != Ok("1"),
            "GUST_REQUIRE_AIRFLOW=1 but there is no Airflow venv at {}",
            path.display()
        );
        eprintln!(
            "SKIPPED: no Airflow venv at {} (set GUST_TEST_AIRFLOW_PYTHON, or run .ci/run, which \
             makes target/airflow-venv)",
            path.display()
        );
        None
    }
}

/// Walks Airflow's `next_dagrun_info` for each case at its `now`.
const AIRFLOW: &str = r#"
import json, sys, datetime
import pendulum
from unittest import mock
from airflow.timetables.base import TimeRestriction
from dagfactory.utils import cast_with_type

cases = json.load(sys.stdin)
out = []
for case in cases:
    now = pendulum.parse(case["now"])
    shape = dict(case["schedule"]) if isinstance(case["schedule"], dict) else None
    if shape is None:
        from airflow.timetables.trigger import CronTriggerTimetable
        timetable = CronTriggerTimetable(case["schedule"], timezone=case.get("timezone", "UTC"))
    else:
        if "event_dates" in shape:
            shape["event_dates"] = [pendulum.parse(d) for d in shape["event_dates"]]
        timetable = cast_with_type(shape)
    parse = lambda t: pendulum.parse(t) if t else None
    restriction = TimeRestriction(parse(case.get("start_date")), parse(case.get("end_date")), case["catchup"])
    with mock.patch("airflow._shared.timezones.timezone.utcnow", return_value=now), \
         mock.patch("airflow.timetables.trigger.utcnow", return_value=now), \
         mock.patch("airflow.timetables.interval.utcnow", return_value=now), \
         mock.patch("airflow.timetables.trigger.time.time", return_value=now.timestamp()):
        due, last, following = [], None, None
        while len(due) < case["limit"]:
            info = timetable.next_dagrun_info(last_automated_data_interval=last, restriction=restriction)
            if info is None or info.run_after > now:
                following = info
                break
            due.append(info)
            last = info.data_interval
        else:
            following = timetable.next_dagrun_info(last_automated_data_interval=last, restriction=restriction)
    run = lambda i: None if i is None else [i.logical_date.isoformat(), i.data_interval.end.isoformat()]
    out.append({"due": [run(i) for i in due], "next": run(following)})
print(json.dumps(out))
"#;

struct Case {
    dag_id: &'static str,
    schedule: Value,
    catchup: bool,
    start_date: Option<&'static str>,
    end_date: Option<&'static str>,
    now: &'static str,
    limit: usize,
}

fn case(dag_id: &'static str, schedule: Value, catchup: bool, start: Option<&'static str>) -> Case {
    Case {
        dag_id,
        schedule,
        catchup,
        start_date: start,
        end_date: None,
        now: "2024-01-10T05:30:00+00:00",
        limit: 50,
    }
}

fn cases() -> Vec<Case> {
    let cron = |extra: Value| {
        let mut shape = json!({"__type__": "airflow.timetables.trigger.CronTriggerTimetable", "cron": "0 1 * * *", "timezone": "UTC"});
        shape
            .as_object_mut()
            .expect("a map")
            .extend(extra.as_object().expect("a map").clone());
        shape
    };
    let hourly = |run_immediately: Value| json!({"__type__": "airflow.timetables.trigger.CronTriggerTimetable", "cron": "0 * * * *", "timezone": "UTC", "run_immediately": run_immediately});
    let multiple = json!({"__type__": "airflow.timetables.trigger.MultipleCronTriggerTimetable", "__args__": ["0 1 * * *", "30 13 * * 1"], "timezone": "Europe/Paris"});
    let delta = json!({"__type__": "airflow.timetables.trigger.DeltaTriggerTimetable", "delta": {"__type__": "datetime.timedelta", "hours": 6}});
    let events = json!({"__type__": "airflow.timetables.events.EventsTimetable", "event_dates": ["2024-01-12T00:00:00+00:00", "2024-01-02T08:00:00+00:00", "2024-01-06T12:00:00+00:00"]});
    vec![
        case(
            "cron_catchup",
            cron(json!({})),
            true,
            Some("2024-01-05T00:00:00+00:00"),
        ),
        case(
            "cron_no_catchup",
            cron(json!({})),
            false,
            Some("2024-01-05T00:00:00+00:00"),
        ),
        Case {
            end_date: Some("2024-01-09T12:00:00+00:00"),
            ..case(
                "cron_interval_end_date",
                cron(json!({"interval": {"__type__": "datetime.timedelta", "hours": 3}})),
                true,
                Some("2024-01-08T00:00:00+00:00"),
            )
        },
        case(
            "cron_no_start_run_immediately",
            cron(json!({"run_immediately": true})),
            true,
            None,
        ),
        case("hourly_no_start_waits", hourly(json!(false)), true, None),
        Case {
            now: "2024-01-10T05:03:00+00:00",
            ..case(
                "hourly_no_start_within_tenth",
                hourly(json!(false)),
                true,
                None,
            )
        },
        case(
            "hourly_run_immediately_delta",
            hourly(json!({"__type__": "datetime.timedelta", "minutes": 45})),
            false,
            None,
        ),
        case(
            "multiple_catchup",
            multiple.clone(),
            true,
            Some("2024-01-05T00:00:00+00:00"),
        ),
        case(
            "multiple_no_catchup",
            multiple,
            false,
            Some("2024-01-05T00:00:00+00:00"),
        ),
        case(
            "delta_catchup",
            delta.clone(),
            true,
            Some("2024-01-09T00:00:00+00:00"),
        ),
        case(
            "delta_no_catchup",
            delta.clone(),
            false,
            Some("2024-01-09T00:00:00+00:00"),
        ),
        case("delta_no_start", delta, false, None),
        case("events_catchup", events.clone(), true, None),
        case(
            "events_after_start",
            events.clone(),
            true,
            Some("2024-01-03T00:00:00+00:00"),
        ),
        Case {
            now: "2024-01-06T12:00:00+00:00",
            ..case("events_no_catchup_on_time", events, false, None)
        },
        case(
            "cron_data_interval_tokyo",
            json!({"__type__": "airflow.timetables.interval.CronDataIntervalTimetable", "__args__": ["0 3 * * *", "Asia/Tokyo"]}),
            true,
            Some("2024-01-07T00:00:00+00:00"),
        ),
        case(
            "delta_data_interval",
            json!({"__type__": "airflow.timetables.interval.DeltaDataIntervalTimetable", "delta": {"__type__": "datetime.timedelta", "hours": 12}}),
            true,
            Some("2024-01-08T00:00:00+00:00"),
        ),
        Case {
            limit: 1,
            ..case(
                "continuous",
                json!({"__type__": "airflow.timetables.simple.ContinuousTimetable"}),
                true,
                Some("2024-01-09T00:00:00+00:00"),
            )
        },
        // A cron string under create_cron_data_intervals = False is a CronTriggerTimetable in
        // the DAG's zone.
        case(
            "string_as_trigger",
            json!("0 1 * * *"),
            true,
            Some("2024-01-05T00:00:00+00:00"),
        ),
    ]
}

fn run(i: &DataInterval) -> Value {
    json!([i.start.to_rfc3339(), i.end.to_rfc3339()])
}

fn normalize(v: &Value) -> Value {
    // Airflow writes `+00:00` with or without microseconds; compare instants.
    match v {
        Value::String(s) => DateTime::parse_from_rfc3339(s)
            .map(|t| json!(t.with_timezone(&Utc).to_rfc3339()))
            .unwrap_or_else(|_| v.clone()),
        Value::Array(items) => Value::Array(items.iter().map(normalize).collect()),
        Value::Object(map) => {
            Value::Object(map.iter().map(|(k, v)| (k.clone(), normalize(v))).collect())
        }
        _ => v.clone(),
    }
}

#[test]
fn due_runs_and_the_next_run_equal_airflows_for_every_timetable() {
    let Some(python) = airflow_python() else {
        return;
    };
    let cases = cases();
    let dir = tempfile::tempdir().unwrap();
    // JSON is YAML: one DAG per case, in dag-factory's shape.
    let mut dags = serde_json::Map::new();
    for c in &cases {
        let mut dag = json!({
            "schedule": c.schedule,
            "catchup": c.catchup,
            "max_active_runs": 1,
            "tasks": {"t": {"operator": "airflow.providers.standard.operators.empty.EmptyOperator"}},
        });
        if let Some(start) = c.start_date {
            dag["start_date"] = json!(start);
        }
        if let Some(end) = c.end_date {
            dag["end_date"] = json!(end);
        }
        dags.insert(c.dag_id.to_owned(), dag);
    }
    std::fs::write(
        dir.path().join("timetables.yaml"),
        serde_json::to_string_pretty(&dags).unwrap(),
    )
    .unwrap();
    let with = gust_dagfile::LoadWith {
        python: None,
        schedules: ScheduleDefaults {
            cron_data_intervals: false,
            delta_data_intervals: true,
        },
    };
    // Relative dates are not used here: any fixed time anchors the load.
    let loaded_at = DateTime::parse_from_rfc3339("2024-01-10T00:00:00+00:00").unwrap();
    let load = gust_dagfile::load_folder_with(dir.path(), loaded_at.into(), with).unwrap();
    assert!(load.problems.is_empty(), "{:?}", load.problems);

    let input: Vec<Value> = cases
        .iter()
        .map(|c| {
            json!({"schedule": c.schedule, "catchup": c.catchup, "start_date": c.start_date,
                   "end_date": c.end_date, "now": c.now, "limit": c.limit})
        })
        .collect();
    let airflow = run_airflow(&python, &Value::Array(input));
    for (c, expected) in cases.iter().zip(airflow.as_array().unwrap()) {
        let dag = load
            .dags
            .iter()
            .find(|d| d.id.as_str() == c.dag_id)
            .unwrap();
        let now: DateTime<Utc> = DateTime::parse_from_rfc3339(c.now).unwrap().into();
        let due = due_intervals(&dag.settings, None, now, c.limit);
        let next = next_run(&dag.settings, due.last(), now);
        let gust =
            json!({"due": due.iter().map(run).collect::<Vec<_>>(), "next": next.as_ref().map(run)});
        assert_eq!(normalize(&gust), normalize(expected), "case {}", c.dag_id);
    }
}

fn run_airflow(python: &std::path::Path, input: &Value) -> Value {
    use std::io::Write;
    let home = tempfile::tempdir().expect("a temporary directory");
    #[allow(clippy::disallowed_methods, reason = "the test runs Airflow")]
    let mut child = std::process::Command::new(python)
        .args(["-c", AIRFLOW])
        .env("AIRFLOW_HOME", home.path())
        .env("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
        .env("AIRFLOW__DAG_FACTORY__ENABLE_TELEMETRY", "False")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the Airflow venv's python runs");
    child
        .stdin
        .take()
        .expect("its stdin")
        .write_all(input.to_string().as_bytes())
        .expect("the cases are written");
    let output = child.wait_with_output().expect("Airflow ends");
    assert!(
        output.status.success(),
        "Airflow failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(stdout.lines().last().unwrap_or_default()).expect("Airflow's runs as JSON")
}
