//! What every handler shares: the store, the token keys, the clock, where logs are, the
//! scheduler's waker when it runs in this process, and parsed DAG definitions.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use gust_core::clock::Clock;
use gust_core::dag::Dag;
use gust_kube::build::PodDefaults;
use gust_scheduler::scheduler::Waker;
use gust_scheduler::trigger::RunIdPattern;
use gust_store::{DagSummary, SecretKey, Store};

use crate::api::config::ExposedConfig;
use crate::auth::throttle::{LoginThrottle, ThrottleSettings};
use crate::auth::token::TokenKeys;
use crate::error::{ApiError, ApiResult};
use crate::metrics::SchedulerHealth;

/// How the server is set up.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// The secret tokens are signed with (every API server of one installation shares it).
    pub secret: Vec<u8>,
    /// How long an access token is valid.
    pub token_ttl: Duration,
    /// Where try logs are (`[logging] base_log_folder`).
    pub logs_root: PathBuf,
    /// The key connection secrets and variables are encrypted with (`[core] fernet_key`, else
    /// `$GUST_HOME/fernet.key`); without one the connection and variable endpoints answer 400.
    pub fernet_key: Option<SecretKey>,
    /// The `[kubernetes]` defaults pods are built with (namespace, XCom sidecar image), to show
    /// a pod task's manifest as its try ran.
    pub pod_defaults: PodDefaults,
    /// The run ids a trigger may give (`[scheduler] allowed_run_id_pattern`).
    pub run_id_pattern: RunIdPattern,
}

/// How the server guards its sign-ins and cookies (`[api]`); [`AppState::with_security`] sets
/// it, and a server without it uses the defaults.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SecuritySettings {
    /// The login rate limits (`auth_rate_limit_per_user`, `auth_rate_limit_per_address`).
    pub throttle: ThrottleSettings,
    /// Whether a reverse proxy in front says the client's address and scheme in
    /// `X-Forwarded-For` and `X-Forwarded-Proto` (`enable_proxy_fix`, default false: without a
    /// proxy, any client could send them).
    pub proxy_fix: bool,
}

/// The security settings in force, with the throttle they set up.
#[derive(Debug)]
struct Security {
    throttle: LoginThrottle,
    proxy_fix: bool,
}

impl Security {
    fn new(settings: SecuritySettings) -> Self {
        Self {
            throttle: LoginThrottle::new(settings.throttle),
            proxy_fix: settings.proxy_fix,
        }
    }
}

/// The shared state (cheap to clone).
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

struct Inner {
    store: Store,
    tokens: TokenKeys,
    clock: Arc<dyn Clock>,
    logs_root: PathBuf,
    fernet_key: Option<SecretKey>,
    pod_defaults: PodDefaults,
    run_id_pattern: RunIdPattern,
    waker: Option<Waker>,
    dags: DagCache,
    /// Where finished tries' logs are read from when their local file is gone.
    remote_logs: std::sync::OnceLock<gust_remote_logs::RemoteLogs>,
    /// The scheduler running in this process (`gust standalone`): its metrics and health.
    scheduler: std::sync::OnceLock<SchedulerHealth>,
    /// Login throttling and proxy trust.
    security: std::sync::OnceLock<Security>,
    /// The configuration `/api/v2/config` shows, when `[api] expose_config` is on.
    exposed_config: std::sync::OnceLock<ExposedConfig>,
    /// Whether `POST /connections/test` tests (`[core] test_connection = Enabled`).
    connection_test: std::sync::OnceLock<()>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("logs_root", &self.0.logs_root)
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// The state of a server on `store`; `waker` wakes a scheduler in the same process when a
    /// run is triggered or changed (a scheduler elsewhere notices within its poll interval).
    #[must_use]
    pub fn new(
        store: Store,
        clock: Arc<dyn Clock>,
        settings: ServerSettings,
        waker: Option<Waker>,
    ) -> Self {
        // Made now, so that no sign-in with an unknown name pays for making it.
        let _ = crate::auth::password::dummy_hash();
        Self(Arc::new(Inner {
            store,
            tokens: TokenKeys::new(&settings.secret, settings.token_ttl),
            clock,
            logs_root: settings.logs_root,
            fernet_key: settings.fernet_key,
            pod_defaults: settings.pod_defaults,
            run_id_pattern: settings.run_id_pattern,
            waker,
            dags: DagCache::default(),
            remote_logs: std::sync::OnceLock::new(),
            scheduler: std::sync::OnceLock::new(),
            security: std::sync::OnceLock::new(),
            exposed_config: std::sync::OnceLock::new(),
            connection_test: std::sync::OnceLock::new(),
        }))
    }

    /// The same state guarding sign-ins and cookies with `settings`; set once, before the
    /// router is built (otherwise the defaults hold).
    #[must_use]
    pub fn with_security(self, settings: SecuritySettings) -> Self {
        let _ = self.0.security.set(Security::new(settings));
        self
    }

    fn security(&self) -> &Security {
        self.0
            .security
            .get_or_init(|| Security::new(SecuritySettings::default()))
    }

    /// The login throttle.
    #[must_use]
    pub fn login_throttle(&self) -> &LoginThrottle {
        &self.security().throttle
    }

    /// Whether `X-Forwarded-For` and `X-Forwarded-Proto` are believed.
    #[must_use]
    pub fn proxy_fix(&self) -> bool {
        self.security().proxy_fix
    }

    /// The same state with connection testing on (`[core] test_connection = Enabled`); set
    /// before the router is built.
    #[must_use]
    pub fn with_connection_test(self) -> Self {
        let _ = self.0.connection_test.set(());
        self
    }

    /// Whether `POST /connections/test` tests connections.
    #[must_use]
    pub fn connection_test_enabled(&self) -> bool {
        self.0.connection_test.get().is_some()
    }

    /// The same state showing `config` at `/api/v2/config` (`[api] expose_config`); set once,
    /// before the router is built. Without it, the configuration endpoints answer 403, as
    /// Airflow's do when the configuration is not exposed.
    #[must_use]
    pub fn with_exposed_config(self, config: ExposedConfig) -> Self {
        let _ = self.0.exposed_config.set(config);
        self
    }

    /// The configuration the API may show, if it may show any.
    #[must_use]
    pub fn exposed_config(&self) -> Option<&ExposedConfig> {
        self.0.exposed_config.get()
    }

    /// The same state for a server in the scheduler's process (`gust standalone`): its
    /// `/metrics` adds the scheduler's, and it serves the scheduler's `/health`; set once,
    /// before the router is built.
    #[must_use]
    pub fn with_scheduler(self, health: SchedulerHealth) -> Self {
        let _ = self.0.scheduler.set(health);
        self
    }

    /// The scheduler in this process, if there is one.
    #[must_use]
    pub fn scheduler(&self) -> Option<&SchedulerHealth> {
        self.0.scheduler.get()
    }

    /// The same state reading logs whose local file is gone from `logs` (`[logging]
    /// remote_logging`); set once, before the server starts.
    #[must_use]
    pub fn with_remote_logs(self, logs: gust_remote_logs::RemoteLogs) -> Self {
        let _ = self.0.remote_logs.set(logs);
        self
    }

    /// The remote log store, when logs are kept in one.
    #[must_use]
    pub fn remote_logs(&self) -> Option<&gust_remote_logs::RemoteLogs> {
        self.0.remote_logs.get()
    }

    /// The metadata store.
    #[must_use]
    pub fn store(&self) -> &Store {
        &self.0.store
    }

    /// The token keys.
    #[must_use]
    pub fn tokens(&self) -> &TokenKeys {
        &self.0.tokens
    }

    /// Now, by the server's clock.
    #[must_use]
    pub fn now(&self) -> DateTime<Utc> {
        self.0.clock.now()
    }

    /// Where try logs are.
    #[must_use]
    pub fn logs_root(&self) -> &Path {
        &self.0.logs_root
    }

    /// The key connection secrets and variables are encrypted with; a 400 naming the setting
    /// when none is configured.
    pub fn fernet_key(&self) -> ApiResult<&SecretKey> {
        self.0.fernet_key.as_ref().ok_or_else(|| {
            ApiError::BadRequest(
                "connections and variables need a Fernet key: set [core] fernet_key (or GUST__CORE__FERNET_KEY)"
                    .into(),
            )
        })
    }

    /// The run ids a trigger may give.
    #[must_use]
    pub fn run_id_pattern(&self) -> &RunIdPattern {
        &self.0.run_id_pattern
    }

    /// The defaults pods are built with.
    #[must_use]
    pub fn pod_defaults(&self) -> &PodDefaults {
        &self.0.pod_defaults
    }

    /// Tells a scheduler in this process to look at the database now.
    pub fn wake_scheduler(&self) {
        if let Some(waker) = &self.0.waker {
            waker.wake();
        }
    }

    /// A DAG's summary and definition; 404 when there is no such DAG.
    pub async fn dag(&self, dag_id: &str) -> ApiResult<(DagSummary, Arc<Dag>)> {
        let summary = self
            .store()
            .dag_summary(dag_id)
            .await?
            .ok_or_else(|| ApiError::not_found("Dag", dag_id))?;
        let dag = self.definition(&summary).await?;
        Ok((summary, dag))
    }

    /// The definition of a DAG whose summary was read, parsed once per fingerprint.
    pub async fn definition(&self, summary: &DagSummary) -> ApiResult<Arc<Dag>> {
        if let Some(dag) = self.0.dags.get(&summary.dag_id, &summary.fingerprint) {
            return Ok(dag);
        }
        let (fingerprint, text) = self
            .store()
            .dag_definition(&summary.dag_id)
            .await?
            .ok_or_else(|| ApiError::not_found("Dag", &summary.dag_id))?;
        let dag: Dag = serde_json::from_str(&text).map_err(|e| {
            ApiError::Store(gust_store::StoreError::Corrupt {
                what: "DAG definition",
                detail: format!("{}: {e}", summary.dag_id),
            })
        })?;
        let dag = Arc::new(dag);
        self.0
            .dags
            .put(summary.dag_id.clone(), fingerprint, dag.clone());
        Ok(dag)
    }
}

/// Parsed definitions by DAG id, each valid while its fingerprint is the stored one: a DAG of
/// thousands of tasks is megabytes of JSON, parsed once per change, not once per request.
#[derive(Default)]
struct DagCache(Mutex<HashMap<String, (String, Arc<Dag>)>>);

impl DagCache {
    fn get(&self, dag_id: &str, fingerprint: &str) -> Option<Arc<Dag>> {
        let cache = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        cache
            .get(dag_id)
            .filter(|(stored, _)| stored == fingerprint)
            .map(|(_, dag)| dag.clone())
    }

    fn put(&self, dag_id: String, fingerprint: String, dag: Arc<Dag>) {
        let mut cache = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        cache.insert(dag_id, (fingerprint, dag));
    }
}
