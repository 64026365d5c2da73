//! `Renderer::check`: names that no run will define are found when DAGs load; names a run may
//! define (params, conf keys, variables and connections not known yet) are not reported.

use std::collections::HashSet;

use gust_template::{Known, Renderer, TemplateError};

fn check(source: &str, known: &Known) -> Result<(), TemplateError> {
    Renderer::new().check(source, known)
}

fn ids(names: &[&str]) -> Option<HashSet<String>> {
    Some(names.iter().map(|n| (*n).to_owned()).collect())
}

#[test]
fn unknown_context_names_and_attributes_are_reported() {
    let unknown = Known::default();
    let err = check("echo {{ nope }}", &unknown).unwrap_err();
    assert_eq!(
        err.to_string(),
        "\"nope\" in template (line 1) would be undefined when the task runs: no context name \"nope\""
    );
    let err = check("{{ inlets }}", &unknown).unwrap_err();
    assert!(
        err.to_string()
            .contains("Airflow's context has \"inlets\", Gust's does not yet"),
        "{err}"
    );
    // A subscript of an unknown name is still the name's fault.
    let err = check("{{ nope['x'] }}", &unknown).unwrap_err();
    assert!(
        matches!(&err, TemplateError::WillBeUndefined { name, .. } if name == "nope"),
        "{err:?}"
    );
    let err = check("a\n{{ dag_run.nope }}", &unknown).unwrap_err();
    assert!(
        matches!(&err, TemplateError::WillBeUndefined { name, line: 2, .. } if name == "dag_run.nope"),
        "{err:?}"
    );
}

#[test]
fn names_a_run_may_define_are_not_reported() {
    let unknown = Known::default();
    for source in [
        "{{ ds }} {{ params.anything }} {{ dag_run.conf.key }}",
        "{{ dag_run.conf[\"greeting\"] }} {{ params['x'] }} {{ dag_run.conf['a']['b'] }}",
        "{{ var.value.later }} {{ var.json.cfg.bucket }} {{ conn.later.host }}",
        "{{ ti.xcom_pull('a').split(',') }}",
        "{{ ti.xcom_pull(task_ids='create-job')['job_name'] }}",
        "{% if nope is defined %}{{ nope }}{% endif %}",
        "{{ try_number }} {{ task_instance_key_str }} {{ macros.ds_add(ds, 1) }}",
        "no template",
    ] {
        assert!(
            check(source, &unknown).is_ok(),
            "{source}: {:?}",
            check(source, &unknown)
        );
    }
}

#[test]
fn missing_connections_and_variables_are_reported_only_when_known() {
    let known = Known {
        variables: ids(&["env"]),
        connections: ids(&["db"]),
    };
    assert!(check("{{ conn.db.host }} {{ var.value.env }}", &known).is_ok());
    let err = check("{{ conn.nope.host }}", &known).unwrap_err();
    assert!(
        err.to_string()
            .contains("connection \"nope\" does not exist"),
        "{err}"
    );
    let err = check("{{ var.json.nope.x }}", &known).unwrap_err();
    assert!(
        err.to_string().contains("variable \"nope\" does not exist"),
        "{err}"
    );
    assert!(check("{{ conn.nope.host }}", &Known::default()).is_ok());
}

#[test]
fn syntax_errors_are_reported_by_the_check_too() {
    assert!(matches!(
        check("{{ ds", &Known::default()),
        Err(TemplateError::Syntax { .. })
    ));
}

#[test]
fn macros_dateutil_is_reported_with_the_date_methods_that_replace_it() {
    let err = check(
        "{{ (logical_date + macros.dateutil.relativedelta(months=1)).strftime('%Y') }}",
        &Known::default(),
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("Gust has no macros.dateutil")
            && err.to_string().contains("logical_date.add(months=1)"),
        "{err}"
    );
}

#[test]
fn date_methods_pass_the_load_check() {
    for source in [
        "{{ logical_date.subtract(days=1).strftime('%Y-%m-%d') }}",
        "{{ data_interval_end.add(months=1).start_of('month') }}",
        "{{ dag_run.logical_date.replace(day=1).end_of('day') }}",
    ] {
        assert_eq!(check(source, &Known::default()), Ok(()), "{source}");
    }
}
