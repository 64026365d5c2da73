//! A notifier's arguments rendered with the same context as the task's templates (gust-template),
//! plus what a callback's context adds: `exception` for a task's failure or retry, `reason` for
//! a run's end (Airflow's names), and `state`.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use gust_executor::callbacks::{CallbackKind, CallbackRequest};
use gust_template::{NoLookup, Renderer, RuntimeLookup, TemplateContext};

use crate::error::NotifyError;

/// The lookup a request carries, or an empty one.
pub(crate) fn lookup(request: &CallbackRequest) -> Arc<dyn RuntimeLookup> {
    request
        .lookup
        .0
        .clone()
        .unwrap_or_else(|| Arc::new(NoLookup))
}

/// The template context of `request`'s event.
#[must_use]
pub fn context(request: &CallbackRequest) -> TemplateContext {
    let run = &request.run;
    // A run without a data interval (a manual run of an unscheduled DAG) is dated by its
    // logical date or, failing that, when it could start.
    let (start, end) = run.data_interval.unwrap_or_else(|| {
        let at = request
            .logical_date
            .or(run.run_after)
            .or(run.start_date)
            .unwrap_or(DateTime::<Utc>::UNIX_EPOCH);
        (at, at)
    });
    let task = request.task.as_ref();
    let mut ctx = TemplateContext::new(
        request.dag_id.as_str(),
        task.map_or("", |t| t.task_id.as_str()),
        request.run_id.as_str(),
        start,
        end,
    );
    if let Some(logical) = request.logical_date {
        ctx.logical_date = logical;
    }
    ctx.try_number = task.map_or(0, |t| t.try_number);
    ctx.params = request.params.clone();
    ctx.conf = run.conf.clone();
    let of_dag = request.kind.of_dag();
    let state = if of_dag {
        request.run_state
    } else {
        task.map_or(request.run_state, |t| t.state)
    };
    ctx.extra.insert("state".to_owned(), state.into());
    ctx.extra
        .insert("event".to_owned(), request.kind.event().into());
    let why = request
        .reason
        .clone()
        .map_or(serde_json::Value::Null, Into::into);
    if request.kind == CallbackKind::DeadlineMissed {
        // As Airflow's deadline callbacks get it: the deadline that passed.
        ctx.extra.insert(
            "deadline".to_owned(),
            serde_json::json!({"deadline_time": why.clone()}),
        );
    }
    if of_dag {
        ctx.extra.insert("reason".to_owned(), why);
    } else {
        ctx.extra.insert("exception".to_owned(), why);
    }
    ctx
}

/// `args` with every string rendered; errors name the notifier and the argument.
pub(crate) fn render_args(
    renderer: &Renderer,
    notifier: &str,
    args: &serde_json::Map<String, serde_json::Value>,
    ctx: &TemplateContext,
    lookup: &Arc<dyn RuntimeLookup>,
) -> Result<serde_json::Map<String, serde_json::Value>, NotifyError> {
    let mut rendered = serde_json::Map::with_capacity(args.len());
    for (name, value) in args {
        let value = renderer
            .render_value(value, name, ctx, lookup.clone())
            .map_err(|err| {
                NotifyError::Render(format!(
                    "the {notifier} notifier's argument \"{name}\": {}",
                    err.error
                ))
            })?;
        rendered.insert(name.clone(), value);
    }
    Ok(rendered)
}

/// A rendered argument as text, if given.
pub(crate) fn text(
    args: &serde_json::Map<String, serde_json::Value>,
    notifier: &'static str,
    argument: &'static str,
) -> Result<Option<String>, NotifyError> {
    match args.get(argument) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(text)) => Ok(Some(text.clone())),
        Some(serde_json::Value::Number(n)) => Ok(Some(n.to_string())),
        Some(serde_json::Value::Bool(b)) => Ok(Some(b.to_string())),
        Some(_) => Err(NotifyError::BadArgument {
            notifier,
            argument,
            why: "must be a string".to_owned(),
        }),
    }
}

/// A list of addresses as Airflow reads one: a list, or one string split on `,` and `;`.
pub(crate) fn addresses(
    args: &serde_json::Map<String, serde_json::Value>,
    notifier: &'static str,
    argument: &'static str,
) -> Result<Vec<String>, NotifyError> {
    let split = |text: &str| -> Vec<String> {
        text.split([',', ';'])
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(str::to_owned)
            .collect()
    };
    match args.get(argument) {
        None | Some(serde_json::Value::Null) => Ok(Vec::new()),
        Some(serde_json::Value::String(text)) => Ok(split(text)),
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .map(|item| {
                item.as_str()
                    .map(split)
                    .ok_or_else(|| NotifyError::BadArgument {
                        notifier,
                        argument,
                        why: "must be a string or a list of strings".to_owned(),
                    })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(|lists| lists.concat()),
        Some(_) => Err(NotifyError::BadArgument {
            notifier,
            argument,
            why: "must be a string or a list of strings".to_owned(),
        }),
    }
}
