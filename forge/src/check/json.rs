//! `is_json`: the answer is JSON, valid against a JSON Schema when one is given.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;

use super::{Check, Turn, Verdict};

/// Schema errors listed in a failure's detail, at most.
const MAX_ERRORS: usize = 3;

/// `is_json: true`, or `is_json: {schema: {...}}`: a JSON Schema the
/// answer must satisfy.
#[derive(Debug, Clone)]
pub enum IsJson {
    /// Any JSON.
    Any,
    /// JSON valid against this schema (compiled when the suite loads).
    Schema(Arc<jsonschema::Validator>, Value),
}

impl PartialEq for IsJson {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (IsJson::Any, IsJson::Any) => true,
            (IsJson::Schema(_, a), IsJson::Schema(_, b)) => a == b,
            _ => false,
        }
    }
}

/// `true`, or `{schema: {...}}`.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
enum Raw {
    Flag(bool),
    Schema {
        /// The JSON Schema the answer must satisfy.
        schema: Value,
    },
}

super::schema_as!(IsJson => Raw);

impl<'de> Deserialize<'de> for IsJson {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Raw::deserialize(d)? {
            Raw::Flag(true) => Ok(IsJson::Any),
            Raw::Flag(false) => Err(serde::de::Error::custom(
                "`is_json: false` checks nothing: remove it",
            )),
            Raw::Schema { schema } => jsonschema::validator_for(&schema)
                .map(|v| IsJson::Schema(Arc::new(v), schema))
                .map_err(|e| serde::de::Error::custom(format!("invalid JSON Schema: {e}"))),
        }
    }
}

impl Check for IsJson {
    fn name(&self) -> &'static str {
        "is_json"
    }

    fn evaluate(&self, turn: &Turn<'_>) -> Verdict {
        let value = match serde_json::from_str::<Value>(turn.answer) {
            Ok(value) => value,
            Err(e) => return Verdict::new(false, format!("the answer is not JSON: {e}")),
        };
        let IsJson::Schema(validator, _) = self else {
            return Verdict::new(true, String::new());
        };
        let errors: Vec<String> = validator
            .iter_errors(&value)
            .take(MAX_ERRORS)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        Verdict::new(
            errors.is_empty(),
            format!(
                "the answer does not match the schema: {}",
                errors.join("; ")
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::one;
    use super::super::Checks;

    #[test]
    fn any_json() {
        assert!(one("is_json: true", "[1, 2]").passed);
        let r = one("is_json: true", "Paris");
        assert!(!r.passed);
        assert!(
            r.detail.starts_with("the answer is not JSON: "),
            "{}",
            r.detail
        );
    }

    #[test]
    fn json_schema() {
        let e = "is_json: {schema: {type: object, required: [city]}}";
        assert!(one(e, r#"{"city": "Paris"}"#).passed);
        let r = one(e, r#"{"town": "Paris"}"#);
        assert!(!r.passed && r.detail.contains("city"), "{}", r.detail);
        assert!(!one(e, "Paris").passed);
    }

    #[test]
    fn load_time_errors() {
        let err = serde_yaml::from_str::<Checks>("is_json: {schema: {type: 12}}")
            .expect_err("bad schema");
        assert!(err.to_string().contains("invalid JSON Schema"), "{err}");
        let err = serde_yaml::from_str::<Checks>("is_json: false").expect_err("no-op check");
        assert!(err.to_string().contains("checks nothing"), "{err}");
    }
}
