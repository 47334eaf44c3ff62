//! Checks on the answer's text: `contains`, `icontains`, `not_contains`,
//! `equals`, `starts_with` and `regex`.

use serde::Deserialize;

use super::{Check, Turn, Verdict};

/// One or several strings.
#[derive(Debug, Clone, PartialEq)]
pub struct Strings(pub Vec<String>);

/// One string, or a list of them.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
enum StringsRaw {
    One(String),
    Many(Vec<String>),
}

super::schema_as!(Strings => StringsRaw);

impl<'de> Deserialize<'de> for Strings {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match StringsRaw::deserialize(d)? {
            StringsRaw::One(s) => Strings(vec![s]),
            StringsRaw::Many(v) => Strings(v),
        })
    }
}

/// A regular expression compiled when the suite loads.
#[derive(Debug, Clone)]
pub struct Pattern(pub regex::Regex);

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

impl schemars::JsonSchema for Pattern {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Pattern".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"type": "string", "format": "regex"})
    }
}

impl<'de> Deserialize<'de> for Pattern {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Pattern;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a regular expression")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Pattern, E> {
                regex::Regex::new(v)
                    .map(Pattern)
                    .map_err(|e| E::custom(format!("invalid regex: {e}")))
            }
        }
        d.deserialize_str(Visitor)
    }
}

/// `contains`: the answer contains every string.
#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(transparent)]
pub struct Contains(pub Strings);

impl Check for Contains {
    fn name(&self) -> &'static str {
        "contains"
    }

    fn evaluate(&self, turn: &Turn<'_>) -> Verdict {
        let missing: Vec<_> = (self.0)
            .0
            .iter()
            .filter(|n| !turn.answer.contains(n.as_str()))
            .collect();
        Verdict::new(missing.is_empty(), listed("does not contain", &missing))
    }
}

/// `icontains`: the answer contains every string, ignoring case.
#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(transparent)]
pub struct IContains(pub Strings);

impl Check for IContains {
    fn name(&self) -> &'static str {
        "icontains"
    }

    fn evaluate(&self, turn: &Turn<'_>) -> Verdict {
        let lower = turn.answer.to_lowercase();
        let missing: Vec<_> = (self.0)
            .0
            .iter()
            .filter(|n| !lower.contains(&n.to_lowercase()))
            .collect();
        Verdict::new(
            missing.is_empty(),
            listed("does not contain (ignoring case)", &missing),
        )
    }
}

/// `not_contains`: the answer contains none of the strings.
#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(transparent)]
pub struct NotContains(pub Strings);

impl Check for NotContains {
    fn name(&self) -> &'static str {
        "not_contains"
    }

    fn evaluate(&self, turn: &Turn<'_>) -> Verdict {
        let found: Vec<_> = (self.0)
            .0
            .iter()
            .filter(|n| turn.answer.contains(n.as_str()))
            .collect();
        Verdict::new(found.is_empty(), listed("contains", &found))
    }
}

/// `equals`: the answer is exactly the string.
#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(transparent)]
pub struct Equals(pub String);

impl Check for Equals {
    fn name(&self) -> &'static str {
        "equals"
    }

    fn evaluate(&self, turn: &Turn<'_>) -> Verdict {
        let passed = turn.answer == self.0;
        Verdict::new(
            passed,
            if passed {
                String::new()
            } else {
                diff(&self.0, turn.answer)
            },
        )
    }
}

/// `starts_with`: the answer starts with the string.
#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(transparent)]
pub struct StartsWith(pub String);

impl Check for StartsWith {
    fn name(&self) -> &'static str {
        "starts_with"
    }

    fn evaluate(&self, turn: &Turn<'_>) -> Verdict {
        let prefix = &self.0;
        Verdict::new(
            turn.answer.starts_with(prefix.as_str()),
            format!("expected the answer to start with {prefix:?}"),
        )
    }
}

/// `regex`: the regular expression matches somewhere in the answer.
#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(transparent)]
pub struct Regex(pub Pattern);

impl Check for Regex {
    fn name(&self) -> &'static str {
        "regex"
    }

    fn evaluate(&self, turn: &Turn<'_>) -> Verdict {
        let Pattern(regex) = &self.0;
        Verdict::new(
            regex.is_match(turn.answer),
            format!("/{}/ does not match the answer", regex.as_str()),
        )
    }
}

/// "the answer `verb` "a", "b"".
fn listed(verb: &str, items: &[&String]) -> String {
    let list: Vec<String> = items.iter().map(|s| format!("{s:?}")).collect();
    format!("the answer {verb} {}", list.join(", "))
}

/// A short diff of two strings: where they start to differ, with context.
fn diff(expected: &str, actual: &str) -> String {
    let at = expected
        .char_indices()
        .zip(actual.chars())
        .find(|((_, a), b)| a != b)
        .map(|((i, _), _)| i)
        .unwrap_or(expected.len().min(actual.len()));
    let window = |s: &str| {
        let start = s[..at.min(s.len())]
            .char_indices()
            .rev()
            .nth(15)
            .map_or(0, |(i, _)| i);
        let snippet: String = s[start..].chars().take(40).collect();
        if start > 0 {
            format!("…{snippet}")
        } else {
            snippet
        }
    };
    format!(
        "expected {expected:?}\n     got {actual:?}\n  differ at byte {at}: expected {:?}, got {:?}",
        window(expected),
        window(actual)
    )
}

#[cfg(test)]
mod tests {
    use super::super::testing::{one, run};

    #[test]
    fn string_checks() {
        let e = "{contains: [Paris, France], not_contains: London, icontains: CAPITAL}";
        assert!(run(e, "Paris is the capital of France", "", 1.0)
            .iter()
            .all(|r| r.passed));
        let results = run(e, "Paris, London", "", 1.0);
        assert_eq!(results[0].detail, "the answer does not contain \"France\"");
        assert!(!results[1].passed && !results[2].passed);
    }

    #[test]
    fn contains_lists_every_missing_string() {
        assert!(one("contains: Paris", "in Paris").passed);
        let r = one("contains: [a, b, c]", "b");
        assert!(!r.passed);
        assert_eq!(r.detail, r#"the answer does not contain "a", "c""#);
    }

    #[test]
    fn icontains_ignores_case() {
        assert!(one("icontains: [PARIS, france]", "paris, FRANCE").passed);
        let r = one("icontains: ROME", "paris");
        assert!(!r.passed);
        assert_eq!(
            r.detail,
            r#"the answer does not contain (ignoring case) "ROME""#
        );
    }

    #[test]
    fn not_contains_names_what_it_found() {
        assert!(one("not_contains: [x, y]", "abc").passed);
        let r = one("not_contains: [x, y, z]", "zax");
        assert!(!r.passed);
        assert_eq!(r.detail, r#"the answer contains "x", "z""#);
    }

    #[test]
    fn equals_shows_a_short_diff() {
        assert!(one("equals: The answer is 42.", "The answer is 42.").passed);
        let r = one("equals: The answer is 42.", "The answer is 41.");
        assert!(!r.passed);
        assert!(r.detail.contains("differ at byte 15"), "{}", r.detail);
        assert!(r
            .detail
            .contains(r#"expected "The answer is 42.", got "The answer is 41.""#));
        // A long answer is cut to the 16 characters before the difference.
        let r = one(
            "equals: the capital of France is Paris",
            "the capital of France is Rome",
        );
        assert!(
            r.detail
                .ends_with(r#"expected "…al of France is Paris", got "…al of France is Rome""#),
            "{}",
            r.detail
        );
    }

    #[test]
    fn starts_with_and_regex() {
        assert!(one("starts_with: Par", "Paris").passed);
        let r = one("starts_with: Par", "In Paris");
        assert_eq!(
            (r.passed, r.detail.as_str()),
            (false, r#"expected the answer to start with "Par""#)
        );
        assert!(one(r"regex: '#\d{5}\b'", "Order #12345 confirmed").passed);
        let r = one(r"regex: '#\d{5}\b'", "Order #123");
        assert_eq!(
            (r.passed, r.detail.as_str()),
            (false, r"/#\d{5}\b/ does not match the answer")
        );
    }

    #[test]
    fn an_invalid_regex_is_a_load_error() {
        let err = serde_yaml::from_str::<super::super::Checks>("regex: '(unclosed'")
            .expect_err("bad regex");
        assert!(err.to_string().contains("invalid regex"), "{err}");
    }
}
