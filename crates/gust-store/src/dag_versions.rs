//! Each DAG's versions (Airflow's `dag_version` with its `dag_code`): a new version, numbered
//! from 1, whenever a DAG is recorded with a fingerprint other than its latest version's, with
//! the text of its file as it was then. The API's `dagVersions` and `dagSources` read them.

use chrono::{DateTime, Utc};
use sqlx::Row;

use crate::error::query;
use crate::time::{from_db, to_db};
use crate::{Store, StoreError, with_pool};

/// The largest file text kept with a version (DAG files are smaller: the loader refuses
/// larger ones); a larger file's version is recorded without its text.
pub const MAX_SOURCE_BYTES: u64 = 8 * 1024 * 1024;

/// One version of a DAG.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DagVersion {
    /// Its id (a UUID).
    pub id: String,
    /// The DAG's id.
    pub dag_id: String,
    /// Its number: 1 for the first, one more for each change.
    pub version_number: i64,
    /// The fingerprint of the definition it records.
    pub fingerprint: String,
    /// The file it was read from.
    pub fileloc: String,
    /// When it was recorded.
    pub created_at: DateTime<Utc>,
}

const VERSION_COLUMNS: &str = "id, dag_id, version_number, fingerprint, fileloc, created_at";

type RawVersion = (String, String, i64, String, String, i64);

fn version_from_raw(raw: RawVersion) -> Result<DagVersion, StoreError> {
    let (id, dag_id, version_number, fingerprint, fileloc, created_at) = raw;
    Ok(DagVersion {
        id,
        dag_id,
        version_number,
        fingerprint,
        fileloc,
        created_at: from_db(created_at)?,
    })
}

macro_rules! read_versions {
    ($store:expr, $sql:expr, $what:expr, |$q:ident| $bind:expr) => {
        with_pool!($store, pool => {
            let $q = sqlx::query(&$sql);
            let rows = $bind.fetch_all(pool).await.map_err(query($what))?;
            rows.iter()
                .map(|r| Ok::<RawVersion, sqlx::Error>((
                    r.try_get(0)?, r.try_get(1)?, r.try_get::<i32, _>(2).map(i64::from)?,
                    r.try_get(3)?, r.try_get(4)?, r.try_get(5)?,
                )))
                .collect::<Result<Vec<RawVersion>, _>>()
                .map_err(query($what))?
        })
    };
}

/// The text of `path`, when it is readable UTF-8 of at most [`MAX_SOURCE_BYTES`].
async fn read_source(path: &str) -> Option<String> {
    let metadata = tokio::fs::metadata(path).await.ok()?;
    if metadata.len() > MAX_SOURCE_BYTES {
        return None;
    }
    tokio::fs::read_to_string(path).await.ok()
}

impl Store {
    /// Records a new version of `dag_id` when `fingerprint` is not its latest version's (the
    /// file's text read from `fileloc` now); answers the version in force.
    pub async fn record_dag_version(
        &self,
        dag_id: &str,
        fingerprint: &str,
        fileloc: &str,
        now: DateTime<Utc>,
    ) -> Result<i64, StoreError> {
        let latest_sql = self.sql(
            "SELECT version_number, fingerprint FROM dag_versions WHERE dag_id = $1 \
             ORDER BY version_number DESC LIMIT 1",
        );
        let latest: Option<(i32, String)> = with_pool!(self, pool => sqlx::query_as(&latest_sql)
            .bind(dag_id)
            .fetch_optional(pool)
            .await)
        .map_err(query("reading a DAG's latest version"))?;
        let next = match latest {
            Some((number, latest)) if latest == fingerprint => return Ok(i64::from(number)),
            Some((number, _)) => number + 1,
            None => 1,
        };
        let source = read_source(fileloc).await;
        // Two schedulers recording the same change race for the number; the loser's row is
        // dropped and the winner's stands.
        let sql = self.sql(
            "INSERT INTO dag_versions (id, dag_id, version_number, fingerprint, fileloc, source, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
        );
        with_pool!(self, pool => sqlx::query(&sql)
            .bind(uuid::Uuid::new_v4().to_string())
            .bind(dag_id)
            .bind(next)
            .bind(fingerprint)
            .bind(fileloc)
            .bind(source)
            .bind(to_db(now))
            .execute(pool)
            .await
            .map(drop))
        .map_err(query("recording a DAG version"))?;
        Ok(i64::from(next))
    }

    /// One version of a DAG (`None` for its latest).
    pub async fn dag_version(
        &self,
        dag_id: &str,
        version_number: Option<i64>,
    ) -> Result<Option<DagVersion>, StoreError> {
        let raw = match version_number {
            Some(number) => {
                let sql = self.sql_owned(format!(
                    "SELECT {VERSION_COLUMNS} FROM dag_versions WHERE dag_id = $1 AND version_number = $2"
                ));
                let number = i32::try_from(number).unwrap_or(i32::MAX);
                read_versions!(self, sql, "reading a DAG version", |q| q
                    .bind(dag_id)
                    .bind(number))
            }
            None => {
                let sql = self.sql_owned(format!(
                    "SELECT {VERSION_COLUMNS} FROM dag_versions WHERE dag_id = $1 \
                     ORDER BY version_number DESC LIMIT 1"
                ));
                read_versions!(self, sql, "reading a DAG version", |q| q.bind(dag_id))
            }
        };
        raw.into_iter().next().map(version_from_raw).transpose()
    }

    /// The versions of `dag_id` (every DAG's when `None`), oldest first.
    pub async fn dag_versions(&self, dag_id: Option<&str>) -> Result<Vec<DagVersion>, StoreError> {
        let raw = match dag_id {
            Some(dag_id) => {
                let sql = self.sql_owned(format!(
                    "SELECT {VERSION_COLUMNS} FROM dag_versions WHERE dag_id = $1 ORDER BY dag_id, version_number"
                ));
                read_versions!(self, sql, "listing DAG versions", |q| q.bind(dag_id))
            }
            None => {
                let sql = format!(
                    "SELECT {VERSION_COLUMNS} FROM dag_versions ORDER BY dag_id, version_number"
                );
                read_versions!(self, sql, "listing DAG versions", |q| q)
            }
        };
        raw.into_iter().map(version_from_raw).collect()
    }

    /// The file text kept with a version (`None` when there is no such version; `Some(None)`
    /// when its file could not be read when it was recorded).
    pub async fn dag_version_source(
        &self,
        dag_id: &str,
        version_number: i64,
    ) -> Result<Option<Option<String>>, StoreError> {
        let sql =
            self.sql("SELECT source FROM dag_versions WHERE dag_id = $1 AND version_number = $2");
        let number = i32::try_from(version_number).unwrap_or(i32::MAX);
        with_pool!(self, pool => sqlx::query_scalar::<_, Option<String>>(&sql)
            .bind(dag_id)
            .bind(number)
            .fetch_optional(pool)
            .await)
        .map_err(query("reading a DAG version's source"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn a_version_is_added_when_the_fingerprint_changes(store: Store) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("etl.yaml");
        let file_name = file.display().to_string();
        std::fs::write(&file, "etl: v1").unwrap();
        let t = |s| DateTime::from_timestamp(s, 0).unwrap();
        assert_eq!(store.dag_version("etl", None).await.unwrap(), None);
        assert_eq!(
            store
                .record_dag_version("etl", "f1", &file_name, t(1))
                .await
                .unwrap(),
            1
        );
        std::fs::write(&file, "etl: v1 # a comment").unwrap();
        assert_eq!(
            store
                .record_dag_version("etl", "f1", &file_name, t(2))
                .await
                .unwrap(),
            1,
            "the same definition is the same version"
        );
        std::fs::write(&file, "etl: v2").unwrap();
        assert_eq!(
            store
                .record_dag_version("etl", "f2", &file_name, t(3))
                .await
                .unwrap(),
            2
        );
        store
            .record_dag_version("other", "g", "/no/such/file.yaml", t(4))
            .await
            .unwrap();

        let latest = store.dag_version("etl", None).await.unwrap().unwrap();
        assert_eq!(latest.version_number, 2);
        assert_eq!(latest.fingerprint, "f2");
        assert_eq!(latest.created_at, t(3));
        assert_eq!(
            store
                .dag_version("etl", Some(1))
                .await
                .unwrap()
                .unwrap()
                .created_at,
            t(1)
        );
        assert_eq!(
            store.dag_version_source("etl", 1).await.unwrap(),
            Some(Some("etl: v1".to_owned()))
        );
        assert_eq!(
            store.dag_version_source("etl", 2).await.unwrap(),
            Some(Some("etl: v2".to_owned()))
        );
        assert_eq!(
            store.dag_version_source("other", 1).await.unwrap(),
            Some(None)
        );
        assert_eq!(store.dag_version_source("etl", 9).await.unwrap(), None);
        let numbers: Vec<(String, i64)> = store
            .dag_versions(None)
            .await
            .unwrap()
            .into_iter()
            .map(|v| (v.dag_id, v.version_number))
            .collect();
        assert_eq!(
            numbers,
            vec![("etl".into(), 1), ("etl".into(), 2), ("other".into(), 1)]
        );
        assert_eq!(store.dag_versions(Some("etl")).await.unwrap().len(), 2);
    }

    crate::both_engines!(a_version_is_added_when_the_fingerprint_changes);
}
