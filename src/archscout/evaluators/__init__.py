"""Evaluators: anything that turns an architecture into metrics."""
from __future__ import annotations

from pathlib import Path

from ..errors import UnknownNameError
from .base import Evaluator, TabularEvaluator

BENCHMARK_HELP = ("nasbench-graph:DATASET (cora, citeseer, pubmed, cs, physics, photo, computers, arxiv, proteins), "
                  "reference:mnist1d-cells (archscout's own, trained on MNIST-1D) or tabular:PATH")


def make_evaluator(name: str, space_path: str | Path | None = None) -> Evaluator:
    """Resolve a benchmark name such as ``nasbench-graph:cora`` or ``tabular:table.json``."""
    kind, _, arg = str(name).partition(":")
    if kind == "nasbench-graph":
        from .nasbench_graph import NasBenchGraph

        return NasBenchGraph(arg or "cora")
    if kind == "tabular":
        if not arg:
            raise UnknownNameError("tabular benchmarks need a file: tabular:PATH")
        from .tabular import load_tabular

        return load_tabular(arg, space_path)
    if kind == "reference":
        from ..reference import reference_recipe, reference_table
        from .tabular import load_tabular

        table = load_tabular(reference_table(arg or "mnist1d-cells"))
        table.dataset = reference_recipe(arg or "mnist1d-cells")["dataset"]  # what it was trained on
        table.reference = arg or "mnist1d-cells"
        return table
    raise UnknownNameError(f"unknown benchmark {name!r}; use {BENCHMARK_HELP}")


__all__ = ["BENCHMARK_HELP", "Evaluator", "TabularEvaluator", "make_evaluator"]
