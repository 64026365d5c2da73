//! Rendering with Airflow's context names, checked against fixed values.

use std::sync::Arc;

use chrono::{TimeZone, Utc};
use gust_template::{MapLookup, NoLookup, Renderer, RuntimeLookup, TemplateContext, TemplateError};
use serde_json::json;

fn ctx() -> TemplateContext {
    let start = Utc
        .with_ymd_and_hms(2024, 3, 5, 6, 7, 8)
        .single()
        .expect("a time");
    let end = Utc
        .with_ymd_and_hms(2024, 3, 6, 6, 7, 8)
        .single()
        .expect("a time");
    let mut ctx = TemplateContext::new(
        "etl",
        "load",
        "scheduled__2024-03-05T06:07:08+00:00",
        start,
        end,
    );
    ctx.try_number = 2;
    ctx.params = json!({"table": "orders", "limit": 10})
        .as_object()
        .cloned()
        .expect("a map");
    ctx.conf = json!({"limit": 20}).as_object().cloned().expect("a map");
    ctx
}

fn lookup() -> Arc<dyn RuntimeLookup> {
    let mut lookup = MapLookup::default();
    lookup.variables.insert("env".into(), "prod".into());
    lookup
        .variables
        .insert("cfg".into(), r#"{"bucket": "b1", "n": [1, 2]}"#.into());
    lookup.variables.insert("broken".into(), "{not json".into());
    lookup.xcoms.insert(
        ("extract".into(), "return_value".into()),
        json!({"train": "s3://b/train"}),
    );
    lookup
        .xcoms
        .insert(("count".into(), "return_value".into()), json!(42));
    lookup
        .xcoms
        .insert(("count".into(), "rows".into()), json!(7));
    Arc::new(lookup)
}

fn render(source: &str) -> String {
    Renderer::new()
        .render_str(source, &ctx(), lookup())
        .unwrap_or_else(|e| panic!("{source}: {e}"))
}

fn fail(source: &str) -> TemplateError {
    Renderer::new()
        .render_str(source, &ctx(), lookup())
        .expect_err(source)
}

#[test]
fn date_names_render_as_airflow_renders_them() {
    assert_eq!(render("{{ ds }}"), "2024-03-05");
    assert_eq!(render("{{ ds_nodash }}"), "20240305");
    assert_eq!(render("{{ ts }}"), "2024-03-05T06:07:08+00:00");
    assert_eq!(render("{{ ts_nodash }}"), "20240305T060708");
    assert_eq!(render("{{ ts_nodash_with_tz }}"), "20240305T060708+0000");
    assert_eq!(render("{{ logical_date }}"), "2024-03-05 06:07:08+00:00");
    assert_eq!(
        render("{{ data_interval_start }} {{ data_interval_end }}"),
        "2024-03-05 06:07:08+00:00 2024-03-06 06:07:08+00:00"
    );
}

#[test]
fn datetimes_have_python_attributes_and_methods() {
    assert_eq!(
        render(
            "{{ logical_date.year }}-{{ logical_date.month }}-{{ logical_date.day }} {{ logical_date.hour }}"
        ),
        "2024-3-5 6"
    );
    assert_eq!(
        render("{{ logical_date.strftime('%Y/%m/%d %H') }}"),
        "2024/03/05 06"
    );
    assert_eq!(
        render("{{ data_interval_end.isoformat() }}"),
        "2024-03-06T06:07:08+00:00"
    );
}

#[test]
fn airflow_filters_format_datetimes() {
    assert_eq!(render("{{ data_interval_end | ds }}"), "2024-03-06");
    assert_eq!(render("{{ data_interval_end | ds_nodash }}"), "20240306");
    assert_eq!(
        render("{{ data_interval_end | ts }}"),
        "2024-03-06T06:07:08+00:00"
    );
    assert_eq!(
        render("{{ data_interval_end | ts_nodash }}"),
        "20240306T060708"
    );
    assert_eq!(render("{{ '2024-01-02' | ds_nodash }}"), "20240102");
}

#[test]
fn run_dag_task_and_try_names_render() {
    assert_eq!(
        render("{{ run_id }}"),
        "scheduled__2024-03-05T06:07:08+00:00"
    );
    assert_eq!(render("{{ dag.dag_id }}.{{ task.task_id }}"), "etl.load");
    assert_eq!(
        render("{{ ti.try_number }} {{ task_instance.task_id }} {{ ti.dag_id }}"),
        "2 load etl"
    );
    assert_eq!(render("{{ dag_run.run_id == run_id }}"), "True");
}

#[test]
fn params_take_the_run_conf_over_their_defaults() {
    assert_eq!(render("{{ params.table }} {{ params.limit }}"), "orders 20");
    assert_eq!(render("{{ dag_run.conf.limit }}"), "20");
}

#[test]
fn macros_add_and_format_dates() {
    assert_eq!(render("{{ macros.ds_add(ds, -5) }}"), "2024-02-29");
    assert_eq!(render("{{ macros.ds_add('2024-12-31', 1) }}"), "2025-01-01");
    assert_eq!(
        render("{{ macros.ds_format(ds, '%Y-%m-%d', '%d.%m.%Y') }}"),
        "05.03.2024"
    );
    assert!(matches!(
        fail("{{ macros.ds_add('soon', 1) }}"),
        TemplateError::Render { .. }
    ));
}

#[test]
fn variables_read_as_text_or_json() {
    assert_eq!(render("{{ var.value.env }}"), "prod");
    assert_eq!(
        render("{{ var.json.cfg.bucket }} {{ var.json.cfg.n[1] }}"),
        "b1 2"
    );
    assert_eq!(
        render("{{ var.value.get('missing', 'fallback') }}"),
        "fallback"
    );
    assert_eq!(render("{{ var.value.get('env') }}"), "prod");
    let err = fail("{{ var.json.get('broken') }}");
    assert!(
        err.to_string()
            .contains("variable \"broken\" is not valid JSON"),
        "{err}"
    );
}

#[test]
fn an_undefined_variable_is_named() {
    assert_eq!(
        fail("{{ var.value.nope }}"),
        TemplateError::Undefined {
            name: "var.value.nope".into(),
            line: 1
        }
    );
}

#[test]
fn xcom_pull_reads_one_task_a_list_of_tasks_and_other_keys() {
    assert_eq!(
        render("{{ ti.xcom_pull(task_ids='extract')['train'] }}"),
        "s3://b/train"
    );
    assert_eq!(render("{{ ti.xcom_pull('count') }}"), "42");
    assert_eq!(
        render("{{ ti.xcom_pull(task_ids=['count', 'extract'])[0] }}"),
        "42"
    );
    assert_eq!(
        render("{{ ti.xcom_pull(task_ids='count', key='rows') }}"),
        "7"
    );
    assert_eq!(
        render("{{ ti.xcom_pull(task_ids='nothing', default='none yet') }}"),
        "none yet"
    );
    let err = fail("{{ ti.xcom_pull(key='rows') }}");
    assert!(
        err.to_string().contains("xcom_pull needs task_ids"),
        "{err}"
    );
}

#[test]
fn an_undefined_name_is_an_error_naming_it_never_an_empty_string() {
    assert_eq!(
        fail("echo {{ foo }}"),
        TemplateError::Undefined {
            name: "foo".into(),
            line: 1
        }
    );
    assert_eq!(
        fail("a\nb {{ params.nope }}"),
        TemplateError::Undefined {
            name: "params.nope".into(),
            line: 2
        }
    );
    assert_eq!(
        fail("{{ foo }}").to_string(),
        "undefined name \"foo\" in template (line 1)"
    );
}

#[test]
fn syntax_errors_carry_the_line_inside_the_template() {
    let renderer = Renderer::new();
    let err = renderer.check_syntax("ok\n{{ ds").unwrap_err();
    assert!(
        matches!(err, TemplateError::Syntax { line: 2, .. }),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .starts_with("syntax error in template (line 2): "),
        "{err}"
    );
    assert!(
        renderer
            .check_syntax("{{ ds }} {% if true %}x{% endif %}")
            .is_ok()
    );
    assert!(renderer.check_syntax("no template at all {").is_ok());
}

#[test]
fn render_value_renders_nested_strings_and_names_the_path_on_error() {
    let renderer = Renderer::new();
    let value =
        json!({"env": {"DAY": "{{ ds }}", "N": 3}, "args": ["plain", "{{ params.table }}"]});
    let out = renderer
        .render_value(&value, "pod", &ctx(), lookup())
        .expect("renders");
    assert_eq!(
        out,
        json!({"env": {"DAY": "2024-03-05", "N": 3}, "args": ["plain", "orders"]})
    );

    let bad = json!({"env": {"X": "{{ nope }}"}});
    let err = renderer
        .render_value(&bad, "env_vars", &ctx(), lookup())
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "task \"load\", argument \"env_vars.env.X\": undefined name \"nope\" in template (line 1)"
    );
    let list = json!(["a", "{{ nope }}"]);
    let err = renderer
        .render_value(&list, "arguments", &ctx(), lookup())
        .unwrap_err();
    assert_eq!(err.argument, "arguments[1]");
}

#[test]
fn plain_strings_are_returned_untouched() {
    let renderer = Renderer::new();
    assert_eq!(
        renderer
            .render_str("echo 100% done }", &ctx(), Arc::new(NoLookup))
            .unwrap(),
        "echo 100% done }"
    );
}

#[test]
fn trailing_newlines_are_kept() {
    assert_eq!(render("echo {{ ds }}\n"), "echo 2024-03-05\n");
}

#[test]
fn runaway_loops_are_stopped_by_fuel() {
    let err =
        fail("{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}");
    assert!(
        matches!(err, TemplateError::TooLong | TemplateError::Render { .. }),
        "{err:?}"
    );
}

#[test]
fn oversized_templates_are_refused() {
    let huge = format!("{{{{ ds }}}}{}", "x".repeat(300 * 1024));
    assert!(matches!(fail(&huge), TemplateError::TooLarge { .. }));
}

#[test]
fn a_mapped_instance_sees_its_arguments_as_the_tasks_and_its_index_as_the_tis() {
    let mut ctx = ctx();
    ctx.map_index = 2;
    ctx.task_args = json!({"env": {"SHARD": "eu-3"}, "bash_command": "echo $SHARD"})
        .as_object()
        .cloned()
        .expect("a map");
    let render = |source: &str| {
        Renderer::new()
            .render_str(source, &ctx, lookup())
            .unwrap_or_else(|e| panic!("{source}: {e}"))
    };
    assert_eq!(render("{{ task.env.SHARD }}"), "eu-3");
    assert_eq!(render("{{ task.task_id }}#{{ ti.map_index }}"), "load#2");
    // A task that is not mapped: index -1, no arguments but its id.
    assert_eq!(
        Renderer::new()
            .render_str(
                "{{ ti.map_index }} {{ task.task_id }}",
                &self::ctx(),
                lookup()
            )
            .expect("renders"),
        "-1 load"
    );
}

/// A lookup that keeps what templates push, with events of one asset.
#[derive(Default)]
struct Recording {
    pushed: std::sync::Mutex<Vec<(String, serde_json::Value)>>,
}

impl RuntimeLookup for Recording {
    fn variable(&self, _key: &str) -> Option<String> {
        None
    }

    fn connection(&self, _conn_id: &str) -> Option<gust_template::TemplateConnection> {
        None
    }

    fn xcom(&self, _task_id: &str, _key: &str) -> Option<serde_json::Value> {
        None
    }

    fn push_xcom(&self, key: &str, value: serde_json::Value) {
        self.pushed
            .lock()
            .expect("not poisoned")
            .push((key.to_owned(), value));
    }

    fn asset_events(&self, asset: &gust_template::AssetQuery) -> Vec<serde_json::Value> {
        let by_name = asset.name.as_deref().is_none_or(|n| n == "test-asset");
        let by_uri = asset
            .uri
            .as_deref()
            .is_none_or(|u| u == "s3://output/1.txt");
        if !(by_name && by_uri) {
            return Vec::new();
        }
        vec![
            json!({"extra": {"hi": "first"}, "source_dag_id": "a"}),
            json!({"extra": {"hi": "bye", "<&'>": "x"}, "source_dag_id": "b"}),
        ]
    }
}

#[test]
fn xcom_push_keeps_the_value_for_the_try_and_renders_none() {
    let recording = Arc::new(Recording::default());
    let rendered = Renderer::new()
        .render_str(
            "echo \"set {{ ti.xcom_push(key='manually_pushed_value', value='v') }}\" \
             {{ ti.xcom_push('n', [1, 2]) }}",
            &ctx(),
            recording.clone(),
        )
        .expect("renders");
    assert_eq!(rendered, "echo \"set None\" None");
    assert_eq!(
        *recording.pushed.lock().expect("not poisoned"),
        vec![
            ("manually_pushed_value".to_owned(), json!("v")),
            ("n".to_owned(), json!([1, 2]))
        ]
    );
    let err = fail("{{ ti.xcom_push(value=1) }}");
    assert!(err.to_string().contains("xcom_push needs a key"), "{err}");
}

#[test]
fn xcom_pull_takes_this_run_s_dag_id_as_str_of_an_xcom_arg_writes_it() {
    assert_eq!(
        render("{{ task_instance.xcom_pull(task_ids='count', dag_id='etl', key='rows') }}"),
        "7"
    );
    let err = fail("{{ ti.xcom_pull(task_ids='count', dag_id='other') }}");
    assert!(err.to_string().contains("not of DAG other"), "{err}");
}

#[test]
fn inlet_events_list_the_events_of_the_task_s_inlets() {
    let mut ctx = ctx();
    ctx.inlets = vec![gust_template::Inlet {
        name: "test-asset".into(),
        uri: "s3://output/1.txt".into(),
    }];
    let render = |source: &str| {
        Renderer::new()
            .render_str(source, &ctx, Arc::new(Recording::default()))
            .map_err(|e| e.to_string())
    };
    // Airflow 3.3.2's example_inlet_event_extra.py, and Jinja's `tojson` as Airflow prints it.
    assert_eq!(
        render("echo '{{ inlet_events.for_asset(uri='s3://output/1.txt')[-1].extra | tojson }}'"),
        Ok(r#"echo '{"\u003c\u0026\u0027\u003e": "x", "hi": "bye"}'"#.to_owned())
    );
    assert_eq!(
        render("{{ inlet_events[0][0].extra.hi }} {{ inlet_events['test-asset'] | length }}"),
        Ok("first 2".to_owned())
    );
    assert_eq!(
        render(
            "{{ inlet_events.for_asset(name='test-asset', uri='s3://output/1.txt')[-1].source_dag_id }}"
        ),
        Ok("b".to_owned())
    );
    let not_an_inlet = render("{{ inlet_events.for_asset(uri='s3://elsewhere') }}");
    assert!(
        not_an_inlet
            .as_ref()
            .is_err_and(|e| e.contains("is not an inlet of task load")),
        "{not_an_inlet:?}"
    );
}

#[test]
fn tojson_writes_json_as_airflow_s_jinja_does() {
    assert_eq!(
        render("{{ {'b': 1, 'a': [1, 'é']} | tojson }}"),
        r#"{"a": [1, "\u00e9"], "b": 1}"#
    );
    assert_eq!(
        render("{{ {'b': 1, 'a': 2} | tojson(indent=2) }}"),
        "{\n  \"a\": 2,\n  \"b\": 1\n}"
    );
}
