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
DEFAULT_STRATEGY = PredictorBO.name            # best single-objective result (benchmarks/search_quality.py)
DEFAULT_MO_STRATEGY = NSGA2.name               # best multi-objective result (benchmarks/multi_objective.py)


def default_strategy(n_objectives: int = 1) -> str:
    """The strategy used when none is named: chosen by our benchmarks per problem kind."""
    return DEFAULT_STRATEGY if n_objectives <= 1 else DEFAULT_MO_STRATEGY


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


__all__ = ["DEFAULT_MO_STRATEGY", "DEFAULT_STRATEGY", "default_strategy", "STRATEGIES", "Strategy", "available_strategies", "make_strategy", "strategy_class"]
