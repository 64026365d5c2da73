//! `gust tasks dry-run`: what a task would run, templates rendered, without running it or
//! contacting a cluster. A `kubernetes_pod` task prints the exact pod manifest; secret values
//! are masked. A `processing` task prints its pod too, after comments listing what would be
//! uploaded first and where its inputs come from and outputs go (nothing is uploaded). A
//! `spark_kubernetes` task prints its SparkApplication; `kubernetes_apply` and
//! `kubernetes_delete_resource` the manifests they send; `kueue_install` the release's objects.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use gust_core::clock::{Clock, SystemClock};
use gust_core::dag::Dag;
use gust_core::ids::RunId;
use gust_core::schedule::DataInterval;
use gust_kube::build::{PodDefaults, PodRequest, TryLabels, build_pod, names};
use gust_operators::kubernetes_pod::PodArgs;
use gust_processing::{PodRuntimeKind, Step, StepPlan};
use gust_scheduler::launch::{RunContext, render_args};
use gust_scheduler::template_values::{TemplateValues, template_connection};
use gust_scheduler::xcom::RunXComs;
use gust_template::Renderer;

use crate::config::{Config, PodRuntime};

/// Prints `text` with every secret the process knows masked.
fn show(text: &str) {
    print!("{}", gust_secrets::mask(text));
}

/// The task instance a dry run shows: a task, and which instance of it when it is mapped.
#[derive(Debug, Clone, Copy)]
pub struct Named<'a> {
    /// The task.
    pub task_id: &'a str,
    /// `--map-index`.
    pub map_index: Option<i32>,
}

/// Prints the task's pod manifest (or rendered arguments) for a run at `logical_date`, secrets
/// masked; an instance of a mapped task is shown with its own arguments and labels.
pub fn dry_run(
    dag: &Dag,
    named: Named<'_>,
    conf: Option<String>,
    logical_date: Option<String>,
    config: &Config,
) -> anyhow::Result<ExitCode> {
    let task_id = named.task_id;
    let task = super::dags::find_task(dag, task_id)?;
    let mapped = super::map_index::instance_args(
        dag.id.as_str(),
        task,
        named.map_index,
        config.core.max_map_length,
    )?;
    let map_index = match (&mapped, named.map_index) {
        (Some(_), Some(index)) => index,
        _ => gust_core::mapping::UNMAPPED,
    };
    let conf = super::runs::parse_conf(conf.as_deref())?;
    let logical_date = match &logical_date {
        None => SystemClock.now(),
        Some(text) => gust_core::date::parse_datetime(text, dag.settings.timezone)
            .context("--logical-date")?,
    };
    let stamp = logical_date.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, false);
    let run_id = RunId::new(format!("manual__{stamp}"))?;
    let home = crate::config::home()?;
    let (variables, connections) = super::runtime()?.block_on(async {
        let variables = super::test_run::variables_if_any(config, &home).await;
        let connections = crate::runtimes::connections(config, &home).await;
        (variables, connections)
    });
    let connections = (connections.into_iter())
        .map(|c| (c.conn_id.clone(), template_connection(c)))
        .collect();
    let lookup = Arc::new(RunXComs::new(Arc::new(TemplateValues::fixed(
        variables,
        connections,
    ))));
    let run = RunContext {
        run_id: &run_id,
        interval: DataInterval {
            start: logical_date,
            end: logical_date,
        },
        conf: &conf,
        asset_events: &serde_json::Map::new(),
    };
    let args = render_args(
        &Renderer::new(),
        dag,
        task,
        run,
        1,
        mapped.as_ref(),
        lookup.clone(),
    )
    .map_err(|err| anyhow::anyhow!("{}.{task_id}: {err}", dag.id))?
    // What its templates push is recorded by runs only: a dry run contacts nothing.
    .args;
    // Its values under sensitive names are masked wherever the output repeats them.
    gust_secrets::add_from(&args);

    let mut do_xcom_push = task.settings.do_xcom_push;
    let args = match task.operator.as_str() {
        "kubernetes_pod" => args,
        operator
            if gust_operators::python::runs_in_task_sdk(operator)
                && config.kubernetes.worker_image.is_some() =>
        {
            // Its return value goes through the Execution API: no XCom sidecar.
            do_xcom_push = false;
            let spec = gust_scheduler::launch::launch_spec(
                dag,
                task,
                &run_id,
                logical_date,
                map_index,
                1,
                args,
                std::path::Path::new("/dev/null"),
                gust_executor::RunFacts::default(),
                lookup.clone(),
            );
            show(&worker_pod_comments(&spec, config)?);
            worker_pod_args(&spec, config)
                .map_err(|err| anyhow::anyhow!("{}.{task_id}: {err:#}", dag.id))?
        }
        "kubernetes_job" | "kueue_job" => {
            show(&job_manifest(
                dag,
                task,
                &args,
                (&run_id, map_index),
                config,
            )?);
            return Ok(ExitCode::SUCCESS);
        }
        "spark_kubernetes"
        | "kubernetes_apply"
        | "kubernetes_delete_resource"
        | "kueue_install" => {
            show(&resource_manifests(
                dag,
                task,
                &args,
                (&run_id, map_index),
                config,
            )?);
            return Ok(ExitCode::SUCCESS);
        }
        "processing" => {
            let kind = if config.kubernetes.runtime == PodRuntime::Local {
                PodRuntimeKind::Local
            } else {
                PodRuntimeKind::Cluster
            };
            let step = Step {
                dag_id: dag.id.as_str(),
                run_id: run_id.as_str(),
                task_id,
                map_index,
                dag_file: &dag.fileloc,
                do_xcom_push: task.settings.do_xcom_push,
            };
            let settings = crate::runtimes::step_settings(config, kind, false);
            let plan = gust_processing::plan(&args, &step, &settings)
                .map_err(|err| anyhow::anyhow!("{}.{task_id}: {}", dag.id, err.one_line()))?;
            if kind == PodRuntimeKind::Cluster
                && gust_artifacts::uri::local_path(&settings.root).is_some()
            {
                println!(
                    "# warning: {}",
                    gust_processing::executor::LOCAL_ROOT_ON_CLUSTER
                );
            }
            show(&plan_comments(&plan));
            plan.pod_args
        }
        _ => {
            // As the API shows rendered fields: values under sensitive names hidden whole.
            let masker = gust_secrets::current();
            let shown: serde_json::Map<String, serde_json::Value> = args
                .iter()
                .map(|(name, value)| (name.clone(), masker.redact(value, Some(name))))
                .collect();
            show(&gust_kube::kube_yaml::to_string(&shown)?);
            return Ok(ExitCode::SUCCESS);
        }
    };
    let pod_args =
        PodArgs::read(&args).map_err(|err| anyhow::anyhow!("{}.{task_id}: {err}", dag.id))?;
    let template = gust_kube::template::load(&pod_args, &dag.fileloc)
        .map_err(|err| anyhow::anyhow!("{}.{task_id}: {err}", dag.id))?;
    let defaults = PodDefaults {
        namespace: config.kubernetes.namespace.clone(),
        xcom_sidecar_image: config.kubernetes.xcom_sidecar_image.clone(),
        ..PodDefaults::default()
    };
    let pod = build_pod(&PodRequest {
        args: &pod_args,
        labels: TryLabels {
            dag_id: dag.id.as_str(),
            task_id,
            run_id: run_id.as_str(),
            try_number: 1,
            map_index,
        },
        template_file: template.as_ref(),
        do_xcom_push,
        unique: &names::random_suffix(),
        defaults: &defaults,
    })
    .map_err(|err| anyhow::anyhow!("{}.{task_id}: {err}", dag.id))?;
    show(&gust_kube::manifest::to_yaml(&pod)?);
    Ok(ExitCode::SUCCESS)
}

/// What a Python task's worker pod comes with, as YAML comments: its Secret, whose content
/// (the workload with the try's token, and the DAG bundle) is never printed.
fn worker_pod_comments(
    spec: &gust_executor::LaunchSpec,
    config: &Config,
) -> anyhow::Result<String> {
    let (keys, _) = gust_exec_local::python_pod::bundle(&spec.dag_file)?;
    let files: Vec<&str> = keys.keys().map(String::as_str).collect();
    let mut text = format!(
        "# a Python task: runs in [kubernetes] worker_image's Task SDK, as a pod\n\
         # Secret {} is created with the pod (owned by it, deleted with it) and mounted at {}:\n\
         # workload.json (the ExecuteTask workload, with the try's token: never printed), {}\n",
        gust_exec_local::python_pod::secret_name(&spec.key),
        gust_exec_local::python_pod::BUNDLE_MOUNT,
        files.join(", ")
    );
    if config.kubernetes.runtime == PodRuntime::Cluster
        && config.kubernetes.execution_api_url.is_none()
    {
        text.push_str("# warning: set [kubernetes] execution_api_url: pods on a cluster cannot reach the Execution API without it\n");
    }
    Ok(text)
}

/// A Python task's worker pod's `kubernetes_pod` arguments: Gust's own, laid over `[kubernetes]
/// worker_pod_template_file` and the task's `executor_config` `pod_override`.
fn worker_pod_args(
    spec: &gust_executor::LaunchSpec,
    config: &Config,
) -> anyhow::Result<serde_json::Map<String, serde_json::Value>> {
    let settings = gust_exec_local::python_pod::WorkerSettings {
        image: config.kubernetes.worker_image.clone().unwrap_or_default(),
        // Without the setting, the local pod runtime's workers use the loopback port the
        // scheduler picks when it starts.
        api_url: config
            .kubernetes
            .execution_api_url
            .clone()
            .unwrap_or_else(|| "http://127.0.0.1:PORT/execution/".to_owned()),
        heartbeat_timeout: config.scheduler.task_instance_heartbeat_timeout,
        pod_template: crate::python_tasks::worker_pod_template(config)?,
    };
    let name = gust_exec_local::python_pod::secret_name(&spec.key);
    Ok(gust_exec_local::python_pod::pod_args(
        &settings, &name, &spec.args,
    )?)
}

/// The Job a `kubernetes_job` or `kueue_job` task would create, templates rendered, as YAML
/// with secret values masked.
fn job_manifest(
    dag: &Dag,
    task: &gust_core::task::Task,
    args: &serde_json::Map<String, serde_json::Value>,
    (run_id, map_index): (&RunId, i32),
    config: &Config,
) -> anyhow::Result<String> {
    let task_id = task.id.as_str();
    let fail = |err: String| anyhow::anyhow!("{}.{task_id}: {err}", dag.id);
    let job_args = gust_operators::kubernetes_job::JobArgs::read_for(&task.operator, args)
        .map_err(|err| fail(err.to_string()))?;
    let pod_template = gust_kube::template::load(&job_args.pod, &dag.fileloc)
        .map_err(|err| fail(err.to_string()))?;
    let job_template =
        gust_kube::template::load_job_template(job_args.job_template_file.as_deref(), &dag.fileloc)
            .map_err(fail)?;
    let defaults = PodDefaults {
        namespace: config.kubernetes.namespace.clone(),
        xcom_sidecar_image: config.kubernetes.xcom_sidecar_image.clone(),
        ..PodDefaults::default()
    };
    let job = gust_kube::build::job::build_job(&gust_kube::build::job::JobRequest {
        args: &job_args,
        labels: TryLabels {
            dag_id: dag.id.as_str(),
            task_id,
            run_id: run_id.as_str(),
            try_number: 1,
            map_index,
        },
        pod_template_file: pod_template.as_ref(),
        job_template_file: job_template.as_ref(),
        do_xcom_push: task.settings.do_xcom_push,
        unique: &names::random_suffix(),
        defaults: &defaults,
    })
    .map_err(|err| fail(err.to_string()))?;
    Ok(gust_kube::manifest::job_to_yaml(&job)?)
}

/// A processing step's plan as YAML comments, before its pod.
fn plan_comments(plan: &StepPlan) -> String {
    let mut text = String::new();
    for upload in &plan.uploads {
        text.push_str(&format!(
            "# upload before the pod starts: {} -> {}\n",
            upload.local.display(),
            upload.uri
        ));
    }
    for (name, uri) in &plan.inputs {
        text.push_str(&format!("# input {name}: {uri}\n"));
    }
    for (name, uri) in &plan.outputs {
        text.push_str(&format!("# output {name}: {uri}\n"));
    }
    text
}

/// What a Spark, apply, delete or Kueue task would send, templates rendered, secret values
/// masked: the SparkApplication, or the manifests (as one YAML stream, a comment saying what
/// is done with them), or for `kueue_install` the release file's objects.
fn resource_manifests(
    dag: &Dag,
    task: &gust_core::task::Task,
    args: &serde_json::Map<String, serde_json::Value>,
    (run_id, map_index): (&RunId, i32),
    config: &Config,
) -> anyhow::Result<String> {
    use gust_kube::documents::{self, Document};
    let task_id = task.id.as_str();
    let fail = |err: String| anyhow::anyhow!("{}.{task_id}: {err}", dag.id);
    let yaml =
        |value: &serde_json::Value| gust_kube::kube_yaml::to_string(&documents::masked(value));
    match task.operator.as_str() {
        "spark_kubernetes" => {
            let spark_args = gust_operators::spark_kubernetes::SparkArgs::read(args)
                .map_err(|err| fail(err.to_string()))?;
            let template = gust_kube::spark::load_template(&spark_args, &dag.fileloc)
                .map_err(|err| fail(err.to_string()))?;
            let app = gust_kube::spark::build_application(&gust_kube::spark::SparkRequest {
                args: &spark_args,
                template: &template,
                labels: TryLabels {
                    dag_id: dag.id.as_str(),
                    task_id,
                    run_id: run_id.as_str(),
                    try_number: 1,
                    map_index,
                },
                unique: &names::random_suffix(),
                default_namespace: config.kubernetes.namespace.as_deref(),
            })
            .map_err(|err| fail(err.to_string()))?;
            Ok(yaml(&app)?)
        }
        "kueue_install" => {
            let kueue = gust_operators::apply::KueueInstallArgs::read(args)
                .map_err(|err| fail(err.to_string()))?;
            let folder = config
                .kubernetes
                .kueue_manifests_folder
                .as_ref()
                .ok_or_else(|| {
                    fail(format!(
                        "kueue_version {}: set [kubernetes] kueue_manifests_folder to the folder \
                     holding {}",
                        kueue.kueue_version,
                        kueue.file_name()
                    ))
                })?;
            let path = folder.join(kueue.file_name());
            let docs = documents::read_file(&path.to_string_lossy(), &dag.fileloc)
                .map_err(|err| fail(err.to_string()))?;
            let mut text = format!(
                "# apply server-side (field manager {}) the {} objects of {}:\n",
                gust_kube::runtime::FIELD_MANAGER,
                docs.len(),
                path.display()
            );
            for doc in &docs {
                text.push_str(&format!("#   {} {}\n", doc.kind(), doc.name()));
            }
            Ok(text)
        }
        operator => {
            let resource_args = gust_operators::apply::ResourceArgs::read(args)
                .map_err(|err| fail(err.to_string()))?;
            let docs: Vec<Document> = gust_kube::runtime::manifests(&resource_args, &dag.fileloc)
                .map_err(|err| fail(err.to_string()))?;
            let namespace = resource_args
                .namespace
                .clone()
                .or_else(|| config.kubernetes.namespace.clone())
                .unwrap_or_else(|| "the cluster's default namespace".to_owned());
            let mut text = if operator == "kubernetes_delete_resource" {
                format!(
                    "# delete, last first; objects naming no namespace are looked up in {namespace}\n"
                )
            } else {
                format!(
                    "# apply server-side (field manager {}); namespaced objects naming no namespace go to {namespace}\n",
                    gust_kube::runtime::FIELD_MANAGER
                )
            };
            for (i, doc) in docs.iter().enumerate() {
                if i > 0 {
                    text.push_str("---\n");
                }
                text.push_str(&yaml(&doc.object)?);
            }
            Ok(text)
        }
    }
}
