//! Hiding secrets in answers as Airflow's secrets masker does (`gust_secrets`): a value whose
//! name is sensitive (a connection's password, an `extra` key such as `api_key`, a variable
//! named `db_password`) is answered as `***`, at any depth, and every secret value the process
//! knows is masked inside any other string; a `***` sent back in a change keeps the stored value.
//! Also `python_json`, the text Python's `json.dumps` writes, which Airflow answers values in.

use serde_json::Value;

/// What a hidden value is answered as.
pub use gust_secrets::MASK;

/// Whether values named `name` are hidden (Airflow's sensitive names and `[core]
/// sensitive_var_conn_names`, see `gust_secrets::SensitiveNames`).
#[must_use]
pub fn is_sensitive(name: &str) -> bool {
    gust_secrets::current().is_sensitive(name)
}

/// `value` as it may be answered: every string under a sensitive name replaced by [`MASK`], at
/// any depth, and every secret the process knows masked inside the other strings; `name` is
/// the name of `value` itself (a variable's key), if any.
#[must_use]
pub fn redact(value: &Value, name: Option<&str>) -> Value {
    gust_secrets::current().redact(value, name)
}

/// A try's rendered arguments as they may be answered: [`redact`], and the values the arguments
/// themselves and its run's `conf` hold under sensitive names (`env: {MYSECRET: ...}`,
/// `{"db_password": ...}`) masked wherever else they appear (a `bash_command` that repeats
/// one), even in a process that did not launch the try.
#[must_use]
pub fn redact_args(
    args: &serde_json::Map<String, Value>,
    conf: &serde_json::Map<String, Value>,
) -> serde_json::Map<String, Value> {
    let masker = masker_for_args(args, conf);
    args.iter()
        .map(|(name, value)| (name.clone(), masker.redact(value, Some(name))))
        .collect()
}

/// A run's conf as it may be answered: values under sensitive keys hidden, secrets masked.
#[must_use]
pub fn redact_conf(conf: &serde_json::Map<String, Value>) -> serde_json::Map<String, Value> {
    conf.iter()
        .map(|(name, value)| (name.clone(), redact(value, Some(name))))
        .collect()
}

/// The process's masker with the secrets a try's arguments and its run's `conf` hold under
/// sensitive names.
#[must_use]
pub fn masker_for_args(
    args: &serde_json::Map<String, Value>,
    conf: &serde_json::Map<String, Value>,
) -> gust_secrets::Masker {
    let base = gust_secrets::current();
    let mut own = base.names().secrets_in_args(args);
    own.extend(base.names().secrets_in(&Value::Object(conf.clone()), None));
    base.with(own)
}

/// A changed value merged with the stored one: wherever `new` still says [`MASK`] under a
/// sensitive name, the stored value is kept (a client that read `***` and sent it back did not
/// mean to set the secret to `***`).
#[must_use]
pub fn merge(new: &Value, old: &Value, name: Option<&str>) -> Value {
    merge_at(new, old, name, false)
}

fn merge_at(new: &Value, old: &Value, name: Option<&str>, force: bool) -> Value {
    let sensitive = force || name.is_some_and(is_sensitive);
    match (new, old) {
        (Value::Object(new_map), Value::Object(old_map)) => Value::Object(
            new_map
                .iter()
                .map(|(k, v)| {
                    let merged = match old_map.get(k) {
                        Some(o) => merge_at(v, o, (!sensitive).then_some(k.as_str()), sensitive),
                        None => v.clone(),
                    };
                    (k.clone(), merged)
                })
                .collect(),
        ),
        (Value::Array(new_items), Value::Array(old_items)) => Value::Array(
            new_items
                .iter()
                .enumerate()
                .map(|(i, v)| match old_items.get(i) {
                    Some(o) => merge_at(v, o, None, sensitive),
                    None => v.clone(),
                })
                .collect(),
        ),
        (Value::String(s), _) if sensitive && s == MASK => old.clone(),
        _ => new.clone(),
    }
}

/// `value` as Python's `json.dumps` writes it (`, ` and `: ` between items, non-ASCII as
/// `\uXXXX`): the text Airflow answers JSON-valued fields in.
#[must_use]
pub fn python_json(value: &Value) -> String {
    let mut out = Vec::new();
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, PythonFormatter);
    // Writing a Value into memory cannot fail: its keys are strings, its numbers finite.
    if serde::Serialize::serialize(value, &mut serializer).is_err() {
        return value.to_string();
    }
    String::from_utf8(out).unwrap_or_else(|_| value.to_string())
}

/// Python's default `json.dumps` layout.
struct PythonFormatter;

impl serde_json::ser::Formatter for PythonFormatter {
    fn begin_array_value<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        item_separator(writer, first)
    }

    fn begin_object_key<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        item_separator(writer, first)
    }

    fn begin_object_value<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
    ) -> std::io::Result<()> {
        writer.write_all(b": ")
    }

    fn write_string_fragment<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> std::io::Result<()> {
        if fragment.is_ascii() {
            return writer.write_all(fragment.as_bytes());
        }
        let mut units = [0u16; 2];
        for c in fragment.chars() {
            if c.is_ascii() {
                writer.write_all(&[c as u8])?;
            } else {
                for unit in c.encode_utf16(&mut units) {
                    write!(writer, "\\u{unit:04x}")?;
                }
            }
        }
        Ok(())
    }
}

/// Python's `, ` before every item but the first.
fn item_separator<W: ?Sized + std::io::Write>(writer: &mut W, first: bool) -> std::io::Result<()> {
    if first {
        Ok(())
    } else {
        writer.write_all(b", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_tries_own_secrets_are_masked_wherever_its_arguments_repeat_them() {
        let args = json!({
            "bash_command": "echo own-secret-value; curl -u me:own-secret-value x",
            "env": {"MYSECRET": "own-secret-value", "HOME": "/root"},
        });
        let shown = Value::Object(redact_args(
            args.as_object().unwrap(),
            &serde_json::Map::new(),
        ));
        assert_eq!(
            shown,
            json!({
                "bash_command": "echo ***; curl -u me:*** x",
                "env": {"MYSECRET": "***", "HOME": "/root"},
            })
        );
    }

    #[test]
    fn a_runs_conf_secrets_are_masked_in_its_tries_arguments() {
        let args = json!({"bash_command": "echo cf=conf-only-secret"});
        let conf = json!({"db_password": "conf-only-secret", "n": 1});
        let shown = redact_args(args.as_object().unwrap(), conf.as_object().unwrap());
        assert_eq!(shown["bash_command"], "echo cf=***");
    }

    #[test]
    fn redaction_hides_strings_under_sensitive_names_at_any_depth() {
        let extra =
            json!({"region": "eu", "api_key": "abc", "nested": [{"token": {"a": "x", "n": 1}}]});
        assert_eq!(
            redact(&extra, None),
            json!({"region": "eu", "api_key": "***", "nested": [{"token": {"a": "***", "n": 1}}]})
        );
        assert_eq!(redact(&json!("hunter2"), Some("db_password")), json!("***"));
        assert_eq!(redact(&json!("eu"), Some("region")), json!("eu"));
    }

    #[test]
    fn a_mask_sent_back_keeps_the_stored_secret() {
        let old = json!({"api_key": "abc", "region": "eu", "list": ["s1", "s2"]});
        let new = json!({"api_key": "***", "region": "***", "extra": 1});
        assert_eq!(
            merge(&new, &old, None),
            json!({"api_key": "abc", "region": "***", "extra": 1})
        );
        assert_eq!(
            merge(&json!("***"), &json!("pw"), Some("password")),
            json!("pw")
        );
        assert_eq!(
            merge(&json!("new"), &json!("pw"), Some("password")),
            json!("new")
        );
    }

    #[test]
    fn json_is_written_as_python_writes_it() {
        assert_eq!(
            python_json(&json!({"a": [1, 2.5, null, true], "é": "ü"})),
            r#"{"a": [1, 2.5, null, true], "\u00e9": "\u00fc"}"#
        );
        assert_eq!(python_json(&json!("😀")), r#""\ud83d\ude00""#);
    }
}
