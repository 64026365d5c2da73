//! Expanding a mapped task once its trigger rule is met: as many instances as its lists have
//! items (decided now, when its upstreams' values are known), each scheduled at once.

use super::active::RunKey;
use super::tasks::Retry;
use super::{Batch, Expansion, Scheduler};
use gust_core::ids::{InstanceId, TaskId};
use gust_core::state::{TaskEvent, TaskState};

impl Scheduler {
    /// Expands the mapped `task_id` of `run_key` and schedules its instances. A task expanded
    /// already (by an earlier step of this or another process, or cleared since) keeps its
    /// instances; those waiting are scheduled. Over nothing, the task is skipped, as in Airflow;
    /// when its lists cannot be expanded, it fails without retrying, saying why in its log.
    pub(super) fn expand(&mut self, batch: &mut Batch, run_key: &RunKey, task_id: &TaskId) {
        let Some(run) = self.runs.get(run_key) else {
            return;
        };
        if !run.states.is_expanded(task_id) {
            let Some(task) = run.dag.task(task_id) else {
                return;
            };
            let unmapped = InstanceId::unmapped(task_id.clone());
            match crate::mapped::length(task, &run.xcoms, self.config.max_map_length) {
                Ok(0) => {
                    self.move_into(batch, run_key, &unmapped, TaskEvent::Skip, None, None);
                    return;
                }
                Ok(count) => {
                    let Some(instance) = run.tis.get(&unmapped).cloned() else {
                        return;
                    };
                    let count = u32::try_from(count).unwrap_or(u32::MAX);
                    batch.expansions.push(Expansion {
                        run: run_key.clone(),
                        instance,
                        count,
                        revise: false,
                    });
                    if let Some(run) = self.runs.get_mut(run_key) {
                        run.expanded(task_id, count);
                    }
                }
                Err(err) => {
                    let why = format!("task \"{task_id}\" cannot be expanded: {err}");
                    // Scheduled first: a try is queued from there.
                    if self.move_into(batch, run_key, &unmapped, TaskEvent::Schedule, None, None) {
                        let args = serde_json::Value::Null;
                        self.queue_and_fail(batch, run_key, &unmapped, args, why, Retry::Never);
                    }
                    return;
                }
            }
        }
        if self.revise(batch, run_key, task_id) {
            return;
        }
        // Each waiting instance with how it moves (in a mapped task group, by its own
        // upstream instances).
        let waiting: Vec<(InstanceId, TaskEvent)> =
            self.runs.get(run_key).map_or_else(Vec::new, |run| {
                let Some(task) = run.dag.task(task_id) else {
                    return Vec::new();
                };
                run.instances(task_id)
                    .into_iter()
                    .filter(|i| run.state(i) == TaskState::NoStatus)
                    .filter_map(|i| {
                        let event =
                            crate::mapped::waiting_instance_event(&run.dag, task, &run.states, &i)?;
                        Some((i, event))
                    })
                    .collect()
            });
        for (instance, event) in waiting {
            let scheduled = event == TaskEvent::Schedule;
            if self.move_into(batch, run_key, &instance, event, None, None) && scheduled {
                self.wait_for_slot(run_key, &instance);
            }
        }
    }

    /// Revises the instances of an expanded task that was cleared as a whole (every instance
    /// waits, or was removed) when its lists now have another length, as Airflow does: the
    /// store removes or adds instances and the run is re-read. `true` when it did so (the
    /// instances are scheduled after the re-read).
    fn revise(&mut self, batch: &mut Batch, run_key: &RunKey, task_id: &TaskId) -> bool {
        let Some(run) = self.runs.get(run_key) else {
            return false;
        };
        let instances = run.instances(task_id);
        let mut live = 0usize;
        for instance in &instances {
            match run.state(instance) {
                TaskState::NoStatus => live += 1,
                TaskState::Removed => {}
                _ => return false,
            }
        }
        let Some(task) = run.dag.task(task_id) else {
            return false;
        };
        let count = match crate::mapped::length(task, &run.xcoms, self.config.max_map_length) {
            // An unexpandable list fails the task when it is first expanded; a cleared task
            // keeps its instances and lets them fail the same way when they run.
            Ok(count) if count != live => count,
            _ => return false,
        };
        let Some(first) = instances.first().and_then(|i| run.tis.get(i)).cloned() else {
            return false;
        };
        batch.expansions.push(Expansion {
            run: run_key.clone(),
            instance: first,
            count: u32::try_from(count).unwrap_or(u32::MAX),
            revise: true,
        });
        true
    }
}
