"""One entry point for every supernet method, by its strategy name."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..errors import UnknownNameError
from ..space import SearchSpace
from ..training.data import TaskData, load_dataset
from .base import OneShotResult

DIFFERENTIABLE = ("darts", "pc-darts", "gdas", "fbnet", "proxyless")
METHODS = DIFFERENTIABLE + ("spos", "bignas")


def run_method(method: str, space: SearchSpace, data: str | TaskData, *, constraints: Sequence[str] = (),
               seed: int = 0, **options: Any) -> OneShotResult:
    """Run supernet method ``method`` on ``space`` with ``data`` (a dataset name or TaskData).

    ``constraints`` (texts such as ``"flops<=2e6"``) are hard budgets for the methods that
    search under them (``spos``, ``bignas``); the differentiable methods ignore them, and the
    study then records a derived architecture that breaks one as infeasible.
    """
    if method not in METHODS:
        raise UnknownNameError(f"unknown supernet method {method!r}; choose from {', '.join(METHODS)}")
    task = data if isinstance(data, TaskData) else load_dataset(str(data), seed=seed)
    if method in DIFFERENTIABLE:
        from .differentiable import run_differentiable

        return run_differentiable(method, space, task, seed=seed, **options)
    if method == "spos":
        from .spos import run_spos

        return run_spos(space, task, constraints=constraints, seed=seed, **options)
    from .bignas import run_bignas

    return run_bignas(space, task, constraints=constraints, seed=seed, **options)


__all__ = ["DIFFERENTIABLE", "METHODS", "run_method"]
