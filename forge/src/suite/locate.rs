//! Positions in a suite's YAML text: of a node at a path (`runner.headers.X`,
//! `datasets.0.conversation.2.qa_id`), for the errors found after serde
//! read the file (a runner's configuration, a duplicate `qa_id`), and the
//! plain cause of a YAML syntax error (a tab, a line indented wrong).
//!
//! A node is found by walking the document with serde_yaml itself: the
//! walk stops at the node with an error, which serde_yaml marks with the
//! node's line and column. Nothing else parses YAML, so a position always
//! agrees with what the loader read.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// The error that stops the walk at the node sought.
const FOUND: &str = "forge: the node sought";

/// Which position of the node at the end of a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Part {
    /// The key of the last segment (a mapping's entry), where an unknown
    /// or misplaced key is written.
    Key,
    /// Its value.
    Value,
}

/// The 1-based line and column of the node at `path` in the YAML `text`:
/// each segment a mapping key, or a sequence index in decimal. `None` when
/// there is no such node (or the text does not parse).
pub(crate) fn position(text: &str, path: &[String], part: Part) -> Option<(usize, usize)> {
    let deserializer = serde_yaml::Deserializer::from_str(text);
    let error = match (Seek { path, part }).deserialize(deserializer) {
        Ok(()) => return None,
        Err(error) => error,
    };
    if !error.to_string().contains(FOUND) {
        return None;
    }
    error.location().map(|l| (l.line(), l.column()))
}

/// The position of the node at `path` ([`position`]), else of the key of
/// the closest enclosing node there is (a missing field is reported at its
/// mapping's key).
pub(crate) fn nearest(text: &str, path: &[String], part: Part) -> Option<(usize, usize)> {
    position(text, path, part).or_else(|| {
        (1..path.len())
            .rev()
            .find_map(|len| position(text, &path[..len], Part::Key))
    })
}

/// Walks to the node at `path`.
struct Seek<'p> {
    path: &'p [String],
    part: Part,
}

impl<'de> DeserializeSeed<'de> for Seek<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl Seek<'_> {
    /// Here, at the end of the path: stop.
    fn here<E: de::Error>(&self) -> Result<(), E> {
        if self.path.is_empty() {
            Err(E::custom(FOUND))
        } else {
            Ok(())
        }
    }
}

macro_rules! scalars {
    ($($method:ident: $ty:ty),*) => {
        $(fn $method<E: de::Error>(self, _: $ty) -> Result<(), E> {
            self.here()
        })*
    };
}

impl<'de> Visitor<'de> for Seek<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML node")
    }

    scalars!(visit_bool: bool, visit_i64: i64, visit_u64: u64, visit_f64: f64, visit_str: &str);

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.here()
    }

    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        self.here()
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.here()?;
        let target: Option<usize> = self.path[0].parse().ok();
        let mut index = 0;
        loop {
            if Some(index) == target {
                // An element has no key: it is found at its value.
                let part = if self.path.len() == 1 {
                    Part::Value
                } else {
                    self.part
                };
                let rest = Seek {
                    path: &self.path[1..],
                    part,
                };
                return seq.next_element_seed(rest).map(|_| ());
            }
            if seq.next_element::<IgnoredAny>()?.is_none() {
                return Ok(());
            }
            index += 1;
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.here()?;
        let last = self.path.len() == 1;
        let stop_at_key = last && self.part == Part::Key;
        while let Some(matched) = map.next_key_seed(Key {
            name: &self.path[0],
            stop: stop_at_key,
        })? {
            if matched {
                let rest = Seek {
                    path: &self.path[1..],
                    part: self.part,
                };
                return map.next_value_seed(rest);
            }
            map.next_value::<IgnoredAny>()?;
        }
        Ok(())
    }
}

/// A mapping key: whether it is `name`; with `stop`, the walk stops at it.
struct Key<'n> {
    name: &'n str,
    stop: bool,
}

impl<'de> DeserializeSeed<'de> for Key<'_> {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<bool, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl Key<'_> {
    fn is<E: de::Error>(&self, key: &str) -> Result<bool, E> {
        match key == self.name {
            true if self.stop => Err(E::custom(FOUND)),
            matched => Ok(matched),
        }
    }
}

impl<'de> Visitor<'de> for Key<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a mapping key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<bool, E> {
        self.is(key)
    }

    fn visit_bool<E: de::Error>(self, key: bool) -> Result<bool, E> {
        self.is(&key.to_string())
    }

    fn visit_i64<E: de::Error>(self, key: i64) -> Result<bool, E> {
        self.is(&key.to_string())
    }

    fn visit_u64<E: de::Error>(self, key: u64) -> Result<bool, E> {
        self.is(&key.to_string())
    }

    fn visit_f64<E: de::Error>(self, key: f64) -> Result<bool, E> {
        self.is(&key.to_string())
    }

    fn visit_unit<E: de::Error>(self) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<bool, A::Error> {
        IgnoredAny.visit_seq(seq).map(|_| false)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<bool, A::Error> {
        IgnoredAny.visit_map(map).map(|_| false)
    }
}

/// The plain cause of a YAML syntax error (libyaml's `message`, reported
/// at `line`, 1-based), when it is one a person makes by hand: a tab in
/// the indentation of that line or the one before ("tabs are not allowed
/// for indentation"), or a line indented wrong ("check the indentation of
/// line N"; for a key missing its `:`, the key's line).
pub(crate) fn syntax_hint(text: &str, message: &str, line: usize) -> Option<String> {
    const TABS: [&str; 2] = [
        "found character that cannot start any token",
        "found a tab character",
    ];
    const INDENTATION: [&str; 4] = [
        "did not find expected key",
        "mapping values are not allowed in this context",
        "did not find expected '-' indicator",
        "could not find expected ':'",
    ];
    if TABS.iter().any(|cause| message.contains(cause)) {
        let lines: Vec<&str> = text.lines().collect();
        let tabbed = [line, line.saturating_sub(1)].into_iter().find(|&n| {
            n >= 1
                && lines.get(n - 1).is_some_and(|content| {
                    let content = content.trim_end_matches('\r');
                    content[..content.len() - content.trim_start().len()].contains('\t')
                })
        });
        if let Some(number) = tabbed {
            return Some(format!(
                "tabs are not allowed for indentation: indent line {number} with spaces"
            ));
        }
    }
    if !INDENTATION.iter().any(|cause| message.contains(cause)) {
        return None;
    }
    // "could not find expected ':' at line 4 column 1, while scanning a
    // simple key at line 3 column 3": the key is on line 3.
    let line = message
        .split_once("while scanning a simple key at line ")
        .and_then(|(_, rest)| rest.split(' ').next()?.parse().ok())
        .unwrap_or(line);
    Some(format!("check the indentation of line {line}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(segments: &[&str]) -> Vec<String> {
        segments.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn finds_keys_and_values_in_block_and_flow_style() {
        let text = "runner:\n  type: http\n  headers: {X-Key: abc, Y: 1}\ndatasets:\n  - conversation:\n      - {qa_id: a}\n      - qa_id: b\n";
        assert_eq!(
            position(text, &path(&["runner", "type"]), Part::Key),
            Some((2, 3))
        );
        assert_eq!(
            position(text, &path(&["runner", "type"]), Part::Value),
            Some((2, 9))
        );
        assert_eq!(
            position(text, &path(&["runner", "headers", "Y"]), Part::Key),
            Some((3, 25))
        );
        assert_eq!(
            position(
                text,
                &path(&["datasets", "0", "conversation", "1", "qa_id"]),
                Part::Value
            ),
            Some((7, 16))
        );
        assert_eq!(
            position(
                text,
                &path(&["datasets", "0", "conversation", "0"]),
                Part::Key
            ),
            Some((6, 9))
        );
        assert_eq!(position(text, &path(&["runner", "nope"]), Part::Key), None);
        assert_eq!(position(text, &path(&["datasets", "3"]), Part::Value), None);
        assert_eq!(position("a: [", &path(&["b"]), Part::Key), None);
    }

    #[test]
    fn tabs_and_indentation_are_named() {
        let text = "runner:\n\ttype: echo\n";
        let hint = syntax_hint(text, "found character that cannot start any token", 2);
        assert_eq!(
            hint.as_deref(),
            Some("tabs are not allowed for indentation: indent line 2 with spaces")
        );
        let hint = syntax_hint("a:\n  b: 1\n c: 2\n", "did not find expected key", 3);
        assert_eq!(hint.as_deref(), Some("check the indentation of line 3"));
        let message = "could not find expected ':' at line 4 column 1, while scanning a simple key at line 3 column 3";
        assert_eq!(
            syntax_hint("", message, 4).as_deref(),
            Some("check the indentation of line 3")
        );
        assert_eq!(syntax_hint("a: 1\n", "invalid type: string", 1), None);
    }
}
