//! Airflow's bitshift chains as text: `"t1 >> [t2, t3] >> t4"`, `"a << b"`.
//!
//! Evaluated left to right as Python evaluates `>>` and `<<`: each operation links its two
//! operands and yields the right one, so `a >> b << c` means `a >> b` and `c >> b`. As in Python,
//! a list may not stand on both sides of one operator.

/// One side of a chain operator: a single name or a bracketed list of names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operand {
    /// One task or task group.
    One(String),
    /// `[a, b]`: several at once.
    Many(Vec<String>),
}

impl Operand {
    fn names(&self) -> Vec<&str> {
        match self {
            Operand::One(name) => vec![name],
            Operand::Many(names) => names.iter().map(String::as_str).collect(),
        }
    }
}

/// Why a chain expression cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    /// Something other than a name, a list, `>>` or `<<`.
    #[error("unexpected {found:?} at character {at} of the chain")]
    Unexpected {
        /// What was found.
        found: String,
        /// Its 1-based character offset.
        at: usize,
    },
    /// The expression ended where a name or list was expected.
    #[error("the chain ends after an operator; name a task or task group after it")]
    DanglingOperator,
    /// A list on both sides of one operator (Python refuses `[a] >> [b]` too).
    #[error("a list cannot be linked to a list; put a task between them or write two chains")]
    ListToList,
    /// No operator at all.
    #[error("a chain needs at least one `>>` or `<<`")]
    NoOperator,
    /// `[]`.
    #[error("an empty list in a chain links nothing; remove it")]
    EmptyList,
}

/// Reads `expr` into `(upstream, downstream)` pairs of names, in order.
pub fn parse_chain(expr: &str) -> Result<Vec<(String, String)>, ChainError> {
    let tokens = tokenize(expr)?;
    let mut tokens = tokens.into_iter().peekable();
    let mut left = match tokens.next() {
        Some(Token::Operand(op)) => op,
        Some(Token::Op(_, at)) => {
            return Err(ChainError::Unexpected {
                found: ">>".into(),
                at,
            });
        }
        None => return Err(ChainError::NoOperator),
    };
    let mut edges = Vec::new();
    let mut linked = false;
    while let Some(token) = tokens.next() {
        let Token::Op(downstream, _) = token else {
            return Err(ChainError::Unexpected {
                found: "a second name without >> or <<".into(),
                at: 0,
            });
        };
        let right = match tokens.next() {
            Some(Token::Operand(op)) => op,
            _ => return Err(ChainError::DanglingOperator),
        };
        if matches!((&left, &right), (Operand::Many(_), Operand::Many(_))) {
            return Err(ChainError::ListToList);
        }
        let (up, down) = if downstream {
            (&left, &right)
        } else {
            (&right, &left)
        };
        for u in up.names() {
            for d in down.names() {
                edges.push((u.to_owned(), d.to_owned()));
            }
        }
        linked = true;
        left = right;
    }
    if !linked {
        return Err(ChainError::NoOperator);
    }
    Ok(edges)
}

enum Token {
    Operand(Operand),
    /// `true` for `>>`, with the character offset.
    Op(bool, usize),
}

fn tokenize(expr: &str) -> Result<Vec<Token>, ChainError> {
    let chars: Vec<char> = expr.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    let is_name = |c: char| c.is_alphanumeric() || matches!(c, '_' | '-' | '.');
    let read_name = |i: &mut usize| {
        let start = *i;
        while *i < chars.len() && is_name(chars[*i]) {
            *i += 1;
        }
        chars[start..*i].iter().collect::<String>()
    };
    while i < chars.len() {
        let c = chars[i];
        match c {
            c if c.is_whitespace() => i += 1,
            '>' | '<' if chars.get(i + 1) == Some(&c) => {
                tokens.push(Token::Op(c == '>', i + 1));
                i += 2;
            }
            '[' => {
                i += 1;
                let mut names = Vec::new();
                loop {
                    while i < chars.len() && (chars[i].is_whitespace() || chars[i] == ',') {
                        i += 1;
                    }
                    match chars.get(i) {
                        Some(']') => {
                            i += 1;
                            break;
                        }
                        Some(&c) if is_name(c) => names.push(read_name(&mut i)),
                        Some(&c) => {
                            return Err(ChainError::Unexpected {
                                found: c.to_string(),
                                at: i + 1,
                            });
                        }
                        None => {
                            return Err(ChainError::Unexpected {
                                found: "end of text; close the list with ]".into(),
                                at: i + 1,
                            });
                        }
                    }
                }
                if names.is_empty() {
                    return Err(ChainError::EmptyList);
                }
                tokens.push(Token::Operand(Operand::Many(names)));
            }
            c if is_name(c) => tokens.push(Token::Operand(Operand::One(read_name(&mut i)))),
            c => {
                return Err(ChainError::Unexpected {
                    found: c.to_string(),
                    at: i + 1,
                });
            }
        }
    }
    Ok(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edges(expr: &str) -> Vec<(String, String)> {
        parse_chain(expr).unwrap()
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect()
    }

    #[test]
    fn the_seed_diamond_fans_out_and_joins() {
        assert_eq!(
            edges("t1 >> [t2, t3] >> t4"),
            pairs(&[("t1", "t2"), ("t1", "t3"), ("t2", "t4"), ("t3", "t4")])
        );
    }

    #[test]
    fn left_shift_points_upstream() {
        assert_eq!(edges("a << b"), pairs(&[("b", "a")]));
        assert_eq!(edges("a >> b << c"), pairs(&[("a", "b"), ("c", "b")]));
    }

    #[test]
    fn group_and_dotted_names_are_names() {
        assert_eq!(
            edges("extract.load >> report"),
            pairs(&[("extract.load", "report")])
        );
    }

    #[test]
    fn malformed_chains_say_what_is_wrong() {
        assert_eq!(parse_chain("[a] >> [b]"), Err(ChainError::ListToList));
        assert_eq!(parse_chain("a >>"), Err(ChainError::DanglingOperator));
        assert_eq!(parse_chain("a"), Err(ChainError::NoOperator));
        assert_eq!(parse_chain("a >> []"), Err(ChainError::EmptyList));
        assert!(matches!(
            parse_chain("a > b"),
            Err(ChainError::Unexpected { .. })
        ));
        assert!(matches!(
            parse_chain("a >> [b, c"),
            Err(ChainError::Unexpected { .. })
        ));
    }
}
