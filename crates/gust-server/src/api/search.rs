//! The `*_pattern` and `*_prefix_pattern` query parameters of Airflow's list endpoints, applied
//! to values in memory: a pattern is SQL `ILIKE '%term%'` (`%` any run, `_` any one character,
//! case-insensitive, `~` alone meaning everything), a prefix is a case-sensitive literal start;
//! in both, `a|b` matches either term.

/// Patterns longer than this match nothing (no key is that long; it bounds the matching work).
pub const MAX_PATTERN_LEN: usize = 1000;

/// Whether `text` matches `pattern` (`None`: no filter).
#[must_use]
pub fn matches_pattern(pattern: Option<&str>, text: &str) -> bool {
    let Some(pattern) = pattern else { return true };
    if pattern == "~" {
        return true;
    }
    if pattern.len() > MAX_PATTERN_LEN {
        return false;
    }
    let text: Vec<char> = text.to_lowercase().chars().collect();
    terms(pattern).any(|term| {
        let term: Vec<char> = format!("%{}%", term.to_lowercase()).chars().collect();
        like(&term, &text)
    })
}

/// Whether `text` starts with `prefix` (`None`: no filter).
#[must_use]
pub fn matches_prefix(prefix: Option<&str>, text: &str) -> bool {
    prefix.is_none_or(|prefix| terms(prefix).any(|term| text.starts_with(term)))
}

/// The `|`-separated terms of a pattern (the whole pattern when it has no non-blank term).
fn terms(pattern: &str) -> impl Iterator<Item = &str> {
    let split: Vec<&str> = pattern
        .split('|')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .collect();
    if split.is_empty() || !pattern.contains('|') {
        vec![pattern]
    } else {
        split
    }
    .into_iter()
}

/// SQL `LIKE` of `pattern` over `text` (`%` any run, `_` one character), without recursion:
/// the classic greedy match with one backtrack point.
fn like(pattern: &[char], text: &[char]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some('%') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == '_' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == '%')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_are_case_insensitive_substrings_with_sql_wildcards() {
        assert!(matches_pattern(None, "anything"));
        assert!(matches_pattern(Some("KEY"), "my_key_1"));
        assert!(matches_pattern(Some("my%1"), "my_key_1"));
        assert!(matches_pattern(Some("k_y"), "my_key"));
        assert!(!matches_pattern(Some("kez"), "my_key"));
        assert!(matches_pattern(Some("nope|key"), "my_key"));
        assert!(matches_pattern(Some("~"), "x"));
        assert!(!matches_pattern(Some(&"a".repeat(2000)), "a"));
    }

    #[test]
    fn prefixes_are_case_sensitive_literals() {
        assert!(matches_prefix(Some("my_"), "my_key"));
        assert!(!matches_prefix(Some("My"), "my_key"));
        assert!(!matches_prefix(Some("m%"), "my_key"));
        assert!(matches_prefix(Some("x|my"), "my_key"));
    }
}
