//! Durations as suites write them: `30s`, `250ms`, `1.5s`, `2m`, `1h`, or
//! a number of seconds (`timeout:`, `backoff:`, a runner's `timeout:`).

use serde::Deserialize;

/// The durations [`parse_duration`] reads, for editors (a unit test keeps
/// the two in step).
const DURATION_PATTERN: &str = r"^\s*([0-9]+(\.[0-9]*)?|\.[0-9]+)\s*(ms|s|sec|secs|m|min|h)?\s*$";

/// A duration written as `30s`, `250ms`, `2m`, `1h` or a number of seconds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DurationValue(pub std::time::Duration);

impl schemars::JsonSchema for DurationValue {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }

    /// What [`parse_duration`] and the visitor below accept.
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "`30s`, `250ms`, `2m`, `1h`, or a number of seconds",
            "anyOf": [
                {"type": "string", "pattern": DURATION_PATTERN},
                {"type": "number", "minimum": 0},
            ],
        })
    }
}

impl<'de> Deserialize<'de> for DurationValue {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = DurationValue;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a duration such as 30s, 250ms or 2m")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<DurationValue, E> {
                parse_duration(v).map(DurationValue).map_err(E::custom)
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<DurationValue, E> {
                parse_seconds(v).map(DurationValue).map_err(E::custom)
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<DurationValue, E> {
                Ok(DurationValue(std::time::Duration::from_secs(v)))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<DurationValue, E> {
                parse_seconds(v as f64)
                    .map(DurationValue)
                    .map_err(E::custom)
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

fn parse_seconds(seconds: f64) -> Result<std::time::Duration, String> {
    std::time::Duration::try_from_secs_f64(seconds)
        .map_err(|_| format!("invalid duration {seconds}: expected a positive number of seconds"))
}

/// Parses `30s`, `250ms`, `1.5s`, `2m`, `1h` or a bare number of seconds.
pub(crate) fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().map_err(|_| {
        format!("invalid duration {text:?}: expected a number with a unit such as 30s or 250ms")
    })?;
    let seconds = match unit.trim() {
        "" | "s" | "sec" | "secs" => number,
        "ms" => number / 1000.0,
        "m" | "min" => number * 60.0,
        "h" => number * 3600.0,
        other => {
            return Err(format!(
                "invalid duration {text:?}: unknown unit {other:?} (expected ms, s, m or h)"
            ))
        }
    };
    parse_seconds(seconds)
}
