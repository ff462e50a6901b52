"""Reading search spaces from dicts, YAML and JSON files.

File format (YAML or JSON)::

    name: my-space
    params:
      - {name: op, type: choice, options: [conv3, conv5, pool]}
      - {name: width, type: int, low: 16, high: 64, step: 16}
      - {name: lr, type: float, low: 1.0e-4, high: 0.1, log: true}
      - name: block                      # a conditional (nested) choice
        type: choice
        options: [mbconv, attention]
        sub:
          mbconv:    [{name: expansion, type: choice, options: [3, 6]}]
          attention: [{name: heads, type: choice, options: [2, 4]}]
      - {name: layers, type: repeat, min_depth: 1, max_depth: 4,
         body: [{name: kernel, type: choice, options: [3, 5, 7]}]}
      - {name: cell, type: cell, nodes: 4, ops: [gcn, gat, skip], inputs: 1}
      - name: net                        # a macro chain of stages
        type: chain
        stages:
          - [{name: width, type: choice, options: [16, 24]}]
          - [{name: width, type: choice, options: [32, 48]}]
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from ..errors import SpaceError
from .cell import Cell
from .params import Chain, Choice, FloatRange, IntRange, Param, Repeat, _check_name
from .space import SearchSpace

_ALLOWED = {
    "choice": {"name", "type", "options", "sub"},
    "int": {"name", "type", "low", "high", "step"},
    "float": {"name", "type", "low", "high", "log"},
    "repeat": {"name", "type", "min_depth", "max_depth", "body"},
    "chain": {"name", "type", "stages"},
    "cell": {"name", "type", "nodes", "ops", "inputs", "op_on", "cell_inputs", "identity_ops", "zero_ops",
             "output", "allow_degenerate", "equivalence"},
}
# Largest path-encoding vocabulary (op sequences up to ``path_length`` per cell) a space may ask for.
MAX_PATH_FEATURES = 1_000_000


def printable(text: Any) -> str:
    """``text`` for a one-line message: as is when printable, else its repr (newlines escaped)."""
    s = str(text)
    return s if s.isprintable() else repr(s)


def _params(items: Any, where: str) -> list[Param]:
    if not isinstance(items, list) or not items:
        raise SpaceError(f"{where}: expected a non-empty list of parameters")
    return [param_from_spec(item, f"{where}[{i}]") for i, item in enumerate(items)]


def _need(spec: Mapping[str, Any], key: str, where: str) -> Any:
    if key not in spec:
        raise SpaceError(f"{where}: missing '{key}'")
    return spec[key]


def param_from_spec(spec: Any, where: str = "param") -> Param:
    """Build one parameter from its dict description (SpaceError naming the problem)."""
    if not isinstance(spec, Mapping):
        raise SpaceError(f"{where}: expected a mapping with 'name' and 'type'")
    kind = _need(spec, "type", where)
    if not isinstance(kind, str) or kind not in _ALLOWED:
        raise SpaceError(f"{where}: unknown parameter type {kind!r} (use one of {', '.join(sorted(_ALLOWED))})")
    extra = set(spec) - _ALLOWED[kind]
    if extra:
        raise SpaceError(f"{where}: unknown key {sorted(map(str, extra))[0]!r} for a {kind} parameter")
    name = _need(spec, "name", where)
    try:
        _check_name(name)
    except SpaceError as exc:  # before the name goes into the prefix of every later message
        raise SpaceError(f"{where}: {exc}") from None
    where = f"{where} ({name})"
    try:
        if kind == "choice":
            options = _need(spec, "options", where)
            if not isinstance(options, list):
                raise SpaceError(f"{where}: options must be a list")
            sub = spec.get("sub") or {}
            if not isinstance(sub, Mapping):
                raise SpaceError(f"{where}: sub must map options to parameter lists")
            return Choice(name, options, {k: _params(v, f"{where}.sub[{printable(k)}]") for k, v in sub.items()})
        if kind == "int":
            return IntRange(name, _need(spec, "low", where), _need(spec, "high", where), spec.get("step", 1))
        if kind == "float":
            return FloatRange(name, _need(spec, "low", where), _need(spec, "high", where), bool(spec.get("log", False)))
        if kind == "repeat":
            return Repeat(name, _params(_need(spec, "body", where), f"{where}.body"),
                          _need(spec, "min_depth", where), _need(spec, "max_depth", where))
        if kind == "chain":
            stages = _need(spec, "stages", where)
            if not isinstance(stages, list) or not stages:
                raise SpaceError(f"{where}: stages must be a non-empty list of parameter lists")
            return Chain(name, [_params(s, f"{where}.stages[{i}]") for i, s in enumerate(stages)])
        options = {k: spec[k] for k in _ALLOWED["cell"] - {"name", "type"} if k in spec}
        return Cell(name, **options)
    except TypeError as exc:  # wrong value types deep inside a constructor
        raise SpaceError(f"{where}: {exc}") from None
    except SpaceError as exc:
        text = str(exc)
        if text.startswith(where.split(" (")[0]):
            raise
        raise SpaceError(f"{where}: {text}") from None


def space_from_spec(spec: Any, where: str = "space") -> SearchSpace:
    """Build a SearchSpace from ``{"name": ..., "params": [...]}``."""
    head = where[:-1] if where.endswith(":") else where  # "file.yaml:" prefixes params, "file.yaml" the rest
    if not isinstance(spec, Mapping):
        raise SpaceError(f"{head}: a space must be a mapping with 'params'")
    extra = set(spec) - {"name", "params", "path_length", "model"}
    if extra:
        raise SpaceError(f"{head}: unknown key {sorted(map(str, extra))[0]!r} (expected name, params, model)")
    prefix = f"{where} params" if where.endswith(":") else f"{where}.params"
    params = _params(_need(spec, "params", head), prefix)
    path_length = spec.get("path_length", 3)
    _check_path_length(path_length, params, head)
    return SearchSpace(params, name=str(spec.get("name", "space")), path_length=path_length,
                       model=spec.get("model"))


def _check_path_length(value: Any, params: list[Param], where: str) -> None:
    """A non-negative integer whose path vocabulary stays within MAX_PATH_FEATURES for every
    top-level cell (it grows as (real ops) ** path_length, so a mistyped number would never finish)."""
    if type(value) is not int or value < 0:
        raise SpaceError(f"{where}: path_length must be a non-negative integer, not {value!r}")
    for p in params:
        if not isinstance(p, Cell):
            continue
        real = len([o for o in p.ops if o not in p.identity and o not in p.zero])
        if real <= 1:
            continue  # at most path_length + 1 sequences
        total, term = 0, 1
        for _ in range(value + 1):
            total += term
            term *= real
            if total > MAX_PATH_FEATURES:
                raise SpaceError(f"{where}: path_length {value} gives cell {p.name!r} more than "
                                 f"{MAX_PATH_FEATURES:,} path features; use a smaller path_length")


def read_structured_file(path: str | Path) -> Any:
    """Parse a YAML or JSON file, with a one-line SpaceError for unreadable input."""
    p = Path(path)
    label = printable(p)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise SpaceError(f"{label}: cannot read ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise SpaceError(f"{label}: not a text file") from None
    except ValueError as exc:  # e.g. a NUL byte in the path
        raise SpaceError(f"{label}: cannot read ({exc})") from None
    kind = "JSON" if p.suffix.lower() == ".json" else "YAML"
    try:
        if kind == "JSON":
            return json.loads(text)
        return yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        first = " ".join(str(exc).split()) or type(exc).__name__
        raise SpaceError(f"{label}: malformed {kind} ({first})") from None
    except RecursionError:
        raise SpaceError(f"{label}: malformed {kind} (nested too deeply)") from None
    except ValueError as exc:  # e.g. an integer with more digits than Python converts
        raise SpaceError(f"{label}: malformed {kind} ({' '.join(str(exc).split())})") from None


def load_space(path: str | Path) -> SearchSpace:
    """Read a search space from a YAML or JSON file."""
    return space_from_spec(read_structured_file(path), f"{printable(path)}:")
