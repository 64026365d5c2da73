//! Values written as Python's `repr` writes them, for messages that must read as Airflow's
//! (`Dag 'x' references non-existent pools: ['a', 'b']`).

use std::collections::BTreeSet;

/// `names` as Python writes a sorted list of strings (`['a', 'b']`), as Airflow's message has it.
pub fn python_list(names: &BTreeSet<&str>) -> String {
    let quoted: Vec<String> = names.iter().map(|name| python_str(name)).collect();
    format!("[{}]", quoted.join(", "))
}

/// `text` as Python's `repr` writes a string: single quotes unless it holds one and no double
/// quote.
pub fn python_str(text: &str) -> String {
    let quote = if text.contains('\'') && !text.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(text.len() + 2);
    out.push(quote);
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::{python_list, python_str};

    #[test]
    fn pool_names_are_listed_as_python_prints_them() {
        let names: BTreeSet<&str> = ["gpu", "a'b", "c\"'d"].into_iter().collect();
        assert_eq!(python_list(&names), r#"["a'b", 'c"\'d', 'gpu']"#);
        assert_eq!(python_list(&BTreeSet::new()), "[]");
        assert_eq!(python_str("a\\b\n"), r"'a\\b\n'");
    }
}
