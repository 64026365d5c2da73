//! Who may start now: global `parallelism`, each DAG's `max_active_tasks`, each task's
//! `max_active_tis_per_dag` and `max_active_tis_per_dagrun`, and each pool's slots, with waiting
//! tasks taken highest `priority_weight` first, then first come.

use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use gust_core::ids::{InstanceId, TaskId};
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
    /// Tries holding a slot, by (DAG, task) and by (run, task); entries at zero are dropped.
    used_by_task: HashMap<(String, TaskId), u32>,
    used_by_task_in_run: HashMap<(RunKey, TaskId), u32>,
}

/// Why a waiting task cannot start now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Blocked {
    /// `parallelism` is reached: nothing else can start either.
    Parallelism,
    /// A limit of its own is reached: only a slot under that limit given back lets it start.
    Full(Limit),
    /// The pool does not exist.
    UnknownPool(String),
}

/// A limit waiting tasks are held by. The waiting line parks a task held by one until a slot
/// under it is given back, so that thousands of instances held by their DAG's or task's limit
/// are not looked at again every time anything else is admitted.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Limit {
    /// The DAG's `max_active_tasks`.
    Dag(String),
    /// The task's `max_active_tis_per_dag`: (DAG, task).
    TaskInDag(String, TaskId),
    /// The task's `max_active_tis_per_dagrun`.
    TaskInRun(RunKey, TaskId),
    /// The pool's slots.
    Pool(String),
}

impl Limit {
    /// The limits a try of `task` in `run` holds a slot under, which it gives back when it ends.
    #[must_use]
    pub fn held_by(run: &RunKey, task: &Task) -> [Limit; 4] {
        [
            Limit::Dag(run.0.clone()),
            Limit::TaskInDag(run.0.clone(), task.id.clone()),
            Limit::TaskInRun(run.clone(), task.id.clone()),
            Limit::Pool(task.settings.pool.clone()),
        ]
    }
}

impl Slots {
    /// Records that a try of `task` (in run `run`) took its slots (`true`) or gave them back.
    pub fn track(&mut self, run: &RunKey, task: &Task, taken: bool) {
        let dag_id = run.0.as_str();
        count(
            &mut self.used_by_task,
            (dag_id.to_owned(), task.id.clone()),
            taken,
        );
        count(
            &mut self.used_by_task_in_run,
            (run.clone(), task.id.clone()),
            taken,
        );
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

    /// Whether a try of `task` (in run `run`) may start now.
    pub fn check(&self, run: &RunKey, max_active_tasks: u32, task: &Task) -> Result<(), Blocked> {
        let dag_id = run.0.as_str();
        if self.used >= self.parallelism.max(1) && !self.worker_free.contains(&task.operator) {
            return Err(Blocked::Parallelism);
        }
        if self.used_by_dag.get(dag_id).copied().unwrap_or(0) >= max_active_tasks {
            return Err(Blocked::Full(Limit::Dag(dag_id.to_owned())));
        }
        if let Some(max) = task.settings.max_active_tis_per_dag {
            let key = (dag_id.to_owned(), task.id.clone());
            if self.used_by_task.get(&key).copied().unwrap_or(0) >= max {
                return Err(Blocked::Full(Limit::TaskInDag(key.0, key.1)));
            }
        }
        if let Some(max) = task.settings.max_active_tis_per_dagrun {
            let key = (run.clone(), task.id.clone());
            if self.used_by_task_in_run.get(&key).copied().unwrap_or(0) >= max {
                return Err(Blocked::Full(Limit::TaskInRun(key.0, key.1)));
            }
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
            return Err(Blocked::Full(Limit::Pool(task.settings.pool.clone())));
        }
        Ok(())
    }
}

/// Counts one more (`up`) or one fewer at `key`, dropping the entry at zero.
fn count<K: std::hash::Hash + Eq>(counts: &mut HashMap<K, u32>, key: K, up: bool) {
    if up {
        *counts.entry(key).or_default() += 1;
    } else if let std::collections::hash_map::Entry::Occupied(mut entry) = counts.entry(key) {
        *entry.get_mut() -= 1;
        if *entry.get() == 0 {
            entry.remove();
        }
    }
}

/// A place in the [`WaitingLine`]: higher weights first, then arrival order.
pub type LinePlace = (Reverse<i32>, u64);

/// A task waiting in line: its run, its instance, and when it entered the line (for the
/// scheduling delay metric).
type Waiting = (RunKey, InstanceId, DateTime<Utc>);

/// Tasks in `scheduled` waiting for slots, in the order they get them. Those held by a
/// [`Limit`] are parked beside the line, keeping their places, until a slot under it is given
/// back.
#[derive(Debug, Default)]
pub struct WaitingLine {
    line: BTreeMap<LinePlace, Waiting>,
    parked: HashMap<Limit, BTreeMap<LinePlace, Waiting>>,
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

    /// Parks the entry at `place` under `limit`, keeping its place.
    pub fn park(&mut self, place: LinePlace, limit: Limit) {
        if let Some(entry) = self.line.remove(&place) {
            self.parked.entry(limit).or_default().insert(place, entry);
        }
    }

    /// Puts the first task parked under `limit` back in line (a slot under it was given back;
    /// if another limit still holds it, it is parked again under that one).
    pub fn unpark_one(&mut self, limit: &Limit) {
        let Some(parked) = self.parked.get_mut(limit) else {
            return;
        };
        if let Some((place, entry)) = parked.pop_first() {
            self.line.insert(place, entry);
        }
        if parked.is_empty() {
            self.parked.remove(limit);
        }
    }

    /// Puts every task parked under a limit `which` selects back in line (a pool's size or
    /// its use elsewhere changed).
    pub fn unpark_all(&mut self, which: impl Fn(&Limit) -> bool) {
        let limits: Vec<Limit> = self.parked.keys().filter(|l| which(l)).cloned().collect();
        for limit in limits {
            if let Some(parked) = self.parked.remove(&limit) {
                self.line.extend(parked);
            }
        }
    }

    /// Drops the parked tasks of `run` (it is unloaded; its waiting tasks are put in line
    /// again if it is loaded again).
    pub fn forget_run(&mut self, run: &RunKey) {
        for parked in self.parked.values_mut() {
            parked.retain(|_, (r, _, _)| r != run);
        }
        self.parked.retain(|_, parked| !parked.is_empty());
    }

    /// How many tasks are parked.
    pub fn parked(&self) -> usize {
        self.parked.values().map(BTreeMap::len).sum()
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
        let run = ("mine".to_owned(), "r1".to_owned());
        slots.track(&run, &task, true);
        assert_eq!(slots.check(&run, 16, &task), Ok(()));
        slots.pool_used_elsewhere.insert("gpu".to_owned(), 1);
        assert_eq!(
            slots.check(&run, 16, &task),
            Err(Blocked::Full(Limit::Pool("gpu".to_owned())))
        );
    }

    #[test]
    fn a_task_limits_its_instances_per_run_and_over_all_runs() {
        let mut task = Task {
            id: TaskId::new("train").unwrap(),
            operator: "bash".to_owned(),
            args: serde_json::Map::new(),
            upstream: Vec::new(),
            group: None,
            settings: TaskSettings {
                max_active_tis_per_dagrun: Some(2),
                max_active_tis_per_dag: Some(3),
                ..TaskSettings::default()
            },
            doc_md: None,
            mapping: None,
        };
        let mut slots = Slots {
            parallelism: 10,
            pool_sizes: [(task.settings.pool.clone(), 128)].into(),
            ..Slots::default()
        };
        let r1 = ("ml".to_owned(), "r1".to_owned());
        let r2 = ("ml".to_owned(), "r2".to_owned());
        slots.track(&r1, &task, true);
        slots.track(&r1, &task, true);
        let train = TaskId::new("train").unwrap();
        assert_eq!(
            slots.check(&r1, 16, &task),
            Err(Blocked::Full(Limit::TaskInRun(r1.clone(), train.clone())))
        );
        assert_eq!(
            slots.check(&r2, 16, &task),
            Ok(()),
            "another run has its own"
        );
        slots.track(&r2, &task, true);
        assert_eq!(
            slots.check(&r2, 16, &task),
            Err(Blocked::Full(Limit::TaskInDag("ml".to_owned(), train))),
            "three over the DAG's runs"
        );
        slots.track(&r1, &task, false);
        assert_eq!(slots.check(&r2, 16, &task), Ok(()));
        task.settings.max_active_tis_per_dag = None;
        task.settings.max_active_tis_per_dagrun = None;
        slots.track(&r1, &task, true);
        slots.track(&r1, &task, true);
        assert_eq!(slots.check(&r1, 16, &task), Ok(()), "no limit of its own");
    }

    #[test]
    fn a_parked_task_keeps_its_place_and_comes_back_one_per_slot_given_back() {
        let mut line = WaitingLine::default();
        let run = ("ml".to_owned(), "r1".to_owned());
        let now = chrono::DateTime::<Utc>::UNIX_EPOCH;
        for i in 0..3 {
            line.push(
                1,
                run.clone(),
                InstanceId::mapped(TaskId::new("t").unwrap(), i),
                now,
            );
        }
        let limit = Limit::Dag("ml".to_owned());
        let (first, ..) = line.next_after(None).unwrap();
        line.park(first, limit.clone());
        let (second, ..) = line.next_after(Some(first)).unwrap();
        line.park(second, limit.clone());
        assert_eq!((line.count(), line.parked()), (1, 2));
        line.unpark_one(&limit);
        let (back, _, instance) = line.next_after(None).unwrap();
        assert_eq!((back, instance.map_index), (first, 0), "back in its place");
        line.unpark_all(|l| matches!(l, Limit::Pool(_)));
        assert_eq!(line.parked(), 1, "only pools' parked tasks");
        line.forget_run(&run);
        assert_eq!((line.count(), line.parked()), (2, 0));
    }
}
