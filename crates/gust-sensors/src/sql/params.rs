//! `parameters` into the query, as the Python drivers Airflow's hooks use read them: PostgreSQL's
//! psycopg2 and MySQL's mysqlclient take `%s` (with a list) and `%(name)s` (with a map), `%%`
//! being a literal `%`; SQLite's `sqlite3` takes `?` (a list) and `:name` (a map). Without
//! parameters the query is sent as written, `%` and all, as the drivers do.
//!
//! PostgreSQL gets each value as a quoted literal in the text, as psycopg2 sends it, so that
//! the server infers its type from where it stands (`day = %(day)s` with a date column and a
//! rendered `"2024-01-01"`): bound parameters would carry a fixed type and fail such
//! comparisons. Text is written as an `E'...'` literal with `\` and `'` doubled, which reads the
//! same whatever `standard_conforming_strings` says. MySQL and SQLite get bound parameters.

use serde_json::Value;

/// A value to bind.
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    /// NULL.
    Null,
    /// A boolean.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A floating-point number.
    Float(f64),
    /// Text.
    Text(String),
}

impl Param {
    fn from_value(value: &Value, name: &str) -> Result<Self, String> {
        Ok(match value {
            Value::Null => Self::Null,
            Value::Bool(b) => Self::Bool(*b),
            Value::Number(n) => match n.as_i64() {
                Some(i) => Self::Int(i),
                None => Self::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            Value::String(s) => Self::Text(s.clone()),
            Value::Array(_) | Value::Object(_) => {
                return Err(format!(
                    "parameter {name} is a list or a map; give text, a number, a boolean or null"
                ));
            }
        })
    }

    /// The value as a PostgreSQL literal.
    fn literal(&self) -> Result<String, String> {
        Ok(match self {
            Self::Null => "NULL".to_owned(),
            Self::Bool(b) => b.to_string(),
            Self::Int(i) => i.to_string(),
            Self::Float(x) if x.is_finite() => format!("{x:?}"),
            Self::Float(x) => format!("'{x}'::float8"),
            Self::Text(text) => {
                if text.contains('\0') {
                    return Err(
                        "a text parameter holds a NUL character, which PostgreSQL text cannot"
                            .to_owned(),
                    );
                }
                format!("E'{}'", text.replace('\\', "\\\\").replace('\'', "''"))
            }
        })
    }
}

/// How a database takes parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// `%s` / `%(name)s`, written into the text as literals (PostgreSQL).
    PyformatInline,
    /// `%s` / `%(name)s`, sent as `?` and bound (MySQL).
    PyformatBound,
    /// `?` / `:name`, bound (SQLite).
    Qmark,
}

/// The query to send and the values to bind, in order.
#[derive(Debug, Clone, PartialEq)]
pub struct Prepared {
    /// The text sent.
    pub sql: String,
    /// What its placeholders take.
    pub binds: Vec<Param>,
}

/// `sql` with `parameters` (a map, a list or none) put in as `style` takes them.
pub fn prepare(sql: &str, parameters: Option<&Value>, style: Style) -> Result<Prepared, String> {
    let parameters = match parameters {
        None | Some(Value::Null) => {
            return Ok(Prepared {
                sql: sql.to_owned(),
                binds: Vec::new(),
            });
        }
        Some(parameters) => parameters,
    };
    match style {
        Style::Qmark => qmark(sql, parameters),
        Style::PyformatInline | Style::PyformatBound => {
            let pieces = pyformat(sql, parameters)?;
            let mut prepared = Prepared {
                sql: String::with_capacity(sql.len()),
                binds: Vec::new(),
            };
            for piece in pieces {
                match piece {
                    Piece::Text(text) => prepared.sql.push_str(&text),
                    Piece::Param(param) if style == Style::PyformatInline => {
                        prepared.sql.push_str(&param.literal()?);
                    }
                    Piece::Param(param) => {
                        prepared.sql.push('?');
                        prepared.binds.push(param);
                    }
                }
            }
            Ok(prepared)
        }
    }
}

enum Piece {
    Text(String),
    Param(Param),
}

/// Python's `sql % parameters`, as psycopg2 and mysqlclient apply it.
fn pyformat(sql: &str, parameters: &Value) -> Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut positional = 0;
    let mut chars = sql.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            text.push(c);
            continue;
        }
        let value = match chars.next() {
            Some('%') => {
                text.push('%');
                continue;
            }
            Some('s') => {
                let Value::Array(list) = parameters else {
                    return Err(
                        "the query has %s but parameters is a map: write %(name)s, or give a list"
                            .to_owned(),
                    );
                };
                let value = list.get(positional).ok_or_else(|| {
                    format!("the query has more %s than the {} parameters", list.len())
                })?;
                positional += 1;
                Param::from_value(value, &positional.to_string())?
            }
            Some('(') => {
                let name: String = chars.by_ref().take_while(|c| *c != ')').collect();
                if chars.next() != Some('s') {
                    return Err(format!(
                        "%({name}) must be followed by s (%({name})s); write %% for a literal %"
                    ));
                }
                let Value::Object(map) = parameters else {
                    return Err(format!(
                        "the query has %({name})s but parameters is a list: give a map"
                    ));
                };
                let value = map
                    .get(&name)
                    .ok_or_else(|| format!("parameters has no \"{name}\", which the query uses"))?;
                Param::from_value(value, &format!("\"{name}\""))?
            }
            other => {
                return Err(format!(
                    "the query has %{} which is not a parameter: write %% for a literal %",
                    other.map(String::from).unwrap_or_default()
                ));
            }
        };
        pieces.push(Piece::Text(std::mem::take(&mut text)));
        pieces.push(Piece::Param(value));
    }
    if let Value::Array(list) = parameters
        && positional < list.len()
    {
        return Err(format!(
            "{} parameters but the query has {positional} %s",
            list.len()
        ));
    }
    pieces.push(Piece::Text(text));
    Ok(pieces)
}

/// SQLite's forms: a list binds the `?`s in order (SQLite counts them); a map turns each
/// `:name` outside quotes and comments into `?` bound to its value.
fn qmark(sql: &str, parameters: &Value) -> Result<Prepared, String> {
    let map = match parameters {
        Value::Array(list) => {
            return Ok(Prepared {
                sql: sql.to_owned(),
                binds: list
                    .iter()
                    .enumerate()
                    .map(|(i, v)| Param::from_value(v, &(i + 1).to_string()))
                    .collect::<Result<_, _>>()?,
            });
        }
        Value::Object(map) => map,
        _ => return Err("parameters must be a map or a list".to_owned()),
    };
    let mut prepared = Prepared {
        sql: String::with_capacity(sql.len()),
        binds: Vec::new(),
    };
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' | '"' | '`' | '[' => {
                let close = if c == '[' { ']' } else { c };
                prepared.sql.push(c);
                for inner in chars.by_ref() {
                    prepared.sql.push(inner);
                    if inner == close {
                        break;
                    }
                }
            }
            '-' if chars.peek() == Some(&'-') => {
                prepared.sql.push(c);
                for inner in chars.by_ref() {
                    prepared.sql.push(inner);
                    if inner == '\n' {
                        break;
                    }
                }
            }
            ':' if chars.peek().is_some_and(|n| n.is_alphabetic() || *n == '_') => {
                let mut name = String::new();
                while let Some(n) = chars
                    .peek()
                    .copied()
                    .filter(|n| n.is_alphanumeric() || *n == '_')
                {
                    name.push(n);
                    chars.next();
                }
                let value = map
                    .get(&name)
                    .ok_or_else(|| format!("parameters has no \"{name}\", which the query uses"))?;
                prepared
                    .binds
                    .push(Param::from_value(value, &format!("\"{name}\""))?);
                prepared.sql.push('?');
            }
            other => prepared.sql.push(other),
        }
    }
    Ok(prepared)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn postgresql_gets_literals_as_psycopg2_writes_them() {
        let prepared = prepare(
            "select count(*) from t where day = %(day)s and n > %s and name like 'a%%'",
            Some(&json!({"day": "2024-01-01"})),
            Style::PyformatInline,
        );
        assert!(prepared.is_err(), "%s with a map");
        let prepared = prepare(
            "select 1 where a = %(a)s and b = %(b)s and c = %(c)s and d like 'x%%'",
            Some(&json!({"a": "it's \\ ok", "b": 5, "c": null})),
            Style::PyformatInline,
        )
        .unwrap();
        assert_eq!(
            prepared.sql,
            r"select 1 where a = E'it''s \\ ok' and b = 5 and c = NULL and d like 'x%'"
        );
        assert!(prepared.binds.is_empty());
    }

    #[test]
    fn mysql_gets_bound_parameters_in_order() {
        let prepared = prepare(
            "select %s, %s",
            Some(&json!(["a", 2.5])),
            Style::PyformatBound,
        )
        .unwrap();
        assert_eq!(prepared.sql, "select ?, ?");
        assert_eq!(prepared.binds, [Param::Text("a".into()), Param::Float(2.5)]);
        assert!(prepare("select %s", Some(&json!([1, 2])), Style::PyformatBound).is_err());
        assert!(prepare("select %s, %s", Some(&json!([1])), Style::PyformatBound).is_err());
        assert!(prepare("select %d", Some(&json!([1])), Style::PyformatBound).is_err());
        assert!(prepare("select %(x)s", Some(&json!({})), Style::PyformatBound).is_err());
    }

    #[test]
    fn without_parameters_the_query_is_sent_as_written() {
        let prepared = prepare("select '100%'", None, Style::PyformatInline).unwrap();
        assert_eq!(prepared.sql, "select '100%'");
    }

    #[test]
    fn sqlite_names_become_question_marks_outside_quotes() {
        let prepared = prepare(
            "select :a, ':b', :a -- :c\n, [:d]",
            Some(&json!({"a": 1})),
            Style::Qmark,
        )
        .unwrap();
        assert_eq!(prepared.sql, "select ?, ':b', ? -- :c\n, [:d]");
        assert_eq!(prepared.binds, [Param::Int(1), Param::Int(1)]);
        let listed = prepare("select ?", Some(&json!(["x"])), Style::Qmark).unwrap();
        assert_eq!(listed.binds, [Param::Text("x".into())]);
    }
}
