//! Notification deliveries (Gust's own table; Airflow records none): one row per notifier an
//! event sent, written as it is attempted and read back by the API. A row never holds a secret:
//! its target describes where the notification went by connection id or address, not by URL.

use chrono::{DateTime, Utc};
use sqlx::Row;

use crate::error::query;
use crate::time::{from_db, to_db};
use crate::{Store, StoreError, with_pool};

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    /// Being attempted (or its sender stopped before it ended).
    Pending,
    /// Delivered.
    Sent,
    /// Every attempt failed.
    Failed,
}

impl DeliveryStatus {
    /// Its name in the table and the API.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Sent => "sent",
            Self::Failed => "failed",
        }
    }

    fn parse(text: &str) -> Result<Self, StoreError> {
        Ok(match text {
            "pending" => Self::Pending,
            "sent" => Self::Sent,
            "failed" => Self::Failed,
            other => {
                return Err(StoreError::Corrupt {
                    what: "notification status",
                    detail: other.to_owned(),
                });
            }
        })
    }
}

/// A delivery to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDelivery {
    /// The DAG.
    pub dag_id: String,
    /// The run.
    pub run_id: String,
    /// The task, for a task's event.
    pub task_id: Option<String>,
    /// The mapped instance (-1: not mapped).
    pub map_index: i32,
    /// The try, for a task's event.
    pub try_number: Option<i32>,
    /// The event (`failure`, `retry`, `success`, `execute`, `skipped`).
    pub event: String,
    /// What sent it (`email`, `slack_webhook`, `slack`, `webhook`).
    pub notifier: String,
    /// Where it went, without secrets (`to a@b.c`, `connection slack_alerts`).
    pub target: String,
    /// When it was first attempted.
    pub at: DateTime<Utc>,
}

/// A recorded delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredDelivery {
    /// Its id (increasing).
    pub id: i64,
    /// What was recorded first.
    pub delivery: NewDelivery,
    /// Where it stands.
    pub status: DeliveryStatus,
    /// How many attempts were made.
    pub attempts: i32,
    /// The last attempt's error, if it failed.
    pub error: Option<String>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, dag_id, run_id, task_id, map_index, try_number, event, notifier, \
                       target, status, attempts, error, created_at, updated_at";

impl Store {
    /// Records a delivery about to be attempted; its id.
    pub async fn record_delivery(&self, new: &NewDelivery) -> Result<i64, StoreError> {
        let sql = self.sql(
            "INSERT INTO notifications (dag_id, run_id, task_id, map_index, try_number, event, \
             notifier, target, status, attempts, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'pending', 0, $9, $9) RETURNING id",
        );
        with_pool!(self, pool => sqlx::query_scalar(&sql)
            .bind(&new.dag_id)
            .bind(&new.run_id)
            .bind(&new.task_id)
            .bind(new.map_index)
            .bind(new.try_number)
            .bind(&new.event)
            .bind(&new.notifier)
            .bind(&new.target)
            .bind(to_db(new.at))
            .fetch_one(pool)
            .await)
        .map_err(query("recording a notification"))
    }

    /// Records how delivery `id` stands after `attempts` attempts.
    pub async fn update_delivery(
        &self,
        id: i64,
        status: DeliveryStatus,
        attempts: i32,
        error: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let sql = self.sql(
            "UPDATE notifications SET status = $1, attempts = $2, error = $3, updated_at = $4 \
             WHERE id = $5",
        );
        with_pool!(self, pool => sqlx::query(&sql)
            .bind(status.as_str())
            .bind(attempts)
            .bind(error)
            .bind(to_db(at))
            .bind(id)
            .execute(pool)
            .await
            .map(drop))
        .map_err(query("updating a notification"))
    }

    /// The deliveries of a DAG (of one run when `run_id` is given), newest first, at most
    /// `limit` after skipping `offset`, with how many there are in all.
    pub async fn deliveries(
        &self,
        dag_id: &str,
        run_id: Option<&str>,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<StoredDelivery>, i64), StoreError> {
        let run_clause = if run_id.is_some() {
            "AND run_id = $2"
        } else {
            "AND $2 IS NULL"
        };
        let sql = self.sql_owned(format!(
            "SELECT {COLUMNS} FROM notifications WHERE dag_id = $1 {run_clause} \
             ORDER BY id DESC LIMIT $3 OFFSET $4"
        ));
        let count_sql = self.sql_owned(format!(
            "SELECT COUNT(*) FROM notifications WHERE dag_id = $1 {run_clause}"
        ));
        let rows = with_pool!(self, pool => {
            let rows = sqlx::query(&sql)
                .bind(dag_id)
                .bind(run_id)
                .bind(limit)
                .bind(offset)
                .fetch_all(pool)
                .await
                .map_err(query("reading notifications"))?;
            rows.iter().map(|row| -> Result<Raw, sqlx::Error> {
                Ok(Raw {
                    id: row.try_get(0)?,
                    dag_id: row.try_get(1)?,
                    run_id: row.try_get(2)?,
                    task_id: row.try_get(3)?,
                    map_index: row.try_get(4)?,
                    try_number: row.try_get(5)?,
                    event: row.try_get(6)?,
                    notifier: row.try_get(7)?,
                    target: row.try_get(8)?,
                    status: row.try_get(9)?,
                    attempts: row.try_get(10)?,
                    error: row.try_get(11)?,
                    created_at: row.try_get(12)?,
                    updated_at: row.try_get(13)?,
                })
            }).collect::<Result<Vec<Raw>, _>>().map_err(query("reading notifications"))?
        });
        let total: i64 = with_pool!(self, pool => sqlx::query_scalar(&count_sql)
            .bind(dag_id)
            .bind(run_id)
            .fetch_one(pool)
            .await)
        .map_err(query("counting notifications"))?;
        let deliveries = rows
            .into_iter()
            .map(Raw::into_stored)
            .collect::<Result<_, _>>()?;
        Ok((deliveries, total))
    }
}

/// A row as read, before its times and status are checked.
struct Raw {
    id: i64,
    dag_id: String,
    run_id: String,
    task_id: Option<String>,
    map_index: i32,
    try_number: Option<i32>,
    event: String,
    notifier: String,
    target: String,
    status: String,
    attempts: i32,
    error: Option<String>,
    created_at: i64,
    updated_at: i64,
}

impl Raw {
    fn into_stored(self) -> Result<StoredDelivery, StoreError> {
        Ok(StoredDelivery {
            id: self.id,
            status: DeliveryStatus::parse(&self.status)?,
            attempts: self.attempts,
            error: self.error,
            updated_at: from_db(self.updated_at)?,
            delivery: NewDelivery {
                dag_id: self.dag_id,
                run_id: self.run_id,
                task_id: self.task_id,
                map_index: self.map_index,
                try_number: self.try_number,
                event: self.event,
                notifier: self.notifier,
                target: self.target,
                at: from_db(self.created_at)?,
            },
        })
    }
}
