//! The event log's writer: every change made through the REST API (the UI's included, which
//! calls it) and every sign-in is recorded as Airflow's `action_logging` records it, before the
//! handler runs and whatever it answers: the event is the endpoint's name (`trigger_dag_run`,
//! `patch_dag`, `post_variable`...), the owner the caller, `extra` the query, path and body
//! parameters with their secrets masked (a variable's value and a connection's `extra` values
//! always). `/api/v2/eventLogs` reads them back.
//!
//! Only the endpoints Airflow logs are logged ([`LOGGED`]); a clear's dry run is not.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{MatchedPath, RawPathParams, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use gust_store::NewEvent;
use serde_json::{Map, Value};

use crate::api::redact::{MASK, python_json, redact};
use crate::auth::Caller;
use crate::state::AppState;

/// The endpoints whose calls Airflow records (those with `action_logging` in Airflow 3.3),
/// by their operation id, which is the event's name.
pub const LOGGED: &[&str] = &[
    "create_asset_event",
    "materialize_asset",
    "delete_asset_queued_events",
    "delete_dag_asset_queued_events",
    "delete_dag_asset_queued_event",
    "pause_backfill",
    "unpause_backfill",
    "cancel_backfill",
    "create_backfill",
    "delete_connection",
    "post_connection",
    "bulk_connections",
    "patch_connection",
    "enqueue_connection_test",
    "create_default_connections",
    "reparse_dag_file",
    "delete_dag_run",
    "patch_dag_run",
    "bulk_dag_runs",
    "clear_dag_run",
    "clear_dag_runs",
    "trigger_dag_run",
    "patch_dag",
    "patch_dags",
    "favorite_dag",
    "unfavorite_dag",
    "delete_dag",
    "update_hitl_detail",
    "delete_pool",
    "patch_pool",
    "post_pool",
    "bulk_pools",
    "get_task_instances_batch",
    "post_clear_task_instances",
    "patch_task_group_instances",
    "patch_task_instance",
    "delete_variable",
    "patch_variable",
    "post_variable",
    "bulk_variables",
    "create_xcom_entry",
    "update_xcom_entry",
    "delete_xcom_entry",
];

/// Operations whose event is another's: the routes of one Airflow function (by operation id).
const ALIASES: &[(&str, &str)] = &[("patch_task_instance_by_map_index", "patch_task_instance")];

/// The event recorded for a successful sign-in (the API's `/auth/token` and the UI's form).
pub const LOGIN: &str = "login";

/// Calls whose dry run is not recorded (Airflow's `skip_dry_run_events`).
const SKIP_DRY_RUN: &[&str] = &["clear_dag_run", "post_clear_task_instances"];

/// Parameters that name the object (recorded in their own columns) or are not worth keeping.
const NOT_IN_EXTRA: &[&str] = &[
    "csrf_token",
    "_csrf_token",
    "is_paused",
    "dag_id",
    "task_id",
    "dag_run_id",
    "run_id",
    "logical_date",
];

/// Which operation each route is: `(method, route template)` to operation id, for the logged
/// operations only.
#[derive(Debug, Clone, Default)]
pub struct Operations(Arc<HashMap<(Method, String), &'static str>>);

impl Operations {
    /// The logged operations of `openapi`'s paths.
    #[must_use]
    pub fn of(openapi: &utoipa::openapi::OpenApi) -> Self {
        let mut map = HashMap::new();
        for (path, item) in &openapi.paths.paths {
            for (method, operation) in [
                (Method::POST, &item.post),
                (Method::PATCH, &item.patch),
                (Method::PUT, &item.put),
                (Method::DELETE, &item.delete),
            ] {
                let id = operation.as_ref().and_then(|o| o.operation_id.as_deref());
                // Airflow names the event after the function, which serves both routes.
                let id = id.map(|id| {
                    ALIASES
                        .iter()
                        .find(|(route, _)| *route == id)
                        .map_or(id, |(_, function)| *function)
                });
                if let Some(name) = id.and_then(|id| LOGGED.iter().find(|n| **n == id)) {
                    map.insert((method, path.clone()), *name);
                }
            }
        }
        Self(Arc::new(map))
    }

    fn event(&self, method: &Method, route: &str) -> Option<&'static str> {
        self.0.get(&(method.clone(), route.to_owned())).copied()
    }
}

/// Middleware (inside authentication): records the call when its endpoint is logged.
pub async fn record(
    State((state, operations)): State<(AppState, Operations)>,
    request: Request,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned());
    let Some(event) = route.and_then(|route| operations.event(request.method(), &route)) else {
        return next.run(request).await;
    };
    let (mut parts, body) = request.into_parts();
    let bytes = match axum::body::to_bytes(body, crate::MAX_BODY_BYTES).await {
        Ok(bytes) => bytes,
        Err(_) => {
            // What the body limit answers for every other endpoint.
            return (
                axum::http::StatusCode::PAYLOAD_TOO_LARGE,
                axum::Json(serde_json::json!({
                    "detail": format!("the request body is over {} bytes", crate::MAX_BODY_BYTES)
                })),
            )
                .into_response();
        }
    };
    let path_params: Vec<(String, String)> = {
        use axum::extract::FromRequestParts;
        match RawPathParams::from_request_parts(&mut parts, &()).await {
            Ok(params) => params
                .iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            Err(_) => Vec::new(),
        }
    };
    let query: Vec<(String, String)> = parts
        .uri
        .query()
        .and_then(|q| serde_urlencoded::from_str(q).ok())
        .unwrap_or_default();
    let json_body = parts
        .headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"))
        && !bytes.is_empty();
    let body: Option<Map<String, Value>> = if json_body {
        match serde_json::from_slice(&bytes) {
            Ok(Value::Object(map)) => Some(map),
            _ => None,
        }
    } else {
        None
    };
    let caller = parts.extensions.get::<Caller>().cloned();
    let call = Call {
        event,
        method: &parts.method,
        query: &query,
        path: &path_params,
        body: body.as_ref(),
        owner: caller.as_ref().map(|c| c.username.as_str()),
    };
    if let Some(new_event) = call.event(state.now()) {
        // The call goes on when the log cannot be written: its failure is the server's to see.
        if let Err(err) = state.store().record_event(&new_event).await {
            tracing::error!(error = %err, event, "the event log could not be written");
        }
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// One call to record, as read from the request.
struct Call<'a> {
    event: &'static str,
    method: &'a Method,
    query: &'a [(String, String)],
    path: &'a [(String, String)],
    body: Option<&'a Map<String, Value>>,
    owner: Option<&'a str>,
}

impl Call<'_> {
    /// The event to record (`None` for a dry run that is not recorded).
    fn event(&self, now: chrono::DateTime<chrono::Utc>) -> Option<NewEvent> {
        if let Some(body) = self.body
            && SKIP_DRY_RUN.contains(&self.event)
            && body.get("dry_run").is_none_or(|v| v != &Value::Bool(false))
        {
            return None;
        }
        let masked_body: Option<Map<String, Value>> = self.body.map(|body| {
            body.iter()
                .map(|(k, v)| (k.clone(), redact(v, Some(k))))
                .collect()
        });
        let mut extra: Map<String, Value> = self
            .query
            .iter()
            .chain(self.path)
            .filter(|(k, _)| !NOT_IN_EXTRA.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), redact(&Value::String(v.clone()), Some(k))))
            .collect();
        if self.event.contains("variable") {
            extra = mask_entities(self.body.cloned().unwrap_or(extra), &mask_variable);
        } else if self.event.contains("connection") {
            extra = mask_entities(self.body.cloned().unwrap_or(extra), &mask_connection);
        } else if let Some(body) = &masked_body {
            extra.extend(body.clone());
        }
        // Every parameter by name, the body's (masked) last, as Airflow merges them.
        let mut params: Map<String, Value> = self
            .query
            .iter()
            .chain(self.path)
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        if let Some(body) = masked_body {
            params.extend(body);
        }
        if let Some(paused) = params.get("is_paused") {
            extra.insert("is_paused".to_owned(), paused.clone());
        }
        extra.insert(
            "method".to_owned(),
            Value::String(self.method.as_str().to_owned()),
        );
        let text = |name: &str| params.get(name).and_then(Value::as_str).map(str::to_owned);
        let logical_date = self
            .query
            .iter()
            .find(|(k, _)| k == "logical_date")
            .and_then(|(_, v)| crate::api::time::parse_time(v));
        Some(NewEvent {
            when: now,
            event: self.event.to_owned(),
            dag_id: text("dag_id"),
            task_id: text("task_id"),
            run_id: text("run_id").or_else(|| text("dag_run_id")),
            map_index: None,
            try_number: None,
            logical_date,
            owner: Some(self.owner.unwrap_or("anonymous").to_owned()),
            owner_display_name: Some(self.owner.unwrap_or_default().to_owned()),
            extra: Some(python_json(&Value::Object(extra))),
        })
    }
}

/// `fields` with `mask` applied to one entity, or to each entity of a bulk body's actions.
fn mask_entities(
    fields: Map<String, Value>,
    mask: &dyn Fn(Map<String, Value>) -> Map<String, Value>,
) -> Map<String, Value> {
    let Some(Value::Array(actions)) = fields.get("actions") else {
        return mask(fields);
    };
    let actions: Vec<Value> = actions
        .iter()
        .map(|action| match action {
            Value::Object(action) => match action.get("entities") {
                Some(Value::Array(entities)) => {
                    let mut action = action.clone();
                    let entities = entities
                        .iter()
                        .map(|e| match e {
                            Value::Object(entity) => Value::Object(mask(entity.clone())),
                            other => other.clone(),
                        })
                        .collect();
                    action.insert("entities".to_owned(), Value::Array(entities));
                    Value::Object(action)
                }
                _ => Value::Object(action.clone()),
            },
            other => other.clone(),
        })
        .collect();
    let mut fields = fields;
    fields.insert("actions".to_owned(), Value::Array(actions));
    fields
}

/// A variable's fields with its value hidden whatever its key: the log says a variable
/// changed, never what it holds.
fn mask_variable(fields: Map<String, Value>) -> Map<String, Value> {
    fields
        .into_iter()
        .map(|(k, v)| {
            let v = if k == "val" || k == "value" {
                Value::String(MASK.to_owned())
            } else {
                v
            };
            (k, v)
        })
        .collect()
}

/// A connection's fields with secrets hidden, and of its `extra` only the names.
fn mask_connection(fields: Map<String, Value>) -> Map<String, Value> {
    fields
        .into_iter()
        .map(|(k, v)| {
            let v = if k == "extra" && !is_empty(&v) {
                match v.as_str().map(serde_json::from_str::<Value>) {
                    Some(Ok(Value::Object(extra))) => Value::Object(
                        extra
                            .keys()
                            .map(|name| (name.clone(), Value::String(MASK.to_owned())))
                            .collect(),
                    ),
                    Some(Ok(_)) => Value::String(
                        "Expected JSON object in `extra` field, got non-dict JSON".to_owned(),
                    ),
                    _ => Value::String("Encountered non-JSON in `extra` field".to_owned()),
                }
            } else {
                redact(&v, Some(&k))
            };
            (k, v)
        })
        .collect()
}

/// Python's falsiness for the values a body holds.
fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        Value::Number(n) => n.as_f64() == Some(0.0),
    }
}

/// Records a successful sign-in by `username` (a failure to record is logged, never the
/// sign-in's failure).
pub async fn record_login(state: &AppState, username: &str) {
    let event = NewEvent {
        when: state.now(),
        event: LOGIN.to_owned(),
        owner: Some(username.to_owned()),
        owner_display_name: Some(username.to_owned()),
        extra: Some(python_json(&serde_json::json!({"method": "POST"}))),
        ..NewEvent::default()
    };
    if let Err(err) = state.store().record_event(&event).await {
        tracing::error!(error = %err, "the event log could not be written");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn call<'a>(
        event: &'static str,
        path: &'a [(String, String)],
        body: Option<&'a Map<String, Value>>,
    ) -> Call<'a> {
        Call {
            event,
            method: &Method::PATCH,
            query: &[],
            path,
            body,
            owner: Some("alice"),
        }
    }

    fn now() -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::from_timestamp(0, 0).unwrap()
    }

    #[test]
    fn a_pause_names_the_dag_and_keeps_the_flag_in_extra() {
        let path = [("dag_id".to_owned(), "etl".to_owned())];
        let body = json!({"is_paused": true});
        let event = call("patch_dag", &path, body.as_object())
            .event(now())
            .unwrap();
        assert_eq!(event.dag_id.as_deref(), Some("etl"));
        assert_eq!(event.owner.as_deref(), Some("alice"));
        assert_eq!(
            event.extra.as_deref(),
            Some(r#"{"is_paused": true, "method": "PATCH"}"#)
        );
    }

    #[test]
    fn variable_values_and_connection_extras_are_never_recorded() {
        let body = json!({"key": "region", "value": "eu-west-1"});
        let event = call("post_variable", &[], body.as_object())
            .event(now())
            .unwrap();
        assert_eq!(
            event.extra.as_deref(),
            Some(r#"{"key": "region", "value": "***", "method": "PATCH"}"#)
        );
        let body = json!({"actions": [{"action": "create", "entities": [
            {"connection_id": "db", "password": "hunter2", "extra": "{\"token\": \"t\"}"}]}]});
        let event = call("bulk_connections", &[], body.as_object())
            .event(now())
            .unwrap();
        let extra = event.extra.unwrap();
        assert!(!extra.contains("hunter2"), "{extra}");
        assert!(extra.contains(r#""extra": {"token": "***"}"#), "{extra}");
    }

    #[test]
    fn a_clear_s_dry_run_is_not_recorded() {
        let path = [("dag_id".to_owned(), "etl".to_owned())];
        let dry = json!({"dry_run": true});
        assert!(
            call("post_clear_task_instances", &path, dry.as_object())
                .event(now())
                .is_none()
        );
        let default = json!({});
        assert!(
            call("clear_dag_run", &path, default.as_object())
                .event(now())
                .is_none()
        );
        let real = json!({"dry_run": false});
        assert!(
            call("clear_dag_run", &path, real.as_object())
                .event(now())
                .is_some()
        );
    }
}
