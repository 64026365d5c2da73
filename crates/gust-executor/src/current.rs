//! [`Current`]: settings a runtime reads when a try starts and the binary replaces while the
//! runtime runs (the connections in force: Secrets for local pods, `kubernetes_conn_id`s). Each
//! try takes the value current at its start and keeps it to its end, as an Airflow task fetches
//! its connection when it runs; a change reaches the tries that start after it.
//!
//! A read is a clone of an `Arc` under a read lock held for no longer than that, so tries never
//! wait on the writer for more than one pointer swap.

use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};

/// A value shared between its readers (each try, at its start) and one writer (the binary,
/// when the value changes). Clones share the value.
pub struct Current<T>(Arc<RwLock<Arc<T>>>);

impl<T> Current<T> {
    /// A cell holding `value`.
    #[must_use]
    pub fn new(value: T) -> Self {
        Self(Arc::new(RwLock::new(Arc::new(value))))
    }

    /// The value in force now; later changes do not alter it.
    #[must_use]
    pub fn get(&self) -> Arc<T> {
        // A panic cannot leave the pointer half-written: a poisoned lock still holds a whole value.
        Arc::clone(&self.0.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Puts `value` in force for every reader that reads after this.
    pub fn set(&self, value: T) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(value);
    }
}

impl<T> Clone for Current<T> {
    fn clone(&self) -> Self {
        Self(Arc::clone(&self.0))
    }
}

impl<T: Default> Default for Current<T> {
    fn default() -> Self {
        Self::new(T::default())
    }
}

impl<T> From<T> for Current<T> {
    fn from(value: T) -> Self {
        Self::new(value)
    }
}

/// Opaque: the value may hold secrets (connections' passwords), which Debug output never shows.
impl<T> fmt::Debug for Current<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Current(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reader_keeps_the_value_it_read_and_later_readers_see_the_new_one() {
        let cell = Current::new(String::from("first"));
        let shared = cell.clone();
        let taken = shared.get();
        cell.set(String::from("second"));
        assert_eq!(*taken, "first");
        assert_eq!(*shared.get(), "second");
    }

    #[test]
    fn debug_output_never_shows_the_value() {
        let cell = Current::new(String::from("hunter2"));
        assert!(!format!("{cell:?}").contains("hunter2"));
    }
}
