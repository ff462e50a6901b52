"""Search strategies behind one ask/tell protocol, and their registry."""
from __future__ import annotations

from typing import Any

from ..errors import UnknownNameError
from ..problem import Problem
from .base import Strategy
from .bayesopt import PredictorBO
from .evolution import RegularizedEvolution
from .local_search import LocalSearch
from .nsga2 import NSGA2
from .optuna_peer import OptunaTPE, optuna_available
from .random_search import RandomSearch
from .reinforce import Reinforce

STRATEGIES: dict[str, type[Strategy]] = {
    cls.name: cls for cls in (PredictorBO, RegularizedEvolution, LocalSearch, Reinforce, NSGA2, RandomSearch, OptunaTPE)
}
# Best in benchmarks/search_quality.py and, by its worst dataset, benchmarks/multi_objective.py.
DEFAULT_STRATEGY = PredictorBO.name


def available_strategies() -> dict[str, type[Strategy]]:
    """Registered strategies usable here (the Optuna peer only when optuna is installed)."""
    return {k: v for k, v in STRATEGIES.items() if k != OptunaTPE.name or optuna_available()}


def strategy_class(name: str) -> type[Strategy]:
    """The strategy registered as ``name`` (UnknownNameError listing the choices otherwise)."""
    strategies = available_strategies()
    if name not in strategies:
        hint = " (install optuna)" if name == OptunaTPE.name else ""
        raise UnknownNameError(f"unknown strategy {name!r}{hint}; choose from {', '.join(sorted(strategies))}")
    return strategies[name]


def make_strategy(name: str, problem: Problem, seed: int = 0, **options: Any) -> Strategy:
    """Instantiate a strategy by its registry name."""
    cls = strategy_class(name)
    try:
        return cls(problem, seed=seed, **options)
    except TypeError as exc:
        raise UnknownNameError(f"strategy {name!r}: bad option ({exc})") from None


__all__ = ["DEFAULT_STRATEGY", "STRATEGIES", "Strategy", "available_strategies", "make_strategy", "strategy_class"]
