//! A bounded YAML reader that keeps the position of every value.
//!
//! serde-based YAML readers lose positions once a value is read, and DAG-file diagnostics need
//! `file:line:col` for every value, including values merged in from defaults files. So this module
//! builds its own small tree from saphyr-parser's events. It is also where untrusted input is
//! bounded: file size, nesting depth and node count (which defeats alias "billion laughs"
//! expansion) all have limits, and the tree is built with an explicit stack so that no input can
//! overflow the call stack.
//!
//! Scalars resolve as PyYAML (which dag-factory uses) resolves them: YAML 1.1 booleans such as
//! `yes`/`off` are booleans, `<<` merge keys merge, and quoted scalars are always strings.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use saphyr_parser::{Event, Parser, ScalarStyle, Span};

use crate::location::Location;

/// The largest DAG file read (bytes); larger files are refused unread.
pub const MAX_FILE_BYTES: usize = 8 * 1024 * 1024;
/// The deepest nesting of maps and lists accepted.
pub const MAX_DEPTH: usize = 64;
/// The most values one file may expand to, aliases counted at every use.
pub const MAX_NODES: usize = 1_000_000;

/// A value read from YAML, with the place it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// The value.
    pub value: Value,
    /// Where it starts.
    pub at: Location,
}

/// A YAML value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `null`, `~` or nothing.
    Null,
    /// `true`, `false` (and YAML 1.1's `yes`, `no`, `on`, `off`).
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A floating-point number.
    Float(f64),
    /// A string.
    Str(String),
    /// A list.
    Seq(Vec<Node>),
    /// A map, in file order, keys unique.
    Map(Mapping),
}

/// A map's entries in file order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Mapping {
    entries: Vec<(Key, Node)>,
}

/// A map key and where it is.
#[derive(Debug, Clone, PartialEq)]
pub struct Key {
    /// The key's text.
    pub name: String,
    /// Where the key is.
    pub at: Location,
}

impl Mapping {
    /// The value under `name`.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<&Node> {
        self.entries
            .iter()
            .find(|(k, _)| k.name == name)
            .map(|(_, v)| v)
    }

    /// The key and value under `name`.
    #[must_use]
    pub fn entry(&self, name: &str) -> Option<(&Key, &Node)> {
        self.entries
            .iter()
            .find(|(k, _)| k.name == name)
            .map(|(k, v)| (k, v))
    }

    /// Entries in file order.
    pub fn iter(&self) -> impl Iterator<Item = (&Key, &Node)> {
        self.entries.iter().map(|(k, v)| (k, v))
    }

    /// Whether there is an entry for `name`.
    #[must_use]
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// How many entries there are.
    #[must_use]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the map is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Sets `key` to `value`, replacing an existing entry in place or appending.
    pub fn insert(&mut self, key: Key, value: Node) {
        match self.entries.iter_mut().find(|(k, _)| k.name == key.name) {
            Some(slot) => *slot = (key, value),
            None => self.entries.push((key, value)),
        }
    }

    /// Removes and returns the entry for `name`.
    pub fn remove(&mut self, name: &str) -> Option<(Key, Node)> {
        let index = self.entries.iter().position(|(k, _)| k.name == name)?;
        Some(self.entries.remove(index))
    }

    /// Mutable access to the values, for in-place rewrites.
    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut Node> {
        self.entries.iter_mut().map(|(_, v)| v)
    }
}

impl IntoIterator for Mapping {
    type Item = (Key, Node);
    type IntoIter = std::vec::IntoIter<(Key, Node)>;
    fn into_iter(self) -> Self::IntoIter {
        self.entries.into_iter()
    }
}

impl Node {
    /// What kind of value this is, for messages ("a map", "a string"...).
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self.value {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a map",
        }
    }

    /// The map, if this is one.
    #[must_use]
    pub fn as_map(&self) -> Option<&Mapping> {
        match &self.value {
            Value::Map(map) => Some(map),
            _ => None,
        }
    }

    /// The string, if this is one.
    #[must_use]
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Str(text) => Some(text),
            _ => None,
        }
    }

    /// The value as JSON (positions dropped), for operator arguments and params.
    #[must_use]
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match &self.value {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
            Value::Str(s) => J::String(s.clone()),
            Value::Seq(items) => J::Array(items.iter().map(Node::to_json).collect()),
            Value::Map(map) => J::Object(
                map.iter()
                    .map(|(k, v)| (k.name.clone(), v.to_json()))
                    .collect(),
            ),
        }
    }
}

/// Why a file could not be read as YAML.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LoadError {
    /// The file is larger than [`MAX_FILE_BYTES`].
    #[error("the file is {size} bytes; DAG files may be at most {MAX_FILE_BYTES} bytes")]
    TooLarge {
        /// The file's size.
        size: usize,
    },
    /// The YAML is malformed.
    #[error("invalid YAML: {message}")]
    Syntax {
        /// Where the parser stopped.
        at: Location,
        /// The parser's explanation.
        message: String,
    },
    /// Maps and lists nest deeper than [`MAX_DEPTH`].
    #[error("values nest more than {MAX_DEPTH} levels deep")]
    TooDeep {
        /// Where the limit was passed.
        at: Location,
    },
    /// The file expands to more than [`MAX_NODES`] values.
    #[error("the file expands to more than {MAX_NODES} values (are aliases nested?)")]
    TooManyNodes {
        /// Where the limit was passed.
        at: Location,
    },
    /// A key appears twice in one map.
    #[error("duplicate key \"{key}\" (first at line {first_line})")]
    DuplicateKey {
        /// The second occurrence.
        at: Location,
        /// The key.
        key: String,
        /// The line of the first occurrence.
        first_line: u32,
    },
    /// A map or list used as a key.
    #[error("map keys must be plain values, not maps or lists")]
    ComplexKey {
        /// Where the key is.
        at: Location,
    },
    /// An alias to an anchor that was never defined.
    #[error("alias to an undefined anchor")]
    UnknownAlias {
        /// Where the alias is.
        at: Location,
    },
    /// A `<<` merge key whose value is not a map or list of maps.
    #[error("a `<<` merge key must hold a map or a list of maps")]
    BadMerge {
        /// Where the merge key is.
        at: Location,
    },
    /// A tag that would build a language object (`!!python/object`...).
    #[error("YAML tag \"{tag}\" is refused; write plain values")]
    ForeignTag {
        /// Where the tag is.
        at: Location,
        /// The tag.
        tag: String,
    },
    /// More than one YAML document (`---`) in the file.
    #[error("the file holds more than one YAML document; put all its DAGs in one document")]
    SeveralDocuments {
        /// Where the second document starts.
        at: Location,
    },
}

impl LoadError {
    /// Where the problem is, if it has a place.
    #[must_use]
    pub fn location(&self) -> Option<&Location> {
        match self {
            Self::TooLarge { .. } => None,
            Self::Syntax { at, .. }
            | Self::TooDeep { at }
            | Self::TooManyNodes { at }
            | Self::DuplicateKey { at, .. }
            | Self::ComplexKey { at }
            | Self::UnknownAlias { at }
            | Self::BadMerge { at }
            | Self::ForeignTag { at, .. }
            | Self::SeveralDocuments { at } => Some(at),
        }
    }
}

/// A list or map being built.
enum Frame {
    Seq {
        items: Vec<Node>,
        /// `__and__`/`__or__` for a sequence tagged `!and`/`!or` (see [`LOGIC_TAGS`]).
        logic: Option<&'static str>,
        at: Location,
        anchor: usize,
    },
    Map {
        entries: Vec<(Key, Node)>,
        key: Option<Key>,
        at: Location,
        anchor: usize,
    },
}

/// Builds the tree from parser events.
struct Builder {
    file: Arc<Path>,
    stack: Vec<Frame>,
    anchors: HashMap<usize, (Node, usize)>,
    nodes: usize,
    root: Option<Node>,
    documents: usize,
}

/// Reads `text` (the contents of `file`) into a tree. An empty document reads as `Null`.
pub fn load(file: &Arc<Path>, text: &str) -> Result<Node, LoadError> {
    if text.len() > MAX_FILE_BYTES {
        return Err(LoadError::TooLarge { size: text.len() });
    }
    let mut builder = Builder {
        file: Arc::clone(file),
        stack: Vec::new(),
        anchors: HashMap::new(),
        nodes: 0,
        root: None,
        documents: 0,
    };
    let mut parser = Parser::new_from_str(text);
    while let Some(event) = parser.next_event() {
        let (event, span) = event.map_err(|err| LoadError::Syntax {
            at: Location {
                file: Arc::clone(file),
                line: to_u32(err.marker().line()),
                col: to_u32(err.marker().col() + 1),
            },
            message: err.info().to_owned(),
        })?;
        builder.on_event(event, span)?;
    }
    Ok(builder.root.unwrap_or_else(|| Node {
        value: Value::Null,
        at: Location::start_of(Arc::clone(file)),
    }))
}

fn to_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl Builder {
    fn at(&self, span: Span) -> Location {
        Location {
            file: Arc::clone(&self.file),
            line: to_u32(span.start.line()),
            col: to_u32(span.start.col() + 1),
        }
    }

    fn count(&mut self, n: usize, at: &Location) -> Result<(), LoadError> {
        self.nodes = self.nodes.saturating_add(n);
        if self.nodes > MAX_NODES {
            return Err(LoadError::TooManyNodes { at: at.clone() });
        }
        Ok(())
    }

    fn open(&mut self, frame: Frame, at: &Location) -> Result<(), LoadError> {
        if self.stack.len() >= MAX_DEPTH {
            return Err(LoadError::TooDeep { at: at.clone() });
        }
        self.count(1, at)?;
        self.stack.push(frame);
        Ok(())
    }

    fn on_event(&mut self, event: Event<'_>, span: Span) -> Result<(), LoadError> {
        let at = self.at(span);
        match event {
            Event::DocumentStart(_) => {
                self.documents += 1;
                if self.documents > 1 {
                    return Err(LoadError::SeveralDocuments { at });
                }
                Ok(())
            }
            Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => Ok(()),
            Event::Alias(id) => {
                let (node, size) = self
                    .anchors
                    .get(&id)
                    .cloned()
                    .ok_or(LoadError::UnknownAlias { at: at.clone() })?;
                self.count(size, &at)?;
                self.finish(node, 0, size)
            }
            Event::Scalar(text, style, anchor, tag) => {
                let tag = tag.map(|t| tag_text(&t));
                let value = resolve_scalar(&text, style, tag.as_deref(), &at)?;
                self.count(1, &at)?;
                self.finish(Node { value, at }, anchor, 1)
            }
            Event::SequenceStart(anchor, tag) => {
                let tag = tag.map(|t| tag_text(&t));
                let logic = tag
                    .as_deref()
                    .and_then(|t| LOGIC_TAGS.iter().find(|(name, _)| *name == t))
                    .map(|(_, key)| *key);
                if logic.is_none() {
                    check_collection_tag(tag, &at)?;
                }
                self.open(
                    Frame::Seq {
                        items: Vec::new(),
                        logic,
                        at: at.clone(),
                        anchor,
                    },
                    &at,
                )
            }
            Event::MappingStart(anchor, tag) => {
                check_collection_tag(tag.map(|t| tag_text(&t)), &at)?;
                self.open(
                    Frame::Map {
                        entries: Vec::new(),
                        key: None,
                        at: at.clone(),
                        anchor,
                    },
                    &at,
                )
            }
            Event::SequenceEnd => match self.stack.pop() {
                Some(Frame::Seq {
                    items,
                    logic,
                    at,
                    anchor,
                }) => {
                    let size = 1 + items.iter().map(subtree_size).sum::<usize>();
                    let seq = Node {
                        value: Value::Seq(items),
                        at: at.clone(),
                    };
                    let node = match logic {
                        // Read as the `{__and__: [...]}` map dag-factory's loader resolves.
                        Some(name) => Node {
                            value: Value::Map(Mapping {
                                entries: vec![(
                                    Key {
                                        name: name.to_owned(),
                                        at: at.clone(),
                                    },
                                    seq,
                                )],
                            }),
                            at,
                        },
                        None => seq,
                    };
                    self.finish(node, anchor, size + usize::from(logic.is_some()))
                }
                _ => Err(LoadError::Syntax {
                    at,
                    message: "unbalanced sequence end".into(),
                }),
            },
            Event::MappingEnd => match self.stack.pop() {
                Some(Frame::Map {
                    entries,
                    at,
                    anchor,
                    ..
                }) => {
                    let map = apply_merge_keys(entries)?;
                    let node = Node {
                        value: Value::Map(map),
                        at,
                    };
                    let size = subtree_size(&node);
                    self.finish(node, anchor, size)
                }
                _ => Err(LoadError::Syntax {
                    at,
                    message: "unbalanced mapping end".into(),
                }),
            },
        }
    }

    /// Places a finished node in its parent (or as the root), remembering its anchor.
    fn finish(&mut self, node: Node, anchor: usize, size: usize) -> Result<(), LoadError> {
        if anchor != 0 {
            self.anchors.insert(anchor, (node.clone(), size));
        }
        match self.stack.last_mut() {
            None => {
                self.root = Some(node);
                Ok(())
            }
            Some(Frame::Seq { items, .. }) => {
                items.push(node);
                Ok(())
            }
            Some(Frame::Map { entries, key, .. }) => match key.take() {
                Some(key) => {
                    if let Some((first, _)) = entries
                        .iter()
                        .find(|(k, _)| k.name == key.name && k.name != MERGE_KEY)
                    {
                        return Err(LoadError::DuplicateKey {
                            first_line: first.at.line,
                            at: key.at,
                            key: key.name,
                        });
                    }
                    entries.push((key, node));
                    Ok(())
                }
                None => {
                    let name = match node.value {
                        Value::Str(text) => text,
                        Value::Null => "null".to_owned(),
                        Value::Bool(b) => b.to_string(),
                        Value::Int(i) => i.to_string(),
                        Value::Float(f) => f.to_string(),
                        Value::Seq(_) | Value::Map(_) => {
                            return Err(LoadError::ComplexKey { at: node.at });
                        }
                    };
                    *key = Some(Key { name, at: node.at });
                    Ok(())
                }
            },
        }
    }
}

const MERGE_KEY: &str = "<<";

/// Applies YAML merge keys: entries of the merged maps that the map does not set itself.
fn apply_merge_keys(entries: Vec<(Key, Node)>) -> Result<Mapping, LoadError> {
    let mut map = Mapping::default();
    let mut merged = Vec::new();
    for (key, node) in entries {
        if key.name == MERGE_KEY {
            merged.push((key, node));
        } else {
            map.entries.push((key, node));
        }
    }
    for (key, node) in merged {
        let sources = match node.value {
            Value::Map(source) => vec![source],
            Value::Seq(items) => items
                .into_iter()
                .map(|item| match item.value {
                    Value::Map(source) => Ok(source),
                    _ => Err(LoadError::BadMerge { at: key.at.clone() }),
                })
                .collect::<Result<_, _>>()?,
            _ => return Err(LoadError::BadMerge { at: key.at }),
        };
        // The first map listed wins over later ones, and the map's own keys over all of them.
        for source in sources {
            for (k, v) in source {
                if !map.contains(&k.name) {
                    map.entries.push((k, v));
                }
            }
        }
    }
    Ok(map)
}

fn subtree_size(node: &Node) -> usize {
    // Sizes are only needed for anchored nodes and are bounded by MAX_NODES already counted.
    let mut size = 0;
    let mut pending = vec![node];
    while let Some(n) = pending.pop() {
        size += 1;
        match &n.value {
            Value::Seq(items) => pending.extend(items.iter()),
            Value::Map(map) => pending.extend(map.entries.iter().map(|(_, v)| v)),
            _ => {}
        }
    }
    size
}

/// The tags dag-factory's examples put on a list of assets to combine them (`!or`, `!and`),
/// and the key of the map each is read as.
const LOGIC_TAGS: [(&str, &str); 2] = [("!and", "__and__"), ("!or", "__or__")];

fn check_collection_tag(tag: Option<String>, at: &Location) -> Result<(), LoadError> {
    match tag {
        Some(tag) if !is_core_tag(&tag) => Err(LoadError::ForeignTag {
            at: at.clone(),
            tag,
        }),
        _ => Ok(()),
    }
}

/// A tag as written: `!!str` for the YAML core handle, the handle and suffix otherwise.
fn tag_text(tag: &saphyr_parser::Tag) -> String {
    if tag.is_yaml_core_schema() {
        format!("!!{}", tag.suffix)
    } else {
        format!("{}{}", tag.handle, tag.suffix)
    }
}

/// Whether a tag names one of YAML's own types (and not, say, `!!python/object`).
fn is_core_tag(tag: &str) -> bool {
    matches!(
        tag.strip_prefix("!!"),
        Some(
            "str"
                | "int"
                | "float"
                | "bool"
                | "null"
                | "map"
                | "seq"
                | "timestamp"
                | "binary"
                | "omap"
                | "set"
                | "merge"
        )
    )
}

/// Resolves a scalar's type as PyYAML would.
fn resolve_scalar(
    text: &str,
    style: ScalarStyle,
    tag: Option<&str>,
    at: &Location,
) -> Result<Value, LoadError> {
    if let Some(tag) = tag {
        if !is_core_tag(tag) {
            return Err(LoadError::ForeignTag {
                at: at.clone(),
                tag: tag.to_owned(),
            });
        }
        if tag == "!!str" {
            return Ok(Value::Str(text.to_owned()));
        }
    }
    if style != ScalarStyle::Plain {
        return Ok(Value::Str(text.to_owned()));
    }
    Ok(match text {
        "" | "~" | "null" | "Null" | "NULL" => Value::Null,
        "true" | "True" | "TRUE" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" => Value::Bool(true),
        "false" | "False" | "FALSE" | "no" | "No" | "NO" | "off" | "Off" | "OFF" => {
            Value::Bool(false)
        }
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => Value::Float(f64::INFINITY),
        "-.inf" | "-.Inf" | "-.INF" => Value::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => Value::Float(f64::NAN),
        _ => parse_int(text)
            .map(Value::Int)
            .or_else(|| parse_float(text).map(Value::Float))
            .unwrap_or_else(|| Value::Str(text.to_owned())),
    })
}

fn parse_int(text: &str) -> Option<i64> {
    let (negative, digits) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let digits = digits.replace('_', "");
    let (radix, body) = if let Some(hex) = digits.strip_prefix("0x") {
        (16, hex.to_owned())
    } else if let Some(oct) = digits.strip_prefix("0o") {
        (8, oct.to_owned())
    } else {
        (10, digits)
    };
    if body.is_empty() || !body.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let magnitude = i64::from_str_radix(&body, radix).ok()?;
    Some(if negative { -magnitude } else { magnitude })
}

fn parse_float(text: &str) -> Option<f64> {
    let body = text.trim_start_matches(['-', '+']);
    let looks_numeric = body.starts_with(|c: char| c.is_ascii_digit() || c == '.')
        && body
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '-' | '+' | '_'))
        && body.chars().any(|c| c.is_ascii_digit());
    if !looks_numeric {
        return None;
    }
    text.replace('_', "").parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file() -> Arc<Path> {
        Path::new("t.yaml").into()
    }

    fn read(text: &str) -> Result<Node, LoadError> {
        load(&file(), text)
    }

    #[test]
    fn every_value_keeps_its_line_and_column() {
        let root = read("a:\n  b: [1, two]\n").unwrap();
        let a = root.as_map().unwrap().get("a").unwrap();
        let b = a.as_map().unwrap().get("b").unwrap();
        let Value::Seq(items) = &b.value else {
            panic!("a list")
        };
        assert_eq!((items[1].at.line, items[1].at.col), (2, 10));
        assert_eq!(items[1].value, Value::Str("two".into()));
    }

    #[test]
    fn scalars_resolve_as_pyyaml_does() {
        let root = read("a: yes\nb: 'yes'\nc: 010\nd: 0x1f\ne: 1.5\nf: ~\ng: 1e3\nh: 2024-01-01\n")
            .unwrap();
        let m = root.as_map().unwrap();
        let v = |k: &str| m.get(k).unwrap().value.clone();
        assert_eq!(v("a"), Value::Bool(true));
        assert_eq!(v("b"), Value::Str("yes".into()));
        assert_eq!(v("c"), Value::Int(10));
        assert_eq!(v("d"), Value::Int(31));
        assert_eq!(v("e"), Value::Float(1.5));
        assert_eq!(v("f"), Value::Null);
        assert_eq!(v("g"), Value::Float(1000.0));
        assert_eq!(v("h"), Value::Str("2024-01-01".into()));
    }

    #[test]
    fn anchors_aliases_and_merge_keys_work() {
        let root = read("base: &b {x: 1, y: 2}\nuse:\n  <<: *b\n  y: 3\n").unwrap();
        let used = root.as_map().unwrap().get("use").unwrap().to_json();
        assert_eq!(used, serde_json::json!({"y": 3, "x": 1}));
    }

    #[test]
    fn duplicate_keys_are_refused_with_both_lines() {
        let err = read("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!(err.to_string(), "duplicate key \"a\" (first at line 1)");
        assert_eq!(err.location().unwrap().line, 3);
    }

    #[test]
    fn deep_nesting_is_refused_not_overflowed() {
        let err = read(&"[".repeat(100)).unwrap_err();
        assert!(matches!(err, LoadError::TooDeep { .. }), "{err:?}");
        // Far deeper input stops in the scanner's own limit, still as an error.
        assert!(read(&"[".repeat(100_000)).is_err());
        assert!(read(&"- ".repeat(100_000)).is_err());
    }

    #[test]
    fn alias_bombs_are_refused() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let p = i - 1;
            text.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        assert!(matches!(read(&text), Err(LoadError::TooManyNodes { .. })));
    }

    #[test]
    fn python_object_tags_are_refused() {
        let err = read("a: !!python/object:os.system ls\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "YAML tag \"!!python/object:os.system\" is refused; write plain values"
        );
    }

    #[test]
    fn syntax_errors_carry_a_position() {
        let err = read("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(matches!(err, LoadError::Syntax { .. }));
        assert!(err.location().unwrap().line >= 1);
    }

    #[test]
    fn an_empty_file_is_null_and_two_documents_are_refused() {
        assert_eq!(read("").unwrap().value, Value::Null);
        assert!(matches!(
            read("a: 1\n---\nb: 2\n"),
            Err(LoadError::SeveralDocuments { .. })
        ));
    }

    #[test]
    fn oversized_files_are_refused_unread() {
        let text = "#".repeat(MAX_FILE_BYTES + 1);
        assert!(matches!(read(&text), Err(LoadError::TooLarge { .. })));
    }
}
