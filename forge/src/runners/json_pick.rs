//! One value picked out of a JSON document without building a
//! [`serde_json::Value`] tree of the rest: what the runners read from every
//! reply and stream event (an answer's `response.data.content`, an infer
//! reply's `stream_id`).
//!
//! [`pick`] gives what `serde_json::from_str::<Value>(text)` followed by
//! `Value::pointer` gives: the same documents are rejected (numbers are still
//! parsed, so `1e400` is an error as it is for a `Value`), a key given twice
//! counts with its last value, and a path through anything but objects finds
//! nothing. Only the picked value is allocated, and a string without escapes
//! is borrowed from the text.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

/// The value at `path` (object keys, outermost first) in the JSON `text`,
/// read as `T`; `None` when the path does not lead to a value. A malformed
/// document, or a value at `path` that `T` does not accept, is an error.
pub fn pick<'de, T: Deserialize<'de>>(
    text: &'de str,
    path: &[&str],
) -> Result<Option<T>, serde_json::Error> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let value = Pointer::<T> {
        path,
        leaf: PhantomData,
    }
    .deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok(value)
}

/// A JSON string, or `None` for any other value (read in full and dropped).
#[derive(Debug, PartialEq, Eq)]
pub struct MaybeStr<'de>(pub Option<Cow<'de, str>>);

impl<'de> Deserialize<'de> for MaybeStr<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrVisitor)
    }
}

struct StrVisitor;

impl<'de> Visitor<'de> for StrVisitor {
    type Value = MaybeStr<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(MaybeStr(Some(Cow::Borrowed(v))))
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(MaybeStr(Some(Cow::Owned(v.to_owned()))))
    }

    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(MaybeStr(Some(Cow::Owned(v))))
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(MaybeStr(None))
    }

    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(MaybeStr(None))
    }

    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(MaybeStr(None))
    }

    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(MaybeStr(None))
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(MaybeStr(None))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        drain_seq(seq).map(|()| MaybeStr(None))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        drain_map(map).map(|()| MaybeStr(None))
    }
}

/// Any JSON value, read in full (numbers parsed, as a `Value` would) and
/// dropped. Unlike `serde::de::IgnoredAny`, which serde_json skips without
/// parsing numbers, it rejects what a `Value` rejects.
struct Skip;

impl<'de> Deserialize<'de> for Skip {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_any(StrVisitor)
            .map(|_: MaybeStr<'de>| Skip)
    }
}

fn drain_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<(), A::Error> {
    while seq.next_element::<Skip>()?.is_some() {}
    Ok(())
}

fn drain_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<(), A::Error> {
    while map.next_key::<Skip>()?.is_some() {
        map.next_value::<Skip>()?;
    }
    Ok(())
}

/// Walks `path` down nested objects; at its end reads a `T`.
struct Pointer<'p, T> {
    path: &'p [&'p str],
    leaf: PhantomData<T>,
}

impl<'de, T: Deserialize<'de>> DeserializeSeed<'de> for Pointer<'_, T> {
    type Value = Option<T>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Option<T>, D::Error> {
        if self.path.is_empty() {
            return T::deserialize(deserializer).map(Some);
        }
        deserializer.deserialize_any(self)
    }
}

impl<'de, T: Deserialize<'de>> Visitor<'de> for Pointer<'_, T> {
    type Value = Option<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<T>, A::Error> {
        let (key, rest) = match self.path.split_first() {
            Some(split) => split,
            None => return drain_map(map).map(|()| None),
        };
        let mut found = None;
        while let Some(matches) = map.next_key_seed(KeyIs(key))? {
            if matches {
                // A key given twice counts with its last value.
                found = map.next_value_seed(Pointer {
                    path: rest,
                    leaf: PhantomData::<T>,
                })?;
            } else {
                map.next_value::<Skip>()?;
            }
        }
        Ok(found)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Option<T>, A::Error> {
        drain_seq(seq).map(|()| None)
    }

    fn visit_borrowed_str<E>(self, _: &'de str) -> Result<Option<T>, E> {
        Ok(None)
    }

    fn visit_str<E>(self, _: &str) -> Result<Option<T>, E> {
        Ok(None)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Option<T>, E> {
        Ok(None)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Option<T>, E> {
        Ok(None)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Option<T>, E> {
        Ok(None)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Option<T>, E> {
        Ok(None)
    }

    fn visit_unit<E>(self) -> Result<Option<T>, E> {
        Ok(None)
    }
}

/// Reads an object key: whether it is the one wanted (nothing allocated).
struct KeyIs<'k>(&'k str);

impl<'de> DeserializeSeed<'de> for KeyIs<'_> {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<bool, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeyIs<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E>(self, v: &str) -> Result<bool, E> {
        Ok(v == self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    const CONTENT: &[&str] = &["response", "data", "content"];

    /// What the `Value` route gives: `Err` for a malformed document.
    fn by_value(text: &str) -> Result<Option<String>, ()> {
        let value: Value = serde_json::from_str(text).map_err(|_| ())?;
        Ok(value
            .pointer("/response/data/content")
            .and_then(Value::as_str)
            .map(str::to_owned))
    }

    fn by_pick(text: &str) -> Result<Option<String>, ()> {
        match pick::<MaybeStr>(text, CONTENT) {
            Ok(found) => Ok(found.and_then(|s| s.0).map(Cow::into_owned)),
            Err(_) => Err(()),
        }
    }

    #[test]
    fn picks_what_a_value_pointer_picks() {
        for text in [
            r#"{"status": "streaming", "response": {"data": {"content": "Hi"}}}"#,
            r#"{"response": {"data": {"content": "esc\"aped\u00e9 \ud83d\ude00"}}}"#,
            r#"{"response": {"data": {"content": 5}}}"#,
            r#"{"response": {"data": {"content": null, "x": [1, {"a": 2}]}}}"#,
            r#"{"response": {"data": ["content"]}}"#,
            r#"{"response": {"data": {"content": "a"}}, "response": 7}"#,
            r#"{"response": 7, "response": {"data": {"content": "last"}}}"#,
            r#"{"response": {"data": {"content": "a", "content": "b"}}}"#,
            r#"{"other": {"response": {"data": {"content": "no"}}}}"#,
            r#"["response", {"data": {"content": "no"}}]"#,
            r#""response""#,
            "12",
            "true",
            "null",
            r#"{"response": {"data": {"content": "x"}}, "n": 1e400}"#,
            r#"{"response": {"data": {"content": "x"}}, "n": -1.5e-7}"#,
            r#"{"response": {"data": {"content": "x"}}, "n": 123456789012345678901234567890}"#,
            r#"{"response": {"data": {"content": "x"}}} trailing"#,
            r#"{"response": {"data": {"content": "x"}}"#,
            r#"{"response": {"data": {"content": "\ud800"}}}"#,
            r#"{"response": {"data": {"content": "bad \q escape"}}}"#,
            "ping",
            "{",
            "",
            "  {\"response\":{\"data\":{\"content\":\"\"}}}  ",
        ] {
            assert_eq!(by_pick(text), by_value(text), "{text}");
        }
    }

    #[test]
    fn nesting_limits_are_those_of_a_value() {
        for depth in [100, 127, 128, 129, 200] {
            let text = format!(
                "{{\"response\": {{\"data\": {{\"content\": \"x\"}}}}, \"deep\": {}{}}}",
                "[".repeat(depth),
                "]".repeat(depth)
            );
            assert_eq!(by_pick(&text), by_value(&text), "depth {depth}");
        }
    }

    #[test]
    fn strings_without_escapes_are_borrowed() {
        let found = pick::<MaybeStr>(r#"{"response": {"data": {"content": "Hi"}}}"#, CONTENT);
        assert!(matches!(
            found,
            Ok(Some(MaybeStr(Some(Cow::Borrowed("Hi")))))
        ));
    }

    #[test]
    fn a_leaf_may_be_any_type() {
        let id = pick::<Value>(r#"{"a": 1, "stream_id": 42}"#, &["stream_id"]).unwrap();
        assert_eq!(id, Some(Value::from(42)));
        let none = pick::<Value>(r#"[{"stream_id": 42}]"#, &["stream_id"]).unwrap();
        assert_eq!(none, None);
    }
}
