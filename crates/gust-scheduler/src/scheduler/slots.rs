//! Who may start now: global `parallelism`, each DAG's `max_active_tasks` and each pool's slots,
//! with waiting tasks taken highest `priority_weight` first, then first come.

use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use gust_core::ids::InstanceId;
use gust_core::task::Task;

use super::active::RunKey;

/// Slots in use and their limits. Counts change only with task moves into and out of the
/// states that hold a slot (`queued`, `running`).
#[derive(Debug, Default)]
pub struct Slots {
    /// At most this many tries at once (`[core] parallelism`).
    pub parallelism: usize,
    /// Each pool's size, as stored.
    pub pool_sizes: HashMap<String, i64>,
    /// Each pool's slots held by the DAGs other schedulers drive, as of the last poll.
    pub pool_used_elsewhere: HashMap<String, i64>,
    /// Operators whose tries do not count against `parallelism`.
    pub worker_free: std::collections::HashSet<String>,
    used: usize,
    used_by_pool: HashMap<String, i64>,
    used_by_dag: HashMap<String, u32>,
}

/// Why a waiting task cannot start now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Blocked {
    /// `parallelism` is reached: nothing else can start either.
    Parallelism,
    /// The DAG's `max_active_tasks` is reached.
    DagLimit,
    /// The pool has too few open slots.
    PoolFull,
    /// The pool does not exist.
    UnknownPool(String),
}

impl Slots {
    /// Records that a try of `task` (of `dag_id`) took its slots (`true`) or gave them back.
    pub fn track(&mut self, dag_id: &str, task: &Task, taken: bool) {
        let slots = i64::from(task.settings.pool_slots);
        let pool = self
            .used_by_pool
            .entry(task.settings.pool.clone())
            .or_default();
        let dag = self.used_by_dag.entry(dag_id.to_owned()).or_default();
        let holds_worker = !self.worker_free.contains(&task.operator);
        if taken {
            self.used += usize::from(holds_worker);
            *pool += slots;
            *dag += 1;
        } else {
            self.used = self.used.saturating_sub(usize::from(holds_worker));
            *pool = (*pool - slots).max(0);
            *dag = dag.saturating_sub(1);
        }
    }

    /// Whether a try of `task` may start now.
    pub fn check(&self, dag_id: &str, max_active_tasks: u32, task: &Task) -> Result<(), Blocked> {
        if self.used >= self.parallelism.max(1) && !self.worker_free.contains(&task.operator) {
            return Err(Blocked::Parallelism);
        }
        if self.used_by_dag.get(dag_id).copied().unwrap_or(0) >= max_active_tasks {
            return Err(Blocked::DagLimit);
        }
        let Some(size) = self.pool_sizes.get(&task.settings.pool) else {
            return Err(Blocked::UnknownPool(task.settings.pool.clone()));
        };
        let used = self
            .used_by_pool
            .get(&task.settings.pool)
            .copied()
            .unwrap_or(0)
            + self
                .pool_used_elsewhere
                .get(&task.settings.pool)
                .copied()
                .unwrap_or(0);
        if used + i64::from(task.settings.pool_slots) > *size {
            return Err(Blocked::PoolFull);
        }
        Ok(())
    }
}

/// A place in the [`WaitingLine`]: higher weights first, then arrival order.
pub type LinePlace = (Reverse<i32>, u64);

/// Tasks in `scheduled` waiting for slots, in the order they get them, each with when it
/// entered the line (for the scheduling delay metric).
#[derive(Debug, Default)]
pub struct WaitingLine {
    line: BTreeMap<LinePlace, (RunKey, InstanceId, DateTime<Utc>)>,
    next: u64,
}

impl WaitingLine {
    /// Puts a task in line, waiting since `since`.
    pub fn push(
        &mut self,
        priority_weight: i32,
        run: RunKey,
        task: InstanceId,
        since: DateTime<Utc>,
    ) {
        self.line
            .insert((Reverse(priority_weight), self.next), (run, task, since));
        self.next += 1;
    }

    /// How many tasks wait.
    pub fn count(&self) -> usize {
        self.line.len()
    }

    /// When the task at `place` entered the line.
    pub fn since(&self, place: LinePlace) -> Option<DateTime<Utc>> {
        self.line.get(&place).map(|(_, _, since)| *since)
    }

    /// The first entry after `after` (from the start when `None`), in line order.
    pub fn next_after(&self, after: Option<LinePlace>) -> Option<(LinePlace, RunKey, InstanceId)> {
        let mut range = match after {
            None => self.line.range(..),
            Some(place) => self
                .line
                .range((std::ops::Bound::Excluded(place), std::ops::Bound::Unbounded)),
        };
        range
            .next()
            .map(|(place, (run, task, _))| (*place, run.clone(), task.clone()))
    }

    /// Takes an entry out of line.
    pub fn remove(&mut self, place: LinePlace) {
        self.line.remove(&place);
    }
}

#[cfg(test)]
mod tests {
    use gust_core::ids::TaskId;
    use gust_core::task::{Task, TaskSettings};

    use super::*;

    #[test]
    fn a_pool_counts_the_slots_other_schedulers_hold() {
        let task = Task {
            id: TaskId::new("t").unwrap(),
            operator: "bash".to_owned(),
            args: serde_json::Map::new(),
            upstream: Vec::new(),
            group: None,
            settings: TaskSettings {
                pool: "gpu".to_owned(),
                pool_slots: 2,
                ..TaskSettings::default()
            },
            doc_md: None,
            mapping: None,
        };
        let mut slots = Slots {
            parallelism: 10,
            pool_sizes: [("gpu".to_owned(), 4)].into(),
            ..Slots::default()
        };
        slots.track("mine", &task, true);
        assert_eq!(slots.check("mine", 16, &task), Ok(()));
        slots.pool_used_elsewhere.insert("gpu".to_owned(), 1);
        assert_eq!(slots.check("mine", 16, &task), Err(Blocked::PoolFull));
    }
}
