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
