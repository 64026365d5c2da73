//! The event log (Airflow's `log` table): who did what and when, recorded by the API server for
//! every change it is asked to make and every sign-in, read back by `/api/v2/eventLogs`.

use chrono::{DateTime, Utc};
use sqlx::Row;

use crate::error::query;
use crate::runs::{Bound, order_keys};
use crate::time::{from_db, opt_from_db, to_db};
use crate::{Store, StoreError, TimeRange, with_pool};

/// An event to record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewEvent {
    /// When it happened.
    pub when: DateTime<Utc>,
    /// What happened (Airflow's endpoint names: `trigger_dag_run`, `patch_dag`, `login`...).
    pub event: String,
    /// The DAG it concerns.
    pub dag_id: Option<String>,
    /// The task it concerns.
    pub task_id: Option<String>,
    /// The run it concerns.
    pub run_id: Option<String>,
    /// The mapped instance it concerns.
    pub map_index: Option<i32>,
    /// The try it concerns.
    pub try_number: Option<i32>,
    /// The logical date it concerns.
    pub logical_date: Option<DateTime<Utc>>,
    /// Who did it (the user name).
    pub owner: Option<String>,
    /// Who did it, as shown.
    pub owner_display_name: Option<String>,
    /// What else the call said (JSON text, its secrets masked).
    pub extra: Option<String>,
}

/// A recorded event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    /// Its id (increasing).
    pub id: i64,
    /// The event itself.
    pub event: NewEvent,
}

/// Which events a listing wants; empty fields filter nothing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventFilter {
    /// Exactly this DAG's.
    pub dag_id: Option<String>,
    /// Exactly this task's.
    pub task_id: Option<String>,
    /// Exactly this run's.
    pub run_id: Option<String>,
    /// Exactly this map index.
    pub map_index: Option<i32>,
    /// Exactly this try.
    pub try_number: Option<i32>,
    /// Exactly this owner's.
    pub owner: Option<String>,
    /// Exactly this event.
    pub event: Option<String>,
    /// Only these events (empty: any).
    pub included_events: Vec<String>,
    /// None of these events.
    pub excluded_events: Vec<String>,
    /// When it happened.
    pub when: TimeRange,
    /// Case-insensitive SQL `LIKE` terms (any of them, each matched as `%term%`) by column:
    /// `dag_id`, `task_id`, `run_id`, `owner`, `event`.
    pub patterns: Vec<(EventColumn, Vec<String>)>,
    /// Case-sensitive prefixes (any of them) by column.
    pub prefixes: Vec<(EventColumn, Vec<String>)>,
}

/// A column events can be sorted or searched by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventColumn {
    /// The id (the order they were recorded in).
    Id,
    /// When.
    When,
    /// The DAG.
    DagId,
    /// The task.
    TaskId,
    /// The run.
    RunId,
    /// The map index.
    MapIndex,
    /// The try.
    TryNumber,
    /// The event.
    Event,
    /// The logical date.
    LogicalDate,
    /// The owner.
    Owner,
    /// The extra text.
    Extra,
}

impl EventColumn {
    fn column(self) -> &'static str {
        match self {
            Self::Id => "id",
            Self::When => "dttm",
            Self::DagId => "dag_id",
            Self::TaskId => "task_id",
            Self::RunId => "run_id",
            Self::MapIndex => "map_index",
            Self::TryNumber => "try_number",
            Self::Event => "event",
            Self::LogicalDate => "logical_date",
            Self::Owner => "owner",
            Self::Extra => "extra",
        }
    }
}

const EVENT_COLUMNS: &str = "id, dttm, event, dag_id, task_id, run_id, map_index, try_number, \
                             logical_date, owner, owner_display_name, extra";

/// `filter` as a `WHERE` clause over `event_logs`, with its values in placeholder order.
fn event_filter_sql(filter: &EventFilter) -> (String, Vec<Bound>) {
    let mut clauses: Vec<String> = Vec::new();
    let mut binds: Vec<Bound> = Vec::new();
    let bind = |value: Bound, binds: &mut Vec<Bound>| {
        binds.push(value);
        format!("${}", binds.len())
    };
    for (column, value) in [
        ("dag_id", &filter.dag_id),
        ("task_id", &filter.task_id),
        ("run_id", &filter.run_id),
        ("owner", &filter.owner),
        ("event", &filter.event),
    ] {
        if let Some(value) = value {
            let mark = bind(Bound::Text(value.clone()), &mut binds);
            clauses.push(format!("{column} = {mark}"));
        }
    }
    for (column, value) in [
        ("map_index", filter.map_index),
        ("try_number", filter.try_number),
    ] {
        if let Some(value) = value {
            let mark = bind(Bound::Int(i64::from(value)), &mut binds);
            clauses.push(format!("{column} = {mark}"));
        }
    }
    for (values, negate) in [
        (&filter.included_events, ""),
        (&filter.excluded_events, "NOT "),
    ] {
        if !values.is_empty() {
            let marks: Vec<String> = values
                .iter()
                .map(|v| bind(Bound::Text(v.clone()), &mut binds))
                .collect();
            clauses.push(format!("event {negate}IN ({})", marks.join(", ")));
        }
    }
    for (op, bound) in [
        (">=", filter.when.gte),
        (">", filter.when.gt),
        ("<=", filter.when.lte),
        ("<", filter.when.lt),
    ] {
        if let Some(t) = bound {
            let mark = bind(Bound::Int(to_db(t)), &mut binds);
            clauses.push(format!("dttm {op} {mark}"));
        }
    }
    for (column, terms) in &filter.patterns {
        let alternatives: Vec<String> = terms
            .iter()
            .map(|term| {
                let mark = bind(
                    Bound::Text(format!("%{}%", term.to_lowercase())),
                    &mut binds,
                );
                format!("LOWER({}) LIKE {mark}", column.column())
            })
            .collect();
        if !alternatives.is_empty() {
            clauses.push(format!("({})", alternatives.join(" OR ")));
        }
    }
    for (column, prefixes) in &filter.prefixes {
        let alternatives: Vec<String> = prefixes
            .iter()
            .map(|prefix| {
                let mark = bind(Bound::Text(prefix.clone()), &mut binds);
                format!(
                    "SUBSTR({0}, 1, LENGTH(CAST({mark} AS TEXT))) = {mark}",
                    column.column()
                )
            })
            .collect();
        if !alternatives.is_empty() {
            clauses.push(format!("({})", alternatives.join(" OR ")));
        }
    }
    let clause = if clauses.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", clauses.join(" AND "))
    };
    (clause, binds)
}

/// A row as read: id and when, then the text and number columns.
type RawEvent = (
    (i64, i64, String),
    (Option<String>, Option<String>, Option<String>),
    (Option<i32>, Option<i32>, Option<i64>),
    (Option<String>, Option<String>, Option<String>),
);

fn event_from_raw(raw: RawEvent) -> Result<StoredEvent, StoreError> {
    let (
        (id, dttm, event),
        (dag_id, task_id, run_id),
        (map_index, try_number, logical_date),
        (owner, owner_display_name, extra),
    ) = raw;
    Ok(StoredEvent {
        id,
        event: NewEvent {
            when: from_db(dttm)?,
            event,
            dag_id,
            task_id,
            run_id,
            map_index,
            try_number,
            logical_date: opt_from_db(logical_date)?,
            owner,
            owner_display_name,
            extra,
        },
    })
}

macro_rules! read_events {
    ($store:expr, $sql:expr, $what:expr, |$q:ident| $bind:expr) => {
        with_pool!($store, pool => {
            let $q = sqlx::query(&$sql);
            let rows = $bind.fetch_all(pool).await.map_err(query($what))?;
            rows.iter()
                .map(|r| Ok::<RawEvent, sqlx::Error>((
                    (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?),
                    (r.try_get(3)?, r.try_get(4)?, r.try_get(5)?),
                    (r.try_get(6)?, r.try_get(7)?, r.try_get(8)?),
                    (r.try_get(9)?, r.try_get(10)?, r.try_get(11)?),
                )))
                .collect::<Result<Vec<RawEvent>, _>>()
                .map_err(query($what))?
        })
    };
}

impl Store {
    /// Records `event`; answers its id.
    pub async fn record_event(&self, event: &NewEvent) -> Result<i64, StoreError> {
        let sql = self.sql(
            "INSERT INTO event_logs (dttm, event, dag_id, task_id, run_id, map_index, try_number, \
             logical_date, owner, owner_display_name, extra) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id",
        );
        with_pool!(self, pool => sqlx::query_scalar(&sql)
            .bind(to_db(event.when))
            .bind(&event.event)
            .bind(&event.dag_id)
            .bind(&event.task_id)
            .bind(&event.run_id)
            .bind(event.map_index)
            .bind(event.try_number)
            .bind(event.logical_date.map(to_db))
            .bind(&event.owner)
            .bind(&event.owner_display_name)
            .bind(&event.extra)
            .fetch_one(pool)
            .await)
        .map_err(query("recording an event"))
    }

    /// One event by id.
    pub async fn event(&self, id: i64) -> Result<Option<StoredEvent>, StoreError> {
        let sql = self.sql_owned(format!(
            "SELECT {EVENT_COLUMNS} FROM event_logs WHERE id = $1"
        ));
        let raw = read_events!(self, sql, "reading an event", |q| q.bind(id));
        raw.into_iter().next().map(event_from_raw).transpose()
    }

    /// A page of the events `filter` selects, sorted by `order` (then by id), with how many it
    /// selects in all.
    pub async fn events_page(
        &self,
        filter: &EventFilter,
        order: &[(EventColumn, bool)],
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<StoredEvent>, i64), StoreError> {
        let (clause, binds) = event_filter_sql(filter);
        let keys = order_keys(order.iter().map(|(column, desc)| (column.column(), *desc)));
        let n = binds.len();
        let sql = self.sql_owned(format!(
            "SELECT {EVENT_COLUMNS} FROM event_logs{clause} ORDER BY {keys} LIMIT ${} OFFSET ${}",
            n + 1,
            n + 2
        ));
        let raw = read_events!(self, sql, "listing events", |q| {
            let mut q = q;
            for b in &binds {
                q = match b {
                    Bound::Text(t) => q.bind(t.as_str()),
                    Bound::Int(i) => q.bind(*i),
                };
            }
            q.bind(limit).bind(offset)
        });
        let total = self
            .count_bound(
                &format!("FROM event_logs{clause}"),
                &binds,
                "counting events",
            )
            .await?;
        let events = raw
            .into_iter()
            .map(event_from_raw)
            .collect::<Result<_, _>>()?;
        Ok((events, total))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Store;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(seconds, 0).unwrap()
    }

    async fn events_are_recorded_filtered_and_paged(store: Store) {
        let store = &store;
        for (i, (event, dag)) in [
            ("trigger_dag_run", Some("etl")),
            ("patch_dag", Some("etl")),
            ("login", None),
            ("trigger_dag_run", Some("Train")),
        ]
        .into_iter()
        .enumerate()
        {
            let id = store
                .record_event(&NewEvent {
                    when: at(100 + i64::try_from(i).unwrap()),
                    event: event.to_owned(),
                    dag_id: dag.map(str::to_owned),
                    owner: Some("admin".to_owned()),
                    extra: Some("{}".to_owned()),
                    map_index: Some(-1),
                    ..NewEvent::default()
                })
                .await
                .unwrap();
            assert!(id > 0);
        }
        let (all, total) = store
            .events_page(&EventFilter::default(), &[(EventColumn::Id, true)], 2, 0)
            .await
            .unwrap();
        assert_eq!(total, 4);
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].event.dag_id.as_deref(), Some("Train"));
        assert_eq!(all[0].event.when, at(103));
        assert_eq!(all[0].event.map_index, Some(-1));

        let triggers = EventFilter {
            event: Some("trigger_dag_run".to_owned()),
            patterns: vec![(EventColumn::DagId, vec!["TRA".to_owned(), "x".to_owned()])],
            ..EventFilter::default()
        };
        let (found, total) = store.events_page(&triggers, &[], 10, 0).await.unwrap();
        assert_eq!(total, 1);
        assert_eq!(found[0].event.dag_id.as_deref(), Some("Train"));
        let prefixed = EventFilter {
            prefixes: vec![(EventColumn::DagId, vec!["et".to_owned(), "tr".to_owned()])],
            ..EventFilter::default()
        };
        let (_, total) = store.events_page(&prefixed, &[], 10, 0).await.unwrap();
        assert_eq!(total, 2, "case-sensitive: `tr` is not `Train`'s prefix");

        let window = EventFilter {
            excluded_events: vec!["login".to_owned()],
            when: TimeRange {
                gte: Some(at(101)),
                ..TimeRange::default()
            },
            ..EventFilter::default()
        };
        let (found, total) = store.events_page(&window, &[], 10, 0).await.unwrap();
        assert_eq!(total, 2);
        assert_eq!(found[0].event.event, "patch_dag");

        let one = store.event(found[0].id).await.unwrap().unwrap();
        assert_eq!(one, found[0]);
        assert_eq!(store.event(9999).await.unwrap(), None);
    }

    crate::both_engines!(events_are_recorded_filtered_and_paged);
}
