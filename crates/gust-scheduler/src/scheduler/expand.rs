//! Expanding a mapped task once its trigger rule is met: as many instances as its lists have
//! items (decided now, when its upstreams' values are known), each scheduled at once.

use gust_core::ids::{InstanceId, TaskId};
use gust_core::state::{TaskEvent, TaskState};
use gust_store::TryChange;

use super::active::RunKey;
use super::{After, Batch, Expansion, Scheduler};
use crate::metrics::TryResult;

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
                    });
                    if let Some(run) = self.runs.get_mut(run_key) {
                        run.expanded(task_id, count);
                    }
                }
                Err(err) => {
                    let why = format!("task \"{task_id}\" cannot be expanded: {err}");
                    self.fail_unexpanded(batch, run_key, &unmapped, why);
                    return;
                }
            }
        }
        let waiting: Vec<InstanceId> = self.runs.get(run_key).map_or_else(Vec::new, |run| {
            run.instances(task_id)
                .into_iter()
                .filter(|i| run.state(i) == TaskState::NoStatus)
                .collect()
        });
        for instance in waiting {
            if self.move_into(batch, run_key, &instance, TaskEvent::Schedule, None, None) {
                self.wait_for_slot(run_key, &instance);
            }
        }
    }

    /// Fails a mapped task that cannot be expanded: a try of its unmapped instance is recorded
    /// with the reason (shown in its log), and it does not retry, as its lists would not change.
    fn fail_unexpanded(
        &mut self,
        batch: &mut Batch,
        run_key: &RunKey,
        unmapped: &InstanceId,
        why: String,
    ) {
        let Some(run) = self.runs.get(run_key) else {
            return;
        };
        let try_number = run.next_try_number(unmapped);
        let key = gust_executor::TryKey {
            dag_id: run.dag.id.clone(),
            run_id: run.run_id.clone(),
            task_id: unmapped.task_id.clone(),
            map_index: unmapped.map_index,
            try_number: gust_core::ids::TryNumber(try_number),
        };
        let log = crate::log_path::log_path(&self.config.logs_root, &key);
        let n = i32::try_from(try_number).unwrap_or(i32::MAX);
        let now = self.clock.now();
        let queued = TryChange::Queued {
            try_number: n,
            rendered_args: serde_json::Value::Null,
            log_location: log.display().to_string(),
            at: now,
        };
        if !self.move_into(batch, run_key, unmapped, TaskEvent::Schedule, None, None)
            || !self.move_into(
                batch,
                run_key,
                unmapped,
                TaskEvent::Queue,
                None,
                Some(queued),
            )
        {
            return;
        }
        batch.then(After::FailureLog(log, why.clone()));
        let ended = TryChange::Ended {
            try_number: n,
            at: now,
            failure: Some(gust_secrets::mask(&why)),
            xcom: None,
            outlets: Vec::new(),
        };
        let event = TaskEvent::Fail { can_retry: false };
        if self.move_into(batch, run_key, unmapped, event, None, Some(ended)) {
            self.config.metrics.try_finished(TryResult::Failed);
        }
    }
}
