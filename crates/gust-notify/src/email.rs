//! Email over SMTP (lettre): the server from an SMTP connection (Airflow's SmtpHook reading of
//! one) or `[smtp]`, and the messages of `SmtpNotifier` and of Airflow's alert email
//! (`email_on_failure`, `email_on_retry`).

use std::time::Duration;

use gust_executor::callbacks::CallbackRequest;
use gust_template::{RuntimeLookup, TemplateConnection};
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MessageBuilder};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::config::SmtpConfig;
use crate::error::NotifyError;
use crate::render::{addresses, text};

const NOTIFIER: &str = "email";

/// How the connection to the server is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// Plain text.
    None,
    /// Plain, upgraded with STARTTLS (required).
    StartTls,
    /// TLS from the first byte (SMTPS).
    Tls,
}

/// An SMTP server to send through.
#[derive(Clone)]
pub struct SmtpServer {
    /// Host.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Its security.
    pub security: Security,
    /// Login, with its password.
    pub login: Option<(String, String)>,
    /// How long to wait for it.
    pub timeout: Duration,
    /// The sender when the message names none.
    pub mail_from: String,
}

/// Never prints the password.
impl std::fmt::Debug for SmtpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpServer")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("security", &self.security)
            .finish_non_exhaustive()
    }
}

impl SmtpServer {
    /// `[smtp]`'s server.
    #[must_use]
    pub fn from_config(config: &SmtpConfig) -> Self {
        let security = if config.smtp_ssl {
            Security::Tls
        } else if config.smtp_starttls {
            Security::StartTls
        } else {
            Security::None
        };
        Self {
            host: config.smtp_host.clone(),
            port: config.smtp_port,
            security,
            login: config
                .smtp_user
                .clone()
                .map(|user| (user, config.smtp_password.clone().unwrap_or_default())),
            timeout: Duration::from_secs(config.smtp_timeout),
            mail_from: config.smtp_mail_from.clone(),
        }
    }

    /// A connection's server, as Airflow's SmtpHook reads one: SSL unless its extra says
    /// `disable_ssl`, else STARTTLS unless `disable_tls`; `from_email` and `timeout` from the
    /// extra; the port defaults to 465 with SSL and 587 without.
    #[must_use]
    pub fn from_connection(conn: &TemplateConnection, config: &SmtpConfig) -> Self {
        let extra: serde_json::Value = conn
            .extra
            .as_deref()
            .and_then(|e| serde_json::from_str(e).ok())
            .unwrap_or_default();
        let flag = |name: &str| {
            extra.get(name).is_some_and(|v| {
                v.as_bool()
                    .unwrap_or_else(|| v.as_str().is_some_and(|s| s.eq_ignore_ascii_case("true")))
            })
        };
        let security = if !flag("disable_ssl") {
            Security::Tls
        } else if !flag("disable_tls") {
            Security::StartTls
        } else {
            Security::None
        };
        let default_port = if security == Security::Tls { 465 } else { 587 };
        Self {
            host: conn
                .host
                .clone()
                .unwrap_or_else(|| config.smtp_host.clone()),
            port: conn
                .port
                .and_then(|p| u16::try_from(p).ok())
                .unwrap_or(default_port),
            security,
            login: conn
                .login
                .clone()
                .filter(|l| !l.is_empty())
                .map(|login| (login, conn.password.clone().unwrap_or_default())),
            timeout: extra
                .get("timeout")
                .and_then(serde_json::Value::as_u64)
                .map_or(
                    Duration::from_secs(config.smtp_timeout),
                    Duration::from_secs,
                ),
            mail_from: extra
                .get("from_email")
                .and_then(serde_json::Value::as_str)
                .map_or_else(|| config.smtp_mail_from.clone(), str::to_owned),
        }
    }

    /// The server named by `conn_id` when that connection exists, else `[smtp]`'s.
    #[must_use]
    pub fn resolve(conn_id: &str, lookup: &dyn RuntimeLookup, config: &SmtpConfig) -> Self {
        match lookup.connection(conn_id) {
            Some(conn) => {
                if let Some(password) = conn.password.clone().filter(|p| !p.is_empty()) {
                    gust_secrets::add([password]);
                }
                Self::from_connection(&conn, config)
            }
            None => Self::from_config(config),
        }
    }

    /// Sends `message` once.
    pub async fn send(&self, message: Message) -> Result<(), NotifyError> {
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&self.host)
            .port(self.port)
            .timeout(Some(self.timeout));
        let tls = || {
            TlsParameters::new(self.host.clone()).map_err(|err| NotifyError::Smtp(err.to_string()))
        };
        builder = match self.security {
            Security::None => builder.tls(Tls::None),
            Security::StartTls => builder.tls(Tls::Required(tls()?)),
            Security::Tls => builder.tls(Tls::Wrapper(tls()?)),
        };
        if let Some((user, password)) = &self.login {
            builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
        }
        builder
            .build()
            .send(message)
            .await
            .map(drop)
            .map_err(|err| NotifyError::Smtp(crate::error::safe(&err.to_string())))
    }
}

/// An email ready to send, with who it goes to (for the delivery's record).
#[derive(Debug, Clone)]
pub struct Email {
    /// The message.
    pub message: Message,
    /// Its recipients, as recorded.
    pub to: Vec<String>,
}

/// The message of a `SmtpNotifier` whose arguments are rendered.
pub fn notifier_message(
    args: &serde_json::Map<String, serde_json::Value>,
    request: &CallbackRequest,
    mail_from: &str,
) -> Result<Email, NotifyError> {
    let to = addresses(args, NOTIFIER, "to")?;
    if to.is_empty() {
        return Err(NotifyError::BadArgument {
            notifier: NOTIFIER,
            argument: "to",
            why: "names no address".to_owned(),
        });
    }
    let from = text(args, NOTIFIER, "from_email")?.unwrap_or_else(|| mail_from.to_owned());
    let subject = text(args, NOTIFIER, "subject")?.unwrap_or_else(|| default_subject(request));
    let html = text(args, NOTIFIER, "html_content")?.unwrap_or_else(|| default_html(request));
    let mut builder = Message::builder()
        .from(mailbox(&from, "from_email")?)
        .subject(subject);
    for address in &to {
        builder = builder.to(mailbox(address, "to")?);
    }
    for address in addresses(args, NOTIFIER, "cc")? {
        builder = builder.cc(mailbox(&address, "cc")?);
    }
    for address in addresses(args, NOTIFIER, "bcc")? {
        builder = builder.bcc(mailbox(&address, "bcc")?);
    }
    builder = custom_headers(builder, args.get("custom_headers"))?;
    let charset = text(args, NOTIFIER, "mime_charset")?.unwrap_or_else(|| "utf-8".to_owned());
    let content_type =
        ContentType::parse(&format!("text/html; charset={charset}")).map_err(|_| {
            NotifyError::BadArgument {
                notifier: NOTIFIER,
                argument: "mime_charset",
                why: format!("\"{charset}\" is not a charset name"),
            }
        })?;
    let message = builder
        .header(content_type)
        .body(html)
        .map_err(|err| NotifyError::Smtp(err.to_string()))?;
    Ok(Email { message, to })
}

/// Airflow's alert email for a task's failure or retry, to `to`.
pub fn alert_message(
    request: &CallbackRequest,
    to: &[String],
    mail_from: &str,
) -> Result<Email, NotifyError> {
    let task = request.task.as_ref();
    let task_id = task.map_or("", |t| t.task_id.as_str());
    let state = task.map_or(request.run_state, |t| t.state);
    // Airflow's subject names the task instance as its repr does.
    let subject = format!(
        "Airflow alert: <TaskInstance: {}.{} {} [{state}]>",
        request.dag_id, task_id, request.run_id
    );
    let exception = request
        .reason
        .as_deref()
        .map(html_escape)
        .unwrap_or_default()
        .replace('\n', "<br>");
    let html = format!(
        "Try {} out of {}<br>Exception:<br>{exception}<br>Log: {}<br>Host: {}<br>",
        task.map_or(0, |t| t.try_number),
        request.max_tries,
        html_escape(&request.log_path.display().to_string()),
        html_escape(&host_name()),
    );
    let mut builder = Message::builder()
        .from(mailbox(mail_from, "smtp_mail_from")?)
        .subject(subject);
    for address in to {
        builder = builder.to(mailbox(address, "email")?);
    }
    let message = builder
        .header(ContentType::TEXT_HTML)
        .body(html)
        .map_err(|err| NotifyError::Smtp(err.to_string()))?;
    Ok(Email {
        message,
        to: to.to_vec(),
    })
}

/// The subject of a `SmtpNotifier` that gives none.
fn default_subject(request: &CallbackRequest) -> String {
    match &request.task {
        Some(task) => format!(
            "DAG {} - Task {} - Run ID {} in State {}",
            request.dag_id, task.task_id, request.run_id, task.state
        ),
        None => format!(
            "DAG {} - Run ID {} in State {}",
            request.dag_id, request.run_id, request.run_state
        ),
    }
}

/// The body of a `SmtpNotifier` that gives none.
fn default_html(request: &CallbackRequest) -> String {
    let mut lines = vec![
        format!("DAG: {}", html_escape(request.dag_id.as_str())),
        format!("Run: {}", html_escape(request.run_id.as_str())),
    ];
    if let Some(task) = &request.task {
        lines.push(format!("Task: {}", html_escape(task.task_id.as_str())));
        lines.push(format!("Try: {}", task.try_number));
        lines.push(format!("State: {}", task.state));
    } else {
        lines.push(format!("State: {}", request.run_state));
    }
    if let Some(why) = &request.reason {
        lines.push(format!("Reason: {}", html_escape(why)));
    }
    lines.join("<br>")
}

fn mailbox(address: &str, argument: &'static str) -> Result<Mailbox, NotifyError> {
    address.parse().map_err(|_| NotifyError::BadArgument {
        notifier: NOTIFIER,
        argument,
        why: format!("holds \"{address}\", which is not an email address"),
    })
}

fn custom_headers(
    mut builder: MessageBuilder,
    headers: Option<&serde_json::Value>,
) -> Result<MessageBuilder, NotifyError> {
    let bad = |why: String| NotifyError::BadArgument {
        notifier: NOTIFIER,
        argument: "custom_headers",
        why,
    };
    match headers {
        None | Some(serde_json::Value::Null) => Ok(builder),
        Some(serde_json::Value::Object(map)) => {
            for (name, value) in map {
                let value = match value {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                if value.contains(['\r', '\n']) {
                    return Err(bad(format!("header \"{name}\" holds a line break")));
                }
                let name = HeaderName::new_from_ascii(name.clone())
                    .map_err(|_| bad(format!("\"{name}\" is not a header name")))?;
                builder = builder.raw_header(HeaderValue::new(name, value));
            }
            Ok(builder)
        }
        Some(_) => Err(bad("must be a map of header names to values".to_owned())),
    }
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// This host's name, as Airflow's alert shows `ti.hostname`.
fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}
