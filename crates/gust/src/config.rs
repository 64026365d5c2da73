//! Configuration: `gust.toml` in GUST_HOME, overridden by `GUST__SECTION__KEY` environment
//! variables, overridden by command-line flags.

use std::path::{Path, PathBuf};

use anyhow::Context;
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// The environment variable naming Gust's home folder (like AIRFLOW_HOME).
pub const HOME_VAR: &str = "GUST_HOME";
/// The configuration file's name inside GUST_HOME.
pub const CONFIG_FILE: &str = "gust.toml";

/// The whole configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[core]`: where things are and how much runs at once.
    pub core: CoreConfig,
    /// `[logging]`: where try logs go.
    pub logging: LoggingConfig,
    /// `[database]`: the metadata database.
    pub database: DatabaseConfig,
    /// `[kubernetes]`: where `kubernetes_pod` tries run.
    #[serde(default)]
    pub kubernetes: KubernetesConfig,
    /// `[api]`: the REST API and web UI server.
    #[serde(default)]
    pub api: ApiConfig,
    /// `[artifacts]`: the object store processing steps read inputs from and write outputs to.
    pub artifacts: ArtifactsConfig,
    /// `[scheduler]`: how schedulers share the work.
    #[serde(default)]
    pub scheduler: SchedulerSection,
    /// `[python]`: Python tasks, run by Airflow's Task SDK.
    #[serde(default)]
    pub python: PythonSection,
    /// `[dag_processor]`: how Python DAG files are parsed (with `[python] interpreter`).
    #[serde(default)]
    pub dag_processor: DagProcessorSection,
    /// `[smtp]`: the server alert emails and `SmtpNotifier`s go through (Airflow's section).
    #[serde(default)]
    pub smtp: gust_notify::SmtpConfig,
    /// `[email]`: which SMTP connection, when it exists, is used instead of `[smtp]`.
    #[serde(default)]
    pub email: EmailSection,
}

/// `[email]`: Airflow's name for the SMTP connection emails use.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmailSection {
    /// The SMTP connection alert emails and `SmtpNotifier`s without `smtp_conn_id` use when it
    /// exists (default `smtp_default`, Airflow's); `[smtp]` is used when it does not.
    pub email_conn_id: String,
}

impl Default for EmailSection {
    fn default() -> Self {
        Self {
            email_conn_id: "smtp_default".to_owned(),
        }
    }
}

/// `[dag_processor]`: Airflow's names and defaults for parsing Python DAG files.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DagProcessorSection {
    /// How long parsing one Python DAG file may take before it is killed and the file gets an
    /// import error (default `50s`, Airflow's `dag_file_processor_timeout`).
    #[serde(with = "humantime_serde_compat")]
    pub dag_file_processor_timeout: std::time::Duration,
    /// How many Python DAG files are parsed at once (default 2, Airflow's `parsing_processes`).
    pub parsing_processes: usize,
    /// How long an unchanged Python DAG file's DAGs are kept before it is parsed again
    /// (default `30s`, Airflow's `min_file_process_interval`); a changed file is parsed at the
    /// next load.
    #[serde(with = "humantime_serde_compat")]
    pub min_file_process_interval: std::time::Duration,
}

impl Default for DagProcessorSection {
    fn default() -> Self {
        Self {
            dag_file_processor_timeout: std::time::Duration::from_secs(50),
            parsing_processes: 2,
            min_file_process_interval: std::time::Duration::from_secs(30),
        }
    }
}

/// `[python]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PythonSection {
    /// The Python that runs Python tasks (`PythonOperator`) through Airflow's Task SDK: a
    /// virtualenv's `bin/python` with `apache-airflow==3.3.2` and `dag-factory==1.1.0` (or a
    /// command on PATH). Default: none, and DAG files with Python tasks are refused, naming
    /// this setting. See docs/python.md.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interpreter: Option<PathBuf>,
}

/// `[scheduler]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchedulerSection {
    /// How long a scheduler that stopped heart-beating keeps its DAGs before another scheduler
    /// takes them over (default `30s`, Airflow's `scheduler_health_check_threshold`). Each
    /// scheduler renews its claims every second.
    #[serde(with = "humantime_serde_compat")]
    pub scheduler_health_check_threshold: std::time::Duration,
    /// Serve `GET /health` and `GET /metrics` on a small HTTP server beside `gust scheduler`
    /// (default true; Airflow's name, whose default is false). `/health` answers 503 once the
    /// scheduler loop's heartbeat is older than `scheduler_health_check_threshold` or the
    /// database does not answer. `gust standalone` serves both on its API port instead.
    pub enable_health_check: bool,
    /// The address that server listens on (default `0.0.0.0`, Airflow's).
    pub scheduler_health_check_server_host: String,
    /// Its port (default 8974, Airflow's).
    pub scheduler_health_check_server_port: u16,
    /// The run ids a user may give when triggering a run (the API's `dag_run_id`, `gust dags
    /// trigger --run-id`), a regular expression matched from the id's start (default
    /// `^[A-Za-z0-9_.~:+-]+$`, Airflow's). Ids Gust generates are never checked.
    pub allowed_run_id_pattern: String,
    /// How long a Python task's worker may go without a heartbeat before the try is killed and
    /// fails, a "zombie" (default `300s`, Airflow's `task_instance_heartbeat_timeout`); the
    /// worker is told the same, so it heartbeats well within it.
    #[serde(with = "humantime_serde_compat")]
    pub task_instance_heartbeat_timeout: std::time::Duration,
    /// What a cron string written as a DAG's schedule means (default true): a
    /// `CronDataIntervalTimetable`, whose run for `[t0, t1)` has logical date `t0` and starts
    /// after `t1`; false makes it a `CronTriggerTimetable`, whose run at `t` has logical date
    /// `t`. Airflow 3's default is false; Gust keeps the data intervals it has always used.
    pub create_cron_data_intervals: bool,
    /// The same for a timedelta schedule (default true): `DeltaDataIntervalTimetable`, else
    /// `DeltaTriggerTimetable`.
    pub create_delta_data_intervals: bool,
}

impl SchedulerSection {
    /// What cron strings and timedeltas written as schedules mean.
    #[must_use]
    pub fn schedule_defaults(&self) -> gust_core::schedule::ScheduleDefaults {
        gust_core::schedule::ScheduleDefaults {
            cron_data_intervals: self.create_cron_data_intervals,
            delta_data_intervals: self.create_delta_data_intervals,
        }
    }

    /// `allowed_run_id_pattern`, compiled.
    pub fn run_id_pattern(&self) -> anyhow::Result<gust_scheduler::trigger::RunIdPattern> {
        gust_scheduler::trigger::RunIdPattern::new(&self.allowed_run_id_pattern).with_context(
            || {
                format!(
                    "[scheduler] allowed_run_id_pattern {:?} is not a valid regular expression",
                    self.allowed_run_id_pattern
                )
            },
        )
    }
}

impl Default for SchedulerSection {
    fn default() -> Self {
        Self {
            scheduler_health_check_threshold: std::time::Duration::from_secs(30),
            enable_health_check: true,
            scheduler_health_check_server_host: "0.0.0.0".to_owned(),
            scheduler_health_check_server_port: 8974,
            allowed_run_id_pattern: gust_scheduler::trigger::DEFAULT_RUN_ID_PATTERN.to_owned(),
            task_instance_heartbeat_timeout: std::time::Duration::from_secs(300),
            create_cron_data_intervals: true,
            create_delta_data_intervals: true,
        }
    }
}

/// `[artifacts]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArtifactsConfig {
    /// Where runs' artifacts go: an object store URI (`s3://bucket/prefix`, `oss://`, `gs://`,
    /// `az://`, `file://`) or a folder (default `$GUST_HOME/artifacts`). A step's outputs go to
    /// `<root>/<dag_id>/<run_id>/<task_id>/<output>` unless it names a destination.
    pub root: String,
    /// The connection whose fields are the store's credentials and settings (login = access
    /// key, password = secret key, extra `endpoint_url`, `region_name`...), used when it exists
    /// (default `artifacts_default`). Without it, the standard environment and instance
    /// credentials are used.
    pub conn_id: String,
    /// The Kubernetes Secret, in the pods' namespace, holding the same keys as that connection
    /// for processing pods on a cluster (default: none, pods use their service account's
    /// instance credentials). The local pod runtime serves the connection itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_secret: Option<String>,
    /// The image of processing pods' init container, which holds the `gust` binary (default
    /// `gust:<this version>`).
    pub gust_image: String,
}

impl ArtifactsConfig {
    /// The defaults for `home`.
    #[must_use]
    pub fn defaults(home: &Path) -> Self {
        Self {
            root: home.join("artifacts").display().to_string(),
            conn_id: "artifacts_default".to_owned(),
            pod_secret: None,
            gust_image: concat!("gust:", env!("CARGO_PKG_VERSION")).to_owned(),
        }
    }
}

/// `[api]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// The address to listen on (default `0.0.0.0`, all interfaces, as Airflow's API server).
    pub host: String,
    /// The port (default 8080).
    pub port: u16,
    /// The secret access tokens are signed with; every API server of one installation must
    /// share it. Default: a secret generated on first use into `$GUST_HOME/api_secret.key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key: Option<String>,
    /// How long an access token is valid (default `24h`, Airflow's `jwt_expiration_time`).
    #[serde(with = "humantime_serde_compat")]
    pub token_ttl: std::time::Duration,
    /// Sign-in attempts (`/auth/token`, `/login`) per minute for one user name, from any
    /// address, before answering 429 (default 10; 0 for no limit).
    pub auth_rate_limit_per_user: u32,
    /// Sign-in attempts per minute from one client address, for any names (default 20; 0 for
    /// no limit). Behind a reverse proxy, set `enable_proxy_fix` so the client's address is
    /// the one the proxy names, not the proxy's own.
    pub auth_rate_limit_per_address: u32,
    /// Believe a reverse proxy's `X-Forwarded-For` and `X-Forwarded-Proto` (default false, as
    /// Airflow's `enable_proxy_fix`): turn on only when a proxy in front sets them, since any
    /// client can send them. The session cookie is `Secure` when the proxy says https.
    pub enable_proxy_fix: bool,
    /// Show the effective configuration at `GET /api/v2/config` to ops and admins (default
    /// false, as Airflow's `expose_config`: the configuration names hosts, folders and
    /// buckets). Sensitive values ([`SENSITIVE_OPTIONS`]) are always shown as `< hidden >`.
    #[serde(default)]
    pub expose_config: bool,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            host: "0.0.0.0".to_owned(),
            port: 8080,
            secret_key: None,
            token_ttl: std::time::Duration::from_secs(24 * 3600),
            auth_rate_limit_per_user: gust_server::auth::throttle::ThrottleSettings::default()
                .per_user,
            auth_rate_limit_per_address: gust_server::auth::throttle::ThrottleSettings::default()
                .per_address,
            enable_proxy_fix: false,
            expose_config: false,
        }
    }
}

/// Durations in the configuration as humans write them (`24h`, `30m`).
mod humantime_serde_compat {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &std::time::Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<std::time::Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text).map_err(|e| {
            serde::de::Error::custom(format!("\"{text}\" is not a duration like 24h or 30m: {e}"))
        })
    }
}

/// `[kubernetes]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubernetesConfig {
    /// `cluster` (default): pods on a Kubernetes cluster; `local`: the pod's commands as
    /// processes on this host, for developing pod DAGs without a cluster.
    pub runtime: PodRuntime,
    /// The namespace pods go to when a task names none (default: the connection's, the
    /// scheduler's own when it runs in a cluster, then `default`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Use the in-cluster service account (default: when running in a pod).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_cluster: Option<bool>,
    /// A kubeconfig file (default: `KUBECONFIG`, then `~/.kube/config`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_file: Option<PathBuf>,
    /// The kubeconfig context (default: its current context).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_context: Option<String>,
    /// The XCom sidecar's image (default `alpine`, as Airflow's).
    pub xcom_sidecar_image: String,
    /// The folder `kueue_install` tasks read Kueue release manifests from, each saved as
    /// `kueue-<version>.yaml` (default: none; Gust never downloads at run time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kueue_manifests_folder: Option<PathBuf>,
    /// The image Python tasks run in as pods, on the pod runtime in force (default: none, and
    /// they run locally in `[python] interpreter`): Airflow 3.3 with dag-factory, such as
    /// `apache/airflow:3.3.2` with `_PIP_ADDITIONAL_REQUIREMENTS` or an image derived from it
    /// (docs/python.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker_image: Option<String>,
    /// A Pod manifest (YAML) every worker pod is laid over, as Airflow's `[kubernetes_executor]
    /// pod_template_file` (default: none): resources, env, node selectors, tolerations, service
    /// account, volumes; the worker's container is the one named `base` (docs/python.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker_pod_template_file: Option<PathBuf>,
    /// The address worker pods reach this process's Execution API at, ending in `/execution/`
    /// (e.g. `http://$(POD_IP):8794/execution/` in a Deployment). Needed for worker pods on a
    /// cluster:
    /// the process that runs the tasks then also serves the Execution API on all interfaces at
    /// this URL's port. The local pod runtime uses the loopback address when it is not set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_api_url: Option<String>,
}

impl Default for KubernetesConfig {
    fn default() -> Self {
        Self {
            runtime: PodRuntime::Cluster,
            namespace: None,
            in_cluster: None,
            config_file: None,
            cluster_context: None,
            xcom_sidecar_image: "alpine".to_owned(),
            kueue_manifests_folder: None,
            worker_image: None,
            worker_pod_template_file: None,
            execution_api_url: None,
        }
    }
}

/// Where `kubernetes_pod` tries run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PodRuntime {
    /// On a Kubernetes cluster.
    Cluster,
    /// As processes on this host (the local pod runtime).
    Local,
}

/// `[database]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite://PATH` (default `sqlite://$GUST_HOME/gust.db`) or `postgres://USER:PASSWORD@HOST/DB`.
    pub url: String,
}

/// `[core]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoreConfig {
    /// The folder DAG files are read from (default `$GUST_HOME/dags`).
    pub dags_folder: PathBuf,
    /// How many tries may run at once on this host (default 32, Airflow's).
    pub parallelism: usize,
    /// Whether DAGs seen for the first time start paused (default true, as in Airflow); a DAG's
    /// own `is_paused_upon_creation` wins.
    pub dags_are_paused_at_creation: bool,
    /// The Fernet key connection secrets are encrypted with (Airflow's format, so an Airflow
    /// `fernet_key` works). Default: a key generated on first use into `$GUST_HOME/fernet.key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fernet_key: Option<String>,
    /// More names whose values are secret, comma-separated, added to Airflow's defaults
    /// (`password`, `token`, `api_key`...; see docs/secrets.md). Default: none.
    #[serde(default)]
    pub sensitive_var_conn_names: String,
    /// Whether values under sensitive names are hidden (default true, Airflow's). Off, no name
    /// is sensitive: sensitive variables, `extra` keys, `env` values and conf keys are shown;
    /// connections' passwords and whole `extra` stay masked (see docs/secrets.md).
    #[serde(default = "default_true")]
    pub hide_sensitive_var_conn_fields: bool,
    /// Whether `POST /api/v2/connections/test` tests connections: `Disabled` (default, as
    /// Airflow: a test reaches whatever host the caller names, from the server), `Enabled`, or
    /// `Hidden` (disabled too). Read case-insensitively, as Airflow reads it.
    #[serde(default = "default_test_connection")]
    pub test_connection: String,
    /// The most instances one mapped task may have (default 1024, Airflow's): expanding over
    /// a longer list fails the task that pushed it.
    #[serde(default = "default_max_map_length")]
    pub max_map_length: usize,
    /// Whether each Python try starts a fresh interpreter (true) rather than being forked from
    /// one warm process that has imported Airflow's task runner once (default false, Airflow's
    /// name and default: its LocalExecutor forks too). Forking saves each try the interpreter's
    /// start-up and imports, about two seconds; see docs/python.md.
    #[serde(default)]
    pub execute_tasks_new_python_interpreter: bool,
}

fn default_max_map_length() -> usize {
    gust_core::mapping::DEFAULT_MAX_MAP_LENGTH
}

fn default_test_connection() -> String {
    "Disabled".to_owned()
}

fn default_true() -> bool {
    true
}

/// `[logging]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoggingConfig {
    /// Where try logs are written, in Airflow's layout (default `$GUST_HOME/logs`).
    pub base_log_folder: PathBuf,
    /// How the scheduler and API server log to stderr: `text` (default), or `json`, one object
    /// a line, for log collectors in a cluster.
    #[serde(default)]
    pub format: LogFormat,
    /// Upload each try's log to `remote_base_log_folder` when the try ends, and read it from
    /// there when the local file is gone (default false; Airflow's name).
    #[serde(default)]
    pub remote_logging: bool,
    /// Where remote logs go: a URI the artifact layer handles (`s3://bucket/logs`, `oss://`,
    /// `gs://`, `az://`, `file://`); needed with `remote_logging`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_base_log_folder: Option<String>,
    /// The connection holding the log store's credentials (default: `[artifacts] conn_id`);
    /// without it, the `GUST_ARTIFACTS_*` variables and the standard environment are used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_log_conn_id: Option<String>,
    /// Delete a try's local log once it is uploaded and the try's end recorded (default false).
    #[serde(default)]
    pub delete_local_logs: bool,
    /// Secrets shorter than this many characters are not masked (default 5, Airflow's): masking
    /// a short value would hide it in every word that contains it.
    #[serde(default = "default_min_length_masked_secret")]
    pub min_length_masked_secret: usize,
}

fn default_min_length_masked_secret() -> usize {
    gust_secrets::DEFAULT_MIN_LENGTH
}

/// How processes log (`[logging] format`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object a line.
    Json,
}

impl Config {
    /// The defaults, which depend only on GUST_HOME.
    #[must_use]
    pub fn defaults(home: &Path) -> Self {
        Self {
            core: CoreConfig {
                dags_folder: home.join("dags"),
                parallelism: 32,
                dags_are_paused_at_creation: true,
                fernet_key: None,
                sensitive_var_conn_names: String::new(),
                hide_sensitive_var_conn_fields: true,
                test_connection: default_test_connection(),
                max_map_length: default_max_map_length(),
                execute_tasks_new_python_interpreter: false,
            },
            logging: LoggingConfig {
                base_log_folder: home.join("logs"),
                format: LogFormat::Text,
                remote_logging: false,
                remote_base_log_folder: None,
                remote_log_conn_id: None,
                delete_local_logs: false,
                min_length_masked_secret: gust_secrets::DEFAULT_MIN_LENGTH,
            },
            database: DatabaseConfig {
                url: format!("sqlite://{}", home.join("gust.db").display()),
            },
            kubernetes: KubernetesConfig::default(),
            api: ApiConfig::default(),
            artifacts: ArtifactsConfig::defaults(home),
            scheduler: SchedulerSection::default(),
            python: PythonSection::default(),
            dag_processor: DagProcessorSection::default(),
            smtp: gust_notify::SmtpConfig::default(),
            email: EmailSection::default(),
        }
    }

    /// Loads the configuration for `home`: defaults, then `gust.toml`, then the environment.
    pub fn load(home: &Path) -> anyhow::Result<Self> {
        let config: Self = Self::figment(home).extract().with_context(|| {
            format!(
                "invalid configuration (from {} and GUST__* variables)",
                home.join(CONFIG_FILE).display()
            )
        })?;
        // DAG files with Python tasks load only where a Python environment runs them.
        if config.python.interpreter.is_some() {
            gust_operators::python::enable();
        }
        Ok(config)
    }

    fn figment(home: &Path) -> Figment {
        Figment::from(Serialized::defaults(Self::defaults(home)))
            .merge(Toml::file(home.join(CONFIG_FILE)))
            .merge(Env::prefixed("GUST__").split("__").lowercase(true))
    }
}

/// The options whose values are secrets (Airflow's `sensitive_config_values`, for Gust's keys):
/// the database URL carries its password, and the two keys sign tokens and encrypt secrets.
pub const SENSITIVE_OPTIONS: &[(&str, &str)] = &[
    ("core", "fernet_key"),
    ("database", "url"),
    ("api", "secret_key"),
    ("smtp", "smtp_password"),
];

impl Config {
    /// The configuration as `GET /api/v2/config` shows it: each section's options as text, in
    /// the order they are declared, unset options left out and [`SENSITIVE_OPTIONS`] replaced by
    /// `< hidden >` (the server never holds their values).
    pub fn exposed(&self) -> anyhow::Result<gust_server::ExposedConfig> {
        let tree = serde_json::to_value(self).context("the configuration cannot be shown")?;
        let serde_json::Value::Object(sections) = tree else {
            anyhow::bail!("the configuration is not a table of sections");
        };
        let sections = sections
            .into_iter()
            .filter_map(|(section, options)| match options {
                serde_json::Value::Object(options) => Some((section, options)),
                _ => None,
            })
            .map(|(section, options)| {
                let options = options
                    .into_iter()
                    .filter(|(_, value)| !value.is_null())
                    .map(|(key, value)| {
                        let shown = if SENSITIVE_OPTIONS.contains(&(section.as_str(), key.as_str()))
                        {
                            gust_server::api::config::HIDDEN.to_owned()
                        } else {
                            match value {
                                serde_json::Value::String(text) => text,
                                other => other.to_string(),
                            }
                        };
                        (key, shown)
                    })
                    .collect();
                (section, options)
            })
            .collect();
        Ok(gust_server::ExposedConfig { sections })
    }
}

/// GUST_HOME: the variable, else `~/gust`.
pub fn home() -> anyhow::Result<PathBuf> {
    if let Some(home) = std::env::var_os(HOME_VAR).filter(|h| !h.is_empty()) {
        return Ok(PathBuf::from(home));
    }
    let user_home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .context("neither GUST_HOME nor HOME is set; set GUST_HOME to Gust's folder")?;
    Ok(PathBuf::from(user_home).join("gust"))
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment's Jail closures return figment's own large error.
mod tests {
    use super::*;

    #[test]
    fn the_environment_wins_over_the_file_and_the_file_over_defaults() {
        figment::Jail::expect_with(|jail| {
            let home = jail.directory().to_path_buf();
            assert_eq!(
                Config::load(&home).unwrap().core.dags_folder,
                home.join("dags")
            );
            jail.create_file(CONFIG_FILE, "[core]\ndags_folder = \"/from/file\"\n")?;
            assert_eq!(
                Config::load(&home).unwrap().core.dags_folder,
                PathBuf::from("/from/file")
            );
            jail.set_env("GUST__CORE__DAGS_FOLDER", "/from/env");
            assert_eq!(
                Config::load(&home).unwrap().core.dags_folder,
                PathBuf::from("/from/env")
            );
            Ok(())
        });
    }

    #[test]
    fn the_exposed_configuration_hides_secrets_and_keeps_the_rest() {
        let home = PathBuf::from("/gust");
        let mut config = Config::defaults(&home);
        config.database.url = "postgres://gust:hunter2@db/gust".into();
        config.core.fernet_key = Some("fernet-secret".into());
        config.api.secret_key = Some("token-secret-0123456789".into());
        let exposed = config.exposed().unwrap();
        let shown = format!("{exposed:?}");
        for secret in ["hunter2", "fernet-secret", "token-secret"] {
            assert!(!shown.contains(secret), "{secret} is shown: {shown}");
        }
        let option = |section: &str, key: &str| {
            exposed
                .sections
                .iter()
                .find(|(name, _)| name == section)
                .and_then(|(_, options)| options.iter().find(|(k, _)| k == key))
                .map(|(_, value)| value.clone())
        };
        assert_eq!(option("database", "url").as_deref(), Some("< hidden >"));
        assert_eq!(option("api", "secret_key").as_deref(), Some("< hidden >"));
        assert_eq!(option("core", "parallelism").as_deref(), Some("32"));
        assert_eq!(option("core", "dags_folder").as_deref(), Some("/gust/dags"));
        assert_eq!(option("api", "token_ttl").as_deref(), Some("1day"));
        assert_eq!(option("api", "expose_config").as_deref(), Some("false"));
        // An unset option is not an option with an empty value.
        assert_eq!(option("python", "interpreter"), None);
        let names: Vec<&str> = exposed.sections.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names[..3], ["core", "logging", "database"]);
    }

    #[test]
    fn unknown_keys_are_refused_by_name() {
        figment::Jail::expect_with(|jail| {
            let home = jail.directory().to_path_buf();
            jail.create_file(CONFIG_FILE, "[core]\ndags_foldr = \"/x\"\n")?;
            let err = format!("{:#}", Config::load(&home).unwrap_err());
            assert!(err.contains("dags_foldr"), "{err}");
            Ok(())
        });
    }
}
