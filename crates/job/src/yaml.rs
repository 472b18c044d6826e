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
            NodeValue::Int(_) | NodeValue::UInt(_) => "an integer",
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
    pub duplicate_key: Option<String>,
    pub message: String,
}

/// Parses one YAML document. YAML 1.2 booleans only (`yes`, `no`, `on` and
/// `off` stay strings), duplicate keys are errors, and serde-saphyr's default
/// budget bounds depth and size.
pub(crate) fn parse(text: &str) -> Result<Node, YamlError> {
    let options = serde_saphyr::options! {
        strict_booleans: true,
        with_snippet: false,
    };
    match serde_saphyr::from_str_with_options::<Spanned<RawNode>>(text, options) {
        Ok(root) => Ok(root.into()),
        Err(error) => {
            let at = error
                .location()
                .map(position)
                .unwrap_or(Position::new(1, 1));
            let error = error.without_snippet();
            let duplicate_key = match error {
                serde_saphyr::Error::DuplicateMappingKey { key, .. } => {
                    Some(key.clone().unwrap_or_default())
                }
                _ => None,
            };
            let message = serde_saphyr::MessageFormatter::format_message(
                &serde_saphyr::DefaultMessageFormatter,
                error,
            )
            .escape_debug()
            .to_string();
            Err(YamlError {
                at,
                duplicate_key,
                message,
            })
        }
    }
}

fn position(location: Location) -> Position {
    Position::new(location.line().max(1), location.column().max(1))
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

impl From<Spanned<RawNode>> for Node {
    fn from(spanned: Spanned<RawNode>) -> Node {
        let value = match spanned.value {
            RawNode::Null => NodeValue::Null,
            RawNode::Bool(b) => NodeValue::Bool(b),
            RawNode::Int(i) => NodeValue::Int(i),
            RawNode::UInt(u) => NodeValue::UInt(u),
            RawNode::Float(f) => NodeValue::Float(f),
            RawNode::Str(s) => NodeValue::Str(s),
            RawNode::Seq(items) => NodeValue::Seq(items.into_iter().map(Node::from).collect()),
            RawNode::Map(entries) => NodeValue::Map(
                entries
                    .into_iter()
                    .map(|(key, value)| {
                        (
                            Key {
                                at: position(key.referenced),
                                name: key.value,
                            },
                            Node::from(value),
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
        assert_eq!(error.duplicate_key, None);
        let error = parse("a: 1\nb: 2\na: 3\n").err().unwrap();
        assert_eq!(error.at, Position::new(3, 1));
        assert_eq!(error.duplicate_key.as_deref(), Some("a"));
    }
}
