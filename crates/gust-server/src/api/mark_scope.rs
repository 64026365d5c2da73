//! Which other runs a task-instance mark reaches with `include_past` / `include_future`, picked
//! as Airflow 3 picks them (`get_run_ids` in its `mark_tasks`).

use gust_core::dag::Dag;
use gust_core::schedule::Schedule;
use gust_store::{RunFilter, StoredRun, TimeRange};

use crate::api::task_instances::MAX_CLEARED_RUNS;
use crate::error::ApiResult;
use crate::state::AppState;

/// The runs of `dag` other than `run` that a mark of `run`'s instances also changes: with `past`
/// those whose logical date is before `run`'s, with `future` those after. A DAG without a
/// schedule reaches every such run; a periodic one (cron, interval) only the runs whose logical
/// dates are on its schedule, so manual runs between them are left alone; `@once` none.
pub(crate) async fn other_runs(
    state: &AppState,
    dag: &Dag,
    run: &StoredRun,
    past: bool,
    future: bool,
) -> ApiResult<Vec<StoredRun>> {
    if !(past || future) || matches!(dag.settings.schedule, Schedule::Once) {
        return Ok(Vec::new());
    }
    let filter = RunFilter {
        dag_ids: Some(vec![run.dag_id.clone()]),
        logical_date: TimeRange {
            gte: (!past).then_some(run.logical_date),
            lte: (!future).then_some(run.logical_date),
            ..TimeRange::default()
        },
        ..RunFilter::default()
    };
    let (runs, _) = state
        .store()
        .list_runs(&filter, &[], MAX_CLEARED_RUNS, 0)
        .await?;
    let settings = &dag.settings;
    let anchor = settings.start_date.unwrap_or(run.logical_date);
    Ok(runs
        .into_iter()
        .filter(|other| other.run_id != run.run_id)
        .filter(|other| {
            matches!(settings.schedule, Schedule::Manual)
                || settings
                    .schedule
                    .fires_at(other.logical_date, anchor, settings.timezone)
        })
        .collect())
}
