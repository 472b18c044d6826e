//! MessagePack values rendered as JSON, for people and for tools.
//!
//! Task results travel as MessagePack with field names. Most of it maps onto
//! JSON directly; the rest is rendered rather than refused: binary data
//! becomes an array of byte values, map keys that are not strings become
//! their JSON text, and floats that JSON cannot hold (NaN, ±infinity)
//! become `null`.

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use std::fmt;
use thiserror::Error;

/// How a large result is stored in its object (the file name says which:
/// `_result.json` or `_result.msgpack`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ResultFormat {
    /// JSON text, readable by any tool: the default.
    Json,
    /// MessagePack, exactly as the function encoded it: for functions that
    /// ask for binary results (bytes, floats JSON cannot hold).
    MessagePack,
}

impl ResultFormat {
    /// The object name of a result in this format, under the task's output
    /// directory.
    pub fn file_name(self) -> &'static str {
        match self {
            ResultFormat::Json => "_result.json",
            ResultFormat::MessagePack => "_result.msgpack",
        }
    }

    /// The format of the result stored at `url`.
    pub fn of_url(url: &str) -> ResultFormat {
        if url.ends_with(".json") {
            ResultFormat::Json
        } else {
            ResultFormat::MessagePack
        }
    }

    /// How the manifest names it: `json` or `msgpack`.
    pub fn as_str(self) -> &'static str {
        match self {
            ResultFormat::Json => "json",
            ResultFormat::MessagePack => "msgpack",
        }
    }
}

/// Bytes that are not one complete MessagePack value.
#[derive(Debug, Error)]
#[error("the value is not valid MessagePack: {0}")]
pub struct MsgpackError(#[from] rmp_serde::decode::Error);

/// Decodes one MessagePack value into JSON.
pub fn msgpack_to_json(bytes: &[u8]) -> Result<Value, MsgpackError> {
    let mut deserializer = rmp_serde::Deserializer::from_read_ref(bytes);
    let JsonValue(value) = JsonValue::deserialize(&mut deserializer)?;
    Ok(value)
}

/// A JSON value built from any serde data model value.
struct JsonValue(Value);

impl<'de> Deserialize<'de> for JsonValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(JsonVisitor).map(JsonValue)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any MessagePack value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_bytes<E>(self, v: &[u8]) -> Result<Value, E> {
        Ok(Value::Array(v.iter().map(|&b| Value::from(b)).collect()))
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(JsonVisitor)
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Value, D::Error> {
        deserializer.deserialize_any(JsonVisitor)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(JsonValue(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some((JsonValue(key), JsonValue(value))) = map.next_entry()? {
            let key = match key {
                Value::String(text) => text,
                other => other.to_string(),
            };
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }

    fn visit_enum<A: de::EnumAccess<'de>>(self, _data: A) -> Result<Value, A::Error> {
        Err(de::Error::custom(
            "MessagePack extension types have no JSON rendering",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Serialize;
    use serde_json::json;
    use std::collections::BTreeMap;

    fn roundtrip<T: Serialize>(value: &T) -> Value {
        msgpack_to_json(&rmp_serde::to_vec_named(value).unwrap()).unwrap()
    }

    #[test]
    fn plain_values_map_onto_json() {
        assert_eq!(roundtrip(&42i64), json!(42));
        assert_eq!(roundtrip(&-7i32), json!(-7));
        assert_eq!(roundtrip(&u64::MAX), json!(u64::MAX));
        assert_eq!(roundtrip(&0.5f64), json!(0.5));
        assert_eq!(roundtrip(&"text"), json!("text"));
        assert_eq!(roundtrip(&()), Value::Null);
        assert_eq!(roundtrip(&Option::<u8>::None), Value::Null);
        assert_eq!(roundtrip(&vec![1, 2, 3]), json!([1, 2, 3]));
        assert_eq!(
            roundtrip(&json!({"accuracy": 0.87, "trees": [10, 20]})),
            json!({"accuracy": 0.87, "trees": [10, 20]})
        );
    }

    #[test]
    fn structs_keep_their_field_names() {
        #[derive(Serialize)]
        struct Score {
            accuracy: f64,
            depth: Option<u32>,
        }
        assert_eq!(
            roundtrip(&Score {
                accuracy: 0.9,
                depth: None
            }),
            json!({"accuracy": 0.9, "depth": null})
        );
    }

    #[test]
    fn what_json_lacks_is_rendered_not_refused() {
        let bytes = serde_bytes::ByteBuf::from(vec![0u8, 255]);
        assert_eq!(roundtrip(&bytes), json!([0, 255]));
        let mut by_number = BTreeMap::new();
        by_number.insert(3u32, "three");
        assert_eq!(roundtrip(&by_number), json!({"3": "three"}));
        assert_eq!(roundtrip(&f64::NAN), Value::Null);
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(msgpack_to_json(&[0xc1]).is_err(), "0xc1 is never used");
        assert!(msgpack_to_json(&[0x92, 0x01]).is_err(), "truncated array");
    }
}
