//! The process's masker, as Airflow keeps one `SecretsMasker` per process: every writer of
//! logs, answers and output reads [`current`], so none can forget to mask.
//!
//! Two kinds of secrets feed it. The stored ones (connections' passwords and sensitive extras,
//! sensitive variables) are replaced as a whole by [`set_stored`] each time the binary reads
//! them again, so a changed password stops being looked for. A try's own (values under
//! sensitive names in its rendered arguments, such as `env: {MYSECRET: ...}`) are added by
//! [`add`] when the try is launched and kept, at most [`TRY_SECRETS_KEPT`], oldest dropped first.
//!
//! Why one per process and not a handle passed around: every runtime, the log relay and the
//! server write logs and answers from many places; a value that must reach all of them to keep
//! a secret hidden is safer in one place that all of them read.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, LazyLock, PoisonError, RwLock};

use crate::masker::{DEFAULT_MIN_LENGTH, Masker};
use crate::names::SensitiveNames;

/// How many tries' secrets are kept (values, not tries): a template that puts a new value under
/// a sensitive name on every run (`{{ ts }}`) must not grow the masker without end. Older ones
/// only matter to tries long finished, whose logs are written.
pub const TRY_SECRETS_KEPT: usize = 4096;

struct Registry {
    names: SensitiveNames,
    min_length: usize,
    stored: Vec<String>,
    tries: VecDeque<String>,
    tries_seen: HashSet<String>,
    masker: Arc<Masker>,
}

impl Registry {
    fn rebuild(&mut self) {
        self.masker = Arc::new(Masker::new(
            self.names.clone(),
            self.min_length,
            self.stored.iter().chain(&self.tries).cloned(),
        ));
    }
}

static REGISTRY: LazyLock<RwLock<Registry>> = LazyLock::new(|| {
    RwLock::new(Registry {
        names: SensitiveNames::default(),
        min_length: DEFAULT_MIN_LENGTH,
        stored: Vec::new(),
        tries: VecDeque::new(),
        tries_seen: HashSet::new(),
        masker: Arc::new(Masker::default()),
    })
});

/// The masker in force now (cheap: a pointer copy under a read lock).
#[must_use]
pub fn current() -> Arc<Masker> {
    // A panic cannot leave the pointer half-written: a poisoned lock still holds a whole value.
    Arc::clone(
        &REGISTRY
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .masker,
    )
}

/// Puts the configuration in force: `names` (`[core] sensitive_var_conn_names` added to the
/// defaults) and `min_length` (`[logging] min_length_masked_secret`).
pub fn configure(names: SensitiveNames, min_length: usize) {
    let mut registry = REGISTRY.write().unwrap_or_else(PoisonError::into_inner);
    registry.names = names;
    registry.min_length = min_length;
    registry.rebuild();
}

/// Replaces the stored secrets (connections, variables) with `secrets`.
pub fn set_stored(secrets: Vec<String>) {
    let mut registry = REGISTRY.write().unwrap_or_else(PoisonError::into_inner);
    if registry.stored == secrets {
        return;
    }
    registry.stored = secrets;
    registry.rebuild();
}

/// Adds a try's secrets; the masker is rebuilt only when one is new.
pub fn add(secrets: impl IntoIterator<Item = String>) {
    let min_length = current().min_length();
    let new: Vec<String> = secrets
        .into_iter()
        .filter(|s| s.chars().count() >= min_length.max(1))
        .collect();
    if new.is_empty() {
        return;
    }
    let mut registry = REGISTRY.write().unwrap_or_else(PoisonError::into_inner);
    let mut changed = false;
    for secret in new {
        if registry.tries_seen.insert(secret.clone()) {
            registry.tries.push_back(secret);
            changed = true;
        }
    }
    while registry.tries.len() > TRY_SECRETS_KEPT {
        if let Some(old) = registry.tries.pop_front() {
            registry.tries_seen.remove(&old);
        }
    }
    if changed {
        registry.rebuild();
    }
}

/// Adds the secrets a try's rendered arguments hold under sensitive names (an argument named
/// like a secret, `env: {MYSECRET: ...}`, a pod's `{name, value}` pairs).
pub fn add_from(args: &serde_json::Map<String, serde_json::Value>) {
    add(current().names().secrets_in_args(args));
}

#[cfg(test)]
mod tests {
    use super::*;

    // One test: the registry is the process's, and tests in one binary share it.
    #[test]
    fn stored_secrets_are_replaced_and_try_secrets_are_kept_within_a_bound() {
        set_stored(vec!["old-password".to_owned()]);
        assert_eq!(current().mask("old-password"), "***");
        set_stored(vec!["new-password".to_owned()]);
        assert_eq!(
            current().mask("old-password new-password"),
            "old-password ***"
        );

        let args = serde_json::json!({"env": {"MYSECRET": "try-secret"}, "x": "not-secret"});
        add_from(args.as_object().expect("an object"));
        assert_eq!(current().mask("try-secret not-secret"), "*** not-secret");
        add((0..TRY_SECRETS_KEPT).map(|n| format!("filler-{n}")));
        assert_eq!(
            current().mask("try-secret"),
            "try-secret",
            "the oldest is dropped"
        );
        assert_eq!(current().mask("new-password"), "***", "stored ones stay");

        configure(SensitiveNames::with_extra("pin"), 3);
        add(["abc".to_owned()]);
        assert!(current().is_sensitive("my_pin"));
        assert_eq!(current().mask("abc"), "***");
    }
}
