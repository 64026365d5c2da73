//! Why a notification could not be sent. Every message is safe to record and log: connection
//! passwords and webhook URLs are masked before they are shown.

/// Why a notification was not sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotifyError {
    /// An argument's template did not render.
    #[error("{0}")]
    Render(String),
    /// An argument has the wrong shape.
    #[error("the {notifier} notifier's argument \"{argument}\" {why}")]
    BadArgument {
        /// The notifier's kind.
        notifier: &'static str,
        /// The argument.
        argument: &'static str,
        /// What is wrong with it.
        why: String,
    },
    /// The connection it names does not exist.
    #[error("connection \"{0}\" does not exist; create it (gust connections add) or name another")]
    MissingConnection(String),
    /// The SMTP server refused the message or could not be reached.
    #[error("SMTP: {0}")]
    Smtp(String),
    /// The HTTP request failed before an answer.
    #[error("HTTP: {0}")]
    Http(String),
    /// The service answered with an error.
    #[error("the service answered {status}: {body}")]
    Rejected {
        /// The HTTP status.
        status: u16,
        /// The start of its answer.
        body: String,
    },
}

impl NotifyError {
    /// Whether trying again may help (a bad argument or a missing connection will not change).
    #[must_use]
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Render(_) | Self::BadArgument { .. } | Self::MissingConnection(_) => false,
            // A server error, a rate limit or a timeout may pass; a client error is the
            // request's fault, and so is Slack's API's `ok: false` (status 200).
            Self::Rejected { status, .. } => *status >= 500 || matches!(status, 408 | 429),
            Self::Smtp(_) | Self::Http(_) => true,
        }
    }
}

/// The longest piece of an answer kept in an error.
pub(crate) const MAX_ANSWER_CHARS: usize = 300;

/// `text`, masked and cut to [`MAX_ANSWER_CHARS`].
pub(crate) fn safe(text: &str) -> String {
    let masked = gust_secrets::mask(text);
    match masked.char_indices().nth(MAX_ANSWER_CHARS) {
        Some((at, _)) => format!("{}...", &masked[..at]),
        None => masked,
    }
}
