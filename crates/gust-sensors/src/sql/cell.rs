//! The first cell of a query's first row, as the value Airflow's SqlSensor would hand its
//! callables (what Python's database drivers return), and the native checks on it: Python's
//! truthiness when there is no `success`, a [`CellCheck`] otherwise. Pure: no database here.

use std::fmt;

use gust_operators::sensors::sql::CellCheck;
use serde_json::Value;

/// One cell's value.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// SQL NULL (Python's `None`).
    Null,
    /// A boolean.
    Bool(bool),
    /// An integer of any width, signed or not.
    Int(i128),
    /// A floating-point number.
    Float(f64),
    /// An exact decimal (`NUMERIC`, `DECIMAL`), as its text (`12.50`).
    Decimal(String),
    /// Text, and what reads as text: dates and times (ISO 8601), UUIDs.
    Text(String),
    /// Bytes (`BYTEA`, `BLOB`).
    Bytes(Vec<u8>),
    /// A JSON document (PostgreSQL's `json`, `jsonb`).
    Json(Value),
}

impl fmt::Display for Cell {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Null => f.write_str("NULL"),
            Self::Bool(b) => write!(f, "{b}"),
            Self::Int(i) => write!(f, "{i}"),
            Self::Float(x) => write!(f, "{x}"),
            Self::Decimal(d) => f.write_str(d),
            Self::Text(t) => write!(f, "{t:?}"),
            Self::Bytes(b) => write!(f, "{} bytes", b.len()),
            Self::Json(v) => write!(f, "{v}"),
        }
    }
}

impl Cell {
    /// Python's `bool()` of the value its driver returns: NULL, `false`, zero (of any number
    /// type), empty text, bytes or JSON collections are false. The text `'0'` is true, as in
    /// Airflow's code (`bool(condition)`), whatever its older docstring says.
    #[must_use]
    pub fn truthy(&self) -> bool {
        match self {
            Self::Null => false,
            Self::Bool(b) => *b,
            Self::Int(i) => *i != 0,
            Self::Float(x) => *x != 0.0,
            Self::Decimal(d) => d.chars().any(|c| c.is_ascii_digit() && c != '0') || is_special(d),
            Self::Text(t) => !t.is_empty(),
            Self::Bytes(b) => !b.is_empty(),
            Self::Json(v) => match v {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::Number(n) => n.as_f64().is_some_and(|x| x != 0.0),
                Value::String(s) => !s.is_empty(),
                Value::Array(a) => !a.is_empty(),
                Value::Object(o) => !o.is_empty(),
            },
        }
    }

    /// The value as a number: numbers, booleans (as 1 and 0) and text that spells a number.
    fn number(&self) -> Option<f64> {
        match self {
            Self::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
            #[allow(
                clippy::cast_precision_loss,
                reason = "compared as Python compares floats"
            )]
            Self::Int(i) => Some(*i as f64),
            Self::Float(x) => Some(*x),
            Self::Decimal(text) | Self::Text(text) => text.trim().parse().ok(),
            Self::Json(Value::Number(n)) => n.as_f64(),
            Self::Null | Self::Bytes(_) | Self::Json(_) => None,
        }
    }

    /// The value's text, for `regex` and for comparing with a string (`None` for NULL).
    fn text(&self) -> Option<String> {
        match self {
            Self::Null => None,
            Self::Text(t) | Self::Decimal(t) => Some(t.clone()),
            Self::Bytes(b) => Some(String::from_utf8_lossy(b).into_owned()),
            Self::Json(Value::String(s)) => Some(s.clone()),
            other => Some(other.to_string()),
        }
    }

    /// Whether the value equals `wanted`: numbers by value, a string also equal to the text of
    /// a number or a boolean (and a number cell to a string that spells it).
    #[must_use]
    pub fn equals(&self, wanted: &Value) -> bool {
        match (self, wanted) {
            (Self::Null, Value::Null) => true,
            (Self::Null, _) | (_, Value::Null) => false,
            (Self::Json(found), wanted) if found == wanted => true,
            (Self::Bool(found), Value::Bool(wanted)) => found == wanted,
            (Self::Bool(found), Value::String(text)) => text
                .trim()
                .eq_ignore_ascii_case(if *found { "true" } else { "false" }),
            (_, Value::Number(n)) => self.number().zip(n.as_f64()).is_some_and(|(a, b)| a == b),
            (_, Value::Bool(b)) => self.number() == Some(if *b { 1.0 } else { 0.0 }),
            (_, Value::String(text)) => {
                self.text().is_some_and(|own| own == *text)
                    || (!matches!(self, Self::Text(_))
                        && self
                            .number()
                            .zip(text.trim().parse::<f64>().ok())
                            .is_some_and(|(a, b)| a == b))
            }
            (_, Value::Array(_) | Value::Object(_)) => false,
        }
    }
}

fn is_special(decimal: &str) -> bool {
    // NaN and the infinities are true in Python.
    decimal.contains("NaN") || decimal.contains("Infinity")
}

/// A numeric bound of a check: its name, its value and how a cell's number must compare.
type Bound<'a> = (&'a str, &'a Option<Value>, fn(f64, f64) -> bool);

/// Whether `cell` passes every condition of `check`; an error when a comparison cannot be
/// made (a bound that is no number, a cell that is none), as Python's comparison raises.
pub fn passes(check: &CellCheck, cell: &Cell, name: &str) -> Result<bool, String> {
    if let Some(null) = check.null
        && (*cell == Cell::Null) != null
    {
        return Ok(false);
    }
    if let Some(wanted) = &check.value
        && !cell.equals(wanted)
    {
        return Ok(false);
    }
    if let Some(values) = &check.one_of
        && !values.iter().any(|wanted| cell.equals(wanted))
    {
        return Ok(false);
    }
    if let Some(pattern) = &check.regex {
        let regex = regex::Regex::new(pattern).map_err(|err| format!("{name}.regex: {err}"))?;
        if !cell.text().is_some_and(|text| regex.is_match(&text)) {
            return Ok(false);
        }
    }
    let bounds: [Bound<'_>; 4] = [
        ("gt", &check.gt, |a, b| a > b),
        ("ge", &check.ge, |a, b| a >= b),
        ("lt", &check.lt, |a, b| a < b),
        ("le", &check.le, |a, b| a <= b),
    ];
    for (op, bound, holds) in bounds {
        let Some(bound) = bound else { continue };
        let limit = match bound {
            Value::Number(n) => n.as_f64(),
            Value::String(text) => text.trim().parse().ok(),
            _ => None,
        }
        .ok_or_else(|| format!("{name}.{op} is {bound}, not a number"))?;
        let Some(found) = cell.number() else {
            return Err(format!(
                "the first cell, {cell}, is not a number, which {name}.{op} compares"
            ));
        };
        if !holds(found, limit) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// PostgreSQL's binary `NUMERIC` as its text: a count of base-10000 digits, the weight of the
/// first, a sign and the display scale, then the digits.
pub fn numeric_text(bytes: &[u8]) -> Result<String, String> {
    let word = |at: usize| -> Result<u16, String> {
        bytes
            .get(at..at + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
            .ok_or_else(|| "a NUMERIC value is cut short".to_owned())
    };
    let count = usize::from(word(0)?);
    #[allow(
        clippy::cast_possible_wrap,
        reason = "the weight is a signed 16-bit field"
    )]
    let weight = i32::from(word(2)? as i16);
    let sign = word(4)?;
    let scale = usize::from(word(6)?);
    match sign {
        0xC000 => return Ok("NaN".to_owned()),
        0xD000 => return Ok("Infinity".to_owned()),
        0xF000 => return Ok("-Infinity".to_owned()),
        _ => {}
    }
    let digits = (0..count)
        .map(|i| word(8 + 2 * i))
        .collect::<Result<Vec<u16>, String>>()?;
    let digit = |i: i32| usize::try_from(i).ok().and_then(|i| digits.get(i)).copied();
    let mut text = String::new();
    if sign == 0x4000 {
        text.push('-');
    }
    if weight < 0 {
        text.push('0');
    } else {
        for i in 0..=weight {
            let group = digit(i).unwrap_or(0);
            if i == 0 {
                text.push_str(&group.to_string());
            } else {
                text.push_str(&format!("{group:04}"));
            }
        }
    }
    if scale > 0 {
        let mut fraction = String::new();
        let mut i = weight + 1;
        while fraction.len() < scale {
            fraction.push_str(&format!("{:04}", digit(i).unwrap_or(0)));
            i += 1;
        }
        fraction.truncate(scale);
        text.push('.');
        text.push_str(&fraction);
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn truthiness_is_pythons() {
        for falsy in [
            Cell::Null,
            Cell::Int(0),
            Cell::Float(0.0),
            Cell::Bool(false),
            Cell::Decimal("0.00".into()),
            Cell::Decimal("-0".into()),
            Cell::Text(String::new()),
            Cell::Json(json!({})),
        ] {
            assert!(!falsy.truthy(), "{falsy:?}");
        }
        for truthy in [
            Cell::Int(-1),
            Cell::Decimal("0.01".into()),
            Cell::Text("0".into()),
            Cell::Text("f".into()),
            Cell::Json(json!([0])),
        ] {
            assert!(truthy.truthy(), "{truthy:?}");
        }
    }

    #[test]
    fn equality_compares_numbers_by_value_and_strings_with_their_text() {
        assert!(Cell::Decimal("12.50".into()).equals(&json!(12.5)));
        assert!(Cell::Int(3).equals(&json!("3")));
        assert!(Cell::Text("done".into()).equals(&json!("done")));
        assert!(!Cell::Text("done".into()).equals(&json!("Done")));
        assert!(Cell::Bool(true).equals(&json!(1)));
        assert!(Cell::Bool(true).equals(&json!("true")));
        assert!(Cell::Null.equals(&json!(null)));
        assert!(!Cell::Text(String::new()).equals(&json!(null)));
    }

    #[test]
    fn checks_hold_together_and_comparisons_need_numbers() {
        let check = CellCheck {
            ge: Some(json!(10)),
            lt: Some(json!("20")),
            ..CellCheck::default()
        };
        assert_eq!(passes(&check, &Cell::Int(10), "success"), Ok(true));
        assert_eq!(
            passes(&check, &Cell::Decimal("20.0".into()), "success"),
            Ok(false)
        );
        let err = passes(&check, &Cell::Text("many".into()), "success").unwrap_err();
        assert!(err.contains("is not a number"), "{err}");
        let state = CellCheck {
            one_of: Some(vec![json!("failed"), json!("lost")]),
            regex: Some("^f".into()),
            ..CellCheck::default()
        };
        assert_eq!(
            passes(&state, &Cell::Text("failed".into()), "failure"),
            Ok(true)
        );
        assert_eq!(
            passes(&state, &Cell::Text("lost".into()), "failure"),
            Ok(false)
        );
        let not_null = CellCheck {
            null: Some(false),
            ..CellCheck::default()
        };
        assert_eq!(passes(&not_null, &Cell::Null, "success"), Ok(false));
        assert_eq!(passes(&not_null, &Cell::Int(0), "success"), Ok(true));
    }

    #[test]
    fn numeric_values_read_as_postgresql_prints_them() {
        // 12345.678 with dscale 3: digits 1, 2345, 6780; weight 1.
        let bytes = [0, 3, 0, 1, 0, 0, 0, 3, 0, 1, 0x09, 0x29, 0x1a, 0x7c];
        assert_eq!(numeric_text(&bytes).unwrap(), "12345.678");
        // -0.05 with dscale 2: one digit 500 at weight -1.
        let bytes = [0, 1, 0xff, 0xff, 0x40, 0, 0, 2, 0x01, 0xf4];
        assert_eq!(numeric_text(&bytes).unwrap(), "-0.05");
        // 0 with dscale 2: no digits.
        assert_eq!(numeric_text(&[0, 0, 0, 0, 0, 0, 0, 2]).unwrap(), "0.00");
        assert!(numeric_text(&[0, 1]).is_err());
    }
}
