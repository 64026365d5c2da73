//! `bash`: runs a shell command (Airflow's `BashOperator`).
//!
//! With `do_xcom_push` the last line of standard output becomes the task's return value; an exit
//! code listed in `skip_on_exit_code` (default 99) skips the task instead of failing it.

use indexmap::IndexMap;
use serde::{Deserialize, Deserializer};

use crate::spec::{OperatorSpec, check_args};

/// The exit code that skips a task unless `skip_on_exit_code` says otherwise (Airflow's).
pub const DEFAULT_SKIP_EXIT_CODE: i32 = 99;

/// The arguments of a bash task, after rendering.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BashArgs {
    /// The command, run by `bash -c`.
    pub bash_command: String,
    /// Environment variables; without `append_env` they replace the inherited environment.
    #[serde(default, deserialize_with = "string_map")]
    pub env: Option<IndexMap<String, String>>,
    /// Add `env` to the inherited environment instead of replacing it.
    #[serde(default)]
    pub append_env: bool,
    /// The working directory (default: a temporary directory).
    #[serde(default)]
    pub cwd: Option<String>,
    /// Exit codes that skip the task rather than fail it.
    #[serde(default = "default_skip", deserialize_with = "exit_codes")]
    pub skip_on_exit_code: Vec<i32>,
    /// How the command's output is decoded (default `utf-8`).
    #[serde(default = "default_encoding")]
    pub output_encoding: String,
}

fn default_skip() -> Vec<i32> {
    vec![DEFAULT_SKIP_EXIT_CODE]
}

fn default_encoding() -> String {
    "utf-8".to_owned()
}

/// `null`, one code, or a list of codes, as Airflow accepts.
pub(crate) fn exit_codes<'de, D: Deserializer<'de>>(de: D) -> Result<Vec<i32>, D::Error> {
    #[derive(Deserialize)]
    #[serde(
        untagged,
        expecting = "expected an exit code, a list of exit codes, or null"
    )]
    enum Codes {
        One(i32),
        Many(Vec<i32>),
    }
    Ok(match Option::<Codes>::deserialize(de)? {
        None => Vec::new(),
        Some(Codes::One(code)) => vec![code],
        Some(Codes::Many(codes)) => codes,
    })
}

/// A map of names to scalar values; numbers and booleans become their text, as YAML writers
/// expect of environment variables.
fn string_map<'de, D: Deserializer<'de>>(
    de: D,
) -> Result<Option<IndexMap<String, String>>, D::Error> {
    use serde::de::Error;
    let Some(map) = Option::<IndexMap<String, serde_json::Value>>::deserialize(de)? else {
        return Ok(None);
    };
    map.into_iter()
        .map(|(name, value)| match value {
            serde_json::Value::String(text) => Ok((name, text)),
            serde_json::Value::Number(n) => Ok((name, n.to_string())),
            serde_json::Value::Bool(b) => Ok((name, b.to_string())),
            other => Err(D::Error::custom(format!(
                "environment variable \"{name}\" must be a string, not {}",
                json_kind(&other)
            ))),
        })
        .collect::<Result<_, _>>()
        .map(Some)
}

fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "a list",
        serde_json::Value::Object(_) => "a map",
    }
}

/// The bash operator.
pub static SPEC: OperatorSpec = OperatorSpec {
    name: "bash",
    aliases: &[
        "BashOperator",
        "airflow.operators.bash.BashOperator",
        "airflow.operators.bash_operator.BashOperator",
        "airflow.providers.standard.operators.bash.BashOperator",
    ],
    arguments: &[
        "bash_command",
        "env",
        "append_env",
        "cwd",
        "skip_on_exit_code",
        "output_encoding",
    ],
    renamed_arguments: &[],
    required: &["bash_command"],
    pushes_xcom_by_default: true,
    holds_worker: true,
    open_arguments: false,
    check: check_args::<BashArgs>,
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::read_args;
    use serde_json::json;

    fn read(value: serde_json::Value) -> Result<BashArgs, crate::ArgumentError> {
        read_args(value.as_object().expect("an object"))
    }

    #[test]
    fn defaults_match_airflow() {
        let args = read(json!({"bash_command": "true"})).unwrap();
        assert_eq!(args.skip_on_exit_code, [99]);
        assert_eq!(args.output_encoding, "utf-8");
        assert!(!args.append_env);
        assert_eq!(args.env, None);
    }

    #[test]
    fn skip_codes_accept_one_many_or_none() {
        assert_eq!(
            read(json!({"bash_command": "x", "skip_on_exit_code": 3}))
                .unwrap()
                .skip_on_exit_code,
            [3]
        );
        assert_eq!(
            read(json!({"bash_command": "x", "skip_on_exit_code": [1, 2]}))
                .unwrap()
                .skip_on_exit_code,
            [1, 2]
        );
        assert!(
            read(json!({"bash_command": "x", "skip_on_exit_code": null}))
                .unwrap()
                .skip_on_exit_code
                .is_empty()
        );
    }

    #[test]
    fn env_numbers_become_text_and_nested_values_are_refused_by_path() {
        let args = read(json!({"bash_command": "x", "env": {"N": 3, "B": true}})).unwrap();
        assert_eq!(args.env.unwrap()["N"], "3");
        let err = read(json!({"bash_command": "x", "env": {"L": [1]}})).unwrap_err();
        assert_eq!(err.path, "env");
        assert!(
            err.message.contains("\"L\" must be a string, not a list"),
            "{err}"
        );
    }

    #[test]
    fn a_wrong_type_names_its_argument() {
        let err = read(json!({"bash_command": "x", "skip_on_exit_code": "often"})).unwrap_err();
        assert_eq!(err.path, "skip_on_exit_code");
    }
}
