//! `S3KeySensor`: waits for one or more keys (or keys matching a wildcard or a regular
//! expression) in an S3 bucket, read with the credentials of `aws_conn_id`.

use serde::{Deserialize, Deserializer};

use super::SensorSettings;
use crate::spec::{ArgumentError, OperatorSpec, read_args};

/// The connection `S3KeySensor` signs with unless told otherwise.
pub const DEFAULT_CONN_ID: &str = "aws_default";

/// `S3KeySensor`'s arguments.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct S3KeyArgs {
    /// The key, or keys (all must be there), waited for: relative to `bucket_name`, or full
    /// `s3://bucket/key` URLs without it (templated).
    #[serde(deserialize_with = "one_or_many")]
    pub bucket_key: Vec<String>,
    /// The bucket (templated).
    #[serde(default)]
    pub bucket_name: Option<String>,
    /// Keys are Unix shell patterns (`*`, `?`, `[...]`, as Python's `fnmatch`).
    #[serde(default)]
    pub wildcard_match: bool,
    /// Keys are regular expressions matched at the start of each key (Python's `re.match`).
    #[serde(default)]
    pub use_regex: bool,
    /// The connection whose credentials (and `endpoint_url`, `region_name` extras) are used;
    /// `null` for the environment's.
    #[serde(default = "default_conn_id")]
    pub aws_conn_id: Option<String>,
    /// The region, over the connection's.
    #[serde(default)]
    pub region_name: Option<String>,
    /// Accepted; certificates are always verified against the system's roots.
    #[serde(default)]
    pub verify: Option<serde_json::Value>,
    /// A Python callable: refused.
    #[serde(default)]
    pub check_fn: Option<serde_json::Value>,
    /// Accepted (used only by `check_fn`).
    #[serde(default)]
    pub metadata_keys: Option<Vec<String>>,
    /// How it waits.
    #[serde(flatten)]
    pub settings: SensorSettings,
}

#[allow(clippy::unnecessary_wraps, reason = "serde's default takes this type")]
fn default_conn_id() -> Option<String> {
    Some(DEFAULT_CONN_ID.to_owned())
}

fn one_or_many<'de, D: Deserializer<'de>>(de: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged, expecting = "expected a key or a list of keys")]
    enum Keys {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Keys::deserialize(de)? {
        Keys::One(key) => vec![key],
        Keys::Many(keys) => keys,
    })
}

/// Why `check_fn` is refused.
pub const NO_CHECK_FN: &str = "check_fn takes a Python callable, which Gust's native \
    S3KeySensor does not run: wait for the key alone, or match keys with wildcard_match or \
    use_regex";

fn check(args: &serde_json::Map<String, serde_json::Value>) -> Result<(), ArgumentError> {
    let args: S3KeyArgs = read_args(args)?;
    if args.check_fn.is_some() {
        return Err(ArgumentError {
            path: "check_fn".to_owned(),
            message: NO_CHECK_FN.to_owned(),
        });
    }
    if args.bucket_key.is_empty() {
        return Err(ArgumentError {
            path: "bucket_key".to_owned(),
            message: "give at least one key".to_owned(),
        });
    }
    args.settings.check()
}

/// `S3KeySensor`.
pub static SPEC: OperatorSpec = OperatorSpec {
    name: "s3_key_sensor",
    aliases: &[
        "S3KeySensor",
        "airflow.providers.amazon.aws.sensors.s3.S3KeySensor",
        "airflow.providers.amazon.aws.sensors.s3_key.S3KeySensor",
        "airflow.sensors.s3_key_sensor.S3KeySensor",
    ],
    arguments: sensor_arguments!(
        "bucket_key",
        "bucket_name",
        "wildcard_match",
        "use_regex",
        "aws_conn_id",
        "region_name",
        "verify",
        "check_fn",
        "metadata_keys"
    ),
    renamed_arguments: &[],
    required: &["bucket_key"],
    pushes_xcom_by_default: true,
    holds_worker: false,
    open_arguments: false,
    check,
};

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(value: serde_json::Value) -> Result<(), ArgumentError> {
        (SPEC.check)(value.as_object().expect("an object"))
    }

    #[test]
    fn keys_are_one_or_many_and_check_fn_is_refused() {
        let one: S3KeyArgs =
            read_args(json!({"bucket_key": "s3://b/k"}).as_object().unwrap()).unwrap();
        assert_eq!(one.bucket_key, ["s3://b/k"]);
        assert_eq!(one.aws_conn_id.as_deref(), Some("aws_default"));
        let many: S3KeyArgs = read_args(
            json!({"bucket_key": ["a", "b"], "bucket_name": "b", "aws_conn_id": null})
                .as_object()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(many.bucket_key, ["a", "b"]);
        assert_eq!(many.aws_conn_id, None);
        let err = check(json!({"bucket_key": "k", "check_fn": "my.fn"})).unwrap_err();
        assert_eq!(err.path, "check_fn");
        assert!(check(json!({"bucket_key": []})).is_err());
    }
}
