//! The HTML pages. Each renders what it knows cheaply (names, settings, a run's conf) and leaves
//! the big parts (the DAG list, the grid, the graph, a log) to the page's script, which reads
//! the UI's JSON and follows its event stream.

use std::collections::BTreeSet;

use axum::extract::{Path, Query, State};
use axum::response::{Html, Redirect};
use gust_core::ids::TaskId;
use serde::Deserialize;

use crate::api::dag_runs::find_run;
use crate::api::redact::MASK;
use crate::error::ApiError;
use crate::state::AppState;
use crate::ui::data::{DEFAULT_GRID_RUNS, MAX_GRID_RUNS};
use crate::ui::mask::masked;
use crate::ui::session::PageUser;
use crate::ui::templates::{PageError, render};

type PageResult = Result<Html<String>, PageError>;

/// A 403 page unless the user's role may read variables and connections (Airflow's Op).
fn require_configuration_reader(user: &PageUser, what: &str) -> Result<(), PageError> {
    let needed =
        crate::auth::permissions::required_role(&axum::http::Method::GET, "/api/v2/variables");
    Ok(user.0.require(needed, what)?)
}

/// Adds the page's own values to the user's context.
fn page(user: &PageUser, name: &str, values: minijinja::Value) -> PageResult {
    let context = minijinja::context! { ..values, ..user.context() };
    Ok(render(name, context)?)
}

/// `GET /`: the DAG list.
pub async fn home() -> Redirect {
    Redirect::to("/dags")
}

/// `GET /assets`: every asset a DAG names, with the tasks that update it, the DAGs scheduled on
/// it, the tasks that read it and its last event (rendered here: a list as short as the DAGs').
pub async fn assets(user: PageUser, State(state): State<AppState>) -> PageResult {
    let mut rows = crate::api::assets::all_assets(&state).await?;
    rows.retain(|a| {
        !(a.scheduled_dags.is_empty()
            && a.producing_tasks.is_empty()
            && a.consuming_tasks.is_empty())
    });
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    page(
        &user,
        "assets.html",
        minijinja::context! { nav => "assets", rows => minijinja::Value::from_serialize(&rows) },
    )
}

/// `GET /dags`.
pub async fn dags(user: PageUser) -> PageResult {
    page(&user, "dags.html", minijinja::context! { nav => "dags" })
}

/// `?tab=grid|graph|runs|gantt|code|details&runs=N` of the DAG page.
#[derive(Debug, Deserialize)]
pub struct DagQuery {
    tab: Option<String>,
    runs: Option<i64>,
}

/// The DAG page's tabs, by their `?tab=` names.
const DAG_TABS: &[&str] = &[
    "grid",
    "graph",
    "gantt",
    "runs",
    "code",
    "details",
    "notifications",
];

/// `GET /dags/{dag_id}`: the grid, graph, Gantt chart, runs, code or details, the trigger form,
/// the pause switch.
pub async fn dag(
    user: PageUser,
    State(state): State<AppState>,
    Path(dag_id): Path<String>,
    Query(query): Query<DagQuery>,
) -> PageResult {
    let (summary, dag) = state.dag(&dag_id).await?;
    let settings = &dag.settings;
    let tab = DAG_TABS
        .iter()
        .copied()
        .find(|t| query.tab.as_deref() == Some(*t))
        .unwrap_or("grid");
    let params = serde_json::to_string_pretty(&serde_json::Value::Object(settings.params.clone()))
        .unwrap_or_else(|_| "{}".to_owned());
    let owners: BTreeSet<&str> = dag.tasks().map(|t| t.settings.owner.as_str()).collect();
    let details = match tab {
        "details" => Some(dag_details(&state, &dag, &summary).await?),
        "notifications" => Some(notifications(&state, &dag_id).await?),
        _ => None,
    };
    page(
        &user,
        "dag.html",
        minijinja::context! {
            nav => "dags",
            dag_id => dag_id,
            dag_timezone => dag.settings.timezone.name(),
            description => settings.description,
            schedule => settings.schedule.as_text(),
            tags => settings.tags,
            owners => owners,
            is_paused => summary.is_paused,
            tasks => dag.tasks().len(),
            fileloc => summary.fileloc,
            doc_md => settings.doc_md,
            params => params,
            tab => tab,
            tabs => DAG_TABS,
            details => details,
            runs => query.runs.unwrap_or(DEFAULT_GRID_RUNS).clamp(1, MAX_GRID_RUNS),
        },
    )
}

/// How many deliveries and deadlines the Notifications tab lists (the newest).
const NOTIFICATION_ROWS: i64 = 100;

/// The Notifications tab: the DAG's latest deliveries (when, event, notifier, target, status,
/// attempts, error) and its runs' deadlines, missed ones first.
async fn notifications(state: &AppState, dag_id: &str) -> Result<minijinja::Value, PageError> {
    let store = state.store();
    let (deliveries, delivered) = store.deliveries(dag_id, None, NOTIFICATION_ROWS, 0).await?;
    let (mut deadlines, deadline_count) = store
        .deadlines(Some(dag_id), None, None, NOTIFICATION_ROWS, 0)
        .await?;
    deadlines.sort_by_key(|d| (!d.missed, std::cmp::Reverse(d.deadline.deadline_time)));
    let mask = |text: &str| gust_secrets::mask(text);
    let deliveries: Vec<minijinja::Value> = deliveries
        .into_iter()
        .map(|d| {
            minijinja::context! {
                at => d.delivery.at.to_rfc3339(),
                run_id => d.delivery.run_id,
                task_id => d.delivery.task_id,
                try_number => d.delivery.try_number,
                event => d.delivery.event,
                notifier => d.delivery.notifier,
                target => mask(&d.delivery.target),
                status => d.status.as_str(),
                attempts => d.attempts,
                error => d.error.as_deref().map(mask),
            }
        })
        .collect();
    let deadlines: Vec<minijinja::Value> = deadlines
        .into_iter()
        .map(|d| {
            minijinja::context! {
                run_id => d.deadline.run_id,
                name => d.deadline.alert_name,
                reference => d.deadline.reference_type,
                deadline_time => d.deadline.deadline_time.to_rfc3339(),
                missed => d.missed,
                notifiers => d.deadline.notifiers.iter().map(|n| n.kind.as_str()).collect::<Vec<_>>(),
            }
        })
        .collect();
    Ok(minijinja::context! {
        deliveries => deliveries,
        delivered => delivered,
        deadlines => deadlines,
        deadline_count => deadline_count,
    })
}

/// The Details tab: the DAG's settings as Airflow 3's Details tab lists them, its next run,
/// and its parameters' defaults (masked).
async fn dag_details(
    state: &AppState,
    dag: &gust_core::dag::Dag,
    summary: &gust_store::DagSummary,
) -> Result<minijinja::Value, PageError> {
    let settings = &dag.settings;
    let latest = state
        .store()
        .ui_latest_scheduled_intervals()
        .await?
        .into_iter()
        .find(|(id, _, _)| *id == summary.dag_id)
        .map(|(_, start, end)| gust_core::schedule::DataInterval { start, end });
    let next = crate::ui::data::next_interval(state, dag, latest.as_ref());
    let time = |t: Option<chrono::DateTime<chrono::Utc>>| t.map(|t| t.to_rfc3339());
    let params =
        serde_json::to_string_pretty(&masked(&serde_json::Value::Object(settings.params.clone())))
            .unwrap_or_default();
    let operators: BTreeSet<&str> = dag.tasks().map(|t| t.operator.as_str()).collect();
    Ok(minijinja::context! {
        timezone => settings.timezone.name(),
        start_date => time(settings.start_date),
        end_date => time(settings.end_date),
        next_run => time(next.as_ref().map(|n| n.start)),
        next_run_after => time(next.as_ref().map(|n| n.end)),
        catchup => settings.catchup,
        max_active_runs => settings.max_active_runs,
        max_active_tasks => settings.max_active_tasks,
        dagrun_timeout => settings.dagrun_timeout.map(|d| d.as_secs()),
        assets => settings
            .assets
            .as_ref()
            .map(|a| a.assets().into_iter().map(|x| x.name.clone()).collect::<Vec<_>>()),
        params => params,
        groups => dag.groups.len(),
        mapped => dag.tasks().filter(|t| t.mapping.is_some()).count(),
        operators => operators,
        on_success_callback => settings.callbacks.on_success,
        on_failure_callback => settings.callbacks.on_failure,
        last_parsed => summary.last_parsed.to_rfc3339(),
        // How long the file took to parse: Airflow's `last_parse_duration`.
        parse_duration => summary.last_parse_duration.map(|d| format!("{:.3} s", d.as_secs_f64())),
        fingerprint => summary.fingerprint,
    })
}

/// `GET /dags/{dag_id}/runs/{run_id}`: the run's details and its task instances.
pub async fn run(
    user: PageUser,
    State(state): State<AppState>,
    Path((dag_id, run_id)): Path<(String, String)>,
) -> PageResult {
    let (_, dag) = state.dag(&dag_id).await?;
    let run = find_run(&state, &dag_id, &run_id).await?;
    let conf = serde_json::to_string_pretty(&masked(&serde_json::Value::Object(run.conf)))
        .unwrap_or_default();
    page(
        &user,
        "run.html",
        minijinja::context! {
            nav => "dags",
            dag_id => dag_id,
            run_id => run_id,
            conf => conf,
            run_type => run.run_type.as_str(),
            dag_timezone => dag.settings.timezone.name(),
            logical_date => run.logical_date.to_rfc3339(),
            interval_start => run.data_interval.0.to_rfc3339(),
            interval_end => run.data_interval.1.to_rfc3339(),
        },
    )
}

/// `GET /dags/{dag_id}/runs/{run_id}/tasks/{task_id}?map_index=N`: tries, arguments, XComs,
/// the log (of one instance of a mapped task).
pub async fn task_instance(
    user: PageUser,
    State(state): State<AppState>,
    Path((dag_id, run_id, task_id)): Path<(String, String, String)>,
    Query(instance): Query<crate::ui::data::InstanceQuery>,
) -> PageResult {
    let (_, dag) = state.dag(&dag_id).await?;
    let run = find_run(&state, &dag_id, &run_id).await?;
    let id = TaskId::new(task_id.clone()).map_err(|e| ApiError::NotFound(e.to_string()))?;
    let task = dag
        .task(&id)
        .ok_or_else(|| ApiError::not_found("Task", &task_id))?;
    let downstream: Vec<&str> = dag
        .tasks()
        .filter(|t| t.upstream.contains(&id))
        .map(|t| t.id.as_str())
        .collect();
    page(
        &user,
        "task.html",
        minijinja::context! {
            nav => "dags",
            dag_id => dag_id,
            run_id => run_id,
            task_id => task_id,
            map_index => instance.map_index(),
            mapped => task.mapping.is_some(),
            dag_timezone => dag.settings.timezone.name(),
            logical_date => run.logical_date.to_rfc3339(),
            operator => task.operator,
            upstream => task.upstream.iter().map(|u| u.as_str()).collect::<Vec<_>>(),
            downstream => downstream,
            group => task.group.as_ref().map(|g| g.as_str()),
            trigger_rule => task.settings.trigger_rule.as_str(),
            retries => task.settings.retries,
            pool => task.settings.pool,
            owner => task.settings.owner,
        },
    )
}

/// Whether the user's role may change what `path` (under `/api/v2`) holds.
fn may_change(user: &PageUser, path: &str) -> bool {
    user.0.role >= crate::auth::permissions::required_role(&axum::http::Method::POST, path)
}

/// `GET /variables`: keys and values, secret-looking ones masked; add, edit and delete through
/// the API. A masked value is never sent: its edit form leaves the value blank, which keeps it.
pub async fn variables(user: PageUser, State(state): State<AppState>) -> PageResult {
    require_configuration_reader(&user, "GET /variables")?;
    let rows: Vec<minijinja::Value> = state
        .store()
        .variable_records(state.fernet_key()?)
        .await?
        .into_iter()
        .map(
            |gust_store::Variable {
                 key,
                 value,
                 description,
                 ..
             }| {
                let shown = crate::api::variables::shown_value(&key, &value);
                minijinja::context! {
                    masked => shown != value,
                    key => key,
                    value => shown,
                    description => description.unwrap_or_default(),
                }
            },
        )
        .collect();
    page(
        &user,
        "variables.html",
        minijinja::context! {
            nav => "variables",
            rows => rows,
            can_write => may_change(&user, "/api/v2/variables"),
        },
    )
}

/// `GET /connections`: never a password or an extra, only whether one is set; add, edit (a
/// secret left blank keeps the stored one) and delete through the API.
pub async fn connections(user: PageUser, State(state): State<AppState>) -> PageResult {
    require_configuration_reader(&user, "GET /connections")?;
    let rows: Vec<minijinja::Value> = state
        .store()
        .ui_connections()
        .await?
        .into_iter()
        .map(|c| {
            minijinja::context! {
                conn_id => c.conn_id,
                conn_type => c.conn_type,
                host => c.host.unwrap_or_default(),
                port => c.port.map(|p| p.to_string()).unwrap_or_default(),
                login => c.login.unwrap_or_default(),
                schema => c.schema.unwrap_or_default(),
                has_password => c.has_password,
                has_extra => c.has_extra,
                description => c.description.unwrap_or_default(),
            }
        })
        .collect();
    page(
        &user,
        "connections.html",
        minijinja::context! {
            nav => "connections",
            rows => rows,
            mask => MASK,
            can_write => may_change(&user, "/api/v2/connections"),
        },
    )
}

/// `GET /pools`: the script reads the pools and their slots (running, queued, open) from the
/// API and reads them again every few seconds; add, edit and delete through the API.
pub async fn pools(user: PageUser) -> PageResult {
    page(
        &user,
        "pools.html",
        minijinja::context! { nav => "pools", can_write => may_change(&user, "/api/v2/pools") },
    )
}
