//! `[smtp]` (Airflow's section, its names and defaults) and how deliveries are retried.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `[smtp]`: the server Airflow's alert emails (`email_on_failure`, `email_on_retry`) and
/// `SmtpNotifier`s without an SMTP connection go through.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmtpConfig {
    /// The server (default `localhost`, Airflow's).
    pub smtp_host: String,
    /// Its port (default 25, Airflow's).
    pub smtp_port: u16,
    /// Upgrade the connection with STARTTLS, and refuse a server that cannot (default true,
    /// Airflow's).
    pub smtp_starttls: bool,
    /// Speak TLS from the first byte (SMTPS, usually port 465; default false).
    pub smtp_ssl: bool,
    /// The user to log in as (default: none, no login).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smtp_user: Option<String>,
    /// Its password (never logged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smtp_password: Option<String>,
    /// The sender when a notifier names none (default `airflow@example.com`, Airflow's).
    pub smtp_mail_from: String,
    /// Seconds to wait for the server (default 30, Airflow's).
    pub smtp_timeout: u64,
    /// How many times a failed send is tried again (default 5, Airflow's).
    pub smtp_retry_limit: u32,
}

impl Default for SmtpConfig {
    fn default() -> Self {
        Self {
            smtp_host: "localhost".to_owned(),
            smtp_port: 25,
            smtp_starttls: true,
            smtp_ssl: false,
            smtp_user: None,
            smtp_password: None,
            smtp_mail_from: "airflow@example.com".to_owned(),
            smtp_timeout: 30,
            smtp_retry_limit: 5,
        }
    }
}

/// Never prints the password.
impl std::fmt::Debug for SmtpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpConfig")
            .field("smtp_host", &self.smtp_host)
            .field("smtp_port", &self.smtp_port)
            .field("smtp_starttls", &self.smtp_starttls)
            .field("smtp_ssl", &self.smtp_ssl)
            .field("smtp_user", &self.smtp_user)
            .field("smtp_mail_from", &self.smtp_mail_from)
            .finish_non_exhaustive()
    }
}

/// How notifications are sent.
#[derive(Debug, Clone)]
pub struct NotifyConfig {
    /// `[smtp]`.
    pub smtp: SmtpConfig,
    /// The SMTP connection alert emails and `SmtpNotifier`s use when it exists (default
    /// `smtp_default`, Airflow's `[email] email_conn_id`); `[smtp]` otherwise.
    pub email_conn_id: String,
    /// The wait before the first retry of a failed delivery (default 1 s); it doubles after
    /// each failure up to [`NotifyConfig::max_backoff`].
    pub backoff: Duration,
    /// The longest wait between two attempts (default 60 s).
    pub max_backoff: Duration,
    /// How many webhook and Slack deliveries are retried when their notifier says nothing
    /// (`retries`; default 3).
    pub http_retries: u32,
    /// How long one HTTP attempt may take when the notifier says nothing (`timeout`; default
    /// 30 s).
    pub http_timeout: Duration,
    /// How many deliveries are attempted at once (default 16): a burst of failures queues its
    /// notifications instead of opening a connection each.
    pub concurrency: usize,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        Self {
            smtp: SmtpConfig::default(),
            email_conn_id: "smtp_default".to_owned(),
            backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            http_retries: 3,
            http_timeout: Duration::from_secs(30),
            concurrency: 16,
        }
    }
}

impl NotifyConfig {
    /// The wait before attempt `attempt + 1`, after `attempt` failed ones (from 1).
    #[must_use]
    pub fn backoff_after(&self, attempt: u32) -> Duration {
        let factor = 1u32
            .checked_shl(attempt.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.backoff.saturating_mul(factor).min(self.max_backoff)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let config = NotifyConfig::default();
        assert_eq!(config.backoff_after(1), Duration::from_secs(1));
        assert_eq!(config.backoff_after(3), Duration::from_secs(4));
        assert_eq!(config.backoff_after(40), Duration::from_secs(60));
    }

    #[test]
    fn the_password_is_never_printed() {
        let config = SmtpConfig {
            smtp_password: Some("hunter2".to_owned()),
            ..SmtpConfig::default()
        };
        assert!(!format!("{config:?}").contains("hunter2"));
    }
}
