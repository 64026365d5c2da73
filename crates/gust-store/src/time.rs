//! Times as stored: microseconds since the Unix epoch, UTC, on both engines.

use chrono::{DateTime, Utc};

use crate::StoreError;

/// A time as stored.
pub(crate) fn to_db(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

/// A stored time read back.
pub(crate) fn from_db(micros: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_micros(micros).ok_or(StoreError::Corrupt {
        what: "time",
        detail: format!("{micros} is out of range"),
    })
}

/// An optional stored time read back.
pub(crate) fn opt_from_db(micros: Option<i64>) -> Result<Option<DateTime<Utc>>, StoreError> {
    micros.map(from_db).transpose()
}
