//! `kubernetes_job` and `kueue_job`: a task runs as a batch/v1 Job (Airflow's
//! `KubernetesJobOperator` and `KubernetesStartKueueJobOperator`), and `kubernetes_delete_job`
//! and `kubernetes_patch_job` (`manage.rs`) act on Jobs by name.
//!
//! A Job's pod template is the pod `kubernetes_pod` would build from the same arguments, so a
//! job task takes every pod argument plus the Job's own (`backoff_limit`, `completions`...).
//! This module only says what the operators accept; `gust-kube` builds and follows the Job.

mod manage;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use manage::{
    DELETE_SPEC, DeleteJobArgs, DeleteOnStatus, PATCH_SPEC, PatchJobArgs, PropagationPolicy,
};

use crate::kubernetes_pod::{self, PodArgs, read_object};
use crate::spec::{ArgumentError, OperatorSpec, read_args};

/// The label (and annotation) Kueue reads a Job's queue from.
pub const KUEUE_QUEUE_LABEL: &str = "kueue.x-k8s.io/queue-name";
/// Airflow's default `job_poll_interval`, in seconds (accepted; Gust follows Jobs by watch).
pub const DEFAULT_JOB_POLL_INTERVAL: f64 = 10.0;

/// What `kubernetes_job` adds to `kubernetes_pod`'s arguments.
const JOB_ARGUMENTS: &[&str] = &[
    "job_template_file",
    "full_job_spec",
    "backoff_limit",
    "completion_mode",
    "completions",
    "parallelism",
    "selector",
    "suspend",
    "ttl_seconds_after_finished",
    "manual_selector",
    "wait_until_job_complete",
    "job_poll_interval",
    "on_kill_propagation_policy",
];
/// What `kueue_job` adds to `kubernetes_job`'s.
const KUEUE_ARGUMENTS: &[&str] = &["queue_name"];

const POD_ARGUMENTS: &[&str] = kubernetes_pod::SPEC.arguments;
const JOB_COUNT: usize = POD_ARGUMENTS.len() + JOB_ARGUMENTS.len();
static ALL_JOB_ARGUMENTS: [&str; JOB_COUNT] = concat(POD_ARGUMENTS, JOB_ARGUMENTS);
static ALL_KUEUE_ARGUMENTS: [&str; JOB_COUNT + 1] = concat(&ALL_JOB_ARGUMENTS, KUEUE_ARGUMENTS);

/// `a` then `b`, as one array of exactly `N` names.
const fn concat<const N: usize>(a: &[&'static str], b: &[&'static str]) -> [&'static str; N] {
    assert!(a.len() + b.len() == N, "N is the sum of the lengths");
    let mut all = [""; N];
    let mut i = 0;
    while i < a.len() {
        all[i] = a[i];
        i += 1;
    }
    let mut j = 0;
    while j < b.len() {
        all[a.len() + j] = b[j];
        j += 1;
    }
    all
}

/// How a Job's pods count as completions (`completionMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum CompletionMode {
    /// Any `completions` successful pods complete the Job (the default).
    NonIndexed,
    /// Each index from 0 to `completions - 1` needs one successful pod.
    Indexed,
}

impl CompletionMode {
    /// The manifest's spelling.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NonIndexed => "NonIndexed",
            Self::Indexed => "Indexed",
        }
    }
}

/// The arguments of a job task, after rendering.
#[derive(Debug, Clone, PartialEq)]
pub struct JobArgs {
    /// Every `kubernetes_pod` argument: they build the Job's pod template. `name`, `namespace`,
    /// `labels` and `annotations` are also the Job's; `active_deadline_seconds` is the Job's
    /// only.
    pub pod: PodArgs,
    /// A Job manifest file the Job starts from (relative to the DAG file's folder).
    pub job_template_file: Option<String>,
    /// A complete Job, over the template file.
    pub full_job_spec: Option<Job>,
    /// `backoffLimit`: failed pods before the Job fails (Kubernetes' default 6).
    pub backoff_limit: Option<i32>,
    /// `completionMode`.
    pub completion_mode: Option<CompletionMode>,
    /// `completions`: successful pods needed.
    pub completions: Option<i32>,
    /// `parallelism`: pods running at once at most.
    pub parallelism: Option<i32>,
    /// `selector` (with `manual_selector`).
    pub selector: Option<LabelSelector>,
    /// `suspend`: create the Job without starting pods until it is resumed.
    pub suspend: Option<bool>,
    /// `ttlSecondsAfterFinished`.
    pub ttl_seconds_after_finished: Option<i32>,
    /// `manualSelector`.
    pub manual_selector: Option<bool>,
    /// Follow the Job to its end (default false: the try ends once the Job is created).
    pub wait_until_job_complete: bool,
    /// Accepted for compatibility: Gust follows Jobs with a watch, never by polling.
    pub job_poll_interval: f64,
    /// How the Job's pods go when a killed try's Job is deleted (default `Foreground`).
    pub on_kill_propagation_policy: PropagationPolicy,
    /// Kueue's queue (`kueue_job` only).
    pub queue_name: Option<String>,
}

/// The Job's own arguments, read apart from the pod's.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Own {
    #[serde(default)]
    job_template_file: Option<String>,
    #[serde(default)]
    full_job_spec: Option<Value>,
    #[serde(default)]
    backoff_limit: Option<i32>,
    #[serde(default)]
    completion_mode: Option<CompletionMode>,
    #[serde(default)]
    completions: Option<i32>,
    #[serde(default)]
    parallelism: Option<i32>,
    #[serde(default)]
    selector: Option<Value>,
    #[serde(default)]
    suspend: Option<bool>,
    #[serde(default)]
    ttl_seconds_after_finished: Option<i32>,
    #[serde(default)]
    manual_selector: Option<bool>,
    #[serde(default)]
    wait_until_job_complete: bool,
    #[serde(default)]
    job_poll_interval: Option<f64>,
    #[serde(default)]
    on_kill_propagation_policy: Option<PropagationPolicy>,
    #[serde(default)]
    queue_name: Option<String>,
}

impl JobArgs {
    /// Reads a `kubernetes_job` task's rendered arguments.
    pub fn read(args: &Map<String, Value>) -> Result<Self, ArgumentError> {
        Self::read_as(args, false)
    }

    /// Reads a `kueue_job` task's rendered arguments: `queue_name` is required and the Job is
    /// created suspended (Kueue resumes it when it admits it).
    pub fn read_kueue(args: &Map<String, Value>) -> Result<Self, ArgumentError> {
        Self::read_as(args, true)
    }

    /// Reads the arguments of the operator named `operator` (`kubernetes_job` or `kueue_job`).
    pub fn read_for(operator: &str, args: &Map<String, Value>) -> Result<Self, ArgumentError> {
        Self::read_as(args, operator == KUEUE_SPEC.name)
    }

    fn read_as(args: &Map<String, Value>, kueue: bool) -> Result<Self, ArgumentError> {
        let mut pod = args.clone();
        let mut own = Map::new();
        let own_names = JOB_ARGUMENTS
            .iter()
            .chain(KUEUE_ARGUMENTS.iter().filter(|_| kueue));
        for name in own_names {
            if let Some(value) = pod.remove(*name) {
                own.insert((*name).to_owned(), value);
            }
        }
        let own: Own = read_args(&own)?;
        let pod = PodArgs::read(&pod)?;
        let full_job_spec = own
            .full_job_spec
            .as_ref()
            .map(|value| read_object::<Job>("full_job_spec", value, "V1Job"))
            .transpose()?;
        let selector = own
            .selector
            .as_ref()
            .map(|value| read_object::<LabelSelector>("selector", value, "V1LabelSelector"))
            .transpose()?;
        for (name, value) in [
            ("backoff_limit", own.backoff_limit),
            ("completions", own.completions),
            ("parallelism", own.parallelism),
            ("ttl_seconds_after_finished", own.ttl_seconds_after_finished),
        ] {
            if value.is_some_and(|v| v < 0) {
                return Err(fail(name, "must be 0 or more"));
            }
        }
        if let Some(interval) = own.job_poll_interval
            && !(interval.is_finite() && interval > 0.0)
        {
            return Err(fail(
                "job_poll_interval",
                "must be a positive number of seconds",
            ));
        }
        let mut suspend = own.suspend;
        if kueue {
            match own.queue_name.as_deref().map(str::trim) {
                None | Some("") => {
                    return Err(fail(
                        "queue_name",
                        "kueue_job needs the Kueue LocalQueue to submit the Job to; add \
                         `queue_name:`",
                    ));
                }
                Some(_) => {}
            }
            if suspend == Some(false) {
                return Err(fail(
                    "suspend",
                    "a Kueue Job is created suspended and started by Kueue when it admits it; \
                     remove `suspend: false`",
                ));
            }
            suspend = Some(true);
        }
        Ok(Self {
            pod,
            job_template_file: own.job_template_file,
            full_job_spec,
            backoff_limit: own.backoff_limit,
            completion_mode: own.completion_mode,
            completions: own.completions,
            parallelism: own.parallelism,
            selector,
            suspend,
            ttl_seconds_after_finished: own.ttl_seconds_after_finished,
            manual_selector: own.manual_selector,
            wait_until_job_complete: own.wait_until_job_complete,
            job_poll_interval: own.job_poll_interval.unwrap_or(DEFAULT_JOB_POLL_INTERVAL),
            on_kill_propagation_policy: own
                .on_kill_propagation_policy
                .unwrap_or(PropagationPolicy::Foreground),
            queue_name: own.queue_name.map(|q| q.trim().to_owned()),
        })
    }
}

pub(crate) fn fail(path: &str, message: &str) -> ArgumentError {
    ArgumentError {
        path: path.to_owned(),
        message: message.to_owned(),
    }
}

/// The job operator.
pub static SPEC: OperatorSpec = OperatorSpec {
    name: "kubernetes_job",
    aliases: &[
        "KubernetesJobOperator",
        "airflow.providers.cncf.kubernetes.operators.job.KubernetesJobOperator",
    ],
    arguments: &ALL_JOB_ARGUMENTS,
    renamed_arguments: &[("resources", "container_resources")],
    required: &[],
    pushes_xcom_by_default: false,
    holds_worker: false,
    open_arguments: false,
    check: |args| JobArgs::read(args).map(drop),
};

/// The Kueue job operator.
pub static KUEUE_SPEC: OperatorSpec = OperatorSpec {
    name: "kueue_job",
    aliases: &[
        "KubernetesStartKueueJobOperator",
        "airflow.providers.cncf.kubernetes.operators.kueue.KubernetesStartKueueJobOperator",
    ],
    arguments: &ALL_KUEUE_ARGUMENTS,
    renamed_arguments: &[("resources", "container_resources")],
    required: &["queue_name"],
    pushes_xcom_by_default: false,
    holds_worker: false,
    open_arguments: false,
    check: |args| JobArgs::read_kueue(args).map(drop),
};

#[cfg(test)]
mod tests;
