//! Hiding secrets before the UI shows arguments or XComs: the value of any key whose name looks
//! secret (the API's sensitive names, `api::redact`: Airflow's password, secret, token,
//! api_key...), and the `value` of any `{name, value}` pair (a pod's environment variable) whose
//! name does.

use serde_json::Value;

use crate::api::redact::{MASK, is_sensitive};

/// `value` with every secret-looking value replaced by [`MASK`].
#[must_use]
pub fn masked(value: &Value) -> Value {
    let mut out = value.clone();
    let mut stack: Vec<&mut Value> = vec![&mut out];
    while let Some(node) = stack.pop() {
        match node {
            Value::Object(map) => {
                let env_pair = map
                    .get("name")
                    .and_then(Value::as_str)
                    .is_some_and(is_sensitive)
                    && map.contains_key("value");
                for (key, child) in map.iter_mut() {
                    if is_sensitive(key) || (env_pair && key == "value") {
                        if !child.is_null() {
                            *child = Value::String(MASK.to_owned());
                        }
                    } else {
                        stack.push(child);
                    }
                }
            }
            Value::Array(items) => stack.extend(items.iter_mut()),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secret_looking_keys_and_env_values_are_masked() {
        let args = json!({
            "bash_command": "echo hi",
            "env": {"DB_PASSWORD": "hunter2", "HOME": "/root", "Api-Key": "k"},
            "env_vars": [{"name": "SERVICE_TOKEN", "value": "t"}, {"name": "MODE", "value": "fast"}],
            "conn": {"password": null, "login": "me"},
            "nested": [[{"client_secret": {"deep": "x"}}]]
        });
        let shown = masked(&args);
        assert_eq!(shown["bash_command"], "echo hi");
        assert_eq!(shown["env"]["DB_PASSWORD"], MASK);
        assert_eq!(shown["env"]["Api-Key"], MASK);
        assert_eq!(shown["env"]["HOME"], "/root");
        assert_eq!(shown["env_vars"][0]["value"], MASK);
        assert_eq!(shown["env_vars"][0]["name"], "SERVICE_TOKEN");
        assert_eq!(shown["env_vars"][1]["value"], "fast");
        assert_eq!(shown["conn"]["password"], Value::Null);
        assert_eq!(shown["conn"]["login"], "me");
        assert_eq!(shown["nested"][0][0]["client_secret"], MASK);
        assert!(!shown.to_string().contains("hunter2"));
    }
}
