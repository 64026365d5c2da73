//! [`Notifications`]: the [`CallbackRunner`] that sends an event's notifiers and alert email,
//! each delivery on its own task (so the scheduler never waits on a mail server), recorded in
//! the store, retried with backoff while the failure may pass, and told in the try's log.

use std::sync::Arc;

use gust_core::clock::Clock;
use gust_core::notify::{Notifier, NotifierKind};
use gust_executor::callbacks::{CallbackKind, CallbackRequest, CallbackRunner};
use gust_executor::try_log::LogWriter;
use gust_store::{DeliveryStatus, NewDelivery, Store};
use gust_template::Renderer;
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;

use crate::config::NotifyConfig;
use crate::email::{self, Email, SmtpServer};
use crate::error::NotifyError;
use crate::http::{self, Call};
use crate::render;

/// Sends notifications; clones share everything.
#[derive(Clone)]
pub struct Notifications {
    shared: Arc<Shared>,
    running: TaskTracker,
}

struct Shared {
    config: NotifyConfig,
    store: Option<Store>,
    clock: Arc<dyn Clock>,
    http: reqwest::Client,
    renderer: Renderer,
    permits: Semaphore,
    python: Option<Arc<dyn CallbackRunner>>,
}

impl std::fmt::Debug for Notifications {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifications")
            .field("records", &self.shared.store.is_some())
            .field("python", &self.shared.python)
            .finish_non_exhaustive()
    }
}

/// What one delivery sends.
enum Payload {
    Email(SmtpServer, Email),
    Http(Call),
}

/// A delivery ready to attempt.
struct Prepared {
    target: String,
    attempts: u32,
    payload: Payload,
}

/// What a delivery is for: a notifier, or Airflow's alert email to these addresses.
enum Source {
    Notifier(Notifier),
    Alert(Vec<String>),
}

impl Source {
    fn name(&self) -> &'static str {
        match self {
            Self::Notifier(n) => n.kind.as_str(),
            Self::Alert(_) => "email",
        }
    }
}

impl Notifications {
    /// Notifications sent as `config` says, timed by `clock`, each delivery recorded in
    /// `store` when there is one; Python callbacks are handed to `python` (the `[python]
    /// interpreter` runner) when there is one.
    ///
    /// # Errors
    /// When the HTTP client cannot be built (no TLS roots).
    pub fn new(
        config: NotifyConfig,
        clock: Arc<dyn Clock>,
        store: Option<Store>,
        python: Option<Arc<dyn CallbackRunner>>,
    ) -> Result<Self, NotifyError> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("gust/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|err| NotifyError::Http(err.to_string()))?;
        Ok(Self {
            shared: Arc::new(Shared {
                permits: Semaphore::new(config.concurrency.max(1)),
                config,
                store,
                clock,
                http,
                renderer: Renderer::new(),
                python,
            }),
            running: TaskTracker::new(),
        })
    }

    /// Waits for the deliveries started so far to end (a one-off run exits only then).
    pub async fn wait(&self) {
        self.running.close();
        self.running.wait().await;
    }
}

impl CallbackRunner for Notifications {
    fn run(&self, request: CallbackRequest) {
        if request.calls.python
            && let Some(python) = &self.shared.python
        {
            python.run(request.clone());
        }
        let mut sources: Vec<Source> = request
            .calls
            .notifiers
            .iter()
            .cloned()
            .map(Source::Notifier)
            .collect();
        if !request.calls.email.is_empty() {
            sources.push(Source::Alert(request.calls.email.clone()));
        }
        if sources.is_empty() {
            return;
        }
        let request = Arc::new(request);
        for source in sources {
            let shared = Arc::clone(&self.shared);
            let request = Arc::clone(&request);
            self.running
                .spawn(async move { shared.deliver(&request, source).await });
        }
    }
}

impl Shared {
    /// Prepares, records and attempts one delivery until it is sent or cannot be.
    async fn deliver(&self, request: &CallbackRequest, source: Source) {
        let notifier = source.name();
        let prepared = self.prepare(request, &source);
        let target = match &prepared {
            Ok(p) => p.target.clone(),
            Err(_) => describe(&source),
        };
        let id = self.record(request, notifier, &target).await;
        let (status, attempts, error) = match prepared {
            Err(err) => (DeliveryStatus::Failed, 0, Some(err)),
            Ok(prepared) => self.attempt(&prepared, id).await,
        };
        let error_text = error.as_ref().map(ToString::to_string);
        self.update(id, status, attempts, error_text.as_deref())
            .await;
        let what = describe_event(request);
        let line = match &error {
            None => format!("{what}: {notifier} notification to {target} sent"),
            Some(err) => format!(
                "{what}: {notifier} notification to {target} failed after {attempts} attempt(s): {err}"
            ),
        };
        match &error {
            None => tracing::info!(dag_id = %request.dag_id, run_id = %request.run_id, "{line}"),
            Some(_) => tracing::warn!(dag_id = %request.dag_id, run_id = %request.run_id, "{line}"),
        }
        if let Err(err) = self.log(request, &line).await {
            tracing::warn!(log = %request.log_path.display(), "could not write a notification's line to its log: {err}");
        }
    }

    /// Renders the notifier's arguments and builds what it sends.
    fn prepare(&self, request: &CallbackRequest, source: &Source) -> Result<Prepared, NotifyError> {
        let lookup = render::lookup(request);
        let smtp = &self.config.smtp;
        let email_retries = smtp.smtp_retry_limit;
        match source {
            Source::Alert(to) => {
                let server = SmtpServer::resolve(&self.config.email_conn_id, &*lookup, smtp);
                let email = email::alert_message(request, to, &server.mail_from)?;
                Ok(Prepared {
                    target: format!("to {}", email.to.join(", ")),
                    attempts: email_retries.saturating_add(1),
                    payload: Payload::Email(server, email),
                })
            }
            Source::Notifier(notifier) => {
                let ctx = render::context(request);
                let args = render::render_args(
                    &self.renderer,
                    notifier.kind.as_str(),
                    &notifier.args,
                    &ctx,
                    &lookup,
                )?;
                let retries = args
                    .get("retries")
                    .and_then(serde_json::Value::as_u64)
                    .and_then(|n| u32::try_from(n).ok());
                if notifier.kind == NotifierKind::Email {
                    let conn_id = render::text(&args, "email", "smtp_conn_id")?
                        .unwrap_or_else(|| self.config.email_conn_id.clone());
                    let server = SmtpServer::resolve(&conn_id, &*lookup, smtp);
                    let email = email::notifier_message(&args, request, &server.mail_from)?;
                    Ok(Prepared {
                        target: format!("to {}", email.to.join(", ")),
                        attempts: retries.unwrap_or(email_retries).saturating_add(1),
                        payload: Payload::Email(server, email),
                    })
                } else {
                    let call =
                        http::call(notifier.kind, &args, &*lookup, self.config.http_timeout)?;
                    Ok(Prepared {
                        target: call.target.clone(),
                        attempts: retries
                            .unwrap_or(self.config.http_retries)
                            .saturating_add(1),
                        payload: Payload::Http(call),
                    })
                }
            }
        }
    }

    /// Attempts `prepared` until it is sent, fails for good or runs out of attempts; its
    /// status, the attempts made and the last error.
    async fn attempt(
        &self,
        prepared: &Prepared,
        id: Option<i64>,
    ) -> (DeliveryStatus, i32, Option<NotifyError>) {
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let result = {
                // Closed never: the semaphore lives as long as `self`.
                let _permit = self.permits.acquire().await;
                match &prepared.payload {
                    Payload::Email(server, email) => server.send(email.message.clone()).await,
                    Payload::Http(call) => http::send(&self.http, call).await,
                }
            };
            let made = i32::try_from(attempt).unwrap_or(i32::MAX);
            match result {
                Ok(()) => return (DeliveryStatus::Sent, made, None),
                Err(err) if !err.is_transient() || attempt >= prepared.attempts => {
                    return (DeliveryStatus::Failed, made, Some(err));
                }
                Err(err) => {
                    self.update(id, DeliveryStatus::Pending, made, Some(&err.to_string()))
                        .await;
                    tokio::time::sleep(self.config.backoff_after(attempt)).await;
                }
            }
        }
    }

    async fn record(&self, request: &CallbackRequest, notifier: &str, target: &str) -> Option<i64> {
        let store = self.store.as_ref()?;
        let task = request.task.as_ref();
        let new = NewDelivery {
            dag_id: request.dag_id.to_string(),
            run_id: request.run_id.to_string(),
            task_id: task.map(|t| t.task_id.to_string()),
            map_index: -1,
            try_number: task.and_then(|t| i32::try_from(t.try_number).ok()),
            event: request.kind.event().to_owned(),
            notifier: notifier.to_owned(),
            target: target.to_owned(),
            at: self.clock.now(),
        };
        match store.record_delivery(&new).await {
            Ok(id) => Some(id),
            Err(err) => {
                tracing::warn!(dag_id = %request.dag_id, "a notification could not be recorded: {err}");
                None
            }
        }
    }

    async fn update(
        &self,
        id: Option<i64>,
        status: DeliveryStatus,
        attempts: i32,
        error: Option<&str>,
    ) {
        let (Some(store), Some(id)) = (&self.store, id) else {
            return;
        };
        if let Err(err) = store
            .update_delivery(id, status, attempts, error, self.clock.now())
            .await
        {
            tracing::warn!(
                notification = id,
                "a notification's state could not be recorded: {err}"
            );
        }
    }

    async fn log(&self, request: &CallbackRequest, line: &str) -> std::io::Result<()> {
        if request.log_path.as_os_str().is_empty() {
            return Ok(());
        }
        let mut log = LogWriter::open(&request.log_path, &*self.clock).await?;
        log.line("gust", line).await?;
        log.flush().await
    }
}

/// A notifier's target before its arguments rendered (for the record of one that did not).
fn describe(source: &Source) -> String {
    match source {
        Source::Alert(to) => format!("to {}", to.join(", ")),
        Source::Notifier(n) => {
            let arg = |name: &str| n.args.get(name).and_then(serde_json::Value::as_str);
            match n.kind {
                NotifierKind::Email => format!("to {}", arg("to").unwrap_or("?")),
                NotifierKind::SlackWebhook => {
                    format!(
                        "connection {}",
                        arg("slack_webhook_conn_id").unwrap_or("slack_default")
                    )
                }
                NotifierKind::Slack => {
                    format!(
                        "connection {}",
                        arg("slack_conn_id").unwrap_or("slack_api_default")
                    )
                }
                NotifierKind::Webhook => match arg("http_conn_id") {
                    Some(conn) => format!("connection {conn}"),
                    None => "a URL".to_owned(),
                },
            }
        }
    }
}

/// `task T's on_failure` or `DAG D's on_success`.
fn describe_event(request: &CallbackRequest) -> String {
    let event = request.kind.event();
    match (&request.task, request.kind) {
        (_, CallbackKind::DeadlineMissed) => format!("DAG {}'s deadline", request.dag_id),
        (_, CallbackKind::DagSuccess | CallbackKind::DagFailure) | (None, _) => {
            format!("DAG {}'s on_{event}", request.dag_id)
        }
        (Some(task), _) => format!("task {}'s on_{event}", task.task_id),
    }
}
