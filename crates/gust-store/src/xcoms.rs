//! XComs: values tasks return, keyed by run, task and key.

use crate::error::query;
use crate::{Store, StoreError, with_pool};

/// The largest XCom value kept (bytes of JSON): XComs pass references between tasks, not data.
pub const MAX_XCOM_BYTES: usize = 1024 * 1024;

/// `value` as stored, or an error when it is over [`MAX_XCOM_BYTES`].
pub(crate) fn check_xcom_size(
    task_id: &str,
    key: &str,
    value: &serde_json::Value,
) -> Result<String, StoreError> {
    let text = value.to_string();
    if text.len() > MAX_XCOM_BYTES {
        return Err(StoreError::Corrupt {
            what: "XCom",
            detail: format!(
                "{task_id}'s XCom \"{key}\" is {} bytes; the limit is {MAX_XCOM_BYTES}",
                text.len()
            ),
        });
    }
    Ok(text)
}

impl Store {
    /// Records a task's XCom, replacing an earlier value of the same key.
    pub async fn put_xcom(
        &self,
        dag_id: &str,
        run_id: &str,
        task_id: &str,
        map_index: i32,
        key: &str,
        value: &serde_json::Value,
    ) -> Result<(), StoreError> {
        let text = check_xcom_size(task_id, key, value)?;
        let sql = self.sql(
            "INSERT INTO xcoms (dag_id, run_id, task_id, map_index, key, value) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (dag_id, run_id, task_id, map_index, key) DO UPDATE SET value = excluded.value",
        );
        with_pool!(self, pool => sqlx::query(&sql).bind(dag_id).bind(run_id).bind(task_id).bind(map_index).bind(key).bind(&text).execute(pool).await.map(drop))
            .map_err(query("recording an XCom"))
    }

    /// Records a task's XCom unless one with that key exists (the API's create, which must not
    /// replace a value); `false` when it exists.
    pub async fn create_xcom(
        &self,
        dag_id: &str,
        run_id: &str,
        task_id: &str,
        map_index: i32,
        key: &str,
        value: &serde_json::Value,
    ) -> Result<bool, StoreError> {
        let text = check_xcom_size(task_id, key, value)?;
        let sql = self.sql(
            "INSERT INTO xcoms (dag_id, run_id, task_id, map_index, key, value) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (dag_id, run_id, task_id, map_index, key) DO NOTHING",
        );
        let created = with_pool!(self, pool => sqlx::query(&sql).bind(dag_id).bind(run_id).bind(task_id).bind(map_index).bind(key).bind(&text).execute(pool).await.map(|r| r.rows_affected()))
            .map_err(query("creating an XCom"))?;
        Ok(created == 1)
    }

    /// A task instance's XCom.
    pub async fn xcom(
        &self,
        dag_id: &str,
        run_id: &str,
        task_id: &str,
        map_index: i32,
        key: &str,
    ) -> Result<Option<serde_json::Value>, StoreError> {
        let sql = self.sql("SELECT value FROM xcoms WHERE dag_id = $1 AND run_id = $2 AND task_id = $3 AND map_index = $4 AND key = $5");
        let text: Option<String> = with_pool!(self, pool => sqlx::query_scalar(&sql).bind(dag_id).bind(run_id).bind(task_id).bind(map_index).bind(key).fetch_optional(pool).await)
            .map_err(query("reading an XCom"))?;
        text.map(|t| {
            serde_json::from_str(&t).map_err(|e| StoreError::Corrupt {
                what: "XCom",
                detail: e.to_string(),
            })
        })
        .transpose()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::{Store, UNMAPPED};

    async fn a_created_xcom_is_never_replaced(store: Store) {
        let first = json!({"rows": 3});
        assert!(
            store
                .create_xcom("d", "r", "t", UNMAPPED, "counts", &first)
                .await
                .unwrap()
        );
        assert!(
            !store
                .create_xcom("d", "r", "t", UNMAPPED, "counts", &json!(0))
                .await
                .unwrap(),
            "the key exists"
        );
        assert_eq!(
            store.xcom("d", "r", "t", UNMAPPED, "counts").await.unwrap(),
            Some(first)
        );
        let too_big = json!("x".repeat(super::MAX_XCOM_BYTES));
        assert!(
            store
                .create_xcom("d", "r", "t", UNMAPPED, "big", &too_big)
                .await
                .is_err()
        );
    }

    crate::both_engines!(a_created_xcom_is_never_replaced);
}
