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
        key: &str,
        value: &serde_json::Value,
    ) -> Result<(), StoreError> {
        let text = check_xcom_size(task_id, key, value)?;
        let sql = self.sql(
            "INSERT INTO xcoms (dag_id, run_id, task_id, key, value) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (dag_id, run_id, task_id, key) DO UPDATE SET value = excluded.value",
        );
        with_pool!(self, pool => sqlx::query(&sql).bind(dag_id).bind(run_id).bind(task_id).bind(key).bind(&text).execute(pool).await.map(drop))
            .map_err(query("recording an XCom"))
    }

    /// A task's XCom.
    pub async fn xcom(
        &self,
        dag_id: &str,
        run_id: &str,
        task_id: &str,
        key: &str,
    ) -> Result<Option<serde_json::Value>, StoreError> {
        let sql = self.sql("SELECT value FROM xcoms WHERE dag_id = $1 AND run_id = $2 AND task_id = $3 AND key = $4");
        let text: Option<String> = with_pool!(self, pool => sqlx::query_scalar(&sql).bind(dag_id).bind(run_id).bind(task_id).bind(key).fetch_optional(pool).await)
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
