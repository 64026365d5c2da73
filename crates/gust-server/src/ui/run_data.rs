//! A run's details for the run page, the grid's details panel and the Gantt chart: the run's
//! dates, type, conf (masked) and note and, per task instance (each instance of a mapped
//! task), its operator, tries and times, in one answer (the API would take a page of 100
//! instances per call).

use axum::Json;
use axum::extract::{Path, State};
use serde_json::{Value, json};

use crate::api::dag_runs::{find_run, seconds_between};
use crate::api::task_instances::instance_responses;
use crate::api::time::Timestamp;
use crate::error::ApiResult;
use crate::state::AppState;
use crate::ui::mask::masked;
use crate::ui::session::DataUser;

/// `GET /ui/api/dags/{dag_id}/runs/{run_id}/details`: `{run: {...}, instances: [{...}]}`, the
/// instances in task id then map index order, each with `task_id`, `map_index`, `state`,
/// `operator`, `try_number`, `queued_when`, `start_date`, `end_date` and `duration` (seconds).
pub async fn run_details(
    _: DataUser,
    State(state): State<AppState>,
    Path((dag_id, run_id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let (_, dag) = state.dag(&dag_id).await?;
    let run = find_run(&state, &dag_id, &run_id).await?;
    let instances: Vec<Value> = instance_responses(&state, &run, Some(&dag), None)
        .await?
        .into_iter()
        .map(|ti| {
            json!({
                "task_id": ti.task_id,
                "map_index": ti.map_index,
                "rendered_map_index": ti.rendered_map_index,
                "state": ti.state,
                "operator": ti.operator,
                "try_number": ti.try_number,
                "queued_when": ti.queued_when,
                "start_date": ti.start_date,
                "end_date": ti.end_date,
                "duration": ti.duration,
            })
        })
        .collect();
    let duration = run
        .start_date
        .zip(run.end_date)
        .map(|(start, end)| seconds_between(start, end));
    Ok(Json(json!({
        "run": {
            "run_id": run.run_id,
            "state": run.state.as_str(),
            "run_type": run.run_type.as_str(),
            "logical_date": Timestamp(run.logical_date),
            "data_interval_start": Timestamp(run.data_interval.0),
            "data_interval_end": Timestamp(run.data_interval.1),
            "conf": masked(&Value::Object(run.conf.clone())),
            "note": run.note,
            "queued_at": Timestamp(run.queued_at),
            "start_date": run.start_date.map(Timestamp),
            "end_date": run.end_date.map(Timestamp),
            "duration": duration,
        },
        "instances": instances,
    })))
}
