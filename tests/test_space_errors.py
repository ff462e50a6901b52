"""Malformed spaces, values, files and constraint expressions raise one-line, specific errors."""
from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from archscout.errors import ArchscoutError, ConstraintError, SpaceError
from archscout.space import (Cell, Chain, Choice, FloatRange, IntRange, Repeat, SearchSpace, load_space,
                             param_from_spec, space_from_spec)
from archscout.space.constraints import Constraint


def one_line(exc: BaseException) -> str:
    text = str(exc)
    assert text.strip(), "empty error message"
    assert "\n" not in text, f"multi-line message: {text!r}"
    assert "Traceback" not in text
    return text


# ---------------------------------------------------------------------------------------------
# Malformed specs
# ---------------------------------------------------------------------------------------------
INT = {"name": "w", "type": "int", "low": 1, "high": 4}
CHOICE = {"name": "op", "type": "choice", "options": ["conv", "pool"]}
CELL = {"name": "cell", "type": "cell", "nodes": 3, "ops": ["gcn", "gat", "skip"]}


def space(*params: Any) -> dict[str, Any]:
    return {"name": "s", "params": list(params)}


def with_(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in changes.items():
        if v is ...:
            out.pop(k, None)
        else:
            out[k] = v
    return out


BAD_SPECS = {
    # unknown types / keys
    "unknown-type": (space({"name": "a", "type": "matrix"}), "unknown parameter type 'matrix'"),
    "unknown-param-key": (space(with_(INT, stpe=2)), "unknown key 'stpe'"),
    "unknown-space-key": ({"name": "s", "params": [INT], "parms": []}, "unknown key 'parms'"),
    "cell-unknown-key": (space(with_(CELL, op_on_edge=True)), "unknown key 'op_on_edge'"),
    # missing keys
    "missing-type": (space({"name": "a", "options": [1]}), "missing 'type'"),
    "missing-name": (space(with_(INT, name=...)), "missing 'name'"),
    "missing-options": (space(with_(CHOICE, options=...)), "missing 'options'"),
    "missing-low": (space(with_(INT, low=...)), "missing 'low'"),
    "missing-high": (space({"name": "lr", "type": "float", "low": 0.1}), "missing 'high'"),
    "missing-body": (space({"name": "r", "type": "repeat", "min_depth": 1, "max_depth": 2}), "missing 'body'"),
    "missing-depth": (space({"name": "r", "type": "repeat", "body": [INT], "max_depth": 2}), "missing 'min_depth'"),
    "missing-stages": (space({"name": "c", "type": "chain"}), "missing 'stages'"),
    "missing-params": ({"name": "s"}, "missing 'params'"),
    # structure
    "space-not-mapping": ([INT], "must be a mapping"),
    "space-none": (None, "must be a mapping"),
    "param-not-mapping": (space("width"), "expected a mapping"),
    "params-empty": (space(), "non-empty list"),
    "params-not-list": ({"name": "s", "params": {"w": INT}}, "non-empty list"),
    "repeat-body-empty": (space({"name": "r", "type": "repeat", "min_depth": 1, "max_depth": 2, "body": []}), "non-empty list"),
    "chain-no-stages": (space({"name": "c", "type": "chain", "stages": []}), "stages"),
    "chain-empty-stage": (space({"name": "c", "type": "chain", "stages": [[INT], []]}), "non-empty list"),
    # names
    "duplicate-names": (space(INT, with_(CHOICE, name="w")), "'w' is used twice"),
    "duplicate-in-repeat-body": (space({"name": "r", "type": "repeat", "min_depth": 1, "max_depth": 2,
                                        "body": [INT, INT]}), "'w' is used twice"),
    "sub-clashes-with-sibling": (space(INT, with_(CHOICE, sub={"conv": [INT]})), "'w' is used twice"),
    "sub-reuses-choice-name": (space(with_(CHOICE, sub={"conv": [with_(INT, name="op")]})), "reuses the name 'op'"),
    "empty-name": (space(with_(INT, name="")), "parameter name ''"),
    "name-with-space": (space(with_(INT, name="my width")), "parameter name 'my width'"),
    "name-not-string": (space(with_(INT, name=3)), "parameter name 3"),
    # choices
    "empty-options": (space(with_(CHOICE, options=[])), "has no options"),
    "options-not-list": (space(with_(CHOICE, options="conv")), "options must be a list"),
    "duplicate-option": (space(with_(CHOICE, options=["conv", "conv"])), "lists an option twice"),
    "int-float-duplicate-option": (space(with_(CHOICE, options=[1, 1.0])), "lists an option twice"),
    "non-scalar-option": (space(with_(CHOICE, options=[[3, 3], "pool"])), "is not a scalar"),
    "sub-for-unknown-option": (space(with_(CHOICE, sub={"attention": [INT]})), "unknown option 'attention'"),
    "sub-not-mapping": (space(with_(CHOICE, sub=[INT])), "sub must map"),
    "sub-empty-list": (space(with_(CHOICE, sub={"conv": []})), "non-empty list"),
    # int ranges
    "int-low-above-high": (space(with_(INT, low=5, high=1)), "low <= high"),
    "int-step-zero": (space(with_(INT, step=0)), "step > 0"),
    "int-step-negative": (space(with_(INT, step=-2)), "step > 0"),
    "int-float-bound": (space(with_(INT, low=1.5)), "must be integers"),
    "int-bool-bound": (space(with_(INT, high=True)), "must be integers"),
    "int-string-bound": (space(with_(INT, high="8")), "must be integers"),
    # float ranges
    "float-low-equals-high": (space({"name": "lr", "type": "float", "low": 0.1, "high": 0.1}), "low < high"),
    "float-low-above-high": (space({"name": "lr", "type": "float", "low": 1.0, "high": 0.1}), "low < high"),
    "float-infinite": (space({"name": "lr", "type": "float", "low": 0.0, "high": math.inf}), "finite"),
    "float-nan": (space({"name": "lr", "type": "float", "low": math.nan, "high": 1.0}), "finite"),
    "float-not-number": (space({"name": "lr", "type": "float", "low": "small", "high": 1.0}), "must be numbers"),
    "float-log-nonpositive": (space({"name": "lr", "type": "float", "low": 0.0, "high": 1.0, "log": True}), "low > 0"),
    # repeats
    "repeat-min-above-max": (space({"name": "r", "type": "repeat", "min_depth": 3, "max_depth": 1, "body": [INT]}), "min_depth <= max_depth"),
    "repeat-negative": (space({"name": "r", "type": "repeat", "min_depth": -1, "max_depth": 1, "body": [INT]}), "0 <= min_depth"),
    "repeat-float-depth": (space({"name": "r", "type": "repeat", "min_depth": 1, "max_depth": 2.5, "body": [INT]}), "integers"),
    # cells
    "cell-zero-nodes": (space(with_(CELL, nodes=0)), "nodes must be a positive integer"),
    "cell-no-ops": (space(with_(CELL, ops=[])), "ops must be a non-empty list"),
    "cell-duplicate-ops": (space(with_(CELL, ops=["gcn", "gcn"])), "distinct"),
    "cell-bad-op-on": (space(with_(CELL, op_on="wire")), "op_on must be 'node' or 'edge'"),
    "cell-bad-output": (space(with_(CELL, output="sum")), "output must be one of"),
    "cell-too-many-inputs": (space(with_(CELL, inputs=2)), "inputs must be 'all' or an integer in 1..cell_inputs"),
    "cell-zero-inputs": (space(with_(CELL, inputs=0)), "inputs must be"),
    "cell-inputs-word": (space(with_(CELL, inputs="some")), "inputs must be"),
    "cell-zero-cell-inputs": (space(with_(CELL, cell_inputs=0)), "cell_inputs must be a positive integer"),
    "cell-unknown-equivalence": (space(with_(CELL, equivalence="isomorphism")), "unknown cell equivalence 'isomorphism'"),
}


@pytest.mark.parametrize("spec,needle", BAD_SPECS.values(), ids=BAD_SPECS.keys())
def test_malformed_spec_raises_space_error(spec: Any, needle: str) -> None:
    with pytest.raises(SpaceError) as info:
        space_from_spec(spec)
    assert needle in one_line(info.value)


def test_errors_name_where_the_problem_is() -> None:
    nested = space({"name": "net", "type": "chain",
                    "stages": [[INT], [{"name": "layers", "type": "repeat", "min_depth": 1, "max_depth": 2,
                                        "body": [{"name": "k", "type": "choice", "options": []}]}]]})
    with pytest.raises(SpaceError) as info:
        space_from_spec(nested)
    assert "choice 'k' has no options" in one_line(info.value)


def test_param_from_spec_single_param() -> None:
    assert isinstance(param_from_spec(INT), IntRange)
    with pytest.raises(SpaceError):
        param_from_spec({"name": "w", "type": "int", "low": 1})
    with pytest.raises(SpaceError):
        param_from_spec("w")


def test_empty_space_and_constructor_errors() -> None:
    with pytest.raises(SpaceError):
        SearchSpace([])
    with pytest.raises(SpaceError):
        Chain("c", [])
    with pytest.raises(SpaceError):
        Repeat("r", [IntRange("w", 1, 2)], 2, 1)
    with pytest.raises(SpaceError):
        FloatRange("lr", 1.0, 0.5)


# ---------------------------------------------------------------------------------------------
# Values that do not belong to the space
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def rich() -> SearchSpace:
    return SearchSpace([
        Choice("block", ["mbconv", "attention", "identity"],
               sub={"mbconv": [Choice("expansion", [3, 6])], "attention": [IntRange("heads", 2, 8, step=2)]}),
        IntRange("width", 16, 64, step=16),
        FloatRange("lr", 1e-4, 1e-1, log=True),
        Repeat("layers", [Choice("kernel", [3, 5, 7])], 1, 3),
        Chain("net", [[Choice("w", [16, 24])], [Choice("w", [32, 48])]]),
        Cell("cell", nodes=3, ops=["gcn", "gat", "skip"]),
        Cell("darts", nodes=2, ops=["sep3", "skip_connect", "none"], inputs=2, op_on="edge", cell_inputs=2,
             output="concat"),
    ])


GOOD = {
    "block": "mbconv", "expansion": 6, "width": 32, "lr": 0.01, "layers": [{"kernel": 3}, {"kernel": 7}],
    "net": [{"w": 16}, {"w": 48}],
    "cell": [{"inputs": [0], "op": "gcn"}, {"inputs": [1], "op": "gat"}, {"inputs": [0], "op": "skip"}],
    "darts": [{"inputs": [0, 1], "ops": ["sep3", "skip_connect"]}, {"inputs": [1, 2], "ops": ["sep3", "none"]}],
}


def value(**changes: Any) -> dict[str, Any]:
    return with_(GOOD, **changes)


BAD_VALUES = {
    "not-a-mapping": ([GOOD], "must be a mapping"),
    "option-not-in-choice": (value(block="conv7"), "'conv7' is not an option of 'block'"),
    "bool-is-not-int-option": (value(expansion=True), "True is not an option of 'expansion'"),
    "missing-parameter": (value(width=...), "missing parameter 'width'"),
    "missing-sub-parameter": (value(expansion=...), "missing parameter 'expansion'"),
    "unknown-parameter": (value(depth=3), "unknown or inactive parameter 'depth'"),
    "inactive-sub-parameter": (value(block="identity"), "unknown or inactive parameter 'expansion'"),
    "sub-parameter-of-other-option": (value(heads=4), "'heads'"),
    "int-off-grid": (value(width=20), "'width'=20 is not an integer in [16, 64] with step 16"),
    "int-out-of-range": (value(width=80), "'width'=80"),
    "int-as-string": (value(width="32"), "'width'='32'"),
    "int-as-bool": (value(width=True), "'width'=True"),
    "float-out-of-range": (value(lr=0.5), "'lr'=0.5 is not a number"),
    "float-as-string": (value(lr="0.01"), "'lr'='0.01'"),
    "repeat-too-long": (value(layers=[{"kernel": 3}] * 4), "'layers' has 4 blocks; allowed 1..3"),
    "repeat-too-short": (value(layers=[]), "'layers' has 0 blocks"),
    "repeat-not-list": (value(layers={"kernel": 3}), "'layers' must be a list"),
    "repeat-block-not-mapping": (value(layers=[3]), "layers[0]"),
    "repeat-bad-block": (value(layers=[{"kernel": 4}]), "4 is not an option of 'kernel'"),
    "chain-wrong-length": (value(net=[{"w": 16}]), "'net' must be a list of 2 stages"),
    "chain-stage-option": (value(net=[{"w": 16}, {"w": 16}]), "16 is not an option of 'w'"),
    "cell-wrong-node-count": (value(cell=GOOD["cell"][:2]), "must be a list of 3 nodes"),
    "cell-node-not-mapping": (value(cell=[[0, "gcn"]] + GOOD["cell"][1:]), "node 0 must be a mapping"),
    "cell-future-input": (value(cell=[{"inputs": [2], "op": "gcn"}] + GOOD["cell"][1:]), "node 0: inputs [2] are not allowed"),
    "cell-too-many-inputs": (value(cell=[{"inputs": [0], "op": "gcn"}, {"inputs": [0, 1], "op": "gat"}, GOOD["cell"][2]]), "node 1: inputs [0, 1]"),
    "cell-inputs-not-ints": (value(cell=[{"inputs": ["x"], "op": "gcn"}] + GOOD["cell"][1:]), "inputs must be a list of integers"),
    "cell-unknown-op": (value(cell=[{"inputs": [0], "op": "gin"}] + GOOD["cell"][1:]), "op 'gin' is not one of"),
    "cell-missing-op": (value(cell=[{"inputs": [0]}] + GOOD["cell"][1:]), "op None"),
    "cell-degenerate": (value(cell=[{"inputs": [0], "op": "skip"}] * 3), "applies no operation"),
    "darts-ops-count": (value(darts=[{"inputs": [0, 1], "ops": ["sep3"]}, GOOD["darts"][1]]), "one op per input"),
    "darts-repeated-input": (value(darts=[{"inputs": [0, 0], "ops": ["sep3", "sep3"]}, GOOD["darts"][1]]), "inputs [0, 0] are not allowed"),
    "darts-one-input": (value(darts=[{"inputs": [0], "ops": ["sep3"]}, GOOD["darts"][1]]), "inputs [0] are not allowed"),
}


def test_good_value_is_accepted(rich: SearchSpace) -> None:
    arch = rich.make(GOOD)
    assert rich.contains(arch)


@pytest.mark.parametrize("values,needle", BAD_VALUES.values(), ids=BAD_VALUES.keys())
def test_bad_value_raises_space_error(rich: SearchSpace, values: Any, needle: str) -> None:
    with pytest.raises(SpaceError) as info:
        rich.make(values)
    assert needle in one_line(info.value)
    assert not rich.contains(values)


def test_space_predicates_reject_values() -> None:
    s = SearchSpace([IntRange("a", 1, 4), IntRange("b", 1, 4)], constraints=[lambda v: v["a"] + v["b"] <= 5], name="sum5")
    assert s.contains({"a": 1, "b": 4})
    with pytest.raises(SpaceError, match="violates a constraint of space 'sum5'"):
        s.make({"a": 3, "b": 3})
    impossible = SearchSpace([IntRange("a", 1, 4)], constraints=[lambda v: False], name="never")
    with pytest.raises(SpaceError, match="no valid architecture"):
        impossible.sample(np.random.default_rng(0))


# ---------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------
GOOD_YAML = """\
name: my-space
params:
  - {name: op, type: choice, options: [conv3, conv5, pool]}
  - {name: width, type: int, low: 16, high: 64, step: 16}
  - {name: lr, type: float, low: 1.0e-4, high: 0.1, log: true}
  - name: block
    type: choice
    options: [mbconv, attention]
    sub:
      mbconv:    [{name: expansion, type: choice, options: [3, 6]}]
      attention: [{name: heads, type: choice, options: [2, 4]}]
  - {name: layers, type: repeat, min_depth: 1, max_depth: 4,
     body: [{name: kernel, type: choice, options: [3, 5, 7]}]}
  - {name: cell, type: cell, nodes: 4, ops: [gcn, gat, skip], inputs: 1}
  - name: net
    type: chain
    stages:
      - [{name: width, type: choice, options: [16, 24]}]
      - [{name: width, type: choice, options: [32, 48]}]
"""


def test_documented_yaml_example_loads(tmp_path: Path) -> None:
    path = tmp_path / "space.yaml"
    path.write_text(GOOD_YAML)
    s = load_space(path)
    assert s.name == "my-space"
    assert [p.name for p in s.params] == ["op", "width", "lr", "block", "layers", "cell", "net"]
    json_path = tmp_path / "space.json"
    json_path.write_text(json.dumps(s.spec()))
    assert load_space(json_path).spec() == json.loads(json.dumps(s.spec()))


BAD_FILES = {
    "yaml-unclosed-bracket": ("space.yaml", "params: [\n  {name: a, type: int\n", "malformed YAML"),
    "yaml-bad-indent": ("space.yml", "name: s\nparams:\n  - name: a\n   type: int\n", "malformed YAML"),
    "yaml-tab": ("space.yaml", "name: s\nparams:\n\t- {name: a}\n", "malformed YAML"),
    "json-truncated": ("space.json", '{"name": "s", "params": [', "malformed JSON"),
    "json-trailing-comma": ("space.json", '{"name": "s", "params": [],}', "malformed JSON"),
    "json-is-yaml": ("space.json", "name: s\nparams: []\n", "malformed JSON"),
    "yaml-list": ("space.yaml", "- {name: a, type: int, low: 1, high: 2}\n", "must be a mapping"),
    "yaml-scalar": ("space.yaml", "hello\n", "must be a mapping"),
    "yaml-empty": ("space.yaml", "", "must be a mapping"),
    "yaml-unknown-type": ("space.yaml", "params:\n  - {name: a, type: tensor}\n", "unknown parameter type 'tensor'"),
}


@pytest.mark.parametrize("filename,text,needle", BAD_FILES.values(), ids=BAD_FILES.keys())
def test_malformed_space_file(tmp_path: Path, filename: str, text: str, needle: str) -> None:
    path = tmp_path / filename
    path.write_text(text)
    with pytest.raises(SpaceError) as info:
        load_space(path)
    msg = one_line(info.value)
    assert needle in msg
    assert filename in msg  # names the file


def test_constructor_errors_in_a_file_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "space.yaml"
    path.write_text("params:\n  - {name: a, type: int, low: 3, high: 1}\n")
    with pytest.raises(SpaceError) as info:
        load_space(path)
    msg = one_line(info.value)
    assert "low <= high" in msg
    assert "space.yaml" in msg


def test_space_file_missing_or_binary(tmp_path: Path) -> None:
    with pytest.raises(SpaceError, match="cannot read") as info:
        load_space(tmp_path / "nope.yaml")
    one_line(info.value)
    binary = tmp_path / "space.yaml"
    binary.write_bytes(b"\xff\xfe\x00\x81garbage\x00")
    with pytest.raises(SpaceError, match="not a text file") as info:
        load_space(binary)
    one_line(info.value)
    with pytest.raises(SpaceError) as info:
        load_space(tmp_path)  # a directory
    one_line(info.value)


# ---------------------------------------------------------------------------------------------
# Constraint expressions
# ---------------------------------------------------------------------------------------------
M = {"latency": 0.003, "para": 1.5, "perf": 0.8}

VALID = [
    ("latency<=0.004", M, True),
    ("latency<=0.004", {"latency": 0.004}, True),
    ("latency<=0.004", {"latency": 0.0041}, False),
    ("latency < 0.003", M, False),
    ("latency >= 0.003", M, True),
    ("latency == 0.003", M, True),
    ("latency != 0.003", M, False),
    ("0.001 < latency <= 0.004", M, True),
    ("0.001 < latency <= 0.002", M, False),
    ("0.004 < latency <= 0.001", M, False),
    ("1 <= para < 2 <= 3", M, True),
    ("latency<=0.004 and para<2", M, True),
    ("latency<=0.004 and para<1", M, False),
    ("latency<0.001 or para<2", M, True),
    ("latency<0.001 or para<1", M, False),
    ("not latency > 0.004", M, True),
    ("not (latency < 0.004)", M, False),
    ("not (latency < 0.001 or para > 2) and perf >= 0.8", M, True),
    ("abs(latency - 0.004) < 0.0015", M, True),
    ("abs(-para) > 1", M, True),
    ("max(latency * 1000, para) <= 3", M, True),
    ("max(latency * 1000, para) <= 2.9", M, False),
    ("min(perf, para) >= 0.8", M, True),
    ("min(perf, para, 0.5) >= 0.8", M, False),
    ("latency * 1000 + para / 2 - 1 < 3", M, True),
    ("-latency >= -0.004", M, True),
    ("+para == 1.5", M, True),
    ("latency / (para - 1.5) < 1", M, False),  # division by zero counts as a violation
    ("latency <= 0.004", {"para": 1.0}, False),  # a missing metric counts as a violation
    ("latency <= 0.004", {"latency": math.nan}, False),
    ("latency <= 0.004", {"latency": math.inf}, False),
    ("latency >= 0.004", {"latency": math.inf}, False),
]


@pytest.mark.parametrize("text,metrics,expected", VALID, ids=[f"{t}|{i}" for i, (t, _, _) in enumerate(VALID)])
def test_valid_constraint_evaluates(text: str, metrics: dict[str, float], expected: bool) -> None:
    c = Constraint(text)
    assert c(metrics) is expected


def test_constraint_names_and_can_check() -> None:
    c = Constraint("  max(latency, 0.001) <= 0.004 and not para > 2  ")
    assert c.text == "max(latency, 0.001) <= 0.004 and not para > 2"
    assert c.names == {"latency", "para"}
    assert c.can_check({"latency": 1, "para": 2, "other": 3})
    assert not c.can_check({"latency": 1})
    assert "latency" in repr(c)


INVALID = {
    "import": "__import__('os')",
    "import-compare": "__import__('os').system('true') == 0",
    "attribute": "latency.real < 1",
    "dunder-attribute": "latency.__class__ == 1",
    "string-constant": "latency == 'fast'",
    "string-only": "'a' < 'b'",
    "empty": "",
    "blank": "   ",
    "bare-name": "latency",
    "bare-number": "0.004",
    "arithmetic-only": "latency * 2",
    "function-only": "abs(latency)",
    "lambda": "lambda: latency < 1",
    "lambda-arg": "(lambda x: x)(latency) < 1",
    "syntax": "latency <=",
    "statement": "import os",
    "semicolon": "latency < 1; latency > 0",
    "walrus": "(x := latency) < 1",
    "unknown-function": "sqrt(latency) < 1",
    "function-not-called": "abs < 1",
    "keyword-argument": "max(latency, default=1) < 1",
    "no-arguments": "max() < 1",
    "power": "latency ** 2 < 1",
    "modulo": "latency % 2 < 1",
    "bool-constant": "latency < True",
    "no-metric": "1 < 2",
    "membership": "latency in (1, 2)",
    "identity-op": "latency is None",
    "subscript": "latency[0] < 1",
    "list": "[latency] < [1]",
    "conditional": "latency if para else 0 < 1",
    "f-string": "f'{latency}' == 1",
    "none": "latency < None",
    "bytes": "latency < b'1'",
}


@pytest.mark.parametrize("text", INVALID.values(), ids=INVALID.keys())
def test_malformed_or_unsafe_constraint_raises(text: str) -> None:
    with pytest.raises(ConstraintError) as info:
        Constraint(text)
    one_line(info.value)


def test_constraint_of_wrong_type_raises() -> None:
    with pytest.raises(ConstraintError):
        Constraint(None)  # type: ignore[arg-type]
    with pytest.raises(ConstraintError):
        Constraint(0.004)  # type: ignore[arg-type]


@pytest.mark.parametrize("text", ["latency and para < 2", "not latency", "latency or para"])
def test_boolean_operands_must_be_comparisons(text: str) -> None:
    with pytest.raises(ConstraintError):
        Constraint(text)


def test_constraint_errors_are_archscout_errors() -> None:
    assert issubclass(ConstraintError, ArchscoutError)
    assert issubclass(SpaceError, ArchscoutError)
