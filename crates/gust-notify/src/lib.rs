//! Notifications sent natively, without Python: Airflow's alert email (`email_on_failure`,
//! `email_on_retry`) over SMTP (`[smtp]`, lettre), and the notifiers DAG files name in their
//! callbacks with Airflow's classes (`SmtpNotifier`, `SlackWebhookNotifier`, `SlackNotifier`,
//! `HttpNotifier`, or Gust's `webhook`), their arguments rendered with the task's template
//! context. [`Notifications`] is a [`gust_executor::callbacks::CallbackRunner`]: the scheduler
//! hands it each committed event that calls for something, and it sends each delivery on its
//! own task (never holding up scheduling), retried with backoff, recorded in the store's
//! `notifications` table. It never logs a secret: connection passwords and webhook URLs join
//! the masker and are kept out of what is recorded. Start at [`Notifications`].

mod config;
mod email;
mod error;
mod http;
mod render;
mod runner;

pub use config::{NotifyConfig, SmtpConfig};
pub use email::{Security, SmtpServer};
pub use error::NotifyError;
pub use render::context;
pub use runner::Notifications;
