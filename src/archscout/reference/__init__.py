"""Reference benchmarks made by archscout itself and shipped with the package (no download).

``mnist1d-cells``: every one of the 692 distinct architectures of
``mnist1d_cells.space.yaml`` (a NAS-Bench-201-style 1-D network whose 3-edge cell picks among
10 ops) trained on MNIST-1D with ``mnist1d_cells.recipe.yaml``, three seeds each, in the
generic tabular format (``mnist1d_cells.json``). Regenerate with
``python benchmarks/make_reference.py``. Use it as ``--benchmark reference:mnist1d-cells``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import UnknownNameError

HERE = Path(__file__).resolve().parent
REFERENCES = {"mnist1d-cells": "mnist1d_cells"}


def _stem(name: str) -> str:
    if name not in REFERENCES:
        raise UnknownNameError(f"unknown reference benchmark {name!r}; choose from {', '.join(REFERENCES)}")
    return REFERENCES[name]


def reference_table(name: str = "mnist1d-cells") -> Path:
    """Path of the reference benchmark's tabular file."""
    return HERE / f"{_stem(name)}.json"


def reference_space(name: str = "mnist1d-cells") -> Path:
    """Path of the reference benchmark's space file (with its ``model:`` section)."""
    return HERE / f"{_stem(name)}.space.yaml"


def reference_recipe(name: str = "mnist1d-cells") -> dict[str, Any]:
    """How the reference benchmark was trained: ``dataset``, ``split_seed``, ``seeds``, ``recipe``."""
    import yaml

    return dict(yaml.safe_load((HERE / f"{_stem(name)}.recipe.yaml").read_text()))


def reference_data(name: str = "mnist1d-cells") -> Any:
    """The reference benchmark's data (a :class:`~archscout.training.data.TaskData`) with the
    same train/validation/test split its architectures were trained and scored on."""
    from ..training.data import load_dataset

    recipe = reference_recipe(name)
    return load_dataset(recipe["dataset"], seed=int(recipe["split_seed"]))


__all__ = ["REFERENCES", "reference_data", "reference_recipe", "reference_space", "reference_table"]
