//! `S3KeySensor`'s poke: every key waited for is in its bucket (or, with `wildcard_match` or
//! `use_regex`, some key matches), read through gust-artifacts' object stores with the
//! credentials of `aws_conn_id`.

use std::collections::BTreeMap;

use gust_artifacts::{ArtifactError, Artifacts, StoreCredentials};
use gust_operators::sensors::s3::{DEFAULT_CONN_ID, S3KeyArgs};
use gust_template::{RuntimeLookup, TemplateConnection};

use crate::decide::Poke;

/// Pokes for every key of `args`.
pub async fn poke(args: &S3KeyArgs, lookup: Option<&dyn RuntimeLookup>) -> (Poke, String) {
    let credentials = match credentials(args, lookup) {
        Ok(credentials) => credentials,
        Err(why) => return (Poke::Error(why), String::new()),
    };
    let artifacts = Artifacts::new(credentials);
    let mut said = Vec::new();
    for key in &args.bucket_key {
        let (bucket, key) = match bucket_and_key(args.bucket_name.as_deref(), key) {
            Ok(found) => found,
            Err(why) => return (Poke::Error(why), said.join("\n")),
        };
        said.push(format!("Poking for key : s3://{bucket}/{key}"));
        match check_key(&artifacts, args, &bucket, &key).await {
            Ok(true) => {}
            Ok(false) => return (Poke::NotYet, said.join("\n")),
            Err(why) => return (Poke::Error(why), said.join("\n")),
        }
    }
    (Poke::Met, said.join("\n"))
}

/// The bucket and key `bucket_key` names, as Airflow's `S3Hook.get_s3_bucket_key`: a full
/// `s3://` URL without `bucket_name`, a key relative to it with one.
fn bucket_and_key(bucket_name: Option<&str>, bucket_key: &str) -> Result<(String, String), String> {
    let url = bucket_key
        .strip_prefix("s3://")
        .or_else(|| bucket_key.strip_prefix("s3a://"))
        .or_else(|| bucket_key.strip_prefix("s3n://"));
    match (bucket_name, url) {
        (Some(bucket), None) => Ok((
            bucket.to_owned(),
            bucket_key.trim_start_matches('/').to_owned(),
        )),
        (Some(_), Some(_)) => Err(format!(
            "bucket_key \"{bucket_key}\" is a full s3:// URL although bucket_name is given: give a key relative to the bucket, or drop bucket_name"
        )),
        (None, Some(rest)) => match rest.split_once('/') {
            Some((bucket, key)) if !bucket.is_empty() && !key.is_empty() => {
                Ok((bucket.to_owned(), key.to_owned()))
            }
            _ => Err(format!(
                "bucket_key \"{bucket_key}\" names no key: write s3://bucket/key"
            )),
        },
        (None, None) => Err(format!(
            "bucket_key \"{bucket_key}\" is not an s3:// URL and no bucket_name is given: write s3://bucket/key or give bucket_name"
        )),
    }
}

/// Whether `key` (a pattern with `wildcard_match` or `use_regex`) is in `bucket`.
async fn check_key(
    artifacts: &Artifacts,
    args: &S3KeyArgs,
    bucket: &str,
    key: &str,
) -> Result<bool, String> {
    if !args.wildcard_match && !args.use_regex {
        let uri = format!("s3://{bucket}/{key}");
        return artifacts.exists(&uri).await.map_err(|err| err.to_string());
    }
    let matches: Box<dyn Fn(&str) -> bool + Send> = if args.wildcard_match {
        let glob = globset::GlobBuilder::new(key)
            .literal_separator(false)
            .backslash_escape(false)
            .build()
            .map_err(|err| format!("bucket_key \"{key}\" is not a valid wildcard: {err}"))?
            .compile_matcher();
        Box::new(move |candidate| glob.is_match(candidate))
    } else {
        let regex = regex::Regex::new(&format!("^(?:{key})")).map_err(|err| {
            format!("bucket_key \"{key}\" is not a valid regular expression: {err}")
        })?;
        Box::new(move |candidate| regex.is_match(candidate))
    };
    // The keys before the first wildcard's folder (all of them for a regular expression).
    let literal = if args.wildcard_match {
        key.split(['*', '?', '[']).next().unwrap_or("")
    } else {
        ""
    };
    let folder = literal.rfind('/').map_or("", |end| &literal[..=end]);
    let base = format!("s3://{bucket}/");
    let found = list(artifacts, &format!("{base}{folder}")).await?;
    Ok(found
        .iter()
        .filter_map(|uri| uri.strip_prefix(&base))
        .any(matches))
}

/// The URIs of the objects at or under `uri`; none when nothing is there.
async fn list(artifacts: &Artifacts, uri: &str) -> Result<Vec<String>, String> {
    match artifacts.list(uri).await {
        Ok(found) => Ok(found.into_iter().map(|entry| entry.uri).collect()),
        Err(ArtifactError::NotFound { .. }) => Ok(Vec::new()),
        Err(err) => Err(err.to_string()),
    }
}

/// The credentials of `aws_conn_id` (`aws_default`, when it does not exist, and `null` use the
/// environment's, as Airflow's default connection has none), with `region_name` over its region.
fn credentials(
    args: &S3KeyArgs,
    lookup: Option<&dyn RuntimeLookup>,
) -> Result<StoreCredentials, String> {
    let mut fields = BTreeMap::new();
    if let Some(conn_id) = &args.aws_conn_id {
        match lookup.and_then(|lookup| lookup.connection(conn_id)) {
            Some(conn) => fields = connection_fields(&conn)?,
            None if conn_id == DEFAULT_CONN_ID => {}
            None => {
                return Err(format!(
                    "connection \"{conn_id}\" (aws_conn_id) does not exist: create it with `gust connections add {conn_id} --conn-type aws --conn-login KEY_ID --conn-password SECRET`, or set aws_conn_id: null to use the environment's credentials"
                ));
            }
        }
    }
    if let Some(region) = &args.region_name {
        fields.insert("region_name".to_owned(), region.clone());
    }
    Ok(if fields.is_empty() {
        StoreCredentials::from_env()
    } else {
        StoreCredentials::from_fields(fields)
    })
}

/// A connection's fields and its extra's keys, as gust-artifacts reads them.
fn connection_fields(conn: &TemplateConnection) -> Result<BTreeMap<String, String>, String> {
    let mut fields = BTreeMap::new();
    for (name, value) in [
        ("login", conn.login.clone()),
        ("password", conn.password.clone()),
        ("host", conn.host.clone()),
        ("port", conn.port.map(|p| p.to_string())),
        ("schema", conn.schema.clone()),
    ] {
        if let Some(value) = value {
            fields.insert(name.to_owned(), value);
        }
    }
    let extra: serde_json::Map<String, serde_json::Value> = match conn.extra.as_deref() {
        None | Some("") => serde_json::Map::new(),
        Some(text) => serde_json::from_str(text).map_err(|_| {
            format!(
                "connection \"{}\": its extra is not a JSON object",
                conn.conn_id
            )
        })?,
    };
    for (key, value) in extra {
        let text = match value {
            serde_json::Value::String(text) => text,
            serde_json::Value::Null => continue,
            other => other.to_string(),
        };
        fields.insert(key, text);
    }
    Ok(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_urls_without_a_bucket_and_relative_with_one() {
        assert_eq!(
            bucket_and_key(None, "s3://b/a/k.csv").unwrap(),
            ("b".into(), "a/k.csv".into())
        );
        assert_eq!(
            bucket_and_key(Some("b"), "a/k.csv").unwrap(),
            ("b".into(), "a/k.csv".into())
        );
        assert!(
            bucket_and_key(Some("b"), "s3://b/k")
                .unwrap_err()
                .contains("drop bucket_name")
        );
        assert!(
            bucket_and_key(None, "k")
                .unwrap_err()
                .contains("s3://bucket/key")
        );
        assert!(bucket_and_key(None, "s3://b").is_err());
    }
}
