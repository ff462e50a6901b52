"""Tests for the generic tabular benchmark (archscout.evaluators.tabular)."""
from __future__ import annotations

import hashlib
import json
import math
import runpy
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

from archscout.errors import SpaceError, TabularError
from archscout.evaluators.tabular import TabularBenchmark, load_tabular

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "tabular"

SPACE: dict[str, Any] = {
    "name": "t",
    "params": [
        {"name": "op", "type": "choice", "options": ["conv3", "conv5", "pool"]},
        {"name": "width", "type": "int", "low": 16, "high": 64, "step": 16},
        {"name": "cell", "type": "cell", "nodes": 3, "ops": ["conv", "pool", "skip"]},
    ],
}
CSV_SPACE: dict[str, Any] = {
    "name": "c",
    "params": [
        {"name": "op", "type": "choice", "options": ["conv3", "conv5", "pool"]},
        {"name": "width", "type": "int", "low": 16, "high": 64, "step": 16},
        {"name": "lr", "type": "choice", "options": [0.1, 0.01]},
    ],
}
CELL_A = [{"inputs": [0], "op": "conv"}, {"inputs": [0], "op": "pool"}, {"inputs": [0], "op": "conv"}]
# Two encodings of the same computation: pool(conv(x)), the skip node sits elsewhere.
CELL_B1 = [{"inputs": [0], "op": "conv"}, {"inputs": [1], "op": "skip"}, {"inputs": [2], "op": "pool"}]
CELL_B2 = [{"inputs": [0], "op": "conv"}, {"inputs": [1], "op": "pool"}, {"inputs": [2], "op": "skip"}]


def arch(op: str = "conv3", width: int = 16, cell: list | None = None) -> dict[str, Any]:
    return {"op": op, "width": width, "cell": cell or CELL_A}


def table(**overrides: Any) -> dict[str, Any]:
    """A valid JSON table; keyword arguments replace (or, with None, drop) top-level keys."""
    doc: dict[str, Any] = {
        "format": "archscout-tabular",
        "version": 1,
        "name": "unit",
        "space": SPACE,
        "entries": [
            {"arch": arch(), "metrics": {"acc": 0.9, "latency": 3.0, "params": 1.5}},
            {"arch": arch("pool", 32), "metrics": {"acc": 0.7, "latency": 1.0, "params": 0.5}},
        ],
    }
    for key, value in overrides.items():
        if value is None:
            doc.pop(key, None)
        else:
            doc[key] = value
    return doc


def write_json(tmp_path: Path, doc: Any, name: str = "table.json") -> Path:
    p = tmp_path / name
    p.write_text(json.dumps(doc))
    return p


def write_csv(tmp_path: Path, text: str, space: Any = CSV_SPACE, name: str = "table.csv") -> Path:
    p = tmp_path / name
    p.write_text(text)
    if space is not None:
        (tmp_path / (p.stem + ".space.yaml")).write_text(yaml.safe_dump(space))
    return p


CSV_TEXT = "op,width,lr,acc,latency\nconv3,16,0.1,0.9,3.0\npool,32,0.01,0.7,1.0\n"


# -- JSON / YAML ---------------------------------------------------------------------------------
def test_json_round_trip(tmp_path: Path) -> None:
    p = write_json(tmp_path, table())
    bench = load_tabular(p)
    assert isinstance(bench, TabularBenchmark)
    assert len(bench) == 2
    assert bench.name == "tabular:table.json"
    assert bench.title == "unit"
    assert bench.metric_names == ("acc", "latency", "params")
    assert bench.default_objectives == ("acc:max",)  # the first metric, maximised
    assert bench.cheap_metric_names() == ()
    a = bench.space.make(arch())
    assert bench.contains(a)
    assert bench.evaluate(a) == {"acc": 0.9, "latency": 3.0, "params": 1.5}
    bench.evaluate(a)["acc"] = 0.0  # a copy: the table is unchanged
    assert bench.evaluate(a)["acc"] == 0.9
    assert bench.replicates(a) == 1
    assert [x.to_dict() for x, _ in bench.entries()] == [arch(), arch("pool", 32)]
    desc = bench.describe()
    assert desc == {"name": "tabular:table.json", "path": str(p.resolve()),
                    "sha256": hashlib.sha256(p.read_bytes()).hexdigest()}


def test_yaml_with_space_file_and_settings(tmp_path: Path) -> None:
    (tmp_path / "spaces").mkdir()
    space = dict(SPACE, objectives=["latency:min"], cheap_metrics=["latency", "params"])
    (tmp_path / "spaces" / "s.yaml").write_text(yaml.safe_dump(space))
    p = tmp_path / "table.yml"
    p.write_text(yaml.safe_dump(table(space=None, space_file="spaces/s.yaml")))
    bench = load_tabular(p)
    assert bench.default_objectives == ("latency:min",)
    assert bench.cheap_metric_names() == ("latency", "params")
    # Settings in the table take precedence over those in the space file.
    p.write_text(yaml.safe_dump(table(space=None, space_file="spaces/s.yaml", objectives=["acc", "latency:minimize"])))
    assert load_tabular(p).default_objectives == ("acc:max", "latency:min")


def test_json_space_from_argument(tmp_path: Path) -> None:
    (tmp_path / "s.json").write_text(json.dumps(SPACE))
    bench = load_tabular(write_json(tmp_path, table(space=None)), space_path=tmp_path / "s.json")
    assert len(bench) == 2


def test_duplicates_are_averaged(tmp_path: Path) -> None:
    entries = [
        {"arch": arch(), "metrics": {"acc": 0.8, "latency": 2.0}},
        {"arch": arch(), "metrics": {"acc": 0.9}},
        {"arch": arch(), "metrics": {"acc": float("nan"), "latency": None}},  # missing, not zero
        {"arch": arch("pool"), "metrics": {"acc": 0.5, "latency": float("inf")}},
    ]
    bench = load_tabular(write_json(tmp_path, table(entries=entries)))
    a = bench.space.make(arch())
    assert len(bench) == 2
    assert bench.replicates(a) == 3
    assert bench.evaluate(a)["acc"] == pytest.approx(0.85)
    assert bench.evaluate(a)["latency"] == 2.0
    assert bench.evaluate(bench.space.make(arch("pool"))) == {"acc": 0.5}


def test_equivalent_cells_merge(tmp_path: Path) -> None:
    entries = [{"arch": arch(cell=CELL_B1), "metrics": {"acc": 0.6}},
               {"arch": arch(cell=CELL_B2), "metrics": {"acc": 0.8}}]
    bench = load_tabular(write_json(tmp_path, table(entries=entries)))
    assert len(bench) == 1
    [(first, metrics)] = list(bench.entries())
    assert first.to_dict()["cell"] == CELL_B1  # the first encoding is kept
    assert metrics["acc"] == pytest.approx(0.7)
    other = bench.space.make(arch(cell=CELL_B2))
    assert bench.contains(other) and bench.replicates(other) == 2


def test_cheap_metrics(tmp_path: Path) -> None:
    bench = load_tabular(write_json(tmp_path, table(cheap_metrics=["latency", "params"])))
    a = bench.space.make(arch())
    assert bench.cheap_metric_names() == ("latency", "params")
    assert bench.cheap_metrics(a) == {"latency": 3.0, "params": 1.5}
    assert bench.cheap_metrics(bench.space.make(arch("conv5"))) == {}


def test_missing_arch_raises_key_error(tmp_path: Path) -> None:
    bench = load_tabular(write_json(tmp_path, table()))
    absent = bench.space.make(arch("conv5", 64))
    assert not bench.contains(absent)
    assert bench.replicates(absent) == 0
    with pytest.raises(KeyError, match="not in the table"):
        bench.evaluate(absent)


# -- CSV -------------------------------------------------------------------------------------------
def test_csv_round_trip(tmp_path: Path) -> None:
    settings = dict(CSV_SPACE, objectives=["acc:max", "latency:min"], cheap_metrics=["latency"])
    p = write_csv(tmp_path, CSV_TEXT, settings)
    bench = load_tabular(p)
    assert bench.name == "tabular:table.csv"
    assert bench.metric_names == ("acc", "latency")
    assert bench.default_objectives == ("acc:max", "latency:min")
    a = bench.space.make({"op": "pool", "width": 32, "lr": 0.01})
    assert bench.evaluate(a) == {"acc": 0.7, "latency": 1.0}
    assert bench.cheap_metrics(a) == {"latency": 1.0}
    values = [x.to_dict() for x, _ in bench.entries()]
    assert values[0] == {"op": "conv3", "width": 16, "lr": 0.1}
    assert type(values[0]["width"]) is int and type(values[0]["lr"]) is float
    assert bench.describe()["sha256"] == hashlib.sha256(p.read_bytes()).hexdigest()


def test_csv_lenient_cells_and_duplicates(tmp_path: Path) -> None:
    text = ("\ufeff op , width , lr , acc , latency \r\n"  # BOM, padding, CRLF
            "conv3,16.0,1e-1,0.8,NA\r\n"
            "\r\n"
            '"conv3",16,0.1,0.9,2.5\r\n'
            "pool,64,0.01,nan,\r\n"
            "conv5,48,0.01,0.6,1.0\r\n")
    bench = load_tabular(write_csv(tmp_path, text))
    a = bench.space.make({"op": "conv3", "width": 16, "lr": 0.1})
    assert len(bench) == 3
    assert bench.replicates(a) == 2
    assert bench.evaluate(a) == {"acc": pytest.approx(0.85), "latency": 2.5}
    assert bench.evaluate(bench.space.make({"op": "pool", "width": 64, "lr": 0.01})) == {}
    assert bench.default_objectives == ("acc:max",)


def test_csv_explicit_space_and_sub_parameters(tmp_path: Path) -> None:
    space = {"params": [{"name": "block", "type": "choice", "options": ["mb", "attn"],
                         "sub": {"mb": [{"name": "expand", "type": "choice", "options": [3, 6]}]}}]}
    (tmp_path / "elsewhere.json").write_text(json.dumps(space))
    p = write_csv(tmp_path, "block,expand,acc\nmb,6,0.9\nattn,,0.5\n", space=None)
    bench = load_tabular(p, space_path=tmp_path / "elsewhere.json")
    assert [x.to_dict() for x, _ in bench.entries()] == [{"block": "mb", "expand": 6}, {"block": "attn"}]


# -- examples --------------------------------------------------------------------------------------
def test_examples_load_and_regenerate(tmp_path: Path) -> None:
    toy = load_tabular(EXAMPLES / "toy.json")
    assert len(toy) == len(list(toy.space.enumerate())) == 552
    assert toy.default_objectives == ("acc:max", "latency:min")
    assert toy.cheap_metric_names() == ("latency",)
    csv_toy = load_tabular(EXAMPLES / "toy.csv")
    assert len(csv_toy) == 24
    assert all(csv_toy.replicates(a) == 2 for a, _ in csv_toy.entries())
    runpy.run_path(str(EXAMPLES / "make_toy.py"))["main"](tmp_path)
    for name in ("toy.json", "toy.csv"):
        assert (tmp_path / name).read_bytes() == (EXAMPLES / name).read_bytes(), f"{name} is stale: rerun make_toy.py"


# -- errors: one line, naming the file ------------------------------------------------------------
def _entry(a: Any = None, m: Any = None) -> dict[str, Any]:
    return {"arch": arch() if a is None else a, "metrics": {"acc": 0.9} if m is None else m}


JSON_ERRORS: list[tuple[str, Any, type, str]] = [
    # (id, table document or raw text, exception type, expected fragment)
    ("malformed-json", '{"format": ', TabularError, "malformed JSON"),
    ("not-a-mapping", [1, 2], TabularError, "expected a mapping"),
    ("missing-format", table(format=None), TabularError, "missing 'format'"),
    ("wrong-format", table(format="other"), TabularError, "'format' is 'other'"),
    ("missing-version", table(version=None), TabularError, "missing 'version'"),
    ("unknown-version", table(version=2), TabularError, "unknown format version 2"),
    ("bool-version", table(version=True), TabularError, "unknown format version True"),
    ("unknown-key", table(entires=[]), TabularError, "unknown key 'entires'"),
    ("missing-entries", table(entries=None), TabularError, "missing 'entries'"),
    ("entries-not-list", table(entries={"a": 1}), TabularError, "'entries' must be a list"),
    ("empty-table", table(entries=[]), TabularError, "no entries"),
    ("entry-not-mapping", table(entries=[_entry(), 5]), TabularError, "entry 2: expected a mapping"),
    ("entry-missing-metrics", table(entries=[{"arch": arch()}]), TabularError, "entry 1: missing 'metrics'"),
    ("entry-unknown-key", table(entries=[dict(_entry(), seed=1)]), TabularError, "entry 1: unknown key 'seed'"),
    ("arch-not-mapping", table(entries=[_entry(a=[1])]), TabularError, "entry 1: 'arch' must map"),
    ("metrics-not-mapping", table(entries=[_entry(m=[1])]), TabularError, "entry 1: 'metrics' must map"),
    ("bad-option", table(entries=[_entry(), _entry(), _entry(a=arch("conv9"))]), TabularError, "entry 3: 'conv9'"),
    ("bad-int", table(entries=[_entry(a=arch(width=20))]), TabularError, "entry 1: 'width'=20"),
    ("unknown-param", table(entries=[_entry(a=dict(arch(), depth=3))]), TabularError, "entry 1: unknown or inactive"),
    ("bad-cell-op-type", table(entries=[_entry(a=arch(cell=[{"inputs": [0], "op": ["conv"]}] * 3))]),
     TabularError, "entry 1: "),
    ("metric-not-number", table(entries=[_entry(m={"acc": "abc"})]), TabularError,
     "metric 'acc' is not a number ('abc')"),
    ("metric-bool", table(entries=[_entry(m={"acc": True})]), TabularError, "metric 'acc' is not a number (True)"),
    ("no-metric-values", table(entries=[_entry(m={"acc": None})]), TabularError, "no metric values"),
    ("objective-unknown", table(objectives=["top1:max"]), TabularError, "objective 'top1:max' names no metric"),
    ("objective-direction", table(objectives=["acc:up"]), TabularError, "'acc:up'"),
    ("objective-twice", table(objectives=["acc:max", "acc:min"]), TabularError, "listed twice"),
    ("objectives-type", table(objectives=[1]), TabularError, "'objectives' must be"),
    ("cheap-unknown", table(cheap_metrics=["flops"]), TabularError, "cheap metric 'flops'"),
    ("space-and-file", table(space_file="s.yaml"), TabularError, "not both"),
    ("no-space", table(space=None), TabularError, "missing 'space'"),
    ("space-file-type", table(space=None, space_file=3), TabularError, "'space_file' must be"),
    ("bad-space", table(space={"params": [{"name": "op", "type": "choise"}]}), SpaceError, "space.params[0]"),
]


@pytest.mark.parametrize("doc, exc_type, fragment", [c[1:] for c in JSON_ERRORS], ids=[c[0] for c in JSON_ERRORS])
def test_json_errors(tmp_path: Path, doc: Any, exc_type: type, fragment: str) -> None:
    p = tmp_path / "table.json"
    p.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    with pytest.raises(exc_type) as info:
        load_tabular(p)
    _check_message(info.value, fragment)
    assert str(info.value).startswith(f"{p}: ")


def _csv_case(text: str, space: Any = CSV_SPACE) -> Callable[[Path], Path]:
    return lambda tmp: write_csv(tmp, text, space)


def _raw(name: str, data: bytes) -> Callable[[Path], Path]:
    """A table file holding exactly ``data`` (with a valid sidecar space, for CSV)."""
    def make(tmp: Path) -> Path:
        if name.endswith(".csv"):
            (tmp / name.replace(".csv", ".space.yaml")).write_text(yaml.safe_dump(CSV_SPACE))
        (tmp / name).write_bytes(data)
        return tmp / name
    return make


def _two_sidecars(tmp: Path) -> Path:
    (tmp / "table.space.json").write_text(json.dumps(CSV_SPACE))
    return write_csv(tmp, CSV_TEXT)


def _space_conflict(tmp: Path) -> Path:
    """A table with its own space, loaded with a space file as well (see SPACE_ARG)."""
    (tmp / SPACE_ARG).write_text(yaml.safe_dump(SPACE))
    return write_json(tmp, table(), "table.yaml")


SPACE_ARG = "space-arg.yaml"  # when a case writes this file, the test passes it as space_path
FILE_ERRORS: list[tuple[str, Callable[[Path], Path], type, str]] = [
    # (id, writes the files and returns the table path, exception type, expected fragment)
    ("csv-no-space", _csv_case(CSV_TEXT, space=None), TabularError,
     "table.csv: no space given (expected table.space.yaml beside it or --space FILE)"),
    ("csv-two-sidecars", _two_sidecars, TabularError, "table.csv: several space files"),
    ("csv-metric-not-number", _csv_case(CSV_TEXT + "conv5,48,0.1,abc,1\n"), TabularError,
     "table.csv: line 4: metric 'acc' is not a number ('abc')"),
    ("csv-bad-option", _csv_case(CSV_TEXT + "conv9,48,0.1,0.5,1\n"), TabularError,
     "table.csv: line 4: 'conv9' is not an option"),
    ("csv-int-not-number", _csv_case(CSV_TEXT + "conv3,wide,0.1,0.5,1\n"), TabularError,
     "table.csv: line 4: parameter 'width' is not a number ('wide')"),
    ("csv-int-off-grid", _csv_case(CSV_TEXT + "conv3,20,0.1,0.5,1\n"), TabularError, "table.csv: line 4: 'width'=20"),
    ("csv-missing-value", _csv_case(CSV_TEXT + ",16,0.1,0.5,1\n"), TabularError,
     "table.csv: line 4: missing parameter 'op'"),
    ("csv-field-count", _csv_case(CSV_TEXT + "conv3,16,0.1\n"), TabularError,
     "table.csv: line 4: expected 5 fields, found 3"),
    ("csv-empty-file", _csv_case("\n\n"), TabularError, "table.csv: empty file"),
    ("csv-header-only", _csv_case("op,width,lr,acc\n"), TabularError, "table.csv: the table has no entries"),
    ("csv-duplicate-column", _csv_case("op,width,lr,acc,acc\n"), TabularError,
     "table.csv: line 1: column 'acc' appears twice"),
    ("csv-unnamed-column", _csv_case("op,width,lr,,acc\n"), TabularError, "table.csv: line 1: column 4 has no name"),
    ("csv-missing-param-column", _csv_case("op,lr,acc\nconv3,0.1,0.5\n"), TabularError,
     "table.csv: line 1: no column for parameter 'width'"),
    ("csv-no-metric-column", _csv_case("op,width,lr\nconv3,16,0.1\n"), TabularError, "table.csv: line 1: no metric"),
    ("csv-cell-param", _csv_case(CSV_TEXT, SPACE), TabularError, "table.csv: parameter 'cell' is a cell"),
    ("csv-bad-objective", _csv_case(CSV_TEXT, dict(CSV_SPACE, objectives=["top1"])), TabularError,
     "table.space.yaml: objective 'top1'"),
    ("csv-bad-sidecar", _csv_case(CSV_TEXT, {"params": []}), SpaceError, "table.space.yaml"),
    ("csv-not-utf8", _raw("table.csv", b"op,width,lr,acc\n\xff\xfe,16,0.1,0.5\n"), TabularError,
     "table.csv: not a UTF-8 text file"),
    ("json-not-utf8", _raw("table.json", b"\xff\xfe{}"), TabularError, "table.json: not a text file"),
    ("yaml-malformed", _raw("table.yaml", b"format: [1\n"), TabularError, "table.yaml: malformed YAML"),
    ("yaml-space-conflict", _space_conflict, TabularError, "table.yaml: the table already names its space"),
    ("unsupported-suffix", _raw("table.txt", b"x"), TabularError, "table.txt: unsupported table format '.txt'"),
    ("missing-file", lambda tmp: tmp / "table.json", TabularError, "table.json: cannot read"),
    ("missing-space-file", lambda tmp: write_json(tmp, table(space=None, space_file="nowhere.yaml")), SpaceError,
     "nowhere.yaml: cannot read"),
]


@pytest.mark.parametrize("make, exc_type, fragment", [c[1:] for c in FILE_ERRORS], ids=[c[0] for c in FILE_ERRORS])
def test_file_errors(tmp_path: Path, make: Callable[[Path], Path], exc_type: type, fragment: str) -> None:
    p = make(tmp_path)
    space_arg = tmp_path / SPACE_ARG
    with pytest.raises(exc_type) as info:
        load_tabular(p, space_path=space_arg if space_arg.exists() else None)
    _check_message(info.value, fragment)


def _check_message(exc: BaseException, fragment: str) -> None:
    """One line, containing ``fragment`` (each fragment starts with or names the file at fault)."""
    msg = str(exc)
    assert "\n" not in msg, msg
    assert fragment in msg, msg


def test_nonfinite_values_are_missing_not_errors(tmp_path: Path) -> None:
    entries = [_entry(m={"acc": 0.5, "loss": float("nan")}), _entry(a=arch("pool"), m={"acc": "1e-3"})]
    bench = load_tabular(write_json(tmp_path, table(entries=entries)))
    assert bench.metric_names == ("acc",)  # 'loss' never had a finite value
    assert math.isclose(bench.evaluate(bench.space.make(arch("pool")))["acc"], 1e-3)
