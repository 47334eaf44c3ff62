//! `forge schema`: the suite format as a JSON Schema (draft 7), for
//! editors (`# yaml-language-server: $schema=...` in a suite file gives
//! completion and checking in VS Code, Neovim, JetBrains...).
//!
//! It is derived from the types the loader reads suites with ([`SuiteFile`]
//! and what it holds: checks, judges, built-in runners' configurations), so
//! the two cannot drift; each type's doc comment is its description. The
//! `runner:` mapping is checked key by key for the built-in runner types;
//! any other `type` is a `#[forge_runner]`, whose keys only its binary
//! knows.

use schemars::generate::SchemaSettings;
use schemars::{json_schema, Schema, SchemaGenerator};
use serde_json::{json, Map, Value};

use super::model::SuiteFile;

/// The JSON Schema of a suite file.
pub fn suite_schema() -> Value {
    SchemaSettings::draft07()
        .into_generator()
        .into_root_schema_for::<SuiteFile>()
        .to_value()
}

/// The schema of `runner:`: a `type`, and for each built-in type the keys
/// of its configuration (an `if`/`then` per type, which editors report
/// better than a `oneOf`).
pub(super) fn runner(generator: &mut SchemaGenerator) -> Schema {
    runner_with(generator, &Map::new())
}

/// The schema of `runners:`: systems side by side, each a runner mapping
/// with its `name` and, optionally, its own `price`.
pub(super) fn systems(generator: &mut SchemaGenerator) -> Schema {
    let mut extra = Map::new();
    extra.insert(
        "name".to_owned(),
        json!({
            "type": "string",
            "pattern": "^[\\p{L}\\p{N}_-]{1,64}$",
            "description": "The system's name: test names are <suite>::<name>::<session>::<qa_id>, its report <suite>.<name>.json.",
        }),
    );
    extra.insert(
        "price".to_owned(),
        generator.subschema_for::<crate::usage::Price>().to_value(),
    );
    let mut system = runner_with(generator, &extra).to_value();
    if let Some(required) = system.get_mut("required").and_then(Value::as_array_mut) {
        required.push(json!("name"));
    }
    json_schema!({
        "description": "Several systems, side by side: each dataset runs against each.",
        "type": "array",
        "minItems": 1,
        "items": system,
    })
}

/// The runner mapping's schema, taking the `extra` keys besides `type`
/// and the runner's own.
fn runner_with(generator: &mut SchemaGenerator, extra: &Map<String, Value>) -> Schema {
    let builtins = crate::runners::config_schemas(generator);
    let names: Vec<&str> = builtins.iter().map(|(name, _)| *name).collect();
    let cases: Vec<Value> = builtins
        .iter()
        .map(|(name, config)| {
            json!({
                "if": {"properties": {"type": {"const": name}}, "required": ["type"]},
                "then": with_keys(config.clone(), name, extra),
            })
        })
        .collect();
    let mut properties = extra.clone();
    properties.insert(
        "type".to_owned(),
        json!({
            "type": "string",
            "description": "The runner type: a built-in one, or the name of a #[forge_runner] struct (its runners live in the test binary).",
            "examples": names,
        }),
    );
    json_schema!({
        "description": "The system under test: `type` (a built-in runner or a #[forge_runner] struct's name) and its keys.",
        "type": "object",
        "required": ["type"],
        "properties": properties,
        "allOf": cases,
    })
}

/// A runner configuration's schema that also takes its `type` key and
/// the `extra` keys.
fn with_keys(config: Schema, name: &str, extra: &Map<String, Value>) -> Value {
    let mut config = config.to_value();
    if let Some(properties) = config.get_mut("properties").and_then(Value::as_object_mut) {
        properties.insert("type".to_owned(), json!({"const": name}));
        properties.extend(extra.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    fn validator() -> jsonschema::Validator {
        jsonschema::validator_for(&suite_schema()).expect("a valid JSON Schema")
    }

    fn errors(yaml: &str) -> Vec<String> {
        let value: Value = serde_yaml::from_str(yaml).expect("YAML");
        validator()
            .iter_errors(&value)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect()
    }

    const DATASET: &str = "datasets:\n  - session_id: s\n    assistant_id: a\n    conversation:\n      - {qa_id: q, query: hi, expect: {contains: [h, i], similarity: {metric: rouge_l, min: 0.5}}}\n";

    #[test]
    fn every_built_in_runner_type_has_its_keys() {
        let mut generator = SchemaSettings::draft07().into_generator();
        let described: Vec<&str> = crate::runners::config_schemas(&mut generator)
            .iter()
            .map(|(name, _)| *name)
            .collect();
        let registered = crate::registry::names();
        for name in ["alquimia", "command", "echo", "http", "openai", "replay"] {
            assert!(described.contains(&name), "{name} has no schema");
            assert!(registered.contains(&name), "{name} is not registered");
        }
        assert_eq!(described.len(), 6, "{described:?}");
    }

    #[test]
    fn valid_suites_pass() {
        for runner in [
            "runner: {type: echo, template: '{query}'}\n",
            "runner: {type: openai, model: m, api_key: '${KEY}', params: {temperature: 0}, retry_on: [429]}\n",
            "runner: {type: command, program: sh, args: [-c, cat], timeout: 30s, env: {A: b}}\n",
            "runner: {type: my_own_runner, anything: [1, 2]}\n",
            "runners:\n  - {name: a, type: echo}\n  - {name: système_2, type: echo}\n  - {name: b-2, type: openai, model: m, price: {input_per_mtok: 1, output_per_mtok: 2}}\n",
        ] {
            let suite = format!("name: x\n{runner}timeout: 250ms\nrate_limit: 20/s\n{DATASET}");
            assert_eq!(errors(&suite), Vec::<String>::new(), "{suite}");
        }
    }

    #[test]
    fn mistakes_are_caught_where_they_are() {
        let cases = [
            ("runner: {type: echo, templat: x}\n", "/runner"),
            ("runner: {type: openai}\n", "/runner"),
            ("runner: {template: x}\n", "/runner"),
            ("runner: {type: echo}\ntimeout: soon\n", "/timeout"),
            ("runner: {type: echo}\nconcurency: 2\n", ""),
            ("runner: {type: echo}\nexpect: {contain: x}\n", "/expect"),
            ("runner: {type: echo}\nexpect: {similarity: {metric: bleu, min: 1}}\n", "/expect"),
            ("runner: {type: echo}\ndatasets:\n  - {session_id: s, assistant_id: a, conversation: [{qa_id: q}]}\n", "/datasets/0/conversation/0"),
            ("runner: {type: echo}\njudge: {modle: m}\n", "/judge"),
            ("runners:\n  - {type: echo}\n", "/runners/0"),
            ("runners:\n  - {name: a, type: echo, templat: x}\n", "/runners/0"),
            ("runners:\n  - {name: 'a b', type: echo}\n", "/runners/0/name"),
            ("name: x\n", ""),
            ("runner: {type: echo}\nrunners:\n  - {name: a, type: echo}\n", ""),
        ];
        for (suite, at) in cases {
            let found = errors(suite);
            assert!(
                found.iter().any(|e| e.ends_with(&format!(" at {at}"))),
                "{suite}: {found:?}"
            );
        }
    }

    #[test]
    fn the_patterns_read_what_the_parsers_read() {
        let schema = suite_schema();
        let pattern = |name: &str| {
            let text = schema["definitions"][name]["anyOf"][0]["pattern"]
                .as_str()
                .expect("a pattern")
                .to_owned();
            regex::Regex::new(&text).expect("a regex")
        };
        let (duration, rate) = (pattern("Duration"), pattern("Rate"));
        for text in [
            "30s", "250ms", " 1.5 s", "2m", "1h", "10", ".5s", "3min", "4secs", "soon", "5d",
            "1.2.3s", "-1s", "",
        ] {
            let parsed = crate::duration::parse_duration(text).is_ok();
            assert_eq!(duration.is_match(text), parsed, "duration {text:?}");
        }
        for text in [
            "20/s",
            "600/min",
            "1000/h",
            "0.5",
            "3 / minute",
            "2/sec",
            "20/d",
            "x/s",
            "/s",
            "1/2/s",
        ] {
            let parsed = super::super::model::parse_rate(text).is_ok();
            assert_eq!(rate.is_match(text), parsed, "rate {text:?}");
        }
    }
}
