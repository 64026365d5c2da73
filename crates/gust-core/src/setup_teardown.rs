//! Setup and teardown tasks, as Airflow relates them: the setups a task needs beyond its direct
//! upstreams, and the tasks a teardown waits for beyond its own upstreams.
//!
//! Airflow's rules: a task needs every *relevant* setup upstream of it to have succeeded, where
//! a setup is relevant when it has no teardown or one of its teardowns is downstream of the task.
//! A teardown waits for every task in its scope (downstream of one of its setups and upstream of
//! it) to finish, whatever the state those tasks end in.

use std::collections::BTreeSet;

use crate::task::Task;

/// The setup and teardown relations of a DAG's tasks, by rank (position in topological order).
/// Empty, and free, for a DAG with no setup or teardown task.
#[derive(Debug, Clone, Default)]
pub(crate) struct Scopes {
    /// Rank -> the relevant setups a (non-teardown) task needs that are not its direct upstreams.
    indirect_setups: Vec<Vec<usize>>,
    /// Rank -> for a teardown, the tasks in its scope that are not its direct upstreams.
    teardown_scope: Vec<Vec<usize>>,
    /// Rank -> the tasks whose decision also hangs on this one through the two lists above.
    watchers: Vec<Vec<usize>>,
}

impl Scopes {
    /// Relates `tasks` (in rank order) given each rank's direct upstream and downstream ranks.
    pub(crate) fn of(tasks: &[&Task], upstream: &[Vec<usize>], downstream: &[Vec<usize>]) -> Self {
        let is_setup = |r: usize| tasks[r].settings.is_setup;
        let is_teardown = |r: usize| tasks[r].settings.is_teardown;
        let n = tasks.len();
        if !(0..n).any(|r| is_setup(r) || is_teardown(r)) {
            return Self::default();
        }
        // Ranks are topological: every upstream of r has a lower rank.
        let mut ancestors: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); n];
        for r in 0..n {
            let mut set = BTreeSet::new();
            for &u in &upstream[r] {
                set.insert(u);
                set.extend(ancestors[u].iter().copied());
            }
            ancestors[r] = set;
        }
        let mut descendants: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); n];
        for r in (0..n).rev() {
            let mut set = BTreeSet::new();
            for &d in &downstream[r] {
                set.insert(d);
                set.extend(descendants[d].iter().copied());
            }
            descendants[r] = set;
        }
        let mut scopes = Self {
            indirect_setups: vec![Vec::new(); n],
            teardown_scope: vec![Vec::new(); n],
            watchers: vec![Vec::new(); n],
        };
        for r in 0..n {
            let direct = &upstream[r];
            if is_teardown(r) {
                let setups: Vec<usize> = direct.iter().copied().filter(|&u| is_setup(u)).collect();
                scopes.teardown_scope[r] = ancestors[r]
                    .iter()
                    .copied()
                    .filter(|a| !direct.contains(a))
                    .filter(|a| setups.iter().any(|&s| descendants[s].contains(a)))
                    .collect();
            } else {
                scopes.indirect_setups[r] = ancestors[r]
                    .iter()
                    .copied()
                    .filter(|&s| is_setup(s) && !direct.contains(&s))
                    .filter(|&s| {
                        let mut teardowns = downstream[s].iter().filter(|&&t| is_teardown(t));
                        let has_none = downstream[s].iter().all(|&t| !is_teardown(t));
                        has_none || teardowns.any(|t| descendants[r].contains(t))
                    })
                    .collect();
            }
            for &watched in scopes.indirect_setups[r]
                .iter()
                .chain(&scopes.teardown_scope[r])
            {
                scopes.watchers[watched].push(r);
            }
        }
        scopes
    }

    /// The relevant setups the task at `rank` needs beyond its direct upstreams.
    pub(crate) fn indirect_setups(&self, rank: usize) -> &[usize] {
        self.indirect_setups.get(rank).map_or(&[], Vec::as_slice)
    }

    /// For a teardown, the tasks in its scope beyond its direct upstreams.
    pub(crate) fn teardown_scope(&self, rank: usize) -> &[usize] {
        self.teardown_scope.get(rank).map_or(&[], Vec::as_slice)
    }

    /// The tasks whose decision hangs on the task at `rank` through a setup or a scope.
    pub(crate) fn watchers(&self, rank: usize) -> &[usize] {
        self.watchers.get(rank).map_or(&[], Vec::as_slice)
    }
}
