//! [`Masker`]: a set of secret values, each found in text (as is and in its common encodings)
//! and replaced by [`MASK`], longest match first; and [`Masker::redact`], which also hides
//! every value under a sensitive name in a JSON value.
//!
//! Semantics follow Airflow's `SecretsMasker`: a secret shorter than the minimum length
//! (`[logging] min_length_masked_secret`, 5 by default) is not masked, as masking `a` would
//! hide every letter a; `airflow` is never a secret. Beyond Airflow, each secret is also looked
//! for JSON-escaped and URL-encoded (as it appears inside a JSON document or a connection URI),
//! and each line of a secret of several lines (a private key) on its own, because task output
//! reaches the log one line at a time.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::fmt;

use aho_corasick::{AhoCorasick, MatchKind};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::Value;

use crate::names::SensitiveNames;

/// What a hidden value is shown as.
pub const MASK: &str = "***";

/// Airflow's default `[logging] min_length_masked_secret`: shorter secrets are not masked.
pub const DEFAULT_MIN_LENGTH: usize = 5;

/// Values that are never secrets, whatever holds them (Airflow's `SECRETS_TO_SKIP_MASKING`).
const NEVER_SECRET: &[&str] = &["airflow"];

/// What Python's `urllib.parse.quote(s, safe="")` leaves as is: letters, digits and `_.-~`.
const URL_ENCODED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'_')
    .remove(b'.')
    .remove(b'-')
    .remove(b'~');

/// Finds secrets in text and hides them. Cheap to clone (the automaton is shared).
#[derive(Clone)]
pub struct Masker {
    names: SensitiveNames,
    min_length: usize,
    /// The secrets as given, kept to build a larger masker from ([`Masker::with`]).
    secrets: BTreeSet<String>,
    matcher: Matcher,
}

/// How the secrets are found.
#[derive(Clone)]
enum Matcher {
    /// No secret to look for.
    Nothing,
    /// Every pattern (the secrets and their encodings), leftmost-longest.
    Patterns(AhoCorasick),
    /// The automaton could not be built (only past its size limits): every text is hidden
    /// whole, since showing a secret is worse than showing nothing.
    Everything,
}

impl Default for Masker {
    /// No secrets, Airflow's sensitive names and minimum length.
    fn default() -> Self {
        Self::new(SensitiveNames::default(), DEFAULT_MIN_LENGTH, [])
    }
}

/// Opaque: the count of secrets, never one of them.
impl fmt::Debug for Masker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Masker({} secrets)", self.secrets.len())
    }
}

impl Masker {
    /// A masker hiding `secrets` (those shorter than `min_length` characters excepted) and the
    /// values under `names`.
    #[must_use]
    pub fn new(
        names: SensitiveNames,
        min_length: usize,
        secrets: impl IntoIterator<Item = String>,
    ) -> Self {
        let secrets: BTreeSet<String> = secrets
            .into_iter()
            .filter(|s| is_maskable(s, min_length))
            .collect();
        let matcher = build_matcher(&secrets, min_length);
        Self {
            names,
            min_length,
            secrets,
            matcher,
        }
    }

    /// This masker with `more` secrets (a try's own, an answer's own); `self` when none is new.
    #[must_use]
    pub fn with(&self, more: impl IntoIterator<Item = String>) -> Self {
        let new: Vec<String> = more
            .into_iter()
            .filter(|s| is_maskable(s, self.min_length) && !self.secrets.contains(s))
            .collect();
        if new.is_empty() {
            return self.clone();
        }
        Self::new(
            self.names.clone(),
            self.min_length,
            self.secrets.iter().cloned().chain(new),
        )
    }

    /// The sensitive names in force.
    #[must_use]
    pub fn names(&self) -> &SensitiveNames {
        &self.names
    }

    /// The minimum length of a masked secret.
    #[must_use]
    pub fn min_length(&self) -> usize {
        self.min_length
    }

    /// How many secrets it hides.
    #[must_use]
    pub fn len(&self) -> usize {
        self.secrets.len()
    }

    /// Whether it hides no secret (names still hide values in [`Masker::redact`]).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    /// Whether values named `name` are secret.
    #[must_use]
    pub fn is_sensitive(&self, name: &str) -> bool {
        self.names.is_sensitive(name)
    }

    /// `text` with every secret (and each of its encodings) replaced by [`MASK`]; where two
    /// overlap at one place, the longer is replaced.
    #[must_use]
    pub fn mask<'t>(&self, text: &'t str) -> Cow<'t, str> {
        match &self.matcher {
            Matcher::Nothing => Cow::Borrowed(text),
            Matcher::Patterns(patterns) => {
                if patterns.find(text).is_none() {
                    return Cow::Borrowed(text);
                }
                let mut out = String::with_capacity(text.len());
                patterns.replace_all_with(text, &mut out, |_, _, out| {
                    out.push_str(MASK);
                    true
                });
                Cow::Owned(out)
            }
            Matcher::Everything if text.is_empty() => Cow::Borrowed(text),
            Matcher::Everything => Cow::Borrowed(MASK),
        }
    }

    /// `value` as it may be shown: every string under a sensitive name hidden whole, at any
    /// depth (`name` is the name of `value` itself, a variable's key or an argument's), the
    /// `value` of a `{name, value}` pair whose name is sensitive (a pod's environment variable)
    /// hidden whole, and the secrets masked inside every other string.
    #[must_use]
    pub fn redact(&self, value: &Value, name: Option<&str>) -> Value {
        if name.is_some_and(|n| self.names.is_sensitive(n)) {
            return redact_all(value);
        }
        match value {
            Value::Object(map) => {
                let env_pair = is_env_pair(map, &self.names);
                Value::Object(
                    map.iter()
                        .map(|(k, v)| {
                            let shown = if env_pair && k == "value" {
                                redact_all(v)
                            } else {
                                self.redact(v, Some(k))
                            };
                            (k.clone(), shown)
                        })
                        .collect(),
                )
            }
            Value::Array(items) => {
                Value::Array(items.iter().map(|v| self.redact(v, None)).collect())
            }
            Value::String(text) => Value::String(self.mask(text).into_owned()),
            other => other.clone(),
        }
    }
}

impl SensitiveNames {
    /// The secrets `value` holds: all its strings when `name` (its own name) is sensitive, else
    /// every string under a sensitive key at any depth and the `value` of every `{name, value}`
    /// pair whose name is sensitive. What a try's arguments, a variable or a connection's
    /// `extra` add to a [`Masker`].
    #[must_use]
    pub fn secrets_in(&self, value: &Value, name: Option<&str>) -> Vec<String> {
        let mut found = Vec::new();
        self.collect(value, name, &mut found);
        found
    }

    /// The secrets a try's rendered arguments hold ([`SensitiveNames::secrets_in`] of each),
    /// but for the arguments that only name secrets kept elsewhere ([`REFERENCE_ARGS`]).
    #[must_use]
    pub fn secrets_in_args(&self, args: &serde_json::Map<String, Value>) -> Vec<String> {
        args.iter()
            .filter(|(name, _)| !REFERENCE_ARGS.contains(&name.as_str()))
            .flat_map(|(name, value)| self.secrets_in(value, Some(name)))
            .collect()
    }

    fn collect(&self, value: &Value, name: Option<&str>, found: &mut Vec<String>) {
        // A Kubernetes object naming a Secret or a service account (`secret: {secretName: x}`
        // in a volume, `imagePullSecrets: [{name: x}]`) holds names, not secrets.
        let names_only = name
            .is_some_and(|n| REFERENCE_KEYS.contains(&n) || (n == "secret" && value.is_object()));
        if !names_only && name.is_some_and(|n| self.is_sensitive(n)) {
            strings(value, found);
            return;
        }
        match value {
            Value::Object(map) => {
                let env_pair = is_env_pair(map, self);
                for (k, v) in map {
                    if env_pair && k == "value" {
                        strings(v, found);
                    } else {
                        self.collect(v, Some(k), found);
                    }
                }
            }
            Value::Array(items) => {
                for item in items {
                    self.collect(item, None, found);
                }
            }
            _ => {}
        }
    }
}

/// Arguments whose name looks sensitive but which hold only references: KubernetesPodOperator's
/// `secrets` names Kubernetes Secrets and keys (`{secret: db-creds, key: token}`); taking those
/// names for secrets would mask words such as `token` in every log.
pub const REFERENCE_ARGS: &[&str] = &["secrets", "image_pull_secrets", "service_account_name"];

/// Keys of Kubernetes objects (and KubernetesPodOperator arguments) that name Secrets or
/// service accounts: their values are names, which a dry-run's manifest must keep.
const REFERENCE_KEYS: &[&str] = &[
    "image_pull_secrets",
    "imagePullSecrets",
    "secretName",
    "secretRef",
    "secretKeyRef",
    "service_account_name",
    "serviceAccountName",
    "serviceAccount",
    "automountServiceAccountToken",
    "serviceAccountToken",
];

/// Whether `map` is a `{name, value}` pair (a Kubernetes `EnvVar`) with a sensitive name.
fn is_env_pair(map: &serde_json::Map<String, Value>, names: &SensitiveNames) -> bool {
    map.contains_key("value")
        && map
            .get("name")
            .and_then(Value::as_str)
            .is_some_and(|n| names.is_sensitive(n))
}

/// Every string in `value`.
fn strings(value: &Value, found: &mut Vec<String>) {
    match value {
        Value::String(s) => found.push(s.clone()),
        Value::Object(map) => map.values().for_each(|v| strings(v, found)),
        Value::Array(items) => items.iter().for_each(|v| strings(v, found)),
        _ => {}
    }
}

/// Every string in `value` replaced by [`MASK`] (numbers, booleans and nulls say nothing
/// secret, as in Airflow).
fn redact_all(value: &Value) -> Value {
    match value {
        Value::String(_) => Value::String(MASK.to_owned()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), redact_all(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(redact_all).collect()),
        other => other.clone(),
    }
}

/// Whether `text` is long enough to mask and not a word that is never secret.
fn is_maskable(text: &str, min_length: usize) -> bool {
    text.chars().count() >= min_length.max(1)
        && !NEVER_SECRET.iter().any(|w| text.eq_ignore_ascii_case(w))
}

/// The automaton over every secret's forms.
fn build_matcher(secrets: &BTreeSet<String>, min_length: usize) -> Matcher {
    let patterns: BTreeSet<String> = secrets
        .iter()
        .flat_map(|s| forms(s))
        .filter(|p| is_maskable(p, min_length))
        .collect();
    if patterns.is_empty() {
        return Matcher::Nothing;
    }
    match AhoCorasick::builder()
        .match_kind(MatchKind::LeftmostLongest)
        .build(&patterns)
    {
        Ok(automaton) => Matcher::Patterns(automaton),
        Err(_) => Matcher::Everything,
    }
}

/// The forms a secret is looked for in: as is; each of its lines (output reaches logs a line at
/// a time); JSON-escaped, as `json.dumps` with and without `ensure_ascii` writes it inside a
/// string; URL-encoded, as it stands in a connection URI.
fn forms(secret: &str) -> Vec<String> {
    let mut forms = vec![secret.to_owned()];
    if secret.contains('\n') {
        forms.extend(
            secret
                .lines()
                .map(|l| l.trim_end_matches('\r').to_owned())
                .filter(|l| !l.trim().is_empty()),
        );
    }
    let json = Value::String(secret.to_owned()).to_string();
    forms.push(json[1..json.len() - 1].to_owned());
    if !secret.is_ascii() {
        forms.push(ascii_json(secret));
    }
    forms.push(utf8_percent_encode(secret, URL_ENCODED).to_string());
    forms
}

/// `secret` JSON-escaped with every non-ASCII character as `\uXXXX` (Python's default).
fn ascii_json(secret: &str) -> String {
    let json = Value::String(secret.to_owned()).to_string();
    let mut out = String::with_capacity(json.len());
    let mut units = [0u16; 2];
    for c in json[1..json.len() - 1].chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn masker(secrets: &[&str]) -> Masker {
        Masker::new(
            SensitiveNames::default(),
            DEFAULT_MIN_LENGTH,
            secrets.iter().map(|s| (*s).to_owned()),
        )
    }

    #[test]
    fn secrets_are_replaced_wherever_they_occur() {
        let m = masker(&["hunter22"]);
        assert_eq!(m.mask("pw=hunter22; again hunter22!"), "pw=***; again ***!");
        assert!(matches!(m.mask("nothing here"), Cow::Borrowed(_)));
    }

    #[test]
    fn the_longest_secret_wins_where_two_overlap() {
        let m = masker(&["secret", "secret-and-more"]);
        assert_eq!(m.mask("x secret-and-more y secret"), "x *** y ***");
        let m = masker(&["abcdefgh", "defghijk"]);
        assert_eq!(m.mask("abcdefghijk"), "***ijk");
    }

    #[test]
    fn short_secrets_and_airflow_are_not_masked_as_in_airflow() {
        let m = masker(&["abcd", "Airflow", "abcde"]);
        assert_eq!(m.len(), 1);
        assert_eq!(m.mask("abcd Airflow abcde"), "abcd Airflow ***");
        let strict = Masker::new(SensitiveNames::default(), 3, ["abc".to_owned()]);
        assert_eq!(strict.mask("xabcx"), "x***x");
        let zero = Masker::new(SensitiveNames::default(), 0, [String::new()]);
        assert!(zero.is_empty(), "an empty secret would match everywhere");
    }

    #[test]
    fn json_escaped_and_url_encoded_forms_are_masked() {
        let secret = "p@ss\"w/rd é\\x";
        let m = masker(&[secret]);
        let in_json = json!({"password": secret}).to_string();
        assert_eq!(m.mask(&in_json), r#"{"password":"***"}"#);
        let uri = format!(
            "postgres://me:{}@db:5432/x",
            utf8_percent_encode(secret, URL_ENCODED)
        );
        assert_eq!(uri, "postgres://me:p%40ss%22w%2Frd%20%C3%A9%5Cx@db:5432/x");
        assert_eq!(m.mask(&uri), "postgres://me:***@db:5432/x");
        assert_eq!(m.mask(r#""p@ss\"w/rd \u00e9\\x""#), r#""***""#);
    }

    #[test]
    fn each_line_of_a_secret_of_several_lines_is_masked() {
        let key = "-----BEGIN KEY-----\r\nMIIEvQIBADANBgkq\nhkiG9w0BAQEFAASC\n-----END KEY-----";
        let m = masker(&[key]);
        assert_eq!(m.mask("MIIEvQIBADANBgkq"), "***");
        assert_eq!(m.mask("-----BEGIN KEY-----"), "***");
        assert_eq!(m.mask(key), "***");
    }

    #[test]
    fn a_masker_with_more_secrets_keeps_the_first_ones() {
        let base = masker(&["first-secret"]);
        let more = base.with(["second-secret".to_owned(), "no".to_owned()]);
        assert_eq!(more.mask("first-secret second-secret no"), "*** *** no");
        assert_eq!(base.mask("second-secret"), "second-secret");
        assert_eq!(base.with(["first-secret".to_owned()]).len(), 1);
    }

    #[test]
    fn redaction_hides_names_and_masks_values_inside_strings() {
        let m = masker(&["var-api-key-value"]);
        let args = json!({
            "bash_command": "curl -H 'key: var-api-key-value' x",
            "env": {"MYSECRET": "literal-secret", "HOME": "/root", "N": 3},
            "env_vars": [{"name": "SERVICE_TOKEN", "value": "t"}, {"name": "MODE", "value": "fast"}],
            "conn": {"password": null, "login": "me"},
            "nested": [[{"client_secret": {"deep": "x", "n": 1}}]]
        });
        let shown = m.redact(&args, None);
        assert_eq!(shown["bash_command"], "curl -H 'key: ***' x");
        assert_eq!(shown["env"]["MYSECRET"], MASK);
        assert_eq!(shown["env"]["HOME"], "/root");
        assert_eq!(shown["env_vars"][0]["value"], MASK);
        assert_eq!(shown["env_vars"][0]["name"], "SERVICE_TOKEN");
        assert_eq!(shown["env_vars"][1]["value"], "fast");
        assert_eq!(shown["conn"]["password"], Value::Null);
        assert_eq!(
            shown["nested"][0][0]["client_secret"],
            json!({"deep": MASK, "n": 1})
        );
        assert_eq!(
            m.redact(&json!("hunter2"), Some("db_password")),
            json!(MASK)
        );
    }

    #[test]
    fn the_secrets_a_value_holds_are_found_under_sensitive_names() {
        let names = SensitiveNames::default();
        let args = json!({
            "bash_command": "echo $MYSECRET",
            "env": {"MYSECRET": "literal-secret", "HOME": "/root"},
            "env_vars": [{"name": "API_TOKEN", "value": "tok-12345"}],
            "extra": {"nested": [{"api_key": ["k-one", {"x": "k-two"}]}]}
        });
        let mut found = names.secrets_in(&args, None);
        found.sort();
        assert_eq!(found, ["k-one", "k-two", "literal-secret", "tok-12345"]);
        assert_eq!(names.secrets_in(&json!("v"), Some("password")), ["v"]);
        assert!(names.secrets_in(&json!("v"), Some("region")).is_empty());
    }

    #[test]
    fn a_pods_secret_references_are_not_secrets() {
        let args = json!({
            "secrets": [{"deploy_type": "env", "deploy_target": "token", "secret": "db-creds", "key": "token"}],
            "env_vars": {"API_TOKEN": "tok-12345"}
        });
        let found = SensitiveNames::default().secrets_in_args(args.as_object().unwrap());
        assert_eq!(found, ["tok-12345"]);
    }

    #[test]
    fn kubernetes_names_of_secrets_and_service_accounts_are_not_secrets() {
        let args = json!({
            "image_pull_secrets": "regcred",
            "service_account_name": "pipeline-runner",
            "volumes": [{"name": "creds", "secret": {"secretName": "db-creds"}}],
            "full_pod_spec": {"spec": {"imagePullSecrets": [{"name": "regcred"}], "serviceAccountName": "runner"}},
            "env_vars": [{"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db-creds", "key": "pw"}}}]
        });
        let found = SensitiveNames::default().secrets_in_args(args.as_object().unwrap());
        assert!(found.is_empty(), "{found:?}");
    }

    #[test]
    fn without_hiding_names_only_known_secrets_are_masked() {
        let m = Masker::new(
            SensitiveNames::default().hiding(false),
            DEFAULT_MIN_LENGTH,
            ["conn-password".to_owned()],
        );
        let args = json!({"env": {"MYSECRET": "env-value", "URL": "pg://me:conn-password@db"}});
        assert_eq!(
            m.redact(&args, None),
            json!({"env": {"MYSECRET": "env-value", "URL": "pg://me:***@db"}})
        );
        assert_eq!(
            m.redact(&json!("var-value"), Some("api_key")),
            json!("var-value")
        );
        assert!(
            m.names()
                .secrets_in_args(args.as_object().unwrap())
                .is_empty()
        );
    }

    #[test]
    fn debug_output_never_shows_a_secret() {
        assert_eq!(format!("{:?}", masker(&["hunter22"])), "Masker(1 secrets)");
    }
}
