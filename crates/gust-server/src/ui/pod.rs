//! The pod a `kubernetes_pod` try ran as: rebuilt from the try's stored rendered arguments with
//! the pod builder both pod runtimes use (so it is the manifest `gust tasks dry-run` prints for
//! those arguments), sensitive values masked. Only the name's random suffix differs from the
//! pod that was created; the try's log names the real pod.

use gust_core::dag::Dag;
use gust_core::task::Task;
use gust_kube::build::{PodDefaults, PodRequest, TryLabels, build_pod};
use gust_operators::kubernetes_pod::PodArgs;
use serde_json::Value;

/// What stands for the name's random suffix, which is not stored.
const SUFFIX_PLACEHOLDER: &str = "xxxxxxxx";

/// The masked YAML manifest of `task`'s pod for one try, or why it cannot be shown.
pub fn manifest(
    dag: &Dag,
    task: &Task,
    run_id: &str,
    try_number: i32,
    rendered_args: &Value,
    defaults: &PodDefaults,
) -> Result<String, String> {
    let args = rendered_args
        .as_object()
        .ok_or("the stored arguments are not a map")?;
    let pod_args = PodArgs::read(args).map_err(|e| e.to_string())?;
    let template = gust_kube::template::load(&pod_args, &dag.fileloc).map_err(|e| e.to_string())?;
    let pod = build_pod(&PodRequest {
        args: &pod_args,
        labels: TryLabels {
            dag_id: dag.id.as_str(),
            task_id: task.id.as_str(),
            run_id,
            try_number: u32::try_from(try_number).unwrap_or(1),
            map_index: gust_core::mapping::UNMAPPED,
        },
        template_file: template.as_ref(),
        do_xcom_push: task.settings.do_xcom_push,
        unique: SUFFIX_PLACEHOLDER,
        defaults,
    })
    .map_err(|e| e.to_string())?;
    gust_kube::manifest::to_yaml(&pod).map_err(|e| e.to_string())
}
