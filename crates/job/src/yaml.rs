//! A YAML document as a tree of nodes that remember their position, built
//! with serde-saphyr's `Spanned`. Validating this tree by hand (instead of
//! deriving `Deserialize` for the job types) is what lets every error name
//! its key path, line and column, and suggest the key that was meant.

use crate::error::Position;
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{Location, Spanned};
use std::fmt;

/// One node of the document.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Node {
    /// Where the node is used (for an alias, the alias, not the anchor).
    pub at: Position,
    /// Its content.
    pub value: NodeValue,
}

/// A mapping key with its position.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Key {
    pub name: String,
    pub at: Position,
}

/// The content of a node.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum NodeValue {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    /// An integer literal too large for 64 bits (below `i64::MIN` or above
    /// `u64::MAX`), as written.
    BigInt(String),
    Str(String),
    Seq(Vec<Node>),
    /// Entries in file order.
    Map(Vec<(Key, Node)>),
}

impl NodeValue {
    /// How error messages name this kind of value.
    pub(crate) fn describe(&self) -> &'static str {
        match self {
            NodeValue::Null => "nothing (null)",
            NodeValue::Bool(_) => "a boolean",
            NodeValue::Int(_) | NodeValue::UInt(_) | NodeValue::BigInt(_) => "an integer",
            NodeValue::Float(_) => "a number with a fraction",
            NodeValue::Str(_) => "a string",
            NodeValue::Seq(_) => "a list",
            NodeValue::Map(_) => "a mapping",
        }
    }
}

/// A YAML error before it is tied to a file name.
pub(crate) struct YamlError {
    pub at: Position,
    pub kind: YamlErrorKind,
}

/// What is wrong with the YAML text.
pub(crate) enum YamlErrorKind {
    /// A character YAML does not allow in a text (a control character such
    /// as NUL): the file is probably not text.
    NotText(char),
    /// A second document starts at the position.
    MultipleDocuments,
    /// A key appears twice in one mapping.
    DuplicateKey(String),
    /// Any other syntax error, with its message.
    Syntax(String),
}

/// Parses one YAML document. YAML 1.2 booleans only (`yes`, `no`, `on` and
/// `off` stay strings), duplicate keys are errors, and serde-saphyr's default
/// budget bounds depth and size.
pub(crate) fn parse(text: &str) -> Result<Node, YamlError> {
    if let Some((at, character)) = first_non_printable(text) {
        return Err(YamlError {
            at,
            kind: YamlErrorKind::NotText(character),
        });
    }
    let lines: Vec<&str> = text.lines().collect();
    let options = serde_saphyr::options! {
        strict_booleans: true,
        with_snippet: false,
    };
    match serde_saphyr::from_str_with_options::<Spanned<RawNode>>(text, options) {
        Ok(root) => Ok(node(root, &lines)),
        Err(error) => {
            let at = error
                .location()
                .map(position)
                .unwrap_or(Position::new(1, 1));
            let error = error.without_snippet();
            let (at, kind) = match error {
                serde_saphyr::Error::DuplicateMappingKey { key, .. } => (
                    at,
                    YamlErrorKind::DuplicateKey(key.clone().unwrap_or_default()),
                ),
                serde_saphyr::Error::MultipleDocuments { .. } => (
                    second_document_start(&lines, at).unwrap_or(at),
                    YamlErrorKind::MultipleDocuments,
                ),
                _ => {
                    let message = serde_saphyr::MessageFormatter::format_message(
                        &serde_saphyr::DefaultMessageFormatter,
                        error,
                    );
                    if message.contains("tab") {
                        // The scanner reports where the token it was reading
                        // began, which can be lines before the tab itself.
                        (
                            first_tab_from(&lines, at).unwrap_or(at),
                            YamlErrorKind::Syntax(
                                "a tab is not allowed here: YAML indents with spaces".into(),
                            ),
                        )
                    } else {
                        (at, YamlErrorKind::Syntax(printable(&message)))
                    }
                }
            };
            Err(YamlError { at, kind })
        }
    }
}

/// Whether YAML allows `c` in a text (its `c-printable` set).
fn is_printable(c: char) -> bool {
    matches!(
        c,
        '\t' | '\n' | '\r' | ' '..='~' | '\u{85}' | '\u{a0}'..='\u{d7ff}' | '\u{e000}'..='\u{fffd}'
    ) || c >= '\u{10000}'
}

/// The first character YAML does not allow, with its position.
fn first_non_printable(text: &str) -> Option<(Position, char)> {
    let (mut line, mut column) = (1, 1);
    for c in text.chars() {
        if !is_printable(c) {
            return Some((Position::new(line, column), c));
        }
        if c == '\n' {
            (line, column) = (line + 1, 1);
        } else {
            column += 1;
        }
    }
    None
}

/// The position of the first byte of `bytes` that is not UTF-8.
pub(crate) fn first_invalid_utf8(bytes: &[u8], valid_up_to: usize) -> Position {
    let valid = String::from_utf8_lossy(&bytes[..valid_up_to]);
    let line = valid.matches('\n').count() as u64 + 1;
    let column = valid.rsplit('\n').next().unwrap_or("").chars().count() as u64 + 1;
    Position::new(line, column)
}

/// A parser message with any control characters escaped, so that it stays
/// one line.
fn printable(message: &str) -> String {
    message
        .chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// The first tab at or after `from`.
fn first_tab_from(lines: &[&str], from: Position) -> Option<Position> {
    let first = usize::try_from(from.line).ok()?.checked_sub(1)?;
    lines
        .iter()
        .enumerate()
        .skip(first)
        .find_map(|(index, line)| {
            let skip = if index == first {
                from.column.saturating_sub(1) as usize
            } else {
                0
            };
            let column = line.chars().skip(skip).position(|c| c == '\t')? + skip;
            Some(Position::new(index as u64 + 1, column as u64 + 1))
        })
}

/// The `---` line that starts the document the parser refused (the last
/// one at or before `at` that has content above it).
fn second_document_start(lines: &[&str], at: Position) -> Option<Position> {
    let last = usize::try_from(at.line).ok()?.min(lines.len());
    let is_marker =
        |line: &str| line == "---" || line.starts_with("--- ") || line.starts_with("---\t");
    let index = lines[..last].iter().rposition(|line| is_marker(line))?;
    let content_above = lines[..index].iter().any(|line| {
        let line = line.trim();
        !line.is_empty() && !line.starts_with('#') && !line.starts_with('%')
    });
    content_above.then(|| Position::new(index as u64 + 1, 1))
}

fn position(location: Location) -> Position {
    Position::new(location.line().max(1), location.column().max(1))
}

/// Whether `text` is a decimal integer literal (such as `-12` or `+7`).
fn integer_literal(text: &str) -> bool {
    let digits = text.strip_prefix(['+', '-']).unwrap_or(text);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

/// The plain scalar written at `at`, skipping an anchor (`&name`) before it.
fn scalar_at<'t>(lines: &[&'t str], at: Location) -> Option<&'t str> {
    let line = lines.get(usize::try_from(at.line()).ok()?.checked_sub(1)?)?;
    let start = line
        .char_indices()
        .nth(usize::try_from(at.column()).ok()?.checked_sub(1)?)?
        .0;
    let mut rest = &line[start..];
    if rest.starts_with('&') {
        rest = rest
            .trim_start_matches(|c: char| !c.is_whitespace())
            .trim_start();
    }
    let end = rest
        .find(|c: char| c.is_whitespace() || ",[]{}".contains(c))
        .unwrap_or(rest.len());
    Some(&rest[..end])
}

/// The shape serde-saphyr fills in: every child wrapped in `Spanned`.
enum RawNode {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(String),
    Seq(Vec<Spanned<RawNode>>),
    Map(Vec<(Spanned<String>, Spanned<RawNode>)>),
}

/// The positioned tree of `spanned`; `lines` are the source, for integers
/// too large for 64 bits, which serde-saphyr hands over as floats.
fn node(spanned: Spanned<RawNode>, lines: &[&str]) -> Node {
    let value = match spanned.value {
        RawNode::Null => NodeValue::Null,
        RawNode::Bool(b) => NodeValue::Bool(b),
        RawNode::Int(i) => NodeValue::Int(i),
        RawNode::UInt(u) => NodeValue::UInt(u),
        RawNode::Float(f) => match scalar_at(lines, spanned.defined) {
            Some(text) if integer_literal(text) => NodeValue::BigInt(text.to_owned()),
            _ => NodeValue::Float(f),
        },
        RawNode::Str(s) => NodeValue::Str(s),
        RawNode::Seq(items) => {
            NodeValue::Seq(items.into_iter().map(|item| node(item, lines)).collect())
        }
        RawNode::Map(entries) => NodeValue::Map(
            entries
                .into_iter()
                .map(|(key, value)| {
                    (
                        Key {
                            at: position(key.referenced),
                            name: key.value,
                        },
                        node(value, lines),
                    )
                })
                .collect(),
        ),
    };
    Node {
        at: position(spanned.referenced),
        value,
    }
}

impl<'de> Deserialize<'de> for RawNode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(RawNodeVisitor)
    }
}

struct RawNodeVisitor;

impl<'de> Visitor<'de> for RawNodeVisitor {
    type Value = RawNode;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_unit<E>(self) -> Result<RawNode, E> {
        Ok(RawNode::Null)
    }

    fn visit_none<E>(self) -> Result<RawNode, E> {
        Ok(RawNode::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<RawNode, D::Error> {
        RawNode::deserialize(deserializer)
    }

    fn visit_bool<E>(self, value: bool) -> Result<RawNode, E> {
        Ok(RawNode::Bool(value))
    }

    fn visit_i64<E>(self, value: i64) -> Result<RawNode, E> {
        Ok(RawNode::Int(value))
    }

    fn visit_u64<E>(self, value: u64) -> Result<RawNode, E> {
        Ok(RawNode::UInt(value))
    }

    fn visit_f64<E>(self, value: f64) -> Result<RawNode, E> {
        Ok(RawNode::Float(value))
    }

    fn visit_str<E>(self, value: &str) -> Result<RawNode, E> {
        Ok(RawNode::Str(value.to_owned()))
    }

    fn visit_string<E>(self, value: String) -> Result<RawNode, E> {
        Ok(RawNode::Str(value))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawNode, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(RawNode::Seq(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawNode, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Spanned<String>>()? {
            let value = map.next_value()?;
            entries.push((key, value));
        }
        Ok(RawNode::Map(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(node: &Node) -> String {
        let at = format!("@{}", node.at);
        match &node.value {
            NodeValue::Seq(items) => {
                let items: Vec<String> = items.iter().map(shape).collect();
                format!("[{}]{at}", items.join(", "))
            }
            NodeValue::Map(entries) => {
                let entries: Vec<String> = entries
                    .iter()
                    .map(|(k, v)| format!("{}@{}: {}", k.name, k.at, shape(v)))
                    .collect();
                format!("{{{}}}{at}", entries.join(", "))
            }
            other => format!("{other:?}{at}"),
        }
    }

    #[test]
    fn nodes_and_keys_carry_positions() {
        let root = parse("name: x\nrange:\n  stop: 10\nlist: [1, -2, 0.5, ~, yes, true]\n")
            .ok()
            .unwrap();
        assert_eq!(
            shape(&root),
            "{name@1:1: Str(\"x\")@1:7, range@2:1: {stop@3:3: UInt(10)@3:9}@3:3, \
             list@4:1: [UInt(1)@4:8, Int(-2)@4:11, Float(0.5)@4:15, Null@4:20, \
             Str(\"yes\")@4:23, Bool(true)@4:28]@4:7}@1:1"
        );
    }

    #[test]
    fn aliases_point_at_their_use() {
        let root = parse("a: &x 5\nb: *x\n").ok().unwrap();
        let NodeValue::Map(entries) = root.value else {
            panic!("not a map")
        };
        assert_eq!(entries[1].1.at, Position::new(2, 4));
        assert_eq!(entries[1].1.value, NodeValue::UInt(5));
    }

    #[test]
    fn syntax_and_duplicate_errors_have_positions() {
        let error = parse("a: [1\nb: 2\n").err().unwrap();
        assert_eq!(error.at, Position::new(2, 2));
        assert!(matches!(error.kind, YamlErrorKind::Syntax(_)));
        let error = parse("a: 1\nb: 2\na: 3\n").err().unwrap();
        assert_eq!(error.at, Position::new(3, 1));
        assert!(matches!(error.kind, YamlErrorKind::DuplicateKey(ref key) if key == "a"));
    }
}
