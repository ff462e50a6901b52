"""Regenerate the toy tabular benchmarks in this folder.

    PYTHONPATH=src python3 examples/tabular/make_toy.py      # from the repository root

Writes ``toy.json`` (the whole space of an activation choice, a width and a 3-node
cell, enumerated with ``SearchSpace.enumerate``) and ``toy.csv`` (two "seeds" per
architecture of the scalar space in ``toy.space.yaml``). The metrics are synthetic and
deterministic: ``acc`` is an accuracy in [0, 1], ``latency`` is in milliseconds.
"""
from __future__ import annotations

import csv
import json
import math
import sys
from pathlib import Path
from typing import Any

from archscout.space import Architecture, SearchSpace, space_from_spec
from archscout.space.spec import read_structured_file

HERE = Path(__file__).resolve().parent

JSON_SPACE: dict[str, Any] = {
    "name": "toy",
    "params": [
        {"name": "op", "type": "choice", "options": ["relu", "gelu", "swish"]},
        {"name": "width", "type": "int", "low": 16, "high": 64, "step": 16},
        {"name": "cell", "type": "cell", "nodes": 3, "ops": ["conv", "pool", "skip"]},
    ],
}
ACT_ACC = {"relu": 0.0, "gelu": 0.01, "swish": 0.005}  # accuracy bonus per activation
ACT_COST = {"relu": 1.0, "gelu": 1.2, "swish": 1.1}  # latency multiplier per activation


def toy_metrics(space: SearchSpace, arch: Architecture) -> dict[str, float]:
    """Synthetic accuracy and latency (ms) from the cell's input-to-output op paths,
    so equivalent cell encodings get the same numbers."""
    paths = space.params[2].paths(arch.values)  # type: ignore[attr-defined]
    n_conv = sum(p.count("conv") for p in paths)
    n_pool = sum(p.count("pool") for p in paths)
    depth = max((len(p) for p in paths), default=0)
    width = arch["width"]
    acc = (0.70 + 0.04 * min(n_conv, 3) + 0.01 * min(n_pool, 2) + 0.02 * math.log2(width / 16)
           + ACT_ACC[arch["op"]] - 0.01 * max(0, depth - 2))
    latency = 0.5 + (width / 16) * (1.0 * n_conv + 0.3 * n_pool) * ACT_COST[arch["op"]]
    return {"acc": round(acc, 4), "latency": round(latency, 3)}


def json_text() -> str:
    """toy.json: one parameter per line, one entry per line."""
    space = space_from_spec(JSON_SPACE)
    entries = [json.dumps({"arch": a.to_dict(), "metrics": toy_metrics(space, a)}) for a in space.enumerate()]
    params = ",\n      ".join(json.dumps(p) for p in JSON_SPACE["params"])
    return (
        "{\n"
        '  "format": "archscout-tabular",\n'
        '  "version": 1,\n'
        '  "name": "toy",\n'
        f'  "space": {{"name": {json.dumps(JSON_SPACE["name"])}, "params": [\n      {params}\n  ]}},\n'
        '  "objectives": ["acc:max", "latency:min"],\n'
        '  "cheap_metrics": ["latency"],\n'
        '  "entries": [\n    ' + ",\n    ".join(entries) + "\n  ]\n}\n"
    )


def csv_rows() -> list[list[Any]]:
    """toy.csv: two seeds per architecture; averaging them gives the noise-free value."""
    spec = read_structured_file(HERE / "toy.space.yaml")
    space = space_from_spec({k: v for k, v in spec.items() if k not in ("objectives", "cheap_metrics")})
    rows: list[list[Any]] = [["op", "width", "lr", "acc", "latency"]]
    for arch in space.enumerate():
        width, op, lr = arch["width"], arch["op"], arch["lr"]
        acc = 0.80 + 0.02 * math.log2(width / 16) + ACT_ACC[op] + (0.015 if lr == 0.01 else 0.0)
        latency = 0.4 + 0.25 * (width / 16) * ACT_COST[op]
        for sign in (1, -1):
            rows.append([op, width, lr, round(acc + sign * 0.003, 4), round(latency + sign * 0.02, 3)])
    return rows


def main(out_dir: Path = HERE) -> None:
    (out_dir / "toy.json").write_text(json_text())
    with open(out_dir / "toy.csv", "w", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows(csv_rows())


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE)
