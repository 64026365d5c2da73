//! Notifiers: what a task or DAG event sends without Python (an email, a Slack message, a
//! webhook call), as a DAG file names them in its callbacks with Airflow's notifier classes.
//! Pure data: the arguments are kept as written (templates unrendered) and sent by `gust-notify`.

use serde::{Deserialize, Serialize};

/// What a notifier sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotifierKind {
    /// An email over SMTP (Airflow's `SmtpNotifier`).
    Email,
    /// A message to a Slack incoming webhook (Airflow's `SlackWebhookNotifier`).
    SlackWebhook,
    /// A message through Slack's Web API, `chat.postMessage` (Airflow's `SlackNotifier`).
    Slack,
    /// A JSON body sent to any URL (Airflow's `HttpNotifier`, or Gust's `webhook`).
    Webhook,
}

impl NotifierKind {
    /// The kind a dag-factory `callback:` path names, if Gust sends it natively (see
    /// [`CALLBACK_PATHS`]).
    #[must_use]
    pub fn from_callback_path(path: &str) -> Option<Self> {
        let path = path.trim();
        CALLBACK_PATHS
            .iter()
            .find(|(name, _)| *name == path)
            .map(|(_, kind)| *kind)
    }

    /// Its name in the deliveries Gust records.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Email => "email",
            Self::SlackWebhook => "slack_webhook",
            Self::Slack => "slack",
            Self::Webhook => "webhook",
        }
    }

    /// The arguments it takes (Airflow's names; `retries` is Gust's, for every kind).
    #[must_use]
    pub fn arguments(self) -> &'static [&'static str] {
        match self {
            Self::Email => &[
                "to",
                "from_email",
                "subject",
                "html_content",
                "cc",
                "bcc",
                "mime_subtype",
                "mime_charset",
                "custom_headers",
                "smtp_conn_id",
                "retries",
            ],
            Self::SlackWebhook => &[
                "slack_webhook_conn_id",
                "text",
                "blocks",
                "attachments",
                "unfurl_links",
                "unfurl_media",
                "timeout",
                "retries",
            ],
            Self::Slack => &[
                "slack_conn_id",
                "text",
                "channel",
                "username",
                "icon_url",
                "blocks",
                "attachments",
                "base_url",
                "unfurl_links",
                "unfurl_media",
                "timeout",
                "retries",
            ],
            Self::Webhook => &[
                "url",
                "http_conn_id",
                "endpoint",
                "method",
                "json",
                "data",
                "headers",
                "timeout",
                "retries",
            ],
        }
    }

    /// The arguments it cannot do without.
    #[must_use]
    pub fn required(self) -> &'static [&'static str] {
        match self {
            Self::Email => &["to"],
            Self::SlackWebhook | Self::Slack | Self::Webhook => &[],
        }
    }
}

/// The `callback:` paths Gust sends natively: Airflow's notifier classes and their
/// `send_*_notification` aliases, and Gust's short names.
pub const CALLBACK_PATHS: &[(&str, NotifierKind)] = &[
    ("email", NotifierKind::Email),
    ("smtp", NotifierKind::Email),
    (
        "airflow.providers.smtp.notifications.smtp.SmtpNotifier",
        NotifierKind::Email,
    ),
    (
        "airflow.providers.smtp.notifications.smtp.send_smtp_notification",
        NotifierKind::Email,
    ),
    ("slack_webhook", NotifierKind::SlackWebhook),
    (
        "airflow.providers.slack.notifications.slack_webhook.SlackWebhookNotifier",
        NotifierKind::SlackWebhook,
    ),
    (
        "airflow.providers.slack.notifications.slack_webhook.send_slack_webhook_notification",
        NotifierKind::SlackWebhook,
    ),
    ("slack", NotifierKind::Slack),
    (
        "airflow.providers.slack.notifications.slack.SlackNotifier",
        NotifierKind::Slack,
    ),
    (
        "airflow.providers.slack.notifications.slack.send_slack_notification",
        NotifierKind::Slack,
    ),
    (
        "airflow.providers.slack.notifications.slack_notifier.SlackNotifier",
        NotifierKind::Slack,
    ),
    (
        "airflow.providers.slack.notifications.slack_notifier.send_slack_notification",
        NotifierKind::Slack,
    ),
    ("webhook", NotifierKind::Webhook),
    (
        "airflow.providers.http.notifications.HttpNotifier",
        NotifierKind::Webhook,
    ),
    (
        "airflow.providers.http.notifications.http.HttpNotifier",
        NotifierKind::Webhook,
    ),
    (
        "airflow.providers.http.notifications.http.send_http_notification",
        NotifierKind::Webhook,
    ),
];

/// One notifier with its arguments as written (templates rendered when it is sent).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notifier {
    /// What it sends.
    pub kind: NotifierKind,
    /// Its arguments (Airflow's names), templates unrendered.
    pub args: serde_json::Map<String, serde_json::Value>,
}

/// The notifiers of a task's or a DAG's events (a DAG has only `on_success` and `on_failure`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Notifiers {
    /// When a try starts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub on_execute: Vec<Notifier>,
    /// When a try (or a run) succeeds.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub on_success: Vec<Notifier>,
    /// When a try fails for good (or a run fails).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub on_failure: Vec<Notifier>,
    /// When a try fails and another follows.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub on_retry: Vec<Notifier>,
    /// When a try skips itself.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub on_skipped: Vec<Notifier>,
}

impl Notifiers {
    /// The list a callback setting (`on_failure_callback`) fills, if it names one.
    pub fn slot(&mut self, callback: &str) -> Option<&mut Vec<Notifier>> {
        Some(match callback {
            "on_execute_callback" => &mut self.on_execute,
            "on_success_callback" => &mut self.on_success,
            "on_failure_callback" => &mut self.on_failure,
            "on_retry_callback" => &mut self.on_retry,
            "on_skipped_callback" => &mut self.on_skipped,
            _ => return None,
        })
    }

    /// The notifiers of an event (`execute`, `success`, `failure`, `retry`, `skipped`).
    #[must_use]
    pub fn of_event(&self, event: &str) -> &[Notifier] {
        match event {
            "execute" => &self.on_execute,
            "success" => &self.on_success,
            "failure" => &self.on_failure,
            "retry" => &self.on_retry,
            "skipped" => &self.on_skipped,
            _ => &[],
        }
    }

    /// Whether no event has a notifier.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.on_execute.is_empty()
            && self.on_success.is_empty()
            && self.on_failure.is_empty()
            && self.on_retry.is_empty()
            && self.on_skipped.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn airflow_notifier_paths_and_short_names_map_to_kinds() {
        let slack = "airflow.providers.slack.notifications.slack_webhook.SlackWebhookNotifier";
        assert_eq!(
            NotifierKind::from_callback_path(slack),
            Some(NotifierKind::SlackWebhook)
        );
        assert_eq!(
            NotifierKind::from_callback_path(
                "airflow.providers.slack.notifications.slack.send_slack_notification"
            ),
            Some(NotifierKind::Slack)
        );
        assert_eq!(
            NotifierKind::from_callback_path("webhook"),
            Some(NotifierKind::Webhook)
        );
        assert_eq!(
            NotifierKind::from_callback_path("mypkg.callbacks.alert"),
            None
        );
    }

    #[test]
    fn a_callback_setting_names_its_event() {
        let mut notifiers = Notifiers::default();
        let slot = notifiers.slot("on_retry_callback").expect("a task event");
        slot.push(Notifier {
            kind: NotifierKind::Webhook,
            args: serde_json::Map::new(),
        });
        assert_eq!(notifiers.of_event("retry").len(), 1);
        assert!(notifiers.slot("sla_miss_callback").is_none());
        assert!(!notifiers.is_empty());
    }
}
