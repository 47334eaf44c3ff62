"""Golden tables of Fair-Forge 3.0.0's own numbers, for forge's tests.

Computes, with Fair-Forge's own code, the tool-correctness scores of every
batch of its example datasets (suites/data/fair-forge/*.json) and of edge
cases, and its pass@k / pass^k for small n, c, k; the 95% Wilson interval
comes from statsmodels. Writes tool_correctness.json and pass_k.json beside
this file. forge/tests/fair_forge.rs and the unit tests of
forge/src/check/tool.rs and forge/src/check/repeats.rs read them.

Fair-Forge's package imports langchain, scipy, optuna, ... at import time,
so the functions are taken from its source instead: `pass_at_k`,
`pass_pow_k`, `Agentic._evaluate_tool_correctness` (fair_forge/metrics/
agentic.py) and `ToolCorrectnessScore` (fair_forge/schemas/agentic.py) are
extracted with `ast` and executed unchanged, with pydantic for the schema.

How it was run (Python 3.11):

    pip download alquimia-fair-forge==3.0.0 --no-deps -d /tmp/ff
    unzip -q /tmp/ff/alquimia_fair_forge-3.0.0-py3-none-any.whl -d /tmp/ff/src
    python3 -m venv /tmp/ffvenv && /tmp/ffvenv/bin/pip install pydantic statsmodels
    PYTHONHASHSEED=0 /tmp/ffvenv/bin/python forge/tests/golden/fair_forge/generate.py /tmp/ff/src

(Run from the repository root. The output does not depend on the hash seed
for these inputs: every set Fair-Forge iterates over while summing has one
element, or terms whose sum is exact in any order; set reprs in `reasoning`
with several elements are compared order-free by the tests.)
"""

import ast
import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field
from statsmodels.stats.proportion import proportion_confint

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[3]
FIXTURES = ROOT / "suites" / "data" / "fair-forge"


def extract(source: Path, names: list[str], namespace: dict) -> None:
    """Executes the top-level (or class-level) definitions `names` of `source`."""
    tree = ast.parse(source.read_text())
    wanted = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name in names:
            wanted.append(node)
        if isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and item.name in names:
                    wanted.append(item)
    found = {node.name for node in wanted}
    missing = set(names) - found
    if missing:
        sys.exit(f"{source}: not found: {missing}")
    exec(compile(ast.Module(body=wanted, type_ignores=[]), str(source), "exec"), namespace)


def fair_forge(src: Path) -> dict:
    namespace = {"defaultdict": defaultdict, "Any": Any, "BaseModel": BaseModel, "Field": Field}
    extract(src / "fair_forge" / "schemas" / "agentic.py", ["ToolCorrectnessScore"], namespace)
    extract(
        src / "fair_forge" / "metrics" / "agentic.py",
        ["pass_at_k", "pass_pow_k", "_evaluate_tool_correctness"],
        namespace,
    )
    return namespace


DEFAULT_WEIGHTS = {"selection": 0.25, "parameters": 0.25, "sequence": 0.25, "utilization": 0.25}


class Metric:
    """The `self` of Agentic._evaluate_tool_correctness: its two settings."""

    def __init__(self, weights, threshold):
        self.tool_weights = weights
        self.tool_threshold = threshold


def score(ff, agentic, ground_truth, weights=None, threshold=1.0):
    metric = Metric(weights or DEFAULT_WEIGHTS, threshold)
    try:
        result = ff["_evaluate_tool_correctness"](metric, agentic, ground_truth)
    except Exception as error:  # Fair-Forge raises on malformed tool data
        return {"error": type(error).__name__}
    return result.model_dump()


def call(name, params=None, step=None, **extra):
    tool = {"tool_name": name}
    if params is not None:
        tool["parameters"] = params
    if step is not None:
        tool["step"] = step
    tool.update(extra)
    return tool


# Edge cases: (name, agentic, ground_truth_agentic, weights or None).
CASES = [
    ("no_expected_none_used", {"tools_used": [], "final_answer_uses_tools": True}, {"expected_tools": []}, None),
    ("no_expected_some_used", {"tools_used": [call("search", {"q": "x"}, 1)]}, {"expected_tools": []}, None),
    ("missing_keys_everywhere", {}, {"tool_sequence_matters": True}, None),
    ("missing_tool_names", {"tools_used": [{"parameters": {"a": 1}}], "final_answer_uses_tools": True},
     {"expected_tools": [{"parameters": {"a": 1}}]}, None),
    ("int_equals_float", {"tools_used": [call("calc", {"a": 1.0, "b": 2}, 1)], "final_answer_uses_tools": True},
     {"expected_tools": [call("calc", {"a": 1, "b": 2.0}, 1)]}, None),
    ("bool_equals_int", {"tools_used": [call("flag", {"on": 1}, 1)], "final_answer_uses_tools": True},
     {"expected_tools": [call("flag", {"on": True}, 1)]}, None),
    ("null_param_matches_missing", {"tools_used": [call("calc", {"b": 2}, 1)], "final_answer_uses_tools": True},
     {"expected_tools": [call("calc", {"a": None, "b": 2}, 1)]}, None),
    ("nested_dicts_key_order", {"tools_used": [call("db", {"f": {"y": "z", "x": [1, 2.0]}}, 1)],
                                "final_answer_uses_tools": True},
     {"expected_tools": [call("db", {"f": {"x": [1, 2], "y": "z"}}, 1)]}, None),
    ("list_order_matters", {"tools_used": [call("db", {"ids": [2, 1], "n": 3}, 1)], "final_answer_uses_tools": True},
     {"expected_tools": [call("db", {"ids": [1, 2], "n": 3}, 1)]}, None),
    ("float_rounding_differs", {"tools_used": [call("calc", {"x": 0.30000000000000004, "y": 0.5}, 1)],
                                "final_answer_uses_tools": True},
     {"expected_tools": [call("calc", {"x": 0.3, "y": 0.5}, 1)]}, None),
    ("string_is_not_number", {"tools_used": [call("calc", {"x": "1", "y": 2, "z": 3}, 1)],
                              "final_answer_uses_tools": True},
     {"expected_tools": [call("calc", {"x": 1, "y": 2, "z": 3}, 1)]}, None),
    ("big_int_vs_float", {"tools_used": [call("calc", {"x": 9007199254740992.0}, 1)], "final_answer_uses_tools": True},
     {"expected_tools": [call("calc", {"x": 9007199254740993}, 1)]}, None),
    ("repeated_calls_compare_with_first", {
        "tools_used": [call("calc", {"a": 1}, 1), call("calc", {"a": 2}, 2)], "final_answer_uses_tools": True},
     {"expected_tools": [call("calc", {"a": 1}, 1), call("calc", {"a": 2}, 2)], "tool_sequence_matters": True}, None),
    ("steps_swapped", {"tools_used": [call("calc", {"a": 2}, 2), call("calc", {"a": 1}, 1)],
                       "final_answer_uses_tools": True},
     {"expected_tools": [call("calc", {"a": 1}, 1), call("calc", {"a": 2}, 2)]}, None),
    ("fewer_calls_than_expected", {"tools_used": [call("calc", {"a": 1}, 1)], "final_answer_uses_tools": True},
     {"expected_tools": [call("calc", {"a": 1}, 1), call("calc", {"a": 2}, 2), call("calc", {"a": 3}, 3)]}, None),
    ("sequence_null_is_false", {"tools_used": [call("calc", {"a": 1}, 5)], "final_answer_uses_tools": True},
     {"expected_tools": [call("calc", {"a": 1}, 1)], "tool_sequence_matters": None}, None),
    ("sequence_string_is_true", {"tools_used": [call("calc", {"a": 1}, 5)], "final_answer_uses_tools": True},
     {"expected_tools": [call("calc", {"a": 1}, 1)], "tool_sequence_matters": "no"}, None),
    ("step_int_equals_float", {"tools_used": [call("calc", {"a": 1}, 1.0)], "final_answer_uses_tools": True},
     {"expected_tools": [call("calc", {"a": 1}, 1)]}, None),
    ("steps_missing_both", {"tools_used": [call("calc", {"a": 1})], "final_answer_uses_tools": True},
     {"expected_tools": [call("calc", {"a": 1})]}, None),
    ("extra_tool", {"tools_used": [call("calc", {"a": 1}, 1), call("web", {"q": "x"}, 2)],
                    "final_answer_uses_tools": True},
     {"expected_tools": [call("calc", {"a": 1}, 1)]}, None),
    ("missing_tool", {"tools_used": [call("calc", {"a": 1}, 1)], "final_answer_uses_tools": True},
     {"expected_tools": [call("calc", {"a": 1}, 1), call("web", {"q": "x"}, 2)], "tool_sequence_matters": False}, None),
    ("disjoint_tools", {"tools_used": [call("web", {"q": "x"}, 1)], "final_answer_uses_tools": False},
     {"expected_tools": [call("kb", {"q": "x"}, 1)]}, None),
    ("partial_overlap", {"tools_used": [call("b", {"q": 1}, 1), call("c", {}, 2)], "final_answer_uses_tools": True},
     {"expected_tools": [call("a", {}, 1), call("b", {"q": 1}, 2)]}, None),
    ("weights_custom", {"tools_used": [call("calc", {"a": 1, "b": 3}, 2)], "final_answer_uses_tools": False},
     {"expected_tools": [call("calc", {"a": 1, "b": 2}, 1)]},
     {"selection": 0.4, "parameters": 0.3, "sequence": 0.2, "utilization": 0.1}),
    ("utilization_truthy_string", {"tools_used": [call("calc", {"a": 1}, 1)], "final_answer_uses_tools": "yes"},
     {"expected_tools": [call("calc", {"a": 1}, 1)]}, None),
    ("utilization_zero_is_false", {"tools_used": [call("calc", {"a": 1}, 1)], "final_answer_uses_tools": 0},
     {"expected_tools": [call("calc", {"a": 1}, 1)]}, None),
    ("names_true_equals_one", {"tools_used": [call(True, {"a": 1}, 1)], "final_answer_uses_tools": True},
     {"expected_tools": [call(1, {"a": 1}, 1)]}, None),
    ("empty_parameters_vs_missing", {"tools_used": [call("now")], "final_answer_uses_tools": True},
     {"expected_tools": [call("now", {})]}, None),
    ("thirds", {"tools_used": [call("calc", {"a": 1, "b": 0, "c": 0}, 1)], "final_answer_uses_tools": True},
     {"expected_tools": [call("calc", {"a": 1, "b": 2, "c": 3}, 1)]}, None),
    # Fair-Forge raises on these: forge fails the check instead.
    ("error_tool_not_an_object", {"tools_used": ["calc"]}, {"expected_tools": [call("calc", {}, 1)]}, None),
    ("error_unhashable_name", {"tools_used": [call(["calc"], {}, 1)]}, {"expected_tools": [call("calc", {}, 1)]}, None),
    ("error_parameters_null", {"tools_used": [{"tool_name": "calc", "parameters": None}]},
     {"expected_tools": [call("calc", {"a": 1}, 1)]}, None),
    ("error_parameters_list", {"tools_used": [call("calc", [1, 2], 1)]},
     {"expected_tools": [call("calc", {"a": 1}, 1)]}, None),
]


def tool_table(ff) -> dict:
    batches = []
    for name in ["agentic.json", "assistant.json", "bestof.json", "regulatory.json"]:
        for dataset in json.loads((FIXTURES / name).read_text()):
            for batch in dataset["conversation"]:
                agentic = batch.get("agentic") or {}
                ground_truth = batch.get("ground_truth_agentic") or {}
                if not ground_truth:
                    continue  # Fair-Forge scores no tools here; forge refuses the check
                batches.append({
                    "file": name,
                    "session_id": dataset["session_id"],
                    "assistant_id": dataset["assistant_id"],
                    "qa_id": batch["qa_id"],
                    # Whether Agentic._process scores the batch (it skips empty tools_used).
                    "scored_by_agentic": bool(agentic.get("tools_used")),
                    "result": score(ff, agentic, ground_truth),
                })
    cases = []
    for name, agentic, ground_truth, weights in CASES:
        cases.append({
            "name": name,
            "agentic": agentic,
            "ground_truth_agentic": ground_truth,
            "weights": weights,
            "result": score(ff, agentic, ground_truth, weights),
        })
    return {"source": "alquimia-fair-forge 3.0.0, Agentic._evaluate_tool_correctness", "batches": batches,
            "cases": cases}


def pass_k_table(ff) -> dict:
    rows = []
    for n in range(1, 11):
        for c in range(0, n + 1):
            low, high = proportion_confint(c, n, alpha=0.05, method="wilson")
            rows.append({
                "n": n,
                "c": c,
                "pass_at_k": [ff["pass_at_k"](n, c, k) for k in range(1, n + 3)],
                "pass_pow_k": [ff["pass_pow_k"](n, c, k) for k in range(1, n + 3)],
                "wilson_low": float(low),
                "wilson_high": float(high),
            })
    return {"source": "alquimia-fair-forge 3.0.0 pass_at_k / pass_pow_k (k = 1..n+2); "
                      "statsmodels proportion_confint(c, n, alpha=0.05, method='wilson')",
            "rows": rows}


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit("usage: generate.py UNZIPPED_FAIR_FORGE_WHEEL_DIR")
    ff = fair_forge(Path(sys.argv[1]))
    for name, table in [("tool_correctness.json", tool_table(ff)), ("pass_k.json", pass_k_table(ff))]:
        (HERE / name).write_text(json.dumps(table, indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
