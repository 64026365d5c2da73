//! Airflow's bulk bodies (`PATCH /variables`, `/connections`, `/pools`): a list of actions,
//! each `create`, `update` or `delete` over a list of entities, answered with the keys each
//! action changed and its errors. As in Airflow, an action whose existence check fails
//! (`action_on_existence` / `action_on_non_existence` `fail`, the default) changes nothing and
//! reports one error; `skip` leaves out the entities that exist (create) or do not (update,
//! delete); `overwrite` (create) updates the existing ones with the fields each entity
//! carries. An entity that does not validate makes the whole request a 422, before anything
//! changes. Gust applies the entities one by one: an error part-way through an action (a
//! default pool asked to change its description) stops that action, keeping what it changed.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::api::fields::Fields;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// The most entities one bulk request may carry, over all its actions (bounds the work one
/// request makes).
pub const MAX_BULK_ENTITIES: usize = 1000;

/// What one action did (Airflow's `BulkActionResponse`).
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct BulkActionResponse {
    /// The keys changed.
    pub success: Vec<String>,
    /// `{"error": message, "status_code": code}` for each failure.
    pub errors: Vec<Value>,
}

/// What a bulk request did, by action (Airflow's `BulkResponse`; null for an action not asked).
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct BulkResponse {
    pub create: Option<BulkActionResponse>,
    pub update: Option<BulkActionResponse>,
    pub delete: Option<BulkActionResponse>,
}

/// What a create does with an entity that exists.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum BulkActionOnExistence {
    #[default]
    Fail,
    Skip,
    Overwrite,
}

/// What an update or delete does with an entity that does not exist.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum BulkActionNotOnExistence {
    #[default]
    Fail,
    Skip,
}

/// One action as sent (Airflow's `BulkCreateAction`, `BulkUpdateAction`, `BulkDeleteAction`).
#[derive(Debug, Deserialize)]
#[serde(tag = "action", rename_all = "lowercase")]
enum RawAction {
    Create {
        entities: Vec<Value>,
        #[serde(default)]
        action_on_existence: BulkActionOnExistence,
    },
    Update {
        entities: Vec<Value>,
        #[serde(default)]
        update_mask: Option<Vec<String>>,
        #[serde(default)]
        action_on_non_existence: BulkActionNotOnExistence,
    },
    Delete {
        entities: Vec<Value>,
        #[serde(default)]
        action_on_non_existence: BulkActionNotOnExistence,
    },
}

/// A bulk body (Airflow's `BulkBody`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkBody {
    /// The actions, done in order.
    #[schema(value_type = Vec<Object>)]
    actions: Vec<Value>,
}

/// An action with its entities read.
enum Action<T> {
    Create(Vec<Fields<T>>, BulkActionOnExistence),
    Update(
        Vec<Fields<T>>,
        Option<Vec<String>>,
        BulkActionNotOnExistence,
    ),
    Delete(Vec<String>, BulkActionNotOnExistence),
}

/// One kind of entity bulk actions change.
pub(crate) trait Resource {
    /// The entity's body.
    type Entity: serde::de::DeserializeOwned;
    /// The field naming an entity (`key`, `connection_id`, `name`).
    const KEY_FIELD: &'static str;
    /// How Airflow's messages name a set of them (`variables with these keys`).
    const NAMED: &'static str;

    /// An entity's key.
    fn key(entity: &Self::Entity) -> String;
    /// Checks an entity as its single-entity endpoint would (a 422 for the whole request).
    fn validate(entity: &Self::Entity) -> ApiResult<()>;
    /// Which of `keys` exist.
    async fn existing(
        &self,
        state: &AppState,
        keys: &BTreeSet<String>,
    ) -> ApiResult<BTreeSet<String>>;
    /// Creates an entity that does not exist.
    async fn create(&self, state: &AppState, entity: &Fields<Self::Entity>) -> ApiResult<()>;
    /// Updates an existing entity with the fields it carries (and `mask` names, if given).
    async fn update(
        &self,
        state: &AppState,
        entity: &Fields<Self::Entity>,
        mask: Option<&[String]>,
    ) -> ApiResult<()>;
    /// Deletes an existing entity.
    async fn delete(&self, state: &AppState, key: &str) -> ApiResult<()>;
}

/// Reads `body`'s actions, every entity checked; a 422 for the first that does not validate.
fn read_actions<R: Resource>(body: BulkBody) -> ApiResult<Vec<Action<R::Entity>>> {
    let mut total = 0;
    body.actions
        .into_iter()
        .enumerate()
        .map(|(i, raw)| {
            let loc = |rest: &[&str]| -> Vec<String> {
                ["body", "actions", &i.to_string()]
                    .iter()
                    .chain(rest)
                    .map(|s| (*s).to_owned())
                    .collect()
            };
            let raw: RawAction = serde_json::from_value(raw).map_err(|err| ApiError::Invalid {
                loc: loc(&[]),
                msg: err.to_string(),
            })?;
            let entities =
                |values: Vec<Value>, total: &mut usize| -> ApiResult<Vec<Fields<R::Entity>>> {
                    *total += values.len();
                    values
                        .into_iter()
                        .enumerate()
                        .map(|(j, value)| {
                            let fields = Fields::<R::Entity>::from_value(
                                value,
                                &loc(&["entities", &j.to_string()]),
                            )?;
                            R::validate(&fields.body)?;
                            Ok(fields)
                        })
                        .collect()
                };
            let action = match raw {
                RawAction::Create {
                    entities: values,
                    action_on_existence,
                } => Action::Create(entities(values, &mut total)?, action_on_existence),
                RawAction::Update {
                    entities: values,
                    update_mask,
                    action_on_non_existence,
                } => Action::Update(
                    entities(values, &mut total)?,
                    update_mask,
                    action_on_non_existence,
                ),
                RawAction::Delete {
                    entities: values,
                    action_on_non_existence,
                } => {
                    total += values.len();
                    let keys = values
                        .into_iter()
                        .enumerate()
                        .map(|(j, value)| match value {
                            Value::String(key) => Ok(key),
                            Value::Object(mut fields) => match fields.remove(R::KEY_FIELD) {
                                Some(Value::String(key)) => Ok(key),
                                _ => Err(ApiError::Invalid {
                                    loc: loc(&["entities", &j.to_string(), R::KEY_FIELD]),
                                    msg: "Field required".into(),
                                }),
                            },
                            _ => Err(ApiError::Invalid {
                                loc: loc(&["entities", &j.to_string()]),
                                msg: "Input should be a valid string".into(),
                            }),
                        })
                        .collect::<ApiResult<Vec<String>>>()?;
                    Action::Delete(keys, action_on_non_existence)
                }
            };
            if total > MAX_BULK_ENTITIES {
                return Err(ApiError::BadRequest(format!(
                    "a bulk request may carry at most {MAX_BULK_ENTITIES} entities; split it"
                )));
            }
            Ok(action)
        })
        .collect()
}

/// A set of keys as Python prints a set of strings (`{'a', 'b'}`), sorted.
fn python_set(keys: &BTreeSet<String>) -> String {
    let items: Vec<String> = keys
        .iter()
        .map(|k| format!("'{}'", k.replace('\\', "\\\\").replace('\'', "\\'")))
        .collect();
    format!("{{{}}}", items.join(", "))
}

/// An error of one entity, as Airflow lists it.
fn error_entry(err: &ApiError) -> Value {
    serde_json::json!({"error": err.to_string(), "status_code": err.status().as_u16()})
}

/// Does `body`'s actions on `resource`, in order.
pub(crate) async fn run<R: Resource>(
    state: &AppState,
    resource: &R,
    body: BulkBody,
) -> ApiResult<BulkResponse> {
    let actions = read_actions::<R>(body)?;
    let mut response = BulkResponse::default();
    for action in actions {
        match action {
            Action::Create(entities, on_existence) => {
                let results = response.create.get_or_insert_with(Default::default);
                let keys: BTreeSet<String> = entities.iter().map(|e| R::key(&e.body)).collect();
                let existing = resource.existing(state, &keys).await?;
                if on_existence == BulkActionOnExistence::Fail && !existing.is_empty() {
                    results.errors.push(serde_json::json!({
                        "error": format!("The {} {} already exist.", R::NAMED, python_set(&existing)),
                        "status_code": 409,
                    }));
                    continue;
                }
                for entity in &entities {
                    let key = R::key(&entity.body);
                    let done = if existing.contains(&key) {
                        match on_existence {
                            BulkActionOnExistence::Skip => continue,
                            BulkActionOnExistence::Fail | BulkActionOnExistence::Overwrite => {
                                resource.update(state, entity, None).await
                            }
                        }
                    } else {
                        resource.create(state, entity).await
                    };
                    match done {
                        Ok(()) => results.success.push(key),
                        Err(ApiError::Store(err)) => return Err(ApiError::Store(err)),
                        Err(err) => {
                            results.errors.push(error_entry(&err));
                            break;
                        }
                    }
                }
            }
            Action::Update(entities, mask, on_missing) => {
                let results = response.update.get_or_insert_with(Default::default);
                let keys: BTreeSet<String> = entities.iter().map(|e| R::key(&e.body)).collect();
                let existing = resource.existing(state, &keys).await?;
                let missing: BTreeSet<String> = keys.difference(&existing).cloned().collect();
                if on_missing == BulkActionNotOnExistence::Fail && !missing.is_empty() {
                    results.errors.push(serde_json::json!({
                        "error": format!("The {} {} were not found.", R::NAMED, python_set(&missing)),
                        "status_code": 404,
                    }));
                    continue;
                }
                for entity in &entities {
                    let key = R::key(&entity.body);
                    if !existing.contains(&key) {
                        continue;
                    }
                    match resource.update(state, entity, mask.as_deref()).await {
                        Ok(()) => results.success.push(key),
                        Err(ApiError::Store(err)) => return Err(ApiError::Store(err)),
                        Err(err) => {
                            results.errors.push(error_entry(&err));
                            break;
                        }
                    }
                }
            }
            Action::Delete(keys, on_missing) => {
                let results = response.delete.get_or_insert_with(Default::default);
                let wanted: BTreeSet<String> = keys.iter().cloned().collect();
                let existing = resource.existing(state, &wanted).await?;
                let missing: BTreeSet<String> = wanted.difference(&existing).cloned().collect();
                if on_missing == BulkActionNotOnExistence::Fail && !missing.is_empty() {
                    results.errors.push(serde_json::json!({
                        "error": format!("The {} {} were not found.", R::NAMED, python_set(&missing)),
                        "status_code": 404,
                    }));
                    continue;
                }
                for key in existing {
                    match resource.delete(state, &key).await {
                        Ok(()) => results.success.push(key),
                        Err(ApiError::Store(err)) => return Err(ApiError::Store(err)),
                        Err(err) => {
                            results.errors.push(error_entry(&err));
                            break;
                        }
                    }
                }
            }
        }
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::python_set;

    #[test]
    fn key_sets_are_written_as_python_writes_them() {
        let keys = ["b".to_owned(), "a'x".to_owned()].into_iter().collect();
        assert_eq!(python_set(&keys), r"{'a\'x', 'b'}");
    }
}
