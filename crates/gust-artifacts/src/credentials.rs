//! The settings and secrets a store is opened with: a Gust connection's fields and extra keys,
//! from the connection itself or from `GUST_ARTIFACTS_<key>` variables (a Kubernetes Secret
//! mounted with that prefix). Holds values only; which key means what for which store is
//! [`crate::store`]'s business. Never shows a value: `Debug` masks them all.

use std::collections::BTreeMap;

/// The prefix of the variables [`StoreCredentials::from_env`] reads.
pub const ENV_PREFIX: &str = "GUST_ARTIFACTS_";

/// Keys whose values are settings, not secrets (everything else is masked in error texts).
const SETTINGS: &[&str] = &[
    "host",
    "port",
    "schema",
    "endpoint_url",
    "region_name",
    "key_path",
];

/// A connection's fields (`login`, `password`, `host`, ...) and extra keys (`endpoint_url`,
/// `region_name`, `aws_session_token`, `keyfile_dict`, ...) for opening object stores.
#[derive(Clone, Default)]
pub struct StoreCredentials {
    fields: BTreeMap<String, String>,
}

impl StoreCredentials {
    /// No fields: stores use the standard environment and instance credentials.
    #[must_use]
    pub fn none() -> Self {
        Self::default()
    }

    /// The `GUST_ARTIFACTS_<key>` variables of this process, `<key>` as written (the Secret's
    /// keys: `GUST_ARTIFACTS_login`, `GUST_ARTIFACTS_endpoint_url`, ...).
    #[must_use]
    pub fn from_env() -> Self {
        Self::from_vars(
            std::env::vars_os().filter_map(|(key, value)| {
                Some((key.into_string().ok()?, value.into_string().ok()?))
            }),
        )
    }

    /// The fields of a connection and the keys of its extra.
    #[must_use]
    pub fn from_fields(fields: BTreeMap<String, String>) -> Self {
        Self { fields }
    }

    /// The variables among `vars` that carry [`ENV_PREFIX`], prefix removed.
    pub(crate) fn from_vars(vars: impl IntoIterator<Item = (String, String)>) -> Self {
        let fields = vars
            .into_iter()
            .filter_map(|(key, value)| {
                let name = key.strip_prefix(ENV_PREFIX)?;
                (!name.is_empty()).then(|| (name.to_owned(), value))
            })
            .collect();
        Self { fields }
    }

    /// Whether no field is set.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// The non-empty value of `key`, written exactly or in another case (a variable
    /// `GUST_ARTIFACTS_ENDPOINT_URL` serves `endpoint_url`).
    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .get(key)
            .or_else(|| {
                self.fields
                    .iter()
                    .find(|(name, _)| name.eq_ignore_ascii_case(key))
                    .map(|(_, value)| value)
            })
            .map(String::as_str)
            .filter(|value| !value.is_empty())
    }

    /// The first of `keys` that is set.
    pub(crate) fn first(&self, keys: &[&str]) -> Option<&str> {
        keys.iter().find_map(|key| self.get(key))
    }

    /// Every value that must never be shown: all but the plain settings, and the standard
    /// credential variables of the environment.
    pub(crate) fn secrets(&self) -> Vec<String> {
        let mut secrets: Vec<String> = self
            .fields
            .iter()
            .filter(|(key, _)| {
                !SETTINGS
                    .iter()
                    .any(|setting| setting.eq_ignore_ascii_case(key))
            })
            .map(|(_, value)| value.clone())
            .collect();
        for (key, value) in std::env::vars_os() {
            let (Some(key), Some(value)) = (key.to_str(), value.to_str()) else {
                continue;
            };
            let standard = ["AWS_", "AZURE_", "GOOGLE_", "OSS_"]
                .iter()
                .any(|prefix| key.starts_with(prefix));
            let secret = ["SECRET", "TOKEN", "KEY", "PASSWORD", "SAS"]
                .iter()
                .any(|word| key.contains(word));
            if standard && secret && !key.ends_with("_PATH") {
                secrets.push(value.to_owned());
            }
        }
        // Very short values would mask ordinary words; no real secret is that short.
        secrets.retain(|value| value.len() >= 4);
        secrets
    }
}

impl std::fmt::Debug for StoreCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut map = f.debug_map();
        for key in self.fields.keys() {
            map.entry(key, &"***");
        }
        map.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(pairs: &[(&str, &str)]) -> StoreCredentials {
        StoreCredentials::from_fields(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        )
    }

    #[test]
    fn debug_masks_every_value() {
        let c = creds(&[
            ("login", "AKIDEXAMPLE"),
            ("endpoint_url", "http://minio:9000"),
        ]);
        let text = format!("{c:?}");
        assert_eq!(text, r#"{"endpoint_url": "***", "login": "***"}"#);
    }

    #[test]
    fn env_variables_keep_their_case_and_lose_the_prefix() {
        let c = StoreCredentials::from_vars([
            ("GUST_ARTIFACTS_login".to_owned(), "id".to_owned()),
            (
                "GUST_ARTIFACTS_ENDPOINT_URL".to_owned(),
                "http://x".to_owned(),
            ),
            ("GUST_ARTIFACTS_".to_owned(), "ignored".to_owned()),
            ("HOME".to_owned(), "/root".to_owned()),
        ]);
        assert_eq!(c.get("login"), Some("id"));
        assert_eq!(c.get("endpoint_url"), Some("http://x"));
        assert_eq!(
            format!("{c:?}"),
            r#"{"ENDPOINT_URL": "***", "login": "***"}"#
        );
    }

    #[test]
    fn secrets_are_every_value_but_plain_settings() {
        let c = creds(&[
            ("login", "AKIDEXAMPLE"),
            ("password", "wJalrXUtnFEMI"),
            ("region_name", "eu-west-1"),
            ("endpoint_url", "http://minio:9000"),
        ]);
        let secrets = c.secrets();
        assert!(secrets.contains(&"AKIDEXAMPLE".to_owned()));
        assert!(secrets.contains(&"wJalrXUtnFEMI".to_owned()));
        assert!(!secrets.contains(&"eu-west-1".to_owned()));
    }
}
