//! Layering defaults under DAGs: `defaults.yml` files, a file's `default` block, the DAG itself.
//!
//! Maps merge key by key, recursively (so `default_args` merges key by key); any other value in
//! a higher layer replaces the lower one. Each value keeps its own position, so a problem in an
//! inherited default points at the defaults file that set it.

use crate::yaml::{Node, Value};

/// Lays `over` on top of `base`.
#[must_use]
pub fn deep_merge(base: Node, over: Node) -> Node {
    match (base.value, over.value) {
        (Value::Map(mut merged), Value::Map(top)) => {
            for (key, value) in top {
                let value = match merged.remove(&key.name) {
                    Some((_, below)) => deep_merge(below, value),
                    None => value,
                };
                merged.insert(key, value);
            }
            Node {
                value: Value::Map(merged),
                at: over.at,
            }
        }
        (_, value) => Node { value, at: over.at },
    }
}

/// The placeholder for the DAGs folder in string values (dag-factory's).
pub const CONFIG_ROOT_DIR: &str = "$CONFIG_ROOT_DIR";

/// Replaces `$CONFIG_ROOT_DIR` in every string of `node` with `root`.
pub fn substitute_root_dir(node: &mut Node, root: &str) {
    let mut pending = vec![node];
    while let Some(node) = pending.pop() {
        match &mut node.value {
            Value::Str(text) if text.contains(CONFIG_ROOT_DIR) => {
                *text = text.replace(CONFIG_ROOT_DIR, root);
            }
            Value::Seq(items) => pending.extend(items.iter_mut()),
            Value::Map(map) => pending.extend(map.values_mut()),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::load;
    use std::path::Path;
    use std::sync::Arc;

    fn read(text: &str) -> Node {
        let file: Arc<Path> = Path::new("t.yaml").into();
        load(&file, text).unwrap()
    }

    #[test]
    fn maps_merge_key_by_key_and_the_top_layer_wins() {
        let base = read("default_args: {owner: a, retries: 1}\ncatchup: true\ntags: [x]\n");
        let over = read("default_args: {retries: 3}\ntags: [y]\n");
        let merged = deep_merge(base, over).to_json();
        assert_eq!(
            merged,
            serde_json::json!({"default_args": {"owner": "a", "retries": 3}, "catchup": true, "tags": ["y"]})
        );
    }

    #[test]
    fn config_root_dir_is_replaced_everywhere() {
        let mut node = read("a: $CONFIG_ROOT_DIR/x.sql\nb: [\"cat $CONFIG_ROOT_DIR/y\"]\n");
        substitute_root_dir(&mut node, "/dags");
        assert_eq!(
            node.to_json(),
            serde_json::json!({"a": "/dags/x.sql", "b": ["cat /dags/y"]})
        );
    }
}
