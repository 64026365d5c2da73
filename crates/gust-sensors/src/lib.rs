//! The sensor runtime: runs Gust's native sensors (`TimeDeltaSensor`, `DateTimeSensor`,
//! `TimeSensor`, `ExternalTaskSensor`, `FileSensor`, `S3KeySensor`, `HttpSensor`, `SqlSensor`,
//! `SparkKubernetesSensor` and Gust's `KubernetesResourceSensor`), `ExternalTaskMarker` and
//! `HttpOperator` (one async request) inside the scheduler's process, with no Python and no
//! process.
//!
//! A try is one poke, an async check: met, the try succeeds; not yet, it ends as
//! [`TryOutcome::Rescheduled`] at the next poke's time and the scheduler keeps it
//! `up_for_reschedule` on a timer, so a waiting sensor holds no slot, no task and no memory here.
//! Every sensor behaves as Airflow's `reschedule` mode, whatever its `mode` or `deferrable`
//! says; `timeout` counts from the try's first poke. The runtime reports outcomes and never
//! writes task-instance state. What a poke means is decided by the pure [`decide::decide`];
//! the pokes are in `time`, `external`, `file`, `s3`, `http`, `sql` and `kubernetes`.

pub mod decide;
mod external;
mod file;
pub mod http;
pub mod kubernetes;
mod s3;
pub mod sql;
pub mod time;

use std::sync::Arc;

use gust_core::clock::Clock;
use gust_executor::running::{RunningTries, TryHandle};
use gust_executor::try_log::LogWriter;
use gust_executor::{
    Executor, FailureReason, LaunchError, LaunchSpec, Routed, TryEvent, TryOutcome,
};
use gust_operators::read_args;
use gust_operators::sensors::external::{ExternalTaskArgs, ExternalTaskMarkerArgs};
use gust_operators::sensors::file::FileArgs;
use gust_operators::sensors::http::{HttpOperatorArgs, HttpSensorArgs};
use gust_operators::sensors::kubernetes::{ResourceSensorArgs, SparkSensorArgs};
use gust_operators::sensors::s3::S3KeyArgs;
use gust_operators::sensors::sql::SqlSensorArgs;
use gust_operators::sensors::time::{DateTimeArgs, TimeArgs, TimeDeltaArgs};
use gust_operators::sensors::{NATIVE, SensorSettings, is_native};
use gust_store::Store;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::decide::{Facts, Poke, decide};

/// Runs native sensors' pokes.
#[derive(Clone)]
pub struct SensorExecutor {
    inner: Arc<Inner>,
}

struct Inner {
    clock: Arc<dyn Clock>,
    running: Arc<RunningTries>,
    tasks: TaskTracker,
    shutdown: CancellationToken,
    /// The metadata database `ExternalTaskSensor` reads (`None`: it fails, saying so).
    store: Option<Store>,
    /// The HTTP client `HttpSensor` and `HttpOperator` share (its connections pooled), or why
    /// it could not be built.
    http: Result<reqwest::Client, String>,
    /// The clusters the Kubernetes sensors read (unset: they fail, saying a cluster is needed).
    kubernetes: std::sync::OnceLock<gust_kube::runtime::ObjectReader>,
}

impl SensorExecutor {
    /// A runtime reporting on `events`; `store` is what `ExternalTaskSensor` reads.
    #[must_use]
    pub fn new(
        events: mpsc::Sender<TryEvent>,
        clock: Arc<dyn Clock>,
        store: Option<Store>,
    ) -> Self {
        let tasks = TaskTracker::new();
        let shutdown = CancellationToken::new();
        Self {
            inner: Arc::new(Inner {
                clock,
                running: Arc::new(RunningTries::new(shutdown.clone(), tasks.clone(), events)),
                tasks,
                shutdown,
                store,
                http: reqwest::Client::builder()
                    .user_agent(concat!("gust/", env!("CARGO_PKG_VERSION")))
                    .build()
                    .map_err(|err| format!("the HTTP client could not be built: {err}")),
                kubernetes: std::sync::OnceLock::new(),
            }),
        }
    }

    /// `executor`, sending the tries of every operator this runtime runs to it.
    #[must_use]
    pub fn route(&self, mut executor: Routed) -> Routed {
        let runtime: Arc<dyn Executor> = Arc::new(self.clone());
        for operator in NATIVE {
            executor = executor.route(operator, runtime.clone());
        }
        executor
    }

    /// Lets the Kubernetes sensors read objects through `objects` (the cluster runtime's
    /// clusters and connections); only the first call counts.
    pub fn use_kubernetes(&self, objects: gust_kube::runtime::ObjectReader) {
        let _ = self.inner.kubernetes.set(objects);
    }

    /// Stops every poke under way (their tries fail as killed) and waits for them.
    pub async fn shutdown(&self) {
        self.inner.shutdown.cancel();
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
    }

    fn spawn(&self, spec: LaunchSpec, handle: TryHandle) {
        let inner = Arc::clone(&self.inner);
        let key = spec.key.clone();
        self.inner.running.spawn(key, async move {
            inner.running.started(&spec.key).await;
            let outcome = tokio::select! {
                outcome = inner.poke(&spec) => outcome,
                () = handle.cancel.cancelled() => TryOutcome::Failed(FailureReason::Killed(handle.reason())),
            };
            if let Ok(mut log) = LogWriter::open(&spec.log_path, inner.clock.as_ref()).await {
                let _ = log.line("gust", &outcome.summary()).await;
                let _ = log.flush().await;
            }
            outcome
        });
    }
}

impl Inner {
    /// One poke of `spec`'s sensor, and what it means for the try.
    async fn poke(&self, spec: &LaunchSpec) -> TryOutcome {
        let start = self.clock.now();
        let lookup = spec.context.lookup.0.as_deref();
        let invalid = |err: gust_operators::ArgumentError| {
            TryOutcome::Failed(FailureReason::InvalidArguments(err.to_string()))
        };
        macro_rules! args {
            ($ty:ty) => {
                match read_args::<$ty>(&spec.args) {
                    Ok(args) => args,
                    Err(err) => return invalid(err),
                }
            };
        }
        let (poke, said, settings): (Poke, String, SensorSettings) = match spec.operator.as_str() {
            "time_delta_sensor" => {
                let args = args!(TimeDeltaArgs);
                let (poke, said) = time::time_delta(&args, &spec.context, start);
                (poke, said, args.settings)
            }
            "date_time_sensor" => {
                let args = args!(DateTimeArgs);
                let (poke, said) = time::date_time(&args, start);
                (poke, said, args.settings)
            }
            "time_sensor" => {
                let args = args!(TimeArgs);
                let (poke, said) = time::time_of_day(&args, &spec.context, start);
                (poke, said, args.settings)
            }
            "external_task_sensor" => {
                let args = args!(ExternalTaskArgs);
                let soft_fail = args.settings.soft_fail;
                let (poke, said) = external::poke(
                    &args,
                    self.store.as_ref(),
                    spec.context.logical_date,
                    soft_fail,
                )
                .await;
                (poke, said, args.settings)
            }
            "file_sensor" => {
                let args = args!(FileArgs);
                let (poke, said) = file::poke(&args, lookup).await;
                (poke, said, args.settings)
            }
            "s3_key_sensor" => {
                let args = args!(S3KeyArgs);
                let (poke, said) = s3::poke(&args, lookup).await;
                (poke, said, args.settings)
            }
            "http_sensor" => {
                let args = args!(HttpSensorArgs);
                let (poke, said) = match &self.http {
                    Ok(client) => http::poke(client, &args, lookup).await,
                    Err(why) => (Poke::Error(why.clone()), String::new()),
                };
                (poke, said, args.settings)
            }
            "http_operator" => {
                // Not a sensor: one request, its body the XCom (Airflow's `response.text`).
                let args = args!(HttpOperatorArgs);
                let client = match &self.http {
                    Ok(client) => client,
                    Err(why) => return TryOutcome::Failed(FailureReason::Spawn(why.clone())),
                };
                return match http::run(client, &args, lookup).await {
                    Ok(answer) => {
                        if let Ok(mut log) =
                            LogWriter::open(&spec.log_path, self.clock.as_ref()).await
                        {
                            let mut line = format!(
                                "{} answered {}",
                                args.endpoint.as_deref().unwrap_or("/"),
                                answer.status
                            );
                            if args.log_response {
                                line = format!("{line}: {}", gust_secrets::mask(&answer.body));
                            }
                            let _ = log.line("gust", &line).await;
                            let _ = log.flush().await;
                        }
                        TryOutcome::Succeeded {
                            xcom: spec
                                .do_xcom_push
                                .then(|| serde_json::Value::String(answer.body)),
                        }
                    }
                    Err(why) => TryOutcome::Failed(FailureReason::Task(why)),
                };
            }
            "sql_sensor" => {
                let args = args!(SqlSensorArgs);
                let task = sql::Task {
                    dag_id: spec.key.dag_id.as_str(),
                    task_id: spec.key.task_id.as_str(),
                };
                let (poke, said) = sql::poke(&args, lookup, task).await;
                (poke, said, args.settings)
            }
            "kubernetes_resource_sensor" => {
                let args = args!(ResourceSensorArgs);
                let (poke, said) = kubernetes::poke(&args.wait(), self.kubernetes.get()).await;
                (poke, said, args.settings)
            }
            "spark_kubernetes_sensor" => {
                let args = args!(SparkSensorArgs);
                let (poke, said) = kubernetes::poke(&args.wait(), self.kubernetes.get()).await;
                (poke, said, args.settings)
            }
            "external_task_marker" => {
                // An empty task in its run; what it names matters only to a clear (see docs).
                let _ = args!(ExternalTaskMarkerArgs);
                return TryOutcome::Succeeded { xcom: None };
            }
            other => {
                return TryOutcome::Failed(FailureReason::Spawn(format!(
                    "the sensor runtime does not run operator \"{other}\""
                )));
            }
        };
        if let Ok(mut log) = LogWriter::open(&spec.log_path, self.clock.as_ref()).await {
            if !said.is_empty() {
                let _ = log.line("gust", &said).await;
            }
            if let Poke::Error(why) = &poke {
                let _ = log
                    .line("gust", &format!("Sensor poke failed: {why}"))
                    .await;
            }
            let _ = log.flush().await;
        }
        let facts = Facts {
            dag_id: spec.key.dag_id.as_str(),
            task_id: spec.key.task_id.as_str(),
            started_at: spec.context.reschedules.first_start.unwrap_or(start),
            now: self.clock.now(),
        };
        decide(poke, &settings, &facts)
    }
}

impl Executor for SensorExecutor {
    fn start(&self, spec: LaunchSpec) -> Result<(), LaunchError> {
        if !is_native(&spec.operator) {
            return Err(LaunchError::UnknownOperator(spec.operator));
        }
        let handle = self.inner.running.register(&spec.key)?;
        self.spawn(spec, handle);
        Ok(())
    }

    fn kill(&self, key: &gust_executor::TryKey, reason: &str) {
        self.inner.running.kill(key, reason);
    }

    fn running(&self) -> usize {
        self.inner.running.len()
    }

    fn adopt(&self, spec: LaunchSpec) {
        // A poke has no effect to lose: the adopted try pokes again.
        let key = spec.key.clone();
        match self.inner.running.register(&key) {
            Ok(handle) => self.spawn(spec, handle),
            Err(err) => self.inner.running.spawn(key, async move {
                TryOutcome::Failed(FailureReason::Lost(err.to_string()))
            }),
        }
    }

    fn release(&self, _key: &gust_executor::TryKey) {}
}
