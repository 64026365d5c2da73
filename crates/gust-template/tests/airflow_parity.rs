//! Python expressions, `conn` and `macros` as Airflow renders them: every case of
//! `airflow_parity.json` (whose expected texts `airflow_parity.py` checks against Airflow 3.3.2)
//! renders to the same text in Gust, and its failures fail. `gust_refuses` holds what Airflow
//! renders and Gust refuses on purpose (`+`/`-` on dates), with what Airflow prints.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use gust_template::{
    Known, MapLookup, Renderer, TemplateConnection, TemplateContext, TemplateError,
};
use serde_json::Value;

fn fixture() -> Value {
    serde_json::from_str(include_str!("airflow_parity.json")).expect("the fixture is JSON")
}

fn text(value: &Value, key: &str) -> String {
    value[key].as_str().unwrap_or_default().to_owned()
}

fn time(value: &Value, key: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(&text(value, key))
        .expect("an RFC 3339 time")
        .with_timezone(&Utc)
}

fn context(ctx: &Value) -> TemplateContext {
    let mut out = TemplateContext::new(
        &text(ctx, "dag_id"),
        &text(ctx, "task_id"),
        &text(ctx, "run_id"),
        time(ctx, "logical_date"),
        time(ctx, "data_interval_end"),
    );
    out.params = ctx["params"].as_object().cloned().expect("params");
    out.conf = ctx["conf"].as_object().cloned().expect("conf");
    out
}

fn lookup(ctx: &Value) -> MapLookup {
    let mut lookup = MapLookup::default();
    for (key, value) in ctx["variables"].as_object().expect("variables") {
        lookup
            .variables
            .insert(key.clone(), value.as_str().expect("text").to_owned());
    }
    for (id, fields) in ctx["connections"].as_object().expect("connections") {
        let field = |name: &str| fields[name].as_str().map(str::to_owned);
        lookup.connections.insert(
            id.clone(),
            TemplateConnection {
                conn_id: id.clone(),
                conn_type: text(fields, "conn_type"),
                host: field("host"),
                login: field("login"),
                password: field("password"),
                schema: field("schema"),
                port: fields["port"].as_i64(),
                extra: field("extra"),
                description: None,
            },
        );
    }
    lookup
}

#[test]
fn python_methods_conn_and_macros_render_as_airflow_renders_them() {
    let fixture = fixture();
    let ctx = context(&fixture["context"]);
    let lookup = Arc::new(lookup(&fixture["context"]));
    let renderer = Renderer::new();
    let mut differs = Vec::new();
    for case in fixture["cases"].as_array().expect("cases") {
        let (source, expected) = (case[0].as_str().expect("a template"), &case[1]);
        let got = renderer.render_str(source, &ctx, lookup.clone());
        if got.as_deref().ok() != expected.as_str() {
            differs.push(format!("{source}\n  gust: {got:?}\n  airflow: {expected}"));
        }
    }
    assert!(differs.is_empty(), "{}", differs.join("\n"));
}

#[test]
fn what_fails_in_airflow_fails_in_gust() {
    let fixture = fixture();
    let ctx = context(&fixture["context"]);
    let lookup = Arc::new(lookup(&fixture["context"]));
    let renderer = Renderer::new();
    for source in fixture["failures"].as_array().expect("failures") {
        let source = source.as_str().expect("a template");
        let result = renderer.render_str(source, &ctx, lookup.clone());
        assert!(result.is_err(), "{source} rendered {result:?}");
    }
}

#[test]
fn date_arithmetic_with_operators_is_refused_with_a_message_naming_the_methods_that_do_it() {
    // Airflow renders these (its dates are Python objects with `+`/`-`); minijinja has no
    // operators on objects, so Gust refuses them, saying what to write instead.
    let fixture = fixture();
    let ctx = context(&fixture["context"]);
    let lookup = Arc::new(lookup(&fixture["context"]));
    let renderer = Renderer::new();
    for case in fixture["gust_refuses"].as_array().expect("gust_refuses") {
        let source = case[0].as_str().expect("a template");
        let err = renderer
            .render_str(source, &ctx, lookup.clone())
            .expect_err(source);
        assert!(
            matches!(err, TemplateError::DateArithmetic { .. }),
            "{source}: {err}"
        );
        assert!(
            err.to_string().contains("logical_date.subtract(days=1)"),
            "{err}"
        );
        assert_eq!(
            renderer.check(source, &Known::default()),
            Err(err),
            "{source} fails in every run, so loading the DAG reports it"
        );
    }
}

#[test]
fn a_missing_connection_is_named_in_the_error() {
    let fixture = fixture();
    let err = Renderer::new()
        .render_str(
            "{{ conn.nope.host }}",
            &context(&fixture["context"]),
            Arc::new(lookup(&fixture["context"])),
        )
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "undefined name \"conn.nope\" in template (line 1)"
    );
}

#[test]
fn datetime_now_reads_the_wall_clock() {
    let fixture = fixture();
    let out = Renderer::new()
        .render_str(
            "{{ macros.datetime.now().year }}",
            &context(&fixture["context"]),
            Arc::new(MapLookup::default()),
        )
        .unwrap();
    let year: i32 = out.parse().unwrap();
    assert!(year >= 2025, "{out}");
}
