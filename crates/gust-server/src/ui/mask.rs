//! Hiding secrets before the UI shows arguments, confs or XComs: the values under names that
//! look secret (Airflow's password, secret, token, api_key... and `[core]
//! sensitive_var_conn_names`), the `value` of any `{name, value}` pair (a pod's environment
//! variable) whose name does, and every secret the process knows wherever it appears
//! (`api::redact`, on `gust_secrets`).

use serde_json::Value;

use crate::api::redact::{redact, redact_args};

/// `value` with every secret-looking value replaced by `***` and known secrets masked.
#[must_use]
pub fn masked(value: &Value) -> Value {
    redact(value, None)
}

/// A try's rendered arguments, masked, its own and its run's conf's secrets too (see
/// `api::redact::redact_args`).
#[must_use]
pub fn masked_args(args: &Value, conf: &serde_json::Map<String, Value>) -> Value {
    match args {
        Value::Object(map) => Value::Object(redact_args(map, conf)),
        other => masked(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::redact::MASK;
    use serde_json::json;

    #[test]
    fn secret_looking_keys_and_env_values_are_masked() {
        let args = json!({
            "bash_command": "echo hunter22",
            "env": {"DB_PASSWORD": "hunter22", "HOME": "/root", "Api-Key": "k"},
            "env_vars": [{"name": "SERVICE_TOKEN", "value": "t"}, {"name": "MODE", "value": "fast"}],
            "conn": {"password": null, "login": "me"},
            "nested": [[{"client_secret": {"deep": "x"}}]]
        });
        let shown = masked_args(&args, &serde_json::Map::new());
        assert_eq!(shown["bash_command"], "echo ***");
        assert_eq!(shown["env"]["DB_PASSWORD"], MASK);
        assert_eq!(shown["env"]["Api-Key"], MASK);
        assert_eq!(shown["env"]["HOME"], "/root");
        assert_eq!(shown["env_vars"][0]["value"], MASK);
        assert_eq!(shown["env_vars"][0]["name"], "SERVICE_TOKEN");
        assert_eq!(shown["env_vars"][1]["value"], "fast");
        assert_eq!(shown["conn"]["password"], Value::Null);
        assert_eq!(shown["conn"]["login"], "me");
        assert_eq!(shown["nested"][0][0]["client_secret"]["deep"], MASK);
        assert!(!shown.to_string().contains("hunter22"));
    }
}
