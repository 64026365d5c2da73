//! YAML that Kubernetes reads back as it was written.
//!
//! `serde_yaml_ng` quotes the strings YAML 1.2 would read as something else (`true`, `1.5`), but
//! kubectl (go-yaml v2) and Python's YAML read YAML 1.1, where `yes`, `on`, `2026-12-07` and
//! `1:20` are not strings either: an env value or label printed plain would come back as a bool,
//! a timestamp or a number. Those strings are single-quoted here.

use serde::Serialize;
use serde_json::Value;

/// `value` as YAML, every string YAML 1.1 would read as another type single-quoted.
pub fn to_string<T: Serialize>(value: &T) -> Result<String, serde_yaml_ng::Error> {
    let mut value =
        serde_json::to_value(value).map_err(<serde_yaml_ng::Error as serde::ser::Error>::custom)?;
    let mut quoted = Vec::new();
    stand_in(&mut value, &mut quoted);
    let mut yaml = serde_yaml_ng::to_string(&value)?;
    // Later stand-ins first, so `…_1` never matches inside `…_12`.
    for (n, text) in quoted.iter().enumerate().rev() {
        yaml = yaml.replace(&placeholder(n), &format!("'{}'", text.replace('\'', "''")));
    }
    Ok(yaml)
}

/// The plain token a quoted string stands in as while serialising.
fn placeholder(n: usize) -> String {
    format!("gust-yaml11-string-{n}-x")
}

/// Replaces every ambiguous string (keys too) with a placeholder, remembering it.
fn stand_in(value: &mut Value, quoted: &mut Vec<String>) {
    match value {
        Value::String(text) if read_otherwise_by_yaml11(text) => {
            quoted.push(std::mem::take(text));
            *text = placeholder(quoted.len() - 1);
        }
        Value::Array(items) => items.iter_mut().for_each(|item| stand_in(item, quoted)),
        Value::Object(map) => {
            let entries = std::mem::take(map);
            for (key, mut item) in entries {
                stand_in(&mut item, quoted);
                let key = if read_otherwise_by_yaml11(&key) {
                    quoted.push(key);
                    placeholder(quoted.len() - 1)
                } else {
                    key
                };
                map.insert(key, item);
            }
        }
        _ => {}
    }
}

/// Whether YAML 1.1 reads `text`, written plain, as a bool, null, timestamp or number that
/// YAML 1.2 (and so `serde_yaml_ng`'s quoting) does not.
fn read_otherwise_by_yaml11(text: &str) -> bool {
    const WORDS: [&str; 10] = [
        "y", "yes", "n", "no", "on", "off", "true", "false", "null", "~",
    ];
    let lower = text.to_ascii_lowercase();
    WORDS.contains(&lower.as_str())
        || is_timestamp(text)
        || is_sexagesimal(text)
        || is_underscored_number(text)
}

/// `2026-12-07`, `2026-12-07T01:59:18+00:00` and the other YAML 1.1 timestamps start so.
fn is_timestamp(text: &str) -> bool {
    let mut parts = text.splitn(3, '-');
    let (Some(year), Some(month), Some(rest)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let day: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let digits = |s: &str, len: std::ops::RangeInclusive<usize>| {
        len.contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
    };
    digits(year, 4..=4) && digits(month, 1..=2) && digits(&day, 1..=2)
}

/// `1:20`, `-3:25:45.5`: base-60 numbers in YAML 1.1.
fn is_sexagesimal(text: &str) -> bool {
    let body = text.trim_start_matches(['-', '+']);
    let whole = body.split('.').next().unwrap_or_default();
    let mut groups = whole.split(':');
    let first = groups.next().unwrap_or_default();
    let rest: Vec<&str> = groups.collect();
    !rest.is_empty()
        && !first.is_empty()
        && first.bytes().all(|b| b.is_ascii_digit() || b == b'_')
        && rest
            .iter()
            .all(|g| !g.is_empty() && g.len() <= 2 && g.bytes().all(|b| b.is_ascii_digit()))
}

/// `1_000`: YAML 1.1 ignores underscores in numbers.
fn is_underscored_number(text: &str) -> bool {
    let body = text.trim_start_matches(['-', '+']);
    body.contains('_')
        && body.starts_with(|c: char| c.is_ascii_digit())
        && body
            .bytes()
            .all(|b| b.is_ascii_digit() || b == b'_' || b == b'.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_yaml_11_reads_otherwise_are_quoted_and_read_back_as_strings() {
        let value = serde_json::json!({
            "env": [
                {"name": "WHEN", "value": "2026-12-07T01:59:18+00:00"},
                {"name": "DAY", "value": "2026-12-07"},
                {"name": "FLAG", "value": "on"},
                {"name": "ANSWER", "value": "No"},
                {"name": "TIME", "value": "1:20"},
                {"name": "BIG", "value": "1_000"},
                {"name": "QUOTE", "value": "it's 2026-12-07"},
                {"name": "PLAIN", "value": "hello"},
            ],
            "yes": "label key",
        });
        let yaml = to_string(&value).unwrap();
        for quoted in [
            "'2026-12-07T01:59:18+00:00'",
            "'2026-12-07'",
            "'on'",
            "'No'",
            "'1:20'",
            "'1_000'",
            "'yes':",
        ] {
            assert!(yaml.contains(quoted), "{quoted} in\n{yaml}");
        }
        assert!(yaml.contains("value: hello"), "{yaml}");
        assert!(yaml.contains("value: it's 2026-12-07"), "{yaml}");
        let back: Value = serde_yaml_ng::from_str(&yaml).unwrap();
        assert_eq!(back, value);
    }

    #[test]
    fn ordinary_strings_stay_plain() {
        for text in [
            "nginx:1.25",
            "2026",
            "12-07",
            "a:b",
            "on-call",
            "1.2.3",
            "v1_2",
        ] {
            assert!(!read_otherwise_by_yaml11(text), "{text}");
        }
    }
}
