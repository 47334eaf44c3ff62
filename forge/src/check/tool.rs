//! `tool_correctness`: Fair-Forge's deterministic tool-correctness score of
//! the batch's final `agentic.tools_used` (and `final_answer_uses_tools`)
//! against `ground_truth_agentic.expected_tools` (and
//! `tool_sequence_matters`), computed exactly as Fair-Forge 3.0.0's
//! `Agentic._evaluate_tool_correctness` (`fair_forge/metrics/agentic.py`):
//!
//! - `tool_selection_correct`: 1 when the sets of tool names agree; else
//!   used/expected when the used names are a subset, expected/used when
//!   the expected ones are, else the Jaccard overlap.
//! - `parameter_accuracy`: the mean, over each expected call of each
//!   expected name, of 1 when its `parameters` equal those of the **first**
//!   used call of that name, else the share of keys (of both) whose values
//!   are equal (a missing key counts as null); 0 for an expected name never
//!   used, and 0 when nothing is expected.
//! - `sequence_correct`: 1 when `tool_sequence_matters` (default true) is
//!   falsy, else the share of expected calls whose `step` equals the `step`
//!   of the used call of the same name at the same position.
//! - `result_utilization`: 1 when `final_answer_uses_tools` is truthy.
//! - `overall_correctness`: the weighted sum (weights 0.25 each by default).
//!
//! Values compare as Python compares what `json.loads` gives: `1 == 1.0 ==
//! true`, objects regardless of key order, lists in order; truthiness is
//! Python's. Fair-Forge's Agentic metric leaves a turn without `tools_used`
//! unscored; forge scores it with the same function (no tools used), so a
//! turn that should have called tools and called none fails. Where
//! Fair-Forge's function raises (a tool call that is not an object, a list
//! as a tool name, `parameters` that are not an object and differ), the
//! check fails saying why.

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::{Check, Turn, Verdict};
use crate::schema::{json_kind, Batch, Object};

/// `tool_correctness`: a minimum overall score, with Fair-Forge's weights.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ToolCorrectness {
    /// The minimum `overall_correctness` (Fair-Forge's `tool_threshold`), in 0..=1.
    pub min: f64,
    /// The weights of the four parts (Fair-Forge's `tool_weights`).
    pub weights: Weights,
}

/// The weights of the four parts of the overall score.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Weights {
    /// Weight of `tool_selection_correct`.
    pub selection: f64,
    /// Weight of `parameter_accuracy`.
    pub parameters: f64,
    /// Weight of `sequence_correct`.
    pub sequence: f64,
    /// Weight of `result_utilization`.
    pub utilization: f64,
}

impl Default for Weights {
    /// Fair-Forge's defaults: 0.25 each.
    fn default() -> Self {
        Weights {
            selection: 0.25,
            parameters: 0.25,
            sequence: 0.25,
            utilization: 0.25,
        }
    }
}

/// `{min, weights}`.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct Full {
    /// The minimum overall score, in 0..=1 (default 1.0).
    #[serde(default = "one")]
    min: f64,
    /// The weights of the four parts (default 0.25 each).
    #[serde(default)]
    weights: Weights,
}

fn one() -> f64 {
    1.0
}

impl schemars::JsonSchema for ToolCorrectness {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ToolCorrectness".into()
    }

    /// A minimum score, or `{min, weights}` (read as [`Full`]).
    fn json_schema(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"anyOf": [{"type": "number"}, g.subschema_for::<Full>()]})
    }
}

impl<'de> Deserialize<'de> for ToolCorrectness {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(d)?;
        let check = match value {
            Value::Number(n) => ToolCorrectness {
                min: n.as_f64().unwrap_or(f64::NAN),
                weights: Weights::default(),
            },
            Value::Object(_) => {
                let full = Full::deserialize(value).map_err(serde::de::Error::custom)?;
                ToolCorrectness {
                    min: full.min,
                    weights: full.weights,
                }
            }
            _ => {
                return Err(serde::de::Error::custom(
                    "tool_correctness takes a minimum score (`tool_correctness: 1.0`) or `{min, weights: {selection, parameters, sequence, utilization}}`",
                ))
            }
        };
        check.checked().map_err(serde::de::Error::custom)
    }
}

impl ToolCorrectness {
    /// The check, when its settings make sense: `min` in 0..=1, weights in
    /// 0..=1 adding up to at most 1 (Fair-Forge's overall score must stay
    /// in 0..=1) and to at least `min` (else no batch could pass).
    fn checked(self) -> Result<Self, String> {
        if !(0.0..=1.0).contains(&self.min) {
            return Err(format!(
                "tool_correctness minimum {} is outside 0..=1",
                self.min
            ));
        }
        let w = self.weights;
        let named = [
            ("selection", w.selection),
            ("parameters", w.parameters),
            ("sequence", w.sequence),
            ("utilization", w.utilization),
        ];
        if let Some((name, weight)) = named.iter().find(|(_, w)| !(0.0..=1.0).contains(w)) {
            return Err(format!(
                "tool_correctness weight `{name}` {weight} is outside 0..=1"
            ));
        }
        // The best overall score, computed as the score is.
        let best = w.selection + w.parameters + w.sequence + w.utilization;
        if best > 1.0 + 1e-9 {
            return Err(format!(
                "tool_correctness weights add up to {best}, more than 1"
            ));
        }
        if best < self.min {
            return Err(format!(
                "tool_correctness weights add up to {best}, less than the minimum {}: no batch could pass",
                self.min
            ));
        }
        Ok(self)
    }
}

impl Check for ToolCorrectness {
    fn name(&self) -> &'static str {
        "tool_correctness"
    }

    fn evaluate(&self, turn: &Turn<'_>) -> Verdict {
        let empty = Object::new();
        let expected = turn.ground_truth_agentic.unwrap_or(&empty);
        let used = turn.agentic.unwrap_or(&empty);
        match score(used, expected, &self.weights) {
            Ok(scores) => {
                let overall = scores.overall_correctness;
                Verdict::new(
                    overall >= self.min,
                    format!(
                        "tool correctness {overall:.3} is below {} ({}): {}",
                        self.min,
                        scores.summary(),
                        scores.reasoning
                    ),
                )
                .with_score(overall)
                .with_scores(scores.fields())
                .with_reason(scores.reasoning)
            }
            Err(problem) => Verdict::new(false, format!("cannot score the tools used: {problem}")),
        }
    }

    fn validate(&self, batch: &Batch) -> Result<(), String> {
        let expected = match &batch.ground_truth_agentic {
            Some(object) if !object.is_empty() => object,
            _ => {
                return Err("`tool_correctness` needs a `ground_truth_agentic` with `expected_tools` to compare with".to_owned())
            }
        };
        if expected.get("expected_tools") == Some(&Value::Null) {
            return Err("ground_truth_agentic.expected_tools is null, not a list".to_owned());
        }
        let tools = calls(expected, "expected_tools", "ground_truth_agentic")?;
        for tool in tools {
            name_of(tool).map_err(|e| format!("ground_truth_agentic.expected_tools: {e}"))?;
            match tool.get("parameters") {
                None | Some(Value::Object(_)) => {}
                Some(other) => {
                    return Err(format!(
                        "ground_truth_agentic.expected_tools: `parameters` is {}, not an object",
                        json_kind(other)
                    ))
                }
            }
        }
        Ok(())
    }
}

/// Fair-Forge's `ToolCorrectnessScore` (without `is_correct`, which is the
/// check's verdict).
#[derive(Debug, Clone, PartialEq)]
pub struct ToolScores {
    /// Whether the right tools were chosen.
    pub tool_selection_correct: f64,
    /// Whether they got the right parameters.
    pub parameter_accuracy: f64,
    /// Whether they ran in the right steps.
    pub sequence_correct: f64,
    /// Whether the answer used their results.
    pub result_utilization: f64,
    /// The weighted sum of the four.
    pub overall_correctness: f64,
    /// Fair-Forge's reasoning text.
    pub reasoning: String,
}

impl ToolScores {
    /// The scores under Fair-Forge's field names, in its order.
    fn fields(&self) -> Object {
        let mut fields = Map::new();
        for (name, value) in self.named() {
            fields.insert(name.to_owned(), Value::from(value));
        }
        fields
    }

    fn named(&self) -> [(&'static str, f64); 5] {
        [
            ("tool_selection_correct", self.tool_selection_correct),
            ("parameter_accuracy", self.parameter_accuracy),
            ("sequence_correct", self.sequence_correct),
            ("result_utilization", self.result_utilization),
            ("overall_correctness", self.overall_correctness),
        ]
    }

    /// `tool_selection_correct 1.000, parameter_accuracy 0.500, ...`.
    fn summary(&self) -> String {
        self.named()[..4]
            .iter()
            .map(|(name, value)| format!("{name} {value:.3}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Fair-Forge's tool-correctness scores of `agentic` against
/// `ground_truth_agentic`, or why they cannot be computed (where Fair-Forge
/// raises).
pub fn score(agentic: &Object, expected: &Object, weights: &Weights) -> Result<ToolScores, String> {
    let used_calls = calls(agentic, "tools_used", "agentic")?;
    let expected_calls = calls(expected, "expected_tools", "ground_truth_agentic")?;
    let used = Calls::new(&used_calls)?;
    let wanted = Calls::new(&expected_calls)?;
    let mut reasoning = Vec::new();

    let tool_selection = selection(&used, &wanted, &mut reasoning);
    let parameter_accuracy = parameters(&used, &wanted)?;
    reasoning.push(if parameter_accuracy == 1.0 {
        "✓ Parameters: correct".to_owned()
    } else if parameter_accuracy > 0.7 {
        format!("⚠ Parameters: mostly correct ({parameter_accuracy:.2})")
    } else {
        format!("✗ Parameters: incorrect ({parameter_accuracy:.2})")
    });
    let sequence_matters = expected.get("tool_sequence_matters").is_none_or(truthy);
    let sequence_correct = if sequence_matters {
        let correct = sequence(&used, &wanted);
        reasoning.push(if correct == 1.0 {
            "✓ Sequence: correct".to_owned()
        } else {
            format!("✗ Sequence: incorrect ({correct:.2})")
        });
        correct
    } else {
        reasoning.push("✓ Sequence: not required".to_owned());
        1.0
    };
    let uses_tools = agentic.get("final_answer_uses_tools").is_some_and(truthy);
    let result_utilization = if uses_tools { 1.0 } else { 0.0 };
    reasoning.push(
        if uses_tools {
            "✓ Utilization: tools used in answer"
        } else {
            "✗ Utilization: tools not used in answer"
        }
        .to_owned(),
    );
    let overall_correctness = weights.selection * tool_selection
        + weights.parameters * parameter_accuracy
        + weights.sequence * sequence_correct
        + weights.utilization * result_utilization;
    Ok(ToolScores {
        tool_selection_correct: tool_selection,
        parameter_accuracy,
        sequence_correct,
        result_utilization,
        overall_correctness,
        reasoning: reasoning.join("; "),
    })
}

/// The tool calls under `key` of `object` (`owner` names it in errors):
/// none when the key is missing (or null: forge's reading of "no tools").
fn calls<'a>(object: &'a Object, key: &str, owner: &str) -> Result<Vec<&'a Object>, String> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| {
                item.as_object().ok_or_else(|| {
                    format!(
                        "{owner}.{key} holds {}, not a tool call object",
                        json_kind(item)
                    )
                })
            })
            .collect(),
        Some(other) => Err(format!("{owner}.{key} is {}, not a list", json_kind(other))),
    }
}

/// Tool calls grouped by name: the names in order of first appearance (a
/// Python set, each with the value first seen, for its repr) and each
/// name's calls in order.
struct Calls<'a> {
    names: Vec<(Name, &'a Value)>,
    by_name: HashMap<Name, Vec<&'a Object>>,
}

impl<'a> Calls<'a> {
    fn new(calls: &[&'a Object]) -> Result<Self, String> {
        static NULL: Value = Value::Null;
        let mut names = Vec::new();
        let mut by_name: HashMap<Name, Vec<&'a Object>> = HashMap::new();
        for &call in calls {
            let name = name_of(call)?;
            let group = by_name.entry(name.clone()).or_default();
            if group.is_empty() {
                names.push((name, call.get("tool_name").unwrap_or(&NULL)));
            }
            group.push(call);
        }
        Ok(Calls { names, by_name })
    }

    fn has(&self, name: &Name) -> bool {
        self.by_name.contains_key(name)
    }

    fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether every name of `self` is one of `other`'s.
    fn within(&self, other: &Calls<'_>) -> bool {
        self.names.iter().all(|(name, _)| other.has(name))
    }

    /// The Python repr of the set of `self`'s names missing from `other`.
    fn repr_minus(&self, other: &Calls<'_>) -> String {
        set_repr(self.names.iter().filter(|(name, _)| !other.has(name)))
    }

    fn repr(&self) -> String {
        set_repr(self.names.iter())
    }
}

/// Fair-Forge's `tool_selection` and its reasoning line.
fn selection(used: &Calls<'_>, wanted: &Calls<'_>, reasoning: &mut Vec<String>) -> f64 {
    let (used_in, wanted_in) = (used.within(wanted), wanted.within(used));
    if used_in && wanted_in {
        reasoning.push("✓ Tool selection: correct".to_owned());
        1.0
    } else if used_in {
        reasoning.push(format!(
            "⚠ Tool selection: missing {}",
            wanted.repr_minus(used)
        ));
        used.len() as f64 / wanted.len() as f64
    } else if wanted_in {
        reasoning.push(format!(
            "⚠ Tool selection: extra tools {}",
            used.repr_minus(wanted)
        ));
        wanted.len() as f64 / used.len() as f64
    } else {
        reasoning.push(format!(
            "✗ Tool selection: used {}, expected {}",
            used.repr(),
            wanted.repr()
        ));
        let overlap = used.names.iter().filter(|(n, _)| wanted.has(n)).count();
        let total = used.len() + wanted.len() - overlap;
        if total > 0 {
            overlap as f64 / total as f64
        } else {
            0.0
        }
    }
}

/// Fair-Forge's `parameter_accuracy`: each expected call against the first
/// used call of its name.
fn parameters(used: &Calls<'_>, wanted: &Calls<'_>) -> Result<f64, String> {
    let no_parameters = Value::Object(Map::new());
    let mut matches = Vec::new();
    for (name, _) in &wanted.names {
        let Some(used_list) = used.by_name.get(name) else {
            matches.push(0.0);
            continue;
        };
        let used_params = used_list[0].get("parameters").unwrap_or(&no_parameters);
        for expected_call in &wanted.by_name[name] {
            let expected_params = expected_call.get("parameters").unwrap_or(&no_parameters);
            if py_eq(expected_params, used_params) {
                matches.push(1.0);
                continue;
            }
            let (Value::Object(e), Value::Object(u)) = (expected_params, used_params) else {
                return Err(format!(
                    "the `parameters` of a `{}` call are {}, not an object",
                    repr(
                        wanted
                            .names
                            .iter()
                            .find(|(n, _)| n == name)
                            .map_or(&Value::Null, |(_, v)| v)
                    ),
                    json_kind(if expected_params.is_object() {
                        used_params
                    } else {
                        expected_params
                    })
                ));
            };
            let keys: Vec<&String> = e
                .keys()
                .chain(u.keys().filter(|k| !e.contains_key(*k)))
                .collect();
            let matching = keys
                .iter()
                .filter(|k| {
                    py_eq(
                        e.get(**k).unwrap_or(&Value::Null),
                        u.get(**k).unwrap_or(&Value::Null),
                    )
                })
                .count();
            matches.push(if keys.is_empty() {
                0.0
            } else {
                matching as f64 / keys.len() as f64
            });
        }
    }
    Ok(mean(&matches))
}

/// Fair-Forge's `sequence_correct`: each expected call's `step` against the
/// used call of its name at the same position.
fn sequence(used: &Calls<'_>, wanted: &Calls<'_>) -> f64 {
    let mut matches = Vec::new();
    for (name, _) in &wanted.names {
        let Some(used_list) = used.by_name.get(name) else {
            matches.push(0.0);
            continue;
        };
        for (i, expected_call) in wanted.by_name[name].iter().enumerate() {
            let expected_step = expected_call.get("step").unwrap_or(&Value::Null);
            let used_step = used_list
                .get(i)
                .and_then(|call| call.get("step"))
                .unwrap_or(&Value::Null);
            matches.push(if py_eq(expected_step, used_step) {
                1.0
            } else {
                0.0
            });
        }
    }
    mean(&matches)
}

/// `sum(values) / len(values) if values else 0.0`, summed left to right as
/// Python 3.11's `sum` does.
fn mean(values: &[f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.iter().fold(0.0, |sum, v| sum + v) / values.len() as f64
}

/// A tool name as a Python set holds it: values equal in Python are one
/// name (`1`, `1.0` and `true` alike).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Name {
    None,
    Int(i128),
    Float(u64),
    Str(String),
}

/// The `tool_name` of a call (missing or null: Python's `None`).
fn name_of(call: &Object) -> Result<Name, String> {
    Ok(match call.get("tool_name") {
        None | Some(Value::Null) => Name::None,
        Some(Value::String(s)) => Name::Str(s.clone()),
        Some(Value::Bool(b)) => Name::Int(i128::from(*b)),
        Some(Value::Number(n)) => match PyNum::of(n) {
            PyNum::Int(i) => Name::Int(i),
            PyNum::Float(f) => match integral(f) {
                Some(i) => Name::Int(i),
                None => Name::Float(f.to_bits()),
            },
        },
        Some(other) => return Err(format!("a `tool_name` is {}, not a name", json_kind(other))),
    })
}

/// A JSON number as Python reads it: an int or a float.
#[derive(Debug, Clone, Copy)]
enum PyNum {
    Int(i128),
    Float(f64),
}

impl PyNum {
    fn of(n: &serde_json::Number) -> PyNum {
        if let Some(i) = n.as_i64() {
            PyNum::Int(i128::from(i))
        } else if let Some(u) = n.as_u64() {
            PyNum::Int(i128::from(u))
        } else {
            PyNum::Float(n.as_f64().unwrap_or(f64::NAN))
        }
    }

    fn of_value(value: &Value) -> Option<PyNum> {
        match value {
            Value::Bool(b) => Some(PyNum::Int(i128::from(*b))),
            Value::Number(n) => Some(PyNum::of(n)),
            _ => None,
        }
    }

    /// Python's `==` between numbers: exact, also between an int and a float.
    fn eq(self, other: PyNum) -> bool {
        match (self, other) {
            (PyNum::Int(a), PyNum::Int(b)) => a == b,
            (PyNum::Float(a), PyNum::Float(b)) => a == b,
            (PyNum::Int(i), PyNum::Float(f)) | (PyNum::Float(f), PyNum::Int(i)) => {
                integral(f) == Some(i)
            }
        }
    }
}

/// The integer a float equals exactly, if it is one (within i128).
fn integral(f: f64) -> Option<i128> {
    // 2^126: every integral float below it converts to i128 exactly.
    const LIMIT: f64 = 8.507_059_173_023_462e37;
    (f.is_finite() && f.fract() == 0.0 && f.abs() < LIMIT).then_some(f as i128)
}

/// Python's `==` between the values `json.loads` gives for `a` and `b`.
fn py_eq(a: &Value, b: &Value) -> bool {
    if let (Some(x), Some(y)) = (PyNum::of_value(a), PyNum::of_value(b)) {
        return x.eq(y);
    }
    match (a, b) {
        (Value::Null, Value::Null) => true,
        (Value::String(x), Value::String(y)) => x == y,
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| py_eq(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| py_eq(v, w)))
        }
        _ => false,
    }
}

/// Python's truthiness of the value `json.loads` gives.
fn truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => !PyNum::of(n).eq(PyNum::Int(0)),
        Value::String(s) => !s.is_empty(),
        Value::Array(items) => !items.is_empty(),
        Value::Object(map) => !map.is_empty(),
    }
}

/// The repr of a Python set of names: `{'a', 'b'}`, or `set()`.
fn set_repr<'a>(names: impl Iterator<Item = &'a (Name, &'a Value)>) -> String {
    let items: Vec<String> = names.map(|(_, value)| repr(value)).collect();
    if items.is_empty() {
        "set()".to_owned()
    } else {
        format!("{{{}}}", items.join(", "))
    }
}

/// Python's `repr` of a scalar `json.loads` gives (a tool name).
fn repr(value: &Value) -> String {
    match value {
        Value::Null => "None".to_owned(),
        Value::Bool(true) => "True".to_owned(),
        Value::Bool(false) => "False".to_owned(),
        Value::Number(n) => match PyNum::of(n) {
            PyNum::Int(i) => i.to_string(),
            PyNum::Float(f) => float_repr(f),
        },
        Value::String(s) => str_repr(s),
        other => other.to_string(),
    }
}

/// Python's `repr` of a float: the shortest round-trip digits, in
/// positional notation from 1e-4 up to 1e16, else `1e+16` style.
fn float_repr(f: f64) -> String {
    let sci = format!("{f:e}");
    let (mantissa, exponent) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    if (-4..16).contains(&exponent) {
        let text = format!("{f}");
        if text.contains('.') {
            text
        } else {
            format!("{text}.0")
        }
    } else {
        let sign = if exponent < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exponent.abs())
    }
}

/// Python's `repr` of a string: single quotes unless it holds one and no
/// double quote; backslashes, the quote and control characters escaped.
fn str_repr(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || (0x7f..0xa0).contains(&(c as u32)) => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

#[cfg(test)]
mod tests {
    use super::super::testing::parse;
    use super::super::Checks;
    use super::*;

    /// Fair-Forge's own numbers (`forge/tests/golden/fair_forge/`).
    const GOLDEN: &str = include_str!("../../tests/golden/fair_forge/tool_correctness.json");

    fn weights_of(value: &Value) -> Weights {
        match value {
            Value::Null => Weights::default(),
            other => serde_json::from_value(other.clone()).expect("weights"),
        }
    }

    /// Sorts the elements inside each `{...}`: Python's set reprs list them
    /// in hash order.
    fn order_free(text: &str) -> String {
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find('{') {
            let Some(len) = rest[start..].find('}') else {
                break;
            };
            let mut items: Vec<&str> = rest[start + 1..start + len].split(", ").collect();
            items.sort_unstable();
            out.push_str(&rest[..=start]);
            out.push_str(&items.join(", "));
            out.push('}');
            rest = &rest[start + len + 1..];
        }
        out.push_str(rest);
        out
    }

    #[test]
    fn every_edge_case_scores_as_fair_forge_does() {
        let golden: Value = serde_json::from_str(GOLDEN).expect("golden JSON");
        let cases = golden["cases"].as_array().expect("cases");
        assert!(cases.len() >= 30);
        for case in cases {
            let name = &case["name"];
            let agentic = case["agentic"].as_object().expect("agentic");
            let expected = case["ground_truth_agentic"].as_object().expect("gt");
            let result = &case["result"];
            let ours = score(agentic, expected, &weights_of(&case["weights"]));
            if result.get("error").is_some() {
                assert!(
                    ours.is_err(),
                    "{name}: Fair-Forge raises, forge gave {ours:?}"
                );
                continue;
            }
            let ours = ours.unwrap_or_else(|e| panic!("{name}: {e}"));
            for (field, value) in ours.named() {
                // Exact: the same IEEE operations in the same order.
                assert_eq!(Some(value), result[field].as_f64(), "{name}: {field}");
            }
            let reasoning = result["reasoning"].as_str().expect("reasoning");
            assert_eq!(order_free(&ours.reasoning), order_free(reasoning), "{name}");
        }
    }

    fn turn_result(yaml: &str, agentic: Value, expected: Value) -> crate::check::CheckResult {
        let mut batch = Batch::new("q", "query");
        batch.agentic = agentic.as_object().cloned();
        batch.ground_truth_agentic = expected.as_object().cloned();
        let checks = parse(yaml);
        checks.validate(&batch, 1).expect("valid");
        let mut results = checks.evaluate(&Turn::new(&batch, 0.0));
        results.remove(0)
    }

    #[test]
    fn the_result_carries_score_scores_and_reason() {
        let call =
            serde_json::json!({"tool_name": "calc", "parameters": {"a": 1, "b": 2}, "step": 1});
        let wrong =
            serde_json::json!({"tool_name": "calc", "parameters": {"a": 1, "b": 3}, "step": 1});
        let expected = serde_json::json!({"expected_tools": [call]});
        let right = turn_result(
            "tool_correctness: 1.0",
            serde_json::json!({"tools_used": [call], "final_answer_uses_tools": true}),
            expected.clone(),
        );
        assert!(right.passed && right.detail.is_empty(), "{right:?}");
        let json = serde_json::to_value(&right).expect("serialise");
        assert_eq!(json["score"], 1.0);
        assert_eq!(
            json["scores"],
            serde_json::json!({"tool_selection_correct": 1.0, "parameter_accuracy": 1.0,
                "sequence_correct": 1.0, "result_utilization": 1.0, "overall_correctness": 1.0})
        );
        assert!(json["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("✓ Tool selection")));

        let failed = turn_result(
            "tool_correctness: {min: 0.9}",
            serde_json::json!({"tools_used": [wrong], "final_answer_uses_tools": true}),
            expected,
        );
        assert!(!failed.passed);
        assert_eq!(failed.score, Some(0.875));
        assert_eq!(
            failed.detail,
            "tool correctness 0.875 is below 0.9 (tool_selection_correct 1.000, parameter_accuracy 0.500, \
             sequence_correct 1.000, result_utilization 1.000): ✓ Tool selection: correct; \
             ✗ Parameters: incorrect (0.50); ✓ Sequence: correct; ✓ Utilization: tools used in answer"
        );
    }

    #[test]
    fn malformed_tool_use_fails_the_check_saying_why() {
        let expected = serde_json::json!({"expected_tools": [{"tool_name": "calc"}]});
        for (agentic, why) in [
            (
                serde_json::json!({"tools_used": "calc"}),
                "agentic.tools_used is a string, not a list",
            ),
            (
                serde_json::json!({"tools_used": [1]}),
                "agentic.tools_used holds a number, not a tool call object",
            ),
            (
                serde_json::json!({"tools_used": [{"tool_name": {}}]}),
                "a `tool_name` is an object, not a name",
            ),
            (
                serde_json::json!({"tools_used": [{"tool_name": "calc", "parameters": [1]}]}),
                "the `parameters` of a `'calc'` call are a list, not an object",
            ),
        ] {
            let result = turn_result("tool_correctness: 1.0", agentic, expected.clone());
            assert!(!result.passed);
            assert_eq!(result.detail, format!("cannot score the tools used: {why}"));
        }
        // Null tools: no tools used (forge's reading), scored.
        let result = turn_result(
            "tool_correctness: 0.1",
            serde_json::json!({"tools_used": null}),
            expected,
        );
        assert_eq!(result.score, Some(0.0));
    }

    #[test]
    fn settings_are_checked_when_read() {
        for (yaml, message) in [
            ("tool_correctness: 1.5", "minimum 1.5 is outside 0..=1"),
            ("tool_correctness: {min: -0.1}", "minimum -0.1 is outside 0..=1"),
            ("tool_correctness: yes", "takes a minimum score"),
            ("tool_correctness: {minimum: 1}", "unknown field `minimum`"),
            (
                "tool_correctness: {weights: {selection: 0.5, parameters: 0.5}}",
                "missing field `sequence`",
            ),
            (
                "tool_correctness: {weights: {selection: 0.5, parameters: 0.5, sequence: 0.5, utilization: 0.5}}",
                "weights add up to 2, more than 1",
            ),
            (
                "tool_correctness: {weights: {selection: -1, parameters: 1, sequence: 0.5, utilization: 0.5}}",
                "weight `selection` -1 is outside 0..=1",
            ),
            (
                "tool_correctness: {min: 0.9, weights: {selection: 0.5, parameters: 0.2, sequence: 0, utilization: 0}}",
                "add up to 0.7, less than the minimum 0.9",
            ),
            (
                "tool_correctness: {weights: {selection: 1, parameters: 0, sequence: 0, utilization: 0, speed: 0}}",
                "unknown field `speed`",
            ),
        ] {
            let err = serde_yaml::from_str::<Checks>(yaml).expect_err(yaml);
            assert!(err.to_string().contains(message), "{yaml}: {err}");
        }
        let check: Checks = parse(
            "tool_correctness: {min: 0.5, weights: {selection: 0.4, parameters: 0.3, sequence: 0.2, utilization: 0.1}}",
        );
        assert_eq!(check.iter().count(), 1);
    }

    #[test]
    fn a_batch_without_expected_tools_is_refused_at_load() {
        let checks = parse("tool_correctness: 1.0");
        let mut batch = Batch::new("q", "query");
        let err = checks.validate(&batch, 1).expect_err("no ground truth");
        assert!(err.contains("needs a `ground_truth_agentic`"), "{err}");
        batch.ground_truth_agentic = None;
        assert!(checks.validate(&batch, 1).is_err());
        for (expected, message) in [
            (
                serde_json::json!({"expected_tools": {"calc": 1}}),
                "is an object, not a list",
            ),
            (
                serde_json::json!({"expected_tools": null}),
                "is null, not a list",
            ),
            (
                serde_json::json!({"expected_tools": ["calc"]}),
                "holds a string, not a tool call object",
            ),
            (
                serde_json::json!({"expected_tools": [{"tool_name": ["x"]}]}),
                "a `tool_name` is a list",
            ),
            (
                serde_json::json!({"expected_tools": [{"tool_name": "x", "parameters": null}]}),
                "`parameters` is null, not an object",
            ),
        ] {
            batch.ground_truth_agentic = expected.as_object().cloned();
            let err = checks.validate(&batch, 1).expect_err(message);
            assert!(err.contains(message), "{err}");
        }
        batch.ground_truth_agentic = serde_json::json!({"tool_sequence_matters": false})
            .as_object()
            .cloned();
        assert_eq!(checks.validate(&batch, 1), Ok(()));
    }

    #[test]
    fn python_reprs() {
        assert_eq!(str_repr("calc"), "'calc'");
        assert_eq!(str_repr("it's"), "\"it's\"");
        assert_eq!(str_repr("a'\"b\\\n"), "'a\\'\"b\\\\\\n'");
        assert_eq!(float_repr(1.0), "1.0");
        assert_eq!(float_repr(0.0001), "0.0001");
        assert_eq!(float_repr(0.00001), "1e-05");
        assert_eq!(float_repr(1e16), "1e+16");
        assert_eq!(float_repr(1.5e300), "1.5e+300");
        assert_eq!(float_repr(123456789012345.6), "123456789012345.6");
        assert_eq!(repr(&serde_json::json!(null)), "None");
        assert_eq!(repr(&serde_json::json!(true)), "True");
        assert_eq!(repr(&serde_json::json!(-3)), "-3");
    }
}
