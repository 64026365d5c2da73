//! Assets (Airflow 3's data-aware scheduling): what a task's `outlets` say it updates, what its
//! `inlets` say it reads, and the condition on asset updates that schedules a DAG.
//!
//! An asset is known by its name and its URI, as Airflow's `Asset(name=..., uri=...)`: either
//! alone stands for both, and the URI is normalized as Airflow's `_sanitize_uri` does (scheme
//! lowercased, user info, fragment and trailing slashes dropped, query sorted), so the same
//! asset written twice is one asset.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

/// The longest name, URI or group Airflow accepts (`_validate_identifier`).
pub const MAX_IDENTIFIER: usize = 1500;

/// Airflow's group for assets that name none.
pub const DEFAULT_GROUP: &str = "asset";

/// An asset, validated: its name, normalized URI, group and extra.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Asset {
    /// The name (the URI as written when none is given).
    pub name: String,
    /// The URI, normalized (the name when none is given).
    pub uri: String,
    /// The group (default `asset`).
    pub group: String,
    /// Free-form JSON attached to the asset, as its text (kept sorted by key, so equal extras
    /// compare equal).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub extra: String,
}

/// Why an asset is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AssetError {
    /// Neither a name nor a URI.
    #[error("an asset needs a uri or a name")]
    Empty,
    /// A name, URI or group too long, empty or only whitespace.
    #[error("asset {field} \"{value}\" must be 1 to 1500 characters, not only whitespace")]
    Identifier {
        /// `name`, `uri` or `group`.
        field: &'static str,
        /// The value (cut to 100 characters).
        value: String,
    },
    /// The `airflow` scheme is Airflow's own.
    #[error("asset uri \"{uri}\" uses the reserved scheme \"airflow\"")]
    ReservedScheme {
        /// The URI.
        uri: String,
    },
}

impl Asset {
    /// The asset `Asset(uri)` makes: named after the URI as written.
    pub fn from_uri(uri: &str) -> Result<Self, AssetError> {
        Self::new(None, Some(uri), None, None)
    }

    /// `Asset(name=, uri=, group=, extra=)`: a missing name is the URI as written, a missing
    /// URI is the name.
    pub fn new(
        name: Option<&str>,
        uri: Option<&str>,
        group: Option<&str>,
        extra: Option<&serde_json::Map<String, serde_json::Value>>,
    ) -> Result<Self, AssetError> {
        let (name, uri) = match (name, uri) {
            (None, None) => return Err(AssetError::Empty),
            (Some(name), None) => (name, name),
            (None, Some(uri)) => (uri, uri),
            (Some(name), Some(uri)) => (name, uri),
        };
        let group = group.unwrap_or(DEFAULT_GROUP);
        for (field, value) in [("name", name), ("uri", uri), ("group", group)] {
            if value.is_empty() || value.len() > MAX_IDENTIFIER || value.trim().is_empty() {
                return Err(AssetError::Identifier {
                    field,
                    value: value.chars().take(100).collect(),
                });
            }
        }
        let extra = match extra {
            Some(map) if !map.is_empty() => {
                // A Map is sorted by key (serde_json without preserve_order), so its text is
                // canonical.
                serde_json::Value::Object(map.clone()).to_string()
            }
            _ => String::new(),
        };
        Ok(Self {
            name: name.to_owned(),
            uri: sanitize_uri(uri)?,
            group: group.to_owned(),
            extra,
        })
    }

    /// The asset's extra as a JSON object (empty when it has none).
    #[must_use]
    pub fn extra_map(&self) -> serde_json::Map<String, serde_json::Value> {
        serde_json::from_str(&self.extra).unwrap_or_default()
    }
}

impl fmt::Display for Asset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.name == self.uri {
            write!(f, "{}", self.uri)
        } else {
            write!(f, "{} ({})", self.name, self.uri)
        }
    }
}

/// Normalizes an asset URI as Airflow's `_sanitize_uri` does without provider normalizers:
/// text that does not look like a URI (no scheme, no authority) is kept as written; otherwise
/// the scheme is lowercased, user info dropped, the query sorted, trailing slashes of the path
/// dropped (an empty path becomes `/`) and the fragment dropped. `x-` schemes are kept as
/// written.
pub fn sanitize_uri(uri: &str) -> Result<String, AssetError> {
    let parts = split_uri(uri);
    if parts.scheme.is_empty() && parts.netloc.is_none() {
        return Ok(uri.to_owned());
    }
    let scheme = parts.scheme.to_ascii_lowercase();
    if scheme.is_empty() || scheme.starts_with("x-") {
        return Ok(uri.to_owned());
    }
    if scheme == "airflow" {
        return Err(AssetError::ReservedScheme {
            uri: uri.chars().take(100).collect(),
        });
    }
    let netloc = parts
        .netloc
        .map(|n| n.rsplit_once('@').map_or(n, |(_, host)| host));
    let path = match parts.path.trim_end_matches('/') {
        "" => "/",
        trimmed => trimmed,
    };
    let mut out = format!("{scheme}:");
    if let Some(netloc) = netloc {
        out.push_str("//");
        out.push_str(netloc);
    }
    out.push_str(path);
    if !parts.query.is_empty() {
        let mut pairs: Vec<(&str, &str)> = parts
            .query
            .split(['&', ';'])
            .filter(|pair| !pair.is_empty())
            .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
            .filter(|(_, value)| !value.is_empty())
            .collect();
        pairs.sort_unstable();
        if !pairs.is_empty() {
            out.push('?');
            let joined: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
            out.push_str(&joined.join("&"));
        }
    }
    Ok(out)
}

/// A URI's parts as Python's `urllib.parse.urlsplit` finds them.
struct UriParts<'a> {
    scheme: &'a str,
    netloc: Option<&'a str>,
    path: &'a str,
    query: &'a str,
}

fn split_uri(uri: &str) -> UriParts<'_> {
    let (scheme, rest) = match uri.split_once(':') {
        Some((scheme, rest))
            if scheme.starts_with(|c: char| c.is_ascii_alphabetic())
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)) =>
        {
            (scheme, rest)
        }
        _ => ("", uri),
    };
    let (netloc, rest) = match rest.strip_prefix("//") {
        Some(after) => {
            let end = after.find(['/', '?', '#']).unwrap_or(after.len());
            (Some(&after[..end]), &after[end..])
        }
        None => (None, rest),
    };
    let rest = rest.split_once('#').map_or(rest, |(before, _)| before);
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    UriParts {
        scheme,
        netloc,
        path,
        query,
    }
}

/// An asset alias (Airflow 3's `AssetAlias(name, group)`): a name tasks attach assets to at run
/// time (`outlet_events[AssetAlias(name)].add(Asset(...))`). A DAG scheduled on an alias is
/// scheduled on the assets attached to it so far; one attached to none is never triggered.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AssetAlias {
    /// The alias's name.
    pub name: String,
    /// Its group (default `asset`, as Airflow's).
    pub group: String,
}

impl AssetAlias {
    /// `AssetAlias(name=, group=)`, the name and group checked as an asset's.
    pub fn new(name: &str, group: Option<&str>) -> Result<Self, AssetError> {
        let group = group.unwrap_or(DEFAULT_GROUP);
        for (field, value) in [("name", name), ("group", group)] {
            if value.is_empty() || value.len() > MAX_IDENTIFIER || value.trim().is_empty() {
                return Err(AssetError::Identifier {
                    field,
                    value: value.chars().take(100).collect(),
                });
            }
        }
        Ok(Self {
            name: name.to_owned(),
            group: group.to_owned(),
        })
    }
}

/// A condition on asset updates: a DAG scheduled on it gets a run once it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AssetCondition {
    /// This asset was updated.
    Asset(Asset),
    /// One of the assets attached to this alias was updated (see
    /// [`AssetCondition::resolve_aliases`]).
    Alias(AssetAlias),
    /// Every one holds (`&`, a list of assets).
    All(Vec<AssetCondition>),
    /// One holds (`|`).
    Any(Vec<AssetCondition>),
}

impl AssetCondition {
    /// `self & other` as Airflow builds it: an `All` on the left takes `other` in (`a & b & c`
    /// is one `All` of three), anything else makes a new `All` of two.
    #[must_use]
    pub fn and(self, other: AssetCondition) -> AssetCondition {
        match self {
            AssetCondition::All(mut items) => {
                items.push(other);
                AssetCondition::All(items)
            }
            left => AssetCondition::All(vec![left, other]),
        }
    }

    /// `self | other`, as [`AssetCondition::and`] for `Any`.
    #[must_use]
    pub fn or(self, other: AssetCondition) -> AssetCondition {
        match self {
            AssetCondition::Any(mut items) => {
                items.push(other);
                AssetCondition::Any(items)
            }
            left => AssetCondition::Any(vec![left, other]),
        }
    }

    /// Whether the condition holds when the assets `updated` says were updated. An alias
    /// holds when one of the assets `aliased` says are attached to it was updated, as Airflow's
    /// `AssetEvaluator` resolves aliases when it evaluates.
    pub fn is_met(
        &self,
        updated: &dyn Fn(&Asset) -> bool,
        aliased: &dyn Fn(&AssetAlias) -> Vec<Asset>,
    ) -> bool {
        match self {
            AssetCondition::Asset(asset) => updated(asset),
            AssetCondition::Alias(alias) => aliased(alias).iter().any(updated),
            AssetCondition::All(items) => items.iter().all(|c| c.is_met(updated, aliased)),
            AssetCondition::Any(items) => items.iter().any(|c| c.is_met(updated, aliased)),
        }
    }

    /// Every alias the condition names, each once.
    #[must_use]
    pub fn aliases(&self) -> BTreeSet<&AssetAlias> {
        let mut out = BTreeSet::new();
        let mut pending = vec![self];
        while let Some(condition) = pending.pop() {
            match condition {
                AssetCondition::Asset(_) => {}
                AssetCondition::Alias(alias) => {
                    out.insert(alias);
                }
                AssetCondition::All(items) | AssetCondition::Any(items) => pending.extend(items),
            }
        }
        out
    }

    /// Every asset the condition names, each once (not those attached to its aliases).
    #[must_use]
    pub fn assets(&self) -> BTreeSet<&Asset> {
        let mut out = BTreeSet::new();
        self.collect(&mut out);
        out
    }

    fn collect<'a>(&'a self, out: &mut BTreeSet<&'a Asset>) {
        match self {
            AssetCondition::Asset(asset) => {
                out.insert(asset);
            }
            AssetCondition::Alias(_) => {}
            AssetCondition::All(items) | AssetCondition::Any(items) => {
                for item in items {
                    item.collect(out);
                }
            }
        }
    }

    /// The condition as Airflow's `as_expression()` writes it (the REST API's
    /// `asset_expression`): `{"any": [{"all": [{"asset": {"uri", "name", "group", "id"}}]}]}`,
    /// each asset's id from `id_of` (null when unknown).
    #[must_use]
    pub fn expression(&self, id_of: &dyn Fn(&Asset) -> Option<i64>) -> serde_json::Value {
        match self {
            AssetCondition::Asset(asset) => serde_json::json!({"asset": {
                "uri": asset.uri, "name": asset.name, "group": asset.group, "id": id_of(asset),
            }}),
            AssetCondition::Alias(alias) => serde_json::json!({"alias": {
                "name": alias.name, "group": alias.group,
            }}),
            AssetCondition::All(items) => serde_json::json!({
                "all": items.iter().map(|c| c.expression(id_of)).collect::<Vec<_>>(),
            }),
            AssetCondition::Any(items) => serde_json::json!({
                "any": items.iter().map(|c| c.expression(id_of)).collect::<Vec<_>>(),
            }),
        }
    }
}

impl fmt::Display for AssetCondition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (items, op) = match self {
            AssetCondition::Asset(asset) => return write!(f, "{}", asset.uri),
            AssetCondition::Alias(alias) => return write!(f, "alias:{}", alias.name),
            AssetCondition::All(items) => (items, " & "),
            AssetCondition::Any(items) => (items, " | "),
        };
        f.write_str("(")?;
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                f.write_str(op)?;
            }
            write!(f, "{item}")?;
        }
        f.write_str(")")
    }
}

/// Why a condition string does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConditionError {
    /// Something other than an asset, `&`, `|` or parentheses at a position.
    #[error("unexpected {found} at character {at} of the asset condition")]
    Unexpected {
        /// What was found (`")"`, `end of text`...).
        found: String,
        /// Its 1-based position.
        at: usize,
    },
    /// Nesting deeper than [`MAX_DEPTH`].
    #[error("the asset condition nests parentheses deeper than {MAX_DEPTH}")]
    TooDeep,
    /// An asset in it is not acceptable.
    #[error(transparent)]
    Asset(#[from] AssetError),
}

/// The deepest nesting of parentheses a condition string may have (bounds the recursion).
pub const MAX_DEPTH: usize = 32;

/// Parses dag-factory's condition string, `((s3://a & s3://b) | c)`: assets are URIs or names
/// (`resolve` maps each to its asset, so dag-factory's `file:` form can look names up), `&`
/// binds tighter than `|`, as in Python, and each operator groups from the left.
pub fn parse_condition(
    text: &str,
    resolve: &dyn Fn(&str) -> Result<Asset, AssetError>,
) -> Result<AssetCondition, ConditionError> {
    let tokens = tokenize(text);
    let mut parser = ConditionParser {
        tokens: &tokens,
        next: 0,
        end: text.chars().count() + 1,
        resolve,
    };
    let condition = parser.any(0)?;
    match parser.tokens.get(parser.next) {
        None => Ok(condition),
        Some((at, token)) => Err(ConditionError::Unexpected {
            found: token.describe(),
            at: *at,
        }),
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token<'a> {
    Word(&'a str),
    And,
    Or,
    Open,
    Close,
}

impl Token<'_> {
    fn describe(&self) -> String {
        match self {
            Token::Word(word) => format!("\"{word}\""),
            Token::And => "\"&\"".to_owned(),
            Token::Or => "\"|\"".to_owned(),
            Token::Open => "\"(\"".to_owned(),
            Token::Close => "\")\"".to_owned(),
        }
    }
}

/// Splits a condition into tokens with their 1-based character positions. A word runs to the
/// next space, operator or parenthesis: URIs hold none of them in dag-factory's examples.
fn tokenize(text: &str) -> Vec<(usize, Token<'_>)> {
    let mut tokens = Vec::new();
    let mut word_start: Option<usize> = None;
    for (index, c) in text
        .char_indices()
        .chain(std::iter::once((text.len(), ' ')))
    {
        let token = match c {
            '&' => Some(Token::And),
            '|' => Some(Token::Or),
            '(' => Some(Token::Open),
            ')' => Some(Token::Close),
            c if c.is_whitespace() => None,
            _ => {
                word_start.get_or_insert(index);
                continue;
            }
        };
        if let Some(start) = word_start.take() {
            tokens.push((
                text[..start].chars().count() + 1,
                Token::Word(&text[start..index]),
            ));
        }
        if let Some(token) = token {
            tokens.push((text[..index].chars().count() + 1, token));
        }
    }
    tokens
}

struct ConditionParser<'t, 'a> {
    tokens: &'t [(usize, Token<'a>)],
    next: usize,
    /// The position just past the text, where "end of text" is.
    end: usize,
    resolve: &'t dyn Fn(&str) -> Result<Asset, AssetError>,
}

impl ConditionParser<'_, '_> {
    fn peek(&self) -> Option<&Token<'_>> {
        self.tokens.get(self.next).map(|(_, t)| t)
    }

    fn unexpected(&self) -> ConditionError {
        match self.tokens.get(self.next) {
            Some((at, token)) => ConditionError::Unexpected {
                found: token.describe(),
                at: *at,
            },
            None => ConditionError::Unexpected {
                found: "end of text".to_owned(),
                at: self.end,
            },
        }
    }

    fn any(&mut self, depth: usize) -> Result<AssetCondition, ConditionError> {
        let mut left = self.all(depth)?;
        while self.peek() == Some(&Token::Or) {
            self.next += 1;
            left = left.or(self.all(depth)?);
        }
        Ok(left)
    }

    fn all(&mut self, depth: usize) -> Result<AssetCondition, ConditionError> {
        let mut left = self.operand(depth)?;
        while self.peek() == Some(&Token::And) {
            self.next += 1;
            left = left.and(self.operand(depth)?);
        }
        Ok(left)
    }

    fn operand(&mut self, depth: usize) -> Result<AssetCondition, ConditionError> {
        match self.peek() {
            Some(Token::Word(word)) => {
                let asset = (self.resolve)(word)?;
                self.next += 1;
                Ok(AssetCondition::Asset(asset))
            }
            Some(Token::Open) => {
                if depth >= MAX_DEPTH {
                    return Err(ConditionError::TooDeep);
                }
                self.next += 1;
                let inner = self.any(depth + 1)?;
                if self.peek() != Some(&Token::Close) {
                    return Err(self.unexpected());
                }
                self.next += 1;
                // Parentheses only order the evaluation, as in Python: `(a & b) & c` is still
                // one `All` of three, since `All & c` appends to it.
                Ok(inner)
            }
            _ => Err(self.unexpected()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asset(uri: &str) -> AssetCondition {
        AssetCondition::Asset(Asset::from_uri(uri).unwrap())
    }

    #[test]
    fn uris_are_normalized_as_airflow_does() {
        // What Airflow 3.3.2's Asset(uri) keeps as `uri` for each.
        for (given, kept) in [
            (
                "s3://bucket_example/raw/dataset1.json",
                "s3://bucket_example/raw/dataset1.json",
            ),
            ("dataset_uri_1", "dataset_uri_1"),
            (
                "file:///$AIRFLOW_HONE/data.csv",
                "file:///$AIRFLOW_HONE/data.csv",
            ),
            ("S3://Bucket/x", "s3://Bucket/x"),
            ("s3://bucket/x/", "s3://bucket/x"),
            ("x://a b", "x://a b/"),
            (
                "s3://user:pw@bucket/k?b=2&a=1#frag",
                "s3://bucket/k?a=1&b=2",
            ),
            ("x-custom://Kept/As/Is/", "x-custom://Kept/As/Is/"),
        ] {
            assert_eq!(Asset::from_uri(given).unwrap().uri, kept, "{given}");
            assert_eq!(Asset::from_uri(given).unwrap().name, given);
        }
        assert!(matches!(
            Asset::from_uri("airflow://x"),
            Err(AssetError::ReservedScheme { .. })
        ));
        assert_eq!(
            Asset::from_uri("  "),
            Err(AssetError::Identifier {
                field: "name",
                value: "  ".into()
            })
        );
        let named = Asset::new(Some("n"), None, None, None).unwrap();
        assert_eq!((named.name.as_str(), named.uri.as_str()), ("n", "n"));
        assert_eq!(named.group, "asset");
    }

    #[test]
    fn conditions_parse_as_python_evaluates_them() {
        let resolve = |w: &str| Asset::from_uri(w);
        let parsed = parse_condition("((s3://a/1 & s3://a/2) | c)", &resolve).unwrap();
        assert_eq!(
            parsed,
            asset("s3://a/1").and(asset("s3://a/2")).or(asset("c"))
        );
        // `&` binds tighter than `|`; each groups from the left and flattens as Airflow's.
        let parsed = parse_condition("a | b & c | d", &resolve).unwrap();
        assert_eq!(
            parsed,
            AssetCondition::Any(vec![
                asset("a"),
                AssetCondition::All(vec![asset("b"), asset("c")]),
                asset("d")
            ])
        );
        let parsed = parse_condition("a & (b & c)", &resolve).unwrap();
        assert_eq!(
            parsed,
            AssetCondition::All(vec![
                asset("a"),
                AssetCondition::All(vec![asset("b"), asset("c")])
            ])
        );
        for (bad, message) in [
            (
                "(a & b",
                "unexpected end of text at character 7 of the asset condition",
            ),
            (
                "a & & b",
                "unexpected \"&\" at character 5 of the asset condition",
            ),
            (
                "a b",
                "unexpected \"b\" at character 3 of the asset condition",
            ),
            (
                "",
                "unexpected end of text at character 1 of the asset condition",
            ),
        ] {
            assert_eq!(
                parse_condition(bad, &resolve).unwrap_err().to_string(),
                message
            );
        }
        let deep = format!("{}a{}", "(".repeat(40), ")".repeat(40));
        assert_eq!(
            parse_condition(&deep, &resolve),
            Err(ConditionError::TooDeep)
        );
    }

    #[test]
    fn a_condition_is_met_by_the_updated_assets() {
        let resolve = |w: &str| Asset::from_uri(w);
        let cond = parse_condition("(a & b) | c", &resolve).unwrap();
        let met = |names: &[&str]| {
            cond.is_met(&|a: &Asset| names.contains(&a.uri.as_str()), &|_| {
                Vec::new()
            })
        };
        assert!(!met(&[]));
        assert!(!met(&["a"]));
        assert!(met(&["a", "b"]));
        assert!(met(&["c"]));
        assert_eq!(cond.assets().len(), 3);
        assert_eq!(cond.to_string(), "((a & b) | c)");
        let expr = cond.expression(&|a| (a.uri == "c").then_some(7));
        assert_eq!(
            expr,
            serde_json::json!({"any": [{"all": [
                {"asset": {"uri": "a", "name": "a", "group": "asset", "id": null}},
                {"asset": {"uri": "b", "name": "b", "group": "asset", "id": null}}]},
                {"asset": {"uri": "c", "name": "c", "group": "asset", "id": 7}}]})
        );
    }

    #[test]
    fn an_alias_holds_when_an_asset_attached_to_it_was_updated() {
        let alias = AssetAlias::new("example-alias", None).unwrap();
        let cond = AssetCondition::Alias(alias.clone()).and(asset("c"));
        let attached = |a: &AssetAlias| {
            if a.name == "example-alias" {
                vec![Asset::from_uri("s3://bucket/my-task").unwrap()]
            } else {
                Vec::new()
            }
        };
        let met =
            |names: &[&str]| cond.is_met(&|a: &Asset| names.contains(&a.uri.as_str()), &attached);
        assert!(met(&["s3://bucket/my-task", "c"]));
        assert!(!met(&["c"]));
        // An alias no asset is attached to never holds.
        let alone = AssetCondition::Alias(alias.clone());
        assert!(!alone.is_met(&|_| true, &|_| Vec::new()));
        assert_eq!(cond.aliases().into_iter().collect::<Vec<_>>(), vec![&alias]);
        assert_eq!(cond.assets().len(), 1);
        assert_eq!(
            alone.expression(&|_| None),
            serde_json::json!({"alias": {"name": "example-alias", "group": "asset"}})
        );
        assert!(AssetAlias::new(" ", None).is_err());
    }
}
