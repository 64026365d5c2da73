//! The callback runner the scheduler and `gust dags test` hand events to: gust-notify's, which
//! sends notifiers and alert emails itself and hands Python callbacks to the `[python]
//! interpreter` environment when there is one.

use std::sync::Arc;

use anyhow::Context;
use gust_core::clock::Clock;
use gust_executor::callbacks::CallbackRunner;

use crate::config::Config;

/// The runner for `config`, recording deliveries in `store` when given, with `python` running
/// the Python callbacks.
pub fn runner(
    config: &Config,
    clock: Arc<dyn Clock>,
    store: Option<gust_store::Store>,
    python: Option<Arc<dyn CallbackRunner>>,
) -> anyhow::Result<gust_notify::Notifications> {
    let notify = gust_notify::NotifyConfig {
        smtp: config.smtp.clone(),
        email_conn_id: config.email.email_conn_id.clone(),
        ..gust_notify::NotifyConfig::default()
    };
    if let Some(password) = config.smtp.smtp_password.clone().filter(|p| !p.is_empty()) {
        gust_secrets::add([password]);
    }
    gust_notify::Notifications::new(notify, clock, store, python)
        .context("the notifications' HTTP client")
}
